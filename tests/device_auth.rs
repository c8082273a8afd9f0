//! SPEC §11 with a hand-made signing client against an in-process gateway: every refusal of
//! the device proof, the missing-device table, silent pairing on loopback, device tokens, the
//! NOT_PAIRED answers, and the node role's rule. Each case asserts the exact frame and close.

mod common;
mod wsclient;

use gateway::{Auth, Handlers, ProtocolOptions};
use serde_json::{Value, json};
use wsclient::{Client, DeviceKey, TestGateway, assert_error, connect_params};

const TOKEN: &str = "s3cret-token";

fn gateway() -> TestGateway {
    let handlers =
        Handlers::new().method_with_scope("echo", "operator.read", |request| async move {
            Ok(request.params)
        });
    TestGateway::start(
        Auth::Token(TOKEN.into()),
        ProtocolOptions::default(),
        handlers,
    )
}

/// `connect` params of a client: `id`/`mode`, `role`, `scopes`, and `auth`.
fn params(id: &str, mode: &str, role: &str, scopes: &[&str], auth: Value) -> Value {
    let mut params = connect_params();
    params["client"]["id"] = json!(id);
    params["client"]["mode"] = json!(mode);
    params["role"] = json!(role);
    params["scopes"] = json!(scopes);
    params["auth"] = auth;
    params
}

/// The OpenClaw CLI's `connect` with the shared token.
fn cli(scopes: &[&str]) -> Value {
    params("cli", "cli", "operator", scopes, json!({"token": TOKEN}))
}

/// An operator holding every scope, to watch broadcasts.
async fn observer(port: u16) -> Client {
    let watcher = params(
        "cli",
        "cli",
        "operator",
        &["operator.admin"],
        json!({"token": TOKEN}),
    );
    Client::connected(port, watcher).await.0
}

/// `hello-ok.auth.recoveryScope` as Node computes it: base64url(sha256(JSON of the material)).
fn recovery_scope(material: Value) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(material.to_string().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// The recovery scope of an operator that proved the shared token (and maybe a device id).
fn shared_recovery_scope(device_id: &str) -> String {
    let generation = recovery_scope_raw(&format!("token\0{TOKEN}"));
    recovery_scope(json!(["shared-auth", generation, device_id]))
}

fn recovery_scope_raw(text: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(text.as_bytes()))
}

/// Asserts the whole error `res` and the close that follows.
async fn refused(client: &mut Client, res: &Value, error: Value, close_reason: &str) {
    assert_eq!(
        res,
        &json!({"type": "res", "id": "c1", "ok": false, "error": error}),
        "{res}"
    );
    assert_eq!(client.closed().await, (1008, close_reason.to_owned()));
}

/// A device token this gateway does not hold for the device (unknown, revoked, another's).
const DEVICE_TOKEN_MISMATCH: &str =
    "unauthorized: device token mismatch (rotate/reissue device token)";

fn device_token_mismatch() -> Value {
    json!({
        "code": "INVALID_REQUEST", "message": DEVICE_TOKEN_MISMATCH,
        "details": {
            "code": "AUTH_DEVICE_TOKEN_MISMATCH", "authReason": "device_token_mismatch",
            "canRetryWithDeviceToken": false, "recommendedNextStep": "update_auth_credentials",
        },
    })
}

/// A device token asked for more scopes than it was issued for.
const SCOPE_MISMATCH: &str =
    "unauthorized: device token scope mismatch (re-pair or approve scope upgrade)";

fn scope_mismatch() -> Value {
    json!({
        "code": "INVALID_REQUEST", "message": SCOPE_MISMATCH,
        "details": {
            "code": "AUTH_SCOPE_MISMATCH", "authReason": "scope_mismatch",
            "canRetryWithDeviceToken": false, "recommendedNextStep": "review_auth_configuration",
        },
    })
}

/// Opens a connection and sends a `connect` signed by `key` for `params`, with the device
/// block changed by `tamper` after signing.
async fn tampered(
    port: u16,
    key: &DeviceKey,
    tamper: impl FnOnce(&mut Value, &str),
) -> (Client, Value) {
    let mut client = Client::open(port).await;
    let challenge = client.challenge().await;
    let nonce = challenge["payload"]["nonce"].as_str().unwrap().to_owned();
    let ts = challenge["payload"]["ts"].as_u64().unwrap();
    let mut signed = key.signed(cli(&["operator.read"]), &nonce, ts);
    tamper(&mut signed, &nonce);
    client
        .send(json!({"type": "req", "id": "c1", "method": "connect", "params": signed}))
        .await;
    let res = client.recv().await;
    (client, res)
}

