//! `gw_server`: serving on the lock, answering the host's requests, sending its events,
//! setting the health snapshot, and the bounded graceful shutdown.

use std::ffi::{c_char, c_void};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::boundary::{
    boundary, c_string, json_argument, name_argument, non_null, null_argument, result_boundary,
};
use super::callbacks::{gw_callbacks, gw_request_id};
use super::host::HostCallbacks;
use super::lock::gw_lock;
use super::result::{fail, fail_with, gw_result};
use super::serve_options::gw_serve_options;
use crate::server::{Gateway, GatewayHandle, MethodError};

/// A running gateway: it holds the lock and serves the probes and the WebSocket protocol on
/// threads the library owns until `gw_shutdown`, which frees it.
///
/// Threads: `gw_server_port`, `gw_server_connection_count`, `gw_respond`, `gw_broadcast`,
/// `gw_send_event`, `gw_set_health` and the pairing calls (`gw_pairing_*`, `gw_paired_*`,
/// `gw_device_token_revoke`) are safe from any thread, at the same time, and from
/// inside the library's callbacks, for as long as the server is live: a host thread must make
/// its last such call before it calls `gw_shutdown` (callbacks may still call them while
/// `gw_shutdown` runs). `gw_shutdown` is safe from any thread but a library callback.
pub struct gw_server {
    port: u16,
    /// What `gw_respond` and the events go through. Set by `gw_serve` before the gateway
    /// accepts its first client.
    handle: OnceLock<GatewayHandle>,
    /// Taken by `gw_shutdown` while callbacks may still be reading `handle`.
    gateway: Mutex<Option<Gateway>>,
    /// Kept until the server is freed, so `free_userdata` never runs while it serves.
    callbacks: Option<Arc<HostCallbacks>>,
    /// Cluster mode: the lock's leadership, read without taking `gateway`'s mutex.
    leadership: Option<crate::Leadership>,
}

/// The `gw_server` that `gw_serve` allocates before the server starts, as callbacks hand it to
/// the host. It is freed (`OwnedServer`) only after `HostCallbacks::stop_calls`, so a callback
/// that entered the call gate may use it.
#[derive(Clone, Copy)]
pub(crate) struct ServerPtr(pub(crate) *mut gw_server);

// SAFETY: a `gw_server` is shared by every thread (its fields are thread-safe); the pointer
// is only read through inside the call gate, while it is live.
unsafe impl Send for ServerPtr {}
// SAFETY: as above.
unsafe impl Sync for ServerPtr {}

/// A `gw_server` the library still owns: until `hand_out`, dropping it (a failed `gw_serve`,
/// a panic in it) frees the server as `gw_shutdown` does.
struct OwnedServer(ServerPtr);

impl OwnedServer {
    /// Gives the server to the host, who frees it with `gw_shutdown`.
    fn hand_out(self) -> *mut gw_server {
        std::mem::ManuallyDrop::new(self).0.0
    }
}

impl Drop for OwnedServer {
    fn drop(&mut self) {
        // SAFETY: allocated by gw_serve (or handed back by gw_shutdown) and owned here; until
        // it is freed below, callbacks only read it.
        let server = unsafe { &*self.0.0 };
        // Stops a gateway still in it (with its drop timeout), then waits for callbacks.
        drop(
            server
                .gateway
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        if let Some(callbacks) = &server.callbacks {
            callbacks.stop_calls();
        }
        // SAFETY: owned here, and no callback uses it any more.
        drop(unsafe { Box::from_raw(self.0.0) });
    }
}

impl gw_server {
    pub(super) fn leadership(&self) -> Option<&crate::Leadership> {
        self.leadership.as_ref()
    }

    pub(super) fn handle(&self, function: &str) -> Result<&GatewayHandle, gw_result> {
        self.handle.get().ok_or_else(|| {
            fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!("{function}: the server is not serving yet: use the one gw_serve gave"),
            )
        })
    }
}

