/*
 * A C host that serves the Control UI: `control_ui_host ROOT [BASE_PATH]` takes the lock with
 * the environment's options (OPENCLAW_STATE_DIR, OPENCLAW_GATEWAY_PORT, ...), mounts ROOT with
 * gw_serve_options_set_control_ui, prints the ready line and serves until stdin closes.
 * Before that it checks the setter's refusals (NULL and empty root). tests/control_ui.rs runs
 * it; an error is printed as `host: <result name>: <message>` with exit 1.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gateway.h"

static int failed(const char *what, gw_result result) {
    fprintf(stderr, "host: %s: %s: %s\n", what, gw_result_name(result), gw_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: control_ui_host ROOT [BASE_PATH]\n");
        return 2;
    }
    gw_serve_options *serve_options = gw_serve_options_new();
    if (serve_options == NULL) return failed("gw_serve_options_new", GW_ERR_PANIC);
    gw_result result = gw_serve_options_set_control_ui(serve_options, NULL, NULL);
    if (result != GW_ERR_NULL_ARGUMENT) return failed("a NULL root was not refused", result);
    result = gw_serve_options_set_control_ui(serve_options, "", NULL);
    if (result != GW_ERR_INVALID_ARGUMENT) return failed("an empty root was not refused", result);
    result = gw_serve_options_set_control_ui(serve_options, argv[1], argc > 2 ? argv[2] : NULL);
    if (result != GW_OK) return failed("gw_serve_options_set_control_ui", result);

    gw_options *options = gw_options_new();
    if (options == NULL) return failed("gw_options_new", GW_ERR_PANIC);
    result = gw_options_from_env(options);
    gw_lock *lock = NULL;
    if (result == GW_OK) result = gw_lock_acquire(options, &lock);
    gw_options_free(options);
    if (result != GW_OK) return failed("gw_lock_acquire", result);

    gw_callbacks callbacks;
    memset(&callbacks, 0, sizeof callbacks);
    callbacks.size = sizeof callbacks;
    gw_server *server = NULL;
    /* Takes the lock, also on failure; copies the options. */
    result = gw_serve(lock, &callbacks, serve_options, &server);
    gw_serve_options_free(serve_options);
    if (result != GW_OK) return failed("gw_serve", result);
    printf("gateway listening on ws://127.0.0.1:%u (pid %ld)\n", (unsigned)gw_server_port(server),
           (long)getpid());
    fflush(stdout);
    while (getchar() != EOF) {
    }
    result = gw_shutdown(server, 2000);
    return result == GW_OK ? 0 : failed("gw_shutdown", result);
}
