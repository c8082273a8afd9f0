//! The real OpenClaw 2026.9.6 clients, run against the Node gateway and against ours (`gateway
//! run`) with the same token, one after the other, and what each client reports compared field
//! by field (issue 11, "Tests (real clients, real processes)"):
//!
//! - `openclaw gateway probe --json`: capability, degraded reason, error text;
//! - `openclaw status --json` and `--all`: whether the gateway is reachable, and why not;
//! - `openclaw node run` (a node host): paired silently on loopback, listed by
//!   `system-presence` with role `node`, given a device token, back with that token after a
//!   gateway restart, and its requests in its first minute: ours may see no more than Node does;
//! - `openclaw tui` under tmux: the screen once connected and after a `tick`, and the
//!   connection still open.
//!
//! Each client talks to its gateway through a recording tap (`common::tap`, read by
//! `sidebyside`), so the frames of both runs are read the same way: the connect answer, each
//! method's answers, the ticks, the closes, and the node host's requests, counted where they
//! pass rather than in either gateway's logs (Node's and ours log differently; the wire is the
//! same).
//!
//! Every comparison prints a table (field, Node, ours) and fails on the rows that must agree;
//! `one run` marks an answer only one run saw (its client had closed before the other's came),
//! and `info` rows are shown beside them (host business methods, versions, timings).
//! Needs Node 24, the `openclaw` package and tmux: `scripts/node-interop.sh` runs these with
//! `--ignored`. The one test that is not ignored checks the tap itself against ours.

mod common;
mod sidebyside;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::node::{ClientProcess, NodeGateway, openclaw, scrub};
use common::tap::{Direction, Seen, Tap};
use common::*;
use serde_json::{Value, json};
use sidebyside::*;

/// One Node gateway at a time: each takes seconds of both cores to start.
static SERIAL: Mutex<()> = Mutex::new(());

/// The shared token both gateways are started with and every client is given.
const TOKEN: &str = "real-clients-token";

/// How long the node host's requests are counted, from its first `hello-ok`.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Our `tick` interval in these tests (`gateway run --tick-interval-ms`); Node's is fixed at
/// 30 s. Each client reads the interval from `hello-ok.policy` and watches for twice that.
const OUR_TICK: Duration = Duration::from_secs(2);

/// How long one CLI command (probe, status, call) may take before it is killed.
const CLI_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Node,
    Ours,
}

/// A gateway under test with its token, a home of its own, and a tap in front of it.
struct Subject {
    which: Which,
    env: TestEnv,
    /// The gateway's own port (the tap's is `tap.port`).
    port: u16,
    tap: Tap,
    node: Option<NodeGateway>,
    ours: Option<GatewayProcess>,
}

impl Subject {
    fn start(which: Which) -> Self {
        let port = free_port();
        let mut subject = Self {
            which,
            env: TestEnv::new(),
            port,
            tap: Tap::start(port),
            node: None,
            ours: None,
        };
        subject.launch();
        subject
    }

    fn launch(&mut self) {
        let port = self.port.to_string();
        match self.which {
            Which::Node => {
                let auth = ["--auth", "token", "--token", TOKEN];
                self.node = Some(NodeGateway::start(&self.env, self.port, &auth));
            }
            Which::Ours => {
                let tick = OUR_TICK.as_millis().to_string();
                self.ours = Some(self.env.start(&[
                    "--port",
                    &port,
                    "--auth",
                    "token",
                    "--token",
                    TOKEN,
                    "--tick-interval-ms",
                    &tick,
                ]));
            }
        }
    }

    /// Stops the gateway (SIGTERM, waited for) and starts it again on the same port and state.
    fn restart(&mut self) {
        if let Some(node) = self.node.take() {
            node.terminate();
        }
        if let Some(ours) = self.ours.take() {
            assert_eq!(ours.terminate(), 0, "ours stops cleanly on SIGTERM");
        }
        self.launch();
    }
}

