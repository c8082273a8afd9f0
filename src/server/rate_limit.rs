//! Node's limiter of failed authentication attempts (SPEC §11.7; ARL:41-250): failures are
//! counted per credential class ([`LimitScope`]) and per client (its IP address, or
//! `browser-origin:<origin>` for a browser on this host); a client with `max_failures` failures
//! within `window` is refused for `lockout`. Loopback clients are never refused by the limiter
//! that exempts them; instead each wrong shared secret they send is answered after a delay,
//! 250 ms doubling up to 5 s (ARL:152-172).
//!
//! Memory is bounded: at most [`MAX_ENTRIES`] clients are tracked; when full, entries that
//! are neither locked nor recent are dropped, and when every entry is locked new clients are
//! refused until the earliest lockout could end (ARL:196-217), as Node does.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::auth::AuthThrottle;
use super::locality::{IngressKind, is_loopback_ip};

/// The most clients (per scope) one limiter tracks (ARL:45).
pub const MAX_ENTRIES: usize = 10_000;

/// The delay of a loopback client's first failure, doubled per failure (ARL:46-48).
const LOOPBACK_DELAY_BASE: Duration = Duration::from_millis(250);
/// The longest delay of a loopback client's failure.
const LOOPBACK_DELAY_MAX: Duration = Duration::from_millis(5000);
/// Failures remembered for a loopback client: `ceil(log2(5000 / 250)) + 1` (ARL:48).
const LOOPBACK_HISTORY: usize = 6;

/// The key a browser on this host is counted under when its `Origin` cannot be read
/// (NCR:16, 21-27): a reserved benchmarking address, never a real peer's.
const BROWSER_ORIGIN_FALLBACK: &str = "198.18.0.1";

/// The credential class a failure is counted in (ARL:23-29): each has its own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitScope {
    /// `auth.token` / `auth.password` against the gateway's shared secret.
    SharedSecret,
    /// `auth.deviceToken` (or the shared-token fallback) against the device store.
    DeviceToken,
    /// `auth.bootstrapToken` against the issued bootstrap tokens.
    BootstrapToken,
}

/// Who a failure is counted against: an IP address, or a browser origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// A peer by its address (IPv4-mapped IPv6 counted as the IPv4 address).
    Ip(IpAddr),
    /// `browser-origin:<origin>`: a browser on this host, by the origin of its page.
    BrowserOrigin(String),
}

impl LimitKey {
    /// The key of a connection from `peer` whose upgrade carried `origin` (NCR:28-37): a
    /// loopback peer with an `Origin` is counted by its origin (all pages of one site share
    /// it); any other peer by its address.
    pub fn of(peer: IpAddr, origin: Option<&str>) -> Self {
        let peer = peer.to_canonical();
        match origin.map(str::trim).filter(|o| !o.is_empty()) {
            Some(origin) if is_loopback_ip(peer) => match normalize_origin(origin) {
                Some(origin) => Self::BrowserOrigin(origin),
                None => Self::Ip(BROWSER_ORIGIN_FALLBACK.parse().expect("a valid address")),
            },
            _ => Self::Ip(peer),
        }
    }

    /// The key of a connection from `peer` that reached the gateway by `ingress`: a loopback
    /// peer is counted (and exempt) as itself only for a direct local upgrade. An upgrade
    /// relayed by a proxy on this host (nginx, Caddy, Tailscale Serve) comes from loopback
    /// but on behalf of another client this gateway cannot attribute (it has no trusted
    /// proxies), so it is counted under the reserved address, never exempt, as Node counts
    /// an unattributable client (NCR:16; ingress-attribution-BAJhHIVj.mjs:94-116).
    pub fn for_ingress(peer: IpAddr, ingress: IngressKind, origin: Option<&str>) -> Self {
        if ingress != IngressKind::DirectLocal && is_loopback_ip(peer.to_canonical()) {
            return Self::Ip(BROWSER_ORIGIN_FALLBACK.parse().expect("a valid address"));
        }
        Self::of(peer, origin)
    }

    fn is_loopback(&self) -> bool {
        matches!(self, Self::Ip(ip) if is_loopback_ip(*ip))
    }
}

