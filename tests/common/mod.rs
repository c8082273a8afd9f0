//! What every integration test needs: an isolated home and state dir, the real `gateway`
//! binary run as a process (to its ready line or to its exit), test ports and the kernel's view
//! of a port, raw HTTP, waiting with deadlines, a logger that records. Every test runs real
//! processes on real sockets. The sections below, in that order.
//!
//! The other test-support modules, each for one kind of test and used next to this one:
//! `lockkit` (lock files and stand-in owners), `race` (starts released together behind a
//! barrier), `wsclient` (a WebSocket client and an in-process gateway).
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use gateway::{LogLevel, Logger};

// ---------------------------------------------------------------------------------------------
// The test env
// ---------------------------------------------------------------------------------------------

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
            // SAFETY: getuid has no preconditions and cannot fail.
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
            .unwrap_or_else(|exit| panic!("gateway run {args:?} did not start: {exit:?}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway processes
// ---------------------------------------------------------------------------------------------

/// How long a `gateway run` may take to print its ready line. Generous: a loaded 2-core machine
/// running valgrind next door is slow, and a start that succeeds never waits for it.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `gateway run`; killed (SIGKILL) on drop if still running.
pub struct GatewayProcess {
    pub child: Child,
    pub pid: u32,
    pub port: u16,
    pub stderr: mpsc::Receiver<String>,
}

impl GatewayProcess {
    /// Starts `command` (a `gateway run`, or a host that prints the same ready line) and waits
    /// [`START_TIMEOUT`] at most for `gateway listening on ws://H:P (pid N)`; when it exits (or
    /// stays silent) instead, returns how it ended, with all of its output.
    pub fn spawn(mut command: Command) -> Result<Self, Exit> {
        let started = Instant::now();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
        let stderr = pipe_lines(child.stderr.take().unwrap());
        let stdout = pipe_lines(child.stdout.take().unwrap());
        match stdout.recv_timeout(START_TIMEOUT) {
            Ok(line) => {
                let (pid, port) =
                    parse_ready_line(&line).unwrap_or_else(|| panic!("bad ready line {line:?}"));
                assert_eq!(
                    pid,
                    child.id(),
                    "the ready line names the gateway's own pid"
                );
                Ok(Self {
                    child,
                    pid,
                    port,
                    stderr,
                })
            }
            Err(_) => {
                let status = wait_with_timeout(&mut child, Duration::from_secs(10));
                if status.is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                let stderr: Vec<String> = stderr.iter().collect();
                let stdout: Vec<String> = stdout.iter().collect();
                Err(Exit {
                    code: status.and_then(|s| s.code()),
                    stdout: stdout.join("\n"),
                    stderr: stderr.join("\n"),
                    elapsed: started.elapsed(),
                })
            }
        }
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

/// The lines of `stream`, read on a thread of their own.
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

/// The child's exit status, if it exits within `timeout`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

// ---------------------------------------------------------------------------------------------
// Test ports
// ---------------------------------------------------------------------------------------------

/// Ports below this are left alone: well-known services live there.
const LOWEST_TEST_PORT: u16 = 10_000;
/// How many ports one test process claims.
const PORT_BLOCK: u16 = 256;
/// Where test processes record which block each one holds (one `flock`ed file per block).
const PORT_CLAIMS_DIR: &str = "/tmp/gateway-test-ports";

/// A loopback port for a test to bind later (often more than once: restarts, takeovers).
///
/// It never comes from the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`),
/// so no outgoing connection on the machine can take it between the pick and the use, as a port
/// from `bind(0)` can. It comes from a block of [`PORT_BLOCK`] ports that this process alone
/// holds (an `flock` on a file under [`PORT_CLAIMS_DIR`], starting at a block derived from the
/// pid), so two test processes running at once never pick the same port; in the block, an atomic
/// counter hands each port out once before it wraps, and a port that cannot be bound right now
/// on `127.0.0.1` (and `[::1]`), without `SO_REUSEADDR` (so a TIME_WAIT left by an earlier test
/// counts as taken), is skipped.
pub fn free_port() -> u16 {
    let block = port_block();
    for _ in 0..PORT_BLOCK {
        let port = block.first + block.next.fetch_add(1, Ordering::Relaxed) % PORT_BLOCK;
        if bindable_now(port) {
            return port;
        }
    }
    panic!(
        "every port of this test process's block {}..{} is taken: are other programs binding \
         ports there? (see free_port in tests/common/mod.rs)",
        block.first,
        block.first + PORT_BLOCK
    );
}

/// The block of ports this process holds, claimed on first use and held until it exits.
struct PortBlock {
    first: u16,
    next: AtomicU16,
    _claim: File,
}

fn port_block() -> &'static PortBlock {
    static BLOCK: OnceLock<PortBlock> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let blocks = test_port_blocks(ephemeral_port_range());
        assert!(
            !blocks.is_empty(),
            "no room for test ports outside the ephemeral range {:?}",
            ephemeral_port_range()
        );
        let dir = Path::new(PORT_CLAIMS_DIR);
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
        // Shared by every user's test runs, as /tmp is (the owner alone can change the mode).
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
        let start = std::process::id() as usize % blocks.len();
        for i in 0..blocks.len() {
            let first = blocks[(start + i) % blocks.len()];
            let path = dir.join(format!("{first}.lock"));
            let claim = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .or_else(|_| File::open(&path)) // another user's file: reading is enough
                .unwrap_or_else(|err| panic!("cannot open {}: {err}", path.display()));
            if claim.try_lock().is_ok() {
                return PortBlock {
                    first,
                    next: AtomicU16::new(0),
                    _claim: claim,
                };
            }
        }
        panic!(
            "all {} test port blocks are held by other test processes (files in {})",
            blocks.len(),
            dir.display()
        );
    })
}

/// The kernel's ephemeral port range, inclusive (Linux's default when it cannot be read).
fn ephemeral_port_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut numbers = text.split_whitespace().map(str::parse::<u16>);
            Some((numbers.next()?.ok()?, numbers.next()?.ok()?))
        })
        .unwrap_or((32768, 60999))
}

