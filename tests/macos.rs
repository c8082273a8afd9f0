//! What only macOS can show (issue 10, items 2–4), run by `scripts/macos-test.sh` on a Mac:
//! a zombie owner is seen dead and another user's process judged by its start time, both
//! through `sysctl(KERN_PROC_PID)`, whose start time is `proc_pidinfo`'s; `status` sees another
//! process's `flock` beacon through `F_GETLK` without taking it; and a live process's argv is
//! read through `KERN_PROCARGS2` exactly, empty arguments included and the environment left
//! out.
//!
//! Nothing here has been run on a Mac by us yet: it is type-checked for aarch64-apple-darwin
//! and linked by CI's macOS link step.
#![cfg(target_os = "macos")]

mod common;
mod lockkit;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use gateway::test_support::{is_gateway_argv, pid_is_running, process_argv, process_start_time};
use lockkit::*;

#[test]
fn a_zombie_owner_is_dead() {
    // Exited, not reaped: the pid still exists (kill(pid, 0) succeeds), yet nobody runs.
    // sysctl(KERN_PROC_PID) walks the zombie list too and says SZOMB.
    let mut child = Command::new("/usr/bin/true").spawn().unwrap();
    let pid = child.id();
    assert!(
        wait_until(Duration::from_secs(5), || !pid_is_running(pid)),
        "pid {pid} was never seen as a zombie"
    );
    // SAFETY: signal 0 only checks that the (unreaped) pid exists.
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    assert!(exists, "pid {pid} is still unreaped");
    let start = process_start_time(pid).expect("a zombie's start time is readable");
    plant_in_both(&lock_body(pid, Some(start)), Expect::Reclaimed);
    plant_in_both(&lock_body(pid, None), Expect::Reclaimed);
    child.wait().unwrap();
}

/// launchd (pid 1) is root's. Unless we are root, xnu refuses `proc_pidinfo(PROC_PIDTBSDINFO)`
/// and `KERN_PROCARGS2` for it, as for any other user's process; `sysctl(KERN_PROC_PID)` is
/// not refused, so a lock naming it (a pid reused by another user's process) is judged by its
/// start time like any other. Without a recorded start time only argv could tell, and another
/// user's argv is unreadable: unknown, never reclaimed (SPEC §4 step 4).
#[test]
fn another_users_process_is_judged_by_its_start_time() {
    let launchd = 1;
    assert!(pid_is_running(launchd));
    let start = process_start_time(launchd).expect("any user's start time is readable");
    plant_in_both(&lock_body(launchd, Some(start)), Expect::Waits(launchd));
    plant_in_both(&lock_body(launchd, Some(start - 1)), Expect::Reclaimed);

    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let argv = process_argv(launchd);
    assert_eq!(
        argv.is_some(),
        root,
        "launchd's argv as uid 0: {root}: {argv:?}"
    );
    // Unreadable argv: unknown, so the acquirer waits its timeout. Readable (as root): not a
    // gateway's, so reclaimed.
    let expect = if root {
        Expect::Reclaimed
    } else {
        Expect::Waits(launchd)
    };
    plant_in_both(&lock_body(launchd, None), expect);
}

/// The start time read through `sysctl(KERN_PROC_PID)` is `proc_pidinfo`'s `pbi_start_tvsec`
/// (the number OpenClaw parses from `ps -o lstart`), for processes `proc_pidinfo` answers
/// about: ours and our child's.
#[test]
fn start_time_is_the_one_proc_pidinfo_gives() {
    let child = Owner::spawn(Command::new("/bin/cat"));
    for pid in [std::process::id(), child.pid] {
        let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
        // SAFETY: a zeroed proc_bsdinfo is a valid out-buffer of `size` bytes.
        let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
        // SAFETY: the buffer is valid for `size` bytes for the duration of the call.
        let written = unsafe {
            libc::proc_pidinfo(
                pid as libc::c_int,
                libc::PROC_PIDTBSDINFO,
                1,
                (&mut info as *mut libc::proc_bsdinfo).cast(),
                size,
            )
        };
        assert_eq!(written, size, "proc_pidinfo({pid})");
        assert_eq!(
            process_start_time(pid),
            Some(info.pbi_start_tvsec),
            "pid {pid}"
        );
    }
}

