//! Against the real Node gateway (OpenClaw 2026.9.6): on one state dir, the two exclude each
//! other, and each reads the other's lock files. Needs Node 24 and the `openclaw` package:
//! `scripts/node-interop.sh` installs both and runs these with `--ignored`.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

/// One Node gateway at a time: each takes seconds of both cores to start.
static SERIAL: Mutex<()> = Mutex::new(());

/// How long the Node gateway may take to answer `/healthz` (about 6 s on an idle 2-core VM).
const NODE_START: Duration = Duration::from_secs(90);

fn node() -> (PathBuf, PathBuf) {
    let var = |name: &str| {
        PathBuf::from(std::env::var_os(name).unwrap_or_else(|| {
            panic!(
                "{name} is not set: run scripts/node-interop.sh, which installs the Node gateway"
            )
        }))
    };
    (var("GATEWAY_NODE"), var("GATEWAY_OPENCLAW"))
}

/// `openclaw gateway` on loopback, with no auth, on `port`, with `env`'s home and state dir.
fn node_gateway(env: &TestEnv, port: u16) -> Command {
    let (node, openclaw) = node();
    let mut command = Command::new(node);
    for name in gateway::ENVIRONMENT_VARIABLES {
        command.env_remove(name);
    }
    command
        .arg(openclaw)
        .args([
            "gateway",
            "--allow-unconfigured",
            "--auth",
            "none",
            "--bind",
            "loopback",
        ])
        .args(["--port", &port.to_string()])
        .env("HOME", env.home())
        .stdin(Stdio::null());
    command
}

/// A running Node gateway, killed (SIGKILL) on drop.
struct NodeGateway {
    child: Child,
    /// The gateway process's pid, as its lock file records it.
    pid: u32,
}

impl NodeGateway {
    fn start(env: &TestEnv, port: u16) -> Self {
        let mut child = node_gateway(env, port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts");
        let up = wait_until(NODE_START, || {
            healthy(port) || child.try_wait().is_ok_and(|status| status.is_some())
        });
        assert!(
            up && healthy(port),
            "the Node gateway answers /healthz on {port}"
        );
        let payload: serde_json::Value =
            serde_json::from_slice(&std::fs::read(env.state_lock()).unwrap()).unwrap();
        let pid = payload["pid"]
            .as_u64()
            .expect("a pid in the Node lock file") as u32;
        Self { child, pid }
    }

    fn terminate(mut self) {
        // SAFETY: signalling the Node gateway this test started.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        let pid = self.pid;
        let child = &mut self.child;
        let gone = wait_until(Duration::from_secs(30), || {
            if child.id() == pid {
                // Our own child: reaped here, or it would linger as a zombie.
                child.try_wait().is_ok_and(|status| status.is_some())
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
        // SAFETY: signalling the Node gateway this test started (no-op once it is gone).
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs the Node gateway: scripts/node-interop.sh"]
fn ours_refuses_at_once_while_the_node_gateway_runs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let port = free_port();
    let node = NodeGateway::start(&env, port);
    // Node's own lock files, where SPEC §1 puts them, read by us.
    assert!(env.state_lock().exists() && env.config_lock().exists());

    // Same port, and another port: the lock, not only the port, refuses us.
    for our_port in [port, free_port()] {
        let started = Instant::now();
        let output = env
            .command(&["run", "--port", &our_port.to_string()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(
            stderr.trim(),
            format!(
                "Gateway failed to start: gateway already running (pid {}); it is healthy on ws://127.0.0.1:{port}",
                node.pid
            )
        );
        // "it is healthy" is printed only by the fail-now path (the timeout path says "lock
        // timeout after 5000ms"), so the message above is what proves we did not wait the lock
        // out. The time only has to stay under that timeout: on a loaded machine Node may take
        // more than one 1 s probe to answer /healthz (CI saw 2.0 s once).
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refused before the 5 s lock timeout: {:?}",
            started.elapsed()
        );
    }

    let status = env.command(&["status", "--json"]).output().unwrap();
    assert_eq!(status.status.code(), Some(0));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["pid"], node.pid, "{status}");
    assert_eq!(status["port"], port, "{status}");
    assert_eq!(status["healthy"], true, "{status}");
    node.terminate();
}

#[test]
#[ignore = "needs the Node gateway: scripts/node-interop.sh"]
fn the_node_gateway_refuses_while_ours_runs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let ours = env.start(&["--port", &free_port().to_string()]);
    // Another port for Node: what refuses it is our lock files, not the port.
    let output = node_gateway(&env, free_port()).output().expect("node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "Node refuses: {text}");
    assert!(
        text.contains(&format!("pid {}", ours.pid)),
        "Node names our pid: {text}"
    );
    assert!(healthy(ours.port), "ours keeps serving");
    assert_eq!(ours.terminate(), 0);
    assert!(
        env.lock_dir_entries()
            .iter()
            .all(|name| !name.ends_with(".lock"))
    );
}

#[test]
#[ignore = "needs the Node gateway: scripts/node-interop.sh"]
fn ours_reclaims_at_once_what_a_killed_node_gateway_left() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let port = free_port();
    let node = NodeGateway::start(&env, port);
    let node_pid = node.pid;
    drop(node); // SIGKILL: Node's lock files stay behind, naming a dead pid.
    assert!(env.state_lock().exists());

    let started = Instant::now();
    let ours = env.start(&["--port", &port.to_string()]);
    // Waiting for a dead owner would hit the 5 s lock timeout (and fail to start); waiting out
    // its file would take the 30 s stale window. Anything under the first is "at once", with
    // room for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no stale window to wait out: {:?}",
        started.elapsed()
    );
    let payload: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.state_lock()).unwrap()).unwrap();
    assert_eq!(payload["pid"], ours.pid);
    assert_ne!(ours.pid, node_pid);
    assert_eq!(ours.terminate(), 0);
}
