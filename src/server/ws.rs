//! The WebSocket endpoint at `/` (SPEC §9): upgrade, handshake, requests, events, keepalive,
//! limits and shutdown, one reader task and one writer task per connection.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    CONNECTION, CONTENT_TYPE, HeaderMap, HeaderValue, ORIGIN, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{Request as HttpRequest, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::auth::{self, AuthFailure, AuthThrottle, Throttle};
use super::host::{ClientInfo, ConnectionEvent, Handlers, Method, MethodRequest, Responder};
use super::protocol::{self, MethodError, close};
use crate::options::{Auth, LogLevel, Logger};

/// The protocol's limits and policies. The defaults are OpenClaw's.
#[derive(Debug, Clone)]
pub struct ProtocolOptions {
    /// Origins allowed besides loopback ones (e.g. `https://app.example.com`; `*` allows all).
    pub allowed_origins: Vec<String>,
    /// No valid `connect` within this → close 1008 `handshake timeout` (default 15 s).
    pub handshake_timeout: Duration,
    /// `tick` events, and `policy.tickIntervalMs` in `hello-ok` (default 30 s).
    pub tick_interval: Duration,
    /// A ping every interval; a peer that answers nothing for a whole interval after a ping
    /// is dropped (default 30 s).
    pub ping_interval: Duration,
    /// A host method not answered within this gets `UNAVAILABLE` (default 30 s).
    pub request_timeout: Duration,
    /// WebSocket connections served at once; past it a client is closed with 1013
    /// `too many connections` (default 10 000).
    pub max_connections: usize,
    /// Bytes a client may send before it is authenticated (default 64 KiB).
    pub max_preauth_payload: usize,
    /// The largest frame after the handshake (default 25 MiB).
    pub max_payload: usize,
    /// Unsent bytes a client may have queued before it is closed as a slow consumer
    /// (default 50 MiB).
    pub max_buffered_bytes: usize,
    /// Throttling of wrong secrets per peer address.
    pub auth_throttle: AuthThrottle,
    /// `server.version` in `hello-ok` (default this crate's version).
    pub server_version: String,
}

impl Default for ProtocolOptions {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            handshake_timeout: Duration::from_secs(15),
            tick_interval: Duration::from_secs(30),
            ping_interval: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_preauth_payload: 64 * 1024,
            max_payload: 25 * 1024 * 1024,
            max_buffered_bytes: 50 * 1024 * 1024,
            auth_throttle: AuthThrottle::default(),
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// How long a closing connection waits for the peer's close frame before it is dropped.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// The largest WebSocket frame header (2 + 8 length + 4 mask bytes).
const MAX_FRAME_HEADER: usize = 14;
/// Frames the writer hands to the socket before one flush.
const WRITE_BATCH: usize = 64;

const BUILTIN_EVENTS: [&str; 4] = ["connect.challenge", "tick", "health", "shutdown"];

/// Everything the WebSocket side of one gateway shares: the connections, pending host
/// requests, the health snapshot, the auth throttle.
pub(crate) struct Hub {
    options: ProtocolOptions,
    auth: Auth,
    loopback: bool,
    handlers: Handlers,
    methods: HashMap<String, Method>,
    method_names: Vec<String>,
    event_names: Vec<String>,
    logger: Logger,
    started: Instant,
    conns: RwLock<HashMap<u64, Arc<Conn>>>,
    open: AtomicUsize,
    closing: AtomicBool,
    next_conn: AtomicU64,
    next_request: AtomicU64,
    /// Held while a broadcast takes its `seq` and fans out, so every client sees them in order.
    broadcast_seq: Mutex<u64>,
    pending: Mutex<PendingRequests>,
    health: RwLock<(Option<Value>, u64)>,
    throttle: Throttle,
}

#[derive(Default)]
struct PendingRequests {
    by_id: HashMap<u64, Pending>,
    /// Deadlines in the order they were set (all requests have the same timeout).
    deadlines: VecDeque<(Instant, u64)>,
}

struct Pending {
    conn: u64,
    frame_id: Value,
    method: String,
}

impl Hub {
    pub(crate) fn new(
        options: ProtocolOptions,
        handlers: Handlers,
        auth: Auth,
        loopback: bool,
        logger: Logger,
    ) -> Arc<Self> {
        let methods = handlers.lookup();
        let mut method_names = vec!["health".to_owned()];
        method_names.extend(
            handlers
                .methods
                .iter()
                .map(|(name, _)| name.clone())
                .filter(|name| name != "health"),
        );
        let mut event_names: Vec<String> = BUILTIN_EVENTS.iter().map(|e| e.to_string()).collect();
        event_names.extend(
            handlers
                .events
                .iter()
                .filter(|e| !BUILTIN_EVENTS.contains(&e.as_str()))
                .cloned(),
        );
        let throttle = Throttle::new(options.auth_throttle);
        Arc::new(Self {
            options,
            auth,
            loopback,
            handlers,
            methods,
            method_names,
            event_names,
            logger,
            started: Instant::now(),
            conns: RwLock::new(HashMap::new()),
            open: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
            next_request: AtomicU64::new(1),
            broadcast_seq: Mutex::new(0),
            pending: Mutex::new(PendingRequests::default()),
            health: RwLock::new((None, 0)),
            throttle,
        })
    }

