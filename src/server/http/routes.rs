//! The host's HTTP routes on the gateway port: a method and a path (exact or a prefix), an
//! optional gateway-auth requirement, a body limit, and a handler that answers with a status,
//! headers and a [`Body`], streaming both ways.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Response, Uri};

use super::body::{Body, BodyError};
use crate::error::GatewayLockError;

/// The future a handler answers with.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send + 'static>>;

/// How a route's path is matched against the request's path (percent-decoding aside: paths
/// are compared as sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMatch {
    /// The path and nothing else.
    Exact,
    /// The path and everything below it: `/hooks` matches `/hooks`, `/hooks/` and
    /// `/hooks/a/b`, not `/hooksx`.
    Prefix,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAuth {
    /// Anyone who can reach the port.
    Public,
    /// `Authorization: Bearer <secret>` with the gateway's token or password, as Node reads
    /// it (SPEC §13.4), compared in constant time; wrong secrets are throttled per peer with
    /// the WebSocket handshake's throttle. Refused: `401` / `429` as Node answers.
    Gateway,
}

/// One request to a host route.
#[derive(Debug)]
pub struct HttpRequest {
    /// `GET`, `POST`, …
    pub method: Method,
    /// The request target as sent (path and query).
    pub uri: Uri,
    /// The request's headers.
    pub headers: HeaderMap,
    /// Who sent it (the TCP peer).
    pub peer: SocketAddr,
    /// The body, read as it arrives, within the route's limit and the idle timeout.
    pub body: RequestBody,
}

/// A request body, read chunk by chunk as it arrives, never buffered whole by the gateway.
#[derive(Debug)]
pub struct RequestBody {
    pub(crate) incoming: Option<Incoming>,
    /// The route's `max_body_bytes`.
    pub(crate) limit: u64,
    /// Bytes handed out so far.
    pub(crate) read: u64,
}

impl RequestBody {
    pub(crate) fn new(incoming: Incoming, limit: u64) -> Self {
        Self {
            incoming: Some(incoming),
            limit,
            read: 0,
        }
    }

    /// The next chunk, `None` at the end. Past the route's `max_body_bytes` it fails (and the
    /// client is answered `413`).
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        let Some(incoming) = self.incoming.as_mut() else {
            return Ok(None);
        };
        loop {
            let Some(frame) = incoming.frame().await else {
                self.incoming = None;
                return Ok(None);
            };
            let Ok(data) = frame.map_err(BodyError::other)?.into_data() else {
                continue; // trailers
            };
            self.read += data.len() as u64;
            if self.read > self.limit {
                self.incoming = None;
                return Err(BodyError::other(format!(
                    "the request body is larger than this route's limit of {} bytes",
                    self.limit
                )));
            }
            return Ok(Some(data));
        }
    }

    /// The whole body (within the route's limit).
    pub async fn collect(mut self) -> Result<Bytes, BodyError> {
        let mut all = bytes::BytesMut::new();
        while let Some(chunk) = self.chunk().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all.freeze())
    }
}

/// A handler of host routes. `call` runs on a gateway worker thread and must not block: its
/// future is polled there, so wait with `.await`, or hand work to a thread of the host's.
pub trait HttpHandler: Send + Sync + 'static {
    /// Answers one request.
    fn call(&self, request: HttpRequest) -> ResponseFuture;
}

struct AsyncHandler<F>(F);

impl<F, Fut> HttpHandler for AsyncHandler<F>
where
    F: Fn(HttpRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    fn call(&self, request: HttpRequest) -> ResponseFuture {
        Box::pin((self.0)(request))
    }
}

/// One route: what it matches, who may call it, how much it reads, who answers.
#[derive(Clone)]
pub struct HttpRoute {
    /// `None`: any method.
    pub method: Option<Method>,
    /// Starts with `/`.
    pub path: String,
    /// Exact or prefix.
    pub matching: RouteMatch,
    /// Public or gateway auth.
    pub auth: RouteAuth,
    /// The largest request body accepted; past it the request is answered `413` (default
    /// 1 MiB; a route that streams uploads sets its own).
    pub max_body_bytes: u64,
    /// Who answers.
    pub handler: Arc<dyn HttpHandler>,
}

impl std::fmt::Debug for HttpRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRoute")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("matching", &self.matching)
            .field("auth", &self.auth)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// The default `max_body_bytes` of a route.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

impl HttpRoute {
    /// A public route matching `path` exactly, for `method` (`None`: any), answered by an
    /// async closure.
    pub fn new<F, Fut>(method: Option<Method>, path: impl Into<String>, handler: F) -> Self
    where
        F: Fn(HttpRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        Self::with_handler(method, path, Arc::new(AsyncHandler(handler)))
    }

    /// [`new`](Self::new) with an [`HttpHandler`].
    pub fn with_handler(
        method: Option<Method>,
        path: impl Into<String>,
        handler: Arc<dyn HttpHandler>,
    ) -> Self {
        Self {
            method,
            path: path.into(),
            matching: RouteMatch::Exact,
            auth: RouteAuth::Public,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            handler,
        }
    }

    /// Matches the path and everything below it.
    #[must_use]
    pub fn prefix(mut self) -> Self {
        self.matching = RouteMatch::Prefix;
        self
    }

    /// Requires the gateway's auth.
    #[must_use]
    pub fn gateway_auth(mut self) -> Self {
        self.auth = RouteAuth::Gateway;
        self
    }

    /// Accepts request bodies up to `bytes`.
    #[must_use]
    pub fn max_body_bytes(mut self, bytes: u64) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Whether this route answers `method` at `path`.
    pub(crate) fn matches(&self, method: &Method, path: &str) -> bool {
        let method_ok = self.method.as_ref().is_none_or(|m| m == method);
        let path_ok = match self.matching {
            RouteMatch::Exact => path == self.path,
            RouteMatch::Prefix => {
                let base = self.path.trim_end_matches('/');
                path == base
                    || path
                        .strip_prefix(base)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        };
        method_ok && path_ok
    }
}

/// The host's routes, tried in the order they were added.
#[derive(Clone, Default, Debug)]
pub struct HttpRoutes {
    routes: Vec<HttpRoute>,
    /// The first route the builder refused; `Gateway::serve` fails with it.
    refused: Option<String>,
}

impl HttpRoutes {
    /// No routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `route`; one [`add`](Self::add) refuses makes `Gateway::serve` fail with its
    /// message.
    #[must_use]
    pub fn route(mut self, route: HttpRoute) -> Self {
        if let Err(err) = self.add(route)
            && self.refused.is_none()
        {
            self.refused = Some(err.to_string());
        }
        self
    }

    /// Adds `route`, or says why not: a path that does not start with `/`, or one the gateway
    /// answers itself (the probes, `/__openclaw__/worker`).
    pub fn add(&mut self, route: HttpRoute) -> Result<&mut Self, GatewayLockError> {
        if !route.path.starts_with('/') {
            return Err(GatewayLockError::InvalidOption(format!(
                "HTTP route path {:?} does not start with '/': give an absolute path such as \"/hooks\"",
                route.path
            )));
        }
        if route.max_body_bytes == 0 {
            return Err(GatewayLockError::InvalidOption(format!(
                "HTTP route {:?} has max_body_bytes 0: give at least 1 (or leave the default)",
                route.path
            )));
        }
        self.routes.push(route);
        Ok(self)
    }

    /// The first route answering `method` at `path`.
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<&HttpRoute> {
        self.routes.iter().find(|r| r.matches(method, path))
    }

    /// The registration the builder refused, if any.
    pub(crate) fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}
