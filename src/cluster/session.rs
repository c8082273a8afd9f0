//! The campaign, the leader's renewals and self-fencing, and the resignation.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
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

fn unavailable(store: &str, err: &ClusterError) -> GatewayLockError {
    GatewayLockError::ClusterUnavailable {
        store: store.to_owned(),
        detail: err.to_string(),
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
    leader
}

/// A leadership held: the lease, its renewal thread and the fence. Dropping it resigns.
pub(crate) struct Held {
    backend: Arc<dyn ClusterBackend>,
    term: Term,
    fence: Arc<Fence>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    renewer: Option<JoinHandle<()>>,
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
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        // A fence closed by the renewal thread was followed by its own resignation.
        if !self.fence.fence("the gateway resigned its leadership") {
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
            // Never reached: a wrong endpoint or a store that is down. Say so at once.
            Err(err) if !reached || options.wait.is_none() => {
                return Err(unavailable(&store, &err));
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
                let renewer = {
                    let backend = Arc::clone(&backend);
                    let term = term.clone();
                    let fence = Arc::clone(&fence);
                    let stop = Arc::clone(&stop);
                    let logger = logger.clone();
                    let (interval, deadline) = (options.renew_interval(), options.renew_deadline());
                    std::thread::Builder::new()
                        .name("gateway-cluster-renew".into())
                        .spawn(move || {
                            renew_loop(&*backend, &term, &fence, &stop, interval, deadline, &logger)
                        })
                        .map_err(GatewayLockError::Runtime)?
                };
                return Ok(Held {
                    backend,
                    term,
                    fence,
                    stop,
                    renewer: Some(renewer),
                    logger: logger.clone(),
                });
            }
            Attempt::Held {
                claim,
                token,
                revision,
            } => {
                let leader = parse_leader(&claim, token);
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
                // until the holder's key goes; only then campaign again.
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
                }
            }
        }
    }
}

fn cancelled(options: &ClusterOptions) -> bool {
    options
        .cancel
        .as_ref()
        .is_some_and(|flag| flag.load(Ordering::Acquire))
}

/// Sleeps `pause`, unless cancelled or out of time first.
fn wait_or_give_up(
    options: &ClusterOptions,
    give_up: Option<Instant>,
    pause: Duration,
) -> Result<(), GatewayLockError> {
    let pause = give_up.map_or(pause, |at| {
        pause.min(at.saturating_duration_since(Instant::now()))
    });
    std::thread::sleep(pause);
    if cancelled(options) {
        return Err(GatewayLockError::Cancelled);
    }
    Ok(())
}

/// The leader's loop: renew every `interval`; the fence's deadline moves to `deadline` after
/// each successful renewal's *sending*. Past the deadline, or when the store says the lease is
/// gone, fence, then revoke what may be left of the lease.
fn renew_loop(
    backend: &dyn ClusterBackend,
    term: &Term,
    fence: &Fence,
    stop: &(Mutex<bool>, Condvar),
    interval: Duration,
    deadline: Duration,
    logger: &Logger,
) {
    let (stopped, wake) = stop;
    let mut next = interval;
    loop {
        // Sleep until the next renewal, but never past the deadline.
        let left = fence.left();
        let nap = next.min(left);
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
            fence.fence("the lease was not renewed within the renew deadline");
            break;
        }
        let budget = Duration::from_nanos(fence.until_ns().saturating_sub(sent)).min(interval * 2);
        match backend.renew(term, budget) {
            Ok(Renewed::Alive(granted)) => {
                // The store's remaining TTL bounds the deadline too (a lease restored short).
                let hold = deadline.min(granted * 2 / 3);
                fence.extend(sent.saturating_add(hold.as_nanos() as u64));
                next = interval;
            }
            Ok(Renewed::Expired) => {
                fence.fence("the store says the lease expired");
                break;
            }
            Err(err) => {
                logger.log(
                    LogLevel::Warn,
                    &format!(
                        "cluster {}: renewing the lease failed ({err}); {} ms left before this gateway stops serving",
                        fence.cluster(),
                        fence.left().as_millis()
                    ),
                );
                next = interval / 4;
            }
        }
        if clock::now_ns() >= fence.until_ns() {
            fence.fence("the lease was not renewed within the renew deadline");
            break;
        }
    }
    logger.log(
        LogLevel::Warn,
        &format!(
            "cluster {}: this gateway stopped serving as leader (fencing token {}); a standby may take over",
            fence.cluster(),
            fence.token()
        ),
    );
    // What is left of the lease goes, so a standby need not wait for it to expire.
    let _ = backend.resign(term, RESIGN_TIMEOUT);
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
                .map_err(|err| unavailable(&store, &err).to_string())
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
