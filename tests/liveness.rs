//! PID reuse (SPEC §4): a lock file names a pid, and a pid is not an owner. Each case plants a
//! lock file naming a real process, in the state lock and in the config lock, and checks that
//! acquisition waits for a live owner (then times out naming it) and reclaims a dead one at
//! once. No process is ever signalled.
//!
//! We run as root, so `kill(pid, 0)` never fails with `EPERM` here: for another user's process
//! the decision rests on the start time alone, which is what these tests check.

mod common;
mod lockkit;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::*;
use gateway::GatewayLock;
use lockkit::*;

fn plant_in_both(body: &str, expect: Expect) {
    for position in BOTH {
        plant_and_acquire(position, body, expect);
    }
}

#[test]
fn our_own_pid_with_another_owner_id_is_reclaimed() {
    // Even with our real start time: every holder in this process keeps the beacon, so a file
    // naming our pid without it was left by an earlier process that had our pid.
    let own = std::process::id();
    plant_in_both(&lock_body(own, Some(start_time_of(own))), Expect::Reclaimed);
}

#[test]
fn a_second_acquisition_in_this_process_sees_the_first() {
    // The flip side of the case above: the beacon is per open file (flock), not per process,
    // so a holder in this very process is alive to a second acquisition.
    let env = TestEnv::new();
    let first = GatewayLock::acquire(&env.options().port(0)).unwrap();
    let before: Vec<Vec<u8>> = first
        .lock_paths()
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let err = acquire_guarded(&env.options().port(0).timeout(TIMEOUT)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "gateway already running (pid {}); lock timeout after 300ms",
            std::process::id()
        )
    );
    let after: Vec<Vec<u8>> = first
        .lock_paths()
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(before, after, "the first holder's files are untouched");
    assert!(!first.is_lost());
    assert_eq!(
        read_payload(&env.state_lock()).owner_id.as_deref(),
        Some(first.owner_id())
    );
}

#[test]
fn a_timeout_too_long_for_a_deadline_still_fails_at_once_on_a_healthy_holder() {
    // `Duration::MAX` cannot be added to an instant: the acquisition has no deadline at all,
    // and a healthy holder is still refused at once, not waited for.
    let env = TestEnv::new();
    let lock = GatewayLock::acquire(&env.options().port(0)).unwrap();
    let port = lock.port();
    let gateway = gateway::Gateway::serve(lock, gateway::ServeOptions::default()).expect("serves");
    let started = std::time::Instant::now();
    let refused = GatewayLock::acquire(&env.options().port(port).timeout(Duration::MAX))
        .expect_err("a healthy holder is never waited for");
    assert!(
        matches!(
            refused,
            gateway::GatewayLockError::AlreadyRunning { healthy: true, .. }
        ),
        "{refused}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    gateway.shutdown(Duration::from_secs(5));
}

#[test]
fn our_parent_is_judged_by_its_start_time() {
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() } as u32;
    let start = start_time_of(parent);
    plant_in_both(&lock_body(parent, Some(start)), Expect::Waits(parent));
    plant_in_both(&lock_body(parent, Some(start + 1)), Expect::Reclaimed);
}

#[test]
fn a_live_sleep_is_judged_by_its_start_time() {
    let mut sleep = Owner::sleep();
    let start = sleep.start_time();
    plant_in_both(&lock_body(sleep.pid, Some(start)), Expect::Waits(sleep.pid));
    plant_in_both(&lock_body(sleep.pid, Some(start + 1)), Expect::Reclaimed);
    plant_in_both(&lock_body(sleep.pid, Some(start - 1)), Expect::Reclaimed);
    sleep.assert_running();
}

#[test]
fn without_a_start_time_a_plain_sleep_is_not_a_gateway() {
    let mut sleep = Owner::sleep();
    plant_in_both(&lock_body(sleep.pid, None), Expect::Reclaimed);
    // Nor a shell whose arguments name an entry point but not the `gateway` command.
    let mut command = Command::new("sh");
    command.args(["-c", "read _", "/x/openclaw/dist/index.js", "tui"]);
    let mut shell = Owner::spawn(command);
    plant_in_both(&lock_body(shell.pid, None), Expect::Reclaimed);
    sleep.assert_running();
    shell.assert_running();
}

#[test]
fn without_a_start_time_a_sleep_named_openclaw_gateway_is_alive() {
    // A copy of sleep run with argv0 `openclaw-gateway`.
    let mut command = Command::new("sleep");
    command.arg0("openclaw-gateway").arg("30");
    let mut renamed = Owner::spawn(command);
    renamed.wait_for_argv0("openclaw-gateway");
    plant_in_both(&lock_body(renamed.pid, None), Expect::Waits(renamed.pid));
    renamed.assert_running();
}

#[test]
fn without_a_start_time_exec_a_openclaw_gateway_is_alive() {
    let mut command = Command::new("bash");
    command.args(["-c", "exec -a openclaw-gateway sleep 30"]);
    let mut renamed = Owner::spawn(command);
    renamed.wait_for_argv0("openclaw-gateway");
    plant_in_both(&lock_body(renamed.pid, None), Expect::Waits(renamed.pid));
    renamed.assert_running();
}

#[test]
fn without_a_start_time_a_node_style_gateway_argv_is_alive() {
    // argv = sh -c 'read _' node /x/openclaw/dist/index.js gateway --port 1: a `gateway`
    // argument and an entry point, as `node dist/index.js gateway` has.
    let mut command = Command::new("sh");
    command.args([
        "-c",
        "read _",
        "node",
        "/x/openclaw/dist/index.js",
        "gateway",
        "--port",
        "1",
    ]);
    let mut node = Owner::spawn(command);
    plant_in_both(&lock_body(node.pid, None), Expect::Waits(node.pid));
    node.assert_running();
}

