//! The device store: paired devices, pending pairing requests and device tokens of one gateway,
//! kept in one JSON file of the state dir (SPEC §11.5, §11.7 step 3, §11.8).
//!
//! The file (`<state dir>/gateway/devices.json` unless `PairingOptions::store_path` says
//! otherwise) is the library's own, not Node's SQLite store: a gateway and a Node gateway on the
//! same state dir do not share pairings. It is read once, when the gateway starts serving, and
//! rewritten whole on every change that must survive a restart: written to a temporary file
//! in the same directory (mode 0600, created exclusively), flushed to disk, renamed over the
//! old one, and the directory flushed, so a crash leaves either the old file or the new one.
//! Last-seen times, a pending request's refresh (a device asking again for what it asked)
//! and the plaintext of tokens this process issued are kept in memory only (a crash loses
//! them: a refreshed request may expire sooner after a restart, and each device's first
//! connect after it rotates its token once), so a reconnecting device costs no disk write.
//! What a restart keeps: paired devices, their tokens (hashed), and pending requests as last
//! created or superseded, as Node keeps them in its store.
//!
//! Only the gateway holding the lock uses the file. Within it, the state mutex orders every
//! connection's reads and changes and is held only to change memory and take a snapshot; the
//! file is written after it is released, under a separate write mutex that numbers snapshots
//! (a generation) so an older snapshot never overwrites a newer one, and off the async worker
//! (`block_in_place`) when called from the gateway's runtime. A handshake therefore never
//! waits for another connection's fsync unless it writes itself, and writes only when it
//! files a new pairing request (capped: [`MAX_PENDING_PER_IP`], [`MAX_PENDING`]), is
//! approved, or is handed its first token after a restart. A host's change (approve, reject,
//! remove, revoke) is undone in memory when its write fails, unless a handshake changed the
//! store meanwhile (then it is kept, logged, and saved with that change).

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::runtime::{Handle, RuntimeFlavor};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    BootstrapProfile, IssuedToken, PairedDevice, PairingError, PairingRequest, PendingOutcome,
    TokenRefusal,
};
use crate::error::GatewayLockError;
use crate::options::{LogLevel, Logger};
use crate::server::protocol::now_ms;
use crate::server::scopes::{missing_requested_scope, scope_satisfied};

/// Where the store lives under the state dir by default.
pub const DEVICE_STORE_FILE: &str = "gateway/devices.json";

/// A pending request expires this long after it was created or last refreshed
/// (`device-pairing-identity-BnU9nqx2.mjs:515,526`).
pub const PAIRING_REQUEST_TTL_MS: u64 = 300_000;

/// A bootstrap token is good for this long after it was issued, unless its profile says
/// otherwise (`device-bootstrap.worker-types-*.mjs:2`).
pub const BOOTSTRAP_TOKEN_TTL_MS: u64 = 600_000;

/// At most this many pending requests from one client IP (all local clients count as one): a
/// new request beyond it drops that IP's oldest, which is resolved `rejected`.
pub const MAX_PENDING_PER_IP: usize = 16;

/// At most this many pending requests in all: a new request beyond it drops the oldest.
pub const MAX_PENDING: usize = 256;

/// The file format's version; a file with another one is refused, not rewritten.
const FORMAT_VERSION: u32 = 1;

/// The file as written.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoreFile {
    version: u32,
    devices: Vec<StoredDevice>,
    pending: Vec<StoredRequest>,
    /// Bootstrap tokens issued and not yet used or expired (`bootstrap.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    bootstrap: Vec<bootstrap::StoredBootstrap>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredDevice {
    #[serde(flatten)]
    device: PairedDevice,
    /// One per role, in role order.
    #[serde(default)]
    tokens: Vec<StoredToken>,
}

/// A device token, by its hash only.
///
/// Node keeps the token itself and hands the same one back on every connect
/// (`openclaw-state-worker-runtime-*.mjs` `ensureDeviceTokenInWorker`). We keep its SHA-256:
/// a copy of the file gives no one a credential. The store still hands a token back without
/// a write: the plaintext of a token this process issued (on approval or rotation), or one a
/// connect presented and had verified, is kept in memory beside its hash (`plaintext`, never
/// serialized), so a later connect of the same device and role gets that same token while it
/// is unrevoked and covers the scopes asked for. After a restart the memory is empty: the
/// first such connect that does not present the token is given a new one, which replaces the
/// old (the client keeps the newest, as Node's does), and later connects get it back.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredToken {
    role: String,
    /// Lowercase hex SHA-256 of the token's UTF-8 bytes.
    sha256: String,
    /// What the token may ask for (the scopes requested when it was minted).
    scopes: Vec<String>,
    created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotated_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_at_ms: Option<u64>,
    /// The token itself, when this process issued it or saw it verified: memory only.
    #[serde(skip)]
    plaintext: Option<String>,
}

