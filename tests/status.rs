//! `gateway status` looks and changes nothing (no byte, no mtime, no new file, no signal),
//! whatever state the holder is in, and says so with its exit code: 0 running and healthy,
//! 3 not running, 1 otherwise.

mod common;
mod lockkit;

use std::net::TcpListener;
use std::path::Path;

use common::*;
use gateway::GatewayLock;
use lockkit::*;
use serde_json::{Value, json};

const RUNNING_HEALTHY: i32 = 0;
const OTHERWISE: i32 = 1;
const NOT_RUNNING: i32 = 3;

/// `gateway status <args>` → (exit code, stdout), the last line (the ground, checked here: a
/// temp dir is on a local file system) left out of the text.
fn status_cli(env: &TestEnv, args: &[&str]) -> (i32, String) {
    let (code, stdout) = status_output(env, args);
    let (text, ground) = stdout
        .trim_end_matches('\n')
        .rsplit_once('\n')
        .map_or(("", stdout.trim_end_matches('\n')), |(text, last)| {
            (text, last)
        });
    assert!(
        ground.starts_with("lock dir on ") && ground.ends_with(": local (one host)"),
        "the ground is local: {stdout:?}"
    );
    let text = if text.is_empty() {
        String::new()
    } else {
        format!("{text}\n")
    };
    (code, text)
}

fn status_output(env: &TestEnv, args: &[&str]) -> (i32, String) {
    let output = env.command(&[&["status"], args].concat()).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let code = output.status.code().expect("status exits, not killed");
    assert!(
        code == 0 || code == 1 || code == 3,
        "{code}: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (code, stdout)
}

/// `gateway status --json <args>` → (exit code, the parsed JSON), its `ground` (checked here: a
/// temp dir is on a local file system) left out.
fn status_json(env: &TestEnv, args: &[&str]) -> (i32, Value) {
    let (code, stdout) = status_output(env, &[&["--json"], args].concat());
    let mut value: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "configPath",
            "ground",
            "healthy",
            "host",
            "lockPath",
            "onOtherHost",
            "pid",
            "port",
            "running",
            "stale",
            "startTime"
        ]
    );
    let ground = value.as_object_mut().unwrap().remove("ground").unwrap();
    assert_local_ground(env, &ground);
    (code, value)
}

/// The ground of a temp dir: a local file system, mounted at a prefix of the path.
fn assert_local_ground(env: &TestEnv, ground: &Value) {
    assert_eq!(ground["locks"], json!("oneHost"), "{ground}");
    let fs_type = ground["fsType"].as_str().unwrap();
    assert!(!fs_type.is_empty() && fs_type != "unknown", "{ground}");
    let mount_point = ground["mountPoint"].as_str().expect("a mount point");
    assert!(env.home().starts_with(mount_point), "{ground}");
    assert_eq!(
        ground["lockOptions"],
        json!([]),
        "no lock options on a local file system"
    );
}

/// The host name our own gateways record (issue 13).
fn this_host() -> Value {
    json!(gateway::test_support::HostIdentity::this().display_name())
}

fn path_json(path: &Path) -> Value {
    json!(path.to_str().unwrap())
}

/// Runs `check` and proves that the lock dir (bytes, inodes, modes, mtimes, ctimes, the dir's
/// own mtime) is exactly as it was before.
fn changes_nothing(env: &TestEnv, check: impl FnOnce()) {
    let before = snapshot(&env.lock_dir());
    check();
    assert_eq!(
        snapshot(&env.lock_dir()),
        before,
        "status changed the lock dir"
    );
}

#[test]
fn a_running_healthy_gateway() {
    let env = TestEnv::new();
    let port = free_port().to_string();
    let mut gateway = env.start(&["--port", &port]);
    changes_nothing(&env, || {
        let (code, value) = status_json(&env, &[]);
        assert_eq!(code, RUNNING_HEALTHY);
        assert_eq!(
            value,
            json!({
                "running": true,
                "pid": gateway.pid,
                "port": gateway.port,
                "startTime": start_time_of(gateway.pid),
                "configPath": path_json(&env.config_path()),
                "healthy": true,
                "lockPath": path_json(&env.state_lock()),
                "stale": false,
                "host": this_host(),
                "onOtherHost": false,
            })
        );
        let (code, text) = status_cli(&env, &[]);
        assert_eq!(code, RUNNING_HEALTHY);
        assert_eq!(
            text,
            format!(
                "gateway running (pid {}) on ws://127.0.0.1:{}, healthy\n",
                gateway.pid, gateway.port
            )
        );
        let library = gateway::status(&env.options()).unwrap();
        assert!(library.running && library.healthy && !library.stale);
        assert_eq!(library.pid, Some(gateway.pid));
        assert_eq!(library.port, gateway.port);
    });
    // No signal reached it: it still runs and answers.
    assert!(gateway.child.try_wait().unwrap().is_none());
    assert!(healthy(gateway.port));
    assert_eq!(gateway.terminate(), 0);
}

