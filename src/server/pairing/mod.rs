//! Devices that paired with this gateway, their pending pairing requests and device tokens
//! (SPEC §11.5, §11.7 step 3, §11.8), and the host's say over who pairs (the policy hook).
//!
//! The types here are the contract between the handshake (which asks), the store (`store.rs`:
//! what is paired, pending and issued, kept in a file of the state dir) and the host's policy
//! (`policy.rs`: who pairs without being asked).

mod policy;
mod store;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use policy::{DefaultPairingPolicy, silent_local_approval};
pub use store::{
    BOOTSTRAP_TOKEN_TTL_MS, DEVICE_STORE_FILE, DeviceStore, MAX_PENDING, MAX_PENDING_PER_IP,
    PAIRING_REQUEST_TTL_MS,
};

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingRequest {
    /// UUID v4.
    pub request_id: String,
    /// Lowercase hex SHA-256 of the raw public key.
    pub device_id: String,
    /// The raw public key, base64url without padding.
    pub public_key: String,
    /// `client.displayName` of the connect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `client.platform`, pinned when approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// `client.deviceFamily`, pinned when approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// `client.id` of the connect.
    pub client_id: String,
    /// `client.mode` of the connect.
    pub client_mode: String,
    /// The upgrade's `Origin` header, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser_origin: Option<String>,
    /// The role the connect asked for.
    pub role: String,
    /// Every role asked for, merged from the requests this one replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Every scope asked for, merged from the requests this one replaced.
    pub scopes: Vec<String>,
    /// The client's IP, only when it is not local.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    /// Node's local rule would approve it without asking (SPEC §11.5), and so would it for
    /// every request it replaced; `None` when not judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silent: Option<bool>,
    /// The device was paired before (a role, scope or metadata upgrade).
    pub is_repair: bool,
    /// When it was created (ms since the epoch); it expires 300 000 ms after its device last
    /// asked (a refresh restarts the 5 minutes and keeps `ts`).
    pub ts: u64,
}

/// What the handshake knows when it asks the policy about a request (not sent on the wire;
/// serialized, camelCase, for the C ABI's policy callback).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingContext {
    /// Why the device must pair.
    pub reason: PairingReason,
    /// Where the connection comes from.
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
    Approve {
        /// The scopes granted: `None` for what the request asks, capped during a handshake to
        /// what the connecting client asks for plus what the device already had (a request
        /// merged with earlier ones that asked for more then stays pending); `Some` grants
        /// exactly these (the connection is capped to them).
        scopes: Option<Vec<String>>,
    },
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

/// A device token as `hello-ok.auth` carries it. Its `Debug` leaves the token out.
#[derive(Clone, PartialEq)]
pub struct IssuedToken {
    pub token: String,
    pub issued_at_ms: u64,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &crate::server::protocol::REDACTED)
            .field("issued_at_ms", &self.issued_at_ms)
            .finish()
    }
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
    /// The oldest pending requests (of any device) dropped to keep within
    /// [`MAX_PENDING_PER_IP`] and [`MAX_PENDING`].
    pub evicted: Vec<PairingRequest>,
}

/// What a bootstrap token (a setup code) lets a device do (SPEC §11.7 step 2; WRK:1911-1930):
/// a `connect` with a signed `device` block and `auth.bootstrapToken` authenticates as
/// `bootstrap-token`, in one of `roles` with scopes within `scopes`, and pairs the device with
/// these roles and scopes. The token is good once, for `ttl_ms`.
///
/// As JSON (the C ABI): `{"roles":["node"],"scopes":[],"deviceId":"…","publicKey":"…",
/// "ttlMs":600000}`, all but `roles` optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootstrapProfile {
    /// The roles the device may take and is paired with (`operator`, `node`); at least one.
    pub roles: Vec<String>,
    /// The scopes it may ask for and is paired with.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Only this device may use the token (else the first device that presents it binds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Only the device with this public key (base64url) may use the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// How long the token is valid, from now (default [`BOOTSTRAP_TOKEN_TTL_MS`], Node's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

impl BootstrapProfile {
    /// A profile for `roles` and `scopes`, for any device, valid for Node's 10 minutes.
    pub fn new(roles: Vec<String>, scopes: Vec<String>) -> Self {
        Self {
            roles,
            scopes,
            device_id: None,
            public_key: None,
            ttl_ms: None,
        }
    }
}

