/*
 * Host HTTP routes from C (gw_serve_options_add_http_route, gw_http_exchange_*): built with
 * -std=c11 -Wall -Wextra -Wpedantic -Werror and run by tests/c_abi.rs, normally, under
 * ASan+UBSan and under valgrind. The HTTP client is plain sockets over TCP, in this process.
 *
 *   test_http all <dir>     every case; prints "ok <case>" for each, then "all ok"
 *   test_http pipeline <dir>  a GW_HTTP_ROUTE_GATEWAY_AUTH route: 401 without the gateway's
 *                           bearer token, 200 (and authenticated) with it; a stalled body
 *                           fails its read after the serve options' idle timeout (408)
 *   test_http ui <dir>      the Control UI mounted from C: a built UI directory under a base
 *                           path, with the host's control-ui-config.json keys
 *
 * Any failed check prints "FAIL file:line: ..." and exits 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

/* The last error contains `text`. */
#define CHECK_MESSAGE(text) CHECK(strstr(gw_last_error_message(), (text)) != NULL)

#define TOKEN "s3cret-token"
/* Every wait for the other side has this long: generous, for valgrind on a loaded machine. */
#define DEADLINE_MS 60000L
#define UPLOAD_BYTES (6u * 1024u * 1024u)
#define EVENTS 5

static char base_dir[4096];

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int wait_for(atomic_int *flag, int want) {
    for (long waited = 0; waited <= DEADLINE_MS; waited += 5) {
        if (atomic_load(flag) >= want) return 1;
        sleep_ms(5);
    }
    return 0;
}

/* The next of the ports tests/c_abi.rs gives this program (GATEWAY_TEST_PORTS); 0 without. */
static uint16_t next_test_port(void) {
    static const char *cursor = NULL;
    if (cursor == NULL) cursor = getenv("GATEWAY_TEST_PORTS");
    if (cursor == NULL || *cursor == '\0') return 0;
    char *end = NULL;
    unsigned long port = strtoul(cursor, &end, 10);
    cursor = *end == ',' ? end + 1 : end;
    return (uint16_t)port;
}

static gw_options *case_options(const char *name) {
    char path[4200];
    gw_options *options = gw_options_new();
    CHECK(options != NULL);
    snprintf(path, sizeof path, "%s/%s/state", base_dir, name);
    CHECK_RESULT(gw_options_set_state_dir(options, path), GW_OK);
    snprintf(path, sizeof path, "%s/%s/state/openclaw.json", base_dir, name);
    CHECK_RESULT(gw_options_set_config_path(options, path), GW_OK);
    snprintf(path, sizeof path, "%s/%s/locks", base_dir, name);
    CHECK_RESULT(gw_options_set_lock_dir(options, path), GW_OK);
    CHECK_RESULT(gw_options_set_port(options, next_test_port()), GW_OK);
    CHECK_RESULT(gw_options_set_auth_token(options, TOKEN), GW_OK);
    return options;
}

/* ---- the client: one request per connection, read to the end ---- */

struct reply {
    int status;
    char *raw;          /* everything the server sent */
    size_t raw_len;
    size_t head_len;    /* through the blank line */
    char *body;         /* de-chunked when chunked */
    size_t body_len;
    int chunked;
    int complete;       /* the body ended as HTTP says (final chunk, or content-length) */
};

static void reply_free(struct reply *reply) {
    free(reply->raw);
    free(reply->body);
    memset(reply, 0, sizeof *reply);
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

/* Writes all of it, or stops when the server closed (it may answer before reading it all). */
static void send_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n <= 0) return;
        data += n;
        len -= (size_t)n;
    }
}

/* Case-insensitive search of the response head. */
static const char *head_find(const struct reply *reply, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= reply->head_len; i++) {
        size_t j = 0;
        while (j < n && tolower((unsigned char)reply->raw[i + j]) == tolower((unsigned char)needle[j])) j++;
        if (j == n) return reply->raw + i;
    }
    return NULL;
}

/* Splits what was read into status, head and body (de-chunked). */
static void parse_reply(struct reply *reply) {
    char *end = NULL;
    for (size_t i = 0; i + 4 <= reply->raw_len; i++) {
        if (memcmp(reply->raw + i, "\r\n\r\n", 4) == 0) {
            end = reply->raw + i + 4;
            break;
        }
    }
    CHECK(end != NULL && reply->raw_len > 12 && memcmp(reply->raw, "HTTP/1.1 ", 9) == 0);
    reply->head_len = (size_t)(end - reply->raw);
    reply->status = atoi(reply->raw + 9);
    size_t rest = reply->raw_len - reply->head_len;
    reply->body = malloc(rest + 1);
    CHECK(reply->body != NULL);
    reply->chunked = head_find(reply, "\r\ntransfer-encoding: chunked\r\n") != NULL;
    if (!reply->chunked) {
        const char *length = head_find(reply, "\r\ncontent-length: ");
        memcpy(reply->body, end, rest);
        reply->body_len = rest;
        reply->complete = length != NULL && strtoul(length + 18, NULL, 10) == rest;
    } else {
        const char *at = end, *stop = reply->raw + reply->raw_len;
        for (;;) {
            const char *line_end = NULL;
            for (const char *p = at; p + 1 < stop; p++) {
                if (p[0] == '\r' && p[1] == '\n') {
                    line_end = p;
                    break;
                }
            }
            if (line_end == NULL) break;
            size_t size = strtoul(at, NULL, 16);
            at = line_end + 2;
            if (size == 0) {
                reply->complete = 1;
                break;
            }
            if ((size_t)(stop - at) < size + 2) break;
            memcpy(reply->body + reply->body_len, at, size);
            reply->body_len += size;
            at += size + 2;
        }
    }
    reply->body[reply->body_len] = '\0';
}

