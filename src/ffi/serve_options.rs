//! `gw_serve_options`: every knob of [`ServeOptions`] and [`ProtocolOptions`] that is not a
//! callback, set one call at a time and checked by [`ServeOptions::validate`].
//!
//! [`ProtocolOptions`]: crate::ProtocolOptions

use std::ffi::c_char;
use std::time::Duration;

use super::boundary::{boundary, free_handle, name_argument, non_null, result_boundary};
use super::result::{fail_with, gw_result};
use crate::server::{AuthThrottle, ServeOptions};

/// How `gw_serve` runs the server: worker threads, the WebSocket protocol's limits and
/// policies (SPEC §9). The callbacks (log, state, methods, connections) are given to
/// `gw_serve` in `gw_callbacks`.
///
/// Created by `gw_serve_options_new` with the defaults, freed by `gw_serve_options_free`; the
/// host owns it. `gw_serve` copies it, so the host may free or reuse it as soon as `gw_serve`
/// returns. Not thread-safe: one thread at a time may use a given `gw_serve_options`.
pub struct gw_serve_options {
    pub(crate) inner: ServeOptions,
}

/// New serve options with the defaults: worker threads = cores (at most 4), drop timeout
/// 5000 ms, only loopback origins, handshake timeout 15000 ms, tick and ping every 30000 ms,
/// request timeout 30000 ms, 10000 connections, 64 KiB before the handshake, 25 MiB frames,
/// 50 MiB buffered per client, 10 wrong secrets per 60000 ms lock a peer out for 300000 ms,
/// and this library's version as `server.version`.
///
/// Returns a new `gw_serve_options` that the caller owns and frees with
/// `gw_serve_options_free`; NULL only when the library failed (see `gw_last_error_message`).
/// Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn gw_serve_options_new() -> *mut gw_serve_options {
    boundary("gw_serve_options_new", || {
        Box::into_raw(Box::new(gw_serve_options {
            inner: ServeOptions::default(),
        }))
    })
}

/// Frees serve options. NULL is harmless.
///
/// # Safety
///
/// `options` is NULL or was returned by `gw_serve_options_new` and is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_free(options: *mut gw_serve_options) {
    // SAFETY: NULL or from the matching `_new`, never used again, by the contract.
    unsafe { free_handle("gw_serve_options_free", options) }
}

/// Applies `change` to a copy of the options and keeps it only when `ServeOptions::validate`
/// accepts it, so a refused value leaves the options as they were.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` no other thread uses.
pub(super) unsafe fn update(
    function: &'static str,
    options: *mut gw_serve_options,
    change: impl FnOnce(&mut ServeOptions),
) -> gw_result {
    result_boundary(function, || {
        let options = non_null(function, "options", options)?;
        // SAFETY: non-NULL, live and not shared, by the contract.
        let options = unsafe { &mut *options };
        let mut changed = options.inner.clone();
        change(&mut changed);
        changed.validate().map_err(|err| fail_with(&err))?;
        options.inner = changed;
        Ok(())
    })
}

/// Applies `change` with a non-empty UTF-8 string argument.
///
/// # Safety
///
/// As [`update`]; `value` is NULL or a NUL-terminated string.
pub(super) unsafe fn update_with_name(
    function: &'static str,
    options: *mut gw_serve_options,
    argument: &'static str,
    value: *const c_char,
    change: impl FnOnce(&mut ServeOptions, &str),
) -> gw_result {
    result_boundary(function, || {
        non_null(function, "options", options)?;
        // SAFETY: NULL or NUL-terminated, by the contract.
        let value = unsafe { name_argument(function, argument, value) }?;
        // SAFETY: forwarded contract.
        match unsafe { update(function, options, |o| change(o, value)) } {
            gw_result::GW_OK => Ok(()),
            refused => Err(refused),
        }
    })
}

/// Tokio worker threads that run the connections (default: the number of cores, at most 4).
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) for 0; `GW_ERR_NULL_ARGUMENT` when `options`
/// is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_worker_threads(
    options: *mut gw_serve_options,
    threads: usize,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_serve_options_set_worker_threads", options, |o| {
            o.worker_threads = threads
        })
    }
}

