//! The connections of one gateway and what can be done to them from anywhere: broadcast, send
//! an event, answer a host request, set the health snapshot, count them; plus the periodic ticks,
//! keepalive and request timeouts, and the shutdown notice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::conn::Conn;
use super::options::ProtocolOptions;
use super::pending::{Pending, PendingRequests};
use crate::options::{LogLevel, Logger};
use crate::server::pairing::DeviceStore;
use crate::server::protocol::{self, MethodError, close};

/// Everything about one gateway's WebSocket clients that outlives a single connection.
pub(crate) struct Hub {
    tick_interval: Duration,
    ping_interval: Duration,
    max_connections: usize,
    pub(super) logger: Logger,
    started: Instant,
    conns: RwLock<HashMap<u64, Arc<Conn>>>,
    open: AtomicUsize,
    closing: AtomicBool,
    next_conn: AtomicU64,
    /// Held while a broadcast takes its `seq` and fans out, so every client sees them in order.
    broadcast_seq: Mutex<u64>,
    pending: Mutex<PendingRequests>,
    health: RwLock<Health>,
    /// The gateway's device store, for the host's pairing calls (`GatewayHandle`).
    pub(super) devices: Arc<DeviceStore>,
}

/// The host's health snapshot and how many times it was set.
#[derive(Default)]
struct Health {
    snapshot: Option<Value>,
    version: u64,
}

