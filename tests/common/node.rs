//! The real OpenClaw 2026.9.6 on Node 24, as `scripts/node-interop.sh` installs it: the Node
//! gateway started on a test port, and any `openclaw` client command, each with a home of its
//! own and none of the caller's `OPENCLAW_*` variables.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::env::TestEnv;
use super::http::{healthy, http};
use super::wait::wait_until;

/// How long the Node gateway may take to answer `/healthz` (about 6 s on an idle 2-core VM,
/// 15 s beside other builds).
pub const NODE_START: Duration = Duration::from_secs(90);

/// The Node binary and `openclaw.mjs` that `scripts/node-interop.sh` names in `GATEWAY_NODE`
/// and `GATEWAY_OPENCLAW`.
pub fn node_paths() -> (PathBuf, PathBuf) {
    let var = |name: &str| {
        PathBuf::from(std::env::var_os(name).unwrap_or_else(|| {
            panic!(
                "{name} is not set: run scripts/node-interop.sh, which installs the Node gateway"
            )
        }))
    };
    (var("GATEWAY_NODE"), var("GATEWAY_OPENCLAW"))
}

/// `node openclaw.mjs <args>` with `home` as HOME (so its state dir is `home/.openclaw`), none
/// of this process's `OPENCLAW_*` variables nor the ones our gateway reads, and the node host's
/// self-update (which asks the npm registry for a newer openclaw) turned off.
pub fn openclaw(home: &Path, args: &[&str]) -> Command {
    let (node, openclaw) = node_paths();
    let mut command = Command::new(node);
    scrub(&mut command);
    command
        .arg(openclaw)
        .args(args)
        .env("HOME", home)
        .env("OPENCLAW_NO_AUTO_UPDATE", "1")
        .stdin(Stdio::null());
    command
}

/// Removes from `command`'s environment the variables our gateway reads and every `OPENCLAW_*`
/// one this process has, so a client sees only what the test gives it.
pub fn scrub(command: &mut Command) {
    for name in gateway::ENVIRONMENT_VARIABLES {
        command.env_remove(name);
    }
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OPENCLAW_") {
            command.env_remove(name);
        }
    }
}

/// `openclaw gateway` on loopback on `port`, with `env`'s home and state dir and the given
/// auth flags (`["--auth", "none"]`, `["--auth", "token", "--token", T]`).
pub fn node_gateway(env: &TestEnv, port: u16, auth: &[&str]) -> Command {
    let mut command = openclaw(&env.home(), &["gateway", "--allow-unconfigured"]);
    command
        .args(auth)
        .args(["--bind", "loopback", "--port", &port.to_string()]);
    command
}

/// A running Node gateway, in a process group of its own; the group is killed (SIGKILL) on drop.
pub struct NodeGateway {
    child: Child,
    /// The gateway process's pid, as its lock file records it.
    pub pid: u32,
    pub port: u16,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl NodeGateway {
    /// Starts it and waits for `/healthz`; its output goes to `<home>/node-gateway.log`.
    pub fn start(env: &TestEnv, port: u16, auth: &[&str]) -> Self {
        use std::os::unix::process::CommandExt;
        let log = env.home().join("node-gateway.log");
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = node_gateway(env, port, auth)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("node starts");
        // `/healthz` answers as soon as HTTP is up; WebSocket clients are refused with
        // `gateway starting; retry shortly` until `/startupz` answers 200 (503 before).
        let ready = || matches!(http(port, "GET", "/startupz"), Ok((200, _, _)));
        let up = wait_until(NODE_START, || {
            (healthy(port) && ready()) || child.try_wait().is_ok_and(|status| status.is_some())
        });
        assert!(
            up && healthy(port),
            "the Node gateway answers /healthz and /startupz on {port}; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let payload: serde_json::Value =
            serde_json::from_slice(&std::fs::read(env.state_lock()).unwrap()).unwrap();
        let pid = payload["pid"]
            .as_u64()
            .expect("a pid in the Node lock file") as u32;
        Self {
            child,
            pid,
            port,
            log,
        }
    }

    /// SIGTERM, then waits for the gateway process to be gone.
    pub fn terminate(self) {
        // SAFETY: signalling the Node gateway this test started.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        let (pid, leader) = (self.pid, self.child.id());
        let gone = wait_until(Duration::from_secs(30), || {
            if leader == pid {
                // Our own child: left unreaped until drop, which signals its group first.
                exited(leader)
            } else {
                // SAFETY: existence check only.
                unsafe { libc::kill(pid as libc::pid_t, 0) != 0 }
            }
        });
        assert!(gone, "the Node gateway stops on SIGTERM");
    }
}

impl Drop for NodeGateway {
    fn drop(&mut self) {
        // SAFETY: signalling the process group this test started (the gateway and its helper
        // processes), and the gateway itself should it have left the group; no-ops once gone.
        unsafe {
            libc::killpg(self.child.id() as libc::pid_t, libc::SIGKILL);
            libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A long-running `openclaw` client (`node run`, …) in a process group of its own, its output
/// in a file; the group is stopped (SIGTERM, then SIGKILL) on drop.
pub struct ClientProcess {
    child: Child,
    pub log: PathBuf,
    stopped: bool,
}

impl ClientProcess {
    pub fn spawn(mut command: Command, log: PathBuf) -> Self {
        use std::os::unix::process::CommandExt;
        let out = File::create(&log).unwrap();
        let child = command
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
        Self {
            child,
            log,
            stopped: false,
        }
    }

    /// Still running? (Does not reap it.)
    pub fn running(&self) -> bool {
        !self.stopped && !exited(self.child.id())
    }

    /// What it has printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM to the group, then SIGKILL to whatever is left of it after the leader exited
    /// (or after 10 s); reaps the leader last, so the group's id cannot have been reused.
    pub fn stop(&mut self) {
        if self.stopped {
            return; // Reaped: the group's id is no longer ours to signal.
        }
        let leader = self.child.id();
        // SAFETY: signalling the process group this test started; its leader is unreaped.
        unsafe { libc::killpg(leader as libc::pid_t, libc::SIGTERM) };
        wait_until(Duration::from_secs(10), || exited(leader));
        // SAFETY: as above.
        unsafe { libc::killpg(leader as libc::pid_t, libc::SIGKILL) };
        let _ = self.child.wait();
        self.stopped = true;
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether our child `pid` has exited, leaving it unreaped (a zombie keeps its process group's
/// id taken, so the group can still be signalled safely).
pub fn exited(pid: u32) -> bool {
    // SAFETY: an all-zero siginfo_t is valid; waitid writes it and, with WNOWAIT, reaps nothing.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let flags = libc::WEXITED | libc::WNOWAIT | libc::WNOHANG;
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) == 0 && info.si_pid() != 0
    }
}
