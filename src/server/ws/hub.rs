//! The connections of one gateway and what can be done to them from anywhere: broadcast, send
//! an event, answer a host request, set the health snapshot, count them; plus the periodic ticks,
//! keepalive and request timeouts, and the shutdown notice.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::conn::Conn;
use super::handlers::ClientInfo;
use super::options::ProtocolOptions;
use super::pending::{Pending, PendingRequests};
use super::state::{HealthCache, HealthSource, RefreshGate};
use crate::options::{LogLevel, Logger};
use crate::server::pairing::DeviceStore;
use crate::server::presence::{self, Arrival, At, PresenceStore, Recipient};
use crate::server::protocol::{self, MethodError, close};
use crate::server::scopes::{self, EventGate};

/// The close code of a connection whose device token was revoked or whose device was unpaired
/// (Node's `invalidateGatewayPolicyClient` code for `device-removed`).
pub(super) const DEVICE_REMOVED_CLOSE: u16 = 4001;

/// Unknown events whose drop is logged; the drops of others are not.
const MAX_DROPPED_EVENTS_LOGGED: usize = 256;

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
    /// Held while a broadcast fans out and takes each client's `seq`, so every client sees
    /// broadcasts in one order.
    broadcast_order: Mutex<()>,
    /// Who gets each of the host's registered events (the others go by Node's table).
    event_gates: HashMap<String, EventGate>,
    /// Events sent without a gate, already warned about (each is logged once, at most
    /// [`MAX_DROPPED_EVENTS_LOGGED`] of them).
    dropped_events: Mutex<HashSet<String>>,
    pending: Mutex<PendingRequests>,
    health: RwLock<HealthCache>,
    health_source: Option<HealthSource>,
    /// The refresh in flight, which concurrent refreshes share.
    health_refresh: RefreshGate,
    health_interval: Duration,
    presence: Mutex<PresenceStore>,
    /// `server.bootId` of `hello-ok`: one UUID per gateway (SS:5427-5429).
    pub(super) boot_id: String,
    /// The gateway's device store, for the host's pairing calls (`GatewayHandle`).
    pub(super) devices: Arc<DeviceStore>,
    /// The proven device and the role of each authenticated connection that has one, for
    /// [`close_device_connections`](Self::close_device_connections).
    device_conns: Mutex<HashMap<u64, ConnDevice>>,
}

/// Who an authenticated connection is, as revoking and unpairing see it.
struct ConnDevice {
    device_id: String,
    role: String,
}

