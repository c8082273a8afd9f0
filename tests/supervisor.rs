//! Under a service manager (SPEC §7, §10): the exit codes and messages of a supervised
//! duplicate, the retries against an unhealthy incumbent, `READY=1` only once the port
//! answers, socket activation, and an embedding host's children after a SIGKILL.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
// Only the Linux-only socket activation tests use these.
#[cfg(target_os = "linux")]
use std::{
    io::Write,
    net::{Ipv4Addr, SocketAddr, TcpStream},
};

use common::*;

const SYSTEMD_DUPLICATE: &str = "gateway already running under systemd; existing gateway is healthy, exiting with code 78 to prevent a systemd Restart=always loop";

/// A datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
fn notify_socket(dir: &Path) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    (socket, path)
}

fn received(socket: &UnixDatagram, timeout: Duration) -> Option<String> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn systemd_duplicate_of_a_healthy_gateway_exits_78() {
    let env = TestEnv::new();
    let incumbent = env.start(&["--port", &free_port().to_string()]);
    let port = incumbent.port.to_string();
    let (notify, notify_path) = notify_socket(env.root.path());

    // Same config (a lock conflict) and another config on the same port (a port conflict).
    let other = TestEnv::new();
    for duplicate in [&env, &other] {
        let mut command = duplicate.command(&["run", "--port", &port]);
        command
            .env("INVOCATION_ID", "x")
            .env("NOTIFY_SOCKET", &notify_path);
        let exit = run_to_exit(command, Duration::from_secs(10));
        assert_eq!(exit.code, Some(78), "{exit:?}");
        assert_eq!(exit.stderr_lines(), [SYSTEMD_DUPLICATE], "{exit:?}");
        assert!(exit.stdout.is_empty(), "{exit:?}");
        // A duplicate never tells systemd it is ready.
        assert_eq!(received(&notify, Duration::from_millis(50)), None);
    }
    assert!(other.lock_dir_entries().is_empty());

    // Unsupervised, the same conflict is a plain failure.
    let exit = run_to_exit(
        env.command(&["run", "--port", &port]),
        Duration::from_secs(10),
    );
    assert_eq!(exit.code, Some(1), "{exit:?}");
    assert_eq!(
        exit.stderr_lines(),
        [format!(
            "Gateway failed to start: gateway already running (pid {}); it is healthy on ws://127.0.0.1:{port}",
            incumbent.pid
        )]
    );
    assert!(healthy(incumbent.port));
    assert_eq!(env.lock_dir_entries().len(), 2);
}

#[test]
fn launchd_duplicate_of_a_healthy_gateway_leaves_it_in_control() {
    let env = TestEnv::new();
    let incumbent = env.start(&["--port", &free_port().to_string()]);
    let exit = run_with(
        &env,
        &["run", "--port", &incumbent.port.to_string()],
        "XPC_SERVICE_NAME",
        "ai.openclaw.gateway",
    );
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let lines = exit.stderr_lines();
    assert_eq!(lines.len(), 1, "{exit:?}");
    assert!(
        lines[0].starts_with("gateway already running under launchd")
            && lines[0].ends_with("leaving it in control"),
        "{exit:?}"
    );
    assert!(exit.stdout.is_empty(), "{exit:?}");
    assert!(healthy(incumbent.port));
}

#[test]
fn a_gui_apps_xpc_service_name_is_not_launchd() {
    // Every process a GUI app starts (a terminal in an editor, Xcode, a Swift host) inherits
    // the app's XPC_SERVICE_NAME: that is not launchd running the gateway job, and a duplicate
    // fails at once instead of exiting 0 "leaving it in control".
    let env = TestEnv::new();
    let incumbent = env.start(&["--port", &free_port().to_string()]);
    let port = incumbent.port.to_string();
    for (name, value) in [
        ("XPC_SERVICE_NAME", "com.example.Editor"),
        (
            "XPC_SERVICE_NAME",
            "application.com.apple.dt.Xcode.12345.67890",
        ),
        ("LAUNCH_JOB_LABEL", "com.example.Editor"),
    ] {
        let exit = run_with(&env, &["run", "--port", &port], name, value);
        assert_eq!(exit.code, Some(1), "{name}={value}: {exit:?}");
        assert_eq!(
            exit.stderr_lines(),
            [format!(
                "Gateway failed to start: gateway already running (pid {}); it is healthy on ws://127.0.0.1:{port}",
                incumbent.pid
            )],
            "{name}={value}"
        );
    }
    // Nor does it retry against an unhealthy listener, as a supervised duplicate would.
    let other = TestEnv::new();
    let ((port, exit), _) = with_hanging_up_listener(|port| {
        let mut command = other.command(&[
            "run",
            "--port",
            &port.to_string(),
            "--supervised-retry-ms",
            "100",
            "--supervised-window-ms",
            "3000",
        ]);
        command.env("XPC_SERVICE_NAME", "com.example.Editor");
        (port, run_to_exit(command, Duration::from_secs(10)))
    });
    assert_eq!(exit.code, Some(1), "{exit:?}");
    assert_eq!(
        exit.stderr_lines(),
        [format!(
            "Gateway failed to start: another gateway instance is already listening on ws://127.0.0.1:{port}"
        )]
    );
    assert!(exit.elapsed < Duration::from_secs(2), "{exit:?}");
    assert!(healthy(incumbent.port));
}

