/*
 * Cluster mode from C (issue 14) against a real etcd: built with -std=c11 -Wall -Wextra
 * -Wpedantic -Werror and run by tests/c_abi.rs, normally, under ASan+UBSan and under valgrind.
 * The etcd members' client URLs come in GATEWAY_TEST_ETCD (comma-separated), the ports in
 * GATEWAY_TEST_PORTS. Each "host" is a directory of its own (state dir, config, lock dir), so
 * two gateways of this one process stand for two machines sharing a cluster name.
 *
 *   test_cluster all <dir>    every case; prints "ok <case>" for each
 *   test_cluster lose <dir>   leads and serves, prints "leading <token>", then waits for the
 *                             state callback's GW_STATE_LOCK_LOST (tests/c_abi.rs stops etcd),
 *                             prints "lost <result> leader=<0|1>", shuts down, reads a line
 *                             (tests/c_abi.rs has resumed etcd), then stands by until it leads
 *                             again and prints "leading-again <token>"
 *
 * Any failed check prints "FAIL file:line: ..." and exits 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway.h"

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
                    gw_last_error_message());                                              \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

#define CHECK_RESULT(call, want)                                                           \
    do {                                                                                   \
        gw_result got_ = (call);                                                           \
        if (got_ != (want)) {                                                              \
            fprintf(stderr, "FAIL %s:%d: %s gave %s, want %s (last error: %s)\n", __FILE__, \
                    __LINE__, #call, gw_result_name(got_), gw_result_name(want),           \
                    gw_last_error_message());                                              \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static char base_dir[4096];
static const char *etcd;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* See tests/c/test_c.c. */
static uint16_t next_test_port(void) {
    static const char *cursor = NULL;
    if (cursor == NULL) cursor = getenv("GATEWAY_TEST_PORTS");
    if (cursor == NULL || *cursor == '\0') return 0;
    char *end = NULL;
    unsigned long port = strtoul(cursor, &end, 10);
    cursor = *end == ',' ? end + 1 : end;
    return (uint16_t)port;
}

/* Options for the gateway of "host" `host` in cluster `cluster`: its files under
 * <base>/<host>, the test's etcd, fail at once (the default). */
static gw_options *host_options(const char *host, const char *cluster) {
    char path[4300];
    gw_options *options = gw_options_new();
    CHECK(options != NULL);
    snprintf(path, sizeof path, "%s/%s/state", base_dir, host);
    CHECK_RESULT(gw_options_set_state_dir(options, path), GW_OK);
    snprintf(path, sizeof path, "%s/%s/state/openclaw.json", base_dir, host);
    CHECK_RESULT(gw_options_set_config_path(options, path), GW_OK);
    snprintf(path, sizeof path, "%s/%s/locks", base_dir, host);
    CHECK_RESULT(gw_options_set_lock_dir(options, path), GW_OK);
    CHECK_RESULT(gw_options_set_port(options, next_test_port()), GW_OK);
    CHECK_RESULT(gw_options_set_timeout_ms(options, 300), GW_OK);
    CHECK_RESULT(gw_options_set_cluster_etcd(options, etcd), GW_OK);
    CHECK_RESULT(gw_options_set_cluster_name(options, cluster), GW_OK);
    /* A long lease: these cases never wait one out (a release revokes it at once), and under
     * valgrind on a loaded machine a renewal can miss a short lease's deadline, which fences
     * the leader, correctly, in the middle of a case. `lose` sets its own short one. */
    CHECK_RESULT(gw_options_set_cluster_ttl_ms(options, 30000), GW_OK);
    return options;
}

static int lock_files(const char *host) {
    char path[4300];
    snprintf(path, sizeof path, "%s/%s/locks", base_dir, host);
    DIR *d = opendir(path);
    if (d == NULL) return 0;
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        if (entry->d_name[0] != '.') count++;
    }
    closedir(d);
    return count;
}

/* Options checks that need no store: the order of the setters, bad values, a lock without
 * cluster mode, and an etcd nobody answers at. */
