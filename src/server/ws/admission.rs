//! Who may complete the `connect` handshake, in OpenClaw's order (SPEC §11.3–11.7): the shared
//! secret, the missing-device table and its scope clearing, the device proof, bootstrap and
//! device tokens, pairing through the store and the host's policy, and the node-role rule.
//! Each refusal answers Node's exact frame and closes 1008.

use serde_json::{Map, Value, json};

use super::credentials::AuthAttempt;
use super::session::Session;
use crate::options::Auth;
use crate::server::auth::{self, AuthReason, FailedConnect};
use crate::server::device::{self, PayloadFields, ProvenDevice};
use crate::server::locality::{IngressKind, LocalityInputs, is_loopback_ip, pairing_locality};
use crate::server::pairing::{
    DeviceStore, IssuedToken, Locality, PairedDevice, PairingContext, PairingDecision,
    PairingReason, PairingRequest, TokenRefusal, silent_local_approval,
};
use crate::server::protocol::{self, ConnectParams, MethodError, close};
use crate::server::scopes::{self, role_scopes_allow};

/// What a client that passed admission is granted.
pub(super) struct Admitted {
    /// Effective scopes (cleared for device-less shared-secret operators, SPEC §11.4).
    pub scopes: Vec<String>,
    /// `hello-ok.auth.method`.
    pub auth_method: &'static str,
    /// The proven device's id.
    pub device_id: Option<String>,
    /// The device token `hello-ok` hands out.
    pub device_token: Option<IssuedToken>,
    /// `hello-ok.auth.recoveryScope` (operators only).
    pub recovery_scope: Option<String>,
}

/// `client.id` of the Control UI and the TUI (`isOperatorUiClient`, minus the browser copilot).
fn is_control_ui(client_id: &str) -> bool {
    matches!(client_id, "openclaw-control-ui" | "openclaw-tui")
}

/// `client.mode` `webchat` or `client.id` `webchat-ui` (message-channel-DDcHHhpX.mjs:42-45).
fn is_webchat(params: &ConnectParams) -> bool {
    params.mode == "webchat" || params.client_id() == "webchat-ui"
}

/// The requirement a NOT_PAIRED message names and the hint it gives (CED:68-95).
fn pairing_texts(reason: PairingReason) -> (&'static str, &'static str, &'static str) {
    match reason {
        PairingReason::NotPaired => (
            "not-paired",
            "device is not approved yet",
            "Approve this device from the pending pairing requests.",
        ),
        PairingReason::RoleUpgrade => (
            "role-upgrade",
            "device is asking for a higher role than currently approved",
            "Review the requested role upgrade, then approve the pending request.",
        ),
        PairingReason::ScopeUpgrade => (
            "scope-upgrade",
            "device is asking for more scopes than currently approved",
            "Review the requested scopes, then approve the pending upgrade.",
        ),
        PairingReason::MetadataUpgrade => (
            "metadata-upgrade",
            "device identity changed and must be re-approved",
            "Review the refreshed device details, then approve the pending request.",
        ),
    }
}

/// A request id Node names in the close reason (`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`).
fn quotable_request_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

/// Where a paired record's pinned metadata and the claim differ (simplified from MH:817-846 to
/// an exact compare after trimming and ASCII-lowercasing, as SPEC §11.9 allows).
fn metadata_changed(paired: &PairedDevice, params: &ConnectParams) -> bool {
    let differs = |pinned: &Option<String>, claimed: Option<&str>| {
        let pinned = device::normalize_metadata(pinned.as_deref());
        !pinned.is_empty() && pinned != device::normalize_metadata(claimed)
    };
    differs(&paired.platform, params.client_str("platform"))
        || differs(&paired.device_family, params.client_str("deviceFamily"))
}

impl Session {
    /// Answers `id` with `error` and closes 1008 with `reason` (cut to 120 bytes).
    fn refuse(&mut self, id: &Value, error: MethodError, reason: &str) {
        self.fail(Some((id, error)), close::POLICY_VIOLATION, reason);
    }