#[test]
fn the_gateway_jobs_launchd_label_is_launchd() {
    // Node's rule (supervisor-markers-*.mjs): OPENCLAW_LAUNCHD_LABEL set; LAUNCH_JOB_LABEL or
    // LAUNCH_JOB_NAME equal to the profile's label; XPC_SERVICE_NAME equal to the default
    // job's label. A duplicate on the incumbent's port then leaves it in control.
    let env = TestEnv::new();
    let incumbent = env.start(&["--port", &free_port().to_string()]);
    let port = incumbent.port.to_string();
    let launchd_cases: [(&[&str], &str, &str); 5] = [
        (&[], "OPENCLAW_LAUNCHD_LABEL", "ai.openclaw.gateway"),
        (&[], "LAUNCH_JOB_LABEL", "ai.openclaw.gateway"),
        (&[], "LAUNCH_JOB_NAME", "ai.openclaw.gateway"),
        (
            &["--profile", "work"],
            "LAUNCH_JOB_LABEL",
            "ai.openclaw.work",
        ),
        (&["--dev"], "LAUNCH_JOB_LABEL", "ai.openclaw.dev"),
    ];
    for (args, name, value) in launchd_cases {
        let exit = run_with(
            &env,
            &[&["run", "--port", &port], args].concat(),
            name,
            value,
        );
        assert_eq!(exit.code, Some(0), "{args:?} {name}={value}: {exit:?}");
        assert_eq!(
            exit.stderr_lines(),
            [
                "gateway already running under launchd; existing gateway is healthy, leaving it in control"
            ],
            "{args:?} {name}={value}"
        );
    }
    // Another profile's label is not this job's; XPC_SERVICE_NAME counts only as the default
    // job's label (a profile's job also has OPENCLAW_LAUNCHD_LABEL, which Node's plist sets).
    let not_launchd: [(&[&str], &str, &str); 3] = [
        (&[], "LAUNCH_JOB_LABEL", "ai.openclaw.work"),
        (
            &["--profile", "work"],
            "LAUNCH_JOB_LABEL",
            "ai.openclaw.gateway",
        ),
        (
            &["--profile", "work"],
            "XPC_SERVICE_NAME",
            "ai.openclaw.work",
        ),
    ];
    for (args, name, value) in not_launchd {
        let exit = run_with(
            &env,
            &[&["run", "--port", &port], args].concat(),
            name,
            value,
        );
        assert_eq!(exit.code, Some(1), "{args:?} {name}={value}: {exit:?}");
    }
    assert!(healthy(incumbent.port));
}

/// `gateway ARGS` run to its exit with the variable `name` set to `value`, as a service
/// manager (or an app) would set it.
fn run_with(env: &TestEnv, args: &[&str], name: &str, value: &str) -> Exit {
    let mut command = env.command(args);
    command.env(name, value);
    run_to_exit(command, Duration::from_secs(10))
}

/// A listener that accepts and hangs up at once: the port is taken, `/healthz` never answers.
fn with_hanging_up_listener<T>(run: impl FnOnce(u16) -> T) -> (T, usize) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = AtomicBool::new(false);
    let accepted = AtomicUsize::new(0);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        let result = run(port);
        stop.store(true, Ordering::Release);
        result
    });
    (result, accepted.into_inner())
}

