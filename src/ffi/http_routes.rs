//! A C host's HTTP routes: `gw_serve_options_add_http_route` registers an [`HttpRoute`] whose
//! handler gives each request to the host's callback as a `gw_http_exchange`. Checked by the
//! Rust [`HttpRoutes::add`], so C and Rust refuse the same routes.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use hyper::Method;

use super::boundary::{non_null, null_argument, optional_utf8_argument, result_boundary};
use super::http_exchange::gw_http_exchange;
use super::result::{fail, fail_with, gw_result};
use super::serve_options::gw_serve_options;
use super::userdata::HostUserdata;
use crate::server::response::internal_error;
use crate::server::{HttpHandler, HttpRequest, HttpRoute, ResponseFuture};

/// How a route registered with `gw_serve_options_add_http_route` matches and who may call it;
/// OR them together into its `flags` (0: exact path, public).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum gw_http_route_flags {
    /// The path and everything below it: `/hooks` matches `/hooks`, `/hooks/` and `/hooks/a/b`,
    /// not `/hooksx`. Without it, the path only.
    GW_HTTP_ROUTE_PREFIX = 1,
    /// Callers must send `Authorization: Bearer <secret>` with the gateway's token or password
    /// (the lock options' auth), compared in constant time; wrong secrets are throttled per
    /// peer as the WebSocket handshake's are. The others are answered `401` / `429` by the
    /// gateway, and the callback never hears of them.
    GW_HTTP_ROUTE_GATEWAY_AUTH = 2,
}

/// Every flag this library knows.
const KNOWN_FLAGS: u32 = gw_http_route_flags::GW_HTTP_ROUTE_PREFIX as u32
    | gw_http_route_flags::GW_HTTP_ROUTE_GATEWAY_AUTH as u32;

/// A request to one of the host's routes: `exchange` is the request and its answer, now the
/// host's to answer (`gw_http_exchange_respond`, or `gw_http_exchange_start` and writes) and
/// to free (`gw_http_exchange_free`), inside the callback or later from any thread.
///
/// Called on a gateway worker thread, possibly on several at once; it must not block (a blocked
/// callback holds a worker of the server): it must not read the body or write a streamed answer
/// (those calls wait, and fail here with `GW_ERR_WRONG_THREAD`); it may answer whole at once,
/// or hand the exchange to a thread of its own.
pub type gw_http_route_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, exchange: *mut gw_http_exchange)>;

/// A route of a C host: its callback, with its userdata.
struct HostRoute {
    callback: unsafe extern "C" fn(userdata: *mut c_void, exchange: *mut gw_http_exchange),
    userdata: Arc<HostUserdata>,
    authenticated: bool,
}

impl HttpHandler for HostRoute {
    fn call(&self, request: HttpRequest) -> ResponseFuture {
        let callback = self.callback;
        let userdata = Arc::clone(&self.userdata);
        let authenticated = self.authenticated;
        Box::pin(async move {
            let (exchange, answered) = gw_http_exchange::begin(request, authenticated);
            let exchange = Box::into_raw(Box::new(exchange));
            // SAFETY: the host's callback with its own userdata (alive: held here), given an
            // exchange that is the host's from now on.
            unsafe { callback(userdata.get(), exchange) };
            drop(userdata);
            // Unanswered (the host freed or aborted the exchange first): Node's 500.
            answered.await.unwrap_or_else(|_| internal_error())
        })
    }
}