/// A fresh home for one client run (its own state dir: device identity, device tokens).
fn client_home() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("openclaw-client-")
        .tempdir()
        .unwrap()
}

/// `openclaw gateway probe --json --port <tap> --token T` from `home`.
fn probe(subject: &Subject, home: &Path, prefix: &str, observed: &mut Observed) {
    subject.tap.clear();
    let port = subject.tap.port.to_string();
    let exit = run_to_exit(
        openclaw(
            home,
            &[
                "gateway", "probe", "--json", "--port", &port, "--token", TOKEN,
            ],
        ),
        CLI_TIMEOUT,
    );
    observed.agree(format!("{prefix}exit code"), exit.code);
    let report: Value = serde_json::from_str(&exit.stdout)
        .unwrap_or_else(|err| panic!("probe --json printed no JSON ({err}): {exit}"));
    for key in ["ok", "degraded", "capability"] {
        observed.agree(format!("{prefix}{key}"), report[key].clone());
    }
    let warnings: Vec<Value> = report["warnings"]
        .as_array()
        .map(|w| w.iter().map(|w| w["code"].clone()).collect())
        .unwrap_or_default();
    observed.agree(format!("{prefix}warnings"), warnings);
    let target = report["targets"]
        .as_array()
        .and_then(|targets| {
            let url = subject.tap.url();
            targets.iter().find(|t| t["url"] == url.as_str())
        })
        .unwrap_or_else(|| panic!("the probe reports the tap's URL: {report}"));
    for key in ["ok", "rpcOk", "scopeLimited", "error", "close"] {
        observed.agree(
            format!("{prefix}connect.{key}"),
            target["connect"][key].clone(),
        );
    }
    for key in ["role", "scopes", "capability"] {
        observed.agree(format!("{prefix}auth.{key}"), target["auth"][key].clone());
    }
    for key in ["self", "config", "health", "summary", "presence"] {
        observed.agree(
            format!("{prefix}{key} read"),
            !target[key].is_null() && target[key] != json!([]),
        );
    }
    observed.info(
        format!("{prefix}server.version"),
        target["server"]["version"].clone(),
    );
    exchanges(&subject.tap.records(), observed, prefix, true);
}

/// A home whose config points `openclaw status` at the tap (status reads no `--port`, and
/// without a config file it does not look for a gateway at all: "unreachable" even against
/// Node).
fn status_home(subject: &Subject) -> tempfile::TempDir {
    let home = client_home();
    configure(home.path(), subject);
    home
}

/// Writes `home`'s config: a local gateway on the tap's port.
fn configure(home: &Path, subject: &Subject) {
    let state = home.join(".openclaw");
    std::fs::create_dir_all(&state).unwrap();
    let config = json!({"gateway": {"mode": "local", "port": subject.tap.port}});
    std::fs::write(state.join("openclaw.json"), config.to_string()).unwrap();
}

