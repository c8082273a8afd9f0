//! Roles and scopes over real sockets (SPEC §12.2, 12.5, 12.7): what a node host and operators
//! with fewer scopes may call, what they are answered, which broadcasts reach them, and the flood
//! guard. The rules case by case are the table tests of `src/server/scopes/tests.rs`.

mod common;
mod wsclient;

use std::future::Ready;
use std::sync::{Arc, Mutex};

use gateway::{Auth, Handlers, MethodError, MethodRequest, ProtocolOptions};
use serde_json::{Value, json};
use wsclient::{Client, DeviceKey, TestGateway, assert_error, connect_params};

/// A connection through the handshake with `role` and `scopes` (auth mode none): an operator
/// as a local backend (which keeps the scopes it asks for, SPEC §11.4), a node as OpenClaw's
/// node host with a device identity, paired silently on loopback and given its device token in
/// this handshake (SPEC §12.1).
async fn connect_as(server: &TestGateway, role: &str, scopes: &[&str]) -> (Client, Value) {
    let mut params = connect_params();
    params["role"] = json!(role);
    params["scopes"] = json!(scopes);
    if role != "node" {
        return Client::connected(server.port, params).await;
    }
    params["client"]["id"] = json!("node-host");
    params["client"]["mode"] = json!("node");
    let mut client = Client::open(server.port).await;
    let res = client.connect_signed(&DeviceKey::random(), params).await;
    assert_eq!(res["ok"], true, "{res}");
    (client, res["payload"].clone())
}

/// The methods `openclaw node run` publishes after `hello-ok` (SSM:233-248, 350-370).
const NODE_PUBLICATIONS: [&str; 4] = [
    "node.skills.update",
    "node.pluginTools.update",
    "node.runnerInventory.update",
    "node.event",
];

/// A method that answers with its name.
fn named(name: &'static str) -> impl Fn(MethodRequest) -> Ready<Result<Value, MethodError>> {
    move |_request| std::future::ready(Ok(json!(name)))
}

/// A host with one method of each kind: OpenClaw's `status` and `node.pending.pull` registered
/// without a scope (so by OpenClaw's table: `operator.read`, node only), a node method of its own,
/// and a method of its own without a scope (so `operator.admin`). Each answers with its name.
fn host() -> Handlers {
    Handlers::new()
        .method("status", named("status"))
        .method("node.pending.pull", named("node.pending.pull"))
        .method_with_scope(
            "host.node.report",
            Handlers::NODE_ONLY,
            named("host.node.report"),
        )
        .method("host.reset", named("host.reset"))
        .event("demo.tick")
        .event_with_scope("demo.pairing", "operator.pairing")
}

/// `res` (to the request `id`) refuses a node's call by its role, as OpenClaw does.
fn assert_unauthorized_node(res: &Value, id: &str) {
    assert_error(res, id, "INVALID_REQUEST", "unauthorized role: node", None);
}

/// The server closes `client` for its run of unauthorized calls.
async fn assert_closed_by_the_flood_guard(client: &mut Client) {
    assert_eq!(
        client.closed().await,
        (1008, "repeated unauthorized calls".into())
    );
}

#[tokio::test]
async fn a_node_may_call_node_methods_only_and_is_told_so_as_node_tells_it() {
    let server = TestGateway::start(Auth::None, ProtocolOptions::default(), host());
    let (mut node, hello) = connect_as(&server, "node", &[]).await;
    assert_eq!(hello["auth"]["role"], "node");

    // Operator methods, registered or not, known to OpenClaw or not: the caller's role is wrong.
    for method in ["status", "host.reset", "no.such.method", "config.get"] {
        let res = node.call("r", method, json!({})).await;
        assert_unauthorized_node(&res, "r");
    }
    // Node methods: no scope needed.
    for method in ["node.pending.pull", "host.node.report"] {
        let res = node.call("n", method, json!({})).await;
        assert_eq!(
            (&res["ok"], &res["payload"]),
            (&json!(true), &json!(method))
        );
    }
    // The node host's publications the host did not register: `unknown method`, the answer
    // that makes `openclaw node run` stop publishing them.
    for method in NODE_PUBLICATIONS {
        let res = node.call("p", method, json!({})).await;
        let message = format!("unknown method: {method}");
        assert_error(&res, "p", "INVALID_REQUEST", &message, None);
    }
    assert_eq!(node.call("h", "health", Value::Null).await["ok"], true);

    // And an operator, even an admin, may not call node methods.
    let (mut admin, _) = connect_as(&server, "operator", &["operator.admin"]).await;
    for method in ["node.pending.pull", "host.node.report", "node.event"] {
        let res = admin.call("o", method, json!({})).await;
        assert_error(
            &res,
            "o",
            "INVALID_REQUEST",
            "unauthorized role: operator",
            None,
        );
    }
    let res = admin.call("a", "host.reset", json!({})).await;
    assert_eq!(res["payload"], "host.reset");
}

