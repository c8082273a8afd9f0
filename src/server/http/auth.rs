//! The gateway's own credential on HTTP (SPEC §13.4).
//!
//! A minimal version for the Control UI's `control-ui-config.json` until helper "routes"'s
//! file (same signature, with the throttle) replaces it at merge.

use std::net::SocketAddr;

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use super::Body;
use crate::options::Auth;
use crate::server::{Shared, auth};

/// Checks `Authorization: Bearer <token-or-password>` against the gateway's auth (HAU:513-529):
/// the prefix any case, the value trimmed, compared in constant time; `Auth::None` needs
/// nothing. `Err` is the `401` to send.
// The signature is the one helper "routes" defines; the refusal is a whole response.
#[allow(clippy::result_large_err)]
pub(crate) fn gateway_bearer(
    shared: &Shared,
    headers: &HeaderMap,
    _peer: SocketAddr,
) -> Result<(), Response<Body>> {
    if matches!(shared.ws.auth, Auth::None) {
        return Ok(());
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_at_checked(7)?;
            scheme.eq_ignore_ascii_case("bearer ").then(|| rest.trim())
        });
    auth::check_shared(&shared.ws.auth, bearer, bearer).map_err(|_| unauthorized())
}

/// `401` `{"error":{"message":"Unauthorized","type":"unauthorized"}}` (HC:166-178).
fn unauthorized() -> Response<Body> {
    let body = r#"{"error":{"message":"Unauthorized","type":"unauthorized"}}"#;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}
