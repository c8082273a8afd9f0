// A C++ host: runs the gateway in this process until SIGINT/SIGTERM, with gateway.hpp. It
// serves `echo` and broadcasts `demo.tick` every 5 s (examples/c/host.c also answers later, from
// a thread of its own: a copied gateway::Request can be answered from anywhere).
//
//   c++ -std=c++17 -Iinclude -Ibindings/cpp examples/cpp/host.cpp
//       target/release/libgateway.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o host-cpp
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <iostream>

#include "gateway.hpp"

int main() {
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr); // before the library starts threads

    try {
        auto options = gateway::Options::from_env();
        auto lock = gateway::Lock::try_acquire(options);
        if (!lock && lock.error().code() == GW_ERR_ALREADY_RUNNING) {
            std::cerr << "host: " << lock.error().what() << "\n";
            gw_status holder = gateway::status(options);
            std::cout << "gateway already running: pid " << holder.pid << ", port " << holder.port << "\n";
            return 1;
        }
        gateway::Callbacks callbacks;
        callbacks.log = [](gw_log_level level, std::string_view message) {
            if (level >= GW_LOG_INFO) std::cerr << "gateway: " << message << "\n";
        };
        gateway::Handlers handlers;
        handlers
            .method("echo", "operator.read",
                    [](const gateway::Request &request) { request.respond("{\"echo\":" + request.params + "}"); })
            .event("demo.tick");
        auto server = gateway::Server::serve(std::move(lock).value(), std::move(callbacks), std::move(handlers));
        std::cout << "gateway listening on ws://127.0.0.1:" << server.port() << " (pid " << getpid() << ")"
                  << std::endl;
        const timespec every{5, 0};
        for (unsigned n = 1; sigtimedwait(&stop, nullptr, &every) < 0; n++)
            server.broadcast("demo.tick", "{\"n\":" + std::to_string(n) + "}");
        server.shutdown(std::chrono::seconds(5));
        return 0;
    } catch (const gateway::Error &error) {
        std::cerr << "host: " << error.name() << ": " << error.what() << "\n";
        return 1;
    }
}
