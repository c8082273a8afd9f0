//! What hello-ok and the health refresh say, set from C (SPEC §12.7–12.8): `server.buildId`,
//! the capability lists, the refresh interval, and the host's health source.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use super::boundary::{json_argument, non_null, result_boundary};
use super::result::gw_result;
use super::serve_options::{gw_serve_options, update, update_with_name};
use super::userdata::HostUserdata;
use crate::server::HealthSource;

/// `server.buildId` in `hello-ok` (at most 96 characters; default none, left out). The
/// string is copied.
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) when it is empty, not UTF-8 or longer than
/// 96 characters; `GW_ERR_NULL_ARGUMENT` when a pointer is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call;
/// `build_id` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_build_id(
    options: *mut gw_serve_options,
    build_id: *const c_char,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update_with_name(
            "gw_serve_options_set_build_id",
            options,
            "build_id",
            build_id,
            |o, id| o.protocol.build_id = Some(id.to_owned()),
        )
    }
}

/// Adds `capability` to `features.capabilities` of `hello-ok` (default none): a wire
/// contract the host keeps (e.g. `session-settings-contract`). Each is a promise to clients:
/// add only what the host implements. The string is copied.
///
/// `GW_ERR_INVALID_ARGUMENT` when it is empty or not UTF-8; `GW_ERR_NULL_ARGUMENT` when a
/// pointer is NULL.
///
/// # Safety
///
/// As `gw_serve_options_set_build_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_add_capability(
    options: *mut gw_serve_options,
    capability: *const c_char,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update_with_name(
            "gw_serve_options_add_capability",
            options,
            "capability",
            capability,
            |o, c| o.protocol.capabilities.push(c.to_owned()),
        )
    }
}

/// Adds `capability` to the `capabilities` of the `connect.challenge` event (default none):
/// what the host honours in `connect`. OpenClaw's gateway lists `model-catalog-snapshot`, which
/// makes clients send `modelCatalog`; the library does nothing with it, so add it only when
/// the host reads it. The string is copied.
///
/// Errors as `gw_serve_options_add_capability`.
///
/// # Safety
///
/// As `gw_serve_options_set_build_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_add_challenge_capability(
    options: *mut gw_serve_options,
    capability: *const c_char,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update_with_name(
            "gw_serve_options_add_challenge_capability",
            options,
            "capability",
            capability,
            |o, c| o.protocol.challenge_capabilities.push(c.to_owned()),
        )
    }
}

/// How often the health snapshot is refreshed and sent to every client as a `health` event,
/// and how old a cached one may be when the `health` method answers it (default 60000 ms).
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) for 0; `GW_ERR_NULL_ARGUMENT` when `options`
/// is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_health_refresh_interval_ms(
    options: *mut gw_serve_options,
    ms: u64,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update(
            "gw_serve_options_set_health_refresh_interval_ms",
            options,
            |o| o.protocol.health_refresh_interval = Duration::from_millis(ms),
        )
    }
}

/// Where a health source puts the snapshot it produced; valid only during the
/// `gw_health_fn` call it is given to.
pub struct gw_health_reply {
    snapshot: Option<serde_json::Value>,
}

/// A health source: called at each refresh (at start, every refresh interval, when `health`
/// finds the cache stale, after a connect at most once an interval). It answers with
/// `gw_health_reply_set(reply, json, len)` before it returns; when it does not, the previous
/// snapshot is kept and nothing is sent.
///
/// Called on a library thread, never on two at once for one server but on any (a refresh asked
/// for while one runs waits for it and shares its snapshot); it must return quickly (a slow
/// source holds up a worker of the server, and the callers waiting for it) and must not call
/// `gw_shutdown`.
pub type gw_health_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, reply: *mut gw_health_reply)>;

/// The snapshot of this refresh: `json` is `len` bytes of UTF-8 JSON (any value; OpenClaw
/// clients read an object whose fields are all optional), copied. A second call replaces
/// the first.
///
/// `GW_ERR_INVALID_ARGUMENT` when it is not JSON (the reply is then unchanged);
/// `GW_ERR_NULL_ARGUMENT` when a pointer is NULL.
///
/// # Safety
///
/// `reply` is NULL or the reply given to the running `gw_health_fn`; `json` is NULL or points
/// to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_health_reply_set(
    reply: *mut gw_health_reply,
    json: *const c_char,
    len: usize,
) -> gw_result {
    const FUNCTION: &str = "gw_health_reply_set";
    result_boundary(FUNCTION, || {
        let reply = non_null(FUNCTION, "reply", reply)?;
        // SAFETY: forwarded contract.
        let snapshot = unsafe { json_argument(FUNCTION, "json", json, len) }?;
        // SAFETY: non-NULL and the live reply of the running source, by the contract.
        unsafe { &mut *reply }.snapshot = Some(snapshot);
        Ok(())
    })
}

/// The host's health source: `source` produces the snapshot at each refresh (see
/// `gw_health_fn`); NULL goes back to the default (the last `gw_set_health` snapshot, else
/// `{"ok":true,"ts":<now>,"durationMs":0}`). `free_userdata` (may be NULL) is called with
/// `userdata` exactly once, when the library drops its last reference to it: when these
/// options (and every server served with them) are freed, when the source is replaced, at
/// once when `source` is NULL, and also when this call fails. `gw_set_health` keeps working
/// beside a source.
///
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call;
/// `source` and `free_userdata` may be called from any library thread with `userdata`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_health_source(
    options: *mut gw_serve_options,
    source: gw_health_fn,
    userdata: *mut c_void,
    free_userdata: Option<unsafe extern "C" fn(userdata: *mut c_void)>,
) -> gw_result {
    // Owned at once, so that every return (a NULL `options`, a panic) frees it.
    let userdata = Arc::new(HostUserdata::new(userdata, free_userdata));
    let health_source = source.map(|source| {
        HealthSource::new(move || {
            let mut reply = gw_health_reply { snapshot: None };
            // SAFETY: the host's source with its own userdata and a reply live for the call.
            unsafe { source(userdata.get(), &mut reply) };
            reply.snapshot
        })
    });
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_serve_options_set_health_source", options, |o| {
            o.protocol.health_source = health_source
        })
    }
}
