//! Child processes: a `gateway run` started to its ready line and stopped by signal, any
//! command run to its exit with its output, and commands wrapped in another program.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::wait::wait_until;

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