static void case_options_and_unreachable_store(void) {
    gw_options *options = gw_options_new();
    CHECK(options != NULL);
    CHECK_RESULT(gw_options_set_cluster_ttl_ms(options, 5000), GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "call gw_options_set_cluster_etcd first") != NULL);
    CHECK_RESULT(gw_options_set_cluster_wait_ms(options, GW_CLUSTER_WAIT_FOREVER), GW_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(gw_options_set_cluster_etcd(options, "10.0.0.1:2379"), GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "is not an http:// URL") != NULL);
    CHECK_RESULT(gw_options_set_cluster_etcd(options, NULL), GW_ERR_NULL_ARGUMENT);
    gw_cluster_leader leader;
    CHECK_RESULT(gw_lock_cluster_leader(options, &leader), GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "the options name no cluster") != NULL);
    CHECK_RESULT(gw_options_set_cluster_etcd(options, etcd), GW_OK);
    CHECK_RESULT(gw_options_set_cluster_ttl_ms(options, 1500), GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "cluster TTL 1s 500ms is not a whole number of seconds") != NULL);
    CHECK_RESULT(gw_options_set_cluster_name(options, "no spaces"), GW_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(gw_options_set_cluster_cancel(options, NULL), GW_ERR_NULL_ARGUMENT);
    gw_options_free(options);

    /* Without cluster mode: no token, never a leader. */
    options = gw_options_new();
    char path[4300];
    snprintf(path, sizeof path, "%s/plain/state", base_dir);
    CHECK_RESULT(gw_options_set_state_dir(options, path), GW_OK);
    snprintf(path, sizeof path, "%s/plain/state/openclaw.json", base_dir);
    CHECK_RESULT(gw_options_set_config_path(options, path), GW_OK);
    snprintf(path, sizeof path, "%s/plain/locks", base_dir);
    CHECK_RESULT(gw_options_set_lock_dir(options, path), GW_OK);
    CHECK_RESULT(gw_options_set_port(options, next_test_port()), GW_OK);
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    uint64_t token = 7;
    CHECK_RESULT(gw_lock_fencing_token(lock, &token), GW_ERR_NOT_FOUND);
    CHECK(token == 7);
    CHECK(!gw_lock_is_leader(lock));
    CHECK_RESULT(gw_lock_fencing_token(lock, NULL), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_lock_fencing_token(NULL, &token), GW_ERR_NULL_ARGUMENT);
    CHECK(!gw_lock_is_leader(NULL) && !gw_server_is_leader(NULL));
    gw_server *server = NULL;
    CHECK_RESULT(gw_serve(lock, NULL, NULL, &server), GW_OK);
    CHECK_RESULT(gw_server_fencing_token(server, &token), GW_ERR_NOT_FOUND);
    CHECK(!gw_server_is_leader(server));
    CHECK_RESULT(gw_shutdown(server, 1000), GW_OK);
    gw_options_free(options);

    /* A store that does not answer: refused naming it, nothing held. */
    char nobody[64];
    snprintf(nobody, sizeof nobody, "http://127.0.0.1:%u", (unsigned)next_test_port());
    options = host_options("unreachable", "c-unreachable");
    CHECK_RESULT(gw_options_set_cluster_etcd(options, nobody), GW_OK);
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_ERR_CLUSTER_UNAVAILABLE);
    CHECK(strstr(gw_last_error_message(), nobody) != NULL);
    CHECK(lock_files("unreachable") == 0);
    CHECK_RESULT(gw_lock_cluster_leader(options, &leader), GW_ERR_CLUSTER_UNAVAILABLE);
    CHECK(strstr(gw_last_error_message(), nobody) != NULL);
    gw_options_free(options);
    printf("ok options_and_unreachable_store\n");
}

struct standby {
    gw_options *options;
    gw_lock *lock;
    gw_result result;
    atomic_int done;
};

static void *acquire_thread(void *arg) {
    struct standby *standby = arg;
    standby->result = gw_lock_acquire(standby->options, &standby->lock);
    atomic_store(&standby->done, 1);
    return NULL;
}

static void *cancel_after(void *arg) {
    sleep_ms(500);
    CHECK_RESULT(gw_cancel_trigger(arg), GW_OK);
    return NULL;
}

