//! One lock file on hostile ground: create, inspect, reclaim, release (SPEC §2, §4, §5).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::format::{LockPayload, MAX_LOCK_FILE_BYTES};
use crate::error::GatewayLockError;
use crate::failpoint::failpoint;
use crate::paths::current_uid;

/// Creates the lock dir (mode 0700; parents with the default mode) and checks that it is a real
/// directory, ours, with no group or other permission bits. Never changes what it finds.
pub fn prepare_lock_dir(dir: &Path) -> Result<(), GatewayLockError> {
    match check_lock_dir(dir) {
        Err(GatewayLockError::LockIo { source, .. })
            if source.kind() == io::ErrorKind::NotFound => {}
        checked => return checked,
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|source| GatewayLockError::LockIo {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        // Created by a concurrent starter: check it like any other.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(GatewayLockError::LockIo {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    check_lock_dir(dir)
}

/// The checks of [`prepare_lock_dir`] without creating anything.
pub fn check_lock_dir(dir: &Path) -> Result<(), GatewayLockError> {
    let uid = current_uid();
    let unsafe_dir = |problem: String| GatewayLockError::UnsafeLockDir {
        path: dir.to_path_buf(),
        problem,
        uid,
    };
    let meta = std::fs::symlink_metadata(dir).map_err(|source| GatewayLockError::LockIo {
        path: dir.to_path_buf(),
        source,
    })?;
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir("it is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir("it is not a directory".into()));
    }
    if meta.uid() != uid {
        return Err(unsafe_dir(format!("it is owned by uid {}", meta.uid())));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(unsafe_dir(format!(
            "its mode is {mode:04o}, open to group or others"
        )));
    }
    Ok(())
}

/// A lock file we created and hold: the open file carries the kernel beacon (`flock`).
#[derive(Debug)]
pub struct HeldFile {
    path: PathBuf,
    file: File,
    /// What we wrote: release compares it with what the file holds now.
    contents: Vec<u8>,
    dev: u64,
    ino: u64,
}

impl HeldFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Device and inode of the file we hold.
    pub fn identity(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// Whether the path still names the file we hold (not deleted, not replaced).
    pub fn still_ours(&self) -> bool {
        std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| meta.dev() == self.dev && meta.ino() == self.ino)
    }

    /// Removes the file if it is still ours (same inode and `ownerId`), then closes it, which
    /// drops the beacon. The file is read through our own descriptor: same inode, so the same
    /// bytes a reader of the path would see.
    pub fn release(self, owner_id: &str) {
        if self.still_ours() && self.records_owner(owner_id) {
            let _ = std::fs::remove_file(&self.path);
        }
        drop(self.file);
    }

    fn records_owner(&self, owner_id: &str) -> bool {
        use std::os::unix::fs::FileExt;
        // One byte more than we wrote tells a grown file from ours. A regular file returns a
        // short read only at its end, so one read sees it all.
        let mut bytes = vec![0u8; self.contents.len() + 1];
        let len = match self.file.read_at(&mut bytes, 0) {
            Ok(len) => len,
            Err(_) => return false,
        };
        // Unchanged since we wrote it (with `owner_id`), or rewritten but still naming it.
        bytes[..len] == self.contents[..]
            || LockPayload::parse(&bytes[..len])
                .and_then(|p| p.owner_id)
                .as_deref()
                == Some(owner_id)
    }
}

/// What creating a lock file led to.
pub enum Created {
    Held(HeldFile),
    /// The path exists already; judge its owner.
    Exists,
}

/// Takes the lock path with our payload already in it, holding the beacon.
///
/// The file is written and locked before it has its name, then published with a link, which
/// fails if the path exists. So the path never names an empty or half-written file of ours,
/// and a SIGKILL at any step leaves nothing at the path, or a whole file whose owner is
/// provably dead: the next start reclaims it at once. (An exclusive create followed by a write
/// would leave an empty file, which may be a Node gateway mid-write and so waits out the stale
/// window.) Linux writes the file unnamed (`O_TMPFILE`); elsewhere it is a hidden temp file
/// beside the lock, removed once linked.
pub fn create(path: &Path, contents: &[u8], stale: Duration) -> Result<Created, GatewayLockError> {
    #[cfg(target_os = "linux")]
    if !crate::failpoint::force_named_temp() {
        if let Some(created) = create_unnamed(path, contents)? {
            return Ok(created);
        }
    }
    create_via_named_temp(path, contents, stale)
}

/// `Ok(None)` when this file system cannot do it; the caller falls back to a named temp file.
#[cfg(target_os = "linux")]
fn create_unnamed(path: &Path, contents: &[u8]) -> Result<Option<Created>, GatewayLockError> {
    let io_error = |source| GatewayLockError::LockIo {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    // Readable too: release reads the ownerId back through this descriptor.
    let mut file = match OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir)
    {
        Ok(file) => file,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(io_error(e)),
    };
    let identity = make_private(&file).map_err(io_error)?;
    failpoint("after-create");
    flock(&file, libc::LOCK_EX).map_err(io_error)?;
    failpoint("after-beacon");
    file.write_all(contents).map_err(io_error)?;
    failpoint("after-write");
    match link_descriptor(&file, path) {
        Ok(()) => Ok(Some(held(path, file, contents, identity))),
        // Dropping `file` frees the unnamed inode: nothing of ours is left behind.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(Some(Created::Exists)),
        // No /proc to name the unnamed file by: use a named temp file instead.
        Err(e)
            if e.raw_os_error() == Some(libc::ENOENT) && !Path::new("/proc/self/fd").exists() =>
        {
            Ok(None)
        }
        Err(e) => Err(io_error(e)),
    }
}

/// Gives the file of `taken` a second lock path. Both locks of one acquisition carry the same
/// payload, so on Linux one inode, locked once, serves both: half the files to write, and one
/// beacon that proves both. `Ok(None)` where that cannot be done; create a file instead.
pub fn create_alias(path: &Path, taken: &HeldFile) -> Result<Option<Created>, GatewayLockError> {
    #[cfg(target_os = "linux")]
    {
        let io_error = |source| GatewayLockError::LockIo {
            path: path.to_path_buf(),
            source,
        };
        // A duplicate descriptor shares the open file description, and so the `flock`.
        let file = taken.file.try_clone().map_err(io_error)?;
        match link_descriptor(&file, path) {
            Ok(()) => Ok(Some(held(path, file, &taken.contents, taken.identity()))),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(Some(Created::Exists)),
            Err(e)
                if e.raw_os_error() == Some(libc::ENOENT)
                    && !Path::new("/proc/self/fd").exists() =>
            {
                Ok(None)
            }
            Err(e) => Err(io_error(e)),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (path, taken);
        Ok(None)
    }
}

/// `linkat` of an open file (named or not) to `path`, through `/proc/self/fd`; fails with
/// `EEXIST` if the path exists, whatever it is.
#[cfg(target_os = "linux")]
fn link_descriptor(file: &File, path: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    let source = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .expect("a formatted fd path has no NUL");
    let target = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the lock path contains a NUL byte",
        )
    })?;
    // SAFETY: both paths are valid NUL-terminated strings for the duration of the call.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            source.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if linked == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn create_via_named_temp(
    path: &Path,
    contents: &[u8],
    stale: Duration,
) -> Result<Created, GatewayLockError> {
    let io_error = |source| GatewayLockError::LockIo {
        path: path.to_path_buf(),
        source,
    };
    sweep_abandoned_temps(path, stale);
    let temp_path = temp_path_for(path);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&temp_path)
        .map_err(io_error)?;
    let published = (|| {
        let identity = make_private(&file)?;
        failpoint("after-create");
        flock(&file, libc::LOCK_EX)?;
        failpoint("after-beacon");
        file.write_all(contents)?;
        failpoint("after-write");
        std::fs::hard_link(&temp_path, path).map(|()| identity)
    })();
    let _ = std::fs::remove_file(&temp_path);
    match published {
        Ok(identity) => Ok(held(path, file, contents, identity)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Created::Exists),
        Err(e) => Err(io_error(e)),
    }
}

