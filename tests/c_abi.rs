//! The C ABI from C and C++: the test programs in `tests/c/` and `tests/cpp/` and the hosts in
//! `examples/`, compiled with the system `cc`/`c++` (`-std=c11`/`-std=c++17 -Wall -Wextra
//! -Wpedantic -Werror`) against the static library this test run built, then run normally,
//! under AddressSanitizer + UBSan, and under valgrind. Each program is compiled once per mode.
//!
//! Needs `cc`, `c++`, `pkg-config` and `valgrind` (`.ci/run` installs them).

mod common;
mod wsclient;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use wsclient::{Client, DeviceKey, assert_error, connect_params};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `rustc --print native-static-libs` for the static library (README says the same).
#[cfg(target_os = "linux")]
const NATIVE_STATIC_LIBS: &[&str] = &["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl"];
/// On macOS all of it is libSystem (rustc's `-liconv` is never used; see build.rs).
#[cfg(not(target_os = "linux"))]
const NATIVE_STATIC_LIBS: &[&str] = &["-lSystem", "-lc", "-lm"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Plain,
    Sanitized,
}

/// Where this test run's library was built: `target/<profile>/deps` (cargo names a library
/// with a `staticlib`/`cdylib` type without a hash, and copies it up to `target/<profile>` only
/// in `cargo build`).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().to_path_buf()
}

/// `target/<profile>`, where build.rs writes `gateway.pc`.
fn profile_dir() -> PathBuf {
    lib_dir().parent().unwrap().to_path_buf()
}

fn out_dir(mode: Mode) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("c-abi-{mode:?}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_checked(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{what}: cannot run {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Compiles `sources` into `name` for `mode`, linking the static library.
fn compile(mode: Mode, cxx: bool, name: &str, sources: &[&str], includes: &[&str]) -> PathBuf {
    let output = out_dir(mode).join(name);
    let lib = lib_dir().join("libgateway.a");
    assert!(lib.exists(), "{} was not built", lib.display());
    let mut command = Command::new(if cxx { "c++" } else { "cc" });
    command
        .current_dir(ROOT)
        .arg(if cxx { "-std=c++17" } else { "-std=c11" })
        .args([
            "-Wall",
            "-Wextra",
            "-Wpedantic",
            "-Werror",
            "-g",
            "-pthread",
        ]);
    if mode == Mode::Sanitized {
        command.args([
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer",
        ]);
    }
    for include in includes {
        command.arg(format!("-I{include}"));
    }
    command
        .args(sources)
        .arg(&lib)
        .args(NATIVE_STATIC_LIBS)
        .arg("-o")
        .arg(&output);
    run_checked(&mut command, &format!("compiling {name}"));
    output
}

struct Programs {
    test_c: PathBuf,
    test_http: PathBuf,
    test_cpp: PathBuf,
}

fn programs(mode: Mode) -> &'static Programs {
    static PLAIN: OnceLock<Programs> = OnceLock::new();
    static SANITIZED: OnceLock<Programs> = OnceLock::new();
    let cell = match mode {
        Mode::Plain => &PLAIN,
        Mode::Sanitized => &SANITIZED,
    };
    cell.get_or_init(|| Programs {
        test_c: compile(
            mode,
            false,
            "test_c",
            &["tests/c/test_c.c", "tests/c/tu2.c"],
            &["include", "tests/c"],
        ),
        test_http: compile(
            mode,
            false,
            "test_http",
            &["tests/c/test_http.c"],
            &["include"],
        ),
        test_cpp: compile(
            mode,
            true,
            "test_cpp",
            &["tests/cpp/test_cpp.cpp", "tests/cpp/tu2.cpp"],
            &["include", "bindings/cpp"],
        ),
    })
}

fn host_c() -> &'static Path {
    static HOST: OnceLock<PathBuf> = OnceLock::new();
    HOST.get_or_init(|| {
        compile(
            Mode::Plain,
            false,
            "host",
            &["examples/c/host.c"],
            &["include"],
        )
    })
}

fn host_cpp() -> &'static Path {
    static HOST: OnceLock<PathBuf> = OnceLock::new();
    HOST.get_or_init(|| {
        compile(
            Mode::Plain,
            true,
            "host_cpp",
            &["examples/cpp/host.cpp"],
            &["include", "bindings/cpp"],
        )
    })
}

/// A command with nothing of the caller's environment but PATH, and HOME in `home`.
fn scrubbed(program: &Path, home: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GATEWAY_TEST_PORTS", test_ports())
        .stdin(Stdio::null());
    command
}

/// Ports for one C or C++ test program, each case taking the next: from `free_port`, outside
/// the kernel's ephemeral range, so no outgoing connection on the machine takes a port between
/// a case's shutdown and its check that the port is free (with port 0 that happened under
/// `scripts/loopback-load.sh`).
fn test_ports() -> String {
    let ports: Vec<String> = (0..32).map(|_| free_port().to_string()).collect();
    ports.join(",")
}

/// Valgrind's verdict: exit 99 on any error or definite leak.
fn under_valgrind(program: &Path, home: &Path) -> Command {
    let mut command = scrubbed(Path::new("valgrind"), home);
    command
        .args([
            "-q",
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite",
        ])
        .arg(program);
    command
}

fn sanitized(program: &Path, home: &Path) -> Command {
    let mut command = scrubbed(program, home);
    // Apple's ASan has no LeakSanitizer and refuses `detect_leaks=1`.
    let leaks = if cfg!(target_os = "linux") { 1 } else { 0 };
    command
        .env(
            "ASAN_OPTIONS",
            format!("detect_leaks={leaks}:abort_on_error=0:exitcode=98"),
        )
        .env(
            "UBSAN_OPTIONS",
            "print_stacktrace=1:halt_on_error=1:exitcode=97",
        );
    command
}

fn assert_suite(output: &Output, cases: &[&str]) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    for case in cases {
        assert!(
            stdout.lines().any(|line| line == format!("ok {case}")),
            "case {case} did not pass:\n{stdout}"
        );
    }
    assert!(stdout.lines().any(|line| line == "all ok"), "{stdout}");
}

const C_CASES: [&str; 14] = [
    "bad_env_port",
    "version_and_names",
    "null_arguments",
    "bad_values",
    "acquire_twice_unserved",
    "serve_and_shutdown_from_another_thread",
    "lock_lost",
    "shutdown_timeout",
    "callbacks_size_prefix",
    "request_api_arguments",
    "serve_options_arguments",
    "log_finalizer_and_lock_lost",
    "pairing_calls",
    "other_host_and_unlock",
];
const CPP_CASES: [&str; 8] = [
    "errors",
    "serve",
    "raii",
    "handlers",
    "serve_options",
    "lock_extras",
    "pairing",
    "http_routes",
];

fn c_suite(mode: Mode, valgrind: bool) {
    let env = TestEnv::new();
    let program = &programs(mode).test_c;
    let mut command = match (mode, valgrind) {
        (_, true) => under_valgrind(program, &env.home()),
        (Mode::Sanitized, false) => sanitized(program, &env.home()),
        (Mode::Plain, false) => scrubbed(program, &env.home()),
    };
    let output = run_checked(command.arg("all").arg(env.home()), "test_c all");
    assert_suite(&output, &C_CASES);
}

const HTTP_CASES: [&str; 9] = [
    "bad_registrations",
    "inline_and_any",
    "answered_later",
    "streamed_upload",
    "streamed_response",
    "abort_beside_a_stalled_write",
    "unanswered_and_limits",
    "websocket_paths",
    "exchange_outlives_the_server",
];

/// `test_http all`: a C host's HTTP routes against a real HTTP client over TCP (see
/// tests/c/test_http.c).
fn http_suite(mode: Mode, valgrind: bool) {
    let env = TestEnv::new();
    let program = &programs(mode).test_http;
    let mut command = match (mode, valgrind) {
        (_, true) => under_valgrind(program, &env.home()),
        (Mode::Sanitized, false) => sanitized(program, &env.home()),
        (Mode::Plain, false) => scrubbed(program, &env.home()),
    };
    let output = run_checked(command.arg("all").arg(env.home()), "test_http all");
    assert_suite(&output, &HTTP_CASES);
}

fn cpp_suite(mode: Mode, valgrind: bool) {
    let env = TestEnv::new();
    let program = &programs(mode).test_cpp;
    let mut command = match (mode, valgrind) {
        (_, true) => under_valgrind(program, &env.home()),
        (Mode::Sanitized, false) => sanitized(program, &env.home()),
        (Mode::Plain, false) => scrubbed(program, &env.home()),
    };
    let output = run_checked(command.arg(env.home()), "test_cpp");
    assert_suite(&output, &CPP_CASES);
}

fn injected_panic(mode: Mode, valgrind: bool) {
    // A panic before anything is allocated, and one after gw_serve allocated its server.
    for (export, case) in [
        ("gw_lock_acquire", "panic"),
        ("gw_serve:served", "serve_panic"),
    ] {
        let env = TestEnv::new();
        let program = &programs(mode).test_c;
        let mut command = match (mode, valgrind) {
            (_, true) => under_valgrind(program, &env.home()),
            (Mode::Sanitized, false) => sanitized(program, &env.home()),
            (Mode::Plain, false) => scrubbed(program, &env.home()),
        };
        let output = run_checked(
            command
                .env("GATEWAY_FFI_PANIC", export)
                .arg(case)
                .arg(env.home()),
            &format!("test_c {case}"),
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(&format!("ok {case}")), "{stdout}");
    }
}