/// `openclaw status --json` and `openclaw status --all`, the token in OPENCLAW_GATEWAY_TOKEN.
fn status(subject: &Subject) -> Observed {
    let mut observed = Observed::default();
    let home = status_home(subject);
    let run = |args: &[&str]| {
        let mut command = openclaw(home.path(), args);
        command.env("OPENCLAW_GATEWAY_TOKEN", TOKEN);
        run_to_exit(command, CLI_TIMEOUT)
    };

    subject.tap.clear();
    let exit = run(&["status", "--json"]);
    observed.agree("--json exit code", exit.code);
    let report: Value = serde_json::from_str(&exit.stdout)
        .unwrap_or_else(|err| panic!("status --json printed no JSON ({err}): {exit}"));
    let gateway = &report["gateway"];
    for key in ["reachable", "error", "authWarning", "misconfigured"] {
        observed.agree(format!("--json gateway.{key}"), gateway[key].clone());
    }
    observed.info("--json gateway.self", gateway["self"].clone());
    exchanges(&subject.tap.records(), &mut observed, "--json ", false);

    subject.tap.clear();
    let exit = run(&["status", "--all"]);
    observed.agree("--all exit code", exit.code);
    let text = exit
        .stdout
        .replace(&subject.tap.url(), "<tap>")
        .replace(&subject.tap.port.to_string(), "<tap port>");
    let cell = |name: &str| {
        text.lines()
            .find_map(|line| {
                let cells: Vec<&str> = line.split('│').map(str::trim).collect();
                (cells.len() > 2 && cells[1] == name).then(|| cells[2].to_owned())
            })
            .map(|value| {
                // "reachable 13ms" → "reachable": the latency is not the gateway's answer.
                value
                    .split(" · ")
                    .map(|part| match part.split_once(' ') {
                        Some(("reachable", _)) => "reachable",
                        _ => part,
                    })
                    .collect::<Vec<_>>()
                    .join(" · ")
            })
    };
    observed.agree("--all Gateway", cell("Gateway"));
    observed.agree("--all Gateway self", cell("Gateway self"));
    let health: Option<String> = text.split_once("Gateway health:").map(|(_, rest)| {
        rest.lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" / ")
    });
    observed.agree("--all Gateway health section", health);
    let diagnosis: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(['✓', '!', '✗']))
        .map(|l| l.split_once(':').map_or(l, |(head, _)| head).to_owned())
        .collect();
    observed.info("--all diagnosis", diagnosis);
    exchanges(&subject.tap.records(), &mut observed, "--all ", false);
    observed
}

/// `openclaw gateway call system-presence --json` straight to the gateway (not through the
/// tap), as the local CLI with the token, from a fresh home: the entry for `device_id`.
fn presence_of(subject: &Subject, device_id: &str) -> (Value, Value) {
    let home = client_home();
    let port = subject.port.to_string();
    let exit = run_to_exit(
        openclaw(
            home.path(),
            &[
                "gateway",
                "call",
                "system-presence",
                "--json",
                "--port",
                &port,
                "--token",
                TOKEN,
            ],
        ),
        CLI_TIMEOUT,
    );
    let entries = match serde_json::from_str::<Value>(&exit.stdout) {
        Ok(Value::Array(entries)) => entries,
        // `--json` prints a failure as a JSON object on stdout.
        Ok(other) => {
            let error = other.get("error").cloned().unwrap_or(other);
            return (
                Value::Null,
                json!(format!("exit code {:?}: {error}", exit.code)),
            );
        }
        Err(_) => {
            let said = format!("{}\n{}", exit.stdout, exit.stderr);
            let error = said.lines().rev().find(|l| !l.trim().is_empty());
            let error = error.unwrap_or("").trim();
            return (
                Value::Null,
                json!(format!("exit code {:?}: {error}", exit.code)),
            );
        }
    };
    let entry = entries
        .iter()
        .find(|e| e["deviceId"] == device_id)
        .map_or(Value::Null, |e| {
            json!({
                "roles": e["roles"], "mode": e["mode"], "clientId": e["clientId"],
                "reason": e["reason"], "instanceId is the device id": e["instanceId"] == device_id,
            })
        });
    (entry, json!(format!("{} entries", entries.len())))
}