    /// Starts the ticks, the keepalive and the request timeouts on the current runtime.
    pub(crate) fn start(self: &Arc<Self>) {
        let hub = Arc::downgrade(self);
        let period = self.options.tick_interval.max(Duration::from_millis(1));
        tokio::spawn(every(hub.clone(), period, |hub| {
            hub.broadcast("tick", &json!({ "ts": protocol::now_ms() }));
        }));
        let period = self.options.ping_interval.max(Duration::from_millis(1));
        tokio::spawn(every(hub.clone(), period, Hub::keepalive));
        let period = (self.options.request_timeout / 10)
            .clamp(Duration::from_millis(5), Duration::from_millis(500));
        tokio::spawn(every(hub, period, Hub::expire_requests));
    }

    /// SPEC §9.10: `shutdown` to every client, then close 1012 `service restart`. New
    /// upgrades are refused from here on.
    pub(crate) fn shutdown(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let frame = {
            let mut seq = self.lock_seq();
            *seq += 1;
            Utf8Bytes::from(protocol::event(
                "shutdown",
                &json!({ "reason": "gateway stopping" }),
                Some(*seq),
            ))
        };
        for conn in self.snapshot() {
            if conn.authenticated.load(Ordering::Acquire) {
                conn.push_text(frame.clone(), true);
            }
            conn.close(close::SERVICE_RESTART, "service restart");
        }
    }

    fn lock_seq(&self) -> std::sync::MutexGuard<'_, u64> {
        self.broadcast_seq.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn snapshot(&self) -> Vec<Arc<Conn>> {
        let conns = self.conns.read().unwrap_or_else(|e| e.into_inner());
        conns.values().cloned().collect()
    }

    fn conn(&self, id: u64) -> Option<Arc<Conn>> {
        let conns = self.conns.read().unwrap_or_else(|e| e.into_inner());
        conns.get(&id).cloned()
    }

    /// WebSocket connections open now (authenticated or not).
    pub(crate) fn connection_count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// An event with a `seq` to every authenticated client.
    pub(crate) fn broadcast(&self, event: &str, payload: &Value) {
        let conns = self.snapshot();
        let mut seq = self.lock_seq();
        *seq += 1;
        let frame = Utf8Bytes::from(protocol::event(event, payload, Some(*seq)));
        for conn in conns {
            if conn.authenticated.load(Ordering::Acquire) {
                conn.push_text(frame.clone(), false);
            }
        }
    }

    /// An event to one authenticated client; `false` when there is no such client.
    pub(crate) fn send_event(&self, conn_id: u64, event: &str, payload: &Value) -> bool {
        match self.conn(conn_id) {
            Some(conn) if conn.authenticated.load(Ordering::Acquire) => {
                conn.push_text(protocol::event(event, payload, None).into(), false)
            }
            _ => false,
        }
    }

