//! Bootstrap tokens (setup codes) in the device store (SPEC §11.7 step 2; WRK:1906-2170): the
//! host issues one for a profile; a device that presents it in `connect` authenticates with
//! it, is bound to it, and pairs as the profile says; the token is spent once the device is in.
//! Like device tokens, only their SHA-256 is kept.

use serde::{Deserialize, Serialize};

use super::{BOOTSTRAP_TOKEN_TTL_MS, DeviceStore, new_token, token_hash, within};
use crate::options::LogLevel;
use crate::server::pairing::{BootstrapProfile, PairingError};
use crate::server::protocol::now_ms;

/// An issued bootstrap token, by its hash only.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StoredBootstrap {
    /// Lowercase hex SHA-256 of the token's UTF-8 bytes.
    sha256: String,
    roles: Vec<String>,
    scopes: Vec<String>,
    /// The device it is bound to: by the host when issued, else by the first device that
    /// presented it (WRK:2150-2168).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    issued_at_ms: u64,
    expires_at_ms: u64,
    /// A connect verified it and has not finished: no other connect may use it meanwhile
    /// (single use, checked and claimed under the state lock). In memory only.
    #[serde(skip)]
    claimed: bool,
}

impl StoredBootstrap {
    pub(super) fn expired(&self, now: u64) -> bool {
        now >= self.expires_at_ms
    }

    fn matches(&self, token: &str) -> bool {
        crate::server::auth::secrets_equal(&token_hash(token), &self.sha256)
    }

    fn profile(&self) -> BootstrapProfile {
        BootstrapProfile {
            roles: self.roles.clone(),
            scopes: self.scopes.clone(),
            device_id: self.device_id.clone(),
            public_key: self.public_key.clone(),
            ttl_ms: Some(self.expires_at_ms.saturating_sub(self.issued_at_ms)),
        }
    }
}

/// Trimmed, blank dropped, duplicates dropped, first-seen order kept.
fn cleaned(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        if !out.iter().any(|o| o == item) {
            out.push(item.to_owned());
        }
    }
    out
}

/// Says what is wrong with `profile`, or gives it cleaned.
fn checked(profile: &BootstrapProfile) -> Result<BootstrapProfile, PairingError> {
    let refuse = |why: &str| Err(PairingError::InvalidBootstrapProfile(why.to_owned()));
    let roles = cleaned(&profile.roles);
    if roles.is_empty() {
        return refuse("it names no role: give at least one of \"operator\", \"node\"");
    }
    if profile.ttl_ms == Some(0) {
        return refuse("ttlMs is 0: give a lifetime in milliseconds (default 600000)");
    }
    let bound = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Ok(BootstrapProfile {
        roles,
        scopes: cleaned(&profile.scopes),
        device_id: bound(&profile.device_id),
        public_key: bound(&profile.public_key),
        ttl_ms: Some(profile.ttl_ms.unwrap_or(BOOTSTRAP_TOKEN_TTL_MS)),
    })
}

impl DeviceStore {
    /// Issues a bootstrap token for `profile` (`issueDeviceBootstrapTokenRecord`): 32 random
    /// bytes, base64url (43 characters), good once until `profile.ttl_ms` (default 10 minutes)
    /// from now. Only its hash is kept.
    pub fn issue_bootstrap_token(
        &self,
        profile: &BootstrapProfile,
    ) -> Result<String, PairingError> {
        let profile = checked(profile)?;
        let token = new_token().map_err(|err| PairingError::Random(err.to_string()))?;
        let now = now_ms();
        let record = StoredBootstrap {
            sha256: token_hash(&token),
            roles: profile.roles,
            scopes: profile.scopes,
            device_id: profile.device_id,
            public_key: profile.public_key,
            issued_at_ms: now,
            expires_at_ms: now.saturating_add(profile.ttl_ms.unwrap_or(BOOTSTRAP_TOKEN_TTL_MS)),
            claimed: false,
        };
        self.mutate_strict(|state| {
            state.prune_expired(now);
            state.bootstrap.push(record);
            Ok(())
        })?;
        Ok(token)
    }

