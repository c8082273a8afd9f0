/*
 * The C ABI from C: built with -std=c11 -Wall -Wextra -Wpedantic -Werror and run by
 * tests/c_abi.rs, normally, under ASan+UBSan and under valgrind.
 *
 *   test_c all <dir>             every in-process case; prints "ok <case>" for each
 *   test_c hold <dir>            acquires and serves, prints "ready <port> <pid>", serves until
 *                                stdin closes, then shuts down
 *   test_c second <dir> <pid>    a second process: acquiring fails naming <pid>, status sees it
 *   test_c panic <dir>           with GATEWAY_FFI_PANIC=gw_lock_acquire: GW_ERR_PANIC comes back
 *   test_c serve <dir>           a host with methods and events for a WebSocket client driven by
 *                                tests/c_abi.rs: prints "ready <port>", then one line per thing
 *                                it saw or did; reads commands from stdin (see run_serve)
 *   test_c pairing <dir>         a host whose pairing policy decides signed clients driven by
 *                                tests/c_abi.rs; reads commands from stdin (see run_pairing)
 *
 * Any failed check prints "FAIL file:line: ..." and exits 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gateway.h"
#include "tu2.h"

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
static int case_number;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A fresh directory for one case; its lock dir is <dir>/locks. */
static void case_dir(char *out, size_t size) {
    snprintf(out, size, "%s/case%d", base_dir, ++case_number);
}

/* Options for a case: ephemeral port, everything under `dir`, short waits. */
/* The next of the ports tests/c_abi.rs gives this program (GATEWAY_TEST_PORTS, comma-separated,
 * outside the kernel's ephemeral range, so no outgoing connection can take one between a
 * case's shutdown and its check that the port is free); 0, the kernel's choice, without them. */
static uint16_t next_test_port(void) {
    static const char *cursor = NULL;
    if (cursor == NULL) cursor = getenv("GATEWAY_TEST_PORTS");
    if (cursor == NULL || *cursor == '\0') return 0;
    char *end = NULL;
    unsigned long port = strtoul(cursor, &end, 10);
    cursor = *end == ',' ? end + 1 : end;
    return (uint16_t)port;
}

static gw_options *case_options(const char *dir) {
    char path[4200];
    gw_options *options = gw_options_new();
    CHECK(options != NULL);
    snprintf(path, sizeof path, "%s/state", dir);
    CHECK_RESULT(gw_options_set_state_dir(options, path), GW_OK);
    snprintf(path, sizeof path, "%s/state/openclaw.json", dir);
    CHECK_RESULT(gw_options_set_config_path(options, path), GW_OK);
    snprintf(path, sizeof path, "%s/locks", dir);
    CHECK_RESULT(gw_options_set_lock_dir(options, path), GW_OK);
    CHECK_RESULT(gw_options_set_port(options, next_test_port()), GW_OK);
    CHECK_RESULT(gw_options_set_timeout_ms(options, 300), GW_OK);
    CHECK_RESULT(gw_options_set_poll_interval_ms(options, 20), GW_OK);
    return options;
}

static int lock_dir_entries(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/locks", dir);
    DIR *d = opendir(path);
    if (d == NULL) return 0;
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) count++;
    }
    closedir(d);
    return count;
}

/* A plain listener, as any server would make it (SO_REUSEADDR), can have the port now. */
static int port_is_free(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(fd, 1) == 0;
    close(fd);
    return ok;
}

static int connect_to(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    return fd;
}

/* GET /healthz answers 200 with the SPEC body. */
static int healthy(uint16_t port) {
    int fd = connect_to(port);
    const char *request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    CHECK(write(fd, request, strlen(request)) == (ssize_t)strlen(request));
    char response[2048] = {0};
    size_t got = 0;
    ssize_t n;
    while (got < sizeof response - 1 && (n = read(fd, response + got, sizeof response - 1 - got)) > 0)
        got += (size_t)n;
    close(fd);
    return strstr(response, " 200 ") != NULL && strstr(response, "{\"ok\":true,\"status\":\"live\"}") != NULL;
}

/* The status of a holder that is up. gw_lock_status asks /healthz once, with a 1 s budget;
 * under valgrind on a loaded machine the instrumented server in this very process can take
 * longer than that to answer, so ask again while it says unhealthy, for at most 30 tries. */
static gw_status status_of_live_holder(const gw_options *options) {
    gw_status status;
    for (int i = 0; i < 30; i++) {
        CHECK_RESULT(gw_lock_status(options, &status), GW_OK);
        if (status.healthy) break;
    }
    return status;
}

/* What the callbacks saw; written from library threads. */
struct seen {
    atomic_int ready, lock_lost, stopped, frees, logs;
    atomic_int ready_before_return, stopped_result, lost_result;
    atomic_int serve_returned;
};

static void on_log(void *userdata, gw_log_level level, const char *message, size_t len) {
    struct seen *seen = userdata;
    if (level > GW_LOG_ERROR || message[len] != '\0' || strlen(message) != len) {
        fprintf(stderr, "FAIL bad log line\n");
        exit(1);
    }
    atomic_fetch_add(&seen->logs, 1);
}

static void on_state(void *userdata, gw_state state, gw_result result) {
    struct seen *seen = userdata;
    switch (state) {
    case GW_STATE_READY:
        atomic_fetch_add(&seen->ready, 1);
        atomic_store(&seen->ready_before_return, !atomic_load(&seen->serve_returned));
        break;
    case GW_STATE_LOCK_LOST:
        atomic_store(&seen->lost_result, (int)result);
        atomic_fetch_add(&seen->lock_lost, 1);
        break;
    case GW_STATE_STOPPED:
        atomic_store(&seen->stopped_result, (int)result);
        atomic_fetch_add(&seen->stopped, 1);
        break;
    default:
        fprintf(stderr, "FAIL unknown state %u\n", (unsigned)state);
        exit(1);
    }
}

static void free_seen(void *userdata) {
    struct seen *seen = userdata;
    atomic_fetch_add(&seen->frees, 1);
}

static gw_callbacks callbacks_for(struct seen *seen) {
    gw_callbacks callbacks;
    memset(&callbacks, 0, sizeof callbacks);
    callbacks.size = sizeof callbacks;
    callbacks.userdata = seen;
    callbacks.log = on_log;
    callbacks.state = on_state;
    callbacks.free_userdata = free_seen;
    return callbacks;
}

/* free_userdata may run on a library thread just after gw_shutdown returns. */
static int wait_for(atomic_int *counter, int want, long timeout_ms) {
    for (long waited = 0; waited <= timeout_ms; waited += 5) {
        if (atomic_load(counter) >= want) return 1;
        sleep_ms(5);
    }
    return 0;
}

static void case_version_and_names(void) {
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", GATEWAY_VERSION_MAJOR, GATEWAY_VERSION_MINOR,
             GATEWAY_VERSION_PATCH);
    CHECK(strcmp(gw_version(), want) == 0);
    CHECK(gw_abi_version() == GATEWAY_ABI_VERSION);

#define NAMED(r) {r, #r}
    static const struct {
        gw_result result;
        const char *name;
    } all[] = {
        NAMED(GW_OK),
        NAMED(GW_ERR_NULL_ARGUMENT),
        NAMED(GW_ERR_INVALID_ARGUMENT),
        NAMED(GW_ERR_ALREADY_RUNNING),
        NAMED(GW_ERR_ADDR_IN_USE),
        NAMED(GW_ERR_BIND),
        NAMED(GW_ERR_LOCK_IO),
        NAMED(GW_ERR_LOCK_DIR_UNSAFE),
        NAMED(GW_ERR_TIMEOUT),
        NAMED(GW_ERR_RUNTIME),
        NAMED(GW_ERR_PANIC),
        NAMED(GW_ERR_LOCK_FILE_UNSAFE),
        NAMED(GW_ERR_LOCK_LOST),
        NAMED(GW_ERR_NOT_FOUND),
        NAMED(GW_ERR_HTTP_BODY),
        NAMED(GW_ERR_WRONG_THREAD),
        NAMED(GW_ERR_HELD_BY_OTHER_HOST),
        NAMED(GW_ERR_CLUSTER_LEADER),
        NAMED(GW_ERR_CLUSTER_UNAVAILABLE),
        NAMED(GW_ERR_LEADERSHIP_LOST),
        NAMED(GW_ERR_CANCELLED),
    };
#undef NAMED
    size_t count = sizeof all / sizeof all[0];
    for (size_t i = 0; i < count; i++) {
        CHECK((size_t)all[i].result == i); /* numbers are dense and stable */
        CHECK(strcmp(gw_result_name(all[i].result), all[i].name) == 0);
        CHECK(strcmp(tu2_result_name(all[i].result), all[i].name) == 0);
    }
    /* One past the last known result, and garbage: a name, never a crash. */
    CHECK(strcmp(gw_result_name((uint32_t)count), "GW_UNKNOWN") == 0);
    CHECK(strcmp(gw_result_name(0xFFFFFFFFu), "GW_UNKNOWN") == 0);
    printf("ok version_and_names\n");
}

