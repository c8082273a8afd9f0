//! The gateway's server: HTTP probes and the WebSocket protocol at `/`, on a tokio
//! runtime the gateway owns, with a bounded graceful shutdown (SPEC §7).

mod auth;
mod device;
mod http;
mod lifecycle;
mod locality;
mod pairing;
mod presence;
mod probes;
mod protocol;
mod rate_limit;
pub(crate) mod response;
mod scopes;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

pub use auth::AuthThrottle;
pub use http::HttpAuthMethod;
pub use http::{
    Body, BodyError, BodySendError, BodyWriter, ControlUiBuildSource, ControlUiOptions,
    DEFAULT_MAX_BODY_BYTES, HttpHandler, HttpOptions, HttpRequest, HttpRoute, HttpRoutes,
    RequestBody, ResponseFuture, RouteAuth, RouteMatch, WebSocketPaths,
};
pub use lifecycle::{GatewayState, ShutdownReport, StateHandler};
pub use pairing::{
    BOOTSTRAP_TOKEN_TTL_MS, BootstrapProfile, DEVICE_STORE_FILE, DefaultPairingPolicy, Locality,
    PAIRING_REQUEST_TTL_MS, PairedDevice, PairingContext, PairingDecision, PairingError,
    PairingOptions, PairingPolicy, PairingReason, PairingRequest, silent_local_approval,
};
pub use pairing::{MAX_PENDING, MAX_PENDING_PER_IP};
pub use probes::Phase;
pub use protocol::{MethodError, PROTOCOL_VERSION};
pub use ws::{
    ClientInfo, ConnectionEvent, GatewayHandle, Handlers, HealthSource, MethodHandler,
    MethodRequest, ProtocolOptions, Responder,
};

use crate::error::GatewayLockError;
use crate::lock::GatewayLock;
use crate::options::{LogLevel, Logger};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Tokio worker threads (default: the number of cores, at most 4).
    pub worker_threads: usize,
    /// The shutdown timeout used when a [`Gateway`] is dropped without `shutdown`.
    pub drop_timeout: Duration,
    /// Where the gateway logs from `serve` on, its lock's re-check included (default: the
    /// logger of the lock's options).
    pub logger: Option<Logger>,
    /// Told when the gateway is ready, loses its lock, and stops. Replaces any
    /// [`GatewayLock::on_lost`] handler set before `serve`.
    pub on_state: Option<StateHandler>,
    /// The WebSocket protocol's limits and policies (SPEC §9).
    pub protocol: ProtocolOptions,
    /// The host's methods, events and connection observer.
    pub handlers: Handlers,
    /// Who pairs without being asked, and where paired devices are kept (SPEC §11.5).
    pub pairing: PairingOptions,
    /// HTTP on the gateway port: the host's routes, the Control UI, upgrade paths, limits
    /// (SPEC §13).
    pub http: HttpOptions,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            worker_threads: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(4),
            drop_timeout: Duration::from_secs(5),
            logger: None,
            on_state: None,
            protocol: ProtocolOptions::default(),
            handlers: Handlers::default(),
            pairing: PairingOptions::default(),
            http: HttpOptions::default(),
        }
    }
}