impl std::fmt::Display for LimitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::BrowserOrigin(origin) => write!(f, "browser-origin:{origin}"),
        }
    }
}

/// `new URL(origin).origin`, lowercased, for the usual `scheme://host[:port]` forms: the
/// path, query and fragment dropped, the scheme's default port dropped; `None` for what is
/// not such an origin.
fn normalize_origin(origin: &str) -> Option<String> {
    let lower = origin.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    if host_port.is_empty() {
        return None;
    }
    // Only these schemes have a tuple origin; any other URL's origin is `null`.
    let default_port = match scheme {
        "http" | "ws" => ":80",
        "https" | "wss" => ":443",
        "ftp" => ":21",
        _ => return Some("null".to_owned()),
    };
    let host_port = host_port.strip_suffix(default_port).unwrap_or(host_port);
    Some(format!("{scheme}://{host_port}"))
}

#[derive(Debug, Default)]
struct Entry {
    /// Failures within the window, oldest first.
    attempts: VecDeque<Instant>,
    locked_until: Option<Instant>,
    /// A loopback client's answers are held until then (ARL:152-172: concurrent failures
    /// share the latest deadline).
    delayed_until: Option<Instant>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<(LimitScope, LimitKey), Entry>,
    /// Every tracked client is locked: new ones are refused until then (ARL:131-142).
    overflow_until: Option<Instant>,
}

/// One limiter: Node's gateway has two, the usual one (loopback exempt from lockout) and the
/// one for requests with an `Origin` header (nobody exempt) (SS:4793-4798).
#[derive(Debug)]
pub struct RateLimiter {
    policy: AuthThrottle,
    exempt_loopback: bool,
    max_entries: usize,
    entries: Mutex<Entries>,
}

impl RateLimiter {
    /// A limiter with `policy`; `exempt_loopback` spares loopback addresses the lockout.
    pub fn new(policy: AuthThrottle, exempt_loopback: bool) -> Self {
        Self::with_capacity(policy, exempt_loopback, MAX_ENTRIES)
    }

    fn with_capacity(policy: AuthThrottle, exempt_loopback: bool, max_entries: usize) -> Self {
        Self {
            policy,
            exempt_loopback,
            max_entries: max_entries.max(1),
            entries: Mutex::new(Entries::default()),
        }
    }

