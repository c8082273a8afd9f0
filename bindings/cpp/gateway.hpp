// gateway.hpp: a header-only C++17 RAII wrapper over gateway.h.
//
// Move-only owners of the C handles (`Options`, `Lock`, `Server`); failures either throw
// `gateway::Error` (code + the library's exact message) or, with the `try_*` functions, come
// back as a `gateway::Result<T>` holding a value or an `Error`. Callbacks and the host's methods
// (`Handlers`) are `std::function`s; the library frees them exactly once through
// `free_userdata`, and an exception thrown by one is swallowed at the C boundary (it must never
// unwind into the library; a method that throws answers its request `UNAVAILABLE`).
#ifndef GATEWAY_HPP
#define GATEWAY_HPP

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "gateway.h"

extern "C" {
inline void gateway_cpp_request(void *userdata, gw_request_id request, const char *method, std::size_t method_len,
                         const char *params_json, std::size_t params_len, std::uint64_t conn_id);
inline void gateway_cpp_connection(void *userdata, std::uint64_t conn_id, bool opened, const char *client_json,
                            std::size_t len);
}

namespace gateway {

/// A failed call: the `gw_result` and the message `gw_last_error_message` gave.
class Error : public std::runtime_error {
public:
    Error(gw_result code, const std::string &message) : std::runtime_error(message), code_(code) {}

    gw_result code() const noexcept { return code_; }
    /// "GW_ERR_ALREADY_RUNNING", ...
    const char *name() const noexcept { return gw_result_name(code_); }

    /// The calling thread's last failure, as an Error.
    static Error last(gw_result code) { return Error(code, gw_last_error_message()); }

private:
    gw_result code_;
};

/// A value or an Error, for callers that do not use exceptions for expected failures.
template <class T>
class Result {
public:
    Result(T value) : state_(std::move(value)) {}
    Result(Error error) : state_(std::move(error)) {}

    bool ok() const noexcept { return state_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }
    /// The value; throws the Error when there is none.
    T &value() & {
        if (!ok()) throw std::get<1>(state_);
        return std::get<0>(state_);
    }
    T &&value() && { return std::move(value()); }
    /// The Error; only valid when !ok().
    const Error &error() const { return std::get<1>(state_); }

private:
    std::variant<T, Error> state_;
};

namespace detail {
inline void check(gw_result result) {
    if (result != GW_OK) throw Error::last(result);
}

struct OptionsDeleter {
    void operator()(gw_options *options) const noexcept { gw_options_free(options); }
};
struct LockDeleter {
    void operator()(gw_lock *lock) const noexcept { gw_lock_release(lock); }
};
struct HandlersDeleter {
    void operator()(gw_handlers *handlers) const noexcept { gw_handlers_free(handlers); }
};
/// true on GW_OK, false on GW_ERR_NOT_FOUND (the request or client is gone); throws otherwise.
inline bool found(gw_result result) {
    if (result == GW_ERR_NOT_FOUND) return false;
    check(result);
    return true;
}
inline std::uint32_t millis(std::chrono::milliseconds t) {
    if (t.count() < 0 || t.count() > 0xFFFFFFFFll) throw Error(GW_ERR_INVALID_ARGUMENT, "duration out of range");
    return static_cast<std::uint32_t>(t.count());
}
} // namespace detail

/// Where and how the gateway locks and listens (gw_options). Setters throw Error.
class Options {
public:
    Options() : options_(gw_options_new()) {
        if (!options_) throw Error::last(GW_ERR_PANIC);
    }
    /// Defaults resolved from the OPENCLAW_* environment (SPEC §1).
    static Options from_env() {
        Options options;
        detail::check(gw_options_from_env(options.options_.get()));
        return options;
    }