static void case_null_arguments(void) {
    gw_options *options = gw_options_new();
    CHECK(options != NULL);
    gw_options_free(NULL);
    gw_lock_release(NULL);
    CHECK(gw_lock_port(NULL) == 0);
    CHECK(gw_server_port(NULL) == 0);

    CHECK_RESULT(gw_options_from_env(NULL), GW_ERR_NULL_ARGUMENT);
    CHECK(strcmp(gw_last_error_message(), "gw_options_from_env: options is NULL") == 0);
    CHECK_RESULT(gw_options_set_port(NULL, 1), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_options_set_bind_loopback(NULL), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_options_set_bind_lan(NULL), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_options_set_dev(NULL, true), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_options_set_allow_multi(NULL, true), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_options_set_timeout_ms(NULL, 1), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_options_set_poll_interval_ms(NULL, 1), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_options_set_stale_after_ms(NULL, 1), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_options_set_recheck_interval_ms(NULL, 1), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_options_set_bind_retry(NULL, 1, 1), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_options_set_auth_none(NULL), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_options_set_log(NULL, NULL, NULL, NULL), GW_ERR_NULL_ARGUMENT);
    CHECK(!gw_lock_is_lost(NULL));

    typedef gw_result (*string_setter)(gw_options *, const char *);
    static const struct {
        string_setter set;
        const char *name;
    } strings[] = {
        {gw_options_set_bind_host, "gw_options_set_bind_host"},
        {gw_options_set_state_dir, "gw_options_set_state_dir"},
        {gw_options_set_config_path, "gw_options_set_config_path"},
        {gw_options_set_lock_dir, "gw_options_set_lock_dir"},
        {gw_options_set_profile, "gw_options_set_profile"},
        {gw_options_set_auth_token, "gw_options_set_auth_token"},
        {gw_options_set_auth_password, "gw_options_set_auth_password"},
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        CHECK_RESULT(strings[i].set(NULL, "x"), GW_ERR_NULL_ARGUMENT);
        CHECK_RESULT(strings[i].set(options, NULL), GW_ERR_NULL_ARGUMENT);
        CHECK(strncmp(gw_last_error_message(), strings[i].name, strlen(strings[i].name)) == 0);
        /* Invalid UTF-8 is refused, never a crash. */
        CHECK_RESULT(strings[i].set(options, "bad \xff\xfe utf-8"), GW_ERR_INVALID_ARGUMENT);
        CHECK(strstr(gw_last_error_message(), "not valid UTF-8") != NULL);
    }

    gw_lock *const sentinel_lock = (gw_lock *)&case_number;
    gw_lock *lock = sentinel_lock;
    CHECK_RESULT(gw_lock_acquire(NULL, &lock), GW_ERR_NULL_ARGUMENT);
    CHECK(strcmp(gw_last_error_message(), "gw_lock_acquire: options is NULL") == 0);
    CHECK_RESULT(gw_lock_acquire(options, NULL), GW_ERR_NULL_ARGUMENT);
    CHECK(lock == sentinel_lock); /* outputs are written only on success */

    gw_status status;
    memset(&status, 0xAB, sizeof status);
    CHECK_RESULT(gw_lock_status(NULL, &status), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_lock_status(options, NULL), GW_ERR_NULL_ARGUMENT);
    CHECK(status.pid == 0xABABABABu);

    gw_server *const sentinel_server = (gw_server *)&case_number;
    gw_server *server = sentinel_server;
    CHECK_RESULT(gw_serve(NULL, NULL, NULL, &server), GW_ERR_NULL_ARGUMENT);
    CHECK(server == sentinel_server);
    /* gw_serve takes the userdata even when it fails: freed exactly once, before it returns. */
    struct seen seen = {0};
    gw_callbacks callbacks = callbacks_for(&seen);
    CHECK_RESULT(gw_serve(NULL, &callbacks, NULL, &server), GW_ERR_NULL_ARGUMENT);
    CHECK(atomic_load(&seen.frees) == 1 && atomic_load(&seen.ready) == 0);
    CHECK_RESULT(gw_shutdown(NULL, 0), GW_ERR_NULL_ARGUMENT);
    /* A failure that names no holder: nothing to report, nothing written. */
    uint32_t pid = 7;
    uint16_t port = 7;
    CHECK_RESULT(gw_last_error_holder(&pid, &port), GW_ERR_NOT_FOUND);
    CHECK(pid == 7 && port == 7);
    CHECK(strcmp(gw_last_error_message(), "gw_shutdown: server is NULL") == 0);
    gw_options_free(options);
    printf("ok null_arguments\n");
}

static void case_bad_values(void) {
    char dir[4200];
    case_dir(dir, sizeof dir);
    gw_options *options = case_options(dir);
    CHECK_RESULT(gw_options_set_port(options, 70000), GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "70000") != NULL);
    CHECK_RESULT(gw_options_set_port(options, 65536), GW_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(gw_options_set_profile(options, "Not A Profile!"), GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "invalid profile name") != NULL);

    /* lan without auth: the exact SPEC message, and nothing taken. */
    CHECK_RESULT(gw_options_set_bind_lan(options), GW_OK);
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_ERR_INVALID_ARGUMENT);
    CHECK(strcmp(gw_last_error_message(), "Refusing to bind gateway to lan without auth.") == 0);
    CHECK(lock == NULL);
    CHECK_RESULT(gw_options_set_auth_token(options, ""), GW_OK);
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "empty") != NULL);
    CHECK_RESULT(gw_options_set_dev(options, true), GW_OK);
    CHECK_RESULT(gw_options_set_profile(options, "ops"), GW_OK);
    CHECK_RESULT(gw_options_set_auth_none(options), GW_OK);
    CHECK_RESULT(gw_options_set_bind_loopback(options), GW_OK);
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_ERR_INVALID_ARGUMENT);
    CHECK(strcmp(gw_last_error_message(), "Cannot combine --dev with --profile") == 0);
    CHECK(lock == NULL && lock_dir_entries(dir) == 0);
    gw_options_free(options);
    printf("ok bad_values\n");
}

/* Run first, while the process has one thread: setenv is not thread-safe. */
static void case_bad_env_port(void) {
    gw_options *options = gw_options_new();
    CHECK(options != NULL);
    CHECK_RESULT(gw_options_set_port(options, 4242), GW_OK);
    setenv("OPENCLAW_GATEWAY_PORT", "99999", 1);
    CHECK_RESULT(gw_options_from_env(options), GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "\"99999\"") != NULL);
    CHECK(strstr(gw_last_error_message(), "OPENCLAW_GATEWAY_PORT") != NULL);
    setenv("OPENCLAW_GATEWAY_PORT", "127.0.0.1:4343", 1);
    CHECK_RESULT(gw_options_from_env(options), GW_OK);
    unsetenv("OPENCLAW_GATEWAY_PORT");
    gw_options_free(options);
    printf("ok bad_env_port\n");
}

static void case_acquire_twice_unserved(void) {
    char dir[4200];
    case_dir(dir, sizeof dir);
    gw_options *options = case_options(dir);
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    CHECK(lock != NULL && gw_lock_port(lock) != 0);
    CHECK(lock_dir_entries(dir) == 2);

    /* Held by us but not answering /healthz yet: wait the timeout, then name our pid. */
    gw_lock *second = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &second), GW_ERR_ALREADY_RUNNING);
    char want[128];
    snprintf(want, sizeof want, "gateway already running (pid %ld); lock timeout after 300ms",
             (long)getpid());
    CHECK(strcmp(gw_last_error_message(), want) == 0);
    CHECK(second == NULL);
    /* The holder as typed values; asking changes neither the answer nor the message. */
    uint32_t pid = 0;
    uint16_t port = 0;
    CHECK_RESULT(gw_last_error_holder(&pid, &port), GW_OK);
    CHECK(pid == (uint32_t)getpid() && port == gw_lock_port(lock));
    CHECK_RESULT(gw_last_error_holder(NULL, NULL), GW_OK);
    CHECK(strcmp(gw_last_error_message(), want) == 0);

    gw_lock_release(lock);
    CHECK(lock_dir_entries(dir) == 0);
    gw_options_free(options);
    printf("ok acquire_twice_unserved\n");
}

struct shutdown_job {
    gw_server *server;
    gw_result result;
};

static void *shutdown_thread(void *arg) {
    struct shutdown_job *job = arg;
    job->result = gw_shutdown(job->server, 2000);
    return NULL;
}

static void case_serve_and_shutdown_from_another_thread(void) {
    char dir[4200];
    case_dir(dir, sizeof dir);
    gw_options *options = case_options(dir);
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    uint16_t port = gw_lock_port(lock);

    struct seen seen = {0};
    gw_callbacks callbacks = callbacks_for(&seen);
    gw_server *server = NULL;
    CHECK_RESULT(gw_serve(lock, &callbacks, NULL, &server), GW_OK);
    atomic_store(&seen.serve_returned, 1);
    memset(&callbacks, 0, sizeof callbacks); /* copied by gw_serve: the host may reuse it */
    CHECK(server != NULL && gw_server_port(server) == port);
    CHECK(atomic_load(&seen.ready) == 1 && atomic_load(&seen.ready_before_return) == 1);
    CHECK(healthy(port));

    /* A second acquisition in this process: refused as soon as the holder answers /healthz,
     * naming our pid. (A long timeout: under valgrind the probe of our own server can take
     * longer than the cases' 300 ms; a healthy holder ends the wait at once.) */
    CHECK_RESULT(gw_options_set_timeout_ms(options, 30000), GW_OK);
    gw_lock *second = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &second), GW_ERR_ALREADY_RUNNING);
    char want[160];
    snprintf(want, sizeof want, "gateway already running (pid %ld); it is healthy on ws://127.0.0.1:%u",
             (long)getpid(), (unsigned)port);
    CHECK(strcmp(gw_last_error_message(), want) == 0);
    CHECK(second == NULL);
    uint32_t holder_pid = 0;
    uint16_t holder_port = 0;
    CHECK_RESULT(gw_last_error_holder(&holder_pid, &holder_port), GW_OK);
    CHECK(holder_pid == (uint32_t)getpid() && holder_port == port);

    gw_status status = status_of_live_holder(options);
    CHECK(status.running && status.healthy && !status.stale);
    CHECK(status.pid == (uint32_t)getpid() && status.port == port && status.start_time != 0);

    /* The last error is per thread: a failure elsewhere leaves ours alone. */
    struct shutdown_job failing = {NULL, GW_OK};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, shutdown_thread, &failing) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(failing.result == GW_ERR_NULL_ARGUMENT);
    CHECK(strcmp(gw_last_error_message(), want) == 0);

    struct shutdown_job job = {server, GW_ERR_PANIC};
    CHECK(pthread_create(&thread, NULL, shutdown_thread, &job) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK_RESULT(job.result, GW_OK);
    CHECK(port_is_free(port));
    CHECK(lock_dir_entries(dir) == 0);
    CHECK(atomic_load(&seen.stopped) == 1 && atomic_load(&seen.stopped_result) == GW_OK);
    CHECK(wait_for(&seen.frees, 1, 2000));
    CHECK(atomic_load(&seen.logs) >= 1); /* "gateway stopped in N ms" */
    sleep_ms(50);
    CHECK(atomic_load(&seen.frees) == 1 && atomic_load(&seen.ready) == 1 &&
          atomic_load(&seen.lock_lost) == 0);

    CHECK_RESULT(gw_lock_status(options, &status), GW_OK);
    CHECK(!status.running && !status.healthy);
    gw_options_free(options);
    printf("ok serve_and_shutdown_from_another_thread\n");
}

