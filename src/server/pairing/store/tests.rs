//! The device store against real files: what survives a reopen, how it is written, and what
//! many connections at once leave behind.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use super::*;
use crate::server::pairing::{BootstrapProfile, PairingError};

fn request(device: &str, role: &str, scopes: &[&str]) -> PairingRequest {
    PairingRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        device_id: device.into(),
        public_key: format!("key-of-{device}"),
        display_name: Some("laptop".into()),
        platform: Some("linux".into()),
        device_family: None,
        client_id: "cli".into(),
        client_mode: "cli".into(),
        browser_origin: None,
        role: role.into(),
        roles: None,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        remote_ip: None,
        silent: Some(true),
        is_repair: false,
        ts: 0,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn open(path: &Path) -> DeviceStore {
    DeviceStore::open(path, Logger::default()).expect("the store opens")
}

fn path_of(store: &DeviceStore) -> PathBuf {
    store.path.clone().unwrap()
}

fn store_in(dir: &tempfile::TempDir) -> (PathBuf, DeviceStore) {
    let path = dir.path().join(DEVICE_STORE_FILE);
    let store = open(&path);
    (path, store)
}

/// Pairs `device` as an operator with `scopes` and returns its first token.
fn pair(store: &DeviceStore, device: &str, scopes: &[&str]) -> String {
    let outcome = store.request_pairing(request(device, "operator", scopes));
    store
        .try_approve(&outcome.request.request_id, None)
        .expect("approved");
    store
        .ensure_device_token_for(device, "operator", &strings(scopes), None)
        .expect("a token")
        .token
}

#[test]
fn a_paired_device_and_its_token_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_in(&dir);
    assert!(!path.exists(), "nothing is written before the first change");
    let token = pair(&store, "d1", &["operator.read"]);
    let waiting = store.request_pairing(request("d2", "operator", &[]));
    drop(store);

    let store = open(&path);
    let device = store.paired("d1").expect("still paired");
    assert_eq!(device.roles, strings(&["operator"]));
    assert_eq!(device.scopes, strings(&["operator.read"]));
    assert_eq!(
        store.verify_device_token("d1", "operator", &token, &strings(&["operator.read"])),
        Ok(())
    );
    let pending = store.pending();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].request_id, waiting.request.request_id);
}

#[test]
fn the_file_is_private_and_no_temporary_file_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_in(&dir);
    pair(&store, "d1", &[]);
    pair(&store, "d2", &[]);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
    let dir_mode = fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let names: Vec<String> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["devices.json".to_owned()]);
}

#[test]
fn a_failed_write_changes_nothing_and_says_which_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_in(&dir);
    let outcome = store.request_pairing(request("d1", "operator", &[]));
    // The store's directory becomes a file: every write fails from here.
    let parent = path.parent().unwrap();
    fs::rename(parent, dir.path().join("moved")).unwrap();
    fs::write(parent, b"not a directory").unwrap();
    let err = store
        .try_approve(&outcome.request.request_id, None)
        .expect_err("the write fails");
    assert!(matches!(err, PairingError::Write { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(store.paired("d1").is_none(), "not paired when not saved");
    assert_eq!(store.pending().len(), 1, "still pending");
}

#[test]
fn tokens_are_kept_as_their_sha256_only() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_in(&dir);
    let token = pair(&store, "d1", &["operator.read"]);
    assert_eq!(
        token.len(),
        43,
        "32 bytes, base64url without padding: {token}"
    );
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains(&token),
        "the token itself is not in the file"
    );
    assert!(text.contains(&token_hash(&token)), "{text}");
}

/// The file's identity and contents: unchanged means not rewritten.
fn file_stamp(path: &Path) -> (u64, std::time::SystemTime, Vec<u8>) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).unwrap();
    (
        meta.ino(),
        meta.modified().unwrap(),
        fs::read(path).unwrap(),
    )
}

