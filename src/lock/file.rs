//! One lock file on hostile ground: create, inspect, reclaim, release (SPEC §2, §4, §5).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use super::dir::{LockDir, refuses_links};
use super::format::{LockPayload, MAX_LOCK_FILE_BYTES};
use crate::error::GatewayLockError;
use crate::failpoint::failpoint;

/// One published inode: the open file that carries the beacon, and what we wrote in it. On
/// Linux both lock paths of one acquisition name the same one, where the file system has hard
/// links.
#[derive(Debug)]
struct Published {
    file: File,
    contents: Vec<u8>,
    dev: u64,
    ino: u64,
    /// Whether the file still records our `ownerId`, read once at release for all its names.
    records_owner: OnceLock<bool>,
}

/// A lock file we created and hold: the open file carries the kernel beacon (`flock`).
#[derive(Debug)]
pub struct HeldFile {
    dir: Arc<LockDir>,
    name: String,
    path: PathBuf,
    inode: Arc<Published>,
}

impl HeldFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Device and inode of the file we hold.
    pub fn identity(&self) -> (u64, u64) {
        (self.inode.dev, self.inode.ino)
    }

    /// Whether the name still names the file we hold (not deleted, not replaced).
    fn still_ours(&self) -> bool {
        self.dir
            .stat(&self.name)
            .is_ok_and(|entry| (entry.dev, entry.ino) == self.identity())
    }

    /// Removes the file if it is still ours (same inode and `ownerId`), then closes it, which
    /// drops the beacon once no other name of the inode is held.
    pub fn release(self, owner_id: &str) {
        if self.still_ours() && self.inode.records_owner(owner_id) {
            let _ = self.dir.remove_file(&self.name);
        }
    }
}

impl Published {
    /// Read through our own descriptor: same inode, so the same bytes a reader of the path
    /// would see.
    fn records_owner(&self, owner_id: &str) -> bool {
        *self.records_owner.get_or_init(|| {
            use std::os::unix::fs::FileExt;
            // One byte more than we wrote tells a grown file from ours. A regular file returns
            // a short read only at its end, so one read sees it all.
            let mut bytes = vec![0u8; self.contents.len() + 1];
            let Ok(len) = self.file.read_at(&mut bytes, 0) else {
                return false;
            };
            // Unchanged since we wrote it (with `owner_id`), or rewritten but still naming it.
            bytes[..len] == self.contents[..]
                || LockPayload::parse(&bytes[..len])
                    .and_then(|p| p.owner_id)
                    .as_deref()
                    == Some(owner_id)
        })
    }
}

/// What creating a lock file led to.
pub enum Created {
    Held(HeldFile),
    /// The path exists already; judge its owner.
    Exists,
}

/// Takes the lock file `name` with our payload already in it, holding the beacon.
///
/// The file is written and locked before it has its name, then published with a link, which
/// fails if the name exists. So the path never names an empty or half-written file of ours,
/// and a SIGKILL at any step leaves nothing at the path, or a whole file whose owner is
/// provably dead: the next start reclaims it at once. (An exclusive create followed by a write
/// would leave an empty file, which may be a Node gateway mid-write and so waits out the stale
/// window.) Linux writes the file unnamed (`O_TMPFILE`); elsewhere it is a hidden temp file
/// beside the lock, removed once linked. A file system without hard links (vfat, exFAT) refuses
/// both links: there the file is created in place, as SPEC §5 words it.
pub fn create(
    dir: &Arc<LockDir>,
    name: &str,
    contents: &[u8],
    stale: Duration,
) -> Result<Created, GatewayLockError> {
    #[cfg(target_os = "linux")]
    if !dir.links_refused()
        && !crate::failpoint::force_named_temp()
        && let Some(created) = create_unnamed(dir, name, contents)?
    {
        return Ok(created);
    }
    if !dir.links_refused()
        && let Some(created) = create_via_named_temp(dir, name, contents, stale)?
    {
        return Ok(created);
    }
    create_in_place(dir, name, contents)
}