#[test]
fn without_a_start_time_a_gateway_argv_in_another_case_is_alive() {
    // Node lowercases every argument before matching (gateway-process-argv-*.mjs).
    let mut command = Command::new("sh");
    command.args([
        "-c",
        "read _",
        "NODE",
        "/X/OpenClaw/DIST/Index.JS",
        "Gateway",
    ]);
    let mut node = Owner::spawn(command);
    plant_in_both(&lock_body(node.pid, None), Expect::Waits(node.pid));
    node.assert_running();
}

#[test]
fn without_a_start_time_an_argv0_ending_in_openclaw_gateway_is_alive() {
    // A path to the gateway binary, in any case, counts whatever the other arguments are.
    let mut command = Command::new("bash");
    command.args(["-c", "exec -a /opt/OpenClaw/bin/OpenClaw-Gateway sleep 30"]);
    let mut renamed = Owner::spawn(command);
    renamed.wait_for_argv0("/opt/OpenClaw/bin/OpenClaw-Gateway");
    plant_in_both(&lock_body(renamed.pid, None), Expect::Waits(renamed.pid));
    renamed.assert_running();
}

#[test]
fn without_a_start_time_the_openclaw_launcher_needs_the_gateway_command() {
    // argv0 `/usr/local/bin/openclaw` is OpenClaw; only with a `gateway` argument is it the
    // gateway (Node's isGatewayArgv), so `openclaw 30` is reclaimed and `openclaw ... gateway`
    // is waited for.
    let mut command = Command::new("bash");
    command.args(["-c", "exec -a /usr/local/bin/openclaw sleep 30"]);
    let mut other = Owner::spawn(command);
    other.wait_for_argv0("/usr/local/bin/openclaw");
    plant_in_both(&lock_body(other.pid, None), Expect::Reclaimed);
    other.assert_running();

    let mut command = Command::new("bash");
    command.args([
        "-c",
        "exec -a /usr/local/bin/OPENCLAW sh -c 'read _' sh GATEWAY run",
    ]);
    let mut gateway = Owner::spawn(command);
    gateway.wait_for_argv0("/usr/local/bin/OPENCLAW");
    plant_in_both(&lock_body(gateway.pid, None), Expect::Waits(gateway.pid));
    gateway.assert_running();
}

#[test]
#[cfg(target_os = "linux")] // a kernel thread (kthreadd) with an empty /proc/<pid>/cmdline
fn an_owner_whose_argv_cannot_be_read_is_never_reclaimed() {
    // A kernel thread has an empty cmdline: its argv is unknown, and unknown never reclaims.
    let Some(kthread) = find_kernel_thread() else {
        panic!("no kernel thread (kthreadd) visible in /proc: cannot run this case here");
    };
    plant_in_both(&lock_body(kthread, None), Expect::Waits(kthread));
}

#[test]
#[cfg(target_os = "linux")] // /proc/1/stat is world-readable; macOS hides root's launchd's start time
fn pid_1_is_judged_by_its_start_time() {
    let start = start_time_of(1);
    plant_in_both(&lock_body(1, Some(start)), Expect::Waits(1));
    plant_in_both(&lock_body(1, Some(start + 1)), Expect::Reclaimed);
}

#[test]
#[cfg(target_os = "linux")] // setpriv (util-linux) and /proc/<pid>/status
fn another_users_process_is_judged_by_its_start_time() {
    let mut command = Command::new("setpriv");
    command.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "sleep",
        "30",
    ]);
    let mut other = Owner::spawn(command);
    other.wait_for_argv0("sleep");
    let status = std::fs::read_to_string(format!("/proc/{}/status", other.pid)).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|uid| uid == "65534"),
        "runs as another user: {uid_line}"
    );
    let start = other.start_time();
    plant_in_both(&lock_body(other.pid, Some(start)), Expect::Waits(other.pid));
    plant_in_both(&lock_body(other.pid, Some(start + 1)), Expect::Reclaimed);
    plant_in_both(&lock_body(other.pid, None), Expect::Reclaimed);
    other.assert_running();
}

#[test]
#[cfg(target_os = "linux")] // /proc/<pid>/status; tests/macos.rs has the macOS twin
fn a_zombie_owner_is_dead() {
    // Exited but not reaped: the pid exists, with its start time, yet nobody runs.
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
            s.lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        })
    }));
    let start = start_time_of(pid);
    plant_in_both(&lock_body(pid, Some(start)), Expect::Reclaimed);
    child.wait().unwrap();
}

#[test]
fn judging_an_owner_never_signals_it() {
    let mut owner = TrapOwner::spawn();
    let start = start_time_of(owner.pid());
    plant_in_both(
        &lock_body(owner.pid(), Some(start)),
        Expect::Waits(owner.pid()),
    );
    plant_in_both(&lock_body(owner.pid(), Some(start + 1)), Expect::Reclaimed);
    plant_in_both(&lock_body(owner.pid(), None), Expect::Reclaimed);
    owner.assert_never_signalled();
    owner.prove_detector_works();
}

/// A kernel thread's pid (kthreadd, else any thread it parents): its cmdline is empty.
#[cfg(target_os = "linux")] // /proc
fn find_kernel_thread() -> Option<u32> {
    let stat = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    if stat(2).is_some_and(|s| s.contains("(kthreadd)")) {
        return Some(2);
    }
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| stat(*pid).is_some_and(|s| s.contains("(kthreadd)")))
}
