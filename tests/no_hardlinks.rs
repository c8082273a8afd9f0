//! Lock files on a file system without hard links: a real exFAT image mounted through FUSE
//! (`exfat-fuse`), as a USB stick would be. Publishing a lock file by `link` is refused there,
//! so the files are created in place; acquisition, refusal, restart after SIGKILL and the start
//! race must all work as they do elsewhere.
//!
//! Needs root (to mount), `/dev/fuse`, loop devices, and the `exfat-fuse` and `exfatprogs`
//! packages. Without them the tests fail and say what is missing: CI has them all.
#![cfg(target_os = "linux")] // exFAT through FUSE on a loop device: Linux only.

mod common;
mod lockkit;
mod race;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use lockkit::{acquire_guarded, read_payload, write_lock};
use race::*;

/// How many gateways start at once in a race.
const RACERS: usize = 8;

/// A restart over what a SIGKILL left behind must not wait for anything: well under the 5 s lock
/// timeout, with room for a loaded 2-core machine that is slow to start a process.
const RESTART_BUDGET: Duration = Duration::from_millis(2500);

/// Older than the stale window (30 s).
const STALE_AGE: Duration = Duration::from_secs(60);

/// Each test mounts its own file system and some start several processes: one at a time, so
/// they do not skew each other's timings on a small machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------
// The mount
// ---------------------------------------------------------------------------------------------

/// A fresh 64 MiB exFAT file system mounted through FUSE with `umask=077` (exFAT has no Unix
/// modes: the mount gives every file 0700 and our uid, which the lock dir check accepts).
/// Unmounted on drop; `mount -o loop` detaches the loop device with it.
struct ExfatMount {
    mountpoint: PathBuf,
    /// The image and the mount point; removed after the unmount.
    _scratch: tempfile::TempDir,
}

impl ExfatMount {
    fn new() -> Self {
        let missing = missing_prerequisites();
        assert!(
            missing.is_empty(),
            "the exFAT tests cannot mount a file system without hard links; missing: {}",
            missing.join("; ")
        );
        let scratch = tempfile::Builder::new()
            .prefix("gateway-exfat-")
            .tempdir()
            .expect("temp dir");
        let image = scratch.path().join("exfat.img");
        std::fs::File::create(&image)
            .and_then(|file| file.set_len(64 << 20))
            .expect("create the image");
        run(Command::new(find_program("mkfs.exfat").unwrap()).arg(&image));
        let mountpoint = scratch.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        // SAFETY: plain getters without arguments.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        run(Command::new("mount")
            .args(["-t", "exfat-fuse", "-o"])
            .arg(format!("loop,uid={uid},gid={gid},umask=077"))
            .arg(&image)
            .arg(&mountpoint));
        let mount = Self {
            mountpoint,
            _scratch: scratch,
        };
        mount.assert_no_hard_links();
        mount
    }

    /// The ground is what these tests are about: a hard link here is refused.
    fn assert_no_hard_links(&self) {
        let probe = self.mountpoint.join("probe");
        std::fs::write(&probe, b"").unwrap();
        let linked = std::fs::hard_link(&probe, self.mountpoint.join("probe-link"));
        std::fs::remove_file(&probe).unwrap();
        let err = linked.expect_err("a hard link on the exFAT mount was refused");
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    }

    /// A test env whose home (and so state dir and lock dir) is on this mount.
    fn env(&self) -> TestEnv {
        TestEnv {
            root: tempfile::Builder::new()
                .prefix("gateway-test-")
                .tempdir_in(&self.mountpoint)
                .expect("temp dir on the exFAT mount"),
        }
    }
}

impl Drop for ExfatMount {
    fn drop(&mut self) {
        let unmount = |args: &[&str]| {
            Command::new("umount")
                .args(args)
                .arg(&self.mountpoint)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        };
        // Busy for a moment while a killed gateway's files are closed.
        if !wait_until(Duration::from_secs(5), || unmount(&[])) {
            unmount(&["-l"]);
        }
    }
}

/// What the mount needs and this machine lacks, each with how to get it.
fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    // SAFETY: a plain getter without arguments.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (mounting needs it)".to_owned());
    }
    for (device, what) in [("/dev/fuse", "FUSE"), ("/dev/loop-control", "loop devices")] {
        if !Path::new(device).exists() {
            missing.push(format!("{device} ({what})"));
        }
    }
    for (program, package) in [
        ("mkfs.exfat", "exfatprogs"),
        ("mount.exfat-fuse", "exfat-fuse"),
        ("mount", "mount"),
        ("umount", "mount"),
    ] {
        if find_program(program).is_none() {
            missing.push(format!("{program} (apt-get install {package})"));
        }
    }
    missing
}

