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
    /// keep-alive connection is kept.
    pub header_timeout: Duration,
    /// A request body that sends nothing for this long fails the read (the handler sees an
    /// error, the client `408`) (default 30 s).
    pub body_idle_timeout: Duration,
    /// TCP connections open at once on the gateway's port, whatever they carry: HTTP requests,
    /// kept-alive HTTP connections, and WebSocket connections (which
    /// `ProtocolOptions.max_connections` counts again on their own). Past it a new connection
    /// is answered `503` and closed at once, without reading it; the open ones are not
    /// touched (default 10 240, so that WebSocket clients meet their own cap of 10 000 first
    /// and get its close 1013).
    pub max_connections: usize,
    /// `Strict-Transport-Security` on every response, when set
    /// (`gateway.http.securityHeaders.strictTransportSecurity`).
    pub strict_transport_security: Option<String>,
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
