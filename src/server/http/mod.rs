//! HTTP on the gateway port (SPEC §13): the request pipeline in Node's order, the host's
//! routes, the Control UI's static mount, and where a WebSocket upgrade is accepted.

mod auth;
mod body;
mod control_ui;
mod pipeline;
mod routes;

use std::time::Duration;

pub use auth::HttpAuthMethod;
pub(crate) use auth::gateway_bearer;
pub use body::{Body, BodyError, BodySendError, BodyWriter};
pub(crate) use control_ui::ControlUi;
pub use control_ui::{ControlUiBuildSource, ControlUiOptions};
pub(crate) use pipeline::dispatch;
pub use routes::{
    DEFAULT_MAX_BODY_BYTES, HttpHandler, HttpRequest, HttpRoute, HttpRoutes, RequestBody,
    ResponseFuture, RouteAuth, RouteMatch,
};

/// Where a WebSocket upgrade is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebSocketPaths {
    /// Node's rule (SPEC §13.2): every path but the ones OpenClaw reserves, so a client under
    /// a base path reaches the gateway.
    Any,
    /// Only these paths (each exact, matched against the URL's pathname; e.g.
    /// `["/", "/openclaw"]`), and the Control UI's base path when it is mounted (where the UI
    /// connects); an upgrade elsewhere is answered `404`.
    Only(Vec<String>),
}

/// HTTP on the gateway port: the host's routes, the Control UI, where upgrades are accepted,
/// and the limits that keep a slow or hostile client from holding the server.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// The host's routes, tried after the probes and before the Control UI.
    pub routes: HttpRoutes,
    /// The Control UI's static mount (default none).
    pub control_ui: Option<ControlUiOptions>,
    /// Where a WebSocket upgrade is accepted (default [`WebSocketPaths::Any`], Node's rule).
    pub websocket_paths: WebSocketPaths,
    /// The largest request head (request line and headers) read; past it the connection is
    /// answered `431` and closed (default 64 KiB).
    pub max_header_bytes: usize,
    /// A request head not complete within this closes the connection (default 30 s). It runs
    /// from the moment the connection waits for a request, so it is also how long an idle
    /// keep-alive connection is kept. At most a day.
    pub header_timeout: Duration,
    /// A request body that sends nothing for this long fails the read (the handler sees an
    /// error, the client `408`) (default 30 s). At most a day.
    pub body_idle_timeout: Duration,
    /// TCP connections open at once on the gateway's port, whatever they carry: HTTP requests,
    /// kept-alive HTTP connections, and WebSocket connections (which
    /// `ProtocolOptions.max_connections` counts again on their own). Past it a new connection
    /// is answered `503` and closed (what it sent is read and dropped for at most 100 ms, so
    /// no reset destroys the answer); the open ones are not
    /// touched (default 10 240, so that WebSocket clients meet their own cap of 10 000 first
    /// and get its close 1013).
    pub max_connections: usize,
    /// `Strict-Transport-Security` on every response, when set
    /// (`gateway.http.securityHeaders.strictTransportSecurity`).
    pub strict_transport_security: Option<String>,
}

/// The longest `header_timeout` / `body_idle_timeout` taken: a day. Past it a timeout is a
/// mistake (hyper adds the header timeout to the current instant, which `Duration::MAX`
/// overflows in every connection's task).
pub(crate) const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

impl HttpOptions {
    /// Says which of these options `Gateway::serve` would refuse, beyond a zero (which
    /// `ServeOptions::validate` names): a timeout over [`MAX_HTTP_TIMEOUT`], a
    /// `Strict-Transport-Security` value that is empty or not a header value, a WebSocket path
    /// that does not start with `/`.
    pub(crate) fn validate(&self) -> Result<(), String> {
        for (name, timeout) in [
            ("http.header_timeout", self.header_timeout),
            ("http.body_idle_timeout", self.body_idle_timeout),
        ] {
            if timeout > MAX_HTTP_TIMEOUT {
                return Err(format!(
                    "{name} is {} s: give at most a day ({} s)",
                    timeout.as_secs(),
                    MAX_HTTP_TIMEOUT.as_secs()
                ));
            }
        }
        if let Some(value) = &self.strict_transport_security
            && (value.is_empty() || hyper::header::HeaderValue::from_str(value).is_err())
        {
            return Err(format!(
                "http.strict_transport_security {value:?} is not a header value: give one \
                 such as \"max-age=31536000\", or none"
            ));
        }
        if let WebSocketPaths::Only(paths) = &self.websocket_paths
            && let Some(path) = paths.iter().find(|path| !path.starts_with('/'))
        {
            return Err(format!(
                "http.websocket_paths has {path:?}, which does not start with '/': give \
                 absolute paths such as \"/\" or \"/openclaw\""
            ));
        }
        Ok(())
    }
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            routes: HttpRoutes::new(),
            control_ui: None,
            websocket_paths: WebSocketPaths::Any,
            max_header_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(30),
            max_connections: 10_240,
            strict_transport_security: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{HttpOptions, WebSocketPaths};
    use crate::ServeOptions;

    /// What `ServeOptions::validate` refuses of the HTTP options, Rust and C alike: each case's
    /// change and the refusal's words (`None`: accepted).
    #[test]
    fn serve_refuses_http_options_that_cannot_work() {
        type Change = fn(&mut HttpOptions);
        let cases: [(Change, Option<&str>); 11] = [
            (|_| {}, None),
            (|o| o.header_timeout = Duration::from_secs(86_400), None),
            (
                |o| o.header_timeout = Duration::MAX,
                Some("http.header_timeout is 18446744073709551615 s: give at most a day"),
            ),
            (
                |o| o.body_idle_timeout = Duration::from_secs(86_401),
                Some("http.body_idle_timeout is 86401 s: give at most a day (86400 s)"),
            ),
            (
                |o| o.header_timeout = Duration::ZERO,
                Some("http.header_timeout is 0"),
            ),
            (
                |o| o.strict_transport_security = Some("max-age=60".into()),
                None,
            ),
            (
                |o| o.strict_transport_security = Some(String::new()),
                Some("http.strict_transport_security \"\" is not a header value"),
            ),
            (
                |o| o.strict_transport_security = Some("max-age=60\nx: y".into()),
                Some("is not a header value"),
            ),
            (
                |o| o.websocket_paths = WebSocketPaths::Only(vec!["/".into(), "/oc".into()]),
                None,
            ),
            (
                |o| o.websocket_paths = WebSocketPaths::Only(vec!["/".into(), "oc".into()]),
                Some("http.websocket_paths has \"oc\", which does not start with '/'"),
            ),
            (
                |o| o.websocket_paths = WebSocketPaths::Only(vec![String::new()]),
                Some("does not start with '/'"),
            ),
        ];
        for (n, (change, refusal)) in cases.into_iter().enumerate() {
            let mut options = ServeOptions::default();
            change(&mut options.http);
            match (options.validate(), refusal) {
                (Ok(()), None) => {}
                (Err(err), Some(words)) => {
                    assert!(err.to_string().contains(words), "case {n}: {err}");
                }
                (Ok(()), Some(words)) => panic!("case {n} accepted; want {words:?}"),
                (Err(err), None) => panic!("case {n} refused: {err}"),
            }
        }
    }
}
