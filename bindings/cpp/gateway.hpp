// gateway.hpp: a header-only C++17 RAII wrapper over gateway.h (C ABI version 2).
//
// Move-only owners of the C handles (`Options`, `ServeOptions`, `Lock`, `Server`, and the
// `Request` a method answers); scoped enums (`Code`, `LogLevel`, `State`) instead of the C
// ones; failures either throw `gateway::Error` (code, the library's exact message, and the
// holder's pid and port when a live gateway holds the lock) or, with the `try_*` functions,
// come back as a `[[nodiscard]] gateway::Result<T>` holding a value or an `Error`. Callbacks and
// the host's methods (`Handlers`) and HTTP routes (`ServeOptions::http_route`, answered through
// a move-only `HttpExchange`) are `std::function`s; the library frees them exactly once
// through `free_userdata`, and an exception thrown by one is swallowed at the C boundary (it
// must never unwind into the library; a method that throws answers its request `UNAVAILABLE`).
#ifndef GATEWAY_HPP
#define GATEWAY_HPP

#include <chrono>
#include <cstdint>
#include <exception>
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
inline void gateway_cpp_request(void *userdata, gw_server *server, gw_request_id request, const char *method,
                                std::size_t method_len, const char *params_json, std::size_t params_len,
                                std::uint64_t conn_id);
inline void gateway_cpp_connection(void *userdata, gw_server *server, std::uint64_t conn_id, bool opened, const char *client_json,
                                   std::size_t len);
}

namespace gateway {

/// What a call did (`gw_result`): the same numbers, scoped.
enum class Code : std::uint32_t {
    ok = GW_OK,
    null_argument = GW_ERR_NULL_ARGUMENT,
    invalid_argument = GW_ERR_INVALID_ARGUMENT,
    already_running = GW_ERR_ALREADY_RUNNING,
    addr_in_use = GW_ERR_ADDR_IN_USE,
    bind = GW_ERR_BIND,
    lock_io = GW_ERR_LOCK_IO,
    lock_dir_unsafe = GW_ERR_LOCK_DIR_UNSAFE,
    timeout = GW_ERR_TIMEOUT,
    runtime = GW_ERR_RUNTIME,
    panic = GW_ERR_PANIC,
    lock_file_unsafe = GW_ERR_LOCK_FILE_UNSAFE,
    lock_lost = GW_ERR_LOCK_LOST,
    not_found = GW_ERR_NOT_FOUND,
    http_body = GW_ERR_HTTP_BODY,
    wrong_thread = GW_ERR_WRONG_THREAD,
    held_by_other_host = GW_ERR_HELD_BY_OTHER_HOST,
    cluster_leader = GW_ERR_CLUSTER_LEADER,
    cluster_unavailable = GW_ERR_CLUSTER_UNAVAILABLE,
    leadership_lost = GW_ERR_LEADERSHIP_LOST,
    cancelled = GW_ERR_CANCELLED,
};

/// "GW_ERR_ALREADY_RUNNING", ...; "GW_UNKNOWN" for a number this library does not know.
[[nodiscard]] inline const char *name(Code code) noexcept { return gw_result_name(static_cast<std::uint32_t>(code)); }

/// How loud a log line is (`gw_log_level`).
enum class LogLevel : std::uint32_t { debug = GW_LOG_DEBUG, info = GW_LOG_INFO, warn = GW_LOG_WARN, error = GW_LOG_ERROR };

/// A change in a served gateway's life (`gw_state`).
enum class State : std::uint32_t { ready = GW_STATE_READY, lock_lost = GW_STATE_LOCK_LOST, stopped = GW_STATE_STOPPED };

/// The live gateway that refused an acquire (or an unlock): its pid and the port its lock file
/// records, each empty when unknown (`gw_last_error_holder` gives 0 for it), and its host when
/// it is another machine (`gw_last_error_holder_host`). Never signal an empty pid, nor the pid
/// of a holder with a host: it is that machine's.
struct Holder {
    std::optional<std::uint32_t> pid;
    std::optional<std::uint16_t> port;
    std::optional<std::string> host;
};

/// A failed call: its Code, the message `gw_last_error_message` gave, and the holder
/// `gw_last_error_holder` gave, when the failure named one.
class Error : public std::runtime_error {
public:
    Error(Code code, const std::string &message, std::optional<Holder> holder = std::nullopt)
        : std::runtime_error(message), code_(code), holder_(holder) {}

    [[nodiscard]] Code code() const noexcept { return code_; }
    /// "GW_ERR_ALREADY_RUNNING", ...
    [[nodiscard]] const char *name() const noexcept { return gateway::name(code_); }
    /// The live gateway holding the lock (Code::already_running with a known pid or port, or
    /// Code::held_by_other_host, with its host), or leading the cluster (Code::cluster_leader,
    /// with its host).
    [[nodiscard]] const std::optional<Holder> &holder() const noexcept { return holder_; }

    /// The calling thread's last failure, as an Error.
    [[nodiscard]] static Error last(gw_result code) {
        std::uint32_t pid = 0;
        std::uint16_t port = 0;
        std::optional<Holder> named;
        if (gw_last_error_holder(&pid, &port) == GW_OK) {
            named = Holder{};
            if (pid != 0) named->pid = pid;
            if (port != 0) named->port = port;
            const std::string host = gw_last_error_holder_host();
            if (!host.empty()) named->host = host;
        }
        return Error(static_cast<Code>(code), gw_last_error_message(), named);
    }

private:
    Code code_;
    std::optional<Holder> holder_;
};

/// A value or an Error, for callers that do not use exceptions for expected failures.
template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : state_(std::move(value)) {}
    Result(Error error) : state_(std::move(error)) {}

    [[nodiscard]] bool ok() const noexcept { return state_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }
    /// The value; throws the Error when there is none.
    [[nodiscard]] T &value() & {
        if (!ok()) throw std::get<1>(state_);
        return std::get<0>(state_);
    }
    [[nodiscard]] T &&value() && { return std::move(value()); }
    /// The Error; only valid when !ok().
    [[nodiscard]] const Error &error() const { return std::get<1>(state_); }

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
struct ServeOptionsDeleter {
    void operator()(gw_serve_options *options) const noexcept { gw_serve_options_free(options); }
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
    if (t.count() < 0 || t.count() > 0xFFFFFFFFll) throw Error(Code::invalid_argument, "duration out of range");
    return static_cast<std::uint32_t>(t.count());
}
inline std::uint64_t millis64(std::chrono::milliseconds t) {
    if (t.count() < 0) throw Error(Code::invalid_argument, "duration out of range");
    return static_cast<std::uint64_t>(t.count());
}
/// The log function of Options::log: the library owns it and deletes it through
/// gateway_cpp_lock_log_free once nothing can log with it (gw_options_set_log's finalizer).
using LogFunction = std::function<void(LogLevel, std::string_view)>;
/// The health source of ServeOptions::health_source, owned by the library in the same way
/// (gw_serve_options_set_health_source's finalizer).
using HealthFunction = std::function<std::optional<std::string>()>;
/// Where gateway_cpp_presence copies the presence list: an exception (out of memory) is kept
/// and rethrown by Server::presence once the C call is over, never unwound into the library.
struct PresenceReply {
    std::string json;
    std::exception_ptr error;
};
} // namespace detail
} // namespace gateway

