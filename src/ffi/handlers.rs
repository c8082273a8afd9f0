//! `gw_handlers`: the methods (with their scopes) and events a C host serves; given to
//! `gw_serve` in `gw_callbacks.handlers`. Registrations are checked by the Rust
//! [`Handlers::add_method`] / [`Handlers::add_event`], so C and Rust refuse the same names.

use std::ffi::c_char;
use std::sync::Arc;

use super::boundary::{
    boundary, free_handle, non_null, optional_utf8_argument, result_boundary, utf8_argument,
};
use super::result::{fail_with, gw_result};
use crate::server::{Handlers, MethodHandler, MethodRequest, Responder};

/// The methods the host answers through `on_request` (each with the scope a caller needs, or
/// none) and the events it sends (listed in `hello-ok`'s `features`). How long a request may
/// wait for its answer is `gw_serve_options_set_request_timeout_ms`.
///
/// Created by `gw_handlers_new`, freed by `gw_handlers_free`; the host owns it. `gw_serve`
/// copies it, so the host may free or reuse it as soon as `gw_serve` returns. Not thread-safe:
/// one thread at a time may use a given `gw_handlers`.
pub struct gw_handlers {
    /// The registrations as the Rust API checked them, each method with a handler that is
    /// never called (`gw_serve` serves them through `on_request`).
    pub(crate) handlers: Handlers,
}

/// Stands in for `on_request` while the registrations are only checked.
struct NotServed;

impl MethodHandler for NotServed {
    fn call(&self, _: MethodRequest, _: Responder) {}
}

/// New, empty handlers: no methods, no events.
///
/// Returns a new `gw_handlers` that the caller owns and frees with `gw_handlers_free`; NULL
/// only when the library failed (see `gw_last_error_message`). Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn gw_handlers_new() -> *mut gw_handlers {
    boundary("gw_handlers_new", || {
        Box::into_raw(Box::new(gw_handlers {
            handlers: Handlers::new(),
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
    // SAFETY: NULL or from the matching `_new`, never used again, by the contract.
    unsafe { free_handle("gw_handlers_free", handlers) }
}

/// Registers `method`, answered through the `on_request` callback. `scope` is the operator
/// scope a caller must have been granted at `connect` (e.g. `"operator.read"`;
/// `operator.admin` covers every scope, `operator.write` covers `operator.read`): a caller
/// without it gets `FORBIDDEN` `missing scope: <scope>` and the host hears nothing. `"node"`
/// declares a method only node hosts (role `node`) may call, without a scope. NULL gives the
/// scope OpenClaw's own method of that name needs (`status` → `operator.read`, `node.event` →
/// node only), else `operator.admin`. Node callers may call only node methods; others get
/// `unauthorized role: node`.
///
/// Registering `"health"` replaces the built-in one. `GW_ERR_INVALID_ARGUMENT`, as the Rust
/// `Handlers::add_method`, for an empty name, a scope that is neither an operator scope nor
/// `"node"`, a method registered already, and `"connect"` (the handshake, never a host
/// method); also for a string that is not UTF-8.
/// `GW_ERR_NULL_ARGUMENT` when `handlers` or `method` is NULL. The strings are copied; the
/// handlers are unchanged on failure.
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
        let method = unsafe { utf8_argument(FUNCTION, "method", method) }?;
        // SAFETY: NULL or NUL-terminated, by the contract.
        let scope = unsafe { optional_utf8_argument(FUNCTION, "scope", scope) }?.map(str::to_owned);
        // SAFETY: non-NULL, live and not shared, by the contract.
        let handlers = unsafe { &mut *handlers };
        handlers
            .handlers
            .add_method(method, scope, Arc::new(NotServed))
            .map_err(|err| fail_with(&err))?;
        Ok(())
    })
}

/// Registers an event the host sends with `gw_broadcast` / `gw_send_event`, so that
/// `hello-ok` lists it in `features.events` and `gw_broadcast` sends it to the operators
/// holding the scope OpenClaw gives an event of that name, else `operator.read` (see
/// `gw_handlers_add_event_with_scope`). `gw_broadcast` of an event neither registered nor
/// OpenClaw's reaches nobody (as in OpenClaw), and `gw_send_event` sends an event only to a
/// client its gate admits, as `gw_broadcast` would. Registering one again is harmless.
///
/// `GW_ERR_INVALID_ARGUMENT`, as the Rust `Handlers::add_event`, for an empty name; also for
/// one that is not UTF-8. `GW_ERR_NULL_ARGUMENT` when an argument is NULL. The string is
/// copied.
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
        let event = unsafe { utf8_argument(FUNCTION, "event", event) }?;
        // SAFETY: non-NULL, live and not shared, by the contract.
        let handlers = unsafe { &mut *handlers };
        handlers
            .handlers
            .add_event(event)
            .map_err(|err| fail_with(&err))?;
        Ok(())
    })
}