#[test]
fn supervised_conflict_with_an_unhealthy_listener_retries_then_exits_1() {
    let env = TestEnv::new();
    let (exit, probes) = with_hanging_up_listener(|port| {
        let mut command = env.command(&[
            "run",
            "--port",
            &port.to_string(),
            "--supervised-retry-ms",
            "100",
            "--supervised-window-ms",
            "500",
        ]);
        command.env("INVOCATION_ID", "x");
        (port, run_to_exit(command, Duration::from_secs(10)))
    });
    let (port, exit) = exit;
    assert_eq!(exit.code, Some(1), "{exit:?}");
    let in_use = format!("another gateway instance is already listening on ws://127.0.0.1:{port}");
    let retry =
        format!("gateway: {in_use}; the running gateway is not healthy, retrying in 100 ms");
    let lines = exit.stderr_lines();
    let (last, retries) = lines.split_last().unwrap();
    assert_eq!(
        *last,
        format!("Gateway failed to start: {in_use}"),
        "{exit:?}"
    );
    assert!(retries.iter().all(|line| *line == retry), "{exit:?}");
    // About every 100 ms for 500 ms (a loaded machine may manage only two attempts).
    assert!((2..=6).contains(&retries.len()), "{exit:?}");
    assert!(exit.elapsed >= Duration::from_millis(400), "{exit:?}");
    assert!(exit.elapsed < Duration::from_secs(3), "{exit:?}");
    // Each attempt asked the incumbent for /healthz.
    assert!(probes > retries.len(), "{probes} probes for {exit:?}");
    assert!(exit.stdout.is_empty(), "{exit:?}");
    assert!(env.lock_dir_entries().is_empty());
}

#[test]
fn supervised_conflict_with_a_silent_listener_is_bounded_by_the_probe_timeout() {
    // Never accepted: connections sit in the backlog and /healthz times out (1 s).
    let env = TestEnv::new();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut command = env.command(&[
        "run",
        "--port",
        &port.to_string(),
        "--supervised-retry-ms",
        "100",
        "--supervised-window-ms",
        "1500",
    ]);
    command.env("INVOCATION_ID", "x");
    let exit = run_to_exit(command, Duration::from_secs(10));
    assert_eq!(exit.code, Some(1), "{exit:?}");
    let lines = exit.stderr_lines();
    assert!(
        lines[0].ends_with("the running gateway is not healthy, retrying in 100 ms"),
        "{exit:?}"
    );
    assert_eq!(
        *lines.last().unwrap(),
        format!(
            "Gateway failed to start: another gateway instance is already listening on ws://127.0.0.1:{port}"
        )
    );
    // One or two 1 s probes, not the 5 s of a lock timeout nor a hang.
    assert!(exit.elapsed >= Duration::from_millis(1000), "{exit:?}");
    assert!(exit.elapsed < Duration::from_millis(3500), "{exit:?}");
}

#[test]
fn unsupervised_conflict_exits_1_at_once() {
    let env = TestEnv::new();
    let ((port, exit), _) = with_hanging_up_listener(|port| {
        let command = env.command(&[
            "run",
            "--port",
            &port.to_string(),
            "--supervised-retry-ms",
            "100",
            "--supervised-window-ms",
            "500",
        ]);
        (port, run_to_exit(command, Duration::from_secs(10)))
    });
    assert_eq!(exit.code, Some(1), "{exit:?}");
    assert_eq!(
        exit.stderr_lines(),
        [format!(
            "Gateway failed to start: another gateway instance is already listening on ws://127.0.0.1:{port}"
        )]
    );
    // No retry line above; and well before the 500 ms window would have ended on a machine
    // that is not loaded (a loaded one may take a second to start a process).
    assert!(exit.elapsed < Duration::from_secs(2), "{exit:?}");
}