/// `program` in PATH or the sbin directories (not always in a test's PATH).
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn run(command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}; {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Checks shared by the tests
// ---------------------------------------------------------------------------------------------

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Both lock file names, sorted as `lock_dir_entries` sorts them.
fn lock_names(env: &TestEnv) -> Vec<String> {
    let mut names = vec![
        "gateway.state.lock".to_owned(),
        file_name(&env.config_lock()),
    ];
    names.sort();
    names
}

/// The lock dir holds both lock files and nothing else (no temp file), each a file of its own
/// (one name per inode: there are no hard links here), closed to group and others, naming
/// `pid`, `port` and one `ownerId`. Returns that `ownerId`.
fn assert_held_by(env: &TestEnv, pid: u32, port: u16, context: &str) -> String {
    assert_eq!(
        env.lock_dir_entries(),
        lock_names(env),
        "{context}: the holder's two lock files and nothing else"
    );
    let mut owner_ids = Vec::new();
    for path in [env.state_lock(), env.config_lock()] {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file(), "{context}: {}", path.display());
        assert_eq!(meta.nlink(), 1, "{context}: {}", path.display());
        assert_eq!(meta.mode() & 0o077, 0, "{context}: {}", path.display());
        let payload = read_payload(&path);
        assert_eq!(payload.pid, pid, "{context}: {}", path.display());
        assert_eq!(payload.port, Some(port), "{context}: {}", path.display());
        owner_ids.push(payload.owner_id.expect("an ownerId"));
    }
    assert_eq!(
        owner_ids[0], owner_ids[1],
        "{context}: one ownerId in both files"
    );
    owner_ids.swap_remove(0)
}

// ---------------------------------------------------------------------------------------------
// 1. The library
// ---------------------------------------------------------------------------------------------

