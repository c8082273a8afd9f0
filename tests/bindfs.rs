//! Lock files on a path-based FUSE file system: a real `bindfs` mount, as the state dir of a
//! user on sshfs, rclone or a VM's shared folder would be. It has hard links but no
//! `O_TMPFILE`, cannot find a file by its descriptor once the file's first name is gone, and
//! gives each name an inode of its own in the kernel (so a `flock` taken through one name is not
//! seen through another). Acquisition, refusal, the start race and restart after SIGKILL at every
//! step must work as they do elsewhere.
//!
//! Needs `/dev/fuse` and the `bindfs` package (see `fusemount`).
#![cfg(target_os = "linux")] // bindfs on /dev/fuse: Linux only here.

mod common;
mod fusemount;
mod lockkit;
mod race;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use fusemount::BindfsMount;
use lockkit::{acquire_guarded, read_payload};
use race::*;

/// How many gateways start at once in a race.
const RACERS: usize = 16;

/// A restart over what a SIGKILL left behind must not wait for anything: well under the 5 s lock
/// timeout, with room for a loaded 2-core machine that is slow to start a process.
const RESTART_BUDGET: Duration = Duration::from_millis(2500);

/// Each test mounts its own file system and some start many processes: one at a time, so they
/// do not skew each other's timings on a small machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

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

/// Whether another process sees an exclusive `flock` on `path` (util-linux `flock`, which
/// exits 1 when its non-blocking lock is refused).
fn beacon_seen_from_outside(path: &Path) -> bool {
    let status = Command::new("flock")
        .args(["--nonblock", "--shared", "--conflict-exit-code", "7"])
        .arg(path)
        .arg("true")
        .stdin(Stdio::null())
        .status()
        .expect("run flock (apt-get install util-linux)");
    match status.code() {
        Some(7) => true,
        Some(0) => false,
        other => panic!("flock {}: {other:?}", path.display()),
    }
}

/// The lock dir holds both lock files and nothing else (no temp file, nothing hidden), closed to
/// group and others, naming `pid`, `port` and one `ownerId`, each with a beacon another process
/// sees. Returns that `ownerId`.
fn assert_held_by(env: &TestEnv, pid: u32, port: u16, context: &str) -> String {
    assert_eq!(
        env.lock_dir_entries(),
        lock_names(env),
        "{context}: the holder's two lock files and nothing else"
    );
    let mut owner_ids = Vec::new();
    for path in [env.state_lock(), env.config_lock()] {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file(), "{context}: {}", path.display());
        assert_eq!(meta.mode() & 0o077, 0, "{context}: {}", path.display());
        let payload = read_payload(&path);
        assert_eq!(payload.pid, pid, "{context}: {}", path.display());
        assert_eq!(payload.port, Some(port), "{context}: {}", path.display());
        assert!(
            beacon_seen_from_outside(&path),
            "{context}: the holder's beacon is on {}",
            path.display()
        );
        owner_ids.push(payload.owner_id.expect("an ownerId"));
    }
    assert_eq!(
        owner_ids[0], owner_ids[1],
        "{context}: one ownerId in both files"
    );
    owner_ids.swap_remove(0)
}

/// The lock dir is empty once the FUSE server has closed what the stopped holder had open (it
/// keeps an open file unlinked by its holder as `.fuse_hidden…` until then).
fn assert_lock_dir_empty_soon(env: &TestEnv, context: &str) {
    assert!(
        wait_until(Duration::from_secs(5), || env.lock_dir_entries().is_empty()),
        "{context}: lock dir empty after stop: {:?}",
        env.lock_dir_entries()
    );
}

// ---------------------------------------------------------------------------------------------
// 1. The library
// ---------------------------------------------------------------------------------------------

