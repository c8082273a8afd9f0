//! SPEC §12.6–12.8 with real WebSocket clients against an in-process gateway: presence rows,
//! `presence` and `health` events with their `stateVersion`, `system-presence`, the health
//! refresh, and the `hello-ok` fields only some callers see.
//!
//! The clients are chosen to be let in the same way once device identity (SPEC §11.4) is
//! enforced: the readers are the local CLI (`cli`/`cli` with the token, which keeps its scopes)
//! and the tracked clients are device-less apps with the token (whose scopes are cleared, so
//! they ask for none).

mod common;
mod wsclient;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gateway::{Auth, Handlers, HealthSource, ProtocolOptions};
use serde_json::{Value, json};
use wsclient::{Client, DeviceKey, TestGateway, assert_error};

const TOKEN: &str = "presence-test-token";

fn token_gateway(protocol: ProtocolOptions) -> TestGateway {
    TestGateway::start(Auth::Token(TOKEN.into()), protocol, Handlers::new())
}

/// The local CLI with the token, asking for `scopes`.
fn cli(scopes: &[&str]) -> Value {
    json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": "2026.9.6", "platform": "linux", "mode": "cli"},
        "auth": {"token": TOKEN},
        "scopes": scopes,
    })
}

/// A device-less desktop app with the token: tracked by presence, reading nothing.
fn app(name: &str) -> Value {
    json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "openclaw-linux", "displayName": name, "version": "2026.9.6",
                   "platform": "linux 6.12", "mode": "ui", "instanceId": format!("Inst-{name}")},
        "auth": {"token": TOKEN},
    })
}

/// The next event named `event`, skipping ticks and `health` events (unless asked for).
async fn next_event(client: &mut Client, event: &str) -> Value {
    loop {
        let frame = client.recv_skip_ticks().await;
        if frame["type"] == "event" && frame["event"] == event {
            return frame;
        }
        assert_eq!(frame["event"], "health", "unexpected frame: {frame}");
    }
}

fn row<'a>(list: &'a Value, host: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|row| row["host"] == host)
}

fn own_row(list: &Value) -> &Value {
    let rows = list.as_array().expect("presence is an array");
    rows.iter()
        .find(|row| row["mode"] == "gateway" && row["reason"] == "self")
        .unwrap_or_else(|| panic!("no self row in {list}"))
}