/// `openclaw node run` with the token: its first minute, then, after the gateway restarts,
/// once more with no token (it must come back with the device token it was given). Returns
/// what it showed and how many requests it sent in its first minute.
fn node_host(subject: &mut Subject) -> (Observed, usize) {
    let mut observed = Observed::default();
    let home = client_home();
    let port = subject.tap.port.to_string();
    let args = ["node", "run", "--host", "127.0.0.1", "--port", &port];
    let log = |n: usize| home.path().join(format!("node-host-{n}.log"));

    subject.tap.clear();
    let mut command = openclaw(home.path(), &args);
    command.env("OPENCLAW_GATEWAY_TOKEN", TOKEN);
    let mut host = ClientProcess::spawn(command, log(1));
    let (conn, hello_at, res) = first_connect_answer(&subject.tap, Duration::from_secs(90))
        .unwrap_or_else(|| panic!("the node host connects: {}", host.output()));
    let records = subject.tap.records();
    let connections = by_connection(&records);
    let connect = connect_request(&connections[&conn]).unwrap();
    let device_id = connect["params"]["device"]["id"]
        .as_str()
        .expect("the node host sends a device block")
        .to_owned();
    observed.agree("first connect", summary(&res));
    observed.agree("first connect: hello-ok.auth", hello_auth(&res));
    let issued = res["payload"]["auth"]["deviceToken"].clone();

    std::thread::sleep(Duration::from_secs(2));
    let (entry, listed) = presence_of(subject, &device_id);
    observed.agree("system-presence entry for its device", entry);
    observed.info("system-presence", listed);

    let end = hello_at + RATE_WINDOW;
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    observed.agree("still running after a minute", host.running());
    let records = subject.tap.records();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, at, message) in subject.tap.messages(Direction::Up) {
        if message["type"] == "req" && message["method"] != "connect" && at <= end {
            *counts
                .entry(message["method"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
    }
    let requests = counts.values().sum();
    observed.info("requests in its first minute, by method", json!(counts));
    observed.info(
        "connections in its first minute",
        by_connection(&records).len(),
    );
    exchanges(&records, &mut observed, "minute 1: ", false);
    host.stop();

    subject.restart();
    subject.tap.clear();
    let mut host = ClientProcess::spawn(openclaw(home.path(), &args), log(2));
    let (conn, _, res) = first_connect_answer(&subject.tap, Duration::from_secs(90))
        .unwrap_or_else(|| panic!("the node host reconnects: {}", host.output()));
    let connect = connect_request(&by_connection(&subject.tap.records())[&conn]).unwrap();
    let auth = &connect["params"]["auth"];
    let sent: Vec<&String> = auth
        .as_object()
        .map(|a| a.keys().collect())
        .unwrap_or_default();
    observed.agree("after restart, no token: auth sent", json!(sent));
    observed.agree(
        "after restart: sends the device token it was given",
        issued.is_string() && auth["deviceToken"] == issued,
    );
    observed.agree("after restart: connect", summary(&res));
    observed.agree("after restart: hello-ok.auth", hello_auth(&res));
    std::thread::sleep(Duration::from_secs(3));
    exchanges(
        &subject.tap.records(),
        &mut observed,
        "after restart: ",
        false,
    );
    host.stop();
    (observed, requests)
}

/// tmux on a socket of its own in `home`, with none of our `OPENCLAW_*` variables.
fn tmux(socket: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("tmux");
    scrub(&mut command);
    command.arg("-S").arg(socket).args(args);
    command
}

/// The tui's screen: the header, the chat log, the status line and the footer, trimmed.
fn screen(socket: &Path, tap: &Tap) -> Vec<String> {
    let out = tmux(socket, &["capture-pane", "-p", "-t", "tui"])
        .output()
        .expect("tmux capture-pane runs");
    String::from_utf8_lossy(&out.stdout)
        .replace(&tap.url(), "<tap>")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '─'))
        .skip_while(|l| !l.starts_with("openclaw tui - "))
        .map(str::to_owned)
        .collect()
}

/// The line above the footer (`agent … | session … | …`): `gateway connected | idle`, …
fn status_line(screen: &[String]) -> Option<String> {
    let footer = screen.iter().position(|l| l.starts_with("agent "))?;
    footer.checked_sub(1).map(|i| screen[i].clone())
}

