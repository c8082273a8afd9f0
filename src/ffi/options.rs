//! `gw_options`: every knob of [`GatewayOptions`], set one call at a time.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use super::boundary::{boundary, free_handle, non_null, result_boundary, utf8_argument};
use super::callbacks::gw_log_fn;
use super::log::host_logger;
use super::result::{fail, fail_with, gw_result};
use super::userdata::HostUserdata;
use crate::options::{Auth, BindMode, BindRetry, GatewayOptions, Logger};
use crate::paths;

/// Where and how the gateway locks and listens (SPEC §1). Fields left unset are resolved when
/// the lock is acquired: from the home directory only, or also from the `OPENCLAW_*`
/// environment after `gw_options_from_env`.
///
/// Created by `gw_options_new`, freed by `gw_options_free`; the host owns it. Not thread-safe:
/// one thread at a time may use a given `gw_options` (different ones are independent).
pub struct gw_options {
    inner: GatewayOptions,
}

impl gw_options {
    pub(crate) fn get(&self) -> &GatewayOptions {
        &self.inner
    }
}

/// New options with the defaults (port 18789, loopback, no auth, timeout 5000 ms, ...), which
/// consult no `OPENCLAW_*` variable.
///
/// Returns a new `gw_options` that the caller owns and frees with `gw_options_free`; NULL
/// only when the library failed (see `gw_last_error_message`). Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn gw_options_new() -> *mut gw_options {
    boundary("gw_options_new", || {
        Box::into_raw(Box::new(gw_options {
            inner: GatewayOptions::new(),
        }))
    })
}

/// Frees options. NULL is harmless.
///
/// # Safety
///
/// `options` is NULL or was returned by `gw_options_new` and is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_free(options: *mut gw_options) {
    // SAFETY: NULL or from the matching `_new`, never used again, by the contract.
    unsafe { free_handle("gw_options_free", options) }
}

/// Applies `update` to the options, which keep their old value when it fails.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` no other thread uses.
pub(super) unsafe fn update(
    function: &'static str,
    options: *mut gw_options,
    update: impl FnOnce(GatewayOptions) -> Result<GatewayOptions, gw_result>,
) -> gw_result {
    result_boundary(function, || {
        let options = non_null(function, "options", options)?;
        // SAFETY: non-NULL, live and not shared, by the contract.
        let options = unsafe { &mut *options };
        options.inner = update(options.inner.clone())?;
        Ok(())
    })
}

/// Replaces the options with the defaults resolved from the process environment, as SPEC §1
/// says (`OPENCLAW_HOME`, `OPENCLAW_STATE_DIR`, `OPENCLAW_CONFIG_PATH`,
/// `OPENCLAW_GATEWAY_PORT`, `OPENCLAW_ALLOW_MULTI_GATEWAY`, `OPENCLAW_GATEWAY_TOKEN`,
/// `OPENCLAW_GATEWAY_PASSWORD`). Call it first, then the setters: what was set before is
/// dropped.
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) when a variable is invalid; the message names
/// it. `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_from_env(options: *mut gw_options) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_options_from_env", options, |_| {
            GatewayOptions::from_env().map_err(|err| fail_with(&err))
        })
    }
}

/// Applies `update` to the options with a string argument checked by [`utf8_argument`].
///
/// # Safety
///
/// As [`update`]; `value` is NULL or a NUL-terminated string.
pub(super) unsafe fn update_with_str(
    function: &'static str,
    options: *mut gw_options,
    argument: &'static str,
    value: *const c_char,
    update_with: impl FnOnce(GatewayOptions, &str) -> Result<GatewayOptions, gw_result>,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update(function, options, |o| {
            update_with(o, utf8_argument(function, argument, value)?)
        })
    }
}

fn millis(milliseconds: u32) -> Duration {
    Duration::from_millis(u64::from(milliseconds))
}

/// Sets the port: 1..65535, or 0 to let the OS pick a free one (tests, embedding; the real
/// port is then reported by `gw_lock_port` and recorded in the lock files).
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) above 65535; `GW_ERR_NULL_ARGUMENT` when
/// `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_port(options: *mut gw_options, port: u32) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_options_set_port", options, |o| {
            match u16::try_from(port) {
                Ok(port) => Ok(o.port(port)),
                Err(_) => Err(fail(
                    gw_result::GW_ERR_INVALID_ARGUMENT,
                    format!("invalid gateway port {port}: expected a number from 0 to 65535"),
                )),
            }
        })
    }
}

/// Listens on `127.0.0.1`, plus `[::1]` when it can be had (the default).
///
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_bind_loopback(options: *mut gw_options) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_options_set_bind_loopback", options, |o| {
            Ok(o.bind(BindMode::Loopback))
        })
    }
}

/// Listens on `0.0.0.0`. Acquiring then fails with `GW_ERR_INVALID_ARGUMENT` unless a
/// token or password is set: `Refusing to bind gateway to lan without auth.`
///
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_bind_lan(options: *mut gw_options) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_options_set_bind_lan", options, |o| {
            Ok(o.bind(BindMode::Lan))
        })
    }
}