#[tokio::test]
async fn an_operator_needs_the_scope_openclaw_gives_a_method() {
    let server = TestGateway::start(Auth::None, ProtocolOptions::default(), host());
    let (mut reader, _) = connect_as(&server, "operator", &["operator.read"]).await;
    assert_eq!(
        reader.call("s", "status", json!({})).await["payload"],
        "status"
    );
    // Registered without a scope and not OpenClaw's: operator.admin.
    let res = reader.call("r", "host.reset", json!({})).await;
    assert_error(
        &res,
        "r",
        "FORBIDDEN",
        "missing scope: operator.admin",
        Some("MISSING_SCOPE"),
    );
    // A method nobody registered still tells a non-admin nothing about which methods exist.
    let res = reader.call("u", "no.such.method", json!({})).await;
    assert_error(
        &res,
        "u",
        "FORBIDDEN",
        "missing scope: operator.admin",
        Some("MISSING_SCOPE"),
    );
    // A params-dependent method names every scope it needs for these params.
    let res = reader
        .call("t", "talk.config", json!({"includeSecrets": true}))
        .await;
    assert_error(
        &res,
        "t",
        "FORBIDDEN",
        "missing scope: operator.talk.secrets",
        Some("MISSING_SCOPE"),
    );
    assert_eq!(
        res["error"]["details"]["requiredScopes"],
        json!(["operator.read", "operator.talk.secrets"])
    );
    // With the scope it needs, an unregistered method is unknown.
    let res = reader.call("t2", "talk.config", json!({})).await;
    assert_error(
        &res,
        "t2",
        "INVALID_REQUEST",
        "unknown method: talk.config",
        None,
    );
    // Without any scope, even OpenClaw's read methods are refused.
    let (mut bare, _) = connect_as(&server, "operator", &[]).await;
    let res = bare.call("s", "status", json!({})).await;
    assert_error(
        &res,
        "s",
        "FORBIDDEN",
        "missing scope: operator.read",
        Some("MISSING_SCOPE"),
    );
}

/// What [`events_until_health`] calls a `presence` event of the core's, not the test's.
const CORE_PRESENCE: &str = "presence (core)";

/// The events a client gets until (and with) the next `health` broadcast, which every client
/// gets: what it got of the broadcasts before it.
async fn events_until_health(client: &mut Client) -> Vec<(String, u64)> {
    let mut got = Vec::new();
    loop {
        let frame = client.recv().await;
        let mut event = frame["event"].as_str().expect("an event").to_owned();
        let seq = frame["seq"].as_u64().expect("a broadcast has a seq");
        // The core's own presence broadcast for a client that connected just before (sent
        // after that client's `hello-ok`, so it may land among the test's broadcasts): kept
        // for the seq count, told apart from the test's `{"presence": []}` by its rows.
        if event == "presence"
            && frame["payload"]["presence"]
                .as_array()
                .is_some_and(|rows| !rows.is_empty())
        {
            event = CORE_PRESENCE.to_owned();
        }
        let health = event == "health";
        got.push((event, seq));
        if health {
            return got;
        }
    }
}