/* Reads until the server closes; calls `progress` (when not NULL) after each read. */
static void read_reply(int fd, struct reply *reply, void (*progress)(const struct reply *)) {
    size_t cap = 1 << 16;
    reply->raw = malloc(cap + 1);
    CHECK(reply->raw != NULL);
    for (;;) {
        if (reply->raw_len == cap) {
            cap *= 2;
            reply->raw = realloc(reply->raw, cap + 1);
            CHECK(reply->raw != NULL);
        }
        ssize_t n = read(fd, reply->raw + reply->raw_len, cap - reply->raw_len);
        if (n <= 0) break;
        reply->raw_len += (size_t)n;
        reply->raw[reply->raw_len] = '\0';
        if (progress != NULL) progress(reply);
    }
    reply->raw[reply->raw_len] = '\0';
    close(fd);
    parse_reply(reply);
}

/* Sends `head` (its lines, without the blank line; "Connection: close" is added) and `body`. */
static struct reply request(uint16_t port, const char *head, const char *body, size_t body_len) {
    int fd = connect_to(port);
    char full[2048];
    int n = snprintf(full, sizeof full, "%s\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", head);
    CHECK(n > 0 && (size_t)n < sizeof full);
    send_all(fd, full, (size_t)n);
    if (body_len > 0) send_all(fd, body, body_len);
    struct reply reply;
    memset(&reply, 0, sizeof reply);
    read_reply(fd, &reply, NULL);
    return reply;
}

/* ---- the host: route callbacks, and a thread of its own for the answers that wait ---- */

struct host {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    gw_http_exchange *queue[16];
    int queued;
    int stopping;
    atomic_int frees;            /* route userdata finalizers run */
    atomic_int client_saw_all;   /* the stream's client has every event */
    atomic_int saw_before_finish;
    atomic_int upload_reads;
    atomic_int client_saw_partial; /* the cut stream's client has its first chunk */
    atomic_int small_answered;
    atomic_int idle_answered;
    gw_http_exchange *held;      /* the after-shutdown case's exchange */
    atomic_int held_ready;
    gw_http_exchange *stalled;   /* the stalled stream's exchange, for the aborting thread */
    atomic_int stall_writes_begun;
    atomic_int stall_writes_done;
    atomic_int stall_result;     /* the write that failed, + 1 */
};

static struct host host = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL, 0,
                           NULL, 0, 0, 0};

static void route_free(void *userdata) { atomic_fetch_add(&((struct host *)userdata)->frees, 1); }

static void count_free(void *userdata) { atomic_fetch_add((atomic_int *)userdata, 1); }

/* Hands the exchange to the host thread (the callback must not block). */
static void route_later(void *userdata, gw_http_exchange *exchange) {
    struct host *h = userdata;
    pthread_mutex_lock(&h->lock);
    CHECK(h->queued < 16);
    h->queue[h->queued++] = exchange;
    pthread_cond_broadcast(&h->changed);
    pthread_mutex_unlock(&h->lock);
}

static const char TEXT_PLAIN[] = "{\"content-type\":\"text/plain\"}";

static gw_result respond_text(gw_http_exchange *exchange, uint16_t status, const char *text) {
    return gw_http_exchange_respond(exchange, status, TEXT_PLAIN, strlen(TEXT_PLAIN),
                                    (const uint8_t *)text, strlen(text));
}

