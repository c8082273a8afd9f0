//! Shared-secret auth for the `connect` handshake (SPEC §11.7): a constant-time comparison,
//! the auth-failure answer with Node's hints and details, and the knobs of the limiter of
//! repeated failures (`rate_limit.rs`).

use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::protocol::MethodError;
use crate::options::Auth;

/// How many wrong credentials a client may send before it is refused for a while, counted
/// per client (IP address, or browser origin) and per credential class (shared secret, device
/// token, bootstrap token) as Node's `gateway.auth.rateLimit` (SPEC §11.7; ARL:41-44).
/// Loopback peers without an `Origin` header are never locked out; their wrong shared secrets
/// are answered late instead (250 ms, doubling to 5 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthThrottle {
    /// Failures allowed within `window` (default 10).
    pub max_failures: u32,
    /// The window the failures are counted in (default 60 s).
    pub window: Duration,
    /// How long a client is refused once it reached `max_failures` (default 300 s, Node's).
    pub lockout: Duration,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window: Duration::from_millis(60_000),
            lockout: Duration::from_millis(300_000),
        }
    }
}

/// Compares two secrets in time that depends on neither content nor length: both are hashed
/// first, then every byte of the digests is looked at.
pub fn secrets_equal(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

/// `base64url(sha256(text))`, unpadded (crypto-digest-D9Nqq3c7.mjs:8-10).
pub fn sha256_base64url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes()))
}

/// The generation of the configured shared secret: `base64url(sha256("<mode>\0<secret>"))`
/// (ws-shared-generation-DTv5-s0n.mjs:3-5); `None` without one.
pub fn shared_generation(auth: &Auth) -> Option<String> {
    let (mode, secret) = match auth {
        Auth::None => return None,
        Auth::Token(secret) => ("token", secret),
        Auth::Password(secret) => ("password", secret),
    };
    (!secret.trim().is_empty()).then(|| sha256_base64url(&format!("{mode}\0{secret}")))
}

/// `hello-ok.auth.recoveryScope` of an operator (MH:2332-2341): the hash of the device token
/// it was handed, else of the shared secret's generation it proved (and its device id), else of
/// its device id.
pub fn recovery_scope(
    device_token: Option<&str>,
    shared_generation: Option<&str>,
    device_id: Option<&str>,
) -> Option<String> {
    let material = match (device_token, shared_generation, device_id) {
        (Some(token), ..) => json!(["device-token", token]),
        (None, Some(generation), id) => json!(["shared-auth", generation, id.unwrap_or_default()]),
        (None, None, Some(id)) => json!(["device", id]),
        (None, None, None) => return None,
    };
    Some(sha256_base64url(&material.to_string()))
}

/// A shared secret as `connect` carries it: trimmed, blank is absent (NCR:168-176).
pub fn present(secret: Option<&str>) -> Option<&str> {
    secret.map(str::trim).filter(|s| !s.is_empty())
}

/// Checks the shared secret of `connect` against the gateway's mode (SPEC §11.7 step 1): in
/// `token` mode `auth.token`, falling back to `auth.password`; in `password` mode the other
/// way round (AUTH:32-34); compared in constant time.
pub fn check_shared(
    auth: &Auth,
    token: Option<&str>,
    password: Option<&str>,
) -> Result<(), AuthReason> {
    let (token, password) = (present(token), present(password));
    let (given, expected, missing, mismatch) = match auth {
        Auth::None => return Ok(()),
        Auth::Token(expected) => (
            token.or(password),
            expected,
            AuthReason::TokenMissing,
            AuthReason::TokenMismatch,
        ),
        Auth::Password(expected) => (
            password.or(token),
            expected,
            AuthReason::PasswordMissing,
            AuthReason::PasswordMismatch,
        ),
    };
    match given {
        None => Err(missing),
        Some(given) if secrets_equal(given, expected) => Ok(()),
        Some(_) => Err(mismatch),
    }
}

/// Why `connect` was not authenticated: the `authReason` of SPEC §11.7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthReason {
    TokenMissing,
    TokenMismatch,
    PasswordMissing,
    PasswordMismatch,
    DeviceTokenMismatch,
    ScopeMismatch,
    BootstrapTokenInvalid,
    RateLimited { retry_after: Duration },
}

