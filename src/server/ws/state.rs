//! The gateway state its clients read besides their own answers (SPEC §12.6–12.7): the host's
//! health source and cache, and the built-in `system-presence` method.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::runtime::{Handle, RuntimeFlavor};

use super::handle::Responder;
use super::handlers::{MethodHandler, MethodRequest};
use crate::server::presence;

/// Produces the health snapshot that `health` answers and `health` events carry, when the
/// gateway refreshes it: at start, every `ProtocolOptions::health_refresh_interval`, after a
/// `health` request that found the cache stale, and after a connect at most once an interval
/// (SPEC §12.7). Returning `None` keeps the previous snapshot and sends nothing.
///
/// Called on a gateway thread, never on two at once for one gateway (a refresh asked for while
/// one runs waits for it and shares its snapshot): it must return quickly (a slow source holds
/// up a worker, and every caller waiting for it). Any JSON value is sent as is; OpenClaw
/// clients read an object whose fields are all optional.
#[derive(Clone)]
pub struct HealthSource(Arc<dyn Fn() -> Option<Value> + Send + Sync>);

impl HealthSource {
    /// A source that calls `produce` at each refresh.
    pub fn new(produce: impl Fn() -> Option<Value> + Send + Sync + 'static) -> Self {
        Self(Arc::new(produce))
    }

    /// One snapshot, or `None` to keep the cached one.
    pub fn produce(&self) -> Option<Value> {
        (self.0)()
    }
}

impl std::fmt::Debug for HealthSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HealthSource(..)")
    }
}

/// The health snapshot clients were last sent, and `stateVersion.health`.
pub(super) struct HealthCache {
    pub snapshot: Option<Value>,
    /// 1 before the first refresh (HS:21), then one more per refresh.
    pub version: u64,
    pub refreshed: Option<Instant>,
    /// When the last refresh began that a connect (or the start) asked for
    /// (`health-refresh-admission-CbSP_L_Q.mjs:6-11`).
    pub admitted: Option<Instant>,
}

impl Default for HealthCache {
    fn default() -> Self {
        Self {
            snapshot: None,
            version: 1,
            refreshed: None,
            admitted: None,
        }
    }
}

impl HealthCache {
    /// Whether the snapshot is younger than `max_age` (SPEC §12.7: the `health` RPC answers
    /// it then, else refreshes).
    pub fn fresh(&self, now: Instant, max_age: Duration) -> Option<&Value> {
        match (&self.snapshot, self.refreshed) {
            (Some(snapshot), Some(at)) if now.saturating_duration_since(at) < max_age => {
                Some(snapshot)
            }
            _ => None,
        }
    }

    /// Whether a connect may start a background refresh now: at most one per `interval`; the
    /// answer `true` counts as that one.
    pub fn admit(&mut self, now: Instant, interval: Duration) -> bool {
        if self
            .admitted
            .is_some_and(|at| now.saturating_duration_since(at) < interval)
        {
            return false;
        }
        self.admitted = Some(now);
        true
    }
}

/// One health refresh at a time. Node shares the refresh in flight among its callers
/// (`health-state-DDGndTFl.mjs:113-116`: a second caller gets the running refresh's promise):
/// here a caller that finds a refresh running waits until it has landed and uses its snapshot,
/// so the source runs once and `stateVersion.health` moves once.
#[derive(Debug, Default)]
pub(super) struct RefreshGate {
    state: Mutex<GateState>,
    landed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    /// The thread running the refresh in flight.
    running: Option<ThreadId>,
    /// Refreshes landed so far: a waiter waits for this to move.
    landings: u64,
}

/// The turn of the caller that runs the refresh; dropping it (also on unwind) lands it.
pub(super) struct RefreshTurn<'a>(&'a RefreshGate);

impl RefreshGate {
    /// `Some` when the caller is to refresh now. `None` after waiting for the refresh another
    /// thread was running, whose snapshot is then the caller's; and `None` at once on the
    /// refreshing thread itself (a source that asks for health again), which would otherwise
    /// wait for itself.
    pub fn enter(&self) -> Option<RefreshTurn<'_>> {
        let me = thread::current().id();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.running {
            None => {
                state.running = Some(me);
                Some(RefreshTurn(self))
            }
            Some(running) if running == me => None,
            Some(_) => {
                let landings = state.landings;
                let wait = || {
                    drop(
                        self.landed
                            .wait_while(state, |state| state.landings == landings)
                            .unwrap_or_else(|e| e.into_inner()),
                    );
                };
                // The wait blocks the thread: on the gateway's (multi-thread) runtime the
                // worker's other connections move to another thread meanwhile.
                match Handle::try_current() {
                    Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                        tokio::task::block_in_place(wait);
                    }
                    _ => wait(),
                }
                None
            }
        }
    }
}

impl Drop for RefreshTurn<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        state.running = None;
        state.landings += 1;
        self.0.landed.notify_all();
    }
}

/// `system-presence` (needs `operator.read`; `system-B9X__69d.mjs:344-349`): the presence
/// list itself, projected for the caller (SPEC §12.6).
pub(super) struct SystemPresence;

impl MethodHandler for SystemPresence {
    fn call(&self, request: MethodRequest, responder: Responder) {
        let client = &request.client;
        let list = match responder.handle() {
            Some(handle) if presence::readable_by(&client.role, &client.scopes) => {
                handle.presence()
            }
            _ => Vec::new(),
        };
        responder.respond(Ok(Value::Array(list)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_fresh_for_one_interval_and_admits_one_refresh_per_interval() {
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let mut cache = HealthCache::default();
        assert_eq!(cache.version, 1);
        assert!(cache.fresh(start, minute).is_none(), "no snapshot yet");
        cache.snapshot = Some(Value::from(1));
        cache.refreshed = Some(start);
        assert!(cache.fresh(start + minute / 2, minute).is_some());
        assert!(cache.fresh(start + minute, minute).is_none());
        assert!(cache.admit(start, minute));
        assert!(!cache.admit(start + minute / 2, minute));
        assert!(cache.admit(start + minute, minute));
    }
}
