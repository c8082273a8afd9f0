//! What only macOS can show (issue 10, items 2–4), run by `scripts/macos-test.sh` on a Mac:
//! a zombie owner is seen dead through `proc_pidinfo`, `status` sees another process's `flock`
//! beacon through `F_GETLK` without taking it, and a live process's argv is read through
//! `KERN_PROCARGS2` exactly, empty arguments included and the environment left out.
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
    // xnu answers PROC_PIDTBSDINFO for a zombie only when asked with arg 1.
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