#[tokio::test]
async fn presence_events_count_up_on_each_connect_and_disconnect() {
    let server = token_gateway(ProtocolOptions::default());
    let (mut watcher, hello) = Client::connected(server.port, cli(&["operator.read"])).await;
    let first = hello["snapshot"]["stateVersion"]["presence"]
        .as_u64()
        .unwrap();
    assert_eq!(first, 1, "counters start at 1: {hello}");
    // The CLI is ephemeral: its own connect is no presence change.
    assert_eq!(hello["snapshot"]["presence"].as_array().unwrap().len(), 1);

    let (mut ada, ada_hello) = Client::connected(server.port, app("ada")).await;
    // Ada reads nothing: hello-ok shows her no rows (SPEC §12.6 projection).
    assert_eq!(ada_hello["snapshot"]["presence"], json!([]));
    let event = next_event(&mut watcher, "presence").await;
    assert_eq!(event["stateVersion"]["presence"], first + 1, "{event}");
    assert!(event["stateVersion"]["health"].is_u64(), "{event}");
    assert!(event["seq"].is_u64(), "{event}");
    let list = &event["payload"]["presence"];
    let ada_row = row(list, "ada").unwrap_or_else(|| panic!("no row for ada: {list}"));
    assert_eq!(ada_row["reason"], "connect");
    assert_eq!(ada_row["clientId"], "openclaw-linux");
    assert_eq!(ada_row["mode"], "ui");
    assert_eq!(ada_row["instanceId"], "Inst-ada");
    assert_eq!(ada_row["roles"], json!(["operator"]));
    assert!(
        ada_row.get("ip").is_none(),
        "a loopback client has no ip: {ada_row}"
    );
    assert_eq!(ada_row["text"], "Node: ada · mode ui");

    let (bob, _) = Client::connected(server.port, app("bob")).await;
    let event = next_event(&mut watcher, "presence").await;
    assert_eq!(event["stateVersion"]["presence"], first + 2, "{event}");
    assert!(row(&event["payload"]["presence"], "bob").is_some());

    drop(bob);
    let event = next_event(&mut watcher, "presence").await;
    assert_eq!(event["stateVersion"]["presence"], first + 3, "{event}");
    let bob_row = row(&event["payload"]["presence"], "bob").expect("bob's row stays");
    assert_eq!(bob_row["reason"], "disconnect");
    assert_eq!(
        row(&event["payload"]["presence"], "ada").unwrap()["reason"],
        "connect"
    );

    // An ephemeral client comes and goes without a presence event: the next frame the
    // watcher gets is the answer to its own request.
    let (probe, _) = Client::connected(server.port, cli(&["operator.read"])).await;
    drop(probe);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let res = watcher.call("p", "system-presence", Value::Null).await;
    assert_eq!(
        (&res["id"], &res["ok"]),
        (&json!("p"), &json!(true)),
        "{res}"
    );
    // Ada got no presence event at all: the next frame she gets is her own answer.
    let res = ada.call("h", "health", Value::Null).await;
    assert_eq!(
        (&res["id"], &res["ok"]),
        (&json!("h"), &json!(true)),
        "{res}"
    );

    // The host reads the same rows.
    let rows = server.gateway().handle().presence();
    assert!(
        rows.iter()
            .any(|r| r["host"] == "ada" && r["reason"] == "connect")
    );
    assert!(
        rows.iter()
            .any(|r| r["host"] == "bob" && r["reason"] == "disconnect")
    );
    let ts: Vec<u64> = rows.iter().map(|r| r["ts"].as_u64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "newest first: {ts:?}");
}

#[tokio::test]
async fn hello_snapshot_presence_holds_the_gateway_and_the_connecting_client() {
    let protocol = ProtocolOptions {
        server_version: "2026.9.6".into(),
        ..ProtocolOptions::default()
    };
    let server = TestGateway::start(Auth::None, protocol, Handlers::new());
    // With auth none an app signs in with a device identity, paired silently on loopback
    // (SPEC §11.4–11.5); this one is tracked and reads.
    let mut params = app("eve");
    params["scopes"] = json!(["operator.read"]);
    params.as_object_mut().unwrap().remove("auth");
    let mut eve = Client::open(server.port).await;
    let res = eve.connect_signed(&DeviceKey::random(), params).await;
    assert_eq!(res["ok"], true, "{res}");
    let list = &res["payload"]["snapshot"]["presence"];
    assert!(
        row(list, "eve").is_some(),
        "the connecting client's own row: {list}"
    );
    let own = own_row(list);
    assert_eq!(own["version"], "2026.9.6");
    assert!(
        own["text"].as_str().unwrap().starts_with("Gateway: "),
        "{own}"
    );
    for field in ["host", "ip", "platform", "deviceFamily", "instanceId"] {
        assert!(
            own[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}: {own}"
        );
    }
}

#[tokio::test]
async fn system_presence_is_the_array_for_readers_and_refused_to_others() {
    let server = token_gateway(ProtocolOptions::default());
    let (_ada, _) = Client::connected(server.port, app("ada")).await;
    let (mut reader, _) = Client::connected(server.port, cli(&["operator.read"])).await;
    let res = reader.call("sp", "system-presence", json!({})).await;
    assert_eq!(res["ok"], true, "{res}");
    let list = &res["payload"];
    assert!(list.is_array(), "the payload is the array itself: {res}");
    own_row(list);
    assert!(row(list, "ada").is_some(), "{list}");

    let (mut blind, _) = Client::connected(server.port, cli(&[])).await;
    let res = blind.call("sp", "system-presence", json!({})).await;
    assert_error(
        &res,
        "sp",
        "FORBIDDEN",
        "missing scope: operator.read",
        Some("MISSING_SCOPE"),
    );
}

