//! The start race harness shared by the race tests: `gateway run`s held behind one barrier
//! pipe, released together, and watched until each one exited or serves.
#![allow(dead_code)]

use std::os::fd::OwnedFd;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::common::*;

/// One `gateway run` of a race, held at the barrier until released.
pub struct Racer {
    pub child: Child,
    pub stdout: Receiver<String>,
    pub stderr: Receiver<String>,
    pub status: Option<ExitStatus>,
    /// (pid, port) from the ready line, once printed.
    pub ready: Option<(u32, u16)>,
    pub errors: Vec<String>,
}

impl Racer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn serving(&self) -> bool {
        self.ready.is_some() && self.status.is_none()
    }

    pub fn settled(&self) -> bool {
        self.status.is_some() || self.ready.is_some()
    }

    pub fn poll(&mut self) {
        for line in self.stdout.try_iter() {
            if let Some(ready) = parse_ready_line(&line) {
                self.ready = Some(ready);
            }
        }
        self.errors.extend(self.stderr.try_iter());
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
    }

    /// After the exit: every stderr line, up to the end of the pipe.
    pub fn drain_stderr(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.errors.push(line),
                Err(RecvTimeoutError::Disconnected | RecvTimeoutError::Timeout) => return,
            }
        }
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        let status = wait_with_timeout(&mut self.child, Duration::from_secs(10))?;
        self.status = Some(status);
        status.code()
    }
}

impl Drop for Racer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipe whose two ends are close-on-exec, so no child inherits the write end by accident
/// (`std::io::pipe`: `pipe2(O_CLOEXEC)` on Linux; macOS has no pipe2).
pub fn barrier_pipe() -> (OwnedFd, OwnedFd) {
    let (read, write) = std::io::pipe().expect("pipe");
    (read.into(), write.into())
}

/// `gateway run <args>` in the test env, behind a barrier: a shell says `armed`, blocks reading
/// the barrier pipe (its stdin), and execs the gateway (same pid) once the pipe reaches EOF.
pub fn gated_gateway(env: &TestEnv, gate: &OwnedFd, args: &[&str]) -> Command {
    let template = env.command(&[]);
    let mut command = Command::new("sh");
    for (name, value) in template.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
        .arg("-c")
        .arg("echo armed; read _gate; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_gateway"))
        .arg("run")
        .args(args)
        .stdin(Stdio::from(gate.try_clone().expect("dup the barrier")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Arms `racers` gateways, releases them together, and waits until each one either exited or
/// serves. Returns them all.
pub fn race(env: &TestEnv, racers: usize, args: &[&str]) -> Vec<Racer> {
    let (gate, release) = barrier_pipe();
    let mut racers: Vec<Racer> = (0..racers)
        .map(|_| {
            let mut child = gated_gateway(env, &gate, args).spawn().expect("spawn sh");
            Racer {
                stdout: pipe_lines(child.stdout.take().unwrap()),
                stderr: pipe_lines(child.stderr.take().unwrap()),
                child,
                status: None,
                ready: None,
                errors: Vec::new(),
            }
        })
        .collect();
    drop(gate);
    for racer in &racers {
        let armed = racer.stdout.recv_timeout(Duration::from_secs(10));
        assert_eq!(armed.as_deref(), Ok("armed"), "a racer did not arm");
    }
    // EOF on every reader at the same instant: the barrier opens.
    drop(release);

    let settled = wait_until(Duration::from_secs(20), || {
        racers.iter_mut().for_each(Racer::poll);
        racers.iter().all(Racer::settled)
    });
    assert!(settled, "the race did not settle:\n{}", describe(&racers));
    for racer in racers.iter_mut().filter(|r| r.status.is_some()) {
        racer.drain_stderr();
    }
    racers
}

pub fn describe(racers: &[Racer]) -> String {
    racers
        .iter()
        .map(|r| {
            format!(
                "  pid {} status {:?} ready {:?} stderr {:?}\n",
                r.pid(),
                r.status,
                r.ready,
                r.errors
            )
        })
        .collect()
}

/// A start race's outcome as every racer saw it: exactly one serves (on `port_arg` when all
/// raced for one port), it answers `/healthz`, and each loser exits 1 naming the winner's pid
/// (or, for one port, its address). Returns the winner's index, pid and port.
pub fn assert_one_winner(
    racers: &[Racer],
    round: &str,
    same_port: Option<&str>,
) -> (usize, u32, u16) {
    let servers: Vec<usize> = (0..racers.len()).filter(|&i| racers[i].serving()).collect();
    assert_eq!(
        servers.len(),
        1,
        "{round}: exactly one gateway serves\n{}",
        describe(racers)
    );
    let (pid, port) = racers[servers[0]].ready.unwrap();
    assert_eq!(pid, racers[servers[0]].pid(), "{round}");
    if let Some(port_arg) = same_port {
        assert_eq!(port.to_string(), port_arg, "{round}");
    }
    assert!(healthy(port), "{round}: the winner answers /healthz");
    for loser in racers.iter().filter(|r| r.pid() != pid) {
        assert_eq!(
            loser.status.and_then(|s| s.code()),
            Some(1),
            "{round}: a loser exits 1\n{}",
            describe(racers)
        );
        assert!(
            loser.errors.iter().any(|line| {
                line.starts_with("Gateway failed to start: ")
                    && (line.contains(&format!("(pid {pid})"))
                        || (same_port.is_some()
                            && line.contains(&format!("ws://127.0.0.1:{port}"))))
            }),
            "{round}: loser {} names the winner (pid {pid}){}: {:?}",
            loser.pid(),
            if same_port.is_some() {
                " or the port"
            } else {
                ""
            },
            loser.errors
        );
    }
    (servers[0], pid, port)
}