/// Registers an event as `gw_handlers_add_event` does, broadcast only to the operators holding
/// `scope` (one of the operator scopes, e.g. `"operator.pairing"`); NULL is
/// `gw_handlers_add_event`. Registering one again with a scope sets its scope.
///
/// `GW_ERR_INVALID_ARGUMENT`, as the Rust `Handlers::add_event_with_scope`, for an empty name,
/// a scope that is not an operator scope, or a scope for an event the gateway itself emits
/// (`tick`, `health`, `shutdown`, `presence`, `device.pair.requested`, `device.pair.resolved`:
/// they always go by OpenClaw's rule); also for a string that is not UTF-8.
/// `GW_ERR_NULL_ARGUMENT` when `handlers` or `event` is NULL. The strings are copied; the
/// handlers are unchanged on failure.
///
/// # Safety
///
/// `handlers` is NULL or a live `gw_handlers` no other thread uses during the call; `event`
/// and `scope` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_handlers_add_event_with_scope(
    handlers: *mut gw_handlers,
    event: *const c_char,
    scope: *const c_char,
) -> gw_result {
    const FUNCTION: &str = "gw_handlers_add_event_with_scope";
    result_boundary(FUNCTION, || {
        let handlers = non_null(FUNCTION, "handlers", handlers)?;
        // SAFETY: NULL or NUL-terminated, by the contract.
        let event = unsafe { utf8_argument(FUNCTION, "event", event) }?;
        // SAFETY: NULL or NUL-terminated, by the contract.
        let scope = unsafe { optional_utf8_argument(FUNCTION, "scope", scope) }?.map(str::to_owned);
        // SAFETY: non-NULL, live and not shared, by the contract.
        let handlers = unsafe { &mut *handlers };
        handlers
            .handlers
            .add_event_with_scope(event, scope)
            .map_err(|err| fail_with(&err))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;
    use std::ptr::{null, null_mut};

    use super::*;
    use crate::ffi::boundary::last_error;

    #[test]
    fn methods_and_events_follow_the_rust_rules() {
        let handlers = gw_handlers_new();
        // SAFETY: `handlers` is live until freed at the end; strings are NUL-terminated.
        unsafe {
            let add = |m: &CStr, s: *const c_char| gw_handlers_add_method(handlers, m.as_ptr(), s);
            assert_eq!(add(c"echo", null()), gw_result::GW_OK);
            assert_eq!(add(c"status", c"operator.read".as_ptr()), gw_result::GW_OK);
            // The messages are the Rust API's own.
            let refusals: [(&CStr, *const c_char, &str); 4] = [
                (
                    c"echo",
                    c"operator.write".as_ptr(),
                    "method \"echo\" is registered twice",
                ),
                (c"connect", null(), "method \"connect\" is the handshake"),
                (c"", null(), "a method name is empty"),
                (c"x", c"".as_ptr(), "the scope of method \"x\" is empty"),
            ];
            for (method, scope, message) in refusals {
                assert_eq!(add(method, scope), gw_result::GW_ERR_INVALID_ARGUMENT);
                assert!(last_error().starts_with(message), "{}", last_error());
            }
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
            assert!(last_error().starts_with("an event name is empty"));
            assert_eq!(
                gw_handlers_add_event(null_mut(), c"e".as_ptr()),
                gw_result::GW_ERR_NULL_ARGUMENT
            );
            assert_eq!(
                gw_handlers_add_event_with_scope(
                    handlers,
                    c"demo.pair".as_ptr(),
                    c"operator.pairing".as_ptr()
                ),
                gw_result::GW_OK
            );
            assert_eq!(
                gw_handlers_add_event_with_scope(
                    handlers,
                    c"demo.odd".as_ptr(),
                    c"custom".as_ptr()
                ),
                gw_result::GW_ERR_INVALID_ARGUMENT
            );
            assert!(last_error().starts_with("the scope of event \"demo.odd\" is \"custom\""));
            assert_eq!(
                gw_handlers_add_event_with_scope(handlers, c"demo.plain".as_ptr(), null()),
                gw_result::GW_OK
            );
            assert_eq!(add(c"node.mine", c"node".as_ptr()), gw_result::GW_OK);
            assert_eq!(
                add(c"odd", c"custom".as_ptr()),
                gw_result::GW_ERR_INVALID_ARGUMENT
            );
            assert!(last_error().starts_with("the scope of method \"odd\" is \"custom\""));
            let h = &(*handlers).handlers;
            assert_eq!(
                h.method_scopes().collect::<Vec<_>>(),
                [
                    ("echo", None),
                    ("status", Some("operator.read")),
                    ("node.mine", Some("node"))
                ]
            );
            assert_eq!(h.events(), ["demo.tick", "demo.pair", "demo.plain"]);
            assert_eq!(h.event_scope("demo.pair"), Some("operator.pairing"));
            assert_eq!(h.event_scope("demo.plain"), None);
            assert!(h.refused().is_none());
            gw_handlers_free(handlers);
            gw_handlers_free(null_mut());
        }
    }
}