#[test]
fn a_token_this_process_issued_is_handed_back_without_a_write_and_a_restart_rotates_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_in(&dir);
    let read = strings(&["operator.read"]);
    let first = pair(&store, "d1", &["operator.read"]);
    let before = file_stamp(&path);
    for presented in [Some(first.as_str()), None, Some("another credential")] {
        let again = store
            .ensure_device_token_for("d1", "operator", &read, presented)
            .unwrap();
        assert_eq!(again.token, first, "presented {presented:?}");
    }
    assert!(before == file_stamp(&path), "the store file was rewritten");
    assert!(
        store
            .ensure_device_token_for("d1", "node", &[], None)
            .is_none(),
        "role not approved"
    );

    // After a restart the plaintext is gone: the first connect that does not present the
    // token rotates it once, and later connects get the new one back.
    let store = open(&path);
    let rotated = store
        .ensure_device_token_for("d1", "operator", &read, None)
        .unwrap();
    assert_ne!(rotated.token, first);
    assert_eq!(
        store.verify_device_token("d1", "operator", &first, &read),
        Err(TokenRefusal::Mismatch),
        "the replaced token is refused"
    );
    let before = file_stamp(&path);
    let again = store
        .ensure_device_token_for("d1", "operator", &read, None)
        .unwrap();
    assert_eq!(again.token, rotated.token);
    assert!(before == file_stamp(&path), "the store file was rewritten");
    // A token presented and verified after a restart is remembered too.
    let store = open(&path);
    store
        .ensure_device_token_for("d1", "operator", &read, Some(&rotated.token))
        .unwrap();
    let again = store
        .ensure_device_token_for("d1", "operator", &read, None)
        .unwrap();
    assert_eq!(again.token, rotated.token);
    assert!(
        store
            .ensure_device_token_for("d9", "operator", &[], None)
            .is_none(),
        "not paired"
    );
}

#[test]
fn a_token_is_refused_for_scopes_beyond_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, store) = store_in(&dir);
    let token = pair(&store, "d1", &["operator.write"]);
    // operator.write implies operator.read (SPEC §12.3).
    assert_eq!(
        store.verify_device_token("d1", "operator", &token, &strings(&["operator.read"])),
        Ok(())
    );
    assert_eq!(
        store.verify_device_token("d1", "operator", &token, &strings(&["operator.admin"])),
        Err(TokenRefusal::ScopeMismatch)
    );
    assert!(
        store
            .ensure_device_token_for("d1", "operator", &strings(&["operator.admin"]), None)
            .is_none(),
        "no token beyond the approved scopes"
    );
}

#[test]
fn a_revoked_role_is_not_approved_until_the_device_pairs_again() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_in(&dir);
    let token = pair(&store, "d1", &[]);
    assert_eq!(store.active_roles("d1"), strings(&["operator"]));
    assert!(store.try_revoke_device_token("d1", "operator").is_ok());
    assert!(
        store.try_revoke_device_token("d1", "operator").is_err(),
        "already revoked"
    );
    assert!(matches!(
        store.try_revoke_device_token("d1", "operator"),
        Err(PairingError::NoToken { .. })
    ));
    let store = open(&path);
    assert_eq!(
        store.verify_device_token("d1", "operator", &token, &[]),
        Err(TokenRefusal::Mismatch)
    );
    // Still paired, but the role counts only with an unrevoked token (MH:1508): the
    // handshake asks for pairing again (a role upgrade) rather than minting a new token.
    assert_eq!(store.paired("d1").unwrap().roles, strings(&["operator"]));
    assert!(store.active_roles("d1").is_empty());
    // A handshake that passed its checks before the revoke gets no fresh token either.
    assert!(
        store
            .ensure_device_token_for("d1", "operator", &[], Some(&token))
            .is_none()
    );
    assert!(
        store
            .ensure_device_token_for("d1", "operator", &[], None)
            .is_none()
    );
    assert!(
        store.active_roles("d1").is_empty(),
        "the revoke is not undone"
    );
    let again = store.request_pairing(request("d1", "operator", &[]));
    assert!(again.request.is_repair);
    store.try_approve(&again.request.request_id, None).unwrap();
    assert_eq!(store.active_roles("d1"), strings(&["operator"]));
    let issued = store
        .ensure_device_token_for("d1", "operator", &[], Some(&token))
        .unwrap();
    assert_ne!(issued.token, token, "a revoked token is never handed back");
    assert_eq!(
        store.verify_device_token("d1", "operator", &token, &[]),
        Err(TokenRefusal::Mismatch)
    );
}