/// Serves on the lock's listener(s) with `options` and returns once ready (`/readyz` answers
/// 200), as the Rust `Gateway::serve`. On `GW_OK`, `*out` is a new `gw_server` the caller
/// owns and must give to `gw_shutdown`.
///
/// Takes ownership of `lock` and of the callbacks' `userdata` whatever the result: on failure
/// the lock is released, `free_userdata` has been called, and `*out` is untouched. One
/// exception: when `callbacks->size` is not a valid size the library cannot tell where
/// `free_userdata` is, so the userdata stays the caller's (the lock is still released).
/// `callbacks` may be NULL (no callbacks); it and its `handlers` are copied, not kept.
/// `options` may be NULL (the defaults of `gw_serve_options_new`); it is copied, not kept.
///
/// `on_request` and `on_connection` may run before `gw_serve` returns (a client may connect
/// as soon as the port accepts): they get the server as an argument, in the order the Rust
/// API gives (a connection's `opened` before its requests). `GW_ERR_INVALID_ARGUMENT` when `handlers` registers methods but `on_request`
/// is NULL. Any thread but a library callback.
///
/// # Safety
///
/// `lock` is NULL or a `gw_lock` from `gw_lock_acquire` (or `_with_listener`) that is not used afterwards;
/// `callbacks` is NULL or points to a `gw_callbacks` whose `size` bytes are readable;
/// `options` is NULL or a live `gw_serve_options` that no thread changes during the call;
/// `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve(
    lock: *mut gw_lock,
    callbacks: *const gw_callbacks,
    options: *const gw_serve_options,
    out: *mut *mut gw_server,
) -> gw_result {
    result_boundary("gw_serve", || {
        // Ownership first, so the lock and the userdata are let go of on every path below.
        // SAFETY: NULL or owned by the caller and handed over, by the contract.
        let lock = (!lock.is_null()).then(|| unsafe { Box::from_raw(lock) });
        let callbacks = match callbacks.is_null() {
            true => None,
            // SAFETY: `size` readable bytes, by the contract.
            false => Some(unsafe { HostCallbacks::read("gw_serve", callbacks) }?),
        };
        let Some(lock) = lock else {
            return Err(null_argument("gw_serve", "lock"));
        };
        let out = non_null("gw_serve", "out", out)?;
        // SAFETY: NULL or live and unchanged during the call, by the contract.
        let mut options = unsafe { options.as_ref() }
            .map(|options| options.inner.clone())
            .unwrap_or_default();
        // The server exists before it serves: a client may come before `Gateway::serve`
        // returns, and the callbacks hand it this server.
        let server = OwnedServer(ServerPtr(Box::into_raw(Box::new(gw_server {
            port: lock.inner.port(),
            handle: OnceLock::new(),
            gateway: Mutex::new(None),
            callbacks: callbacks.clone(),
            leadership: lock.inner.leadership(),
        }))));
        // SAFETY: allocated above and owned by `server` for the rest of the call.
        let live = unsafe { &*server.0.0 };
        if let Some(callbacks) = &callbacks {
            options.logger = callbacks.logger();
            options.on_state = callbacks.state_handler();
            options.handlers = callbacks.handlers("gw_serve", server.0)?;
        }
        let gateway = Gateway::serve_announcing(lock.inner, options, |handle| {
            let _ = live.handle.set(handle.clone());
        })
        .map_err(|err| fail_with(&err))?;
        *live.gateway.lock().unwrap_or_else(|e| e.into_inner()) = Some(gateway);
        crate::failpoint::inject_panic("gw_serve:served");
        // SAFETY: non-NULL and writable by the contract.
        unsafe { out.write(server.hand_out()) };
        Ok(())
    })
}

/// The port the server listens on; 0 when `server` is NULL. Any thread.
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_server_port(server: *const gw_server) -> u16 {
    boundary("gw_server_port", || {
        // SAFETY: NULL or live by the contract.
        unsafe { server.as_ref() }.map_or(0, |server| server.port)
    })
}

/// Shuts down gracefully and frees the server: stops accepting, closes every listener, lets
/// open connections finish for at most `timeout_ms`, then releases the lock. When it returns
/// the port can be bound at once by anyone and no lock file of ours remains.
///
/// `GW_OK` when every connection finished in time; `GW_ERR_TIMEOUT` when some were cut off
/// (the server is stopped and freed all the same; a connection cut off gets no `closed`
/// notification). The state callback gets `GW_STATE_STOPPED` before it returns. Before it
/// frees the server it also waits for any `on_request`/`on_connection` call still running
/// (one the drain gave up on), and lets no new one start: a callback that never returns
/// blocks it. Blocks; safe from any thread but a library callback (from one it would wait
/// for itself).
///
/// # Safety
///
/// `server` is NULL or a `gw_server` that `gw_serve` has returned (not one a callback was
/// given while `gw_serve` was still running), not used afterwards (nor by another thread during
/// the call).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_shutdown(server: *mut gw_server, timeout_ms: u32) -> gw_result {
    result_boundary("gw_shutdown", || {
        let server = non_null("gw_shutdown", "server", server)?;
        // Freed however this ends, a panic in the shutdown included: the guard waits for a host
        // callback a worker the runtime gave up on may still be in, lets no new one start, and
        // frees the server and, with it, the host's userdata.
        let owned = OwnedServer(ServerPtr(server));
        // SAFETY: live by the contract; until `owned` frees it, callbacks may only read it.
        let gateway = unsafe { &*server }
            .gateway
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let drained = gateway.is_none_or(|gateway| {
            gateway
                .shutdown(Duration::from_millis(u64::from(timeout_ms)))
                .drained
        });
        drop(owned);
        if drained {
            Ok(())
        } else {
            Err(fail(
                gw_result::GW_ERR_TIMEOUT,
                format!(
                    "gateway stopped; connections still open after {timeout_ms} ms were closed"
                ),
            ))
        }
    })
}