#[tokio::test]
async fn a_pong_keeps_a_row_fresh() {
    let protocol = ProtocolOptions {
        ping_interval: Duration::from_millis(100),
        ..ProtocolOptions::default()
    };
    let server = token_gateway(protocol);
    let (mut ada, _) = Client::connected(server.port, app("ada")).await;
    let ts = |rows: Vec<Value>| {
        rows.iter()
            .find(|r| r["host"] == "ada")
            .map(|r| r["ts"].as_u64().unwrap())
            .unwrap()
    };
    let handle = server.gateway().handle().clone();
    let before = ts(handle.presence());
    // Reading answers the gateway's pings; each pong touches the row.
    let _ = tokio::time::timeout(Duration::from_millis(400), async {
        loop {
            ada.next().await;
        }
    })
    .await;
    let after = ts(handle.presence());
    assert!(after > before, "ts {before} → {after}");
    assert_eq!(
        handle
            .presence()
            .iter()
            .find(|r| r["host"] == "ada")
            .unwrap()["reason"],
        "connect"
    );
}

/// Protocol options whose health source counts its calls and reports the count as `refresh`,
/// refreshed every `interval`; the count.
fn counted_health(interval: Duration) -> (Arc<AtomicU64>, ProtocolOptions) {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    let protocol = ProtocolOptions {
        health_refresh_interval: interval,
        health_source: Some(HealthSource::new(move || {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            Some(json!({"ok": true, "ts": n, "durationMs": 1, "refresh": n}))
        })),
        ..ProtocolOptions::default()
    };
    (calls, protocol)
}

#[tokio::test]
async fn health_is_refreshed_on_its_interval_with_rising_state_versions() {
    let (calls, protocol) = counted_health(Duration::from_millis(150));
    let server = token_gateway(protocol);
    assert!(calls.load(Ordering::SeqCst) >= 1, "one refresh at start");
    let (mut node, hello) = Client::connected(server.port, cli(&[])).await;
    let at_hello = hello["snapshot"]["stateVersion"]["health"]
        .as_u64()
        .unwrap();
    assert!(at_hello >= 2, "{hello}");
    assert!(hello["snapshot"]["health"]["refresh"].is_u64(), "{hello}");
    let mut last = at_hello;
    for _ in 0..3 {
        // Health needs no scope: a caller holding none gets the events too.
        let event = next_event(&mut node, "health").await;
        let version = event["stateVersion"]["health"].as_u64().unwrap();
        assert!(version > last, "{version} after {last}: {event}");
        assert!(event["payload"]["refresh"].is_u64(), "{event}");
        assert!(event["stateVersion"]["presence"].is_u64(), "{event}");
        last = version;
    }
    // A fresh cache answers `health`.
    let res = node.call("h", "health", Value::Null).await;
    assert!(res["payload"]["refresh"].is_u64(), "{res}");
    // `set_health` still works, and counts as a refresh.
    server
        .gateway()
        .handle()
        .set_health(json!({"ok": false, "from": "host"}));
    loop {
        let event = next_event(&mut node, "health").await;
        if event["payload"]["from"] == "host" {
            assert!(event["stateVersion"]["health"].as_u64().unwrap() > last);
            break;
        }
    }
}