/// The lines a `test_c serve` host prints, read until one matches.
struct HostLines {
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl HostLines {
    /// The first line (after those already read) that starts with `prefix`, without it.
    fn expect(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                Err(_) => panic!(
                    "no line {prefix:?} within {timeout:?}; saw {:#?}",
                    self.seen
                ),
            }
        }
    }
}

/// Starts `command` (a `test_c` host) on `suite` in `home`: the child, the stdin it reads
/// commands from, and the lines it prints.
fn spawn_host(command: &mut Command, suite: &str, home: &Path) -> (Child, ChildStdin, HostLines) {
    let mut child = command
        .arg(suite)
        .arg(home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let lines = HostLines {
        lines: pipe_lines(child.stdout.take().unwrap()),
        seen: Vec::new(),
    };
    (child, stdin, lines)
}

fn command_line(stdin: &mut ChildStdin, line: &str) {
    writeln!(stdin, "{line}").unwrap();
    stdin.flush().unwrap();
}

/// A C host (`test_c serve`) answers a real WebSocket client: methods registered with their
/// scopes, answered through `gw_respond` from another thread and from inside `on_request` on
/// the server it is given, an unanswered request timing out as `UNAVAILABLE` after the serve
/// options' timeout, the other serve options in effect (origin, connection cap, version,
/// limits), `on_connection` opened/closed, `gw_broadcast`, `gw_send_event`, `gw_set_health`,
/// `gw_server_connection_count`, and the shutdown.
async fn ws_host_suite(mode: Mode, valgrind: bool) {
    let env = TestEnv::new();
    let program = &programs(mode).test_c;
    let mut command = match (mode, valgrind) {
        (_, true) => under_valgrind(program, &env.home()),
        (Mode::Sanitized, false) => sanitized(program, &env.home()),
        (Mode::Plain, false) => scrubbed(program, &env.home()),
    };
    let (mut child, mut stdin, mut lines) = spawn_host(&mut command, "serve", &env.home());
    let slow = if valgrind { 20 } else { 1 };
    if valgrind {
        wsclient::be_patient(slow);
    }
    let wait = Duration::from_secs(10 * slow as u64);
    let port: u16 = lines.expect("ready ", wait * 3).parse().unwrap();

    // Registered methods and events are advertised; the client holds operator.read.
    let mut params = connect_params();
    params["scopes"] = json!(["operator.read"]);
    let (mut reader, hello) = Client::connected(port, params).await;
    assert_eq!(
        hello["features"]["methods"],
        json!(["health", "system-presence", "echo", "fail", "slow", "stall"])
    );
    assert_eq!(hello["server"]["version"], "c-host 9", "{hello}");
    assert_eq!(hello["server"]["buildId"], "c-build 1", "{hello}");
    assert_eq!(
        hello["features"]["capabilities"],
        json!(["c-contract-v1"]),
        "{hello}"
    );
    // The host's health source ran once at start: its snapshot, counted from 1.
    assert_eq!(hello["snapshot"]["health"]["source"], "c-source", "{hello}");
    assert_eq!(
        hello["snapshot"]["stateVersion"],
        json!({"presence": 1, "health": 2}),
        "{hello}"
    );
    assert_eq!(hello["policy"]["maxPayload"], 1_048_576, "{hello}");
    assert_eq!(hello["policy"]["maxBufferedBytes"], 2_097_152, "{hello}");
    assert_eq!(hello["policy"]["tickIntervalMs"], 25_000, "{hello}");
    let events = hello["features"]["events"].as_array().unwrap();
    for event in ["demo.tick", "demo.direct", "demo.pair"] {
        assert!(events.contains(&json!(event)), "{event} in {hello}");
    }
    let opened = lines.expect("opened ", wait);
    let (conn, client) = opened.split_once(' ').unwrap();
    assert_eq!(hello["server"]["connId"], conn, "{opened}");
    let client: Value = serde_json::from_str(client).unwrap();
    assert_eq!(client["client"]["id"], "gateway-client", "{client}");
    assert_eq!(client["scopes"], json!(["operator.read"]), "{client}");
    let conn: u64 = conn.parse().unwrap();

    // Answered later, by the host's own thread.
    let res = reader.call("r1", "echo", json!({"x": [1, "two"]})).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"], json!({"echo": {"x": [1, "two"]}}));
    let request = lines.expect("request echo ", wait);
    assert_eq!(request, format!("{conn} {{\"x\":[1,\"two\"]}}"));
    lines.expect("answered ", wait);

    // Answered inside on_request, with an error object.
    let res = reader.call("r2", "fail", json!({})).await;
    assert_error(&res, "r2", "E_DEMO", "nope", Some("DEMO"));

    // Never answered: UNAVAILABLE after the host's request timeout; answering late is refused.
    reader
        .send(json!({"type": "req", "id": "r3", "method": "slow"}))
        .await;
    assert_eq!(lines.expect("request slow ", wait), format!("{conn} null"));
    let started = Instant::now();
    let res = reader.recv_skip_ticks().await;
    assert_error(
        &res,
        "r3",
        "UNAVAILABLE",
        "slow got no answer from the host within 2000 ms",
        None,
    );
    assert_eq!(res["error"]["retryable"], true, "{res}");
    assert!(started.elapsed() >= Duration::from_millis(1000), "{res}");
    command_line(&mut stdin, "late");
    assert_eq!(lines.expect("late ", wait), "GW_ERR_NOT_FOUND");
    // The health source's snapshot, fresh in the cache.
    let res = reader.call("h0", "health", Value::Null).await;
    assert_eq!(res["payload"]["source"], "c-source", "a fresh cache: {res}");

    // A Control UI from an allowed origin that is not loopback, with a device identity (on
    // `auth.mode none` it skips pairing, SPEC §11.5); it holds no scope, so it is refused
    // before the host hears of it.
    let mut other = Client::open_with(port, Some("https://app.example.com")).await;
    let mut ui = connect_params();
    ui["client"]["id"] = json!("openclaw-control-ui");
    ui["client"]["mode"] = json!("webchat");
    let res = other.connect_signed(&DeviceKey::random(), ui).await;
    assert_eq!(res["ok"], true, "{res}");
    let other_conn = lines.expect("opened ", wait);
    let other_conn: u64 = other_conn.split_once(' ').unwrap().0.parse().unwrap();
    // The reader holds operator.read: told the Control UI came (SPEC §12.6).
    let event = reader.recv_skip_ticks().await;
    assert_eq!(event["event"], "presence", "{event}");
    let res = other.call("o1", "echo", json!({})).await;
    assert_error(
        &res,
        "o1",
        "FORBIDDEN",
        "missing scope: operator.read",
        Some("MISSING_SCOPE"),
    );

    // Two connections is the cap: a third is refused with 1013.
    command_line(&mut stdin, "count");
    assert_eq!(lines.expect("count ", wait), "2");
    let mut third = Client::open(port).await;
    assert_eq!(third.closed().await, (1013, "too many connections".into()));

    // Events: to everyone, and to one connection.
    command_line(&mut stdin, "broadcast 7");
    assert_eq!(lines.expect("broadcast ", wait), "GW_OK");
    // demo.tick goes to operator.read holders: the reader, not the other client (SPEC §12.7).
    let event = reader.recv_skip_ticks().await;
    assert_eq!(event["event"], "demo.tick", "{event}");
    assert_eq!(event["payload"], json!({"n": 7}), "{event}");
    let mut reader_seq = event["seq"].as_u64().expect("a seq");
    command_line(&mut stdin, &format!("send {conn}"));
    assert_eq!(lines.expect("send ", wait), "GW_OK");
    // A targeted event takes the client's next seq, as in Node.
    let event = next_in_sequence(&mut reader, &mut reader_seq).await;
    assert_eq!(event["event"], "demo.direct", "{event}");
    assert_eq!(event["payload"], json!({"to": conn}), "{event}");
    // demo.pair needs operator.pairing, which neither client holds.
    command_line(&mut stdin, "pair 8");
    assert_eq!(lines.expect("pair ", wait), "GW_OK");

    // The host's health snapshot: sent as an event to everyone, then what `health` answers. It
    // is the next event of both clients: neither got demo.pair, and the other no demo.tick.
    command_line(&mut stdin, "health");
    assert_eq!(lines.expect("health ", wait), "GW_OK");
    let snapshot = json!({"ok": true, "source": "c-host"});
    let event = next_in_sequence(&mut reader, &mut reader_seq).await;
    assert_eq!(event["event"], "health", "{event}");
    assert_eq!(event["payload"], snapshot, "{event}");
    // The other client's events, from its first: only ticks (if the host was slow) came before.
    let mut other_seq = 0;
    let event = next_in_sequence(&mut other, &mut other_seq).await;
    assert_eq!(event["event"], "health", "{event}");
    let res = reader.call("h1", "health", Value::Null).await;
    assert_eq!(res["payload"], snapshot, "{res}");

    // A client that leaves is announced; events to it are refused.
    other.ws.close(None).await.unwrap();
    assert_eq!(lines.expect("closed ", wait), other_conn.to_string());
    command_line(&mut stdin, &format!("send {other_conn}"));
    assert_eq!(lines.expect("send ", wait), "GW_ERR_NOT_FOUND");
    let event = reader.recv_skip_ticks().await;
    assert_eq!(event["event"], "presence", "{event}");
    let rows = event["payload"]["presence"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["clientId"] == "openclaw-control-ui" && r["reason"] == "disconnect"),
        "{event}"
    );

    // The host reads presence: its own row with the version it set, and an app that
    // connected (the challenge names the host's capability).
    let mut app = Client::open(port).await;
    let challenge = app.challenge().await;
    assert_eq!(
        challenge["payload"]["capabilities"],
        json!(["c-connect-v1"]),
        "{challenge}"
    );
    let mut app_params = connect_params();
    app_params["client"]["mode"] = json!("ui");
    app_params["client"]["displayName"] = json!("c-app");
    // An app signs in with a device identity (paired silently on loopback, SPEC §11.5).
    let nonce = challenge["payload"]["nonce"].as_str().unwrap();
    let ts = challenge["payload"]["ts"].as_u64().unwrap();
    let app_params = DeviceKey::random().signed(app_params, nonce, ts);
    app.send(json!({"type": "req", "id": "c1", "method": "connect", "params": app_params}))
        .await;
    let res = app.recv().await;
    assert_eq!(res["ok"], true, "{res}");
    lines.expect("opened ", wait);
    command_line(&mut stdin, "presence");
    let presence: Value = serde_json::from_str(&lines.expect("presence ", wait)).unwrap();
    let rows = presence.as_array().expect("an array");
    assert!(
        rows.iter()
            .any(|r| r["reason"] == "self" && r["version"] == "c-host 9"),
        "{presence}"
    );
    assert!(
        rows.iter()
            .any(|r| r["host"] == "c-app" && r["reason"] == "connect" && r["mode"] == "ui"),
        "{presence}"
    );
    drop(app);
    lines.expect("closed ", wait);
    // The reader holds operator.read: told of the app's coming and going.
    for reason in ["connect", "disconnect"] {
        let event = reader.recv_skip_ticks().await;
        assert_eq!(event["event"], "presence", "{event}");
        let rows = event["payload"]["presence"].as_array().unwrap();
        assert!(
            rows.iter()
                .any(|r| r["host"] == "c-app" && r["reason"] == reason),
            "{event}"
        );
    }

    // A callback still running after the shutdown's drain gave up: gw_shutdown waits for it
    // before it frees the server the callback uses.
    reader
        .send(json!({"type": "req", "id": "r4", "method": "stall"}))
        .await;
    assert_eq!(lines.expect("request stall ", wait), format!("{conn} null"));

    // EOF: the host shuts down; the client gets `shutdown` and 1012.
    drop(stdin);
    let event = loop {
        let frame = reader.recv_skip_ticks().await;
        if frame["type"] != "res" {
            break frame;
        }
    };
    assert_eq!(event["event"], "shutdown", "{event}");
    assert_eq!(reader.closed().await, (1012, "service restart".to_owned()));
    // The stalled request's connection could not drain in 2000 ms: it is cut off, with no
    // `closed` notification.
    assert_eq!(lines.expect("stopped ", wait), "GW_ERR_TIMEOUT");
    let position = |prefix: &str| lines.seen.iter().position(|line| line.starts_with(prefix));
    assert!(
        position("stall ").is_some_and(|stall| Some(stall) < position("stopped ")),
        "the stalled callback ended before gw_shutdown returned: {:#?}",
        lines.seen
    );
    let status = wait_with_timeout(&mut child, wait).expect("the host exits");
    assert!(status.success(), "{status}; saw {:#?}", lines.seen);
    // The health source's finalizer ran, once the library let go of it.
    if !lines.seen.iter().any(|line| line == "source freed") {
        lines.expect("source freed", wait);
    }
    assert!(
        !lines
            .seen
            .iter()
            .any(|line| line.starts_with(&format!("request echo {other_conn} "))),
        "{:#?}",
        lines.seen
    );
}

