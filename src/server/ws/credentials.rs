//! The handshake's limiter of failed credentials and its bootstrap tokens (SPEC §11.7): which
//! limiter and key a connection is counted under, when a failure is recorded and a loopback
//! peer's answer held back (NCR:190-340), and what a valid bootstrap token pairs.

use std::time::Duration;

use serde_json::{Value, json};

use super::session::Session;
use crate::options::Auth;
use crate::server::auth::{self, AuthReason};
use crate::server::device::ProvenDevice;
use crate::server::pairing::{BootstrapProfile, PairedDevice, PairingReason, PairingRequest};
use crate::server::protocol::{self, ConnectParams, MethodError, close};
use crate::server::rate_limit::{LimitKey, LimitScope, RateLimiter};
use crate::server::scopes::role_scopes_allow;

/// An auth-failure answer held back before it is sent.
pub(super) struct HeldRefusal {
    pub id: Value,
    pub error: MethodError,
    pub reason: String,
    pub delay: Duration,
}

/// One `connect`'s standing with the limiter: who it is counted as, and which failures are
/// recorded if it ends unauthenticated.
pub(super) struct AuthAttempt {
    /// The upgrade carried an `Origin` header: the browser limiter counts it (NCR:28-37).
    browser: bool,
    key: LimitKey,
    /// A wrong shared secret, recorded (and a loopback peer slowed) only if nothing else
    /// authenticates the connect (NCR:246; `deferRateLimitFailure`).
    shared_failed: bool,
    /// A refused bootstrap token, recorded likewise (NCR:247).
    bootstrap_failed: bool,
}

impl Session {
    fn limiter(&self, attempt: &AuthAttempt) -> &RateLimiter {
        if attempt.browser {
            &self.endpoint.browser_throttle
        } else {
            &self.endpoint.throttle
        }
    }

    /// The limiter standing of this connection's `connect`.
    pub(super) fn auth_attempt(&self) -> AuthAttempt {
        let origin = self.origin.as_deref().filter(|o| !o.trim().is_empty());
        AuthAttempt {
            browser: origin.is_some(),
            key: LimitKey::for_ingress(self.peer.ip(), self.ingress.kind, origin),
            shared_failed: false,
            bootstrap_failed: false,
        }
    }

    /// SPEC §11.7 step 1 behind the limiter: a client locked out of `shared-secret` is refused
    /// before its secret is compared (AUTH:304-309); a right secret clears its failures; a
    /// wrong one is noted for [`settle_failures`](Self::settle_failures). Only a connect that
    /// sends a secret to a gateway that has one is limited (NCR:201).
    pub(super) fn check_shared_limited(
        &self,
        attempt: &mut AuthAttempt,
        params: &ConnectParams,
    ) -> Result<(), AuthReason> {
        let provided = auth::present(params.token.as_deref()).is_some()
            || auth::present(params.password.as_deref()).is_some();
        let limited = provided && self.endpoint.auth != Auth::None;
        if limited
            && let Err(retry_after) = self
                .limiter(attempt)
                .check(&attempt.key, LimitScope::SharedSecret)
        {
            return Err(AuthReason::RateLimited { retry_after });
        }
        let result = auth::check_shared(
            &self.endpoint.auth,
            params.token.as_deref(),
            params.password.as_deref(),
        );
        match result {
            Ok(()) if limited => self
                .limiter(attempt)
                .reset(&attempt.key, LimitScope::SharedSecret),
            Err(AuthReason::TokenMismatch | AuthReason::PasswordMismatch) => {
                attempt.shared_failed = true;
            }
            _ => {}
        }
        result
    }

    /// SPEC §11.7 step 2: the bootstrap token of a proven device, behind the limiter's
    /// `bootstrap-token` scope (NCR:255-292). `Err` carries the reason the answer names if the
    /// shared secret failed too.
    pub(super) fn check_bootstrap(
        &self,
        attempt: &mut AuthAttempt,
        token: &str,
        proven: &ProvenDevice,
        role: &str,
        scopes: &[String],
    ) -> Result<BootstrapProfile, AuthReason> {
        let limiter = self.limiter(attempt);
        if let Err(retry_after) = limiter.check(&attempt.key, LimitScope::BootstrapToken) {
            return Err(AuthReason::RateLimited { retry_after });
        }
        match self.endpoint.devices.verify_bootstrap_token(
            token,
            &proven.id,
            &proven.public_key,
            role,
            scopes,
        ) {
            Some(profile) => {
                limiter.reset(&attempt.key, LimitScope::BootstrapToken);
                Ok(profile)
            }
            None => {
                attempt.bootstrap_failed = true;
                Err(AuthReason::BootstrapTokenInvalid)
            }
        }
    }

