//! `gateway unlock`: the explicit way out when a lock's holder is on another machine and gone
//! (issue 13). Removes only what no live gateway of this machine holds, and another machine's
//! lock only when told to.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::dir::LockDir;
use super::inspect::{BeaconProbe, Observed, inspect};
use super::reclaim::{Reclaim, reclaim};
use super::verdict::{Verdict, judge};
use crate::error::GatewayLockError;
use crate::options::GatewayOptions;
use crate::paths;

/// A lock file [`unlock`] removed, and the holder it named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedLock {
    /// The lock file.
    pub lock_path: PathBuf,
    /// The pid it recorded (on its own machine), when it had a payload.
    pub pid: Option<u32>,
    /// The holder's host as recorded (host name, else machine id, else boot id); `None` when
    /// the file records no host (OpenClaw's Node gateway writes none).
    pub host: Option<String>,
    /// The holder was on another machine (removed only because `force` was given).
    pub on_other_host: bool,
    /// How old the file was: by its `createdAt`, else its mtime.
    pub age: Duration,
}

/// Removes the lock files of a gateway that is gone, for the config and state dir `options`
/// resolve to; returns what it removed (nothing when there was no lock).
///
/// - a holder on this machine that is alive (or may be: starting, or a pid that cannot be
///   told apart from a gateway) is never removed: [`GatewayLockError::LockInUse`], nothing
///   removed, with or without `force`; nor is one on another machine whose beacon the file
///   system shares (it is alive, certainly);
/// - a stale lock (a dead holder of this machine, one of an earlier boot, or no payload past
///   the stale window) is removed without `force`: the next start would reclaim it anyway;
/// - a holder on another machine, whose beacon we cannot see, is removed only with `force`:
///   without it, [`GatewayLockError::HeldByOtherHost`], nothing removed.
///
/// Every file is judged before any is removed, and each is removed under the reclaim guard,
/// only if it is still the file judged (SPEC §4). Should one have changed meanwhile (a gateway
/// starting), all are judged again: a refusal then, after some were removed, is
/// [`GatewayLockError::UnlockIncomplete`], naming them. Takes no lock of its own; waits up to the
/// options' timeout for a concurrent reclaimer.
pub fn unlock(options: &GatewayOptions, force: bool) -> Result<Vec<RemovedLock>, GatewayLockError> {
    let resolved = options.resolve()?;
    options.check_app_sandbox(&resolved)?;
    let Some(dir) = LockDir::open_existing(&resolved.lock_dir)? else {
        return Ok(Vec::new());
    };
    // The config lock first, the state lock last: as a release goes.
    let names = [
        paths::config_lock_name(&resolved.config_path),
        paths::STATE_LOCK_NAME.to_owned(),
    ];
    let deadline = Instant::now().checked_add(options.timeout);
    let mut removed = Vec::new();
    loop {
        let mut doomed = Vec::new();
        for name in &names {
            let Some(observed) = inspect(&dir, name, BeaconProbe::Flock)? else {
                continue;
            };
            let verdict = judge(&observed, options.stale_after, &dir.join(name));
            let lock_path = dir.join(name);
            if let Err(refusal) = refuse(verdict, &observed, lock_path, force) {
                // A file judged stale in an earlier round is gone: say so with the refusal.
                return Err(if removed.is_empty() {
                    refusal
                } else {
                    GatewayLockError::UnlockIncomplete {
                        removed: removed
                            .into_iter()
                            .map(|r: RemovedLock| r.lock_path)
                            .collect(),
                        refusal: Box::new(refusal),
                    }
                });
            }
            doomed.push((name, observed, verdict));
        }
        let mut busy = None;
        let mut again = false;
        for (name, observed, verdict) in doomed {
            match reclaim(&dir, name, &observed, options.stale_after)? {
                Reclaim::Done => removed.push(RemovedLock {
                    lock_path: dir.join(name),
                    pid: observed.payload.as_ref().map(|p| p.pid),
                    host: observed
                        .payload
                        .as_ref()
                        .filter(|p| p.host != Default::default())
                        .map(|p| p.host.display_name()),
                    on_other_host: matches!(verdict, Verdict::OtherHost { .. }),
                    age: observed.age(),
                }),
                // Replaced or gone since: judge it again.
                Reclaim::Changed => again = true,
                Reclaim::Busy => busy = Some(dir.join(name)),
            }
        }
        match busy {
            None if !again => return Ok(removed),
            None => {}
            Some(path) => {
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                if left.is_some_and(|left| left.is_zero()) {
                    return Err(GatewayLockError::LockIo {
                        path,
                        source: std::io::Error::new(
                            std::io::ErrorKind::WouldBlock,
                            "another process is reclaiming it at the same time; run gateway unlock again",
                        ),
                    });
                }
                std::thread::sleep(left.map_or(options.poll_interval, |left| {
                    options.poll_interval.min(left)
                }));
            }
        }
    }
}

/// Why a file may not be removed, if it may not.
fn refuse(
    verdict: Verdict,
    observed: &Observed,
    lock_path: PathBuf,
    force: bool,
) -> Result<(), GatewayLockError> {
    let host = || {
        observed
            .payload
            .as_ref()
            .map_or_else(String::new, |p| p.host.display_name())
    };
    let in_use = |pid, port, host, confirmed| GatewayLockError::LockInUse {
        pid,
        host,
        lock_path: lock_path.clone(),
        port,
        age: observed.age(),
        confirmed,
    };
    match verdict {
        Verdict::Reclaimable => Ok(()),
        Verdict::OtherHost {
            beacon_held: false, ..
        } if force => Ok(()),
        Verdict::OtherHost {
            pid,
            port,
            beacon_held: false,
        } => Err(GatewayLockError::HeldByOtherHost {
            host: host(),
            pid,
            port,
            lock_path: lock_path.clone(),
        }),
        Verdict::OtherHost {
            pid,
            port,
            beacon_held: true,
        } => Err(in_use(Some(pid), port, Some(host()), true)),
        Verdict::Alive { pid, port } => Err(in_use(Some(pid), port, None, true)),
        // Starting, or a pid that cannot be told from a live gateway's: it may be alive.
        Verdict::Wait { pid, port } => Err(in_use(pid, port, None, false)),
    }
}