/// How long open connections may finish when a server stops without being told how long
/// (default 5000 ms; 0 closes them at once): the C++ `gateway::Server` destructor and Swift's
/// `deinit` pass it to `gw_shutdown`. A C host always names its own timeout in `gw_shutdown`,
/// so in C this is used only when `gw_serve` fails after the server started (a panic), as
/// the Rust `ServeOptions::drop_timeout` is when a `Gateway` is dropped.
///
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_drop_timeout_ms(
    options: *mut gw_serve_options,
    ms: u64,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_serve_options_set_drop_timeout_ms", options, |o| {
            o.drop_timeout = Duration::from_millis(ms)
        })
    }
}

/// Allows WebSocket clients from `origin` (e.g. `"https://app.example.com"`; `"*"` allows
/// every origin) besides the loopback ones, which are always allowed. Each call adds one.
///
/// The string is copied. `GW_ERR_INVALID_ARGUMENT` for an empty string or one that is not
/// UTF-8, `GW_ERR_NULL_ARGUMENT` when an argument is NULL; the options are then unchanged.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call;
/// `origin` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_add_allowed_origin(
    options: *mut gw_serve_options,
    origin: *const c_char,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update_with_name(
            "gw_serve_options_add_allowed_origin",
            options,
            "origin",
            origin,
            |o, origin| o.protocol.allowed_origins.push(origin.to_owned()),
        )
    }
}

/// A client that sends no valid `connect` within this is closed with 1008 `handshake
/// timeout` (default 15000 ms).
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) for 0; `GW_ERR_NULL_ARGUMENT` when `options`
/// is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_handshake_timeout_ms(
    options: *mut gw_serve_options,
    ms: u64,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_serve_options_set_handshake_timeout_ms", options, |o| {
            o.protocol.handshake_timeout = Duration::from_millis(ms)
        })
    }
}

/// How often clients get a `tick` event, as `hello-ok` says in `policy.tickIntervalMs`
/// (default 30000 ms).
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) for 0; `GW_ERR_NULL_ARGUMENT` when `options`
/// is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_tick_interval_ms(
    options: *mut gw_serve_options,
    ms: u64,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_serve_options_set_tick_interval_ms", options, |o| {
            o.protocol.tick_interval = Duration::from_millis(ms)
        })
    }
}

/// A WebSocket ping every interval; a peer that answers nothing for a whole interval after a
/// ping is dropped (default 30000 ms).
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) for 0; `GW_ERR_NULL_ARGUMENT` when `options`
/// is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_ping_interval_ms(
    options: *mut gw_serve_options,
    ms: u64,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_serve_options_set_ping_interval_ms", options, |o| {
            o.protocol.ping_interval = Duration::from_millis(ms)
        })
    }
}

/// How long a request may wait for `gw_respond`: past it the client gets `UNAVAILABLE`
/// (`retryable: true`) and a later `gw_respond` gives `GW_ERR_NOT_FOUND` (default 30000 ms).
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) for 0; `GW_ERR_NULL_ARGUMENT` when `options`
/// is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_request_timeout_ms(
    options: *mut gw_serve_options,
    ms: u64,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_serve_options_set_request_timeout_ms", options, |o| {
            o.protocol.request_timeout = Duration::from_millis(ms)
        })
    }
}

/// WebSocket connections served at once; past it a client is closed with 1013 `too many
/// connections` (default 10000).
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) for 0; `GW_ERR_NULL_ARGUMENT` when `options`
/// is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_max_connections(
    options: *mut gw_serve_options,
    n: usize,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_serve_options_set_max_connections", options, |o| {
            o.protocol.max_connections = n
        })
    }
}

/// Bytes a client may send before it is authenticated (default 65536).
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) for 0; `GW_ERR_NULL_ARGUMENT` when `options`
/// is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_max_preauth_payload(
    options: *mut gw_serve_options,
    bytes: usize,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_serve_options_set_max_preauth_payload", options, |o| {
            o.protocol.max_preauth_payload = bytes
        })
    }
}

/// The largest frame a client may send after the handshake, as `hello-ok` says in
/// `policy.maxPayload` (default 25 MiB).
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) for 0; `GW_ERR_NULL_ARGUMENT` when `options`
/// is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_max_payload(
    options: *mut gw_serve_options,
    bytes: usize,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_serve_options_set_max_payload", options, |o| {
            o.protocol.max_payload = bytes
        })
    }
}

