//! Against the real Node gateway (OpenClaw 2026.9.6): on one state dir, the two exclude each
//! other, and each reads the other's lock files. Needs Node 24 and the `openclaw` package:
//! `scripts/node-interop.sh` installs both and runs these with `--ignored`.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::node::{NodeGateway, node_gateway};
use common::*;

/// One Node gateway at a time: each takes seconds of both cores to start.
static SERIAL: Mutex<()> = Mutex::new(());

/// The Node gateway without auth: what these tests look at is the lock.
const NONE: &[&str] = &["--auth", "none"];

#[test]
#[ignore = "needs the Node gateway: scripts/node-interop.sh"]
fn ours_refuses_at_once_while_the_node_gateway_runs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let port = free_port();
    let node = NodeGateway::start(&env, port, NONE);
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
    let output = node_gateway(&env, free_port(), NONE)
        .output()
        .expect("node runs");
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
    let node = NodeGateway::start(&env, port, NONE);
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
