//! SPEC §9 branch by branch, with a real WebSocket client against an in-process gateway:
//! every close code and reason, every error `details.code`, auth, Origin, limits, host
//! methods and events, keepalive and shutdown.

mod common;
mod wsclient;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gateway::{
    Auth, AuthThrottle, ConnectionEvent, Handlers, MethodError, MethodHandler, MethodRequest,
    ProtocolOptions, Responder,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsclient::{Client, DeviceKey, TestGateway, assert_error, connect_params};

fn with_scopes(scopes: &[&str]) -> Value {
    let mut params = connect_params();
    params["scopes"] = json!(scopes);
    params
}

fn with_auth(auth: Value) -> Value {
    let mut params = connect_params();
    params["auth"] = auth;
    params
}

fn echo_handlers() -> Handlers {
    Handlers::new()
        .method_with_scope("echo", "operator.read", |request| async move {
            Ok(request.params)
        })
        .event("demo.tick")
}

#[tokio::test]
async fn challenge_then_hello_ok_with_every_field() {
    let server = TestGateway::start(Auth::None, ProtocolOptions::default(), echo_handlers());
    let mut client = Client::open(server.port).await;
    let challenge = client.challenge().await;
    let nonce = challenge["payload"]["nonce"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(nonce).is_ok(), "{challenge}");
    assert!(challenge["payload"]["ts"].as_u64().unwrap() > 1_700_000_000_000);

    let mut params = with_scopes(&["operator.read"]);
    params["client"]["displayName"] = json!("kept as sent");
    client
        .send(json!({"type": "req", "id": "c1", "method": "connect", "params": params}))
        .await;
    let res = client.recv().await;
    assert_eq!(
        (&res["type"], &res["id"], &res["ok"]),
        (&json!("res"), &json!("c1"), &json!(true))
    );
    let hello = &res["payload"];
    assert_eq!(hello["type"], "hello-ok");
    assert_eq!(hello["protocol"], 4);
    assert_eq!(hello["server"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        hello["server"]["connId"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    assert_eq!(
        hello["features"]["methods"],
        json!(["health", "system-presence", "echo"])
    );
    assert_eq!(
        hello["features"]["events"],
        json!([
            "connect.challenge",
            "tick",
            "health",
            "shutdown",
            "presence",
            "device.pair.requested",
            "device.pair.resolved",
            "demo.tick"
        ])
    );
    // A `cli` client is not tracked: the presence it sees is the gateway's own row (SPEC §12.6).
    let presence = hello["snapshot"]["presence"].as_array().unwrap();
    assert_eq!(presence.len(), 1, "{presence:?}");
    assert_eq!(
        (&presence[0]["mode"], &presence[0]["reason"]),
        (&json!("gateway"), &json!("self"))
    );
    // The health refreshed at start (SPEC §12.7); both counters start at 1.
    assert_eq!(hello["snapshot"]["health"]["ok"], true);
    assert_eq!(
        hello["snapshot"]["stateVersion"],
        json!({"presence": 1, "health": 2})
    );
    assert!(hello["snapshot"]["uptimeMs"].is_u64());
    assert_eq!(
        hello["auth"],
        json!({"method": "none", "role": "operator", "scopes": ["operator.read"]})
    );
    assert_eq!(
        hello["policy"],
        json!({"maxPayload": 26214400, "maxBufferedBytes": 52428800, "tickIntervalMs": 30000})
    );
    // And the connection serves requests.
    let res = client.call("h1", "health", Value::Null).await;
    assert_eq!(res["ok"], true);
}

#[tokio::test]
async fn protocol_negotiation() {
    // With the shared token, so that every client id and mode may connect (SPEC §11.4 row 4).
    let server = TestGateway::start(
        Auth::Token("t".into()),
        ProtocolOptions::default(),
        Handlers::new(),
    );
    for (min, max, mode) in [(5, 6, "cli"), (1, 3, "cli"), (1, 2, "probe")] {
        let mut client = Client::open(server.port).await;
        let mut params = connect_params();
        params["minProtocol"] = json!(min);
        params["maxProtocol"] = json!(max);
        params["client"]["mode"] = json!(mode);
        let res = client.connect_with(params).await;
        assert_error(
            &res,
            "c1",
            "INVALID_REQUEST",
            "protocol mismatch",
            Some("PROTOCOL_MISMATCH"),
        );
        let details = &res["error"]["details"];
        assert_eq!(
            (
                &details["clientMinProtocol"],
                &details["clientMaxProtocol"],
                &details["expectedProtocol"],
                &details["minimumProbeProtocol"]
            ),
            (&json!(min), &json!(max), &json!(4), &json!(3))
        );
        assert_eq!(client.closed().await, (1002, "protocol mismatch".into()));
    }
    // Probe clients may speak 3..4; others 4 (a range that includes it is fine).
    for (min, max, mode) in [(3, 3, "probe"), (3, 4, "probe"), (1, 9, "cli")] {
        let mut params = with_auth(json!({"token": "t"}));
        params["minProtocol"] = json!(min);
        params["maxProtocol"] = json!(max);
        params["client"]["mode"] = json!(mode);
        let (_client, hello) = Client::connected(server.port, params).await;
        assert_eq!(hello["protocol"], 4);
    }
}

/// `hello-ok.auth.scopes` lists each granted scope once, in the order first asked (MH:531).
#[tokio::test]
async fn granted_scopes_are_listed_once() {
    let server = TestGateway::start(
        Auth::Token("t".into()),
        ProtocolOptions::default(),
        Handlers::new(),
    );
    let mut params = with_auth(json!({"token": "t"}));
    params["scopes"] = json!(["operator.write", "operator.read", "operator.write"]);
    let (_client, hello) = Client::connected(server.port, params).await;
    assert_eq!(
        hello["auth"]["scopes"],
        json!(["operator.write", "operator.read"]),
        "{hello}"
    );
}

/// A paired node asking again for the `node.*` scopes it was granted is let in: pairing judges
/// a node's scopes as Node's `roleScopesAllow` does (OSC:38-47), not as operator scopes.
#[tokio::test]
async fn a_paired_node_keeps_its_node_scopes() {
    let server = TestGateway::start(Auth::None, ProtocolOptions::default(), Handlers::new());
    let key = DeviceKey::random();
    let mut params = connect_params();
    params["role"] = json!("node");
    params["client"]["mode"] = json!("node");
    params["scopes"] = json!(["node.camera", " "]);
    for attempt in ["first", "again"] {
        let mut node = Client::open(server.port).await;
        let res = node.connect_signed(&key, params.clone()).await;
        assert_eq!(res["ok"], true, "{attempt}: {res}");
    }
}

/// A node host (role and mode `node`) may still speak the previous protocol, 3; `hello-ok`
/// says 4 all the same (MH:579-581, 2362). Another mode with role `node` may not.
#[tokio::test]
async fn a_node_host_may_speak_protocol_3() {
    let server = TestGateway::start(Auth::None, ProtocolOptions::default(), Handlers::new());
    let node = |mode: &str| {
        let mut params = connect_params();
        params["role"] = json!("node");
        params["client"]["mode"] = json!(mode);
        params["minProtocol"] = json!(3);
        params["maxProtocol"] = json!(3);
        params
    };
    let mut host = Client::open(server.port).await;
    let res = host
        .connect_signed(&DeviceKey::random(), node("node"))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let hello = &res["payload"];
    assert_eq!(
        (&hello["protocol"], &hello["auth"]["role"]),
        (&json!(4), &json!("node")),
        "{hello}"
    );
    let mut client = Client::open(server.port).await;
    let res = client.connect_with(node("ui")).await;
    assert_error(
        &res,
        "c1",
        "INVALID_REQUEST",
        "protocol mismatch",
        Some("PROTOCOL_MISMATCH"),
    );
}

#[tokio::test]
async fn first_request_must_be_connect() {
    let server = TestGateway::simple();
    let mut client = Client::open(server.port).await;
    client.challenge().await;
    client
        .send(json!({"type": "req", "id": "x-1", "method": "health"}))
        .await;
    let message = "invalid handshake: first request must be connect";
    assert_error(
        &client.recv().await,
        "x-1",
        "INVALID_REQUEST",
        message,
        None,
    );
    assert_eq!(client.closed().await, (1008, message.into()));
}

#[tokio::test]
async fn a_first_frame_that_is_not_a_request_is_closed_without_an_answer() {
    let server = TestGateway::simple();
    let frames = [
        "not json",
        "[1,2]",
        "\"req\"",
        r#"{"type":"event","event":"connect"}"#,
        r#"{"type":"req","method":"connect","params":{}}"#,
        r#"{"type":"req","id":"","method":"connect"}"#,
        r#"{"type":"req","id":7,"method":"connect"}"#,
        r#"{"type":"req","id":"a"}"#,
        r#"{"type":"req","id":"a","method":""}"#,
    ];
    for frame in frames {
        let mut client = Client::open(server.port).await;
        client.challenge().await;
        client.send_text(frame).await;
        // The close frame is the very next thing: no `res`.
        match client.next().await {
            tokio_tungstenite::tungstenite::Message::Close(Some(close)) => {
                assert_eq!(
                    (u16::from(close.code), close.reason.as_str()),
                    (1008, "invalid request frame"),
                    "{frame}"
                );
            }
            other => panic!("{frame}: expected a close, got {other:?}"),
        }
    }
    let mut client = Client::open(server.port).await;
    client.challenge().await;
    client
        .send_binary(connect_params().to_string().as_bytes())
        .await;
    assert_eq!(
        client.closed().await,
        (1008, "invalid request frame".into())
    );
}

#[tokio::test]
async fn bad_connect_params_and_roles() {
    let server = TestGateway::simple();
    let mut no_client = connect_params();
    no_client.as_object_mut().unwrap().remove("client");
    let mut empty_platform = connect_params();
    empty_platform["client"]["platform"] = json!("");
    let mut bad_protocol = connect_params();
    bad_protocol["minProtocol"] = json!("4");
    let mut bad_scopes = connect_params();
    bad_scopes["scopes"] = json!(["operator.read", 3]);
    let mut unknown = connect_params();
    unknown["foo"] = json!(1);
    unknown["bar"] = json!(2);
    let mut unknown_client = connect_params();
    unknown_client["client"]["id"] = json!("my-app");
    let mut unknown_auth = connect_params();
    unknown_auth["auth"] = json!({"token": "t", "secret": "x"});
    let mut short_device = connect_params();
    short_device["device"] = json!({"id": "a", "publicKey": "b", "signature": "c", "signedAt": -1});
    let mut two_errors = connect_params();
    two_errors["minProtocol"] = json!(0);
    two_errors["extra"] = json!(true);
    // Every field real clients send is accepted (SES `ConnectParamsSchema`).
    let mut every_field = connect_params();
    for (name, value) in [
        ("caps", json!(["tool-events"])),
        ("commands", json!(["system.run"])),
        ("computerUse", json!({"anything": 1})),
        ("permissions", json!({"screen": true})),
        ("pathEnv", json!("/usr/bin")),
        ("modelCatalog", json!({"agentId": "main"})),
        (
            "auth",
            json!({"token": "t", "bootstrapToken": "b", "deviceToken": "d", "password": "p", "approvalRuntimeToken": "a", "agentRuntimeIdentityToken": "i"}),
        ),
        ("locale", json!("en-US")),
        ("userAgent", json!("ua")),
    ] {
        every_field[name] = value;
    }
    for (name, value) in [
        ("displayName", "d"),
        ("buildId", "b"),
        ("deviceFamily", "f"),
        ("modelIdentifier", "m"),
        ("timeZone", "Europe/Paris"),
        ("instanceId", "i"),
    ] {
        every_field["client"][name] = json!(value);
    }
    Client::connected(server.port, every_field).await;
    let cases = [
        (Value::Null, "must be object"),
        (no_client, "must have required property 'client'"),
        (
            empty_platform,
            "at /client/platform: must not have fewer than 1 characters",
        ),
        (bad_protocol, "at /minProtocol: must be integer"),
        (bad_scopes, "at /scopes/1: must be string"),
        (unknown, "at root: unexpected property 'foo'"),
        (
            unknown_client,
            "at /client/id: must be equal to one of the allowed values",
        ),
        (unknown_auth, "at /auth: unexpected property 'secret'"),
        (
            short_device,
            "at /device: must have required property 'nonce'; at /device/signedAt: must be >= 0",
        ),
        (
            two_errors,
            "at root: unexpected property 'extra'; at /minProtocol: must be >= 1",
        ),
    ];
    for (params, why) in cases {
        let mut client = Client::open(server.port).await;
        let res = client.connect_with(params).await;
        let message = format!("invalid connect params: {why}");
        assert_error(&res, "c1", "INVALID_REQUEST", &message, None);
        assert_eq!(client.closed().await, (1008, message));
    }
    let mut client = Client::open(server.port).await;
    let mut params = connect_params();
    params["role"] = json!("root");
    let res = client.connect_with(params).await;
    assert_error(&res, "c1", "INVALID_REQUEST", "invalid role", None);
    assert_eq!(client.closed().await, (1008, "invalid role".into()));
    // A node without a device identity is not paired (SPEC §11.4); a worker's claim is closed
    // without an answer (SPEC §12.1).
    let mut params = connect_params();
    params["role"] = json!("node");
    not_paired(server.port, params).await;
    for (field, value) in [
        ("role", "worker"),
        ("mode", "worker"),
        ("id", "openclaw-worker"),
    ] {
        let mut params = connect_params();
        if field == "role" {
            params["role"] = json!(value);
        } else {
            params["client"][field] = json!(value);
        }
        let mut client = Client::open(server.port).await;
        client.challenge().await;
        client
            .send(json!({"type": "req", "id": "c1", "method": "connect", "params": params}))
            .await;
        assert_eq!(
            client.closed().await,
            (1008, "invalid-handshake".into()),
            "{field}"
        );
    }
}

async fn refused(port: u16, params: Value, message: &str, detail: &str) {
    let mut client = Client::open(port).await;
    let res = client.connect_with(params).await;
    assert_error(&res, "c1", "INVALID_REQUEST", message, Some(detail));
    assert_eq!(client.closed().await, (1008, message.to_owned()));
}

#[tokio::test]
async fn token_auth() {
    let server = TestGateway::start(
        Auth::Token("s3cret-token".into()),
        ProtocolOptions::default(),
        Handlers::new(),
    );
    let port = server.port;
    // Without any credential and without a device, Node asks for a device identity, not a
    // token (SPEC Corrections: `NOT_PAIRED` without any credential).
    for params in [connect_params(), with_auth(json!({"token": ""}))] {
        not_paired(port, params).await;
    }
    // A blank token was sent, so it is judged, and found missing once trimmed (NCR:168-176).
    refused(
        port,
        with_auth(json!({"token": "  "})),
        "unauthorized: gateway token missing (provide gateway auth token)",
        "AUTH_TOKEN_MISSING",
    )
    .await;
    let mismatch = "unauthorized: gateway token mismatch (provide gateway auth token)";
    refused(
        port,
        with_auth(json!({"token": "s3cret-tokeN"})),
        mismatch,
        "AUTH_TOKEN_MISMATCH",
    )
    .await;
    refused(
        port,
        with_auth(json!({"token": "s3cret"})),
        mismatch,
        "AUTH_TOKEN_MISMATCH",
    )
    .await;
    // The local CLI is told how to fix it.
    let mut cli = with_auth(json!({"token": "nope"}));
    cli["client"]["id"] = json!("cli");
    cli["client"]["mode"] = json!("cli");
    refused(
        port,
        cli,
        "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)",
        "AUTH_TOKEN_MISMATCH",
    )
    .await;
    // Trimmed, and `auth.password` stands in for a missing token (AUTH:32-34).
    for auth in [
        json!({"token": "s3cret-token"}),
        json!({"token": " s3cret-token\n"}),
        json!({"password": "s3cret-token"}),
    ] {
        let (_client, hello) = Client::connected(port, with_auth(auth)).await;
        assert_eq!(hello["auth"]["method"], "token");
    }
}

/// A `connect` with `params` is refused as not paired, and the connection closed.
async fn not_paired(port: u16, params: Value) {
    let mut client = Client::open(port).await;
    let res = client.connect_with(params).await;
    assert_error(
        &res,
        "c1",
        "NOT_PAIRED",
        "device identity required",
        Some("DEVICE_IDENTITY_REQUIRED"),
    );
    assert_eq!(
        client.closed().await,
        (1008, "device identity required".into())
    );
}

#[tokio::test]
async fn password_auth() {
    let server = TestGateway::start(
        Auth::Password("hunter2".into()),
        ProtocolOptions::default(),
        Handlers::new(),
    );
    let port = server.port;
    not_paired(port, connect_params()).await;
    let mismatch = "unauthorized: gateway password mismatch (provide gateway auth password)";
    refused(
        port,
        with_auth(json!({"password": "hunter3"})),
        mismatch,
        "AUTH_PASSWORD_MISMATCH",
    )
    .await;
    refused(
        port,
        with_auth(json!({"token": "hunter2", "password": "hunter3"})),
        mismatch,
        "AUTH_PASSWORD_MISMATCH",
    )
    .await;
    for auth in [json!({"password": "hunter2"}), json!({"token": "hunter2"})] {
        let (_client, hello) = Client::connected(port, with_auth(auth)).await;
        assert_eq!(hello["auth"]["method"], "password");
    }
}

#[tokio::test]
async fn no_auth_accepts_any_credentials() {
    let server = TestGateway::simple();
    Client::connected(server.port, connect_params()).await;
    Client::connected(server.port, with_auth(json!({"token": "whatever"}))).await;
}

#[tokio::test]
async fn repeated_failures_are_throttled_per_peer() {
    let protocol = ProtocolOptions {
        auth_throttle: AuthThrottle {
            max_failures: 3,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
        },
        ..ProtocolOptions::default()
    };
    let server = TestGateway::start(Auth::Token("right".into()), protocol, Handlers::new());
    let mismatch = "unauthorized: gateway token mismatch (provide gateway auth token)";
    // Loopback is exempt from lockout (tests/limits.rs): a browser page on this host is not,
    // and is counted by its origin (SPEC §11.7).
    let origin = Some("http://localhost:5173");
    for _ in 0..3 {
        let mut client = Client::open_with(server.port, origin).await;
        let res = client
            .connect_with(with_auth(json!({"token": "wrong"})))
            .await;
        assert_error(
            &res,
            "c1",
            "INVALID_REQUEST",
            mismatch,
            Some("AUTH_TOKEN_MISMATCH"),
        );
        assert_eq!(client.closed().await, (1008, mismatch.to_owned()));
    }
    // Locked out now, even with the right token.
    let mut client = Client::open_with(server.port, origin).await;
    let res = client
        .connect_with(with_auth(json!({"token": "right"})))
        .await;
    let message = "unauthorized: too many failed authentication attempts (retry later)";
    assert_error(
        &res,
        "c1",
        "INVALID_REQUEST",
        message,
        Some("AUTH_RATE_LIMITED"),
    );
    assert_eq!(res["error"]["retryable"], true);
    let retry_after = res["error"]["retryAfterMs"].as_u64().unwrap();
    assert!(retry_after > 50_000 && retry_after <= 60_000, "{res}");
    assert_eq!(client.closed().await, (1008, message.into()));
}

#[tokio::test]
async fn origin_policy() {
    let protocol = ProtocolOptions {
        allowed_origins: vec!["https://control.example.com".into()],
        ..ProtocolOptions::default()
    };
    let server = TestGateway::start(Auth::Token("t".into()), protocol, Handlers::new());
    let params = with_auth(json!({"token": "t"}));
    for origin in [
        "http://127.0.0.1:18789",
        "http://localhost:5173",
        "http://[::1]:8080",
        "https://control.example.com",
    ] {
        let mut client = Client::open_with(server.port, Some(origin)).await;
        let res = client.connect_with(params.clone()).await;
        assert_eq!(res["ok"], true, "{origin}: {res}");
    }
    let message = "origin not allowed (open the Control UI from the gateway host or allow it in gateway.controlUi.allowedOrigins)";
    let mut control_ui = params.clone();
    control_ui["client"]["id"] = json!("openclaw-control-ui");
    control_ui["client"]["mode"] = json!("webchat");
    let cases = [
        (
            Some("https://evil.example"),
            params.clone(),
            "origin not allowed",
        ),
        (
            Some("http://localhost.evil.example"),
            params.clone(),
            "origin not allowed",
        ),
        (Some("null"), params.clone(), "origin not allowed"),
        // The Control UI is checked even without an Origin.
        (None, control_ui, "origin missing or invalid"),
    ];
    for (origin, params, reason) in cases {
        let mut client = Client::open_with(server.port, origin).await;
        let res = client.connect_with(params).await;
        assert_error(
            &res,
            "c1",
            "INVALID_REQUEST",
            message,
            Some("CONTROL_UI_ORIGIN_NOT_ALLOWED"),
        );
        assert_eq!(res["error"]["details"]["reason"], reason, "{origin:?}");
        assert_eq!(client.closed().await, (1008, message.into()), "{origin:?}");
    }
}

#[tokio::test]
async fn preauth_frames_over_64_kib_are_closed_with_1009() {
    let server = TestGateway::simple();
    // Exactly 64 KiB is allowed: a connect padded to 65536 bytes.
    let mut params = connect_params();
    params["userAgent"] = json!("");
    let frame = json!({"type": "req", "id": "c1", "method": "connect", "params": params});
    let padding = 65536 - frame.to_string().len();
    params["userAgent"] = json!("x".repeat(padding));
    let frame =
        json!({"type": "req", "id": "c1", "method": "connect", "params": params}).to_string();
    assert_eq!(frame.len(), 65536);
    let mut client = Client::open(server.port).await;
    client.challenge().await;
    client.send_text(&frame).await;
    assert_eq!(client.recv().await["ok"], true);

    for size in [65537, 3 * 1024 * 1024] {
        let mut client = Client::open(server.port).await;
        client.challenge().await;
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            client
                .ws
                .send(tokio_tungstenite::tungstenite::Message::Text(
                    "x".repeat(size).into(),
                )),
        )
        .await;
        assert_eq!(
            client.closed().await,
            (1009, "preauth payload too large".into()),
            "{size}"
        );
    }
}

#[tokio::test]
async fn frames_larger_than_a_read_and_several_in_one_read_come_out_whole() {
    // The socket is read ahead of tungstenite's small buffer (src/server/ws/metered.rs): a
    // frame spans many reads, and one read holds several frames and the start of the next.
    let server = TestGateway::start(Auth::None, ProtocolOptions::default(), echo_handlers());
    let (mut client, _) = Client::connected(server.port, with_scopes(&["operator.read"])).await;
    let sizes = [
        3 * 1024 * 1024,
        1,
        100_000,
        17,
        16 * 1024,
        16 * 1024 + 1,
        511,
        4096,
    ];
    for (i, size) in sizes.iter().enumerate() {
        let frame = json!({
            "type": "req", "id": format!("e{i}"), "method": "echo",
            "params": {"pad": "x".repeat(*size)},
        });
        client
            .ws
            .feed(tokio_tungstenite::tungstenite::Message::Text(
                frame.to_string().into(),
            ))
            .await
            .unwrap();
    }
    client.ws.flush().await.unwrap();
    let mut echoed = std::collections::HashMap::new();
    while echoed.len() < sizes.len() {
        let res = client.recv().await;
        if res["type"] == "event" {
            continue;
        }
        assert_eq!(res["ok"], true, "{}", res["id"]);
        let pad = res["payload"]["pad"].as_str().unwrap();
        assert!(pad.bytes().all(|b| b == b'x'), "{}", res["id"]);
        echoed.insert(res["id"].as_str().unwrap().to_owned(), pad.len());
    }
    for (i, size) in sizes.iter().enumerate() {
        assert_eq!(echoed[&format!("e{i}")], *size, "e{i}");
    }
}

#[tokio::test]
async fn frames_over_max_payload_after_auth_are_closed_with_1009() {
    let protocol = ProtocolOptions {
        max_payload: 1024 * 1024,
        ..ProtocolOptions::default()
    };
    let server = TestGateway::start(Auth::None, protocol, echo_handlers());
    let (mut client, _) = Client::connected(server.port, with_scopes(&["operator.read"])).await;
    // Past the pre-auth limit but under maxPayload: answered.
    let big = "y".repeat(512 * 1024);
    let res = client.call("big", "echo", json!({ "data": big })).await;
    assert_eq!(
        res["payload"]["data"].as_str().map(str::len),
        Some(big.len())
    );
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        client
            .ws
            .send(tokio_tungstenite::tungstenite::Message::Text(
                "z".repeat(1024 * 1024 + 1).into(),
            )),
    )
    .await;
    assert_eq!(client.closed().await, (1009, "payload too large".into()));
}

#[tokio::test]
async fn handshake_timeout() {
    let protocol = ProtocolOptions {
        handshake_timeout: Duration::from_millis(300),
        ..ProtocolOptions::default()
    };
    let server = TestGateway::start(Auth::None, protocol, Handlers::new());
    let started = Instant::now();
    let mut client = Client::open(server.port).await;
    client.challenge().await;
    assert_eq!(client.closed().await, (1008, "handshake timeout".into()));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // A client that connects in time is not cut off later.
    let (mut client, _) = Client::connected(server.port, connect_params()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(client.call("h", "health", Value::Null).await["ok"], true);
}

#[tokio::test]
async fn invalid_frames_after_the_handshake_are_answered_and_the_connection_stays() {
    let server = TestGateway::simple();
    let (mut client, _) = Client::connected(server.port, connect_params()).await;
    let cases: [(&str, Value, &str); 7] = [
        (
            "{nope",
            json!("invalid"),
            "invalid request frame: invalid JSON",
        ),
        (
            "[1]",
            json!("invalid"),
            "invalid request frame: frame must be an object",
        ),
        (
            r#"{"type":"event","id":"e1"}"#,
            json!("e1"),
            "invalid request frame: type must be \"req\"",
        ),
        (
            r#"{"type":"req","method":"health"}"#,
            json!("invalid"),
            "invalid request frame: id must be a non-empty string",
        ),
        (
            r#"{"type":"req","id":"","method":"health"}"#,
            json!(""),
            "invalid request frame: id must be a non-empty string",
        ),
        (
            r#"{"type":"req","id":"m1"}"#,
            json!("m1"),
            "invalid request frame: method must be a non-empty string",
        ),
        (
            r#"{"type":"req","id":"m2","method":""}"#,
            json!("m2"),
            "invalid request frame: method must be a non-empty string",
        ),
    ];
    for (frame, id, message) in cases {
        client.send_text(frame).await;
        let res = client.recv_skip_ticks().await;
        assert_eq!(res["id"], id, "{frame}: {res}");
        assert_eq!(res["ok"], false);
        assert_eq!(res["error"]["code"], "INVALID_REQUEST");
        let got = res["error"]["message"].as_str().unwrap();
        assert!(got.starts_with(message), "{frame}: {got}");
    }
    client
        .send_binary(br#"{"type":"req","id":"b","method":"health"}"#)
        .await;
    let res = client.recv_skip_ticks().await;
    assert_error(
        &res,
        "invalid",
        "INVALID_REQUEST",
        "invalid request frame: binary frames are not supported",
        None,
    );
    // A second `connect` is authorized like any method: OpenClaw's table gives it
    // `operator.admin`, which this client lacks (an admin is told it is only valid first:
    // tests/roles.rs).
    let res = client.call("again", "connect", connect_params()).await;
    assert_error(
        &res,
        "again",
        "FORBIDDEN",
        "missing scope: operator.admin",
        Some("MISSING_SCOPE"),
    );
    assert_eq!(
        client.call("still-here", "health", Value::Null).await["ok"],
        true
    );
}

#[tokio::test]
async fn unknown_methods_and_scopes() {
    let server = TestGateway::start(Auth::None, ProtocolOptions::default(), echo_handlers());
    let (mut plain, _) = Client::connected(server.port, connect_params()).await;
    let res = plain.call("u1", "no.such.method", Value::Null).await;
    assert_error(
        &res,
        "u1",
        "FORBIDDEN",
        "missing scope: operator.admin",
        Some("MISSING_SCOPE"),
    );
    assert_eq!(res["error"]["details"]["missingScope"], "operator.admin");
    assert_eq!(
        res["error"]["details"]["requiredScopes"],
        json!(["operator.admin"])
    );
    let res = plain.call("e1", "echo", json!(1)).await;
    assert_error(
        &res,
        "e1",
        "FORBIDDEN",
        "missing scope: operator.read",
        Some("MISSING_SCOPE"),
    );
    assert_eq!(
        res["error"]["details"]["requiredScopes"],
        json!(["operator.read"])
    );
    // health needs no scope.
    assert_eq!(plain.call("h", "health", Value::Null).await["ok"], true);

    let (mut admin, _) = Client::connected(server.port, with_scopes(&["operator.admin"])).await;
    let res = admin.call("u2", "no.such.method", Value::Null).await;
    assert_error(
        &res,
        "u2",
        "INVALID_REQUEST",
        "unknown method: no.such.method",
        None,
    );
    assert_eq!(
        admin.call("e2", "echo", json!([1, 2])).await["payload"],
        json!([1, 2])
    );
    let (mut writer, _) = Client::connected(server.port, with_scopes(&["operator.write"])).await;
    assert_eq!(writer.call("e3", "echo", json!("w")).await["payload"], "w");

    // Without any host method, an admin still gets `unknown method`.
    let bare = TestGateway::simple();
    let (mut admin, _) = Client::connected(bare.port, with_scopes(&["operator.admin"])).await;
    let res = admin.call("u3", "echo", Value::Null).await;
    assert_error(&res, "u3", "INVALID_REQUEST", "unknown method: echo", None);
}

#[tokio::test]
async fn ids_are_echoed_verbatim() {
    let server = TestGateway::start(Auth::None, ProtocolOptions::default(), echo_handlers());
    let (mut client, _) = Client::connected(server.port, with_scopes(&["operator.read"])).await;
    for id in [
        "1",
        "  spaced  ",
        "ünïcødé-🦀",
        "with \"quotes\" and \\",
        &"long".repeat(500),
    ] {
        assert_eq!(client.call(id, "health", Value::Null).await["id"], id);
        assert_eq!(client.call(id, "echo", json!(null)).await["id"], id);
    }
}

#[tokio::test]
async fn health_default_and_host_snapshot() {
    let server = TestGateway::simple();
    let (mut client, _) = Client::connected(server.port, connect_params()).await;
    let res = client.call("h1", "health", Value::Null).await;
    let payload = &res["payload"];
    assert_eq!(
        (&payload["ok"], &payload["durationMs"]),
        (&json!(true), &json!(0))
    );
    assert!(payload["ts"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(payload.as_object().unwrap().len(), 3);

    let snapshot = json!({"ok": true, "ts": 1, "durationMs": 7, "channels": {"a": "up"}});
    server.gateway().handle().set_health(snapshot.clone());
    let event = client.recv_skip_ticks().await;
    assert_eq!(
        (&event["event"], &event["payload"]),
        (&json!("health"), &snapshot)
    );
    assert_eq!(
        client.call("h2", "health", Value::Null).await["payload"],
        snapshot
    );
    let (_late, hello) = Client::connected(server.port, connect_params()).await;
    assert_eq!(hello["snapshot"]["health"], snapshot);
    // 1, plus the refresh at start, plus set_health.
    assert_eq!(hello["snapshot"]["stateVersion"]["health"], 3);
}

#[tokio::test]
async fn ticks_arrive_every_tick_interval() {
    let protocol = ProtocolOptions {
        tick_interval: Duration::from_millis(100),
        ..ProtocolOptions::default()
    };
    let server = TestGateway::start(Auth::None, protocol, Handlers::new());
    let (mut client, hello) = Client::connected(server.port, connect_params()).await;
    assert_eq!(hello["policy"]["tickIntervalMs"], 100);
    let started = Instant::now();
    let mut last_seq = 0;
    for _ in 0..3 {
        let tick = client.recv().await;
        assert_eq!(
            (&tick["type"], &tick["event"]),
            (&json!("event"), &json!("tick"))
        );
        assert!(tick["payload"]["ts"].as_u64().unwrap() > 1_700_000_000_000);
        let seq = tick["seq"].as_u64().unwrap();
        assert!(seq > last_seq);
        last_seq = seq;
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(150) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn host_events_broadcast_and_targeted_with_connection_notifications() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    // A broadcast goes to the clients its event's scope admits: operator.read for this one.
    let handlers = Handlers::new()
        .event("demo.tick")
        .event("only.b")
        .on_connection(move |event| {
            let entry = match event {
                ConnectionEvent::Opened(client) => {
                    ("opened", client.conn_id, client.client_id().to_owned())
                }
                ConnectionEvent::Closed(client) => {
                    ("closed", client.conn_id, client.client_id().to_owned())
                }
            };
            log.lock().unwrap().push(entry);
        });
    let server = TestGateway::start(Auth::None, ProtocolOptions::default(), handlers);
    let (mut a, hello_a) = Client::connected(server.port, with_scopes(&["operator.read"])).await;
    let (mut b, hello_b) = Client::connected(server.port, with_scopes(&["operator.read"])).await;
    let conn_a: u64 = hello_a["server"]["connId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let conn_b: u64 = hello_b["server"]["connId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(conn_a, conn_b);

    server
        .gateway()
        .handle()
        .broadcast("demo.tick", &json!({"n": 1}));
    let (ea, eb) = (a.recv().await, b.recv().await);
    assert_eq!(ea, eb);
    assert_eq!(
        (&ea["event"], &ea["payload"]),
        (&json!("demo.tick"), &json!({"n": 1}))
    );
    assert!(ea["seq"].is_u64());

    assert!(
        server
            .gateway()
            .handle()
            .send_event(conn_b, "only.b", &json!("hi"))
    );
    let event = b.recv().await;
    assert_eq!(
        (&event["event"], &event["payload"]),
        (&json!("only.b"), &json!("hi"))
    );
    // B's own next seq, after the broadcast's (tests/roles.rs: and behind the event's gate).
    assert_eq!(event["seq"].as_u64(), Some(eb["seq"].as_u64().unwrap() + 1));
    assert!(
        !server
            .gateway()
            .handle()
            .send_event(999_999, "nobody", &json!(null))
    );
    // A's next frame is the next broadcast, not B's event.
    server
        .gateway()
        .handle()
        .broadcast("demo.tick", &json!({"n": 2}));
    assert_eq!(a.recv().await["payload"], json!({"n": 2}));
    let _ = b.recv().await;

    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.lock().unwrap().len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            ("opened", conn_a, "gateway-client".to_owned()),
            ("opened", conn_b, "gateway-client".to_owned()),
            ("closed", conn_a, "gateway-client".to_owned()),
        ]
    );
}

/// A host method answered later, from another thread, by request id (what the C ABI does).
struct Deferred(Arc<Mutex<Vec<u64>>>);

impl MethodHandler for Deferred {
    fn call(&self, request: MethodRequest, responder: Responder) {
        if request.params == json!("drop") {
            return; // Never answered: the gateway times it out.
        }
        self.0.lock().unwrap().push(responder.id());
    }
}

#[tokio::test]
async fn deferred_answers_timeouts_and_slow_handlers() {
    let queued = Arc::new(Mutex::new(Vec::new()));
    let handlers = Handlers::new()
        .method_handler("later", None, Arc::new(Deferred(Arc::clone(&queued))))
        .method("slow", |_request| async move {
            tokio::time::sleep(Duration::from_millis(3000)).await;
            Ok(json!("slow done"))
        })
        .method("boom", |request| async move {
            if request.params.is_null() {
                // Unwinds like a panic, without the panic hook: printing a backtrace of a debug
                // build can take longer than the 1 s request timeout on a loaded machine.
                std::panic::resume_unwind(Box::new("handler bug"));
            }
            Ok(Value::Null)
        })
        .method("fails", |_request| async move {
            Err(MethodError::new("HOST_ERROR", "it failed")
                .with_details(json!({"code": "X", "n": 1})))
        });
    let protocol = ProtocolOptions {
        // Long enough for a panicking handler to be reported (a backtrace under load takes a
        // while), short beside the slow method.
        request_timeout: Duration::from_millis(1000),
        ..ProtocolOptions::default()
    };
    let server = TestGateway::start(Auth::None, protocol, handlers);
    // Registered without a scope and unknown to OpenClaw, these methods need operator.admin.
    let (mut client, _) = Client::connected(server.port, with_scopes(&["operator.admin"])).await;

    client
        .send(json!({"type": "req", "id": "l1", "method": "later", "params": {"x": 1}}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let request_id = loop {
        if let Some(id) = queued.lock().unwrap().first().copied() {
            break id;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let handle = server.gateway().handle().clone();
    let answered =
        std::thread::spawn(move || handle.respond(request_id, Ok(json!({"answered": "later"}))))
            .join()
            .unwrap();
    assert!(answered);
    let res = client.recv_skip_ticks().await;
    assert_eq!(
        (&res["id"], &res["payload"]),
        (&json!("l1"), &json!({"answered": "later"}))
    );
    assert!(
        !server.gateway().handle().respond(request_id, Ok(json!(2))),
        "answered twice"
    );

    let res = client.call("l2", "later", json!("drop")).await;
    assert_eq!(res["error"]["code"], "UNAVAILABLE", "{res}");
    assert_eq!(res["error"]["retryable"], true);

    // A slow method on one connection holds up neither that connection nor another one.
    client
        .send(json!({"type": "req", "id": "s1", "method": "slow"}))
        .await;
    let (mut other, _) = Client::connected(server.port, connect_params()).await;
    let started = Instant::now();
    assert_eq!(other.call("o", "health", Value::Null).await["ok"], true);
    assert_eq!(client.call("h", "health", Value::Null).await["id"], "h");
    // Held up, they would take the slow method's 3 s; the bound leaves room for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(2));
    // The slow one still times out (1 s) rather than waiting 3 s.
    let res = client.recv_skip_ticks().await;
    assert_eq!(
        (&res["id"], &res["error"]["code"]),
        (&json!("s1"), &json!("UNAVAILABLE"))
    );

    let res = client.call("b", "boom", Value::Null).await;
    assert_error(&res, "b", "UNAVAILABLE", "the method handler failed", None);
    let res = client.call("f", "fails", Value::Null).await;
    assert_error(&res, "f", "HOST_ERROR", "it failed", Some("X"));
    assert_eq!(res["error"]["details"]["n"], 1);
}

#[tokio::test]
async fn a_dead_peer_is_dropped_by_the_keepalive() {
    let protocol = ProtocolOptions {
        ping_interval: Duration::from_millis(100),
        ..ProtocolOptions::default()
    };
    let server = TestGateway::start(Auth::None, protocol, Handlers::new());
    let (mut live, _) = Client::connected(server.port, connect_params()).await;
    // A client that completed the handshake and then stopped reading (so it never pongs).
    let (dead, _) = Client::connected(server.port, connect_params()).await;
    assert_eq!(server.gateway().handle().connection_count(), 2);
    let live_task = tokio::spawn(async move {
        // Reading answers the pings.
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(800) {
            let _ = tokio::time::timeout(Duration::from_millis(50), live.ws.next()).await;
        }
        live
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.gateway().handle().connection_count() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.gateway().handle().connection_count(),
        1,
        "the dead peer is gone, the live one stays"
    );
    let mut live = live_task.await.unwrap();
    assert_eq!(live.call("h", "health", Value::Null).await["ok"], true);
    drop(dead);
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_with_1013() {
    let protocol = ProtocolOptions {
        max_connections: 2,
        ..ProtocolOptions::default()
    };
    let server = TestGateway::start(Auth::None, protocol, Handlers::new());
    let (_a, _) = Client::connected(server.port, connect_params()).await;
    let (_b, _) = Client::connected(server.port, connect_params()).await;
    let mut c = Client::open(server.port).await;
    assert_eq!(c.closed().await, (1013, "too many connections".into()));
    drop(_a);
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.gateway().handle().connection_count() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Client::connected(server.port, connect_params()).await;
}

#[tokio::test]
async fn shutdown_sends_the_event_then_1012() {
    let mut server = TestGateway::simple();
    let (mut client, _) = Client::connected(server.port, connect_params()).await;
    let mut unauthenticated = Client::open(server.port).await;
    unauthenticated.challenge().await;
    let gateway = server.gateway.take().unwrap();
    let shutdown = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let report = gateway.shutdown(Duration::from_secs(5));
        (started.elapsed(), report)
    });
    let event = client.recv_skip_ticks().await;
    assert_eq!(
        (&event["type"], &event["event"]),
        (&json!("event"), &json!("shutdown"))
    );
    assert_eq!(event["payload"]["reason"], "gateway stopping");
    assert_eq!(client.closed().await, (1012, "service restart".into()));
    assert_eq!(
        unauthenticated.closed().await,
        (1012, "service restart".into())
    );
    let (elapsed, report) = shutdown.await.unwrap();
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(report.drained);
    // The port is free at once.
    assert!(std::net::TcpListener::bind(("127.0.0.1", server.port)).is_ok());
}

#[tokio::test]
async fn plain_http_at_the_root_is_told_to_upgrade() {
    let server = TestGateway::simple();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 426 "), "{response}");
    assert!(response.to_ascii_lowercase().contains("upgrade: websocket"));
}

/// SPEC §13.2: the gateway protocol answers an upgrade at any path OpenClaw does not reserve (a
/// client under a base path reaches it), and the reserved ones get Node's answers for a feature
/// this core does not have.
#[tokio::test]
async fn upgrades_are_served_at_any_path_but_the_reserved_ones() {
    let server = TestGateway::start(Auth::None, ProtocolOptions::default(), Handlers::new());
    for path in ["/openclaw", "/ui/base/ws", "/healthz"] {
        let url = format!("ws://127.0.0.1:{}{path}", server.port);
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("upgraded");
        let mut client = Client { ws };
        let res = client.connect_with(connect_params()).await;
        assert_eq!(res["ok"], true, "{path}: {res}");
    }
    for (path, status, body) in [
        (
            "/__openclaw__/worker",
            503,
            "Worker websocket ingress unavailable",
        ),
        ("/__openclaw__/worker/x", 404, "Not Found"),
        ("/desktop/observe", 503, "Service Unavailable"),
        ("/node-portal/attach", 503, "Service Unavailable"),
    ] {
        let url = format!("ws://127.0.0.1:{}{path}", server.port);
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), status, "{path}");
                let text = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
                assert_eq!(text, body, "{path}");
            }
            other => panic!("{path}: expected {status}, got {other:?}"),
        }
    }
}