/// `Ok(None)` when this file system cannot do it; the caller falls back to a named temp file,
/// or to creating in place when the link was refused.
#[cfg(target_os = "linux")]
fn create_unnamed(
    dir: &Arc<LockDir>,
    name: &str,
    contents: &[u8],
) -> Result<Option<Created>, GatewayLockError> {
    let io_error = |source| GatewayLockError::LockIo {
        path: dir.join(name),
        source,
    };
    // Readable too: release reads the ownerId back through this descriptor.
    let mut file = match dir.create_unnamed() {
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
    let identity = write_locked(&mut file, contents).map_err(io_error)?;
    match dir.link(&file, name) {
        Ok(()) => {
            let inode = publish(file, contents, identity);
            Ok(Some(held(dir, name, inode)))
        }
        // Dropping `file` frees the unnamed inode: nothing of ours is left behind.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(Some(Created::Exists)),
        Err(e) if refuses_links(&e) => {
            dir.note_links_refused();
            Ok(None)
        }
        // No /proc to name the unnamed file by: use a named temp file instead.
        Err(e)
            if e.raw_os_error() == Some(libc::ENOENT) && !Path::new("/proc/self/fd").exists() =>
        {
            Ok(None)
        }
        Err(e) => Err(io_error(e)),
    }
}

/// Gives the file of `taken` a second name. Both locks of one acquisition carry the same
/// payload, so on Linux one inode, locked once, serves both: half the files to write, and one
/// beacon that proves both. `Ok(None)` where that cannot be done (no /proc to link through, a
/// file system without hard links); create a file instead.
pub fn create_alias(
    dir: &Arc<LockDir>,
    name: &str,
    taken: &HeldFile,
) -> Result<Option<Created>, GatewayLockError> {
    #[cfg(target_os = "linux")]
    {
        if dir.links_refused() {
            return Ok(None);
        }
        match dir.link(&taken.inode.file, name) {
            Ok(()) => Ok(Some(held(dir, name, taken.inode.clone()))),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(Some(Created::Exists)),
            Err(e) if refuses_links(&e) => {
                dir.note_links_refused();
                Ok(None)
            }
            Err(e)
                if e.raw_os_error() == Some(libc::ENOENT)
                    && !Path::new("/proc/self/fd").exists() =>
            {
                Ok(None)
            }
            Err(source) => Err(GatewayLockError::LockIo {
                path: dir.join(name),
                source,
            }),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (dir, name, taken);
        Ok(None)
    }
}

/// `Ok(None)` when the file system refuses the link; the temp file is removed all the same.
fn create_via_named_temp(
    dir: &Arc<LockDir>,
    name: &str,
    contents: &[u8],
    stale: Duration,
) -> Result<Option<Created>, GatewayLockError> {
    let io_error = |source| GatewayLockError::LockIo {
        path: dir.join(name),
        source,
    };
    sweep_abandoned_temps(dir, name, stale);
    let temp_name = temp_name_for(name);
    let mut file = dir
        .open(
            &temp_name,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )
        .map_err(io_error)?;
    let published = write_locked(&mut file, contents).and_then(|identity| {
        match dir.link_name(&temp_name, name) {
            Ok(()) => Ok(Some(identity)),
            Err(e) if refuses_links(&e) => Ok(None),
            Err(e) => Err(e),
        }
    });
    let _ = dir.remove_file(&temp_name);
    match published {
        Ok(Some(identity)) => Ok(Some(held(dir, name, publish(file, contents, identity)))),
        Ok(None) => {
            dir.note_links_refused();
            Ok(None)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Some(Created::Exists)),
        Err(e) => Err(io_error(e)),
    }
}

/// SPEC §5 word for word, for file systems without hard links (vfat, exFAT): exclusive create
/// at the lock name, beacon, payload, then a look at the name to confirm it is still our file.
///
/// Until the write, the name is an empty file, which a starter waits on (a holder may be about
/// to write it) and reclaims only once older than the stale window (SPEC §4). So a SIGKILL
/// between the create and the write makes the next start wait up to that window, which nothing
/// can avoid without links (the Node gateway takes the same risk everywhere). A SIGKILL after
/// the write leaves a whole file whose owner is provably dead: reclaimed at once.
fn create_in_place(
    dir: &Arc<LockDir>,
    name: &str,
    contents: &[u8],
) -> Result<Created, GatewayLockError> {
    let io_error = |source| GatewayLockError::LockIo {
        path: dir.join(name),
        source,
    };
    // Readable too: release reads the ownerId back through this descriptor.
    let mut file = match dir.open(name, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o600) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Created::Exists),
        Err(e) => return Err(io_error(e)),
    };
    let names_ours = |identity: (u64, u64)| {
        dir.stat(name)
            .map(|entry| (entry.dev, entry.ino) == identity)
    };
    let identity = match write_locked(&mut file, contents) {
        Ok(identity) => identity,
        Err(e) => {
            // An empty or partial file of ours left at the name would hold every start off for
            // the stale window.
            if file
                .metadata()
                .is_ok_and(|meta| names_ours((meta.dev(), meta.ino())).unwrap_or(false))
            {
                let _ = dir.remove_file(name);
            }
            return Err(io_error(e));
        }
    };
    // Nobody removes a file whose beacon is held, and we hold ours now; before we took it, a
    // reclaimer may have removed the file (and someone else created one). Then it is not ours:
    // judge whatever is there.
    match names_ours(identity) {
        Ok(true) => Ok(held(dir, name, publish(file, contents, identity))),
        Ok(false) => Ok(Created::Exists),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Created::Exists),
        Err(e) => Err(io_error(e)),
    }
}