extern "C" {
inline void gateway_cpp_health(void *userdata, gw_health_reply *reply) {
    auto &source = *static_cast<const gateway::detail::HealthFunction *>(userdata);
    try {
        if (std::optional<std::string> snapshot = source())
            (void)gw_health_reply_set(reply, snapshot->data(), snapshot->size());
    } catch (...) {
    }
}
inline void gateway_cpp_health_free(void *userdata) {
    delete static_cast<gateway::detail::HealthFunction *>(userdata);
}
inline void gateway_cpp_presence(void *userdata, const char *json, std::size_t len) {
    auto &reply = *static_cast<gateway::detail::PresenceReply *>(userdata);
    try {
        reply.json.assign(json, len);
    } catch (...) {
        reply.error = std::current_exception();
    }
}
inline void gateway_cpp_lock_log(void *userdata, gw_log_level level, const char *message, std::size_t len) {
    auto &log = *static_cast<const gateway::detail::LogFunction *>(userdata);
    try {
        log(static_cast<gateway::LogLevel>(level), std::string_view(message, len));
    } catch (...) {
    }
}
inline void gateway_cpp_lock_log_free(void *userdata) { delete static_cast<gateway::detail::LogFunction *>(userdata); }
inline void gateway_cpp_pairing(void *userdata, const char *request_json, std::size_t request_len,
                                const char *context_json, std::size_t context_len, gw_pairing_decision *decision);
inline void gateway_cpp_pairing_free(void *userdata);
inline void gateway_cpp_http_route(void *userdata, gw_http_exchange *exchange);
inline void gateway_cpp_http_route_free(void *userdata);
}

namespace gateway {

/// What a pairing policy decided about one request (SPEC §11.5).
struct PairingDecision {
    enum class Kind { pending, approve, reject };
    Kind kind = Kind::pending;
    /// With approve: the scopes to grant (none: the requested ones).
    std::optional<std::vector<std::string>> scopes;

    /// Leave it pending: the client is told `pairing required`; approve later with
    /// Server::approve_pairing.
    [[nodiscard]] static PairingDecision pending() { return {}; }
    /// Pair now, with the requested scopes or `scopes`.
    [[nodiscard]] static PairingDecision approve(std::optional<std::vector<std::string>> scopes = std::nullopt) {
        return {Kind::approve, std::move(scopes)};
    }
    /// Refuse it.
    [[nodiscard]] static PairingDecision reject() { return {Kind::reject, std::nullopt}; }
};

/// Decides a pairing request: `request_json` and `context_json` as gw_pairing_fn describes.
/// Called on library threads, at once from several; decide at once. An exception counts as
/// pending.
using PairingPolicy = std::function<PairingDecision(std::string_view request_json, std::string_view context_json)>;

namespace detail {
/// `["a","b"]`, each string JSON-escaped.
inline std::string json_strings(const std::vector<std::string> &items) {
    std::string out = "[";
    for (const auto &item : items) {
        if (out.size() > 1) out += ',';
        out += '"';
        for (char c : item) {
            if (c == '"' || c == '\\') {
                out += '\\';
                out += c;
            } else if (static_cast<unsigned char>(c) < 0x20) {
                static const char hex[] = "0123456789abcdef";
                out += "\\u00";
                out += hex[(c >> 4) & 0xF];
                out += hex[c & 0xF];
            } else {
                out += c;
            }
        }
        out += '"';
    }
    return out + "]";
}

/// Takes a string the library returned (gw_string_free).
inline std::string take_string(char *text) {
    std::string copy(text);
    gw_string_free(text);
    return copy;
}
} // namespace detail
} // namespace gateway

extern "C" {
inline void gateway_cpp_pairing(void *userdata, const char *request_json, std::size_t request_len,
                                const char *context_json, std::size_t context_len, gw_pairing_decision *decision) {
    auto &policy = *static_cast<const gateway::PairingPolicy *>(userdata);
    try {
        gateway::PairingDecision decided =
            policy(std::string_view(request_json, request_len), std::string_view(context_json, context_len));
        if (decided.kind == gateway::PairingDecision::Kind::approve) {
            if (decided.scopes) {
                std::string scopes = gateway::detail::json_strings(*decided.scopes);
                (void)gw_pairing_decision_approve(decision, scopes.c_str());
            } else {
                (void)gw_pairing_decision_approve(decision, nullptr);
            }
        } else if (decided.kind == gateway::PairingDecision::Kind::reject) {
            (void)gw_pairing_decision_reject(decision);
        }
    } catch (...) {
    }
}
inline void gateway_cpp_pairing_free(void *userdata) { delete static_cast<gateway::PairingPolicy *>(userdata); }
}

