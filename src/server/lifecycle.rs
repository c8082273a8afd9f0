//! What a running gateway tells its host about its life cycle (SPEC §5, §7): ready, lock lost,
//! stopped, and how a shutdown went.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A change in a served gateway's life, given to [`ServeOptions::on_state`](super::ServeOptions).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GatewayState {
    /// The listeners accept and `/readyz` answers 200. Told on the thread that called
    /// [`Gateway::serve`](super::Gateway::serve), just before it returns.
    Ready,
    /// The periodic re-check found this lock file deleted or replaced: another gateway may
    /// start on this config. Told once, from the lock re-check thread.
    LockLost {
        /// The lock file that was lost.
        path: PathBuf,
    },
    /// Cluster mode (issue 14): this gateway stopped serving as its cluster's leader, before
    /// its lease could expire (not renewed by the renew deadline, or the store says it is
    /// gone). `/readyz` answers 503 and every client was closed with 1012 before this is told,
    /// from the cluster's renewal thread. The gateway serves nothing more: shut it down and
    /// acquire again to stand by.
    LeadershipLost {
        /// The cluster's name.
        cluster: String,
        /// The fencing token of the leadership lost.
        fencing_token: u64,
        /// Why, for people.
        reason: String,
    },
    /// The listeners are closed and the lock is released. `drained` is false when open
    /// connections were cut off at the shutdown timeout. Told on the thread that shut down.
    Stopped {
        /// Whether every connection finished before the timeout.
        drained: bool,
    },
}

/// Where a gateway's [`GatewayState`] changes go.
#[derive(Clone)]
pub struct StateHandler(Arc<StateSink>);

type StateSink = dyn Fn(&GatewayState) + Send + Sync;

impl StateHandler {
    /// A handler that is told every change, on the thread each [`GatewayState`] names.
    pub fn new(handler: impl Fn(&GatewayState) + Send + Sync + 'static) -> Self {
        Self(Arc::new(handler))
    }

    /// Tells the handler of `state`.
    pub fn notify(&self, state: &GatewayState) {
        (self.0)(state)
    }
}

impl fmt::Debug for StateHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateHandler")
    }
}

/// How a [`Gateway::shutdown`](super::Gateway::shutdown) went. Either way, when it is returned
/// the port is free and no lock file of ours remains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Every open connection finished within the timeout (false: the rest were cut off).
    pub drained: bool,
}