/// The next event other than a `tick`, checking that every event on the way (ticks included)
/// took the client's next `seq` after `last`, which it advances: no event the client's scopes
/// exclude was counted for it (SPEC §12.7).
async fn next_in_sequence(client: &mut Client, last: &mut u64) -> Value {
    loop {
        let frame = client.recv().await;
        assert_eq!(frame["seq"].as_u64(), Some(*last + 1), "{frame}");
        *last += 1;
        if frame["event"] != "tick" {
            return frame;
        }
    }
}

fn run_ws_host_suite(mode: Mode, valgrind: bool) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(ws_host_suite(mode, valgrind));
}

/// A C host (`test_c pairing`) decides pairing in its policy callback, for clients that sign a
/// device block (SPEC §11): approves one with a scope of its choosing, rejects one, leaves one
/// pending and approves it later with `gw_pairing_approve`, after which it connects; then
/// revokes its token with `gw_device_token_revoke`.
async fn pairing_host_suite(mode: Mode) {
    let env = TestEnv::new();
    let program = &programs(mode).test_c;
    let mut command = match mode {
        Mode::Sanitized => sanitized(program, &env.home()),
        Mode::Plain => scrubbed(program, &env.home()),
    };
    let (mut child, mut stdin, mut lines) = spawn_host(&mut command, "pairing", &env.home());
    let wait = Duration::from_secs(10);
    let port: u16 = lines.expect("ready ", wait * 3).parse().unwrap();
    let token = "s3cret-token";
    let ask = |name: &str| wsclient::cli_params(token, &["operator.read", "operator.write"], name);
    let asked = |lines: &mut HostLines| -> (Value, Value) {
        let line = lines.expect("asked ", wait);
        let mut values = serde_json::Deserializer::from_str(&line).into_iter::<Value>();
        (
            values.next().unwrap().unwrap(),
            values.next().unwrap().unwrap(),
        )
    };

    // Approved in the callback, with the scopes the host chose.
    let approved = DeviceKey::from_seed([11; 32]);
    let mut params = ask("approve-me");
    params["scopes"] = json!(["operator.read"]);
    let (_client, res) = approved.connect(port, params).await;
    assert_eq!(res["ok"], true, "{res}");
    let (request, context) = asked(&mut lines);
    assert_eq!(
        request["deviceId"],
        approved.device_id().as_str(),
        "{request}"
    );
    assert_eq!(request["displayName"], "approve-me", "{request}");
    assert_eq!(context["reason"], "not-paired", "{context}");
    assert_eq!(context["locality"], "direct_local", "{context}");
    assert_eq!(context["silentLocal"], true, "{context}");
    // A new device is silent only under auto-approve-local (Node's default).
    assert_eq!(context["silentLocalWithoutAutoApprove"], false, "{context}");
    assert!(res["payload"]["auth"]["deviceToken"].is_string(), "{res}");

    // Rejected in the callback.
    let rejected = DeviceKey::from_seed([12; 32]);
    let (mut client, res) = rejected.connect(port, ask("reject-me")).await;
    assert_eq!(res["error"]["code"], "NOT_PAIRED", "{res}");
    assert_eq!(client.closed().await.0, 1008);
    asked(&mut lines);

    // Left pending, approved later through the handle call; then it connects.
    let waiting = DeviceKey::from_seed([13; 32]);
    let (mut client, res) = waiting.connect(port, ask("wait-for-me")).await;
    assert_eq!(res["error"]["code"], "NOT_PAIRED", "{res}");
    let request_id = res["error"]["details"]["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(client.closed().await.0, 1008);
    asked(&mut lines);
    command_line(&mut stdin, "requests");
    let requests: Value = serde_json::from_str(&lines.expect("requests ", wait)).unwrap();
    assert_eq!(requests.as_array().unwrap().len(), 1, "{requests}");
    assert_eq!(requests[0]["requestId"], request_id.as_str(), "{requests}");
    assert_eq!(
        requests[0]["scopes"],
        json!(["operator.read", "operator.write"])
    );
    command_line(&mut stdin, &format!("approve {request_id}"));
    assert_eq!(lines.expect("approve ", wait), "GW_OK");
    command_line(&mut stdin, &format!("approve {request_id}"));
    assert_eq!(lines.expect("approve ", wait), "GW_ERR_NOT_FOUND");
    let (_client, res) = waiting.connect(port, ask("wait-for-me")).await;
    assert_eq!(res["ok"], true, "{res}");
    let device_token = res["payload"]["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_owned();

    command_line(&mut stdin, "devices");
    let devices: Value = serde_json::from_str(&lines.expect("devices ", wait)).unwrap();
    let ids: Vec<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["deviceId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [approved.device_id(), waiting.device_id()],
        "{devices}"
    );

    // Revoked by the host: the token no longer authenticates.
    command_line(&mut stdin, &format!("revoke {}", waiting.device_id()));
    assert_eq!(lines.expect("revoke ", wait), "GW_OK");
    let mut params = ask("wait-for-me");
    params["auth"] = json!({"deviceToken": device_token});
    let (mut client, res) = waiting.connect(port, params).await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(client.closed().await.0, 1008);

    // A bootstrap token issued by the host: a new device connects with it alone and is
    // paired with the profile's role and scopes, once.
    command_line(
        &mut stdin,
        r#"bootstrap {"roles":["operator"],"scopes":["operator.read"]}"#,
    );
    let setup_code = lines.expect("bootstrap ", wait);
    assert_eq!(setup_code.len(), 43, "{setup_code}");
    let newcomer = DeviceKey::from_seed([14; 32]);
    let mut params = ask("set-up");
    params["scopes"] = json!(["operator.read"]);
    params["auth"] = json!({"bootstrapToken": setup_code});
    let (_client, res) = newcomer.connect(port, params.clone()).await;
    assert_eq!(res["payload"]["auth"]["method"], "bootstrap-token", "{res}");
    assert!(res["payload"]["auth"]["deviceToken"].is_string(), "{res}");
    let (mut client, res) = newcomer.connect(port, params).await;
    assert_eq!(
        res["error"]["details"]["code"], "AUTH_BOOTSTRAP_TOKEN_INVALID",
        "{res}"
    );
    assert_eq!(client.closed().await.0, 1008);
    command_line(&mut stdin, "devices");
    let devices: Value = serde_json::from_str(&lines.expect("devices ", wait)).unwrap();
    assert!(
        devices
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["deviceId"] == newcomer.device_id().as_str()
                && d["scopes"] == json!(["operator.read"])),
        "{devices}"
    );
    command_line(&mut stdin, r#"bootstrap {"roles":[]}"#);
    assert_eq!(lines.expect("bootstrap ", wait), "GW_ERR_INVALID_ARGUMENT");

    drop(stdin);
    assert_eq!(lines.expect("stopped ", wait), "GW_OK");
    let status = wait_with_timeout(&mut child, wait).expect("the host exits");
    assert!(status.success(), "{status}; saw {:#?}", lines.seen);
}

#[test]
fn c_host_decides_pairing() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(pairing_host_suite(Mode::Plain));
}

#[test]
fn c_programs() {
    c_suite(Mode::Plain, false);
}

#[test]
fn c_host_answers_a_websocket_client() {
    run_ws_host_suite(Mode::Plain, false);
}

#[test]
fn c_host_serves_http_routes() {
    http_suite(Mode::Plain, false);
}

/// Runs `test_http <mode>` and checks it printed `ok <case>` for each case.
fn http_mode(mode: &str, cases: &[&str]) {
    let env = TestEnv::new();
    let program = &programs(Mode::Plain).test_http;
    let output = run_checked(
        scrubbed(program, &env.home()).arg(mode).arg(env.home()),
        &format!("test_http {mode}"),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    for case in cases {
        assert!(
            stdout.lines().any(|l| l == format!("ok {case}")),
            "{stdout}"
        );
    }
}

/// A route registered with `GW_HTTP_ROUTE_GATEWAY_AUTH`: `401` without the gateway's bearer
/// token or with a wrong one, the callback's answer with it; a body that stalls past
/// `gw_serve_options_set_http_body_idle_timeout_ms` fails its read and the client gets `408`.
#[test]
fn c_routes_meet_the_gateway_auth_and_the_idle_timeout() {
    http_mode("pipeline", &["gateway_auth", "body_idle_timeout"]);
}

/// The Control UI mounted from C under a base path, with the host's `control-ui-config.json`
/// keys.
#[test]
fn c_host_mounts_the_control_ui() {
    http_mode("ui", &["control_ui"]);
}

#[test]
fn cpp_wrapper() {
    cpp_suite(Mode::Plain, false);
}

#[test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "the panic is injected with --features failpoints"
)]
fn a_panic_comes_back_as_gw_err_panic() {
    injected_panic(Mode::Plain, false);
}