impl AuthReason {
    /// `details.authReason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenMissing => "token_missing",
            Self::TokenMismatch => "token_mismatch",
            Self::PasswordMissing => "password_missing",
            Self::PasswordMismatch => "password_mismatch",
            Self::DeviceTokenMismatch => "device_token_mismatch",
            Self::ScopeMismatch => "scope_mismatch",
            Self::BootstrapTokenInvalid => "bootstrap_token_invalid",
            Self::RateLimited { .. } => "rate_limited",
        }
    }

    /// `details.code` (CED:97-117).
    pub fn code(self) -> &'static str {
        match self {
            Self::TokenMissing => "AUTH_TOKEN_MISSING",
            Self::TokenMismatch => "AUTH_TOKEN_MISMATCH",
            Self::PasswordMissing => "AUTH_PASSWORD_MISSING",
            Self::PasswordMismatch => "AUTH_PASSWORD_MISMATCH",
            Self::DeviceTokenMismatch => "AUTH_DEVICE_TOKEN_MISMATCH",
            Self::ScopeMismatch => "AUTH_SCOPE_MISMATCH",
            Self::BootstrapTokenInvalid => "AUTH_BOOTSTRAP_TOKEN_INVALID",
            Self::RateLimited { .. } => "AUTH_RATE_LIMITED",
        }
    }
}

/// Who failed to authenticate, for the hints and details of the answer (MH:669-704;
/// NCR:115-157).
#[derive(Debug, Clone, Copy)]
pub struct FailedConnect<'a> {
    pub client_id: &'a str,
    pub client_mode: &'a str,
    /// The upgrade came over direct loopback (SPEC §11.6).
    pub local: bool,
    /// The connect carried a `device` block.
    pub has_device: bool,
    /// Which credentials were sent (non-empty, untrimmed as Node tests them).
    pub token: bool,
    pub password: bool,
    pub device_token: bool,
}

