//! The lock file format shared with the Node gateway (SPEC §3), on real files: a file exactly
//! as OpenClaw writes it is found under its SHA-256 name, parsed and judged; and the files a
//! running gateway writes have the exact layout the Node gateway reads.
//! (The parser and renderer alone are unit-tested in src/lock/format.rs.)

mod common;
mod lockkit;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;
use gateway::GatewayLock;
use lockkit::*;
use serde_json::{Value, json};

/// The config path of the Node example; SPEC §1 names its lock `gateway.53bf3fdf.lock`.
const NODE_CONFIG: &str = "/home/u/.openclaw/openclaw.json";
const NODE_LOCK_NAME: &str = "gateway.53bf3fdf.lock";

/// 8 tabs, then 128 tabs and spaces: the bits of 0x8a8c910f4aa74540ae8c043ba516014d.
fn node_token_line() -> String {
    let bits = u128::from_str_radix("8a8c910f4aa74540ae8c043ba516014d", 16).unwrap();
    let mut line = "\t".repeat(8);
    line.extend(
        (0..128)
            .rev()
            .map(|i| if bits >> i & 1 == 1 { '\t' } else { ' ' }),
    );
    line
}

/// The Node gateway's lock file, byte for byte, with `pid` and `startTime` swapped in.
fn node_file(pid: u32, start_time: u64) -> String {
    format!(
        "{{\n  \"pid\": {pid},\n  \"ownerId\": \"8a8c910f-4aa7-4540-ae8c-043ba516014d\",\n  \"cronOwnerProjection\": \"dynamic-default-v1\",\n  \"createdAt\": \"2026-11-21T00:36:45.087Z\",\n  \"configPath\": \"/home/u/.openclaw/openclaw.json\",\n  \"stateDir\": \"/home/u/.openclaw\",\n  \"port\": 28789,\n  \"startTime\": {start_time}\n}}\n{}\n",
        node_token_line()
    )
}

/// Plants the Node file under its literal name in `env`'s lock dir.
fn plant_node_file(env: &TestEnv, text: &str) -> std::path::PathBuf {
    let path = env.lock_dir().join(NODE_LOCK_NAME);
    write_lock(&path, text);
    path
}

#[test]
fn a_node_file_with_a_live_owner_is_waited_for_and_reported() {
    let env = TestEnv::new();
    let mut owner = Owner::sleep();
    let start = owner.start_time();
    let text = node_file(owner.pid, start);
    assert_eq!(node_token_line().len(), 8 + 128);
    let path = plant_node_file(&env, &text);

    // Found under the SHA-256 name of its config path, judged alive by pid + start time:
    // acquisition waits the whole timeout, then names that pid.
    let options = env
        .options()
        .config_path(NODE_CONFIG)
        .port(0)
        .timeout(TIMEOUT);
    plant_checked(
        &env,
        &options,
        &path,
        text.as_bytes(),
        Expect::Waits(owner.pid),
        Position::Config,
    );

    let status = gateway::status(&env.options().config_path(NODE_CONFIG)).unwrap();
    assert!(status.running && !status.stale, "{status:?}");
    assert_eq!(status.pid, Some(owner.pid));
    assert_eq!(status.port, 28789);
    assert_eq!(status.start_time, Some(start));
    assert_eq!(status.config_path.as_deref(), Some(NODE_CONFIG));
    assert_eq!(status.lock_path.as_deref(), Some(path.as_path()));
    assert!(!status.healthy, "nothing answers on 28789");

    let output = env
        .command(&["status", "--json"])
        .env("OPENCLAW_CONFIG_PATH", NODE_CONFIG)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "running, not healthy");
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["running"], json!(true));
    assert_eq!(value["pid"], json!(owner.pid));
    assert_eq!(value["port"], json!(28789));
    assert_eq!(value["startTime"], json!(start));
    assert_eq!(value["lockPath"], json!(path.to_str().unwrap()));

    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    owner.assert_running();
}

#[test]
fn a_node_file_with_a_dead_owner_is_reclaimed_at_once() {
    let env = TestEnv::new();
    let dead = dead_pid();
    let text = node_file(dead, 61695);
    let path = plant_node_file(&env, &text);

    let status = gateway::status(&env.options().config_path(NODE_CONFIG)).unwrap();
    assert!(!status.running && status.stale, "{status:?}");
    assert_eq!(status.pid, Some(dead));
    let output = env
        .command(&["status"])
        .env("OPENCLAW_CONFIG_PATH", NODE_CONFIG)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "not running");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "status kept it"
    );

    // Reclaimed before a 300 ms deadline, so without waiting a poll for it.
    let options = env
        .options()
        .config_path(NODE_CONFIG)
        .port(0)
        .timeout(TIMEOUT);
    let started = std::time::Instant::now();
    let lock = acquire_guarded(&options).unwrap();
    assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
    assert_eq!(lock.lock_paths()[1], path.as_path());
    let ours = read_payload(&path);
    assert_eq!(ours.pid, std::process::id());
    assert_eq!(ours.config_path.as_deref(), Some(NODE_CONFIG));
    drop(lock);
    assert!(env.lock_dir_entries().is_empty());
}

