//! Host HTTP routes on the gateway port over real sockets (SPEC §13): the pipeline's order
//! (probes and upgrades before routes, routes before the `426` at `/`), exact and prefix
//! routes and methods, the gateway's bearer auth and its limiter, streaming both ways, every
//! limit (head size, head and body timeouts, body size, the connection cap), hostile requests,
//! a panicking handler, shutdown with a stream open, and where WebSocket upgrades are taken.

mod common;
mod wsclient;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::*;
use gateway::{
    Auth, AuthThrottle, BindMode, Body, ControlUiOptions, Gateway, GatewayLock, GatewayLockError,
    HttpOptions, HttpRequest, HttpRoute, HttpRoutes, LogLevel, Method, ProtocolOptions, Response,
    ServeOptions, StatusCode, WebSocketPaths,
};
use serde_json::json;

const TOKEN: &str = "route-token";
const UNAUTHORIZED: &str = r#"{"error":{"message":"Unauthorized","type":"unauthorized"}}"#;
const RATE_LIMITED: &str = r#"{"error":{"message":"Too many failed authentication attempts. Please try again later.","type":"rate_limited"}}"#;
/// How long a test waits for something that should come at once.
const PROMPTLY: Duration = Duration::from_secs(10);

/// A gateway served in this process with `http`, and the env its lock lives in.
struct Served {
    gateway: Option<Gateway>,
    port: u16,
    _env: TestEnv,
}

impl Served {
    fn start(auth: Auth, http: HttpOptions) -> Self {
        Self::start_with(auth, |options| ServeOptions { http, ..options })
    }

    fn start_with(auth: Auth, configure: impl FnOnce(ServeOptions) -> ServeOptions) -> Self {
        Self::start_on(BindMode::Loopback, auth, configure)
    }

    fn start_on(
        bind: BindMode,
        auth: Auth,
        configure: impl FnOnce(ServeOptions) -> ServeOptions,
    ) -> Self {
        let env = TestEnv::new();
        let options = env.options().port(free_port()).bind(bind).auth(auth);
        let lock = GatewayLock::acquire(&options).unwrap();
        let port = lock.port();
        let options = configure(ServeOptions {
            worker_threads: 2,
            ..ServeOptions::default()
        });
        let gateway = Gateway::serve(lock, options).unwrap();
        Self {
            gateway: Some(gateway),
            port,
            _env: env,
        }
    }

    fn connect(&self) -> TcpStream {
        let stream =
            TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))).unwrap();
        stream.set_read_timeout(Some(PROMPTLY)).unwrap();
        stream
    }

    /// Sends `raw` as is on a new connection and reads one response.
    fn raw(&self, raw: &[u8]) -> HttpResponse {
        let mut stream = self.connect();
        stream.write_all(raw).unwrap();
        read_response(&mut stream, false)
            .unwrap_or_else(|err| panic!("{:?}: {err}", String::from_utf8_lossy(raw)))
    }

    /// `method path` with `headers` and `body` (with its `Content-Length`).
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let mut raw =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        for (name, value) in headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(body);
        self.raw(&raw)
    }

    fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, &[], b"")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown(Duration::from_secs(5));
        }
    }
}

/// A route answering `200` with `text`.
fn says(method: Option<Method>, path: &str, text: &'static str) -> HttpRoute {
    HttpRoute::new(
        method,
        path,
        move |_| async move { plain(StatusCode::OK, text) },
    )
}

fn plain(status: StatusCode, text: impl Into<Body>) -> Response<Body> {
    let mut response = Response::new(text.into());
    *response.status_mut() = status;
    response
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn text(body: &[u8]) -> &str {
    std::str::from_utf8(body).unwrap()
}

/// Reads from `stream` until `needle` has come (then returns all that was read), or panics
/// at the deadline or a close.
fn read_until(stream: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let deadline = Instant::now() + PROMPTLY;
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        assert!(
            Instant::now() < deadline,
            "no {:?} in {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(&seen)
        );
        match stream.read(&mut chunk) {
            Ok(0) => panic!(
                "closed before {:?}: {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&seen)
            ),
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => panic!("reading for {:?}: {err}", String::from_utf8_lossy(needle)),
        }
    }
    seen
}

/// What the server sends on `stream` until it closes it (EOF or reset); panics if it is still
/// open after [`PROMPTLY`].
fn read_to_close(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(PROMPTLY)).unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "still open after {PROMPTLY:?}, having sent {:?}",
                    String::from_utf8_lossy(&seen)
                )
            }
            Err(_) => break, // reset
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Whether the server closed `stream` (EOF or reset) within `within`, reading and dropping
/// anything it sent first; `false` if it is still open then.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true, // reset
        }
    }
}

// ---- the pipeline's order ---------------------------------------------------------------

