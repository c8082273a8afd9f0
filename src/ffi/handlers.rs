//! `gw_handlers`: the methods (with their scopes) and events a C host serves, and how long the
//! gateway waits for its answers; given to `gw_serve` in `gw_callbacks.handlers`.

use std::ffi::c_char;
use std::time::Duration;

use super::boundary::{boundary, name_argument, non_null, result_boundary};
use super::result::{fail, gw_result};

/// The methods the host answers through `on_request` (each with the scope a caller needs, or
/// none), the events it sends (listed in `hello-ok`'s `features`), and how long a request may
/// wait for `gw_respond` before the client gets `UNAVAILABLE` (default 30000 ms).
///
/// Created by `gw_handlers_new`, freed by `gw_handlers_free`; the host owns it. `gw_serve`
/// copies it, so the host may free or reuse it as soon as `gw_serve` returns. Not thread-safe:
/// one thread at a time may use a given `gw_handlers`.
#[derive(Clone)]
pub struct gw_handlers {
    pub(crate) methods: Vec<(String, Option<String>)>,
    pub(crate) events: Vec<String>,
    pub(crate) request_timeout: Option<Duration>,
}

/// New, empty handlers: no methods, no events, the default request timeout.
///
/// Returns a new `gw_handlers` that the caller owns and frees with `gw_handlers_free`; NULL
/// only when the library failed (see `gw_last_error_message`). Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn gw_handlers_new() -> *mut gw_handlers {
    boundary("gw_handlers_new", || {
        Box::into_raw(Box::new(gw_handlers {
            methods: Vec::new(),
            events: Vec::new(),
            request_timeout: None,
        }))
    })
}

/// Frees handlers. NULL is harmless.
///
/// # Safety
///
/// `handlers` is NULL or was returned by `gw_handlers_new` and is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_handlers_free(handlers: *mut gw_handlers) {
    boundary("gw_handlers_free", || {
        if !handlers.is_null() {
            // SAFETY: returned by gw_handlers_new and never used again, by the contract.
            drop(unsafe { Box::from_raw(handlers) });
        }
    })
}

/// Registers `method`, answered through the `on_request` callback. `scope` is the scope a
/// caller must have been granted at `connect` (e.g. `"operator.read"`; `operator.admin`
/// covers every scope, `operator.write` covers `operator.read`), or NULL for none: a caller
/// without it gets `FORBIDDEN` `missing scope: <scope>` and the host hears nothing.
///
/// Registering a method again replaces its scope; registering `"health"` replaces the
/// built-in one. `GW_ERR_INVALID_ARGUMENT` for an empty name or scope, a string that is not
/// UTF-8, and `"connect"` (the handshake, never a host method); `GW_ERR_NULL_ARGUMENT` when
/// `handlers` or `method` is NULL. The strings are copied; the handlers are unchanged on
/// failure.
///
/// # Safety
///
/// `handlers` is NULL or a live `gw_handlers` no other thread uses during the call; `method`
/// and `scope` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_handlers_add_method(
    handlers: *mut gw_handlers,
    method: *const c_char,
    scope: *const c_char,
) -> gw_result {
    const FUNCTION: &str = "gw_handlers_add_method";
    result_boundary(FUNCTION, || {
        let handlers = non_null(FUNCTION, "handlers", handlers)?;
        // SAFETY: NULL or NUL-terminated, by the contract.
        let method = unsafe { name_argument(FUNCTION, "method", method) }?;
        if method == "connect" {
            return Err(fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!("{FUNCTION}: connect is the handshake and cannot be a host method"),
            ));
        }
        let scope = match scope.is_null() {
            true => None,
            // SAFETY: NUL-terminated, by the contract.
            false => Some(unsafe { name_argument(FUNCTION, "scope", scope) }?.to_owned()),
        };
        // SAFETY: non-NULL, live and not shared, by the contract.
        let handlers = unsafe { &mut *handlers };
        match handlers.methods.iter_mut().find(|(name, _)| name == method) {
            Some((_, existing)) => *existing = scope,
            None => handlers.methods.push((method.to_owned(), scope)),
        }
        Ok(())
    })
}