/// The bug of issue 13: the config lock was linked to the state lock's already unlinked temp
/// file by its descriptor, which bindfs answers with ENOENT, so nothing could start there.
#[test]
fn acquire_takes_both_lock_files_and_drop_removes_them() {
    let _serial = serial();
    let mount = BindfsMount::new();
    let env = mount.env();
    let lock = acquire_guarded(&env.options().port(0))
        .unwrap_or_else(|err| panic!("acquire on bindfs: {err}"));
    let owner_id = assert_held_by(&env, std::process::id(), lock.port(), "held");
    assert_eq!(owner_id, lock.owner_id());

    // A second acquisition in this process must see the beacon through the lock's name: a
    // file naming our own pid without one would be taken for a dead earlier process's.
    let timeout = Duration::from_millis(300);
    let err = acquire_guarded(&env.options().port(0).timeout(timeout))
        .expect_err("a second acquisition of a held lock");
    assert_eq!(err.holder_pid(), Some(std::process::id()), "{err}");
    assert_held_by(&env, std::process::id(), lock.port(), "still held");

    drop(lock);
    assert_lock_dir_empty_soon(&env, "released");
}

/// Threads of one process racing for one config: a lock file naming this process without a
/// beacon is reclaimed (it can only be an earlier process's with the same pid), so each name
/// must carry its beacon before it counts as held, or two threads would both win.
#[test]
fn threads_racing_in_one_process_have_exactly_one_winner() {
    let _serial = serial();
    let mount = BindfsMount::new();
    let env = mount.env();
    let options = env.options().port(0).timeout(Duration::from_millis(300));
    for round in 1..=10 {
        let barrier = std::sync::Barrier::new(8);
        let results: Vec<_> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        gateway::GatewayLock::acquire(&options)
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one thread holds the lock: {:?}",
            results
                .iter()
                .map(|r| r.as_ref().err().map(ToString::to_string))
                .collect::<Vec<_>>()
        );
        assert_held_by(
            &env,
            std::process::id(),
            winners[0].port(),
            &format!("round {round}"),
        );
        drop(results);
        assert_lock_dir_empty_soon(&env, &format!("round {round}"));
    }
}