    /// Answers a host request; `false` when it was already answered or timed out.
    pub(crate) fn respond(&self, request_id: u64, result: Result<Value, MethodError>) -> bool {
        let pending = {
            let mut table = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            table.by_id.remove(&request_id)
        };
        let Some(pending) = pending else {
            return false;
        };
        match self.conn(pending.conn) {
            Some(conn) => conn.push_text(protocol::res(&pending.frame_id, &result).into(), false),
            None => false,
        }
    }

    /// The host's health snapshot, answered by `health` and broadcast as a `health` event.
    pub(crate) fn set_health(&self, snapshot: Value) {
        {
            let mut health = self.health.write().unwrap_or_else(|e| e.into_inner());
            health.0 = Some(snapshot.clone());
            health.1 += 1;
        }
        self.broadcast("health", &snapshot);
    }

    fn health(&self) -> Value {
        let health = self.health.read().unwrap_or_else(|e| e.into_inner());
        match &health.0 {
            Some(snapshot) => snapshot.clone(),
            None => json!({ "ok": true, "ts": protocol::now_ms(), "durationMs": 0 }),
        }
    }

    fn keepalive(&self) {
        for conn in self.snapshot() {
            let heard = conn.heard.swap(false, Ordering::AcqRel);
            if !heard && conn.pinged.load(Ordering::Acquire) {
                self.logger.log(
                    LogLevel::Debug,
                    &format!("conn {}: no pong, dropping a dead peer", conn.id),
                );
                conn.kill();
            } else {
                conn.pinged.store(true, Ordering::Release);
                let _ = conn.tx.send(Out::Ping);
            }
        }
    }

    fn expire_requests(&self) {
        let now = Instant::now();
        let expired: Vec<Pending> = {
            let mut table = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let mut expired = Vec::new();
            while let Some(&(deadline, id)) = table.deadlines.front() {
                if deadline > now {
                    break;
                }
                table.deadlines.pop_front();
                if let Some(pending) = table.by_id.remove(&id) {
                    expired.push(pending);
                }
            }
            expired
        };
        let ms = self.options.request_timeout.as_millis();
        for pending in expired {
            let error = MethodError::unavailable(format!(
                "{} got no answer from the host within {ms} ms",
                pending.method
            ))
            .with_retry(true, None);
            if let Some(conn) = self.conn(pending.conn) {
                conn.push_text(protocol::res(&pending.frame_id, &Err(error)).into(), false);
            }
        }
    }

    /// Answers an upgrade request at `/` (101, or 426/400 when it is not a proper one) and
    /// serves the connection on its own task.
    pub(crate) fn accept(
        self: &Arc<Self>,
        request: &mut HttpRequest<Incoming>,
        peer: SocketAddr,
        open: mpsc::Sender<()>,
    ) -> Response<Full<Bytes>> {
        let headers = request.headers();
        if !(has_token(headers, &UPGRADE, "websocket")
            && has_token(headers, &CONNECTION, "upgrade"))
        {
            let mut response = text(StatusCode::UPGRADE_REQUIRED, "Upgrade Required");
            response
                .headers_mut()
                .insert(UPGRADE, HeaderValue::from_static("websocket"));
            return response;
        }
        let key = headers
            .get(SEC_WEBSOCKET_KEY)
            .map(|k| k.as_bytes().to_vec());
        let version_ok = headers
            .get(SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
        let (Some(key), true, &hyper::Method::GET) = (key, version_ok, request.method()) else {
            let mut response = text(StatusCode::BAD_REQUEST, "Bad WebSocket upgrade request");
            response
                .headers_mut()
                .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            return response;
        };
        let origin = headers
            .get(ORIGIN)
            .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned());
        let on_upgrade = hyper::upgrade::on(request);
        let refused = self.open.fetch_add(1, Ordering::AcqRel) >= self.options.max_connections;
        let slot = Slot(Arc::clone(self));
        if refused {
            self.logger.log(
                LogLevel::Warn,
                &format!(
                    "refusing a WebSocket client from {peer}: {} connections open (max_connections)",
                    self.options.max_connections
                ),
            );
        }
        let hub = Arc::clone(self);
        tokio::spawn(async move {
            let _slot = slot;
            let _open = open;
            hub.serve(on_upgrade, peer, origin, refused).await;
        });
        let mut response = Response::new(Full::default());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(
            SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&derive_accept_key(&key)).expect("base64 is a header value"),
        );
        response
    }