/// Registers an event the host sends with `gw_broadcast` / `gw_send_event`, so that
/// `hello-ok` lists it in `features.events` (sending an unregistered event works too; it is
/// just not advertised). Registering one again is harmless.
///
/// `GW_ERR_INVALID_ARGUMENT` for an empty name or one that is not UTF-8;
/// `GW_ERR_NULL_ARGUMENT` when an argument is NULL. The string is copied.
///
/// # Safety
///
/// `handlers` is NULL or a live `gw_handlers` no other thread uses during the call; `event` is
/// NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_handlers_add_event(
    handlers: *mut gw_handlers,
    event: *const c_char,
) -> gw_result {
    const FUNCTION: &str = "gw_handlers_add_event";
    result_boundary(FUNCTION, || {
        let handlers = non_null(FUNCTION, "handlers", handlers)?;
        // SAFETY: NULL or NUL-terminated, by the contract.
        let event = unsafe { name_argument(FUNCTION, "event", event) }?;
        // SAFETY: non-NULL, live and not shared, by the contract.
        let handlers = unsafe { &mut *handlers };
        if !handlers.events.iter().any(|e| e == event) {
            handlers.events.push(event.to_owned());
        }
        Ok(())
    })
}

/// How long a request may wait for `gw_respond`: past it the client gets `UNAVAILABLE`
/// (`retryable: true`) and a later `gw_respond` gives `GW_ERR_NOT_FOUND` (default 30000 ms).
///
/// `GW_ERR_INVALID_ARGUMENT` (handlers unchanged) for 0; `GW_ERR_NULL_ARGUMENT` when
/// `handlers` is NULL.
///
/// # Safety
///
/// `handlers` is NULL or a live `gw_handlers` no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_handlers_set_request_timeout_ms(
    handlers: *mut gw_handlers,
    milliseconds: u32,
) -> gw_result {
    const FUNCTION: &str = "gw_handlers_set_request_timeout_ms";
    result_boundary(FUNCTION, || {
        let handlers = non_null(FUNCTION, "handlers", handlers)?;
        if milliseconds == 0 {
            return Err(fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!("{FUNCTION}: the timeout must be at least 1 ms"),
            ));
        }
        // SAFETY: non-NULL, live and not shared, by the contract.
        unsafe { (*handlers).request_timeout = Some(Duration::from_millis(milliseconds.into())) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::ptr::{null, null_mut};

    use super::*;

    #[test]
    fn methods_events_and_timeout_are_recorded_and_checked() {
        let handlers = gw_handlers_new();
        // SAFETY: `handlers` is live until freed at the end; strings are NUL-terminated.
        unsafe {
            let add = |m: &std::ffi::CStr, s: *const c_char| {
                gw_handlers_add_method(handlers, m.as_ptr(), s)
            };
            assert_eq!(add(c"echo", null()), gw_result::GW_OK);
            assert_eq!(add(c"status", c"operator.read".as_ptr()), gw_result::GW_OK);
            assert_eq!(add(c"echo", c"operator.write".as_ptr()), gw_result::GW_OK);
            assert_eq!(add(c"connect", null()), gw_result::GW_ERR_INVALID_ARGUMENT);
            assert_eq!(add(c"", null()), gw_result::GW_ERR_INVALID_ARGUMENT);
            assert_eq!(add(c"x", c"".as_ptr()), gw_result::GW_ERR_INVALID_ARGUMENT);
            assert_eq!(add(c"x\xff", null()), gw_result::GW_ERR_INVALID_ARGUMENT);
            assert_eq!(
                gw_handlers_add_method(handlers, null(), null()),
                gw_result::GW_ERR_NULL_ARGUMENT
            );
            assert_eq!(
                gw_handlers_add_event(handlers, c"demo.tick".as_ptr()),
                gw_result::GW_OK
            );
            assert_eq!(
                gw_handlers_add_event(handlers, c"demo.tick".as_ptr()),
                gw_result::GW_OK
            );
            assert_eq!(
                gw_handlers_add_event(handlers, c"".as_ptr()),
                gw_result::GW_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                gw_handlers_add_event(null_mut(), c"e".as_ptr()),
                gw_result::GW_ERR_NULL_ARGUMENT
            );
            assert_eq!(
                gw_handlers_set_request_timeout_ms(handlers, 0),
                gw_result::GW_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                gw_handlers_set_request_timeout_ms(handlers, 250),
                gw_result::GW_OK
            );
            let h = &*handlers;
            assert_eq!(
                h.methods,
                vec![
                    ("echo".to_owned(), Some("operator.write".to_owned())),
                    ("status".to_owned(), Some("operator.read".to_owned())),
                ]
            );
            assert_eq!(h.events, vec!["demo.tick".to_owned()]);
            assert_eq!(h.request_timeout, Some(Duration::from_millis(250)));
            gw_handlers_free(handlers);
            gw_handlers_free(null_mut());
        }
    }
}
