//! SPEC §11.7 over real sockets: the limiter of failed credentials (a loopback peer slowed but
//! never locked out, a browser origin on loopback locked out, a peer on another host locked
//! out, device-token failures counted apart from shared-secret ones) and bootstrap tokens
//! (issued by the host, a device connects and pairs with one, once, before it expires).
#![cfg(target_os = "linux")] // The remote peer is a network namespace with a veth pair.

mod common;
mod wsclient;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::RemotePeer;
use gateway::{Auth, AuthThrottle, BindMode, BootstrapProfile, Handlers, ProtocolOptions};
use serde_json::{Value, json};
use wsclient::{Client, DeviceKey, TestGateway, assert_error, connect_params};

const TOKEN: &str = "right-token";
const MISMATCH: &str = "unauthorized: gateway token mismatch (provide gateway auth token)";
const LIMITED: &str = "unauthorized: too many failed authentication attempts (retry later)";

/// Three failures lock a client out for a minute (Node's default is ten for five minutes).
fn protocol() -> ProtocolOptions {
    ProtocolOptions {
        auth_throttle: AuthThrottle {
            max_failures: 3,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
        },
        ..ProtocolOptions::default()
    }
}

fn gateway() -> TestGateway {
    TestGateway::start(Auth::Token(TOKEN.into()), protocol(), Handlers::new())
}

fn with_token(token: &str) -> Value {
    let mut params = connect_params();
    params["auth"] = json!({"token": token});
    params
}

/// `connect` with `params` on `client`; the `res`.
async fn answer(client: &mut Client, params: Value) -> Value {
    client.connect_with(params).await
}

/// `connect` with `params` on `client` whose challenge was read; the `res`.
async fn answer_after_challenge(client: &mut Client, params: Value) -> Value {
    client
        .send(json!({"type": "req", "id": "c1", "method": "connect", "params": params}))
        .await;
    client.recv().await
}

/// Asserts a refusal with `message` and `details.code`, and the 1008 close that follows.
async fn assert_refused(client: &mut Client, res: &Value, message: &str, code: &str) {
    assert_error(res, "c1", "INVALID_REQUEST", message, Some(code));
    assert_eq!(client.closed().await, (1008, message.to_owned()));
}

/// Asserts the rate-limited answer, its retry hint within `(low, high]` ms, and the close.
async fn assert_limited(client: &mut Client, res: &Value, low: u64, high: u64) {
    assert_error(
        res,
        "c1",
        "INVALID_REQUEST",
        LIMITED,
        Some("AUTH_RATE_LIMITED"),
    );
    assert_eq!(res["error"]["retryable"], true, "{res}");
    assert_eq!(
        res["error"]["details"]["authReason"], "rate_limited",
        "{res}"
    );
    assert_eq!(
        res["error"]["details"]["recommendedNextStep"], "wait_then_retry",
        "{res}"
    );
    let retry = res["error"]["retryAfterMs"].as_u64().unwrap();
    assert!(retry > low && retry <= high, "{res}");
    assert_eq!(client.closed().await, (1008, LIMITED.to_owned()));
}

#[tokio::test]
async fn a_loopback_peer_is_slowed_but_never_locked_out() {
    let server = gateway();
    // Each wrong secret is answered later than the one before: 250 ms doubling (ARL:152-158).
    for expected_ms in [250u64, 500, 1000, 2000] {
        let mut client = Client::open(server.port).await;
        client.challenge().await;
        let started = Instant::now();
        let res = answer_after_challenge(&mut client, with_token("wrong")).await;
        let took = started.elapsed();
        assert_refused(&mut client, &res, MISMATCH, "AUTH_TOKEN_MISMATCH").await;
        assert!(
            took >= Duration::from_millis(expected_ms - 20)
                && took < Duration::from_millis(expected_ms + 1500),
            "answered after {took:?}, expected about {expected_ms} ms"
        );
    }
    // Four failures, one over the limit, and the right token still gets in, at once.
    let started = Instant::now();
    let (_client, hello) = Client::connected(server.port, with_token(TOKEN)).await;
    assert_eq!(hello["auth"]["method"], "token");
    assert!(started.elapsed() < Duration::from_millis(1000));
}

