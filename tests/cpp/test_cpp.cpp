// The C++ wrapper (bindings/cpp/gateway.hpp): built with -std=c++17 -Wall -Wextra -Wpedantic
// -Werror and run by tests/c_abi.rs, normally, under ASan+UBSan and under valgrind.
//
//   test_cpp <dir>    every case; prints "ok <case>" for each, "FAIL ..." and exit 1 on failure
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "gateway.hpp"

std::string tu2_error_name(gateway::Code code);

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);         \
            std::exit(1);                                                                \
        }                                                                                \
    } while (0)

using namespace std::chrono_literals;
namespace fs = std::filesystem;

static_assert(!std::is_copy_constructible_v<gateway::Options>, "Options is move-only");
static_assert(!std::is_copy_constructible_v<gateway::Lock>, "Lock is move-only");
static_assert(!std::is_copy_constructible_v<gateway::Server>, "Server is move-only");
static_assert(std::is_nothrow_move_constructible_v<gateway::Server>, "Server moves");
static_assert(!std::is_copy_constructible_v<gateway::ServeOptions>, "ServeOptions is move-only");
static_assert(!std::is_copy_constructible_v<gateway::Request>, "a Request refers to its server");
static_assert(std::is_move_constructible_v<gateway::Request>, "a Request can be answered later");
static_assert(!std::is_copy_constructible_v<gateway::HttpExchange>, "an HttpExchange owns its exchange");
static_assert(std::is_nothrow_move_constructible_v<gateway::HttpExchange>, "an exchange can be answered later");
static_assert(!std::is_copy_constructible_v<gateway::ConnectionEvent>, "a ConnectionEvent refers to its server");
// The scoped enums carry the C numbers, never a conversion from them.
static_assert(!std::is_convertible_v<gateway::Code, std::uint32_t>, "Code is scoped");
static_assert(static_cast<std::uint32_t>(gateway::Code::not_found) == GW_ERR_NOT_FOUND, "same numbers");
static_assert(static_cast<std::uint32_t>(gateway::State::stopped) == GW_STATE_STOPPED, "same numbers");
static_assert(static_cast<std::uint32_t>(gateway::LogLevel::error) == GW_LOG_ERROR, "same numbers");

// The next of the ports tests/c_abi.rs gives this program (GATEWAY_TEST_PORTS, comma-separated,
// outside the kernel's ephemeral range, so no outgoing connection can take one between a
// case's shutdown and its check that the port is free); 0, the kernel's choice, without them.
static std::uint16_t next_test_port() {
    static const char *cursor = std::getenv("GATEWAY_TEST_PORTS");
    if (cursor == nullptr || *cursor == '\0') return 0;
    char *end = nullptr;
    unsigned long port = std::strtoul(cursor, &end, 10);
    cursor = *end == ',' ? end + 1 : end;
    return static_cast<std::uint16_t>(port);
}

static gateway::Options options_in(const fs::path &dir) {
    gateway::Options options;
    options.state_dir((dir / "state").string())
        .config_path((dir / "state" / "openclaw.json").string())
        .lock_dir((dir / "locks").string())
        .port(next_test_port())
        .timeout(300ms)
        .poll_interval(20ms);
    return options;
}

static std::size_t lock_files(const fs::path &dir) {
    std::error_code error;
    auto it = fs::directory_iterator(dir / "locks", error);
    if (error) return 0;
    return static_cast<std::size_t>(std::distance(it, fs::directory_iterator()));
}