/// A WebSocket connection counted in [`Hub::connection_count`] until it is dropped.
pub(super) struct Slot(Arc<Hub>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Hub {
    /// A hub whose broadcasts of the host's events go by `event_gates`
    /// ([`Handlers::event_gates`](super::Handlers)).
    pub fn new(
        options: &ProtocolOptions,
        logger: Logger,
        event_gates: HashMap<String, EventGate>,
        devices: Arc<DeviceStore>,
    ) -> Arc<Self> {
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
            broadcast_order: Mutex::new(()),
            event_gates,
            dropped_events: Mutex::new(HashSet::new()),
            pending: Mutex::new(PendingRequests::new(options.request_timeout)),
            health: RwLock::new(HealthCache::default()),
            health_source: options.health_source.clone(),
            health_refresh: RefreshGate::default(),
            health_interval: options.health_refresh_interval,
            presence: Mutex::new(PresenceStore::new(presence::own_entry(
                &options.server_version,
                own_instance_id(),
            ))),
            boot_id: uuid::Uuid::new_v4().to_string(),
            devices,
            device_conns: Mutex::new(HashMap::new()),
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
        // SPEC §12.7: one refresh at start, then one every interval.
        self.lock_health_mut().admitted = Some(Instant::now());
        self.refresh_health();
        tokio::spawn(every(
            hub.clone(),
            self.health_interval,
            Hub::refresh_health,
        ));
        let period = (self.lock_pending().timeout() / 10)
            .clamp(Duration::from_millis(5), Duration::from_millis(500));
        tokio::spawn(every(hub, period, Hub::expire_requests));
    }

    /// SPEC §9.10: `shutdown` to every client, then close 1012 `service restart`. New
    /// connections are refused from here on.
    pub fn shutdown(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let unsequenced =
            protocol::event("shutdown", &json!({ "reason": "gateway stopping" }), None);
        let _order = self.lock_order();
        for conn in self.snapshot() {
            // `shutdown` needs no scope: every authenticated client, nodes included, gets it.
            if conn.is_authenticated() {
                conn.push_text(with_seq(&unsequenced, conn.next_seq()).into(), true);
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
        self.lock_device_conns().remove(&conn_id);
    }

    /// Closes every live connection of `device_id` (in `role` only, when given) with 4001
    /// `device removed`, as Node's `disconnectClientsForDevice` does after
    /// `device.token.revoke` (that role) and `device.pair.remove` (every role)
    /// (server-request-context-*.mjs:332-343; devices-*.mjs:436, 644): the connections Node
    /// closes are those whose `connect` proved the device, however they authenticated.
    /// Returns how many were closed.
    pub fn close_device_connections(&self, device_id: &str, role: Option<&str>) -> usize {
        let ids: Vec<u64> = self
            .lock_device_conns()
            .iter()
            .filter(|(_, d)| d.device_id == device_id && role.is_none_or(|r| d.role == r))
            .map(|(id, _)| *id)
            .collect();
        let mut closed = 0;
        for id in ids {
            if let Some(conn) = self.conn(id) {
                conn.close(DEVICE_REMOVED_CLOSE, "device removed");
                closed += 1;
            }
        }
        closed
    }

    /// Records which device (and role) `client`'s connection proved, so a revoke or an unpair
    /// closes it (idempotent). The handshake calls it before its last look at the store, so a
    /// revoke either sees the connection or is seen by the handshake.
    pub fn track_device(&self, client: &ClientInfo) {
        if let Some(device_id) = &client.device_id {
            let device = ConnDevice {
                device_id: device_id.clone(),
                role: client.role.clone(),
            };
            self.lock_device_conns().insert(client.conn_id, device);
        }
    }

    fn lock_device_conns(&self) -> MutexGuard<'_, HashMap<u64, ConnDevice>> {
        self.device_conns.lock().unwrap_or_else(|e| e.into_inner())
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

    /// An event to every authenticated client its gate admits (SPEC §12.7), each frame with that
    /// client's next `seq`: the host's registered events go by their registration, the others
    /// by Node's table; an event neither knows is dropped, as Node drops it, and logged once.
    pub fn broadcast(&self, event: &str, payload: &Value) {
        let Some(gate) = self.event_gate(event) else {
            self.dropped(event);
            return;
        };
        let unsequenced = protocol::event(event, payload, None);
        let conns = self.snapshot();
        let _order = self.lock_order();
        for conn in conns {
            if conn.admits(gate) {
                conn.push_text(with_seq(&unsequenced, conn.next_seq()).into(), false);
            }
        }
    }

    /// Who gets `event`: its registration, else Node's table.
    fn event_gate(&self, event: &str) -> Option<EventGate> {
        match self.event_gates.get(event) {
            Some(gate) => Some(*gate),
            None => scopes::core_event_gate(event),
        }
    }

    /// Logs the first drop of each unknown event, and of at most [`MAX_DROPPED_EVENTS_LOGGED`]
    /// of them, so that a host sending ever new names cannot grow the set without bound.
    fn dropped(&self, event: &str) {
        let last = {
            let mut dropped = self
                .dropped_events
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if dropped.len() >= MAX_DROPPED_EVENTS_LOGGED || dropped.contains(event) {
                return;
            }
            dropped.insert(event.to_owned());
            dropped.len() == MAX_DROPPED_EVENTS_LOGGED
        };
        let more = if last {
            " (the drops of other unknown events are not logged)"
        } else {
            ""
        };
        self.logger.log(
            LogLevel::Warn,
            &format!(
                "event {event:?} was not sent: it is neither registered nor one of OpenClaw's, \
                 so no client may get it; register it with Handlers::event \
                 (gw_handlers_add_event) and the scope its receivers need{more}"
            ),
        );
    }

    /// An event to one authenticated client, with that client's next `seq`, when its gate
    /// admits the client: Node sends a targeted event through the same fan-out as a broadcast,
    /// scope check and `seq` included (SS:3237-3240, 3397), so the host's choice of client does
    /// not widen who may see an event. `false` only when there is no such client; an event
    /// the gate withholds is dropped as a broadcast's is.
    pub fn send_event(&self, conn_id: u64, event: &str, payload: &Value) -> bool {
        let Some(conn) = self.conn(conn_id).filter(|conn| conn.is_authenticated()) else {
            return false;
        };
        let Some(gate) = self.event_gate(event) else {
            self.dropped(event);
            return true;
        };
        if !conn.admits(gate) {
            return true;
        }
        let _order = self.lock_order();
        let frame = protocol::event(event, payload, Some(conn.next_seq()));
        conn.push_text(frame.into(), false)
    }

    /// Answers a host request; `false` when it was already answered or timed out, or its
    /// client is gone.
    pub fn respond(&self, request_id: u64, result: Result<Value, MethodError>) -> bool {
        let Some(pending) = self.lock_pending().take(request_id) else {
            return false;
        };
        // The host's answer counts in the flood guard like the core's (MH:351-370).
        match self.conn(pending.conn) {
            Some(conn) => conn.answer(&pending.frame_id, &result).queued,
            None => false,
        }
    }

    /// The host's health snapshot, answered by `health` and broadcast as a `health` event.
    pub fn set_health(&self, snapshot: Value) {
        self.commit_health(snapshot);
    }

    /// SPEC §12.7: a new snapshot from the host's source (or, without one, the last snapshot
    /// the host set, else a plain "ok"), cached and sent as a `health` event.
    ///
    /// The timer, a stale `health` request and the after-connect refresh can ask at once: one
    /// refresh runs, and the others wait for it and share its snapshot ([`RefreshGate`]).
    pub fn refresh_health(&self) {
        let Some(_turn) = self.health_refresh.enter() else {
            return;
        };
        let snapshot = match &self.health_source {
            Some(source) => {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| source.produce())) {
                    Ok(Some(snapshot)) => snapshot,
                    Ok(None) => return,
                    Err(_) => {
                        self.logger.log(
                            LogLevel::Error,
                            "the health source panicked; health unchanged",
                        );
                        return;
                    }
                }
            }
            None => self
                .lock_health()
                .snapshot
                .clone()
                .unwrap_or_else(default_health),
        };
        self.commit_health(snapshot);
    }

    /// What the `health` method answers: the cached snapshot when it is younger than the
    /// refresh interval and the caller did not ask to `probe`, else a fresh one, committed and
    /// broadcast like any refresh (HS:110-153; `health-CfpMy4ft.mjs:67-100`: `params.probe ===
    /// true` skips the cache).
    pub fn health(&self, probe: bool) -> Value {
        if !probe
            && let Some(snapshot) = self
                .lock_health()
                .fresh(Instant::now(), self.health_interval)
        {
            return snapshot.clone();
        }
        self.refresh_health();
        self.lock_health()
            .snapshot
            .clone()
            .unwrap_or_else(default_health)
    }

    /// The health snapshot for `hello-ok` (`{}` before the first refresh) and its version.
    pub fn health_state(&self) -> (Value, u64) {
        let health = self.lock_health();
        let snapshot = health.snapshot.clone().unwrap_or_else(|| json!({}));
        (snapshot, health.version)
    }

    /// Caches `snapshot`, counts it, and sends it to every authenticated client, nodes too,
    /// with the frame's `stateVersion` (SPEC §12.7; SMT:128-134).
    fn commit_health(&self, snapshot: Value) {
        let conns = self.snapshot();
        let _order = self.lock_order();
        let health = {
            let mut health = self.lock_health_mut();
            health.snapshot = Some(snapshot.clone());
            health.version += 1;
            health.refreshed = Some(Instant::now());
            health.version
        };
        let presence = self.lock_presence().version();
        let unsequenced = protocol::state_event("health", &snapshot, presence, health);
        for conn in conns {
            if conn.is_authenticated() {
                conn.push_text(with_seq(&unsequenced, conn.next_seq()).into(), false);
            }
        }
    }

    /// SPEC §12.6: records an authenticated client before its `hello-ok` (whose snapshot then
    /// holds its own row), and returns what `hello-ok.snapshot.presence` shows it.
    pub fn presence_join(&self, client: &ClientInfo) -> Vec<Value> {
        self.track_device(client);
        let arrival = Arrival {
            conn_id: client.conn_id,
            client: &client.client,
            role: &client.role,
            scopes: &client.scopes,
            device_id: client.device_id.as_deref(),
            ip: presence::reported_ip(client.peer.ip()),
        };
        let reads = presence::readable_by(&client.role, &client.scopes);
        let node = presence::node_id(
            &client.role,
            client.device_id.as_deref(),
            client.client_id(),
        );
        let mut store = self.lock_presence();
        let key = store.connect(&arrival, At::now());
        store.join(client.conn_id, Recipient { key, reads, node });
        if reads {
            store.list(At::now())
        } else {
            Vec::new()
        }
    }

    /// After a client's `hello-ok`: the `presence` event when it is tracked (MH:2582), and a
    /// background health refresh at most once an interval (MH:2580).
    pub fn presence_greeted(self: &Arc<Self>, conn_id: u64) {
        let tracked = self.lock_presence().key_of_conn(conn_id).is_some();
        if tracked {
            self.broadcast_presence();
        }
        if self
            .lock_health_mut()
            .admit(Instant::now(), self.health_interval)
        {
            let hub = Arc::clone(self);
            tokio::spawn(async move { hub.refresh_health() });
        }
    }

    /// A client that completed the handshake is gone: its row stays, marked `disconnect`, and
    /// readers are told (WSC:421-431), unless it was a node connection a newer one of the same
    /// node had replaced.
    pub fn presence_leave(&self, conn_id: u64) {
        let changed = self.lock_presence().leave(conn_id, At::now());
        if changed {
            self.broadcast_presence();
        }
    }

    /// A pong: the client's row is fresh again (WSC:1218-1221).
    pub fn presence_touch(&self, conn_id: u64) {
        let mut store = self.lock_presence();
        if let Some(key) = store.key_of_conn(conn_id).map(str::to_owned) {
            store.touch(&key, At::now());
        }
    }

    /// Every presence row, newest first (what a host reads).
    pub fn presence(&self) -> Vec<Value> {
        self.lock_presence().list(At::now())
    }

    /// `stateVersion.presence` now.
    pub fn presence_version(&self) -> u64 {
        self.lock_presence().version()
    }

    /// The `presence` event (PE:6-16): the version counted first, then `{presence:[…]}` with
    /// the frame's `stateVersion` to every client that may read presence; a client with a
    /// backlog skips it rather than being cut off (`dropIfSlow`).
    pub fn broadcast_presence(&self) {
        let conns = self.snapshot();
        let _order = self.lock_order();
        let health = self.lock_health().version;
        let (list, presence, readers) = {
            let mut store = self.lock_presence();
            let version = store.bump();
            let readers: Vec<_> = conns
                .iter()
                .filter(|c| store.reads(c.id))
                .cloned()
                .collect();
            (store.list(At::now()), version, readers)
        };
        let payload = json!({ "presence": list });
        let unsequenced = protocol::state_event("presence", &payload, presence, health);
        for conn in readers {
            if conn.is_authenticated() {
                // `dropIfSlow`: a slow client skips it, but its `seq` still moves on (SS:3285-3288).
                conn.push_text_unless_slow(with_seq(&unsequenced, conn.next_seq()).into());
            }
        }
    }

    /// How long the gateway has served.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn lock_order(&self) -> MutexGuard<'_, ()> {
        self.broadcast_order
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn lock_health(&self) -> std::sync::RwLockReadGuard<'_, HealthCache> {
        self.health.read().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_health_mut(&self) -> std::sync::RwLockWriteGuard<'_, HealthCache> {
        self.health.write().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_presence(&self) -> MutexGuard<'_, PresenceStore> {
        self.presence.lock().unwrap_or_else(|e| e.into_inner())
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
                conn.answer(&pending.frame_id, &Err(error));
            }
        }
    }
}