#[test]
fn a_gateway_holding_the_lock_but_not_serving() {
    // Acquired in this process and never served: the port is bound and listening, but nobody
    // answers `/healthz`. That is a gateway that is starting (or stuck).
    let env = TestEnv::new();
    let lock = GatewayLock::acquire(&env.options().port(0)).unwrap();
    let port = lock.port();
    changes_nothing(&env, || {
        let (code, value) = status_json(&env, &[]);
        assert_eq!(code, OTHERWISE);
        assert_eq!(value["running"], json!(true));
        assert_eq!(value["healthy"], json!(false));
        assert_eq!(value["stale"], json!(false));
        assert_eq!(value["pid"], json!(std::process::id()));
        assert_eq!(value["port"], json!(port));
        assert_eq!(value["startTime"], json!(start_time_of(std::process::id())));
        let (code, text) = status_cli(&env, &[]);
        assert_eq!(code, OTHERWISE);
        assert_eq!(
            text,
            format!(
                "gateway running (pid {}) but ws://127.0.0.1:{port}/healthz does not answer (starting, stopping or stuck)\n",
                std::process::id()
            )
        );
    });
    assert!(!lock.is_lost());
    assert_eq!(
        read_payload(&env.config_lock()).owner_id.as_deref(),
        Some(lock.owner_id())
    );
}

/// `gateway run --port P` with `GATEWAY_FAILPOINT=step` (a step of binding, after both lock
/// files are held): it stops there for good, its port taken but not answering.
#[cfg(feature = "failpoints")]
fn start_stuck(env: &TestEnv, step: &str, port: u16) -> Owner {
    let mut command = env.command(&["run", "--port", &port.to_string()]);
    command.env("GATEWAY_FAILPOINT", step);
    let (stuck, stderr) = Owner::spawn_with_stderr(command);
    let needle = format!("failpoint {step} reached");
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(10);
    let reached = std::iter::from_fn(|| {
        stderr
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    })
    .any(|line| line.contains(&needle));
    assert!(reached, "the gateway never reached {step}");
    stuck
}

#[cfg(feature = "failpoints")]
#[test]
fn a_gateway_stuck_while_binding() {
    for step in ["after-bind", "after-listen"] {
        let env = TestEnv::new();
        let port = free_port();
        let mut stuck = start_stuck(&env, step, port);
        changes_nothing(&env, || {
            let (code, value) = status_json(&env, &[]);
            assert_eq!(code, OTHERWISE, "{step}");
            assert_eq!(
                value,
                json!({
                    "running": true,
                    "pid": stuck.pid,
                    "port": port,
                    "startTime": stuck.start_time(),
                    "configPath": path_json(&env.config_path()),
                    "healthy": false,
                    "lockPath": path_json(&env.state_lock()),
                    "stale": false,
                    "host": this_host(),
                    "onOtherHost": false,
                }),
                "{step}"
            );
        });
        stuck.assert_running();
    }
}

#[test]
fn a_killed_gateway_leaves_a_stale_lock_that_status_leaves_alone() {
    let env = TestEnv::new();
    let port = free_port().to_string();
    let gateway = env.start(&["--port", &port]);
    let (pid, port) = (gateway.pid, gateway.port);
    let start_time = start_time_of(pid);
    gateway.sigkill();
    assert_eq!(env.lock_dir_entries().len(), 2, "SIGKILL leaves the files");
    changes_nothing(&env, || {
        let (code, value) = status_json(&env, &[]);
        assert_eq!(code, NOT_RUNNING);
        assert_eq!(
            value,
            json!({
                "running": false,
                "pid": pid,
                "port": port,
                "startTime": start_time,
                "configPath": path_json(&env.config_path()),
                "healthy": false,
                "lockPath": path_json(&env.state_lock()),
                "stale": true,
                "host": this_host(),
                "onOtherHost": false,
            })
        );
        let (code, text) = status_cli(&env, &[]);
        assert_eq!(code, NOT_RUNNING);
        assert_eq!(
            text,
            format!(
                "gateway not running; a stale lock (pid {pid}) is left and the next start reclaims it\n"
            )
        );
        let library = gateway::status(&env.options()).unwrap();
        assert!(!library.running && library.stale);
    });
}