#[test]
fn c_and_cpp_under_asan_and_ubsan() {
    c_suite(Mode::Sanitized, false);
    http_suite(Mode::Sanitized, false);
    run_ws_host_suite(Mode::Sanitized, false);
    cpp_suite(Mode::Sanitized, false);
    if cfg!(feature = "failpoints") {
        injected_panic(Mode::Sanitized, false);
    }
}

#[test]
#[cfg(target_os = "linux")] // valgrind does not run on current macOS
fn c_and_cpp_under_valgrind() {
    c_suite(Mode::Plain, true);
    http_suite(Mode::Plain, true);
    run_ws_host_suite(Mode::Plain, true);
    cpp_suite(Mode::Plain, true);
    if cfg!(feature = "failpoints") {
        injected_panic(Mode::Plain, true);
    }
}

#[test]
fn two_processes() {
    let env = TestEnv::new();
    let program = &programs(Mode::Plain).test_c;
    let mut holder = scrubbed(program, &env.home())
        .arg("hold")
        .arg(env.home())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = pipe_lines(holder.stdout.take().unwrap());
    let ready = lines.recv_timeout(Duration::from_secs(10)).expect("ready");
    let mut words = ready.split(' ').skip(1);
    let port: u16 = words.next().unwrap().parse().unwrap();
    let pid: u32 = words.next().unwrap().parse().unwrap();
    assert_eq!(pid, holder.id());
    assert!(healthy(port));

    let second = run_checked(
        scrubbed(program, &env.home())
            .arg("second")
            .arg(env.home())
            .arg(pid.to_string()),
        "test_c second",
    );
    let refused = String::from_utf8_lossy(&second.stdout);
    assert!(
        refused.contains(&format!(
            "gateway already running (pid {pid}); it is healthy on ws://127.0.0.1:{port}"
        )),
        "{refused}"
    );
    // The same holder as typed values (gw_last_error_holder), not parsed from the message.
    assert!(
        refused
            .lines()
            .any(|line| line == format!("holder {pid} {port}")),
        "{refused}"
    );

    drop(holder.stdin.take()); // EOF: shut down
    let status = wait_with_timeout(&mut holder, Duration::from_secs(10)).expect("holder exits");
    assert!(status.success());
    assert!(port_is_free(port));
}

/// The issue's "done when": a second copy of `examples/c/host.c` fails with the holder's pid.
#[test]
fn host_example_second_copy_names_the_holder() {
    let env = TestEnv::new();
    let port = free_port();
    let start = || {
        let mut command = scrubbed(host_c(), &env.home());
        command.env("OPENCLAW_GATEWAY_PORT", port.to_string());
        command
    };
    let first = GatewayProcess::spawn(start()).expect("the first host starts");
    assert_eq!(first.port, port);
    assert!(healthy(port));

    // The example's `echo`, answered by its own thread.
    let echoed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut params = connect_params();
            params["scopes"] = json!(["operator.read"]);
            let (mut client, hello) = Client::connected(port, params).await;
            assert_eq!(
                hello["features"]["methods"],
                json!(["health", "system-presence", "echo"])
            );
            client.call("e1", "echo", json!({"hi": 1})).await
        });
    assert_eq!(echoed["payload"], json!({"echo": {"hi": 1}}), "{echoed}");

    let second = start().output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains(&format!(
            "gateway already running: pid {}, port {port}, healthy",
            first.pid
        )),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("gateway already running (pid {})", first.pid)),
        "{stderr}"
    );

    assert_eq!(first.terminate(), 0);
    assert!(port_is_free(port));
    assert!(env.lock_dir_entries().is_empty());
}

/// Both example hosts wait for SIGINT/SIGTERM with `sigwait` on a thread of their own (macOS has
/// no `sigtimedwait`) and stop at once, not at their next 5 s tick, exiting 0 with the port free.
#[test]
fn host_examples_stop_at_once_on_sigint_and_sigterm() {
    let runs = [
        ("host.c", host_c(), libc::SIGINT),
        ("host.c", host_c(), libc::SIGTERM),
        ("host.cpp", host_cpp(), libc::SIGINT),
        ("host.cpp", host_cpp(), libc::SIGTERM),
    ];
    for (name, program, signal) in runs {
        let env = TestEnv::new();
        let port = free_port();
        let mut command = scrubbed(program, &env.home());
        command.env("OPENCLAW_GATEWAY_PORT", port.to_string());
        let mut host = GatewayProcess::spawn(command).expect("the example host starts");
        assert!(healthy(port), "{name}");
        let sent = Instant::now();
        host.signal(signal);
        let status = wait_with_timeout(&mut host.child, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{name} did not exit after signal {signal}"));
        assert!(status.success(), "{name} after signal {signal}: {status}");
        assert!(
            sent.elapsed() < Duration::from_secs(4),
            "{name} took {:?} to stop after signal {signal}: it waited for its tick",
            sent.elapsed()
        );
        assert!(port_is_free(port), "{name}");
        assert!(env.lock_dir_entries().is_empty(), "{name}");
    }
}

/// `gateway.pc` links the shared library; the host then runs against it.
#[test]
fn pkg_config_links_the_shared_library() {
    let lib_dir = lib_dir();
    let flags = run_checked(
        Command::new("pkg-config")
            .env("PKG_CONFIG_PATH", profile_dir())
            // This run's library, not the one `cargo build` last copied up.
            .arg(format!("--define-variable=libdir={}", lib_dir.display()))
            .args(["--cflags", "--libs", "gateway"]),
        "pkg-config gateway",
    );
    let flags = String::from_utf8(flags.stdout).unwrap();
    assert!(flags.contains("-lgateway"), "{flags}");
    let output = out_dir(Mode::Plain).join("host_shared");
    run_checked(
        Command::new("cc")
            .current_dir(ROOT)
            .args(["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"])
            .arg("examples/c/host.c")
            .args(flags.split_whitespace())
            .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
            .arg("-o")
            .arg(&output),
        "linking host.c with pkg-config",
    );
    // The port is taken by a plain listener: the shared-library host says so and exits 1.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let env = TestEnv::new();
    let run = scrubbed(&output, &env.home())
        .env("OPENCLAW_GATEWAY_PORT", port.to_string())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(&format!(
            "GW_ERR_ADDR_IN_USE: another gateway instance is already listening on ws://127.0.0.1:{port}"
        )),
        "{stderr}"
    );
}

