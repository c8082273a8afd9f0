// Cluster mode through the C++ wrapper (bindings/cpp/gateway.hpp) against a real etcd, whose
// client URLs come in GATEWAY_TEST_ETCD: built with -std=c++17 -Wall -Wextra -Wpedantic -Werror
// and run by tests/c_abi.rs, normally and under ASan+UBSan.
//
//   test_cpp_cluster <dir>    every case; prints "ok <case>" for each, "FAIL ..." and exit 1
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <type_traits>

#include "gateway.hpp"

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            std::exit(1);                                                        \
        }                                                                        \
    } while (0)

using namespace std::chrono_literals;
namespace fs = std::filesystem;

static_assert(!std::is_copy_constructible_v<gateway::Cancel>, "Cancel owns its gw_cancel");
static_assert(static_cast<std::uint32_t>(gateway::Code::cancelled) == GW_ERR_CANCELLED, "same numbers");

// See tests/cpp/test_cpp.cpp.
static std::uint16_t next_test_port() {
    static const char *cursor = std::getenv("GATEWAY_TEST_PORTS");
    if (cursor == nullptr || *cursor == '\0') return 0;
    char *end = nullptr;
    unsigned long port = std::strtoul(cursor, &end, 10);
    cursor = *end == ',' ? end + 1 : end;
    return static_cast<std::uint16_t>(port);
}

// The gateway of "host" `host` (a directory of its own) in cluster `cluster`.
static gateway::Options host_options(const fs::path &dir, const char *etcd, const std::string &cluster) {
    gateway::Options options;
    options.state_dir((dir / "state").string())
        .config_path((dir / "state" / "openclaw.json").string())
        .lock_dir((dir / "locks").string())
        .port(next_test_port())
        .timeout(300ms)
        .cluster_etcd(std::vector<std::string>{etcd})
        .cluster_name(cluster)
        // Long: no case waits a lease out, and a loaded machine under valgrind must not miss a
        // renew deadline (which fences the leader) mid-case.
        .cluster_ttl(std::chrono::seconds(30));
    return options;
}

int main(int argc, char **argv) {
    const char *etcd = std::getenv("GATEWAY_TEST_ETCD");
    if (argc != 2 || etcd == nullptr) {
        std::fprintf(stderr, "usage: GATEWAY_TEST_ETCD=http://... %s <dir>\n", argv[0]);
        return 2;
    }
    const fs::path base = argv[1];

    // Options: cluster settings need the store first, and bad values throw.
    {
        gateway::Options options;
        try {
            options.cluster_ttl(5s);
            CHECK(false);
        } catch (const gateway::Error &error) {
            CHECK(error.code() == gateway::Code::invalid_argument);
            CHECK(std::string(error.what()).find("gw_options_set_cluster_etcd first") != std::string::npos);
        }
        options.cluster_etcd(etcd);
        try {
            options.cluster_ttl(2500ms);
            CHECK(false);
        } catch (const gateway::Error &error) {
            CHECK(error.code() == gateway::Code::invalid_argument);
        }
        std::printf("ok cluster_options\n");
    }

    // A leader, a standby refused naming it, a standby cancelled, one taking over.
    {
        auto first = host_options(base / "a", etcd, "cpp-leader");
        auto leader = gateway::Lock::acquire(first);
        CHECK(leader.fencing_token().value_or(0) > 0);
        CHECK(leader.is_leader());
        const std::uint64_t token = *leader.fencing_token();

        auto second = host_options(base / "b", etcd, "cpp-leader");
        auto seen = gateway::cluster_leader(second);
        CHECK(seen && seen->pid == static_cast<std::uint32_t>(getpid()) && seen->port == leader.port());
        CHECK(seen->fencing_token == token && !seen->host.empty());

        auto refused = gateway::Lock::try_acquire(second);
        CHECK(!refused.ok());
        CHECK(refused.error().code() == gateway::Code::cluster_leader);
        const auto &holder = refused.error().holder();
        CHECK(holder && holder->pid == static_cast<std::uint32_t>(getpid()) && holder->port == leader.port());
        CHECK(holder->host == seen->host);

        gateway::Cancel cancel;
        second.cluster_wait_forever().cluster_cancel(cancel);
        std::thread canceller([&cancel] {
            std::this_thread::sleep_for(300ms);
            cancel.cancel();
        });
        auto cancelled = gateway::Lock::try_acquire(second);
        canceller.join();
        CHECK(!cancelled.ok() && cancelled.error().code() == gateway::Code::cancelled);

        auto third = host_options(base / "c", etcd, "cpp-leader");
        third.cluster_wait_forever();
        std::atomic<bool> done{false};
        std::optional<gateway::Lock> next;
        std::thread standby([&] {
            next.emplace(gateway::Lock::acquire(third));
            done = true;
        });
        std::this_thread::sleep_for(300ms);
        CHECK(!done);
        leader.release();
        standby.join();
        CHECK(next->fencing_token().value_or(0) > token);

        std::atomic<int> lost{0};
        gateway::Callbacks callbacks;
        callbacks.state = [&lost](gateway::State state, gateway::Code code) {
            if (state == gateway::State::lock_lost && code == gateway::Code::leadership_lost) lost++;
        };
        auto server = gateway::Server::serve(std::move(*next), std::move(callbacks));
        CHECK(server.is_leader() && server.fencing_token() > token);
        CHECK(server.shutdown(1s));
        CHECK(!gateway::cluster_leader(first));
        CHECK(lost == 0);
        std::printf("ok leader_and_standbys\n");
    }

    // Without cluster mode: no token, never a leader; an unreachable store is a typed error.
    {
        gateway::Options plain;
        plain.state_dir((base / "plain" / "state").string())
            .config_path((base / "plain" / "state" / "openclaw.json").string())
            .lock_dir((base / "plain" / "locks").string())
            .port(next_test_port());
        auto lock = gateway::Lock::acquire(plain);
        CHECK(!lock.fencing_token() && !lock.is_leader());
        try {
            (void)gateway::cluster_leader(plain);
            CHECK(false);
        } catch (const gateway::Error &error) {
            CHECK(error.code() == gateway::Code::invalid_argument);
        }
        auto nowhere = host_options(base / "d", etcd, "cpp-nowhere");
        nowhere.cluster_etcd("http://127.0.0.1:" + std::to_string(next_test_port()));
        auto refused = gateway::Lock::try_acquire(nowhere);
        CHECK(!refused.ok() && refused.error().code() == gateway::Code::cluster_unavailable);
        std::printf("ok without_cluster_mode\n");
    }
    std::printf("all ok\n");
    return 0;
}