impl ServeOptions {
    /// Says which option `Gateway::serve` would refuse: no worker thread, a zero timeout or
    /// interval, an HTTP timeout over a day, a zero connection cap or size limit, a relative
    /// device store path, a build id over 96 characters, an empty capability, a
    /// `Strict-Transport-Security` that is not a header value, a WebSocket path without its
    /// leading `/`. The C ABI checks its setters with it.
    pub fn validate(&self) -> Result<(), GatewayLockError> {
        self.pairing
            .validate()
            .map_err(GatewayLockError::InvalidOption)?;
        self.http
            .validate()
            .map_err(GatewayLockError::InvalidOption)?;
        let protocol = &self.protocol;
        let zero = [
            ("worker_threads", self.worker_threads == 0),
            ("handshake_timeout", protocol.handshake_timeout.is_zero()),
            ("tick_interval", protocol.tick_interval.is_zero()),
            ("ping_interval", protocol.ping_interval.is_zero()),
            ("request_timeout", protocol.request_timeout.is_zero()),
            (
                "health_refresh_interval",
                protocol.health_refresh_interval.is_zero(),
            ),
            ("max_connections", protocol.max_connections == 0),
            ("max_preauth_payload", protocol.max_preauth_payload == 0),
            ("max_payload", protocol.max_payload == 0),
            ("max_buffered_bytes", protocol.max_buffered_bytes == 0),
            ("http.header_timeout", self.http.header_timeout.is_zero()),
            (
                "http.body_idle_timeout",
                self.http.body_idle_timeout.is_zero(),
            ),
            ("http.max_connections", self.http.max_connections == 0),
            ("http.max_header_bytes", self.http.max_header_bytes == 0),
        ];

        if let Some(build_id) = &protocol.build_id
            && build_id.chars().count() > 96
        {
            return Err(GatewayLockError::InvalidOption(format!(
                "build_id is {} characters long: OpenClaw clients accept at most 96",
                build_id.chars().count()
            )));
        }
        for (name, list) in [
            ("capabilities", &protocol.capabilities),
            ("challenge_capabilities", &protocol.challenge_capabilities),
        ] {
            if list.iter().any(String::is_empty) {
                return Err(GatewayLockError::InvalidOption(format!(
                    "{name} has an empty entry: name each capability, or leave it out"
                )));
            }
        }
        match zero.iter().find(|(_, is_zero)| *is_zero) {
            Some((name, _)) => Err(GatewayLockError::InvalidOption(format!(
                "{name} is 0: give it a value of at least 1 (or leave the default)"
            ))),
            None => Ok(()),
        }
    }
}

/// hyper's smallest read buffer.
const MIN_READ_BUFFER: usize = 8192;

struct Shared {
    phase: AtomicU8,
    logger: Logger,
    ws: Arc<ws::Endpoint>,
    http: HttpOptions,
    /// The Control UI mount, prepared at `serve` (SPEC §13.3).
    control_ui: Option<http::ControlUi>,
    /// Cluster mode: the leader's fence (issue 14).
    fence: Option<Arc<crate::cluster::Fence>>,
    /// Set when the host stops the gateway: the resignation that follows is no loss to report.
    stopping: AtomicBool,
}

impl Shared {
    /// The phase the probes report: in cluster mode, a gateway that may no longer lead is
    /// draining, whatever its server thread has got round to.
    fn phase(&self) -> Phase {
        let phase = Phase::from_u8(self.phase.load(Ordering::Acquire));
        match &self.fence {
            Some(fence) if phase == Phase::Ready && !fence.holds() => Phase::Draining,
            _ => phase,
        }
    }

    /// False in cluster mode once this gateway may no longer act as leader.
    fn leads(&self) -> bool {
        self.fence.as_ref().is_none_or(|fence| fence.holds())
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }
}

/// A running gateway: it holds the lock and serves on its listener(s) until `shutdown` (or
/// drop). Any thread may call its methods.
pub struct Gateway {
    port: u16,
    addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    handle: GatewayHandle,
    running: Option<Running>,
    drop_timeout: Duration,
    on_state: Option<StateHandler>,
}

struct Running {
    lock: GatewayLock,
    /// `Some(timeout)` asks the server to stop, draining connections for at most `timeout`.
    stop: watch::Sender<Option<Duration>>,
    listeners_closed: std_mpsc::Receiver<()>,
    /// Yields whether every connection finished within the drain timeout.
    thread: JoinHandle<bool>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("port", &self.port)
            .field("addrs", &self.addrs)
            .field("phase", &self.shared.phase())
            .finish()
    }
}