/// The committed header carries the package version from Cargo.toml and the ABI version.
#[test]
fn header_versions_match_cargo_toml() {
    let header = std::fs::read_to_string(Path::new(ROOT).join("include/gateway.h")).unwrap();
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    let version = manifest
        .lines()
        .skip_while(|line| line.trim() != "[package]")
        .find_map(|line| line.strip_prefix("version = "))
        .expect("a [package] version")
        .trim_matches('"');
    let parts: Vec<&str> = version.split(['.', '-', '+']).take(3).collect();
    for (name, part) in ["MAJOR", "MINOR", "PATCH"].iter().zip(&parts) {
        let define = format!("#define GATEWAY_VERSION_{name} {part}\n");
        assert!(header.contains(&define), "header lacks {define:?}");
    }
    let abi = format!(
        "#define GATEWAY_ABI_VERSION {}\n",
        gateway::ffi::ABI_VERSION
    );
    assert!(header.contains(&abi), "header lacks {abi:?}");
    assert_eq!(gateway::ffi::gw_abi_version(), gateway::ffi::ABI_VERSION);
    // SAFETY: gw_version returns a static NUL-terminated string.
    let library = unsafe { std::ffi::CStr::from_ptr(gateway::ffi::gw_version()) };
    assert_eq!(library.to_str().unwrap(), version);
    assert!(header.contains("do not edit"));
    assert!(header.starts_with("/*") && header.contains("#ifndef GATEWAY_H\n#define GATEWAY_H\n"));
}

/// Every knob of the Rust API and what a C host calls for it. The Rust side is read from the
/// sources (so a new field or builder method shows up by itself), and every C name must be in
/// include/gateway.h: `gw_name` is a function, `gw_struct.field` a field of a struct.
const C_COUNTERPARTS: &[(&str, &[&str])] = &[
    ("GatewayOptions::from_env", &["gw_options_from_env"]),
    ("GatewayOptions::state_dir", &["gw_options_set_state_dir"]),
    (
        "GatewayOptions::config_path",
        &["gw_options_set_config_path"],
    ),
    ("GatewayOptions::lock_dir", &["gw_options_set_lock_dir"]),
    ("GatewayOptions::profile", &["gw_options_set_profile"]),
    ("GatewayOptions::dev", &["gw_options_set_dev"]),
    ("GatewayOptions::port", &["gw_options_set_port"]),
    (
        "GatewayOptions::bind",
        &[
            "gw_options_set_bind_loopback",
            "gw_options_set_bind_lan",
            "gw_options_set_bind_host",
        ],
    ),
    (
        "GatewayOptions::auth",
        &[
            "gw_options_set_auth_none",
            "gw_options_set_auth_token",
            "gw_options_set_auth_password",
        ],
    ),
    (
        "GatewayOptions::allow_multi",
        &["gw_options_set_allow_multi"],
    ),
    ("GatewayOptions::timeout", &["gw_options_set_timeout_ms"]),
    (
        "GatewayOptions::poll_interval",
        &["gw_options_set_poll_interval_ms"],
    ),
    (
        "GatewayOptions::stale_after",
        &["gw_options_set_stale_after_ms"],
    ),
    (
        "GatewayOptions::recheck_interval",
        &["gw_options_set_recheck_interval_ms"],
    ),
    ("GatewayOptions::bind_retry", &["gw_options_set_bind_retry"]),
    ("GatewayOptions::logger", &["gw_options_set_log"]),
    ("GatewayOptions::cluster", &["gw_options_set_cluster_etcd"]),
    ("ClusterOptions::name", &["gw_options_set_cluster_name"]),
    ("ClusterOptions::ttl", &["gw_options_set_cluster_ttl_ms"]),
    ("ClusterOptions::wait", &["gw_options_set_cluster_wait_ms"]),
    (
        "ClusterOptions::cancel_on",
        &[
            "gw_cancel_new",
            "gw_cancel_trigger",
            "gw_options_set_cluster_cancel",
        ],
    ),
    (
        "GatewayLock::leadership",
        &["gw_lock_is_leader", "gw_lock_fencing_token"],
    ),
    (
        "GatewayLock::fencing_token",
        &["gw_lock_fencing_token", "gw_server_fencing_token"],
    ),
    (
        "Leadership::fencing_token",
        &["gw_lock_fencing_token", "gw_server_fencing_token"],
    ),
    (
        "Leadership::holds",
        &["gw_lock_is_leader", "gw_server_is_leader"],
    ),
    (
        "ServeOptions.worker_threads",
        &["gw_serve_options_set_worker_threads"],
    ),
    (
        "ServeOptions.drop_timeout",
        &["gw_serve_options_set_drop_timeout_ms"],
    ),
    ("ServeOptions.logger", &["gw_callbacks.log"]),
    ("ServeOptions.on_state", &["gw_callbacks.state"]),
    ("ServeOptions.handlers", &["gw_callbacks.handlers"]),
    ("ServeOptions.http", &["gw_serve_options_add_http_route"]),
    ("HttpOptions.routes", &["gw_serve_options_add_http_route"]),
    (
        "HttpOptions.control_ui",
        &["gw_serve_options_set_control_ui"],
    ),
    (
        "HttpOptions.websocket_paths",
        &["gw_serve_options_add_websocket_path"],
    ),
    (
        "HttpOptions.max_header_bytes",
        &["gw_serve_options_set_http_max_header_bytes"],
    ),
    (
        "HttpOptions.max_connections",
        &["gw_serve_options_set_http_max_connections"],
    ),
    (
        "HttpOptions.header_timeout",
        &["gw_serve_options_set_http_header_timeout_ms"],
    ),
    (
        "HttpOptions.body_idle_timeout",
        &["gw_serve_options_set_http_body_idle_timeout_ms"],
    ),
    (
        "HttpOptions.strict_transport_security",
        &["gw_serve_options_set_http_strict_transport_security"],
    ),
    (
        "ControlUiOptions.root",
        &["gw_serve_options_set_control_ui"],
    ),
    (
        "ControlUiOptions.base_path",
        &["gw_serve_options_set_control_ui"],
    ),
    (
        "ControlUiOptions.build_source",
        &["gw_serve_options_set_control_ui_bundled"],
    ),
    (
        "ControlUiOptions.config",
        &["gw_serve_options_set_control_ui_config_json"],
    ),
    (
        "ControlUiOptions.terminal_enabled",
        &["gw_serve_options_set_control_ui_terminal"],
    ),
    (
        "ControlUiOptions.environment",
        &["gw_serve_options_set_control_ui_environment_json"],
    ),
    (
        "PairingOptions.policy",
        &[
            "gw_serve_options_set_pairing_policy",
            "gw_pairing_decision_approve",
            "gw_pairing_decision_reject",
        ],
    ),
    (
        "PairingOptions.store_path",
        &["gw_serve_options_set_pairing_store_path"],
    ),
    (
        "ProtocolOptions.allowed_origins",
        &["gw_serve_options_add_allowed_origin"],
    ),
    (
        "ProtocolOptions.handshake_timeout",
        &["gw_serve_options_set_handshake_timeout_ms"],
    ),
    (
        "ProtocolOptions.tick_interval",
        &["gw_serve_options_set_tick_interval_ms"],
    ),
    (
        "ProtocolOptions.ping_interval",
        &["gw_serve_options_set_ping_interval_ms"],
    ),
    (
        "ProtocolOptions.request_timeout",
        &["gw_serve_options_set_request_timeout_ms"],
    ),
    (
        "ProtocolOptions.max_connections",
        &["gw_serve_options_set_max_connections"],
    ),
    (
        "ProtocolOptions.max_preauth_payload",
        &["gw_serve_options_set_max_preauth_payload"],
    ),
    (
        "ProtocolOptions.max_payload",
        &["gw_serve_options_set_max_payload"],
    ),
    (
        "ProtocolOptions.max_buffered_bytes",
        &["gw_serve_options_set_max_buffered_bytes"],
    ),
    (
        "ProtocolOptions.auth_throttle",
        &["gw_serve_options_set_auth_throttle"],
    ),
    (
        "ProtocolOptions.server_version",
        &["gw_serve_options_set_server_version"],
    ),
    (
        "ProtocolOptions.build_id",
        &["gw_serve_options_set_build_id"],
    ),
    (
        "ProtocolOptions.capabilities",
        &["gw_serve_options_add_capability"],
    ),
    (
        "ProtocolOptions.challenge_capabilities",
        &["gw_serve_options_add_challenge_capability"],
    ),
    (
        "ProtocolOptions.health_refresh_interval",
        &["gw_serve_options_set_health_refresh_interval_ms"],
    ),
    (
        "ProtocolOptions.health_source",
        &["gw_serve_options_set_health_source", "gw_health_reply_set"],
    ),
    (
        "AuthThrottle.max_failures",
        &["gw_serve_options_set_auth_throttle"],
    ),
    (
        "AuthThrottle.window",
        &["gw_serve_options_set_auth_throttle"],
    ),
    (
        "AuthThrottle.lockout",
        &["gw_serve_options_set_auth_throttle"],
    ),
    (
        "Handlers::method",
        &["gw_handlers_add_method", "gw_callbacks.on_request"],
    ),
    ("Handlers::method_with_scope", &["gw_handlers_add_method"]),
    ("Handlers::method_handler", &["gw_handlers_add_method"]),
    ("Handlers::add_method", &["gw_handlers_add_method"]),
    ("Handlers::event", &["gw_handlers_add_event"]),
    ("Handlers::add_event", &["gw_handlers_add_event"]),
    (
        "Handlers::event_with_scope",
        &["gw_handlers_add_event_with_scope"],
    ),
    (
        "Handlers::add_event_with_scope",
        &["gw_handlers_add_event_with_scope"],
    ),
    // C refuses a registration when it is made, with the same message.
    (
        "Handlers::refused",
        &[
            "gw_handlers_add_method",
            "gw_handlers_add_event",
            "gw_handlers_add_event_with_scope",
        ],
    ),
    ("Handlers::on_connection", &["gw_callbacks.on_connection"]),
    ("GatewayHandle::broadcast", &["gw_broadcast"]),
    ("GatewayHandle::send_event", &["gw_send_event"]),
    ("GatewayHandle::respond", &["gw_respond"]),
    ("GatewayHandle::set_health", &["gw_set_health"]),
    ("GatewayHandle::presence", &["gw_server_presence"]),
    (
        "GatewayHandle::connection_count",
        &["gw_server_connection_count"],
    ),
    (
        "GatewayHandle::pairing_requests",
        &["gw_pairing_requests", "gw_string_free"],
    ),
    ("GatewayHandle::approve_pairing", &["gw_pairing_approve"]),
    ("GatewayHandle::reject_pairing", &["gw_pairing_reject"]),
    (
        "GatewayHandle::paired_devices",
        &["gw_paired_devices", "gw_string_free"],
    ),
    (
        "GatewayHandle::remove_paired_device",
        &["gw_paired_device_remove"],
    ),
    (
        "GatewayHandle::revoke_device_token",
        &["gw_device_token_revoke"],
    ),
    (
        "GatewayHandle::issue_bootstrap_token",
        &["gw_bootstrap_token_issue", "gw_string_free"],
    ),
    ("GatewayLock::acquire", &["gw_lock_acquire"]),
    (
        "GatewayLock::acquire_with_listener",
        &["gw_lock_acquire_with_listener"],
    ),
    ("GatewayLock::port", &["gw_lock_port"]),
    ("GatewayLock::is_lost", &["gw_lock_is_lost"]),
    // Polled on a lock; told through the state callback (LOCK_LOST) once served.
    (
        "GatewayLock::on_lost",
        &["gw_lock_is_lost", "gw_callbacks.state"],
    ),
    ("GatewayLock::release", &["gw_lock_release"]),
    ("Gateway::serve", &["gw_serve"]),
    ("Gateway::port", &["gw_server_port"]),
    ("Gateway::shutdown", &["gw_shutdown"]),
    ("Responder::id", &["gw_callbacks.on_request"]),
    ("Responder::respond", &["gw_respond"]),
    ("MethodRequest::conn_id", &["gw_callbacks.on_request"]),
    // `client_json` carries the whole ClientInfo.
    ("ClientInfo::client_id", &["gw_callbacks.on_connection"]),
    ("ClientInfo::mode", &["gw_callbacks.on_connection"]),
    ("ClientInfo::to_json", &["gw_callbacks.on_connection"]),
];

