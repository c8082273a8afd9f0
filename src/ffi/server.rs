//! `gw_server`: serving on the lock, and the bounded graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use super::boundary::{boundary, non_null, null_argument, result_boundary};
use super::callbacks::{HostCallbacks, gw_callbacks};
use super::lock::gw_lock;
use super::result::{fail, fail_with, gw_result};
use crate::server::{Gateway, ServeOptions};

/// A running gateway: it holds the lock and serves the probes on threads the library owns until
/// `gw_shutdown`, which frees it. Any thread may call `gw_server_port` and `gw_shutdown`.
pub struct gw_server {
    gateway: Gateway,
    /// Kept until the server is freed, so `free_userdata` never runs while it serves.
    _callbacks: Option<Arc<HostCallbacks>>,
}

/// Serves on the lock's listener(s) and returns once ready (`/readyz` answers 200), as the
/// Rust `Gateway::serve`. On `GW_OK`, `*out` is a new `gw_server` the caller owns and must
/// give to `gw_shutdown`.
///
/// Takes ownership of `lock` and of the callbacks' `userdata` whatever the result: on failure
/// the lock is released, `free_userdata` has been called, and `*out` is untouched.
/// `callbacks` may be NULL (no callbacks); it is copied, not kept. Any thread but a library
/// callback.
///
/// # Safety
///
/// `lock` is NULL or a `gw_lock` from `gw_lock_acquire` that is not used afterwards;
/// `callbacks` is NULL or points to a `gw_callbacks` whose `size` bytes are readable; `out`
/// is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve(
    lock: *mut gw_lock,
    callbacks: *const gw_callbacks,
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
        let mut options = ServeOptions::default();
        if let Some(callbacks) = &callbacks {
            options.logger = callbacks.logger();
            options.on_state = callbacks.state_handler();
        }
        let gateway = Gateway::serve(lock.inner, options).map_err(|err| fail_with(&err))?;
        let server = Box::new(gw_server {
            gateway,
            _callbacks: callbacks,
        });
        // SAFETY: non-NULL and writable by the contract.
        unsafe { out.write(Box::into_raw(server)) };
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
        unsafe { server.as_ref() }.map_or(0, |server| server.gateway.port())
    })
}

/// Shuts down gracefully and frees the server: stops accepting, closes every listener, lets
/// open connections finish for at most `timeout_ms`, then releases the lock. When it returns
/// the port can be bound at once by anyone and no lock file of ours remains.
///
/// `GW_OK` when every connection finished in time; `GW_ERR_TIMEOUT` when some were cut off
/// (the server is stopped and freed all the same). The state callback gets
/// `GW_STATE_STOPPED` before it returns. Blocks; safe from any thread but a library callback
/// (from one it would wait for itself).
///
/// # Safety
///
/// `server` is NULL or a `gw_server` from `gw_serve` that is not used afterwards (nor by
/// another thread during the call).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_shutdown(server: *mut gw_server, timeout_ms: u32) -> gw_result {
    result_boundary("gw_shutdown", || {
        let server = non_null("gw_shutdown", "server", server)?;
        // SAFETY: owned by the caller and handed over, by the contract.
        let server = unsafe { Box::from_raw(server) };
        let report = server
            .gateway
            .shutdown(Duration::from_millis(u64::from(timeout_ms)));
        if report.drained {
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