    Options &port(std::uint32_t port) { return apply(gw_options_set_port(get(), port)); }
    Options &bind_loopback() { return apply(gw_options_set_bind_loopback(get())); }
    Options &bind_lan() { return apply(gw_options_set_bind_lan(get())); }
    Options &bind_host(const std::string &host) { return apply(gw_options_set_bind_host(get(), host.c_str())); }
    Options &state_dir(const std::string &path) { return apply(gw_options_set_state_dir(get(), path.c_str())); }
    Options &config_path(const std::string &path) { return apply(gw_options_set_config_path(get(), path.c_str())); }
    Options &lock_dir(const std::string &path) { return apply(gw_options_set_lock_dir(get(), path.c_str())); }
    Options &profile(const std::string &name) { return apply(gw_options_set_profile(get(), name.c_str())); }
    Options &dev(bool dev) { return apply(gw_options_set_dev(get(), dev)); }
    Options &allow_multi(bool allow) { return apply(gw_options_set_allow_multi(get(), allow)); }
    Options &timeout(std::chrono::milliseconds t) { return apply(gw_options_set_timeout_ms(get(), millis(t))); }
    Options &poll_interval(std::chrono::milliseconds t) { return apply(gw_options_set_poll_interval_ms(get(), millis(t))); }
    Options &stale_after(std::chrono::milliseconds t) { return apply(gw_options_set_stale_after_ms(get(), millis(t))); }
    Options &recheck_interval(std::chrono::milliseconds t) { return apply(gw_options_set_recheck_interval_ms(get(), millis(t))); }
    Options &bind_retry(std::uint32_t attempts, std::chrono::milliseconds interval) {
        return apply(gw_options_set_bind_retry(get(), attempts, millis(interval)));
    }
    Options &auth_none() { return apply(gw_options_set_auth_none(get())); }
    Options &auth_token(const std::string &token) { return apply(gw_options_set_auth_token(get(), token.c_str())); }
    Options &auth_password(const std::string &password) {
        return apply(gw_options_set_auth_password(get(), password.c_str()));
    }

    gw_options *get() const noexcept { return options_.get(); }

private:
    Options &apply(gw_result result) {
        detail::check(result);
        return *this;
    }
    static std::uint32_t millis(std::chrono::milliseconds t) { return detail::millis(t); }

    std::unique_ptr<gw_options, detail::OptionsDeleter> options_;
};

/// The side-effect-free look at the lock's holder (gw_lock_status). Throws Error.
inline gw_status status(const Options &options) {
    gw_status found{};
    detail::check(gw_lock_status(options.get(), &found));
    return found;
}

/// The file locks and the listener (gw_lock). Released when destroyed.
class Lock {
public:
    /// Acquires; throws Error (e.g. GW_ERR_ALREADY_RUNNING naming the holder's pid).
    static Lock acquire(const Options &options) { return try_acquire(options).value(); }

    static Result<Lock> try_acquire(const Options &options) {
        gw_lock *lock = nullptr;
        gw_result result = gw_lock_acquire(options.get(), &lock);
        if (result != GW_OK) return Error::last(result);
        return Lock(lock);
    }

    std::uint16_t port() const noexcept { return gw_lock_port(lock_.get()); }
    /// Gives the lock up now (the destructor does the same).
    void release() noexcept { lock_.reset(); }
    explicit operator bool() const noexcept { return static_cast<bool>(lock_); }
    /// Hands the C handle over (to gw_serve); the Lock is empty afterwards.
    gw_lock *into_raw() noexcept { return lock_.release(); }

private:
    explicit Lock(gw_lock *lock) : lock_(lock) {}
    std::unique_ptr<gw_lock, detail::LockDeleter> lock_;
};

/// What a Server tells its host. Each may be empty. Called on library threads (see gateway.h).
struct Callbacks {
    std::function<void(gw_log_level, std::string_view)> log;
    std::function<void(gw_state, gw_result)> state;
};

/// A request for one of the host's methods (on_request). Copyable: answer it at once or later,
/// from any thread, while its Server lives.
struct Request {
    gw_request_id id;
    std::string method;
    std::string params; ///< the request's `params` as JSON (`null` when it had none)
    std::uint64_t conn_id;
    gw_server *server;

    /// Answers with `payload` (JSON). false when the request no longer waits (answered, timed
    /// out, client gone); throws Error when `payload` is not JSON.
    bool respond(std::string_view payload) const {
        return detail::found(gw_respond(server, id, true, payload.data(), payload.size()));
    }
    /// Answers with an error object `{"code", "message", "details"?}`; as respond.
    bool fail(std::string_view error) const {
        return detail::found(gw_respond(server, id, false, error.data(), error.size()));
    }
};

/// The methods the host serves (each answered by a std::function, with the scope a caller
/// needs), the events it sends, connection notifications and the request timeout. Given to
/// Server::serve; the functions are called on gateway worker threads and must not block.
class Handlers {
public:
    using Method = std::function<void(const Request &)>;
    using Connection = std::function<void(std::uint64_t conn_id, bool opened, std::string_view client_json)>;

