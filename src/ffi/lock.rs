//! `gw_lock`: the file locks and the listener, and the side-effect-free status.

use super::boundary::{boundary, non_null, result_boundary};
use super::options::gw_options;
use super::result::{fail_with, gw_result};
use crate::lock::{GatewayLock, status};

/// Proof that this process is the gateway for a config and a port: both lock files are held
/// and the listener(s) bound. Created by `gw_lock_acquire`; given up by `gw_lock_release`, or
/// handed to `gw_serve`. One thread at a time may use a given lock.
pub struct gw_lock {
    pub(crate) inner: GatewayLock,
}

/// What `gw_lock_status` found.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct gw_status {
    /// A live gateway holds the lock.
    pub running: bool,
    /// Its `http://127.0.0.1:<port>/healthz` answered live.
    pub healthy: bool,
    /// A lock file is left by a provably dead owner (the next start reclaims it at once).
    pub stale: bool,
    /// The port the lock file records, else the port the options resolve to.
    pub port: u16,
    /// The pid the lock file records (also when its owner is dead); 0 when none.
    pub pid: u32,
    /// The holder's start time as recorded (Linux: clock ticks since boot; macOS: seconds
    /// since the epoch); 0 when none.
    pub start_time: u64,
}

/// Takes the state lock, the config lock, then binds the port (SPEC §5–6), as the Rust
/// `GatewayLock::acquire`. On `GW_OK` this process is the gateway and `*out` is a new
/// `gw_lock` the caller owns (release it with `gw_lock_release` or hand it to `gw_serve`).
/// On failure `*out` is untouched, nothing is kept, and `gw_last_error_message` gives the
/// SPEC message, e.g. `GW_ERR_ALREADY_RUNNING`: `gateway already running (pid 4242); lock
/// timeout after 5000ms`.
///
/// Blocks for up to the options' timeout while a live holder does not answer `/healthz`.
/// Any thread; the options are only read.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no thread changes during the call; `out` is
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_lock_acquire(
    options: *const gw_options,
    out: *mut *mut gw_lock,
) -> gw_result {
    result_boundary("gw_lock_acquire", || {
        let options = non_null("gw_lock_acquire", "options", options.cast_mut())?;
        let out = non_null("gw_lock_acquire", "out", out)?;
        // SAFETY: non-NULL and live by the contract.
        let options = unsafe { &*options }.get();
        let lock = GatewayLock::acquire(options).map_err(|err| fail_with(&err))?;
        // SAFETY: non-NULL and writable by the contract.
        unsafe { out.write(Box::into_raw(Box::new(gw_lock { inner: lock }))) };
        Ok(())
    })
}

/// The port the lock holds (the real one when 0 was asked for); 0 when `lock` is NULL.
///
/// # Safety
///
/// `lock` is NULL or a live `gw_lock`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_lock_port(lock: *const gw_lock) -> u16 {
    boundary("gw_lock_port", || {
        // SAFETY: NULL or live by the contract.
        unsafe { lock.as_ref() }.map_or(0, |lock| lock.inner.port())
    })
}

/// Closes the listener(s), then removes the lock files that are still ours. NULL is harmless.
///
/// # Safety
///
/// `lock` is NULL or a `gw_lock` from `gw_lock_acquire`, not given to `gw_serve`, and not used
/// afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_lock_release(lock: *mut gw_lock) {
    boundary("gw_lock_release", || {
        if !lock.is_null() {
            // SAFETY: owned by the caller and never used again, by the contract.
            unsafe { Box::from_raw(lock) }.inner.release();
        }
    })
}

/// Looks at the gateway holding the options' lock, without taking a lock, writing a file or
/// signalling anyone, and probes its `/healthz` (up to 1 s). On `GW_OK` fills `*out`; on
/// failure leaves it untouched. Any thread.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no thread changes during the call; `out` is
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_lock_status(
    options: *const gw_options,
    out: *mut gw_status,
) -> gw_result {
    result_boundary("gw_lock_status", || {
        let options = non_null("gw_lock_status", "options", options.cast_mut())?;
        let out = non_null("gw_lock_status", "out", out)?;
        // SAFETY: non-NULL and live by the contract.
        let options = unsafe { &*options }.get();
        let found = status(options).map_err(|err| fail_with(&err))?;
        let status = gw_status {
            running: found.running,
            healthy: found.healthy,
            stale: found.stale,
            port: found.port,
            pid: found.pid.unwrap_or(0),
            start_time: found.start_time.unwrap_or(0),
        };
        // SAFETY: non-NULL and writable by the contract.
        unsafe { out.write(status) };
        Ok(())
    })
}
