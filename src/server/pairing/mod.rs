//! Devices that paired with this gateway, their pending pairing requests and device tokens
//! (SPEC §11.5, §11.7 step 3, §11.8), and the host's say over who pairs (the policy hook).
//!
//! SKELETON shared by the issue-11 parts: the types and the store's API are the contract. The
//! pairing part replaces the in-memory store below with the file-backed one (the state dir,
//! 0600, atomic writes, tokens hashed), implements Node's default policy, and exposes it all to
//! hosts; the identity part calls it from the handshake.

// Skeleton: the identity part of issue 11 calls all of it; drop this on that merge.
#![allow(dead_code, missing_docs)]

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::server::scopes::scopes_satisfied;

/// Where a connection comes from, as pairing sees it (SPEC §11.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Locality {
    /// A loopback peer with no proxy or Tailscale headers.
    DirectLocal,
    /// A browser on this host talking to a gateway in a container.
    BrowserContainerLocal,
    /// The local CLI through a container's port mapping.
    CliContainerLocal,
    /// A loopback peer that proved the shared secret, seen through a port mapping.
    SharedSecretLoopbackLocal,
    /// Anything else (same-host LAN or tailnet addresses included).
    Remote,
}

/// Why a device must (re)pair (SPEC §11.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairingReason {
    /// The device is not paired.
    NotPaired,
    /// It asks for a role it was not approved for.
    RoleUpgrade,
    /// It asks for scopes beyond what it was approved for.
    ScopeUpgrade,
    /// Its pinned platform or device family changed.
    MetadataUpgrade,
}

/// A device approved to connect.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairedDevice {
    /// Lowercase hex SHA-256 of the raw public key.
    pub device_id: String,
    /// The raw public key, base64url without padding.
    pub public_key: String,
    /// Approved roles (`operator`, `node`).
    pub roles: Vec<String>,
    /// Approved scopes.
    pub scopes: Vec<String>,
    /// Pinned `client.platform`, as it was when approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Pinned `client.deviceFamily`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// `client.id` when approved.
    pub client_id: String,
    /// `client.mode` when approved.
    pub client_mode: String,
    /// `client.displayName`, refreshed on connect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// When it was first approved (ms since the epoch).
    pub approved_at_ms: u64,
    /// When it last connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen_at_ms: Option<u64>,
}

/// A request to pair, pending until the host decides (SPEC §11.5; `device.pair.requested`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingRequest {
    /// UUID v4.
    pub request_id: String,
    pub device_id: String,
    pub public_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    pub client_id: String,
    pub client_mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser_origin: Option<String>,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    pub scopes: Vec<String>,
    /// The client's IP, only when it is not local.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silent: Option<bool>,
    /// The device was paired before (a role, scope or metadata upgrade).
    pub is_repair: bool,
    /// Created or last refreshed (ms since the epoch); it expires 300 000 ms later.
    pub ts: u64,
}

/// What the handshake knows when it asks the policy about a request (not sent on the wire).
#[derive(Debug, Clone)]
pub struct PairingContext {
    pub reason: PairingReason,
    pub locality: Locality,
    /// The upgrade carried an `Origin` header.
    pub has_origin: bool,
    /// `client.id` is the Control UI's or the TUI's, or the client is a webchat client.
    pub ui_client: bool,
    /// How the connection authenticated: `none`, `token`, `password`, `device-token`, …
    pub auth_method: String,
    /// A paired record exists for this device id.
    pub record_exists: bool,
}

/// The host's answer to a pairing request.
#[derive(Debug, Clone, PartialEq)]
pub enum PairingDecision {
    /// Pair now, with the requested scopes (`None`) or these.
    Approve { scopes: Option<Vec<String>> },
    /// Leave it pending: the client is told `pairing required` and the host approves later.
    Pending,
    /// Refuse it: the request is dropped.
    Reject,
}

/// The host's say over who pairs. Called on a gateway worker thread: decide at once.
pub trait PairingPolicy: Send + Sync + 'static {
    /// Decides `request`, seen in `context`.
    fn decide(&self, request: &PairingRequest, context: &PairingContext) -> PairingDecision;
}

/// A device token as `hello-ok.auth` carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedToken {
    pub token: String,
    pub issued_at_ms: u64,
}

/// Why a device token was refused (SPEC §11.7 step 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Mismatch,
    ScopeMismatch,
}

/// What [`DeviceStore::request_pairing`] did.
#[derive(Debug, Clone)]
pub struct PendingOutcome {
    pub request: PairingRequest,
    /// A new request (not a refresh of a pending one).
    pub created: bool,
    /// Pending requests of the same device it replaced.
    pub superseded: Vec<PairingRequest>,
}

#[derive(Default)]
struct State {
    paired: HashMap<String, PairedDevice>,
    pending: HashMap<String, PairingRequest>,
    /// (device id, role) → (token, issued at).
    tokens: HashMap<(String, String), (String, u64)>,
}

/// The paired devices, pending requests and device tokens of one gateway.
#[derive(Default)]
pub struct DeviceStore {
    state: Mutex<State>,
}