namespace gateway {

/// Ends a cluster standby's wait from another thread (gw_cancel): give it to
/// Options::cluster_cancel, then cancel() it while Lock::acquire stands by, which then throws
/// Error(Code::cancelled). Once cancelled it stays so (use a new one to stand by again). The
/// options keep their own reference, so it may be destroyed first. Move-only; cancel() is safe
/// from any thread.
class Cancel {
public:
    Cancel() : cancel_(gw_cancel_new()) {
        if (!cancel_) throw Error::last(GW_ERR_PANIC);
    }
    void cancel() const { detail::check(gw_cancel_trigger(cancel_.get())); }
    [[nodiscard]] gw_cancel *get() const noexcept { return cancel_.get(); }

private:
    struct Deleter {
        void operator()(gw_cancel *cancel) const noexcept { gw_cancel_free(cancel); }
    };
    std::unique_ptr<gw_cancel, Deleter> cancel_;
};

/// Where and how the gateway locks and listens (gw_options). Setters throw Error.
class Options {
public:
    Options() : options_(gw_options_new()) {
        if (!options_) throw Error::last(GW_ERR_PANIC);
    }
    /// Defaults resolved from the OPENCLAW_* environment (SPEC §1).
    [[nodiscard]] static Options from_env() {
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
    /// Cluster mode (gw_options_set_cluster_etcd): after the local lock, campaign for the
    /// cluster's leadership in etcd at `endpoints` (client URLs, "http://a:2379,http://b:2379");
    /// only the leader binds and serves.
    Options &cluster_etcd(const std::string &endpoints) {
        return apply(gw_options_set_cluster_etcd(get(), endpoints.c_str()));
    }
    Options &cluster_etcd(const std::vector<std::string> &endpoints) {
        std::string joined;
        for (const auto &endpoint : endpoints) joined += (joined.empty() ? "" : ",") + endpoint;
        return cluster_etcd(joined);
    }
    /// The cluster's name (default: from the config path). After cluster_etcd, as the others.
    Options &cluster_name(const std::string &name) { return apply(gw_options_set_cluster_name(get(), name.c_str())); }
    /// The lease TTL: whole seconds, at least 2 s (default 5 s).
    Options &cluster_ttl(std::chrono::milliseconds t) { return apply(gw_options_set_cluster_ttl_ms(get(), millis(t))); }
    /// Stand by up to `t` while another gateway leads; 0 (the default) fails at once with
    /// Error(Code::cluster_leader), 0xFFFFFFFF ms (GW_CLUSTER_WAIT_FOREVER) waits for ever.
    Options &cluster_wait(std::chrono::milliseconds t) { return apply(gw_options_set_cluster_wait_ms(get(), millis(t))); }
    /// Stand by until this gateway leads (end it with a Cancel).
    Options &cluster_wait_forever() { return apply(gw_options_set_cluster_wait_ms(get(), GW_CLUSTER_WAIT_FOREVER)); }
    Options &cluster_cancel(const Cancel &cancel) { return apply(gw_options_set_cluster_cancel(get(), cancel.get())); }
    /// Where acquiring and the lock log (every level; default warnings and errors to stderr).
    /// A Server keeps it unless its Callbacks have a log. Called on library threads; the
    /// library destroys it when nothing can log with it any more.
    Options &log(std::function<void(LogLevel, std::string_view)> log) {
        auto *owned = new detail::LogFunction(std::move(log));
        // The library owns `owned` from here, whatever the result (freed through the finalizer).
        return apply(gw_options_set_log(get(), gateway_cpp_lock_log, owned, gateway_cpp_lock_log_free));
    }

    [[nodiscard]] gw_options *get() const noexcept { return options_.get(); }

private:
    Options &apply(gw_result result) {
        detail::check(result);
        return *this;
    }
    static std::uint32_t millis(std::chrono::milliseconds t) { return detail::millis(t); }

    std::unique_ptr<gw_options, detail::OptionsDeleter> options_;
};

/// What `status` found (`gw_status`).
struct Status {
    bool running;  ///< a live gateway holds the lock
    bool healthy;  ///< its /healthz answered live
    bool stale;    ///< a lock file is left by a provably dead owner
    std::uint16_t port;
    std::uint32_t pid; ///< 0 when none
    std::uint64_t start_time;
};

/// The side-effect-free look at the lock's holder (gw_lock_status). Throws Error.
[[nodiscard]] inline Status status(const Options &options) {
    gw_status found{};
    detail::check(gw_lock_status(options.get(), &found));
    return Status{found.running, found.healthy, found.stale, found.port, found.pid, found.start_time};
}

/// The gateway leading a cluster, as its claim in the store says (gw_cluster_leader).
struct ClusterLeader {
    std::string host;
    std::uint32_t pid; ///< on its own machine: never signal it here unless host is this one
    std::uint16_t port; ///< 0 when unknown
    std::uint64_t fencing_token;
    std::uint64_t since_ms; ///< when it became leader, ms since the Unix epoch (its clock)
};

/// The cluster's leader, read without taking part (gw_lock_cluster_leader); nullopt when none
/// leads now. Throws Error (Code::cluster_unavailable, Code::invalid_argument without
/// Options::cluster_etcd).
[[nodiscard]] inline std::optional<ClusterLeader> cluster_leader(const Options &options) {
    gw_cluster_leader found{};
    gw_result result = gw_lock_cluster_leader(options.get(), &found);
    if (result == GW_ERR_NOT_FOUND) return std::nullopt;
    detail::check(result);
    return ClusterLeader{found.host, found.pid, found.port, found.fencing_token, found.since_ms};
}

/// Removes the lock files of a gateway that is gone (gw_unlock): a stale one always, another
/// machine's only with `force`, never a live gateway's. Returns how many were removed; throws
/// Error (Code::held_by_other_host without `force`, Code::already_running for a live holder).
inline std::uint32_t unlock(const Options &options, bool force = false) {
    std::uint32_t removed = 0;
    detail::check(gw_unlock(options.get(), force, &removed));
    return removed;
}

/// The file locks and the listener (gw_lock). Released when destroyed.
class Lock {
public:
    /// Acquires; throws Error (e.g. Code::already_running, with the holder's pid and port).
    [[nodiscard]] static Lock acquire(const Options &options) { return try_acquire(options).value(); }

    static Result<Lock> try_acquire(const Options &options) {
        gw_lock *lock = nullptr;
        gw_result result = gw_lock_acquire(options.get(), &lock);
        if (result != GW_OK) return Error::last(result);
        return Lock(lock);
    }

    /// Acquires on `fd`, a bound, listening TCP socket the host already has (socket
    /// activation): the port is the socket's. The library owns `fd` from the call on (closed
    /// on failure). Throws Error.
    [[nodiscard]] static Lock acquire_with_listener(const Options &options, int fd) {
        return try_acquire_with_listener(options, fd).value();
    }

    static Result<Lock> try_acquire_with_listener(const Options &options, int fd) {
        gw_lock *lock = nullptr;
        gw_result result = gw_lock_acquire_with_listener(options.get(), fd, &lock);
        if (result != GW_OK) return Error::last(result);
        return Lock(lock);
    }

    /// True once the lock's re-check found a lock file deleted or replaced.
    [[nodiscard]] bool is_lost() const noexcept { return gw_lock_is_lost(lock_.get()); }