fn proof_error(message: &str, code: &str, reason: &str) -> Value {
    json!({"code": "INVALID_REQUEST", "message": message, "details": {"code": code, "reason": reason}})
}

#[tokio::test]
async fn every_refusal_of_the_device_proof_is_nodes_frame_and_grants_nothing() {
    let server = gateway();
    let port = server.port;
    let key = DeviceKey::random();
    let other = DeviceKey::random();
    let now = || gateway_now();
    type Tamper = Box<dyn FnOnce(&mut Value, &str)>;
    let cases: Vec<(&str, Tamper, Value)> = vec![
        (
            "a key that is not the id's",
            Box::new(move |p: &mut Value, _: &str| {
                p["device"]["publicKey"] = json!(other.public_key())
            }),
            proof_error(
                "device identity mismatch",
                "DEVICE_AUTH_DEVICE_ID_MISMATCH",
                "device-id-mismatch",
            ),
        ),
        (
            "signed more than 120 s ago",
            Box::new(move |p: &mut Value, _: &str| {
                p["device"]["signedAt"] = json!(now() - 121_000)
            }),
            proof_error(
                "device signature expired",
                "DEVICE_AUTH_SIGNATURE_EXPIRED",
                "device-signature-stale",
            ),
        ),
        (
            "signed 120 s ahead",
            Box::new(move |p: &mut Value, _: &str| {
                p["device"]["signedAt"] = json!(now() + 121_000)
            }),
            proof_error(
                "device signature expired",
                "DEVICE_AUTH_SIGNATURE_EXPIRED",
                "device-signature-stale",
            ),
        ),
        (
            "a blank nonce",
            Box::new(|p: &mut Value, _: &str| p["device"]["nonce"] = json!("   ")),
            proof_error(
                "device nonce required",
                "DEVICE_AUTH_NONCE_REQUIRED",
                "device-nonce-missing",
            ),
        ),
        (
            "another connection's nonce",
            Box::new(|p: &mut Value, _: &str| {
                p["device"]["nonce"] = json!("2f1e8a4c-3b7d-4e15-9a0c-6d5b4f3e2a10")
            }),
            proof_error(
                "device nonce mismatch",
                "DEVICE_AUTH_NONCE_MISMATCH",
                "device-nonce-mismatch",
            ),
        ),
        (
            "a signature over other scopes",
            Box::new(|p: &mut Value, _: &str| p["scopes"] = json!(["operator.admin"])),
            proof_error(
                "device signature invalid",
                "DEVICE_AUTH_SIGNATURE_INVALID",
                "device-signature",
            ),
        ),
        (
            "a corrupted signature",
            Box::new(|p: &mut Value, _: &str| {
                let signature = p["device"]["signature"].as_str().unwrap();
                let flipped = if signature.starts_with('A') { "B" } else { "A" };
                p["device"]["signature"] = json!(format!("{flipped}{}", &signature[1..]));
            }),
            proof_error(
                "device signature invalid",
                "DEVICE_AUTH_SIGNATURE_INVALID",
                "device-signature",
            ),
        ),
    ];
    for (what, tamper, error) in cases {
        let (mut client, res) = tampered(port, &key, tamper).await;
        let message = error["message"].as_str().unwrap().to_owned();
        assert_eq!(res["error"], error, "{what}: {res}");
        refused(&mut client, &res, error, &message).await;
    }

    // A replayed connect: the exact frame of a good connect, sent again on a new socket.
    let mut first = Client::open(port).await;
    let challenge = first.challenge().await;
    let nonce = challenge["payload"]["nonce"].as_str().unwrap().to_owned();
    let frame = json!({
        "type": "req", "id": "c1", "method": "connect",
        "params": key.signed(cli(&["operator.read"]), &nonce, challenge["payload"]["ts"].as_u64().unwrap()),
    });
    first.send(frame.clone()).await;
    assert_eq!(first.recv().await["ok"], true);
    let mut replay = Client::open(port).await;
    replay.challenge().await;
    replay.send(frame).await;
    let res = replay.recv().await;
    refused(
        &mut replay,
        &res,
        proof_error(
            "device nonce mismatch",
            "DEVICE_AUTH_NONCE_MISMATCH",
            "device-nonce-mismatch",
        ),
        "device nonce mismatch",
    )
    .await;
}