/// The connection problems the tui shows in its log or status line (its gateway client's
/// states and the connect refusals), or none: what the screen says of the connection itself.
fn connection_problems(screen: &[String]) -> Vec<&'static str> {
    const PROBLEMS: [&str; 8] = [
        "disconnected",
        "reconnecting",
        "connecting",
        "gateway closed",
        "not connected",
        "pairing required",
        "unauthorized",
        "device identity required",
    ];
    let text = screen.join("\n").to_lowercase();
    PROBLEMS.into_iter().filter(|p| text.contains(p)).collect()
}

/// Why the tui's session pane is not compared: it is filled by the host's session methods
/// (`sessions.subscribe`, `agents.list`, `chat.history`, …), which `gateway run` — a gateway
/// with no agent runtime — does not have; what the core owns is the connection.
const SESSION_PANE: &str = "(host's session methods; not the core's)";

/// `openclaw tui --token T` under tmux, its config pointing at the tap: the screen once it
/// settles, a `tick` seen on its connection, the screen after it, and the connection still
/// open. (Not `--url`: with an explicit URL the tui files its device token under that origin,
/// where a probe of a loopback port does not look.)
fn tui(subject: &Subject, home: &Path) -> Observed {
    let mut observed = Observed::default();
    configure(home, subject);
    let socket = home.join("tmux.sock");
    let (node, script) = common::node::node_paths();
    let home_var = format!("HOME={}", home.display());
    let (node, script) = (node.to_string_lossy(), script.to_string_lossy());
    subject.tap.clear();
    // The shell keeps the pane (and what the tui last drew) should the tui exit.
    let started = tmux(
        &socket,
        &[
            "new-session", "-d", "-s", "tui", "-x", "120", "-y", "40", "env", &home_var,
            "OPENCLAW_NO_AUTO_UPDATE=1", "sh", "-c",
            r#""$@"; echo "[tui exited: $?]"; exec sleep 3600"#, "sh", &node, &script, "tui",
            "--token", TOKEN,
        ],
    )
    .status()
    .unwrap_or_else(|err| {
        panic!("tmux is needed to drive `openclaw tui` ({err}): apt-get install tmux (scripts/test.sh installs it)")
    });
    assert!(started.success(), "tmux new-session: {started}");
    struct Server<'a>(&'a Path);
    impl Drop for Server<'_> {
        fn drop(&mut self) {
            let _ = tmux(self.0, &["kill-server"]).status();
        }
    }
    let _server = Server(&socket);

    let (conn, hello_at, res) = first_connect_answer(&subject.tap, Duration::from_secs(90))
        .unwrap_or_else(|| {
            panic!(
                "the tui connects; its screen: {:?}",
                screen(&socket, &subject.tap)
            )
        });
    observed.agree("connect", summary(&res));
    observed.agree("hello-ok.auth", hello_auth(&res));
    let settled = |since: Instant| {
        let mut last = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stable_since = Instant::now();
        while Instant::now() < deadline {
            let now = screen(&socket, &subject.tap);
            if now != last {
                last = now;
                stable_since = Instant::now();
            } else if stable_since.elapsed() >= Duration::from_secs(2)
                && Instant::now() >= since
                && status_line(&last).is_some_and(|s| !s.starts_with("connecting"))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        last
    };
    let first = settled(hello_at);
    observed.agree(
        "connection problems on screen once connected",
        json!(connection_problems(&first)),
    );
    observed.info(
        format!("screen once connected {SESSION_PANE}"),
        json!(first),
    );
    observed.info(
        format!("status line once connected {SESSION_PANE}"),
        status_line(&first),
    );

    let tick_ms = res["payload"]["policy"]["tickIntervalMs"]
        .as_u64()
        .unwrap_or(30_000);
    observed.info("policy.tickIntervalMs", tick_ms);
    let interval = Duration::from_millis(tick_ms);
    let tick = subject
        .tap
        .wait_for(interval + Duration::from_secs(15), |r| {
            r.conn == conn
                && r.direction == Direction::Down
                && r.at > hello_at
                && r.json().is_some_and(|m| m["event"] == "tick")
        });
    observed.agree("a tick after hello-ok", tick.is_some());
    // Past one whole interval after the tick: still one connection, nobody closed it.
    let after = tick.map_or(Instant::now(), |t| t.at) + interval.min(Duration::from_secs(5));
    std::thread::sleep(after.saturating_duration_since(Instant::now()) + Duration::from_secs(1));
    let records = subject.tap.records();
    let connections = by_connection(&records);
    observed.agree("connections opened", connections.len());
    observed.agree("closes", json!(closes(&connections[&conn])));
    let later = screen(&socket, &subject.tap);
    observed.agree(
        "connection problems on screen after a tick",
        json!(connection_problems(&later)),
    );
    observed.info(
        format!("status line after a tick {SESSION_PANE}"),
        status_line(&later),
    );
    exchanges(&records, &mut observed, "", false);
    observed
}