    [[nodiscard]] std::uint16_t port() const noexcept { return gw_lock_port(lock_.get()); }
    /// Cluster mode: the fencing token of this gateway's leadership (gw_lock_fencing_token);
    /// nullopt without cluster mode.
    [[nodiscard]] std::optional<std::uint64_t> fencing_token() const {
        std::uint64_t token = 0;
        if (!detail::found(gw_lock_fencing_token(lock_.get(), &token))) return std::nullopt;
        return token;
    }
    /// Cluster mode: true while this gateway may act as leader; ask right before each side
    /// effect you guard (gw_lock_is_leader). False without cluster mode.
    [[nodiscard]] bool is_leader() const noexcept { return gw_lock_is_leader(lock_.get()); }
    /// Gives the lock up now (the destructor does the same).
    void release() noexcept { lock_.reset(); }
    explicit operator bool() const noexcept { return static_cast<bool>(lock_); }
    /// Hands the C handle over (to gw_serve); the Lock is empty afterwards.
    [[nodiscard]] gw_lock *into_raw() noexcept { return lock_.release(); }

private:
    explicit Lock(gw_lock *lock) : lock_(lock) {}
    std::unique_ptr<gw_lock, detail::LockDeleter> lock_;
};

/// One request to a host HTTP route and its answer (gw_http_exchange). Move-only owner:
/// destroying it frees the exchange, and one never answered is answered 500, so no client
/// waits forever. Answer it inside the route's function or move it to a thread of your own;
/// every call is safe from any thread, and keeps working (failing cleanly) after its Server is
/// gone. read() and write() wait, so they throw Error(Code::wrong_thread) inside the route's
/// function: call them from a thread of your own.
class HttpExchange {
public:
    explicit HttpExchange(gw_http_exchange *exchange) noexcept : exchange_(exchange) {}
    HttpExchange(const HttpExchange &) = delete;
    HttpExchange &operator=(const HttpExchange &) = delete;
    HttpExchange(HttpExchange &&other) noexcept : exchange_(std::exchange(other.exchange_, nullptr)) {}
    HttpExchange &operator=(HttpExchange &&other) noexcept {
        if (this != &other) gw_http_exchange_free(std::exchange(exchange_, std::exchange(other.exchange_, nullptr)));
        return *this;
    }
    ~HttpExchange() { gw_http_exchange_free(exchange_); }

    /// "GET", "POST", ...
    [[nodiscard]] std::string_view method() const noexcept { return view(gw_http_exchange_method(exchange_)); }
    /// The path as sent, e.g. "/hooks/github".
    [[nodiscard]] std::string_view path() const noexcept { return view(gw_http_exchange_path(exchange_)); }
    /// The query without the '?', "" when none.
    [[nodiscard]] std::string_view query() const noexcept { return view(gw_http_exchange_query(exchange_)); }
    /// The TCP peer, "127.0.0.1:53122".
    [[nodiscard]] std::string_view peer() const noexcept { return view(gw_http_exchange_peer(exchange_)); }
    /// A header (any case), repeated values joined by ", "; empty when absent.
    [[nodiscard]] std::optional<std::string_view> header(const std::string &name) const noexcept {
        const char *value = gw_http_exchange_header(exchange_, name.c_str());
        if (value == nullptr) return std::nullopt;
        return std::string_view(value);
    }
    /// Every header as a JSON object, Node's `req.headers`.
    [[nodiscard]] std::string_view headers_json() const noexcept {
        std::size_t len = 0;
        const char *json = gw_http_exchange_headers_json(exchange_, &len);
        return json == nullptr ? std::string_view() : std::string_view(json, len);
    }
    /// Whether it came with the gateway's auth (a route with HttpRoute::gateway_auth).
    [[nodiscard]] bool authenticated() const noexcept { return gw_http_exchange_authenticated(exchange_); }

    /// Reads the next bytes of the request body (at most `cap`), waiting for them; 0 at the
    /// end. Throws Error: Code::http_body (past the route's limit, idle, client gone, server
    /// stopped), Code::wrong_thread (inside the route's function).
    [[nodiscard]] std::size_t read(char *buf, std::size_t cap) const {
        std::size_t n = 0;
        detail::check(gw_http_exchange_read(exchange_, reinterpret_cast<std::uint8_t *>(buf), cap, &n));
        return n;
    }
    /// The whole request body (within the route's limit); throws as read().
    [[nodiscard]] std::string read_all() const {
        std::string all;
        char buf[16384];
        while (std::size_t n = read(buf, sizeof buf)) all.append(buf, n);
        return all;
    }

    /// Answers whole: `status` (200-599), `body`, and headers as a JSON object (values strings
    /// or arrays of strings), e.g. `{"content-type":"text/plain"}`. false when it was answered
    /// already or the client is gone; throws Error for a bad status or headers.
    [[nodiscard]] bool respond(std::uint16_t status, std::string_view body = {},
                               std::string_view headers_json = {}) const {
        return detail::found(gw_http_exchange_respond(exchange_, status, json_or_null(headers_json),
                                                      headers_json.size(),
                                                      reinterpret_cast<const std::uint8_t *>(body.data()),
                                                      body.size()));
    }
    /// Starts a streamed answer (chunked): then write() each chunk and finish() (or abort()).
    /// false when it was answered already or the client is gone; throws as respond().
    [[nodiscard]] bool start(std::uint16_t status, std::string_view headers_json = {}) const {
        return detail::found(
            gw_http_exchange_start(exchange_, status, json_or_null(headers_json), headers_json.size()));
    }
    /// Sends a chunk, waiting while the client is behind. false when the client is gone (stop
    /// writing) or the answer is complete; throws Error (Code::wrong_thread inside the
    /// route's function, Code::invalid_argument before start()).
    [[nodiscard]] bool write(std::string_view chunk) const {
        return detail::found(
            gw_http_exchange_write(exchange_, reinterpret_cast<const std::uint8_t *>(chunk.data()), chunk.size()));
    }
    /// Ends a streamed answer; false when it was complete already.
    [[nodiscard]] bool finish() const { return detail::found(gw_http_exchange_finish(exchange_)); }
    /// Cuts a streamed answer short (the client sees it incomplete), or answers 500 one not
    /// started; false when the answer was complete already.
    [[nodiscard]] bool abort() const { return detail::found(gw_http_exchange_abort(exchange_)); }

    [[nodiscard]] gw_http_exchange *get() const noexcept { return exchange_; }

private:
    static std::string_view view(const char *text) noexcept {
        return text == nullptr ? std::string_view() : std::string_view(text);
    }
    static const char *json_or_null(std::string_view json) noexcept { return json.empty() ? nullptr : json.data(); }
    gw_http_exchange *exchange_;
};

/// Answers one request to a route; called on a gateway worker thread, at once from several:
/// must not block (answer whole, or move the exchange to a thread of your own). An exception
/// is swallowed at the C boundary (the exchange is then destroyed: the client gets 500).
using HttpHandler = std::function<void(HttpExchange)>;

/// A route's match and limits for ServeOptions::http_route.
struct HttpRoute {
    /// "GET", "POST", ...; empty: any method.
    std::string method;
    /// Starts with '/'.
    std::string path;
    /// Also every path below it.
    bool prefix = false;
    /// Callers need the gateway's bearer token or password (else 401 / 429).
    bool gateway_auth = false;
    /// Larger request bodies fail their read and are answered 413.
    std::uint64_t max_body_bytes = 1024 * 1024;
};

/// How a Server runs (gw_serve_options): worker threads and the WebSocket protocol's limits and
/// policies; the defaults are gw_serve_options_new's. Setters throw Error for a value the
/// library refuses (0 where at least 1 is needed, an empty string).
class ServeOptions {
public:
    ServeOptions() : options_(gw_serve_options_new()) {
        if (!options_) throw Error::last(GW_ERR_PANIC);
    }