impl Gateway {
    /// Serves on the lock's listener(s) and returns once ready (`/readyz` answers 200). The
    /// gateway owns the lock from here on; on failure the lock is released.
    pub fn serve(lock: GatewayLock, options: ServeOptions) -> Result<Self, GatewayLockError> {
        Self::serve_announcing(lock, options, |_| {})
    }

    /// [`serve`](Self::serve), giving `announce` the gateway's handle before any client can
    /// connect (the C ABI's `gw_server` needs it for callbacks that run before `serve` returns).
    pub(crate) fn serve_announcing(
        mut lock: GatewayLock,
        options: ServeOptions,
        announce: impl FnOnce(&GatewayHandle),
    ) -> Result<Self, GatewayLockError> {
        options.validate()?;
        if let Some(refused) = options
            .handlers
            .refused()
            .or_else(|| options.http.routes.refused())
        {
            return Err(GatewayLockError::InvalidOption(refused.to_owned()));
        }
        let port = lock.port();
        let addrs = lock.local_addrs();
        if let Some(logger) = &options.logger {
            lock.set_logger(logger.clone());
        }
        if let Some(on_state) = options.on_state.clone() {
            lock.on_lost(move |path| {
                on_state.notify(&GatewayState::LockLost {
                    path: path.to_path_buf(),
                })
            });
        }
        let devices = Arc::new(pairing::DeviceStore::open(
            &options.pairing.store_file(&lock.resolved().state_dir),
            lock.logger().clone(),
        )?);
        let control_ui = options
            .http
            .control_ui
            .as_ref()
            .map(|ui| {
                let auth_required = !matches!(lock.resolved().auth, crate::options::Auth::None);
                http::ControlUi::prepare(ui, &options.protocol, auth_required)
            })
            .transpose()
            .map_err(GatewayLockError::InvalidOption)?;
        let ws = ws::Endpoint::new(
            options.protocol.clone(),
            options.handlers.clone(),
            lock.resolved().auth.clone(),
            lock.logger().clone(),
            devices,
            Arc::clone(&options.pairing.policy),
            ws::StatePaths::of(lock.resolved()),
            control_ui.as_ref().map(http::ControlUi::build_source),
            lock.fence(),
        );
        let handle = ws.handle();
        announce(&handle);
        let fence = lock.fence();
        let shared = Arc::new(Shared {
            phase: AtomicU8::new(Phase::Starting as u8),
            logger: lock.logger().clone(),
            ws,
            http: options.http,
            control_ui,
            fence: fence.clone(),
            stopping: AtomicBool::new(false),
        });
        // Cluster mode: the moment the lease may lapse, stop serving *first* (`/readyz` 503,
        // every client told `shutdown` and closed 1012, no new ones), then tell the host
        // through the state callback, as a lost lock file is told.
        if let Some(fence) = &fence {
            let weak = Arc::downgrade(&shared);
            let on_state = options.on_state.clone();
            let (cluster, token) = (fence.cluster().to_owned(), fence.token());
            fence.on_fence(move |why| {
                // A stop resigns on purpose (the host hears `Stopped`), and a gateway that is
                // gone has no host to tell.
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                if shared.stopping.load(Ordering::Acquire) {
                    return;
                }
                shared.set_phase(Phase::Draining);
                shared.ws.shutdown();
                if let Some(on_state) = on_state {
                    on_state.notify(&GatewayState::LeadershipLost {
                        cluster,
                        fencing_token: token,
                        reason: why.to_owned(),
                    });
                }
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.worker_threads)
            .thread_name("gateway-worker")
            .enable_all()
            .build()
            .map_err(GatewayLockError::Runtime)?;
        let listeners = lock.take_listeners();
        let (stop, stop_rx) = watch::channel(None);
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let (closed_tx, listeners_closed) = std_mpsc::channel();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("gateway-server".into())
            .spawn(move || {
                let drained =
                    runtime.block_on(run(listeners, thread_shared, stop_rx, ready_tx, closed_tx));
                // Connections still open after the drain timeout are dropped here.
                runtime.shutdown_timeout(Duration::from_millis(100));
                drained
            })
            .map_err(GatewayLockError::Runtime)?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                let _ = thread.join();
                return Err(GatewayLockError::Runtime(err));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(GatewayLockError::Runtime(std::io::Error::other(
                    "the server thread stopped before it was ready",
                )));
            }
        }
        let gateway = Self {
            port,
            addrs,
            shared,
            handle,
            running: Some(Running {
                lock,
                stop,
                listeners_closed,
                thread,
            }),
            drop_timeout: options.drop_timeout,
            on_state: options.on_state,
        };
        if let Some(on_state) = &gateway.on_state {
            on_state.notify(&GatewayState::Ready);
        }
        Ok(gateway)
    }