/// Adds a route on the gateway port: requests whose method is `method` (e.g. `"POST"`; NULL or
/// `"*"`: any method; a `"GET"` route also takes `HEAD` when no route of its own does, its
/// body left unsent) and whose path is `path` (as sent, starting with `/`; with
/// `GW_HTTP_ROUTE_PREFIX`, also every path below it) go to `handler` (see `gw_http_route_fn`).
/// Routes are tried in the order they were added, after the probes (`/healthz`, `/readyz`, …)
/// and the WebSocket upgrade, which keep priority (SPEC §13.1). `flags` ORs
/// `gw_http_route_flags` together (0: exact path, public). A request body larger than
/// `max_body_bytes` fails its read and the client is answered `413` (the Rust default is
/// 1048576; give what the route needs, at least 1).
///
/// The library owns `userdata` from this call on, whatever the result: it calls
/// `free_userdata(userdata)` (when not NULL) exactly once, when nothing can call `handler`
/// any more: these options are freed, and every server served with them is shut down
/// (possibly on a library thread, soon after `gw_shutdown` returns). `handler` is never called
/// after it. `handler` must be callable from any thread, at once.
///
/// `GW_ERR_INVALID_ARGUMENT`, with the options unchanged, for a method that is not an HTTP
/// method token, a path that does not start with `/` (or one the Rust `HttpRoutes::add`
/// refuses), `max_body_bytes` 0, a flag this library does not know, or a string that is not
/// UTF-8. `GW_ERR_NULL_ARGUMENT` when `options`, `path` or `handler` is NULL. The strings are
/// copied.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call;
/// `method` and `path` are NULL or NUL-terminated strings; `handler` and `free_userdata` are
/// NULL or callable as above with `userdata`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)] // one call per route, as a C host writes it
pub unsafe extern "C" fn gw_serve_options_add_http_route(
    options: *mut gw_serve_options,
    method: *const c_char,
    path: *const c_char,
    flags: u32,
    max_body_bytes: u64,
    handler: gw_http_route_fn,
    userdata: *mut c_void,
    free_userdata: Option<unsafe extern "C" fn(userdata: *mut c_void)>,
) -> gw_result {
    const FUNCTION: &str = "gw_serve_options_add_http_route";
    // Owned at once, so that every return (a refusal, a panic) frees it.
    let userdata = Arc::new(HostUserdata::new(userdata, free_userdata));
    result_boundary(FUNCTION, || {
        let options = non_null(FUNCTION, "options", options)?;
        // SAFETY: NULL or NUL-terminated, by the contract.
        let method = unsafe { optional_utf8_argument(FUNCTION, "method", method) }?;
        // SAFETY: NULL or NUL-terminated, by the contract.
        let path = unsafe { super::boundary::utf8_argument(FUNCTION, "path", path) }?;
        let callback = handler.ok_or_else(|| null_argument(FUNCTION, "handler"))?;
        let method = match method {
            None | Some("*") => None,
            Some(name) => Some(Method::from_bytes(name.as_bytes()).map_err(|_| {
                fail(
                    gw_result::GW_ERR_INVALID_ARGUMENT,
                    format!(
                        "{FUNCTION}: method {name:?} is not an HTTP method: give one such as \
                         \"GET\" or \"POST\", or NULL (or \"*\") for any method"
                    ),
                )
            })?),
        };
        if flags & !KNOWN_FLAGS != 0 {
            return Err(fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!(
                    "{FUNCTION}: flags {flags:#x} has bits this library does not know: \
                     combine GW_HTTP_ROUTE_PREFIX and GW_HTTP_ROUTE_GATEWAY_AUTH only"
                ),
            ));
        }
        if max_body_bytes == 0 {
            return Err(fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!(
                    "{FUNCTION}: max_body_bytes is 0 for {path:?}: give the largest request \
                     body the route accepts, at least 1 (1048576 is the Rust default)"
                ),
            ));
        }
        let gateway_auth = flags & gw_http_route_flags::GW_HTTP_ROUTE_GATEWAY_AUTH as u32 != 0;
        let handler = Arc::new(HostRoute {
            callback,
            userdata,
            authenticated: gateway_auth,
        });
        let mut route =
            HttpRoute::with_handler(method, path, handler).max_body_bytes(max_body_bytes);
        if flags & gw_http_route_flags::GW_HTTP_ROUTE_PREFIX as u32 != 0 {
            route = route.prefix();
        }
        if gateway_auth {
            route = route.gateway_auth();
        }
        // SAFETY: non-NULL, live and not shared, by the contract.
        let options = unsafe { &mut *options };
        options
            .inner
            .http
            .routes
            .add(route)
            .map_err(|err| fail_with(&err))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::c_void;
    use std::ptr::null_mut;

    use super::*;
    use crate::ffi::serve_options::{gw_serve_options_free, gw_serve_options_new};
    use crate::server::RouteAuth;

    unsafe extern "C" fn ignore(_: *mut c_void, _: *mut gw_http_exchange) {}

    #[test]
    fn a_registration_becomes_the_rust_route() {
        let options = gw_serve_options_new();
        let flags = gw_http_route_flags::GW_HTTP_ROUTE_PREFIX as u32
            | gw_http_route_flags::GW_HTTP_ROUTE_GATEWAY_AUTH as u32;
        // SAFETY: live options, NUL-terminated strings, a callable handler.
        unsafe {
            let add = |method: *const c_char, path: &std::ffi::CStr, flags: u32| {
                gw_serve_options_add_http_route(
                    options,
                    method,
                    path.as_ptr(),
                    flags,
                    77,
                    Some(ignore),
                    null_mut(),
                    None,
                )
            };
            assert_eq!(add(c"POST".as_ptr(), c"/hooks", flags), gw_result::GW_OK);
            assert_eq!(add(c"*".as_ptr(), c"/any", 0), gw_result::GW_OK);
            assert_eq!(add(std::ptr::null(), c"/null", 0), gw_result::GW_OK);
            let routes = &(*options).inner.http.routes;
            let hook = routes
                .find(&Method::POST, "/hooks/github")
                .expect("a prefix route");
            assert_eq!((hook.auth, hook.max_body_bytes), (RouteAuth::Gateway, 77));
            assert!(routes.find(&Method::GET, "/hooks").is_none());
            assert!(routes.find(&Method::DELETE, "/any").is_some());
            assert!(routes.find(&Method::DELETE, "/any/below").is_none());
            assert_eq!(
                routes.find(&Method::PATCH, "/null").map(|r| r.auth),
                Some(RouteAuth::Public)
            );
            gw_serve_options_free(options);
        }
    }
}