#[test]
fn approval_issues_a_token_for_each_requested_role() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_in(&dir);
    let mut both = request("d1", "node", &["operator.read"]);
    both.roles = Some(strings(&["operator", "node"]));
    let outcome = store.request_pairing(both);
    store
        .try_approve(&outcome.request.request_id, None)
        .unwrap();
    let mut roles = store.active_roles("d1");
    roles.sort();
    assert_eq!(roles, strings(&["node", "operator"]));
    let text = fs::read_to_string(&path).unwrap();
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    let tokens = &file["devices"][0]["tokens"];
    assert_eq!(tokens[0]["role"], "node");
    assert_eq!(tokens[0]["scopes"], serde_json::json!([]));
    assert_eq!(tokens[1]["role"], "operator");
    assert_eq!(tokens[1]["scopes"], serde_json::json!(["operator.read"]));
}

#[test]
fn an_approval_for_a_connection_grants_no_more_than_it_may() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, store) = store_in(&dir);
    // Merged from a connect that asked for admin and one that asks for read.
    store.request_pairing(request("d1", "operator", &["operator.admin"]));
    let merged = store.request_pairing(request("d1", "operator", &["operator.read"]));
    let id = merged.request.request_id.clone();
    let read = strings(&["operator.read"]);
    let err = store
        .try_approve_within(&id, None, Some(&read))
        .expect_err("beyond the caller");
    assert!(
        matches!(&err, PairingError::BeyondCallerScopes { scope, .. } if scope == "operator.admin"),
        "{err}"
    );
    assert!(store.paired("d1").is_none());
    assert_eq!(store.pending()[0].request_id, id, "still pending");
    // The host may approve it whole, or the caller within its scopes.
    let admin = strings(&["operator.admin"]);
    store.try_approve_within(&id, None, Some(&admin)).unwrap();
    assert!(store.active_roles("d1").contains(&"operator".to_owned()));
}

#[test]
fn pending_requests_are_capped_per_ip_and_in_all_dropping_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_in(&dir);
    let from = |device: &str, ip: &str| {
        let mut r = request(device, "operator", &[]);
        r.remote_ip = Some(ip.into());
        r
    };
    let first = store.request_pairing(from("a0", "203.0.113.1"));
    for i in 1..MAX_PENDING_PER_IP {
        let outcome = store.request_pairing(from(&format!("a{i}"), "203.0.113.1"));
        assert!(outcome.evicted.is_empty());
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let over = store.request_pairing(from("over", "203.0.113.1"));
    let evicted: Vec<&str> = over.evicted.iter().map(|r| r.device_id.as_str()).collect();
    assert_eq!(evicted, vec!["a0"]);
    assert_eq!(store.pending().len(), MAX_PENDING_PER_IP);
    assert!(
        store
            .pending()
            .iter()
            .all(|p| p.request_id != first.request.request_id)
    );
    // In all: many IPs, each within its own cap.
    for i in 0..MAX_PENDING {
        store.request_pairing(from(&format!("b{i}"), &format!("198.51.100.{}", i % 200)));
    }
    assert_eq!(store.pending().len(), MAX_PENDING);
    assert_eq!(open(&path).pending().len(), MAX_PENDING, "saved as capped");
}

#[test]
fn asking_again_for_the_same_is_kept_in_memory_only() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_in(&dir);
    let first = store.request_pairing(request("d1", "operator", &["operator.read"]));
    let before = file_stamp(&path);
    let again = store.request_pairing(request("d1", "operator", &["operator.read"]));
    assert!(!again.created);
    assert!(
        before == file_stamp(&path),
        "a refresh rewrote the store file"
    );
    // A restart keeps the request as created.
    let pending = open(&path).pending();
    assert_eq!(pending[0].request_id, first.request.request_id);
}

