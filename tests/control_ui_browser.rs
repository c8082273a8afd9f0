//! The real Control UI of `openclaw` 2026.9.6 in a real browser (issue 12, "In a real
//! browser"): `gateway run --control-ui <the package's dist/control-ui>` serves it, headless
//! Chromium loads it with the gateway token in the URL fragment (Node's dashboard URL), the
//! app makes its own WebCrypto device identity, is paired silently on loopback, and shows
//! itself connected. Both sides are checked: the page's DOM, and the gateway's
//! `system-presence`, which lists the client `openclaw-control-ui`. The same page served under
//! a foreign origin is refused as Node refuses it.
//!
//! Needs the `openclaw` package and Chromium: `scripts/node-interop.sh` runs these with
//! `--ignored` (the package where it installs it, or next to `$GATEWAY_OPENCLAW`).

mod browser;
mod common;
mod wsclient;

use std::path::PathBuf;
use std::time::Duration;

use browser::Browser;
use common::*;
use serde_json::{Value, json};
use wsclient::{Client, cli_params};

const TOKEN: &str = "browser-test-token";

/// How long the app may take from navigation to connected: generous for a loaded 2-core
/// machine (it loads ~2 MB of modules); a page that connects never waits for it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(90);

/// The app's own connected state: the sidebar footer's status text, which the app renders as
/// "Connected" only while its gateway client is connected (control-ui-boot-shared: `n_`,
/// `e.connected ? nav.gateway.connected`).
const CONNECTED: &str = r#"Array.from(document.querySelectorAll('.sidebar-footer-bar .sr-only')).some(e => e.textContent.trim() === 'Connected')"#;

/// `dist/control-ui` of the installed package: next to `$GATEWAY_OPENCLAW` (its
/// `openclaw.mjs`), else where `scripts/node-interop.sh` installs it.
fn package_ui() -> PathBuf {
    let entry = std::env::var_os("GATEWAY_OPENCLAW")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/node-interop/node_modules/openclaw/openclaw.mjs")
        });
    let ui = entry.parent().unwrap().join("dist/control-ui");
    assert!(
        ui.join("index.html").is_file(),
        "no Control UI at {}: run scripts/node-interop.sh (it installs openclaw 2026.9.6)",
        ui.display()
    );
    ui
}

/// `gateway run --auth token --control-ui <package UI>` on a test port.
fn serve_package_ui(env: &TestEnv) -> GatewayProcess {
    let ui = package_ui();
    let port = free_port().to_string();
    env.start(&[
        "--port",
        &port,
        "--auth",
        "token",
        "--token",
        TOKEN,
        "--control-ui",
        ui.to_str().unwrap(),
    ])
}

/// The gateway's `system-presence`, read by an operator CLI client of its own.
async fn presence(port: u16) -> Vec<Value> {
    let (mut reader, _) = Client::connected(
        port,
        cli_params(TOKEN, &["operator.read"], "presence-reader"),
    )
    .await;
    let res = reader.call("sp", "system-presence", json!({})).await;
    assert_eq!(res["ok"], true, "{res}");
    res["payload"].as_array().cloned().unwrap_or_default()
}