/// Checks one of our lock files against SPEC §3 byte for byte and returns its ownerId.
fn assert_exact_layout(
    path: &Path,
    pid: u32,
    port: u16,
    config_path: &Path,
    state_dir: &Path,
) -> String {
    let bytes = std::fs::read(path).unwrap();
    let whole: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("serde_json rejects the whole file: {e}"));
    let text = String::from_utf8(bytes).unwrap();
    let body = text.strip_suffix('\n').expect("the file ends with \\n");
    let (json_text, token) = body.rsplit_once('\n').expect("a token line");
    assert_eq!(token.len(), 8 + 128, "{token:?}");
    assert!(token[..8].bytes().all(|b| b == b'\t'), "{token:?}");
    assert!(
        token[8..].bytes().all(|b| b == b'\t' || b == b' '),
        "{token:?}"
    );

    let owner_id = whole["ownerId"].as_str().expect("ownerId").to_owned();
    assert_uuid_v4(&owner_id);
    let created_at = whole["createdAt"].as_str().expect("createdAt").to_owned();
    assert_iso_millis_recent(&created_at);
    let quoted = |p: &Path| serde_json::to_string(p.to_str().unwrap()).unwrap();
    let expected = format!(
        "{{\n  \"pid\": {pid},\n  \"ownerId\": \"{owner_id}\",\n  \"cronOwnerProjection\": \"dynamic-default-v1\",\n  \"createdAt\": \"{created_at}\",\n  \"configPath\": {},\n  \"stateDir\": {},\n  \"port\": {port},\n  \"startTime\": {}{}\n}}",
        quoted(config_path),
        quoted(state_dir),
        start_time_of(pid),
        host_fields(),
    );
    assert_eq!(json_text, expected, "{}", path.display());
    owner_id
}

/// After SPEC §3's fields, ours (issue 13): this machine's host name, boot id, machine id (as
/// its hash) and PID namespace, each when readable.
fn host_fields() -> String {
    let host = gateway::test_support::HostIdentity::this();
    let quoted = |v: &str| serde_json::to_string(v).unwrap();
    [
        ("hostname", &host.hostname),
        ("bootId", &host.boot_id),
        ("machineId", &host.machine_id),
        ("pidNs", &host.pid_ns),
    ]
    .iter()
    .filter_map(|(name, value)| Some(format!(",\n  \"{name}\": {}", quoted(value.as_deref()?))))
    .collect()
}

fn assert_uuid_v4(id: &str) {
    let bytes = id.as_bytes();
    assert_eq!(bytes.len(), 36, "{id}");
    for (i, b) in bytes.iter().enumerate() {
        if [8, 13, 18, 23].contains(&i) {
            assert_eq!(*b, b'-', "{id}");
        } else {
            assert!(b.is_ascii_digit() || (b'a'..=b'f').contains(b), "{id}");
        }
    }
    assert_eq!(bytes[14], b'4', "version 4: {id}");
    assert!(b"89ab".contains(&bytes[19]), "RFC 4122 variant: {id}");
}

/// `2026-11-21T00:36:45.087Z`, and made in the last minute.
fn assert_iso_millis_recent(stamp: &str) {
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    assert_eq!(stamp.len(), shape.len(), "{stamp}");
    for (c, s) in stamp.chars().zip(shape.chars()) {
        if s == 'd' {
            assert!(c.is_ascii_digit(), "{stamp}");
        } else {
            assert_eq!(c, s, "{stamp}");
        }
    }
    let at = humantime::parse_rfc3339(stamp).unwrap();
    let now = SystemTime::now();
    assert!(
        at <= now + Duration::from_secs(1),
        "{stamp} is in the future"
    );
    assert!(
        now.duration_since(at).unwrap_or_default() < Duration::from_secs(60),
        "{stamp}"
    );
}

#[test]
fn a_running_gateway_writes_the_exact_layout() {
    let env = TestEnv::new();
    let port = free_port().to_string();
    let gateway = env.start(&["--port", &port]);
    let ids: Vec<String> = [env.state_lock(), env.config_lock()]
        .iter()
        .map(|path| {
            assert_exact_layout(
                path,
                gateway.pid,
                gateway.port,
                &env.config_path(),
                &env.state_dir(),
            )
        })
        .collect();
    assert_eq!(ids[0], ids[1], "one ownerId in both files");
    assert_eq!(gateway.terminate(), 0);
}

#[test]
fn an_embedded_lock_writes_its_owner_id_and_real_port() {
    let env = TestEnv::new();
    let lock = GatewayLock::acquire(&env.options().port(0)).unwrap();
    assert_ne!(lock.port(), 0);
    for path in lock.lock_paths() {
        let owner_id = assert_exact_layout(
            path,
            std::process::id(),
            lock.port(),
            &env.config_path(),
            &env.state_dir(),
        );
        assert_eq!(owner_id, lock.owner_id());
    }
}