    ServeOptions &worker_threads(std::size_t threads) {
        return apply(gw_serve_options_set_worker_threads(get(), threads));
    }
    /// How long ~Server lets open connections finish (default 5 s; 0 closes them at once).
    ServeOptions &drop_timeout(std::chrono::milliseconds t) {
        apply(gw_serve_options_set_drop_timeout_ms(get(), detail::millis64(t)));
        drop_timeout_ = t;
        return *this;
    }
    /// An origin allowed besides loopback ones ("*" allows all); each call adds one.
    ServeOptions &allow_origin(const std::string &origin) {
        return apply(gw_serve_options_add_allowed_origin(get(), origin.c_str()));
    }
    ServeOptions &handshake_timeout(std::chrono::milliseconds t) {
        return apply(gw_serve_options_set_handshake_timeout_ms(get(), detail::millis64(t)));
    }
    ServeOptions &tick_interval(std::chrono::milliseconds t) {
        return apply(gw_serve_options_set_tick_interval_ms(get(), detail::millis64(t)));
    }
    ServeOptions &ping_interval(std::chrono::milliseconds t) {
        return apply(gw_serve_options_set_ping_interval_ms(get(), detail::millis64(t)));
    }
    /// Requests unanswered after this get UNAVAILABLE (default 30 s).
    ServeOptions &request_timeout(std::chrono::milliseconds t) {
        return apply(gw_serve_options_set_request_timeout_ms(get(), detail::millis64(t)));
    }
    ServeOptions &max_connections(std::size_t n) { return apply(gw_serve_options_set_max_connections(get(), n)); }
    ServeOptions &max_preauth_payload(std::size_t bytes) {
        return apply(gw_serve_options_set_max_preauth_payload(get(), bytes));
    }
    ServeOptions &max_payload(std::size_t bytes) { return apply(gw_serve_options_set_max_payload(get(), bytes)); }
    ServeOptions &max_buffered_bytes(std::size_t bytes) {
        return apply(gw_serve_options_set_max_buffered_bytes(get(), bytes));
    }
    ServeOptions &auth_throttle(std::uint32_t max_failures, std::chrono::milliseconds window,
                                std::chrono::milliseconds lockout) {
        return apply(gw_serve_options_set_auth_throttle(get(), max_failures, detail::millis64(window),
                                                        detail::millis64(lockout)));
    }
    ServeOptions &server_version(const std::string &version) {
        return apply(gw_serve_options_set_server_version(get(), version.c_str()));
    }
    /// Decides pairing requests as they arrive (default: Node's `silent` rule, a device on this
    /// host pairs at once and any other waits for Server::approve_pairing). The library owns
    /// the function and destroys it when these options and every server served with them are
    /// gone.
    ServeOptions &pairing_policy(PairingPolicy policy) {
        auto *owned = new PairingPolicy(std::move(policy));
        // The library owns `owned` from here, whatever the result (freed through the finalizer).
        return apply(gw_serve_options_set_pairing_policy(get(), gateway_cpp_pairing, owned, gateway_cpp_pairing_free));
    }
    /// Where paired devices and device tokens are kept: an absolute file path (default
    /// `<state dir>/gateway/devices.json`).
    ServeOptions &pairing_store_path(const std::string &path) {
        return apply(gw_serve_options_set_pairing_store_path(get(), path.c_str()));
    }
    /// `server.buildId` of hello-ok (at most 96 characters).
    ServeOptions &build_id(const std::string &id) { return apply(gw_serve_options_set_build_id(get(), id.c_str())); }
    /// A wire contract the host keeps, listed in hello-ok's `features.capabilities`.
    ServeOptions &capability(const std::string &name) {
        return apply(gw_serve_options_add_capability(get(), name.c_str()));
    }
    /// What the host honours in `connect`, listed in the `connect.challenge` event.
    ServeOptions &challenge_capability(const std::string &name) {
        return apply(gw_serve_options_add_challenge_capability(get(), name.c_str()));
    }
    /// How often health is refreshed and sent as a `health` event (default 60 s).
    ServeOptions &health_refresh_interval(std::chrono::milliseconds t) {
        return apply(gw_serve_options_set_health_refresh_interval_ms(get(), detail::millis64(t)));
    }
    /// Produces the health snapshot (JSON) at each refresh; std::nullopt keeps the previous
    /// one. Called on library threads; must return quickly. An empty function restores the
    /// default (the last set_health snapshot).
    ServeOptions &health_source(std::function<std::optional<std::string>()> source) {
        if (!source) return apply(gw_serve_options_set_health_source(get(), nullptr, nullptr, nullptr));
        auto *owned = new detail::HealthFunction(std::move(source));
        // The library owns `owned` from here, whatever the result (freed through the finalizer).
        return apply(gw_serve_options_set_health_source(get(), gateway_cpp_health, owned, gateway_cpp_health_free));
    }

    /// Adds an HTTP route on the gateway port, answered by `handler` (see HttpHandler). The
    /// library owns the function and destroys it when these options and every server served
    /// with them are gone. Throws Error for a route the library refuses.
    ServeOptions &http_route(const HttpRoute &route, HttpHandler handler) {
        auto *owned = new HttpHandler(std::move(handler));
        std::uint32_t flags = (route.prefix ? GW_HTTP_ROUTE_PREFIX : 0u) |
                              (route.gateway_auth ? GW_HTTP_ROUTE_GATEWAY_AUTH : 0u);
        // The library owns `owned` from here, whatever the result (freed through the finalizer).
        return apply(gw_serve_options_add_http_route(get(), route.method.empty() ? nullptr : route.method.c_str(),
                                                     route.path.c_str(), flags, route.max_body_bytes,
                                                     gateway_cpp_http_route, owned, gateway_cpp_http_route_free));
    }