/// `unsequenced` (an event frame from [`protocol::event`] without a `seq`, so ending in `}`) with
/// `"seq":<seq>` as its last field, where Node puts it (SS:3131-3134). The payload is serialized
/// once per broadcast, not once per client.
fn with_seq(unsequenced: &str, seq: u64) -> String {
    let body = unsequenced.strip_suffix('}').unwrap_or(unsequenced);
    format!("{body},\"seq\":{seq}}}")
}

/// The health snapshot before any was produced (SPEC §9.9).
fn default_health() -> Value {
    json!({ "ok": true, "ts": protocol::now_ms(), "durationMs": 0 })
}

/// Presence's `instanceId` of the gateway's own row: one UUID per process (SP:10).
fn own_instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broadcast_frame_gets_its_client_s_seq_last() {
        let frame = with_seq(&protocol::event("tick", &json!({ "ts": 1 }), None), 7);
        assert_eq!(
            frame,
            r#"{"type":"event","event":"tick","payload":{"ts":1},"seq":7}"#
        );
        assert_eq!(frame, protocol::event("tick", &json!({ "ts": 1 }), Some(7)));
    }

    /// A slow source, and the timer, a stale `health` request and an after-connect refresh
    /// asking while it runs: the source runs once, `stateVersion.health` moves once, and every
    /// caller gets that refresh's snapshot.
    #[test]
    fn concurrent_refreshes_share_the_one_in_flight() {
        use std::sync::atomic::AtomicU64;
        use std::sync::mpsc;

        let calls = Arc::new(AtomicU64::new(0));
        let (entered_tx, entered) = mpsc::channel();
        let entered_tx = Mutex::new(entered_tx);
        let counted = Arc::clone(&calls);
        let options = ProtocolOptions {
            health_source: Some(HealthSource::new(move || {
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = entered_tx.lock().unwrap().send(());
                std::thread::sleep(Duration::from_millis(500));
                Some(json!({ "refresh": n }))
            })),
            ..ProtocolOptions::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let devices = DeviceStore::open(&dir.path().join("devices.json"), Logger::default());
        let hub = Hub::new(
            &options,
            Logger::default(),
            HashMap::new(),
            Arc::new(devices.unwrap()),
        );
        let (_, before) = hub.health_state();

        let first = std::thread::spawn({
            let hub = Arc::clone(&hub);
            move || hub.refresh_health()
        });
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the first refresh started");
        let joiners: Vec<_> = (0..3)
            .map(|_| {
                let hub = Arc::clone(&hub);
                std::thread::spawn(move || hub.health(false))
            })
            .chain(std::iter::once(std::thread::spawn({
                let hub = Arc::clone(&hub);
                move || {
                    hub.refresh_health();
                    hub.health(false)
                }
            })))
            .collect();
        first.join().unwrap();
        for joiner in joiners {
            assert_eq!(joiner.join().unwrap(), json!({ "refresh": 1 }));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the source ran once");
        assert_eq!(hub.health_state(), (json!({ "refresh": 1 }), before + 1));

        // Once landed, the next refresh runs the source again.
        hub.refresh_health();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(hub.health_state().1, before + 2);
    }
}