/// `.<lock name>.<pid>.<random>.tmp` beside the lock: hidden, and never a lock name.
fn temp_path_for(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        &suffix[..8]
    ))
}

/// Removes temp files of this lock path left by a process killed while publishing: only with
/// no beacon, and only once older than the stale window (a live writer's file is younger, and
/// holds its beacon from its first instant but one).
fn sweep_abandoned_temps(path: &Path, stale: Duration) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let entry_name = entry.file_name();
        let entry_name = entry_name.to_string_lossy();
        if !(entry_name.starts_with(&prefix) && entry_name.ends_with(".tmp")) {
            continue;
        }
        let temp = entry.path();
        if let Ok(Some(observed)) = inspect(&temp, BeaconProbe::Flock) {
            let age = SystemTime::now()
                .duration_since(observed.modified)
                .unwrap_or(Duration::ZERO);
            if !observed.beacon_held && age > stale {
                let _ = std::fs::remove_file(&temp);
            }
        }
    }
}

/// 0600 whatever the umask: created with 0600, so only a umask that took bits away needs fixing.
/// Returns the file's device and inode, which the same `fstat` gives.
fn make_private(file: &File) -> io::Result<(u64, u64)> {
    let meta = file.metadata()?;
    if meta.permissions().mode() & 0o777 != 0o600 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok((meta.dev(), meta.ino()))
}