#[tokio::test]
async fn each_broadcast_reaches_only_the_clients_its_event_admits_with_their_own_seq() {
    let server = TestGateway::start(Auth::None, ProtocolOptions::default(), host());
    let (mut node, _) = connect_as(&server, "node", &[]).await;
    let (mut bare, _) = connect_as(&server, "operator", &[]).await;
    let (mut reader, _) = connect_as(&server, "operator", &["operator.read"]).await;
    let (mut pairer, _) = connect_as(&server, "operator", &["operator.pairing"]).await;

    let handle = server.gateway().handle();
    handle.broadcast("presence", &json!({"presence": []}));
    handle.broadcast("demo.tick", &json!({"n": 1}));
    handle.broadcast("demo.pairing", &json!({"n": 2}));
    handle.broadcast("device.pair.requested", &json!({"requestId": "r"}));
    handle.broadcast("plugin.news", &json!({}));
    // Neither registered nor OpenClaw's: nobody.
    handle.broadcast("made.up", &json!({}));
    handle.broadcast("heartbeat", &json!({}));
    handle.set_health(json!({"ok": true, "ts": 1, "durationMs": 0}));

    let names = |got: &[(String, u64)]| {
        got.iter()
            .filter(|(e, _)| e != CORE_PRESENCE)
            .map(|(e, _)| e.clone())
            .collect::<Vec<_>>()
    };
    let node_got = events_until_health(&mut node).await;
    assert_eq!(names(&node_got), ["heartbeat", "health"]);
    let bare_got = events_until_health(&mut bare).await;
    assert_eq!(names(&bare_got), ["heartbeat", "health"]);
    let reader_got = events_until_health(&mut reader).await;
    assert_eq!(
        names(&reader_got),
        ["presence", "demo.tick", "heartbeat", "health"]
    );
    let pairer_got = events_until_health(&mut pairer).await;
    assert_eq!(
        names(&pairer_got),
        [
            "demo.pairing",
            "device.pair.requested",
            "heartbeat",
            "health"
        ]
    );
    // Each client's seq counts what it got: 1, 2, 3, … without gaps.
    for got in [&node_got, &bare_got, &reader_got, &pairer_got] {
        let seqs: Vec<u64> = got.iter().map(|(_, seq)| *seq).collect();
        let expected: Vec<u64> = (1..=got.len() as u64).collect();
        assert_eq!(seqs, expected, "{got:?}");
    }
}

#[tokio::test]
async fn the_eleventh_unauthorized_call_in_a_row_closes_the_connection() {
    let server = TestGateway::start(Auth::None, ProtocolOptions::default(), host());
    let (mut node, _) = connect_as(&server, "node", &[]).await;
    // Ten in a row, then any other answer starts the count again.
    for round in 0..2 {
        for i in 0..10 {
            let id = format!("{round}-{i}");
            let res = node.call(&id, "status", json!({})).await;
            assert_unauthorized_node(&res, &id);
        }
        assert_eq!(node.call("h", "health", Value::Null).await["ok"], true);
    }
    for i in 0..11 {
        let id = format!("last-{i}");
        let res = node.call(&id, "status", json!({})).await;
        assert_unauthorized_node(&res, &id);
    }
    assert_closed_by_the_flood_guard(&mut node).await;
}

#[tokio::test]
async fn a_second_connect_is_authorized_like_any_method() {
    let server = TestGateway::start(Auth::None, ProtocolOptions::default(), host());
    let (mut node, _) = connect_as(&server, "node", &[]).await;
    // A node's second `connect` is refused by role, and so counts in the flood guard.
    for i in 0..11 {
        let id = format!("c{i}");
        let res = node.call(&id, "connect", connect_params()).await;
        assert_unauthorized_node(&res, &id);
    }
    assert_closed_by_the_flood_guard(&mut node).await;
    let (mut reader, _) = connect_as(&server, "operator", &["operator.read"]).await;
    let res = reader.call("c", "connect", connect_params()).await;
    assert_error(
        &res,
        "c",
        "FORBIDDEN",
        "missing scope: operator.admin",
        Some("MISSING_SCOPE"),
    );
    assert_eq!(
        res["error"]["details"]["requiredScopes"],
        json!(["operator.admin"])
    );
    let (mut admin, _) = connect_as(&server, "operator", &["operator.admin"]).await;
    let res = admin.call("c", "connect", connect_params()).await;
    assert_error(
        &res,
        "c",
        "INVALID_REQUEST",
        "connect is only valid as the first request",
        None,
    );
}