/// The first port of every whole block between [`LOWEST_TEST_PORT`] and 65535 that does not
/// touch the ephemeral range.
fn test_port_blocks((ephemeral_low, ephemeral_high): (u16, u16)) -> Vec<u16> {
    let ranges = [
        (LOWEST_TEST_PORT as u32, ephemeral_low as u32),
        (ephemeral_high as u32 + 1, 65536),
    ];
    let mut blocks = Vec::new();
    for (low, end) in ranges {
        let mut first = low.max(LOWEST_TEST_PORT as u32);
        while first + PORT_BLOCK as u32 <= end {
            blocks.push(first as u16);
            first += PORT_BLOCK as u32;
        }
    }
    blocks
}

/// Nobody holds `port` on the loopback addresses, not even a TIME_WAIT: a bind without
/// `SO_REUSEADDR` succeeds on `127.0.0.1` and, where the machine has IPv6, on `[::1]`.
fn bindable_now(port: u16) -> bool {
    use socket2::{Domain, Socket, Type};
    let bind = |ip: IpAddr| -> std::io::Result<()> {
        let addr = SocketAddr::new(ip, port);
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&addr.into())
    };
    let v6 = bind(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let v6_free =
        v6.is_ok() || v6.is_err_and(|err| err.kind() == std::io::ErrorKind::AddrNotAvailable);
    v6_free && bind(IpAddr::V4(Ipv4Addr::LOCALHOST)).is_ok()
}

/// A plain listener (`SO_REUSEADDR`, as servers bind) can have the port: at once when no
/// socket of this process holds it.
///
/// Only a socket of another process may hold it for a moment: every process this test binary
/// starts is a copy of it until its `exec`, descriptors included (close-on-exec closes them at
/// the `exec`, not before), so a listener a test just closed can live on in a child another
/// test thread is starting. That copy goes within milliseconds; one that stays 2 s is a leak.
pub fn port_is_free(port: u16) -> bool {
    let bindable = || TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok();
    if bindable() {
        return true;
    }
    if held_by_this_process(port) {
        return false;
    }
    wait_until(Duration::from_secs(2), bindable)
}