#[tokio::test]
async fn a_browser_origin_on_loopback_is_locked_out_by_origin() {
    let server = gateway();
    let origin = "http://localhost:5173";
    for _ in 0..3 {
        let mut client = Client::open_with(server.port, Some(origin)).await;
        let started = Instant::now();
        let res = answer(&mut client, with_token("wrong")).await;
        // Not exempt, so not slowed either.
        assert!(started.elapsed() < Duration::from_millis(200));
        assert_refused(&mut client, &res, MISMATCH, "AUTH_TOKEN_MISMATCH").await;
    }
    // Locked out, even with the right token; the same site under another path too.
    for origin in [origin, "http://LOCALHOST:5173/other/page"] {
        let mut client = Client::open_with(server.port, Some(origin)).await;
        let res = answer(&mut client, with_token(TOKEN)).await;
        assert_limited(&mut client, &res, 55_000, 60_000).await;
    }
    // Another origin, and the same peer without an Origin, are counted apart.
    let mut other = Client::open_with(server.port, Some("http://127.0.0.1:18789")).await;
    assert_eq!(answer(&mut other, with_token(TOKEN)).await["ok"], true);
    Client::connected(server.port, with_token(TOKEN)).await;
}

/// A remote client behind a reverse proxy on this host reaches the gateway from loopback with
/// `X-Forwarded-For`: it is not the exempt local peer, so it is locked out, not slowed.
#[tokio::test]
async fn a_client_proxied_from_loopback_is_locked_out() {
    let server = gateway();
    let proxied = [("x-forwarded-for", "203.0.113.7")];
    for _ in 0..3 {
        let mut client = Client::open_with_headers(server.port, &proxied).await;
        let started = Instant::now();
        let res = answer(&mut client, with_token("wrong")).await;
        assert!(started.elapsed() < Duration::from_millis(200));
        assert_refused(&mut client, &res, MISMATCH, "AUTH_TOKEN_MISMATCH").await;
    }
    let mut client = Client::open_with_headers(server.port, &proxied).await;
    let res = answer(&mut client, with_token(TOKEN)).await;
    assert_limited(&mut client, &res, 55_000, 60_000).await;
    // The direct local peer is counted apart and still gets in.
    Client::connected(server.port, with_token(TOKEN)).await;
}

/// A signed device that sends only `auth.deviceToken`.
fn device_token_only(token: &str) -> Value {
    let mut params = connect_params();
    params["client"]["id"] = json!("cli");
    params["client"]["mode"] = json!("cli");
    params["role"] = json!("operator");
    params["scopes"] = json!(["operator.read"]);
    params["auth"] = json!({"deviceToken": token});
    params
}

#[tokio::test]
async fn device_token_failures_are_counted_apart_from_shared_secret_ones() {
    let server = gateway();
    let origin = Some("http://localhost:5173");
    let key = DeviceKey::random();
    let device_mismatch = "unauthorized: device token mismatch (rotate/reissue device token)";
    for _ in 0..3 {
        let mut client = Client::open_with(server.port, origin).await;
        let res = client
            .connect_signed(&key, device_token_only("not-a-token"))
            .await;
        assert_refused(
            &mut client,
            &res,
            device_mismatch,
            "AUTH_DEVICE_TOKEN_MISMATCH",
        )
        .await;
    }
    let mut client = Client::open_with(server.port, origin).await;
    let res = client
        .connect_signed(&key, device_token_only("not-a-token"))
        .await;
    assert_limited(&mut client, &res, 55_000, 60_000).await;
    // The shared secret is another class: two wrong ones and the right one get through.
    for _ in 0..2 {
        let mut client = Client::open_with(server.port, origin).await;
        let res = answer(&mut client, with_token("wrong")).await;
        assert_refused(&mut client, &res, MISMATCH, "AUTH_TOKEN_MISMATCH").await;
    }
    let mut client = Client::open_with(server.port, origin).await;
    assert_eq!(answer(&mut client, with_token(TOKEN)).await["ok"], true);
}

