//! The campaign, the leader's renewals and self-fencing, and the resignation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::{
    Attempt, ClusterBackend, ClusterError, ClusterLeader, ClusterOptions, ClusterStatus, Fence,
    KEY_PREFIX, Leadership, Renewed, Term, backend_for, clock,
};
use crate::error::GatewayLockError;
use crate::lock::host::HostIdentity;
use crate::options::{LogLevel, Logger, ResolvedOptions};

/// How long a standby waits on one watch before it looks at its cancel flag again.
const STANDBY_SLICE: Duration = Duration::from_millis(250);
/// The longest a resignation may hold up a shutdown.
const RESIGN_TIMEOUT: Duration = Duration::from_secs(1);

/// The cluster's name and key for a config.
pub(crate) fn name_and_key(
    options: &ClusterOptions,
    resolved: &ResolvedOptions,
) -> (String, String) {
    let name = options.name.clone().unwrap_or_else(|| {
        let digest = Sha256::digest(resolved.config_path.to_string_lossy().as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("config-{hex}")
    });
    let key = format!("{KEY_PREFIX}{name}");
    (name, key)
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The error a store failure gives the host: a refusal, or a store that did not answer.
fn store_error(store: &str, err: &ClusterError) -> GatewayLockError {
    let (store, detail) = (store.to_owned(), err.to_string());
    match err {
        ClusterError::Refused(_) => GatewayLockError::ClusterRefused { store, detail },
        ClusterError::Unavailable(_) => GatewayLockError::ClusterUnavailable { store, detail },
    }
}

fn parse_leader(claim: &[u8], token: u64) -> ClusterLeader {
    let mut leader =
        serde_json::from_slice::<ClusterLeader>(claim).unwrap_or_else(|_| ClusterLeader {
            host: "(unreadable claim)".to_owned(),
            pid: 0,
            port: 0,
            since_ms: 0,
            owner_id: String::new(),
            fencing_token: token,
        });
    leader.fencing_token = token;
    // A claim is anyone's to write: keep its time printable (9999-12-31T23:59:59Z at most).
    leader.since_ms = leader.since_ms.min(253_402_300_799_000);
    leader
}

/// A leadership held: the lease, its renewal thread and the fence. Dropping it resigns.
pub(crate) struct Held {
    backend: Arc<dyn ClusterBackend>,
    term: Term,
    fence: Arc<Fence>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    /// Set by the renewal thread once it revoked the lease after fencing.
    resigned: Arc<AtomicBool>,
    logger: Logger,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("key", &self.fence.key())
            .field("token", &self.term.token)
            .finish()
    }
}

impl Held {
    pub(crate) fn leadership(&self) -> Leadership {
        Leadership(Arc::clone(&self.fence))
    }

    pub(crate) fn fence(&self) -> &Arc<Fence> {
        &self.fence
    }
}

impl Drop for Held {
    /// Graceful hand-over: stop renewing, stop acting as leader, then revoke the lease so a
    /// standby is elected at once instead of after the TTL.
    fn drop(&mut self) {
        {
            let (stopped, wake) = &*self.stop;
            *stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
            wake.notify_all();
        }
        // The renewal thread is not waited for: a renewal in flight must not hold up the
        // hand-over, and a host may release from the fence's reaction on that very thread. It
        // ends at its next wake-up, and can no longer reopen the fence.
        let was_open = self.fence.resign();
        // Fenced before, the renewal thread revoked the lease, unless the store did not answer
        // then: try again now.
        if !was_open && self.resigned.load(Ordering::Acquire) {
            return;
        }
        match self.backend.resign(&self.term, RESIGN_TIMEOUT) {
            Ok(()) => self.logger.log(
                LogLevel::Info,
                &format!("cluster {}: resigned (lease revoked)", self.fence.cluster()),
            ),
            Err(err) => self.logger.log(
                LogLevel::Warn,
                &format!(
                    "cluster {}: could not revoke the lease ({err}); a standby takes over when it expires",
                    self.fence.cluster()
                ),
            ),
        }
    }
}

/// Campaigns until this gateway leads, the wait runs out, or it is cancelled.
pub(crate) fn campaign(
    options: &ClusterOptions,
    resolved: &ResolvedOptions,
    owner_id: &str,
    logger: &Logger,
) -> Result<Held, GatewayLockError> {
    options.validate()?;
    let backend = backend_for(options)?;
    let store = options.store.to_string();
    let (name, key) = name_and_key(options, resolved);
    let op_timeout = options.ttl.min(Duration::from_secs(5));
    let started = Instant::now();
    let give_up = options.wait.and_then(|wait| started.checked_add(wait));
    let mut reached = false;
    let mut last_leader: Option<String> = None;
    loop {
        if cancelled(options) {
            return Err(GatewayLockError::Cancelled);
        }
        let host = HostIdentity::this();
        let claim = serde_json::to_vec(&ClusterLeader {
            host: host.display_name(),
            pid: std::process::id(),
            port: resolved.port,
            since_ms: unix_ms(SystemTime::now()),
            owner_id: owner_id.to_owned(),
            fencing_token: 0,
        })
        .expect("a claim serializes");
        // The lease starts in the store after we send; counting from before is safe.
        let sent = clock::now_ns();
        let attempt = match backend.try_campaign(&key, &claim, options.ttl, op_timeout) {
            Ok(attempt) => attempt,
            // A refusal is final; never reached: a wrong endpoint or a store that is down.
            // Either way, say so at once.
            Err(err) if !reached || options.wait.is_none() || is_refusal(&err) => {
                return Err(store_error(&store, &err));
            }
            Err(err) => {
                logger.log(
                    LogLevel::Warn,
                    &format!("cluster {name}: the store does not answer ({err}); standing by"),
                );
                wait_or_give_up(options, give_up, STANDBY_SLICE * 4)?;
                continue;
            }
        };
        reached = true;
        match attempt {
            Attempt::Won(term) => {
                let until = sent.saturating_add(options.renew_deadline().as_nanos() as u64);
                let fence = Fence::new(term.token, name.clone(), key.clone(), until);
                logger.log(
                    LogLevel::Info,
                    &format!(
                        "cluster {name}: this gateway leads (fencing token {})",
                        term.token
                    ),
                );
                let stop = Arc::new((Mutex::new(false), Condvar::new()));
                let resigned = Arc::new(AtomicBool::new(false));
                let held = Held {
                    backend: Arc::clone(&backend),
                    term: term.clone(),
                    fence: Arc::clone(&fence),
                    stop: Arc::clone(&stop),
                    resigned: Arc::clone(&resigned),
                    logger: logger.clone(),
                };
                let renewal = Renewal {
                    backend,
                    term,
                    fence,
                    stop,
                    resigned,
                    interval: options.renew_interval(),
                    deadline: options.renew_deadline(),
                    logger: logger.clone(),
                };
                // Without its renewal thread the term cannot last: `held` resigns on the way out.
                std::thread::Builder::new()
                    .name("gateway-cluster-renew".into())
                    .spawn(move || renewal.run())
                    .map_err(GatewayLockError::Runtime)?;
                return Ok(held);
            }
            Attempt::Held {
                claim,
                token,
                lease,
                revision,
            } => {
                let leader = parse_leader(&claim, token);
                // Our own claim, from an attempt whose answer was cut off by its timeout after
                // the transaction committed: give that lease up and try again.
                if leader.owner_id == owner_id {
                    let orphan = Term {
                        key: key.clone(),
                        lease,
                        token,
                    };
                    if let Err(err) = backend.resign(&orphan, op_timeout) {
                        logger.log(
                            LogLevel::Warn,
                            &format!("cluster {name}: could not give up a claim of ours left by a cut-off attempt ({err}); it expires with its lease"),
                        );
                        wait_or_give_up(options, give_up, STANDBY_SLICE)?;
                    }
                    continue;
                }
                let refusal = || GatewayLockError::ClusterLeaderElsewhere {
                    cluster: name.clone(),
                    leader: leader.clone(),
                };
                if options.wait.is_none() {
                    return Err(refusal());
                }
                if last_leader.as_deref() != Some(leader.owner_id.as_str()) {
                    logger.log(
                        LogLevel::Info,
                        &format!(
                            "cluster {name}: standing by; the leader is host {} (pid {}, port {}, fencing token {})",
                            leader.host, leader.pid, leader.port, leader.fencing_token
                        ),
                    );
                    last_leader = Some(leader.owner_id.clone());
                }
                // Watch the key in slices (to see a cancel or the end of the wait in time)
                // until the holder's key goes; only then campaign again. Once a TTL without an
                // event, read the key too, in case the watch misses what it should see.
                let mut looked = Instant::now();
                loop {
                    let slice = match give_up {
                        Some(at) => {
                            let left = at.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                return Err(refusal());
                            }
                            left.min(STANDBY_SLICE)
                        }
                        None => STANDBY_SLICE,
                    };
                    match backend.wait_for_change(&key, revision, slice) {
                        Ok(true) => break,
                        Ok(false) => {}
                        Err(err) => {
                            logger.log(
                                LogLevel::Debug,
                                &format!(
                                    "cluster {name}: watching the leader's key failed ({err})"
                                ),
                            );
                            wait_or_give_up(options, give_up, STANDBY_SLICE)?;
                            break;
                        }
                    }
                    if cancelled(options) {
                        return Err(GatewayLockError::Cancelled);
                    }
                    if looked.elapsed() >= options.ttl {
                        looked = Instant::now();
                        match backend.leader(&key, op_timeout) {
                            Ok(Some((_, holder))) if holder == token => {}
                            // Gone or taken over, or the store does not answer: campaign.
                            _ => break,
                        }
                    }
                }
            }
        }
    }
}