/// Makes a freshly created `file` private, takes its beacon and writes `contents` in one
/// `write`. Returns the file's device and inode.
fn write_locked(file: &mut File, contents: &[u8]) -> io::Result<(u64, u64)> {
    let identity = make_private(file)?;
    failpoint("after-create");
    take_beacon(file)?;
    failpoint("after-beacon");
    file.write_all(contents)?;
    failpoint("after-write");
    Ok(identity)
}

/// `.<lock name>.<pid>.<random>.tmp`: hidden, and never a lock name.
fn temp_name_for(name: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!(".{name}.{}.{}.tmp", std::process::id(), &suffix[..8])
}

/// Removes temp files of this lock name left by a process killed while publishing: only with
/// no beacon, and only once older than the stale window (a live writer's file is younger, and
/// holds its beacon from its first instant but one).
fn sweep_abandoned_temps(dir: &LockDir, name: &str, stale: Duration) {
    let prefix = format!(".{name}.");
    let Ok(names) = dir.names() else {
        return;
    };
    for temp in names {
        if !(temp.starts_with(&prefix) && temp.ends_with(".tmp")) {
            continue;
        }
        if let Ok(Some(observed)) = inspect(dir, &temp, BeaconProbe::Flock) {
            let age = SystemTime::now()
                .duration_since(observed.modified)
                .unwrap_or(Duration::ZERO);
            if !observed.beacon_held && age > stale {
                let _ = dir.remove_file(&temp);
            }
        }
    }
}

/// 0600 whatever the umask: created with 0600, so only a umask that took bits away needs fixing.
/// Returns the file's device and inode, which the same `fstat` gives.
///
/// A file system without Unix modes (vfat, exFAT) gives every file the mode its mount options
/// say, and may refuse to change it (the kernel drivers say `EPERM`; exfat-fuse says yes and
/// changes nothing). A refusal is no error when the file already leaves group and others no
/// bits; otherwise it is, though the lock dir around it (ours, 0700, checked) keeps others out
/// either way.
fn make_private(file: &File) -> io::Result<(u64, u64)> {
    let meta = file.metadata()?;
    let mode = meta.permissions().mode() & 0o777;
    if mode != 0o600 {
        match file.set_permissions(std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(_) if mode & 0o077 == 0 => {}
            Err(e) => return Err(e),
        }
    }
    Ok((meta.dev(), meta.ino()))
}

fn publish(file: File, contents: &[u8], (dev, ino): (u64, u64)) -> Arc<Published> {
    Arc::new(Published {
        file,
        contents: contents.to_vec(),
        dev,
        ino,
        records_owner: OnceLock::new(),
    })
}