static void case_lock_lost(void) {
    char dir[4200];
    case_dir(dir, sizeof dir);
    gw_options *options = case_options(dir);
    CHECK_RESULT(gw_options_set_recheck_interval_ms(options, 20), GW_OK);
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    struct seen seen = {0};
    gw_callbacks callbacks = callbacks_for(&seen);
    gw_server *server = NULL;
    CHECK_RESULT(gw_serve(lock, &callbacks, NULL, &server), GW_OK);

    char path[4300];
    snprintf(path, sizeof path, "%s/locks/gateway.state.lock", dir);
    CHECK(unlink(path) == 0);
    CHECK(wait_for(&seen.lock_lost, 1, 5000));
    CHECK(atomic_load(&seen.lost_result) == GW_ERR_LOCK_LOST);
    CHECK(healthy(gw_server_port(server))); /* still serving until the host says stop */

    CHECK_RESULT(gw_shutdown(server, 1000), GW_OK);
    CHECK(wait_for(&seen.frees, 1, 2000));
    CHECK(atomic_load(&seen.lock_lost) == 1 && atomic_load(&seen.stopped) == 1);
    CHECK(lock_dir_entries(dir) == 0);
    gw_options_free(options);
    printf("ok lock_lost\n");
}

static void case_shutdown_timeout(void) {
    char dir[4200];
    case_dir(dir, sizeof dir);
    gw_options *options = case_options(dir);
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    struct seen seen = {0};
    gw_callbacks callbacks = callbacks_for(&seen);
    gw_server *server = NULL;
    CHECK_RESULT(gw_serve(lock, &callbacks, NULL, &server), GW_OK);
    uint16_t port = gw_server_port(server);

    /* A request that never ends keeps its connection open past the drain timeout. */
    int fd = connect_to(port);
    const char *partial = "GET /healthz HTTP/1.1\r\n";
    CHECK(write(fd, partial, strlen(partial)) == (ssize_t)strlen(partial));
    sleep_ms(100);
    CHECK_RESULT(gw_shutdown(server, 100), GW_ERR_TIMEOUT);
    CHECK(strstr(gw_last_error_message(), "100 ms") != NULL);
    close(fd);
    CHECK(port_is_free(port) && lock_dir_entries(dir) == 0);
    CHECK(atomic_load(&seen.stopped) == 1 && atomic_load(&seen.stopped_result) == GW_ERR_TIMEOUT);
    CHECK(wait_for(&seen.frees, 1, 2000));
    gw_options_free(options);
    printf("ok shutdown_timeout\n");
}

static void case_callbacks_size_prefix(void) {
    char dir[4200];
    case_dir(dir, sizeof dir);
    gw_options *options = case_options(dir);

    /* An older host's struct ends before `state`: later fields are NULL to the library. */
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    struct seen seen = {0};
    gw_callbacks callbacks = callbacks_for(&seen);
    callbacks.size = offsetof(gw_callbacks, state);
    gw_server *server = NULL;
    CHECK_RESULT(gw_serve(lock, &callbacks, NULL, &server), GW_OK);
    CHECK_RESULT(gw_shutdown(server, 1000), GW_OK);
    sleep_ms(50);
    CHECK(atomic_load(&seen.ready) == 0 && atomic_load(&seen.stopped) == 0);
    CHECK(atomic_load(&seen.frees) == 0 && atomic_load(&seen.logs) >= 1);

    /* `size` left at 0 is refused; the lock is released all the same. */
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    callbacks = callbacks_for(&seen);
    callbacks.size = 0;
    server = NULL;
    CHECK_RESULT(gw_serve(lock, &callbacks, NULL, &server), GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "sizeof(gw_callbacks)") != NULL);
    CHECK(server == NULL && lock_dir_entries(dir) == 0);

    /* No callbacks at all, and a NULL `out`: the lock is still taken and released. */
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    CHECK_RESULT(gw_serve(lock, NULL, NULL, NULL), GW_ERR_NULL_ARGUMENT);
    CHECK(lock_dir_entries(dir) == 0);
    gw_options_free(options);
    printf("ok callbacks_size_prefix\n");
}

static void on_request_ignore(void *userdata, gw_server *server, gw_request_id request,
                              const char *method, size_t method_len, const char *params_json,
                              size_t params_len, uint64_t conn_id) {
    (void)userdata;
    (void)server;
    (void)request;
    (void)method;
    (void)method_len;
    (void)params_json;
    (void)params_len;
    (void)conn_id;
}

/* gw_server_presence's reader: prints "presence <json>" (to stdout, for the serve host). */
static void print_presence(void *userdata, const char *json, size_t len) {
    CHECK(json[len] == '\0' && strlen(json) == len);
    if (userdata != NULL) printf("presence %s\n", json);
    fflush(stdout);
}