/* One leader, a standby refused naming it, a standby cancelled, a standby taking over. */
static void case_leader_and_standbys(void) {
    gw_options *first = host_options("a", "c-leader");
    gw_lock *leader = NULL;
    CHECK_RESULT(gw_lock_acquire(first, &leader), GW_OK);
    uint64_t token = 0;
    CHECK_RESULT(gw_lock_fencing_token(leader, &token), GW_OK);
    CHECK(token > 0);
    CHECK(gw_lock_is_leader(leader));
    uint16_t port = gw_lock_port(leader);

    /* The leader as the store says, read from the other host's options. */
    gw_options *second = host_options("b", "c-leader");
    gw_cluster_leader seen;
    memset(&seen, 0, sizeof seen);
    CHECK_RESULT(gw_lock_cluster_leader(second, &seen), GW_OK);
    CHECK(seen.pid == (uint32_t)getpid() && seen.port == port && seen.fencing_token == token);
    CHECK(seen.host[0] != '\0' && memchr(seen.host, '\0', sizeof seen.host) != NULL);
    CHECK(seen.since_ms > 0);

    /* Fail at once, naming the leader as typed values. */
    gw_lock *refused = NULL;
    CHECK_RESULT(gw_lock_acquire(second, &refused), GW_ERR_CLUSTER_LEADER);
    CHECK(refused == NULL);
    uint32_t holder_pid = 0;
    uint16_t holder_port = 0;
    CHECK_RESULT(gw_last_error_holder(&holder_pid, &holder_port), GW_OK);
    CHECK(holder_pid == (uint32_t)getpid() && holder_port == port);
    CHECK(strcmp(gw_last_error_holder_host(), seen.host) == 0);
    char want[128];
    snprintf(want, sizeof want, "(pid %u, port %u, leader since ", (unsigned)getpid(),
             (unsigned)port);
    CHECK(strstr(gw_last_error_message(), want) != NULL);
    snprintf(want, sizeof want, "Z, fencing token %llu)", (unsigned long long)token);
    CHECK(strstr(gw_last_error_message(), want) != NULL);
    CHECK(lock_files("b") == 0);

    /* Standing by for ever, cancelled from another thread. */
    gw_cancel *cancel = gw_cancel_new();
    CHECK(cancel != NULL);
    CHECK_RESULT(gw_options_set_cluster_wait_ms(second, GW_CLUSTER_WAIT_FOREVER), GW_OK);
    CHECK_RESULT(gw_options_set_cluster_cancel(second, cancel), GW_OK);
    pthread_t canceller;
    CHECK(pthread_create(&canceller, NULL, cancel_after, cancel) == 0);
    long long started = now_ms();
    CHECK_RESULT(gw_lock_acquire(second, &refused), GW_ERR_CANCELLED);
    CHECK(now_ms() - started >= 400);
    CHECK(pthread_join(canceller, NULL) == 0);
    CHECK(refused == NULL && lock_files("b") == 0);
    /* Triggered stays triggered: at once, even though it was freed (the options keep it). */
    gw_cancel_free(cancel);
    CHECK_RESULT(gw_lock_acquire(second, &refused), GW_ERR_CANCELLED);

    /* A bounded wait runs out naming the leader. */
    gw_options_free(second);
    second = host_options("b", "c-leader");
    CHECK_RESULT(gw_options_set_cluster_wait_ms(second, 600), GW_OK);
    started = now_ms();
    CHECK_RESULT(gw_lock_acquire(second, &refused), GW_ERR_CLUSTER_LEADER);
    CHECK(now_ms() - started >= 500);

    /* A standby for ever takes over when the leader lets go, with a larger token. */
    CHECK_RESULT(gw_options_set_cluster_wait_ms(second, GW_CLUSTER_WAIT_FOREVER), GW_OK);
    struct standby standby = {second, NULL, GW_ERR_PANIC, 0};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, acquire_thread, &standby) == 0);
    sleep_ms(500);
    CHECK(atomic_load(&standby.done) == 0);
    gw_lock_release(leader);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK_RESULT(standby.result, GW_OK);
    uint64_t next = 0;
    CHECK_RESULT(gw_lock_fencing_token(standby.lock, &next), GW_OK);
    CHECK(next > token);
    CHECK(gw_lock_is_leader(standby.lock));

    /* Served, the server says the same. */
    gw_server *server = NULL;
    CHECK_RESULT(gw_serve(standby.lock, NULL, NULL, &server), GW_OK);
    uint64_t served = 0;
    CHECK_RESULT(gw_server_fencing_token(server, &served), GW_OK);
    CHECK(served == next && gw_server_is_leader(server));
    CHECK_RESULT(gw_lock_cluster_leader(first, &seen), GW_OK);
    CHECK(seen.fencing_token == next);
    CHECK_RESULT(gw_shutdown(server, 1000), GW_OK);
    /* Resigned on shutdown: nobody leads. */
    CHECK_RESULT(gw_lock_cluster_leader(first, &seen), GW_ERR_NOT_FOUND);
    CHECK(lock_files("a") == 0 && lock_files("b") == 0);
    gw_options_free(first);
    gw_options_free(second);
    printf("ok leader_and_standbys\n");
}