    /// Decides whether `params` may connect as `role`; refuses it (answer + close) and returns
    /// `None` otherwise.
    pub(super) fn admit(
        &mut self,
        id: &Value,
        params: &ConnectParams,
        role: &str,
    ) -> Option<Admitted> {
        let endpoint = std::sync::Arc::clone(&self.endpoint);
        let ip = self.peer.ip();
        let client_id = params.client_id();
        let control_ui = is_control_ui(client_id);
        let has_origin = self.origin.as_deref().is_some_and(|o| !o.trim().is_empty());
        let direct_local = self.ingress.kind == IngressKind::DirectLocal;
        let mut scopes = params.scopes.clone();

        // 1. The shared secret (NCR:190-249), unless the client is locked out (SPEC §11.7).
        let mut attempt = self.auth_attempt();
        let shared = self.check_shared_limited(&mut attempt, params);
        let shared_auth_ok = shared.is_ok() && endpoint.auth != Auth::None;
        let mut auth_ok = shared.is_ok();
        // The `authMethod` a shared-secret check yields is the mode's name, even when the
        // check failed (NCR:223).
        let mut auth_method = endpoint.auth.mode();
        let mut failure = shared.err();
        let ingress = self.ingress.clone();
        let origin = self.origin.clone();
        let locality = |shared_auth_ok: bool, auth_method: &str| {
            pairing_locality(
                &ingress,
                LocalityInputs {
                    client_id,
                    client_mode: &params.mode,
                    shared_auth_ok,
                    auth_method,
                    peer: ip,
                    origin: origin.as_deref().filter(|o| !o.trim().is_empty()),
                },
            )
        };
        let shared_secret = |method: &str| matches!(method, "token" | "password");
        // A local backend (`gateway-client`/`backend`) skips pairing and keeps its scopes;
        // the local CLI keeps its scopes (NCR:80-92).
        let local_backend = |locality: Locality, method: &str| {
            client_id == "gateway-client"
                && params.mode == "backend"
                && matches!(
                    locality,
                    Locality::DirectLocal | Locality::SharedSecretLoopbackLocal
                )
                && !has_origin
                && (matches!(method, "none" | "device-token")
                    || (shared_auth_ok && shared_secret(method)))
        };
        let local_cli = |locality: Locality, method: &str| {
            client_id == "cli"
                && params.mode == "cli"
                && matches!(
                    locality,
                    Locality::DirectLocal | Locality::CliContainerLocal
                )
                && !has_origin
                && shared_auth_ok
                && shared_secret(method)
        };
        let failed_connect = FailedConnect {
            client_id,
            client_mode: &params.mode,
            local: direct_local,
            has_device: params.device.is_some(),
            token: params.token.as_deref().is_some_and(|t| !t.is_empty()),
            password: params.password.as_deref().is_some_and(|p| !p.is_empty()),
            device_token: params
                .device_token
                .as_deref()
                .is_some_and(|t| !t.is_empty()),
        };

        // 2. No device: the missing-device table (MH:945-954, 1105-1143).
        let Some(device_block) = &params.device else {
            let here = locality(shared_auth_ok, auth_method);
            let backend = local_backend(here, auth_method);
            let allowed = if backend && role == "operator" {
                true
            } else if control_ui {
                let message =
                    "control ui requires device identity (use HTTPS or localhost secure context)";
                let error = MethodError::invalid_request(message)
                    .with_details(json!({"code": "CONTROL_UI_DEVICE_IDENTITY_REQUIRED"}));
                self.refuse(id, error, message);
                return None;
            } else if role == "operator" && shared_auth_ok {
                true
            } else if let (false, true, Some(reason)) = (
                auth_ok,
                failed_connect.token || failed_connect.password,
                failure,
            ) {
                self.refuse_unauthorized(id, reason, failed_connect, &attempt);
                return None;
            } else {
                let message = "device identity required";
                let error = MethodError::new("NOT_PAIRED", message)
                    .with_details(json!({"code": "DEVICE_IDENTITY_REQUIRED"}));
                self.refuse(id, error, message);
                return None;
            };
            debug_assert!(allowed);
            if !backend && !local_cli(here, auth_method) && shared_secret(auth_method) {
                scopes.clear();
            }
            return Some(Admitted {
                scopes: self.cap_scopes(scopes),
                auth_method,
                device_id: None,
                device_token: None,
                recovery_scope: self.recovery_scope(role, auth_method, None, None),
            });
        };

        // 3. The device proof (SPEC §11.3).
        let token_signed = params
            .token
            .as_deref()
            .or(params.device_token.as_deref())
            .or(params.bootstrap_token.as_deref())
            .unwrap_or_default();
        let fields = PayloadFields {
            device_id: &device_block.id,
            client_id,
            client_mode: &params.mode,
            role,
            scopes: &params.scopes,
            signed_at_ms: device_block.signed_at,
            token: token_signed,
            nonce: "",
            platform: params.client_str("platform"),
            device_family: params.client_str("deviceFamily"),
        };
        let nonce = self.nonce.hyphenated().to_string();
        let proven = match device::check_proof(device_block, fields, &nonce, protocol::now_ms()) {
            Ok(proven) => proven,
            Err(failure) => {
                self.refuse(id, failure.error(), failure.message());
                return None;
            }
        };

        // 4. Bootstrap token: checked whenever one is sent; its failure matters only when the
        // shared secret failed too (NCR:250-293).
        let bootstrap = auth::present(params.bootstrap_token.as_deref());
        let mut bootstrap_profile = None;
        let mut claim = None;
        if let Some(token) = bootstrap {
            match self.check_bootstrap(&mut attempt, token, &proven, role, &scopes) {
                Ok(profile) => {
                    auth_ok = true;
                    auth_method = "bootstrap-token";
                    bootstrap_profile = Some(profile);
                    claim = Some(BootstrapClaim {
                        devices: &endpoint.devices,
                        token,
                        spent: false,
                    });
                }
                Err(reason) if !auth_ok => failure = Some(reason),
                Err(_) => {}
            }
        }
        // 5. Device token, only while still unauthenticated (NCR:294-336).
        let explicit = auth::present(params.device_token.as_deref());
        let candidate = explicit.or(auth::present(params.token.as_deref()));
        let locked = (!auth_ok && candidate.is_some())
            .then(|| self.device_token_locked(&attempt))
            .flatten();
        if let Some(retry_after) = locked {
            failure = Some(AuthReason::RateLimited { retry_after });
        } else if !auth_ok && let Some(candidate) = candidate {
            let verified = endpoint
                .devices
                .verify_device_token(&proven.id, role, candidate, &scopes);
            self.device_token_checked(&attempt, verified.is_ok());
            match verified {
                Ok(()) => {
                    auth_ok = true;
                    auth_method = "device-token";
                }
                Err(TokenRefusal::ScopeMismatch) => failure = Some(AuthReason::ScopeMismatch),
                Err(TokenRefusal::Mismatch) if explicit.is_some() => {
                    failure = Some(AuthReason::DeviceTokenMismatch);
                }
                Err(TokenRefusal::Mismatch) => {}
            }
        }
        if !auth_ok {
            let reason = failure.unwrap_or(AuthReason::TokenMissing);
            self.refuse_unauthorized(id, reason, failed_connect, &attempt);
            return None;
        }
        let here = locality(shared_auth_ok, auth_method);

        // 6. Pairing (SPEC §11.5), unless a local backend or a Control UI on `auth.mode none`.
        let skip_pairing = local_backend(here, auth_method)
            || (control_ui && role == "operator" && endpoint.auth == Auth::None);
        let mut paired = endpoint.devices.paired(&proven.id);
        if !skip_pairing {
            let same_key = paired
                .as_ref()
                .filter(|p| p.public_key == proven.public_key);
            // A role counts only while it holds an unrevoked token (MH:1508); read from the
            // store only for a paired device whose metadata still matches.
            let role_active = || endpoint.devices.role_active(&proven.id, role);
            let reason = match same_key {
                None => Some(PairingReason::NotPaired),
                Some(p) if metadata_changed(p, params) => Some(PairingReason::MetadataUpgrade),
                Some(_) if !role_active() => Some(PairingReason::RoleUpgrade),
                Some(p) if !role_scopes_allow(role, &scopes, &p.scopes) => {
                    Some(PairingReason::ScopeUpgrade)
                }
                Some(_) => None,
            };
            // A bootstrap token pairs its device as its profile says (SPEC §11.5 `bootstrap`).
            let by_bootstrap = match (reason, &bootstrap_profile) {
                (Some(reason), Some(profile)) => {
                    self.pair_by_bootstrap(params, role, &proven, reason, profile)
                }
                _ => None,
            };
            if by_bootstrap.is_some() {
                paired = by_bootstrap;
            } else if let Some(reason) = reason {
                let context = PairingContext {
                    reason,
                    locality: here,
                    has_origin,
                    ui_client: control_ui || is_webchat(params),
                    auth_method: auth_method.to_owned(),
                    record_exists: paired.is_some(),
                };
                paired = Some(self.require_pairing(
                    id,
                    params,
                    role,
                    &mut scopes,
                    &proven,
                    paired,
                    context,
                )?);
            }
            endpoint
                .devices
                .touch(&proven.id, params.client_str("displayName"));
        }

        // 7. The device token for the requested scopes (MH:1435-1441; SPEC §11.8): the role's
        // token while it is unrevoked and covers the scopes (the one the connect carried, or
        // the one this process issued, kept in memory: tokens are stored hashed), else a new
        // one that replaces it. A node needs one (MH:2889-2900).
        let device_token = paired
            .as_ref()
            .filter(|p| p.public_key == proven.public_key)
            .and_then(|_| {
                endpoint
                    .devices
                    .ensure_device_token_for(&proven.id, role, &scopes, candidate)
            });
        if role == "node" && device_token.is_none() {
            let message = "authenticated node pairing identity unavailable";
            self.refuse(id, MethodError::new("NOT_PAIRED", message), message);
            return None;
        }
        if let Some(claim) = claim.filter(|_| auth_method == "bootstrap-token") {
            // Single use: spent once its device is in (WRK:1979-2000).
            claim.spend();
        }
        let recovery_scope = self.recovery_scope(
            role,
            auth_method,
            device_token.as_ref().map(|t| t.token.as_str()),
            Some(&proven.id),
        );
        Some(Admitted {
            scopes: self.cap_scopes(scopes),
            auth_method,
            device_id: Some(proven.id),
            device_token,
            recovery_scope,
        })
    }