#[test]
fn acquire_takes_both_lock_files_and_drop_removes_them() {
    let _serial = serial();
    let mount = ExfatMount::new();
    let env = mount.env();
    let lock = acquire_guarded(&env.options().port(0))
        .unwrap_or_else(|err| panic!("acquire on exFAT: {err}"));
    let owner_id = assert_held_by(&env, std::process::id(), lock.port(), "held");
    assert_eq!(owner_id, lock.owner_id());
    let mode = std::fs::symlink_metadata(env.lock_dir()).unwrap().mode();
    assert_eq!(mode & 0o777, 0o700, "the lock dir is {mode:o}");
    // A FUSE driver on a local block device (`fuseblk`) is one host's ground.
    let ground = gateway::status(&env.options()).unwrap().ground;
    assert_eq!(
        (ground.fs_type.as_str(), ground.locks),
        ("fuseblk", gateway::LockReach::OneHost),
        "{ground:?}"
    );

    // A second acquisition in this process sees the beacon: it waits, then names us.
    let timeout = Duration::from_millis(300);
    let err = acquire_guarded(&env.options().port(0).timeout(timeout))
        .expect_err("a second acquisition of a held lock");
    assert_eq!(err.holder_pid(), Some(std::process::id()), "{err}");
    assert_held_by(&env, std::process::id(), lock.port(), "still held");

    drop(lock);
    assert!(
        env.lock_dir_entries().is_empty(),
        "released: {:?}",
        env.lock_dir_entries()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Processes: refusal, SIGKILL, the start race
// ---------------------------------------------------------------------------------------------

#[test]
fn a_second_gateway_is_refused_while_the_first_serves() {
    let _serial = serial();
    let mount = ExfatMount::new();
    let env = mount.env();
    let port = free_port();
    let port_arg = port.to_string();
    let first = env.start(&["--port", &port_arg]);
    assert_held_by(&env, first.pid, port, "first");

    let second = env
        .command(&["run", "--port", &port_arg])
        .output()
        .expect("run a second gateway");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    let expected = format!(
        "Gateway failed to start: gateway already running (pid {}); it is healthy on ws://127.0.0.1:{port}",
        first.pid
    );
    assert!(
        stderr.lines().any(|line| line == expected),
        "the refusal names the holder: {stderr:?}"
    );

    assert!(healthy(port), "the first gateway still serves");
    assert_held_by(&env, first.pid, port, "after the refusal");
    assert_eq!(first.terminate(), 0);
    assert!(
        env.lock_dir_entries().is_empty(),
        "lock dir empty after stop: {:?}",
        env.lock_dir_entries()
    );
    assert!(port_is_free(port));
}

#[test]
fn after_sigkill_the_next_start_takes_over_at_once() {
    let _serial = serial();
    let mount = ExfatMount::new();
    let env = mount.env();
    let port = free_port();
    let port_arg = port.to_string();
    let killed = env.start(&["--port", &port_arg]);
    let killed_pid = killed.pid;
    assert_held_by(&env, killed_pid, port, "before the kill");
    killed.sigkill();
    assert_held_by(&env, killed_pid, port, "SIGKILL leaves both files");

    let started = Instant::now();
    let restarted = env.start(&["--port", &port_arg]);
    let took = started.elapsed();
    assert!(
        took < RESTART_BUDGET,
        "the restart after SIGKILL took {took:?}, more than {RESTART_BUDGET:?}"
    );
    assert!(healthy(port));
    assert_held_by(&env, restarted.pid, port, "restarted");
    assert_eq!(restarted.terminate(), 0);
    assert!(
        env.lock_dir_entries().is_empty(),
        "lock dir empty after stop: {:?}",
        env.lock_dir_entries()
    );
}

/// Without links a lock file is created in place, so a crash between its create and its write
/// leaves an empty file: it may be a holder about to write, so a start waits while it is young,
/// and reclaims it at once when it is older than the stale window.
#[test]
fn an_empty_lock_file_waits_while_young_and_is_reclaimed_once_stale() {
    let _serial = serial();
    let mount = ExfatMount::new();
    let env = mount.env();
    let port = free_port();
    let port_arg = port.to_string();
    write_lock(&env.state_lock(), "");

    let young = env
        .command(&["run", "--port", &port_arg, "--lock-timeout-ms", "300"])
        .output()
        .expect("run a gateway");
    let stderr = String::from_utf8_lossy(&young.stderr);
    assert_eq!(young.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.lines().any(|line| line
            == "Gateway failed to start: gateway already running; lock timeout after 300ms"),
        "a young empty file is waited on: {stderr:?}"
    );
    assert_eq!(std::fs::read(env.state_lock()).unwrap(), b"");
    assert!(
        !env.config_lock().exists(),
        "nothing is taken past the state lock"
    );

    // Both times: exfat-fuse ignores a change of the mtime alone (`UTIME_OMIT` for the atime).
    let aged = std::time::SystemTime::now() - STALE_AGE;
    std::fs::File::options()
        .write(true)
        .open(env.state_lock())
        .and_then(|file| {
            file.set_times(
                std::fs::FileTimes::new()
                    .set_accessed(aged)
                    .set_modified(aged),
            )
        })
        .expect("age the empty file");
    let started = Instant::now();
    let gateway = env.start(&["--port", &port_arg]);
    let took = started.elapsed();
    assert!(
        took < RESTART_BUDGET,
        "a stale empty file is reclaimed at once; the start took {took:?}"
    );
    assert_held_by(&env, gateway.pid, port, "after the reclaim");
    assert_eq!(gateway.terminate(), 0);
    assert!(
        env.lock_dir_entries().is_empty(),
        "lock dir empty after stop: {:?}",
        env.lock_dir_entries()
    );
}

/// Racers on one port, then racers each on a port of its own (`--port 0`), where only the lock
/// files can keep all but one from serving: every loser must name the winner's pid.
#[test]
fn start_race_has_exactly_one_winner() {
    let _serial = serial();
    let mount = ExfatMount::new();
    let env = mount.env();
    let port_arg = free_port().to_string();
    for round in 1..=6 {
        let same_port = round <= 3;
        let args = if same_port {
            ["--port", port_arg.as_str()]
        } else {
            ["--port", "0"]
        };
        let round = format!("round {round} (same port: {same_port})");
        let mut racers = race(&env, RACERS, &args);
        let (winner, pid, port) =
            assert_one_winner(&racers, &round, same_port.then_some(port_arg.as_str()));
        assert_held_by(&env, pid, port, &round);

        let winner = &mut racers[winner];
        assert_eq!(winner.terminate(), Some(0), "{round}: the winner exits 0");
        assert!(
            env.lock_dir_entries().is_empty(),
            "{round}: lock dir empty after stop: {:?}",
            env.lock_dir_entries()
        );
        assert!(port_is_free(port), "{round}: port free after stop");
    }
}