#[test]
fn nothing_running_and_a_foreign_listener_on_the_port() {
    let env = TestEnv::new();
    let port = free_port();
    let p = port.to_string();
    let nothing = json!({
        "running": false,
        "pid": null,
        "port": port,
        "startTime": null,
        "configPath": null,
        "healthy": false,
        "lockPath": null,
        "stale": false,
        "host": null,
        "onOtherHost": false,
    });

    // No state dir at all: status says so and creates none.
    assert_eq!(
        status_json(&env, &["--port", &p]),
        (NOT_RUNNING, nothing.clone())
    );
    let (code, text) = status_cli(&env, &["--port", &p]);
    assert_eq!(
        (code, text.as_str()),
        (NOT_RUNNING, "gateway not running\n")
    );

    // A plain listener that never answers: not a gateway, not running.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    assert_eq!(
        status_json(&env, &["--port", &p]),
        (NOT_RUNNING, nothing.clone())
    );
    drop(listener);

    // Another gateway (another state dir) that answers on the port: not ours, yet healthy.
    let other = TestEnv::new();
    let foreign = other.start(&["--port", &p]);
    let before = snapshot(&other.lock_dir());
    let (code, value) = status_json(&env, &["--port", &p]);
    assert_eq!(code, OTHERWISE);
    let mut expected = nothing.clone();
    expected["healthy"] = json!(true);
    assert_eq!(value, expected);
    let (code, text) = status_cli(&env, &["--port", &p]);
    assert_eq!(code, OTHERWISE);
    assert!(
        text.starts_with(&format!(
            "no gateway holds this config's lock, but ws://127.0.0.1:{port}/healthz answers"
        )),
        "{text}"
    );
    assert_eq!(
        snapshot(&other.lock_dir()),
        before,
        "the other gateway's files"
    );
    assert!(healthy(foreign.port));

    assert!(
        std::fs::read_dir(env.home()).unwrap().next().is_none(),
        "status created something under HOME"
    );
}

#[test]
fn status_never_signals_the_recorded_owner() {
    let env = TestEnv::new();
    let port = free_port().to_string();
    let mut owner = TrapOwner::spawn();
    let start = start_time_of(owner.pid());

    write_lock(&env.state_lock(), &lock_body(owner.pid(), Some(start)));
    changes_nothing(&env, || {
        let (code, value) = status_json(&env, &["--port", &port]);
        assert_eq!(code, OTHERWISE, "{value}");
        assert_eq!(value["running"], json!(true));
        assert_eq!(value["pid"], json!(owner.pid()));
        assert_eq!(value["startTime"], json!(start));
        assert_eq!(
            value["configPath"],
            json!("/home/u/.openclaw/openclaw.json")
        );
    });

    write_lock(&env.state_lock(), &lock_body(owner.pid(), Some(start + 1)));
    changes_nothing(&env, || {
        let (code, value) = status_json(&env, &["--port", &port]);
        assert_eq!(code, NOT_RUNNING, "{value}");
        assert_eq!(value["running"], json!(false));
        assert_eq!(value["stale"], json!(true));
    });

    owner.assert_never_signalled();
    owner.prove_detector_works();
}

/// Where the lock dir is (here a temp dir, on a local file system), and that its locks are one
/// host's: in the JSON, in the text, and in the one line logged when the lock is taken.
#[test]
fn status_and_acquire_name_the_ground_of_the_lock_dir() {
    let env = TestEnv::new();
    let (_, stdout) = status_output(&env, &["--json"]);
    let value: Value = serde_json::from_str(&stdout).unwrap();
    let ground = &value["ground"];
    assert_local_ground(&env, ground);
    let described = format!(
        "{} at {}: local (one host)",
        ground["fsType"].as_str().unwrap(),
        ground["mountPoint"].as_str().unwrap()
    );
    let (code, text) = status_output(&env, &[]);
    assert_eq!(code, NOT_RUNNING);
    assert_eq!(
        text,
        format!("gateway not running\nlock dir on {described}\n")
    );

    let (logger, lines) = recording_logger();
    let lock = GatewayLock::acquire(&env.options().port(0).logger(logger)).unwrap();
    let expected = (
        gateway::LogLevel::Info,
        format!("lock dir {} is on {described}", env.lock_dir().display()),
    );
    let logged = lines.lock().unwrap().clone();
    assert_eq!(
        logged.iter().filter(|line| **line == expected).count(),
        1,
        "one line names the ground: {logged:?}"
    );
    assert!(
        !logged
            .iter()
            .any(|(level, _)| *level >= gateway::LogLevel::Warn),
        "{logged:?}"
    );
    drop(lock);
}

/// `unlock` beside `status`: a young file with nothing written yet is a gateway starting, whose
/// holder it cannot judge. It refuses, saying the holder may be alive (not that it is), how old
/// the lock is, and removes nothing.
#[test]
fn unlock_refuses_a_starting_gateway_as_one_that_may_be_alive() {
    let env = TestEnv::new();
    write_lock(&env.state_lock(), "");
    let err = gateway::unlock(&env.options(), true).expect_err("a starting gateway is refused");
    assert!(
        matches!(
            err,
            gateway::GatewayLockError::LockInUse {
                pid: None,
                confirmed: false,
                ..
            }
        ),
        "{err:?}"
    );
    let said = err.to_string();
    let prefix = format!(
        "refusing to unlock {}: a starting gateway (locked ",
        env.state_lock().display()
    );
    let suffix = " ago) may be alive on this machine; stop that gateway first (gateway unlock never removes a live gateway's lock)";
    // The age in whole seconds: 0s, or more on a slow machine.
    let age = said
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
        .unwrap_or_else(|| panic!("{said:?}"));
    assert!(age.ends_with('s') && age.len() < 8, "{said:?}");
    assert_eq!(env.lock_dir_entries(), ["gateway.state.lock"]);
}