/// Runs `observe` against the Node gateway, then against ours, and compares.
fn side_by_side(client: &str, mut observe: impl FnMut(&mut Subject) -> Observed) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let node = observe(&mut Subject::start(Which::Node));
    let ours = observe(&mut Subject::start(Which::Ours));
    compare(client, &node, &ours);
}

#[test]
#[ignore = "needs the Node gateway: scripts/node-interop.sh"]
fn gateway_probe_answers_as_against_node() {
    side_by_side("openclaw gateway probe --json", |subject| {
        let mut observed = Observed::default();
        let home = client_home();
        probe(subject, home.path(), "", &mut observed);
        observed
    });
}

#[test]
#[ignore = "needs the Node gateway: scripts/node-interop.sh"]
fn status_sees_the_gateway_as_against_node() {
    side_by_side("openclaw status --json / --all", |subject| status(subject));
}

#[test]
#[ignore = "needs the Node gateway: scripts/node-interop.sh"]
fn node_host_is_paired_listed_and_comes_back_as_against_node() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (node, node_requests) = node_host(&mut Subject::start(Which::Node));
    let (ours, our_requests) = node_host(&mut Subject::start(Which::Ours));
    let rate = format!(
        "requests in the first minute: Node {node_requests}, ours {our_requests} \
         (ours may be no more than Node's)"
    );
    println!("{rate}");
    let result = std::panic::catch_unwind(|| compare("openclaw node run", &node, &ours));
    assert!(our_requests <= node_requests, "{rate}");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
#[ignore = "needs the Node gateway: scripts/node-interop.sh"]
fn tui_connects_and_stays_connected_as_against_node() {
    side_by_side(
        "openclaw tui (tmux) and a probe from its paired home",
        |subject| {
            let home = client_home();
            let mut observed = tui(subject, home.path());
            // The tui's device was paired and given an operator device token; a probe from the
            // same home uses it (SPEC §12.9) and reads with the scopes pairing granted.
            probe(subject, home.path(), "probe after the tui: ", &mut observed);
            observed
        },
    );
}

