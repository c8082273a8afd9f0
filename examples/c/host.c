/*
 * A C host: runs the gateway in this process until SIGINT/SIGTERM.
 *
 *   cc -std=c11 -Iinclude examples/c/host.c target/release/libgateway.a \
 *      -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o host && ./host
 *
 * Options come from the environment (OPENCLAW_STATE_DIR, OPENCLAW_GATEWAY_PORT, ...; SPEC §1).
 * When another gateway holds the lock it prints the holder and exits 1: what the macOS app
 * does before it attaches to the running gateway instead of starting one.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gateway.h"

static void on_log(void *userdata, gw_log_level level, const char *message, size_t len) {
    (void)userdata;
    (void)len;
    if (level >= GW_LOG_INFO) fprintf(stderr, "gateway: %s\n", message);
}

static void on_state(void *userdata, gw_state state, gw_result result) {
    (void)userdata;
    if (state == GW_STATE_LOCK_LOST)
        fprintf(stderr, "host: lost the gateway lock (%s); restart to take it again\n",
                gw_result_name(result));
}

int main(void) {
    /* Block the signals before the library starts threads, so only sigwait sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    if (gw_abi_version() != GATEWAY_ABI_VERSION) {
        fprintf(stderr, "host: built for gateway ABI %d, library has %u\n", GATEWAY_ABI_VERSION,
                gw_abi_version());
        return 1;
    }
    gw_options *options = gw_options_new();
    if (options == NULL || gw_options_from_env(options) != GW_OK) {
        fprintf(stderr, "host: %s\n", gw_last_error_message());
        return 1;
    }

    gw_lock *lock = NULL;
    gw_result result = gw_lock_acquire(options, &lock);
    if (result == GW_ERR_ALREADY_RUNNING) {
        fprintf(stderr, "host: %s\n", gw_last_error_message());
        gw_status holder;
        if (gw_lock_status(options, &holder) == GW_OK && holder.running)
            printf("gateway already running: pid %u, port %u, %s\n", holder.pid,
                   (unsigned)holder.port, holder.healthy ? "healthy" : "not answering");
        gw_options_free(options);
        return 1;
    }
    gw_options_free(options);
    if (result != GW_OK) {
        fprintf(stderr, "host: %s: %s\n", gw_result_name(result), gw_last_error_message());
        return 1;
    }

    gw_callbacks callbacks;
    memset(&callbacks, 0, sizeof callbacks);
    callbacks.size = sizeof callbacks;
    callbacks.log = on_log;
    callbacks.state = on_state;
    gw_server *server = NULL;
    result = gw_serve(lock, &callbacks, &server); /* takes the lock, also on failure */
    if (result != GW_OK) {
        fprintf(stderr, "host: %s: %s\n", gw_result_name(result), gw_last_error_message());
        return 1;
    }
    printf("gateway listening on ws://127.0.0.1:%u (pid %ld)\n", (unsigned)gw_server_port(server),
           (long)getpid());
    fflush(stdout);

    int signal_number = 0;
    sigwait(&stop, &signal_number);
    result = gw_shutdown(server, 5000);
    printf("gateway stopped (%s)\n", gw_result_name(result));
    return 0;
}