    fn exempt(&self, key: &LimitKey) -> bool {
        self.exempt_loopback && key.is_loopback()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(retry_after)` while `key` is locked out of `scope` (ARL:98-126).
    pub fn check(&self, key: &LimitKey, scope: LimitScope) -> Result<(), Duration> {
        self.check_at(key, scope, Instant::now())
    }

    fn check_at(&self, key: &LimitKey, scope: LimitScope, now: Instant) -> Result<(), Duration> {
        if self.exempt(key) {
            return Ok(());
        }
        let mut entries = self.lock();
        let Some(entry) = entries.map.get_mut(&(scope, key.clone())) else {
            return self.overflow_lock(&mut entries, now);
        };
        self.refresh(entry, now);
        if entry.locked_until.is_none() && entry.attempts.len() >= self.max_failures() {
            entry.locked_until = Some(now + self.policy.lockout);
        }
        match entry.locked_until {
            Some(until) if now < until => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failure of `key` in `scope` and says how long its answer is held: zero, except
    /// for a client exempt from lockout (a loopback peer), whose `n`-th failure within the
    /// window is held `250 ms · 2^(n-1)`, at most 5 s (ARL:127-172). Only a wrong shared
    /// secret is answered late (NCR:246; AUTH:123): callers of the other scopes ignore it.
    pub fn record_failure(&self, key: &LimitKey, scope: LimitScope) -> Duration {
        self.record_failure_at(key, scope, Instant::now())
    }

    fn record_failure_at(&self, key: &LimitKey, scope: LimitScope, now: Instant) -> Duration {
        let exempt = self.exempt(key);
        let mut entries = self.lock();
        let map_key = (scope, key.clone());
        if !entries.map.contains_key(&map_key) && !self.make_room(&mut entries, now) {
            let until = now + self.policy.lockout;
            entries.overflow_until = Some(entries.overflow_until.map_or(until, |u| u.max(until)));
            return Duration::ZERO;
        }
        let max_failures = self.max_failures();
        let lockout = self.policy.lockout;
        let entry = entries.map.entry(map_key).or_default();
        if !exempt && entry.locked_until.is_some_and(|until| now < until) {
            return Duration::ZERO;
        }
        self.refresh(entry, now);
        entry.attempts.push_back(now);
        if exempt {
            while entry.attempts.len() > LOOPBACK_HISTORY {
                entry.attempts.pop_front();
            }
            let doublings = entry.attempts.len().saturating_sub(1) as u32;
            let delay = LOOPBACK_DELAY_BASE
                .saturating_mul(1 << doublings.min(30))
                .min(LOOPBACK_DELAY_MAX);
            let until = (now + delay).max(entry.delayed_until.filter(|u| *u > now).unwrap_or(now));
            entry.delayed_until = Some(until);
            until - now
        } else {
            if entry.attempts.len() >= max_failures {
                entry.locked_until = Some(now + lockout);
            }
            Duration::ZERO
        }
    }

    /// A client that authenticated in `scope` starts that scope again from zero (ARL:179-182).
    pub fn reset(&self, key: &LimitKey, scope: LimitScope) {
        self.lock().map.remove(&(scope, key.clone()));
    }

    /// How many clients are tracked (all scopes).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn max_failures(&self) -> usize {
        self.policy.max_failures.max(1) as usize
    }

    /// A lockout that ended clears the failures; failures older than the window are dropped.
    fn refresh(&self, entry: &mut Entry, now: Instant) {
        if entry.locked_until.is_some_and(|until| now >= until) {
            entry.locked_until = None;
            entry.attempts.clear();
        }
        while entry
            .attempts
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.policy.window)
        {
            entry.attempts.pop_front();
        }
        if entry.delayed_until.is_some_and(|until| until <= now) {
            entry.delayed_until = None;
        }
    }

    fn prune(&self, entries: &mut Entries, now: Instant) {
        entries.map.retain(|_, entry| {
            if entry.locked_until.is_some_and(|until| now < until) {
                return true;
            }
            self.refresh(entry, now);
            !entry.attempts.is_empty() || entry.delayed_until.is_some()
        });
    }

    /// Room for one more entry: prune, then drop any entry that is not locked (ARL:206-214).
    fn make_room(&self, entries: &mut Entries, now: Instant) -> bool {
        if entries.map.len() < self.max_entries {
            return true;
        }
        self.prune(entries, now);
        if entries.map.len() < self.max_entries {
            return true;
        }
        let unlocked = entries
            .map
            .iter()
            .find(|(_, e)| e.locked_until.is_none_or(|until| now >= until))
            .map(|(k, _)| k.clone());
        match unlocked {
            Some(key) => {
                entries.map.remove(&key);
                true
            }
            None => false,
        }
    }

    /// A new client while every tracked one is locked (ARL:196-205).
    fn overflow_lock(&self, entries: &mut Entries, now: Instant) -> Result<(), Duration> {
        let Some(until) = entries.overflow_until else {
            return Ok(());
        };
        if now >= until {
            entries.overflow_until = None;
            return Ok(());
        }
        if entries.map.len() >= self.max_entries {
            self.prune(entries, now);
        }
        if entries.map.len() < self.max_entries {
            entries.overflow_until = None;
            return Ok(());
        }
        Err(until - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_failures: u32) -> AuthThrottle {
        AuthThrottle {
            max_failures,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
        }
    }

    fn ip(text: &str) -> LimitKey {
        LimitKey::Ip(text.parse().unwrap())
    }

    #[test]
    fn node_defaults() {
        let default = AuthThrottle::default();
        assert_eq!(default.max_failures, 10);
        assert_eq!(default.window, Duration::from_millis(60_000));
        assert_eq!(default.lockout, Duration::from_millis(300_000));
    }

    #[test]
    fn keys_by_peer_and_origin() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().unwrap();
        let remote: IpAddr = "10.0.0.5".parse().unwrap();
        let cases: [(IpAddr, Option<&str>, &str); 10] = [
            (v4, None, "127.0.0.1"),
            (v4, Some("  "), "127.0.0.1"),
            (mapped, None, "10.0.0.5"),
            (remote, Some("http://evil.example"), "10.0.0.5"),
            (
                v4,
                Some("http://LocalHost:5173/path?q"),
                "browser-origin:http://localhost:5173",
            ),
            (
                v4,
                Some("https://app.example:443"),
                "browser-origin:https://app.example",
            ),
            (v4, Some("http://[::1]:80"), "browser-origin:http://[::1]"),
            (v4, Some("null"), "198.18.0.1"),
            (v4, Some("http://"), "198.18.0.1"),
            (
                "::1".parse().unwrap(),
                Some("file://x"),
                "browser-origin:null",
            ),
        ];
        for (peer, origin, expected) in cases {
            assert_eq!(
                LimitKey::of(peer, origin).to_string(),
                expected,
                "{peer} {origin:?}"
            );
        }
        assert!(!LimitKey::of(v4, Some("null")).is_loopback());
    }

    /// A loopback peer is itself (and exempt) only for a direct local upgrade; proxied
    /// from this host, it is the reserved address and not exempt.
    #[test]
    fn keys_by_ingress() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "10.0.0.5".parse().unwrap();
        let origin = Some("http://localhost:5173");
        let cases = [
            (lo, IngressKind::DirectLocal, None, "127.0.0.1", true),
            (
                lo,
                IngressKind::UnattributableProxy,
                None,
                "198.18.0.1",
                false,
            ),
            (
                lo,
                IngressKind::UnattributableProxy,
                origin,
                "198.18.0.1",
                false,
            ),
            (
                lo,
                IngressKind::DirectLocal,
                origin,
                "browser-origin:http://localhost:5173",
                false,
            ),
            (
                remote,
                IngressKind::UnattributableProxy,
                None,
                "10.0.0.5",
                false,
            ),
            (remote, IngressKind::DirectRemote, None, "10.0.0.5", false),
        ];
        for (peer, ingress, origin, expected, loopback) in cases {
            let key = LimitKey::for_ingress(peer, ingress, origin);
            assert_eq!(key.to_string(), expected, "{peer} {ingress:?} {origin:?}");
            assert_eq!(key.is_loopback(), loopback, "{peer} {ingress:?}");
        }
    }

    /// (key, exempt loopback, failures, locked after?, delay of the last failure in ms)
    #[test]
    fn lockout_and_loopback_delays() {
        let cases: [(&str, bool, usize, bool, u64); 10] = [
            ("10.0.0.5", true, 2, false, 0),
            ("10.0.0.5", true, 3, true, 0),
            ("10.0.0.5", false, 3, true, 0),
            ("127.0.0.1", true, 1, false, 250),
            ("127.0.0.1", true, 2, false, 500),
            ("127.0.0.2", true, 3, false, 1000),
            ("::1", true, 5, false, 4000),
            ("::ffff:127.0.0.1", true, 6, false, 5000),
            ("127.0.0.1", true, 40, false, 5000),
            ("127.0.0.1", false, 3, true, 0),
        ];
        for (peer, exempt, failures, locked, delay) in cases {
            let limiter = RateLimiter::new(policy(3), exempt);
            let key = LimitKey::of(peer.parse().unwrap(), None);
            let start = Instant::now();
            let mut last = Duration::ZERO;
            for n in 0..failures {
                // Spaced out so the delays do not pile up on each other.
                let at = start + Duration::from_secs(n as u64 * 6) / 10;
                last = limiter.record_failure_at(&key, LimitScope::SharedSecret, at);
            }
            let now = start + Duration::from_secs(failures as u64 * 6) / 10;
            let checked = limiter.check_at(&key, LimitScope::SharedSecret, now);
            assert_eq!(checked.is_err(), locked, "{peer} {exempt} {failures}");
            if failures < 40 {
                assert_eq!(
                    last,
                    Duration::from_millis(delay),
                    "{peer} {exempt} {failures}"
                );
            } else {
                assert_eq!(last, Duration::from_millis(5000));
            }
        }
    }

    #[test]
    fn concurrent_loopback_failures_share_the_latest_deadline() {
        let limiter = RateLimiter::new(policy(3), true);
        let key = ip("127.0.0.1");
        let now = Instant::now();
        let first = limiter.record_failure_at(&key, LimitScope::SharedSecret, now);
        let second = limiter.record_failure_at(&key, LimitScope::SharedSecret, now);
        let third = limiter.record_failure_at(&key, LimitScope::SharedSecret, now);
        assert_eq!(
            (first, second, third),
            (
                Duration::from_millis(250),
                Duration::from_millis(500),
                Duration::from_millis(1000)
            )
        );
        // Later failures hold at least until the current deadline.
        let later = now + Duration::from_millis(900);
        let fourth = limiter.record_failure_at(&key, LimitScope::SharedSecret, later);
        assert_eq!(fourth, Duration::from_millis(2000));
    }

    #[test]
    fn scopes_count_apart_and_reset_on_success() {
        let limiter = RateLimiter::new(policy(2), true);
        let key = ip("10.1.2.3");
        for _ in 0..2 {
            limiter.record_failure(&key, LimitScope::DeviceToken);
        }
        let retry = limiter
            .check(&key, LimitScope::DeviceToken)
            .expect_err("locked");
        assert!(retry > Duration::from_secs(299) && retry <= Duration::from_secs(300));
        assert_eq!(limiter.check(&key, LimitScope::SharedSecret), Ok(()));
        assert_eq!(limiter.check(&key, LimitScope::BootstrapToken), Ok(()));
        assert_eq!(
            limiter.check(&ip("10.1.2.4"), LimitScope::DeviceToken),
            Ok(())
        );
        limiter.record_failure(&key, LimitScope::SharedSecret);
        limiter.reset(&key, LimitScope::SharedSecret);
        limiter.record_failure(&key, LimitScope::SharedSecret);
        assert_eq!(limiter.check(&key, LimitScope::SharedSecret), Ok(()));
        limiter.reset(&key, LimitScope::DeviceToken);
        assert_eq!(limiter.check(&key, LimitScope::DeviceToken), Ok(()));
    }

    #[test]
    fn window_and_lockout_expire() {
        let limiter = RateLimiter::new(policy(2), true);
        let key = ip("10.1.2.3");
        let start = Instant::now();
        limiter.record_failure_at(&key, LimitScope::SharedSecret, start);
        // The first failure fell out of the window: one failure, not two.
        let later = start + Duration::from_secs(61);
        limiter.record_failure_at(&key, LimitScope::SharedSecret, later);
        assert_eq!(
            limiter.check_at(&key, LimitScope::SharedSecret, later),
            Ok(())
        );
        limiter.record_failure_at(&key, LimitScope::SharedSecret, later);
        assert!(
            limiter
                .check_at(&key, LimitScope::SharedSecret, later)
                .is_err()
        );
        // A failure while locked does not extend the lockout.
        let during = later + Duration::from_secs(100);
        limiter.record_failure_at(&key, LimitScope::SharedSecret, during);
        let after = later + Duration::from_secs(300);
        assert_eq!(
            limiter.check_at(&key, LimitScope::SharedSecret, after),
            Ok(())
        );
    }

    #[test]
    fn memory_is_bounded() {
        let limiter = RateLimiter::with_capacity(policy(1), false, 3);
        let now = Instant::now();
        for n in 1..=3 {
            let key = ip(&format!("10.0.0.{n}"));
            limiter.record_failure_at(&key, LimitScope::SharedSecret, now);
        }
        assert_eq!(limiter.len(), 3);
        // Every tracked client is locked: a new one is not tracked, and new clients are
        // refused until the lockout could end.
        let fourth = ip("10.0.0.4");
        limiter.record_failure_at(&fourth, LimitScope::SharedSecret, now);
        assert_eq!(limiter.len(), 3);
        assert!(
            limiter
                .check_at(&fourth, LimitScope::SharedSecret, now)
                .is_err()
        );
        let after = now + Duration::from_secs(301);
        assert_eq!(
            limiter.check_at(&fourth, LimitScope::SharedSecret, after),
            Ok(())
        );
        // Unlocked entries make room.
        let roomy = RateLimiter::with_capacity(policy(5), false, 2);
        for n in 1..=10 {
            roomy.record_failure_at(&ip(&format!("10.0.1.{n}")), LimitScope::SharedSecret, now);
        }
        assert_eq!(roomy.len(), 2);
    }
}