// A minimal WebSocket client for the loopback gateway, enough to send requests and read
// frames: text frames only, masked as a client must, no fragmentation (the gateway sends none).
class WsClient {
  public:
    explicit WsClient(std::uint16_t port) {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(fd_ >= 0);
        timeval timeout{10, 0};
        CHECK(setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) == 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(::connect(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0);
        write_all("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
        std::string head;
        while (head.find("\r\n\r\n") == std::string::npos) head.push_back(read_byte());
        CHECK(head.rfind("HTTP/1.1 101", 0) == 0);
    }
    WsClient(const WsClient &) = delete;
    WsClient &operator=(const WsClient &) = delete;
    ~WsClient() { close(fd_); }

    void send_text(const std::string &text) {
        std::string frame(1, '\x81');
        const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
        if (text.size() < 126) {
            frame.push_back(static_cast<char>(0x80 | text.size()));
        } else {
            CHECK(text.size() < 65536);
            frame.push_back(static_cast<char>(0x80 | 126));
            frame.push_back(static_cast<char>(text.size() >> 8));
            frame.push_back(static_cast<char>(text.size() & 0xff));
        }
        frame.append(reinterpret_cast<const char *>(mask), 4);
        for (std::size_t i = 0; i < text.size(); i++) frame.push_back(static_cast<char>(text[i] ^ mask[i % 4]));
        write_all(frame);
    }

    // The next text frame's payload.
    std::string recv_text() {
        unsigned char opcode = read_byte() & 0x0f;
        std::uint64_t length = read_byte() & 0x7f;
        int extended = length == 126 ? 2 : length == 127 ? 8 : 0;
        if (extended > 0) length = 0;
        for (int i = 0; i < extended; i++) length = (length << 8) | read_byte();
        std::string payload;
        for (std::uint64_t i = 0; i < length; i++) payload.push_back(static_cast<char>(read_byte()));
        CHECK(opcode == 0x1);
        return payload;
    }

  private:
    unsigned char read_byte() {
        unsigned char byte = 0;
        CHECK(read(fd_, &byte, 1) == 1);
        return byte;
    }
    void write_all(const std::string &bytes) {
        CHECK(write(fd_, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
    }
    int fd_ = -1;
};

// One HTTP/1.1 request on its own connection (`Connection: close`): everything the server
// sent, read to the end.
static std::string http(std::uint16_t port, const std::string &head, const std::string &body = "") {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(::connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0);
    std::string request = head + "\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" + body;
    CHECK(write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size()));
    std::string response;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) response.append(buf, static_cast<std::size_t>(n));
    close(fd);
    return response;
}

static bool contains(const std::string &haystack, const char *needle) {
    return haystack.find(needle) != std::string::npos;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <dir>\n", argv[0]);
        return 2;
    }
    const fs::path base = argv[1];

    // Errors: exceptions carrying code and message, and Result for the try_* functions.
    {
        gateway::Options options;
        try {
            options.port(70000);
            CHECK(false);
        } catch (const gateway::Error &error) {
            CHECK(error.code() == gateway::Code::invalid_argument);
            CHECK(std::string(error.name()) == "GW_ERR_INVALID_ARGUMENT");
            CHECK(std::string(error.what()).find("70000") != std::string::npos);
            CHECK(!error.holder());
        }
        CHECK(tu2_error_name(gateway::Code::panic) == "GW_ERR_PANIC");
        CHECK(std::string(gateway::name(gateway::Code::lock_lost)) == "GW_ERR_LOCK_LOST");
        options.bind_lan();
        auto lock = gateway::Lock::try_acquire(options);
        CHECK(!lock.ok());
        CHECK(lock.error().code() == gateway::Code::invalid_argument);
        CHECK(std::string(lock.error().what()) == "Refusing to bind gateway to lan without auth.");
        std::printf("ok errors\n");
    }

    // Acquire, serve with callbacks, refuse a second acquisition, shut down from a thread.
    {
        const fs::path dir = base / "serve";
        auto options = options_in(dir);
        std::atomic<int> ready{0}, stopped{0}, logs{0};
        auto callbacks = std::make_shared<int>(0); // freed with the callbacks: use_count drops
        std::weak_ptr<int> alive = callbacks;
        gateway::Callbacks hooks;
        hooks.log = [&logs, callbacks](gateway::LogLevel, std::string_view message) {
            if (!message.empty()) logs++;
        };
        hooks.state = [&](gateway::State state, gateway::Code result) {
            if (state == gateway::State::ready) ready++;
            if (state == gateway::State::stopped && result == gateway::Code::ok) stopped++;
            throw std::runtime_error("swallowed at the C boundary");
        };
        callbacks.reset();

        gateway::Lock lock = gateway::Lock::acquire(options);
        const std::uint16_t port = lock.port();
        CHECK(port != 0 && lock_files(dir) == 2);
        gateway::Server server = gateway::Server::serve(std::move(lock), std::move(hooks));
        CHECK(!lock);
        CHECK(server.port() == port && ready == 1);

        try {
            (void)gateway::Lock::acquire(options);
            CHECK(false);
        } catch (const gateway::Error &error) {
            CHECK(error.code() == gateway::Code::already_running);
            std::string want = "gateway already running (pid " + std::to_string(getpid()) + ")";
            CHECK(std::string(error.what()).rfind(want, 0) == 0);
            // The holder as typed values, not parsed from the message.
            CHECK(error.holder() && error.holder()->pid == static_cast<std::uint32_t>(getpid()));
            CHECK(error.holder()->port == port);
        }
        // status asks /healthz once, with a 1 s budget: under valgrind on a loaded machine the
        // instrumented server in this process can take longer to answer, so ask again while it
        // says unhealthy, for at most 30 tries.
        gateway::Status found = gateway::status(options);
        for (int i = 0; i < 30 && !found.healthy; i++) found = gateway::status(options);
        CHECK(found.running && found.healthy && found.pid == static_cast<std::uint32_t>(getpid()));

        gateway::Server moved = std::move(server);
        CHECK(server.port() == 0 && moved.port() == port);
        bool drained = false;
        std::thread([&] { drained = moved.shutdown(2s); }).join();
        CHECK(drained && stopped == 1 && logs >= 1);
        CHECK(lock_files(dir) == 0);
        CHECK(moved.shutdown()); // a no-op once shut down
        for (int i = 0; i < 400 && !alive.expired(); i++) std::this_thread::sleep_for(5ms);
        CHECK(alive.expired()); // the library freed the callbacks
        std::printf("ok serve\n");
    }

    // RAII: a Lock or Server that goes out of scope gives everything back.
    {
        const fs::path dir = base / "raii";
        auto options = options_in(dir);
        {
            gateway::Lock lock = gateway::Lock::acquire(options);
            CHECK(lock_files(dir) == 2);
        }
        CHECK(lock_files(dir) == 0);
        {
            auto server = gateway::Server::serve(gateway::Lock::acquire(options));
            CHECK(lock_files(dir) == 2);
        }
        CHECK(lock_files(dir) == 0);
        std::printf("ok raii\n");
    }

    // Handlers: methods (with scopes) and events registered, answered and sent through Server.
    {
        const fs::path dir = base / "handlers";
        auto options = options_in(dir);
        gateway::Handlers handlers;
        handlers.method("echo", "operator.read", [](gateway::Request request) {
                    (void)request.respond("{\"echo\":" + request.params() + "}");
                })
            .method("boom", [](gateway::Request) { throw std::runtime_error("answered UNAVAILABLE"); })
            .method("node.report", "node", [](gateway::Request request) { (void)request.respond("{}"); })
            .event("demo.tick")
            .event("demo.pair", "operator.pairing")
            .on_connection([](const gateway::ConnectionEvent &event) {
                if (event.opened()) (void)event.send_event("demo.tick", "{\"hello\":true}");
            });
        gateway::ServeOptions serve_options;
        serve_options.request_timeout(1s).worker_threads(1).allow_origin("https://app.example.com");
        auto server = gateway::Server::serve(gateway::Lock::acquire(options), {}, std::move(handlers), serve_options);
        CHECK(server.connection_count() == 0);
        server.set_health("{\"ok\":true,\"source\":\"cpp\"}");
        try {
            server.set_health("{");
            CHECK(false);
        } catch (const gateway::Error &error) {
            CHECK(error.code() == gateway::Code::invalid_argument);
        }
        CHECK(!server.respond(12345, true, "{}")); // no such request
        server.broadcast("demo.tick", "{\"n\":1}"); // nobody listens: fine
        CHECK(!server.send_event(999, "demo.tick", "{}"));
        // A client holding operator.read: node.report is for node hosts only, demo.pair for
        // operator.pairing holders, demo.tick (sent by on_connection) for operator.read holders.
        {
            WsClient client(server.port());
            CHECK(contains(client.recv_text(), "\"connect.challenge\""));
            client.send_text(R"({"type":"req","id":"c","method":"connect","params":{"minProtocol":4,)"
                             R"("maxProtocol":4,"scopes":["operator.read"],)"
                             R"("client":{"id":"gateway-client","version":"1","platform":"linux","mode":"backend"}}})");
            CHECK(contains(client.recv_text(), "\"hello-ok\""));
            CHECK(contains(client.recv_text(), R"("event":"demo.tick","payload":{"hello":true},"seq":1)"));
            client.send_text(R"({"type":"req","id":"n","method":"node.report"})");
            const std::string refused = client.recv_text();
            CHECK(contains(refused, R"("id":"n","ok":false)"));
            CHECK(contains(refused, R"("message":"unauthorized role: operator")"));
            server.broadcast("demo.pair", "{\"n\":2}");
            server.set_health("{\"ok\":true}");
            // The next event is health, the client's second: demo.pair did not reach it.
            const std::string health = client.recv_text();
            CHECK(contains(health, R"("event":"health")") && contains(health, R"("seq":2)"));
        }
        try {
            (void)server.respond(1, false, "{\"code\":1}");
            CHECK(false);
        } catch (const gateway::Error &error) {
            CHECK(error.code() == gateway::Code::invalid_argument);
        }
        try {
            server.broadcast("demo.tick", "not json");
            CHECK(false);
        } catch (const gateway::Error &error) {
            CHECK(error.code() == gateway::Code::invalid_argument);
        }
        // Invalid registrations are refused before serving (the Rust rules), and the lock is
        // given back.
        gateway::Handlers bad;
        bad.method("connect", [](gateway::Request) {});
        auto refused = gateway::Server::try_serve(gateway::Lock::acquire(options_in(base / "bad")), {}, std::move(bad));
        CHECK(!refused.ok() && refused.error().code() == gateway::Code::invalid_argument);
        CHECK(lock_files(base / "bad") == 0);
        gateway::Handlers twice;
        twice.method("m", [](gateway::Request) {}).method("m", "operator.read", [](gateway::Request) {});
        auto duplicate = gateway::Server::try_serve(gateway::Lock::acquire(options_in(base / "twice")), {}, std::move(twice));
        CHECK(!duplicate.ok() && duplicate.error().code() == gateway::Code::invalid_argument);
        CHECK(std::string(duplicate.error().what()) == "method \"m\" is registered twice: register each method once");
        CHECK(lock_files(base / "twice") == 0);
        gateway::Handlers odd;
        odd.event("demo.odd", "everyone");
        auto unscoped = gateway::Server::try_serve(gateway::Lock::acquire(options_in(base / "odd")), {}, std::move(odd));
        CHECK(!unscoped.ok() && unscoped.error().code() == gateway::Code::invalid_argument);
        CHECK(std::string(unscoped.error().what()).rfind("the scope of event \"demo.odd\" is \"everyone\"", 0) == 0);
        CHECK(lock_files(base / "odd") == 0);
        CHECK(server.shutdown(2s));
        CHECK(lock_files(dir) == 0);
        std::printf("ok handlers\n");
    }

    // ServeOptions: a value the library refuses throws its message; the options keep theirs.
    {
        gateway::ServeOptions options;
        try {
            options.worker_threads(0);
            CHECK(false);
        } catch (const gateway::Error &error) {
            CHECK(error.code() == gateway::Code::invalid_argument);
            CHECK(std::string(error.what()) == "worker_threads is 0: give it a value of at least 1 (or leave the default)");
        }
        try {
            options.request_timeout(-1ms);
            CHECK(false);
        } catch (const gateway::Error &error) {
            CHECK(error.code() == gateway::Code::invalid_argument);
        }
        try {
            options.server_version("");
            CHECK(false);
        } catch (const gateway::Error &error) {
            CHECK(error.code() == gateway::Code::invalid_argument);
        }
        options.drop_timeout(0ms)
            .handshake_timeout(5s)
            .tick_interval(1s)
            .ping_interval(1s)
            .max_connections(3)
            .max_preauth_payload(1024)
            .max_payload(4096)
            .max_buffered_bytes(8192)
            .auth_throttle(2, 1s, 2s)
            .server_version("cpp-host 1")
            .build_id("cpp-build 1")
            .capability("cpp-contract-v1")
            .challenge_capability("cpp-connect-v1")
            .health_refresh_interval(60s);
        try {
            options.build_id(std::string(97, 'b'));
            CHECK(false);
        } catch (const gateway::Error &error) {
            CHECK(std::string(error.what()) == "build_id is 97 characters long: OpenClaw clients accept at most 96");
        }
        // The health source is called at start; the library destroys it (and what it holds)
        // when the options and the server are gone.
        auto refreshes = std::make_shared<std::atomic<int>>(0);
        options.health_source([refreshes]() -> std::optional<std::string> {
            return "{\"ok\":true,\"refresh\":" + std::to_string(++*refreshes) + "}";
        });
        const fs::path dir = base / "serve_options";
        // The lock options' log outlives the Options (and the Lock): the Server keeps it.
        auto stops = std::make_shared<std::atomic<int>>(0);
        gateway::Lock lock = [&] {
            auto lock_options = options_in(dir);
            lock_options.log([stops](gateway::LogLevel, std::string_view message) {
                if (message.find("gateway stopped in ") != std::string_view::npos) (*stops)++;
            });
            return gateway::Lock::acquire(lock_options);
        }();
        auto server = gateway::Server::serve(std::move(lock), {}, {}, options);
        CHECK(server.port() != 0 && lock_files(dir) == 2);
        CHECK(*refreshes >= 1);
        // Presence: the gateway's own row, with the version the host set.
        const std::string presence = server.presence();
        CHECK(presence.front() == '[' && presence.back() == ']');
        CHECK(presence.find("\"reason\":\"self\"") != std::string::npos);
        CHECK(presence.find("\"version\":\"cpp-host 1\"") != std::string::npos);
        CHECK(server.shutdown(2s));
        CHECK(lock_files(dir) == 0 && *stops == 1);
        options = gateway::ServeOptions();
        // The server's last references go with its runtime's threads, which may outlive
        // shutdown() by a moment (under valgrind especially).
        for (int i = 0; i < 500 && refreshes.use_count() > 1; i++) std::this_thread::sleep_for(10ms);
        CHECK(refreshes.use_count() == 1);
        std::printf("ok serve_options\n");
    }

    // The lock's extras: a socket the host hands over, loss seen from the lock, the log
    // lambda destroyed by the library, and ~Server shutting down with the drop timeout.
    {
        const fs::path dir = base / "lock_extras";
        auto guard = std::make_shared<int>(0);
        std::uint16_t port = 0;
        {
            auto options = options_in(dir);
            options.recheck_interval(20ms).log([guard](gateway::LogLevel, std::string_view) {});
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            sockaddr_in address{};
            address.sin_family = AF_INET;
            address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            socklen_t size = sizeof address;
            CHECK(fd >= 0 && bind(fd, reinterpret_cast<sockaddr *>(&address), sizeof address) == 0);
            CHECK(listen(fd, 16) == 0);
            CHECK(getsockname(fd, reinterpret_cast<sockaddr *>(&address), &size) == 0);
            port = ntohs(address.sin_port);
            auto lock = gateway::Lock::acquire_with_listener(options, fd);
            CHECK(lock.port() == port && !lock.is_lost());
            fs::remove(dir / "locks" / "gateway.state.lock");
            for (int i = 0; i < 500 && !lock.is_lost(); i++) std::this_thread::sleep_for(10ms);
            CHECK(lock.is_lost());
            // A refused fd is the library's too: closed.
            auto refused = gateway::Lock::try_acquire_with_listener(options, -1);
            CHECK(!refused && refused.error().code() == gateway::Code::invalid_argument);
        }
        for (int i = 0; i < 500 && guard.use_count() > 1; i++) std::this_thread::sleep_for(10ms);
        CHECK(guard.use_count() == 1); // the library destroyed the log lambda

        // A client that never answers the close: ~Server shuts down with drop_timeout (0), so
        // the client is cut off (Code::timeout); with the 5 s default it would have finished.
        auto stopped = std::make_shared<std::atomic<int>>(-1);
        gateway::ServeOptions serve_options;
        serve_options.drop_timeout(0ms);
        gateway::Callbacks callbacks;
        callbacks.state = [stopped](gateway::State state, gateway::Code code) {
            if (state == gateway::State::stopped) *stopped = static_cast<int>(code);
        };
        auto start = std::chrono::steady_clock::now();
        int client = -1;
        {
            auto server = gateway::Server::serve(gateway::Lock::acquire(options_in(dir / "drop")), callbacks, {},
                                                 serve_options);
            client = socket(AF_INET, SOCK_STREAM, 0);
            sockaddr_in address{};
            address.sin_family = AF_INET;
            address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            address.sin_port = htons(server.port());
            CHECK(connect(client, reinterpret_cast<sockaddr *>(&address), sizeof address) == 0);
            const char upgrade[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                   "Sec-WebSocket-Version: 13\r\n\r\n";
            CHECK(write(client, upgrade, sizeof upgrade - 1) == static_cast<ssize_t>(sizeof upgrade - 1));
            char reply[64] = {0};
            CHECK(read(client, reply, sizeof reply - 1) > 0 && std::string(reply).find("101") != std::string::npos);
            for (int i = 0; i < 500 && server.connection_count() == 0; i++) std::this_thread::sleep_for(10ms);
            CHECK(server.connection_count() == 1);
            start = std::chrono::steady_clock::now();
        } // ~Server, with the client still open
        CHECK(std::chrono::steady_clock::now() - start < 3s);
        close(client);
        CHECK(*stopped == static_cast<int>(gateway::Code::timeout));
        // A lock of another machine (issue 13): refused naming its host; removed only with force.
        {
            const fs::path other = dir / "other_host";
            fs::create_directories(other / "locks");
            fs::permissions(other / "locks", fs::perms::owner_all, fs::perm_options::replace);
            {
                std::ofstream file(other / "locks" / "gateway.state.lock");
                file << "{\"pid\":4242,\"createdAt\":\"2026-11-21T00:36:45.087Z\",\"port\":18789,"
                     << "\"hostname\":\"host-elsewhere\",\"bootId\":\"b-elsewhere\",\"machineId\":\"m-elsewhere\"}\n";
            }
            fs::permissions(other / "locks" / "gateway.state.lock", fs::perms::owner_read | fs::perms::owner_write,
                            fs::perm_options::replace);
            auto options = options_in(other);
            auto refused = gateway::Lock::try_acquire(options);
            CHECK(!refused && refused.error().code() == gateway::Code::held_by_other_host);
            CHECK(std::string(refused.error().name()) == "GW_ERR_HELD_BY_OTHER_HOST");
            const auto &holder = refused.error().holder();
            CHECK(holder && holder->pid == 4242u && holder->port == 18789 && holder->host == "host-elsewhere");
            try {
                (void)gateway::unlock(options);
                CHECK(false);
            } catch (const gateway::Error &error) {
                CHECK(error.code() == gateway::Code::held_by_other_host);
                CHECK(contains(error.what(), "run `gateway unlock --force`"));
            }
            CHECK(gateway::unlock(options, true) == 1);
            auto lock = gateway::Lock::acquire(options);
            try {
                (void)gateway::unlock(options, true);
                CHECK(false);
            } catch (const gateway::Error &error) {
                CHECK(error.code() == gateway::Code::already_running);
                CHECK(error.holder() && error.holder()->pid == static_cast<std::uint32_t>(getpid()));
                CHECK(!error.holder()->host);
            }
        }
        std::printf("ok lock_extras\n");
    }

    // Pairing: the policy function destroyed by the library, the store path checked, and the
    // Server's calls on requests written to the store beforehand.
    {
        const fs::path dir = base / "pairing";
        fs::create_directories(dir);
        const auto store = dir / "devices.json";
        const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
        {
            std::ofstream file(store);
            file << "{\"version\":1,\"devices\":[],\"pending\":[";
            for (char id : {'a', 'b'}) {
                file << (id == 'a' ? "" : ",") << "{\"requestId\":\"req-" << id << "\",\"deviceId\":\"dev-" << id
                     << "\",\"publicKey\":\"k\",\"clientId\":\"cli\",\"clientMode\":\"cli\",\"role\":\"operator\","
                     << "\"scopes\":[],\"isRepair\":false,\"ts\":" << now << "}";
            }
            file << "]}\n";
        }
        auto guard = std::make_shared<int>(0);
        {
            gateway::ServeOptions options;
            options.pairing_policy([guard](std::string_view, std::string_view) {
                return gateway::PairingDecision::approve(std::vector<std::string>{"operator.read"});
            });
            try {
                options.pairing_store_path("relative.json");
                CHECK(false);
            } catch (const gateway::Error &error) {
                CHECK(error.code() == gateway::Code::invalid_argument);
                CHECK(std::string(error.what()).find("is relative") != std::string::npos);
            }
            options.pairing_store_path(store.string());
            auto server = gateway::Server::serve(gateway::Lock::acquire(options_in(dir)), {}, {}, options);
            const std::string requests = server.pairing_requests();
            CHECK(requests.find("\"req-a\"") != std::string::npos && requests.find("\"req-b\"") != std::string::npos);
            CHECK(server.approve_pairing("req-a", std::vector<std::string>{"operator.read", "quote\"d"}));
            CHECK(!server.approve_pairing("req-a"));
            CHECK(server.reject_pairing("req-b"));
            CHECK(!server.reject_pairing("req-b"));
            CHECK(server.pairing_requests() == "[]");
            const std::string devices = server.paired_devices();
            CHECK(devices.find("\"scopes\":[\"operator.read\",\"quote\\\"d\"]") != std::string::npos);
            CHECK(server.revoke_device_token("dev-a", "operator")); // approval issued it
            CHECK(!server.revoke_device_token("dev-a", "operator"));
            CHECK(server.remove_paired_device("dev-a"));
            CHECK(!server.remove_paired_device("dev-a"));
            CHECK(server.paired_devices() == "[]");
            CHECK(server.issue_bootstrap_token(R"({"roles":["node"],"ttlMs":60000})").size() == 43);
            try {
                (void)server.issue_bootstrap_token(R"({"roles":[]})");
                CHECK(false);
            } catch (const gateway::Error &error) {
                CHECK(error.code() == gateway::Code::invalid_argument);
                CHECK(std::string(error.what()).find("names no role") != std::string::npos);
            }
            CHECK(server.shutdown(2s));
        }
        CHECK(guard.use_count() == 1); // the library destroyed the policy
        std::printf("ok pairing\n");
    }

    {
        // HTTP routes: answered inline, or moved to a thread of the host's that reads the body
        // and streams it back; a handler that throws answers 500; bad routes throw.
        fs::path dir = base / "http";
        auto lock = gateway::Lock::acquire(options_in(dir));
        auto handlers_alive = std::make_shared<int>(0);
        std::vector<std::thread> workers;
        std::mutex workers_lock;
        std::atomic<bool> refused_inside{false};
        gateway::ServeOptions options;
        options.http_route({"GET", "/hello"}, [handlers_alive](gateway::HttpExchange exchange) {
            std::string text = "hello " + std::string(exchange.query()) + " " +
                               std::string(exchange.header("x-name").value_or("nobody"));
            CHECK(exchange.respond(200, text, R"({"content-type":"text/plain"})"));
            CHECK(!exchange.respond(200, "again")); // answered already
        });
        options.http_route({"POST", "/echo", true, false, 1 << 20},
                           [&, handlers_alive](gateway::HttpExchange exchange) {
                               try {
                                   char byte;
                                   (void)exchange.read(&byte, 1);
                               } catch (const gateway::Error &error) {
                                   refused_inside = error.code() == gateway::Code::wrong_thread;
                               }
                               std::lock_guard<std::mutex> guard(workers_lock);
                               workers.emplace_back([exchange = std::move(exchange)] {
                                   std::string body = exchange.read_all();
                                   CHECK(exchange.start(200, R"({"content-type":"application/octet-stream"})"));
                                   CHECK(exchange.write(std::string(exchange.path()) + ":"));
                                   CHECK(exchange.write(body));
                                   CHECK(exchange.finish());
                                   CHECK(!exchange.finish());
                               });
                           });
        options.http_route({"", "/throws"}, [](gateway::HttpExchange) { throw std::runtime_error("no"); });
        options.strict_transport_security("max-age=60")
            .websocket_path("/ws")
            .http_max_header_bytes(32768)
            .http_header_timeout(30s)
            .http_body_idle_timeout(30s)
            .control_ui((dir / "ui").string(), "/openclaw")
            .control_ui_config(R"({"assistantName":"C++ host"})")
            .control_ui_environment(std::nullopt)
            .control_ui_bundled(false)
            .control_ui_terminal(false);
        fs::create_directories(dir / "ui");
        std::ofstream(dir / "ui" / "index.html") << "<!doctype html><title>cpp-ui</title>\n";
        try {
            options.control_ui_config("[1]");
            CHECK(false);
        } catch (const gateway::Error &error) {
            CHECK(error.code() == gateway::Code::invalid_argument);
        }
        try {
            options.http_route({"GET", "relative"}, [](gateway::HttpExchange) {});
            CHECK(false);
        } catch (const gateway::Error &error) {
            CHECK(error.code() == gateway::Code::invalid_argument);
            CHECK(contains(error.what(), "does not start with '/'"));
        }
        try {
            options.http_route({"GET", "/zero", false, false, 0}, [](gateway::HttpExchange) {});
            CHECK(false);
        } catch (const gateway::Error &error) {
            CHECK(contains(error.what(), "max_body_bytes is 0"));
        }
        {
            auto server = gateway::Server::serve(std::move(lock), {}, {}, options);
            std::string hello = http(server.port(), "GET /hello?x=1 HTTP/1.1\r\nX-Name: cpp");
            CHECK(hello.rfind("HTTP/1.1 200", 0) == 0);
            CHECK(contains(hello, "\r\n\r\nhello x=1 cpp"));
            CHECK(contains(hello, "\r\nstrict-transport-security: max-age=60\r\n"));
            std::string upgrade = "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13";
            CHECK(http(server.port(), "GET / HTTP/1.1" + upgrade).rfind("HTTP/1.1 404", 0) == 0);
            std::string echo = http(server.port(), "POST /echo/a HTTP/1.1\r\nContent-Length: 5", "12345");
            CHECK(echo.rfind("HTTP/1.1 200", 0) == 0);
            CHECK(contains(echo, "transfer-encoding: chunked"));
            CHECK(contains(echo, "/echo/a:") && contains(echo, "12345") && contains(echo, "\r\n0\r\n\r\n"));
            CHECK(refused_inside);
            CHECK(http(server.port(), "PUT /throws HTTP/1.1\r\nContent-Length: 0").rfind("HTTP/1.1 500", 0) == 0);
            std::lock_guard<std::mutex> guard(workers_lock);
            for (auto &worker : workers) worker.join();
            CHECK(server.shutdown(2s));
        }
        options = gateway::ServeOptions();
        CHECK(handlers_alive.use_count() == 1); // the library destroyed every route's function
        std::printf("ok http_routes\n");
    }

    std::printf("all ok\n");
    return 0;
}