/// Public items of the walked impls and structs that are not knobs, and why a C host needs no
/// counterpart. An entry whose Rust item is gone fails the test, as does one that is also in
/// `C_COUNTERPARTS`.
const NOT_KNOBS: &[(&str, &str)] = &[
    (
        "ClusterOptions::backend",
        "a store of the host's own is a Rust trait object; C hosts name etcd",
    ),
    (
        "Leadership::valid_for",
        "a C host asks gw_lock_is_leader / gw_server_is_leader right before each act instead",
    ),
    (
        "Leadership::cluster",
        "the cluster's name the host set itself (or gw_lock_cluster_leader's store read)",
    ),
    (
        "Leadership::key",
        "the store key is derived from the name; a C host never touches it",
    ),
    (
        "ServeOptions.protocol",
        "a struct of knobs, each walked as ProtocolOptions.* above",
    ),
    (
        "ServeOptions.pairing",
        "a struct of knobs, each walked as PairingOptions.* above",
    ),
    (
        "ServeOptions::validate",
        "every gw_serve_options setter refuses what validate refuses, when it is called",
    ),
    (
        "GatewayLock::resolved",
        "the options as resolved: the host set them, and the port, the one it cannot know, \
         is gw_lock_port",
    ),
    (
        "GatewayLock::owner_id",
        "the random id in the lock files, compared by the library's own reclaim and release",
    ),
    (
        "GatewayLock::lock_paths",
        "the files are the library's; a host looks at the holder with gw_lock_status",
    ),
    (
        "GatewayLock::local_addrs",
        "the addresses are the bind the host chose; the port is gw_lock_port",
    ),
    (
        "GatewayLock::logger",
        "a getter for the log the host set itself with gw_options_set_log",
    ),
    (
        "Gateway::local_addrs",
        "the addresses are the bind the host chose; the port is gw_server_port",
    ),
    (
        "Gateway::phase",
        "the state callback tells every change of phase (READY, STOPPED)",
    ),
    (
        "Gateway::lock",
        "reached for is_lost/on_lost, which a served C host gets as GW_STATE_LOCK_LOST",
    ),
    (
        "Gateway::handle",
        "C's gw_server is the handle: GatewayHandle's methods are walked above",
    ),
    (
        "Responder::handle",
        "on_request is given the gw_server itself",
    ),
];

/// The lines of the block that opens with `opening` in some file under `src/` (wherever the
/// server's files move), up to its closing `}` at the start of a line.
fn rust_block(opening: &str) -> Vec<String> {
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut sources = Vec::new();
    files(&Path::new(ROOT).join("src"), &mut sources);
    let mut found = Vec::new();
    for source in sources {
        let text = std::fs::read_to_string(&source).unwrap();
        let mut lines = text.lines().skip_while(|line| *line != opening);
        if lines.next().is_some() {
            found.extend(lines.take_while(|line| *line != "}").map(str::to_owned));
        }
    }
    assert!(!found.is_empty(), "no `{opening}` block under src/");
    found
}

/// `pub name:` fields of a struct, `Struct.name`.
fn rust_fields(name: &str) -> Vec<String> {
    rust_block(&format!("pub struct {name} {{"))
        .iter()
        .filter_map(|line| line.strip_prefix("    pub "))
        .filter_map(|rest| rest.split_once(':'))
        .map(|(field, _)| format!("{name}.{field}"))
        .collect()
}

/// `pub fn` methods of an impl block, `Type::name`; with `builders_only`, those that take
/// `mut self` (the builder's setters) and the other constructors that return options.
fn rust_methods(name: &str, builders_only: bool) -> Vec<String> {
    rust_block(&format!("impl {name} {{"))
        .iter()
        .filter_map(|line| line.strip_prefix("    pub fn "))
        .filter(|rest| {
            !builders_only || rest.contains("(mut self") || rest.starts_with("from_env(")
        })
        .filter_map(|rest| rest.split(['(', '<']).next())
        .filter(|method| *method != "new")
        .map(|method| format!("{name}::{method}"))
        .collect()
}

/// Whether include/gateway.h declares the function or the struct field `name`.
fn in_header(header: &str, name: &str) -> bool {
    match name.split_once('.') {
        None => header.contains(&format!(" {name}(")) || header.contains(&format!("*{name}(")),
        Some((structure, field)) => header
            .split_once(&format!("typedef struct {structure} {{"))
            .and_then(|(_, rest)| rest.split_once("} "))
            .is_some_and(|(body, _)| {
                body.lines()
                    .filter_map(|line| line.trim().strip_suffix(';'))
                    .any(|declaration| {
                        declaration.ends_with(&format!(" {field}"))
                            || declaration.ends_with(&format!("*{field}"))
                    })
            }),
    }
}

