//! Creates a lock file whole and locked, gives it its name, and releases it only while it is
//! still ours (SPEC §2, §5).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::beacon;
use super::dir::{LockDir, refuses_links};
use super::format::LockPayload;
use super::inspect::{BeaconProbe, inspect};
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
    /// Our file had the name, but a reclaim guard (at this path) stayed beside it, so the name
    /// could not be confirmed ours and was given up: try again after a poll interval, until
    /// the lock timeout.
    GuardStays(PathBuf),
}

/// Takes the lock file `name` with our payload already in it, holding the beacon.
///
/// The file is written and locked before it has its name, then published with a link, which
/// fails if the name exists. So the path never names an empty or half-written file of ours,
/// and a SIGKILL at any step leaves nothing at the path, or a whole file whose owner is
/// provably dead: the next start reclaims it at once. (An exclusive create followed by a write
/// would leave an empty file, which may be a Node gateway mid-write and so waits out the stale
/// window.) Linux writes the file unnamed (`O_TMPFILE`); elsewhere, and on file systems without
/// it (NFS, FUSE), it is a hidden temp file beside the lock, removed once linked. A file system
/// without hard links (vfat, exFAT) refuses both links: there the file is created in place, as
/// SPEC §5 words it.
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
        // Where names lock apart, a second name would need a beacon of its own anyway.
        if dir.links_refused() || dir.names_lock_apart() {
            return Ok(None);
        }
        match dir.link(&taken.inode.file, name) {
            Ok(()) => Ok(Some(held(dir, name, taken.inode.clone()))),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(Some(Created::Exists)),
            Err(e) if refuses_links(&e) => {
                dir.note_links_refused();
                Ok(None)
            }
            // No /proc to link through, or a file system that cannot find a file by its
            // descriptor once its first name is gone (a path-based FUSE server answers for
            // `/proc/self/fd/N` with the name it no longer has).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
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
    let mut temp = dir
        .open(
            &temp_name,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )
        .map_err(io_error)?;
    let published = match write_locked(&mut temp, contents) {
        Ok(identity) => match dir.link_name(&temp_name, name) {
            Ok(()) => {
                failpoint("after-link");
                beacon_for_name(dir, name, contents, temp, identity, stale)
            }
            Err(e) if refuses_links(&e) => Ok(Named::LinkRefused),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    // The temp file is closed by now unless it carries the beacon of `name`: a path-based
    // FUSE server keeps an open file it is asked to unlink as `.fuse_hidden…` until it is
    // closed.
    let _ = dir.remove_file(&temp_name);
    match published {
        Ok(Named::Ours(file, identity)) => {
            Ok(Some(held(dir, name, publish(file, contents, identity))))
        }
        Ok(Named::Lost) => Ok(Some(Created::Exists)),
        Ok(Named::GuardStays) => Ok(Some(Created::GuardStays(
            dir.join(&super::reclaim::guard_name(name)),
        ))),
        Ok(Named::LinkRefused) => {
            dir.note_links_refused();
            Ok(None)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Some(Created::Exists)),
        Err(e) => Err(io_error(e)),
    }
}

/// What giving our named temp the lock's name came to.
enum Named {
    /// The name is ours: the file that carries its beacon, with its device and inode.
    Ours(File, (u64, u64)),
    /// The name turned out not to be ours any more.
    Lost,
    /// A reclaim guard stayed beside the name: ours is given up for now.
    GuardStays,
    /// The file system refuses hard links.
    LinkRefused,
}

/// The open file whose beacon guards `name`, just linked to our `temp` (locked and written),
/// with its device and inode; or why not.
///
/// Most file systems give the name the temp's inode, whose beacon we hold. A path-based FUSE
/// server (bindfs, sshfs: libfuse's high-level API) gives the kernel an inode per name, and
/// `flock` goes by the kernel's inode: a checker opening `name` would find no beacon, and a
/// second acquisition in this process would reclaim a live lock as its own dead one (SPEC §4).
/// There `name` is opened and locked itself, and the temp is let go.
///
/// Until then `name` shows our payload without a beacon. A checker in our PID namespace judges
/// it by our pid, alive; one in this process or another PID namespace may find it dead and
/// reclaim it. A reclaimer removes a file only under the `<name>.reclaim` guard and only with
/// no beacon on it, so once ours is taken and no guard is left, none that judged too early can
/// still remove it: the name is then confirmed ours (SPEC §5's last step).
fn beacon_for_name(
    dir: &LockDir,
    name: &str,
    contents: &[u8],
    temp: File,
    temp_identity: (u64, u64),
    stale: Duration,
) -> io::Result<Named> {
    let named = match dir.open(name, libc::O_RDWR, 0) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Named::Lost),
        Err(e) => return Err(e),
    };
    // Our payload (its owner id and token are ours alone), or another owner's file by now.
    if !holds_exactly(&named, contents)? {
        return Ok(Named::Lost);
    }
    if !locks_apart(&named)? {
        let meta = named.metadata()?;
        return Ok(if (meta.dev(), meta.ino()) == temp_identity {
            Named::Ours(temp, temp_identity)
        } else {
            Named::Lost
        });
    }
    dir.note_names_lock_apart();
    drop(temp);
    // The `flock` is ours already; this adds the OFD lock that `status` looks for.
    beacon::take(&named)?;
    failpoint("after-name-beacon");
    let meta = named.metadata()?;
    let identity = (meta.dev(), meta.ino());
    let names_ours = || {
        dir.stat(name)
            .map(|entry| (entry.dev, entry.ino) == identity)
    };
    if !reclaimers_gone(dir, name, stale) {
        // Ours, with our beacon on it: nobody else removes it. Given up, so the acquire loop
        // looks again after a poll interval (a reclaimer of another host holds its guard until
        // the stale window clears it) rather than failing the start.
        if names_ours().unwrap_or(false) {
            let _ = dir.remove_file(name);
        }
        return Ok(Named::GuardStays);
    }
    match names_ours() {
        Ok(true) => Ok(Named::Ours(named, identity)),
        Ok(false) => Ok(Named::Lost),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Named::Lost),
        Err(e) => Err(e),
    }
}