/// Unsent bytes a client may have queued before it is closed as a slow consumer, as
/// `hello-ok` says in `policy.maxBufferedBytes` (default 50 MiB).
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) for 0; `GW_ERR_NULL_ARGUMENT` when `options`
/// is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_max_buffered_bytes(
    options: *mut gw_serve_options,
    bytes: usize,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_serve_options_set_max_buffered_bytes", options, |o| {
            o.protocol.max_buffered_bytes = bytes
        })
    }
}

/// Throttling of wrong credentials per client: a client that gives `max_failures` wrong
/// secrets within `window_ms` is refused for `lockout_ms` (default 10, 60000 ms, 300000 ms,
/// Node's `gateway.auth.rateLimit`). Counted per client and per credential class (shared
/// secret, device token, bootstrap token); loopback peers without `Origin` are never locked
/// out, their wrong secrets are answered late instead (250 ms doubling to 5000 ms).
///
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_auth_throttle(
    options: *mut gw_serve_options,
    max_failures: u32,
    window_ms: u64,
    lockout_ms: u64,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_serve_options_set_auth_throttle", options, |o| {
            o.protocol.auth_throttle = AuthThrottle {
                max_failures,
                window: Duration::from_millis(window_ms),
                lockout: Duration::from_millis(lockout_ms),
            }
        })
    }
}