    async fn serve(
        self: Arc<Self>,
        on_upgrade: OnUpgrade,
        peer: SocketAddr,
        origin: Option<String>,
        refused: bool,
    ) {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let budget = Arc::new(ReadBudget::new(
            self.options.max_preauth_payload + MAX_FRAME_HEADER,
        ));
        let io = Metered {
            inner: TokioIo::new(upgraded),
            budget: Arc::clone(&budget),
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(64 * 1024)
            .max_message_size(Some(self.options.max_payload))
            .max_frame_size(Some(self.options.max_payload));
        let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        let (sink, stream) = socket.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn {
            id: self.next_conn.fetch_add(1, Ordering::Relaxed),
            tx,
            buffered: AtomicUsize::new(0),
            max_buffered: self.options.max_buffered_bytes,
            authenticated: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
            heard: AtomicBool::new(false),
            pinged: AtomicBool::new(false),
        });
        let writer = tokio::spawn(write_loop(sink, rx, Arc::clone(&conn)));
        if refused {
            conn.close(close::TRY_AGAIN_LATER, "too many connections");
        } else {
            self.conns
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(conn.id, Arc::clone(&conn));
            // Registered first, then checked: a shutdown that began in between still sees us.
            if self.closing.load(Ordering::SeqCst) {
                conn.close(close::SERVICE_RESTART, "service restart");
            } else {
                let challenge = json!({
                    "nonce": uuid::Uuid::new_v4().to_string(),
                    "ts": protocol::now_ms(),
                });
                conn.push_text(
                    protocol::event("connect.challenge", &challenge, None).into(),
                    false,
                );
            }
        }
        let mut session = Session {
            hub: Arc::clone(&self),
            conn: Arc::clone(&conn),
            peer,
            origin,
            budget,
            client: None,
            closing: refused,
        };
        session.run(stream, writer).await;
        self.conns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn.id);
        conn.kill();
        if let Some(client) = session.client {
            self.handlers.notify(&ConnectionEvent::Closed(client));
        }
    }
}

/// Counts a WebSocket connection until its task ends.
struct Slot(Arc<Hub>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn every(hub: Weak<Hub>, period: Duration, mut action: impl FnMut(&Hub)) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(hub) = hub.upgrade() else {
            return;
        };
        if hub.closing.load(Ordering::Acquire) {
            return;
        }
        action(&hub);
    }
}

fn has_token(headers: &HeaderMap, name: &hyper::header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// What the writer task sends, in order.
enum Out {
    Text(Utf8Bytes),
    Ping,
    Close(u16, String),
}

/// One connection as the rest of the gateway sees it: a queue to its writer, with the unsent
/// bytes counted so a slow consumer is cut off instead of growing our memory.
struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<Out>,
    buffered: AtomicUsize,
    max_buffered: usize,
    authenticated: AtomicBool,
    killed: AtomicBool,
    kill: Notify,
    /// Something arrived since the last keepalive round.
    heard: AtomicBool,
    pinged: AtomicBool,
}

impl Conn {
    /// Queues a text frame; past `max_buffered` unsent bytes the connection is dropped
    /// (`force` is for the last frames of a shutdown).
    fn push_text(&self, text: Utf8Bytes, force: bool) -> bool {
        if self.killed.load(Ordering::Acquire) {
            return false;
        }
        let len = text.len();
        let queued = self.buffered.fetch_add(len, Ordering::AcqRel) + len;
        if queued > self.max_buffered && !force {
            self.kill();
            return false;
        }
        self.tx.send(Out::Text(text)).is_ok()
    }