/// A socket bound to `port` is open in this process (found by inode in /proc/self/fd).
fn held_by_this_process(port: u16) -> bool {
    let inodes: Vec<String> = tcp_sockets_on(port)
        .iter()
        .map(|socket| format!("socket:[{}]", socket.inode))
        .collect();
    std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .any(|target| {
            inodes
                .iter()
                .any(|inode| target.as_os_str() == inode.as_str())
        })
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP, waiting
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// The kernel's view of a port's sockets
// ---------------------------------------------------------------------------------------------

/// `/proc/net/tcp`'s state numbers (include/net/tcp_states.h).
pub const TCP_ESTABLISHED: u8 = 0x01;
pub const TCP_FIN_WAIT2: u8 = 0x05;

/// A TCP socket whose local port is the one asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    pub state: u8,
    /// Bytes received and not read yet by the program that owns the socket.
    pub unread: u64,
    /// Its inode (0 once no process holds it: TIME_WAIT, an orphan).
    pub inode: u64,
}

/// The TCP sockets (IPv4 and IPv6) of this network namespace whose local port is `port`: a
/// listener, the connections it accepted or will accept, what they leave behind.
pub fn tcp_sockets_on(port: u16) -> Vec<TcpSocket> {
    let suffix = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    if !fields.get(1)?.ends_with(&suffix) {
                        return None;
                    }
                    let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
                    let unread = u64::from_str_radix(fields.get(4)?.split_once(':')?.1, 16).ok()?;
                    let inode = fields.get(9)?.parse().ok()?;
                    Some(TcpSocket {
                        state,
                        unread,
                        inode,
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits (10 s at most) until the server on `port` has accepted at least `connections`
/// connections and read everything sent on them so far: what a sleep would only hope for
/// before a test tells the server to stop with requests half sent.
pub fn wait_until_server_read(port: u16, connections: usize) -> bool {
    wait_until(Duration::from_secs(10), || {
        let established: Vec<TcpSocket> = tcp_sockets_on(port)
            .into_iter()
            .filter(|socket| socket.state == TCP_ESTABLISHED)
            .collect();
        established.len() >= connections && established.iter().all(|socket| socket.unread == 0)
    })
}

// ---------------------------------------------------------------------------------------------
// Commands run to their exit, wrapped commands, a recording logger
// ---------------------------------------------------------------------------------------------

/// How a command ended.
#[derive(Debug)]
pub struct Exit {
    /// `None` when it had to be killed at the timeout (or died of a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Exit {
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(code) => write!(f, "exit code {code}")?,
            None => write!(f, "killed (a signal, or the timeout)")?,
        }
        write!(
            f,
            " after {:?}; stdout {:?}; stderr {:?}",
            self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `command` to its exit (SIGKILL at `timeout`) and collects its output.
pub fn run_to_exit(mut command: Command, timeout: Duration) -> Exit {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read = |mut stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(stdout));
    let stderr = read(Box::new(stderr));
    let status = wait_with_timeout(&mut child, timeout);
    let elapsed = started.elapsed();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Exit {
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        elapsed,
    }
}

/// `program prefix… <command's program> <command's args…>`, with the environment changes of
/// `command` (so a `TestEnv::command` keeps its HOME and its scrubbed variables).
pub fn wrapped(command: &Command, program: &str, prefix: &[&str]) -> Command {
    let mut outer = Command::new(program);
    outer.args(prefix).arg(command.get_program());
    outer.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => outer.env(key, value),
            None => outer.env_remove(key),
        };
    }
    outer
}

/// The log lines a [`recording_logger`] received.
pub type LogLines = Arc<Mutex<Vec<(LogLevel, String)>>>;

/// A logger that keeps every line it is given.
pub fn recording_logger() -> (Logger, LogLines) {
    let lines: LogLines = Arc::default();
    let sink = Arc::clone(&lines);
    let logger = Logger::new(move |level, message| {
        sink.lock().unwrap().push((level, message.to_owned()));
    });
    (logger, lines)
}