    /// Checks a bootstrap token presented by device `device_id` (key `public_key`) asking for
    /// `role` and `scopes` (`verifyDeviceBootstrapToken`, WRK:2114-2170): issued, not expired
    /// or used, the role among the profile's, the scopes within its scopes, and the device the
    /// one it is bound to. The first device to present an unbound token binds it. Gives the
    /// profile the device pairs with; `None` for any refusal (Node says only
    /// `bootstrap_token_invalid`). A verified token is claimed by the caller's connect: it is
    /// refused to every other until [`consume_bootstrap_token`](Self::consume_bootstrap_token)
    /// spends it or [`release_bootstrap_token`](Self::release_bootstrap_token) gives it back
    /// (the connect failed after all), so two concurrent connects never share one token.
    pub fn verify_bootstrap_token(
        &self,
        token: &str,
        device_id: &str,
        public_key: &str,
        role: &str,
        scopes: &[String],
    ) -> Option<BootstrapProfile> {
        let token = token.trim();
        if token.is_empty() || device_id.is_empty() || public_key.is_empty() {
            return None;
        }
        self.mutate_lenient("bind a bootstrap token", |state| {
            state.prune_expired(now_ms());
            let Some(record) = state.bootstrap.iter_mut().find(|b| b.matches(token)) else {
                return (None, false);
            };
            if record.claimed {
                return (None, false);
            }
            if !record.roles.iter().any(|r| r == role) || !within(scopes, &record.scopes) {
                return (None, false);
            }
            let other = |bound: &Option<String>, claimed: &str| {
                bound.as_deref().is_some_and(|b| b != claimed)
            };
            if other(&record.device_id, device_id) || other(&record.public_key, public_key) {
                return (None, false);
            }
            let binds = record.device_id.is_none() || record.public_key.is_none();
            record.device_id = Some(device_id.to_owned());
            record.public_key = Some(public_key.to_owned());
            record.claimed = true;
            (Some(record.profile()), binds)
        })
    }

    /// Spends a bootstrap token: it is refused from now on (single use, WRK:1979-2000).
    /// `false` when it was not there (already spent, or expired).
    pub fn consume_bootstrap_token(&self, token: &str) -> bool {
        let token = token.trim();
        let spent = self.mutate_lenient("spend a bootstrap token", |state| {
            let before = state.bootstrap.len();
            state.bootstrap.retain(|b| !b.matches(token));
            let spent = state.bootstrap.len() != before;
            (spent, spent)
        });
        if !spent {
            self.logger.log(
                LogLevel::Debug,
                "bootstrap token already spent when its connect completed",
            );
        }
        spent
    }

    /// Gives back a token a connect claimed and did not spend: usable again (by its device).
    pub fn release_bootstrap_token(&self, token: &str) {
        let token = token.trim();
        if let Some(record) = self.lock().bootstrap.iter_mut().find(|b| b.matches(token)) {
            record.claimed = false;
        }
    }