    fn close(&self, code: u16, reason: &str) {
        let _ = self
            .tx
            .send(Out::Close(code, protocol::close_reason(reason)));
    }

    /// Stops the writer at once (slow consumer, dead peer, connection over).
    fn kill(&self) {
        if !self.killed.swap(true, Ordering::AcqRel) {
            self.kill.notify_one();
        }
    }
}

type Sink = SplitSink<WebSocketStream<Metered>, Message>;

enum WriterEnd {
    /// A close frame went out; the reader waits a little for the peer's. The sink comes back
    /// so that the socket can be drained when tungstenite can no longer read it.
    CloseSent(Sink),
    /// Killed, the peer is gone, or the queue closed.
    Gone,
}

async fn write_loop(
    mut sink: Sink,
    mut rx: mpsc::UnboundedReceiver<Out>,
    conn: Arc<Conn>,
) -> WriterEnd {
    loop {
        let first = tokio::select! {
            biased;
            _ = conn.kill.notified() => return WriterEnd::Gone,
            out = rx.recv() => match out {
                Some(out) => out,
                None => return WriterEnd::Gone,
            },
        };
        let write = async {
            let mut next = Some(first);
            let mut written = 0;
            let mut frames = 0;
            while let Some(out) = next.take() {
                match out {
                    Out::Text(text) => {
                        written += text.len();
                        sink.feed(Message::Text(text)).await?;
                    }
                    Out::Ping => sink.feed(Message::Ping(Bytes::new())).await?,
                    Out::Close(code, reason) => {
                        sink.send(Message::Close(Some(CloseFrame {
                            code: CloseCode::from(code),
                            reason: reason.into(),
                        })))
                        .await?;
                        return Ok::<_, WsError>((written, true));
                    }
                }
                frames += 1;
                if frames < WRITE_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            sink.flush().await?;
            Ok((written, false))
        };
        let result = tokio::select! {
            biased;
            _ = conn.kill.notified() => return WriterEnd::Gone,
            result = write => result,
        };
        match result {
            Ok((written, closed)) => {
                conn.buffered.fetch_sub(written, Ordering::AcqRel);
                if closed {
                    return WriterEnd::CloseSent(sink);
                }
            }
            Err(_) => return WriterEnd::Gone,
        }
    }
}

/// The reader side of one connection: the handshake, then requests.
struct Session {
    hub: Arc<Hub>,
    conn: Arc<Conn>,
    peer: SocketAddr,
    origin: Option<String>,
    budget: Arc<ReadBudget>,
    client: Option<Arc<ClientInfo>>,
    closing: bool,
}

impl Session {
    async fn run(
        &mut self,
        mut stream: SplitStream<WebSocketStream<Metered>>,
        mut writer: tokio::task::JoinHandle<WriterEnd>,
    ) {
        let deadline = tokio::time::sleep(if self.closing {
            CLOSE_LINGER
        } else {
            self.hub.options.handshake_timeout
        });
        tokio::pin!(deadline);
        let mut writer_done = false;
        let mut returned_sink = None;
        let mut read_failed = false;
        loop {
            tokio::select! {
                biased;
                end = &mut writer, if !writer_done => {
                    writer_done = true;
                    match end {
                        Ok(WriterEnd::CloseSent(sink)) => {
                            returned_sink = Some(sink);
                            if !self.closing {
                                self.closing = true;
                                deadline.as_mut().reset(tokio::time::Instant::now() + CLOSE_LINGER);
                            }
                        }
                        _ => break,
                    }
                }
                _ = &mut deadline => {
                    if self.closing {
                        break;
                    }
                    // Only armed before the handshake completes.
                    self.fail(None, close::POLICY_VIOLATION, "handshake timeout");
                    deadline.as_mut().reset(tokio::time::Instant::now() + CLOSE_LINGER);
                }
                message = stream.next() => {
                    let Some(message) = message else { break };
                    let message = match message {
                        Ok(message) => message,
                        Err(err) => {
                            if self.closing || !self.read_error(&err) {
                                break;
                            }
                            read_failed = true;
                            deadline.as_mut().reset(tokio::time::Instant::now() + CLOSE_LINGER);
                            continue;
                        }
                    };
                    self.conn.heard.store(true, Ordering::Release);
                    if self.closing {
                        continue;
                    }
                    let was_open = self.client.is_some();
                    self.on_message(message);
                    if self.closing {
                        deadline.as_mut().reset(tokio::time::Instant::now() + CLOSE_LINGER);
                    } else if !was_open && self.client.is_some() {
                        // Authenticated: no handshake deadline any more.
                        deadline.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(86400 * 365));
                    }
                }
            }
        }
        // A close we queued goes out before the socket does.
        if !writer_done {
            if self.closing && returned_sink.is_none() {
                match tokio::time::timeout(CLOSE_LINGER, &mut writer).await {
                    Ok(Ok(WriterEnd::CloseSent(sink))) => returned_sink = Some(sink),
                    _ => writer.abort(),
                }
            } else {
                writer.abort();
            }
        }
        // After a read error tungstenite reads no more: end our side and drain the peer's
        // unread bytes, so it gets the close frame rather than a reset.
        if let (true, Some(sink)) = (read_failed, returned_sink)
            && let Ok(mut socket) = stream.reunite(sink)
        {
            let io = socket.get_mut();
            let _ = tokio::time::timeout(CLOSE_LINGER, async {
                let _ = io.shutdown().await;
                let mut buf = [0u8; 4096];
                while let Ok(1..) = io.read(&mut buf).await {}
            })
            .await;
        }
    }

    /// A read error: a frame over the limit is answered with 1009 (`true`); anything else
    /// ends the connection (`false`).
    fn read_error(&mut self, err: &WsError) -> bool {
        let too_big = match err {
            WsError::Capacity(_) => true,
            WsError::Io(io) => io.get_ref().is_some_and(|e| e.is::<PreauthLimit>()),
            _ => false,
        };
        if !too_big {
            return false;
        }
        // Whatever else the peer sends is read and dropped, never buffered.
        self.budget.discard.store(true, Ordering::Release);
        let reason = if self.client.is_some() {
            "payload too large"
        } else {
            "preauth payload too large"
        };
        self.fail(None, close::TOO_BIG, reason);
        true
    }

    /// Answers `id` with `error` (when there is a request to answer), then closes.
    fn fail(&mut self, answer: Option<(&Value, MethodError)>, code: u16, reason: &str) {
        if let Some((id, error)) = answer {
            self.conn
                .push_text(protocol::res(id, &Err(error)).into(), true);
        }
        self.conn.close(code, reason);
        self.closing = true;
    }

    fn on_message(&mut self, message: Message) {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                if self.client.is_none() {
                    self.fail(None, close::POLICY_VIOLATION, "invalid request frame");
                } else {
                    let error = MethodError::invalid_request(
                        "invalid request frame: binary frames are not supported",
                    );
                    self.answer(&Value::from("invalid"), Err(error));
                }
                return;
            }
            // Pings are answered by tungstenite; pongs only prove the peer alive.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return,
            Message::Close(_) => {
                self.closing = true;
                return;
            }
        };
        match self.client.clone() {
            None => self.handshake(text.as_str()),
            Some(client) => self.request(text.as_str(), client),
        }
    }

    fn answer(&self, id: &Value, result: Result<Value, MethodError>) {
        self.conn
            .push_text(protocol::res(id, &result).into(), false);
    }

    /// SPEC §9.3–9.7.
    fn handshake(&mut self, text: &str) {
        let Ok(frame) = protocol::parse_request(text) else {
            self.fail(None, close::POLICY_VIOLATION, "invalid request frame");
            return;
        };
        if frame.method != "connect" {
            let message = "invalid handshake: first request must be connect";
            let error = MethodError::invalid_request(message);
            self.fail(Some((&frame.id, error)), close::POLICY_VIOLATION, message);
            return;
        }
        let params = match protocol::parse_connect(frame.params.as_ref()) {
            Ok(params) => params,
            Err(why) => {
                let message = format!("invalid connect params: {why}");
                let error = MethodError::invalid_request(message.clone());
                self.fail(Some((&frame.id, error)), close::POLICY_VIOLATION, &message);
                return;
            }
        };
        if !protocol::protocol_accepted(&params) {
            let error = protocol::protocol_mismatch(&params);
            self.fail(
                Some((&frame.id, error)),
                close::PROTOCOL_ERROR,
                "protocol mismatch",
            );
            return;
        }
        let role = params.role.clone().unwrap_or_else(|| "operator".into());
        if role != "operator" && role != "node" {
            let error = MethodError::invalid_request("invalid role");
            self.fail(
                Some((&frame.id, error)),
                close::POLICY_VIOLATION,
                "invalid role",
            );
            return;
        }
        if let Some(origin) = &self.origin {
            let options = &self.hub.options;
            let allowed = protocol::origin_listed(&options.allowed_origins, origin)
                || (self.hub.loopback && protocol::is_loopback_origin(origin));
            if !allowed {
                let error = MethodError::invalid_request("origin not allowed")
                    .with_details(json!({ "code": "CONTROL_UI_ORIGIN_NOT_ALLOWED" }));
                self.fail(
                    Some((&frame.id, error)),
                    close::POLICY_VIOLATION,
                    "origin not allowed",
                );
                return;
            }
        }
        let ip = self.peer.ip();
        let checked = match self.hub.throttle.locked(ip) {
            Some(retry_after) if self.hub.auth != Auth::None => {
                Err(AuthFailure::RateLimited { retry_after })
            }
            _ => auth::check(
                &self.hub.auth,
                params.token.as_deref(),
                params.password.as_deref(),
            ),
        };
        if let Err(failure) = checked {
            if matches!(failure, AuthFailure::Mismatch(_)) {
                self.hub.throttle.failed(ip);
            }
            let error = failure.error();
            let reason = error.message.clone();
            self.fail(Some((&frame.id, error)), close::POLICY_VIOLATION, &reason);
            return;
        }
        if self.hub.auth != Auth::None {
            self.hub.throttle.succeeded(ip);
        }
        let client = Arc::new(ClientInfo {
            conn_id: self.conn.id,
            client: params.client,
            role,
            scopes: params.scopes,
            protocol: protocol::PROTOCOL_VERSION,
            peer: self.peer,
            origin: self.origin.clone(),
        });
        self.budget.unlimit();
        self.answer(&frame.id, Ok(self.hello(&client)));
        // After hello-ok is queued, so no event can overtake it.
        self.conn.authenticated.store(true, Ordering::Release);
        self.client = Some(Arc::clone(&client));
        self.hub.handlers.notify(&ConnectionEvent::Opened(client));
    }

    fn hello(&self, client: &ClientInfo) -> Value {
        let hub = &self.hub;
        let (health, health_version) = {
            let health = hub.health.read().unwrap_or_else(|e| e.into_inner());
            (health.0.clone().unwrap_or_else(|| json!({})), health.1)
        };
        json!({
            "type": "hello-ok",
            "protocol": protocol::PROTOCOL_VERSION,
            "server": {
                "version": hub.options.server_version,
                "connId": client.conn_id.to_string(),
            },
            "features": { "methods": hub.method_names, "events": hub.event_names },
            "snapshot": {
                "presence": [],
                "health": health,
                "stateVersion": { "presence": 0, "health": health_version },
                "uptimeMs": hub.started.elapsed().as_millis() as u64,
            },
            "auth": { "role": client.role, "scopes": client.scopes },
            "policy": {
                "maxPayload": hub.options.max_payload,
                "maxBufferedBytes": hub.options.max_buffered_bytes,
                "tickIntervalMs": hub.options.tick_interval.as_millis() as u64,
            },
        })
    }

    /// SPEC §9.8–9.9: one request after the handshake.
    fn request(&mut self, text: &str, client: Arc<ClientInfo>) {
        let frame = match protocol::parse_request(text) {
            Ok(frame) => frame,
            Err(invalid) => {
                let error =
                    MethodError::invalid_request(format!("invalid request frame: {}", invalid.why));
                self.answer(&invalid.id, Err(error));
                return;
            }
        };
        let hub = Arc::clone(&self.hub);
        let Some(method) = hub.methods.get(&frame.method) else {
            let result = match frame.method.as_str() {
                "health" => Ok(hub.health()),
                "connect" => Err(MethodError::invalid_request(
                    "connect is only valid as the first request",
                )),
                _ if !protocol::scope_granted(&client.scopes, protocol::ADMIN_SCOPE) => {
                    Err(protocol::missing_scope(protocol::ADMIN_SCOPE))
                }
                method => Err(protocol::unknown_method(method)),
            };
            self.answer(&frame.id, result);
            return;
        };
        if let Some(scope) = &method.scope
            && !protocol::scope_granted(&client.scopes, scope)
        {
            self.answer(&frame.id, Err(protocol::missing_scope(scope)));
            return;
        }
        let id = hub.next_request.fetch_add(1, Ordering::Relaxed);
        {
            let mut table = hub.pending.lock().unwrap_or_else(|e| e.into_inner());
            table.by_id.insert(
                id,
                Pending {
                    conn: self.conn.id,
                    frame_id: frame.id,
                    method: frame.method.clone(),
                },
            );
            let deadline = Instant::now() + hub.options.request_timeout;
            table.deadlines.push_back((deadline, id));
        }
        let request = MethodRequest {
            id,
            method: frame.method,
            params: frame.params.unwrap_or(Value::Null),
            client,
        };
        let responder = Responder {
            id,
            hub: Arc::downgrade(&hub),
        };
        let handler = Arc::clone(&method.handler);
        if std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(request, responder))).is_err()
        {
            hub.respond(
                id,
                Err(MethodError::unavailable("the method handler failed")),
            );
        }
    }
}