/// How long a reclaim guard may stay before [`beacon_for_name`] gives up on the name for one
/// round of the acquire loop. A live reclaimer holds it for an instant; one that died leaves it
/// to be cleared (SPEC §4).
const RECLAIMER_WAIT: Duration = Duration::from_secs(2);

/// Whether `named`, opened by the name just linked to our locked temp, is a file of its own to
/// `flock`. Taking its `flock` answers: where it is the temp's inode our own beacon is in the
/// way, and the lock of ours beside it says so ([`beacon::exclusive_seen`]); else the lock is
/// taken, and kept. A checker's momentary shared `flock` can be in the way too: it is waited
/// out. Where the lock beside the beacon cannot be seen, one still in the way after that wait
/// is our own.
fn locks_apart(named: &File) -> io::Result<bool> {
    for _ in 0..CHECKER_WAIT_STEPS {
        match named.try_lock() {
            Ok(()) => return Ok(true),
            Err(std::fs::TryLockError::WouldBlock) if beacon::exclusive_seen(named) => {
                return Ok(false);
            }
            Err(std::fs::TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(1)),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
    Ok(false)
}

/// Sleeps of 1 ms while a checker's shared `flock` is in the way of ours.
const CHECKER_WAIT_STEPS: u32 = 50;

/// Whether `file` holds exactly `contents`.
fn holds_exactly(file: &File, contents: &[u8]) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    // One byte more tells a longer file; a regular file reads short only at its end.
    let mut bytes = vec![0u8; contents.len() + 1];
    let len = file.read_at(&mut bytes, 0)?;
    Ok(bytes[..len] == *contents)
}

/// Waits until no reclaim guard of `name` is left, clearing one a dead reclaimer left behind;
/// `false` when one is still there after [`RECLAIMER_WAIT`].
fn reclaimers_gone(dir: &LockDir, name: &str, stale: Duration) -> bool {
    let guard = super::reclaim::guard_name(name);
    let deadline = Instant::now() + RECLAIMER_WAIT;
    loop {
        if matches!(dir.stat(&guard), Err(e) if e.kind() == io::ErrorKind::NotFound) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        let _ = super::reclaim::clear_abandoned_guard(dir, &guard, stale);
        std::thread::sleep(Duration::from_millis(1));
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
    beacon::take(file)?;
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
