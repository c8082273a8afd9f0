//! The host's HTTP routes on the gateway port: a method and a path (exact or a prefix), an
//! optional gateway-auth requirement, a body limit, and a handler that answers with a status,
//! headers and a [`Body`], streaming both ways.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Response, Uri};

use super::auth::HttpAuthMethod;
use super::body::{Body, BodyError};
use crate::error::GatewayLockError;

/// The future a handler answers with.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send + 'static>>;

/// How a route's path is matched against the request's path: its pathname as Node's
/// `new URL(req.url)` gives it ([`HttpRequest::path`]: dot segments and backslashes resolved,
/// nothing percent-decoded).
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
    /// How a [`RouteAuth::Gateway`] route's caller was let in; `None` on a public route.
    pub auth: Option<HttpAuthMethod>,
    /// The body, read as it arrives, within the route's limit and the idle timeout.
    pub body: RequestBody,
}

impl HttpRequest {
    /// The path the request was routed by: the target's pathname as Node's `new URL()` gives
    /// it (`/a/../b` is `/b`, `/a\b` is `/a/b`, `//host/b` is `/b`; `%2F` stays as sent).
    pub fn path(&self) -> std::borrow::Cow<'_, str> {
        pathname(self.uri.path())
    }
}

/// A request body, read chunk by chunk as it arrives, never buffered whole by the gateway.
///
/// It can be read in the handler's future or handed to a thread of the host's and read there
/// with any executor: its idle timeout runs on the gateway's timers either way.
#[derive(Debug)]
pub struct RequestBody {
    pub(crate) incoming: Option<Incoming>,
    /// The route's `max_body_bytes`.
    pub(crate) limit: u64,
    /// Bytes handed out so far.
    pub(crate) read: u64,
    /// `HttpOptions.body_idle_timeout`.
    idle_timeout: Duration,
    /// The gateway's runtime, whose timer the idle timeout is set on.
    runtime: tokio::runtime::Handle,
    /// Why the body failed, for the pipeline to answer the client with (`413`, `408`).
    failure: Arc<BodyFailure>,
    /// The error the body failed with, given again by every later `chunk`: a handler that
    /// reads on must not take the part it has for the whole body.
    failed: Option<(std::io::ErrorKind, String)>,
}

/// How a request body ended early, shared by the body and the pipeline that answers for it.
#[derive(Debug, Default)]
pub(crate) struct BodyFailure(AtomicU8);

/// What [`BodyFailure`] recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFailureKind {
    /// Past the route's `max_body_bytes`: `413`.
    TooLarge = 1,
    /// Nothing arrived for `body_idle_timeout`: `408`.
    Idle = 2,
}

impl BodyFailure {
    fn set(&self, kind: BodyFailureKind) {
        self.0.store(kind as u8, Ordering::Release);
    }

    /// What failed, if anything.
    pub(crate) fn get(&self) -> Option<BodyFailureKind> {
        match self.0.load(Ordering::Acquire) {
            1 => Some(BodyFailureKind::TooLarge),
            2 => Some(BodyFailureKind::Idle),
            _ => None,
        }
    }
}

impl RequestBody {
    /// The body of a request to a route with `limit`, and what the pipeline learns of how it
    /// failed. Called on the gateway's runtime.
    pub(crate) fn new(
        incoming: Incoming,
        limit: u64,
        idle_timeout: Duration,
    ) -> (Self, Arc<BodyFailure>) {
        let failure = Arc::new(BodyFailure::default());
        let body = Self {
            incoming: Some(incoming),
            limit,
            read: 0,
            idle_timeout,
            runtime: tokio::runtime::Handle::current(),
            failure: Arc::clone(&failure),
            failed: None,
        };
        (body, failure)
    }

    /// The next chunk, `None` at the end. It fails past the route's `max_body_bytes` (an
    /// error of kind `FileTooLarge`; the client is answered `413`), when the client sends
    /// nothing for `body_idle_timeout` (`TimedOut`; the client is answered `408`), and when the
    /// client goes away or sends a malformed body. The `413` and `408` replace the handler's
    /// answer when it answers after the failure; a response already under way is cut short.
    /// After a failure every later call fails the same way.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        if let Some((kind, message)) = &self.failed {
            return Err(BodyError::new(*kind, message.clone()));
        }
        let next = self.next_chunk().await;
        if let Err(err) = &next {
            self.incoming = None;
            self.failed = Some((err.kind(), err.to_string()));
        }
        next
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        let Some(incoming) = self.incoming.as_mut() else {
            return Ok(None);
        };
        loop {
            // Made on the gateway's runtime, the timer works whichever executor polls it.
            let idle = {
                let _on_gateway = self.runtime.enter();
                tokio::time::sleep(self.idle_timeout)
            };
            let next = tokio::select! {
                biased;
                frame = incoming.frame() => Some(frame),
                () = idle => None,
            };
            let frame = match next {
                Some(Some(frame)) => frame,
                Some(None) => {
                    self.incoming = None;
                    return Ok(None);
                }
                None => {
                    self.incoming = None;
                    self.failure.set(BodyFailureKind::Idle);
                    return Err(BodyError::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "the client sent no request body bytes for {} ms (body_idle_timeout)",
                            self.idle_timeout.as_millis()
                        ),
                    ));
                }
            };
            let Ok(data) = frame.map_err(BodyError::other)?.into_data() else {
                continue; // trailers
            };
            self.read += data.len() as u64;
            if self.read > self.limit {
                self.incoming = None;
                self.failure.set(BodyFailureKind::TooLarge);
                return Err(too_large(self.limit));
            }
            return Ok(Some(data));
        }
    }

    /// The route's `max_body_bytes`.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
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

