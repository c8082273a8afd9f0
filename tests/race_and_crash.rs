//! Races and crashes with real processes: sixteen gateways released at once on one config and
//! one port (over clean ground and over every kind of left-over lock file), SIGKILL at every
//! step of acquisition, and a restart over the open connections of a killed gateway.

mod common;
mod lockkit;
mod race;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use lockkit::{dead_pid, start_time_of, write_lock};
use race::*;

/// How many gateways start at once in a race.
const RACERS: usize = 16;

/// A restart over what a crash left behind must be this quick: a normal start takes tens of
/// milliseconds, while waiting for the lock costs the whole 5 s timeout. Half of that, so a
/// loaded 2-core machine that is slow to start a process does not fail the test.
const RESTART_BUDGET: Duration = Duration::from_millis(2500);

/// The tests of this file measure start-up times and run sixteen processes at a time; on a
/// small machine they would skew each other, so they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A child process that is SIGKILLed and reaped on drop, so a failing test leaves nothing
/// running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The start race
// ---------------------------------------------------------------------------------------------

/// Exactly one racer serves on `port`; every other exited 1 saying who has the gateway. Returns
/// the index of the winner.
fn assert_one_winner(env: &TestEnv, racers: &[Racer], port: u16, round: &str) -> usize {
    let servers: Vec<usize> = (0..racers.len()).filter(|&i| racers[i].serving()).collect();
    assert_eq!(
        servers.len(),
        1,
        "{round}: exactly one gateway serves\n{}",
        describe(racers)
    );
    let winner = &racers[servers[0]];
    let (pid, ready_port) = winner.ready.unwrap();
    assert_eq!(
        pid,
        winner.pid(),
        "{round}: the ready line names the winner"
    );
    assert_eq!(
        ready_port, port,
        "{round}: the winner serves the asked port"
    );
    assert!(healthy(port), "{round}: the winner answers /healthz");

    let names_winner = |line: &String| {
        line.starts_with("Gateway failed to start: ")
            && (line.contains(&format!("(pid {pid})"))
                || line.contains(&format!("ws://127.0.0.1:{port}")))
    };
    for loser in racers.iter().filter(|r| r.pid() != pid) {
        assert_eq!(
            loser.status.and_then(|s| s.code()),
            Some(1),
            "{round}: a loser exits 1\n{}",
            describe(racers)
        );
        assert!(
            loser.errors.iter().any(names_winner),
            "{round}: loser {} names the winner (pid {pid}) or the port {port}: {:?}",
            loser.pid(),
            loser.errors
        );
    }

    let mut expected = vec![
        "gateway.state.lock".to_string(),
        file_name(&env.config_lock()),
    ];
    expected.sort();
    assert_eq!(
        env.lock_dir_entries(),
        expected,
        "{round}: the winner's files only"
    );
    for path in [env.state_lock(), env.config_lock()] {
        assert_eq!(
            recorded_pid(&path),
            Some(pid),
            "{round}: {} names the winner",
            path.display()
        );
    }
    servers[0]
}