/// Ten `unauthorized role` answers to `node`, each checked.
async fn ten_unauthorized(node: &mut Client, round: &str) {
    for i in 0..10 {
        let id = format!("{round}-{i}");
        let res = node.call(&id, "status", json!({})).await;
        assert_unauthorized_node(&res, &id);
    }
}

#[tokio::test]
async fn the_flood_guard_counts_answers_to_requests_whoever_gives_them() {
    let server = TestGateway::start(Auth::None, ProtocolOptions::default(), host());
    let (mut node, _) = connect_as(&server, "node", &[]).await;
    // The host's answer (through its responder) starts the count again …
    ten_unauthorized(&mut node, "a").await;
    let res = node.call("host", "host.node.report", json!({})).await;
    assert_eq!(res["payload"], "host.node.report", "{res}");
    // … the answer to a malformed frame does not: it answers no request.
    ten_unauthorized(&mut node, "b").await;
    node.send_text("{not json").await;
    let res = node.recv_skip_ticks().await;
    assert_eq!(res["ok"], false, "{res}");
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid request frame"),
        "{res}"
    );
    // So the eleventh in a row closes.
    let res = node.call("last", "status", json!({})).await;
    assert_unauthorized_node(&res, "last");
    assert_closed_by_the_flood_guard(&mut node).await;
}

#[tokio::test]
async fn a_targeted_event_passes_the_same_gate_and_takes_the_client_s_seq() {
    let server = TestGateway::start(Auth::None, ProtocolOptions::default(), host());
    let conn_id =
        |hello: &Value| -> u64 { hello["server"]["connId"].as_str().unwrap().parse().unwrap() };
    let (mut bare, bare_hello) = connect_as(&server, "operator", &[]).await;
    let (mut reader, reader_hello) = connect_as(&server, "operator", &["operator.read"]).await;
    let handle = server.gateway().handle();
    handle.broadcast("demo.tick", &json!({"n": 1}));
    // `demo.tick` needs operator.read: the host's choice of client does not widen that.
    assert!(handle.send_event(conn_id(&bare_hello), "demo.tick", &json!({"n": 2})));
    assert!(handle.send_event(conn_id(&reader_hello), "demo.tick", &json!({"n": 3})));
    // Neither registered nor OpenClaw's: nobody, even when named.
    assert!(handle.send_event(conn_id(&reader_hello), "made.up", &json!({})));
    handle.set_health(json!({"ok": true, "ts": 1, "durationMs": 0}));

    assert_eq!(
        events_until_health(&mut bare).await,
        [("health".to_owned(), 1)]
    );
    assert_eq!(
        events_until_health(&mut reader).await,
        [
            ("demo.tick".to_owned(), 1),
            ("demo.tick".to_owned(), 2),
            ("health".to_owned(), 3)
        ]
    );
    assert!(!handle.send_event(999_999, "demo.tick", &json!({})));
}

#[tokio::test]
async fn control_plane_writes_are_limited_to_thirty_a_minute() {
    let calls = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&calls);
    let handlers = Handlers::new().method("config.patch", move |_request| {
        *counted.lock().unwrap() += 1;
        async move { Ok(json!({"ok": true})) }
    });
    let server = TestGateway::start(Auth::None, ProtocolOptions::default(), handlers);
    let (mut admin, _) = connect_as(&server, "operator", &["operator.admin"]).await;
    for i in 0..30 {
        let res = admin.call(&i.to_string(), "config.patch", json!({})).await;
        assert_eq!(res["ok"], true, "{res}");
    }
    // Another connection of the same device and address shares the budget.
    let (mut again, _) = connect_as(&server, "operator", &["operator.admin"]).await;
    let res = again.call("31", "config.patch", json!({})).await;
    assert_error(
        &res,
        "31",
        "UNAVAILABLE",
        "rate limit exceeded for config.patch; retry after 60s",
        None,
    );
    assert_eq!(res["error"]["retryable"], true);
    assert_eq!(res["error"]["details"]["limit"], "30 per 60s");
    assert_eq!(*calls.lock().unwrap(), 30);
}