    /// The largest request head read; past it 431 (default 64 KiB).
    ServeOptions &http_max_header_bytes(std::size_t bytes) {
        return apply(gw_serve_options_set_http_max_header_bytes(get(), bytes));
    }
    /// TCP connections open at once on the port, HTTP and WebSocket alike (default 10240).
    ServeOptions &http_max_connections(std::size_t n) {
        return apply(gw_serve_options_set_http_max_connections(get(), n));
    }
    /// A request head not complete within this closes the connection (default 30 s).
    ServeOptions &http_header_timeout(std::chrono::milliseconds t) {
        return apply(gw_serve_options_set_http_header_timeout_ms(get(), detail::millis64(t)));
    }
    /// A request body silent this long fails its read, the client gets 408 (default 30 s).
    ServeOptions &http_body_idle_timeout(std::chrono::milliseconds t) {
        return apply(gw_serve_options_set_http_body_idle_timeout_ms(get(), detail::millis64(t)));
    }
    /// `Strict-Transport-Security` on every HTTP response; std::nullopt sends none (default).
    ServeOptions &strict_transport_security(const std::optional<std::string> &value) {
        return apply(gw_serve_options_set_http_strict_transport_security(get(), value ? value->c_str() : nullptr));
    }
    /// Accepts WebSocket upgrades at this exact path only (each call adds one; by default
    /// every path but OpenClaw's reserved ones, as Node).
    ServeOptions &websocket_path(const std::string &path) {
        return apply(gw_serve_options_add_websocket_path(get(), path.c_str()));
    }
    /// Serves OpenClaw's Control UI from the built directory `root` under `base_path` ("" or
    /// "/openclaw"), as a configured build; resets the other control_ui_* settings.
    ServeOptions &control_ui(const std::string &root, const std::string &base_path = "") {
        return apply(gw_serve_options_set_control_ui(get(), root.c_str(), base_path.c_str()));
    }
    /// Keys of control-ui-config.json (a JSON object, e.g. `{"assistantName":"Ada"}`).
    ServeOptions &control_ui_config(std::string_view json) {
        return apply(gw_serve_options_set_control_ui_config_json(get(), json.data(), json.size()));
    }
    /// `gateway.controlUi.environment` (JSON), inserted into index.html; std::nullopt: none.
    ServeOptions &control_ui_environment(std::optional<std::string_view> json) {
        if (!json) return apply(gw_serve_options_set_control_ui_environment_json(get(), nullptr, 0));
        return apply(gw_serve_options_set_control_ui_environment_json(get(), json->data(), json->size()));
    }
    /// A UI shipped with this gateway build (reloads when the server's build id differs).
    ServeOptions &control_ui_bundled(bool bundled) {
        return apply(gw_serve_options_set_control_ui_bundled(get(), bundled));
    }
    /// The UI's terminal (default off).
    ServeOptions &control_ui_terminal(bool enabled) {
        return apply(gw_serve_options_set_control_ui_terminal(get(), enabled));
    }

    [[nodiscard]] const gw_serve_options *get() const noexcept { return options_.get(); }

private:
    friend class Server;
    gw_serve_options *get() noexcept { return options_.get(); }
    ServeOptions &apply(gw_result result) {
        detail::check(result);
        return *this;
    }

    std::unique_ptr<gw_serve_options, detail::ServeOptionsDeleter> options_;
    std::chrono::milliseconds drop_timeout_ = std::chrono::seconds(5);
};

} // namespace gateway

extern "C" {
inline void gateway_cpp_http_route(void *userdata, gw_http_exchange *exchange) {
    gateway::HttpExchange owned(exchange);
    try {
        (*static_cast<const gateway::HttpHandler *>(userdata))(std::move(owned));
    } catch (...) {
    }
}
inline void gateway_cpp_http_route_free(void *userdata) { delete static_cast<gateway::HttpHandler *>(userdata); }
}

namespace gateway {

/// What a Server tells its host. Each may be empty. Called on library threads (see gateway.h).
struct Callbacks {
    std::function<void(LogLevel, std::string_view)> log;
    /// The state and the result that came with it (Code::ok, lock_lost, timeout).
    std::function<void(State, Code)> state;
};

/// A request for one of the host's methods (on_request). Move-only, as it refers to its
/// server: answer it at once, or move it elsewhere and answer it later, from any thread, while
/// its Server lives.
class Request {
public:
    Request(const Request &) = delete;
    Request &operator=(const Request &) = delete;
    Request(Request &&) noexcept = default;
    Request &operator=(Request &&) noexcept = default;

    [[nodiscard]] gw_request_id id() const noexcept { return id_; }
    [[nodiscard]] const std::string &method() const noexcept { return method_; }
    /// The request's `params` as JSON (`null` when it had none).
    [[nodiscard]] const std::string &params() const noexcept { return params_; }
    [[nodiscard]] std::uint64_t conn_id() const noexcept { return conn_id_; }

    /// Answers with `payload` (JSON). false when the request no longer waits (answered, timed
    /// out, client gone); throws Error when `payload` is not JSON.
    [[nodiscard]] bool respond(std::string_view payload) const {
        return detail::found(gw_respond(server_, id_, true, payload.data(), payload.size()));
    }
    /// Answers with an error object `{"code", "message", "details"?}`; as respond.
    [[nodiscard]] bool fail(std::string_view error) const {
        return detail::found(gw_respond(server_, id_, false, error.data(), error.size()));
    }

private:
    friend void ::gateway_cpp_request(void *, gw_server *, gw_request_id, const char *, std::size_t, const char *,
                                      std::size_t, std::uint64_t);
    Request(gw_server *server, gw_request_id id, std::string method, std::string params, std::uint64_t conn_id)
        : server_(server), id_(id), method_(std::move(method)), params_(std::move(params)), conn_id_(conn_id) {}

    gw_server *server_;
    gw_request_id id_;
    std::string method_;
    std::string params_;
    std::uint64_t conn_id_;
};

/// A client that completed the handshake (`opened`) or is gone (`!opened`), given to
/// Handlers::on_connection; it may come before Server::serve returns, and a connection's
/// opened comes before its requests. Valid only during the call; it can already talk to the
/// connection and the others.
class ConnectionEvent {
public:
    ConnectionEvent(const ConnectionEvent &) = delete;
    ConnectionEvent &operator=(const ConnectionEvent &) = delete;

    [[nodiscard]] std::uint64_t conn_id() const noexcept { return conn_id_; }
    [[nodiscard]] bool opened() const noexcept { return opened_; }
    /// `{"connId", "client": {...}, "role", "scopes", "protocol", "peer", "origin"?}`.
    [[nodiscard]] std::string_view client_json() const noexcept { return client_json_; }

    /// Sends `event` to this connection, with its next seq, when the event's gate admits it
    /// (as broadcast would); false when it is gone. Throws Error otherwise.
    [[nodiscard]] bool send_event(const std::string &event, std::string_view json) const {
        return detail::found(gw_send_event(server_, conn_id_, event.c_str(), json.data(), json.size()));
    }
    /// Sends `event` to every authenticated client; throws Error.
    void broadcast(const std::string &event, std::string_view json) const {
        detail::check(gw_broadcast(server_, event.c_str(), json.data(), json.size()));
    }

private:
    friend void ::gateway_cpp_connection(void *, gw_server *, std::uint64_t, bool, const char *, std::size_t);
    ConnectionEvent(gw_server *server, std::uint64_t conn_id, bool opened, std::string_view client_json)
        : server_(server), conn_id_(conn_id), opened_(opened), client_json_(client_json) {}

    gw_server *server_;
    std::uint64_t conn_id_;
    bool opened_;
    std::string_view client_json_;
};

/// The methods the host serves (each answered by a std::function, with the scope a caller
/// needs), the events it sends, and connection notifications. Given to Server::serve, which
/// refuses what the library refuses (a method twice, "connect", an empty name); the functions
/// are called on gateway worker threads and must not block.
class Handlers {
public:
    using Method = std::function<void(Request)>;
    using Connection = std::function<void(const ConnectionEvent &)>;