#[tokio::test]
async fn a_health_probe_refreshes_a_fresh_cache() {
    // Long enough that nothing but the probe refreshes during the test.
    let (calls, protocol) = counted_health(Duration::from_secs(600));
    let server = token_gateway(protocol);
    let (mut reader, _) = Client::connected(server.port, cli(&[])).await;
    // The refresh at start, and the one a connect may start in the background: wait for it.
    let settled = loop {
        let before = calls.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        if calls.load(Ordering::SeqCst) == before {
            break before;
        }
    };
    let answer = |frame: Value| {
        assert_eq!(frame["type"], "res", "{frame}");
        frame["payload"]["refresh"].as_u64().unwrap()
    };
    let call = |id: &'static str, params: Value| json!({"type": "req", "id": id, "method": "health", "params": params});
    async fn res(client: &mut Client) -> Value {
        loop {
            let frame = client.recv_skip_ticks().await;
            if frame["type"] == "res" {
                return frame;
            }
        }
    }
    // A fresh cache answers a plain call and `probe:false`.
    reader.send(call("h1", Value::Null)).await;
    assert_eq!(answer(res(&mut reader).await), settled);
    reader.send(call("h2", json!({"probe": false}))).await;
    assert_eq!(answer(res(&mut reader).await), settled);
    assert_eq!(calls.load(Ordering::SeqCst), settled);
    // `probe:true` asks the source again (`health-CfpMy4ft.mjs:70,79,91-94`), and the refresh
    // is committed: a `health` event with the next version, then the answer.
    reader.send(call("h3", json!({"probe": true}))).await;
    let event = next_event(&mut reader, "health").await;
    assert_eq!(event["payload"]["refresh"], settled + 1, "{event}");
    assert_eq!(answer(res(&mut reader).await), settled + 1);
    assert_eq!(calls.load(Ordering::SeqCst), settled + 1);
    // And the refreshed snapshot is the cache from then on.
    reader.send(call("h4", Value::Null)).await;
    assert_eq!(answer(res(&mut reader).await), settled + 1);
}

#[tokio::test]
async fn hello_ok_fields_and_challenge_capabilities_as_set() {
    let protocol = ProtocolOptions {
        server_version: "2026.9.6".into(),
        build_id: Some("2026.9.6-test-build".into()),
        capabilities: vec!["session-settings-contract".into()],
        challenge_capabilities: vec!["model-catalog-snapshot".into()],
        ..ProtocolOptions::default()
    };
    let server = token_gateway(protocol);
    let mut admin = Client::open(server.port).await;
    let challenge = admin.challenge().await;
    assert_eq!(
        challenge["payload"]["capabilities"],
        json!(["model-catalog-snapshot"])
    );
    admin
        .send(json!({"type": "req", "id": "c1", "method": "connect",
                     "params": cli(&["operator.admin"])}))
        .await;
    let hello = admin.recv().await["payload"].clone();
    let server_block = &hello["server"];
    assert_eq!(server_block["version"], "2026.9.6");
    assert_eq!(server_block["buildId"], "2026.9.6-test-build");
    let boot_id = server_block["bootId"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(boot_id).is_ok(), "{hello}");
    assert_eq!(
        hello["features"]["capabilities"],
        json!(["session-settings-contract"])
    );
    let snapshot = &hello["snapshot"];
    assert_eq!(snapshot["authMode"], "token");
    let lock = server.gateway().lock().unwrap().resolved();
    assert_eq!(
        snapshot["configPath"],
        lock.config_path.display().to_string()
    );
    assert_eq!(snapshot["stateDir"], lock.state_dir.display().to_string());

    let (_reader, hello) = Client::connected(server.port, cli(&["operator.read"])).await;
    assert_eq!(
        hello["server"]["bootId"], boot_id,
        "one boot id per gateway"
    );
    for field in ["configPath", "stateDir", "authMode"] {
        assert!(
            hello["snapshot"].get(field).is_none(),
            "{field} shown to a non-admin: {hello}"
        );
    }
}

#[tokio::test]
async fn by_default_the_challenge_and_hello_promise_no_capability() {
    let server = token_gateway(ProtocolOptions::default());
    let mut client = Client::open(server.port).await;
    assert_eq!(
        client.challenge().await["payload"]["capabilities"],
        json!([])
    );
    let (_c, hello) = Client::connected(server.port, cli(&[])).await;
    assert_eq!(hello["features"]["capabilities"], json!([]));
    assert!(hello["server"].get("buildId").is_none(), "{hello}");
}

