//! Removes a lock file judged dead, under the `<lock>.reclaim` guard, safely against a
//! concurrent reclaimer of either implementation (SPEC §4).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::dir::LockDir;
use super::format::LockPayload;
use super::host::{HostIdentity, Whereabouts};
use super::inspect::{BeaconProbe, Observed, inspect};
use super::verdict::locks_are_local;
use super::{beacon, format, liveness};
use crate::error::GatewayLockError;

/// What a reclaim attempt did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reclaim {
    /// We removed the judged file: create again at once.
    Done,
    /// The judged file is gone (someone else removed it) or was replaced, or a beacon is held
    /// on it now: judge again.
    Changed,
    /// Another reclaimer holds the guard: wait a poll interval.
    Busy,
}

/// Removes a lock file judged dead: take `<lock>.reclaim` exclusively, re-read, unlink only if
/// bytes and inode are unchanged and no beacon is held, remove the guard.
pub fn reclaim(
    dir: &LockDir,
    name: &str,
    judged: &Observed,
    stale: Duration,
) -> Result<Reclaim, GatewayLockError> {
    let guard_name = guard_name(name);
    let io_error = |source| GatewayLockError::LockIo {
        path: dir.join(&guard_name),
        source,
    };
    let guard = match dir.open(
        &guard_name,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        0o600,
    ) {
        Ok(guard) => guard,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            clear_abandoned_guard(dir, &guard_name, stale)?;
            return Ok(Reclaim::Busy);
        }
        Err(e) => return Err(io_error(e)),
    };
    let outcome = hold_guard(&guard)
        .map_err(io_error)
        .and_then(|()| remove_if_unchanged(dir, name, judged));
    // Removed on every path: a guard left by a live process would block every reclaimer for
    // the whole stale window.
    let _ = dir.remove_file(&guard_name);
    outcome
}

/// `<lock>.reclaim`: whoever removes a lock file judged dead holds it meanwhile (SPEC §4).
pub fn guard_name(name: &str) -> String {
    format!("{name}.reclaim")
}

/// The guard carries our beacon and pid, so others can tell an abandoned one.
fn hold_guard(guard: &File) -> io::Result<()> {
    beacon::lock_exclusive(guard)?;
    (&*guard).write_all(&format::guard_contents(std::process::id()))
}

/// Under the guard: unlinks `name` only if its bytes and inode are what was judged dead and no
/// beacon is held on it now.
fn remove_if_unchanged(
    dir: &LockDir,
    name: &str,
    judged: &Observed,
) -> Result<Reclaim, GatewayLockError> {
    match inspect(dir, name, BeaconProbe::Flock) {
        Ok(Some(now)) if now.same_file(judged) && !now.beacon_held => match dir.remove_file(name) {
            Ok(()) => Ok(Reclaim::Done),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Reclaim::Changed),
            Err(source) => Err(GatewayLockError::LockIo {
                path: dir.join(name),
                source,
            }),
        },
        // Gone, or replaced by a new owner: judge again.
        Ok(_) => Ok(Reclaim::Changed),
        Err(e) => Err(e),
    }
}

/// A guard left by a reclaimer that died, or older than the stale window, is removed (OpenClaw
/// fails closed here, which wedged restarts). The guard may be a file or (OpenClaw) a directory.
pub fn clear_abandoned_guard(
    dir: &LockDir,
    guard_name: &str,
    stale: Duration,
) -> Result<(), GatewayLockError> {
    let Ok(found) = dir.stat(guard_name) else {
        return Ok(());
    };
    let age = SystemTime::now()
        .duration_since(found.modified)
        .unwrap_or(Duration::ZERO);
    if found.is_dir {
        if age > stale {
            let _ = dir.remove_dir(guard_name);
        }
        return Ok(());
    }
    let abandoned = match inspect(dir, guard_name, BeaconProbe::Flock) {
        Ok(Some(observed)) => {
            !observed.beacon_held
                && (age > stale
                    || observed.payload.as_ref().is_some_and(|guard| {
                        reclaimer_is_gone(guard, found.modified, &dir.join(guard_name))
                    }))
        }
        // Gone already, or not a regular file (refused elsewhere): nothing to clear.
        _ => false,
    };
    let unchanged = dir
        .stat(guard_name)
        .is_ok_and(|now| (now.dev, now.ino) == (found.dev, found.ino));
    if abandoned && unchanged {
        let _ = dir.remove_file(guard_name);
    }
    Ok(())
}

/// A guard's reclaimer (its beacon free) is gone when its pid is dead on this boot, or it was
/// left by an earlier boot of this machine, or by another PID namespace of this kernel where
/// this kernel sees every lock on `path`. One from another machine, or from another namespace
/// through a mount of its own, is left to the stale window: its pid means nothing here.
fn reclaimer_is_gone(guard: &LockPayload, modified: SystemTime, path: &Path) -> bool {
    let written = guard.created_at_time().unwrap_or(modified);
    match guard.host.whereabouts(Some(written), HostIdentity::this()) {
        Whereabouts::ThisBoot => !liveness::pid_is_running(guard.pid),
        Whereabouts::OtherPidNamespace => locks_are_local(path),
        Whereabouts::EarlierBoot => true,
        Whereabouts::OtherMachine => false,
    }
}