/// The file we just linked at `path`. The link succeeding is the confirmation SPEC §5 asks for:
/// `linkat` fails if the path exists, so at that instant the path named our inode, whole and
/// locked, and nobody reclaims a file whose beacon is held.
fn held(path: &Path, file: File, contents: &[u8], (dev, ino): (u64, u64)) -> Created {
    Created::Held(HeldFile {
        path: path.to_path_buf(),
        file,
        contents: contents.to_vec(),
        dev,
        ino,
    })
}

/// A lock file as a checker saw it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub bytes: Vec<u8>,
    pub dev: u64,
    pub ino: u64,
    pub modified: SystemTime,
    /// A holder of ours has the `flock`: the owner is alive, certainly.
    pub beacon_held: bool,
    pub payload: Option<LockPayload>,
}

impl Observed {
    /// How old the file says it is: `createdAt` when readable, else its mtime.
    pub fn age(&self) -> Duration {
        let created = self
            .payload
            .as_ref()
            .and_then(LockPayload::created_at_time)
            .or_else(|| created_at_without_payload(&self.bytes))
            .unwrap_or(self.modified);
        SystemTime::now()
            .duration_since(created)
            .unwrap_or(Duration::ZERO)
    }

    fn same_file(&self, other: &Observed) -> bool {
        self.dev == other.dev && self.ino == other.ino && self.bytes == other.bytes
    }
}

fn created_at_without_payload(bytes: &[u8]) -> Option<SystemTime> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    humantime::parse_rfc3339_weak(value.get("createdAt")?.as_str()?).ok()
}

/// How a checker tells whether a holder of ours is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeaconProbe {
    /// Try a shared `flock` and drop it at once (acquire, reclaim).
    Flock,
    /// Look the lock up in `/proc/locks` without taking anything (status), falling back to
    /// [`BeaconProbe::Flock`] where that file cannot be read.
    Passive,
}

