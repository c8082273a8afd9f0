//! One HTTP request through the stages of SPEC §13.1, in Node's order: the ones this core
//! has, leaving the paths of OpenClaw's features alone.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;

use super::{Body, HttpRequest, RequestBody, WebSocketPaths};
use crate::server::{Shared, probes, ws};

/// Answers `request`, every response with the headers Node puts on all of them (SPEC §13.1).
pub(crate) async fn dispatch(
    request: Request<Incoming>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    open: mpsc::Sender<()>,
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
    open: mpsc::Sender<()>,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    if wants_websocket(&request) {
        if let Some(refusal) = reserved_upgrade_path(&path) {
            return refusal;
        }
        return match &shared.http.websocket_paths {
            WebSocketPaths::Only(paths) if !paths.contains(&path) => probes::not_found(),
            _ => ws::accept(&shared.ws, &mut request, peer, open),
        };
    }
    if let Some(probe) = probes::respond(request.method(), &path, shared.phase()) {
        return probe;
    }
    if let Some(route) = shared.http.routes.find(request.method(), &path) {
        let (parts, incoming) = request.into_parts();
        let request = HttpRequest {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            peer,
            body: RequestBody::new(incoming, route.max_body_bytes),
        };
        return route.handler.call(request).await;
    }
    if let Some(ui) = super::control_ui::respond(shared, &request, peer).await {
        return ui;
    }
    // SPEC §9: a plain request at `/` is told to upgrade.
    if path == "/" {
        return ws::accept(&shared.ws, &mut request, peer, open);
    }
    probes::not_found()
}

/// Whether a request asks for a WebSocket upgrade (`Upgrade: websocket`).
fn wants_websocket(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
        })
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
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Some(response)
}