/// `gateway run` as a process: its version in `hello-ok`, and the four reads of
/// `openclaw gateway probe` (SPEC §12.9) answered for a caller holding `operator.read`.
#[tokio::test]
async fn gateway_run_answers_the_probe_reads() {
    let env = common::TestEnv::new();
    let port = common::free_port().to_string();
    let process = env.start(&["--port", &port, "--auth", "token", "--token", TOKEN]);
    let port: u16 = port.parse().unwrap();
    let (mut client, hello) = Client::connected(port, cli(&["operator.read"])).await;
    assert_eq!(hello["server"]["version"], env!("CARGO_PKG_VERSION"));
    let methods = hello["features"]["methods"].as_array().unwrap();
    for method in ["health", "status", "system-presence", "config.get"] {
        assert!(methods.iter().any(|m| m == method), "{method}: {methods:?}");
        let res = client.call(method, method, json!({})).await;
        assert_eq!(res["ok"], true, "{method}: {res}");
    }
    let presence = client.call("p", "system-presence", json!({})).await;
    assert_eq!(
        own_row(&presence["payload"])["version"],
        env!("CARGO_PKG_VERSION")
    );
    let config = client.call("c", "config.get", json!({})).await["payload"].clone();
    assert_eq!(config["path"], env.config_path().display().to_string());
    assert_eq!(
        (&config["exists"], &config["valid"]),
        (&json!(false), &json!(true))
    );
    assert_eq!(
        config["config"]["gateway"],
        json!({"mode": "local", "bind": "loopback", "port": port,
               "auth": {"mode": "token", "token": "__OPENCLAW_REDACTED__"},
               "controlUi": {"enabled": false}})
    );
    assert!(
        !config.to_string().contains(TOKEN),
        "the token is never echoed: {config}"
    );
    let status = client.call("s", "status", json!({})).await["payload"].clone();
    assert_eq!(status["gateway"]["port"], port);
    assert_eq!(status["gateway"]["authMode"], "token");
    drop(client);
    process.terminate();

    let port = common::free_port().to_string();
    let process = env.start(&[
        "--port",
        &port,
        "--auth",
        "token",
        "--token",
        TOKEN,
        "--server-version",
        "2026.9.6",
    ]);
    let (_client, hello) = Client::connected(port.parse().unwrap(), cli(&[])).await;
    assert_eq!(hello["server"]["version"], "2026.9.6");
    process.terminate();
}

#[test]
fn serve_options_refuse_what_clients_would_not_take() {
    let with = |change: fn(&mut ProtocolOptions)| {
        let mut options = gateway::ServeOptions::default();
        change(&mut options.protocol);
        options.validate().err().map(|err| err.to_string())
    };
    type Change = fn(&mut ProtocolOptions);
    let cases: &[(Change, Option<&str>)] = &[
        (|p| p.build_id = Some("b".repeat(96)), None),
        (
            |p| p.build_id = Some("b".repeat(97)),
            Some("build_id is 97 characters long: OpenClaw clients accept at most 96"),
        ),
        (
            |p| p.capabilities = vec!["a".into(), String::new()],
            Some("capabilities has an empty entry: name each capability, or leave it out"),
        ),
        (
            |p| p.challenge_capabilities = vec![String::new()],
            Some(
                "challenge_capabilities has an empty entry: name each capability, or leave it out",
            ),
        ),
        (
            |p| p.health_refresh_interval = Duration::ZERO,
            Some(
                "health_refresh_interval is 0: give it a value of at least 1 (or leave the default)",
            ),
        ),
    ];
    for (change, refusal) in cases {
        let got = with(*change);
        match refusal {
            None => assert_eq!(got, None),
            Some(message) => assert!(
                got.as_deref().is_some_and(|m| m.ends_with(message)),
                "{got:?} should end with {message:?}"
            ),
        }
    }
}