fn control_ui_rows(rows: &[Value]) -> Vec<&Value> {
    rows.iter()
        .filter(|row| row["clientId"] == "openclaw-control-ui")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the openclaw package and chromium: scripts/node-interop.sh"]
async fn the_real_control_ui_signs_in_and_shows_itself_connected() {
    let env = TestEnv::new();
    let gateway = serve_package_ui(&env);
    assert!(
        control_ui_rows(&presence(gateway.port).await).is_empty(),
        "no Control UI before the browser"
    );

    let mut browser = Browser::launch(1280, 720).await;
    browser
        .navigate(&format!("http://127.0.0.1:{}/#token={TOKEN}", gateway.port))
        .await;
    let connected = browser.wait_for(CONNECTED, CONNECT_TIMEOUT).await;
    // The app's Settings › Gateway page says it too, in words a person reads (and the
    // screenshot shows): `Connected to 127.0.0.1:<port>`.
    let settings_say = format!(
        "document.body.innerText.includes('Connected to 127.0.0.1:{}')",
        gateway.port
    );
    let settings_connected = connected && {
        browser.eval(&click(".sidebar-identity-card", "")).await;
        browser
            .wait_for(&visible_text("Settings"), CONNECT_TIMEOUT)
            .await;
        browser
            .eval(&click("button, [role=menuitem]", "Settings"))
            .await;
        browser
            .wait_for(&visible_text("CONNECTIONS"), CONNECT_TIMEOUT)
            .await;
        browser.eval(&click("a, button", "Gateway")).await;
        browser.wait_for(&settings_say, CONNECT_TIMEOUT).await
    };
    let shot = browser.screenshot().await;
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("control-ui-connected.png");
    std::fs::write(&path, &shot).unwrap();
    let text = browser.eval("document.body.innerText").await;
    assert!(
        connected,
        "the page never said Connected (screenshot {}); it shows: {text}",
        path.display()
    );
    assert!(
        settings_connected,
        "Settings › Gateway does not say connected (screenshot {}): {text}",
        path.display()
    );
    // The app took the token from the fragment and removed it from the address bar.
    let href = browser.eval("location.href").await;
    assert!(!href.as_str().unwrap().contains(TOKEN), "{href}");

    // The gateway's side: the app is a present operator with a device identity of its own,
    // which the gateway paired without asking (a loopback browser, SPEC §11.5).
    let rows = presence(gateway.port).await;
    let ui = control_ui_rows(&rows);
    assert_eq!(ui.len(), 1, "one openclaw-control-ui in {rows:?}");
    assert_eq!(ui[0]["mode"], "webchat", "{}", ui[0]);
    assert!(
        ui[0]["deviceId"].as_str().is_some_and(|id| id.len() == 64),
        "signed in with its own device identity: {}",
        ui[0]
    );
    let paired = std::fs::read_to_string(env.state_dir().join(gateway::DEVICE_STORE_FILE))
        .unwrap_or_default();
    assert!(
        paired.contains(ui[0]["deviceId"].as_str().unwrap()),
        "the device is paired: {paired}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the openclaw package and chromium: scripts/node-interop.sh"]
async fn the_same_page_from_a_foreign_origin_is_refused() {
    let env = TestEnv::new();
    let gateway = serve_package_ui(&env);
    // `evil.example` resolves to the gateway: the page and its WebSocket are the gateway's,
    // but the origin (and Host) are a name the gateway has no reason to trust.
    let mut browser = Browser::launch_with(
        1280,
        720,
        &["--host-resolver-rules=MAP evil.example 127.0.0.1"],
    )
    .await;
    browser
        .navigate(&format!(
            "http://evil.example:{}/#token={TOKEN}",
            gateway.port
        ))
        .await;
    let refused = browser
        .wait_for(
            "document.body.innerText.includes('origin not allowed')",
            CONNECT_TIMEOUT,
        )
        .await;
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("control-ui-foreign-origin.png");
    std::fs::write(&path, browser.screenshot().await).unwrap();
    let text = browser.eval("document.body.innerText").await;
    assert!(
        refused,
        "the page shows no refusal ({}): {text}",
        path.display()
    );
    assert_eq!(browser.eval(CONNECTED).await, json!(false), "{text}");
    assert!(
        control_ui_rows(&presence(gateway.port).await).is_empty(),
        "a refused page is not present"
    );

    // What the page was told, read on the wire: Node's answer and close
    // (ws-origin-policy-D1kTEwPF.mjs:160-168; SPEC §13.2).
    let mut client = Client::open_with_headers(
        gateway.port,
        &[("origin", "http://evil.example"), ("host", "evil.example")],
    )
    .await;
    let res = client
        .connect_with(json!({
            "minProtocol": 4,
            "maxProtocol": 4,
            "client": {"id": "openclaw-control-ui", "version": "2026.9.6",
                       "platform": "web", "mode": "webchat"},
            "role": "operator",
            "auth": {"token": TOKEN, "password": TOKEN},
        }))
        .await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(
        res["error"]["details"]["code"], "CONTROL_UI_ORIGIN_NOT_ALLOWED",
        "{res}"
    );
    assert_eq!(
        res["error"]["details"]["reason"], "origin not allowed",
        "{res}"
    );
    let (code, _) = client.closed().await;
    assert_eq!(code, 1008);
}

/// JavaScript that clicks the first `selector` element whose text starts with `text`.
fn click(selector: &str, text: &str) -> String {
    format!(
        "Array.from(document.querySelectorAll('{selector}')).find(e => e.innerText.trim().startsWith('{text}')).click()"
    )
}

/// JavaScript: the page shows `text` somewhere.
fn visible_text(text: &str) -> String {
    format!("document.body.innerText.includes('{text}')")
}