/* GET /inline: answered inside the callback, after every refusal a callback can meet. */
static void route_inline(void *userdata, gw_http_exchange *exchange) {
    (void)userdata;
    CHECK(strcmp(gw_http_exchange_method(exchange), "GET") == 0);
    CHECK(strcmp(gw_http_exchange_path(exchange), "/inline") == 0);
    CHECK(strcmp(gw_http_exchange_query(exchange), "a=1&b=two") == 0);
    CHECK(strcmp(gw_http_exchange_header(exchange, "X-Demo"), "one, two") == 0);
    CHECK(strcmp(gw_http_exchange_header(exchange, "x-demo"), "one, two") == 0);
    CHECK(gw_http_exchange_header(exchange, "x-absent") == NULL);
    CHECK(gw_http_exchange_header(exchange, "bad name") == NULL);
    CHECK(gw_http_exchange_header(exchange, NULL) == NULL);
    size_t len = 0;
    const char *json = gw_http_exchange_headers_json(exchange, &len);
    CHECK(json != NULL && strlen(json) == len && strstr(json, "\"x-demo\":\"one, two\"") != NULL);
    CHECK(strncmp(gw_http_exchange_peer(exchange), "127.0.0.1:", 10) == 0);
    CHECK(!gw_http_exchange_authenticated(exchange));

    /* What waits is refused on a gateway worker thread. */
    uint8_t buf[16];
    size_t n = 99;
    CHECK_RESULT(gw_http_exchange_read(exchange, buf, sizeof buf, &n), GW_ERR_WRONG_THREAD);
    CHECK_MESSAGE("gateway worker thread");
    CHECK(n == 99);
    CHECK_RESULT(gw_http_exchange_write(exchange, buf, 1), GW_ERR_WRONG_THREAD);
    /* Bad answers leave the exchange waiting for a good one. */
    CHECK_RESULT(gw_http_exchange_respond(exchange, 99, NULL, 0, NULL, 0), GW_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("status 99 is not a final HTTP status");
    const char *bad_headers[] = {"[1]", "{\"content-length\":\"3\"}", "{\"x-a\":\"new\\nline\"}",
                                 "{\"bad name\":\"v\"}", "{\"x-a\":7}", "{"};
    const char *bad_messages[] = {"not a JSON object", "sets \"content-length\" itself",
                                  "not a string of visible characters", "not an HTTP header name",
                                  "neither a string nor an array", "not valid JSON"};
    for (size_t i = 0; i < sizeof bad_headers / sizeof *bad_headers; i++) {
        CHECK_RESULT(gw_http_exchange_respond(exchange, 200, bad_headers[i], strlen(bad_headers[i]), NULL, 0),
                     GW_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE(bad_messages[i]);
    }
    CHECK_RESULT(gw_http_exchange_respond(exchange, 200, NULL, 0, NULL, 3), GW_ERR_NULL_ARGUMENT);
    CHECK_RESULT(gw_http_exchange_finish(exchange), GW_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("call gw_http_exchange_start first");

    const char *headers = "{\"content-type\":\"text/plain\",\"set-cookie\":[\"a=1\",\"b=2\"]}";
    const char *body = "inline answer";
    CHECK_RESULT(gw_http_exchange_respond(exchange, 201, headers, strlen(headers), (const uint8_t *)body, strlen(body)),
                 GW_OK);
    /* A second answer is refused, whichever call tries. */
    CHECK_RESULT(respond_text(exchange, 200, "again"), GW_ERR_NOT_FOUND);
    CHECK_MESSAGE("answered already");
    CHECK_RESULT(gw_http_exchange_start(exchange, 200, NULL, 0), GW_ERR_NOT_FOUND);
    CHECK_RESULT(gw_http_exchange_abort(exchange), GW_ERR_NOT_FOUND);
    CHECK_RESULT(gw_http_exchange_finish(exchange), GW_ERR_NOT_FOUND);
    gw_http_exchange_free(exchange);
}

/* GET /drop: freed unanswered (the client gets 500). */
static void route_drop(void *userdata, gw_http_exchange *exchange) {
    (void)userdata;
    gw_http_exchange_free(exchange);
}

/* * /any: any method, answered with the method's name; /any/private needs the gateway's auth. */
static void route_any(void *userdata, gw_http_exchange *exchange) {
    (void)userdata;
    char text[64];
    snprintf(text, sizeof text, "%s %s %s", gw_http_exchange_method(exchange), gw_http_exchange_path(exchange),
             gw_http_exchange_authenticated(exchange) ? "authenticated" : "public");
    CHECK_RESULT(respond_text(exchange, 200, text), GW_OK);
    gw_http_exchange_free(exchange);
}

/* POST /held: kept for the after-shutdown case. */
static void route_hold(void *userdata, gw_http_exchange *exchange) {
    struct host *h = userdata;
    h->held = exchange;
    atomic_store(&h->held_ready, 1);
}

/* The whole body, read from this (host) thread. */
static char *read_body(gw_http_exchange *exchange, size_t *total, gw_result *result) {
    size_t cap = 1024, len = 0;
    char *all = malloc(cap + 1);
    CHECK(all != NULL);
    for (;;) {
        if (cap - len < 256) {
            cap *= 2;
            all = realloc(all, cap + 1);
            CHECK(all != NULL);
        }
        size_t n = 0;
        *result = gw_http_exchange_read(exchange, (uint8_t *)all + len, cap - len, &n);
        if (*result != GW_OK || n == 0) break;
        len += n;
    }
    all[len] = '\0';
    *total = len;
    return all;
}

static void answer_later(gw_http_exchange *exchange) {
    size_t len = 0;
    gw_result result;
    char *body = read_body(exchange, &len, &result);
    CHECK_RESULT(result, GW_OK);
    /* After the end, every read gives 0 again. */
    uint8_t byte;
    size_t n = 7;
    CHECK_RESULT(gw_http_exchange_read(exchange, &byte, 1, &n), GW_OK);
    CHECK(n == 0);
    CHECK_RESULT(gw_http_exchange_read(exchange, &byte, 0, &n), GW_ERR_INVALID_ARGUMENT);
    CHECK_RESULT(gw_http_exchange_read(exchange, NULL, 1, &n), GW_ERR_NULL_ARGUMENT);
    char text[256];
    snprintf(text, sizeof text, "later: %s", body);
    free(body);
    CHECK_RESULT(respond_text(exchange, 200, text), GW_OK);
    CHECK_RESULT(respond_text(exchange, 200, text), GW_ERR_NOT_FOUND);
}

/* Byte i of the upload. */
static uint8_t upload_byte(size_t i) { return (uint8_t)((i * 31u + (i >> 12)) & 0xff); }

static void answer_upload(struct host *h, gw_http_exchange *exchange) {
    uint8_t *buf = malloc(64 * 1024);
    CHECK(buf != NULL);
    size_t total = 0, mismatches = 0;
    int reads = 0;
    for (;;) {
        size_t n = 0;
        CHECK_RESULT(gw_http_exchange_read(exchange, buf, 64 * 1024, &n), GW_OK);
        if (n == 0) break;
        reads++;
        for (size_t i = 0; i < n; i++) mismatches += buf[i] != upload_byte(total + i);
        total += n;
    }
    free(buf);
    atomic_store(&h->upload_reads, reads);
    char text[128];
    snprintf(text, sizeof text, "bytes=%zu mismatches=%zu", total, mismatches);
    CHECK_RESULT(respond_text(exchange, 200, text), GW_OK);
}

static void answer_stream(struct host *h, gw_http_exchange *exchange) {
    CHECK_RESULT(gw_http_exchange_write(exchange, (const uint8_t *)"x", 1), GW_ERR_INVALID_ARGUMENT);
    const char *headers = "{\"content-type\":\"text/event-stream\",\"cache-control\":\"no-cache\"}";
    CHECK_RESULT(gw_http_exchange_start(exchange, 200, headers, strlen(headers)), GW_OK);
    CHECK_RESULT(respond_text(exchange, 200, "late"), GW_ERR_NOT_FOUND);
    CHECK_RESULT(gw_http_exchange_write(exchange, NULL, 0), GW_OK);
    for (int i = 0; i < EVENTS; i++) {
        char event[32];
        int n = snprintf(event, sizeof event, "data: %d\n\n", i);
        CHECK_RESULT(gw_http_exchange_write(exchange, (const uint8_t *)event, (size_t)n), GW_OK);
    }
    /* Streamed, not held until the end: the client has every event before the finish. */
    atomic_store(&h->saw_before_finish, wait_for(&h->client_saw_all, 1));
    CHECK_RESULT(gw_http_exchange_finish(exchange), GW_OK);
    CHECK_RESULT(gw_http_exchange_finish(exchange), GW_ERR_NOT_FOUND);
    CHECK_RESULT(gw_http_exchange_write(exchange, (const uint8_t *)"x", 1), GW_ERR_NOT_FOUND);
}

static void answer_cut(struct host *h, gw_http_exchange *exchange) {
    CHECK_RESULT(gw_http_exchange_start(exchange, 200, TEXT_PLAIN, strlen(TEXT_PLAIN)), GW_OK);
    CHECK_RESULT(gw_http_exchange_write(exchange, (const uint8_t *)"partial", 7), GW_OK);
    CHECK(wait_for(&h->client_saw_partial, 1));
    CHECK_RESULT(gw_http_exchange_abort(exchange), GW_OK);
    CHECK_RESULT(gw_http_exchange_abort(exchange), GW_ERR_NOT_FOUND);
}

/* Set by the thread that aborts the stalled stream once gw_http_exchange_abort returned. */
static atomic_int abort_returned;

/* GET /stall: writes until a write waits for a client that never reads. */
static void answer_stall(struct host *h, gw_http_exchange *exchange) {
    static uint8_t chunk[64 * 1024];
    CHECK_RESULT(gw_http_exchange_start(exchange, 200, NULL, 0), GW_OK);
    h->stalled = exchange;
    gw_result result;
    do {
        atomic_fetch_add(&h->stall_writes_begun, 1);
        result = gw_http_exchange_write(exchange, chunk, sizeof chunk);
        atomic_fetch_add(&h->stall_writes_done, 1);
    } while (result == GW_OK);
    atomic_store(&h->stall_result, (int)result + 1);
    /* The write fails as soon as the abort begins; the exchange is freed (by our caller) only
     * once the aborting thread's call has returned: no call may overlap the free. */
    CHECK(wait_for(&abort_returned, 1));
}

static void answer_small(struct host *h, gw_http_exchange *exchange) {
    size_t len = 0;
    gw_result result;
    free(read_body(exchange, &len, &result));
    CHECK_RESULT(result, GW_ERR_HTTP_BODY);
    CHECK_MESSAGE("limit of 16 bytes");
    /* The failure stays: a later read says it again. */
    uint8_t byte;
    size_t n = 0;
    CHECK_RESULT(gw_http_exchange_read(exchange, &byte, 1, &n), GW_ERR_HTTP_BODY);
    CHECK_MESSAGE("limit of 16 bytes");
    /* The gateway may have answered 413 already; either way the client sees 413. */
    gw_result answered = respond_text(exchange, 413, "too large");
    CHECK(answered == GW_OK || answered == GW_ERR_NOT_FOUND);
    atomic_fetch_add(&h->small_answered, 1);
}

/* POST /idle: the client sends 10 of the 100 bytes it announced, then nothing. */
static void answer_idle(struct host *h, gw_http_exchange *exchange) {
    size_t len = 0;
    gw_result result;
    free(read_body(exchange, &len, &result));
    CHECK_RESULT(result, GW_ERR_HTTP_BODY);
    CHECK(len == 10);
    gw_result answered = respond_text(exchange, 408, "too slow");
    CHECK(answered == GW_OK || answered == GW_ERR_NOT_FOUND);
    atomic_fetch_add(&h->idle_answered, 1);
}

static void *host_thread(void *arg) {
    struct host *h = arg;
    for (;;) {
        pthread_mutex_lock(&h->lock);
        while (h->queued == 0 && !h->stopping) pthread_cond_wait(&h->changed, &h->lock);
        if (h->queued == 0) {
            pthread_mutex_unlock(&h->lock);
            return NULL;
        }
        gw_http_exchange *exchange = h->queue[0];
        memmove(h->queue, h->queue + 1, (size_t)(--h->queued) * sizeof *h->queue);
        pthread_mutex_unlock(&h->lock);

        const char *path = gw_http_exchange_path(exchange);
        if (strcmp(path, "/later") == 0) answer_later(exchange);
        else if (strncmp(path, "/upload", 7) == 0) answer_upload(h, exchange);
        else if (strcmp(path, "/stream") == 0) answer_stream(h, exchange);
        else if (strcmp(path, "/cut") == 0) answer_cut(h, exchange);
        else if (strcmp(path, "/small") == 0) answer_small(h, exchange);
        else if (strcmp(path, "/idle") == 0) answer_idle(h, exchange);
        else if (strcmp(path, "/stall") == 0) answer_stall(h, exchange);
        else CHECK(!"a route for the host thread");
        gw_http_exchange_free(exchange);
    }
}

static void add_route(gw_serve_options *options, const char *method, const char *path, uint32_t flags,
                      uint64_t max_body, gw_http_route_fn handler) {
    CHECK_RESULT(gw_serve_options_add_http_route(options, method, path, flags, max_body, handler, &host, route_free),
                 GW_OK);
}

/* A served gateway with every route of the cases; `*serve_options` is freed by the caller. */
static gw_server *serve_routes(const char *name, gw_options **options_out) {
    gw_options *options = case_options(name);
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    gw_serve_options *serve_options = gw_serve_options_new();
    add_route(serve_options, "GET", "/inline", 0, 1024, route_inline);
    add_route(serve_options, "POST", "/later", 0, 1024, route_later);
    add_route(serve_options, "POST", "/upload", GW_HTTP_ROUTE_PREFIX, 64u << 20, route_later);
    add_route(serve_options, "GET", "/stream", 0, 1, route_later);
    add_route(serve_options, "GET", "/cut", 0, 1, route_later);
    add_route(serve_options, "POST", "/small", 0, 16, route_later);
    add_route(serve_options, NULL, "/drop", 0, 1, route_drop);
    add_route(serve_options, "*", "/any", 0, 1024, route_any);
    add_route(serve_options, "GET", "/private", GW_HTTP_ROUTE_GATEWAY_AUTH, 1024, route_any);
    add_route(serve_options, "POST", "/held", 0, 1024, route_hold);
    add_route(serve_options, "POST", "/idle", 0, 1024, route_later);
    add_route(serve_options, "GET", "/stall", 0, 1, route_later);
    CHECK_RESULT(gw_serve_options_set_http_strict_transport_security(serve_options, "max-age=60"), GW_OK);
    CHECK_RESULT(gw_serve_options_add_websocket_path(serve_options, "/ws"), GW_OK);
    CHECK_RESULT(gw_serve_options_set_http_body_idle_timeout_ms(serve_options, 1000), GW_OK);
    CHECK_RESULT(gw_serve_options_set_http_header_timeout_ms(serve_options, 30000), GW_OK);
    CHECK_RESULT(gw_serve_options_set_http_max_header_bytes(serve_options, 32768), GW_OK);
    gw_server *server = NULL;
    CHECK_RESULT(gw_serve(lock, NULL, serve_options, &server), GW_OK);
    /* gw_serve copied the routes: the options may go; the routes' userdata stays. */
    gw_serve_options_free(serve_options);
    CHECK(atomic_load(&host.frees) == 0);
    *options_out = options;
    return server;
}

/* ---- the cases ---- */

static void case_bad_registrations(void) {
    atomic_int frees = 0;
    gw_serve_options *options = gw_serve_options_new();
    struct {
        gw_serve_options *options;
        const char *method, *path;
        uint32_t flags;
        uint64_t max_body;
        gw_http_route_fn handler;
        gw_result want;
        const char *message;
    } bad[] = {
        {NULL, "GET", "/x", 0, 1, route_any, GW_ERR_NULL_ARGUMENT, "gw_serve_options_add_http_route: options is NULL"},
        {options, "GET", NULL, 0, 1, route_any, GW_ERR_NULL_ARGUMENT, "gw_serve_options_add_http_route: path is NULL"},
        {options, "GET", "/x", 0, 1, NULL, GW_ERR_NULL_ARGUMENT, "gw_serve_options_add_http_route: handler is NULL"},
        {options, "GET", "hooks", 0, 1, route_any, GW_ERR_INVALID_ARGUMENT, "does not start with '/'"},
        {options, "GET", "/a\xff", 0, 1, route_any, GW_ERR_INVALID_ARGUMENT, "path is not valid UTF-8"},
        {options, "GE T", "/x", 0, 1, route_any, GW_ERR_INVALID_ARGUMENT, "method \"GE T\" is not an HTTP method"},
        {options, "GET", "/x", 0, 0, route_any, GW_ERR_INVALID_ARGUMENT, "max_body_bytes is 0 for \"/x\""},
        {options, "GET", "/x", 0x80, 1, route_any, GW_ERR_INVALID_ARGUMENT, "flags 0x80 has bits"},
    };
    int count = (int)(sizeof bad / sizeof *bad);
    for (int i = 0; i < count; i++) {
        CHECK_RESULT(gw_serve_options_add_http_route(bad[i].options, bad[i].method, bad[i].path, bad[i].flags,
                                                     bad[i].max_body, bad[i].handler, &frees, NULL),
                     bad[i].want);
        CHECK_MESSAGE(bad[i].message);
    }
    /* The library owns the userdata whatever the result: a refusal frees it at once. */
    for (int i = 0; i < count; i++) {
        CHECK_RESULT(gw_serve_options_add_http_route(bad[i].options, bad[i].method, bad[i].path, bad[i].flags,
                                                     bad[i].max_body, bad[i].handler, &frees, count_free),
                     bad[i].want);
    }
    CHECK(atomic_load(&frees) == count);
    CHECK_RESULT(gw_serve_options_add_http_route(options, NULL, "/ok", GW_HTTP_ROUTE_PREFIX | GW_HTTP_ROUTE_GATEWAY_AUTH,
                                                 1, route_any, &frees, count_free),
                 GW_OK);
    CHECK(atomic_load(&frees) == count);
    gw_serve_options_free(options);
    CHECK(atomic_load(&frees) == count + 1);
    printf("ok bad_registrations\n");
}

static void case_inline_and_any(uint16_t port) {
    struct reply reply = request(port, "GET /inline?a=1&b=two HTTP/1.1\r\nX-Demo: one\r\nX-Demo: two", NULL, 0);
    CHECK(reply.status == 201 && reply.complete && strcmp(reply.body, "inline answer") == 0);
    CHECK(head_find(&reply, "\r\ncontent-type: text/plain\r\n") != NULL);
    CHECK(head_find(&reply, "\r\nset-cookie: a=1\r\n") != NULL && head_find(&reply, "\r\nset-cookie: b=2\r\n") != NULL);
    /* Node's headers on every response, and the serve options' Strict-Transport-Security. */
    CHECK(head_find(&reply, "\r\nx-content-type-options: nosniff\r\n") != NULL);
    CHECK(head_find(&reply, "\r\nstrict-transport-security: max-age=60\r\n") != NULL);
    reply_free(&reply);

    reply = request(port, "DELETE /any HTTP/1.1", NULL, 0);
    CHECK(reply.status == 200 && strcmp(reply.body, "DELETE /any public") == 0);
    reply_free(&reply);
    /* Exact: nothing below the path. */
    reply = request(port, "GET /any/below HTTP/1.1", NULL, 0);
    CHECK(reply.status == 404);
    reply_free(&reply);
    /* The method is the route's: a POST to a GET route is not it. */
    reply = request(port, "POST /inline HTTP/1.1\r\nContent-Length: 0", NULL, 0);
    CHECK(reply.status == 404);
    reply_free(&reply);
    printf("ok inline_and_any\n");
}

static void case_answered_later(uint16_t port) {
    const char *body = "{\"hello\":\"from the client\"}";
    char head[128];
    snprintf(head, sizeof head, "POST /later HTTP/1.1\r\nContent-Length: %zu", strlen(body));
    struct reply reply = request(port, head, body, strlen(body));
    CHECK(reply.status == 200 && reply.complete);
    CHECK(strcmp(reply.body, "later: {\"hello\":\"from the client\"}") == 0);
    reply_free(&reply);
    printf("ok answered_later\n");
}

static void case_streamed_upload(uint16_t port) {
    char *body = malloc(UPLOAD_BYTES);
    CHECK(body != NULL);
    for (size_t i = 0; i < UPLOAD_BYTES; i++) body[i] = (char)upload_byte(i);
    char head[128];
    snprintf(head, sizeof head, "POST /upload/files/big.bin HTTP/1.1\r\nContent-Length: %u", UPLOAD_BYTES);
    struct reply reply = request(port, head, body, UPLOAD_BYTES);
    free(body);
    char want[128];
    snprintf(want, sizeof want, "bytes=%u mismatches=0", UPLOAD_BYTES);
    CHECK(reply.status == 200 && strcmp(reply.body, want) == 0);
    /* Read chunk by chunk as it arrived: many reads of at most 64 KiB. */
    CHECK(atomic_load(&host.upload_reads) >= (int)(UPLOAD_BYTES / (64 * 1024)));
    reply_free(&reply);
    printf("ok streamed_upload\n");
}

static void stream_progress(const struct reply *reply) {
    char last[32];
    snprintf(last, sizeof last, "data: %d\n\n", EVENTS - 1);
    if (strstr(reply->raw, last) != NULL) atomic_store(&host.client_saw_all, 1);
}

static void cut_progress(const struct reply *reply) {
    if (strstr(reply->raw, "partial") != NULL) atomic_store(&host.client_saw_partial, 1);
}

static void case_streamed_response(uint16_t port) {
    int fd = connect_to(port);
    const char *head = "GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    send_all(fd, head, strlen(head));
    struct reply reply;
    memset(&reply, 0, sizeof reply);
    read_reply(fd, &reply, stream_progress);
    CHECK(reply.status == 200 && reply.chunked && reply.complete);
    CHECK(head_find(&reply, "\r\ncontent-type: text/event-stream\r\n") != NULL);
    char want[128] = "";
    for (int i = 0; i < EVENTS; i++) snprintf(want + strlen(want), sizeof want - strlen(want), "data: %d\n\n", i);
    CHECK(strcmp(reply.body, want) == 0);
    CHECK(atomic_load(&host.saw_before_finish) == 1);
    reply_free(&reply);

    /* Aborted: the client gets what was written, and no final chunk. */
    fd = connect_to(port);
    head = "GET /cut HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    send_all(fd, head, strlen(head));
    read_reply(fd, &reply, cut_progress);
    CHECK(reply.status == 200 && reply.chunked && !reply.complete && strcmp(reply.body, "partial") == 0);
    reply_free(&reply);
    printf("ok streamed_response\n");
}


static void *abort_thread(void *arg) {
    CHECK_RESULT(gw_http_exchange_abort(arg), GW_OK);
    atomic_store(&abort_returned, 1);
    return NULL;
}

/* A write waiting on a client that never reads does not hold up an abort from another thread
 * ("never blocks"), and the write then fails. */
static void case_abort_beside_a_stalled_write(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    int small = 4096;
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    const char *head = "GET /stall HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    send_all(fd, head, strlen(head));
    /* Stalled: a write has begun and none has ended for a second (the buffers are full). */
    int quiet_ms = 0, last_done = -1;
    for (long waited = 0; quiet_ms < 1000; waited += 10) {
        CHECK(waited <= DEADLINE_MS);
        int begun = atomic_load(&host.stall_writes_begun), done = atomic_load(&host.stall_writes_done);
        quiet_ms = (begun > done && done == last_done) ? quiet_ms + 10 : 0;
        last_done = done;
        sleep_ms(10);
    }
    pthread_t aborter;
    CHECK(pthread_create(&aborter, NULL, abort_thread, host.stalled) == 0);
    CHECK(wait_for(&abort_returned, 1));
    CHECK(pthread_join(aborter, NULL) == 0);
    CHECK(wait_for(&host.stall_result, 1));
    CHECK(atomic_load(&host.stall_result) == (int)GW_ERR_NOT_FOUND + 1);
    close(fd);
    printf("ok abort_beside_a_stalled_write\n");
}

static void case_unanswered_and_limits(uint16_t port) {
    struct reply reply = request(port, "GET /drop HTTP/1.1", NULL, 0);
    CHECK(reply.status == 500 && reply.complete);
    reply_free(&reply);
    /* Chunked, so that only reading finds it too large: 16 bytes (the limit), then 20 more. */
    const char *body = "10\r\n0123456789abcdef\r\n14\r\nghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
    reply = request(port, "POST /small HTTP/1.1\r\nTransfer-Encoding: chunked", body, strlen(body));
    CHECK(reply.status == 413);
    /* The gateway answers 413 itself once the body passes the limit, so the client may see it
     * before the handler has finished: wait for the handler. */
    CHECK(wait_for(&host.small_answered, 1));
    CHECK(atomic_load(&host.small_answered) == 1);
    reply_free(&reply);
    printf("ok unanswered_and_limits\n");
}

/* Upgrades are accepted at the paths added with gw_serve_options_add_websocket_path only. */
static void case_websocket_paths(uint16_t port) {
    const char *upgrade = "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13";
    char head[512];
    snprintf(head, sizeof head, "GET / HTTP/1.1%s", upgrade);
    struct reply reply = request(port, head, NULL, 0);
    CHECK(reply.status == 404);
    reply_free(&reply);
    int fd = connect_to(port);
    snprintf(head, sizeof head, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1%s\r\n\r\n", upgrade);
    send_all(fd, head, strlen(head));
    char answer[32] = {0};
    size_t got = 0;
    while (got < 12) {
        ssize_t n = read(fd, answer + got, 12 - got);
        CHECK(n > 0);
        got += (size_t)n;
    }
    CHECK(memcmp(answer, "HTTP/1.1 101", 12) == 0);
    close(fd);
    printf("ok websocket_paths\n");
}

struct held_client {
    uint16_t port;
    struct reply reply;
};

static void *held_client_thread(void *arg) {
    struct held_client *client = arg;
    int fd = connect_to(client->port);
    /* Announces 100 bytes and sends 10: the body stays open. */
    const char *head = "POST /held HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n0123456789";
    send_all(fd, head, strlen(head));
    size_t cap = 4096;
    client->reply.raw = malloc(cap);
    CHECK(client->reply.raw != NULL);
    ssize_t n;
    while ((n = read(fd, client->reply.raw + client->reply.raw_len, cap - 1 - client->reply.raw_len)) > 0)
        client->reply.raw_len += (size_t)n;
    client->reply.raw[client->reply.raw_len] = '\0';
    close(fd);
    return NULL;
}

/* An exchange the host still holds when the server is shut down: every call on it fails
 * cleanly, and freeing it is fine. */
static void case_exchange_outlives_the_server(gw_server *server, uint16_t port) {
    struct held_client client;
    memset(&client, 0, sizeof client);
    client.port = port;
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, held_client_thread, &client) == 0);
    CHECK(wait_for(&host.held_ready, 1));
    gw_http_exchange *exchange = host.held;
    uint8_t buf[64];
    size_t n = 0;
    CHECK_RESULT(gw_http_exchange_read(exchange, buf, sizeof buf, &n), GW_OK);
    CHECK(n == 10 && memcmp(buf, "0123456789", 10) == 0);

    CHECK_RESULT(gw_shutdown(server, 300), GW_ERR_TIMEOUT);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(client.reply.raw_len == 0); /* cut off, never answered */
    free(client.reply.raw);

    CHECK(strcmp(gw_http_exchange_path(exchange), "/held") == 0);
    CHECK_RESULT(gw_http_exchange_read(exchange, buf, sizeof buf, &n), GW_ERR_HTTP_BODY);
    CHECK_RESULT(respond_text(exchange, 200, "too late"), GW_ERR_NOT_FOUND);
    CHECK_MESSAGE("client is gone");
    CHECK_RESULT(gw_http_exchange_start(exchange, 200, NULL, 0), GW_ERR_NOT_FOUND);
    CHECK_RESULT(gw_http_exchange_write(exchange, buf, 1), GW_ERR_NOT_FOUND);
    gw_http_exchange_free(exchange);
    printf("ok exchange_outlives_the_server\n");
}

static int run_all(void) {
    case_bad_registrations();
    gw_options *options = NULL;
    gw_server *server = serve_routes("routes", &options);
    uint16_t port = gw_server_port(server);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, host_thread, &host) == 0);
    case_inline_and_any(port);
    case_answered_later(port);
    case_streamed_upload(port);
    case_streamed_response(port);
    case_abort_beside_a_stalled_write(port);
    case_unanswered_and_limits(port);
    case_websocket_paths(port);
    case_exchange_outlives_the_server(server, port);
    pthread_mutex_lock(&host.lock);
    host.stopping = 1;
    pthread_cond_broadcast(&host.changed);
    pthread_mutex_unlock(&host.lock);
    CHECK(pthread_join(thread, NULL) == 0);
    /* Every route's userdata freed once, when the server is gone. */
    CHECK(wait_for(&host.frees, 12));
    CHECK(atomic_load(&host.frees) == 12);
    gw_options_free(options);
    printf("all ok\n");
    return 0;
}