/// The issue's rule: no knob exists in Rust that C cannot reach. A Rust option added without a
/// C counterpart (and an entry above) fails here; so does an entry whose C name is gone.
#[test]
fn every_rust_knob_has_a_c_counterpart() {
    let mut knobs = rust_methods("GatewayOptions", true);
    for structure in [
        "ServeOptions",
        "ProtocolOptions",
        "AuthThrottle",
        "PairingOptions",
        "HttpOptions",
        "ControlUiOptions",
    ] {
        knobs.extend(rust_fields(structure));
    }
    knobs.extend(rust_methods("ClusterOptions", true));
    for host_facing in [
        "Handlers",
        "GatewayHandle",
        "GatewayLock",
        "Gateway",
        "ServeOptions",
        "Responder",
        "MethodRequest",
        "ClientInfo",
        "Leadership",
    ] {
        knobs.extend(rust_methods(host_facing, false));
    }
    // Spot checks that the reading works: a knob of each kind is found.
    for known in [
        "GatewayOptions::port",
        "GatewayOptions::from_env",
        "ServeOptions.worker_threads",
        "ProtocolOptions.max_connections",
        "AuthThrottle.lockout",
        "Handlers::add_method",
        "GatewayHandle::set_health",
        "GatewayLock::acquire_with_listener",
        "Gateway::shutdown",
        "ServeOptions::validate",
    ] {
        assert!(
            knobs.iter().any(|k| k == known),
            "{known} not read from src/: {knobs:#?}"
        );
    }

    let table: std::collections::HashMap<&str, &[&str]> = C_COUNTERPARTS.iter().copied().collect();
    let not_knobs: std::collections::HashMap<&str, &str> = NOT_KNOBS.iter().copied().collect();
    let both: Vec<&&str> = not_knobs
        .keys()
        .filter(|k| table.contains_key(*k))
        .collect();
    assert!(
        both.is_empty(),
        "in both C_COUNTERPARTS and NOT_KNOBS: {both:?}"
    );
    let gone: Vec<&&str> = not_knobs
        .keys()
        .filter(|k| !knobs.iter().any(|n| n == *k))
        .collect();
    assert!(
        gone.is_empty(),
        "NOT_KNOBS names Rust items that are gone: {gone:?}"
    );
    knobs.retain(|k| !not_knobs.contains_key(k.as_str()));
    let missing: Vec<&String> = knobs
        .iter()
        .filter(|k| !table.contains_key(k.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "Rust knobs with no C counterpart: {missing:?}. Add the C function (src/ffi/), then an \
         entry in C_COUNTERPARTS (or, when it is no knob, say why in NOT_KNOBS)"
    );
    let stale: Vec<&&str> = table
        .keys()
        .filter(|k| !knobs.iter().any(|n| n == *k))
        .collect();
    assert!(
        stale.is_empty(),
        "C_COUNTERPARTS names Rust knobs that are gone: {stale:?}"
    );

    let header = std::fs::read_to_string(Path::new(ROOT).join("include/gateway.h")).unwrap();
    let absent: Vec<&str> = C_COUNTERPARTS
        .iter()
        .flat_map(|(_, names)| names.iter().copied())
        .filter(|name| !in_header(&header, name))
        .collect();
    assert!(absent.is_empty(), "not in include/gateway.h: {absent:?}");

    // Variants are matched exhaustively: a new one does not compile until it has its setter.
    let bind = |mode: &gateway::BindMode| match mode {
        gateway::BindMode::Loopback => "gw_options_set_bind_loopback",
        gateway::BindMode::Lan => "gw_options_set_bind_lan",
        gateway::BindMode::Custom(_) => "gw_options_set_bind_host",
    };
    let auth = |auth: &gateway::Auth| match auth {
        gateway::Auth::None => "gw_options_set_auth_none",
        gateway::Auth::Token(_) => "gw_options_set_auth_token",
        gateway::Auth::Password(_) => "gw_options_set_auth_password",
    };
    let variants = [
        bind(&gateway::BindMode::Loopback),
        bind(&gateway::BindMode::Lan),
        bind(&gateway::BindMode::Custom(String::new())),
        auth(&gateway::Auth::None),
        auth(&gateway::Auth::Token(String::new())),
        auth(&gateway::Auth::Password(String::new())),
    ];
    for name in variants {
        assert!(in_header(&header, name), "{name} not in include/gateway.h");
    }
}

/// `gw_options` for a gateway whose files all live under `dir`, on an ephemeral port.
fn c_options(dir: &Path) -> *mut gateway::ffi::gw_options {
    use gateway::ffi::*;
    let text = |path: PathBuf| std::ffi::CString::new(path.into_os_string().into_encoded_bytes());
    let options = gw_options_new();
    let state = text(dir.join("state")).unwrap();
    let config = text(dir.join("state/openclaw.json")).unwrap();
    let locks = text(dir.join("locks")).unwrap();
    // SAFETY: a live gw_options and NUL-terminated strings.
    unsafe {
        assert_eq!(
            gw_options_set_state_dir(options, state.as_ptr()),
            gw_result::GW_OK
        );
        assert_eq!(
            gw_options_set_config_path(options, config.as_ptr()),
            gw_result::GW_OK
        );
        assert_eq!(
            gw_options_set_lock_dir(options, locks.as_ptr()),
            gw_result::GW_OK
        );
        assert_eq!(gw_options_set_port(options, 0), gw_result::GW_OK);
    }
    options
}

/// The host of `opened_comes_before_requests_even_before_gw_serve_returns`: what its callbacks
/// saw, in order, and the client it starts from inside `gw_serve`.
struct OrderHost {
    port: u16,
    seen: std::sync::Mutex<Vec<String>>,
    changed: std::sync::Condvar,
    client: std::sync::Mutex<Option<std::thread::JoinHandle<Value>>>,
}

impl OrderHost {
    fn note(&self, what: String) {
        self.seen.lock().unwrap().push(what);
        self.changed.notify_all();
    }
}

unsafe extern "C" fn order_state(
    userdata: *mut std::ffi::c_void,
    state: gateway::ffi::gw_state,
    _: gateway::ffi::gw_result,
) {
    // SAFETY: the test's OrderHost, alive until gw_shutdown returned.
    let host = unsafe { &*userdata.cast::<OrderHost>() };
    if state != gateway::ffi::gw_state::GW_STATE_READY {
        return;
    }
    // READY runs on the thread in gw_serve: keep gw_serve from returning until a client has
    // connected and called a method.
    let port = host.port;
    *host.client.lock().unwrap() = Some(std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut params = connect_params();
                params["scopes"] = json!(["operator.read"]);
                let (mut client, _hello) = Client::connected(port, params).await;
                // on_connection's event comes first (sent after hello-ok).
                let event = client.recv().await;
                let answer = client.call("r1", "echo", json!({})).await;
                json!({"event": event, "answer": answer})
            })
    }));
    let seen = host.seen.lock().unwrap();
    let _seen = host
        .changed
        .wait_timeout_while(seen, Duration::from_secs(20), |seen| {
            !seen.iter().any(|s| s.starts_with("request"))
        })
        .unwrap();
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn order_request(
    userdata: *mut std::ffi::c_void,
    server: *mut gateway::ffi::gw_server,
    request: gateway::ffi::gw_request_id,
    _: *const std::ffi::c_char,
    _: usize,
    _: *const std::ffi::c_char,
    _: usize,
    conn_id: u64,
) {
    // SAFETY: the test's OrderHost; `server` is live during the call.
    let (host, answered) = unsafe {
        (
            &*userdata.cast::<OrderHost>(),
            gateway::ffi::gw_respond(server, request, true, c"{}".as_ptr(), 2),
        )
    };
    host.note(format!("request {conn_id} answered {answered:?}"));
}

unsafe extern "C" fn order_connection(
    userdata: *mut std::ffi::c_void,
    server: *mut gateway::ffi::gw_server,
    conn_id: u64,
    opened: bool,
    _: *const std::ffi::c_char,
    _: usize,
) {
    // SAFETY: the test's OrderHost; `server` is live during the call.
    let (host, sent) = unsafe {
        (
            &*userdata.cast::<OrderHost>(),
            gateway::ffi::gw_send_event(server, conn_id, c"demo.hi".as_ptr(), c"1".as_ptr(), 1),
        )
    };
    match opened {
        true => host.note(format!("opened {conn_id} sent {sent:?}")),
        false => host.note(format!("closed {conn_id}")),
    }
}

/// ROUND2 item 1: `on_connection` runs where the Rust observer runs, so a client that connects
/// while `gw_serve` is still running is announced before its first request, and the server it
/// is given already serves.
#[test]
fn opened_comes_before_requests_even_before_gw_serve_returns() {
    use gateway::ffi::*;
    let env = TestEnv::new();
    let options = c_options(&env.home());
    let mut lock = std::ptr::null_mut();
    // SAFETY: live options, a writable out.
    let acquired = unsafe { gw_lock_acquire(options, &mut lock) };
    assert_eq!(acquired, gw_result::GW_OK);
    let host = OrderHost {
        // SAFETY: a live lock.
        port: unsafe { gw_lock_port(lock) },
        seen: Default::default(),
        changed: Default::default(),
        client: Default::default(),
    };
    let handlers = gw_handlers_new();
    // SAFETY: live handlers, NUL-terminated names.
    unsafe {
        assert_eq!(
            gw_handlers_add_method(handlers, c"echo".as_ptr(), c"operator.read".as_ptr()),
            gw_result::GW_OK
        );
        // Sent by `on_connection` to its client, which holds operator.read.
        assert_eq!(
            gw_handlers_add_event(handlers, c"demo.hi".as_ptr()),
            gw_result::GW_OK
        );
    }
    let callbacks = gw_callbacks {
        size: size_of::<gw_callbacks>(),
        userdata: (&raw const host).cast_mut().cast(),
        log: None,
        state: Some(order_state),
        free_userdata: None,
        on_request: Some(order_request),
        on_connection: Some(order_connection),
        handlers,
    };
    let mut server = std::ptr::null_mut();
    // SAFETY: the lock is handed over; the callbacks and handlers are whole and live.
    let served = unsafe { gw_serve(lock, &callbacks, std::ptr::null(), &mut server) };
    assert_eq!(served, gw_result::GW_OK);
    // SAFETY: copied by gw_serve.
    unsafe { gw_handlers_free(handlers) };
    let client = host.client.lock().unwrap().take().unwrap().join().unwrap();
    assert_eq!(client["event"]["event"], "demo.hi", "{client}");
    assert_eq!(client["answer"]["ok"], json!(true), "{client}");
    let seen = host.seen.lock().unwrap().clone();
    let conn: u64 = seen[0]
        .split(' ')
        .nth(1)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("{seen:?}"));
    assert_eq!(
        seen[..2],
        [
            format!("opened {conn} sent GW_OK"),
            format!("request {conn} answered GW_OK")
        ],
        "the order on_connection/on_request saw"
    );
    // SAFETY: the server gw_serve gave; the options are ours.
    unsafe {
        assert_eq!(gw_shutdown(server, 2000), gw_result::GW_OK);
        gw_options_free(options);
    }
}