/// Between its link and its own beacon a lock file here shows a payload with no beacon, which a
/// reclaimer in this process or another PID namespace may judge dead. Reclaimers remove only
/// under the `<lock>.reclaim` guard, so a start takes its name as held only once no guard is
/// left: a live reclaimer's guard holds it off, round after round, until the lock timeout (then
/// it says which file is in the way and leaves no lock file behind); one that goes away within
/// the timeout lets it in; a dead one's is cleared.
#[test]
fn a_start_waits_out_a_reclaim_guard_and_clears_an_abandoned_one() {
    let _serial = serial();
    let mount = BindfsMount::new();
    let env = mount.env();
    let guard = env.lock_dir().join("gateway.state.lock.reclaim");
    let options = env.options().port(0).allow_multi(true);

    let mut holding = Command::new("flock");
    // `--close`: the lock stays with `flock` itself, so it goes with the process killed below.
    holding
        .args(["--exclusive", "--close"])
        .arg(&guard)
        .args(["sleep", "30"]);
    lockkit::write_lock(&guard, "");
    let reclaimer = lockkit::Owner::spawn(holding);
    assert!(
        wait_until(Duration::from_secs(5), || beacon_seen_from_outside(&guard)),
        "the stand-in reclaimer holds its guard"
    );
    let err = acquire_guarded(&options).expect_err("a live reclaimer's guard holds the start off");
    assert_eq!(
        err.to_string(),
        format!(
            "failed to acquire gateway lock at {}: {} stayed in place for the whole lock timeout (5000ms) while another process reclaimed the lock; if no gateway is starting or stopping, remove it",
            env.state_lock().display(),
            guard.display()
        )
    );
    assert!(
        wait_until(Duration::from_secs(5), || env.lock_dir_entries()
            == ["gateway.state.lock.reclaim"]),
        "no lock file is left, and the live guard is kept: {:?}",
        env.lock_dir_entries()
    );
    drop(reclaimer);

    // A reclaimer (of another host, say: its pid means nothing here) that holds its guard
    // longer than one round's wait, then finishes: the start waits for it, within its timeout.
    let mut finishing = Command::new("flock");
    finishing
        .args(["--exclusive", "--close"])
        .arg(&guard)
        .args(["sh", "-c", r#"sleep 4; rm -f "$1""#, "sh"])
        .arg(&guard);
    let reclaimer = lockkit::Owner::spawn(finishing);
    assert!(
        wait_until(Duration::from_secs(5), || beacon_seen_from_outside(&guard)),
        "the stand-in reclaimer holds its guard"
    );
    let patient = options.clone().timeout(Duration::from_secs(9));
    let lock = acquire_guarded(&patient).expect("a guard that goes within the timeout");
    // The stand-in removed its guard while `flock` still held it open: bindfs shows it as
    // `.fuse_hidden…` until that process is gone too, a moment later.
    assert_only_our_lock_soon(&env);
    drop(lock);
    drop(reclaimer);
    assert_lock_dir_empty_soon(&env, "released");

    lockkit::write_lock(&guard, &lockkit::lock_body(lockkit::dead_pid(), None));
    let lock = acquire_guarded(&options).expect("a dead reclaimer's guard is cleared");
    assert_only_our_lock_soon(&env);
    drop(lock);
    assert_lock_dir_empty_soon(&env, "released");
}

/// The lock dir holds our lock file and nothing else, within a few seconds: a file removed
/// while some process still has it open shows as `.fuse_hidden…` until its last close reaches
/// bindfs (the kernel sends that release asynchronously, after `close` returns).
fn assert_only_our_lock_soon(env: &TestEnv) {
    assert!(
        wait_until(Duration::from_secs(5), || env.lock_dir_entries()
            == ["gateway.state.lock"]),
        "only our lock file: {:?}",
        env.lock_dir_entries()
    );
}

/// A guard left by a reclaimer in another PID namespace of this kernel (a pod beside ours, with
/// its own FUSE mount of the share) names a pid that means nothing here, and its beacon is not
/// seen through our mount: it is left to the stale window, not cleared because that pid is not
/// running in our namespace.
#[test]
fn a_guard_from_another_pid_namespace_is_left_to_the_stale_window() {
    let _serial = serial();
    let mount = BindfsMount::new();
    let env = mount.env();
    let guard = env.lock_dir().join("gateway.state.lock.reclaim");
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let body = serde_json::json!({
        "pid": lockkit::dead_pid(),
        "createdAt": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        "bootId": boot_id.trim(),
        "pidNs": "0:1",
    });
    lockkit::write_lock(&guard, &format!("{body}\n"));
    let options = env
        .options()
        .port(0)
        .allow_multi(true)
        .timeout(Duration::from_secs(1));
    let err = acquire_guarded(&options).expect_err("the guard is not cleared by its pid");
    assert!(
        err.to_string().contains(&format!(
            "{} stayed in place for the whole lock timeout (1000ms)",
            guard.display()
        )),
        "{err}"
    );
    assert!(guard.exists(), "{:?}", env.lock_dir_entries());

    // Past the stale window it is.
    let options = options
        .stale_after(Duration::from_millis(500))
        .timeout(Duration::from_secs(5));
    let lock = acquire_guarded(&options).expect("a guard past the stale window is cleared");
    assert_only_our_lock_soon(&env);
    drop(lock);
    assert_lock_dir_empty_soon(&env, "released");
}

// ---------------------------------------------------------------------------------------------
// 2. Processes: refusal, the start race, SIGKILL at every step
// ---------------------------------------------------------------------------------------------

#[test]
fn a_second_gateway_is_refused_while_the_first_serves() {
    let _serial = serial();
    let mount = BindfsMount::new();
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

    // `status` takes no lock: it sees the holder's beacon through the name it reads.
    let status = gateway::status(&env.options()).unwrap();
    assert!(status.running && status.healthy, "{status:?}");
    assert_eq!(status.pid, Some(first.pid));
    assert_eq!(status.ground.fs_type, "fuse.bindfs");
    assert_eq!(first.terminate(), 0);
    assert_lock_dir_empty_soon(&env, "first stopped");
    assert!(port_is_free(port));
}

/// Racers on one port, then racers each on a port of its own (`--port 0`), where only the lock
/// files can keep all but one from serving: every loser must name the winner's pid.
#[test]
fn start_race_has_exactly_one_winner() {
    let _serial = serial();
    let mount = BindfsMount::new();
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
        // The losers' temp files are gone with them (closed before they were unlinked).
        assert_held_by(&env, pid, port, &round);

        let winner = &mut racers[winner];
        assert_eq!(winner.terminate(), Some(0), "{round}: the winner exits 0");
        assert_lock_dir_empty_soon(&env, &round);
        assert!(port_is_free(port), "{round}: port free after stop");
    }
}

/// Stops `gateway run --port P` at `step` (the state lock's, the first one reached), SIGKILLs
/// it there, and starts a normal gateway on the same env and port: it must be ready at once.
/// What the kill leaves is a temp file (no lock), or a whole lock file naming the dead process;
/// the temp is swept by a start once older than the stale window.
#[cfg(feature = "failpoints")]
fn sigkill_at_step_then_restart(step: &str) {
    let _serial = serial();
    let mount = BindfsMount::new();
    let env = mount.env();
    let port = free_port();
    let port_arg = port.to_string();

    let mut crashing = env.command(&["run", "--port", &port_arg]);
    crashing.env("GATEWAY_FAILPOINT", step);
    let (crashed, stderr) = lockkit::Owner::spawn_with_stderr(crashing);
    let reached = format!("failpoint {step} reached");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match stderr.recv_timeout(left) {
            Ok(line) if line == reached => break,
            Ok(_) => {}
            Err(_) => panic!("{step}: no {reached:?} line"),
        }
    }
    let temps = |entries: &[String]| -> Vec<String> {
        entries
            .iter()
            .filter(|name| name.starts_with(".gateway.state.lock.") && name.ends_with(".tmp"))
            .cloned()
            .collect()
    };
    let published = matches!(step, "after-link" | "after-name-beacon");
    let entries = env.lock_dir_entries();
    let expected = if published {
        vec![".gateway.state.lock.", "gateway.state.lock"]
    } else {
        vec![".gateway.state.lock."]
    };
    assert_eq!(
        entries.len(),
        expected.len(),
        "{step}: {entries:?} (expected {expected:?})"
    );
    assert_eq!(
        temps(&entries).len(),
        1,
        "{step}: one temp file: {entries:?}"
    );
    if published {
        assert_eq!(read_payload(&env.state_lock()).pid, crashed.pid, "{step}");
    }
    drop(crashed); // SIGKILL, reaped
    let left_behind = env.lock_dir_entries();
    let leftover = temps(&left_behind);

    let started = Instant::now();
    let restarted = GatewayProcess::spawn(env.command(&["run", "--port", &port_arg]))
        .unwrap_or_else(|err| {
            panic!(
                "{step}: the restart after SIGKILL failed after {:?} (left behind {left_behind:?}): {err}",
                started.elapsed()
            )
        });
    let took = started.elapsed();
    assert!(
        took < RESTART_BUDGET,
        "{step}: the restart after SIGKILL took {took:?}, more than {RESTART_BUDGET:?}"
    );
    assert!(healthy(port), "{step}: the restarted gateway answers");
    let mut expected = lock_names(&env);
    expected.extend(leftover.iter().cloned());
    expected.sort();
    assert_eq!(
        env.lock_dir_entries(),
        expected,
        "{step}: only the new files"
    );
    assert_eq!(read_payload(&env.state_lock()).pid, restarted.pid);
    assert_eq!(read_payload(&env.config_lock()).pid, restarted.pid);
    assert_eq!(restarted.terminate(), 0);
    assert!(
        wait_until(Duration::from_secs(5), || env.lock_dir_entries()
            == leftover),
        "{step}: only the crash's temp file after stop: {:?}",
        env.lock_dir_entries()
    );

    // Older than the stale window, and without a beacon: the next start sweeps it. Both times:
    // bindfs ignores a change of the mtime alone (`UTIME_OMIT` for the atime).
    let temp = env.lock_dir().join(&leftover[0]);
    let aged = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&temp)
        .and_then(|file| {
            file.set_times(
                std::fs::FileTimes::new()
                    .set_accessed(aged)
                    .set_modified(aged),
            )
        })
        .expect("age the temp file");
    let age = std::fs::metadata(&temp)
        .unwrap()
        .modified()
        .unwrap()
        .elapsed();
    assert!(
        age.as_ref().is_ok_and(|age| *age > Duration::from_secs(30)),
        "{step}: aged {age:?}"
    );
    let next = env.start(&["--port", &port_arg]);
    assert_eq!(next.terminate(), 0);
    assert_lock_dir_empty_soon(&env, &format!("{step}: the stale temp file swept"));
}