/// The gateway's clock is this machine's.
fn gateway_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn without_a_device_the_missing_device_table_decides() {
    let server = gateway();
    let port = server.port;

    // `openclaw gateway probe`: the token, no device → connected with no scopes at all.
    let probe = params(
        "cli",
        "probe",
        "operator",
        &["operator.read"],
        json!({"token": TOKEN}),
    );
    let (mut client, hello) = Client::connected(port, probe).await;
    assert_eq!(
        hello["auth"],
        json!({"method": "token", "role": "operator", "scopes": [], "recoveryScope": shared_recovery_scope("")})
    );
    let res = client.call("e1", "echo", json!({})).await;
    assert_error(
        &res,
        "e1",
        "FORBIDDEN",
        "missing scope: operator.read",
        Some("MISSING_SCOPE"),
    );

    // The local CLI keeps what it asked for.
    let (mut client, hello) = Client::connected(port, cli(&["operator.read"])).await;
    assert_eq!(hello["auth"]["scopes"], json!(["operator.read"]));
    assert_eq!(
        client.call("e1", "echo", json!({"x": 1})).await["payload"],
        json!({"x": 1})
    );

    let not_paired = json!({
        "code": "NOT_PAIRED", "message": "device identity required",
        "details": {"code": "DEVICE_IDENTITY_REQUIRED"},
    });
    // A node, even with the right token.
    let node = params("node-host", "node", "node", &[], json!({"token": TOKEN}));
    // A client that holds only a device token (ignored without a device block, NCR:194-195).
    let device_token_only = params("cli", "cli", "operator", &[], json!({"deviceToken": "abc"}));
    // No credential at all.
    let nothing = params("cli", "cli", "operator", &[], json!({}));
    for params in [node, device_token_only, nothing] {
        let mut client = Client::open(port).await;
        let res = client.connect_with(params).await;
        refused(
            &mut client,
            &res,
            not_paired.clone(),
            "device identity required",
        )
        .await;
    }

    // The Control UI, whatever its auth.
    let mut client = Client::open_with(port, Some("http://127.0.0.1:1")).await;
    let ui = params(
        "openclaw-control-ui",
        "webchat",
        "operator",
        &[],
        json!({"token": TOKEN}),
    );
    let res = client.connect_with(ui).await;
    let message = "control ui requires device identity (use HTTPS or localhost secure context)";
    let error = json!({
        "code": "INVALID_REQUEST", "message": message,
        "details": {"code": "CONTROL_UI_DEVICE_IDENTITY_REQUIRED"},
    });
    refused(&mut client, &res, error, message).await;

    // A node with the wrong token is told about the token (row 5), with Node's hint.
    let mut client = Client::open(port).await;
    let res = client
        .connect_with(params(
            "node-host",
            "node",
            "node",
            &[],
            json!({"token": "wrong"}),
        ))
        .await;
    let message = "unauthorized: gateway token mismatch (provide gateway auth token)";
    let error = json!({
        "code": "INVALID_REQUEST", "message": message,
        "details": {
            "code": "AUTH_TOKEN_MISMATCH", "authReason": "token_mismatch",
            "canRetryWithDeviceToken": false, "recommendedNextStep": "update_auth_credentials",
        },
    });
    refused(&mut client, &res, error, message).await;
}

#[tokio::test]
async fn a_loopback_device_pairs_silently_and_reconnects_with_only_its_device_token() {
    let server = gateway();
    let port = server.port;
    let mut watcher = observer(port).await;
    let key = DeviceKey::random();

    let mut client = Client::open(port).await;
    let res = client.connect_signed(&key, cli(&["operator.read"])).await;
    assert_eq!(res["ok"], true, "{res}");
    let auth = &res["payload"]["auth"];
    let device_token = auth["deviceToken"].as_str().unwrap().to_owned();
    let issued_at = auth["issuedAtMs"].as_u64().unwrap();
    // The recovery scope hashes the device token it was handed (MH:2332-2343).
    let recovery = recovery_scope(json!(["device-token", device_token]));
    assert_eq!(
        auth,
        &json!({
            "method": "token", "role": "operator", "scopes": ["operator.read"],
            "recoveryScope": recovery, "recoveryMigrationAllowed": true,
            "deviceToken": device_token, "issuedAtMs": issued_at,
        })
    );
    assert!(issued_at.abs_diff(gateway_now()) < 10_000, "{auth}");
    let resolved = watcher.recv_skip_ticks().await;
    assert_eq!(resolved["event"], "device.pair.resolved", "{resolved}");
    let payload = &resolved["payload"];
    assert_eq!(
        (&payload["deviceId"], &payload["decision"]),
        (&json!(key.device_id()), &json!("approved"))
    );
    assert!(uuid::Uuid::parse_str(payload["requestId"].as_str().unwrap()).is_ok());
    assert!(payload["ts"].is_u64());

    // A paired app or remote CLI: only the device token and the signed device block.
    let reconnect = params(
        "cli",
        "cli",
        "operator",
        &["operator.read"],
        json!({"deviceToken": device_token}),
    );
    let mut again = Client::open(port).await;
    let res = again.connect_signed(&key, reconnect).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(
        res["payload"]["auth"],
        json!({
            "method": "device-token", "role": "operator", "scopes": ["operator.read"],
            "recoveryScope": recovery, "recoveryMigrationAllowed": true,
            "deviceToken": device_token, "issuedAtMs": issued_at,
        })
    );
    assert_eq!(
        again.call("e1", "echo", json!(1)).await["payload"],
        json!(1)
    );

    // A wrong shared token with a device: Node suggests the device token.
    let mut wrong = Client::open(port).await;
    let res = wrong
        .connect_signed(
            &key,
            params("cli", "cli", "operator", &[], json!({"token": "nope"})),
        )
        .await;
    let message = "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)";
    let error = json!({
        "code": "INVALID_REQUEST", "message": message,
        "details": {
            "code": "AUTH_TOKEN_MISMATCH", "authReason": "token_mismatch",
            "canRetryWithDeviceToken": true, "recommendedNextStep": "retry_with_device_token",
        },
    });
    refused(&mut wrong, &res, error, message).await;
}

