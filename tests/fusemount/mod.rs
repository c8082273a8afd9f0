//! A real `bindfs` mount for the tests of a state dir on a path-based FUSE file system: one
//! that has hard links but no `O_TMPFILE`, gives the kernel an inode per name, and keeps its
//! `flock`s local to the mount (the way sshfs, rclone and the shared folders of VM and container
//! desktops behave). Used next to `common`.
//!
//! Needs `/dev/fuse` and the `bindfs` package (and root, or `fusermount` for a user). Without
//! them a test fails and says what is missing: CI has them all.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// `bindfs <source> <mountpoint>` over a fresh directory, unmounted on drop.
pub struct BindfsMount {
    pub source: PathBuf,
    pub mountpoint: PathBuf,
    /// The source and the mount point; removed after the unmount.
    _scratch: tempfile::TempDir,
}

impl BindfsMount {
    /// Mounts a fresh directory. `-o subtype=bindfs` makes the kernel call it `fuse.bindfs`, as
    /// an fstab entry of that type does; without it the type is plain `fuse`.
    pub fn new() -> Self {
        Self::with_options(&["-o", "subtype=bindfs"])
    }

    pub fn with_options(options: &[&str]) -> Self {
        let missing = missing_prerequisites();
        assert!(
            missing.is_empty(),
            "the bindfs tests cannot mount a path-based FUSE file system; missing: {}",
            missing.join("; ")
        );
        let scratch = tempfile::Builder::new()
            .prefix("gateway-bindfs-")
            .tempdir()
            .expect("temp dir");
        let source = scratch.path().join("source");
        let mountpoint = scratch.path().join("mnt");
        std::fs::create_dir(&source).unwrap();
        std::fs::create_dir(&mountpoint).unwrap();
        Self::mount(&source, &mountpoint, options);
        Self {
            source,
            mountpoint,
            _scratch: scratch,
        }
    }

    /// A second mount of the same source, as another host would have: its `flock`s do not see
    /// this one's.
    pub fn another_view(&self) -> BindfsView {
        let scratch = tempfile::Builder::new()
            .prefix("gateway-bindfs-view-")
            .tempdir()
            .expect("temp dir");
        let mountpoint = scratch.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        Self::mount(&self.source, &mountpoint, &["-o", "subtype=bindfs"]);
        BindfsView {
            mountpoint,
            _scratch: scratch,
        }
    }

    fn mount(source: &Path, mountpoint: &Path, options: &[&str]) {
        let output = Command::new(find_program("bindfs").unwrap())
            .args(options)
            .arg(source)
            .arg(mountpoint)
            .stdin(Stdio::null())
            .output()
            .expect("run bindfs");
        assert!(
            output.status.success(),
            "bindfs {}: {}; {}",
            mountpoint.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A test env whose home (and so state dir and lock dir) is on this mount.
    pub fn env(&self) -> TestEnv {
        env_in(&self.mountpoint)
    }
}

impl Drop for BindfsMount {
    fn drop(&mut self) {
        unmount(&self.mountpoint);
    }
}

/// Another mount of a [`BindfsMount`]'s source, unmounted on drop.
pub struct BindfsView {
    pub mountpoint: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Drop for BindfsView {
    fn drop(&mut self) {
        unmount(&self.mountpoint);
    }
}

fn env_in(dir: &Path) -> TestEnv {
    TestEnv {
        root: tempfile::Builder::new()
            .prefix("gateway-test-")
            .tempdir_in(dir)
            .expect("temp dir on the bindfs mount"),
    }
}

fn unmount(mountpoint: &Path) {
    let unmount = |lazy: bool| {
        // SAFETY: a plain getter without arguments.
        let mut command = if unsafe { libc::geteuid() } == 0 {
            let mut command = Command::new("umount");
            if lazy {
                command.arg("-l");
            }
            command
        } else {
            let mut command = Command::new("fusermount");
            command.arg(if lazy { "-uz" } else { "-u" });
            command
        };
        command
            .arg(mountpoint)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    // Busy for a moment while a killed gateway's files are closed.
    if !wait_until(Duration::from_secs(5), || unmount(false)) {
        unmount(true);
    }
}

/// The names in `dir` but FUSE's own: libfuse keeps a file unlinked while open as
/// `.fuse_hidden…` until it is closed, which a FUSE server does a moment after the process
/// that had it open is gone.
pub fn entries_but_fuse_hidden(names: Vec<String>) -> Vec<String> {
    names
        .into_iter()
        .filter(|name| !name.starts_with(".fuse_hidden"))
        .collect()
}

/// What the mount needs and this machine lacks, each with how to get it.
pub fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    if !Path::new("/dev/fuse").exists() {
        missing.push("/dev/fuse (FUSE)".to_owned());
    }
    if find_program("bindfs").is_none() {
        missing.push("bindfs (apt-get install bindfs)".to_owned());
    }
    // SAFETY: a plain getter without arguments.
    if unsafe { libc::geteuid() } != 0 && find_program("fusermount").is_none() {
        missing.push("fusermount, or root (apt-get install fuse)".to_owned());
    }
    missing
}

/// `program` in PATH or the sbin directories (not always in a test's PATH).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
