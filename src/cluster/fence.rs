//! The leader's fence: until when the lease surely holds, and what to do the moment it may not.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::clock;

type OnFence = Box<dyn FnOnce(&str) + Send>;

/// Shared by the renewal thread, the server (which asks [`Fence::holds`] before it answers as
/// leader) and the host's [`Leadership`] handles.
pub(crate) struct Fence {
    /// On [`clock::now_ns`]: the renew deadline of the last successful renewal.
    until_ns: AtomicU64,
    fenced: AtomicBool,
    token: u64,
    cluster: String,
    key: String,
    on_fence: Mutex<Vec<OnFence>>,
}

impl Fence {
    pub(crate) fn new(token: u64, cluster: String, key: String, until_ns: u64) -> Arc<Self> {
        Arc::new(Self {
            until_ns: AtomicU64::new(until_ns),
            fenced: AtomicBool::new(false),
            token,
            cluster,
            key,
            on_fence: Mutex::new(Vec::new()),
        })
    }

    /// True while this gateway may act as leader: not fenced, and the renew deadline is still
    /// ahead on a clock that kept counting through any pause. Checked on every request, so a
    /// process resumed after its lease could have expired refuses before the renewal thread
    /// has even woken.
    pub(crate) fn holds(&self) -> bool {
        !self.fenced.load(Ordering::Acquire)
            && clock::now_ns() < self.until_ns.load(Ordering::Acquire)
    }

    /// How long the lease surely holds from now (zero once fenced).
    pub(crate) fn left(&self) -> Duration {
        if self.fenced.load(Ordering::Acquire) {
            return Duration::ZERO;
        }
        Duration::from_nanos(
            self.until_ns
                .load(Ordering::Acquire)
                .saturating_sub(clock::now_ns()),
        )
    }

    pub(crate) fn until_ns(&self) -> u64 {
        self.until_ns.load(Ordering::Acquire)
    }

    /// Moves the deadline later (never earlier: renewals answered out of order cannot pull it
    /// back). Nothing once fenced.
    pub(crate) fn extend(&self, until_ns: u64) {
        if !self.is_fenced() {
            self.until_ns.fetch_max(until_ns, Ordering::AcqRel);
        }
    }

    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Stops acting as leader for good: `holds` is false from here on, then each registered
    /// reaction runs once, in order, with `why` (a reaction that panics is cut short; the rest
    /// still run). The first close wins; later ones do nothing and return false.
    pub(crate) fn fence(&self, why: &str) -> bool {
        if !self.close() {
            return false;
        }
        let reactions =
            std::mem::take(&mut *self.on_fence.lock().unwrap_or_else(|e| e.into_inner()));
        for reaction in reactions {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reaction(why)));
        }
        true
    }

    /// Closes the fence on purpose (a release: the host is stopping, there is no loss to tell):
    /// as [`fence`](Self::fence), but the reactions are dropped unrun. False if it was closed
    /// already.
    pub(crate) fn resign(&self) -> bool {
        if !self.close() {
            return false;
        }
        self.on_fence
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        true
    }

    fn close(&self) -> bool {
        if self.fenced.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.until_ns.store(0, Ordering::Release);
        true
    }

    /// Runs `reaction` when the fence closes (at once, on this thread, if it already has).
    pub(crate) fn on_fence(&self, reaction: impl FnOnce(&str) + Send + 'static) {
        let mut reactions = self.on_fence.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_fenced() {
            drop(reactions);
            reaction("this gateway was already fenced");
            return;
        }
        reactions.push(Box::new(reaction));
    }

    pub(crate) fn token(&self) -> u64 {
        self.token
    }

    pub(crate) fn cluster(&self) -> &str {
        &self.cluster
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }
}

/// This gateway's leadership of its cluster, for a host that guards its own side effects: ask
/// [`holds`](Self::holds) right before acting, and carry the
/// [`fencing_token`](Self::fencing_token) into the store you write (see README "Running several
/// machines" for what the token protects and what it cannot).
#[derive(Clone)]
pub struct Leadership(pub(crate) Arc<Fence>);

impl Leadership {
    /// The store revision at which this gateway took the cluster key: larger than every
    /// earlier leader's, smaller than every later one's.
    pub fn fencing_token(&self) -> u64 {
        self.0.token()
    }

    /// True while this gateway may act as leader (see [`Fence::holds`]'s rule: not fenced, and
    /// the renew deadline ahead on a clock that counts pauses).
    pub fn holds(&self) -> bool {
        self.0.holds()
    }

    /// How long leadership surely lasts from now without another renewal (zero once lost).
    pub fn valid_for(&self) -> Duration {
        self.0.left()
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        self.0.cluster()
    }

    /// The key this gateway holds in the store.
    pub fn key(&self) -> &str {
        self.0.key()
    }
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("cluster", &self.cluster())
            .field("fencing_token", &self.fencing_token())
            .field("holds", &self.holds())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn fence_for(left: Duration) -> Arc<Fence> {
        Fence::new(
            7,
            "c".into(),
            "/openclaw/gateway/c".into(),
            clock::now_ns() + left.as_nanos() as u64,
        )
    }

    #[test]
    fn holds_until_the_deadline_on_the_clock() {
        assert!(fence_for(Duration::from_secs(60)).holds());
        let fence = Fence::new(7, "c".into(), "k".into(), clock::now_ns());
        // Nobody fenced it: the deadline alone ends leadership, and a renewal restores it.
        assert!(!fence.holds() && !fence.is_fenced());
        fence.extend(clock::now_ns() + 60_000_000_000);
        assert!(fence.holds());
    }

    #[test]
    fn extend_never_pulls_the_deadline_back() {
        let fence = fence_for(Duration::from_secs(10));
        let until = fence.until_ns();
        fence.extend(until - 1_000);
        assert_eq!(fence.until_ns(), until);
    }

    #[test]
    fn fencing_runs_each_reaction_once_in_order_and_is_final() {
        let fence = fence_for(Duration::from_secs(10));
        let calls = Arc::new(AtomicUsize::new(0));
        for expected in 0..2 {
            let calls = Arc::clone(&calls);
            fence.on_fence(move |why| {
                assert_eq!(why, "lost");
                assert_eq!(calls.fetch_add(1, Ordering::SeqCst), expected);
            });
        }
        assert!(fence.fence("lost"));
        assert!(!fence.fence("again"));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(!fence.holds() && fence.left().is_zero());
        fence.extend(u64::MAX);
        assert!(!fence.holds(), "a fenced gateway never holds again");
        // A reaction registered after the fence closed runs at once.
        let late = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&late);
        fence.on_fence(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(late.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_panicking_reaction_does_not_stop_the_next() {
        let fence = fence_for(Duration::from_secs(10));
        let ran = Arc::new(AtomicUsize::new(0));
        fence.on_fence(|_| panic!("a host's handler panicked"));
        let counted = Arc::clone(&ran);
        fence.on_fence(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        assert!(fence.fence("lost"));
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn resigning_closes_the_fence_without_running_the_reactions() {
        let fence = fence_for(Duration::from_secs(10));
        let ran = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&ran);
        fence.on_fence(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        assert!(fence.resign());
        assert!(!fence.holds() && !fence.fence("later") && !fence.resign());
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }
}