static void case_request_api_arguments(void) {
    /* gw_handlers: NULLs, bad names, a method twice (the Rust rules and messages). */
    gw_handlers_free(NULL);
    CHECK_RESULT(gw_handlers_add_method(NULL, "m", NULL), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_handlers_add_event(NULL, "e"), GW_ERR_NULL_ARGUMENT);
    gw_handlers *handlers = gw_handlers_new();
    CHECK(handlers != NULL);
    CHECK_RESULT(gw_handlers_add_method(handlers, NULL, NULL), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_handlers_add_method(handlers, "", NULL), GW_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(gw_handlers_add_method(handlers, "connect", NULL), GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "handshake") != NULL);
    CHECK_RESULT(gw_handlers_add_method(handlers, "m", ""), GW_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(gw_handlers_add_method(handlers, "m\xff", NULL), GW_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(gw_handlers_add_event(handlers, NULL), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_handlers_add_event(handlers, ""), GW_ERR_INVALID_ARGUMENT);
    CHECK(strcmp(gw_last_error_message(), "an event name is empty: give every event a name") == 0);
    CHECK_RESULT(gw_handlers_add_method(handlers, "m", "operator.read"), GW_OK);
    CHECK_RESULT(gw_handlers_add_method(handlers, "m", "operator.write"), GW_ERR_INVALID_ARGUMENT);
    CHECK(strcmp(gw_last_error_message(),
                 "method \"m\" is registered twice: register each method once") == 0);
    CHECK_RESULT(gw_handlers_add_event(handlers, "e"), GW_OK);
    CHECK_RESULT(gw_handlers_add_event(handlers, "e"), GW_OK);
    /* Scopes: an operator scope or "node" for a method, an operator scope for an event. */
    CHECK_RESULT(gw_handlers_add_method(handlers, "n", "node"), GW_OK);
    CHECK_RESULT(gw_handlers_add_method(handlers, "x", "custom"), GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "which no client can hold") != NULL);
    CHECK_RESULT(gw_handlers_add_event_with_scope(NULL, "e", NULL), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_handlers_add_event_with_scope(handlers, NULL, NULL), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_handlers_add_event_with_scope(handlers, "e", "custom"), GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "the scope of event \"e\" is \"custom\"") != NULL);
    CHECK_RESULT(gw_handlers_add_event_with_scope(handlers, "e", "operator.pairing"), GW_OK);
    CHECK_RESULT(gw_handlers_add_event_with_scope(handlers, "f", NULL), GW_OK);

    /* The functions on a server: NULL first. */
    CHECK_RESULT(gw_respond(NULL, 1, true, "{}", 2), GW_ERR_NULL_ARGUMENT);
    CHECK(strcmp(gw_last_error_message(), "gw_respond: server is NULL") == 0);
    CHECK_RESULT(gw_broadcast(NULL, "e", "{}", 2), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_send_event(NULL, 1, "e", "{}", 2), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_set_health(NULL, "{}", 2), GW_ERR_NULL_ARGUMENT);
    CHECK(strcmp(gw_last_error_message(), "gw_set_health: server is NULL") == 0);
    CHECK_RESULT(gw_server_presence(NULL, print_presence, NULL), GW_ERR_NULL_ARGUMENT);
    CHECK(strcmp(gw_last_error_message(), "gw_server_presence: server is NULL") == 0);
    CHECK(gw_server_connection_count(NULL) == 0);

    char dir[4200];
    case_dir(dir, sizeof dir);
    gw_options *options = case_options(dir);

    /* Methods but nobody to answer them: refused, the lock and the userdata let go of. */
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    struct seen seen = {0};
    gw_callbacks callbacks = callbacks_for(&seen);
    callbacks.handlers = handlers;
    gw_server *server = NULL;
    CHECK_RESULT(gw_serve(lock, &callbacks, NULL, &server), GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "on_request is NULL") != NULL);
    CHECK(server == NULL && lock_dir_entries(dir) == 0 && atomic_load(&seen.frees) == 1);

    /* An older host's struct ends before on_request: the handlers beyond it are not read. */
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    struct seen older = {0};
    callbacks = callbacks_for(&older);
    callbacks.handlers = handlers;
    callbacks.size = offsetof(gw_callbacks, on_request);
    CHECK_RESULT(gw_serve(lock, &callbacks, NULL, &server), GW_OK);
    CHECK_RESULT(gw_shutdown(server, 1000), GW_OK);
    CHECK(wait_for(&older.frees, 1, 2000));

    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    struct seen full = {0};
    callbacks = callbacks_for(&full);
    callbacks.handlers = handlers;
    callbacks.on_request = on_request_ignore;
    server = NULL;
    CHECK_RESULT(gw_serve(lock, &callbacks, NULL, &server), GW_OK);
    gw_handlers_free(handlers); /* copied by gw_serve */

    CHECK_RESULT(gw_respond(server, 1, true, NULL, 0), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_respond(server, 1, true, "{", 1), GW_ERR_INVALID_ARGUMENT);
    CHECK(strncmp(gw_last_error_message(), "gw_respond: json is not valid JSON", 34) == 0);
    CHECK_RESULT(gw_respond(server, 1, true, "\"\xff\"", 3), GW_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(gw_respond(server, 1, false, "{\"code\":1}", 10), GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "not an error object") != NULL);
    CHECK_RESULT(gw_respond(server, 1, false, "\"oops\"", 6), GW_ERR_INVALID_ARGUMENT);
    /* Lengths, not NULs: only the first 2 bytes are JSON. */
    CHECK_RESULT(gw_respond(server, 12345, true, "{}garbage", 2), GW_ERR_NOT_FOUND);
    CHECK(strstr(gw_last_error_message(), "request 12345 is not waiting") != NULL);
    const char *error = "{\"code\":\"X\",\"message\":\"m\"}";
    CHECK_RESULT(gw_respond(server, 0, false, error, strlen(error)), GW_ERR_NOT_FOUND);

    CHECK_RESULT(gw_broadcast(server, NULL, "{}", 2), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_broadcast(server, "e", NULL, 0), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_broadcast(server, "", "{}", 2), GW_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(gw_broadcast(server, "e\xff", "{}", 2), GW_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(gw_broadcast(server, "e", "nope", 4), GW_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(gw_broadcast(server, "e", "{\"n\":1}xyz", 7), GW_OK); /* nobody listens: fine */
    CHECK_RESULT(gw_send_event(server, 1, NULL, "{}", 2), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_send_event(server, 1, "e", NULL, 0), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_send_event(server, 1, "e", "[", 1), GW_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(gw_send_event(server, 999, "e", "null", 4), GW_ERR_NOT_FOUND);
    CHECK(strcmp(gw_last_error_message(),
                 "gw_send_event: no authenticated client on connection 999") == 0);
    CHECK_RESULT(gw_server_presence(server, NULL, NULL), GW_ERR_NULL_ARGUMENT);
    CHECK(strcmp(gw_last_error_message(), "gw_server_presence: read is NULL") == 0);
    CHECK_RESULT(gw_server_presence(server, print_presence, NULL), GW_OK);
    CHECK_RESULT(gw_set_health(server, NULL, 0), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_set_health(server, "{\"ok\":", 6), GW_ERR_INVALID_ARGUMENT);
    CHECK(strncmp(gw_last_error_message(), "gw_set_health: snapshot_json is not valid JSON", 46) == 0);
    CHECK_RESULT(gw_set_health(server, "{\"ok\":false}xyz", 12), GW_OK);
    CHECK(gw_server_connection_count(server) == 0);

    CHECK_RESULT(gw_shutdown(server, 1000), GW_OK);
    CHECK(wait_for(&full.frees, 1, 2000));
    CHECK(lock_dir_entries(dir) == 0);
    gw_options_free(options);
    printf("ok request_api_arguments\n");
}

/* The lock's own log (gw_options_set_log): counts the lines that name a stop. */
static void on_lock_log(void *userdata, gw_log_level level, const char *message, size_t len) {
    CHECK(message[len] == '\0' && strlen(message) == len && level <= GW_LOG_ERROR);
    if (strstr(message, "gateway stopped in ") != NULL) atomic_fetch_add((atomic_int *)userdata, 1);
}

static void count_free(void *userdata);

/* A health source that answers nothing: the snapshot stays as it was. */
static void quiet_health(void *userdata, gw_health_reply *reply) {
    (void)userdata;
    (void)reply;
}

static void case_serve_options_arguments(void) {
    gw_serve_options_free(NULL);
    gw_serve_options *options = gw_serve_options_new();
    CHECK(options != NULL);

    /* Zero is refused where the Rust ServeOptions::validate refuses it, with its message. */
    typedef gw_result (*ms_setter)(gw_serve_options *, uint64_t);
    static const struct {
        ms_setter set;
        const char *field;
    } millis[] = {
        {gw_serve_options_set_handshake_timeout_ms, "handshake_timeout"},
        {gw_serve_options_set_tick_interval_ms, "tick_interval"},
        {gw_serve_options_set_ping_interval_ms, "ping_interval"},
        {gw_serve_options_set_request_timeout_ms, "request_timeout"},
        {gw_serve_options_set_health_refresh_interval_ms, "health_refresh_interval"},
    };
    char want[160];
    for (size_t i = 0; i < sizeof millis / sizeof millis[0]; i++) {
        CHECK_RESULT(millis[i].set(NULL, 1), GW_ERR_NULL_ARGUMENT);
        CHECK_RESULT(millis[i].set(options, 0), GW_ERR_INVALID_ARGUMENT);
        snprintf(want, sizeof want, "%s is 0: give it a value of at least 1 (or leave the default)",
                 millis[i].field);
        CHECK(strcmp(gw_last_error_message(), want) == 0);
        CHECK_RESULT(millis[i].set(options, UINT64_MAX / 2), GW_OK);
    }
    typedef gw_result (*size_setter)(gw_serve_options *, size_t);
    static const struct {
        size_setter set;
        const char *field;
    } sizes[] = {
        {gw_serve_options_set_worker_threads, "worker_threads"},
        {gw_serve_options_set_max_connections, "max_connections"},
        {gw_serve_options_set_max_preauth_payload, "max_preauth_payload"},
        {gw_serve_options_set_max_payload, "max_payload"},
        {gw_serve_options_set_max_buffered_bytes, "max_buffered_bytes"},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        CHECK_RESULT(sizes[i].set(NULL, 1), GW_ERR_NULL_ARGUMENT);
        CHECK_RESULT(sizes[i].set(options, 0), GW_ERR_INVALID_ARGUMENT);
        snprintf(want, sizeof want, "%s is 0: give it a value of at least 1 (or leave the default)",
                 sizes[i].field);
        CHECK(strcmp(gw_last_error_message(), want) == 0);
        CHECK_RESULT(sizes[i].set(options, 2), GW_OK);
    }
    CHECK_RESULT(gw_serve_options_set_drop_timeout_ms(NULL, 1), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_serve_options_set_drop_timeout_ms(options, 0), GW_OK);
    CHECK_RESULT(gw_serve_options_set_auth_throttle(NULL, 1, 1, 1), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_serve_options_set_auth_throttle(options, 3, 1000, 2000), GW_OK);

    typedef gw_result (*string_setter)(gw_serve_options *, const char *);
    static const struct {
        string_setter set;
        const char *name;
    } strings[] = {
        {gw_serve_options_add_allowed_origin, "gw_serve_options_add_allowed_origin"},
        {gw_serve_options_set_server_version, "gw_serve_options_set_server_version"},
        {gw_serve_options_set_build_id, "gw_serve_options_set_build_id"},
        {gw_serve_options_add_capability, "gw_serve_options_add_capability"},
        {gw_serve_options_add_challenge_capability, "gw_serve_options_add_challenge_capability"},
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        CHECK_RESULT(strings[i].set(NULL, "x"), GW_ERR_NULL_ARGUMENT);
        CHECK(strncmp(gw_last_error_message(), strings[i].name, strlen(strings[i].name)) == 0);
        CHECK_RESULT(strings[i].set(options, NULL), GW_ERR_NULL_ARGUMENT);
        CHECK_RESULT(strings[i].set(options, ""), GW_ERR_INVALID_ARGUMENT);
        CHECK_RESULT(strings[i].set(options, "bad \xff utf-8"), GW_ERR_INVALID_ARGUMENT);
        CHECK(strstr(gw_last_error_message(), "not valid UTF-8") != NULL);
        CHECK_RESULT(strings[i].set(options, "https://x.example"), GW_OK);
    }
    /* OpenClaw clients take a build id of at most 96 characters. */
    char long_id[98];
    memset(long_id, 'b', 97);
    long_id[97] = '\0';
    CHECK_RESULT(gw_serve_options_set_build_id(options, long_id), GW_ERR_INVALID_ARGUMENT);
    CHECK(strcmp(gw_last_error_message(),
                 "build_id is 97 characters long: OpenClaw clients accept at most 96") == 0);
    long_id[96] = '\0';
    CHECK_RESULT(gw_serve_options_set_build_id(options, long_id), GW_OK);

    /* The health source's userdata is owned on every return: freed at once when the options
     * are NULL or the source is NULL, and when a source is replaced. */
    static atomic_int source_frees;
    CHECK_RESULT(gw_serve_options_set_health_source(NULL, NULL, &source_frees, count_free),
                 GW_ERR_NULL_ARGUMENT);
    CHECK(atomic_load(&source_frees) == 1);
    CHECK_RESULT(gw_serve_options_set_health_source(options, NULL, &source_frees, count_free),
                 GW_OK);
    CHECK(atomic_load(&source_frees) == 2);
    CHECK_RESULT(gw_serve_options_set_health_source(options, quiet_health, &source_frees,
                                                    count_free),
                 GW_OK);
    CHECK(atomic_load(&source_frees) == 2);
    CHECK_RESULT(gw_serve_options_set_health_source(options, NULL, NULL, NULL), GW_OK);
    CHECK(atomic_load(&source_frees) == 3);
    CHECK_RESULT(gw_health_reply_set(NULL, "{}", 2), GW_ERR_NULL_ARGUMENT);
    CHECK(strcmp(gw_last_error_message(), "gw_health_reply_set: reply is NULL") == 0);

    /* A server on these options (copied by gw_serve: freed at once), and on one thread. */
    char dir[4200];
    case_dir(dir, sizeof dir);
    gw_options *lock_options = case_options(dir);
    /* No gw_callbacks.log: the server keeps the lock options' logger. */
    static atomic_int stops;
    CHECK_RESULT(gw_options_set_log(lock_options, on_lock_log, &stops, NULL), GW_OK);
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(lock_options, &lock), GW_OK);
    uint16_t port = gw_lock_port(lock);
    CHECK_RESULT(gw_serve_options_set_worker_threads(options, 1), GW_OK);
    gw_server *server = NULL;
    CHECK_RESULT(gw_serve(lock, NULL, options, &server), GW_OK);
    gw_serve_options_free(options);
    CHECK(healthy(port));
    CHECK_RESULT(gw_shutdown(server, 1000), GW_OK);
    CHECK(port_is_free(port) && lock_dir_entries(dir) == 0);
    CHECK(atomic_load(&stops) == 1);
    /* NULL restores the default (stderr) logger. */
    CHECK_RESULT(gw_options_set_log(lock_options, NULL, NULL, NULL), GW_OK);
    gw_options_free(lock_options);
    printf("ok serve_options_arguments\n");
}

/*
 * gw_options_set_log's finalizer: the log's userdata is heap memory the finalizer frees, so a
 * log call after it is a use after free (ASan and valgrind run this suite). The lock's re-check
 * logs the lost lock from its own thread, racing the release.
 */
struct lock_log {
    atomic_int lines;
};
static atomic_int lock_log_frees;
static atomic_int lock_log_late;

static void on_owned_log(void *userdata, gw_log_level level, const char *message, size_t len) {
    (void)level;
    (void)message;
    (void)len;
    if (atomic_load(&lock_log_frees) != 0) atomic_fetch_add(&lock_log_late, 1);
    atomic_fetch_add(&((struct lock_log *)userdata)->lines, 1);
}

static void free_owned_log(void *userdata) {
    atomic_fetch_add(&lock_log_frees, 1);
    free(userdata);
}

static void count_free(void *userdata) { atomic_fetch_add((atomic_int *)userdata, 1); }

static void case_log_finalizer_and_lock_lost(void) {
    /* Owned on every return: a NULL options frees it at once, as does replacing it. */
    static atomic_int frees;
    CHECK_RESULT(gw_options_set_log(NULL, on_lock_log, &frees, count_free), GW_ERR_NULL_ARGUMENT);
    CHECK(atomic_load(&frees) == 1);

    char dir[4200];
    case_dir(dir, sizeof dir);
    gw_options *options = case_options(dir);
    CHECK_RESULT(gw_options_set_log(options, on_lock_log, &frees, count_free), GW_OK);
    CHECK(atomic_load(&frees) == 1);
    struct lock_log *log = calloc(1, sizeof *log);
    CHECK(log != NULL);
    CHECK_RESULT(gw_options_set_log(options, on_owned_log, log, free_owned_log), GW_OK);
    CHECK(atomic_load(&frees) == 2);
    CHECK_RESULT(gw_options_set_recheck_interval_ms(options, 20), GW_OK);

    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    CHECK(!gw_lock_is_lost(lock));
    char path[4300];
    snprintf(path, sizeof path, "%s/locks/gateway.state.lock", dir);
    CHECK(unlink(path) == 0);
    for (int i = 0; i < 500 && !gw_lock_is_lost(lock); i++) sleep_ms(10);
    CHECK(gw_lock_is_lost(lock));
    gw_options_free(options);
    CHECK(atomic_load(&lock_log_frees) == 0); /* the lock still logs with it */
    gw_lock_release(lock);
    /* Freed once nothing can log with it: at once, or soon on the re-check's thread. */
    CHECK(wait_for(&lock_log_frees, 1, 5000));
    sleep_ms(100);
    CHECK(atomic_load(&lock_log_frees) == 1 && atomic_load(&lock_log_late) == 0);
    printf("ok log_finalizer_and_lock_lost\n");
}


/*
 * Pairing from C without a client: the policy's finalizer, the store path's checks, and the
 * server calls on pending requests and paired devices written to the store file beforehand
 * (the shape the library documents), with the strings they return freed by gw_string_free.
 */
static atomic_int pairing_policy_calls;

static void pairing_never_called(void *userdata, const char *request_json, size_t request_len,
                                 const char *context_json, size_t context_len,
                                 gw_pairing_decision *decision) {
    (void)userdata;
    (void)request_json;
    (void)request_len;
    (void)context_json;
    (void)context_len;
    (void)decision;
    atomic_fetch_add(&pairing_policy_calls, 1); /* no client connects in this case */
}

static unsigned long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned long long)ts.tv_sec * 1000ULL + (unsigned long long)ts.tv_nsec / 1000000ULL;
}