static int run_all(void) {
    case_options_and_unreachable_store();
    case_leader_and_standbys();
    printf("all ok\n");
    return 0;
}

static atomic_int lost, lost_result, stopped;

static void on_state(void *userdata, gw_state state, gw_result result) {
    (void)userdata;
    if (state == GW_STATE_LOCK_LOST) {
        atomic_store(&lost_result, (int)result);
        atomic_fetch_add(&lost, 1);
    } else if (state == GW_STATE_STOPPED) {
        atomic_fetch_add(&stopped, 1);
    }
}

static int run_lose(void) {
    gw_options *options = host_options("lose", "c-lose");
    CHECK_RESULT(gw_options_set_cluster_ttl_ms(options, 3000), GW_OK);
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    gw_callbacks callbacks;
    memset(&callbacks, 0, sizeof callbacks);
    callbacks.size = sizeof callbacks;
    callbacks.state = on_state;
    gw_server *server = NULL;
    CHECK_RESULT(gw_serve(lock, &callbacks, NULL, &server), GW_OK);
    uint64_t token = 0;
    CHECK_RESULT(gw_server_fencing_token(server, &token), GW_OK);
    printf("leading %llu\n", (unsigned long long)token);
    fflush(stdout);
    for (int waited = 0; atomic_load(&lost) == 0; waited += 10) {
        CHECK(waited < 120000);
        sleep_ms(10);
    }
    printf("lost %s leader=%d\n", gw_result_name((gw_result)atomic_load(&lost_result)),
           gw_server_is_leader(server) ? 1 : 0);
    fflush(stdout);
    CHECK_RESULT(gw_server_fencing_token(server, &token), GW_OK); /* the token stays */
    CHECK_RESULT(gw_shutdown(server, 1000), GW_OK);
    CHECK(atomic_load(&lost) == 1 && atomic_load(&stopped) == 1);

    /* Stand by again until this gateway leads, once tests/c_abi.rs has resumed etcd and says
     * so (a store that never answered is refused at once, even with a wait). */
    char line[64];
    CHECK(fgets(line, sizeof line, stdin) != NULL);
    CHECK_RESULT(gw_options_set_cluster_wait_ms(options, GW_CLUSTER_WAIT_FOREVER), GW_OK);
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    uint64_t again = 0;
    CHECK_RESULT(gw_lock_fencing_token(lock, &again), GW_OK);
    printf("leading-again %llu\n", (unsigned long long)again);
    fflush(stdout);
    gw_lock_release(lock);
    gw_options_free(options);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s all|lose <dir>\n", argv[0]);
        return 2;
    }
    etcd = getenv("GATEWAY_TEST_ETCD");
    if (etcd == NULL || *etcd == '\0') {
        fprintf(stderr, "GATEWAY_TEST_ETCD (the etcd client URLs) is not set\n");
        return 2;
    }
    snprintf(base_dir, sizeof base_dir, "%s", argv[2]);
    if (strcmp(argv[1], "all") == 0) return run_all();
    if (strcmp(argv[1], "lose") == 0) return run_lose();
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
