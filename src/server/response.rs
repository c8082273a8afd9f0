//! The small answers every part of the server gives alike: a `text/plain` status line, Node's
//! `500`, its `401` JSON.

use hyper::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use super::Body;

/// `status` with a `text/plain` body, as Node's `respondPlainText` sends it.
pub(crate) fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    response
}

/// `404` `Not Found`, the answer when nothing else took the request (SPEC §13.1 stage 16).
pub(crate) fn not_found() -> Response<Body> {
    plain(StatusCode::NOT_FOUND, "Not Found")
}

/// What a stage that failed gives in Node (HC:146-156): `500`, never cached.
pub(crate) fn internal_error() -> Response<Body> {
    let mut response = plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Node's answer to a missing or wrong bearer (http-common-vk2jgtAM.mjs `sendUnauthorized`).
pub(crate) fn unauthorized() -> Response<Body> {
    let body = r#"{"error":{"message":"Unauthorized","type":"unauthorized"}}"#;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}