static void case_pairing_calls(void) {
    /* The policy's userdata is the library's on every return, freed exactly once. */
    static atomic_int frees;
    CHECK_RESULT(gw_serve_options_set_pairing_policy(NULL, pairing_never_called, &frees, count_free),
                 GW_ERR_NULL_ARGUMENT);
    CHECK(atomic_load(&frees) == 1);
    gw_serve_options *options = gw_serve_options_new();
    CHECK(options != NULL);
    CHECK_RESULT(gw_serve_options_set_pairing_policy(options, pairing_never_called, &frees,
                                                     count_free),
                 GW_OK);
    /* NULL restores the default policy: the replaced one and this userdata are freed. */
    CHECK_RESULT(gw_serve_options_set_pairing_policy(options, NULL, &frees, count_free), GW_OK);
    CHECK(atomic_load(&frees) == 3);
    CHECK_RESULT(gw_serve_options_set_pairing_policy(options, pairing_never_called, &frees,
                                                     count_free),
                 GW_OK);

    CHECK_RESULT(gw_serve_options_set_pairing_store_path(NULL, "/x"), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_serve_options_set_pairing_store_path(options, "devices.json"),
                 GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "pairing.store_path devices.json is relative") != NULL);
    CHECK_RESULT(gw_serve_options_set_pairing_store_path(options, ""), GW_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(gw_serve_options_set_pairing_store_path(options, "/bad \xff"),
                 GW_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(gw_serve_options_set_pairing_store_path(options, NULL), GW_OK);
    CHECK_RESULT(gw_pairing_decision_approve(NULL, NULL), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_pairing_decision_reject(NULL), GW_ERR_NULL_ARGUMENT);
    gw_string_free(NULL);

    /* Two requests pending in a store of the host's choosing. */
    char dir[4200], path[4300];
    case_dir(dir, sizeof dir);
    CHECK(mkdir(dir, 0700) == 0);
    snprintf(path, sizeof path, "%s/devices.json", dir);
    FILE *file = fopen(path, "w");
    CHECK(file != NULL);
    unsigned long long ts = now_ms();
    for (int i = 0; i < 2; i++) {
        fprintf(file,
                "%s{\"requestId\":\"req-%c\",\"deviceId\":\"dev-%c\",\"publicKey\":\"key-%c\","
                "\"clientId\":\"cli\",\"clientMode\":\"cli\",\"role\":\"operator\","
                "\"scopes\":[],\"isRepair\":false,\"ts\":%llu}%s",
                i == 0 ? "{\"version\":1,\"devices\":[],\"pending\":[" : ",", 'a' + i, 'a' + i,
                'a' + i, ts, i == 1 ? "]}\n" : "");
    }
    CHECK(fclose(file) == 0);
    CHECK_RESULT(gw_serve_options_set_pairing_store_path(options, path), GW_OK);

    gw_options *lock_options = case_options(dir);
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(lock_options, &lock), GW_OK);
    gw_options_free(lock_options);
    gw_server *server = NULL;
    CHECK_RESULT(gw_serve(lock, NULL, options, &server), GW_OK);
    gw_serve_options_free(options);
    CHECK(atomic_load(&frees) == 3); /* the server holds the policy until gw_shutdown */

    char *json = NULL;
    CHECK_RESULT(gw_pairing_requests(NULL, &json), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_pairing_requests(server, NULL), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_pairing_requests(server, &json), GW_OK);
    CHECK(strstr(json, "\"requestId\":\"req-a\"") != NULL);
    CHECK(strstr(json, "\"requestId\":\"req-b\"") != NULL);
    gw_string_free(json);

    CHECK_RESULT(gw_pairing_approve(server, NULL, NULL), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_pairing_approve(server, "req-a", "{\"not\":\"a list\"}"),
                 GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "scopes_json is not a JSON array") != NULL);
    CHECK_RESULT(gw_pairing_approve(server, "req-a", "[\"operator.read\"]"), GW_OK);
    CHECK_RESULT(gw_pairing_approve(server, "req-a", NULL), GW_ERR_NOT_FOUND);
    CHECK(strstr(gw_last_error_message(), "no pending pairing request req-a") != NULL);
    CHECK_RESULT(gw_pairing_reject(server, "req-b"), GW_OK);
    CHECK_RESULT(gw_pairing_reject(server, "req-b"), GW_ERR_NOT_FOUND);
    CHECK_RESULT(gw_pairing_requests(server, &json), GW_OK);
    CHECK(strcmp(json, "[]") == 0);
    gw_string_free(json);

    CHECK_RESULT(gw_paired_devices(server, &json), GW_OK);
    CHECK(strstr(json, "\"deviceId\":\"dev-a\"") != NULL);
    CHECK(strstr(json, "\"scopes\":[\"operator.read\"]") != NULL);
    CHECK(strstr(json, "dev-b") == NULL);
    gw_string_free(json);
    /* Approval issued the role's token (as Node's does): revoked once, then there is none. */
    CHECK_RESULT(gw_device_token_revoke(server, "dev-a", "operator"), GW_OK);
    CHECK_RESULT(gw_device_token_revoke(server, "dev-a", "operator"), GW_ERR_NOT_FOUND);
    CHECK(strstr(gw_last_error_message(), "no active operator token") != NULL);
    CHECK_RESULT(gw_device_token_revoke(server, "dev-a", NULL), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_paired_device_remove(server, "dev-a"), GW_OK);
    CHECK_RESULT(gw_paired_device_remove(server, "dev-a"), GW_ERR_NOT_FOUND);
    CHECK_RESULT(gw_paired_devices(server, &json), GW_OK);
    CHECK(strcmp(json, "[]") == 0);
    gw_string_free(json);

    /* Bootstrap tokens: the profile is checked; the token is 43 characters of base64url. */
    char *token = NULL;
    CHECK_RESULT(gw_bootstrap_token_issue(NULL, "{\"roles\":[\"node\"]}", &token),
                 GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_bootstrap_token_issue(server, NULL, &token), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_bootstrap_token_issue(server, "{\"roles\":[\"node\"]}", NULL),
                 GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_bootstrap_token_issue(server, "{\"role\":\"node\"}", &token),
                 GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "profile_json is not a bootstrap profile") != NULL);
    CHECK_RESULT(gw_bootstrap_token_issue(server, "{\"roles\":[]}", &token),
                 GW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(gw_last_error_message(), "names no role") != NULL);
    CHECK(token == NULL);
    CHECK_RESULT(gw_bootstrap_token_issue(
                     server, "{\"roles\":[\"node\"],\"scopes\":[],\"ttlMs\":60000}", &token),
                 GW_OK);
    CHECK(token != NULL && strlen(token) == 43 && strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == 43);
    gw_string_free(token);

    CHECK_RESULT(gw_shutdown(server, 1000), GW_OK);
    CHECK(atomic_load(&frees) == 4 && atomic_load(&pairing_policy_calls) == 0);
    printf("ok pairing_calls\n");
}