/// The auth-failure answer of SPEC §11.7: `INVALID_REQUEST` with the client's hint in the
/// message and `details:{code, authReason, canRetryWithDeviceToken, recommendedNextStep}`.
pub fn failure_error(reason: AuthReason, who: FailedConnect<'_>) -> MethodError {
    let cli = who.client_mode == "cli";
    let ui = matches!(who.client_id, "openclaw-control-ui" | "openclaw-tui");
    let webchat = who.client_mode == "webchat" || who.client_id == "webchat-ui";
    let token_hint = if cli {
        if who.local {
            "use this gateway's gateway.auth.token or pair the device"
        } else {
            "set gateway.remote.token to match gateway.auth.token"
        }
    } else if ui || webchat {
        "open the dashboard URL and paste the token in Control UI settings"
    } else {
        "provide gateway auth token"
    };
    let password_hint = if cli {
        if who.local {
            "use this gateway's gateway.auth.password"
        } else {
            "set gateway.remote.password to match gateway.auth.password"
        }
    } else if ui || webchat {
        "enter the password in Control UI settings"
    } else {
        "provide gateway auth password"
    };
    let message = match reason {
        AuthReason::TokenMissing if ui || webchat => "unauthorized: gateway token missing (paste in Control UI settings or openclaw doctor --generate-gateway-token; restart)".to_owned(),
        AuthReason::TokenMissing => format!("unauthorized: gateway token missing ({token_hint})"),
        AuthReason::TokenMismatch => format!("unauthorized: gateway token mismatch ({token_hint})"),
        AuthReason::PasswordMissing => {
            format!("unauthorized: gateway password missing ({password_hint})")
        }
        AuthReason::PasswordMismatch => {
            format!("unauthorized: gateway password mismatch ({password_hint})")
        }
        AuthReason::DeviceTokenMismatch => {
            "unauthorized: device token mismatch (rotate/reissue device token)".to_owned()
        }
        AuthReason::ScopeMismatch => {
            "unauthorized: device token scope mismatch (re-pair or approve scope upgrade)"
                .to_owned()
        }
        AuthReason::BootstrapTokenInvalid => "unauthorized: setup code invalid, expired, revoked, or already used (create a new code; review `openclaw devices list`)".to_owned(),
        AuthReason::RateLimited { .. } => {
            "unauthorized: too many failed authentication attempts (retry later)".to_owned()
        }
    };
    // `authProvided`: the first of password, token, bootstrap token, device token (NCR:115).
    let token_provided = !who.password && who.token;
    let can_retry = reason == AuthReason::TokenMismatch
        && who.has_device
        && token_provided
        && !who.device_token;
    let next_step = match reason {
        _ if can_retry => "retry_with_device_token",
        AuthReason::TokenMissing | AuthReason::PasswordMissing => "update_auth_configuration",
        AuthReason::TokenMismatch
        | AuthReason::PasswordMismatch
        | AuthReason::DeviceTokenMismatch => "update_auth_credentials",
        AuthReason::RateLimited { .. } => "wait_then_retry",
        AuthReason::ScopeMismatch | AuthReason::BootstrapTokenInvalid => {
            "review_auth_configuration"
        }
    };
    let error = MethodError::invalid_request(message).with_details(json!({
        "code": reason.code(),
        "authReason": reason.as_str(),
        "canRetryWithDeviceToken": can_retry,
        "recommendedNextStep": next_step,
    }));
    match reason {
        AuthReason::RateLimited { retry_after } => {
            error.with_retry(true, Some(retry_after.as_millis().max(1) as u64))
        }
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_secrets_are_trimmed_and_fall_back_to_the_other_field() {
        assert!(secrets_equal("s3cret", "s3cret"));
        assert!(!secrets_equal("s3cret", "s3cre"));
        let token = Auth::Token("t".into());
        let password = Auth::Password("p".into());
        use AuthReason::*;
        type Case<'a> = (
            &'a Auth,
            Option<&'a str>,
            Option<&'a str>,
            Result<(), AuthReason>,
        );
        let cases: [Case; 12] = [
            (&token, None, None, Err(TokenMissing)),
            (&token, Some("  "), None, Err(TokenMissing)),
            (&token, Some("x"), None, Err(TokenMismatch)),
            (&token, Some("t"), None, Ok(())),
            (&token, Some(" t\n"), None, Ok(())),
            (&token, None, Some("t"), Ok(())),
            (&token, Some(""), Some("t"), Ok(())),
            (&password, Some("p"), None, Ok(())),
            (&password, Some("p"), Some("x"), Err(PasswordMismatch)),
            (&password, None, Some(" "), Err(PasswordMissing)),
            (&Auth::None, None, None, Ok(())),
            (&Auth::None, Some("x"), None, Ok(())),
        ];
        for (auth, token, password, expected) in cases {
            assert_eq!(
                check_shared(auth, token, password),
                expected,
                "{auth:?} {token:?} {password:?}"
            );
        }
    }

    #[test]
    fn recovery_scopes_hash_what_node_hashes() {
        // Checked against the Node gateway's `hello-ok` for a token-only operator.
        let generation = shared_generation(&Auth::Token("tok123".into())).unwrap();
        assert_eq!(
            recovery_scope(None, Some(&generation), None).as_deref(),
            Some("bX-l3mhyQCoO9kGrtmBwDejjjexN7znjfBamWz-5ec4")
        );
        assert_eq!(shared_generation(&Auth::None), None);
        assert_eq!(
            recovery_scope(Some("t"), Some(&generation), Some("d")),
            Some(sha256_base64url(r#"["device-token","t"]"#))
        );
        assert_eq!(
            recovery_scope(None, None, Some("d")),
            Some(sha256_base64url(r#"["device","d"]"#))
        );
        assert_eq!(recovery_scope(None, None, None), None);
    }

    #[test]
    fn failure_answers_carry_the_hint_and_the_next_step() {
        let who = FailedConnect {
            client_id: "cli",
            client_mode: "cli",
            local: true,
            has_device: true,
            token: true,
            password: false,
            device_token: false,
        };
        let error = failure_error(AuthReason::TokenMismatch, who);
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            concat!(
                r#"{"code":"INVALID_REQUEST","message":"unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)","#,
                r#""details":{"code":"AUTH_TOKEN_MISMATCH","authReason":"token_mismatch","canRetryWithDeviceToken":true,"recommendedNextStep":"retry_with_device_token"}}"#
            )
        );
        let remote = FailedConnect {
            local: false,
            has_device: false,
            ..who
        };
        let error = failure_error(AuthReason::TokenMismatch, remote);
        assert_eq!(
            error.message,
            "unauthorized: gateway token mismatch (set gateway.remote.token to match gateway.auth.token)"
        );
        assert_eq!(
            error.details.as_ref().unwrap()["recommendedNextStep"],
            "update_auth_credentials"
        );
        let ui = FailedConnect {
            client_id: "openclaw-control-ui",
            client_mode: "webchat",
            ..who
        };
        assert_eq!(
            failure_error(AuthReason::TokenMissing, ui).message,
            "unauthorized: gateway token missing (paste in Control UI settings or openclaw doctor --generate-gateway-token; restart)"
        );
        let other = FailedConnect {
            client_id: "node-host",
            client_mode: "node",
            ..who
        };
        assert_eq!(
            failure_error(AuthReason::PasswordMismatch, other).message,
            "unauthorized: gateway password mismatch (provide gateway auth password)"
        );
        let limited = failure_error(
            AuthReason::RateLimited {
                retry_after: Duration::from_millis(1500),
            },
            other,
        );
        assert_eq!(
            (limited.retryable, limited.retry_after_ms),
            (Some(true), Some(1500))
        );
        assert_eq!(
            limited.details.unwrap()["recommendedNextStep"],
            "wait_then_retry"
        );
        let revoked = failure_error(AuthReason::DeviceTokenMismatch, other);
        assert_eq!(
            revoked.details.unwrap()["code"],
            "AUTH_DEVICE_TOKEN_MISMATCH"
        );
    }
}