/// What is in a pipe right now, without waiting for more.
fn drain_pipe_now(pipe: &mut std::process::ChildStdout) -> String {
    use std::os::fd::AsRawFd;
    // SAFETY: F_SETFL on a pipe we own changes only its flags.
    unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = pipe.read(&mut chunk) {
        bytes.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Runs `gateway run` with `$NOTIFY_SOCKET` set and checks what holds when `READY=1` arrives:
/// the ready line (printed once serving) is already written, `/healthz` answers, the lock
/// files exist. Then `STOPPING=1` on SIGTERM.
fn ready_only_once_serving(notify_socket: &std::ffi::OsStr, notify: &UnixDatagram) {
    let env = TestEnv::new();
    let port = free_port();
    let mut command = env.command(&["run", "--port", &port.to_string()]);
    command
        .env("NOTIFY_SOCKET", notify_socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ReapOnDrop(command.spawn().unwrap());
    let mut stdout = child.0.stdout.take().unwrap();
    let _stderr = pipe_lines(child.0.stderr.take().unwrap());

    let first = received(notify, Duration::from_secs(10));
    // Nothing between the datagram and these checks but the checks themselves. What the
    // gateway wrote before sending the datagram is in the pipe by now.
    let written = drain_pipe_now(&mut stdout);
    let answered = gateway::test_support::healthz(port, Duration::from_secs(1));
    let lock_files = env.lock_dir_entries().len();
    assert_eq!(first.as_deref(), Some("READY=1"));
    assert_eq!(
        parse_ready_line(written.trim_end()),
        Some((child.0.id(), port)),
        "READY=1 came before the gateway was serving: stdout {written:?}"
    );
    assert!(answered, "READY=1 came before /healthz answered");
    assert_eq!(
        lock_files, 2,
        "READY=1 came before the lock files were written"
    );

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(
        received(notify, Duration::from_secs(10)).as_deref(),
        Some("STOPPING=1")
    );
    let status = wait_with_timeout(&mut child.0, Duration::from_secs(10)).unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(port_is_free(port));
    assert!(env.lock_dir_entries().is_empty());
}

#[test]
fn ready_is_sent_on_a_path_notify_socket_only_once_the_port_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (notify, path) = notify_socket(dir.path());
    ready_only_once_serving(path.as_os_str(), &notify);
}

#[test]
#[cfg(target_os = "linux")] // abstract Unix socket names are Linux's
fn ready_is_sent_on_an_abstract_notify_socket_only_once_the_port_answers() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("gateway-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let notify = UnixDatagram::bind_addr(&addr).unwrap();
    ready_only_once_serving(std::ffi::OsStr::new(&format!("@{name}")), &notify);
}

/// The inode of the socket listening on `127.0.0.1:<port>`, from `/proc/net/tcp`.
#[cfg(target_os = "linux")] // /proc/net/tcp
fn listening_socket_inode(port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
            .then(|| fields[9].to_owned())
    })
}

/// `systemd-socket-activate [extra] -l 127.0.0.1:<port> <gateway command>`, once it listens:
/// the child, its stdout and its stderr lines.
#[cfg(target_os = "linux")] // systemd-socket-activate is systemd's
fn socket_activated(
    gateway: &Command,
    extra: &[&str],
    port: u16,
) -> (
    ReapOnDrop,
    std::sync::mpsc::Receiver<String>,
    std::sync::mpsc::Receiver<String>,
) {
    let listen = format!("127.0.0.1:{port}");
    let args: Vec<&str> = extra.iter().copied().chain(["-l", &listen]).collect();
    let mut child = ReapOnDrop(
        wrapped(gateway, "systemd-socket-activate", &args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = pipe_lines(child.0.stdout.take().unwrap());
    let stderr = pipe_lines(child.0.stderr.take().unwrap());
    let listening = format!("Listening on {listen} as 3.");
    let deadline = Instant::now() + Duration::from_secs(10);
    while stderr.recv_timeout(deadline - Instant::now()).unwrap() != listening {}
    (child, stdout, stderr)
}

#[test]
#[cfg(target_os = "linux")] // systemd-socket-activate, and /proc/<pid>/fd for the passed socket
fn socket_activation_serves_on_the_passed_socket() {
    let env = TestEnv::new();
    let port = free_port();
    // No --port: the port is the passed socket's.
    let (mut child, stdout, _stderr) = socket_activated(&env.command(&["run"]), &[], port);
    let socket_inode = listening_socket_inode(port).expect("systemd-socket-activate listens");

    // systemd-socket-activate starts the gateway on the first connection; the gateway must
    // answer this one, queued on the passed socket before the gateway existed.
    let mut early = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).unwrap();
    early
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        early,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    early.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(
        response.ends_with(r#"{"ok":true,"status":"live"}"#),
        "{response}"
    );

    let line = stdout.recv_timeout(Duration::from_secs(10)).unwrap();
    let pid = child.0.id();
    assert_eq!(parse_ready_line(&line), Some((pid, port)), "{line}");
    assert!(healthy(port));
    // The listener is the socket passed as fd 3, and nothing else listens on the port.
    let socket = format!("socket:[{socket_inode}]");
    let holds_it = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .any(|target| target.to_string_lossy() == socket);
    assert!(holds_it, "the gateway holds the passed socket {socket}");
    assert_eq!(listening_socket_inode(port), Some(socket_inode));
    // The file locks are taken all the same, recording the passed socket's port.
    assert_eq!(env.lock_dir_entries().len(), 2);
    for lock in [env.state_lock(), env.config_lock()] {
        let payload: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&lock).unwrap()).unwrap();
        assert_eq!(payload["pid"], pid, "{}", lock.display());
        assert_eq!(payload["port"], port, "{}", lock.display());
    }

    // SAFETY: signalling our own child (systemd-socket-activate exec'd the gateway in place).
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let status = wait_with_timeout(&mut child.0, Duration::from_secs(10)).unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(port_is_free(port));
    assert!(env.lock_dir_entries().is_empty());
}

