//! The lock dir as an open directory: checked once, then every lock-file operation is relative
//! to it (SPEC §2).
//!
//! Working through one descriptor closes the gap between checking the directory and using it
//! (nobody can swap in a symlink after the check), and the kernel walks the directory's path
//! once per acquisition instead of once per operation. Two things still go by path: listing
//! the names (each is then opened through the descriptor and checked), and the periodic
//! re-check of a held lock, which is how a lock dir moved or replaced under us is noticed.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::error::GatewayLockError;
use crate::paths::current_uid;

/// The checked lock dir, open.
#[derive(Debug)]
pub struct LockDir {
    path: PathBuf,
    fd: File,
    /// A link here was refused by the file system (vfat, exFAT): lock files are created in
    /// place from then on, not written first to a temp file that cannot be linked.
    links_refused: AtomicBool,
    /// A name linked here is a file of its own to `flock` (a path-based FUSE server: bindfs,
    /// sshfs): each lock file is then published on its own, with its own beacon.
    names_lock_apart: AtomicBool,
}

/// What `lstat` says of one name in the lock dir.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub dev: u64,
    pub ino: u64,
    pub is_dir: bool,
    pub modified: SystemTime,
}

impl LockDir {
    /// Creates the lock dir if it is missing (mode 0700; parents with the default mode), opens
    /// it and checks it. Never changes what it finds.
    pub fn prepare(path: &Path) -> Result<Self, GatewayLockError> {
        match Self::open_checked(path) {
            Err(GatewayLockError::LockIo { source, .. })
                if source.kind() == io::ErrorKind::NotFound => {}
            opened => return opened,
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| GatewayLockError::LockIo {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            // Created by a concurrent starter: check it like any other.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(GatewayLockError::LockIo {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        Self::open_checked(path)
    }

    /// Opens and checks an existing lock dir without creating anything; `Ok(None)` when there
    /// is none.
    pub fn open_existing(path: &Path) -> Result<Option<Self>, GatewayLockError> {
        match Self::open_checked(path) {
            Ok(dir) => Ok(Some(dir)),
            Err(GatewayLockError::LockIo { source, .. })
                if source.kind() == io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Opens the directory itself, never a symlink to one, and checks that it is ours with no
    /// group or other permission bits. The checks are made on what was opened.
    fn open_checked(path: &Path) -> Result<Self, GatewayLockError> {
        let io_error = |source| GatewayLockError::LockIo {
            path: path.to_path_buf(),
            source,
        };
        let c_path = c_path(path).map_err(io_error)?;
        // Linux opens it as a place (`O_PATH`), which needs no read permission on it: a
        // directory of another uid is then refused for what it is, not with EACCES.
        #[cfg(target_os = "linux")]
        let access = libc::O_PATH;
        #[cfg(not(target_os = "linux"))]
        let access = libc::O_RDONLY;
        // SAFETY: `c_path` is a valid NUL-terminated string for the duration of the call.
        let fd = unsafe {
            libc::open(
                c_path.as_ptr(),
                access | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            // A symlink or a file where the directory should be (ELOOP, ENOTDIR), or one we
            // may not open: say what is wrong with it, if something is.
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                check_lock_dir(path, &meta)?;
            }
            return Err(io_error(err));
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let fd = unsafe { File::from_raw_fd(fd) };
        check_lock_dir(path, &fd.metadata().map_err(io_error)?)?;
        Ok(Self {
            path: path.to_path_buf(),
            fd,
            links_refused: AtomicBool::new(false),
            names_lock_apart: AtomicBool::new(false),
        })
    }

    /// The path of `name` in this directory, for messages and for readers that want a path.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens `name` here, never following a symlink; `flags` adds to `O_NOFOLLOW | O_CLOEXEC`.
    pub fn open(&self, name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<File> {
        let name = c_name(name)?;
        self.open_c(&name, flags | libc::O_NOFOLLOW | libc::O_CLOEXEC, mode)
    }

    /// A new unnamed regular file here (`O_TMPFILE`), readable and writable, mode 0600 less the
    /// umask. It can be given names with [`link`](Self::link).
    #[cfg(target_os = "linux")]
    pub fn create_unnamed(&self) -> io::Result<File> {
        self.open_c(
            c".",
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o600,
        )
    }

    fn open_c(
        &self,
        name: &std::ffi::CStr,
        flags: libc::c_int,
        mode: libc::mode_t,
    ) -> io::Result<File> {
        loop {
            // SAFETY: the directory descriptor is open for the lifetime of `self` and `name` is
            // NUL-terminated; the mode is passed as the variadic `unsigned int` openat expects.
            let fd = unsafe {
                libc::openat(
                    self.fd.as_raw_fd(),
                    name.as_ptr(),
                    flags,
                    libc::c_uint::from(mode),
                )
            };
            if fd >= 0 {
                // SAFETY: `fd` was just opened and is owned by nobody else.
                return Ok(unsafe { File::from_raw_fd(fd) });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Gives the open `file` (named or not) the name `name` here; fails with `EEXIST` if the
    /// name exists, whatever it is.
    #[cfg(target_os = "linux")]
    pub fn link(&self, file: &File, name: &str) -> io::Result<()> {
        // Kernels before 6.10 allow `AT_EMPTY_PATH` only with CAP_DAC_READ_SEARCH; the same
        // link through `/proc/self/fd` works for everyone who has /proc.
        static EMPTY_PATH_REFUSED: AtomicBool = AtomicBool::new(false);
        let name = c_name(name)?;
        if !EMPTY_PATH_REFUSED.load(Ordering::Relaxed) {
            let linked = if crate::failpoint::force_proc_link() {
                Err(io::Error::from_raw_os_error(libc::ENOENT))
            } else {
                // SAFETY: both descriptors are open and both strings are NUL-terminated.
                syscall_result(unsafe {
                    libc::linkat(
                        file.as_raw_fd(),
                        c"".as_ptr(),
                        self.fd.as_raw_fd(),
                        name.as_ptr(),
                        libc::AT_EMPTY_PATH,
                    )
                })
            };
            match linked {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                linked => return linked,
            }
        }
        self.link_through_proc(file, &name)?;
        EMPTY_PATH_REFUSED.store(true, Ordering::Relaxed);
        Ok(())
    }

    #[cfg(target_os = "linux")]
    fn link_through_proc(&self, file: &File, name: &std::ffi::CStr) -> io::Result<()> {
        let source = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .expect("a formatted fd path has no NUL");
        // SAFETY: both descriptors are open and both strings are NUL-terminated.
        syscall_result(unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                source.as_ptr(),
                self.fd.as_raw_fd(),
                name.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        })
    }

    /// A second name `to` for the file named `from`; fails with `EEXIST` if `to` exists.
    pub fn link_name(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        let dir = self.fd.as_raw_fd();
        // SAFETY: the directory descriptor is open and both strings are NUL-terminated.
        syscall_result(unsafe { libc::linkat(dir, from.as_ptr(), dir, to.as_ptr(), 0) })
    }

    /// Whether a link here was refused by the file system (see [`refuses_links`]).
    pub fn links_refused(&self) -> bool {
        self.links_refused.load(Ordering::Relaxed)
    }

    /// Remembers that the file system refused a link here. One directory is one file system, so
    /// the answer holds for every later lock file in it.
    pub fn note_links_refused(&self) {
        self.links_refused.store(true, Ordering::Relaxed);
    }

    /// Whether a name linked here was found to lock apart from the file it was linked from
    /// (see `publish::beacon_for_name`).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // Read for aliases: Linux only.
    pub fn names_lock_apart(&self) -> bool {
        self.names_lock_apart.load(Ordering::Relaxed)
    }

    /// Remembers that names linked here lock apart; like a refused link, it holds for the whole
    /// directory.
    pub fn note_names_lock_apart(&self) {
        self.names_lock_apart.store(true, Ordering::Relaxed);
    }

    /// Removes the name `name` (not a directory).
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        self.unlink(name, 0)
    }

    /// Removes the empty directory `name`.
    pub fn remove_dir(&self, name: &str) -> io::Result<()> {
        self.unlink(name, libc::AT_REMOVEDIR)
    }

    fn unlink(&self, name: &str, flags: libc::c_int) -> io::Result<()> {
        let name = c_name(name)?;
        // SAFETY: the directory descriptor is open and `name` is NUL-terminated.
        syscall_result(unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), flags) })
    }

    /// `lstat` of `name` here.
    pub fn stat(&self, name: &str) -> io::Result<Entry> {
        let name = c_name(name)?;
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: the directory descriptor is open, `name` is NUL-terminated and `stat` is
        // large enough for the kernel to fill.
        syscall_result(unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                stat.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        // SAFETY: fstatat succeeded, so it filled `stat`.
        let stat = unsafe { stat.assume_init() };
        let modified = Duration::new(
            u64::try_from(stat.st_mtime).unwrap_or(0),
            u32::try_from(stat.st_mtime_nsec).unwrap_or(0),
        );
        // dev_t and ino_t are not u64 on every platform.
        #[allow(clippy::unnecessary_cast)]
        Ok(Entry {
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
            is_dir: stat.st_mode & libc::S_IFMT == libc::S_IFDIR,
            modified: SystemTime::UNIX_EPOCH + modified,
        })
    }

    /// The names in the directory. Listed by path: whatever a name turns out to be, it is then
    /// opened through the descriptor and checked.
    pub fn names(&self) -> io::Result<Vec<String>> {
        Ok(std::fs::read_dir(&self.path)?
            .flatten()
            .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
            .collect())
    }
}

/// Whether a failed link says the file system has no hard links, rather than something about
/// the names (`EEXIST`, `ENOENT`): vfat and exFAT, in the kernel or through FUSE, answer
/// `EPERM`; other file systems `EOPNOTSUPP` (`ENOTSUP` on macOS) or `ENOSYS`.
pub fn refuses_links(err: &io::Error) -> bool {
    err.raw_os_error().is_some_and(|code| {
        code == libc::EPERM
            || code == libc::EOPNOTSUPP
            || code == libc::ENOTSUP
            || code == libc::ENOSYS
    })
}

/// SPEC §2: a real directory (not a symlink), owned by us, with no group or other permission
/// bits.
fn check_lock_dir(path: &Path, meta: &std::fs::Metadata) -> Result<(), GatewayLockError> {
    let uid = current_uid();
    let problem = if meta.file_type().is_symlink() {
        "it is a symbolic link".to_owned()
    } else if !meta.is_dir() {
        "it is not a directory".to_owned()
    } else if meta.uid() != uid {
        format!("it is owned by uid {}", meta.uid())
    } else if meta.permissions().mode() & 0o077 != 0 {
        let mode = meta.permissions().mode() & 0o777;
        format!("its mode is {mode:04o}, open to group or others")
    } else {
        return Ok(());
    };
    Err(GatewayLockError::UnsafeLockDir {
        path: path.to_path_buf(),
        problem,
        uid,
    })
}

fn syscall_result(result: libc::c_int) -> io::Result<()> {
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the lock dir path contains a NUL byte",
        )
    })
}

/// A name directly in the lock dir: no separator, no NUL.
fn c_name(name: &str) -> io::Result<CString> {
    if name.is_empty() || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a file name"),
        ));
    }
    CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a lock file name contains a NUL byte",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_dir() -> (tempfile::TempDir, LockDir) {
        let root = tempfile::tempdir().unwrap();
        let dir = LockDir::prepare(&root.path().join("tmp").join("openclaw-test")).unwrap();
        (root, dir)
    }

    /// The path kernels before 6.10 leave to unprivileged processes: the name it gives is the
    /// unnamed file, contents and all, and an existing name is never replaced.
    #[cfg(target_os = "linux")]
    #[test]
    fn link_through_proc_names_the_unnamed_file() {
        use std::io::Write;
        use std::os::unix::fs::MetadataExt;

        let (_root, dir) = lock_dir();
        let mut file = dir.create_unnamed().unwrap();
        file.write_all(b"payload").unwrap();
        dir.link_through_proc(&file, c"gateway.state.lock").unwrap();
        let entry = dir.stat("gateway.state.lock").unwrap();
        let meta = file.metadata().unwrap();
        assert_eq!((entry.dev, entry.ino), (meta.dev(), meta.ino()));
        assert_eq!(
            std::fs::read(dir.join("gateway.state.lock")).unwrap(),
            b"payload"
        );

        let other = dir.create_unnamed().unwrap();
        let err = dir
            .link_through_proc(&other, c"gateway.state.lock")
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
        assert_eq!(dir.stat("gateway.state.lock").unwrap().ino, meta.ino());
    }

    #[test]
    fn names_with_a_separator_are_refused() {
        let (root, dir) = lock_dir();
        std::fs::write(root.path().join("victim"), b"keep").unwrap();
        for name in ["", "../../victim", "a/b"] {
            let err = dir.remove_file(name).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
        assert_eq!(std::fs::read(root.path().join("victim")).unwrap(), b"keep");
    }

    #[test]
    fn open_existing_creates_nothing() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("tmp").join("openclaw-test");
        assert!(LockDir::open_existing(&path).unwrap().is_none());
        assert!(!root.path().join("tmp").exists());
    }
}