/// Why a host's pairing call ([`GatewayHandle::approve_pairing`] and its siblings) did nothing.
///
/// [`GatewayHandle::approve_pairing`]: crate::GatewayHandle::approve_pairing
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PairingError {
    /// No pending request has this id.
    #[error(
        "no pending pairing request {0}: it was already approved, rejected or superseded, or it \
         expired (5 minutes after its device last asked); list the pending requests again"
    )]
    UnknownRequest(String),
    /// No paired device has this id.
    #[error("no paired device {0}: list the paired devices for their ids")]
    UnknownDevice(String),
    /// The device has no active token for the role.
    #[error("device {device_id} has no active {role} token to revoke")]
    NoToken {
        /// The device.
        device_id: String,
        /// The role asked for.
        role: String,
    },
    /// A bootstrap profile that cannot be issued.
    #[error("bootstrap profile refused: {0}")]
    InvalidBootstrapProfile(String),
    /// Approving on a connection's behalf would grant more than the connection holds; the
    /// request stays pending for the host.
    #[error(
        "pairing request {request_id} asks for {scope}, beyond what the connecting client may \
         grant itself; it stays pending: approve it from the host"
    )]
    BeyondCallerScopes {
        /// The request.
        request_id: String,
        /// The first scope beyond the caller's.
        scope: String,
    },
    /// A bootstrap token's approval would grant a role or scope its profile does not hold
    /// (the request merged an earlier one of the device); the request stays pending.
    #[error(
        "pairing request {request_id} asks for {what}, which the bootstrap token's profile does \
         not allow; it stays pending: approve it from the host, or issue a token with that profile"
    )]
    OutsideBootstrapProfile {
        /// The request.
        request_id: String,
        /// `role <name>` or `scope <name>`: the first one outside the profile.
        what: String,
    },
    /// The system's random source failed; nothing changed.
    #[error("the system's random source failed ({0}); nothing was changed: try again")]
    Random(String),
    /// The store file could not be written; nothing changed.
    #[error(
        "could not save the device store {}: {source}; nothing was changed: make its directory \
         writable (or free space) and try again",
        path.display()
    )]
    Write {
        /// The store file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// Pairing as a gateway serves it: the host's policy and where paired devices are kept.
#[derive(Clone)]
pub struct PairingOptions {
    /// Decides pairing requests as they arrive (default [`DefaultPairingPolicy`]: Node's
    /// `silent` rule, a local device pairs at once and every other one waits for the host).
    pub policy: Arc<dyn PairingPolicy>,
    /// The device store file (default: `<state dir>/gateway/devices.json` of the lock's state
    /// dir). Must be absolute.
    pub store_path: Option<PathBuf>,
}

impl Default for PairingOptions {
    fn default() -> Self {
        Self {
            policy: Arc::new(DefaultPairingPolicy),
            store_path: None,
        }
    }
}

impl std::fmt::Debug for PairingOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairingOptions")
            .field("store_path", &self.store_path)
            .finish_non_exhaustive()
    }
}

impl PairingOptions {
    /// The store file for a gateway whose state dir is `state_dir`.
    pub fn store_file(&self, state_dir: &std::path::Path) -> PathBuf {
        self.store_path
            .clone()
            .unwrap_or_else(|| state_dir.join(DEVICE_STORE_FILE))
    }

    /// Says what `Gateway::serve` would refuse: a store path that is empty or relative.
    pub fn validate(&self) -> Result<(), String> {
        match &self.store_path {
            Some(path) if path.as_os_str().is_empty() => Err(
                "pairing.store_path is empty: give an absolute file path (or leave the default)"
                    .to_owned(),
            ),
            Some(path) if !path.is_absolute() => Err(format!(
                "pairing.store_path {} is relative: give an absolute file path (or leave the \
                 default, <state dir>/{DEVICE_STORE_FILE})",
                path.display()
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_s_debug_leaves_the_token_out() {
        let issued = IssuedToken {
            token: "dt-SECRET-6".into(),
            issued_at_ms: 42,
        };
        let shown = format!("{issued:?} {issued:#?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("issued_at_ms: 42"), "{shown}");
    }
}
