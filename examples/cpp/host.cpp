// A C++ host: runs the gateway in this process until SIGINT/SIGTERM, with gateway.hpp.
//
//   c++ -std=c++17 -Iinclude -Ibindings/cpp examples/cpp/host.cpp
//       target/release/libgateway.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o host-cpp
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
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
        auto server = gateway::Server::serve(std::move(lock).value(), std::move(callbacks));
        std::cout << "gateway listening on ws://127.0.0.1:" << server.port() << " (pid " << getpid() << ")"
                  << std::endl;
        int signal_number = 0;
        sigwait(&stop, &signal_number);
        server.shutdown(std::chrono::seconds(5));
        return 0;
    } catch (const gateway::Error &error) {
        std::cerr << "host: " << error.name() << ": " << error.what() << "\n";
        return 1;
    }
}