impl StoredToken {
    fn issued_at_ms(&self) -> u64 {
        self.rotated_at_ms.unwrap_or(self.created_at_ms)
    }

    fn is_active(&self) -> bool {
        self.revoked_at_ms.is_none()
    }

    fn matches(&self, token: &str) -> bool {
        crate::server::auth::secrets_equal(&token_hash(token), &self.sha256)
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredRequest {
    #[serde(flatten)]
    request: PairingRequest,
    /// When its device last asked again (Node keeps `ts` as created and refreshes this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refreshed_at_ms: Option<u64>,
}

impl StoredRequest {
    fn expired(&self, now: u64) -> bool {
        now >= self.refreshed_at_ms.unwrap_or(self.request.ts) + PAIRING_REQUEST_TTL_MS
    }
}

#[derive(Clone, Default)]
struct State {
    devices: HashMap<String, StoredDevice>,
    pending: Vec<StoredRequest>,
    bootstrap: Vec<bootstrap::StoredBootstrap>,
    /// Counts the changes to save; the file holds the one [`DeviceStore::written`] says.
    generation: u64,
}

impl State {
    fn prune_expired(&mut self, now: u64) {
        self.pending.retain(|p| !p.expired(now));
        self.bootstrap.retain(|b| !b.expired(now));
    }

    /// Removes the pending request `request_id`, unless it has expired or is unknown.
    fn take_pending(&mut self, request_id: &str) -> Result<PairingRequest, PairingError> {
        self.prune_expired(now_ms());
        let at = self
            .pending
            .iter()
            .position(|p| p.request.request_id == request_id)
            .ok_or_else(|| PairingError::UnknownRequest(request_id.to_owned()))?;
        Ok(self.pending.remove(at).request)
    }

    fn to_file(&self) -> StoreFile {
        let mut devices: Vec<StoredDevice> = self.devices.values().cloned().collect();
        devices.sort_by(|a, b| a.device.device_id.cmp(&b.device.device_id));
        StoreFile {
            version: FORMAT_VERSION,
            devices,
            pending: self.pending.clone(),
            bootstrap: self.bootstrap.clone(),
        }
    }
}

/// The paired devices, pending requests and device tokens of one gateway; shared by all its
/// connections and its handle. `Default` is a store kept in memory only (tests).
#[derive(Default)]
pub struct DeviceStore {
    /// `None`: in memory only.
    path: Option<PathBuf>,
    logger: Logger,
    state: Mutex<State>,
    /// The generation the file holds; held while writing, so writes are one at a time.
    written: Mutex<u64>,
    /// Tests hold it to stop a save just before it writes (under the write lock).
    #[cfg(test)]
    write_pause: Mutex<()>,
    /// Tests set it to learn that a save reached the pause.
    #[cfg(test)]
    write_reached: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

impl std::fmt::Debug for DeviceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl DeviceStore {
    /// Loads the store at `path` (absent: empty; it is created on the first change). A file
    /// that cannot be read or is not a store is refused with what to do, never dropped.
    pub fn open(path: &Path, logger: Logger) -> Result<Self, GatewayLockError> {
        let refuse = |problem: String| GatewayLockError::DeviceStore {
            path: path.to_path_buf(),
            problem,
        };
        let aside = "move it aside to start with no paired devices (each device then pairs again)";
        let text = match fs::symlink_metadata(path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => {
                return Err(refuse(format!(
                    "cannot read it: {err}; fix its directory's permissions, or {aside}"
                )));
            }
            Ok(meta) if !meta.file_type().is_file() => {
                return Err(refuse(format!(
                    "it is not a regular file (a symlink, directory or device); {aside}"
                )));
            }
            Ok(_) => Some(fs::read_to_string(path).map_err(|err| {
                refuse(format!(
                    "cannot read it: {err}; make it readable by this user (mode 0600), or {aside}"
                ))
            })?),
        };
        let mut state = State::default();
        if let Some(text) = text {
            let file: StoreFile = serde_json::from_str(&text).map_err(|err| {
                refuse(format!(
                    "it is not a valid device store ({err}); restore it from a backup, or {aside}"
                ))
            })?;
            if file.version != FORMAT_VERSION {
                return Err(refuse(format!(
                    "it has format version {}, this library reads version {FORMAT_VERSION}; \
                     use the gateway that wrote it, or {aside}",
                    file.version
                )));
            }
            for device in file.devices {
                let id = device.device.device_id.clone();
                if state.devices.insert(id.clone(), device).is_some() {
                    return Err(refuse(format!(
                        "it lists device {id} twice; remove one of them, or {aside}"
                    )));
                }
            }
            state.pending = file.pending;
            state.bootstrap = file.bootstrap;
            state.prune_expired(now_ms());
        }
        Ok(Self {
            path: Some(path.to_path_buf()),
            logger,
            state: Mutex::new(state),
            written: Mutex::new(0),
            #[cfg(test)]
            write_pause: Mutex::new(()),
            #[cfg(test)]
            write_reached: Mutex::new(None),
        })
    }

    /// The paired record of `device_id`.
    pub fn paired(&self, device_id: &str) -> Option<PairedDevice> {
        self.lock().devices.get(device_id).map(|d| d.device.clone())
    }

    /// Every role [`role_active`](Self::role_active) holds for `device_id`, in approval order
    /// (the tests read the rule through it).
    #[cfg(test)]
    pub fn active_roles(&self, device_id: &str) -> Vec<String> {
        let state = self.lock();
        let Some(stored) = state.devices.get(device_id) else {
            return Vec::new();
        };
        stored
            .device
            .roles
            .iter()
            .filter(|role| {
                stored
                    .tokens
                    .iter()
                    .any(|t| &t.role == *role && t.is_active())
            })
            .cloned()
            .collect()
    }

    /// Whether `device_id` may connect in `role` without pairing again: an approved role that
    /// holds an unrevoked token (Node's `listEffectivePairedDeviceRoles`,
    /// device-pairing-identity-*.mjs:603-625). A revoked role counts as not approved.
    pub fn role_active(&self, device_id: &str, role: &str) -> bool {
        let state = self.lock();
        state.devices.get(device_id).is_some_and(|stored| {
            stored.device.roles.iter().any(|r| r == role)
                && stored
                    .tokens
                    .iter()
                    .any(|t| t.role == role && t.is_active())
        })
    }

    /// Every paired device, oldest approval first.
    pub fn paired_devices(&self) -> Vec<PairedDevice> {
        let mut devices: Vec<PairedDevice> = self
            .lock()
            .devices
            .values()
            .map(|d| d.device.clone())
            .collect();
        devices.sort_by(|a, b| {
            (a.approved_at_ms, &a.device_id).cmp(&(b.approved_at_ms, &b.device_id))
        });
        devices
    }

    /// Creates a pending request, or refreshes the device's pending one (SPEC §11.5 step 1,
    /// `requestDevicePairingInWorker`): a single pending request of the device that asks for
    /// the same, or covers what is asked now, is refreshed (its id and `ts` kept, its 5 minutes
    /// restarted); otherwise the device's pending requests are replaced by `request` with
    /// their roles and scopes merged in, and reported as `superseded`. `request.ts` is set to
    /// now and `is_repair` to whether the device is paired. A refresh is kept in memory only;
    /// a new request is saved, and drops the oldest pending ones beyond
    /// [`MAX_PENDING_PER_IP`] from its IP and [`MAX_PENDING`] in all (reported as `evicted`).
    pub fn request_pairing(&self, request: PairingRequest) -> PendingOutcome {
        self.mutate_lenient("record a pairing request", |state| {
            let now = now_ms();
            state.prune_expired(now);
            let is_repair = state.devices.contains_key(&request.device_id) || request.is_repair;
            let mut existing: Vec<StoredRequest> = state
                .pending
                .iter()
                .filter(|p| p.request.device_id == request.device_id)
                .cloned()
                .collect();
            existing.sort_by_key(|p| std::cmp::Reverse(p.request.ts));
            if let [only] = existing.as_slice()
                && (same_approval(&only.request, &request) || covers(&only.request, &request))
            {
                let refreshed = refresh(&only.request, &request, is_repair);
                let id = refreshed.request_id.clone();
                for p in state
                    .pending
                    .iter_mut()
                    .filter(|p| p.request.request_id == id)
                {
                    p.request = refreshed.clone();
                    p.refreshed_at_ms = Some(now);
                }
                let outcome = PendingOutcome {
                    request: refreshed,
                    created: false,
                    superseded: Vec::new(),
                    evicted: Vec::new(),
                };
                return (outcome, false);
            }
            state
                .pending
                .retain(|p| p.request.device_id != request.device_id);
            let replacement = replacement(&existing, request, is_repair, now);
            state.pending.push(StoredRequest {
                request: replacement.clone(),
                refreshed_at_ms: None,
            });
            let superseded = existing
                .into_iter()
                .map(|p| p.request)
                .filter(|p| p.request_id != replacement.request_id)
                .collect();
            let evicted = evict_beyond_caps(&mut state.pending, &replacement);
            let outcome = PendingOutcome {
                request: replacement,
                created: true,
                superseded,
                evicted,
            };
            (outcome, true)
        })
    }

    /// Approves a pending request: the device is paired with its role(s) and `scopes` (the
    /// requested ones when `None`) added to what it had; its pinned platform, device family,
    /// client and name become the request's; and each requested role is issued a new token
    /// (replacing, and so un-revoking, the role's old one), as Node's approval does
    /// (WRK:2316-2356). Nothing changes unless saved.
    pub fn try_approve(
        &self,
        request_id: &str,
        scopes: Option<Vec<String>>,
    ) -> Result<PairedDevice, PairingError> {
        self.try_approve_within(request_id, scopes, None)
    }

    /// [`try_approve`](Self::try_approve) on behalf of a connection that may grant at most
    /// `caller_scopes` (Node's `callerScopes`, WRK:2328-2343): refused with
    /// [`PairingError::BeyondCallerScopes`], the request left pending, when the operator token
    /// it would issue (or the operator scopes asked for) goes beyond them. `None`: no limit
    /// (the host decides).
    pub fn try_approve_within(
        &self,
        request_id: &str,
        scopes: Option<Vec<String>>,
        caller_scopes: Option<&[String]>,
    ) -> Result<PairedDevice, PairingError> {
        self.approve(request_id, scopes, caller_scopes, None)
    }

    /// Approves `request_id` as a bootstrap token with `profile` pairs its device: with the
    /// profile's scopes, and only when every role the request asks for (it may have merged an
    /// earlier request of the device) is one of the profile's and its operator scopes are
    /// within the profile's; else [`PairingError::OutsideBootstrapProfile`], the request left
    /// pending (`approveBootstrapDevicePairingInWorker`,
    /// openclaw-state-worker-runtime-*.mjs:2377-2400).
    pub fn try_approve_bootstrap(
        &self,
        request_id: &str,
        profile: &BootstrapProfile,
    ) -> Result<PairedDevice, PairingError> {
        self.approve(
            request_id,
            Some(profile.scopes.clone()),
            None,
            Some(profile),
        )
    }

    fn approve(
        &self,
        request_id: &str,
        scopes: Option<Vec<String>>,
        caller_scopes: Option<&[String]>,
        profile: Option<&BootstrapProfile>,
    ) -> Result<PairedDevice, PairingError> {
        self.mutate_strict(|state| {
            let request = state.take_pending(request_id)?;
            let now = now_ms();
            let roles = requested_roles(&request);
            if let Some(profile) = profile {
                let outside = |what: String| PairingError::OutsideBootstrapProfile {
                    request_id: request_id.to_owned(),
                    what,
                };
                if let Some(role) = roles.iter().find(|r| !profile.roles.contains(r)) {
                    return Err(outside(format!("role {role}")));
                }
                let operator: Vec<String> = request
                    .scopes
                    .iter()
                    .filter(|s| s.starts_with("operator."))
                    .cloned()
                    .collect();
                if let Some(scope) = missing_requested_scope("operator", &operator, &profile.scopes)
                {
                    return Err(outside(format!("scope {scope}")));
                }
            }
            let granted = scopes.unwrap_or_else(|| request.scopes.clone());
            // Each requested role's token scopes (WRK:2270-2279, 2316-2327), checked against
            // the caller's before anything changes.
            let existing = state
                .devices
                .get(&request.device_id)
                .filter(|d| d.device.public_key == request.public_key);
            let mut token_scopes = Vec::new();
            for role in &roles {
                let old = existing.and_then(|d| d.tokens.iter().find(|t| &t.role == role));
                let approved = existing.map_or(&[][..], |d| &d.device.scopes[..]);
                let next = approved_token_scopes(role, &granted, old, approved);
                if let (Some(cap), "operator", false) =
                    (caller_scopes, role.as_str(), next.is_empty())
                {
                    let mut required = role_token_scopes(role, &granted);
                    merge_into(&mut required, &next);
                    if let Some(scope) = required.iter().find(|s| !scope_satisfied(s, cap)) {
                        return Err(PairingError::BeyondCallerScopes {
                            request_id: request_id.to_owned(),
                            scope: scope.clone(),
                        });
                    }
                }
                token_scopes.push((role.clone(), next));
            }
            let stored = state
                .devices
                .entry(request.device_id.clone())
                .or_insert_with(|| StoredDevice {
                    device: PairedDevice {
                        device_id: request.device_id.clone(),
                        public_key: request.public_key.clone(),
                        roles: Vec::new(),
                        scopes: Vec::new(),
                        platform: None,
                        device_family: None,
                        client_id: request.client_id.clone(),
                        client_mode: request.client_mode.clone(),
                        display_name: None,
                        approved_at_ms: now,
                        last_seen_at_ms: None,
                    },
                    tokens: Vec::new(),
                });
            let device = &mut stored.device;
            if device.public_key != request.public_key {
                // A new key under the same id cannot happen (the id is the key's hash) unless
                // the file was edited: tokens of the old key must not outlive it.
                stored.tokens.clear();
            }
            device.public_key = request.public_key.clone();
            merge_into(&mut device.roles, &roles);
            merge_into(&mut device.scopes, &granted);
            for (role, scopes) in token_scopes {
                let token = new_token().map_err(|err| PairingError::Random(err.to_string()))?;
                let old = stored.tokens.iter().position(|t| t.role == role);
                let entry = StoredToken {
                    role,
                    sha256: token_hash(&token),
                    scopes,
                    created_at_ms: old.map_or(now, |at| stored.tokens[at].created_at_ms),
                    rotated_at_ms: old.map(|_| now),
                    revoked_at_ms: None,
                    plaintext: Some(token),
                };
                match old {
                    Some(at) => stored.tokens[at] = entry,
                    None => {
                        stored.tokens.push(entry);
                        stored.tokens.sort_by(|a, b| a.role.cmp(&b.role));
                    }
                }
            }
            let device = &mut stored.device;
            // The request's metadata is pinned as it is, absent fields included: approving a
            // metadata upgrade re-pins what the device now claims (WRK:2231-2232,
            // `buildApprovedPairedDevice`), so its next connect matches.
            device.platform = request.platform;
            device.device_family = request.device_family;
            device.client_id = request.client_id;
            device.client_mode = request.client_mode;
            device.display_name = request.display_name.or(device.display_name.take());
            Ok(device.clone())
        })
    }

    /// Drops a pending request; `None` when no such request is pending.
    pub fn reject(&self, request_id: &str) -> Option<PairingRequest> {
        self.logged(self.try_reject(request_id))
    }

    /// [`reject`](Self::reject), saying why it did nothing.
    pub fn try_reject(&self, request_id: &str) -> Result<PairingRequest, PairingError> {
        self.mutate_strict(|state| state.take_pending(request_id))
    }

    /// The pending requests that have not expired, oldest first.
    pub fn pending(&self) -> Vec<PairingRequest> {
        let mut state = self.lock();
        state.prune_expired(now_ms());
        let mut pending: Vec<PairingRequest> =
            state.pending.iter().map(|p| p.request.clone()).collect();
        pending.sort_by_key(|p| p.ts);
        pending
    }

    /// Removes a paired device, its tokens and its pending requests.
    pub fn remove_device(&self, device_id: &str) -> Result<PairedDevice, PairingError> {
        self.mutate_strict(|state| {
            let removed = state
                .devices
                .remove(device_id)
                .ok_or_else(|| PairingError::UnknownDevice(device_id.to_owned()))?;
            state.pending.retain(|p| p.request.device_id != device_id);
            Ok(removed.device)
        })
    }

    /// Checks a device token presented for `device_id` in `role`, asking for `scopes`
    /// (`verifyDeviceTokenInWorker`): paired, a token for the role, not revoked, equal, its
    /// scopes within the approved ones, the requested ones within its scopes.
    pub fn verify_device_token(
        &self,
        device_id: &str,
        role: &str,
        token: &str,
        scopes: &[String],
    ) -> Result<(), TokenRefusal> {
        let state = self.lock();
        let stored = state.devices.get(device_id).ok_or(TokenRefusal::Mismatch)?;
        let entry = stored
            .tokens
            .iter()
            .find(|t| t.role == role && t.is_active())
            .ok_or(TokenRefusal::Mismatch)?;
        if !entry.matches(token) {
            return Err(TokenRefusal::Mismatch);
        }
        if !within(&entry.scopes, &stored.device.scopes) || !within(scopes, &entry.scopes) {
            return Err(TokenRefusal::ScopeMismatch);
        }
        Ok(())
    }

    /// The device token `hello-ok` hands a paired device in `role` asking for `scopes` (the
    /// connection's requested scopes, as Node passes them: MH:1435-1441;
    /// `ensureDeviceTokenInWorker`, WRK:2832-2875): `None` when the role is not approved, its
    /// token was revoked (only an approval issues it a new one), or the scopes are beyond the
    /// approved ones; `presented` when it is the device's active token
    /// for the role, within the approved scopes and covering `scopes` (SPEC §11.8's reuse
    /// rule), or, when the connect did not present it, that same token from memory if this
    /// process issued it or saw it verified (no write; see [`StoredToken`]); else a new token
    /// (32 random bytes, base64url) for `scopes`, which replaces the role's old one.
    /// `presented` may be any credential the connect carried: it is handed back only when it
    /// hashes to the stored token.
    pub fn ensure_device_token_for(
        &self,
        device_id: &str,
        role: &str,
        scopes: &[String],
        presented: Option<&str>,
    ) -> Option<IssuedToken> {
        let result = self.mutate_lenient("issue a device token", |state| {
            let Some(stored) = state.devices.get_mut(device_id) else {
                return (None, false);
            };
            if !stored.device.roles.iter().any(|r| r == role)
                || !within(scopes, &stored.device.scopes)
            {
                return (None, false);
            }
            let existing = stored.tokens.iter().position(|t| t.role == role);
            // A revoked role stays revoked until an approval replaces its token: a handshake
            // that raced the revoke must not mint it a fresh one.
            if existing.is_some_and(|at| !stored.tokens[at].is_active()) {
                return (None, false);
            }
            if let Some(at) = existing {
                let approved = &stored.device.scopes;
                let entry = &mut stored.tokens[at];
                if entry.is_active()
                    && within(&entry.scopes, approved)
                    && within(scopes, &entry.scopes)
                {
                    if let Some(presented) = presented.filter(|p| entry.matches(p)) {
                        entry.plaintext = Some(presented.to_owned());
                    }
                    if let Some(token) = &entry.plaintext {
                        let issued = IssuedToken {
                            token: token.clone(),
                            issued_at_ms: entry.issued_at_ms(),
                        };
                        return (Some(Ok(issued)), false);
                    }
                }
            }
            let token = match new_token() {
                Ok(token) => token,
                Err(err) => return (Some(Err(err)), false),
            };
            let now = now_ms();
            let entry = StoredToken {
                role: role.to_owned(),
                sha256: token_hash(&token),
                scopes: scopes.to_vec(),
                created_at_ms: existing.map_or(now, |at| stored.tokens[at].created_at_ms),
                rotated_at_ms: existing.map(|_| now),
                revoked_at_ms: None,
                plaintext: Some(token.clone()),
            };
            let issued_at_ms = entry.issued_at_ms();
            match existing {
                Some(at) => stored.tokens[at] = entry,
                None => {
                    stored.tokens.push(entry);
                    stored.tokens.sort_by(|a, b| a.role.cmp(&b.role));
                }
            }
            let issued = IssuedToken {
                token,
                issued_at_ms,
            };
            (Some(Ok(issued)), true)
        });
        match result? {
            Ok(issued) => Some(issued),
            Err(err) => {
                self.logger.log(
                    LogLevel::Error,
                    &format!("device token not issued: the system's random source failed: {err}"),
                );
                None
            }
        }
    }

    /// Revokes the device token of `device_id` in `role`: it is refused from now on, and the
    /// role counts as not approved until the device pairs again.
    pub fn try_revoke_device_token(&self, device_id: &str, role: &str) -> Result<(), PairingError> {
        self.mutate_strict(|state| {
            let stored = state
                .devices
                .get_mut(device_id)
                .ok_or_else(|| PairingError::UnknownDevice(device_id.to_owned()))?;
            let entry = stored
                .tokens
                .iter_mut()
                .find(|t| t.role == role && t.is_active())
                .ok_or_else(|| PairingError::NoToken {
                    device_id: device_id.to_owned(),
                    role: role.to_owned(),
                })?;
            entry.revoked_at_ms = Some(now_ms());
            entry.plaintext = None;
            Ok(())
        })
    }

    /// Refreshes a paired device's display name and last-seen time on connect (in memory;
    /// saved with the next change).
    pub fn touch(&self, device_id: &str, display_name: Option<&str>) {
        if let Some(stored) = self.lock().devices.get_mut(device_id) {
            if let Some(name) = display_name {
                stored.device.display_name = Some(name.to_owned());
            }
            stored.device.last_seen_at_ms = Some(now_ms());
        }
    }

    /// A save's stop before it writes: says it got there, then waits while a test holds
    /// `write_pause`.
    #[cfg(test)]
    fn pause_for_test(&self) {
        if let Some(reached) = &*self.write_reached.lock().unwrap() {
            let _ = reached.send(());
        }
        drop(self.write_pause.lock());
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock left `State` whole: every change is made on a copy.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change` to a copy of the state, makes it the state, and saves it; when the
    /// save fails the state is put back as it was (a host's call that fails changes nothing),
    /// unless a handshake changed the store meanwhile: then the change stays in memory, is
    /// logged, and is saved with the next change. Putting it back also undoes what changed in
    /// memory only while the save ran (a [`touch`](Self::touch), a pending request's refresh,
    /// a token plaintext remembered for reuse): those are not numbered as changes, and losing
    /// them costs only a stale last-seen time or a token minted anew on the next connect.
    fn mutate_strict<R>(
        &self,
        change: impl FnOnce(&mut State) -> Result<R, PairingError>,
    ) -> Result<R, PairingError> {
        let (result, before, snapshot) = {
            let mut state = self.lock();
            let mut next = state.clone();
            let result = change(&mut next)?;
            let before = std::mem::replace(&mut *state, next);
            (result, before, Self::snapshot(&mut state))
        };
        let Err(err) = self.save(snapshot) else {
            return Ok(result);
        };
        {
            let mut state = self.lock();
            if state.generation == before.generation + 1 {
                let generation = state.generation;
                *state = before;
                state.generation = generation;
                return Err(err);
            }
        }
        // Logged without the state lock: the host's log callback may call back into the store.
        self.logger.log(
            LogLevel::Error,
            &format!("{err} (kept in memory: saved with the next change)"),
        );
        Ok(result)
    }

    /// Applies `change` (which says whether it changed anything worth saving) and saves it
    /// after releasing the state; a failed save is logged and the change kept in memory (the
    /// handshake must answer either way, and the next successful save writes it).
    fn mutate_lenient<R>(&self, what: &str, change: impl FnOnce(&mut State) -> (R, bool)) -> R {
        let (result, snapshot) = {
            let mut state = self.lock();
            let (result, changed) = change(&mut state);
            (result, changed.then(|| Self::snapshot(&mut state)))
        };
        if let Some(snapshot) = snapshot
            && let Err(err) = self.save(snapshot)
        {
            self.logger.log(
                LogLevel::Error,
                &format!("{what}: {err} (kept in memory until the next save)"),
            );
        }
        result
    }

    /// Numbers a change and copies what the file must hold after it (under the state lock).
    fn snapshot(state: &mut State) -> (u64, StoreFile) {
        state.generation += 1;
        (state.generation, state.to_file())
    }

    /// Logs a failed save of a lenient call; `None` for any failure.
    fn logged<R>(&self, result: Result<R, PairingError>) -> Option<R> {
        match result {
            Ok(value) => Some(value),
            Err(err @ PairingError::Write { .. }) => {
                self.logger.log(LogLevel::Error, &err.to_string());
                None
            }
            Err(_) => None,
        }
    }

    /// Writes a snapshot unless the file already holds it or a newer one; one write at a
    /// time, none under the state lock.
    fn save(&self, (generation, file): (u64, StoreFile)) -> Result<(), PairingError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let failed = |source| PairingError::Write {
            path: path.clone(),
            source,
        };
        let mut text = serde_json::to_vec_pretty(&file)
            .map_err(io::Error::other)
            .map_err(failed)?;
        text.push(b'\n');
        // Waiting for another save's write blocks too: both waits are off the async worker.
        off_async_worker(|| {
            let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            if *written >= generation {
                return Ok(());
            }
            #[cfg(test)]
            self.pause_for_test();
            write_atomically(path, &text).map_err(failed)?;
            *written = generation;
            Ok(())
        })
    }
}

/// Drops the oldest pending requests beyond [`MAX_PENDING_PER_IP`] from `newest`'s IP and
/// beyond [`MAX_PENDING`] in all; `newest` (just added) stays. Returns what was dropped.
fn evict_beyond_caps(
    pending: &mut Vec<StoredRequest>,
    newest: &PairingRequest,
) -> Vec<PairingRequest> {
    let mut evicted = Vec::new();
    let mut drop_oldest = |pending: &mut Vec<StoredRequest>, same_ip: bool| {
        let oldest = pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.request.request_id != newest.request_id)
            .filter(|(_, p)| !same_ip || p.request.remote_ip == newest.remote_ip)
            .min_by_key(|(_, p)| p.request.ts)
            .map(|(at, _)| at);
        if let Some(at) = oldest {
            evicted.push(pending.remove(at).request);
        }
    };
    while pending
        .iter()
        .filter(|p| p.request.remote_ip == newest.remote_ip)
        .count()
        > MAX_PENDING_PER_IP
    {
        drop_oldest(pending, true);
    }
    while pending.len() > MAX_PENDING {
        drop_oldest(pending, false);
    }
    evicted
}

/// Runs `write` off the async worker when called on the gateway's (multi-thread) runtime, so
/// the worker's other connections move to another thread while it waits for the disk.
fn off_async_worker<R>(write: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(write)
        }
        _ => write(),
    }
}

/// Writes `file` to `path` whole or not at all: a new file (0600) beside it, flushed, renamed
/// over it, and the directory flushed so the rename survives a crash.
fn write_atomically(path: &Path, text: &[u8]) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let name = path
        .file_name()
        .map_or("devices.json".into(), |n| n.to_string_lossy());
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        out.write_all(text)?;
        out.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    File::open(dir)?.sync_all()
}

/// A new device token: 32 random bytes, base64url without padding (43 characters), as Node's
/// `pairing-token-*.mjs:5-14`.
fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `granted` allows `required`: an operator scope by its implications (SPEC §12.3), any
/// other only by itself (Node's `roleScopesAllow`).
fn allows(required: &str, granted: &[String]) -> bool {
    scope_satisfied(required, granted) || granted.iter().any(|g| g == required)
}

fn within(required: &[String], granted: &[String]) -> bool {
    required.iter().all(|r| allows(r, granted))
}

/// The scopes a token of `role` carries: the operator's `operator.*` ones, any other role's
/// the rest (`resolveRoleTokenScopes`, device-pairing-token-utils-*.mjs:19-23).
fn role_token_scopes(role: &str, scopes: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let own = scopes
        .iter()
        .filter(|s| (role == "operator") == s.starts_with("operator."))
        .cloned()
        .collect::<Vec<_>>();
    merge_into(&mut out, &own);
    out
}

/// The scopes an approval gives `role`'s token (`resolveApprovedTokenScopes`, WRK:2270-2279):
/// what the request adds beyond the approved baseline, on top of the old token's scopes; the
/// old token's (or the approved) scopes when the request names none for the role.
fn approved_token_scopes(
    role: &str,
    requested: &[String],
    old: Option<&StoredToken>,
    approved: &[String],
) -> Vec<String> {
    let pending = role_token_scopes(role, requested);
    if pending.is_empty() {
        return role_token_scopes(role, old.map_or(approved, |t| &t.scopes[..]));
    }
    let baseline = role_token_scopes(role, approved);
    let delta: Vec<String> = match old {
        Some(_) if !baseline.is_empty() => pending
            .into_iter()
            .filter(|s| !baseline.contains(s))
            .collect(),
        _ => pending,
    };
    let mut scopes = old.map_or_else(Vec::new, |t| t.scopes.clone());
    if delta.is_empty() && old.is_some() {
        return role_token_scopes(role, &scopes);
    }
    merge_into(&mut scopes, &delta);
    role_token_scopes(role, &scopes)
}

fn requested_roles(request: &PairingRequest) -> Vec<String> {
    let mut roles = request.roles.clone().unwrap_or_default();
    merge_into(&mut roles, std::slice::from_ref(&request.role));
    roles
}

/// Appends the items of `more` that `into` lacks, keeping first-seen order.
fn merge_into(into: &mut Vec<String>, more: &[String]) {
    for item in more {
        if !into.contains(item) {
            into.push(item.clone());
        }
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
}

/// Node's `samePendingApprovalSnapshot`.
fn same_approval(existing: &PairingRequest, incoming: &PairingRequest) -> bool {
    existing.public_key == incoming.public_key
        && existing.browser_origin == incoming.browser_origin
        && existing.role == incoming.role
        && same_set(&requested_roles(existing), &requested_roles(incoming))
        && same_set(&existing.scopes, &incoming.scopes)
}

/// Node's `incomingApprovalCoveredByExisting`.
fn covers(existing: &PairingRequest, incoming: &PairingRequest) -> bool {
    existing.public_key == incoming.public_key
        && existing.browser_origin == incoming.browser_origin
        && existing.role == incoming.role
        && requested_roles(incoming)
            .iter()
            .all(|r| requested_roles(existing).contains(r))
        && within(&incoming.scopes, &existing.scopes)
}

/// Node's `refreshPendingDevicePairingRequest`: the id, `ts` and origin stay.
fn refresh(
    existing: &PairingRequest,
    incoming: &PairingRequest,
    is_repair: bool,
) -> PairingRequest {
    PairingRequest {
        public_key: incoming.public_key.clone(),
        display_name: incoming
            .display_name
            .clone()
            .or(existing.display_name.clone()),
        platform: incoming.platform.clone().or(existing.platform.clone()),
        device_family: incoming
            .device_family
            .clone()
            .or(existing.device_family.clone()),
        client_id: incoming.client_id.clone(),
        client_mode: incoming.client_mode.clone(),
        remote_ip: incoming.remote_ip.clone().or(existing.remote_ip.clone()),
        silent: Some(existing.silent == Some(true) && incoming.silent == Some(true)),
        is_repair: existing.is_repair || is_repair,
        ..existing.clone()
    }
}

/// The request that replaces a device's pending ones: `incoming` with every role and scope
/// asked for merged in (Node's `buildReplacement`).
fn replacement(
    existing: &[StoredRequest],
    mut incoming: PairingRequest,
    is_repair: bool,
    now: u64,
) -> PairingRequest {
    let mut roles = Vec::new();
    let mut scopes = Vec::new();
    for old in existing {
        merge_into(&mut roles, &requested_roles(&old.request));
        merge_into(&mut scopes, &old.request.scopes);
    }
    merge_into(&mut roles, &requested_roles(&incoming));
    merge_into(&mut scopes, &incoming.scopes);
    incoming.roles = Some(roles);
    incoming.scopes = scopes;
    incoming.silent = Some(
        incoming.silent == Some(true) && existing.iter().all(|p| p.request.silent == Some(true)),
    );
    incoming.is_repair = is_repair;
    incoming.ts = now;
    incoming
}

mod bootstrap;
#[cfg(test)]
mod tests;