#[test]
fn approving_adds_roles_and_scopes_to_what_was_approved() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, store) = store_in(&dir);
    pair(&store, "d1", &["operator.read"]);
    let upgrade = store.request_pairing(request("d1", "operator", &["operator.write"]));
    assert!(
        upgrade.request.is_repair,
        "a paired device's request is a repair"
    );
    let device = store
        .try_approve(&upgrade.request.request_id, None)
        .unwrap();
    assert_eq!(device.scopes, strings(&["operator.read", "operator.write"]));
    let node = store.request_pairing(request("d1", "node", &[]));
    let device = store
        .try_approve(&node.request.request_id, Some(strings(&["operator.admin"])))
        .unwrap();
    assert_eq!(device.roles, strings(&["operator", "node"]));
    assert_eq!(
        device.scopes,
        strings(&["operator.read", "operator.write", "operator.admin"]),
        "the host's scopes replace the requested ones, added to the old"
    );
    assert!(
        store
            .try_approve(&node.request.request_id, None)
            .ok()
            .is_none(),
        "decided once"
    );
}

#[test]
fn asking_again_refreshes_the_request_and_asking_for_more_supersedes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, store) = store_in(&dir);
    let first = store.request_pairing(request("d1", "operator", &["operator.write"]));
    assert!(first.created);
    // The same again, or less (operator.read is implied by operator.write): refreshed.
    for scopes in [&["operator.write"][..], &["operator.read"][..]] {
        let again = store.request_pairing(request("d1", "operator", scopes));
        assert!(!again.created);
        assert!(again.superseded.is_empty());
        assert_eq!(again.request.request_id, first.request.request_id);
        assert_eq!(
            again.request.ts, first.request.ts,
            "ts is when it was created"
        );
        assert_eq!(again.request.scopes, strings(&["operator.write"]));
    }
    // More: a new request with everything asked for, the old one superseded.
    let more = store.request_pairing(request("d1", "operator", &["operator.admin"]));
    assert!(more.created);
    assert_ne!(more.request.request_id, first.request.request_id);
    assert_eq!(
        more.request.scopes,
        strings(&["operator.write", "operator.admin"])
    );
    let superseded: Vec<&str> = more
        .superseded
        .iter()
        .map(|r| r.request_id.as_str())
        .collect();
    assert_eq!(superseded, vec![first.request.request_id.as_str()]);
    // Another role: superseded again, roles merged.
    let node = store.request_pairing(request("d1", "node", &[]));
    assert!(node.created);
    assert_eq!(node.request.roles, Some(strings(&["operator", "node"])));
    let pending = store.pending();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].request_id, node.request.request_id);
    assert!(
        store
            .try_approve(&first.request.request_id, None)
            .ok()
            .is_none()
    );
}

#[test]
fn a_pending_request_expires_300000_ms_after_it_was_last_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("devices.json");
    let now = now_ms();
    let stored = |id: &str, ts: u64, refreshed: Option<u64>| {
        let mut r = request(id, "operator", &[]);
        r.request_id = format!("req-{id}");
        r.ts = ts;
        StoredRequest {
            request: r,
            refreshed_at_ms: refreshed,
        }
    };
    let file = StoreFile {
        version: FORMAT_VERSION,
        devices: Vec::new(),
        pending: vec![
            stored("expired", now - PAIRING_REQUEST_TTL_MS - 1, None),
            stored("fresh", now - PAIRING_REQUEST_TTL_MS + 60_000, None),
            stored(
                "refreshed",
                now - 2 * PAIRING_REQUEST_TTL_MS,
                Some(now - 1_000),
            ),
        ],
        bootstrap: Vec::new(),
    };
    write_atomically(&path, &serde_json::to_vec(&file).unwrap()).unwrap();
    let store = open(&path);
    let ids: Vec<String> = store.pending().into_iter().map(|r| r.request_id).collect();
    assert_eq!(
        ids,
        vec!["req-refreshed".to_owned(), "req-fresh".to_owned()]
    );
    assert!(matches!(
        store.try_approve("req-expired", None),
        Err(PairingError::UnknownRequest(_))
    ));
}

#[test]
fn removing_a_device_drops_its_tokens_and_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_in(&dir);
    let token = pair(&store, "d1", &[]);
    store.request_pairing(request("d1", "node", &[]));
    pair(&store, "d2", &[]);
    assert_eq!(store.remove_device("d1").unwrap().device_id, "d1");
    assert!(matches!(
        store.remove_device("d1"),
        Err(PairingError::UnknownDevice(_))
    ));
    let store = open(&path);
    assert!(store.paired("d1").is_none());
    assert!(store.pending().is_empty());
    assert_eq!(
        store.verify_device_token("d1", "operator", &token, &[]),
        Err(TokenRefusal::Mismatch)
    );
    let ids: Vec<String> = store
        .paired_devices()
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(ids, vec!["d2".to_owned()]);
}

