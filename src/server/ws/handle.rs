//! What the host gets from a running gateway: a [`GatewayHandle`] to talk to its clients, and a
//! [`Responder`] with each request.

use std::sync::{Arc, Weak};

use serde_json::Value;

use super::hub::Hub;
use crate::server::protocol::MethodError;

/// Talks to a running gateway's clients from any thread: events, deferred answers, the health
/// snapshot. Cheap to clone; it outlives the gateway harmlessly (then it reaches no one).
#[derive(Clone)]
pub struct GatewayHandle {
    hub: Arc<Hub>,
}

impl std::fmt::Debug for GatewayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayHandle")
            .field("connections", &self.connection_count())
            .finish()
    }
}

impl GatewayHandle {
    pub(super) fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// Sends `event` with `payload` to every authenticated client its gate admits (SPEC §12.7),
    /// each with that client's next `seq`: a registered event to the operators holding its scope
    /// ([`Handlers::event_with_scope`](super::Handlers::event_with_scope); by default OpenClaw's
    /// for that name, else `operator.read`), OpenClaw's own events by OpenClaw's table (`tick`,
    /// `health`, `heartbeat`, `shutdown` to everyone, nodes included), and an event that is
    /// neither to nobody (logged once).
    pub fn broadcast(&self, event: &str, payload: &Value) {
        self.hub.broadcast(event, payload);
    }

    /// Sends `event` to one authenticated client, with that client's next `seq`, when the
    /// event's gate admits it, as [`broadcast`](Self::broadcast) would (OpenClaw does the same:
    /// naming the client does not widen who may see an event); `false` only when it is not
    /// connected.
    pub fn send_event(&self, conn_id: u64, event: &str, payload: &Value) -> bool {
        self.hub.send_event(conn_id, event, payload)
    }

    /// Answers the host request `request_id` ([`MethodRequest::id`](super::MethodRequest::id)),
    /// from any thread; `false` when it was already answered, timed out, or its client is gone.
    pub fn respond(&self, request_id: u64, result: Result<Value, MethodError>) -> bool {
        self.hub.respond(request_id, result)
    }

    /// Replaces the health snapshot that `health` answers (default
    /// `{"ok":true,"ts":<now>,"durationMs":0}`) and broadcasts it as a `health` event.
    pub fn set_health(&self, snapshot: Value) {
        self.hub.set_health(snapshot);
    }

    /// WebSocket connections open now, authenticated or not.
    pub fn connection_count(&self) -> usize {
        self.hub.connection_count()
    }
}

/// Answers one request, now or later, from any thread. A request that is not answered within
/// `ProtocolOptions::request_timeout` gets an `UNAVAILABLE` error; dropping the responder
/// does not answer it (the host may still answer by id through [`GatewayHandle::respond`]).
#[derive(Debug)]
pub struct Responder {
    id: u64,
    hub: Weak<Hub>,
}

impl Responder {
    pub(super) fn new(id: u64, hub: &Arc<Hub>) -> Self {
        Self {
            id,
            hub: Arc::downgrade(hub),
        }
    }

    /// The request's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends the `res` frame. `false` when the request was already answered, timed out, or
    /// its connection is gone.
    pub fn respond(self, result: Result<Value, MethodError>) -> bool {
        self.hub
            .upgrade()
            .is_some_and(|hub| hub.respond(self.id, result))
    }

    /// A handle to the gateway the request came to (to answer later, send events, set the
    /// health), usable before `Gateway::serve` has returned; `None` once the gateway is gone.
    pub fn handle(&self) -> Option<GatewayHandle> {
        self.hub.upgrade().map(GatewayHandle::new)
    }
}