fn is_refusal(err: &ClusterError) -> bool {
    matches!(err, ClusterError::Refused(_))
}

fn cancelled(options: &ClusterOptions) -> bool {
    options
        .cancel
        .as_ref()
        .is_some_and(|flag| flag.load(Ordering::Acquire))
}

/// Sleeps `pause`, unless cancelled or out of time first (looking at the cancel flag every
/// [`STANDBY_SLICE`]).
fn wait_or_give_up(
    options: &ClusterOptions,
    give_up: Option<Instant>,
    pause: Duration,
) -> Result<(), GatewayLockError> {
    let pause = give_up.map_or(pause, |at| {
        pause.min(at.saturating_duration_since(Instant::now()))
    });
    let until = Instant::now() + pause;
    loop {
        if cancelled(options) {
            return Err(GatewayLockError::Cancelled);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(STANDBY_SLICE));
    }
}

/// What the leader's renewal thread needs.
struct Renewal {
    backend: Arc<dyn ClusterBackend>,
    term: Term,
    fence: Arc<Fence>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    resigned: Arc<AtomicBool>,
    interval: Duration,
    deadline: Duration,
    logger: Logger,
}

impl Renewal {
    fn stopped(&self) -> bool {
        *self.stop.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The leader's loop: renew every `interval`; the fence's deadline moves to `deadline`
    /// after each successful renewal's *sending*. Past the deadline, or when the store says
    /// the lease or the key is gone, fence, then revoke what may be left of the lease. A stop
    /// (the lock released) ends it quietly: the release resigns.
    fn run(self) {
        let (stopped, wake) = &*self.stop;
        let fence = &*self.fence;
        let mut next = self.interval;
        let why = loop {
            // Sleep until the next renewal, but never past the deadline.
            let nap = next.min(fence.left());
            {
                let guard = stopped.lock().unwrap_or_else(|e| e.into_inner());
                let (guard, _) = wake
                    .wait_timeout_while(guard, nap, |stopped| !*stopped)
                    .unwrap_or_else(|e| e.into_inner());
                if *guard {
                    return;
                }
            }
            let sent = clock::now_ns();
            if sent >= fence.until_ns() {
                break "the lease was not renewed within the renew deadline";
            }
            let budget =
                Duration::from_nanos(fence.until_ns().saturating_sub(sent)).min(self.interval * 2);
            let renewed = self.backend.renew(&self.term, budget);
            if self.stopped() {
                return;
            }
            match renewed {
                Ok(Renewed::Alive(granted)) => {
                    // The store's remaining TTL bounds the deadline too (a lease restored
                    // short).
                    let hold = self.deadline.min(granted * 2 / 3);
                    fence.extend(sent.saturating_add(hold.as_nanos() as u64));
                    next = self.interval;
                }
                Ok(Renewed::Expired) => {
                    break "the store says the lease expired or the key is no longer this gateway's";
                }
                Err(err) => {
                    self.logger.log(
                        LogLevel::Warn,
                        &format!(
                            "cluster {}: renewing the lease failed ({err}); {} ms left before this gateway stops serving",
                            fence.cluster(),
                            fence.left().as_millis()
                        ),
                    );
                    next = self.interval / 4;
                }
            }
            if clock::now_ns() >= fence.until_ns() {
                break "the lease was not renewed within the renew deadline";
            }
        };
        if !fence.fence(why) {
            return; // Released meanwhile: the release resigns.
        }
        self.logger.log(
            LogLevel::Warn,
            &format!(
                "cluster {}: this gateway stopped serving as leader ({why}; fencing token {}); a standby may take over",
                fence.cluster(),
                fence.token()
            ),
        );
        // What is left of the lease goes, so a standby need not wait for it to expire.
        if self.backend.resign(&self.term, RESIGN_TIMEOUT).is_ok() {
            self.resigned.store(true, Ordering::Release);
        }
    }
}

/// The cluster's leader as the store says, for `status`: reads, takes no part.
pub(crate) fn leader_status(options: &ClusterOptions, resolved: &ResolvedOptions) -> ClusterStatus {
    let (name, key) = name_and_key(options, resolved);
    let store = options.store.to_string();
    let read = options
        .validate()
        .and_then(|()| backend_for(options))
        .map_err(|err| err.to_string())
        .and_then(|backend| {
            backend
                .leader(&key, options.ttl.min(Duration::from_secs(3)))
                .map_err(|err| store_error(&store, &err).to_string())
        });
    let (leader, error) = match read {
        Ok(found) => (
            found.map(|(claim, token)| parse_leader(&claim, token)),
            None,
        ),
        Err(error) => (None, Some(error)),
    };
    ClusterStatus {
        name,
        key,
        store,
        leader,
        error,
    }
}
