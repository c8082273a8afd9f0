//! Pairing as a host sees it (SPEC §11.5): the device store in the state dir, read at serve and
//! kept across restarts, and the host's calls on the handle (list, approve, reject, remove,
//! revoke) with their `device.pair.resolved` broadcasts, against a real gateway and client.

mod common;
mod wsclient;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gateway::{
    DEVICE_STORE_FILE, Gateway, GatewayLock, GatewayLockError, PairingError, PairingOptions,
    ServeOptions,
};
use serde_json::{Value, json};
use wsclient::Client;

use common::{TestEnv, free_port};

fn serve(env: &TestEnv, port: u16, pairing: PairingOptions) -> Result<Gateway, GatewayLockError> {
    let lock = GatewayLock::acquire(&env.options().port(port)).unwrap();
    Gateway::serve(
        lock,
        ServeOptions {
            worker_threads: 2,
            pairing,
            ..ServeOptions::default()
        },
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A pending request as the store file keeps it.
fn pending(request_id: &str, device_id: &str, scopes: &[&str]) -> Value {
    json!({
        "requestId": request_id,
        "deviceId": device_id,
        "publicKey": format!("key-{device_id}"),
        "displayName": "build box",
        "clientId": "cli",
        "clientMode": "cli",
        "role": "operator",
        "scopes": scopes,
        "isRepair": false,
        "ts": now_ms(),
    })
}

/// Writes a store with these pending requests where the gateway of `env` looks by default.
fn seed_store(env: &TestEnv, requests: Vec<Value>) -> PathBuf {
    let path = env.state_dir().join(DEVICE_STORE_FILE);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = json!({"version": 1, "devices": [], "pending": requests});
    std::fs::write(&path, file.to_string()).unwrap();
    path
}

fn file_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_approves_and_rejects_pending_requests_and_clients_hear_of_it() {
    let env = TestEnv::new();
    let path = seed_store(
        &env,
        vec![
            pending("req-a", "dev-a", &["operator.read"]),
            pending("req-b", "dev-b", &[]),
        ],
    );
    let port = free_port();
    let gateway = serve(&env, port, PairingOptions::default()).unwrap();
    let handle = gateway.handle();
    let ids: Vec<String> = handle
        .pairing_requests()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(ids, ["req-a", "req-b"]);
    let mut client = Client::listener(port, None).await;

    let device = handle
        .approve_pairing("req-a", Some(vec!["operator.write".into()]))
        .unwrap();
    assert_eq!(device.device_id, "dev-a");
    assert_eq!(device.roles, ["operator"]);
    assert_eq!(
        device.scopes,
        ["operator.write"],
        "the host's scopes, not the asked ones"
    );
    let resolved = client.next_event_payload("device.pair.resolved").await;
    assert_eq!(resolved["requestId"], "req-a");
    assert_eq!(resolved["deviceId"], "dev-a");
    assert_eq!(resolved["decision"], "approved");
    assert!(
        resolved["ts"].as_u64().unwrap() >= now_ms() - 60_000,
        "{resolved}"
    );

    let request = handle.reject_pairing("req-b").unwrap();
    assert_eq!(request.device_id, "dev-b");
    let resolved = client.next_event_payload("device.pair.resolved").await;
    assert_eq!(
        (
            resolved["requestId"].as_str(),
            resolved["decision"].as_str()
        ),
        (Some("req-b"), Some("rejected"))
    );

    // Decided once: a second answer names the request and says what to do.
    let err = handle.approve_pairing("req-b", None).unwrap_err();
    assert!(matches!(err, PairingError::UnknownRequest(_)), "{err}");
    assert!(err.to_string().contains("req-b"), "{err}");
    assert!(handle.pairing_requests().is_empty());
    let paired: Vec<String> = handle
        .paired_devices()
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(paired, ["dev-a"]);
    assert!(
        file_text(&path).contains("\"dev-a\""),
        "saved before the call returned"
    );
    drop(client);
    gateway.shutdown(std::time::Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairings_survive_a_restart_and_removal_is_saved() {
    let env = TestEnv::new();
    seed_store(&env, vec![pending("req-a", "dev-a", &[])]);
    let port = free_port();
    let gateway = serve(&env, port, PairingOptions::default()).unwrap();
    gateway.handle().approve_pairing("req-a", None).unwrap();
    gateway.shutdown(std::time::Duration::from_secs(2));

    let gateway = serve(&env, port, PairingOptions::default()).unwrap();
    let handle = gateway.handle();
    let device = handle.paired_devices().pop().expect("still paired");
    assert_eq!(device.device_id, "dev-a");
    // The token approval issued (as Node's does) survived too: revoked once, then none.
    handle.revoke_device_token("dev-a", "operator").unwrap();
    assert!(matches!(
        handle.revoke_device_token("dev-a", "operator"),
        Err(PairingError::NoToken { .. })
    ));
    handle.remove_paired_device("dev-a").unwrap();
    assert!(matches!(
        handle.remove_paired_device("dev-a"),
        Err(PairingError::UnknownDevice(_))
    ));
    gateway.shutdown(std::time::Duration::from_secs(2));

    let gateway = serve(&env, port, PairingOptions::default()).unwrap();
    assert!(gateway.handle().paired_devices().is_empty());
    gateway.shutdown(std::time::Duration::from_secs(2));
}

#[test]
fn the_store_path_can_be_chosen_and_must_be_absolute() {
    let env = TestEnv::new();
    let chosen = env.home().join("elsewhere/devices.json");
    let options = PairingOptions {
        store_path: Some(chosen.clone()),
        ..PairingOptions::default()
    };
    std::fs::create_dir_all(chosen.parent().unwrap()).unwrap();
    let file = json!({"version": 1, "devices": [], "pending": [pending("req-x", "dev-x", &[])]});
    std::fs::write(&chosen, file.to_string()).unwrap();
    let port = free_port();
    let gateway = serve(&env, port, options).unwrap();
    gateway.handle().approve_pairing("req-x", None).unwrap();
    assert!(file_text(&chosen).contains("\"dev-x\""));
    assert!(!env.state_dir().join(DEVICE_STORE_FILE).exists());
    gateway.shutdown(std::time::Duration::from_secs(2));

    let relative = ServeOptions {
        pairing: PairingOptions {
            store_path: Some(PathBuf::from("devices.json")),
            ..PairingOptions::default()
        },
        ..ServeOptions::default()
    };
    let err = relative.validate().unwrap_err().to_string();
    assert!(
        err.contains("pairing.store_path devices.json is relative"),
        "{err}"
    );
    // A policy of the host's own is an `Arc<dyn PairingPolicy>`.
    let _custom = PairingOptions {
        policy: Arc::new(gateway::DefaultPairingPolicy),
        store_path: None,
    };
}

#[test]
fn a_corrupt_store_stops_serve_naming_the_file_and_the_lock_is_released() {
    let env = TestEnv::new();
    let path = env.state_dir().join(DEVICE_STORE_FILE);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"{\"version\": 1, \"devices\": [ garbage").unwrap();
    let port = free_port();
    let err = serve(&env, port, PairingOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, GatewayLockError::DeviceStore { .. }),
        "{message}"
    );
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("move it aside"), "{message}");
    assert_eq!(
        file_text(&path),
        "{\"version\": 1, \"devices\": [ garbage",
        "left as it was"
    );
    // Refused, not stuck: the lock was released, so after the file is moved aside it serves.
    std::fs::rename(&path, path.with_extension("json.bad")).unwrap();
    let gateway = serve(&env, port, PairingOptions::default()).unwrap();
    gateway.shutdown(std::time::Duration::from_secs(2));
}