/// SPEC §13.1: probes come before every route (even one that takes every path), routes come
/// before the `426` at `/`, and what nothing answers is `404 Not Found`.
#[test]
fn probes_beat_routes_and_routes_beat_the_upgrade_hint() {
    let catch_all = Served::start(
        Auth::None,
        HttpOptions {
            routes: HttpRoutes::new().route(says(None, "/", "host").prefix()),
            ..HttpOptions::default()
        },
    );
    let (status, _, body) = catch_all.get("/healthz");
    assert_eq!(
        (status, text(&body)),
        (200, r#"{"ok":true,"status":"live"}"#)
    );
    let (status, _, body) = catch_all.get("/readyz");
    assert_eq!((status, text(&body)), (200, r#"{"ready":true}"#));
    // The probe by its URL pathname, however the target spells it.
    for path in ["/x/../healthz", "/x/%2e%2e/healthz", "//host/healthz"] {
        let (status, _, body) = catch_all.get(path);
        assert_eq!(
            (status, text(&body)),
            (200, r#"{"ok":true,"status":"live"}"#),
            "{path}"
        );
    }
    for path in ["/", "/anything", "/healthz/below", "/hooks/x?y=1"] {
        let (status, _, body) = catch_all.get(path);
        assert_eq!((status, text(&body)), (200, "host"), "GET {path}");
    }
    // The worker ingress is OpenClaw's, whatever the routes say (SPEC §13.1 stage 6).
    let (status, _, body) = catch_all.get("/__openclaw__/worker/x");
    assert_eq!((status, text(&body)), (404, "Not Found"));

    let bare = Served::start(Auth::None, HttpOptions::default());
    let (status, headers, _) = bare.get("/");
    assert_eq!(status, 426);
    assert_eq!(header(&headers, "upgrade"), Some("websocket"));
    let (status, headers, body) = bare.get("/nothing/here");
    assert_eq!((status, text(&body)), (404, "Not Found"));
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/plain; charset=utf-8")
    );
}

/// A route at a probe's path is refused when the gateway is served, with a message that says
/// which path and why.
#[test]
fn a_route_at_a_probe_path_is_refused() {
    let env = TestEnv::new();
    let lock = GatewayLock::acquire(&env.options().port(free_port())).unwrap();
    let port = lock.port();
    let err = Gateway::serve(
        lock,
        ServeOptions {
            http: HttpOptions {
                routes: HttpRoutes::new().route(says(None, "/healthz", "mine")),
                ..HttpOptions::default()
            },
            ..ServeOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, GatewayLockError::InvalidOption(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("\"/healthz\"") && message.contains("health probe"),
        "{message}"
    );
    assert!(port_is_free(port), "a refused serve released the port");
}

/// A zero HTTP limit is refused by name before anything is served.
#[test]
fn zero_http_limits_are_refused() {
    /// An option's name, and how to set it to zero.
    type Zeroed = (&'static str, fn(&mut HttpOptions));
    let zeroed: [Zeroed; 4] = [
        ("http.max_header_bytes", |h| h.max_header_bytes = 0),
        ("http.header_timeout", |h| h.header_timeout = Duration::ZERO),
        ("http.body_idle_timeout", |h| {
            h.body_idle_timeout = Duration::ZERO
        }),
        ("http.max_connections", |h| h.max_connections = 0),
    ];
    for (name, zero) in zeroed {
        let mut options = ServeOptions::default();
        zero(&mut options.http);
        let message = options.validate().unwrap_err().to_string();
        assert!(message.contains(&format!("{name} is 0")), "{message}");
    }
    assert!(ServeOptions::default().validate().is_ok());
}

#[test]
fn exact_and_prefix_routes_answer_their_methods_only() {
    let served = Served::start(
        Auth::None,
        HttpOptions {
            routes: HttpRoutes::new()
                .route(says(Some(Method::POST), "/hooks/wake", "wake"))
                .route(says(None, "/hooks", "hooks").prefix())
                .route(says(Some(Method::GET), "/exact", "exact"))
                .route(
                    HttpRoute::new(None, "/echo", |request: HttpRequest| async move {
                        plain(StatusCode::OK, request.path().into_owned())
                    })
                    .prefix(),
                ),
            ..HttpOptions::default()
        },
    );
    let cases = [
        ("POST", "/hooks/wake", 200, "wake"),
        ("GET", "/hooks/wake", 200, "hooks"), // the first route is POST only
        ("PUT", "/hooks", 200, "hooks"),
        ("GET", "/hooks/", 200, "hooks"),
        ("GET", "/hooks/a/b?c=d", 200, "hooks"),
        ("GET", "/hooksx", 404, "Not Found"),
        ("GET", "/exact", 200, "exact"),
        ("GET", "/exact?q=1", 200, "exact"),
        ("GET", "/exact/", 404, "Not Found"),
        ("POST", "/exact", 404, "Not Found"),
        ("GET", "/Exact", 404, "Not Found"),
        // Routed by the URL's pathname, as Node: dot segments resolved, percent-encoded too.
        ("GET", "/hooks/../exact", 200, "exact"),
        ("GET", "/hooks/%2E%2e/exact", 200, "exact"),
        ("GET", "/exact/./", 404, "Not Found"),
        ("GET", "//any-host/exact", 200, "exact"),
        ("GET", "/hooks/%2fexact", 200, "hooks"),
        // The handler is told the path it was routed by.
        ("GET", "/echo/a/../b?q", 200, "/echo/b"),
        ("GET", "/x/../echo/%2e/c", 200, "/echo/c"),
        ("GET", "/echo/a%2Fb", 200, "/echo/a%2Fb"),
    ];
    for (method, path, status, body) in cases {
        let (got, _, got_body) = served.request(method, path, &[], b"");
        assert_eq!((got, text(&got_body)), (status, body), "{method} {path}");
    }
    // HEAD gets the route's head without its body.
    let mut stream = served.connect();
    stream
        .write_all(b"HEAD /hooks HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (status, headers, body) = read_response(&mut stream, true).unwrap();
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(header(&headers, "content-length"), Some("5"));
    // … and a GET route answers HEAD as well, without its body.
    stream
        .write_all(b"HEAD /exact HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (status, headers, body) = read_response(&mut stream, true).unwrap();
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(header(&headers, "content-length"), Some("5"));
}

/// SPEC §13.1: every response carries Node's security headers, `Strict-Transport-Security`
/// when set; a route's own values of them are kept.
#[test]
fn every_response_carries_the_security_headers() {
    let served = Served::start(
        Auth::Token(TOKEN.into()),
        HttpOptions {
            routes: HttpRoutes::new()
                .route(says(None, "/open", "open"))
                .route(says(None, "/closed", "closed").gateway_auth())
                .route(HttpRoute::new(None, "/own", |_| async {
                    let mut response = plain(StatusCode::OK, "own");
                    response
                        .headers_mut()
                        .insert("referrer-policy", "same-origin".parse().unwrap());
                    response
                }))
                .route(HttpRoute::new(None, "/panic", |_| async {
                    panic!("on purpose")
                })),
            strict_transport_security: Some("max-age=63072000".into()),
            ..HttpOptions::default()
        },
    );
    for (path, status) in [
        ("/open", 200),
        ("/closed", 401),
        ("/healthz", 200),
        ("/missing", 404),
        ("/panic", 500),
        ("/", 426),
    ] {
        let (got, headers, _) = served.get(path);
        assert_eq!(got, status, "GET {path}");
        assert_eq!(
            header(&headers, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            header(&headers, "referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
        assert_eq!(
            header(&headers, "permissions-policy"),
            Some("camera=(), microphone=(self), geolocation=()"),
            "{path}"
        );
        assert_eq!(
            header(&headers, "strict-transport-security"),
            Some("max-age=63072000"),
            "{path}"
        );
    }
    let (_, headers, _) = served.get("/own");
    assert_eq!(header(&headers, "referrer-policy"), Some("same-origin"));
    let bare = Served::start(Auth::None, HttpOptions::default());
    let (_, headers, _) = bare.get("/healthz");
    assert_eq!(header(&headers, "strict-transport-security"), None);
}

// ---- auth -------------------------------------------------------------------------------

/// A gateway-auth route that says how its caller was let in.
fn whoami() -> HttpRoute {
    HttpRoute::new(None, "/whoami", |request: HttpRequest| async move {
        plain(StatusCode::OK, format!("{:?}", request.auth))
    })
    .gateway_auth()
}

fn with_auth(value: &str) -> Vec<(&str, &str)> {
    vec![("Authorization", value)]
}

#[test]
fn gateway_auth_takes_the_token_as_node_reads_a_bearer() {
    let served = Served::start(
        Auth::Token(TOKEN.into()),
        HttpOptions {
            routes: HttpRoutes::new()
                .route(whoami())
                .route(says(None, "/public", "public")),
            ..HttpOptions::default()
        },
    );
    let right = [
        format!("Bearer {TOKEN}"),
        format!("bearer {TOKEN}"),
        format!("BEARER   {TOKEN}   "),
    ];
    for value in &right {
        let (status, _, body) = served.request("GET", "/whoami", &with_auth(value), b"");
        assert_eq!(
            (status, text(&body)),
            (200, "Some(Token)"),
            "Authorization: {value}"
        );
    }
    let (status, _, body) = served.request("GET", "/public", &[], b"");
    assert_eq!((status, text(&body)), (200, "public"));
    let missing: [&[(&str, &str)]; 4] = [
        &[],
        &[("Authorization", "Bearer ")],
        &[("Authorization", &format!("Basic {TOKEN}"))],
        &[("Cookie", &format!("token={TOKEN}"))],
    ];
    for headers in missing {
        let (status, response_headers, body) = served.request("GET", "/whoami", headers, b"");
        assert_eq!((status, text(&body)), (401, UNAUTHORIZED), "{headers:?}");
        assert_eq!(
            header(&response_headers, "content-type"),
            Some("application/json; charset=utf-8")
        );
    }
    // A query token is not a bearer either (SPEC §13.4).
    let (status, _, _) = served.request("GET", &format!("/whoami?token={TOKEN}"), &[], b"");
    assert_eq!(status, 401);
    // Wrong ones (loopback: answered late, never locked out).
    for value in ["Bearer wrong", &format!("Bearer {TOKEN}x")] {
        let (status, _, body) = served.request("GET", "/whoami", &with_auth(value), b"");
        assert_eq!((status, text(&body)), (401, UNAUTHORIZED), "{value}");
    }
}

#[test]
fn gateway_auth_takes_the_password_in_password_mode() {
    let served = Served::start(
        Auth::Password("pass word".into()),
        HttpOptions {
            routes: HttpRoutes::new().route(whoami()),
            ..HttpOptions::default()
        },
    );
    let (status, _, body) = served.request("GET", "/whoami", &with_auth("Bearer pass word"), b"");
    assert_eq!((status, text(&body)), (200, "Some(Password)"));
    let (status, _, body) = served.request("GET", "/whoami", &with_auth("Bearer pass"), b"");
    assert_eq!((status, text(&body)), (401, UNAUTHORIZED));
    let (status, _, _) = served.request("GET", "/whoami", &[], b"");
    assert_eq!(status, 401);
}

#[test]
fn gateway_auth_lets_everyone_in_when_the_gateway_has_none() {
    let served = Served::start(
        Auth::None,
        HttpOptions {
            routes: HttpRoutes::new().route(whoami()),
            ..HttpOptions::default()
        },
    );
    for headers in [vec![], with_auth("Bearer anything")] {
        let (status, _, body) = served.request("GET", "/whoami", &headers, b"");
        assert_eq!((status, text(&body)), (200, "Some(None)"), "{headers:?}");
    }
}

/// Three failures lock a client out for a minute (Node's default is ten for five minutes).
fn throttled() -> ProtocolOptions {
    ProtocolOptions {
        auth_throttle: AuthThrottle {
            max_failures: 3,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
        },
        ..ProtocolOptions::default()
    }
}

/// SPEC §13.4: wrong bearers count in the WebSocket handshake's limiter (`shared-secret`).
/// A client this gateway cannot attribute (a request relayed by a proxy) is locked out after
/// `max_failures` and answered `429` with `Retry-After`, even with the right token, on HTTP
/// and on the WebSocket alike; a direct loopback client is never locked out, only answered
/// late; a right bearer clears the failures.
#[test]
fn wrong_bearers_are_throttled_with_the_handshakes_limiter() {
    let served = Served::start_with(Auth::Token(TOKEN.into()), |options| ServeOptions {
        protocol: throttled(),
        http: HttpOptions {
            routes: HttpRoutes::new().route(whoami()),
            ..HttpOptions::default()
        },
        ..options
    });
    let proxied = |secret: &str| {
        let bearer = format!("Bearer {secret}");
        served.request(
            "GET",
            "/whoami",
            &[
                ("X-Forwarded-For", "203.0.113.7"),
                ("Authorization", &bearer),
            ],
            b"",
        )
    };
    // A right bearer in between clears the count.
    assert_eq!(proxied("wrong").0, 401);
    assert_eq!(proxied("wrong").0, 401);
    assert_eq!(proxied(TOKEN).0, 200);
    for _ in 0..3 {
        let (status, _, body) = proxied("wrong");
        assert_eq!((status, text(&body)), (401, UNAUTHORIZED));
    }
    for secret in ["wrong", TOKEN] {
        let (status, headers, body) = proxied(secret);
        assert_eq!((status, text(&body)), (429, RATE_LIMITED), "{secret}");
        let retry: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
        assert!((50..=60).contains(&retry), "Retry-After {retry}");
        assert_eq!(
            header(&headers, "content-type"),
            Some("application/json; charset=utf-8")
        );
    }
    // The same limiter refuses that client's WebSocket handshake.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let res = runtime.block_on(async {
        let mut client =
            wsclient::Client::open_with_headers(served.port, &[("x-forwarded-for", "203.0.113.7")])
                .await;
        let mut params = wsclient::connect_params();
        params["auth"] = json!({"token": TOKEN});
        client.connect_with(params).await
    });
    assert_eq!(
        res["error"]["details"]["code"], "AUTH_RATE_LIMITED",
        "{res}"
    );
    // A direct loopback client is answered late but never locked out, a browser page
    // (`Origin`) included: Node's HTTP check counts by client address alone, in its limiter
    // that exempts loopback, unlike its WebSocket handshake (http-auth-utils-BNo7SILw.mjs:
    // 718-732; auth-BiOY0Xi8.mjs:13-28; server-start-BG4nMCFD.mjs:4795-4799, 7909).
    let started = Instant::now();
    for attempt in 0..4 {
        let mut headers = with_auth("Bearer wrong");
        if attempt % 2 == 1 {
            headers.push(("Origin", "http://127.0.0.1:5173"));
        }
        assert_eq!(served.request("GET", "/whoami", &headers, b"").0, 401);
    }
    // 250 + 500 + 1000 + 2000 ms held back.
    assert!(
        started.elapsed() >= Duration::from_millis(3700),
        "{:?}",
        started.elapsed()
    );
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, body) = served.request(
        "GET",
        "/whoami",
        &[
            ("Authorization", &bearer),
            ("Origin", "http://127.0.0.1:5173"),
        ],
        b"",
    );
    assert_eq!((status, text(&body)), (200, "Some(Token)"));
}

/// A remote client (another network namespace) is locked out after `max_failures` wrong
/// bearers, then answered `429` even with the right token (a loopback client never is); the
/// lockout is that peer's alone.
#[cfg(target_os = "linux")]
#[test]
fn a_remote_client_is_locked_out_of_gateway_routes() {
    let peer = RemotePeer::new();
    let served = Served::start_on(
        BindMode::Custom(peer.host_ip.to_string()),
        Auth::Token(TOKEN.into()),
        |options| ServeOptions {
            protocol: throttled(),
            http: HttpOptions {
                routes: HttpRoutes::new().route(whoami()),
                ..HttpOptions::default()
            },
            ..options
        },
    );
    let (host, port) = (peer.host_ip, served.port);
    let ask = move |secret: &str| {
        let mut stream = TcpStream::connect((host, port)).unwrap();
        stream.set_read_timeout(Some(PROMPTLY)).unwrap();
        write!(
            stream,
            "GET /whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n\r\n"
        )
        .unwrap();
        read_response(&mut stream, false).unwrap()
    };
    peer.run(async || {
        for _ in 0..3 {
            let (status, _, body) = ask("wrong");
            assert_eq!((status, text(&body)), (401, UNAUTHORIZED));
        }
        let (status, headers, body) = ask(TOKEN);
        assert_eq!((status, text(&body)), (429, RATE_LIMITED));
        let retry: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
        assert!((50..=60).contains(&retry), "Retry-After {retry}");
    });
    // From this side of the pair (another address) the route is open.
    let (status, _, body) = ask(TOKEN);
    assert_eq!((status, text(&body)), (200, "Some(Token)"));
}

// ---- streaming --------------------------------------------------------------------------

/// A route that reads its body chunk by chunk and answers how many bytes came.
fn counter(limit: u64) -> HttpRoute {
    HttpRoute::new(
        Some(Method::POST),
        "/count",
        |mut request: HttpRequest| async move {
            let mut total = 0u64;
            loop {
                match request.body.chunk().await {
                    Ok(Some(chunk)) => total += chunk.len() as u64,
                    Ok(None) => return plain(StatusCode::OK, total.to_string()),
                    Err(err) => {
                        return plain(StatusCode::BAD_REQUEST, format!("{:?}: {err}", err.kind()));
                    }
                }
            }
        },
    )
    .max_body_bytes(limit)
}

/// Not a test on its own: the gateway process `a_large_upload_is_streamed_not_buffered`
/// starts (this test binary run again), serving `/count` until its stdin closes.
#[test]
#[ignore = "the child process of a_large_upload_is_streamed_not_buffered"]
fn upload_child_gateway() {
    let Ok(port) = std::env::var("HTTP_ROUTES_CHILD_PORT") else {
        return;
    };
    let env = TestEnv::new();
    let lock = GatewayLock::acquire(&env.options().port(port.parse().unwrap())).unwrap();
    let gateway = Gateway::serve(
        lock,
        ServeOptions {
            worker_threads: 2,
            http: HttpOptions {
                routes: HttpRoutes::new().route(counter(u64::MAX)),
                ..HttpOptions::default()
            },
            ..ServeOptions::default()
        },
    )
    .unwrap();
    println!("CHILD READY");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    gateway.shutdown(Duration::from_secs(5));
}

/// The peak resident set of process `pid`, in bytes.
#[cfg(target_os = "linux")]
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// 200 MB uploaded to a route that counts bytes: the gateway (a process of its own) never
/// holds more than a small part of it.
#[cfg(target_os = "linux")]
#[test]
fn a_large_upload_is_streamed_not_buffered() {
    const SIZE: u64 = 200 * 1024 * 1024;
    let port = free_port();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "upload_child_gateway",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HTTP_ROUTES_CHILD_PORT", port.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ready = pipe_lines(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = ready
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the child gateway is ready");
        if line.contains("CHILD READY") {
            break;
        }
    }
    let before = peak_rss(child.id());
    let mut stream = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\n\r\n"
    )
    .unwrap();
    let block = vec![b'x'; 1024 * 1024];
    for _ in 0..SIZE / block.len() as u64 {
        stream.write_all(&block).unwrap();
    }
    let (status, _, body) = read_response(&mut stream, false).unwrap();
    assert_eq!((status, text(&body)), (200, SIZE.to_string().as_str()));
    let after = peak_rss(child.id());
    drop(child.stdin.take());
    assert!(wait_with_timeout(&mut child, Duration::from_secs(20)).is_some_and(|s| s.success()));
    assert!(
        after < before + 32 * 1024 * 1024,
        "the gateway's peak RSS grew from {before} to {after} bytes for a {SIZE}-byte upload"
    );
}

/// A chunked upload is counted the same way, and the handler sees every byte.
#[test]
fn a_chunked_upload_reaches_the_handler_chunk_by_chunk() {
    let served = Served::start(
        Auth::None,
        HttpOptions {
            routes: HttpRoutes::new().route(counter(1 << 20)),
            ..HttpOptions::default()
        },
    );
    let mut raw = b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..10 {
        raw.extend_from_slice(b"3e8\r\n");
        raw.extend_from_slice(&[b'y'; 1000]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let (status, _, body) = served.raw(&raw);
    assert_eq!((status, text(&body)), (200, "10000"));
}

/// Server-sent events through `Body::channel`: the client has event 1 before event 2 is
/// written (the handler writes event 2 only once the test, having read event 1, says so).
#[test]
fn a_streamed_response_reaches_the_client_event_by_event() {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Arc::new(Mutex::new(Some(go_rx)));
    let wrote_second = Arc::new(AtomicU64::new(0));
    let wrote = Arc::clone(&wrote_second);
    let route = HttpRoute::new(Some(Method::GET), "/events", move |_| {
        let go = go_rx.lock().unwrap().take().expect("one request");
        let wrote = Arc::clone(&wrote);
        async move {
            let (writer, body) = Body::channel(1);
            // A thread of the host's own writes the stream.
            std::thread::spawn(move || {
                writer.blocking_send("data: one\n\n").unwrap();
                go.recv().unwrap();
                wrote.store(1, Ordering::SeqCst);
                writer.blocking_send("data: two\n\n").unwrap();
            });
            let mut response = plain(StatusCode::OK, body);
            response
                .headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            response
        }
    });
    let served = Served::start(
        Auth::None,
        HttpOptions {
            routes: HttpRoutes::new().route(route),
            ..HttpOptions::default()
        },
    );
    let mut stream = served.connect();
    stream
        .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let first = read_until(&mut stream, b"data: one\n\n");
    let head = String::from_utf8_lossy(&first).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("transfer-encoding: chunked") && head.contains("text/event-stream"),
        "{head}"
    );
    assert_eq!(
        wrote_second.load(Ordering::SeqCst),
        0,
        "event 2 was not written yet"
    );
    go_tx.send(()).unwrap();
    // The writer is dropped after event 2: the body ends with the last chunk.
    let rest = read_until(&mut stream, b"0\r\n\r\n");
    assert!(
        rest.windows(11).any(|w| w == b"data: two\n\n"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
}

// ---- limits -----------------------------------------------------------------------------

/// A request head past `max_header_bytes` is answered `431` and the connection closed.
#[test]
fn a_head_past_max_header_bytes_is_answered_431() {
    let served = Served::start(
        Auth::None,
        HttpOptions {
            max_header_bytes: 16 * 1024,
            routes: HttpRoutes::new().route(says(None, "/x", "x")),
            ..HttpOptions::default()
        },
    );
    let fits = format!(
        "GET /x HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(8 * 1024)
    );
    assert_eq!(served.raw(fits.as_bytes()).0, 200);
    let big = format!(
        "GET /x HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let mut stream = served.connect();
    // The server may answer before it has read all of it.
    let _ = stream.write_all(big.as_bytes());
    let (status, _, _) = read_response(&mut stream, false).unwrap();
    assert_eq!(status, 431);
    assert!(closed_within(&mut stream, PROMPTLY));
    // The default (64 KiB) takes 20 KiB.
    let roomy = Served::start(
        Auth::None,
        HttpOptions {
            routes: HttpRoutes::new().route(says(None, "/x", "x")),
            ..HttpOptions::default()
        },
    );
    let big = big.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    assert_eq!(roomy.raw(big.as_bytes()).0, 200);
}

/// Slow clients (silent, or trickling their heads a byte at a time) hold no worker: a gateway
/// with one worker thread serves others while they all stay open.
#[test]
fn slow_clients_hold_no_worker() {
    let served = Served::start_with(Auth::None, |options| ServeOptions {
        worker_threads: 1,
        ..options
    });
    let silent: Vec<TcpStream> = (0..8).map(|_| served.connect()).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickling: Vec<_> = (0..8)
        .map(|_| {
            let mut stream = served.connect();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let head = b"GET /healthz HTTP/1.1\r\nX-Slow: ";
                for byte in head.iter().chain(std::iter::repeat(&b'a')) {
                    if stop.load(Ordering::SeqCst) {
                        return true;
                    }
                    if stream.write_all(&[*byte]).is_err() {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                unreachable!()
            })
        })
        .collect();
    for _ in 0..5 {
        assert_eq!(served.get("/healthz").0, 200);
    }
    stop.store(true, Ordering::SeqCst);
    for thread in trickling {
        assert!(
            thread.join().unwrap(),
            "a trickling client was still being read"
        );
    }
    drop(silent);
}

/// `header_timeout`: a head that does not complete in time closes the connection, even one
/// trickling a byte at a time (slowloris); a kept-alive connection that sends no next request
/// is closed after it too.
#[test]
fn slow_and_idle_connections_are_closed_after_header_timeout() {
    let served = Served::start_with(Auth::None, |options| ServeOptions {
        worker_threads: 1,
        http: HttpOptions {
            header_timeout: Duration::from_secs(1),
            ..HttpOptions::default()
        },
        ..options
    });
    // Nothing sent at all.
    let mut silent = served.connect();
    // A head trickled slowly, on threads of its own.
    let trickling: Vec<_> = (0..4)
        .map(|_| {
            let mut stream = served.connect();
            std::thread::spawn(move || {
                let started = Instant::now();
                for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: "
                    .iter()
                    .chain(std::iter::repeat(&b'a'))
                {
                    if stream.write_all(&[*byte]).is_err() {
                        return Some(started.elapsed());
                    }
                    if started.elapsed() > Duration::from_secs(20) {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                unreachable!()
            })
        })
        .collect();
    assert!(
        closed_within(&mut silent, PROMPTLY),
        "a silent connection stays open"
    );
    for thread in trickling {
        let closed_after = thread.join().unwrap().expect("a trickling head is cut off");
        assert!(closed_after >= Duration::from_secs(1), "{closed_after:?}");
    }
    // Kept alive after a whole exchange, then idle.
    let mut idle = served.connect();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle, false).unwrap().0, 200);
    assert!(
        closed_within(&mut idle, PROMPTLY),
        "an idle keep-alive connection stays open"
    );
}

/// `max_body_bytes`: a `Content-Length` past it is answered `413` before any of the body is
/// sent (and without `100 Continue`); a body that grows past it while read is answered `413`
/// too, whatever the handler answered.
#[test]
fn a_body_past_max_body_bytes_is_answered_413() {
    let served = Served::start(
        Auth::None,
        HttpOptions {
            routes: HttpRoutes::new().route(counter(1000)),
            ..HttpOptions::default()
        },
    );
    // Announced: answered before a byte of the body is sent.
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut stream = served.connect();
        write!(
            stream,
            "POST /count HTTP/1.1\r\nHost: x\r\n{expect}Content-Length: 1001\r\n\r\n"
        )
        .unwrap();
        let (status, headers, body) = read_response(&mut stream, false).unwrap();
        assert_eq!(
            (status, text(&body)),
            (413, "Payload Too Large"),
            "{expect:?}"
        );
        assert_eq!(header(&headers, "connection"), Some("close"));
    }
    // Exactly the limit is taken.
    assert_eq!(
        served.request("POST", "/count", &[], &[b'z'; 1000]).2,
        b"1000"
    );
    // Chunked: found out while reading; the handler saw the error, the client gets 413.
    let mut raw = b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        raw.extend_from_slice(b"258\r\n");
        raw.extend_from_slice(&[b'y'; 600]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let (status, headers, body) = served.raw(&raw);
    assert_eq!((status, text(&body)), (413, "Payload Too Large"));
    assert_eq!(header(&headers, "connection"), Some("close"));
}

/// `body_idle_timeout`: a body that stops arriving fails the handler's read with `TimedOut`
/// and the client gets `408`.
#[test]
fn a_stalled_body_is_answered_408() {
    let seen = Arc::new(Mutex::new(None));
    let seen_by_handler = Arc::clone(&seen);
    let route = HttpRoute::new(
        Some(Method::POST),
        "/slow",
        move |mut request: HttpRequest| {
            let seen = Arc::clone(&seen_by_handler);
            async move {
                loop {
                    match request.body.chunk().await {
                        Ok(Some(_)) => {}
                        Ok(None) => return plain(StatusCode::OK, "whole"),
                        Err(err) => {
                            *seen.lock().unwrap() = Some(err.kind());
                            return plain(StatusCode::OK, "the handler's own answer");
                        }
                    }
                }
            }
        },
    );
    let served = Served::start(
        Auth::None,
        HttpOptions {
            body_idle_timeout: Duration::from_millis(500),
            routes: HttpRoutes::new().route(route),
            ..HttpOptions::default()
        },
    );
    let mut stream = served.connect();
    stream
        .write_all(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .unwrap();
    let (status, headers, body) = read_response(&mut stream, false).unwrap();
    assert_eq!((status, text(&body)), (408, "Request Timeout"));
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert_eq!(*seen.lock().unwrap(), Some(ErrorKind::TimedOut));
}

/// A handler may hand its body to a thread of the host's, which reads it with an executor of
/// its own (here a runtime without timers, as a C host's would have none): the body streams
/// there, and its idle timeout still fires.
#[test]
fn a_body_is_read_on_a_host_thread_with_its_own_executor() {
    let route = HttpRoute::new(
        Some(Method::POST),
        "/elsewhere",
        |mut request: HttpRequest| async move {
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let executor = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let read = executor.block_on(async {
                    let mut total = 0;
                    while let Some(chunk) = request.body.chunk().await? {
                        total += chunk.len();
                    }
                    Ok::<_, std::io::Error>(total)
                });
                let _ = done_tx.send(read);
            });
            match done_rx.await.unwrap() {
                Ok(total) => plain(StatusCode::OK, total.to_string()),
                Err(err) => plain(StatusCode::BAD_REQUEST, err.to_string()),
            }
        },
    )
    .max_body_bytes(1 << 20);
    let served_with = |idle_ms: u64, route: HttpRoute| {
        Served::start(
            Auth::None,
            HttpOptions {
                body_idle_timeout: Duration::from_millis(idle_ms),
                routes: HttpRoutes::new().route(route),
                ..HttpOptions::default()
            },
        )
    };
    // The whole body, with a timeout no pause of a loaded machine reaches.
    let patient = served_with(10_000, route.clone());
    let (status, _, body) = patient.request("POST", "/elsewhere", &[], &[b'q'; 300_000]);
    assert_eq!((status, text(&body)), (200, "300000"));
    // A stalled one, with a short timeout that fires.
    let served = served_with(500, route);
    let mut stream = served.connect();
    stream
        .write_all(b"POST /elsewhere HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
        .unwrap();
    let (status, _, _) = read_response(&mut stream, false).unwrap();
    assert_eq!(status, 408);
}

/// `Expect: 100-continue` gets `100 Continue` once the handler reads; any other expectation
/// is answered `417` with no body (SPEC §13.1 stage 0).
#[test]
fn expectations_get_100_or_417() {
    let served = Served::start(
        Auth::None,
        HttpOptions {
            routes: HttpRoutes::new().route(counter(1000)),
            ..HttpOptions::default()
        },
    );
    let mut stream = served.connect();
    stream
        .write_all(
            b"POST /count HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .unwrap();
    let (status, _, _) = read_response(&mut stream, false).unwrap();
    assert_eq!(status, 100);
    stream.write_all(b"hello").unwrap();
    let (status, _, body) = read_response(&mut stream, false).unwrap();
    assert_eq!((status, text(&body)), (200, "5"));
    let (status, headers, body) =
        served.request("POST", "/count", &[("Expect", "something-else")], b"12345");
    assert_eq!((status, body.len()), (417, 0));
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
}

/// `max_connections` counts every TCP connection, WebSocket ones included: past it a new one
/// is answered `503` and closed at once, the open ones go on being served, and a freed slot
/// is taken again.
#[test]
fn the_connection_cap_covers_http_and_websocket_connections() {
    let (logger, lines) = recording_logger();
    let served = Served::start_with(Auth::None, |options| ServeOptions {
        logger: Some(logger),
        http: HttpOptions {
            max_connections: 3,
            ..HttpOptions::default()
        },
        ..options
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ws = runtime.block_on(wsclient::Client::open(served.port));
    let mut first = served.connect();
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut first, false).unwrap().0, 200);
    let mut second = served.connect();
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut second, false).unwrap().0, 200);
    // The fourth.
    let mut over = served.connect();
    let answer = read_to_close(&mut over);
    assert!(
        answer.starts_with("HTTP/1.1 503 ") && answer.ends_with("\r\n\r\nToo many connections"),
        "{answer}"
    );
    // A client that sent its request before reading still gets the answer: the gateway
    // reads what came before it closes, so no reset (sent for unread data) destroys it.
    let mut eager = served.connect();
    eager
        .write_all(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
        .unwrap();
    eager.write_all(&[b'a'; 2000]).unwrap();
    // Deliberately late: the gateway has closed its end by now.
    std::thread::sleep(Duration::from_millis(500));
    eager.set_read_timeout(Some(PROMPTLY)).unwrap();
    let mut answer = Vec::new();
    let ended = eager.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503 ") && answer.ends_with("\r\n\r\nToo many connections"),
        "{answer:?}"
    );
    // Ended by the gateway's close, not by a reset (which some clients' stacks let destroy
    // an answer not yet read).
    assert!(ended.is_ok(), "{ended:?}");
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|(level, line)| *level == LogLevel::Warn && line.contains("max_connections")),
        "{:?}",
        lines.lock().unwrap()
    );
    // The open ones are still served.
    first
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut first, false).unwrap().0, 200);
    // Closing the WebSocket frees a slot.
    drop(ws);
    drop(runtime);
    assert!(
        wait_until(PROMPTLY, || healthy(served.port)),
        "a freed slot is taken again"
    );
}

// ---- hostile requests -------------------------------------------------------------------

/// What each hostile request gets: a status (with `Connection: close` where Node sends it),
/// or the socket closed with no answer.
#[test]
fn hostile_requests_get_nodes_answers() {
    let served = Served::start(
        Auth::None,
        HttpOptions {
            routes: HttpRoutes::new().route(says(None, "/x", "x").prefix()),
            ..HttpOptions::default()
        },
    );
    let mut non_utf8 = b"GET /x/".to_vec();
    non_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    non_utf8.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let binary_header =
        b"GET /x HTTP/1.1\r\nHost: x\r\nX-Bin: \xff\xfe\r\nConnection: close\r\n\r\n".to_vec();
    /// What the request is, its bytes, and its answer: a status and the `Connection` header
    /// it must carry, or `None` for a socket closed without an answer.
    type Case = (&'static str, Vec<u8>, Option<(u16, Option<&'static str>)>);
    let cases: Vec<Case> = vec![
        ("CONNECT", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".to_vec(), None),
        ("h2c upgrade", b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec(), Some((400, Some("close")))),
        ("websocket Upgrade without Connection: upgrade", b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_vec(), Some((400, Some("close")))),
        ("bad Upgrade", b"GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: nonsense\r\n\r\n".to_vec(), Some((400, Some("close")))),
        ("huge header", format!("GET /x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(70 * 1024)).into_bytes(), Some((431, None))),
        ("many headers", format!("GET /x HTTP/1.1\r\nHost: x\r\n{}\r\n", "X-H: 1\r\n".repeat(200)).into_bytes(), Some((431, None))),
        ("non-UTF-8 path", non_utf8, Some((400, None))),
        ("absolute-form", b"GET http://elsewhere.example/x/y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), Some((200, None))),
        ("absolute-form probe", b"GET http://elsewhere.example/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), Some((200, None))),
        ("garbage request line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(), Some((400, None))),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), None),
        ("bare LF", b"GET /x HTTP/1.1\nHost: x\nConnection: close\n\n".to_vec(), Some((200, None))),
        ("conflicting lengths", b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(), Some((400, None))),
        ("binary header value", binary_header, Some((200, None))),
        ("backslash in the path (a slash to Node)", b"GET /x\\y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), Some((200, None))),
        ("dot segments to the worker ingress", b"GET /x/../__openclaw__/worker HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), Some((404, None))),
        ("worker ingress", b"GET /__openclaw__/worker HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), Some((404, None))),
    ];
    for (name, raw, expected) in cases {
        let mut stream = served.connect();
        let _ = stream.write_all(&raw);
        match expected {
            None => {
                let answer = read_to_close(&mut stream);
                assert!(answer.is_empty(), "{name}: {answer}");
            }
            Some((status, connection)) => {
                let (got, headers, _) =
                    read_response(&mut stream, false).unwrap_or_else(|err| panic!("{name}: {err}"));
                assert_eq!(got, status, "{name}");
                if let Some(connection) = connection {
                    assert_eq!(header(&headers, "connection"), Some(connection), "{name}");
                }
            }
        }
    }
    assert!(healthy(served.port), "the gateway still serves");
}

/// A handler that panics, before or after its first `.await`, gets the client `500` with
/// `Cache-Control: no-store`, is logged, and the gateway goes on serving.
#[test]
fn a_panicking_handler_is_answered_500_and_the_gateway_goes_on() {
    struct Explodes;
    impl gateway::HttpHandler for Explodes {
        fn call(&self, _: HttpRequest) -> gateway::ResponseFuture {
            panic!("before any future")
        }
    }
    let (logger, lines) = recording_logger();
    let served = Served::start_with(Auth::None, |options| ServeOptions {
        logger: Some(logger),
        http: HttpOptions {
            routes: HttpRoutes::new()
                .route(HttpRoute::with_handler(None, "/sync", Arc::new(Explodes)))
                .route(HttpRoute::new(None, "/later", |_| async {
                    tokio::task::yield_now().await;
                    panic!("after an await")
                }))
                .route(says(None, "/fine", "fine")),
            ..HttpOptions::default()
        },
        ..options
    });
    for path in ["/sync", "/later", "/sync"] {
        let (status, headers, body) = served.get(path);
        assert_eq!(
            (status, text(&body)),
            (500, "Internal Server Error"),
            "{path}"
        );
        assert_eq!(
            header(&headers, "cache-control"),
            Some("no-store"),
            "{path}"
        );
        let (status, _, body) = served.get("/fine");
        assert_eq!((status, text(&body)), (200, "fine"));
    }
    let lines = lines.lock().unwrap();
    for cause in ["before any future", "after an await"] {
        assert!(
            lines
                .iter()
                .any(|(level, line)| *level == LogLevel::Error && line.contains(cause)),
            "{lines:?}"
        );
    }
}

// ---- shutdown ---------------------------------------------------------------------------

/// Shutdown waits for a streamed response under way and lets it finish within the drain
/// timeout.
#[test]
fn shutdown_lets_a_streamed_response_finish() {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Arc::new(Mutex::new(Some(go_rx)));
    let finite = HttpRoute::new(None, "/finite", move |_| {
        let go = go_rx.lock().unwrap().take().expect("one request");
        async move {
            let (writer, body) = Body::channel(1);
            std::thread::spawn(move || {
                writer.blocking_send("first\n").unwrap();
                go.recv().unwrap();
                writer.blocking_send("last\n").unwrap();
            });
            plain(StatusCode::OK, body)
        }
    });
    let mut served = Served::start(
        Auth::None,
        HttpOptions {
            routes: HttpRoutes::new().route(finite),
            ..HttpOptions::default()
        },
    );
    let port = served.port;
    let mut stream = served.connect();
    stream
        .write_all(b"GET /finite HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_until(&mut stream, b"first\n");
    let gateway = served.gateway.take().unwrap();
    let stopping = std::thread::spawn(move || gateway.shutdown(Duration::from_secs(60)));
    assert!(
        wait_until(PROMPTLY, || TcpStream::connect(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            port
        )))
        .is_err()),
        "the listener closes at once"
    );
    assert!(!stopping.is_finished(), "shutdown waits for the stream");
    go_tx.send(()).unwrap();
    let rest = read_until(&mut stream, b"0\r\n\r\n");
    assert!(
        rest.windows(5).any(|w| w == b"last\n"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(
        closed_within(&mut stream, PROMPTLY),
        "the drained connection is closed"
    );
    assert!(stopping.join().unwrap().drained);
}

/// A streamed response that never ends is cut at the drain timeout: shutdown returns soon
/// after it (not drained), the client sees the connection close, and the writer learns the
/// client is gone.
#[test]
fn shutdown_cuts_an_endless_stream_at_the_drain_timeout() {
    let (ended_tx, ended_rx) = mpsc::channel();
    let endless = HttpRoute::new(None, "/endless", move |_| {
        let ended = ended_tx.clone();
        async move {
            let (writer, body) = Body::channel(1);
            std::thread::spawn(move || {
                let why = loop {
                    if let Err(err) = writer.blocking_send("tick\n") {
                        break err;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                let _ = ended.send(why);
            });
            plain(StatusCode::OK, body)
        }
    });
    let mut served = Served::start(
        Auth::None,
        HttpOptions {
            routes: HttpRoutes::new().route(endless),
            ..HttpOptions::default()
        },
    );
    let mut stream = served.connect();
    stream
        .write_all(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_until(&mut stream, b"tick\n");
    let started = Instant::now();
    let report = served
        .gateway
        .take()
        .unwrap()
        .shutdown(Duration::from_secs(1));
    assert!(!report.drained);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        closed_within(&mut stream, PROMPTLY),
        "the cut connection is closed"
    );
    assert_eq!(
        ended_rx.recv_timeout(PROMPTLY),
        Ok(gateway::BodySendError::Closed)
    );
}

// ---- WebSocket upgrades -----------------------------------------------------------------

/// The status an upgrade request at `path` is answered with.
fn upgrade_status(port: u16, path: &str) -> u16 {
    let mut stream = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).unwrap();
    stream.set_read_timeout(Some(PROMPTLY)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let head = read_until(&mut stream, b"\r\n");
    String::from_utf8_lossy(&head)[9..12].parse().unwrap()
}

/// A directory with a minimal built UI in it, for a Control UI mount.
fn ui_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("index.html"),
        "<!doctype html><html><head></head><body></body></html>",
    )
    .unwrap();
    root
}

/// SPEC §13.2: Node takes an upgrade at any path but its reserved ones, so a Control UI under
/// a base path reaches the gateway there.
#[test]
fn upgrades_are_taken_anywhere_by_default_and_at_the_base_path() {
    let root = ui_root();
    let served = Served::start(
        Auth::None,
        HttpOptions {
            control_ui: Some(ControlUiOptions {
                base_path: "/openclaw".into(),
                ..ControlUiOptions::new(root.path())
            }),
            routes: HttpRoutes::new().route(says(None, "/hooks", "hooks").prefix()),
            ..HttpOptions::default()
        },
    );
    for path in ["/", "/openclaw", "/openclaw/", "/anything", "/hooks/x"] {
        assert_eq!(upgrade_status(served.port, path), 101, "{path}");
    }
    assert_eq!(upgrade_status(served.port, "/__openclaw__/worker/x"), 404);
    assert_eq!(upgrade_status(served.port, "/desktop/observe"), 503);
}

/// `WebSocketPaths::Only`: the listed paths and the Control UI's base path take upgrades;
/// any other is answered `404`.
#[test]
fn upgrades_are_taken_only_where_configured() {
    let only = Served::start(
        Auth::None,
        HttpOptions {
            websocket_paths: WebSocketPaths::Only(vec!["/gw".into()]),
            ..HttpOptions::default()
        },
    );
    assert_eq!(upgrade_status(only.port, "/gw"), 101);
    for path in ["/", "/gw/", "/gwx", "/other"] {
        assert_eq!(upgrade_status(only.port, path), 404, "{path}");
    }
    // Refused in Node's upgrade-refusal form: a text body, and the connection closed.
    let mut stream =
        TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, only.port))).unwrap();
    stream.set_read_timeout(Some(PROMPTLY)).unwrap();
    write!(
        stream,
        "GET /other HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let (status, headers, body) = read_response(&mut stream, false).unwrap();
    assert_eq!((status, text(&body)), (404, "Not Found"));
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .expect("the gateway closes the connection");
    assert!(rest.is_empty(), "{rest:?}");
    let root = ui_root();
    let with_ui = Served::start(
        Auth::None,
        HttpOptions {
            websocket_paths: WebSocketPaths::Only(vec!["/".into()]),
            control_ui: Some(ControlUiOptions {
                base_path: "/ui".into(),
                ..ControlUiOptions::new(root.path())
            }),
            ..HttpOptions::default()
        },
    );
    for (path, status) in [
        ("/", 101),
        ("/ui", 101),
        ("/ui/", 101),
        ("/ui/x", 404),
        ("/other", 404),
    ] {
        assert_eq!(upgrade_status(with_ui.port, path), status, "{path}");
    }
}