    /// A method any authenticated client may call.
    Handlers &method(std::string name, Method answer) { return add(std::move(name), std::nullopt, std::move(answer)); }
    /// A method that needs `scope` (e.g. "operator.read").
    Handlers &method(std::string name, std::string scope, Method answer) {
        return add(std::move(name), std::move(scope), std::move(answer));
    }
    /// An event listed in hello-ok's features.events.
    Handlers &event(std::string name) {
        events_.push_back(std::move(name));
        return *this;
    }
    /// Requests unanswered after this get UNAVAILABLE (default 30 s).
    Handlers &request_timeout(std::chrono::milliseconds timeout) {
        timeout_ = detail::millis(timeout);
        return *this;
    }
    /// Called when a client completes the handshake (opened) and when it is gone.
    Handlers &on_connection(Connection connection) {
        connection_ = std::move(connection);
        return *this;
    }

private:
    friend class Server;
    friend void ::gateway_cpp_request(void *, gw_request_id, const char *, std::size_t, const char *, std::size_t,
                                      std::uint64_t);
    friend void ::gateway_cpp_connection(void *, std::uint64_t, bool, const char *, std::size_t);
    struct Entry {
        std::optional<std::string> scope;
        Method answer;
    };
    Handlers &add(std::string name, std::optional<std::string> scope, Method answer) {
        methods_[std::move(name)] = Entry{std::move(scope), std::move(answer)};
        return *this;
    }

    std::map<std::string, Entry, std::less<>> methods_;
    std::vector<std::string> events_;
    std::optional<std::uint32_t> timeout_;
    Connection connection_;
};

namespace detail {
/// The userdata of a Server's gw_callbacks, freed by the library through free_userdata.
struct ServerState {
    Callbacks callbacks;
    Handlers handlers;
    gw_server *server = nullptr; ///< written by gw_serve before any request or connection callback
};
} // namespace detail

} // namespace gateway

// The trampolines have C linkage, as the callback types of gateway.h do.
extern "C" {
inline void gateway_cpp_log(void *userdata, gw_log_level level, const char *message, std::size_t len) {
    auto &callbacks = static_cast<gateway::detail::ServerState *>(userdata)->callbacks;
    try {
        if (callbacks.log) callbacks.log(level, std::string_view(message, len));
    } catch (...) {
    }
}
inline void gateway_cpp_state(void *userdata, gw_state state, gw_result result) {
    auto &callbacks = static_cast<gateway::detail::ServerState *>(userdata)->callbacks;
    try {
        if (callbacks.state) callbacks.state(state, result);
    } catch (...) {
    }
}
inline void gateway_cpp_request(void *userdata, gw_request_id request, const char *method, std::size_t method_len,
                                const char *params_json, std::size_t params_len, std::uint64_t conn_id) {
    auto *state = static_cast<gateway::detail::ServerState *>(userdata);
    static const char failed[] = "{\"code\":\"UNAVAILABLE\",\"message\":\"the method handler failed\"}";
    try {
        auto entry = state->handlers.methods_.find(std::string_view(method, method_len));
        if (entry == state->handlers.methods_.end() || !entry->second.answer) {
            gw_respond(state->server, request, false, failed, sizeof failed - 1);
            return;
        }
        entry->second.answer(gateway::Request{request, std::string(method, method_len),
                                              std::string(params_json, params_len), conn_id, state->server});
    } catch (...) {
        gw_respond(state->server, request, false, failed, sizeof failed - 1);
    }
}
inline void gateway_cpp_connection(void *userdata, std::uint64_t conn_id, bool opened, const char *client_json,
                                   std::size_t len) {
    auto &connection = static_cast<gateway::detail::ServerState *>(userdata)->handlers.connection_;
    try {
        if (connection) connection(conn_id, opened, std::string_view(client_json, len));
    } catch (...) {
    }
}
inline void gateway_cpp_free(void *userdata) { delete static_cast<gateway::detail::ServerState *>(userdata); }
}