/// Listens on a host name or IP address of the caller's choosing.
///
/// The string is copied. `GW_ERR_NULL_ARGUMENT` when an argument is NULL,
/// `GW_ERR_INVALID_ARGUMENT` when the string is not UTF-8; the options are then unchanged.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call;
/// `host` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_bind_host(
    options: *mut gw_options,
    host: *const c_char,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update_with_str(
            "gw_options_set_bind_host",
            options,
            "host",
            host,
            |o, host| Ok(o.bind(BindMode::Custom(host.to_owned()))),
        )
    }
}

/// Sets the state dir (instead of `~/.openclaw`).
///
/// The string is copied. `GW_ERR_NULL_ARGUMENT` when an argument is NULL,
/// `GW_ERR_INVALID_ARGUMENT` when the string is not UTF-8; the options are then unchanged.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call;
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_state_dir(
    options: *mut gw_options,
    path: *const c_char,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update_with_str(
            "gw_options_set_state_dir",
            options,
            "path",
            path,
            |o, path| Ok(o.state_dir(path)),
        )
    }
}

/// Sets the config path, whose SHA-256 names the config lock.
///
/// The string is copied. `GW_ERR_NULL_ARGUMENT` when an argument is NULL,
/// `GW_ERR_INVALID_ARGUMENT` when the string is not UTF-8; the options are then unchanged.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call;
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_config_path(
    options: *mut gw_options,
    path: *const c_char,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update_with_str(
            "gw_options_set_config_path",
            options,
            "path",
            path,
            |o, path| Ok(o.config_path(path)),
        )
    }
}

/// Sets the lock dir (instead of `<state>/tmp/openclaw-<uid>`).
///
/// The string is copied. `GW_ERR_NULL_ARGUMENT` when an argument is NULL,
/// `GW_ERR_INVALID_ARGUMENT` when the string is not UTF-8; the options are then unchanged.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call;
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_lock_dir(
    options: *mut gw_options,
    path: *const c_char,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update_with_str(
            "gw_options_set_lock_dir",
            options,
            "path",
            path,
            |o, path| Ok(o.lock_dir(path)),
        )
    }
}

/// Selects a named profile (`^[a-z0-9][a-z0-9_-]{0,63}$`, case-insensitive; `default`
/// means none): state dir `~/.openclaw-NAME` and its own port. A bad name is
/// `GW_ERR_INVALID_ARGUMENT`.
///
/// The string is copied. `GW_ERR_NULL_ARGUMENT` when an argument is NULL,
/// `GW_ERR_INVALID_ARGUMENT` when the string is not UTF-8; the options are then unchanged.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call;
/// `name` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_profile(
    options: *mut gw_options,
    name: *const c_char,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update_with_str(
            "gw_options_set_profile",
            options,
            "name",
            name,
            |o, name| match paths::validate_profile(name) {
                Ok(_) => Ok(o.profile(name)),
                Err(err) => Err(fail_with(&err)),
            },
        )
    }
}

/// Selects (or not) the `dev` profile on port 19001. Acquiring fails with
/// `GW_ERR_INVALID_ARGUMENT` when a profile is set too.
///
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_dev(options: *mut gw_options, dev: bool) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe { update("gw_options_set_dev", options, |o| Ok(o.dev(dev))) }
}

/// Skips (or not) the config lock, as OpenClaw's `OPENCLAW_ALLOW_MULTI_GATEWAY=1` does.
///
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_allow_multi(
    options: *mut gw_options,
    allow: bool,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_options_set_allow_multi", options, |o| {
            Ok(o.allow_multi(allow))
        })
    }
}

/// How long acquiring waits for a live holder to go away (default 5000 ms).
///
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_timeout_ms(
    options: *mut gw_options,
    milliseconds: u32,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_options_set_timeout_ms", options, |o| {
            Ok(o.timeout(millis(milliseconds)))
        })
    }
}

/// How often acquiring looks again while it waits (default 100 ms; 0 is refused when
/// acquiring).
///
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_poll_interval_ms(
    options: *mut gw_options,
    milliseconds: u32,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_options_set_poll_interval_ms", options, |o| {
            Ok(o.poll_interval(millis(milliseconds)))
        })
    }
}

/// How old a lock file without a payload must be to be reclaimed (default 30000 ms).
///
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_stale_after_ms(
    options: *mut gw_options,
    milliseconds: u32,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_options_set_stale_after_ms", options, |o| {
            Ok(o.stale_after(millis(milliseconds)))
        })
    }
}

/// How often a holder checks that its lock files are still its own (default 60000 ms).
///
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_recheck_interval_ms(
    options: *mut gw_options,
    milliseconds: u32,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_options_set_recheck_interval_ms", options, |o| {
            Ok(o.recheck_interval(millis(milliseconds)))
        })
    }
}