#[cfg(feature = "failpoints")]
#[test]
fn sigkill_after_create_then_restart_at_once() {
    sigkill_at_step_then_restart("after-create");
}

#[cfg(feature = "failpoints")]
#[test]
fn sigkill_after_beacon_then_restart_at_once() {
    sigkill_at_step_then_restart("after-beacon");
}

#[cfg(feature = "failpoints")]
#[test]
fn sigkill_after_write_then_restart_at_once() {
    sigkill_at_step_then_restart("after-write");
}

/// Published, the beacon still on the temp file only.
#[cfg(feature = "failpoints")]
#[test]
fn sigkill_after_link_then_restart_at_once() {
    sigkill_at_step_then_restart("after-link");
}

/// Published and locked through its name, the temp file closed but not yet removed.
#[cfg(feature = "failpoints")]
#[test]
fn sigkill_after_name_beacon_then_restart_at_once() {
    sigkill_at_step_then_restart("after-name-beacon");
}

// ---------------------------------------------------------------------------------------------
// 3. Knowing the ground
// ---------------------------------------------------------------------------------------------

/// `status` (text and JSON) and the one line logged at acquire name the FUSE file system under
/// the lock dir and say its locks are not seen from other hosts; the log line is a warning. A
/// mount without a subtype is plain `fuse`, and judged the same.
#[test]
fn status_and_acquire_say_locks_here_are_not_seen_from_other_hosts() {
    let _serial = serial();
    for (options, fs_type) in [
        (&["-o", "subtype=bindfs"][..], "fuse.bindfs"),
        (&[][..], "fuse"),
    ] {
        let mount = BindfsMount::with_options(options);
        let env = mount.env();
        let mountpoint = mount.mountpoint.canonicalize().unwrap();
        let described = format!(
            "{fs_type} at {} from {}: not coherent across hosts (locks are local to each client)",
            mountpoint.display(),
            mount.source.display()
        );

        let output = env.command(&["status", "--json"]).output().unwrap();
        let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            value["ground"],
            serde_json::json!({
                "fsType": fs_type,
                "mountPoint": mountpoint,
                "source": mount.source,
                "lockOptions": [],
                "locks": "notCoherent",
            }),
            "{fs_type}"
        );
        let output = env.command(&["status"]).output().unwrap();
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            format!("gateway not running\nlock dir on {described}\n"),
            "{fs_type}"
        );

        let (logger, lines) = recording_logger();
        let lock = acquire_guarded(&env.options().port(0).logger(logger)).unwrap();
        let logged = lines.lock().unwrap().clone();
        let grounds: Vec<_> = logged
            .iter()
            .filter(|(_, line)| line.starts_with("lock dir "))
            .collect();
        assert_eq!(
            grounds.len(),
            1,
            "{fs_type}: one line names the ground: {logged:?}"
        );
        let (level, line) = grounds[0];
        assert_eq!(*level, gateway::LogLevel::Warn, "{fs_type}");
        let prefix = format!("lock dir {} is on {described}; ", env.lock_dir().display());
        assert!(line.starts_with(&prefix), "{fs_type}: {line:?}");
        assert!(
            line.contains("OPENCLAW_STATE_DIR"),
            "says what to do: {line:?}"
        );
        drop(lock);

        // `gateway run`'s default logger shows warnings: the user sees it.
        let gateway = env.start(&["--port", "0"]);
        assert!(
            gateway
                .wait_stderr(&prefix, Duration::from_secs(10))
                .is_some(),
            "{fs_type}: gateway run warns about the ground"
        );
        assert_eq!(gateway.terminate(), 0);
        assert_lock_dir_empty_soon(&env, fs_type);
    }
}
