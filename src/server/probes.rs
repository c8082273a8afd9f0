//! The unauthenticated HTTP probes (SPEC §8).

use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Response, StatusCode};

use super::http::Body;
use super::response::plain;

/// Where the server is in its life cycle, as the probes report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Serving `/healthz`, not yet `/readyz` (503).
    Starting = 0,
    /// `/readyz` answers 200.
    Ready = 1,
    /// Shutting down: `/readyz` answers 503 again.
    Draining = 2,
}

impl Phase {
    pub(crate) fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Starting,
            1 => Self::Ready,
            _ => Self::Draining,
        }
    }
}

const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

/// The response for a probe path, or `None` when `path` is not a probe.
pub fn respond(method: &Method, path: &str, phase: Phase) -> Option<Response<Body>> {
    let (status, body): (StatusCode, &'static str) = match path {
        "/health" | "/healthz" => (StatusCode::OK, r#"{"ok":true,"status":"live"}"#),
        "/ready" | "/readyz" => match phase {
            Phase::Ready => (StatusCode::OK, r#"{"ready":true}"#),
            _ => (StatusCode::SERVICE_UNAVAILABLE, r#"{"ready":false}"#),
        },
        "/startup" | "/startupz" => match phase {
            Phase::Ready => (StatusCode::OK, r#"{"ok":true,"status":"started"}"#),
            Phase::Starting => (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"ok":false,"status":"starting"}"#,
            ),
            Phase::Draining => (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"ok":false,"status":"draining"}"#,
            ),
        },
        _ => return None,
    };
    Some(match *method {
        Method::GET => json(status, body, true),
        Method::HEAD => json(status, body, false),
        _ => method_not_allowed(),
    })
}

fn json(status: StatusCode, body: &'static str, with_body: bool) -> Response<Body> {
    let mut response = Response::new(if with_body {
        Body::from(body)
    } else {
        Body::empty()
    });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, JSON);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    response
}

fn method_not_allowed() -> Response<Body> {
    let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}