/// `gw_lock_acquire_with_listener` adopts a real listening socket: the lock's port is the
/// socket's and clients reach the gateway served on it; a socket that is not a listening TCP
/// one is refused and closed, as is any fd on a NULL argument.
#[test]
fn a_c_host_can_hand_over_its_listening_socket() {
    use gateway::ffi::*;
    use std::io::Read;
    use std::os::fd::IntoRawFd;
    let env = TestEnv::new();
    let options = c_options(&env.home());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut lock = std::ptr::null_mut();
    // SAFETY: live options, a listening socket we give up, a writable out.
    let acquired =
        unsafe { gw_lock_acquire_with_listener(options, listener.into_raw_fd(), &mut lock) };
    assert_eq!(acquired, gw_result::GW_OK);
    // SAFETY: a live lock.
    assert_eq!(unsafe { gw_lock_port(lock) }, port);
    let mut server = std::ptr::null_mut();
    // SAFETY: the lock is handed over; a writable out.
    let served = unsafe { gw_serve(lock, std::ptr::null(), std::ptr::null(), &mut server) };
    assert_eq!(served, gw_result::GW_OK);
    let hello = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { Client::connected(port, connect_params()).await.1 });
    assert_eq!(hello["type"], "hello-ok", "{hello}");
    // SAFETY: the server gw_serve gave.
    assert_eq!(unsafe { gw_shutdown(server, 2000) }, gw_result::GW_OK);

    // Refused sockets are closed: the peer of each sees end of file.
    type Acquire = fn(*const gw_options, i32) -> gw_result;
    let refusals: [(Acquire, gw_result, &str); 3] = [
        (
            // SAFETY: live options, an fd we give up, a writable out.
            |options, fd| unsafe {
                gw_lock_acquire_with_listener(options, fd, &mut std::ptr::null_mut())
            },
            gw_result::GW_ERR_INVALID_ARGUMENT,
            "gw_lock_acquire_with_listener: fd ",
        ),
        (
            // SAFETY: an fd we give up; NULL options are refused.
            |_, fd| unsafe {
                gw_lock_acquire_with_listener(std::ptr::null(), fd, &mut std::ptr::null_mut())
            },
            gw_result::GW_ERR_NULL_ARGUMENT,
            "gw_lock_acquire_with_listener: options is NULL",
        ),
        (
            // SAFETY: live options, an fd we give up; a NULL out is refused.
            |options, fd| unsafe {
                gw_lock_acquire_with_listener(options, fd, std::ptr::null_mut())
            },
            gw_result::GW_ERR_NULL_ARGUMENT,
            "gw_lock_acquire_with_listener: out is NULL",
        ),
    ];
    for (acquire, want, message) in refusals {
        let (given, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(acquire(options, given.into_raw_fd()), want);
        // SAFETY: a NUL-terminated string valid until the next failure on this thread.
        let error = unsafe { std::ffi::CStr::from_ptr(gw_last_error_message()) };
        let error = error.to_string_lossy();
        assert!(error.starts_with(message), "{error}");
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(peer.read(&mut [0; 1]).unwrap(), 0, "the fd was not closed");
    }
    // SAFETY: ours.
    unsafe { gw_options_free(options) };
}

/// Cluster mode from C and C++ (issue 14) against a real etcd: `tests/c/test_cluster.c` and
/// `tests/cpp/test_cluster.cpp`, given the members' client URLs in `GATEWAY_TEST_ETCD`.
#[cfg(all(target_os = "linux", feature = "cluster-etcd"))]
mod cluster {
    use super::*;
    use common::etcd::EtcdCluster;

    const C_CLUSTER_CASES: [&str; 2] = ["options_and_unreachable_store", "leader_and_standbys"];
    const CPP_CLUSTER_CASES: [&str; 3] = [
        "cluster_options",
        "leader_and_standbys",
        "without_cluster_mode",
    ];
    /// `test_cluster lose`'s lease TTL (ms), the shortest there is.
    const LOSE_TTL: Duration = Duration::from_secs(3);

    struct ClusterPrograms {
        c: PathBuf,
        cpp: PathBuf,
    }

    fn cluster_programs(mode: Mode) -> &'static ClusterPrograms {
        static PLAIN: OnceLock<ClusterPrograms> = OnceLock::new();
        static SANITIZED: OnceLock<ClusterPrograms> = OnceLock::new();
        let cell = match mode {
            Mode::Plain => &PLAIN,
            Mode::Sanitized => &SANITIZED,
        };
        cell.get_or_init(|| ClusterPrograms {
            c: compile(
                mode,
                false,
                "test_cluster",
                &["tests/c/test_cluster.c"],
                &["include"],
            ),
            cpp: compile(
                mode,
                true,
                "test_cpp_cluster",
                &["tests/cpp/test_cluster.cpp"],
                &["include", "bindings/cpp"],
            ),
        })
    }

    /// Runs `program` (`args` then the home) against `etcd` as `mode` says; checks its cases.
    fn suite(
        etcd: &EtcdCluster,
        program: &Path,
        mode: Mode,
        valgrind: bool,
        args: &[&str],
        cases: &[&str],
    ) {
        let env = TestEnv::new();
        let mut command = match (mode, valgrind) {
            (_, true) => under_valgrind(program, &env.home()),
            (Mode::Sanitized, false) => sanitized(program, &env.home()),
            (Mode::Plain, false) => scrubbed(program, &env.home()),
        };
        command.env("GATEWAY_TEST_ETCD", etcd.endpoints().join(","));
        let what = format!("{} {args:?}", program.display());
        let output = run_checked(command.args(args).arg(env.home()), &what);
        assert_suite(&output, cases);
    }

    /// A leader with a fencing token, a standby refused with the leader's pid, port and host as
    /// typed values, a standby's wait cancelled from another thread, a bounded wait running
    /// out, a standby taking over with a larger token when the leader lets go, the leader read
    /// by `gw_lock_cluster_leader`, an unreachable store and bad options as typed errors.
    #[test]
    fn c_and_cpp_hosts_lead_stand_by_and_take_over() {
        let etcd = EtcdCluster::start(1);
        let programs = cluster_programs(Mode::Plain);
        suite(
            &etcd,
            &programs.c,
            Mode::Plain,
            false,
            &["all"],
            &C_CLUSTER_CASES,
        );
        suite(
            &etcd,
            &programs.cpp,
            Mode::Plain,
            false,
            &[],
            &CPP_CLUSTER_CASES,
        );
    }

    #[test]
    fn cluster_mode_from_c_and_cpp_under_asan_ubsan_and_valgrind() {
        let etcd = EtcdCluster::start(1);
        let sanitized = cluster_programs(Mode::Sanitized);
        suite(
            &etcd,
            &sanitized.c,
            Mode::Sanitized,
            false,
            &["all"],
            &C_CLUSTER_CASES,
        );
        suite(
            &etcd,
            &sanitized.cpp,
            Mode::Sanitized,
            false,
            &[],
            &CPP_CLUSTER_CASES,
        );
        let plain = cluster_programs(Mode::Plain);
        suite(
            &etcd,
            &plain.c,
            Mode::Plain,
            true,
            &["all"],
            &C_CLUSTER_CASES,
        );
        suite(
            &etcd,
            &plain.cpp,
            Mode::Plain,
            true,
            &[],
            &CPP_CLUSTER_CASES,
        );
        drop(etcd);
        leadership_lost(Mode::Sanitized);
    }

    /// The store stops answering (its only member SIGSTOPped): the C host's server stops
    /// serving as leader before the lease could expire (within the TTL of the stop), the state
    /// callback hears `GW_STATE_LOCK_LOST` with `GW_ERR_LEADERSHIP_LOST`, and
    /// `gw_server_is_leader` already says false. With the store back, the host stands by and
    /// leads again with a larger fencing token.
    #[test]
    fn a_c_host_hears_leadership_lost_when_the_store_stops_answering() {
        leadership_lost(Mode::Plain);
    }

    /// `test_cluster lose` as `mode` says; the TTL bound is asserted on the plain build (the
    /// sanitized one runs the same path for its memory and thread checks, and prints its time).
    fn leadership_lost(mode: Mode) {
        let etcd = EtcdCluster::start(1);
        let env = TestEnv::new();
        let program = &cluster_programs(mode).c;
        let mut command = match mode {
            Mode::Plain => scrubbed(program, &env.home()),
            Mode::Sanitized => sanitized(program, &env.home()),
        };
        command.env("GATEWAY_TEST_ETCD", etcd.endpoints().join(","));
        let (mut child, mut stdin, mut lines) = spawn_host(&mut command, "lose", &env.home());
        let token: u64 = lines
            .expect("leading ", Duration::from_secs(30))
            .parse()
            .unwrap();
        assert!(token > 0);

        let member = etcd.pid(0).expect("the member runs") as libc::pid_t;
        // SAFETY: a signal to the etcd member this test started (and still owns).
        assert_eq!(unsafe { libc::kill(member, libc::SIGSTOP) }, 0);
        let stopped = Instant::now();
        let lost = lines.expect("lost ", Duration::from_secs(30));
        let fenced_after = stopped.elapsed();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(member, libc::SIGCONT) }, 0);
        assert_eq!(lost, "GW_ERR_LEADERSHIP_LOST leader=0");
        eprintln!(
            "{mode:?}: leadership lost {fenced_after:?} after the store stopped (TTL {LOSE_TTL:?})"
        );
        assert!(
            mode != Mode::Plain || fenced_after < LOSE_TTL,
            "the host heard of its lost leadership {fenced_after:?} after the store stopped, \
             past the lease's TTL {LOSE_TTL:?}"
        );

        command_line(&mut stdin, "resume");
        let again: u64 = lines
            .expect("leading-again ", Duration::from_secs(30))
            .parse()
            .unwrap();
        assert!(again > token, "token {again} after {token}");
        let status =
            wait_with_timeout(&mut child, Duration::from_secs(10)).expect("the host exits");
        assert!(status.success(), "{status}; saw {:#?}", lines.seen);
    }
}