/// The tap itself, in front of ours: each frame read as sent, in both directions, whatever its
/// length encoding; the extensions header dropped; a gateway that is down recorded as such.
#[test]
fn the_tap_reads_every_frame_as_sent() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let env = TestEnv::new();
    let ours = env.start(&[
        "--port",
        &free_port().to_string(),
        "--auth",
        "token",
        "--token",
        TOKEN,
    ]);
    let tap = Tap::start(ours.port);
    let connect = json!({
        "type": "req", "id": "c", "method": "connect",
        "params": {
            "minProtocol": 4, "maxProtocol": 4,
            "client": {"id": "cli", "version": "1", "platform": "linux", "mode": "cli"},
            "auth": {"token": TOKEN},
        },
    });
    // Over 64 KiB: the 64-bit length form (the connect above takes the 16-bit one).
    let big = json!({"type": "req", "id": "h", "method": "health", "params": {"pad": "x".repeat(70_000)}});
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = tap.url().into_client_request().unwrap();
        // A server that took this would compress; the tap must keep it from doing so.
        request.headers_mut().insert(
            "Sec-WebSocket-Extensions",
            "permessage-deflate; client_max_window_bits"
                .parse()
                .unwrap(),
        );
        let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert!(response.headers().get("sec-websocket-extensions").is_none());
        let next = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    break serde_json::from_str::<Value>(&text).unwrap();
                }
                Some(Ok(_)) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        };
        assert_eq!(next(&mut ws).await["event"], "connect.challenge");
        ws.send(Message::text(connect.to_string())).await.unwrap();
        assert_eq!(next(&mut ws).await["payload"]["type"], "hello-ok");
        ws.send(Message::text(big.to_string())).await.unwrap();
        assert_eq!(next(&mut ws).await["ok"], true);
        ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
        while ws.next().await.is_some() {}
    });
    assert!(wait_until(Duration::from_secs(5), || {
        tap.records()
            .iter()
            .any(|r| r.direction == Direction::Down && matches!(r.seen, Seen::Close(..)))
    }));
    let records = tap.records();
    assert!(records.iter().all(|r| r.conn == 1), "{records:?}");
    let seen: Vec<(Direction, Seen)> = records
        .iter()
        .map(|r| {
            let seen = match r.json() {
                // Answers carry times and ids; what matters here is which frame it was.
                Some(m) if r.direction == Direction::Down => Seen::Text(
                    m["event"]
                        .as_str()
                        .or(m["payload"]["type"].as_str())
                        .map_or(format!("res ok={}", m["ok"]), str::to_owned),
                ),
                // The 70 KB request, by length and checksum-free identity: its text is asserted below.
                _ => match &r.seen {
                    Seen::Text(text) if text.len() > 1000 => {
                        assert_eq!(text, &big.to_string(), "the 64-bit-length frame, as sent");
                        Seen::Text(format!("{} bytes", text.len()))
                    }
                    seen => seen.clone(),
                },
            };
            (r.direction, seen)
        })
        .collect();
    use Direction::{Down, Up};
    assert_eq!(
        seen,
        vec![
            (Up, Seen::Open),
            (
                Down,
                Seen::Upgrade("HTTP/1.1 101 Switching Protocols".into())
            ),
            (Down, Seen::Text("connect.challenge".into())),
            (Up, Seen::Text(connect.to_string())),
            (Down, Seen::Text("hello-ok".into())),
            (Up, Seen::Text(format!("{} bytes", big.to_string().len()))),
            (Down, Seen::Text("res ok=true".into())),
            (Up, Seen::Close(Some(1000), "bye".into())),
            (Down, Seen::Close(Some(1000), "bye".into())),
        ]
    );

    // Plain HTTP passes through unread: its status line is recorded, its body is not taken
    // for frames.
    tap.clear();
    let (status, _, body) = http(tap.port, "GET", "/healthz").unwrap();
    assert_eq!(status, 200);
    assert!(!body.is_empty());
    let records: Vec<Seen> = tap.records().into_iter().map(|r| r.seen).collect();
    assert_eq!(
        records,
        vec![Seen::Open, Seen::Upgrade("HTTP/1.1 200 OK".into())]
    );
    drop(tap);

    // Nothing behind the tap: the client is closed, and that is what is recorded.
    let tap = Tap::start(free_port());
    let mut client = std::net::TcpStream::connect(("127.0.0.1", tap.port)).unwrap();
    let mut byte = [0u8; 1];
    use std::io::Read;
    assert_eq!(
        client.read(&mut byte).unwrap_or(0),
        0,
        "the tap closes the client"
    );
    assert!(wait_until(Duration::from_secs(5), || !tap
        .records()
        .is_empty()));
    let record = &tap.records()[0];
    assert_eq!((record.conn, &record.seen), (1, &Seen::GatewayDown));
    assert_eq!(ours.terminate(), 0);
}