/// The live server behind a `gw_server` pointer argument.
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`.
pub(super) unsafe fn live<'a>(
    function: &str,
    server: *const gw_server,
) -> Result<&'a gw_server, gw_result> {
    let server = non_null(function, "server", server.cast_mut())?;
    // SAFETY: non-NULL and live, by the contract.
    Ok(unsafe { &*server })
}

/// Answers the request `request` (from `on_request`): `ok` with `json` as the `res` payload
/// (any JSON value), or `!ok` with `json` an error object `{"code": "...", "message": "...",
/// "details"?: ..., "retryable"?: bool, "retryAfterMs"?: number}`. `json` is `len` bytes of
/// UTF-8, not necessarily NUL-terminated, copied before the call returns.
///
/// `GW_ERR_NOT_FOUND` when the request is not waiting for an answer: answered already, timed
/// out (the client got `UNAVAILABLE`), its client is gone, or no such request was made.
/// `GW_ERR_INVALID_ARGUMENT` when `json` is not JSON (or, for `!ok`, not an error object);
/// the request then still waits for an answer. `GW_ERR_NULL_ARGUMENT` when `server` or `json`
/// is NULL.
///
/// Any thread, inside `on_request` or later (see `gw_server`).
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`; `json` is NULL or points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_respond(
    server: *const gw_server,
    request: gw_request_id,
    ok: bool,
    json: *const c_char,
    len: usize,
) -> gw_result {
    const FUNCTION: &str = "gw_respond";
    result_boundary(FUNCTION, || {
        // SAFETY: forwarded contract.
        let server = unsafe { live(FUNCTION, server) }?;
        // SAFETY: forwarded contract.
        let value = unsafe { json_argument(FUNCTION, "json", json, len) }?;
        let result = match ok {
            true => Ok(value),
            false => Err(serde_json::from_value::<MethodError>(value).map_err(|err| {
                fail(
                    gw_result::GW_ERR_INVALID_ARGUMENT,
                    format!(
                        "{FUNCTION}: json is not an error object \
                         {{\"code\", \"message\", \"details\"?}}: {err}"
                    ),
                )
            })?),
        };
        if server.handle(FUNCTION)?.respond(request, result) {
            Ok(())
        } else {
            Err(fail(
                gw_result::GW_ERR_NOT_FOUND,
                format!(
                    "{FUNCTION}: request {request} is not waiting for an answer \
                     (answered already, timed out, or its client is gone)"
                ),
            ))
        }
    })
}

/// Sends the event `event` with `json` (`len` bytes of UTF-8 JSON, any value, copied) as its
/// payload to every authenticated client its gate admits (none is fine), each with that
/// client's next `seq`: an event registered with `gw_handlers_add_event[_with_scope]` to the
/// operators holding its scope, OpenClaw's own events by OpenClaw's table (`tick`, `health`,
/// `heartbeat`, `shutdown` to everyone, nodes included), and an event that is neither to nobody
/// (logged once).
///
/// `GW_ERR_INVALID_ARGUMENT` when `event` is empty or not UTF-8 or `json` is not JSON;
/// `GW_ERR_NULL_ARGUMENT` when a pointer is NULL. Any thread (see `gw_server`).
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`; `event` is NULL or NUL-terminated; `json` is NULL
/// or points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_broadcast(
    server: *const gw_server,
    event: *const c_char,
    json: *const c_char,
    len: usize,
) -> gw_result {
    const FUNCTION: &str = "gw_broadcast";
    result_boundary(FUNCTION, || {
        // SAFETY: forwarded contract.
        let server = unsafe { live(FUNCTION, server) }?;
        // SAFETY: forwarded contract.
        let event = unsafe { name_argument(FUNCTION, "event", event) }?;
        // SAFETY: forwarded contract.
        let payload = unsafe { json_argument(FUNCTION, "json", json, len) }?;
        server.handle(FUNCTION)?.broadcast(event, &payload);
        Ok(())
    })
}

