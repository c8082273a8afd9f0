//! Gateways in other namespaces of the same host (SPEC §4, §6): in its own PID namespace a
//! recorded pid means nothing, so the kernel beacon is what refuses a second instance; in its
//! own network namespace the same port can be bound, so the lock file is what refuses it.
#![cfg(target_os = "linux")] // Linux namespaces (setns, /proc/<pid>/ns): Linux only.

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use common::*;

/// `unshare --pid --fork --mount-proc <command>`: pid 1 of a new PID namespace with its own
/// `/proc`.
fn in_new_pid_namespace(command: &Command) -> Command {
    wrapped(
        command,
        "unshare",
        &["--pid", "--fork", "--mount-proc", "--kill-child"],
    )
}

/// `unshare --net sh -c 'ip link set lo up && exec <command>'`: the same process (exec all the
/// way), alone in a new network namespace with its own loopback.
fn in_new_network_namespace(command: &Command) -> Command {
    wrapped(
        command,
        "unshare",
        &[
            "--net",
            "sh",
            "-c",
            r#"ip link set lo up && exec "$0" "$@""#,
        ],
    )
}

/// A process's network namespace, kept open (it outlives the process while open).
fn network_namespace_of(pid: u32) -> File {
    File::open(format!("/proc/{pid}/ns/net")).unwrap()
}

/// Runs `f` on a thread that has entered `namespace` (a thread's network namespace is its
/// own; the rest of the test process stays where it is).
fn in_network_namespace<T: Send>(namespace: &File, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns on an open namespace fd changes only this thread's namespace.
                let rc = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
    })
}

/// A holder of both lock files whose port does not answer: stopped (by the failpoint) after
/// binding its port and before listening on it, so connections are refused.
/// Killed on drop, like any [`GatewayProcess`].
fn silent_holder(env: &TestEnv, port: u16) -> GatewayProcess {
    let mut command = env.command(&["run", "--port", &port.to_string()]);
    command
        .env("GATEWAY_FAILPOINT", "after-bind")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stderr = pipe_lines(child.stderr.take().unwrap());
    let holder = GatewayProcess {
        pid: child.id(),
        port,
        child,
        stderr,
    };
    let line = holder.stderr.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(line, "failpoint after-bind reached");
    holder
}

#[test]
fn pid_namespace_instance_is_refused_by_the_beacon() {
    let env = TestEnv::new();
    let port = free_port();
    let holder = silent_holder(&env, port);
    let holder_pid = holder.pid;
    let locks_before = (
        std::fs::read(env.state_lock()).unwrap(),
        std::fs::read(env.config_lock()).unwrap(),
    );
    assert!(!healthy(port), "the holder must not answer /healthz");

    // In a new PID namespace the holder's pid names no process: only the beacon is left to
    // tell that it is alive.
    let mut probe = in_new_pid_namespace(&Command::new("sh"));
    probe.args([
        "-c",
        &format!("kill -0 {holder_pid} || test -e /proc/{holder_pid}"),
    ]);
    let exit = run_to_exit(probe, Duration::from_secs(10));
    assert_ne!(
        exit.code,
        Some(0),
        "pid {holder_pid} is visible in the namespace: {exit:?}"
    );

    let exit = run_to_exit(
        in_new_pid_namespace(&env.command(&[
            "run",
            "--port",
            &port.to_string(),
            "--lock-timeout-ms",
            "300",
        ])),
        Duration::from_secs(10),
    );
    assert_eq!(exit.code, Some(1), "{exit:?}");
    assert_eq!(
        exit.stderr_lines(),
        [format!(
            "Gateway failed to start: gateway already running (pid {holder_pid}); lock timeout after 300ms"
        )]
    );
    assert!(exit.stdout.is_empty(), "{exit:?}");
    // Nothing was reclaimed or replaced.
    let locks_after = (
        std::fs::read(env.state_lock()).unwrap(),
        std::fs::read(env.config_lock()).unwrap(),
    );
    assert_eq!(locks_before, locks_after);
    assert_eq!(env.lock_dir_entries().len(), 2);
    holder.sigkill();
}

#[test]
fn pid_namespace_instance_is_refused_at_once_by_a_healthy_holder() {
    let env = TestEnv::new();
    let holder = env.start(&["--port", &free_port().to_string()]);
    let exit = run_to_exit(
        in_new_pid_namespace(&env.command(&["run", "--port", &holder.port.to_string()])),
        Duration::from_secs(10),
    );
    assert_eq!(exit.code, Some(1), "{exit:?}");
    assert_eq!(
        exit.stderr_lines(),
        [format!(
            "Gateway failed to start: gateway already running (pid {}); it is healthy on ws://127.0.0.1:{}",
            holder.pid, holder.port
        )]
    );
    // Not the 5 s lock timeout.
    assert!(exit.elapsed < Duration::from_secs(2), "{exit:?}");
    assert!(healthy(holder.port));
}