/// A supervised, socket-activated gateway that meets a holder that does not answer retries,
/// and every retry serves on the socket systemd passed: a failed attempt must not close it.
#[cfg(feature = "failpoints")]
#[test]
#[cfg(target_os = "linux")] // systemd-socket-activate is systemd's
fn socket_activation_keeps_the_passed_socket_across_supervised_retries() {
    let env = TestEnv::new();
    // The holder: both lock files, its own port listening, never answering /healthz.
    let holder_port = free_port().to_string();
    let mut holder = env.command(&["run", "--port", &holder_port]);
    holder
        .env("GATEWAY_FAILPOINT", "after-listen")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut holder = ReapOnDrop(holder.spawn().unwrap());
    let holder_stderr = pipe_lines(holder.0.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while holder_stderr
        .recv_timeout(deadline - Instant::now())
        .unwrap()
        != "failpoint after-listen reached"
    {}

    // The activated gateway: its --port would be another port if it ever bound one itself.
    let passed = free_port();
    let own_port = free_port().to_string();
    let inner = env.command(&[
        "run",
        "--port",
        &own_port,
        "--lock-timeout-ms",
        "200",
        "--supervised-retry-ms",
        "100",
        "--supervised-window-ms",
        "20000",
    ]);
    // systemd-socket-activate passes the service manager's marker only when told to.
    let (mut child, stdout, stderr) =
        socket_activated(&inner, &["-E", "INVOCATION_ID=test"], passed);
    // The first connection starts the gateway; it stays queued on the passed socket.
    let mut early = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, passed))).unwrap();
    early
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        early,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{passed}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // Two refused attempts, then the holder dies and the next attempt wins.
    for _ in 0..2 {
        while !stderr
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .contains("retrying in 100 ms")
        {}
    }
    drop(holder);

    let line = stdout.recv_timeout(Duration::from_secs(15)).unwrap();
    assert_eq!(
        parse_ready_line(&line),
        Some((child.0.id(), passed)),
        "serves on the passed socket: {line}"
    );
    let mut response = String::new();
    early.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(port_is_free(own_port.parse().unwrap()));
    // SAFETY: signalling our own child (systemd-socket-activate exec'd the gateway in place).
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    let status = wait_with_timeout(&mut child.0, Duration::from_secs(10)).unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(port_is_free(passed));
    assert!(env.lock_dir_entries().is_empty());
}

const HOST_STATE_DIR: &str = "GATEWAY_TEST_HOST_STATE_DIR";
const HOST_PORT: &str = "GATEWAY_TEST_HOST_PORT";

