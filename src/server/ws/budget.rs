//! Node's budget for control-plane writes (SPEC §12.2; `control-plane-rate-limit-CUfpYCsm.mjs`):
//! each such method 30 times per 60 s window per device and address, whichever connection calls.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::protocol::MethodError;

/// Calls of one method allowed per window.
const CALLS_PER_WINDOW: u32 = 30;
/// The window, fixed from its first call.
const WINDOW: Duration = Duration::from_secs(60);
/// Buckets kept at most, so that callers cannot grow the map without bound (Node's cap,
/// `CONTROL_PLANE_BUCKET_MAX_ENTRIES`).
const MAX_BUCKETS: usize = 10_000;

/// Whose budget: a method, the caller's device (when it has one) and its address.
type Spender = (String, Option<String>, IpAddr);

/// The windows of every (method, device, address) that wrote lately.
#[derive(Default)]
pub(super) struct ControlPlaneBudget {
    buckets: Mutex<HashMap<Spender, Window>>,
}

struct Window {
    started: Instant,
    calls: u32,
}

impl ControlPlaneBudget {
    /// Spends one call of `method` by `device` from `ip`, or says how long until its window
    /// ends ([`refusal`] is the answer).
    pub fn spend(
        &self,
        method: &str,
        device: Option<&str>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let key = (method.to_owned(), device.map(str::to_owned), ip);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&key) {
            // Node drops its oldest buckets down to one under the cap
            // (`pruneMapToMaxSize(…, 9999)`, `control-plane-rate-limit-CUfpYCsm.mjs:26`): the
            // oldest window here (an expired one first), so that everyone else keeps the
            // budget already spent.
            let oldest = buckets
                .iter()
                .min_by_key(|(_, window)| window.started)
                .map(|(spender, _)| spender.clone());
            if let Some(oldest) = oldest {
                buckets.remove(&oldest);
            }
        }
        let window = buckets.entry(key).or_insert(Window {
            started: now,
            calls: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            *window = Window {
                started: now,
                calls: 0,
            };
        }
        if window.calls < CALLS_PER_WINDOW {
            window.calls += 1;
            return Ok(());
        }
        Err((window.started + WINDOW).saturating_duration_since(now))
    }
}

/// The retryable `UNAVAILABLE` `rate limit exceeded for <m>; retry after <s>s` Node answers a
/// call over the budget (SM:325-342).
pub(super) fn refusal(method: &str, retry_after: Duration) -> MethodError {
    let ms = retry_after.as_millis() as u64;
    MethodError::unavailable(format!(
        "rate limit exceeded for {method}; retry after {}s",
        ms.div_ceil(1000)
    ))
    .with_retry(true, Some(ms))
    .with_details(json!({ "method": method, "limit": "30 per 60s" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_writes_a_minute_per_method_device_and_address() {
        let budget = ControlPlaneBudget::default();
        let ip: IpAddr = [127, 0, 0, 1].into();
        let start = Instant::now();
        for _ in 0..30 {
            assert!(budget.spend("config.apply", Some("dev"), ip, start).is_ok());
        }
        let retry_after = budget
            .spend(
                "config.apply",
                Some("dev"),
                ip,
                start + Duration::from_millis(500),
            )
            .unwrap_err();
        assert_eq!(retry_after, Duration::from_millis(59_500));
        let refused = refusal("config.apply", retry_after);
        assert_eq!(refused.code, "UNAVAILABLE");
        assert_eq!(
            refused.message,
            "rate limit exceeded for config.apply; retry after 60s"
        );
        assert_eq!(refused.retry_after_ms, Some(59_500));
        // Another method, device or address has its own budget; a new window a fresh one.
        assert!(budget.spend("config.patch", Some("dev"), ip, start).is_ok());
        assert!(budget.spend("config.apply", None, ip, start).is_ok());
        assert!(
            budget
                .spend("config.apply", Some("dev"), [10, 0, 0, 1].into(), start)
                .is_ok()
        );
        assert!(
            budget
                .spend("config.apply", Some("dev"), ip, start + WINDOW)
                .is_ok()
        );
    }

    #[test]
    fn a_full_budget_forgets_only_its_oldest_window() {
        let budget = ControlPlaneBudget::default();
        let start = Instant::now();
        let spender = |i: usize| -> (Option<String>, IpAddr) {
            (Some(format!("device-{i}")), [10, 0, 0, 1].into())
        };
        let exhaust = |i: usize, at: Instant| {
            let (device, ip) = spender(i);
            for _ in 0..CALLS_PER_WINDOW {
                assert!(
                    budget
                        .spend("config.apply", device.as_deref(), ip, at)
                        .is_ok()
                );
            }
            assert!(
                budget
                    .spend("config.apply", device.as_deref(), ip, at)
                    .is_err()
            );
        };
        exhaust(0, start);
        for i in 1..MAX_BUCKETS - 1 {
            let (device, ip) = spender(i);
            let at = start + Duration::from_millis(i as u64);
            assert!(
                budget
                    .spend("config.apply", device.as_deref(), ip, at)
                    .is_ok()
            );
        }
        let late = start + Duration::from_secs(20);
        exhaust(MAX_BUCKETS - 1, late);
        // A new spender past the cap: only the oldest window (device-0's) is forgotten …
        let (device, ip) = spender(MAX_BUCKETS);
        assert!(
            budget
                .spend("config.apply", device.as_deref(), ip, late)
                .is_ok()
        );
        assert_eq!(budget.buckets.lock().unwrap().len(), MAX_BUCKETS);
        // … so the latest spender stays refused, and device-0 starts again.
        let (device, ip) = spender(MAX_BUCKETS - 1);
        assert!(
            budget
                .spend("config.apply", device.as_deref(), ip, late)
                .is_err()
        );
        let (device, ip) = spender(0);
        assert!(
            budget
                .spend("config.apply", device.as_deref(), ip, late)
                .is_ok()
        );
    }
}