    /// An operator's `recoveryScope`: the shared secret's generation counts only when the
    /// connection proved it (authMethod `token`/`password`).
    fn recovery_scope(
        &self,
        role: &str,
        auth_method: &str,
        device_token: Option<&str>,
        device_id: Option<&str>,
    ) -> Option<String> {
        if role != "operator" {
            return None;
        }
        let generation = matches!(auth_method, "token" | "password")
            .then(|| auth::shared_generation(&self.endpoint.auth))
            .flatten();
        auth::recovery_scope(device_token, generation.as_deref(), device_id)
    }

    /// The effective scopes: each once (MH:531), capped by `x-openclaw-scopes` on the upgrade
    /// (MH:519-525).
    fn cap_scopes(&self, scopes: Vec<String>) -> Vec<String> {
        let scopes = scopes::unique(scopes);
        match &self.ingress.scope_cap {
            None => scopes,
            Some(cap) => scopes.into_iter().filter(|s| cap.contains(s)).collect(),
        }
    }

    /// The auth-failure answer of SPEC §11.7; the attempt's wrong shared secret and bootstrap
    /// token count toward the limiter, and a loopback peer's answer may be held back.
    fn refuse_unauthorized(
        &mut self,
        id: &Value,
        reason: AuthReason,
        who: FailedConnect<'_>,
        attempt: &AuthAttempt,
    ) {
        let delay = self.settle_failures(attempt);
        let error = auth::failure_error(reason, who);
        let message = error.message.clone();
        if delay.is_zero() {
            self.refuse(id, error, &message);
        } else {
            self.hold_refusal(id, error, message, delay);
        }
    }