    /// How many bootstrap tokens are outstanding (issued, not used, not expired).
    #[cfg(test)]
    pub fn bootstrap_token_count(&self) -> usize {
        let mut state = self.lock();
        state.prune_expired(now_ms());
        state.bootstrap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn issued_tokens_verify_once_for_their_profile() {
        let store = DeviceStore::default();
        let profile = BootstrapProfile::new(strings(&["node"]), Vec::new());
        let token = store.issue_bootstrap_token(&profile).unwrap();
        assert_eq!(token.len(), 43);
        /// (token, device, key, role, scopes, accepted)
        type Case<'a> = (&'a str, &'a str, &'a str, &'a str, &'a [&'a str], bool);
        let cases: [Case; 6] = [
            ("wrong", "d1", "k1", "node", &[], false),
            (&token, "d1", "k1", "operator", &[], false),
            (&token, "d1", "k1", "node", &["operator.read"], false),
            (&token, "", "k1", "node", &[], false),
            (&token, "d1", "k1", "node", &[], true),
            // Bound to d1 by the accepted check above.
            (&token, "d2", "k2", "node", &[], false),
        ];
        for (given, device, key, role, scopes, accepted) in cases {
            let verified = store.verify_bootstrap_token(given, device, key, role, &strings(scopes));
            assert_eq!(
                verified.is_some(),
                accepted,
                "{given} {device} {role} {scopes:?}"
            );
        }
        assert!(store.consume_bootstrap_token(&token));
        assert!(
            store
                .verify_bootstrap_token(&token, "d1", "k1", "node", &[])
                .is_none()
        );
        assert!(!store.consume_bootstrap_token(&token));
    }

    /// Verified is claimed: a second connect presenting the token while the first is still
    /// under way is refused; a failed connect gives it back, an admitted one spends it.
    #[test]
    fn a_verified_token_is_claimed_until_spent_or_given_back() {
        let store = std::sync::Arc::new(DeviceStore::default());
        let profile = BootstrapProfile::new(strings(&["node"]), Vec::new());
        let token = store.issue_bootstrap_token(&profile).unwrap();
        let verify = || {
            let racers: Vec<_> = (0..2)
                .map(|_| {
                    let (store, token) = (std::sync::Arc::clone(&store), token.clone());
                    std::thread::spawn(move || {
                        store
                            .verify_bootstrap_token(&token, "d1", "k1", "node", &[])
                            .is_some()
                    })
                })
                .collect();
            racers
                .into_iter()
                .map(|r| r.join().unwrap())
                .filter(|verified| *verified)
                .count()
        };
        assert_eq!(verify(), 1, "two concurrent connects shared one token");
        store.release_bootstrap_token(&token);
        assert_eq!(verify(), 1, "given back: usable again, once");
        assert!(store.consume_bootstrap_token(&token));
        store.release_bootstrap_token(&token);
        assert_eq!(verify(), 0, "spent");
    }

    #[test]
    fn bound_and_expired_tokens() {
        let store = DeviceStore::default();
        let bound = BootstrapProfile {
            device_id: Some("d1".into()),
            public_key: Some("k1".into()),
            ..BootstrapProfile::new(strings(&["operator"]), strings(&["operator.admin"]))
        };
        let token = store.issue_bootstrap_token(&bound).unwrap();
        assert!(
            store
                .verify_bootstrap_token(&token, "d2", "k1", "operator", &[])
                .is_none()
        );
        assert!(
            store
                .verify_bootstrap_token(&token, "d1", "k2", "operator", &[])
                .is_none()
        );
        let profile = store
            .verify_bootstrap_token(&token, "d1", "k1", "operator", &strings(&["operator.read"]))
            .expect("operator.admin implies operator.read");
        assert_eq!(profile.scopes, strings(&["operator.admin"]));
        let short = BootstrapProfile {
            ttl_ms: Some(1),
            ..BootstrapProfile::new(strings(&["node"]), Vec::new())
        };
        let token = store.issue_bootstrap_token(&short).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(
            store
                .verify_bootstrap_token(&token, "d1", "k1", "node", &[])
                .is_none()
        );
        assert_eq!(store.bootstrap_token_count(), 1);
    }

    #[test]
    fn tokens_survive_a_restart_by_their_hash_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway/devices.json");
        let logger = crate::options::Logger::default();
        let store = DeviceStore::open(&path, logger.clone()).unwrap();
        let token = store
            .issue_bootstrap_token(&BootstrapProfile::new(strings(&["node"]), Vec::new()))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token), "{text}");
        assert!(text.contains(&token_hash(&token)), "{text}");
        drop(store);
        let reopened = DeviceStore::open(&path, logger.clone()).unwrap();
        assert!(
            reopened
                .verify_bootstrap_token(&token, "d1", "k1", "node", &[])
                .is_some()
        );
        assert!(reopened.consume_bootstrap_token(&token));
        drop(reopened);
        let spent = DeviceStore::open(&path, logger).unwrap();
        assert_eq!(spent.bootstrap_token_count(), 0);
    }

    #[test]
    fn profiles_are_checked() {
        let store = DeviceStore::default();
        for (profile, why) in [
            (BootstrapProfile::new(Vec::new(), Vec::new()), "no role"),
            (
                BootstrapProfile::new(strings(&[" "]), Vec::new()),
                "no role",
            ),
            (
                BootstrapProfile {
                    ttl_ms: Some(0),
                    ..BootstrapProfile::new(strings(&["node"]), Vec::new())
                },
                "ttlMs is 0",
            ),
        ] {
            let err = store.issue_bootstrap_token(&profile).unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
        }
        assert_eq!(store.bootstrap_token_count(), 0);
    }
}