/// The file we just linked (or created and confirmed) at `name`. The link succeeding is the
/// confirmation SPEC §5 asks for: `linkat` fails if the name exists, so at that instant the name
/// was our inode, whole and locked, and nobody reclaims a file whose beacon is held.
fn held(dir: &Arc<LockDir>, name: &str, inode: Arc<Published>) -> Created {
    Created::Held(HeldFile {
        dir: dir.clone(),
        name: name.to_owned(),
        path: dir.join(name),
        inode,
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
    /// For `status`, taking nothing: test for the holder's OFD lock (`F_OFD_GETLK`), then look
    /// its `flock` up in `/proc/locks`; only where that file cannot be read (not Linux), fall
    /// back to [`BeaconProbe::Flock`].
    Passive,
}

/// Reads the lock file `name` without following links or blocking on FIFOs. `Ok(None)`: it is
/// gone.
pub fn inspect(
    dir: &LockDir,
    name: &str,
    probe: BeaconProbe,
) -> Result<Option<Observed>, GatewayLockError> {
    let path = || dir.join(name);
    let file = match dir.open(name, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(GatewayLockError::UnsafeLockFile {
                path: path(),
                problem: "it is a symbolic link".into(),
            });
        }
        Err(source) => {
            return Err(GatewayLockError::LockIo {
                path: path(),
                source,
            });
        }
    };
    let io_error = |source| GatewayLockError::LockIo {
        path: path(),
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
            path: path(),
            problem: kind.into(),
        });
    }
    let bytes = read_capped(&file).map_err(io_error)?;
    let beacon_held = match probe {
        BeaconProbe::Flock => beacon_held_flock(&file).map_err(io_error)?,
        // A holder of ours also has an OFD lock, which can be tested without taking anything
        // and is seen from any PID namespace; `/proc/locks` shows a holder that has only the
        // `flock` (unless it is outside our PID namespace).
        BeaconProbe::Passive if beacon_held_ofd(&file) => true,
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

fn read_capped(file: &File) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(MAX_LOCK_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The beacon: an exclusive `flock` for the whole life of the file (SPEC §4), and on Linux an
/// exclusive OFD lock beside it, which `status` can test for without taking a lock. Both belong
/// to the open file, so they go together when it is closed, however the process ends.
fn take_beacon(file: &File) -> io::Result<()> {
    flock(file, libc::LOCK_EX)?;
    #[cfg(target_os = "linux")]
    {
        let mut lock = whole_file_write_lock();
        // Best effort: it only helps `status` see us from another PID namespace, and nobody
        // else can hold a lock on a file we have just created. Kernels before 3.15 lack it.
        // SAFETY: the descriptor is open and `lock` is a valid `struct flock`.
        let _ = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
    }
    Ok(())
}

/// Whether an OFD lock conflicting with a write lock is held on the file: asked, not taken.
#[cfg(target_os = "linux")]
fn beacon_held_ofd(file: &File) -> bool {
    let mut lock = whole_file_write_lock();
    // SAFETY: the descriptor is open and `lock` is a valid `struct flock` for the kernel to
    // fill in.
    let asked = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
    asked == 0 && lock.l_type != libc::F_UNLCK as libc::c_short
}

#[cfg(not(target_os = "linux"))]
fn beacon_held_ofd(_file: &File) -> bool {
    false
}

#[cfg(target_os = "linux")]
fn whole_file_write_lock() -> libc::flock {
    // SAFETY: `struct flock` is plain data; all zeroes is "from offset 0 to the end", pid 0 as
    // OFD locks require.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
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
    dir: &LockDir,
    name: &str,
    judged: &Observed,
    stale: Duration,
) -> Result<Reclaim, GatewayLockError> {
    let guard_name = format!("{name}.reclaim");
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
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Reclaim::Done),
            Err(source) => Err(GatewayLockError::LockIo {
                path: dir.join(name),
                source,
            }),
        },
        // Gone, or replaced by a new owner: judge again.
        Ok(_) => Ok(Reclaim::Done),
        Err(e) => Err(e),
    }
}

/// A guard left by a reclaimer that died, or older than the stale window, is removed (OpenClaw
/// fails closed here, which wedged restarts). The guard may be a file or (OpenClaw) a directory.
fn clear_abandoned_guard(
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
                    || observed
                        .payload
                        .as_ref()
                        .is_some_and(|p| !super::liveness::pid_is_running(p.pid)))
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
