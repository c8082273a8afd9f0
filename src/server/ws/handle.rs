//! What the host gets from a running gateway: a [`GatewayHandle`] to talk to its clients, and a
//! [`Responder`] with each request.

use std::sync::{Arc, Weak};

use serde_json::{Value, json};

use super::hub::Hub;
use crate::server::pairing::{BootstrapProfile, PairedDevice, PairingError, PairingRequest};
use crate::server::protocol::{MethodError, now_ms};

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
    /// `{"ok":true,"ts":<now>,"durationMs":0}`) and sends it as a `health` event with a new
    /// `stateVersion.health`, as a refresh from `ProtocolOptions::health_source` does.
    pub fn set_health(&self, snapshot: Value) {
        self.hub.set_health(snapshot);
    }

    /// The presence list (SPEC §12.6), newest first: the gateway's own row (`mode:"gateway"`,
    /// `reason:"self"`) and one row per non-ephemeral client that connected within the last
    /// five minutes, `reason` `connect` or `disconnect`. What `system-presence` answers an
    /// operator holding `operator.read`.
    pub fn presence(&self) -> Vec<Value> {
        self.hub.presence()
    }

    /// WebSocket connections open now, authenticated or not.
    pub fn connection_count(&self) -> usize {
        self.hub.connection_count()
    }

    /// The pairing requests waiting for the host, oldest first (each expires 5 minutes after
    /// its device last asked).
    pub fn pairing_requests(&self) -> Vec<PairingRequest> {
        self.hub.devices.pending()
    }

    /// Approves a pending pairing request with the requested scopes (`None`) or `scopes`, added
    /// to what the device had, and broadcasts `device.pair.resolved` `approved`: the device's
    /// next connect passes. Saved before it returns.
    pub fn approve_pairing(
        &self,
        request_id: &str,
        scopes: Option<Vec<String>>,
    ) -> Result<PairedDevice, PairingError> {
        let device = self.hub.devices.try_approve(request_id, scopes)?;
        self.pairing_resolved(request_id, &device.device_id, "approved");
        Ok(device)
    }

    /// Rejects a pending pairing request and broadcasts `device.pair.resolved` `rejected`.
    pub fn reject_pairing(&self, request_id: &str) -> Result<PairingRequest, PairingError> {
        let request = self.hub.devices.try_reject(request_id)?;
        self.pairing_resolved(request_id, &request.device_id, "rejected");
        Ok(request)
    }

    /// The paired devices, oldest approval first.
    pub fn paired_devices(&self) -> Vec<PairedDevice> {
        self.hub.devices.paired_devices()
    }

    /// Unpairs a device: its record, tokens and pending requests go; it must pair again. Its
    /// live connections, in every role, are closed 4001 `device removed`, as Node closes them
    /// after `device.pair.remove` (devices-*.mjs:422-437).
    pub fn remove_paired_device(&self, device_id: &str) -> Result<PairedDevice, PairingError> {
        let removed = self.hub.devices.remove_device(device_id)?;
        self.hub.close_device_connections(device_id, None);
        Ok(removed)
    }

    /// Revokes a device's token for `role`: connects presenting it are refused from now on
    /// (`AUTH_DEVICE_TOKEN_MISMATCH`), and the device's live connections in that role are
    /// closed 4001 `device removed`, however they authenticated, as Node closes them after
    /// `device.token.revoke` (devices-*.mjs:628-645). Its other roles' connections stay.
    pub fn revoke_device_token(&self, device_id: &str, role: &str) -> Result<(), PairingError> {
        self.hub.devices.try_revoke_device_token(device_id, role)?;
        self.hub.close_device_connections(device_id, Some(role));
        Ok(())
    }

    /// Issues a bootstrap token (a setup code) for `profile` (SPEC §11.7 step 2): a device
    /// that sends it as `auth.bootstrapToken` with a signed `device` block, in one of the
    /// profile's roles and within its scopes, connects without the shared secret, is paired
    /// with the profile's roles and scopes, and gets its device token in `hello-ok`. The token
    /// (32 random bytes, base64url) is good once, for `profile.ttl_ms` (default 10 minutes);
    /// the store keeps only its hash. Errors: a profile with no role or a zero lifetime, or a
    /// store that cannot be written.
    pub fn issue_bootstrap_token(
        &self,
        profile: &BootstrapProfile,
    ) -> Result<String, PairingError> {
        self.hub.devices.issue_bootstrap_token(profile)
    }

    /// SPEC §11.5: `device.pair.resolved` `{requestId, deviceId, decision, ts}`.
    fn pairing_resolved(&self, request_id: &str, device_id: &str, decision: &str) {
        let payload = json!({
            "requestId": request_id,
            "deviceId": device_id,
            "decision": decision,
            "ts": now_ms(),
        });
        self.hub.broadcast("device.pair.resolved", &payload);
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