/// Retries a taken port `attempts` times, `interval_ms` apart (OpenClaw: 20 × 500 ms). Off
/// by default; skipped when the holder answers `/healthz`.
///
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_bind_retry(
    options: *mut gw_options,
    attempts: u32,
    interval_ms: u32,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_options_set_bind_retry", options, |o| {
            Ok(o.bind_retry(BindRetry {
                attempts,
                interval: millis(interval_ms),
            }))
        })
    }
}

/// WebSocket clients need no secret (the default unless the environment sets one).
///
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_auth_none(options: *mut gw_options) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_options_set_auth_none", options, |o| {
            Ok(o.auth(Auth::None))
        })
    }
}

/// WebSocket clients must present this token. An empty token is refused when acquiring.
///
/// The string is copied. `GW_ERR_NULL_ARGUMENT` when an argument is NULL,
/// `GW_ERR_INVALID_ARGUMENT` when the string is not UTF-8; the options are then unchanged.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call;
/// `token` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_auth_token(
    options: *mut gw_options,
    token: *const c_char,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update_with_str(
            "gw_options_set_auth_token",
            options,
            "token",
            token,
            |o, token| Ok(o.auth(Auth::Token(token.to_owned()))),
        )
    }
}

/// WebSocket clients must present this password. An empty password is refused when
/// acquiring.
///
/// The string is copied. `GW_ERR_NULL_ARGUMENT` when an argument is NULL,
/// `GW_ERR_INVALID_ARGUMENT` when the string is not UTF-8; the options are then unchanged.
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call;
/// `password` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_auth_password(
    options: *mut gw_options,
    password: *const c_char,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update_with_str(
            "gw_options_set_auth_password",
            options,
            "password",
            password,
            |o, password| Ok(o.auth(Auth::Password(password.to_owned()))),
        )
    }
}

/// Where acquiring, and the lock's re-check after it, log: every line, all levels, to `log`
/// with `userdata` (NULL `log`: warnings and errors to stderr, the default). A server keeps
/// this logger unless `gw_serve` is given a `gw_callbacks.log`.
///
/// The library owns `userdata` from this call on, whatever the result: it calls
/// `free_userdata(userdata)` (when not NULL) exactly once, when nothing can log with it any
/// more: the options are freed or given another log, and every lock acquired with them is
/// released and its server shut down (possibly on a library thread, soon after
/// `gw_lock_release`/`gw_shutdown` return, once the lock's re-check has finished). `log` is
/// never called after it. `log` must be callable from any thread, at once.
///
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL (`free_userdata` has then been called).
///
/// # Safety
///
/// `options` is NULL or a live `gw_options` that no other thread uses during the call; `log`
/// and `free_userdata` are NULL or callable as above with `userdata`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_options_set_log(
    options: *mut gw_options,
    log: gw_log_fn,
    userdata: *mut c_void,
    free_userdata: Option<unsafe extern "C" fn(userdata: *mut c_void)>,
) -> gw_result {
    // Owned at once, so that every return (a NULL `options`, a panic) frees it.
    let userdata = Arc::new(HostUserdata::new(userdata, free_userdata));
    let logger = match log {
        None => Logger::default(),
        Some(log) => host_logger(log, userdata),
    };
    // SAFETY: forwarded contract.
    unsafe { update("gw_options_set_log", options, |o| Ok(o.logger(logger))) }
}

#[cfg(test)]
mod tests {
    use std::ptr::null_mut;

    use super::*;

    #[test]
    fn setters_apply_and_refuse_bad_values() {
        let options = gw_options_new();
        // SAFETY: `options` is live until freed at the end; strings are NUL-terminated.
        unsafe {
            assert_eq!(gw_options_set_port(options, 4000), gw_result::GW_OK);
            assert_eq!(
                gw_options_set_port(options, 70_000),
                gw_result::GW_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                gw_options_set_state_dir(options, c"/s\xff".as_ptr()),
                gw_result::GW_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                gw_options_set_state_dir(options, c"/s".as_ptr()),
                gw_result::GW_OK
            );
            assert_eq!(
                gw_options_set_profile(options, c"Not A Name".as_ptr()),
                gw_result::GW_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                gw_options_set_auth_token(options, c"t".as_ptr()),
                gw_result::GW_OK
            );
            assert_eq!(gw_options_set_bind_lan(options), gw_result::GW_OK);
            assert_eq!(gw_options_set_timeout_ms(options, 250), gw_result::GW_OK);
            let inner = (*options).get();
            assert_eq!(inner.port, Some(4000));
            assert_eq!(inner.state_dir.as_deref(), Some(std::path::Path::new("/s")));
            assert_eq!(inner.profile, None);
            assert_eq!(inner.auth, Some(Auth::Token("t".into())));
            assert_eq!(inner.bind, BindMode::Lan);
            assert_eq!(inner.timeout, Duration::from_millis(250));

            assert_eq!(
                gw_options_set_port(null_mut(), 1),
                gw_result::GW_ERR_NULL_ARGUMENT
            );
            assert_eq!(
                gw_options_set_lock_dir(options, std::ptr::null()),
                gw_result::GW_ERR_NULL_ARGUMENT
            );
            gw_options_free(options);
            gw_options_free(null_mut());
        }
    }
}
