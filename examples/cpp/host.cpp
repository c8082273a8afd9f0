// A C++ host: runs the gateway in this process until SIGINT/SIGTERM, with gateway.hpp. It
// serves `echo` and broadcasts `demo.tick` every 5 s (examples/c/host.c also answers later, from
// a thread of its own: a copied gateway::Request can be answered from anywhere).
//
//   Linux: c++ -std=c++17 -pthread -Iinclude -Ibindings/cpp examples/cpp/host.cpp
//              target/release/libgateway.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o host-cpp
//   macOS: c++ -std=c++17 -Iinclude -Ibindings/cpp examples/cpp/host.cpp
//              target/release/libgateway.a -o host-cpp
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <thread>

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
        if (!lock && lock.error().holder()) {
            std::cerr << "host: " << lock.error().what() << "\n";
            const gateway::Holder &holder = *lock.error().holder();
            std::cout << "gateway already running: pid " << holder.pid.value_or(0) << ", port "
                      << holder.port.value_or(0) << "\n";
            return 1;
        }
        gateway::Callbacks callbacks;
        callbacks.log = [](gateway::LogLevel level, std::string_view message) {
            if (level != gateway::LogLevel::debug) std::cerr << "gateway: " << message << "\n";
        };
        gateway::Handlers handlers;
        handlers
            .method("echo", "operator.read",
                    [](gateway::Request request) { (void)request.respond("{\"echo\":" + request.params() + "}"); })
            .event("demo.tick");
        gateway::ServeOptions serve_options;
        serve_options.request_timeout(std::chrono::seconds(10));
        auto server = gateway::Server::serve(std::move(lock).value(), std::move(callbacks), std::move(handlers),
                                             serve_options);
        std::cout << "gateway listening on ws://127.0.0.1:" << server.port() << " (pid " << getpid() << ")"
                  << std::endl;
        // Signals, portably (macOS has no sigtimedwait): still blocked everywhere, one thread of
        // ours takes the first with sigwait and wakes this one. Static: that thread may outlive
        // this scope when an exception leaves it.
        static std::mutex mutex;
        static std::condition_variable arrived;
        static int signal_number = 0;
        std::thread([stop] {
            int number = SIGTERM; // if sigwait cannot wait: stop rather than hang
            (void)sigwait(&stop, &number);
            std::lock_guard<std::mutex> guard(mutex);
            signal_number = number;
            arrived.notify_one();
        }).detach();
        std::unique_lock<std::mutex> guard(mutex);
        for (unsigned n = 1; !arrived.wait_for(guard, std::chrono::seconds(5), [&] { return signal_number != 0; });
             n++)
            server.broadcast("demo.tick", "{\"n\":" + std::to_string(n) + "}");
        guard.unlock();
        (void)server.shutdown(std::chrono::seconds(5));
        return 0;
    } catch (const gateway::Error &error) {
        std::cerr << "host: " << error.name() << ": " << error.what() << "\n";
        return 1;
    }
}
