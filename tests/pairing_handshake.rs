//! Pairing through the handshake (SPEC §11.5, §11.8): a client with a signed device block is
//! paired silently on loopback by Node's default policy, or waits for the host's decision;
//! approved, it connects and gets a device token that survives a restart; revoked, the token is
//! refused. A real gateway, a real client signing with ed25519-dalek.

mod common;
mod wsclient;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway::{
    Auth, Gateway, GatewayLock, PairingContext, PairingDecision, PairingOptions, PairingPolicy,
    PairingReason, PairingRequest, ServeOptions,
};
use serde_json::{Value, json};
use wsclient::{Client, DeviceKey, cli_params};

use common::{TestEnv, free_port};

const TOKEN: &str = "s3cret-token";

fn serve(env: &TestEnv, port: u16, policy: Arc<dyn PairingPolicy>) -> Gateway {
    serve_pairing(
        env,
        port,
        PairingOptions {
            policy,
            store_path: None,
        },
    )
}

/// A gateway on `port` that asks for [`TOKEN`] and pairs devices as `pairing` says.
fn serve_pairing(env: &TestEnv, port: u16, pairing: PairingOptions) -> Gateway {
    let options = env.options().port(port).auth(Auth::Token(TOKEN.into()));
    let lock = GatewayLock::acquire(&options).unwrap();
    Gateway::serve(
        lock,
        ServeOptions {
            worker_threads: 2,
            pairing,
            ..ServeOptions::default()
        },
    )
    .unwrap()
}

/// A host policy that answers with `decision` and remembers what it was asked.
struct Scripted {
    decision: PairingDecision,
    asked: Mutex<Vec<(PairingRequest, PairingReason)>>,
}

impl PairingPolicy for Scripted {
    fn decide(&self, request: &PairingRequest, context: &PairingContext) -> PairingDecision {
        self.asked
            .lock()
            .unwrap()
            .push((request.clone(), context.reason));
        self.decision.clone()
    }
}

fn scripted(decision: PairingDecision) -> Arc<Scripted> {
    Arc::new(Scripted {
        decision,
        asked: Mutex::new(Vec::new()),
    })
}

fn with_device_token(token: &str) -> Value {
    let mut params = cli_params(TOKEN, &["operator.read"], "laptop");
    params["auth"] = json!({"deviceToken": token});
    params
}