#[test]
fn a_store_that_cannot_be_used_is_refused_with_its_path_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("devices.json");
    let refusal = |path: &Path| {
        DeviceStore::open(path, Logger::default())
            .expect_err("refused")
            .to_string()
    };
    fs::write(&path, b"{\"version\":1,\"devices\":[").unwrap();
    let message = refusal(&path);
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("not a valid device store"), "{message}");
    assert!(message.contains("move it aside"), "{message}");

    fs::write(&path, b"{\"version\":7,\"devices\":[],\"pending\":[]}").unwrap();
    assert!(refusal(&path).contains("format version 7"));

    let twice = r#"{"version":1,"pending":[],"devices":[
        {"deviceId":"d","publicKey":"k","roles":[],"scopes":[],"clientId":"c","clientMode":"m","approvedAtMs":1},
        {"deviceId":"d","publicKey":"k","roles":[],"scopes":[],"clientId":"c","clientMode":"m","approvedAtMs":1}]}"#;
    fs::write(&path, twice).unwrap();
    assert!(refusal(&path).contains("lists device d twice"));

    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    assert!(refusal(&path).contains("not a regular file"));
}

#[test]
fn many_connections_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_in(&dir);
    let store = Arc::new(store);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                (0..8)
                    .map(|i| {
                        let device = format!("d{t}-{i}");
                        // Two racing requests of one device, then approval of what is pending.
                        store.request_pairing(request(&device, "operator", &["operator.read"]));
                        let outcome = store.request_pairing(request(&device, "operator", &[]));
                        store
                            .try_approve(&outcome.request.request_id, None)
                            .unwrap();
                        store.touch(&device, Some("racing"));
                        let token = store
                            .ensure_device_token_for(
                                &device,
                                "operator",
                                &strings(&["operator.read"]),
                                None,
                            )
                            .unwrap();
                        (device, token.token)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let issued: Vec<(String, String)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let store = open(&path);
    assert_eq!(store.paired_devices().len(), 8 * 8);
    assert!(store.pending().is_empty());
    for (device, token) in issued {
        assert_eq!(
            store.verify_device_token(&device, "operator", &token, &strings(&["operator.read"])),
            Ok(()),
            "{device}"
        );
    }
}

#[test]
fn approving_a_metadata_upgrade_pins_what_the_device_now_claims() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, store) = store_in(&dir);
    let mut first = request("d1", "operator", &[]);
    first.platform = Some("macos 15.1".into());
    first.device_family = Some("Mac".into());
    let outcome = store.request_pairing(first);
    store
        .try_approve(&outcome.request.request_id, None)
        .unwrap();
    // The device now claims another platform and no family: both are re-pinned as claimed.
    let mut moved = request("d1", "operator", &[]);
    moved.platform = Some("linux".into());
    moved.device_family = None;
    let outcome = store.request_pairing(moved);
    let device = store
        .try_approve(&outcome.request.request_id, None)
        .unwrap();
    assert_eq!(
        (device.platform.as_deref(), device.device_family.as_deref()),
        (Some("linux"), None)
    );
    assert_eq!(store.paired("d1").unwrap(), device);
}

#[test]
fn a_token_carries_the_scopes_asked_for_not_every_approved_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, store) = store_in(&dir);
    let (path, store) = (path_of(&store), store);
    pair(&store, "d1", &["operator.admin"]);
    // After a restart (no token in memory) a connect asking for less is given a token for
    // what it asks (WRK:2864-2870).
    drop(store);
    let store = open(&path);
    let read = strings(&["operator.read"]);
    let narrow = store
        .ensure_device_token_for("d1", "operator", &read, None)
        .unwrap();
    assert_eq!(
        store.verify_device_token("d1", "operator", &narrow.token, &read),
        Ok(())
    );
    assert_eq!(
        store.verify_device_token(
            "d1",
            "operator",
            &narrow.token,
            &strings(&["operator.admin"])
        ),
        Err(TokenRefusal::ScopeMismatch),
        "a token minted for operator.read does not reach operator.admin (WRK:2816-2823)"
    );
    // Asking for less than the token holds reuses it; asking for more mints a wider one.
    let same = store
        .ensure_device_token_for("d1", "operator", &[], Some(&narrow.token))
        .unwrap();
    assert_eq!(same, narrow);
    let admin = strings(&["operator.admin"]);
    let wide = store
        .ensure_device_token_for("d1", "operator", &admin, Some(&narrow.token))
        .unwrap();
    assert_ne!(wide.token, narrow.token);
    assert_eq!(
        store.verify_device_token("d1", "operator", &wide.token, &admin),
        Ok(())
    );
}