static int run_pipeline(void) {
    gw_options *options = NULL;
    gw_server *server = serve_routes("auth", &options);
    uint16_t port = gw_server_port(server);
    struct reply reply = request(port, "GET /private HTTP/1.1", NULL, 0);
    CHECK(reply.status == 401);
    reply_free(&reply);
    reply = request(port, "GET /private HTTP/1.1\r\nAuthorization: Bearer wrong", NULL, 0);
    CHECK(reply.status == 401);
    reply_free(&reply);
    reply = request(port, "GET /private HTTP/1.1\r\nAuthorization: Bearer " TOKEN, NULL, 0);
    CHECK(reply.status == 200 && strcmp(reply.body, "GET /private authenticated") == 0);
    reply_free(&reply);
    printf("ok gateway_auth\n");

    /* A body that stalls past gw_serve_options_set_http_body_idle_timeout_ms fails its read. */
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, host_thread, &host) == 0);
    int fd = connect_to(port);
    const char *head = "POST /idle HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 100\r\n\r\n0123456789";
    send_all(fd, head, strlen(head));
    memset(&reply, 0, sizeof reply);
    read_reply(fd, &reply, NULL);
    CHECK(reply.status == 408);
    CHECK(wait_for(&host.idle_answered, 1));
    reply_free(&reply);
    pthread_mutex_lock(&host.lock);
    host.stopping = 1;
    pthread_cond_broadcast(&host.changed);
    pthread_mutex_unlock(&host.lock);
    CHECK(pthread_join(thread, NULL) == 0);
    printf("ok body_idle_timeout\n");

    CHECK_RESULT(gw_shutdown(server, 1000), GW_OK);
    gw_options_free(options);
    return 0;
}