impl DeviceStore {
    /// The paired record of `device_id`.
    pub fn paired(&self, device_id: &str) -> Option<PairedDevice> {
        self.lock().paired.get(device_id).cloned()
    }

    /// Creates a pending request, or refreshes the device's pending one.
    pub fn request_pairing(&self, request: PairingRequest) -> PendingOutcome {
        let mut state = self.lock();
        let superseded: Vec<PairingRequest> = state
            .pending
            .values()
            .filter(|p| p.device_id == request.device_id)
            .cloned()
            .collect();
        for old in &superseded {
            state.pending.remove(&old.request_id);
        }
        state
            .pending
            .insert(request.request_id.clone(), request.clone());
        PendingOutcome {
            request,
            created: true,
            superseded,
        }
    }

    /// Approves a pending request: the device is paired with its role and `scopes` (the
    /// requested ones when `None`) added to what it had.
    pub fn approve(&self, request_id: &str, scopes: Option<Vec<String>>) -> Option<PairedDevice> {
        let mut state = self.lock();
        let request = state.pending.remove(request_id)?;
        let now = crate::server::protocol::now_ms();
        let entry = state
            .paired
            .entry(request.device_id.clone())
            .or_insert_with(|| PairedDevice {
                device_id: request.device_id.clone(),
                public_key: request.public_key.clone(),
                roles: Vec::new(),
                scopes: Vec::new(),
                platform: request.platform.clone(),
                device_family: request.device_family.clone(),
                client_id: request.client_id.clone(),
                client_mode: request.client_mode.clone(),
                display_name: request.display_name.clone(),
                approved_at_ms: now,
                last_seen_at_ms: None,
            });
        entry.public_key = request.public_key.clone();
        if !entry.roles.contains(&request.role) {
            entry.roles.push(request.role.clone());
        }
        for scope in scopes.unwrap_or(request.scopes) {
            if !entry.scopes.contains(&scope) {
                entry.scopes.push(scope);
            }
        }
        Some(entry.clone())
    }

    /// Drops a pending request.
    pub fn reject(&self, request_id: &str) -> Option<PairingRequest> {
        self.lock().pending.remove(request_id)
    }

    /// The pending requests.
    pub fn pending(&self) -> Vec<PairingRequest> {
        self.lock().pending.values().cloned().collect()
    }

    /// Checks a device token presented for `device_id` in `role`, asking for `scopes`.
    pub fn verify_device_token(
        &self,
        device_id: &str,
        role: &str,
        token: &str,
        scopes: &[String],
    ) -> Result<(), TokenRefusal> {
        let state = self.lock();
        let paired = state.paired.get(device_id).ok_or(TokenRefusal::Mismatch)?;
        let (stored, _) = state
            .tokens
            .get(&(device_id.to_owned(), role.to_owned()))
            .ok_or(TokenRefusal::Mismatch)?;
        if !crate::server::auth::secrets_equal(token, stored) {
            return Err(TokenRefusal::Mismatch);
        }
        if !scopes_satisfied(scopes, &paired.scopes) {
            return Err(TokenRefusal::ScopeMismatch);
        }
        Ok(())
    }

    /// The device token `hello-ok` hands a paired device: `presented` when it was just verified,
    /// else a new one.
    pub fn ensure_device_token(
        &self,
        device_id: &str,
        role: &str,
        presented: Option<&str>,
    ) -> Option<IssuedToken> {
        let mut state = self.lock();
        state.paired.get(device_id)?;
        let key = (device_id.to_owned(), role.to_owned());
        if let (Some(presented), Some((stored, issued))) = (presented, state.tokens.get(&key))
            && crate::server::auth::secrets_equal(presented, stored)
        {
            return Some(IssuedToken {
                token: presented.to_owned(),
                issued_at_ms: *issued,
            });
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let issued_at_ms = crate::server::protocol::now_ms();
        state.tokens.insert(key, (token.clone(), issued_at_ms));
        Some(IssuedToken {
            token,
            issued_at_ms,
        })
    }

    /// Revokes the device token of `device_id` in `role`.
    pub fn revoke_device_token(&self, device_id: &str, role: &str) -> bool {
        self.lock()
            .tokens
            .remove(&(device_id.to_owned(), role.to_owned()))
            .is_some()
    }

    /// Refreshes a paired device's display name and last-seen time on connect.
    pub fn touch(&self, device_id: &str, display_name: Option<&str>) {
        if let Some(device) = self.lock().paired.get_mut(device_id) {
            if let Some(name) = display_name {
                device.display_name = Some(name.to_owned());
            }
            device.last_seen_at_ms = Some(crate::server::protocol::now_ms());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Node's default: a local device pairs silently; every other one waits for the host.
/// (Skeleton: the pairing part implements SPEC §11.5's whole `silent` rule.)
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultPairingPolicy;

impl PairingPolicy for DefaultPairingPolicy {
    fn decide(&self, _request: &PairingRequest, context: &PairingContext) -> PairingDecision {
        if context.locality == Locality::Remote {
            PairingDecision::Pending
        } else {
            PairingDecision::Approve { scopes: None }
        }
    }
}
