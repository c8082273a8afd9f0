//! One HTTP request through the stages of SPEC §13.1, in Node's order: the ones this core
//! has, leaving the paths of OpenClaw's features alone. (`CONNECT` never gets here: the
//! connection drops its socket, as Node does.)

use std::any::Any;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::routes::{BodyFailure, BodyFailureKind, pathname};
use super::{Body, HttpRequest, HttpRoute, RequestBody, RouteAuth, WebSocketPaths, gateway_bearer};
use crate::options::LogLevel;
use crate::server::response::{internal_error, not_found, plain};
use crate::server::{OpenConnection, Shared, probes, ws};

/// Answers `request`, every response with the headers Node puts on all of them (SPEC §13.1).
pub(crate) async fn dispatch(
    request: Request<Incoming>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    open: OpenConnection,
) -> Response<Body> {
    let mut response = stages(request, peer, &shared, open).await;
    let headers = response.headers_mut();
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    headers
        .entry("permissions-policy")
        .or_insert(HeaderValue::from_static(
            "camera=(), microphone=(self), geolocation=()",
        ));
    if let Some(value) = shared
        .http
        .strict_transport_security
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, value);
    }
    response
}

async fn stages(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    open: OpenConnection,
) -> Response<Body> {
    // Stage 0 (SS:7101-7105): hyper sends `100 Continue` itself once a handler reads the body
    // of an `Expect: 100-continue` request (and never, if it answers without reading it).
    if expects_other_than_continue(&request) {
        return status_only(StatusCode::EXPECTATION_FAILED);
    }
    // Stage 1 (SS:7107-7114) and SPEC §13.2. Every stage routes by the URL's pathname.
    let path = pathname(request.uri().path()).into_owned();
    if wants_websocket(&request) {
        if let Some(refusal) = reserved_upgrade_path(&path) {
            return refusal;
        }
        if !upgrade_allowed(&shared.http, &path) {
            return upgrade_refused(StatusCode::NOT_FOUND, "Not Found");
        }
        return ws::accept(&shared.ws, &mut request, peer, open);
    }
    if request.headers().contains_key(header::UPGRADE) {
        let mut response = plain(StatusCode::BAD_REQUEST, "Bad Request");
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    // Stages 3 and 5.
    if let Some(probe) = probes::respond(request.method(), &path, shared.phase()) {
        return probe;
    }
    // Stage 6 (SS:7217-7220): the worker ingress is not served over plain HTTP.
    if path == "/__openclaw__/worker" || path.starts_with("/__openclaw__/worker/") {
        return not_found();
    }
    // Cluster mode: past the probes, a gateway that may no longer lead answers nothing.
    if !shared.leads() {
        return status_only(StatusCode::SERVICE_UNAVAILABLE);
    }
    // Host routes: in Node's place of plugin routes (stage 13), before the Control UI.
    if let Some(route) = shared.http.routes.find(request.method(), &path) {
        return serve_route(route, request, peer, shared).await;
    }
    // Stage 15, the Control UI (SPEC §13.3).
    if let Some(ui) = super::control_ui::respond(shared, &request, &path, peer).await {
        return ui;
    }
    // SPEC §9: a plain request at `/` is told to upgrade.
    if path == "/" {
        return ws::accept(&shared.ws, &mut request, peer, open);
    }
    // Stage 16.
    not_found()
}

/// A host route: its auth, its body limit, its handler, and the answer for a handler that
/// panicked or a body that failed.
async fn serve_route(
    route: &HttpRoute,
    request: Request<Incoming>,
    peer: SocketAddr,
    shared: &Shared,
) -> Response<Body> {
    let auth = match route.auth {
        RouteAuth::Public => None,
        RouteAuth::Gateway => match gateway_bearer(shared, request.headers(), peer).await {
            Ok(method) => Some(method),
            Err(refusal) => return refusal,
        },
    };
    // A `Content-Length` past the limit is refused before a byte of the body is read (and
    // before `100 Continue` is sent).
    if hyper::body::Body::size_hint(request.body()).lower() > route.max_body_bytes {
        return body_failed(BodyFailureKind::TooLarge);
    }
    let (parts, incoming) = request.into_parts();
    let (body, failure) = RequestBody::new(
        incoming,
        route.max_body_bytes,
        shared.http.body_idle_timeout,
    );
    let request = HttpRequest {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        peer,
        auth,
        body,
    };
    let handler = Arc::clone(&route.handler);
    let answered = match std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(request))) {
        Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
        Err(panic) => Err(panic),
    };
    match answered {
        Ok(response) => answer_for_body(response, &failure),
        Err(panic) => {
            shared.logger.log(
                LogLevel::Error,
                &format!(
                    "the handler of HTTP route {:?} panicked ({}); the client was answered 500",
                    route.path,
                    panic_message(panic.as_ref())
                ),
            );
            internal_error()
        }
    }
}