/// Replaces the health snapshot that the `health` method answers (default
/// `{"ok":true,"ts":<now>,"durationMs":0}`) with `snapshot_json` (`len` bytes of UTF-8 JSON,
/// any value, copied), and sends it to every authenticated client as a `health` event.
///
/// `GW_ERR_INVALID_ARGUMENT` when `snapshot_json` is not JSON (the snapshot is then
/// unchanged); `GW_ERR_NULL_ARGUMENT` when a pointer is NULL. Any thread (see `gw_server`).
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`; `snapshot_json` is NULL or points to `len`
/// readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_set_health(
    server: *const gw_server,
    snapshot_json: *const c_char,
    len: usize,
) -> gw_result {
    const FUNCTION: &str = "gw_set_health";
    result_boundary(FUNCTION, || {
        // SAFETY: forwarded contract.
        let server = unsafe { live(FUNCTION, server) }?;
        // SAFETY: forwarded contract.
        let snapshot = unsafe { json_argument(FUNCTION, "snapshot_json", snapshot_json, len) }?;
        server.handle(FUNCTION)?.set_health(snapshot);
        Ok(())
    })
}

/// Receives a JSON text: `json` is UTF-8, `len` bytes long without the NUL that follows it,
/// and valid only during the call.
pub type gw_json_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, json: *const c_char, len: usize)>;

/// Reads the presence list (SPEC §12.6): calls `read` once, on this thread and before
/// returning, with `userdata` and a JSON array, newest first: the gateway's own row
/// (`"mode":"gateway"`, `"reason":"self"`) and one row per non-ephemeral client that connected
/// within the last five minutes (`"reason"` `connect` or `disconnect`, `host`, `clientId`,
/// `mode`, `roles`, `scopes`, `ts`, ...). What `system-presence` answers an operator holding
/// `operator.read`.
///
/// `GW_ERR_NULL_ARGUMENT` when `server` or `read` is NULL. Any thread (see `gw_server`).
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`; `read` may be called with `userdata`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_server_presence(
    server: *const gw_server,
    read: gw_json_fn,
    userdata: *mut c_void,
) -> gw_result {
    const FUNCTION: &str = "gw_server_presence";
    result_boundary(FUNCTION, || {
        // SAFETY: forwarded contract.
        let server = unsafe { live(FUNCTION, server) }?;
        let read = read.ok_or_else(|| null_argument(FUNCTION, "read"))?;
        let rows = serde_json::Value::Array(server.handle(FUNCTION)?.presence());
        let json = c_string(rows.to_string());
        // SAFETY: the host's callback with its userdata; the text lives through the call.
        unsafe { read(userdata, json.as_ptr(), json.as_bytes().len()) };
        Ok(())
    })
}

/// WebSocket connections open now, authenticated or not; 0 when `server` is NULL. Any thread
/// (see `gw_server`).
///
/// # Safety
///
/// `server` is NULL or a live `gw_server`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_server_connection_count(server: *const gw_server) -> usize {
    boundary("gw_server_connection_count", || {
        // SAFETY: NULL or live by the contract.
        unsafe { server.as_ref() }
            .and_then(|server| server.handle.get())
            .map_or(0, GatewayHandle::connection_count)
    })
}

/// Sends the event `event` with `json` as its payload, and the client's next `seq`, to the
/// authenticated client on connection `conn_id` (from `on_connection` or `on_request`) when the
/// event's gate admits it, as `gw_broadcast` would: a client without the event's scope does
/// not get it, and `GW_OK` is returned all the same.
///
/// `GW_ERR_NOT_FOUND` when no authenticated client has that connection (it closed, or never
/// was); otherwise as `gw_broadcast`. Any thread (see `gw_server`).
///
/// # Safety
///
/// As `gw_broadcast`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_send_event(
    server: *const gw_server,
    conn_id: u64,
    event: *const c_char,
    json: *const c_char,
    len: usize,
) -> gw_result {
    const FUNCTION: &str = "gw_send_event";
    result_boundary(FUNCTION, || {
        // SAFETY: forwarded contract.
        let server = unsafe { live(FUNCTION, server) }?;
        // SAFETY: forwarded contract.
        let event = unsafe { name_argument(FUNCTION, "event", event) }?;
        // SAFETY: forwarded contract.
        let payload = unsafe { json_argument(FUNCTION, "json", json, len) }?;
        if server
            .handle(FUNCTION)?
            .send_event(conn_id, event, &payload)
        {
            Ok(())
        } else {
            Err(fail(
                gw_result::GW_ERR_NOT_FOUND,
                format!("{FUNCTION}: no authenticated client on connection {conn_id}"),
            ))
        }
    })
}