    /// A method needing the scope OpenClaw's own method of that name needs, else
    /// operator.admin (gw_handlers_add_method with a NULL scope).
    Handlers &method(std::string name, Method answer) { return add(std::move(name), std::nullopt, std::move(answer)); }
    /// A method that needs `scope` (an operator scope, e.g. "operator.read"), or only node
    /// hosts may call ("node").
    Handlers &method(std::string name, std::string scope, Method answer) {
        return add(std::move(name), std::move(scope), std::move(answer));
    }
    /// An event listed in hello-ok's features.events, broadcast to the operators holding the
    /// scope OpenClaw gives an event of that name, else operator.read (gw_handlers_add_event).
    Handlers &event(std::string name) {
        events_.push_back({std::move(name), std::nullopt});
        return *this;
    }
    /// An event broadcast only to the operators holding `scope`, e.g. "operator.pairing"
    /// (gw_handlers_add_event_with_scope; refused for the events the gateway itself emits).
    Handlers &event(std::string name, std::string scope) {
        events_.push_back({std::move(name), std::move(scope)});
        return *this;
    }
    /// Called when a client completes the handshake (opened) and when it is gone.
    Handlers &on_connection(Connection connection) {
        connection_ = std::move(connection);
        return *this;
    }

private:
    friend class Server;
    struct Entry {
        std::string name;
        std::optional<std::string> scope;
        Method answer;
    };
    Handlers &add(std::string name, std::optional<std::string> scope, Method answer) {
        methods_.push_back(Entry{std::move(name), std::move(scope), std::move(answer)});
        return *this;
    }

    std::vector<Entry> methods_;
    struct Event {
        std::string name;
        std::optional<std::string> scope;
    };
    std::vector<Event> events_;
    Connection connection_;
};

namespace detail {
/// The userdata of a Server's gw_callbacks, freed by the library through free_userdata.
struct ServerState {
    Callbacks callbacks;
    std::map<std::string, Handlers::Method, std::less<>> methods;
    Handlers::Connection connection;
};
} // namespace detail

} // namespace gateway

// The trampolines have C linkage, as the callback types of gateway.h do.
extern "C" {
inline void gateway_cpp_log(void *userdata, gw_log_level level, const char *message, std::size_t len) {
    auto &callbacks = static_cast<gateway::detail::ServerState *>(userdata)->callbacks;
    try {
        if (callbacks.log) callbacks.log(static_cast<gateway::LogLevel>(level), std::string_view(message, len));
    } catch (...) {
    }
}
inline void gateway_cpp_state(void *userdata, gw_state state, gw_result result) {
    auto &callbacks = static_cast<gateway::detail::ServerState *>(userdata)->callbacks;
    try {
        if (callbacks.state) callbacks.state(static_cast<gateway::State>(state), static_cast<gateway::Code>(result));
    } catch (...) {
    }
}
inline void gateway_cpp_request(void *userdata, gw_server *server, gw_request_id request, const char *method,
                                std::size_t method_len, const char *params_json, std::size_t params_len,
                                std::uint64_t conn_id) {
    auto *state = static_cast<gateway::detail::ServerState *>(userdata);
    static const char failed[] = "{\"code\":\"UNAVAILABLE\",\"message\":\"the method handler failed\"}";
    try {
        auto entry = state->methods.find(std::string_view(method, method_len));
        if (entry == state->methods.end() || !entry->second) {
            gw_respond(server, request, false, failed, sizeof failed - 1);
            return;
        }
        entry->second(gateway::Request(server, request, std::string(method, method_len),
                                       std::string(params_json, params_len), conn_id));
    } catch (...) {
        gw_respond(server, request, false, failed, sizeof failed - 1);
    }
}
inline void gateway_cpp_connection(void *userdata, gw_server *server, std::uint64_t conn_id, bool opened,
                                   const char *client_json, std::size_t len) {
    auto &connection = static_cast<gateway::detail::ServerState *>(userdata)->connection;
    try {
        if (connection) connection(gateway::ConnectionEvent(server, conn_id, opened, std::string_view(client_json, len)));
    } catch (...) {
    }
}
inline void gateway_cpp_free(void *userdata) { delete static_cast<gateway::detail::ServerState *>(userdata); }
}

namespace gateway {

/// A running gateway (gw_server). Move-only; destroying it shuts down with the ServeOptions'
/// drop_timeout (default 5 s).
class Server {
public:
    /// Serves on the lock (which is consumed, also on failure) with the host's callbacks,
    /// methods and serve options; throws Error.
    [[nodiscard]] static Server serve(Lock &&lock, Callbacks callbacks = {}, Handlers handlers = {},
                                      const ServeOptions &options = ServeOptions()) {
        return try_serve(std::move(lock), std::move(callbacks), std::move(handlers), options).value();
    }

    static Result<Server> try_serve(Lock &&lock, Callbacks callbacks = {}, Handlers handlers = {},
                                    const ServeOptions &options = ServeOptions()) {
        auto refuse = [&lock](gw_result result) {
            Error error = Error::last(result);
            lock.release(); // consumed on failure too, as gw_serve does
            return error;
        };
        std::unique_ptr<gw_handlers, detail::HandlersDeleter> registered(gw_handlers_new());
        if (!registered) return refuse(GW_ERR_PANIC);
        auto state = std::make_unique<detail::ServerState>();
        for (auto &entry : handlers.methods_) {
            gw_result result = gw_handlers_add_method(registered.get(), entry.name.c_str(),
                                                      entry.scope ? entry.scope->c_str() : nullptr);
            if (result != GW_OK) return refuse(result);
            state->methods.emplace(std::move(entry.name), std::move(entry.answer));
        }
        for (const auto &event : handlers.events_) {
            gw_result result = gw_handlers_add_event_with_scope(registered.get(), event.name.c_str(),
                                                                event.scope ? event.scope->c_str() : nullptr);
            if (result != GW_OK) return refuse(result);
        }
        state->callbacks = std::move(callbacks);
        state->connection = std::move(handlers.connection_);
        gw_callbacks c{};
        c.size = sizeof c;
        detail::ServerState &hooks = *state;
        c.userdata = state.release(); // the library's from here: freed through free_userdata
        // Without a log of its own, the server keeps the lock's (Options::log, or stderr).
        if (hooks.callbacks.log) c.log = gateway_cpp_log;
        if (hooks.callbacks.state) c.state = gateway_cpp_state;
        c.free_userdata = gateway_cpp_free;
        c.on_request = gateway_cpp_request;
        c.on_connection = gateway_cpp_connection;
        c.handlers = registered.get();
        gw_server *server = nullptr;
        gw_result result = gw_serve(lock.into_raw(), &c, options.get(), &server);
        if (result != GW_OK) return Error::last(result);
        return Server(server, options.drop_timeout_);
    }