namespace gateway {

/// A running gateway (gw_server). Destroying it shuts down with a 5 s timeout.
class Server {
public:
    /// Serves on the lock (which is consumed, also on failure) with the host's callbacks and
    /// methods; throws Error.
    static Server serve(Lock &&lock, Callbacks callbacks = {}, Handlers handlers = {}) {
        return try_serve(std::move(lock), std::move(callbacks), std::move(handlers)).value();
    }

    static Result<Server> try_serve(Lock &&lock, Callbacks callbacks = {}, Handlers handlers = {}) {
        auto refuse = [&lock](gw_result result) {
            Error error = Error::last(result);
            lock.release(); // consumed on failure too, as gw_serve does
            return error;
        };
        std::unique_ptr<gw_handlers, detail::HandlersDeleter> registered(gw_handlers_new());
        if (!registered) return refuse(GW_ERR_PANIC);
        for (const auto &[name, entry] : handlers.methods_) {
            gw_result result = gw_handlers_add_method(registered.get(), name.c_str(),
                                                      entry.scope ? entry.scope->c_str() : nullptr);
            if (result != GW_OK) return refuse(result);
        }
        for (const auto &event : handlers.events_) {
            gw_result result = gw_handlers_add_event(registered.get(), event.c_str());
            if (result != GW_OK) return refuse(result);
        }
        if (handlers.timeout_) {
            gw_result result = gw_handlers_set_request_timeout_ms(registered.get(), *handlers.timeout_);
            if (result != GW_OK) return refuse(result);
        }
        auto *state = new detail::ServerState{std::move(callbacks), std::move(handlers), nullptr};
        gw_callbacks c{};
        c.size = sizeof c;
        c.userdata = state;
        c.log = gateway_cpp_log;
        c.state = gateway_cpp_state;
        c.free_userdata = gateway_cpp_free;
        c.on_request = gateway_cpp_request;
        c.on_connection = gateway_cpp_connection;
        c.handlers = registered.get();
        gw_result result = gw_serve(lock.into_raw(), &c, &state->server); // frees `state` on failure
        if (result != GW_OK) return Error::last(result);
        return Server(state->server);
    }

    Server(Server &&other) noexcept : server_(std::exchange(other.server_, nullptr)) {}
    Server &operator=(Server &&other) noexcept {
        if (this != &other) {
            shutdown();
            server_ = std::exchange(other.server_, nullptr);
        }
        return *this;
    }
    Server(const Server &) = delete;
    Server &operator=(const Server &) = delete;
    ~Server() { shutdown(); }

    std::uint16_t port() const noexcept { return gw_server_port(server_); }

    /// Answers request `id` (gw_respond): `ok` with a JSON payload, or not with an error object
    /// `{"code", "message", "details"?}`. false when the request no longer waits; throws Error
    /// for JSON that is not. Any thread, while the Server lives.
    bool respond(gw_request_id id, bool ok, std::string_view json) const {
        return detail::found(gw_respond(server_, id, ok, json.data(), json.size()));
    }
    /// Sends `event` with a JSON payload to every authenticated client; throws Error.
    void broadcast(const std::string &event, std::string_view json) const {
        detail::check(gw_broadcast(server_, event.c_str(), json.data(), json.size()));
    }
    /// Sends `event` to one client; false when it is not connected. Throws Error otherwise.
    bool send_event(std::uint64_t conn_id, const std::string &event, std::string_view json) const {
        return detail::found(gw_send_event(server_, conn_id, event.c_str(), json.data(), json.size()));
    }

    /// Graceful shutdown; true when every connection finished within `timeout`. The port is
    /// free and the lock released either way. A no-op (true) once shut down.
    bool shutdown(std::chrono::milliseconds timeout = std::chrono::seconds(5)) noexcept {
        if (server_ == nullptr) return true;
        auto ms = timeout.count() < 0 ? 0 : timeout.count() > 0xFFFFFFFFll ? 0xFFFFFFFFll : timeout.count();
        gw_result result = gw_shutdown(std::exchange(server_, nullptr), static_cast<std::uint32_t>(ms));
        return result == GW_OK;
    }

private:
    explicit Server(gw_server *server) : server_(server) {}
    gw_server *server_;
};

} // namespace gateway

#endif // GATEWAY_HPP