#[test]
fn the_signing_helper_matches_the_spec_vectors() {
    wsclient::check_against_the_spec_vector();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_cli_pairs_silently_and_its_token_outlives_a_restart_until_revoked() {
    let env = TestEnv::new();
    let port = free_port();
    let device = DeviceKey::from_seed([1; 32]);
    let gateway = serve(&env, port, Arc::new(gateway::DefaultPairingPolicy));
    let (_client, res) = device
        .connect(port, cli_params(TOKEN, &["operator.read"], "laptop"))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let auth = &res["payload"]["auth"];
    let token = auth["deviceToken"]
        .as_str()
        .expect("a device token")
        .to_owned();
    assert_eq!(token.len(), 43, "{auth}");
    assert!(auth["issuedAtMs"].is_u64(), "{auth}");
    let paired = gateway.handle().paired_devices();
    assert_eq!(paired.len(), 1);
    assert_eq!(paired[0].device_id, device.device_id());
    assert_eq!(paired[0].scopes, ["operator.read"]);
    gateway.shutdown(Duration::from_secs(2));

    // After a restart the device token alone authenticates, and is handed back as it is.
    let gateway = serve(&env, port, Arc::new(gateway::DefaultPairingPolicy));
    let (_client, res) = device.connect(port, with_device_token(&token)).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["auth"]["method"], "device-token", "{res}");
    assert_eq!(
        res["payload"]["auth"]["deviceToken"],
        token.as_str(),
        "{res}"
    );

    // Revoked by the host: refused, and nothing granted.
    gateway
        .handle()
        .revoke_device_token(&device.device_id(), "operator")
        .unwrap();
    let (mut client, res) = device.connect(port, with_device_token(&token)).await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(
        res["error"]["details"]["code"], "AUTH_DEVICE_TOKEN_MISMATCH",
        "{res}"
    );
    assert_eq!(client.closed().await.0, 1008);
    gateway.shutdown(Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_the_host_leaves_pending_connects_once_the_host_approves() {
    let env = TestEnv::new();
    let port = free_port();
    let policy = scripted(PairingDecision::Pending);
    let gateway = serve(&env, port, policy.clone());
    let handle = gateway.handle();
    let mut watcher = Client::listener(port, Some(TOKEN)).await;
    let device = DeviceKey::from_seed([2; 32]);
    let params = cli_params(TOKEN, &["operator.read"], "tablet");

    let (mut client, res) = device.connect(port, params.clone()).await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["code"], "NOT_PAIRED", "{res}");
    let request_id = res["error"]["details"]["requestId"]
        .as_str()
        .expect("the pending request's id")
        .to_owned();
    let (code, reason) = client.closed().await;
    assert_eq!(code, 1008);
    assert!(reason.starts_with("pairing required"), "{reason}");
    let requested = watcher.next_event_payload("device.pair.requested").await;
    assert_eq!(requested["requestId"], request_id.as_str(), "{requested}");
    assert_eq!(
        requested["deviceId"],
        device.device_id().as_str(),
        "{requested}"
    );
    {
        let asked = policy.asked.lock().unwrap();
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].0.request_id, request_id);
        assert_eq!(asked[0].1, PairingReason::NotPaired);
    }
    let pending = handle.pairing_requests();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].scopes, ["operator.read"]);

    // Asking again refreshes the same request rather than filing another.
    let (_client, res) = device.connect(port, params.clone()).await;
    assert_eq!(
        res["error"]["details"]["requestId"],
        request_id.as_str(),
        "{res}"
    );

    handle.approve_pairing(&request_id, None).unwrap();
    let resolved = watcher.next_event_payload("device.pair.resolved").await;
    assert_eq!(resolved["requestId"], request_id.as_str(), "{resolved}");
    assert_eq!(resolved["decision"], "approved", "{resolved}");
    let (_client, res) = device.connect(port, params).await;
    assert_eq!(res["ok"], true, "{res}");
    assert!(res["payload"]["auth"]["deviceToken"].is_string(), "{res}");
    assert_eq!(
        policy.asked.lock().unwrap().len(),
        2,
        "a paired device is not asked about"
    );
    gateway.shutdown(Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_the_host_rejects_is_not_paired_and_nothing_stays_pending() {
    let env = TestEnv::new();
    let port = free_port();
    let gateway = serve(&env, port, scripted(PairingDecision::Reject));
    let mut watcher = Client::listener(port, Some(TOKEN)).await;
    let device = DeviceKey::from_seed([3; 32]);
    let (mut client, res) = device
        .connect(port, cli_params(TOKEN, &["operator.read"], "stranger"))
        .await;
    assert_eq!(res["error"]["code"], "NOT_PAIRED", "{res}");
    assert_eq!(client.closed().await.0, 1008);
    let resolved = watcher.next_event_payload("device.pair.resolved").await;
    assert_eq!(resolved["decision"], "rejected", "{resolved}");
    assert_eq!(
        resolved["deviceId"],
        device.device_id().as_str(),
        "{resolved}"
    );
    assert!(gateway.handle().pairing_requests().is_empty());
    assert!(gateway.handle().paired_devices().is_empty());
    gateway.shutdown(Duration::from_secs(2));
}

/// A gateway whose device store is the file `store`.
fn serve_with_store(
    env: &TestEnv,
    port: u16,
    policy: Arc<dyn PairingPolicy>,
    store: &std::path::Path,
) -> Gateway {
    let store_path = Some(store.to_path_buf());
    serve_pairing(env, port, PairingOptions { policy, store_path })
}

/// A host policy that answers each request with the next of `decisions` (the last repeats).
struct Sequence(Mutex<Vec<PairingDecision>>);

impl PairingPolicy for Sequence {
    fn decide(&self, _request: &PairingRequest, _context: &PairingContext) -> PairingDecision {
        let mut decisions = self.0.lock().unwrap();
        if decisions.len() > 1 {
            decisions.remove(0)
        } else {
            decisions[0].clone()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_reconnecting_with_the_shared_token_must_pair_again() {
    let env = TestEnv::new();
    let port = free_port();
    let policy = scripted(PairingDecision::Pending);
    let gateway = serve(&env, port, policy.clone());
    let handle = gateway.handle();
    let device = DeviceKey::from_seed([4; 32]);
    let params = cli_params(TOKEN, &["operator.read"], "revoked");
    let (_client, res) = device.connect(port, params.clone()).await;
    let request_id = res["error"]["details"]["requestId"].as_str().unwrap();
    handle.approve_pairing(request_id, None).unwrap();
    let (_client, res) = device.connect(port, params.clone()).await;
    assert_eq!(res["ok"], true, "{res}");

    handle
        .revoke_device_token(&device.device_id(), "operator")
        .unwrap();
    // The key and the shared token: still paired, but the role's token is revoked, so the
    // role is not approved (device-pairing-identity-*.mjs:603-625, MH:1508): a role upgrade.
    let (mut client, res) = device.connect(port, params.clone()).await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["code"], "NOT_PAIRED", "{res}");
    let details = &res["error"]["details"];
    assert_eq!(details["reason"], "role-upgrade", "{res}");
    assert!(details["requestId"].is_string(), "{res}");
    assert!(res["payload"]["auth"]["deviceToken"].is_null(), "{res}");
    assert_eq!(client.closed().await.0, 1008);
    assert_eq!(
        policy.asked.lock().unwrap().last().unwrap().1,
        PairingReason::RoleUpgrade
    );
    // Approved again: a new token, and the revoked one stays refused.
    let upgrade = details["requestId"].as_str().unwrap();
    handle.approve_pairing(upgrade, None).unwrap();
    let (_client, res) = device.connect(port, params).await;
    assert_eq!(res["ok"], true, "{res}");
    gateway.shutdown(Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_token_connects_of_a_paired_device_get_its_token_back_without_a_write() {
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::new();
    let port = free_port();
    let store = env.root.path().join("devices.json");
    let gateway = serve_with_store(&env, port, Arc::new(gateway::DefaultPairingPolicy), &store);
    let device = DeviceKey::from_seed([5; 32]);
    let params = cli_params(TOKEN, &["operator.read"], "cli");
    let token = |res: &Value| {
        assert_eq!(res["ok"], true, "{res}");
        res["payload"]["auth"]["deviceToken"]
            .as_str()
            .expect("a device token")
            .to_owned()
    };
    let (_c, res) = device.connect(port, params.clone()).await;
    let first = token(&res);
    let stamp = |path: &std::path::Path| {
        let meta = std::fs::metadata(path).unwrap();
        (
            meta.ino(),
            meta.mtime(),
            meta.mtime_nsec(),
            std::fs::read(path).unwrap(),
        )
    };
    let before = stamp(&store);
    for _ in 0..2 {
        let (_c, res) = device.connect(port, params.clone()).await;
        assert_eq!(token(&res), first, "the same token is handed back");
    }
    assert!(before == stamp(&store), "the store file was rewritten");
    gateway.shutdown(Duration::from_secs(2));

    // After a restart the first such connect rotates it once; later ones get it back.
    let gateway = serve_with_store(&env, port, Arc::new(gateway::DefaultPairingPolicy), &store);
    let (_c, res) = device.connect(port, params.clone()).await;
    let rotated = token(&res);
    assert_ne!(rotated, first);
    let before = stamp(&store);
    let (_c, res) = device.connect(port, params).await;
    assert_eq!(token(&res), rotated);
    assert!(before == stamp(&store), "the store file was rewritten");
    gateway.shutdown(Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_approving_fewer_scopes_caps_the_connection_and_lets_it_in() {
    let env = TestEnv::new();
    let port = free_port();
    let read = vec!["operator.read".to_owned()];
    let gateway = serve(
        &env,
        port,
        scripted(PairingDecision::Approve {
            scopes: Some(read.clone()),
        }),
    );
    let device = DeviceKey::from_seed([6; 32]);
    let params = cli_params(TOKEN, &["operator.read", "operator.admin"], "narrowed");
    let (_client, res) = device.connect(port, params).await;
    assert_eq!(res["ok"], true, "{res}");
    let auth = &res["payload"]["auth"];
    assert_eq!(auth["scopes"], json!(["operator.read"]), "{res}");
    assert!(auth["deviceToken"].is_string(), "{res}");
    assert_eq!(gateway.handle().paired_devices()[0].scopes, read);
    gateway.shutdown(Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_approval_grants_no_more_than_the_connection_asks_and_names_the_pending_request()
{
    let env = TestEnv::new();
    let port = free_port();
    let policy = Arc::new(Sequence(Mutex::new(vec![
        PairingDecision::Pending,
        PairingDecision::Approve { scopes: None },
    ])));
    let gateway = serve(&env, port, policy);
    let handle = gateway.handle();
    let mut watcher = Client::listener(port, Some(TOKEN)).await;
    let device = DeviceKey::from_seed([7; 32]);
    // First asks for admin and is left pending; then asks for read only: the request is
    // merged (admin and read), and approving it inline would grant admin.
    let (_c, res) = device
        .connect(port, cli_params(TOKEN, &["operator.admin"], "merged"))
        .await;
    assert_eq!(res["error"]["code"], "NOT_PAIRED", "{res}");
    let (mut client, res) = device
        .connect(port, cli_params(TOKEN, &["operator.read"], "merged"))
        .await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["code"], "NOT_PAIRED", "{res}");
    let pending = handle.pairing_requests();
    assert_eq!(pending.len(), 1, "still pending for the host");
    assert!(handle.paired_devices().is_empty(), "nothing approved");
    let live = pending[0].request_id.as_str();
    assert_eq!(res["error"]["details"]["requestId"], live, "{res}");
    let (code, reason) = client.closed().await;
    assert_eq!(code, 1008);
    assert!(reason.contains(live), "{reason}");
    // The failed inline approval files the request for the host, as Node does (MH:2144).
    loop {
        let requested = watcher.next_event_payload("device.pair.requested").await;
        if requested["requestId"] == live {
            break;
        }
    }
    gateway.shutdown(Duration::from_secs(2));
}