/* A lock file as a gateway on another machine wrote it (issue 13): its pid means nothing here. */
static void plant_other_host_lock(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/locks", dir);
    CHECK(mkdir(dir, 0700) == 0 || errno == EEXIST);
    CHECK(mkdir(path, 0700) == 0);
    snprintf(path, sizeof path, "%s/locks/gateway.state.lock", dir);
    FILE *file = fopen(path, "wx");
    CHECK(file != NULL);
    CHECK(chmod(path, 0600) == 0);
    fprintf(file, "{\n  \"pid\": 4242,\n  \"createdAt\": \"2026-11-21T00:36:45.087Z\",\n"
                  "  \"configPath\": \"/elsewhere/openclaw.json\",\n  \"port\": 18789,\n"
                  "  \"startTime\": 1,\n  \"hostname\": \"host-elsewhere\",\n"
                  "  \"bootId\": \"00000000-0000-4000-8000-000000000001\",\n"
                  "  \"machineId\": \"not-this-machine\"\n}\n");
    CHECK(fclose(file) == 0);
}

static void case_other_host_and_unlock(void) {
    char dir[4200];
    case_dir(dir, sizeof dir);
    plant_other_host_lock(dir);
    gw_options *options = case_options(dir);

    /* Refused at once, naming the host and its pid; the file is kept. */
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_ERR_HELD_BY_OTHER_HOST);
    CHECK(lock == NULL);
    CHECK(strcmp(gw_result_name(GW_ERR_HELD_BY_OTHER_HOST), "GW_ERR_HELD_BY_OTHER_HOST") == 0);
    CHECK(strcmp(gw_last_error_message(),
                 "gateway already running on host host-elsewhere (pid 4242); if that gateway is "
                 "gone, run `gateway unlock --force` on this machine") == 0);
    uint32_t pid = 0;
    uint16_t port = 0;
    CHECK_RESULT(gw_last_error_holder(&pid, &port), GW_OK);
    CHECK(pid == 4242 && port == 18789);
    CHECK(strcmp(gw_last_error_holder_host(), "host-elsewhere") == 0);
    CHECK(lock_dir_entries(dir) == 1);

    /* Unlock without force: the same refusal, nothing removed. */
    uint32_t removed = 99;
    CHECK_RESULT(gw_unlock(options, false, &removed), GW_ERR_HELD_BY_OTHER_HOST);
    CHECK(removed == 99);
    CHECK(strcmp(gw_last_error_holder_host(), "host-elsewhere") == 0);
    CHECK(lock_dir_entries(dir) == 1);
    CHECK_RESULT(gw_unlock(NULL, true, &removed), GW_ERR_NULL_ARGUMENT);
    CHECK(strcmp(gw_last_error_holder_host(), "") == 0);

    /* With force: removed; now this process can be the gateway. */
    CHECK_RESULT(gw_unlock(options, true, &removed), GW_OK);
    CHECK(removed == 1);
    CHECK(lock_dir_entries(dir) == 0);
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);

    /* A live gateway of this machine: never removed, forced or not. */
    CHECK_RESULT(gw_unlock(options, true, NULL), GW_ERR_ALREADY_RUNNING);
    CHECK_RESULT(gw_last_error_holder(&pid, NULL), GW_OK);
    CHECK(pid == (uint32_t)getpid());
    CHECK(strcmp(gw_last_error_holder_host(), "") == 0);
    CHECK(strstr(gw_last_error_message(), "is alive on this machine") != NULL);
    CHECK(lock_dir_entries(dir) == 2);
    gw_lock_release(lock);
    CHECK_RESULT(gw_unlock(options, false, &removed), GW_OK);
    CHECK(removed == 0);
    gw_options_free(options);
    printf("ok other_host_and_unlock\n");
}

static int run_all(void) {
    case_bad_env_port();
    case_version_and_names();
    case_null_arguments();
    case_bad_values();
    case_acquire_twice_unserved();
    case_serve_and_shutdown_from_another_thread();
    case_lock_lost();
    case_shutdown_timeout();
    case_callbacks_size_prefix();
    case_request_api_arguments();
    case_serve_options_arguments();
    case_log_finalizer_and_lock_lost();
    case_pairing_calls();
    case_other_host_and_unlock();
    printf("all ok\n");
    return 0;
}

static int run_hold(void) {
    gw_options *options = case_options(base_dir);
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    gw_server *server = NULL;
    CHECK_RESULT(gw_serve(lock, NULL, NULL, &server), GW_OK);
    printf("ready %u %ld\n", (unsigned)gw_server_port(server), (long)getpid());
    fflush(stdout);
    char buffer[64];
    while (fread(buffer, 1, sizeof buffer, stdin) > 0) {
    }
    CHECK_RESULT(gw_shutdown(server, 1000), GW_OK);
    gw_options_free(options);
    return 0;
}

static int run_second(const char *holder) {
    gw_options *options = case_options(base_dir);
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_ERR_ALREADY_RUNNING);
    char want[64];
    snprintf(want, sizeof want, "gateway already running (pid %s);", holder);
    CHECK(strncmp(gw_last_error_message(), want, strlen(want)) == 0);
    gw_status status = status_of_live_holder(options);
    CHECK(status.running && status.healthy && status.pid == (uint32_t)atol(holder));
    uint32_t pid = 0;
    uint16_t port = 0;
    CHECK_RESULT(gw_last_error_holder(&pid, &port), GW_OK);
    CHECK(pid == status.pid && port == status.port);
    printf("refused: %s\n", gw_last_error_message());
    printf("holder %u %u\n", (unsigned)pid, (unsigned)port);
    gw_options_free(options);
    return 0;
}

static int run_panic(void) {
    gw_options *options = case_options(base_dir);
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_ERR_PANIC);
    CHECK(strncmp(gw_last_error_message(), "panic in gw_lock_acquire: ", 26) == 0);
    CHECK(lock == NULL);
    /* The library is still usable after a panic. */
    gw_status status;
    CHECK_RESULT(gw_lock_status(options, &status), GW_OK);
    CHECK(!status.running);
    gw_options_free(options);
    printf("ok panic\n");
    return 0;
}

/*
 * A panic in gw_serve after it allocated its server (GATEWAY_FFI_PANIC=gw_serve:served): the
 * server is still stopped and freed (ASan's leak check sees a leak otherwise), its userdata
 * freed once, the port and the lock given back.
 */
