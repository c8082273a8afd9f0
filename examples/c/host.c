/*
 * A C host: runs the gateway in this process until SIGINT/SIGTERM. It serves the method `echo`
 * (answered by a thread of its own through gw_respond, to show answering later) and sends a
 * `demo.tick` event to every client every 5 s.
 *
 *   Linux: cc -std=c11 -pthread -Iinclude examples/c/host.c target/release/libgateway.a \
 *              -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o host && ./host
 *   macOS: cc -std=c11 -Iinclude examples/c/host.c target/release/libgateway.a -o host
 *
 * Options come from the environment (OPENCLAW_STATE_DIR, OPENCLAW_GATEWAY_PORT, ...; SPEC §1).
 * When another gateway holds the lock it prints the holder and exits 1: what the macOS app
 * does before it attaches to the running gateway instead of starting one.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway.h"

/* Requests waiting for the answering thread. */
struct pending {
    gw_server *server; /* the server the request came to */
    gw_request_id id;
    char *params;
    struct pending *next;
};

struct host {
    gw_server *server; /* written by gw_serve; requests bring their own (they may come first) */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct pending *queue;
    int stopping;
};

/* On a gateway worker thread: must not block, so hand the request over and return. */
static void on_request(void *userdata, gw_server *server, gw_request_id request,
                       const char *method, size_t method_len, const char *params_json,
                       size_t params_len, uint64_t conn_id) {
    struct host *host = userdata;
    (void)method_len;
    (void)conn_id;
    struct pending *p = malloc(sizeof *p);
    char *params = malloc(params_len + 1);
    if (p == NULL || params == NULL || strcmp(method, "echo") != 0) {
        static const char error[] = "{\"code\":\"UNAVAILABLE\",\"message\":\"cannot answer\"}";
        gw_respond(server, request, false, error, sizeof error - 1); /* answered at once */
        free(p);
        free(params);
        return;
    }
    memcpy(params, params_json, params_len + 1);
    p->server = server;
    p->id = request;
    p->params = params;
    pthread_mutex_lock(&host->lock);
    p->next = host->queue;
    host->queue = p;
    pthread_cond_signal(&host->changed);
    pthread_mutex_unlock(&host->lock);
}

static void on_connection(void *userdata, gw_server *server, uint64_t conn_id, bool opened,
                          const char *client_json, size_t len) {
    (void)userdata;
    (void)server;
    (void)len;
    fprintf(stderr, "host: client %llu %s %s\n", (unsigned long long)conn_id,
            opened ? "connected" : "left", opened ? client_json : "");
}

/* The host's own thread: answers `echo` with {"echo": <params>} whenever it gets to it. */
static void *answer_requests(void *arg) {
    struct host *host = arg;
    pthread_mutex_lock(&host->lock);
    while (!host->stopping || host->queue != NULL) {
        if (host->queue == NULL) {
            pthread_cond_wait(&host->changed, &host->lock);
            continue;
        }
        struct pending *p = host->queue;
        host->queue = p->next;
        pthread_mutex_unlock(&host->lock);
        size_t size = strlen(p->params) + 16;
        char *answer = malloc(size);
        if (answer != NULL) {
            int len = snprintf(answer, size, "{\"echo\":%s}", p->params);
            gw_result result = gw_respond(p->server, p->id, true, answer, (size_t)len);
            if (result != GW_OK) /* e.g. GW_ERR_NOT_FOUND: the client left or it timed out */
                fprintf(stderr, "host: %s\n", gw_last_error_message());
            free(answer);
        }
        free(p->params);
        free(p);
        pthread_mutex_lock(&host->lock);
    }
    pthread_mutex_unlock(&host->lock);
    return NULL;
}

/* Signals, portably (macOS has no sigtimedwait): they stay blocked in every thread, and one
 * thread of ours takes the first with sigwait and wakes the main thread through a condition. */
struct stop_signal {
    sigset_t set;
    pthread_mutex_t lock;
    pthread_cond_t arrived;
    int number; /* the signal; 0 until one arrives */
};

static void *wait_for_signal(void *arg) {
    struct stop_signal *stop = arg;
    int number = 0;
    if (sigwait(&stop->set, &number) != 0) number = SIGTERM; /* cannot wait: stop, not hang */
    pthread_mutex_lock(&stop->lock);
    stop->number = number;
    pthread_cond_signal(&stop->arrived);
    pthread_mutex_unlock(&stop->lock);
    return NULL;
}