#[tokio::test]
async fn unknown_revoked_and_overreaching_device_tokens_are_refused() {
    let server = gateway();
    let port = server.port;
    let key = DeviceKey::random();
    let mut client = Client::open(port).await;
    let res = client.connect_signed(&key, cli(&["operator.read"])).await;
    let device_token = res["payload"]["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_owned();

    // A token this gateway never issued (as from another gateway).
    let mut stale = Client::open(port).await;
    let res = stale
        .connect_signed(
            &key,
            params(
                "cli",
                "cli",
                "operator",
                &[],
                json!({"deviceToken": "not-a-token-of-this-gateway"}),
            ),
        )
        .await;
    refused(
        &mut stale,
        &res,
        device_token_mismatch(),
        DEVICE_TOKEN_MISMATCH,
    )
    .await;

    // A setup code: this core issues none, so every one is refused (SPEC §11.7 step 2).
    let mut setup = Client::open(port).await;
    let res = setup
        .connect_signed(
            &DeviceKey::random(),
            params(
                "node-host",
                "node",
                "node",
                &[],
                json!({"bootstrapToken": "setup-code"}),
            ),
        )
        .await;
    let setup_message = "unauthorized: setup code invalid, expired, revoked, or already used (create a new code; review `openclaw devices list`)";
    let setup_error = json!({
        "code": "INVALID_REQUEST", "message": setup_message,
        "details": {
            "code": "AUTH_BOOTSTRAP_TOKEN_INVALID", "authReason": "bootstrap_token_invalid",
            "canRetryWithDeviceToken": false, "recommendedNextStep": "review_auth_configuration",
        },
    });
    refused(&mut setup, &res, setup_error, setup_message).await;

    // Another device cannot use this one's token.
    let mut thief = Client::open(port).await;
    let res = thief
        .connect_signed(
            &DeviceKey::random(),
            params(
                "cli",
                "cli",
                "operator",
                &[],
                json!({"deviceToken": device_token}),
            ),
        )
        .await;
    refused(
        &mut thief,
        &res,
        device_token_mismatch(),
        DEVICE_TOKEN_MISMATCH,
    )
    .await;

    // Scopes above what pairing granted, with only the device token (WRK:2767-2831).
    let mut greedy = Client::open(port).await;
    let res = greedy
        .connect_signed(
            &key,
            params(
                "cli",
                "cli",
                "operator",
                &["operator.admin"],
                json!({"deviceToken": device_token}),
            ),
        )
        .await;
    refused(&mut greedy, &res, scope_mismatch(), SCOPE_MISMATCH).await;

    // With the shared token on loopback, Node's silent rule approves the scope upgrade, and
    // the device is handed a token for what it asked.
    let mut upgraded = Client::open(port).await;
    let res = upgraded
        .connect_signed(&key, cli(&["operator.admin"]))
        .await;
    assert_eq!(
        res["payload"]["auth"]["scopes"],
        json!(["operator.admin"]),
        "{res}"
    );
    let admin_token = res["payload"]["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_token = params(
        "cli",
        "cli",
        "operator",
        &["operator.admin"],
        json!({"deviceToken": admin_token}),
    );
    let mut holder = Client::open(port).await;
    let res = holder.connect_signed(&key, by_token.clone()).await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token", "{res}");

    // The host revokes the token the store issued: the device's operator connections close
    // (4001 `device removed`, as Node's `device.token.revoke` closes them), and a connect
    // presenting it gets Node's frame for a revoked explicit device token: `token-revoked`
    // maps to `device_token_mismatch` (WRK:2786-2789; NCR:163-167).
    server
        .gateway()
        .handle()
        .revoke_device_token(&key.device_id(), "operator")
        .unwrap();
    for live in [&mut client, &mut upgraded, &mut holder] {
        assert_eq!(live.closed().await, (4001, "device removed".to_owned()));
    }
    let mut revoked = Client::open(port).await;
    let res = revoked.connect_signed(&key, by_token).await;
    refused(
        &mut revoked,
        &res,
        device_token_mismatch(),
        DEVICE_TOKEN_MISMATCH,
    )
    .await;
}

#[tokio::test]
async fn a_device_token_covers_the_scopes_asked_for_and_is_handed_back_on_every_connect() {
    let server = gateway();
    let port = server.port;
    let key = DeviceKey::random();
    let mut first = Client::open(port).await;
    let res = first.connect_signed(&key, cli(&["operator.admin"])).await;
    let admin_token = res["payload"]["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_owned();

    // The shared token plus the device token it holds: the same token back (SPEC §11.8 reuse:
    // unrevoked, within the approved scopes, covering the asked ones).
    let both = params(
        "cli",
        "cli",
        "operator",
        &["operator.read"],
        json!({"token": TOKEN, "deviceToken": admin_token}),
    );
    let mut again = Client::open(port).await;
    let res = again.connect_signed(&key, both).await;
    assert_eq!(res["payload"]["auth"]["method"], "token", "{res}");
    assert_eq!(res["payload"]["auth"]["deviceToken"], admin_token.as_str());

    // The shared token alone: the same token back too, from memory, as Node hands back the
    // token it stores (WRK:2850-2862), with no write.
    let mut shared = Client::open(port).await;
    let res = shared.connect_signed(&key, cli(&["operator.read"])).await;
    assert_eq!(res["payload"]["auth"]["deviceToken"], admin_token.as_str());
    let with = |token: &str, scopes: &[&str]| {
        params(
            "cli",
            "cli",
            "operator",
            scopes,
            json!({"deviceToken": token}),
        )
    };
    let mut holder = Client::open(port).await;
    let res = holder
        .connect_signed(&key, with(&admin_token, &["operator.admin"]))
        .await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token", "{res}");
    assert_eq!(res["payload"]["auth"]["deviceToken"], admin_token.as_str());

    // A token reaches what it was issued for, not more: a device approved for read only.
    let reader_key = DeviceKey::random();
    let mut first = Client::open(port).await;
    let res = first
        .connect_signed(&reader_key, cli(&["operator.read"]))
        .await;
    let read_token = res["payload"]["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut reader = Client::open(port).await;
    let res = reader
        .connect_signed(&reader_key, with(&read_token, &["operator.read"]))
        .await;
    assert_eq!(res["payload"]["auth"]["deviceToken"], read_token.as_str());
    let mut greedy = Client::open(port).await;
    let res = greedy
        .connect_signed(&reader_key, with(&read_token, &["operator.admin"]))
        .await;
    refused(&mut greedy, &res, scope_mismatch(), SCOPE_MISMATCH).await;
}

#[tokio::test]
async fn revoking_closes_the_role_s_live_connections_and_unpairing_closes_them_all() {
    let server = gateway();
    let port = server.port;
    let handle = server.gateway().handle();
    let key = DeviceKey::random();
    let bystander_key = DeviceKey::random();
    let mut operator = Client::open(port).await;
    let res = operator.connect_signed(&key, cli(&["operator.read"])).await;
    assert_eq!(res["ok"], true, "{res}");
    let mut bystander = Client::open(port).await;
    let res = bystander
        .connect_signed(&bystander_key, cli(&["operator.read"]))
        .await;
    assert_eq!(res["ok"], true, "{res}");

    // The same device as a node: a role upgrade of a known device waits for the host.
    let host = params("node-host", "node", "node", &[], json!({"token": TOKEN}));
    let mut asking = Client::open(port).await;
    let res = asking.connect_signed(&key, host.clone()).await;
    assert_eq!(res["error"]["details"]["reason"], "role-upgrade", "{res}");
    let request_id = res["error"]["details"]["requestId"].as_str().unwrap();
    handle.approve_pairing(request_id, None).unwrap();
    let mut node = Client::open(port).await;
    let res = node.connect_signed(&key, host).await;
    assert_eq!(res["payload"]["auth"]["role"], "node", "{res}");

    // Revoking the operator token closes the operator connection only.
    handle
        .revoke_device_token(&key.device_id(), "operator")
        .unwrap();
    assert_eq!(operator.closed().await, (4001, "device removed".to_owned()));
    assert_eq!(health(&mut node, "h1").await["ok"], true);
    assert_eq!(health(&mut bystander, "h2").await["ok"], true);

    // Unpairing closes every connection of the device, whatever its role.
    handle.remove_paired_device(&key.device_id()).unwrap();
    assert_eq!(node.closed().await, (4001, "device removed".to_owned()));
    assert_eq!(health(&mut bystander, "h3").await["ok"], true);
}

/// The answer to a `health` call, past any events.
async fn health(client: &mut Client, id: &str) -> Value {
    client
        .send(json!({"type": "req", "id": id, "method": "health"}))
        .await;
    loop {
        let frame = client.recv().await;
        if frame["type"] == "res" {
            assert_eq!(frame["id"], id, "{frame}");
            return frame;
        }
    }
}

/// A request through a proxy that this gateway cannot attribute is not local (SPEC §11.6), so
/// the default policy leaves its pairing pending.
async fn open_via_proxy(port: u16) -> Client {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{port}/")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    Client { ws }
}

#[tokio::test]
async fn a_pending_pairing_is_answered_not_paired_with_the_request_id() {
    let server = gateway();
    let port = server.port;
    let mut watcher = observer(port).await;
    let key = DeviceKey::random();

    let mut remote = open_via_proxy(port).await;
    let res = remote.connect_signed(&key, cli(&["operator.read"])).await;
    let details = &res["error"]["details"];
    let request_id = details["requestId"].as_str().unwrap().to_owned();
    let error = json!({
        "code": "NOT_PAIRED",
        "message": "pairing required: device is not approved yet",
        "details": {
            "code": "PAIRING_REQUIRED", "reason": "not-paired", "requestId": request_id,
            "remediationHint": "Approve this device from the pending pairing requests.",
            "deviceId": key.device_id(), "requestedRole": "operator",
            "requestedScopes": ["operator.read"],
        },
    });
    // Key order is Node's too.
    assert_eq!(res["error"].to_string(), error.to_string());
    let reason = format!("pairing required: device is not approved yet (requestId: {request_id})");
    refused(&mut remote, &res, error, &reason).await;
    let requested = watcher.recv_skip_ticks().await;
    assert_eq!(requested["event"], "device.pair.requested", "{requested}");
    let payload = &requested["payload"];
    assert_eq!(payload["requestId"], request_id.as_str());
    assert_eq!(payload["deviceId"], key.device_id());
    assert_eq!(payload["publicKey"], key.public_key());
    assert_eq!(
        (&payload["role"], &payload["scopes"]),
        (&json!("operator"), &json!(["operator.read"]))
    );
    assert_eq!(
        (&payload["clientId"], &payload["clientMode"]),
        (&json!("cli"), &json!("cli"))
    );
    assert_eq!(payload["isRepair"], false);
    // Node's `silent` verdict (remote: no) and the roles asked for (MH:2043; WRK:2508).
    assert_eq!(
        (&payload["silent"], &payload["roles"]),
        (&json!(false), &json!(["operator"]))
    );

    // The same device asking the same from this host: the request is refreshed, not
    // superseded (SPEC §11.5 step 1), and stays not silent because it was filed from afar
    // (WRK:2484), so Node's rule does not approve it inline (MH:2059): it waits for the host.
    let mut local = Client::open(port).await;
    let res = local.connect_signed(&key, cli(&["operator.read"])).await;
    assert_eq!(res["error"]["code"], "NOT_PAIRED", "{res}");
    assert_eq!(
        res["error"]["details"]["requestId"],
        request_id.as_str(),
        "{res}"
    );
    assert_eq!(local.closed().await.0, 1008);
    let handle = server.gateway().handle();
    let pending = handle.pairing_requests();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].request_id.as_str(), pending[0].silent),
        (request_id.as_str(), Some(false))
    );
    handle.approve_pairing(&request_id, None).unwrap();
    let approved = watcher.recv_skip_ticks().await;
    assert_eq!(approved["event"], "device.pair.resolved", "{approved}");
    assert_eq!(
        (
            &approved["payload"]["requestId"],
            &approved["payload"]["decision"]
        ),
        (&json!(request_id), &json!("approved")),
        "{approved}"
    );
    // Paired with `operator.read`, it connects; then asking for more from afar: a scope
    // upgrade, with what was approved, and a close reason cut to 120 bytes.
    let mut local = Client::open(port).await;
    assert_eq!(
        local.connect_signed(&key, cli(&["operator.read"])).await["ok"],
        true
    );

    let mut remote = open_via_proxy(port).await;
    let res = remote.connect_signed(&key, cli(&["operator.admin"])).await;
    let request_id = res["error"]["details"]["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    let message = "pairing required: device is asking for more scopes than currently approved";
    let error = json!({
        "code": "NOT_PAIRED", "message": message,
        "details": {
            "code": "PAIRING_REQUIRED", "reason": "scope-upgrade", "requestId": request_id,
            "remediationHint": "Review the requested scopes, then approve the pending upgrade.",
            "deviceId": key.device_id(), "requestedRole": "operator",
            "requestedScopes": ["operator.admin"],
            "approvedRoles": ["operator"], "approvedScopes": ["operator.read"],
        },
    });
    assert_eq!(res["error"].to_string(), error.to_string());
    let full = format!("{message} (requestId: {request_id})");
    assert!(full.len() > 120);
    refused(&mut remote, &res, error, &full[..120]).await;
}

#[tokio::test]
async fn a_node_pairs_with_its_device_and_needs_a_device_token() {
    let server = gateway();
    let port = server.port;
    let key = DeviceKey::random();
    let mut node = Client::open(port).await;
    let mut host = params("node-host", "node", "node", &[], json!({"token": TOKEN}));
    host["client"]["platform"] = json!(" Linux ");
    let res = node.connect_signed(&key, host.clone()).await;
    let auth = &res["payload"]["auth"];
    assert_eq!(
        (&auth["method"], &auth["role"], &auth["scopes"]),
        (&json!("token"), &json!("node"), &json!([])),
        "{res}"
    );
    let device_token = auth["deviceToken"].as_str().unwrap().to_owned();
    // The node host's reconnect: the stored device token, signed.
    host["auth"] = json!({"deviceToken": device_token});
    let mut again = Client::open(port).await;
    let res = again.connect_signed(&key, host.clone()).await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token", "{res}");
    // A changed platform is a metadata upgrade (re-approved silently only for native apps).
    host["client"]["platform"] = json!("darwin");
    host["auth"] = json!({"token": TOKEN});
    let mut moved = Client::open(port).await;
    let res = moved.connect_signed(&key, host).await;
    assert_eq!(
        res["error"]["details"]["reason"], "metadata-upgrade",
        "{res}"
    );
    assert_eq!(moved.closed().await.0, 1008);

    // A local backend skips pairing, so as a node it has no device token to prove itself.
    let backend = params(
        "gateway-client",
        "backend",
        "node",
        &[],
        json!({"token": TOKEN}),
    );
    let mut client = Client::open(port).await;
    let res = client.connect_signed(&DeviceKey::random(), backend).await;
    let message = "authenticated node pairing identity unavailable";
    refused(
        &mut client,
        &res,
        json!({"code": "NOT_PAIRED", "message": message}),
        message,
    )
    .await;
}

#[tokio::test]
async fn the_control_ui_signs_v2_and_pairs_from_a_loopback_browser() {
    let server = gateway();
    let port = server.port;
    let key = DeviceKey::random();
    let ui = params(
        "openclaw-control-ui",
        "webchat",
        "operator",
        &["operator.read"],
        json!({"token": TOKEN}),
    );
    let mut client = Client::open_with(port, Some("http://127.0.0.1:18789")).await;
    let challenge = client.challenge().await;
    let nonce = challenge["payload"]["nonce"].as_str().unwrap().to_owned();
    let ts = challenge["payload"]["ts"].as_u64().unwrap();
    let signature = key.sign(&key.v2_payload(&ui, &nonce, ts));
    let signed = key.with_device(ui.clone(), &nonce, ts, signature);
    client
        .send(json!({"type": "req", "id": "c1", "method": "connect", "params": signed}))
        .await;
    let res = client.recv().await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["auth"]["scopes"], json!(["operator.read"]));
    assert!(res["payload"]["auth"]["deviceToken"].is_string(), "{res}");

    // Without its Origin the Control UI is refused before its device is looked at.
    let mut bare = Client::open(port).await;
    let res = bare.connect_signed(&key, ui).await;
    assert_eq!(
        res["error"]["details"],
        json!({"code": "CONTROL_UI_ORIGIN_NOT_ALLOWED", "reason": "origin missing or invalid"})
    );
    assert_eq!(bare.closed().await.0, 1008);
}