fn plant_in_both(body: &str, expect: Expect) {
    for position in BOTH {
        plant_and_acquire(position, body, expect);
    }
}

/// Another process holding a `flock` on `path`, exclusive or shared, until dropped.
struct FlockHolder(Child);

impl FlockHolder {
    fn hold(path: &Path, exclusive: bool) -> Self {
        let mode = if exclusive { "ex" } else { "sh" };
        let mut child = Command::new("/usr/bin/perl")
            .args([
                "-MFcntl=:flock",
                "-e",
                r#"open(my $f, "<", $ARGV[0]) or die "open: $!";
                   flock($f, $ARGV[1] eq "ex" ? LOCK_EX : LOCK_SH) or die "flock: $!";
                   $| = 1; print "locked\n"; <STDIN>;"#,
            ])
            .arg(path)
            .arg(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("perl runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "locked\n", "perl took the flock");
        Self(child)
    }
}

impl Drop for FlockHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn status_sees_a_beacon_held_by_another_process_without_taking_it() {
    // The lock file names a dead pid: only the beacon can say its owner is alive.
    let env = TestEnv::new();
    let dead = dead_pid();
    write_lock(&env.state_lock(), &lock_body(dead, None));
    let stale = gateway::status(&env.options().port(free_port())).unwrap();
    assert!(!stale.running && stale.stale, "{stale:?}");

    let holder = FlockHolder::hold(&env.state_lock(), true);
    let held = gateway::status(&env.options().port(free_port())).unwrap();
    assert!(held.running && !held.stale, "{held:?}");
    assert_eq!(held.pid, Some(dead));
    // Nothing was taken: the holder still has its exclusive flock, so an acquisition (which
    // tries a shared one) still sees it.
    let err = acquire_guarded(&env.options().port(0).timeout(TIMEOUT)).unwrap_err();
    assert_eq!(err.holder_pid(), Some(dead), "{err}");
    drop(holder);

    // A shared flock is a checker's, not a holder's beacon.
    let checker = FlockHolder::hold(&env.state_lock(), false);
    let checked = gateway::status(&env.options().port(free_port())).unwrap();
    assert!(!checked.running && checked.stale, "{checked:?}");
    drop(checker);
}

#[test]
fn status_sees_a_running_gateway() {
    let env = TestEnv::new();
    let gateway = env.start(&["--port", &free_port().to_string()]);
    let status = gateway::status(&env.options()).unwrap();
    assert!(status.running && status.healthy, "{status:?}");
    assert_eq!(status.pid, Some(gateway.pid));
    assert_eq!(gateway.terminate(), 0);
}

#[test]
fn argv_of_a_live_process_is_read_exactly() {
    // Empty arguments, one of them last, right before the environment: each is an argument,
    // and no environment string is read as one.
    let args = [
        "-c",
        "read _",
        "",
        "NODE",
        "",
        "/X/DIST/INDEX.JS",
        "GATEWAY",
        "",
    ];
    let mut owner = Owner::spawn({
        let mut command = Command::new("/bin/bash");
        command.args(args).env("GATEWAY_ARGV_TEST", "gateway");
        command
    });
    let expected: Vec<String> = std::iter::once("/bin/bash")
        .chain(args)
        .map(str::to_owned)
        .collect();
    // Read until the child has exec'd bash (spawn may return a moment before).
    let mut read = None;
    wait_until(Duration::from_secs(5), || {
        read = process_argv(owner.pid);
        read.as_ref() == Some(&expected)
    });
    assert_eq!(read, Some(expected.clone()));
    assert!(is_gateway_argv(&expected));
    // Judged by that argv (no start time recorded), it is a live gateway.
    plant_in_both(&lock_body(owner.pid, None), Expect::Waits(owner.pid));
    owner.assert_running();
}
