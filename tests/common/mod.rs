//! Shared helpers for the integration tests: isolated state dirs, the real `gateway` binary,
//! raw HTTP, waiting with deadlines. Every test runs real processes on real sockets.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A fresh home with its own state dir, removed on drop.
pub struct TestEnv {
    pub root: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> Self {
        Self {
            root: tempfile::Builder::new()
                .prefix("gateway-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().canonicalize().unwrap()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.home().join(".openclaw")
    }

    pub fn config_path(&self) -> PathBuf {
        self.state_dir().join("openclaw.json")
    }

    /// `<state>/tmp/openclaw-<uid>`, as SPEC §1 says.
    pub fn lock_dir(&self) -> PathBuf {
        self.state_dir()
            .join("tmp")
            .join(format!("openclaw-{}", unsafe { libc::getuid() }))
    }

    pub fn state_lock(&self) -> PathBuf {
        self.lock_dir().join("gateway.state.lock")
    }

    pub fn config_lock(&self) -> PathBuf {
        self.lock_dir()
            .join(gateway::paths::config_lock_name(&self.config_path()))
    }

    /// Names of the files in the lock dir (empty when it does not exist).
    pub fn lock_dir_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.lock_dir())
            .map(|entries| {
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                names
            })
            .unwrap_or_default()
    }

    /// Library options pointing at this env's state (no process environment consulted).
    pub fn options(&self) -> gateway::GatewayOptions {
        gateway::GatewayOptions::new()
            .state_dir(self.state_dir())
            .config_path(self.config_path())
    }

    /// `gateway <args>` with a scrubbed environment whose HOME is this env's home.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
        for name in gateway::ENVIRONMENT_VARIABLES {
            command.env_remove(name);
        }
        command
            .env("HOME", self.home())
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// Starts `gateway run <args>` and waits for its ready line.
    pub fn start(&self, args: &[&str]) -> GatewayProcess {
        GatewayProcess::spawn(self.command(&[&["run"], args].concat()))
            .unwrap_or_else(|err| panic!("gateway run {args:?} did not start: {err}"))
    }
}

/// A running `gateway run`; killed (SIGKILL) on drop if still running.
pub struct GatewayProcess {
    pub child: Child,
    pub pid: u32,
    pub port: u16,
    pub stderr: mpsc::Receiver<String>,
}

impl GatewayProcess {
    /// Spawns the command and waits (10 s at most) for `gateway listening on ws://H:P (pid N)`.
    pub fn spawn(mut command: Command) -> Result<Self, String> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stderr = pipe_lines(child.stderr.take().unwrap());
        let stdout = pipe_lines(child.stdout.take().unwrap());
        let line = match stdout.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                let errors: Vec<String> = stderr.try_iter().collect();
                return Err(format!(
                    "no ready line; status {status:?}; stderr {errors:?}"
                ));
            }
        };
        let (pid, port) =
            parse_ready_line(&line).ok_or_else(|| format!("bad ready line {line:?}"))?;
        assert_eq!(
            pid,
            child.id(),
            "the ready line names the gateway's own pid"
        );
        Ok(Self {
            pid,
            port,
            child,
            stderr,
        })
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid as libc::pid_t, signal) };
    }

    pub fn sigkill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(mut self) -> i32 {
        self.signal(libc::SIGTERM);
        let status = wait_with_timeout(&mut self.child, Duration::from_secs(10))
            .expect("gateway exits after SIGTERM");
        status.code().unwrap_or(-1)
    }

    /// Waits up to `timeout` for a stderr line containing `needle`.
    pub fn wait_stderr(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `gateway listening on ws://127.0.0.1:18789 (pid 42)` → (42, 18789).
pub fn parse_ready_line(line: &str) -> Option<(u32, u16)> {
    let rest = line.strip_prefix("gateway listening on ws://")?;
    let (addr, pid) = rest.split_once(" (pid ")?;
    let port = addr.rsplit_once(':')?.1.parse().ok()?;
    let pid = pid.strip_suffix(')')?.parse().ok()?;
    Some((pid, port))
}

pub fn pipe_lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub fn stderr_lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    pipe_lines(stderr)
}

pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A port that was free a moment ago (the OS picks it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Status, headers (names lower-cased) and body of an HTTP response.
pub type HttpResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// A raw HTTP/1.1 request.
pub fn http(port: u16, method: &str, path: &str) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers, raw[end + 4..].to_vec()))
}

/// `GET /healthz` answers 200.
pub fn healthy(port: u16) -> bool {
    http(port, "GET", "/healthz").is_ok_and(|(status, _, _)| status == 200)
}

/// Polls `condition` every 5 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A port can be bound by a plain listener right now.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok()
}

/// Writes a lock file with the given JSON body (and no token line).
pub fn write_lock(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let dir = path.parent().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(path, body).unwrap();
}

/// A process's start time in clock ticks (field 22 of /proc/<pid>/stat).
pub fn start_time_of(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// A pid that is not running now (a child that has been reaped).
pub fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}