/// A WebSocket client of `host:port` (the helpers' clients speak to 127.0.0.1 only).
async fn open_at(host: Ipv4Addr, port: u16) -> Client {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{host}:{port}/"))
        .await
        .expect("websocket upgrade");
    Client { ws }
}

#[test]
fn a_peer_on_another_host_is_locked_out_and_not_slowed() {
    let peer = RemotePeer::new();
    let bind = BindMode::Custom(peer.host_ip.to_string());
    let server = TestGateway::start_with(
        |options| options.bind(bind).auth(Auth::Token(TOKEN.into())),
        protocol(),
        Handlers::new(),
    );
    let port = server.port;
    let host = peer.host_ip;
    peer.run(async move || {
        for _ in 0..3 {
            let mut client = open_at(host, port).await;
            client.challenge().await;
            let started = Instant::now();
            let res = answer_after_challenge(&mut client, with_token("wrong")).await;
            assert!(started.elapsed() < Duration::from_millis(200), "not slowed");
            assert_refused(&mut client, &res, MISMATCH, "AUTH_TOKEN_MISMATCH").await;
        }
        let mut client = open_at(host, port).await;
        let res = answer(&mut client, with_token(TOKEN)).await;
        assert_limited(&mut client, &res, 55_000, 60_000).await;
    });
    // From this side of the pair (another address, not loopback either) the gateway is not
    // locked: the lockout is the peer's alone.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = open_at(host, port).await;
        let res = answer(&mut client, with_token(TOKEN)).await;
        assert_eq!(res["payload"]["auth"]["method"], "token", "{res}");
    });
    drop(server);
}

// Bootstrap tokens (SPEC §11.7 step 2).

/// The node host's `connect`: role `node`, no scopes, only the bootstrap token.
fn node_with_bootstrap(token: &str) -> Value {
    let mut params = connect_params();
    params["client"]["id"] = json!("node-host");
    params["client"]["mode"] = json!("node");
    params["role"] = json!("node");
    params["scopes"] = json!([]);
    params["auth"] = json!({"bootstrapToken": token});
    params
}

const SETUP_REJECTED: &str = "unauthorized: setup code invalid, expired, revoked, or already used (create a new code; review `openclaw devices list`)";

async fn assert_bootstrap_refused(client: &mut Client, res: &Value) {
    assert_eq!(
        res["error"],
        json!({
            "code": "INVALID_REQUEST", "message": SETUP_REJECTED,
            "details": {
                "code": "AUTH_BOOTSTRAP_TOKEN_INVALID", "authReason": "bootstrap_token_invalid",
                "canRetryWithDeviceToken": false, "recommendedNextStep": "review_auth_configuration",
            },
        }),
        "{res}"
    );
    assert_eq!(client.closed().await, (1008, SETUP_REJECTED.to_owned()));
}

#[tokio::test]
async fn a_bootstrap_token_pairs_its_device_once() {
    let server = gateway();
    let handle = server.gateway().handle();
    let token = handle
        .issue_bootstrap_token(&BootstrapProfile::new(vec!["node".into()], Vec::new()))
        .unwrap();
    assert_eq!(token.len(), 43);
    let key = DeviceKey::random();
    let mut client = Client::open(server.port).await;
    let res = client
        .connect_signed(&key, node_with_bootstrap(&token))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let auth = &res["payload"]["auth"];
    assert_eq!(auth["method"], "bootstrap-token", "{res}");
    assert_eq!(auth["role"], "node", "{res}");
    let device_token = auth["deviceToken"].as_str().unwrap().to_owned();
    // Paired with the profile's role, without asking the host.
    let paired = handle.paired_devices();
    assert_eq!(paired.len(), 1);
    assert_eq!(paired[0].device_id, key.device_id());
    assert_eq!(paired[0].roles, vec!["node".to_owned()]);
    assert!(handle.pairing_requests().is_empty());

    // Spent: neither the same device nor another may use it again.
    for key in [&key, &DeviceKey::random()] {
        let mut again = Client::open(server.port).await;
        let res = again.connect_signed(key, node_with_bootstrap(&token)).await;
        assert_bootstrap_refused(&mut again, &res).await;
    }
    // The device token it was handed works.
    let mut params = node_with_bootstrap("");
    params["auth"] = json!({"deviceToken": device_token});
    let mut again = Client::open(server.port).await;
    let res = again.connect_signed(&key, params).await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token", "{res}");
}