/* Waits up to `seconds` for the stop signal; nonzero when it came. */
static int stop_requested_within(struct stop_signal *stop, time_t seconds) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until); /* the clock pthread_cond_timedwait uses by default */
    until.tv_sec += seconds;
    pthread_mutex_lock(&stop->lock);
    int waited = 0; /* ETIMEDOUT ends the wait; 0 is a wake-up, maybe spurious */
    while (stop->number == 0 && waited == 0)
        waited = pthread_cond_timedwait(&stop->arrived, &stop->lock, &until);
    int number = stop->number;
    pthread_mutex_unlock(&stop->lock);
    return number != 0;
}

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
    static struct stop_signal stop = {.lock = PTHREAD_MUTEX_INITIALIZER,
                                      .arrived = PTHREAD_COND_INITIALIZER};
    sigemptyset(&stop.set);
    sigaddset(&stop.set, SIGINT);
    sigaddset(&stop.set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop.set, NULL);

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
        /* The holder as numbers (no parsing the message), and whether it answers. */
        uint32_t pid = 0;
        uint16_t port = 0;
        gw_status status;
        if (gw_last_error_holder(&pid, &port) == GW_OK)
            printf("gateway already running: pid %u, port %u, %s\n", pid, (unsigned)port,
                   gw_lock_status(options, &status) == GW_OK && status.healthy ? "healthy"
                                                                               : "not answering");
        gw_options_free(options);
        return 1;
    }
    gw_options_free(options);
    if (result != GW_OK) {
        fprintf(stderr, "host: %s: %s\n", gw_result_name(result), gw_last_error_message());
        return 1;
    }

    /* What we serve: `echo` for callers granted operator.read, and the event we send; a
     * request unanswered for 10 s gets UNAVAILABLE. */
    gw_handlers *handlers = gw_handlers_new();
    gw_serve_options *serve_options = gw_serve_options_new();
    if (handlers == NULL || serve_options == NULL ||
        gw_handlers_add_method(handlers, "echo", "operator.read") != GW_OK ||
        gw_handlers_add_event(handlers, "demo.tick") != GW_OK ||
        gw_serve_options_set_request_timeout_ms(serve_options, 10000) != GW_OK) {
        fprintf(stderr, "host: %s\n", gw_last_error_message());
        gw_handlers_free(handlers);
        gw_serve_options_free(serve_options);
        gw_lock_release(lock);
        return 1;
    }
    static struct host host = {NULL, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0};
    pthread_t answerer;
    pthread_create(&answerer, NULL, answer_requests, &host);

    gw_callbacks callbacks;
    memset(&callbacks, 0, sizeof callbacks);
    callbacks.size = sizeof callbacks;
    callbacks.userdata = &host;
    callbacks.log = on_log;
    callbacks.state = on_state;
    callbacks.on_request = on_request;
    callbacks.on_connection = on_connection;
    callbacks.handlers = handlers;
    /* Takes the lock, also on failure; copies the callbacks, handlers and options. */
    result = gw_serve(lock, &callbacks, serve_options, &host.server);
    gw_handlers_free(handlers);
    gw_serve_options_free(serve_options);
    if (result == GW_OK) {
        printf("gateway listening on ws://127.0.0.1:%u (pid %ld)\n",
               (unsigned)gw_server_port(host.server), (long)getpid());
        fflush(stdout);
        /* A demo.tick to every client every 5 s until a signal comes. */
        pthread_t signal_waiter;
        pthread_create(&signal_waiter, NULL, wait_for_signal, &stop);
        pthread_detach(signal_waiter);
        for (unsigned long long n = 1; !stop_requested_within(&stop, 5); n++) {
            char payload[64];
            int len = snprintf(payload, sizeof payload, "{\"n\":%llu}", n);
            gw_broadcast(host.server, "demo.tick", payload, (size_t)len);
        }
    } else {
        fprintf(stderr, "host: %s: %s\n", gw_result_name(result), gw_last_error_message());
    }

    /* Our own thread makes its last gw_respond before gw_shutdown. */
    pthread_mutex_lock(&host.lock);
    host.stopping = 1;
    pthread_cond_signal(&host.changed);
    pthread_mutex_unlock(&host.lock);
    pthread_join(answerer, NULL);
    if (result != GW_OK) return 1;
    result = gw_shutdown(host.server, 5000);
    printf("gateway stopped (%s)\n", gw_result_name(result));
    return 0;
}
