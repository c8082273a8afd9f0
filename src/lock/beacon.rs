//! The kernel beacon (SPEC §4): a holder keeps an exclusive `flock` on its open lock file for
//! its whole life; a checker asks whether one is held.
//!
//! The `flock` goes through std's `File::{lock, try_lock_shared, unlock}`. `status` asks
//! without taking anything: on Linux the holder also takes an OFD lock, which `F_OFD_GETLK`
//! tests for from any PID namespace (std has no OFD locks, so those stay `fcntl` calls); on
//! macOS `F_GETLK` sees the holder's `flock` itself.

use std::fs::File;
use std::io;

/// Takes the beacon on a file we have just created: an exclusive `flock` and, on Linux, an
/// exclusive OFD lock beside it. Both belong to the open file, so they go together when it is
/// closed, however the process ends.
pub(super) fn take(file: &File) -> io::Result<()> {
    lock_exclusive(file)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut lock = whole_file_write_lock();
        // Best effort: it only helps `status` see us from another PID namespace, and nobody
        // else can hold a lock on a file we have just created. Kernels before 3.15 lack it.
        // SAFETY: the descriptor is open and `lock` is a valid `struct flock`.
        let _ = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
    }
    Ok(())
}

/// An exclusive `flock`, waiting for it. Only a checker's momentary shared lock can be in the
/// way, so the wait is short; a signal that interrupts it does not end it.
pub(super) fn lock_exclusive(file: &File) -> io::Result<()> {
    loop {
        match file.lock() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            locked => return locked,
        }
    }
}

/// Whether someone holds an exclusive `flock` on the file: we try a shared one and drop it at
/// once. Used while acquiring and reclaiming, where taking a lock for an instant is fine.
pub(super) fn held_flock(file: &File) -> io::Result<bool> {
    match file.try_lock_shared() {
        Ok(()) => {
            file.unlock()?;
            Ok(false)
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Whether a holder's beacon is on the file, taking nothing (for `status`). Linux: its OFD
/// lock, then its `flock` in `/proc/locks`. macOS: `F_GETLK`, which sees the `flock`.
/// Elsewhere, only as a last resort, a momentary [`held_flock`].
#[cfg(target_os = "linux")]
pub(super) fn held_passive(file: &File, dev: u64, ino: u64) -> io::Result<bool> {
    if held_ofd(file) {
        return Ok(true);
    }
    // `/proc/locks` shows a holder that has only the `flock` (unless it is outside our PID
    // namespace). `F_GETLK` would not: on Linux `flock` and `fcntl` locks are separate lists,
    // so the one-call macOS probe below sees nothing here; the two reads stay.
    match held_in_proc_locks(dev, ino) {
        Some(held) => Ok(held),
        None => held_flock(file),
    }
}

/// macOS: on xnu `flock` and `fcntl` locks are kept in one list per vnode
/// (bsd/kern/kern_lockf.c), and `F_GETLK` reports the first lock there that conflicts with
/// the one described and belongs to another owner (`lf_getlock` → `lf_getblock`). A holder's
/// `flock` is owned by its open file, never by our process, so a whole-file write lock asked
/// with `F_GETLK` finds it, from this process too, and nothing is taken. Only an exclusive
/// lock (`F_WRLCK`) is a holder: a checker's momentary shared `flock` ([`held_flock`]) shows
/// as `F_RDLCK` and is not mistaken for one. `F_OFD_GETLK` is no better here: xnu keeps it
/// private (not in the SDK's `<sys/fcntl.h>`).
#[cfg(target_os = "macos")]
pub(super) fn held_passive(file: &File, _dev: u64, _ino: u64) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut lock = whole_file_write_lock();
    // SAFETY: the descriptor is open and `lock` is a valid `struct flock` for the kernel to
    // fill in.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lock.l_type == libc::F_WRLCK as libc::c_short)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub(super) fn held_passive(file: &File, _dev: u64, _ino: u64) -> io::Result<bool> {
    held_flock(file)
}

/// Whether the beacon of another open file is on the file `file` opens, asked without taking
/// anything: on Linux the OFD lock [`take`] puts beside the `flock`; on macOS the `flock`
/// itself (`F_GETLK`, as in [`held_passive`]). A checker's momentary shared `flock` is not
/// one. `false` where it cannot be asked.
#[cfg(target_os = "linux")]
pub(super) fn exclusive_seen(file: &File) -> bool {
    held_ofd(file)
}

#[cfg(target_os = "macos")]
pub(super) fn exclusive_seen(file: &File) -> bool {
    held_passive(file, 0, 0).unwrap_or(false)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub(super) fn exclusive_seen(_file: &File) -> bool {
    false
}

/// Whether an OFD lock conflicting with a write lock is held on the file: asked, not taken.
#[cfg(target_os = "linux")]
fn held_ofd(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    let mut lock = whole_file_write_lock();
    // SAFETY: the descriptor is open and `lock` is a valid `struct flock` for the kernel to
    // fill in.
    let asked = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
    asked == 0 && lock.l_type != libc::F_UNLCK as libc::c_short
}

#[cfg(any(target_os = "linux", target_os = "macos"))]
fn whole_file_write_lock() -> libc::flock {
    // SAFETY: `struct flock` is plain data; all zeroes is "from offset 0 to the end", pid 0 as
    // OFD locks require.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

/// Linux: is there an exclusive `FLOCK` on this inode in `/proc/locks`?
#[cfg(target_os = "linux")]
fn held_in_proc_locks(dev: u64, ino: u64) -> Option<bool> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let wanted = format!(
        "{:02x}:{:02x}:{ino}",
        libc::major(dev as libc::dev_t),
        libc::minor(dev as libc::dev_t)
    );
    Some(locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; blocked waiters add a "->" field.
        let fields = if fields.get(1) == Some(&"->") {
            &fields[1..]
        } else {
            &fields[..]
        };
        fields.get(1) == Some(&"FLOCK")
            && fields.get(3) == Some(&"WRITE")
            && fields.get(5).is_some_and(|id| *id == wanted)
    }))
}
