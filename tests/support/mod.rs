//! Helpers of the namespace, port, supervisor and probe tests, on top of `common`: a command
//! run to its exit, a command wrapped in another (unshare, systemd-socket-activate), a logger
//! that keeps what it is told.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway::{LogLevel, Logger};

use crate::common::{GatewayProcess, parse_ready_line, pipe_lines, wait_with_timeout};

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

/// Starts `command` (a `gateway run`) and waits for its ready line; when it exits instead,
/// returns how it ended, with all of its stderr.
pub fn try_start(mut command: Command, timeout: Duration) -> Result<GatewayProcess, Exit> {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let stderr = pipe_lines(child.stderr.take().unwrap());
    let stdout = pipe_lines(child.stdout.take().unwrap());
    match stdout.recv_timeout(timeout) {
        Ok(line) => {
            let (pid, port) =
                parse_ready_line(&line).unwrap_or_else(|| panic!("bad ready line {line:?}"));
            assert_eq!(
                pid,
                child.id(),
                "the ready line names the gateway's own pid"
            );
            Ok(GatewayProcess {
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