static void write_file(const char *path, const char *text) {
    FILE *file = fopen(path, "w");
    CHECK(file != NULL);
    CHECK(fputs(text, file) >= 0);
    CHECK(fclose(file) == 0);
}

static int run_ui(void) {
    char root[4200], path[4300];
    snprintf(root, sizeof root, "%s/ui-root", base_dir);
    CHECK(mkdir(base_dir, 0700) == 0 || errno == EEXIST);
    CHECK(mkdir(root, 0700) == 0);
    snprintf(path, sizeof path, "%s/index.html", root);
    write_file(path, "<!doctype html><html><head><title>c-mounted-ui</title></head><body></body></html>\n");

    gw_options *options = case_options("ui");
    gw_lock *lock = NULL;
    CHECK_RESULT(gw_lock_acquire(options, &lock), GW_OK);
    gw_serve_options *serve_options = gw_serve_options_new();
    CHECK_RESULT(gw_serve_options_set_control_ui_terminal(serve_options, false), GW_ERR_INVALID_ARGUMENT);
    /* Normalized as Node does ("openclaw/" is "/openclaw"); set again below. */
    CHECK_RESULT(gw_serve_options_set_control_ui(serve_options, root, "openclaw/"), GW_OK);
    CHECK_RESULT(gw_serve_options_set_control_ui(serve_options, root, "/openclaw"), GW_OK);
    const char *config = "{\"assistantName\":\"C host\"}";
    CHECK_RESULT(gw_serve_options_set_control_ui_config_json(serve_options, config, strlen(config)), GW_OK);
    CHECK_RESULT(gw_serve_options_set_control_ui_bundled(serve_options, false), GW_OK);
    CHECK_RESULT(gw_serve_options_set_control_ui_terminal(serve_options, false), GW_OK);
    CHECK_RESULT(gw_serve_options_set_control_ui_environment_json(serve_options, NULL, 0), GW_OK);
    gw_server *server = NULL;
    CHECK_RESULT(gw_serve(lock, NULL, serve_options, &server), GW_OK);
    gw_serve_options_free(serve_options);
    uint16_t port = gw_server_port(server);

    struct reply reply = request(port, "GET /openclaw/ HTTP/1.1", NULL, 0);
    CHECK(reply.status == 200 && strstr(reply.body, "<title>c-mounted-ui</title>") != NULL);
    reply_free(&reply);
    /* The config is the gateway's to give: with its auth, as Node asks. */
    reply = request(port, "GET /openclaw/control-ui-config.json HTTP/1.1\r\nAuthorization: Bearer " TOKEN, NULL, 0);
    CHECK(reply.status == 200 && strstr(reply.body, "\"assistantName\":\"C host\"") != NULL);
    CHECK(strstr(reply.body, "\"basePath\":\"/openclaw\"") != NULL);
    reply_free(&reply);
    CHECK_RESULT(gw_shutdown(server, 1000), GW_OK);
    gw_options_free(options);
    printf("ok control_ui\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s all|pipeline|ui <dir>\n", argv[0]);
        return 2;
    }
    /* A server that answers before reading a whole body may close under our write. */
    signal(SIGPIPE, SIG_IGN);
    snprintf(base_dir, sizeof base_dir, "%s", argv[2]);
    if (strcmp(argv[1], "all") == 0) return run_all();
    if (strcmp(argv[1], "pipeline") == 0) return run_pipeline();
    if (strcmp(argv[1], "ui") == 0) return run_ui();
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