    /// The port the gateway listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The addresses it listens on, primary first.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Where it is in its life cycle.
    pub fn phase(&self) -> Phase {
        self.shared.phase()
    }

    /// The lock the gateway holds (for `is_lost`, `on_lost`, paths).
    pub fn lock(&self) -> Option<&GatewayLock> {
        self.running.as_ref().map(|r| &r.lock)
    }

    /// Talks to this gateway's WebSocket clients from any thread: events, deferred answers,
    /// the health snapshot, the connection count. Clone it to hand it to another thread.
    pub fn handle(&self) -> &GatewayHandle {
        &self.handle
    }

    /// Stops accepting, closes every listener, lets open connections finish for at most
    /// `timeout`, then releases the lock. When it returns the port can be bound again and no
    /// lock file of ours remains. The report says whether the connections drained in time.
    pub fn shutdown(mut self, timeout: Duration) -> ShutdownReport {
        ShutdownReport {
            drained: self.stop(timeout),
        }
    }

    fn stop(&mut self, timeout: Duration) -> bool {
        let Some(running) = self.running.take() else {
            return true;
        };
        let started = Instant::now();
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.set_phase(Phase::Draining);
        let _ = running.stop.send(Some(timeout));
        // The listeners close at once; only then may another gateway have the lock.
        let _ = running
            .listeners_closed
            .recv_timeout(timeout.max(Duration::from_secs(1)));
        let drained = running.thread.join().unwrap_or(false);
        running.lock.release();
        self.shared.logger.log(
            LogLevel::Info,
            &format!("gateway stopped in {} ms", started.elapsed().as_millis()),
        );
        if let Some(on_state) = &self.on_state {
            on_state.notify(&GatewayState::Stopped { drained });
        }
        drained
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop(self.drop_timeout);
    }
}

async fn run(
    listeners: Vec<std::net::TcpListener>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<Option<Duration>>,
    ready: std_mpsc::Sender<std::io::Result<()>>,
    listeners_closed: std_mpsc::Sender<()>,
) -> bool {
    let listeners = match to_tokio(listeners) {
        Ok(listeners) => listeners,
        Err(err) => {
            let _ = ready.send(Err(err));
            return true;
        }
    };
    // Every connection task holds a sender; `recv` yields `None` once all of them are gone.
    let (open_tx, mut all_closed) = mpsc::channel::<()>(1);
    let slots = Arc::new(Semaphore::new(shared.http.max_connections));
    let accept_loops: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            tokio::spawn(accept_loop(
                listener,
                Arc::clone(&shared),
                stop.clone(),
                open_tx.clone(),
                Arc::clone(&slots),
            ))
        })
        .collect();
    drop(open_tx);
    shared.ws.start();
    shared.set_phase(Phase::Ready);
    let _ = ready.send(Ok(()));

    let timeout = loop {
        if let Some(timeout) = *stop.borrow_and_update() {
            break timeout;
        }
        if stop.changed().await.is_err() {
            break Duration::ZERO;
        }
    };
    for accept_loop in accept_loops {
        let _ = accept_loop.await;
    }
    // SPEC §7: the `shutdown` event and close 1012 to every WebSocket client.
    shared.ws.shutdown();
    let _ = listeners_closed.send(());
    tokio::time::timeout(timeout, all_closed.recv())
        .await
        .is_ok()
}

