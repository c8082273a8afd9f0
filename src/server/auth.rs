//! Shared-secret auth for the `connect` handshake (SPEC §9.5): a constant-time comparison and
//! a per-peer throttle of repeated failures.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::protocol::MethodError;
use crate::options::Auth;

/// How many wrong secrets a peer (by IP address) may send before it is refused for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthThrottle {
    /// Failures allowed within `window` (default 10).
    pub max_failures: u32,
    /// The window the failures are counted in (default 60 s).
    pub window: Duration,
    /// How long a peer is refused once it passed `max_failures` (default 60 s).
    pub lockout: Duration,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
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

/// Checks the `auth` of `connect` against the gateway's mode.
pub fn check(auth: &Auth, token: Option<&str>, password: Option<&str>) -> Result<(), AuthFailure> {
    let (given, expected, kind) = match auth {
        Auth::None => return Ok(()),
        Auth::Token(expected) => (token, expected, "token"),
        Auth::Password(expected) => (password, expected, "password"),
    };
    match given.filter(|g| !g.is_empty()) {
        None => Err(AuthFailure::Missing(kind)),
        Some(given) if secrets_equal(given, expected) => Ok(()),
        Some(_) => Err(AuthFailure::Mismatch(kind)),
    }
}

/// Why `connect` was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing(&'static str),
    Mismatch(&'static str),
    RateLimited { retry_after: Duration },
}

impl AuthFailure {
    /// The `res` error: `unauthorized: gateway token missing` and friends.
    pub fn error(self) -> MethodError {
        let (message, code) = match self {
            Self::Missing(kind) => (
                format!("unauthorized: gateway {kind} missing"),
                format!("AUTH_{}_MISSING", kind.to_uppercase()),
            ),
            Self::Mismatch(kind) => (
                format!("unauthorized: gateway {kind} mismatch"),
                format!("AUTH_{}_MISMATCH", kind.to_uppercase()),
            ),
            Self::RateLimited { retry_after } => {
                let ms = retry_after.as_millis().max(1) as u64;
                return MethodError::invalid_request(
                    "unauthorized: too many failed authentication attempts (retry later)",
                )
                .with_details(json!({"code": "AUTH_RATE_LIMITED"}))
                .with_retry(true, Some(ms));
            }
        };
        MethodError::invalid_request(message).with_details(json!({ "code": code }))
    }
}

#[derive(Debug)]
struct Failures {
    count: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

/// Failures per peer address; bounded, old entries are dropped.
#[derive(Debug)]
pub struct Throttle {
    policy: AuthThrottle,
    peers: Mutex<HashMap<IpAddr, Failures>>,
}

const MAX_TRACKED_PEERS: usize = 4096;

impl Throttle {
    pub fn new(policy: AuthThrottle) -> Self {
        Self {
            policy,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(retry_after)` while `peer` is locked out.
    pub fn locked(&self, peer: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let until = peers.get(&peer)?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a wrong secret from `peer`.
    pub fn failed(&self, peer: IpAddr) {
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.len() >= MAX_TRACKED_PEERS && !peers.contains_key(&peer) {
            let policy = self.policy;
            peers.retain(|_, f| {
                f.locked_until.is_some_and(|u| u > now) || now - f.window_start < policy.window
            });
        }
        let entry = peers.entry(peer).or_insert(Failures {
            count: 0,
            window_start: now,
            locked_until: None,
        });
        if now - entry.window_start >= self.policy.window {
            entry.count = 0;
            entry.window_start = now;
        }
        entry.count += 1;
        if entry.count >= self.policy.max_failures {
            entry.locked_until = Some(now + self.policy.lockout);
            entry.count = 0;
            entry.window_start = now;
        }
    }

    /// A peer that authenticated starts again from zero.
    pub fn succeeded(&self, peer: IpAddr) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_and_modes() {
        assert!(secrets_equal("s3cret", "s3cret"));
        assert!(!secrets_equal("s3cret", "s3cre"));
        let token = Auth::Token("t".into());
        assert_eq!(
            check(&token, None, None),
            Err(AuthFailure::Missing("token"))
        );
        assert_eq!(
            check(&token, Some("x"), None),
            Err(AuthFailure::Mismatch("token"))
        );
        assert_eq!(check(&token, Some("t"), None), Ok(()));
        let password = Auth::Password("p".into());
        assert_eq!(
            check(&password, Some("p"), None),
            Err(AuthFailure::Missing("password"))
        );
        assert_eq!(check(&Auth::None, None, None), Ok(()));
        let details = AuthFailure::Mismatch("password").error().details.unwrap();
        assert_eq!(details["code"], "AUTH_PASSWORD_MISMATCH");
    }

    #[test]
    fn throttle_locks_out_and_forgets() {
        let throttle = Throttle::new(AuthThrottle {
            max_failures: 2,
            ..AuthThrottle::default()
        });
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        throttle.failed(peer);
        assert!(throttle.locked(peer).is_none());
        throttle.failed(peer);
        assert!(throttle.locked(peer).is_some());
        throttle.succeeded(peer);
        assert!(throttle.locked(peer).is_none());
    }
}