/// Reads a lock file without following links or blocking on FIFOs. `Ok(None)`: it is gone.
pub fn inspect(path: &Path, probe: BeaconProbe) -> Result<Option<Observed>, GatewayLockError> {
    let file = match open_existing(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(GatewayLockError::UnsafeLockFile {
                path: path.to_path_buf(),
                problem: "it is a symbolic link".into(),
            });
        }
        Err(source) => {
            return Err(GatewayLockError::LockIo {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let io_error = |source| GatewayLockError::LockIo {
        path: path.to_path_buf(),
        source,
    };
    let meta = file.metadata().map_err(io_error)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "it is a directory"
        } else if meta.file_type().is_fifo() {
            "it is a FIFO"
        } else {
            "it is not a regular file"
        };
        return Err(GatewayLockError::UnsafeLockFile {
            path: path.to_path_buf(),
            problem: kind.into(),
        });
    }
    let bytes = read_capped(&file).map_err(io_error)?;
    let beacon_held = match probe {
        BeaconProbe::Flock => beacon_held_flock(&file).map_err(io_error)?,
        BeaconProbe::Passive => match beacon_held_proc_locks(meta.dev(), meta.ino()) {
            Some(held) => held,
            None => beacon_held_flock(&file).map_err(io_error)?,
        },
    };
    Ok(Some(Observed {
        payload: LockPayload::parse(&bytes),
        bytes,
        dev: meta.dev(),
        ino: meta.ino(),
        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        beacon_held,
    }))
}

fn open_existing(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
}

fn read_capped(file: &File) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(MAX_LOCK_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn beacon_held_flock(file: &File) -> io::Result<bool> {
    match flock(file, libc::LOCK_SH | libc::LOCK_NB) {
        Ok(()) => {
            flock(file, libc::LOCK_UN)?;
            Ok(false)
        }
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Linux: is there an exclusive `FLOCK` on this inode in `/proc/locks`?
#[cfg(target_os = "linux")]
fn beacon_held_proc_locks(dev: u64, ino: u64) -> Option<bool> {
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

#[cfg(not(target_os = "linux"))]
fn beacon_held_proc_locks(_dev: u64, _ino: u64) -> Option<bool> {
    None
}

fn flock(file: &File, operation: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: the descriptor is open for the lifetime of `file`.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// What a reclaim attempt did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reclaim {
    /// The judged file is gone (we removed it, or someone else did): create again at once.
    Done,
    /// Another reclaimer holds the guard: wait a poll interval.
    Busy,
}

/// Removes a lock file judged dead, safely against concurrent reclaimers of either
/// implementation: take `<lock>.reclaim` exclusively, re-read, unlink only if bytes and inode
/// are unchanged and no beacon is held, remove the guard.
pub fn reclaim(
    path: &Path,
    judged: &Observed,
    stale: Duration,
) -> Result<Reclaim, GatewayLockError> {
    let guard_path = guard_path(path);
    let io_error = |source| GatewayLockError::LockIo {
        path: guard_path.clone(),
        source,
    };
    let guard = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&guard_path)
    {
        Ok(guard) => guard,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            clear_abandoned_guard(&guard_path, stale)?;
            return Ok(Reclaim::Busy);
        }
        Err(e) => return Err(io_error(e)),
    };
    let outcome = hold_guard(&guard)
        .map_err(io_error)
        .and_then(|()| remove_if_unchanged(path, judged));
    // Removed on every path: a guard left by a live process would block every reclaimer for
    // the whole stale window.
    let _ = std::fs::remove_file(&guard_path);
    outcome
}

/// The guard carries our beacon and pid, so others can tell an abandoned one.
fn hold_guard(guard: &File) -> io::Result<()> {
    flock(guard, libc::LOCK_EX)?;
    let payload = format!(
        "{{\"pid\":{},\"createdAt\":\"{}\"}}\n",
        std::process::id(),
        super::format::timestamp_now()
    );
    (&*guard).write_all(payload.as_bytes())
}

/// Under the guard: unlinks `path` only if its bytes and inode are what was judged dead and no
/// beacon is held on it now.
fn remove_if_unchanged(path: &Path, judged: &Observed) -> Result<Reclaim, GatewayLockError> {
    match inspect(path, BeaconProbe::Flock) {
        Ok(Some(now)) if now.same_file(judged) && !now.beacon_held => {
            match std::fs::remove_file(path) {
                Ok(()) => Ok(Reclaim::Done),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Reclaim::Done),
                Err(source) => Err(GatewayLockError::LockIo {
                    path: path.to_path_buf(),
                    source,
                }),
            }
        }
        // Gone, or replaced by a new owner: judge again.
        Ok(_) => Ok(Reclaim::Done),
        Err(e) => Err(e),
    }
}

/// A guard left by a reclaimer that died, or older than the stale window, is removed (OpenClaw
/// fails closed here, which wedged restarts). The guard may be a file or (OpenClaw) a directory.
fn clear_abandoned_guard(guard_path: &Path, stale: Duration) -> Result<(), GatewayLockError> {
    let Ok(meta) = std::fs::symlink_metadata(guard_path) else {
        return Ok(());
    };
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or(Duration::ZERO);
    if meta.is_dir() {
        if age > stale {
            let _ = std::fs::remove_dir(guard_path);
        }
        return Ok(());
    }
    let abandoned = match inspect(guard_path, BeaconProbe::Flock) {
        Ok(Some(observed)) => {
            !observed.beacon_held
                && (age > stale
                    || observed
                        .payload
                        .as_ref()
                        .is_some_and(|p| !super::liveness::pid_is_running(p.pid)))
        }
        // Gone already, or not a regular file (refused elsewhere): nothing to clear.
        _ => false,
    };
    let unchanged = std::fs::symlink_metadata(guard_path)
        .is_ok_and(|now| now.dev() == meta.dev() && now.ino() == meta.ino());
    if abandoned && unchanged {
        let _ = std::fs::remove_file(guard_path);
    }
    Ok(())
}

fn guard_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".reclaim");
    PathBuf::from(name)
}