#[tokio::test]
async fn bootstrap_tokens_refused_when_expired_bound_elsewhere_or_overreaching() {
    let server = gateway();
    let handle = server.gateway().handle();
    let short = BootstrapProfile {
        ttl_ms: Some(100),
        ..BootstrapProfile::new(vec!["node".into()], Vec::new())
    };
    let expired = handle.issue_bootstrap_token(&short).unwrap();
    let bound_key = DeviceKey::random();
    let bound = handle
        .issue_bootstrap_token(&BootstrapProfile {
            device_id: Some(bound_key.device_id()),
            public_key: Some(bound_key.public_key()),
            ..BootstrapProfile::new(vec!["node".into()], Vec::new())
        })
        .unwrap();
    let operator_only = handle
        .issue_bootstrap_token(&BootstrapProfile::new(
            vec!["operator".into()],
            vec!["operator.read".into()],
        ))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for token in [&expired, &bound, &operator_only, &"never-issued".to_owned()] {
        let mut client = Client::open(server.port).await;
        let res = client
            .connect_signed(&DeviceKey::random(), node_with_bootstrap(token))
            .await;
        assert_bootstrap_refused(&mut client, &res).await;
    }
    assert!(handle.paired_devices().is_empty());
    // The bound device may use its token; an operator token for an operator too.
    let mut client = Client::open(server.port).await;
    let res = client
        .connect_signed(&bound_key, node_with_bootstrap(&bound))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let mut operator = node_with_bootstrap(&operator_only);
    operator["client"] =
        json!({"id": "cli", "version": "1.0.0", "platform": "linux", "mode": "cli"});
    operator["role"] = json!("operator");
    operator["scopes"] = json!(["operator.read"]);
    let mut client = Client::open(server.port).await;
    let res = client.connect_signed(&DeviceKey::random(), operator).await;
    assert_eq!(res["payload"]["auth"]["method"], "bootstrap-token", "{res}");
    assert_eq!(
        res["payload"]["auth"]["scopes"],
        json!(["operator.read"]),
        "{res}"
    );
    // A profile without a role is refused, saying why.
    let err = handle
        .issue_bootstrap_token(&BootstrapProfile::new(Vec::new(), Vec::new()))
        .unwrap_err();
    assert!(err.to_string().contains("no role"), "{err}");
}

#[tokio::test]
async fn bootstrap_failures_lock_out_their_own_class() {
    let server = gateway();
    let origin = Some("http://localhost:5173");
    for _ in 0..3 {
        let mut client = Client::open_with(server.port, origin).await;
        let res = client
            .connect_signed(&DeviceKey::random(), node_with_bootstrap("guess"))
            .await;
        assert_bootstrap_refused(&mut client, &res).await;
    }
    let token = server
        .gateway()
        .handle()
        .issue_bootstrap_token(&BootstrapProfile::new(vec!["node".into()], Vec::new()))
        .unwrap();
    let mut client = Client::open_with(server.port, origin).await;
    let res = client
        .connect_signed(&DeviceKey::random(), node_with_bootstrap(&token))
        .await;
    assert_limited(&mut client, &res, 55_000, 60_000).await;
}