/// `/proc/locks` leaves out locks whose owner it cannot name, so from a PID namespace with its
/// own `/proc` a holder outside is invisible there; `status` still sees it, without taking a
/// lock, and does not call a live holder's files stale.
#[test]
fn status_in_a_pid_namespace_sees_a_holder_outside_it() {
    let env = TestEnv::new();
    let port = free_port();
    let holder = silent_holder(&env, port);
    let exit = run_to_exit(
        in_new_pid_namespace(&env.command(&["status", "--json"])),
        Duration::from_secs(10),
    );
    let json: serde_json::Value =
        serde_json::from_str(&exit.stdout).unwrap_or_else(|e| panic!("{e}: {exit:?}"));
    // Running but not answering /healthz: exit 1.
    assert_eq!(exit.code, Some(1), "{json}");
    assert_eq!(json["running"], true, "{json}");
    assert_eq!(json["stale"], false, "{json}");
    assert_eq!(json["pid"], holder.pid, "{json}");
    assert_eq!(json["healthy"], false, "{json}");
    holder.sigkill();
}

#[test]
fn network_namespace_instance_on_the_same_state_dir_is_refused_by_the_lock() {
    let env = TestEnv::new();
    let holder = env.start(&["--port", &free_port().to_string()]);
    let port = holder.port.to_string();
    let locks_before = (
        std::fs::read(env.state_lock()).unwrap(),
        std::fs::read(env.config_lock()).unwrap(),
    );
    let exit = run_to_exit(
        in_new_network_namespace(&env.command(&[
            "run",
            "--port",
            &port,
            "--lock-timeout-ms",
            "300",
        ])),
        Duration::from_secs(10),
    );
    assert_eq!(exit.code, Some(1), "{exit:?}");
    // Its 127.0.0.1 is not ours, so the holder's /healthz cannot be reached from there: it
    // waits out the lock timeout, then says who holds the lock.
    assert_eq!(
        exit.stderr_lines(),
        [format!(
            "Gateway failed to start: gateway already running (pid {}); lock timeout after 300ms",
            holder.pid
        )]
    );
    assert!(exit.elapsed >= Duration::from_millis(300), "{exit:?}");
    assert!(exit.stdout.is_empty(), "{exit:?}");
    let locks_after = (
        std::fs::read(env.state_lock()).unwrap(),
        std::fs::read(env.config_lock()).unwrap(),
    );
    assert_eq!(locks_before, locks_after);
    assert!(healthy(holder.port));
}

#[test]
fn network_namespace_instance_with_its_own_state_dir_serves_on_the_same_port() {
    let env = TestEnv::new();
    let holder = env.start(&["--port", &free_port().to_string()]);
    let port = holder.port;
    let other = TestEnv::new();

    // The control: in our network namespace, another state dir is stopped by the port.
    let exit = run_to_exit(
        other.command(&["run", "--port", &port.to_string()]),
        Duration::from_secs(10),
    );
    assert_eq!(
        exit.stderr_lines(),
        [format!(
            "Gateway failed to start: another gateway instance is already listening on ws://127.0.0.1:{port}"
        )]
    );
    assert!(other.lock_dir_entries().is_empty());

    // In its own network namespace, the same port is free to bind: it serves.
    let namespaced = GatewayProcess::spawn(in_new_network_namespace(&other.command(&[
        "run",
        "--port",
        &port.to_string(),
    ])))
    .expect("the gateway serves in its own network namespace");
    assert_eq!(namespaced.port, port);
    let namespace = network_namespace_of(namespaced.pid);
    let answer = in_network_namespace(&namespace, || http(port, "GET", "/healthz"));
    let (status, _, body) = answer.unwrap();
    assert_eq!(
        (status, body.as_slice()),
        (200, &br#"{"ok":true,"status":"live"}"#[..])
    );
    let payload: serde_json::Value =
        serde_json::from_slice(&std::fs::read(other.state_lock()).unwrap()).unwrap();
    assert_eq!(payload["pid"], namespaced.pid);
    assert_eq!(payload["port"], port);

    // Two gateways on one port number, one per network namespace, each with its own lock.
    assert!(healthy(port));
    let payload: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.state_lock()).unwrap()).unwrap();
    assert_eq!(payload["pid"], holder.pid);

    assert_eq!(namespaced.terminate(), 0);
    assert!(other.lock_dir_entries().is_empty());
    // Its port in its namespace is closed; ours still serves.
    assert!(in_network_namespace(&namespace, || http(
        port, "GET", "/healthz"
    )
    .is_err()));
    assert!(healthy(port));
}