/// Stops the winner with SIGTERM: exit 0, nothing left in the lock dir, the port free.
fn stop_winner(env: &TestEnv, racer: &mut Racer, port: u16, round: &str) {
    assert_eq!(racer.terminate(), Some(0), "{round}: the winner exits 0");
    assert!(
        env.lock_dir_entries().is_empty(),
        "{round}: lock dir empty after stop: {:?}",
        env.lock_dir_entries()
    );
    assert!(port_is_free(port), "{round}: port {port} free after stop");
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn recorded_pid(path: &Path) -> Option<u32> {
    let bytes = std::fs::read(path).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("pid")?.as_u64().map(|pid| pid as u32)
}

#[test]
fn start_race_has_exactly_one_winner() {
    let _serial = serial();
    let env = TestEnv::new();
    let port = free_port();
    let port_arg = port.to_string();
    for round in 1..=20 {
        let round = format!("round {round}");
        let mut racers = race(&env, RACERS, &["--port", &port_arg]);
        let winner = assert_one_winner(&env, &racers, port, &round);
        stop_winner(&env, &mut racers[winner], port, &round);
    }
}

/// What a previous gateway (or something else) left in the lock dir before a race.
#[derive(Debug, Clone, Copy)]
enum Seed {
    /// A full payload naming a pid that is not running.
    DeadPid,
    /// A full payload naming a live process with another start time. The process is not a
    /// gateway, but its argv0 (`openclaw-gateway`) says it is, so only the start time proves
    /// the pid was reused.
    LiveWrongStartTime,
    /// Bytes that are not JSON, the file older than the stale window.
    OldGarbage,
    /// An empty file older than the stale window.
    OldEmpty,
    /// Bytes that are not JSON, just written.
    YoungGarbage,
    /// An empty file, just created (a holder may be about to write it).
    YoungEmpty,
}

const GARBAGE: &[u8] = b"\x00\xff\xfe{not json at all\n\x7f";
const STALE_AGE: Duration = Duration::from_secs(60);

/// Writes the seed at both lock paths (state and config). Returns a live stand-in process when
/// the seed needs one.
fn seed(env: &TestEnv, seed: Seed, port: u16) -> Option<Reaped> {
    let mut stand_in = None;
    let (bytes, age) = match seed {
        Seed::DeadPid => (payload(env, dead_pid(), 12345, port), None),
        Seed::LiveWrongStartTime => {
            let child = Command::new("sleep")
                .arg0("openclaw-gateway")
                .arg("60")
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn sleep");
            let pid = child.id();
            // The kernel fills argv in a moment after the exec that ended `spawn`; read as the
            // library reads it (/proc/<pid>/cmdline on Linux, KERN_PROCARGS2 on macOS).
            let argv = || gateway::test_support::process_argv(pid).unwrap_or_default();
            assert!(
                wait_until(Duration::from_secs(2), || argv()
                    .first()
                    .map(String::as_str)
                    == Some("openclaw-gateway")),
                "the stand-in looks like a gateway: {:?}",
                argv()
            );
            let wrong = start_time_of(pid) + 1;
            stand_in = Some(Reaped(child));
            (payload(env, pid, wrong, port), None)
        }
        Seed::OldGarbage => (GARBAGE.to_vec(), Some(STALE_AGE)),
        Seed::OldEmpty => (Vec::new(), Some(STALE_AGE)),
        Seed::YoungGarbage => (GARBAGE.to_vec(), None),
        Seed::YoungEmpty => (Vec::new(), None),
    };
    for path in [env.state_lock(), env.config_lock()] {
        write_lock(&path, "");
        std::fs::write(&path, &bytes).unwrap();
        if let Some(age) = age {
            set_age(&path, age);
        }
    }
    stand_in
}

fn payload(env: &TestEnv, pid: u32, start_time: u64, port: u16) -> Vec<u8> {
    serde_json::to_vec_pretty(&serde_json::json!({
        "pid": pid,
        "ownerId": "8a8c910f-4aa7-4540-ae8c-043ba516014d",
        "cronOwnerProjection": "dynamic-default-v1",
        "createdAt": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "configPath": env.config_path(),
        "stateDir": env.state_dir(),
        "port": port,
        "startTime": start_time,
    }))
    .unwrap()
}

/// Sets the file's mtime `age` in the past.
fn set_age(path: &Path, age: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn start_race_over_reclaimable_lock_files_has_exactly_one_winner() {
    let _serial = serial();
    let env = TestEnv::new();
    let port = free_port();
    let port_arg = port.to_string();
    for kind in [
        Seed::DeadPid,
        Seed::LiveWrongStartTime,
        Seed::OldGarbage,
        Seed::OldEmpty,
    ] {
        for round in 1..=3 {
            let round = format!("{kind:?} round {round}");
            let mut stand_in = seed(&env, kind, port);
            let mut racers = race(&env, RACERS, &["--port", &port_arg]);
            let winner = assert_one_winner(&env, &racers, port, &round);
            stop_winner(&env, &mut racers[winner], port, &round);
            if let Some(stand_in) = stand_in.as_mut() {
                assert!(
                    stand_in.0.try_wait().unwrap().is_none(),
                    "{round}: the unrelated process is left alone"
                );
            }
        }
    }
}

#[test]
fn start_race_over_young_unreadable_lock_files_times_out() {
    let _serial = serial();
    let env = TestEnv::new();
    let port = free_port();
    let port_arg = port.to_string();
    let expected = "Gateway failed to start: gateway already running; lock timeout after 300ms";
    for kind in [Seed::YoungEmpty, Seed::YoungGarbage] {
        for round in 1..=3 {
            let round = format!("{kind:?} round {round}");
            seed(&env, kind, port);
            let seeded = std::fs::read(env.state_lock()).unwrap();
            let racers = race(
                &env,
                RACERS,
                &["--port", &port_arg, "--lock-timeout-ms", "300"],
            );
            for racer in &racers {
                assert_eq!(
                    racer.status.and_then(|s| s.code()),
                    Some(1),
                    "{round}: nobody may win over a young lock file\n{}",
                    describe(&racers)
                );
                assert!(
                    racer.errors.iter().any(|line| line == expected),
                    "{round}: pid {} says {expected:?}: {:?}",
                    racer.pid(),
                    racer.errors
                );
            }
            assert_eq!(
                std::fs::read(env.state_lock()).unwrap(),
                seeded,
                "{round}: the young file is left as it was"
            );
            let mut expected_entries = vec![
                "gateway.state.lock".to_string(),
                file_name(&env.config_lock()),
            ];
            expected_entries.sort();
            assert_eq!(
                env.lock_dir_entries(),
                expected_entries,
                "{round}: nothing taken, nothing added"
            );
            assert!(port_is_free(port), "{round}: nobody bound the port");
            std::fs::remove_file(env.state_lock()).unwrap();
            std::fs::remove_file(env.config_lock()).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. SIGKILL at every step of acquisition
// ---------------------------------------------------------------------------------------------

/// Stops `gateway run --port P` at `step`, SIGKILLs it there, and starts a normal gateway on the
/// same env and port: it must be ready at once, with no clean-up by anyone. `portable` forces
/// the publishing path used off Linux (a named temp file, then `link`).
#[cfg(feature = "failpoints")]
fn sigkill_at_step_then_restart(step: &str, portable: bool) {
    let _serial = serial();
    let env = TestEnv::new();
    let port = free_port();
    let port_arg = port.to_string();
    let command = |args: &[&str]| {
        let mut command = env.command(args);
        if portable {
            command.env("GATEWAY_FORCE_NAMED_TEMP", "1");
        }
        command
    };

    let mut crashing = command(&["run", "--port", &port_arg]);
    crashing
        .env("GATEWAY_FAILPOINT", step)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Reaped(crashing.spawn().expect("spawn gateway"));
    let crashed_pid = child.0.id();
    let stderr = pipe_lines(child.0.stderr.take().unwrap());
    let _stdout = pipe_lines(child.0.stdout.take().unwrap());
    let reached = format!("failpoint {step} reached");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match stderr.recv_timeout(left) {
            Ok(line) if line == reached => break,
            Ok(_) => {}
            Err(_) => {
                let _ = child.0.kill();
                panic!("{step}: no {reached:?} line; status {:?}", child.0.wait());
            }
        }
    }

    // Where the kill lands. Before publication (the lock-file steps, state lock first) the
    // payload sits in an unnamed file, so the lock path never names an empty or half-written
    // file; after it, the files are whole and name the process about to die.
    let connect = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    let publishing = matches!(step, "after-create" | "after-beacon" | "after-write");
    let temps = |entries: &[String]| -> Vec<String> {
        entries
            .iter()
            .filter(|name| name.starts_with(".gateway.state.lock.") && name.ends_with(".tmp"))
            .cloned()
            .collect()
    };
    if publishing {
        let entries = env.lock_dir_entries();
        // Off Linux the named temp file is the only way (no O_TMPFILE).
        let expected_temps = usize::from(portable || !cfg!(target_os = "linux"));
        assert_eq!(
            (entries.len(), temps(&entries).len()),
            (expected_temps, expected_temps),
            "{step}: nothing is published at a lock path before the payload is whole: {entries:?}"
        );
    } else {
        assert_eq!(recorded_pid(&env.state_lock()), Some(crashed_pid));
        assert_eq!(recorded_pid(&env.config_lock()), Some(crashed_pid));
        // Bound but not listening refuses; listening queues the connection.
        assert_eq!(
            connect.is_ok(),
            step == "after-listen",
            "{step}: {connect:?}"
        );
    }

    child.0.kill().expect("SIGKILL");
    child.0.wait().expect("reap");
    let left_behind = env.lock_dir_entries();
    if !publishing {
        assert_eq!(
            left_behind.len(),
            2,
            "{step}: SIGKILL leaves both lock files behind: {left_behind:?}"
        );
    }

    let started = Instant::now();
    let restarted = GatewayProcess::spawn(command(&["run", "--port", &port_arg]))
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
    assert_eq!(restarted.port, port);
    assert!(
        healthy(port),
        "{step}: the restarted gateway answers /healthz"
    );
    // A temp file left by the crash is not a lock; it is swept once older than the stale window.
    let leftover = temps(&left_behind);
    let mut expected = vec![
        "gateway.state.lock".to_string(),
        file_name(&env.config_lock()),
    ];
    expected.extend(leftover.iter().cloned());
    expected.sort();
    assert_eq!(
        env.lock_dir_entries(),
        expected,
        "{step}: only the new files"
    );
    assert_eq!(recorded_pid(&env.state_lock()), Some(restarted.pid));
    assert_eq!(recorded_pid(&env.config_lock()), Some(restarted.pid));
    drop(connect);
    assert_eq!(restarted.terminate(), 0);
    assert_eq!(
        env.lock_dir_entries(),
        leftover,
        "{step}: lock dir empty after stop (but for a crash's temp file)"
    );
    assert!(port_is_free(port), "{step}: port free after stop");
    if let Some(temp) = leftover.first() {
        set_age(&env.lock_dir().join(temp), Duration::from_secs(60));
        let next = GatewayProcess::spawn(command(&["run", "--port", &port_arg])).unwrap();
        assert_eq!(next.terminate(), 0);
        assert!(
            env.lock_dir_entries().is_empty(),
            "{step}: a stale temp file is swept by the next start"
        );
    }
}

#[cfg(feature = "failpoints")]
#[test]
fn sigkill_after_create_then_restart_at_once() {
    sigkill_at_step_then_restart("after-create", false);
}

#[cfg(feature = "failpoints")]
#[test]
fn sigkill_after_create_then_restart_at_once_portable() {
    sigkill_at_step_then_restart("after-create", true);
}

#[cfg(feature = "failpoints")]
#[test]
fn sigkill_after_beacon_then_restart_at_once() {
    sigkill_at_step_then_restart("after-beacon", false);
}

#[cfg(feature = "failpoints")]
#[test]
fn sigkill_after_beacon_then_restart_at_once_portable() {
    sigkill_at_step_then_restart("after-beacon", true);
}

#[cfg(feature = "failpoints")]
#[test]
fn sigkill_after_write_then_restart_at_once() {
    sigkill_at_step_then_restart("after-write", false);
}

#[cfg(feature = "failpoints")]
#[test]
fn sigkill_after_write_then_restart_at_once_portable() {
    sigkill_at_step_then_restart("after-write", true);
}

#[cfg(feature = "failpoints")]
#[test]
fn sigkill_after_bind_then_restart_at_once() {
    sigkill_at_step_then_restart("after-bind", false);
}

#[cfg(feature = "failpoints")]
#[test]
fn sigkill_after_bind_then_restart_at_once_portable() {
    sigkill_at_step_then_restart("after-bind", true);
}

#[cfg(feature = "failpoints")]
#[test]
fn sigkill_after_listen_then_restart_at_once() {
    sigkill_at_step_then_restart("after-listen", false);
}

#[cfg(feature = "failpoints")]
#[test]
fn sigkill_after_listen_then_restart_at_once_portable() {
    sigkill_at_step_then_restart("after-listen", true);
}

// ---------------------------------------------------------------------------------------------
// 6. Restart right after SIGKILL while clients hold connections to the old gateway
// ---------------------------------------------------------------------------------------------

/// Kernels before 6.10 refuse `linkat(AT_EMPTY_PATH)` to callers without CAP_DAC_READ_SEARCH
/// (ENOENT), which on Debian 12's kernel is every non-root user: the lock files are then linked
/// through `/proc/self/fd`. The `linkat` calls are traced, so the test sees which way each name
/// was given.
#[test]
#[cfg(target_os = "linux")] // linkat(AT_EMPTY_PATH) and strace are Linux's
fn lock_files_are_linked_through_proc_where_empty_path_links_are_refused() {
    use std::os::unix::fs::MetadataExt;
    for refused in [false, true] {
        let env = TestEnv::new();
        let trace = env.home().join("linkat.trace");
        let trace_arg = trace.to_str().unwrap();
        let mut command = wrapped(
            &env.command(&["run", "--port", "0"]),
            "strace",
            &["-f", "-e", "trace=linkat", "-o", trace_arg],
        );
        if refused {
            command.env("GATEWAY_FORCE_PROC_LINK", "1");
        }
        let mut traced = Reaped(
            command
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("strace runs (apt-get install strace)"),
        );
        let ready = pipe_lines(traced.0.stdout.take().unwrap())
            .recv_timeout(Duration::from_secs(10))
            .expect("the traced gateway is ready");
        let (pid, port) = parse_ready_line(&ready).unwrap();
        assert!(healthy(port), "refused={refused}");
        let state = std::fs::metadata(env.state_lock()).unwrap();
        let config = std::fs::metadata(env.config_lock()).unwrap();
        assert_eq!(
            (state.ino(), state.nlink()),
            (config.ino(), 2),
            "one inode, two names"
        );
        let payload: serde_json::Value =
            serde_json::from_slice(&std::fs::read(env.state_lock()).unwrap()).unwrap();
        assert_eq!(payload["pid"], pid);

        // SAFETY: signalling the gateway, a process of this test.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        let status = wait_with_timeout(&mut traced.0, Duration::from_secs(10));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "refused={refused}");
        assert!(env.lock_dir_entries().is_empty());

        let trace = std::fs::read_to_string(&trace).unwrap();
        let count = |needle: &str| trace.lines().filter(|line| line.contains(needle)).count();
        let (through_proc, empty_path) = (count("\"/proc/self/fd/"), count("AT_EMPTY_PATH"));
        if refused {
            assert_eq!((through_proc, empty_path), (2, 0), "{trace}");
        } else {
            assert_eq!((through_proc, empty_path), (0, 2), "{trace}");
        }
    }
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Reads one keep-alive `/healthz` response (its body ends the JSON object).
fn read_health_response(stream: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 1024];
    while !raw.ends_with(b"\"live\"}") {
        let n = stream.read(&mut chunk).expect("the old gateway answers");
        assert!(n > 0, "the old gateway closed a keep-alive connection");
        raw.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&raw).into_owned()
}

#[test]
fn restart_after_sigkill_with_open_client_connections() {
    let _serial = serial();
    let env = TestEnv::new();
    let port = free_port();
    let port_arg = port.to_string();
    let old = env.start(&["--port", &port_arg]);

    // Keep-alive clients that got an answer and keep the connection open.
    let mut answered: Vec<TcpStream> = (0..3).map(|_| connect(port)).collect();
    for stream in &mut answered {
        write!(
            stream,
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: keep-alive\r\n\r\n"
        )
        .unwrap();
        let response = read_health_response(stream);
        assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    }
    // Clients in the middle of a request: headers not finished.
    let mut halfway: Vec<TcpStream> = (0..3).map(|_| connect(port)).collect();
    for stream in &mut halfway {
        write!(
            stream,
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        )
        .unwrap();
    }
    // Clients that connected and said nothing.
    let idle: Vec<TcpStream> = (0..3).map(|_| connect(port)).collect();
    assert!(healthy(port));

    old.sigkill();
    // The kernel closed the killed gateway's side of each connection while our side stays open:
    // its sockets linger in FIN_WAIT2 on the gateway's port, which a plain bind would trip over.
    assert!(
        wait_until(Duration::from_secs(5), || tcp_sockets_on(port)
            .iter()
            .any(|socket| socket.state == TCP_FIN_WAIT2)),
        "no lingering server-side socket on port {port}: {:?}",
        tcp_sockets_on(port)
    );
    assert_eq!(
        env.lock_dir_entries().len(),
        2,
        "SIGKILL leaves both lock files"
    );

    let started = Instant::now();
    let new = env.start(&["--port", &port_arg]);
    let took = started.elapsed();
    assert!(
        took < RESTART_BUDGET,
        "the restart over open connections took {took:?}"
    );
    assert_eq!(new.port, port);
    assert!(healthy(port), "the new gateway answers /healthz");
    assert_eq!(recorded_pid(&env.state_lock()), Some(new.pid));

    // The old connections are dead, not adopted by the new gateway: they read EOF or a reset.
    for stream in answered.iter_mut().chain(&mut halfway) {
        let mut buf = [0u8; 256];
        match stream.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!(
                "an old connection got {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) => assert!(
                !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "an old connection hangs: {e}"
            ),
        }
    }
    assert!(
        healthy(port),
        "still serving while old clients hold their sockets"
    );

    assert_eq!(new.terminate(), 0);
    assert!(env.lock_dir_entries().is_empty());
    assert!(port_is_free(port));
    drop((answered, halfway, idle));
}