/// Marks the read error of a client that sent more than `max_preauth_payload` before it
/// authenticated.
#[derive(Debug)]
struct PreauthLimit;

impl std::fmt::Display for PreauthLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("preauth payload too large")
    }
}

impl std::error::Error for PreauthLimit {}

/// Bytes a connection may still read before it authenticates; `discard` drains the socket
/// without keeping anything once a limit was hit and the close frame is on its way.
struct ReadBudget {
    remaining: AtomicUsize,
    discard: AtomicBool,
}

impl ReadBudget {
    fn new(limit: usize) -> Self {
        Self {
            remaining: AtomicUsize::new(limit),
            discard: AtomicBool::new(false),
        }
    }

    fn unlimit(&self) {
        self.remaining.store(usize::MAX, Ordering::Release);
    }
}

/// The upgraded connection, with the pre-auth byte budget enforced under tungstenite, where
/// it bounds memory before a frame is assembled.
struct Metered {
    inner: TokioIo<Upgraded>,
    budget: Arc<ReadBudget>,
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.budget.discard.load(Ordering::Acquire) {
            let mut scratch = [0u8; 4096];
            loop {
                let mut sink = ReadBuf::new(&mut scratch);
                ready!(Pin::new(&mut self.inner).poll_read(cx, &mut sink))?;
                if sink.filled().is_empty() {
                    return Poll::Ready(Ok(()));
                }
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        let remaining = self.budget.remaining.load(Ordering::Acquire);
        if remaining != usize::MAX {
            if read > remaining {
                self.budget.remaining.store(0, Ordering::Release);
                return Poll::Ready(Err(io::Error::other(PreauthLimit)));
            }
            self.budget
                .remaining
                .store(remaining - read, Ordering::Release);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