    /// `Some(retry_after)` while this client is locked out of `device-token` (NCR:300-312).
    pub(super) fn device_token_locked(&self, attempt: &AuthAttempt) -> Option<Duration> {
        self.limiter(attempt)
            .check(&attempt.key, LimitScope::DeviceToken)
            .err()
    }

    /// A device token was checked: success clears the client's `device-token` failures, a
    /// refusal counts one, at once and never slowed (NCR:322-334).
    pub(super) fn device_token_checked(&self, attempt: &AuthAttempt, ok: bool) {
        let limiter = self.limiter(attempt);
        if ok {
            limiter.reset(&attempt.key, LimitScope::DeviceToken);
        } else {
            limiter.record_failure(&attempt.key, LimitScope::DeviceToken);
        }
    }

    /// The connect ends unauthenticated: its wrong shared secret and refused bootstrap token
    /// are counted now (NCR:245-248). Gives how long the answer is held: only a wrong shared
    /// secret of a client the limiter exempts from lockout (a loopback peer without `Origin`)
    /// is answered late.
    pub(super) fn settle_failures(&self, attempt: &AuthAttempt) -> Duration {
        let limiter = self.limiter(attempt);
        let delay = if attempt.shared_failed {
            limiter.record_failure(&attempt.key, LimitScope::SharedSecret)
        } else {
            Duration::ZERO
        };
        if attempt.bootstrap_failed {
            limiter.record_failure(&attempt.key, LimitScope::BootstrapToken);
        }
        delay
    }

    /// Holds the auth-failure answer: the session sends it after `delay` (nothing else of the
    /// connection is read meanwhile).
    pub(super) fn hold_refusal(
        &mut self,
        id: &Value,
        error: MethodError,
        reason: String,
        delay: Duration,
    ) {
        self.held_refusal = Some(HeldRefusal {
            id: id.clone(),
            error,
            reason,
            delay,
        });
    }

    /// Sends a held answer and closes 1008, as an unheld one.
    pub(super) fn send_held(&mut self, held: HeldRefusal) {
        self.fail(
            Some((&held.id, held.error)),
            close::POLICY_VIOLATION,
            &held.reason,
        );
    }

    /// Pairs a device that authenticated with a bootstrap token as its profile says (the
    /// `bootstrap` approval of SPEC §11.5; MH:1909-1940, 2072-2097): a fresh pairing or a
    /// scope upgrade, recorded as a request and approved at once with the profile's roles and
    /// scopes, without asking the host's policy (the host decided when it issued the token).
    /// `None` (the usual pairing path then decides) for other reasons, or when the record
    /// still would not cover the connect.
    pub(super) fn pair_by_bootstrap(
        &self,
        params: &ConnectParams,
        role: &str,
        proven: &ProvenDevice,
        reason: PairingReason,
        profile: &BootstrapProfile,
    ) -> Option<PairedDevice> {
        if !matches!(
            reason,
            PairingReason::NotPaired | PairingReason::ScopeUpgrade
        ) {
            return None;
        }
        let endpoint = &self.endpoint;
        let mut roles = vec![role.to_owned()];
        roles.extend(profile.roles.iter().filter(|r| *r != role).cloned());
        let request = PairingRequest {
            silent: Some(true),
            is_repair: reason != PairingReason::NotPaired,
            ..self.pairing_request(params, role, proven, roles, profile.scopes.clone())
        };
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
            endpoint.hub.broadcast(
                "device.pair.resolved",
                &resolved(&old.request_id, "rejected"),
            );
        }
        let request_id = &outcome.request.request_id;
        endpoint
            .devices
            .try_approve_bootstrap(request_id, profile)
            .ok()?;
        endpoint
            .hub
            .broadcast("device.pair.resolved", &resolved(request_id, "approved"));
        let scopes = &params.scopes;
        endpoint.devices.paired(&proven.id).filter(|p| {
            p.public_key == proven.public_key
                && endpoint.devices.role_active(&proven.id, role)
                && role_scopes_allow(role, scopes, &p.scopes)
        })
    }
}