/// The error of a body past `limit`.
fn too_large(limit: u64) -> BodyError {
    BodyError::new(
        std::io::ErrorKind::FileTooLarge,
        format!(
            "the request body is larger than this route's limit of {limit} bytes (max_body_bytes)"
        ),
    )
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
    /// `None`: any method. A `GET` route also answers `HEAD` when no route for `HEAD` does
    /// (the handler sees `HEAD`; no body is sent).
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

/// The path of a request target as WHATWG URL parsing gives it (`URL(req.url).pathname`,
/// which Node's gateway routes by, SPEC §13.1-13.2): `.` and `..` segments resolved, their
/// percent-encoded spellings (`%2e`, `.%2E`, …) too, nothing else decoded; a backslash read
/// as a slash (as for every `http:` URL); a target that starts with `//` read as `//host/path`. So `/a/../healthz` is the probe, `/hooks/%2e%2e/admin` is
/// `/admin` and `//x/readyz` is `/readyz`, in every stage alike.
pub(crate) fn pathname(target: &str) -> std::borrow::Cow<'_, str> {
    let plain = target.starts_with('/')
        && !target.starts_with("//")
        && !target.contains('\\')
        && !target[1..].split('/').any(|s| is_dot(s) || is_dot_dot(s));
    if plain {
        return target.into();
    }
    let slashed = target.replace('\\', "/");
    // `//host/path`: the host is no part of the path.
    let path = match slashed.strip_prefix("//") {
        Some(authority_and_path) => {
            let authority_and_path = authority_and_path.trim_start_matches('/');
            authority_and_path
                .find('/')
                .map_or("/", |start| &authority_and_path[start..])
        }
        None => &slashed,
    };
    let rest = path.strip_prefix('/').unwrap_or(path);
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = rest.split('/').peekable();
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        if is_dot_dot(segment) {
            segments.pop();
            if last {
                segments.push("");
            }
        } else if is_dot(segment) {
            if last {
                segments.push("");
            }
        } else {
            segments.push(segment);
        }
    }
    format!("/{}", segments.join("/")).into()
}

/// `.` as a path segment, or its percent-encoded spelling.
fn is_dot(segment: &str) -> bool {
    segment == "." || segment.eq_ignore_ascii_case("%2e")
}

/// `..` as a path segment, in any of its percent-encoded spellings.
fn is_dot_dot(segment: &str) -> bool {
    ["..", ".%2e", "%2e.", "%2e%2e"]
        .iter()
        .any(|dots| segment.eq_ignore_ascii_case(dots))
}