static int run_serve_panic(void) {
    gw_options *options = case_options(base_dir);
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    uint16_t port = gw_lock_port(lock);
    struct seen seen = {0};
    gw_callbacks callbacks = callbacks_for(&seen);
    gw_server *server = NULL;
    CHECK_RESULT(gw_serve(lock, &callbacks, NULL, &server), GW_ERR_PANIC);
    CHECK(strncmp(gw_last_error_message(), "panic in gw_serve: ", 19) == 0);
    CHECK(server == NULL);
    CHECK(wait_for(&seen.frees, 1, 5000));
    CHECK(atomic_load(&seen.frees) == 1 && atomic_load(&seen.stopped) == 1);
    CHECK(port_is_free(port) && lock_dir_entries(base_dir) == 0);
    gw_options_free(options);
    printf("ok serve_panic\n");
    return 0;
}

/*
 * `serve`: a host whose methods a real WebSocket client calls (tests/c_abi.rs drives both).
 *   echo  (scope operator.read)  answered {"echo": <params>} by another thread
 *   fail  (operator.read)        answered at once, inside on_request, with an error object
 *   slow  (operator.read)        never answered: the client gets UNAVAILABLE after 2000 ms
 *   stall (operator.read)        answered from inside on_request after 2600 ms, printing
 *                                "stall <result>": it outlasts the shutdown's 2000 ms drain
 * events demo.tick, demo.direct and demo.pair (operator.pairing only); serve options: request timeout 2000 ms, origin
 * https://app.example.com allowed, at most 2 connections, server version "c-host 9", build id
 * "c-build 1", capability "c-contract-v1", challenge capability "c-connect-v1", frames up to
 * 1 MiB, 2 MiB buffered, a tick every 25000 ms, and a health source answering
 * {"ok":true,"source":"c-source","refresh":<n>}, refreshed every 600000 ms (its finalizer
 * prints "source freed").
 * stdin commands, one per line:
 *   broadcast <n>    gw_broadcast demo.tick {"n":<n>}    → "broadcast <result>"
 *   pair <n>         gw_broadcast demo.pair {"n":<n>}    → "pair <result>"
 *   send <conn>      gw_send_event demo.direct {"to":<conn>} → "send <result>"
 *   late             gw_respond to the timed-out slow request → "late <result>"
 *   health           gw_set_health {"ok":true,"source":"c-host"} → "health <result>"
 *   count            gw_server_connection_count → "count <n>"
 *   presence         gw_server_presence → "presence <json array>"
 * EOF: stops the answering thread, shuts down, prints "stopped <result>" once the userdata
 * is freed. Library callbacks print "opened <conn> <client json>", "closed <conn>",
 * "request <method> <conn> <params>", and the answering thread "answered <id>".
 */
struct pending_answer {
    gw_request_id id;
    char *params;
    struct pending_answer *next;
};

struct host {
    gw_server *server; /* written by gw_serve through `out` before any request arrives */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct pending_answer *queue;
    int stopping;
    atomic_ullong slow_request;
    atomic_int frees;
};

static pthread_mutex_t say_lock = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *format, ...) {
    va_list args;
    va_start(args, format);
    pthread_mutex_lock(&say_lock);
    vprintf(format, args);
    fflush(stdout);
    pthread_mutex_unlock(&say_lock);
    va_end(args);
}

static void host_on_request(void *userdata, gw_server *server, gw_request_id request,
                            const char *method, size_t method_len, const char *params_json,
                            size_t params_len, uint64_t conn_id) {
    struct host *host = userdata;
    CHECK(method[method_len] == '\0' && strlen(method) == method_len);
    CHECK(params_json[params_len] == '\0' && strlen(params_json) == params_len);
    /* The clients come after "ready": gw_serve has also written the same server out. */
    CHECK(request != 0 && server != NULL && server == host->server);
    say("request %s %llu %s\n", method, (unsigned long long)conn_id, params_json);
    if (strcmp(method, "echo") == 0) {
        /* Later, from another thread: hand the id and a copy of the params over. */
        struct pending_answer *answer = malloc(sizeof *answer);
        CHECK(answer != NULL);
        answer->id = request;
        answer->params = malloc(params_len + 1);
        CHECK(answer->params != NULL);
        memcpy(answer->params, params_json, params_len + 1);
        pthread_mutex_lock(&host->lock);
        answer->next = host->queue;
        host->queue = answer;
        pthread_cond_signal(&host->changed);
        pthread_mutex_unlock(&host->lock);
    } else if (strcmp(method, "fail") == 0) {
        /* At once, inside the callback; a bad answer leaves the request waiting. */
        CHECK_RESULT(gw_respond(server, request, false, "{\"code\":1}", 10),
                     GW_ERR_INVALID_ARGUMENT);
        const char *error =
            "{\"code\":\"E_DEMO\",\"message\":\"nope\",\"details\":{\"code\":\"DEMO\"}}";
        CHECK_RESULT(gw_respond(server, request, false, error, strlen(error)), GW_OK);
        CHECK_RESULT(gw_respond(server, request, true, "{}", 2), GW_ERR_NOT_FOUND);
    } else if (strcmp(method, "slow") == 0) {
        atomic_store(&host->slow_request, (unsigned long long)request);
    } else if (strcmp(method, "stall") == 0) {
        /* Still inside the callback when gw_shutdown's 2000 ms drain has given up on this
         * connection: the library must not free the server under it (ASan would see the use
         * after free). */
        sleep_ms(2600);
        say("stall %s\n", gw_result_name(gw_respond(server, request, true, "{}", 2)));
    } else {
        fprintf(stderr, "FAIL unexpected method %s\n", method);
        exit(1);
    }
}

static void host_on_connection(void *userdata, gw_server *server, uint64_t conn_id, bool opened,
                               const char *client_json, size_t len) {
    (void)userdata;
    CHECK(client_json[len] == '\0' && strlen(client_json) == len && server != NULL);
    if (opened)
        say("opened %llu %s\n", (unsigned long long)conn_id, client_json);
    else
        say("closed %llu\n", (unsigned long long)conn_id);
}

static atomic_int health_refreshes;