    /// `requirePairing(reason)` (MH:1997-2184): files or refreshes the pending request, asks
    /// the host's policy, broadcasts what happened, and returns the record when the device may
    /// go on (with `scopes` capped to the approved ones when the host approved fewer than were
    /// asked for); answers NOT_PAIRED otherwise.
    ///
    /// `Approve { scopes: None }` here approves at most what this connection asks for plus
    /// what the device already had (Node's `callerScopes`, MH:2071-2072): a pending request
    /// merged from other connects that asked for more stays pending for the host.
    /// A new pairing request from this connection's `connect` for `roles` and `scopes`: not
    /// silent, not a repair, no remote IP; the caller sets those that differ.
    pub(super) fn pairing_request(
        &self,
        params: &ConnectParams,
        role: &str,
        proven: &ProvenDevice,
        roles: Vec<String>,
        scopes: Vec<String>,
    ) -> PairingRequest {
        let owned = |field: &str| params.client_str(field).map(str::to_owned);
        PairingRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            device_id: proven.id.clone(),
            public_key: proven.public_key.clone(),
            display_name: owned("displayName"),
            platform: owned("platform"),
            device_family: owned("deviceFamily"),
            client_id: params.client_id().to_owned(),
            client_mode: params.mode.clone(),
            browser_origin: self.origin.clone(),
            role: role.to_owned(),
            roles: Some(roles),
            scopes,
            remote_ip: None,
            silent: None,
            is_repair: false,
            ts: protocol::now_ms(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn require_pairing(
        &mut self,
        id: &Value,
        params: &ConnectParams,
        role: &str,
        scopes: &mut Vec<String>,
        proven: &ProvenDevice,
        existing: Option<PairedDevice>,
        context: PairingContext,
    ) -> Option<PairedDevice> {
        let endpoint = std::sync::Arc::clone(&self.endpoint);
        let hub = &endpoint.hub;
        let ip = self.peer.ip();
        let mut request = PairingRequest {
            // The client's IP only when it is not local (MH:3321).
            remote_ip: (self.ingress.kind != IngressKind::DirectLocal && !is_loopback_ip(ip))
                .then(|| ip.to_string()),
            is_repair: existing.is_some(),
            // `mergeDevicePairingRoles(req.roles, role)`: the role asked for (WRK:2508).
            ..self.pairing_request(params, role, proven, vec![role.to_owned()], scopes.to_vec())
        };
        // `plan.silent` (MH:1936-1937, 2043): whether Node's local rule would approve this
        // connect inline, `autoApproveLocal` unset. The store merges it as Node does, and the
        // default policy approves only a request that stayed silent.
        request.silent = Some(silent_local_approval(&request, &context, true));
        let outcome = endpoint.devices.request_pairing(request);
        let resolved = |request_id: &str, decision: &str| {
            json!({
                "requestId": request_id,
                "deviceId": proven.id,
                "decision": decision,
                "ts": protocol::now_ms(),
            })
        };
        for old in outcome.superseded.iter().chain(&outcome.evicted) {
            hub.broadcast(
                "device.pair.resolved",
                &resolved(&old.request_id, "rejected"),
            );
        }
        let request_id = outcome.request.request_id.clone();
        let mut approved = false;
        let mut approval_failed = false;
        match endpoint.pairing.decide(&outcome.request, &context) {
            PairingDecision::Approve { scopes: granted } => {
                // The caller's cap (MH:2071-2072): what it asks for now and already had.
                let mut cap = scopes.clone();
                if let Some(existing) = existing
                    .as_ref()
                    .filter(|p| p.public_key == proven.public_key)
                {
                    for scope in &existing.scopes {
                        if !cap.contains(scope) {
                            cap.push(scope.clone());
                        }
                    }
                }
                let caller = granted.is_none().then_some(&cap[..]);
                match endpoint
                    .devices
                    .try_approve_within(&request_id, granted, caller)
                {
                    Ok(_) => {
                        approved = true;
                        hub.broadcast("device.pair.resolved", &resolved(&request_id, "approved"));
                    }
                    Err(err) => {
                        approval_failed = true;
                        hub.logger.log(
                            crate::options::LogLevel::Warn,
                            &format!("device {} not approved inline: {err}", proven.id),
                        );
                    }
                }
            }
            PairingDecision::Pending => {
                if outcome.created {
                    let payload = serde_json::to_value(&outcome.request).unwrap_or(Value::Null);
                    hub.broadcast("device.pair.requested", &payload);
                }
            }
            PairingDecision::Reject => {
                if endpoint.devices.reject(&request_id).is_some() {
                    hub.broadcast("device.pair.resolved", &resolved(&request_id, "rejected"));
                }
            }
        }
        // The device's live pending request, named even when an inline approval failed
        // (`resolveLivePendingRequestId`, MH:2058-2062).
        let pending = endpoint.devices.pending();
        let live_request = pending
            .iter()
            .find(|p| p.request_id == request_id)
            .or_else(|| {
                pending
                    .iter()
                    .find(|p| p.device_id == proven.id && p.public_key == proven.public_key)
            })
            .map(|p| p.request_id.clone());
        // Re-read: the same key, a role with an unrevoked token, and scopes that cover the
        // request (MH:1998-2002, 2129-2140).
        let role_active = endpoint.devices.role_active(&proven.id, role);
        let live = endpoint.devices.paired(&proven.id).filter(|p| {
            p.public_key == proven.public_key && role_active && !metadata_changed(p, params)
        });
        if let Some(live) = live {
            if role_scopes_allow(role, scopes, &live.scopes) {
                return Some(live);
            }
            // Approved just now with fewer scopes than asked: the connection is capped to
            // the approved ones and goes on (MH:2092-2096).
            if approved {
                scopes.retain(|s| {
                    role_scopes_allow(role, std::slice::from_ref(s), &live.scopes)
                        || live.scopes.contains(s)
                });
                return Some(live);
            }
        }
        if approval_failed && live_request.as_deref() == Some(request_id.as_str()) {
            let payload = serde_json::to_value(&outcome.request).unwrap_or(Value::Null);
            hub.broadcast("device.pair.requested", &payload);
        }
        let (reason, requirement, hint) = pairing_texts(context.reason);
        let message = format!("pairing required: {requirement}");
        let mut details = Map::new();
        details.insert("code".into(), "PAIRING_REQUIRED".into());
        details.insert("reason".into(), reason.into());
        if let Some(request_id) = &live_request {
            details.insert("requestId".into(), request_id.as_str().into());
        }
        details.insert("remediationHint".into(), hint.into());
        if context.ui_client
            && is_control_ui(params.client_id())
            && role == "operator"
            && live_request.is_some()
        {
            details.insert("recommendedNextStep".into(), "wait_then_retry".into());
            details.insert("retryable".into(), true.into());
            details.insert("pauseReconnect".into(), false.into());
        }
        details.insert("deviceId".into(), proven.id.as_str().into());
        details.insert("requestedRole".into(), role.into());
        if !scopes.is_empty() {
            details.insert("requestedScopes".into(), json!(scopes));
        }
        if let Some(existing) = existing.filter(|p| p.public_key == proven.public_key) {
            if !existing.roles.is_empty() {
                details.insert("approvedRoles".into(), json!(existing.roles));
            }
            if !existing.scopes.is_empty() {
                let mut approved = existing.scopes.clone();
                approved.sort();
                approved.dedup();
                details.insert("approvedScopes".into(), json!(approved));
            }
        }
        let reason_text = match &live_request {
            Some(request_id) if quotable_request_id(request_id) => {
                format!("{message} (requestId: {request_id})")
            }
            _ => message.clone(),
        };
        let error = MethodError::new("NOT_PAIRED", message).with_details(Value::Object(details));
        self.refuse(id, error, &reason_text);
        None
    }
}

/// A bootstrap token this connect verified (and so claimed): spent when the connect is
/// admitted, given back when it fails on any later step.
struct BootstrapClaim<'a> {
    devices: &'a DeviceStore,
    token: &'a str,
    spent: bool,
}

impl BootstrapClaim<'_> {
    fn spend(mut self) {
        self.devices.consume_bootstrap_token(self.token);
        self.spent = true;
    }
}

impl Drop for BootstrapClaim<'_> {
    fn drop(&mut self) {
        if !self.spent {
            self.devices.release_bootstrap_token(self.token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_named_in_close_reasons() {
        for (id, quoted) in [
            ("2f1e8a4c-3b7d-4e15-9a0c-6d5b4f3e2a10", true),
            ("a", true),
            ("a.b_c:d-e", true),
            ("-a", false),
            ("", false),
            ("a b", false),
            (&"a".repeat(129), false),
        ] {
            assert_eq!(quotable_request_id(id), quoted, "{id:?}");
        }
    }

    #[test]
    fn pairing_texts_name_each_reason() {
        assert_eq!(
            pairing_texts(PairingReason::ScopeUpgrade),
            (
                "scope-upgrade",
                "device is asking for more scopes than currently approved",
                "Review the requested scopes, then approve the pending upgrade."
            )
        );
    }
}
