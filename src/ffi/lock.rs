//! `gw_lock`: the file locks and the listener, and the side-effect-free status.

use std::ffi::c_int;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::boundary::{boundary, non_null, result_boundary};
use super::options::gw_options;
use super::result::{fail, fail_with, gw_result};
use crate::lock::{GatewayLock, status, unlock};

/// Proof that this process is the gateway for a config and a port: both lock files are held
/// and the listener(s) bound. Created by `gw_lock_acquire` or `gw_lock_acquire_with_listener`; given up by `gw_lock_release`, or
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

/// Like `gw_lock_acquire`, but adopts `fd`, a bound and listening TCP socket the host already
/// has (socket activation, as the Rust `GatewayLock::acquire_with_listener`): the lock's port is
/// the socket's, the file locks are still taken, and the options' port and bind are not used.
///
/// The library owns `fd` on every return: on `GW_OK` the lock holds it (closed by
/// `gw_lock_release` or `gw_shutdown`); on any failure, NULL arguments included, it is closed.
/// `GW_ERR_INVALID_ARGUMENT` when `fd` is negative or not a listening TCP socket.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no thread changes during the call; `out` is
/// NULL or writable; `fd` is negative or an open descriptor the caller gives up.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_lock_acquire_with_listener(
    options: *const gw_options,
    fd: c_int,
    out: *mut *mut gw_lock,
) -> gw_result {
    const FUNCTION: &str = "gw_lock_acquire_with_listener";
    result_boundary(FUNCTION, || {
        if fd < 0 {
            return Err(fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!("{FUNCTION}: fd is {fd}: give a listening TCP socket"),
            ));
        }
        // Owned first, so that it is closed on every failure below.
        // SAFETY: an open descriptor the caller gives up, by the contract.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let options = non_null(FUNCTION, "options", options.cast_mut())?;
        let out = non_null(FUNCTION, "out", out)?;
        let listener = listening_tcp(socket).map_err(|why| {
            fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!("{FUNCTION}: fd {fd} {why}: give a bound, listening TCP socket"),
            )
        })?;
        // SAFETY: non-NULL and live by the contract.
        let options = unsafe { &*options }.get();
        let lock =
            GatewayLock::acquire_with_listener(options, listener).map_err(|err| fail_with(&err))?;
        // SAFETY: non-NULL and writable by the contract.
        unsafe { out.write(Box::into_raw(Box::new(gw_lock { inner: lock }))) };
        Ok(())
    })
}

/// `socket` as a listener, or why it is none.
fn listening_tcp(socket: OwnedFd) -> Result<TcpListener, String> {
    let mut accepting: libc::c_int = 0;
    let mut size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: reads one int option of an open descriptor into a local of that size.
    let read = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut accepting).cast(),
            &mut size,
        )
    };
    if read != 0 {
        let err = std::io::Error::last_os_error();
        return Err(format!("is not a socket ({err})"));
    }
    let listening = accepting != 0;
    let listener = TcpListener::from(socket);
    match listener.local_addr() {
        Err(err) => Err(format!("is not a TCP socket ({err})")),
        Ok(_) if !listening => Err("is not listening".to_owned()),
        Ok(_) => Ok(listener),
    }
}

/// True once the lock's periodic re-check (`gw_options_set_recheck_interval_ms`) found a lock
/// file deleted or replaced: another gateway may start on this config. False for NULL. A
/// served gateway reports the same through `GW_STATE_LOCK_LOST`. Any thread.
///
/// # Safety
///
/// `lock` is NULL or a live `gw_lock`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_lock_is_lost(lock: *const gw_lock) -> bool {
    boundary("gw_lock_is_lost", || {
        // SAFETY: NULL or live by the contract.
        unsafe { lock.as_ref() }.is_some_and(|lock| lock.inner.is_lost())
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
/// `lock` is NULL or a `gw_lock` from `gw_lock_acquire` (or `_with_listener`), not given to `gw_serve`, and not used
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

/// Removes the lock files of a gateway that is gone, as the Rust `gateway::unlock` (and
/// `gateway unlock [--force]`): a stale lock (a dead holder of this machine, or one of an earlier
/// boot) without `force`; a lock whose holder is on another machine only with `force` (only the
/// user can know that it is gone). Never a lock a live gateway of this machine holds, nor one
/// whose holder on another machine is proven alive by a beacon the file system shares:
/// `GW_ERR_ALREADY_RUNNING` (`gw_last_error_holder` gives its pid, `gw_last_error_holder_host`
/// its host when it is another machine). Without `force`, another machine's lock gives
/// `GW_ERR_HELD_BY_OTHER_HOST`. Every file is judged before any is removed, so a refusal
/// removes nothing; only when a file changed under it (a gateway starting meanwhile) and the
/// second look refuses may some be gone already, and the message names them (the result and
/// holder are the refusal's).
///
/// On `GW_OK`, `*removed` (when not NULL) is the number of lock files removed, 0 when there was
/// none. Any thread; the options are only read.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no thread changes during the call; `removed`
/// is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_unlock(
    options: *const gw_options,
    force: bool,
    removed: *mut u32,
) -> gw_result {
    result_boundary("gw_unlock", || {
        let options = non_null("gw_unlock", "options", options.cast_mut())?;
        // SAFETY: non-NULL and live by the contract.
        let options = unsafe { &*options }.get();
        let gone = unlock(options, force).map_err(|err| fail_with(&err))?;
        // SAFETY: NULL or writable by the contract.
        if let Some(removed) = unsafe { removed.as_mut() } {
            *removed = u32::try_from(gone.len()).unwrap_or(u32::MAX);
        }
        Ok(())
    })
}
