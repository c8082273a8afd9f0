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
        self.until_ns.fetch_max(until_ns, Ordering::AcqRel);
    }

    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Stops acting as leader for good: `holds` is false from here on, then each registered
    /// reaction runs once, in order, with `why`. The first call wins; later ones do nothing.
    pub(crate) fn fence(&self, why: &str) -> bool {
        if self.fenced.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.until_ns.store(0, Ordering::Release);
        let reactions =
            std::mem::take(&mut *self.on_fence.lock().unwrap_or_else(|e| e.into_inner()));
        for reaction in reactions {
            reaction(why);
        }
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