/// Not a test: the embedding host of the next test, which runs this binary again with
/// `--exact embedding_host_role --ignored`. It takes the lock and serves through the library,
/// spawns a child the way any host does, says so, and waits to be killed.
#[test]
#[ignore = "the host process of child_of_a_killed_host_holds_neither_lock_nor_port"]
fn embedding_host_role() {
    let Some(state_dir) = std::env::var_os(HOST_STATE_DIR) else {
        return;
    };
    let state_dir = std::path::PathBuf::from(state_dir);
    let port: u16 = std::env::var(HOST_PORT).unwrap().parse().unwrap();
    let options = gateway::GatewayOptions::new()
        .config_path(state_dir.join("openclaw.json"))
        .state_dir(state_dir)
        .port(port);
    let lock = gateway::GatewayLock::acquire(&options).unwrap();
    let gateway = gateway::Gateway::serve(lock, gateway::ServeOptions::default()).unwrap();
    // std::process::Command closes nothing: only close-on-exec keeps our fds out of it.
    // Never waited for: this process is SIGKILLed, and the child outlives it on purpose.
    #[allow(clippy::zombie_processes)]
    let child = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    println!("host ready port={} child={}", gateway.port(), child.id());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The descriptors a process has open, as `/proc/<pid>/fd` links.
#[cfg(not(target_os = "macos"))]
fn open_fds(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|entry| {
            std::fs::read_link(entry.unwrap().path())
                .map(|target| target.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// macOS: the files a process has open, from `lsof -Ftn`, written as Linux's
/// `/proc/<pid>/fd` links would be where it matters here: a socket as `socket:<type> <name>`,
/// anything else as its path.
#[cfg(target_os = "macos")]
fn open_fds(pid: u32) -> Vec<String> {
    let output = Command::new("/usr/sbin/lsof")
        .args(["-n", "-P", "-w", "-Ftn", "-p", &pid.to_string()])
        .output()
        .expect("run /usr/sbin/lsof");
    assert!(output.status.success(), "lsof -p {pid}: {output:?}");
    // One record per file: an `f` line, then `t<type>` and `n<name>`.
    let mut fds = Vec::new();
    let mut kind = String::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some(rest) = line.strip_prefix('t') {
            kind = rest.to_owned();
        } else if let Some(name) = line.strip_prefix('n') {
            fds.push(match kind.as_str() {
                "IPv4" | "IPv6" | "unix" | "systm" => format!("socket:{kind} {name}"),
                _ => name.to_owned(),
            });
        } else if line.starts_with('f') {
            kind.clear();
        }
    }
    fds
}

#[test]
fn child_of_a_killed_host_holds_neither_lock_nor_port() {
    let env = TestEnv::new();
    let port = free_port();
    let mut host = ReapOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "embedding_host_role", "--ignored", "--nocapture"])
            .env(HOST_STATE_DIR, env.state_dir())
            .env(HOST_PORT, port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines = pipe_lines(host.0.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    let ready = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the host says it is ready");
        if let Some(rest) = line.strip_prefix("host ready ") {
            break rest.to_owned();
        }
    };
    assert_eq!(
        ready.split_once(" child=").map(|(p, _)| p.to_owned()),
        Some(format!("port={port}"))
    );
    let sleeper: u32 = ready.rsplit_once("child=").unwrap().1.parse().unwrap();
    let sleeper_guard = KillOnDrop(sleeper);
    assert!(healthy(port));
    let lock_dir = env.lock_dir().to_string_lossy().into_owned();

    host.0.kill().unwrap();
    host.0.wait().unwrap();

    // The child lives on, with nothing of the gateway's.
    #[cfg(not(target_os = "macos"))]
    {
        let status = std::fs::read_to_string(format!("/proc/{sleeper}/status")).unwrap();
        assert!(
            !status.contains("State:\tZ") && !status.contains("State:\tX"),
            "{status}"
        );
    }
    #[cfg(target_os = "macos")]
    assert!(
        gateway::test_support::pid_is_running(sleeper),
        "the host's child {sleeper} is gone or a zombie"
    );
    let fds = open_fds(sleeper);
    assert!(
        fds.iter()
            .all(|fd| !fd.starts_with("socket:") && !fd.starts_with(&lock_dir)),
        "the host's child inherited {fds:?}"
    );
    // So the port is free at once, and the next gateway starts at once, reclaiming the
    // files the SIGKILL left behind.
    assert!(port_is_free(port));
    assert_eq!(env.lock_dir_entries().len(), 2);
    let started = Instant::now();
    let next = env.start(&["--port", &port.to_string()]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(healthy(port));
    assert_eq!(next.terminate(), 0);
    assert!(env.lock_dir_entries().is_empty());
    drop(sleeper_guard);
}

/// SIGKILLs and reaps our child when the test ends, passed or not.
struct ReapOnDrop(std::process::Child);

impl Drop for ReapOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills a process we started indirectly (the host's child) when the test ends.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Only while the pid still names that `sleep`.
        #[cfg(not(target_os = "macos"))]
        let is_the_sleep = {
            let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.0)).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|&byte| byte == 0).collect();
            args == [&b"sleep"[..], b"60", b""]
        };
        #[cfg(target_os = "macos")]
        let is_the_sleep =
            gateway::test_support::process_argv(self.0).is_some_and(|argv| argv == ["sleep", "60"]);
        if is_the_sleep {
            // SAFETY: the pid is the `sleep` the host spawned for this test.
            unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGKILL) };
        }
    }
}