/// What answers `path` before the host's routes, if anything: a probe (SPEC §8) or the worker
/// ingress OpenClaw reserves (SPEC §13.1 stage 6).
fn reserved_path(path: &str) -> Option<&'static str> {
    const PROBES: [&str; 6] = [
        "/health",
        "/healthz",
        "/ready",
        "/readyz",
        "/startup",
        "/startupz",
    ];
    let path = match path.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    if PROBES.contains(&path) {
        return Some("a health probe");
    }
    if path == "/__openclaw__/worker" || path.starts_with("/__openclaw__/worker/") {
        return Some("OpenClaw's worker ingress");
    }
    None
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
    /// answers itself (the probes, `/__openclaw__/worker` and below). A prefix route above
    /// those (`/` itself) is taken: the probes are answered before any route.
    pub fn add(&mut self, route: HttpRoute) -> Result<&mut Self, GatewayLockError> {
        if !route.path.starts_with('/') {
            return Err(GatewayLockError::InvalidOption(format!(
                "HTTP route path {:?} does not start with '/': give an absolute path such as \"/hooks\"",
                route.path
            )));
        }
        if let Some(owner) = reserved_path(&route.path) {
            return Err(GatewayLockError::InvalidOption(format!(
                "HTTP route path {:?} is {owner}, which the gateway answers before any route: \
                 choose another path",
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

    /// The first route answering `method` at `path`; for `HEAD` without a route of its own,
    /// the first `GET` route (its handler sees `HEAD`; hyper sends no body). Node's plugin
    /// routes have no method and see every one, `HEAD` included (route-match-3ODu6iRN.mjs);
    /// a `GET` route answering `HEAD` is what clients of any HTTP server expect.
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<&HttpRoute> {
        let own = self.routes.iter().find(|r| r.matches(method, path));
        if own.is_some() || method != Method::HEAD {
            return own;
        }
        self.routes
            .iter()
            .find(|r| r.method == Some(Method::GET) && r.matches(&Method::GET, path))
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

#[cfg(test)]
mod tests {
    use hyper::Request;

    use super::*;

    /// Reads the body of the one request `raw` sends as a route with `limit` would, twice past
    /// its failure, and gives the two errors' kinds.
    async fn kinds_of_two_reads_after_a_failure(
        raw: &'static [u8],
        limit: u64,
    ) -> [std::io::ErrorKind; 2] {
        use tokio::io::AsyncWriteExt as _;
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (kinds_tx, mut kinds_rx) = tokio::sync::mpsc::unbounded_channel();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let kinds_tx = kinds_tx.clone();
            async move {
                let (mut body, _) =
                    RequestBody::new(request.into_body(), limit, Duration::from_millis(100));
                let mut kinds = Vec::new();
                while kinds.len() < 2 {
                    match body.chunk().await {
                        Ok(Some(_)) => {}
                        Ok(None) => kinds.push(std::io::ErrorKind::UnexpectedEof),
                        Err(err) => kinds.push(err.kind()),
                    }
                }
                let _ = kinds_tx.send([kinds[0], kinds[1]]);
                Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
            }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(server), service),
        );
        let mut client = client;
        client.write_all(raw).await.unwrap();
        let kinds = kinds_rx.recv().await.expect("the handler read twice");
        drop(client);
        kinds
    }

    #[tokio::test]
    async fn a_body_that_failed_fails_again_on_every_later_read() {
        use std::io::ErrorKind::{FileTooLarge, TimedOut};
        let too_large = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789";
        assert_eq!(
            kinds_of_two_reads_after_a_failure(too_large, 4).await,
            [FileTooLarge, FileTooLarge]
        );
        let stalled = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01";
        assert_eq!(
            kinds_of_two_reads_after_a_failure(stalled, 1024).await,
            [TimedOut, TimedOut]
        );
    }

    fn route(method: Option<Method>, path: &str, matching: RouteMatch) -> HttpRoute {
        let route = HttpRoute::new(method, path, |_| async { Response::new(Body::empty()) });
        match matching {
            RouteMatch::Exact => route,
            RouteMatch::Prefix => route.prefix(),
        }
    }

    /// Exact and prefix matching, and the method, as a table: (route, request, matches).
    #[test]
    fn routes_match_exact_paths_prefixes_and_methods() {
        use RouteMatch::{Exact, Prefix};
        let get = Some(Method::GET);
        let post = Some(Method::POST);
        /// The route's method, path and matching; the request's method and path; whether
        /// the route answers it.
        type Case = (
            Option<Method>,
            &'static str,
            RouteMatch,
            Method,
            &'static str,
            bool,
        );
        let cases: &[Case] = &[
            (None, "/hooks", Exact, Method::GET, "/hooks", true),
            (None, "/hooks", Exact, Method::POST, "/hooks", true),
            (None, "/hooks", Exact, Method::GET, "/hooks/", false),
            (None, "/hooks", Exact, Method::GET, "/hooks/a", false),
            (None, "/hooks", Exact, Method::GET, "/Hooks", false),
            (None, "/hooks", Exact, Method::GET, "/hook", false),
            (None, "/hooks", Prefix, Method::GET, "/hooks", true),
            (None, "/hooks", Prefix, Method::GET, "/hooks/", true),
            (None, "/hooks", Prefix, Method::GET, "/hooks/a/b", true),
            (None, "/hooks", Prefix, Method::GET, "/hooksx", false),
            (None, "/hooks", Prefix, Method::GET, "/hook", false),
            (None, "/hooks/", Prefix, Method::GET, "/hooks", true),
            (None, "/hooks/", Prefix, Method::GET, "/hooks/a", true),
            (None, "/", Prefix, Method::GET, "/", true),
            (None, "/", Prefix, Method::GET, "/anything/at/all", true),
            (None, "/", Exact, Method::GET, "/x", false),
            // Paths are compared as sent: no percent-decoding.
            (None, "/a b", Exact, Method::GET, "/a%20b", false),
            (get.clone(), "/x", Exact, Method::GET, "/x", true),
            (get.clone(), "/x", Exact, Method::HEAD, "/x", true),
            (post.clone(), "/x", Exact, Method::HEAD, "/x", false),
            (get, "/x", Exact, Method::POST, "/x", false),
            (post.clone(), "/x", Prefix, Method::POST, "/x/y", true),
            (post, "/x", Prefix, Method::PUT, "/x/y", false),
        ];
        for (method, path, matching, req_method, req_path, expected) in cases {
            let routes = HttpRoutes::new().route(route(method.clone(), path, *matching));
            assert_eq!(
                routes.find(req_method, req_path).is_some(),
                *expected,
                "{matching:?} route {method:?} {path:?} against {req_method} {req_path:?}"
            );
        }
    }

    /// WHATWG URL's pathname of a request target, as Node routes by it (every case checked
    /// against `URL.parse(target, "http://localhost").pathname` in Node 20).
    #[test]
    fn pathnames_resolve_dot_segments_as_a_url_parser_does() {
        let cases = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/a/./b", "/a/b"),
            ("/a/../healthz", "/healthz"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/..", "/"),
            ("/../../x", "/x"),
            ("/hooks/%2e%2e/admin", "/admin"),
            ("/hooks/%2E%2e/admin", "/admin"),
            ("/hooks/.%2E/admin", "/admin"),
            ("/hooks/%2e./admin", "/admin"),
            ("/hooks/%2e/x", "/hooks/x"),
            ("/a/...", "/a/..."),
            ("/a/..b", "/a/..b"),
            ("/a/%2e%2e%2e", "/a/%2e%2e%2e"),
            ("/a/%2f../b", "/a/%2f../b"),
            ("/a/./", "/a/"),
            // Protocol-relative: the first segment is a host.
            ("//a/../b", "/b"),
            ("//a", "/"),
            ("//a/healthz", "/healthz"),
            ("///x/../y", "/y"),
            ("/a%20b", "/a%20b"),
            ("*", "/*"),
            // Backslashes are slashes.
            ("/x\\y", "/x/y"),
            ("/x\\..\\healthz", "/healthz"),
            ("/\\a/b", "/b"),
        ];
        for (target, expected) in cases {
            assert_eq!(pathname(target), expected, "{target}");
        }
    }

    #[test]
    fn the_first_route_added_wins() {
        let routes = HttpRoutes::new()
            .route(route(None, "/a", RouteMatch::Prefix).max_body_bytes(1))
            .route(route(None, "/a/b", RouteMatch::Exact).max_body_bytes(2));
        let found = routes.find(&Method::GET, "/a/b").unwrap();
        assert_eq!(found.max_body_bytes, 1);
        assert!(routes.find(&Method::GET, "/b").is_none());
        // A HEAD route of its own beats a GET route added before it.
        let routes = HttpRoutes::new()
            .route(route(Some(Method::GET), "/h", RouteMatch::Exact).max_body_bytes(1))
            .route(route(Some(Method::HEAD), "/h", RouteMatch::Exact).max_body_bytes(2));
        assert_eq!(routes.find(&Method::HEAD, "/h").unwrap().max_body_bytes, 2);
        assert_eq!(routes.find(&Method::GET, "/h").unwrap().max_body_bytes, 1);
    }

    /// What registration refuses, and what it takes.
    #[test]
    fn registration_refuses_the_gateways_own_paths() {
        let refused = [
            "hooks",
            "",
            "/health",
            "/healthz",
            "/healthz/",
            "/ready",
            "/readyz",
            "/startup",
            "/startupz",
            "/__openclaw__/worker",
            "/__openclaw__/worker/x",
        ];
        for path in refused {
            let mut routes = HttpRoutes::new();
            let err = routes
                .add(route(None, path, RouteMatch::Exact))
                .expect_err(path)
                .to_string();
            assert!(err.contains(&format!("{path:?}")), "{err}");
            let built = HttpRoutes::new().route(route(None, path, RouteMatch::Prefix));
            assert!(built.refused().is_some(), "{path}");
            assert!(built.is_empty(), "{path}");
        }
        let taken = [
            "/",
            "/hooks",
            "/healthzz",
            "/__openclaw__/workers",
            "/h/healthz",
        ];
        for path in taken {
            let mut routes = HttpRoutes::new();
            assert!(
                routes.add(route(None, path, RouteMatch::Prefix)).is_ok(),
                "{path}"
            );
        }
        let mut routes = HttpRoutes::new();
        let zero = route(None, "/x", RouteMatch::Exact).max_body_bytes(0);
        assert!(
            routes
                .add(zero)
                .unwrap_err()
                .to_string()
                .contains("max_body_bytes 0")
        );
    }
}