#[test]
fn a_save_holds_no_state_lock_and_an_older_snapshot_never_overwrites_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = store_in(&dir);
    let store = Arc::new(store);
    pair(&store, "d1", &["operator.read"]);
    // A host's approval stopped just before it writes: handshakes still read and refresh.
    let outcome = store.request_pairing(request("d2", "operator", &[]));
    let paused = store.write_pause.lock().unwrap();
    let (reached, at_pause) = std::sync::mpsc::channel();
    *store.write_reached.lock().unwrap() = Some(reached);
    let approving = {
        let store = Arc::clone(&store);
        let id = outcome.request.request_id.clone();
        std::thread::spawn(move || store.try_approve(&id, None))
    };
    at_pause
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("the approval's save reached its pause");
    let (done, finished) = std::sync::mpsc::channel();
    {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            let _ = store.paired("d1");
            store.touch("d1", Some("still served"));
            let token = store.ensure_device_token_for("d1", "operator", &[], None);
            done.send(token.is_some()).unwrap();
        });
    }
    assert_eq!(
        finished.recv_timeout(std::time::Duration::from_secs(5)),
        Ok(true),
        "a handshake waited for another connection's write"
    );
    drop(paused);
    approving.join().unwrap().expect("approved once written");
    assert!(open(&path).paired("d2").is_some());

    // Snapshots saved out of order: the older one is not written over the newer.
    let (older, newer) = {
        let mut state = store.lock();
        state.devices.remove("d1");
        let older = DeviceStore::snapshot(&mut state);
        state.devices.remove("d2");
        (older, DeviceStore::snapshot(&mut state))
    };
    store.save(newer).unwrap();
    store.save(older).unwrap();
    assert!(
        open(&path).paired_devices().is_empty(),
        "the older snapshot was written"
    );
}

/// A bootstrap approval grants no role or scope outside its profile, even when the request
/// merged an earlier one of the device that asked for more; the request stays pending.
#[test]
fn a_bootstrap_approval_stays_within_its_profile() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, store) = store_in(&dir);
    let profile = BootstrapProfile::new(strings(&["operator"]), strings(&["operator.read"]));
    // The device asked earlier as a node; its bootstrap connect merges into that request.
    store.request_pairing(request("d1", "node", &[]));
    let merged = store.request_pairing(request("d1", "operator", &["operator.read"]));
    let err = store
        .try_approve_bootstrap(&merged.request.request_id, &profile)
        .unwrap_err();
    assert!(
        matches!(&err, PairingError::OutsideBootstrapProfile { what, .. } if what == "role node"),
        "{err}"
    );
    assert!(store.paired("d1").is_none());
    assert_eq!(store.pending().len(), 1, "left pending for the host");

    // Operator scopes beyond the profile are refused too.
    let admin = store.request_pairing(request("d2", "operator", &["operator.admin"]));
    let err = store
        .try_approve_bootstrap(&admin.request.request_id, &profile)
        .unwrap_err();
    assert!(
        matches!(&err, PairingError::OutsideBootstrapProfile { what, .. }
            if what == "scope operator.admin"),
        "{err}"
    );

    // Within the profile: paired with its role and scopes.
    let fine = store.request_pairing(request("d3", "operator", &["operator.read"]));
    let paired = store
        .try_approve_bootstrap(&fine.request.request_id, &profile)
        .unwrap();
    assert_eq!(paired.roles, strings(&["operator"]));
    assert_eq!(paired.scopes, strings(&["operator.read"]));
}
