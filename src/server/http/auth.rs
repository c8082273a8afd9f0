//! The gateway's auth on HTTP (SPEC §13.4): `Authorization: Bearer <secret>` compared with the
//! token or the password of the gateway's mode, behind the WebSocket handshake's limiter of
//! wrong shared secrets, refused with Node's `401` / `429` JSON bodies.

use std::net::SocketAddr;

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use super::Body;
use crate::options::Auth;
use crate::server::Shared;
use crate::server::auth::secrets_equal;
use crate::server::locality;
use crate::server::rate_limit::{LimitKey, LimitScope};
use crate::server::response::unauthorized;

/// How a request to a [`RouteAuth::Gateway`](super::RouteAuth::Gateway) route was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAuthMethod {
    /// The gateway has no auth (`gateway.auth.mode` `none`): anyone who reaches it.
    None,
    /// The bearer was the gateway's token.
    Token,
    /// The bearer was the gateway's password.
    Password,
}

/// Node's answer to a client locked out by the limiter (`sendRateLimited`).
const RATE_LIMITED: &str = r#"{"error":{"message":"Too many failed authentication attempts. Please try again later.","type":"rate_limited"}}"#;

/// Checks the request's bearer against the gateway's auth, as Node's
/// `authorizeHttpGatewayConnect` does for its operator routes (auth-BiOY0Xi8.mjs:210-330;
/// http-auth-utils-BNo7SILw.mjs:513-529): mode `none` lets everyone in; otherwise a client the
/// limiter locked out of `shared-secret` is refused `429` before its bearer is looked at, a
/// missing bearer is refused `401`, a wrong one is counted as a failure (a loopback peer's
/// answer held back as the handshake holds it) and refused `401`, a right one clears the
/// client's failures. The client is counted as the WebSocket handshake counts a client without
/// `Origin`: by its address, and a request relayed by a proxy under the reserved address that
/// is never exempt. An `Origin` changes nothing here, unlike in the handshake: Node's HTTP
/// check passes no origin to the limiter and uses its loopback-exempt one, not the browser
/// one (http-auth-utils-BNo7SILw.mjs:718-732 → `rateLimiter`, keyed by the ingress's client
/// address, auth-BiOY0Xi8.mjs:13-28; server-start-BG4nMCFD.mjs:4795-4799, 7909-7910).
pub(crate) async fn gateway_bearer(
    shared: &Shared,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<HttpAuthMethod, Response<Body>> {
    let (expected, method) = match shared.ws.auth() {
        Auth::None => return Ok(HttpAuthMethod::None),
        Auth::Token(token) => (token, HttpAuthMethod::Token),
        Auth::Password(password) => (password, HttpAuthMethod::Password),
    };
    let limiter = shared.ws.throttle();
    let key = LimitKey::for_ingress(peer.ip(), locality::ingress(peer, headers).kind, None);
    if let Err(retry_after) = limiter.check(&key, LimitScope::SharedSecret) {
        return Err(rate_limited(retry_after.as_millis()));
    }
    let Some(given) = bearer(headers) else {
        return Err(unauthorized());
    };
    if secrets_equal(given, expected) {
        limiter.reset(&key, LimitScope::SharedSecret);
        return Ok(method);
    }
    let delay = limiter.record_failure(&key, LimitScope::SharedSecret);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Err(unauthorized())
}

/// The secret of `Authorization: Bearer <secret>`: the scheme matched case-insensitively, the
/// secret trimmed, blank is none (http-header-value-Be14tJQx.mjs:8-12). Only the first
/// `Authorization` header counts, as Node reads it.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case("bearer ") {
        return None;
    }
    Some(value[7..].trim()).filter(|secret| !secret.is_empty())
}

/// `429` with Node's JSON body and `Retry-After` in whole seconds, rounded up.
fn rate_limited(retry_after_ms: u128) -> Response<Body> {
    let mut response = json(StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED);
    if retry_after_ms > 0 {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_ms.div_ceil(1000) as u64),
        );
    }
    response
}

fn json(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Node's `getBearerToken`: what each `Authorization` value yields.
    #[test]
    fn bearer_is_read_as_node_reads_it() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("  Bearer   abc  ", Some("abc")),
            ("Bearer a b", Some("a b")),
            ("Bearer ", None),
            ("Bearer    ", None),
            ("Bearer", None),
            ("Bearerabc", None),
            ("Basic abc", None),
            ("Token abc", None),
            ("", None),
        ];
        for (value, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            assert_eq!(bearer(&headers), *expected, "Authorization: {value:?}");
        }
        assert_eq!(bearer(&HeaderMap::new()), None, "no Authorization header");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let seconds = |ms| {
            rate_limited(ms)
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(seconds(1), Some("1".to_owned()));
        assert_eq!(seconds(1000), Some("1".to_owned()));
        assert_eq!(seconds(1001), Some("2".to_owned()));
        assert_eq!(seconds(0), None);
    }
}