/// A host that leaves every pairing request for later.
struct LeaveItPending;

impl gateway::PairingPolicy for LeaveItPending {
    fn decide(
        &self,
        _request: &gateway::PairingRequest,
        _context: &gateway::PairingContext,
    ) -> gateway::PairingDecision {
        gateway::PairingDecision::Pending
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_device_the_host_leaves_pending_connects_once_approved() {
    let env = common::TestEnv::new();
    let options = env
        .options()
        .port(common::free_port())
        .auth(Auth::Token(TOKEN.into()));
    let lock = gateway::GatewayLock::acquire(&options).unwrap();
    let port = lock.port();
    let served = gateway::Gateway::serve(
        lock,
        gateway::ServeOptions {
            worker_threads: 2,
            pairing: gateway::PairingOptions {
                policy: std::sync::Arc::new(LeaveItPending),
                store_path: None,
            },
            ..gateway::ServeOptions::default()
        },
    )
    .unwrap();
    let handle = served.handle();
    let mut watcher = observer(port).await;
    let key = DeviceKey::random();

    let mut client = Client::open(port).await;
    let res = client.connect_signed(&key, cli(&["operator.read"])).await;
    let request_id = res["error"]["details"]["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    let error = json!({
        "code": "NOT_PAIRED",
        "message": "pairing required: device is not approved yet",
        "details": {
            "code": "PAIRING_REQUIRED", "reason": "not-paired", "requestId": request_id,
            "remediationHint": "Approve this device from the pending pairing requests.",
            "deviceId": key.device_id(), "requestedRole": "operator",
            "requestedScopes": ["operator.read"],
        },
    });
    let reason = format!("pairing required: device is not approved yet (requestId: {request_id})");
    refused(&mut client, &res, error, &reason).await;
    // On loopback Node's rule would have approved it: the request says so, for the host.
    let requested = watcher.recv_skip_ticks().await;
    assert_eq!(requested["event"], "device.pair.requested", "{requested}");
    let payload = &requested["payload"];
    assert_eq!(payload["requestId"], request_id.as_str());
    assert_eq!(
        (&payload["silent"], &payload["roles"]),
        (&json!(true), &json!(["operator"])),
        "{payload}"
    );

    let device = handle.approve_pairing(&request_id, None).unwrap();
    assert_eq!(device.scopes, ["operator.read"]);
    let resolved = watcher.recv_skip_ticks().await;
    assert_eq!(
        (
            &resolved["event"],
            &resolved["payload"]["requestId"],
            &resolved["payload"]["decision"]
        ),
        (
            &json!("device.pair.resolved"),
            &json!(request_id),
            &json!("approved")
        ),
        "{resolved}"
    );
    let mut again = Client::open(port).await;
    let res = again.connect_signed(&key, cli(&["operator.read"])).await;
    assert_eq!(res["ok"], true, "{res}");
    assert!(res["payload"]["auth"]["deviceToken"].is_string(), "{res}");
    assert_eq!(health(&mut again, "e1").await["ok"], true);
    drop(watcher);
    served.shutdown(std::time::Duration::from_secs(2));
}

#[tokio::test]
async fn approving_a_metadata_upgrade_pins_the_new_metadata_so_the_device_connects() {
    let server = gateway();
    let port = server.port;
    let key = DeviceKey::random();
    // The macOS app's UI on direct loopback: Node re-approves its metadata silently.
    let mut app = params(
        "openclaw-macos",
        "ui",
        "operator",
        &["operator.read"],
        json!({"token": TOKEN}),
    );
    app["client"]["platform"] = json!("macos 15.1");
    app["client"]["deviceFamily"] = json!("Mac");
    let mut first = Client::open(port).await;
    assert_eq!(first.connect_signed(&key, app.clone()).await["ok"], true);

    // It now claims no device family: a metadata upgrade, approved, and pinned as claimed.
    app["client"]
        .as_object_mut()
        .unwrap()
        .remove("deviceFamily");
    let mut moved = Client::open(port).await;
    let res = moved.connect_signed(&key, app.clone()).await;
    assert_eq!(res["ok"], true, "{res}");
    let paired = server.gateway().handle().paired_devices();
    assert_eq!(paired.len(), 1);
    assert_eq!(
        (
            paired[0].platform.as_deref(),
            paired[0].device_family.as_deref()
        ),
        (Some("macos 15.1"), None)
    );
    // Pinned, it is no upgrade any more.
    let mut again = Client::open(port).await;
    assert_eq!(again.connect_signed(&key, app).await["ok"], true);
}