fn to_tokio(
    listeners: Vec<std::net::TcpListener>,
) -> std::io::Result<Vec<tokio::net::TcpListener>> {
    listeners
        .into_iter()
        .map(|listener| {
            listener.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(listener)
        })
        .collect()
}

/// What every task serving a connection holds while the connection is open, the task of an
/// upgraded WebSocket included: shutdown waits until none is left, and the connection cap
/// (`HttpOptions.max_connections`) counts them.
#[derive(Clone)]
pub(crate) struct OpenConnection {
    _drain: mpsc::Sender<()>,
    _slot: Arc<OwnedSemaphorePermit>,
}

/// The answer to a connection past `HttpOptions.max_connections`, written without reading
/// its request.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 20\r\n\r\nToo many connections";

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<Option<Duration>>,
    open: mpsc::Sender<()>,
    slots: Arc<Semaphore>,
) {
    // Logged once each time the cap is reached, not for every connection refused.
    let mut at_capacity = false;
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut stop) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match Arc::clone(&slots).try_acquire_owned() {
                    Ok(slot) => {
                        at_capacity = false;
                        let open = OpenConnection { _drain: open.clone(), _slot: Arc::new(slot) };
                        tokio::spawn(serve_connection(stream, peer, Arc::clone(&shared), stop.clone(), open));
                    }
                    Err(_) => {
                        if !at_capacity {
                            at_capacity = true;
                            shared.logger.log(LogLevel::Warn, &format!(
                                "refusing connections (the first from {peer}): {} are open \
                                 (http.max_connections)",
                                shared.http.max_connections
                            ));
                        }
                        tokio::spawn(refuse_over_capacity(stream));
                    }
                },
                Err(err) => {
                    // Out of descriptors or a transient error: keep serving, don't spin.
                    shared.logger.log(LogLevel::Warn, &format!("accept failed: {err}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

/// Answers a connection past the cap and closes it without serving it: the `503`, then the
/// write side shut, then what the client sent read and dropped for a moment (a few KiB, at
/// most 100 ms) before the socket goes. Closed with its request unread, the socket would
/// send a reset, which can reach the client before it has read the answer and destroy it.
async fn refuse_over_capacity(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const DRAIN_BYTES: usize = 16 * 1024;
    let _ = tokio::time::timeout(Duration::from_millis(100), async {
        if stream.write_all(OVER_CAPACITY).await.is_err() || stream.shutdown().await.is_err() {
            return;
        }
        let mut drained = 0;
        let mut buf = [0u8; 4096];
        while drained < DRAIN_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// A `CONNECT` request is not answered: its socket is dropped, as Node drops it
/// (SS:7094-7098).
#[derive(Debug, thiserror::Error)]
#[error("CONNECT is not served: the connection was dropped")]
struct ConnectDropped;

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<Option<Duration>>,
    open: OpenConnection,
) {
    let _ = stream.set_nodelay(true);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.http.header_timeout)
        // The exact limit of a head, answered `431`; the read buffer it is read into (which
        // bodies pass through too) is no larger, so a connection holds at most that much.
        .max_header_size(shared.http.max_header_bytes)
        .max_buf_size(shared.http.max_header_bytes.max(MIN_READ_BUFFER));
    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        // An upgraded WebSocket connection keeps shutdown waiting, like any connection.
        let answer = (request.method() != hyper::Method::CONNECT)
            .then(|| http::dispatch(request, peer, Arc::clone(&shared), open.clone()));
        async move {
            match answer {
                Some(response) => Ok(response.await),
                None => Err(ConnectDropped),
            }
        }
    });
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Resolves once shutdown has been asked for.
async fn stopped(stop: &mut watch::Receiver<Option<Duration>>) {
    let _ = stop.wait_for(Option::is_some).await;
}