/// A WebSocket connection counted in [`Hub::connection_count`] until it is dropped.
pub(super) struct Slot(Arc<Hub>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Hub {
    pub fn new(options: &ProtocolOptions, logger: Logger, devices: Arc<DeviceStore>) -> Arc<Self> {
        Arc::new(Self {
            tick_interval: options.tick_interval,
            ping_interval: options.ping_interval,
            max_connections: options.max_connections,
            logger,
            started: Instant::now(),
            conns: RwLock::new(HashMap::new()),
            open: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
            broadcast_seq: Mutex::new(0),
            pending: Mutex::new(PendingRequests::new(options.request_timeout)),
            health: RwLock::new(Health::default()),
            devices,
        })
    }

    /// Starts the ticks, the keepalive and the request timeouts on the current runtime.
    pub fn start(self: &Arc<Self>) {
        let hub = Arc::downgrade(self);
        // Both intervals are above 0: `ServeOptions::validate` refused anything else.
        tokio::spawn(every(hub.clone(), self.tick_interval, |hub| {
            hub.broadcast("tick", &json!({ "ts": protocol::now_ms() }));
        }));
        tokio::spawn(every(hub.clone(), self.ping_interval, Hub::keepalive));
        let period = (self.lock_pending().timeout() / 10)
            .clamp(Duration::from_millis(5), Duration::from_millis(500));
        tokio::spawn(every(hub, period, Hub::expire_requests));
    }

    /// SPEC §9.10: `shutdown` to every client, then close 1012 `service restart`. New
    /// connections are refused from here on.
    pub fn shutdown(&self) {
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
            if conn.is_authenticated() {
                conn.push_text(frame.clone(), true);
            }
            conn.close(close::SERVICE_RESTART, "service restart");
        }
    }

    /// Counts a new connection until the slot drops, and says whether it may be served:
    /// `false` when `max_connections` were open already.
    pub fn open_slot(self: &Arc<Self>) -> (Slot, bool) {
        let over = self.open.fetch_add(1, Ordering::AcqRel) >= self.max_connections;
        (Slot(Arc::clone(self)), !over)
    }

    /// The id for a new connection.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a connection to those that get broadcasts and the shutdown notice; `false` when
    /// the shutdown has begun (the connection is added all the same, so that a shutdown that
    /// began in between still sees it).
    pub fn register(&self, conn: &Arc<Conn>) -> bool {
        self.conns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conn.id, Arc::clone(conn));
        !self.closing.load(Ordering::SeqCst)
    }

    /// Removes a connection that ended.
    pub fn unregister(&self, conn_id: u64) {
        self.conns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn_id);
    }

    /// Registers a host request from connection `conn` and returns its id.
    pub fn register_request(&self, conn: u64, frame_id: Value, method: String) -> u64 {
        let pending = Pending {
            conn,
            frame_id,
            method,
        };
        self.lock_pending().register(pending, Instant::now())
    }

    /// WebSocket connections open now (authenticated or not).
    pub fn connection_count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// An event with a `seq` to every authenticated client.
    pub fn broadcast(&self, event: &str, payload: &Value) {
        let conns = self.snapshot();
        let mut seq = self.lock_seq();
        *seq += 1;
        let frame = Utf8Bytes::from(protocol::event(event, payload, Some(*seq)));
        for conn in conns {
            if conn.is_authenticated() {
                conn.push_text(frame.clone(), false);
            }
        }
    }

    /// An event to one authenticated client; `false` when there is no such client.
    pub fn send_event(&self, conn_id: u64, event: &str, payload: &Value) -> bool {
        match self.conn(conn_id) {
            Some(conn) if conn.is_authenticated() => {
                conn.push_text(protocol::event(event, payload, None).into(), false)
            }
            _ => false,
        }
    }

    /// Answers a host request; `false` when it was already answered or timed out, or its
    /// client is gone.
    pub fn respond(&self, request_id: u64, result: Result<Value, MethodError>) -> bool {
        let Some(pending) = self.lock_pending().take(request_id) else {
            return false;
        };
        match self.conn(pending.conn) {
            Some(conn) => conn.push_text(protocol::res(&pending.frame_id, &result).into(), false),
            None => false,
        }
    }

    /// The host's health snapshot, answered by `health` and broadcast as a `health` event.
    pub fn set_health(&self, snapshot: Value) {
        {
            let mut health = self.health.write().unwrap_or_else(|e| e.into_inner());
            health.snapshot = Some(snapshot.clone());
            health.version += 1;
        }
        self.broadcast("health", &snapshot);
    }

    /// What the `health` method answers: the host's snapshot, or a plain "ok".
    pub fn health(&self) -> Value {
        let health = self.health.read().unwrap_or_else(|e| e.into_inner());
        match &health.snapshot {
            Some(snapshot) => snapshot.clone(),
            None => json!({ "ok": true, "ts": protocol::now_ms(), "durationMs": 0 }),
        }
    }

    /// The health snapshot for `hello-ok` (`{}` when the host set none) and its version.
    pub fn health_state(&self) -> (Value, u64) {
        let health = self.health.read().unwrap_or_else(|e| e.into_inner());
        let snapshot = health.snapshot.clone().unwrap_or_else(|| json!({}));
        (snapshot, health.version)
    }

    /// How long the gateway has served.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn lock_seq(&self) -> MutexGuard<'_, u64> {
        self.broadcast_seq.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_pending(&self) -> MutexGuard<'_, PendingRequests> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn snapshot(&self) -> Vec<Arc<Conn>> {
        let conns = self.conns.read().unwrap_or_else(|e| e.into_inner());
        conns.values().cloned().collect()
    }

    fn conn(&self, id: u64) -> Option<Arc<Conn>> {
        let conns = self.conns.read().unwrap_or_else(|e| e.into_inner());
        conns.get(&id).cloned()
    }

    fn keepalive(&self) {
        for conn in self.snapshot() {
            if !conn.ping() {
                self.logger.log(
                    LogLevel::Debug,
                    &format!("conn {}: no pong, dropping a dead peer", conn.id),
                );
                conn.kill();
            }
        }
    }

    fn expire_requests(&self) {
        let now = Instant::now();
        let (expired, timeout) = {
            let mut pending = self.lock_pending();
            (pending.expire(now), pending.timeout())
        };
        let ms = timeout.as_millis();
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
}

/// Runs `action` on the hub every `period` until the hub is gone or shutting down.
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