/// `server.version` in `hello-ok` (default this library's version, see `gw_version`).
///
/// The string is copied. `GW_ERR_INVALID_ARGUMENT` for an empty string or one that is not
/// UTF-8, `GW_ERR_NULL_ARGUMENT` when an argument is NULL; the options are then unchanged.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call;
/// `version` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_server_version(
    options: *mut gw_serve_options,
    version: *const c_char,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update_with_name(
            "gw_serve_options_set_server_version",
            options,
            "version",
            version,
            |o, version| o.protocol.server_version = version.to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::ptr::{null, null_mut};

    use super::*;
    use crate::ffi::boundary::last_error;

    type Setter = unsafe extern "C" fn(*mut gw_serve_options, u64) -> gw_result;
    type SizeSetter = unsafe extern "C" fn(*mut gw_serve_options, usize) -> gw_result;

    /// Every number that `ServeOptions::validate` refuses at 0, and how its setter says so.
    #[test]
    fn zero_is_refused_where_rust_refuses_it() {
        let millis: [(Setter, &str); 4] = [
            (
                gw_serve_options_set_handshake_timeout_ms,
                "handshake_timeout",
            ),
            (gw_serve_options_set_tick_interval_ms, "tick_interval"),
            (gw_serve_options_set_ping_interval_ms, "ping_interval"),
            (gw_serve_options_set_request_timeout_ms, "request_timeout"),
        ];
        let sizes: [(SizeSetter, &str); 5] = [
            (gw_serve_options_set_worker_threads, "worker_threads"),
            (gw_serve_options_set_max_connections, "max_connections"),
            (
                gw_serve_options_set_max_preauth_payload,
                "max_preauth_payload",
            ),
            (gw_serve_options_set_max_payload, "max_payload"),
            (
                gw_serve_options_set_max_buffered_bytes,
                "max_buffered_bytes",
            ),
        ];
        let options = gw_serve_options_new();
        let zero = |name: &str| {
            format!("{name} is 0: give it a value of at least 1 (or leave the default)")
        };
        // SAFETY: `options` is live until freed at the end.
        unsafe {
            for (set, name) in millis {
                assert_eq!(
                    set(options, 0),
                    gw_result::GW_ERR_INVALID_ARGUMENT,
                    "{name}"
                );
                assert_eq!(last_error(), zero(name));
                assert_eq!(set(options, 7), gw_result::GW_OK, "{name}");
                assert_eq!(
                    set(null_mut(), 7),
                    gw_result::GW_ERR_NULL_ARGUMENT,
                    "{name}"
                );
            }
            for (set, name) in sizes {
                assert_eq!(
                    set(options, 0),
                    gw_result::GW_ERR_INVALID_ARGUMENT,
                    "{name}"
                );
                assert_eq!(last_error(), zero(name));
                assert_eq!(set(options, 3), gw_result::GW_OK, "{name}");
                assert_eq!(
                    set(null_mut(), 3),
                    gw_result::GW_ERR_NULL_ARGUMENT,
                    "{name}"
                );
            }
            assert_eq!(
                gw_serve_options_set_drop_timeout_ms(options, 0),
                gw_result::GW_OK
            );
            let o = &(*options).inner;
            assert_eq!(o.worker_threads, 3);
            assert_eq!(o.drop_timeout, Duration::ZERO);
            assert_eq!(o.protocol.handshake_timeout, Duration::from_millis(7));
            assert_eq!(o.protocol.tick_interval, Duration::from_millis(7));
            assert_eq!(o.protocol.ping_interval, Duration::from_millis(7));
            assert_eq!(o.protocol.request_timeout, Duration::from_millis(7));
            assert_eq!(o.protocol.max_connections, 3);
            assert_eq!(o.protocol.max_preauth_payload, 3);
            assert_eq!(o.protocol.max_payload, 3);
            assert_eq!(o.protocol.max_buffered_bytes, 3);
            gw_serve_options_free(options);
            gw_serve_options_free(null_mut());
        }
    }

    #[test]
    fn strings_and_the_throttle_are_copied_and_checked() {
        let options = gw_serve_options_new();
        // SAFETY: `options` is live until freed at the end; strings are NUL-terminated.
        unsafe {
            let origin = |s: *const c_char| gw_serve_options_add_allowed_origin(options, s);
            assert_eq!(origin(c"https://a.example".as_ptr()), gw_result::GW_OK);
            assert_eq!(origin(c"*".as_ptr()), gw_result::GW_OK);
            assert_eq!(origin(c"".as_ptr()), gw_result::GW_ERR_INVALID_ARGUMENT);
            assert_eq!(origin(c"\xff".as_ptr()), gw_result::GW_ERR_INVALID_ARGUMENT);
            assert_eq!(origin(null()), gw_result::GW_ERR_NULL_ARGUMENT);
            assert_eq!(
                last_error(),
                "gw_serve_options_add_allowed_origin: origin is NULL"
            );
            assert_eq!(
                gw_serve_options_add_allowed_origin(null_mut(), c"x".as_ptr()),
                gw_result::GW_ERR_NULL_ARGUMENT
            );
            let version = |s: *const c_char| gw_serve_options_set_server_version(options, s);
            assert_eq!(version(c"host 2.0".as_ptr()), gw_result::GW_OK);
            assert_eq!(version(c"".as_ptr()), gw_result::GW_ERR_INVALID_ARGUMENT);
            assert_eq!(
                gw_serve_options_set_auth_throttle(options, 2, 1000, 5000),
                gw_result::GW_OK
            );
            assert_eq!(
                gw_serve_options_set_auth_throttle(null_mut(), 2, 1000, 5000),
                gw_result::GW_ERR_NULL_ARGUMENT
            );
            let o = &(*options).inner.protocol;
            assert_eq!(o.allowed_origins, ["https://a.example", "*"]);
            assert_eq!(o.server_version, "host 2.0");
            assert_eq!(o.auth_throttle.max_failures, 2);
            assert_eq!(o.auth_throttle.window, Duration::from_millis(1000));
            assert_eq!(o.auth_throttle.lockout, Duration::from_millis(5000));
            gw_serve_options_free(options);
        }
    }

    #[test]
    fn the_control_ui_setter_copies_and_checks_its_strings() {
        use crate::ffi::http_options::gw_serve_options_set_control_ui;
        let options = gw_serve_options_new();
        let root = c"/srv/ui";
        // SAFETY: a live options handle and NUL-terminated strings.
        unsafe {
            assert_eq!(
                gw_serve_options_set_control_ui(options, null(), null()),
                gw_result::GW_ERR_NULL_ARGUMENT
            );
            assert_eq!(
                gw_serve_options_set_control_ui(options, c"".as_ptr(), null()),
                gw_result::GW_ERR_INVALID_ARGUMENT
            );
            assert!((*options).inner.http.control_ui.is_none(), "unchanged");
            assert_eq!(
                gw_serve_options_set_control_ui(options, root.as_ptr(), c" openclaw/ ".as_ptr()),
                gw_result::GW_OK
            );
            let ui = (*options).inner.http.control_ui.clone().unwrap();
            assert_eq!(ui.root, std::path::Path::new("/srv/ui"));
            assert_eq!(ui.base_path, "/openclaw");
            assert_eq!(
                gw_serve_options_set_control_ui(options, root.as_ptr(), null()),
                gw_result::GW_OK
            );
            assert_eq!(
                (*options).inner.http.control_ui.as_ref().unwrap().base_path,
                ""
            );
            gw_serve_options_free(options);
        }
    }
}