/// The handler's `response`, unless the request body failed first: then the client learns
/// why (`413`, `408`), whatever the handler made of the error.
fn answer_for_body(response: Response<Body>, failure: &BodyFailure) -> Response<Body> {
    match failure.get() {
        Some(kind) => body_failed(kind),
        None => response,
    }
}

/// `413` or `408`, closing the connection: the rest of the body is not read.
fn body_failed(kind: BodyFailureKind) -> Response<Body> {
    let mut response = match kind {
        BodyFailureKind::TooLarge => plain(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large"),
        BodyFailureKind::Idle => plain(StatusCode::REQUEST_TIMEOUT, "Request Timeout"),
    };
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-text panic")
}

fn status_only(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// Whether the request has an `Expect` other than `100-continue`, which Node answers `417`.
fn expects_other_than_continue(request: &Request<Incoming>) -> bool {
    request.headers().get_all(header::EXPECT).iter().any(|v| {
        !v.as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"100-continue")
    })
}

/// Whether an upgrade at `path` reaches the gateway protocol: under Node's rule anywhere;
/// under [`WebSocketPaths::Only`] at the paths listed, and at the Control UI's base path
/// (with or without its trailing slash), where the UI connects.
fn upgrade_allowed(http: &super::HttpOptions, path: &str) -> bool {
    match &http.websocket_paths {
        WebSocketPaths::Any => true,
        WebSocketPaths::Only(paths) => {
            paths.iter().any(|p| p == path)
                || http.control_ui.as_ref().is_some_and(|ui| {
                    let base = ui.base_path.trim_end_matches('/');
                    path.strip_prefix(base) == Some("/") || (!base.is_empty() && path == base)
                })
        }
    }
}

/// Whether a request asks for a WebSocket upgrade: `Upgrade: websocket` and
/// `Connection: upgrade`, each a token of a comma-separated list in any case, as Node's
/// `isWebSocketUpgradeRequest` reads them (http-common-vk2jgtAM.mjs:295-298). An `Upgrade`
/// without both is a bad request to Node (stage 1).
fn wants_websocket(request: &Request<Incoming>) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        request
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    has_token(header::UPGRADE, "websocket") && has_token(header::CONNECTION, "upgrade")
}

/// An upgrade on a path OpenClaw reserves for a feature this core does not have, answered as
/// the Node gateway answers it when that feature is unavailable (SPEC §13.2, SS:6866-7072):
/// the worker ingress `503`, below it `404`, the desktop and portal streams `503`.
fn reserved_upgrade_path(path: &str) -> Option<Response<Body>> {
    let (status, body) = match path {
        "/__openclaw__/worker" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Worker websocket ingress unavailable",
        ),
        _ if path.starts_with("/__openclaw__/worker/") => (StatusCode::NOT_FOUND, "Not Found"),
        "/desktop/observe" | "/node-desktop/attach" | "/node-portal/attach" => {
            (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        _ => return None,
    };
    Some(upgrade_refused(status, body))
}

/// An upgrade refused in Node's form (websocket-upgrade-reject-D2Ac4nen.mjs:3-18): the status,
/// `Connection: close`, a text body with its length, then the socket is closed.
fn upgrade_refused(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = plain(status, body);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::http::{ControlUiOptions, HttpOptions};

    /// Where an upgrade reaches the gateway protocol: (paths, Control UI base path, request
    /// path, taken).
    #[test]
    fn upgrades_are_taken_where_the_options_say() {
        let any = None;
        let only = |paths: &[&str]| Some(paths.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        type Case = (
            Option<Vec<String>>,
            Option<&'static str>,
            &'static str,
            bool,
        );
        let cases: Vec<Case> = vec![
            (any.clone(), None, "/", true),
            (any.clone(), None, "/anything/below", true),
            (any, Some("/ui"), "/elsewhere", true),
            (only(&["/gw"]), None, "/gw", true),
            (only(&["/gw"]), None, "/", false),
            (only(&["/gw"]), None, "/gw/", false),
            (only(&["/gw"]), Some("/ui"), "/ui", true),
            (only(&["/gw"]), Some("/ui"), "/ui/", true),
            (only(&["/gw"]), Some("/ui/"), "/ui", true),
            (only(&["/gw"]), Some("/ui"), "/ui/x", false),
            (only(&["/gw"]), Some("/ui"), "/uix", false),
            (only(&["/gw"]), Some(""), "/", true),
            (only(&["/gw"]), Some(""), "/x", false),
            (only(&[]), None, "/", false),
        ];
        for (paths, base, path, taken) in cases {
            let options = HttpOptions {
                websocket_paths: paths
                    .clone()
                    .map_or(WebSocketPaths::Any, WebSocketPaths::Only),
                control_ui: base.map(|base| ControlUiOptions {
                    base_path: base.to_owned(),
                    ..ControlUiOptions::new("/nonexistent")
                }),
                ..HttpOptions::default()
            };
            assert_eq!(
                upgrade_allowed(&options, path),
                taken,
                "paths {paths:?}, base path {base:?}, upgrade at {path:?}"
            );
        }
    }
}
