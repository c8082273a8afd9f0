//! The C types of the host's callbacks: `gw_callbacks` and the function types and values it
//! carries. What the library does with them is in `host.rs`.

use std::ffi::{c_char, c_void};

use super::handlers::gw_handlers;
use super::result::gw_result;
use super::server::gw_server;

/// How loud a log line is.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum gw_log_level {
    /// Detail for whoever debugs the gateway.
    GW_LOG_DEBUG = 0,
    /// The gateway's life: ready, stopped, a lock reclaimed.
    GW_LOG_INFO = 1,
    /// Something went wrong and the gateway carried on.
    GW_LOG_WARN = 2,
    /// Something went wrong that the host should act on.
    GW_LOG_ERROR = 3,
}

/// A change in a served gateway's life, given to the state callback with a `gw_result`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum gw_state {
    /// The port accepts and `/readyz` answers 200 (result `GW_OK`). Called on the thread in
    /// `gw_serve`, before it returns.
    GW_STATE_READY = 1,
    /// A lock file was deleted or replaced while held; another gateway may start on this config
    /// (result `GW_ERR_LOCK_LOST`; the log callback gets the path). Called once: on the
    /// library's lock re-check thread, or, when the loss was found before `gw_serve`, on the
    /// thread in `gw_serve`, before `GW_STATE_READY`. The server keeps serving until
    /// `gw_shutdown`.
    GW_STATE_LOCK_LOST = 2,
    /// The listeners are closed and the lock is released (result `GW_OK`, or `GW_ERR_TIMEOUT`
    /// when open connections were cut off). Called on the thread in `gw_shutdown`.
    GW_STATE_STOPPED = 3,
}

/// A log callback: `message` is NUL-terminated UTF-8, `len` bytes long without the NUL, and
/// valid only during the call. Called on any library thread, possibly on several at once.
pub type gw_log_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        level: gw_log_level,
        message: *const c_char,
        len: usize,
    ),
>;

/// A state callback (see `gw_state`). Called on the thread each state names.
pub type gw_state_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, state: gw_state, result: gw_result)>;

/// Identifies one request for a host method, gateway-wide; the host answers it with
/// `gw_respond`. Never 0.
pub type gw_request_id = u64;

/// A request for one of the host's methods (see `gw_handlers_add_method`), from an
/// authenticated client that holds the method's scope. Answer it with `gw_respond(server,
/// request, ...)`, inside the callback or later from any thread; unanswered, the client gets
/// `UNAVAILABLE` after the request timeout (`gw_serve_options_set_request_timeout_ms`).
///
/// `server` is the server the request came to, the same pointer `gw_serve` writes to its
/// `out`, and usable for `gw_respond`, `gw_broadcast`, `gw_send_event`, `gw_set_health` at
/// once, even when `gw_serve` has not returned yet (a client may call a method as soon as the
/// port accepts).
///
/// `method` and `params_json` are UTF-8, `method_len` / `params_len` bytes long without the
/// NUL that follows each (never counted, always present), and valid only during the call:
/// copy what you keep. `params_json` is the request's `params` as compact JSON (`null` when
/// it had none). `conn_id` is the client's connection (as in `on_connection`).
///
/// Called on a gateway worker thread, possibly on several at once; it must not block (a
/// blocked callback holds a worker of the server). Requests of one connection arrive in
/// order. Never called once `gw_shutdown` has begun freeing the server.
pub type gw_request_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        server: *mut gw_server,
        request: gw_request_id,
        method: *const c_char,
        method_len: usize,
        params_json: *const c_char,
        params_len: usize,
        conn_id: u64,
    ),
>;

/// A client completed the handshake (`opened`: `hello-ok` was sent, its requests follow), or
/// a client that had completed it is gone (`!opened`: events to `conn_id` now give
/// `GW_ERR_NOT_FOUND`). `client_json` is a NUL-terminated UTF-8 JSON object, `len` bytes
/// without the NUL, valid only during the call: `{"connId", "client": {id, version,
/// platform, mode, ...as sent}, "role", "scopes": [...], "protocol", "peer", "origin"?}`.
///
/// `server` is the server the client came to, as for `on_request`: usable for `gw_respond`,
/// `gw_broadcast`, `gw_send_event`, `gw_set_health` and `gw_server_connection_count` at once,
/// even when `gw_serve` has not returned yet (a client may connect as soon as the port
/// accepts), never for `gw_shutdown`. A connection's `opened` comes before its first
/// `on_request`, and its `!opened` after its last.
///
/// Called on a gateway worker thread, possibly on several at once; it must not block. Never
/// called once `gw_shutdown` has begun freeing the server.
pub type gw_connection_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        server: *mut gw_server,
        conn_id: u64,
        opened: bool,
        client_json: *const c_char,
        len: usize,
    ),
>;

/// What the host wants to hear from a served gateway, and what it serves, given to
/// `gw_serve`.
///
/// Set `size` to `sizeof(gw_callbacks)`: fields added at the end by later versions of the
/// library are then known to be absent from an older host's struct (the library reads only
/// `size` bytes and treats what lies beyond as NULL), and a newer host's extra fields are
/// ignored by an older library. Any field may be NULL.
///
/// The callbacks must be thread-safe, must return (no `longjmp`, no C++ exception), and must
/// not call `gw_shutdown` (it would wait for itself). They may call `gw_respond`, `gw_set_health`,
/// `gw_broadcast` and `gw_send_event`. The library copies the struct (and `*handlers`)
/// during `gw_serve`; the host may reuse or free them afterwards.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct gw_callbacks {
    /// `sizeof(gw_callbacks)` as the host was compiled with.
    pub size: usize,
    /// Passed as is to every callback; the library never reads it.
    pub userdata: *mut c_void,
    /// Every log line of the server and its lock, all levels (NULL: the options' logger, which
    /// prints warnings and errors to stderr).
    pub log: gw_log_fn,
    /// Ready, lock lost, stopped.
    pub state: gw_state_fn,
    /// Called with `userdata` exactly once, when the library drops its last reference to the
    /// callbacks: during `gw_serve` when it fails, else during `gw_shutdown` or soon after it on
    /// a library thread. No callback is called after it.
    pub free_userdata: Option<unsafe extern "C" fn(userdata: *mut c_void)>,
    /// Requests for the methods registered in `handlers`. Required when `handlers` has
    /// methods (`gw_serve` refuses them without it: nobody would answer).
    pub on_request: gw_request_fn,
    /// Clients that completed the handshake, and their going away.
    pub on_connection: gw_connection_fn,
    /// NULL, or the methods (and scopes) the host answers in `on_request` and the events it
    /// sends (see `gw_handlers`). Read during `gw_serve` only.
    pub handlers: *const gw_handlers,
}