static void host_health(void *userdata, gw_health_reply *reply) {
    CHECK(userdata == &health_refreshes);
    int n = atomic_fetch_add(&health_refreshes, 1) + 1;
    char snapshot[80];
    int len = snprintf(snapshot, sizeof snapshot,
                       "{\"ok\":true,\"source\":\"c-source\",\"refresh\":%d}", n);
    CHECK_RESULT(gw_health_reply_set(reply, "{\"ok\":", 6), GW_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(gw_health_reply_set(reply, snapshot, (size_t)len), GW_OK);
}

static void host_health_free(void *userdata) {
    CHECK(userdata == &health_refreshes);
    say("source freed\n");
}

static void say_presence(void *userdata, const char *json, size_t len) {
    CHECK(userdata == NULL && json[len] == '\0' && strlen(json) == len);
    say("presence %s\n", json);
}

static void host_free(void *userdata) {
    struct host *host = userdata;
    atomic_fetch_add(&host->frees, 1);
}

static void *answering_thread(void *arg) {
    struct host *host = arg;
    pthread_mutex_lock(&host->lock);
    for (;;) {
        while (host->queue == NULL && !host->stopping)
            pthread_cond_wait(&host->changed, &host->lock);
        if (host->queue == NULL) break;
        struct pending_answer *answer = host->queue;
        host->queue = answer->next;
        pthread_mutex_unlock(&host->lock);

        size_t size = strlen(answer->params) + 16;
        char *payload = malloc(size);
        CHECK(payload != NULL);
        int len = snprintf(payload, size, "{\"echo\":%s}", answer->params);
        CHECK(len > 0 && (size_t)len < size);
        CHECK_RESULT(gw_respond(host->server, answer->id, true, payload, (size_t)len), GW_OK);
        CHECK_RESULT(gw_respond(host->server, answer->id, true, payload, (size_t)len),
                     GW_ERR_NOT_FOUND);
        say("answered %llu\n", (unsigned long long)answer->id);
        free(payload);
        free(answer->params);
        free(answer);
        pthread_mutex_lock(&host->lock);
    }
    pthread_mutex_unlock(&host->lock);
    return NULL;
}

static int run_serve(void) {
    gw_options *options = case_options(base_dir);
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    gw_options_free(options);

    gw_handlers *handlers = gw_handlers_new();
    CHECK(handlers != NULL);
    CHECK_RESULT(gw_handlers_add_method(handlers, "echo", "operator.read"), GW_OK);
    CHECK_RESULT(gw_handlers_add_method(handlers, "fail", "operator.read"), GW_OK);
    CHECK_RESULT(gw_handlers_add_method(handlers, "slow", "operator.read"), GW_OK);
    CHECK_RESULT(gw_handlers_add_method(handlers, "stall", "operator.read"), GW_OK);
    CHECK_RESULT(gw_handlers_add_event(handlers, "demo.tick"), GW_OK);
    CHECK_RESULT(gw_handlers_add_event(handlers, "demo.direct"), GW_OK);
    CHECK_RESULT(gw_handlers_add_event_with_scope(handlers, "demo.pair", "operator.pairing"), GW_OK);

    gw_serve_options *serve_options = gw_serve_options_new();
    CHECK(serve_options != NULL);
    CHECK_RESULT(gw_serve_options_set_request_timeout_ms(serve_options, 2000), GW_OK);
    CHECK_RESULT(gw_serve_options_add_allowed_origin(serve_options, "https://app.example.com"),
                 GW_OK);
    CHECK_RESULT(gw_serve_options_set_max_connections(serve_options, 2), GW_OK);
    CHECK_RESULT(gw_serve_options_set_server_version(serve_options, "c-host 9"), GW_OK);
    CHECK_RESULT(gw_serve_options_set_max_payload(serve_options, 1048576), GW_OK);
    CHECK_RESULT(gw_serve_options_set_max_buffered_bytes(serve_options, 2097152), GW_OK);
    CHECK_RESULT(gw_serve_options_set_tick_interval_ms(serve_options, 25000), GW_OK);
    CHECK_RESULT(gw_serve_options_set_build_id(serve_options, "c-build 1"), GW_OK);
    CHECK_RESULT(gw_serve_options_add_capability(serve_options, "c-contract-v1"), GW_OK);
    CHECK_RESULT(gw_serve_options_add_challenge_capability(serve_options, "c-connect-v1"), GW_OK);
    /* Longer than the suite runs under valgrind: the only refreshes are the start's and
     * those the test asks for. */
    CHECK_RESULT(gw_serve_options_set_health_refresh_interval_ms(serve_options, 600000), GW_OK);
    CHECK_RESULT(gw_serve_options_set_health_source(serve_options, host_health, &health_refreshes,
                                                    host_health_free),
                 GW_OK);

    static struct host host; /* zeroed; outlives every callback */
    CHECK(pthread_mutex_init(&host.lock, NULL) == 0);
    CHECK(pthread_cond_init(&host.changed, NULL) == 0);
    pthread_t answerer;
    CHECK(pthread_create(&answerer, NULL, answering_thread, &host) == 0);

    gw_callbacks callbacks;
    memset(&callbacks, 0, sizeof callbacks);
    callbacks.size = sizeof callbacks;
    callbacks.userdata = &host;
    callbacks.free_userdata = host_free;
    callbacks.on_request = host_on_request;
    callbacks.on_connection = host_on_connection;
    callbacks.handlers = handlers;
    CHECK_RESULT(gw_serve(lock, &callbacks, serve_options, &host.server), GW_OK);
    gw_handlers_free(handlers);
    gw_serve_options_free(serve_options);
    say("ready %u\n", (unsigned)gw_server_port(host.server));

    char line[256];
    while (fgets(line, sizeof line, stdin) != NULL) {
        unsigned long long number = 0;
        char payload[64];
        if (sscanf(line, "broadcast %llu", &number) == 1) {
            int len = snprintf(payload, sizeof payload, "{\"n\":%llu}", number);
            say("broadcast %s\n",
                gw_result_name(gw_broadcast(host.server, "demo.tick", payload, (size_t)len)));
        } else if (sscanf(line, "pair %llu", &number) == 1) {
            int len = snprintf(payload, sizeof payload, "{\"n\":%llu}", number);
            say("pair %s\n",
                gw_result_name(gw_broadcast(host.server, "demo.pair", payload, (size_t)len)));
        } else if (sscanf(line, "send %llu", &number) == 1) {
            int len = snprintf(payload, sizeof payload, "{\"to\":%llu}", number);
            say("send %s\n", gw_result_name(gw_send_event(host.server, number, "demo.direct",
                                                          payload, (size_t)len)));
        } else if (strcmp(line, "health\n") == 0) {
            const char *snapshot = "{\"ok\":true,\"source\":\"c-host\"}";
            say("health %s\n",
                gw_result_name(gw_set_health(host.server, snapshot, strlen(snapshot))));
        } else if (strcmp(line, "presence\n") == 0) {
            CHECK_RESULT(gw_server_presence(host.server, say_presence, NULL), GW_OK);
        } else if (strcmp(line, "count\n") == 0) {
            say("count %zu\n", gw_server_connection_count(host.server));
        } else if (strcmp(line, "late\n") == 0) {
            gw_request_id slow = (gw_request_id)atomic_load(&host.slow_request);
            CHECK(slow != 0);
            say("late %s\n", gw_result_name(gw_respond(host.server, slow, true, "{}", 2)));
        } else {
            fprintf(stderr, "FAIL unknown command %s", line);
            return 1;
        }
    }

    /* The host's own threads make their last calls before gw_shutdown. */
    pthread_mutex_lock(&host.lock);
    host.stopping = 1;
    pthread_cond_signal(&host.changed);
    pthread_mutex_unlock(&host.lock);
    CHECK(pthread_join(answerer, NULL) == 0);
    gw_result stopped = gw_shutdown(host.server, 2000);
    CHECK(wait_for(&host.frees, 1, 5000));
    pthread_cond_destroy(&host.changed);
    pthread_mutex_destroy(&host.lock);
    say("stopped %s\n", gw_result_name(stopped));
    return 0;
}


/*
 * `pairing`: a host that decides pairing requests in its policy callback, for signed clients
 * driven by tests/c_abi.rs (auth token "s3cret-token"). The callback prints "asked
 * <request json> <context json>" and decides by the device's display name: "approve-me" is
 * approved with ["operator.read"], "reject-me" rejected, any other left pending. stdin
 * commands, one per line:
 *   requests              gw_pairing_requests  → "requests <json>"
 *   approve <request id>  gw_pairing_approve   → "approve <result>"
 *   reject <request id>   gw_pairing_reject    → "reject <result>"
 *   devices               gw_paired_devices    → "devices <json>"
 *   revoke <device id>    gw_device_token_revoke(operator) → "revoke <result>"
 *   bootstrap <profile>   gw_bootstrap_token_issue → "bootstrap <token>" or "bootstrap <result>"
 * EOF: shuts down and prints "stopped <result>" once the policy's userdata is freed.
 */
static void host_pairing_decide(void *userdata, const char *request_json, size_t request_len,
                                const char *context_json, size_t context_len,
                                gw_pairing_decision *decision) {
    (void)userdata;
    CHECK(request_json[request_len] == '\0' && strlen(request_json) == request_len);
    CHECK(context_json[context_len] == '\0' && strlen(context_json) == context_len);
    say("asked %s %s\n", request_json, context_json);
    if (strstr(request_json, "\"displayName\":\"approve-me\"") != NULL) {
        CHECK_RESULT(gw_pairing_decision_approve(decision, "[oops"), GW_ERR_INVALID_ARGUMENT);
        CHECK_RESULT(gw_pairing_decision_approve(decision, "[\"operator.read\"]"), GW_OK);
    } else if (strstr(request_json, "\"displayName\":\"reject-me\"") != NULL) {
        CHECK_RESULT(gw_pairing_decision_reject(decision), GW_OK);
    }
}

static int run_pairing(void) {
    gw_options *options = case_options(base_dir);
    CHECK_RESULT(gw_options_set_auth_token(options, "s3cret-token"), GW_OK);
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    gw_options_free(options);

    static atomic_int frees;
    gw_serve_options *serve_options = gw_serve_options_new();
    CHECK(serve_options != NULL);
    CHECK_RESULT(gw_serve_options_set_pairing_policy(serve_options, host_pairing_decide, &frees,
                                                     count_free),
                 GW_OK);
    gw_server *server = NULL;
    CHECK_RESULT(gw_serve(lock, NULL, serve_options, &server), GW_OK);
    gw_serve_options_free(serve_options);
    say("ready %u\n", (unsigned)gw_server_port(server));

    char line[512], argument[256];
    while (fgets(line, sizeof line, stdin) != NULL) {
        char *json = NULL;
        if (strcmp(line, "requests\n") == 0) {
            CHECK_RESULT(gw_pairing_requests(server, &json), GW_OK);
            say("requests %s\n", json);
            gw_string_free(json);
        } else if (strcmp(line, "devices\n") == 0) {
            CHECK_RESULT(gw_paired_devices(server, &json), GW_OK);
            say("devices %s\n", json);
            gw_string_free(json);
        } else if (sscanf(line, "approve %255s", argument) == 1) {
            say("approve %s\n", gw_result_name(gw_pairing_approve(server, argument, NULL)));
        } else if (sscanf(line, "reject %255s", argument) == 1) {
            say("reject %s\n", gw_result_name(gw_pairing_reject(server, argument)));
        } else if (sscanf(line, "revoke %255s", argument) == 1) {
            say("revoke %s\n",
                gw_result_name(gw_device_token_revoke(server, argument, "operator")));
        } else if (sscanf(line, "bootstrap %255[^\n]", argument) == 1) {
            gw_result issued = gw_bootstrap_token_issue(server, argument, &json);
            if (issued == GW_OK) {
                say("bootstrap %s\n", json);
                gw_string_free(json);
            } else {
                say("bootstrap %s\n", gw_result_name(issued));
            }
        } else {
            fprintf(stderr, "FAIL unknown command %s", line);
            return 1;
        }
    }
    gw_result stopped = gw_shutdown(server, 2000);
    CHECK(wait_for(&frees, 1, 5000));
    say("stopped %s\n", gw_result_name(stopped));
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s all|hold|second|panic|serve_panic|serve|pairing <dir> [pid]\n", argv[0]);
        return 2;
    }
    snprintf(base_dir, sizeof base_dir, "%s", argv[2]);
    if (strcmp(argv[1], "all") == 0) return run_all();
    if (strcmp(argv[1], "hold") == 0) return run_hold();
    if (strcmp(argv[1], "second") == 0 && argc == 4) return run_second(argv[3]);
    if (strcmp(argv[1], "panic") == 0) return run_panic();
    if (strcmp(argv[1], "serve_panic") == 0) return run_serve_panic();
    if (strcmp(argv[1], "serve") == 0) return run_serve();
    if (strcmp(argv[1], "pairing") == 0) return run_pairing();
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