    Server(Server &&other) noexcept
        : server_(std::exchange(other.server_, nullptr)), drop_timeout_(other.drop_timeout_) {}
    Server &operator=(Server &&other) noexcept {
        if (this != &other) {
            (void)shutdown(drop_timeout_);
            server_ = std::exchange(other.server_, nullptr);
            drop_timeout_ = other.drop_timeout_;
        }
        return *this;
    }
    Server(const Server &) = delete;
    Server &operator=(const Server &) = delete;
    /// Shuts down with the ServeOptions' drop_timeout (gw_serve_options_set_drop_timeout_ms).
    ~Server() { (void)shutdown(drop_timeout_); }

    [[nodiscard]] std::uint16_t port() const noexcept { return gw_server_port(server_); }
    /// WebSocket connections open now, authenticated or not.
    [[nodiscard]] std::size_t connection_count() const noexcept { return gw_server_connection_count(server_); }
    /// Cluster mode: Lock::fencing_token of the lock served on; nullopt without cluster mode.
    [[nodiscard]] std::optional<std::uint64_t> fencing_token() const {
        std::uint64_t token = 0;
        if (!detail::found(gw_server_fencing_token(server_, &token))) return std::nullopt;
        return token;
    }
    /// Cluster mode: false from the moment the server stops serving as leader (the state
    /// callback then hears State::lock_lost with Code::leadership_lost).
    [[nodiscard]] bool is_leader() const noexcept { return gw_server_is_leader(server_); }

    /// Answers request `id` (gw_respond): `ok` with a JSON payload, or not with an error object
    /// `{"code", "message", "details"?}`. false when the request no longer waits; throws Error
    /// for JSON that is not. Any thread, while the Server lives.
    [[nodiscard]] bool respond(gw_request_id id, bool ok, std::string_view json) const {
        return detail::found(gw_respond(server_, id, ok, json.data(), json.size()));
    }
    /// Sends `event` with a JSON payload to every authenticated client; throws Error.
    void broadcast(const std::string &event, std::string_view json) const {
        detail::check(gw_broadcast(server_, event.c_str(), json.data(), json.size()));
    }
    /// Sends `event` to one client, with its next seq, when the event's gate admits it (as
    /// broadcast would); false when it is not connected. Throws Error otherwise.
    [[nodiscard]] bool send_event(std::uint64_t conn_id, const std::string &event, std::string_view json) const {
        return detail::found(gw_send_event(server_, conn_id, event.c_str(), json.data(), json.size()));
    }
    /// Replaces what `health` answers with a JSON snapshot and sends it as a `health` event;
    /// throws Error for JSON that is not.
    void set_health(std::string_view snapshot_json) const {
        detail::check(gw_set_health(server_, snapshot_json.data(), snapshot_json.size()));
    }
    /// The presence list as a JSON array, newest first: the gateway's own row and one per
    /// non-ephemeral client of the last five minutes (gw_server_presence). Throws Error.
    [[nodiscard]] std::string presence() const {
        detail::PresenceReply reply;
        detail::check(gw_server_presence(server_, gateway_cpp_presence, &reply));
        if (reply.error) std::rethrow_exception(reply.error);
        return std::move(reply.json);
    }

    /// The pending pairing requests, oldest first, as a JSON array (see gw_pairing_fn).
    [[nodiscard]] std::string pairing_requests() const {
        char *json = nullptr;
        detail::check(gw_pairing_requests(server_, &json));
        return detail::take_string(json);
    }
    /// Approves a pending request with its requested scopes or `scopes` and broadcasts
    /// `device.pair.resolved`; false when no such request is pending. Throws Error otherwise
    /// (the store could not be saved: nothing changed).
    [[nodiscard]] bool approve_pairing(const std::string &request_id,
                                       const std::optional<std::vector<std::string>> &scopes = std::nullopt) const {
        if (!scopes) return detail::found(gw_pairing_approve(server_, request_id.c_str(), nullptr));
        std::string json = detail::json_strings(*scopes);
        return detail::found(gw_pairing_approve(server_, request_id.c_str(), json.c_str()));
    }
    /// Rejects a pending request; false when no such request is pending.
    [[nodiscard]] bool reject_pairing(const std::string &request_id) const {
        return detail::found(gw_pairing_reject(server_, request_id.c_str()));
    }
    /// The paired devices, oldest approval first, as a JSON array (see gw_paired_devices).
    [[nodiscard]] std::string paired_devices() const {
        char *json = nullptr;
        detail::check(gw_paired_devices(server_, &json));
        return detail::take_string(json);
    }
    /// Unpairs a device (its tokens and pending requests go too) and closes its live
    /// connections, in every role, with 4001 `device removed`; false when it is not paired.
    [[nodiscard]] bool remove_paired_device(const std::string &device_id) const {
        return detail::found(gw_paired_device_remove(server_, device_id.c_str()));
    }
    /// Revokes a device's token for `role`: connects presenting it are refused, the device must
    /// pair again for the role, and its live connections in that role are closed with 4001
    /// `device removed`; false when it has no active one.
    [[nodiscard]] bool revoke_device_token(const std::string &device_id, const std::string &role) const {
        return detail::found(gw_device_token_revoke(server_, device_id.c_str(), role.c_str()));
    }
    /// Issues a bootstrap token (a setup code) for the profile `profile_json`, e.g.
    /// `{"roles":["node"],"scopes":[],"ttlMs":600000}` (see gw_bootstrap_token_issue): a device
    /// that connects with it pairs with that profile, once. Throws Error (INVALID_ARGUMENT for
    /// a profile with no role or a zero ttlMs).
    [[nodiscard]] std::string issue_bootstrap_token(const std::string &profile_json) const {
        char *token = nullptr;
        detail::check(gw_bootstrap_token_issue(server_, profile_json.c_str(), &token));
        return detail::take_string(token);
    }

    /// Graceful shutdown; true when every connection finished within `timeout`. The port is
    /// free and the lock released either way. A no-op (true) once shut down.
    [[nodiscard]] bool shutdown(std::chrono::milliseconds timeout = std::chrono::seconds(5)) noexcept {
        if (server_ == nullptr) return true;
        auto ms = timeout.count() < 0 ? 0 : timeout.count() > 0xFFFFFFFFll ? 0xFFFFFFFFll : timeout.count();
        gw_result result = gw_shutdown(std::exchange(server_, nullptr), static_cast<std::uint32_t>(ms));
        return result == GW_OK;
    }

private:
    Server(gw_server *server, std::chrono::milliseconds drop_timeout) : server_(server), drop_timeout_(drop_timeout) {}
    gw_server *server_;
    std::chrono::milliseconds drop_timeout_;
};

} // namespace gateway

#endif // GATEWAY_HPP
