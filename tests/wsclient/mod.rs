//! A WebSocket client for the protocol tests (tokio-tungstenite), and an in-process gateway
//! on a test port with its own state dir. Used next to `common`.
#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gateway::{
    Auth, Gateway, GatewayLock, GatewayOptions, Handlers, ProtocolOptions, ServeOptions,
};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{TestEnv, free_port};

/// How long a test waits for any one frame.
pub const WAIT: Duration = Duration::from_secs(5);

/// How many times [`WAIT`] a client waits for a frame or a close: 1, unless a test that runs its
/// gateway under valgrind (20–50× slower) asked for more with [`be_patient`]. It only lengthens
/// how long a failing wait takes to fail; a frame that comes is taken at once.
static PATIENCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Every client of this test binary waits `factor` times [`WAIT`] from now on (the largest
/// factor asked for wins).
pub fn be_patient(factor: u32) {
    PATIENCE.fetch_max(factor, std::sync::atomic::Ordering::Relaxed);
}

/// How long a client waits for a frame or a close.
fn wait() -> Duration {
    WAIT * PATIENCE.load(std::sync::atomic::Ordering::Relaxed)
}

/// A gateway served in this process, and the test env its lock lives in.
pub struct TestGateway {
    pub gateway: Option<Gateway>,
    pub port: u16,
    _env: TestEnv,
}

impl TestGateway {
    pub fn start(auth: Auth, protocol: ProtocolOptions, handlers: Handlers) -> Self {
        Self::start_with(|options| options.auth(auth), protocol, handlers)
    }

    /// A gateway whose lock options (a test port in a fresh state dir) `configure` changes
    /// first: another bind address, say.
    pub fn start_with(
        configure: impl FnOnce(GatewayOptions) -> GatewayOptions,
        protocol: ProtocolOptions,
        handlers: Handlers,
    ) -> Self {
        let env = TestEnv::new();
        let options = configure(env.options().port(free_port()));
        let lock = GatewayLock::acquire(&options).unwrap();
        let port = lock.port();
        let gateway = Gateway::serve(
            lock,
            ServeOptions {
                worker_threads: 2,
                protocol,
                handlers,
                ..ServeOptions::default()
            },
        )
        .unwrap();
        Self {
            gateway: Some(gateway),
            port,
            _env: env,
        }
    }

    pub fn simple() -> Self {
        Self::start(Auth::None, ProtocolOptions::default(), Handlers::new())
    }

    pub fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().unwrap()
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Ws,
}

/// The `connect` params of a well-behaved operator client: a local backend
/// (`gateway-client`/`backend`), which OpenClaw lets connect over direct loopback without a
/// device identity and with the scopes it asks for (SPEC §11.4 row 2).
pub fn connect_params() -> Value {
    json!({
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {"id": "gateway-client", "version": "1.0.0", "platform": "linux", "mode": "backend"},
    })
}

impl Client {
    pub async fn open(port: u16) -> Self {
        Self::open_with(port, None).await
    }

    pub async fn open_with(port: u16, origin: Option<&str>) -> Self {
        let origin: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
        Self::open_with_headers(port, &origin).await
    }

    /// Opens a connection whose upgrade request carries `headers` besides the usual ones.
    pub async fn open_with_headers(port: u16, headers: &[(&str, &str)]) -> Self {
        let mut request = format!("ws://127.0.0.1:{port}/")
            .into_client_request()
            .unwrap();
        for (name, value) in headers {
            let name =
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .unwrap();
            request.headers_mut().insert(name, value.parse().unwrap());
        }
        // The client accepts anything the server may send (the server's limits are tested).
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), false)
            .await
            .expect("websocket upgrade");
        Self { ws }
    }

    /// The next text frame as JSON (pings and pongs skipped); panics on close or timeout.
    pub async fn recv(&mut self) -> Value {
        loop {
            match self.next().await {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next text frame that is not a `tick` event.
    pub async fn recv_skip_ticks(&mut self) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["event"] != "tick" {
                return frame;
            }
        }
    }

    pub async fn next(&mut self) -> Message {
        match tokio::time::timeout(wait(), self.ws.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(other) => panic!("connection ended: {other:?}"),
            Err(_) => panic!("no frame within {:?}", wait()),
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned().into()))
            .await
            .unwrap();
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::Binary(Bytes::copy_from_slice(bytes)))
            .await
            .unwrap();
    }

    pub async fn challenge(&mut self) -> Value {
        let challenge = self.recv().await;
        assert_eq!(challenge["type"], "event");
        assert_eq!(challenge["event"], "connect.challenge");
        challenge
    }

    /// challenge → `connect` with `params` → the `res`.
    pub async fn connect_with(&mut self, params: Value) -> Value {
        self.challenge().await;
        self.send(json!({"type": "req", "id": "c1", "method": "connect", "params": params}))
            .await;
        self.recv().await
    }

    /// A client through the handshake; returns it and the `hello-ok` payload.
    pub async fn connected(port: u16, params: Value) -> (Self, Value) {
        let mut client = Self::open(port).await;
        let res = client.connect_with(params).await;
        assert_eq!(res["ok"], true, "{res}");
        (client, res["payload"].clone())
    }

    /// An operator client (a local backend with `operator.admin`, and `token` when the gateway
    /// asks for one) that hears every broadcast.
    pub async fn listener(port: u16, token: Option<&str>) -> Self {
        let mut params = connect_params();
        params["scopes"] = json!(["operator.admin"]);
        if let Some(token) = token {
            params["auth"] = json!({ "token": token });
        }
        Self::connected(port, params).await.0
    }

    /// The payload of the next event named `event`; every other frame is skipped.
    pub async fn next_event_payload(&mut self, event: &str) -> Value {
        loop {
            let frame = self.recv_skip_ticks().await;
            if frame["event"] == event {
                return frame["payload"].clone();
            }
        }
    }

    pub async fn call(&mut self, id: &str, method: &str, params: Value) -> Value {
        self.send(json!({"type": "req", "id": id, "method": method, "params": params}))
            .await;
        self.recv_skip_ticks().await
    }

    /// Reads until the server's close frame; its code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            match tokio::time::timeout(wait(), self.ws.next()).await {
                Ok(Some(Ok(Message::Close(Some(frame))))) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Ok(Some(Ok(Message::Close(None)))) => panic!("close frame without a code"),
                Ok(Some(Ok(_))) => continue,
                Ok(other) => panic!("connection ended without a close frame: {other:?}"),
                Err(_) => panic!("no close within {:?}", wait()),
            }
        }
    }
}

/// A device identity that signs `connect` as OpenClaw's CLI and node host do (SPEC §11.2):
/// an Ed25519 key, its raw public key in base64url and the v3 payload over the challenge.
pub struct DeviceKey {
    signing: ed25519_dalek::SigningKey,
}

impl DeviceKey {
    /// A key from a 32-byte seed (the same seed gives the same device).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// A fresh random key.
    pub fn random() -> Self {
        let mut seed = [0u8; 32];
        seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self::from_seed(seed)
    }

    /// `device.publicKey`: the raw key, base64url without padding.
    pub fn public_key(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.signing.verifying_key().as_bytes())
    }

    /// `device.id`: lowercase hex SHA-256 of the raw key.
    pub fn device_id(&self) -> String {
        use sha2::Digest as _;
        sha2::Sha256::digest(self.signing.verifying_key().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The v3 payload for `params` (as sent), signed at `signed_at` over `nonce`.
    pub fn v3_payload(&self, params: &Value, nonce: &str, signed_at: u64) -> String {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let lower = |v: &Value| v.as_str().unwrap_or_default().trim().to_ascii_lowercase();
        let auth = &params["auth"];
        let token = auth["token"]
            .as_str()
            .or(auth["deviceToken"].as_str())
            .or(auth["bootstrapToken"].as_str())
            .unwrap_or_default();
        let scopes: Vec<String> = params["scopes"]
            .as_array()
            .map(|s| s.iter().map(text).collect())
            .unwrap_or_default();
        [
            "v3".to_owned(),
            self.device_id(),
            text(&params["client"]["id"]),
            text(&params["client"]["mode"]),
            params["role"].as_str().unwrap_or("operator").to_owned(),
            scopes.join(","),
            signed_at.to_string(),
            token.to_owned(),
            nonce.to_owned(),
            lower(&params["client"]["platform"]),
            lower(&params["client"]["deviceFamily"]),
        ]
        .join("|")
    }

    /// The v2 payload (what the bundled Control UI signs): the v3 fields without platform and
    /// device family.
    pub fn v2_payload(&self, params: &Value, nonce: &str, signed_at: u64) -> String {
        let v3 = self.v3_payload(params, nonce, signed_at);
        let fields: Vec<&str> = v3.split('|').collect();
        format!("v2|{}", fields[1..9].join("|"))
    }

    /// The signature of `payload`, base64url without padding.
    pub fn sign(&self, payload: &str) -> String {
        use base64::Engine as _;
        use ed25519_dalek::Signer as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.signing.sign(payload.as_bytes()).to_bytes())
    }

    /// `params` with a `device` block signed (v3) over `nonce` at `signed_at`.
    pub fn signed(&self, params: Value, nonce: &str, signed_at: u64) -> Value {
        let signature = self.sign(&self.v3_payload(&params, nonce, signed_at));
        self.with_device(params, nonce, signed_at, signature)
    }

    /// `params` with a `device` block carrying `signature`.
    pub fn with_device(
        &self,
        mut params: Value,
        nonce: &str,
        signed_at: u64,
        signature: String,
    ) -> Value {
        params["device"] = json!({
            "id": self.device_id(),
            "publicKey": self.public_key(),
            "signature": signature,
            "signedAt": signed_at,
            "nonce": nonce,
        });
        params
    }
}

impl Client {
    /// challenge → `connect` with `params` signed by `key` over this connection's challenge →
    /// the `res`.
    pub async fn connect_signed(&mut self, key: &DeviceKey, params: Value) -> Value {
        let challenge = self.challenge().await;
        let nonce = challenge["payload"]["nonce"].as_str().unwrap().to_owned();
        let ts = challenge["payload"]["ts"].as_u64().unwrap();
        let params = key.signed(params, &nonce, ts);
        self.send(json!({"type": "req", "id": "c1", "method": "connect", "params": params}))
            .await;
        self.recv().await
    }
}

impl DeviceKey {
    /// Opens a connection, signs `params` for its challenge and sends `connect`; the `res`.
    pub async fn connect(&self, port: u16, params: Value) -> (Client, Value) {
        let mut client = Client::open(port).await;
        let res = client.connect_signed(self, params).await;
        (client, res)
    }
}

/// The `connect` params of the OpenClaw CLI with a token, asking for `scopes`.
pub fn cli_params(token: &str, scopes: &[&str], display_name: &str) -> Value {
    json!({
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {"id": "cli", "version": "1.0.0", "platform": "linux", "mode": "cli",
                   "displayName": display_name},
        "role": "operator",
        "scopes": scopes,
        "auth": {"token": token},
    })
}

/// SPEC §11.2's test vector: the helper signs as OpenClaw's own code does.
pub fn check_against_the_spec_vector() {
    let key = DeviceKey::from_seed([7; 32]);
    assert_eq!(
        key.public_key(),
        "6kpsY-KcUgq-9VB7Ey7F-ZVHdq6-vnuSQh7qaRRG0iw"
    );
    assert_eq!(
        key.device_id(),
        "fe812c12f3ab4ce6ac5db69ac352f906cb1b11ef43fb33e252ef7ff552263889"
    );
    let params = json!({
        "client": {"id": "cli", "mode": "cli", "platform": " Linux "},
        "scopes": ["operator.admin", "operator.read"],
        "auth": {"token": "tok-123"},
    });
    let nonce = "2f1e8a4c-3b7d-4e15-9a0c-6d5b4f3e2a10";
    let signed = key.signed(params, nonce, 1_790_190_000_000);
    assert_eq!(
        signed["device"]["signature"],
        "UsMdoBZBzsO5TVusaWki__tIs-HbHaZOsqCP923EM8kt1LPbkWn4mI_InQcX92bCDbWar46N6EqOPU2e0UQjCQ"
    );
}

/// Asserts an error `res`: its code, message and `details.code`.
pub fn assert_error(res: &Value, id: &str, code: &str, message: &str, detail: Option<&str>) {
    assert_eq!(res["type"], "res", "{res}");
    assert_eq!(res["id"], id, "{res}");
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["code"], code, "{res}");
    assert_eq!(res["error"]["message"], message, "{res}");
    match detail {
        Some(detail) => assert_eq!(res["error"]["details"]["code"], detail, "{res}"),
        None => assert!(res["error"]["details"].get("code").is_none(), "{res}"),
    }
}

/// This process's resident set size in bytes.
#[cfg(not(target_os = "macos"))]
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// macOS: this process's resident set size in bytes, as `ps -o rss=` shows it (KiB).
#[cfg(target_os = "macos")]
pub fn rss_bytes() -> u64 {
    let output = std::process::Command::new("/bin/ps")
        .args(["-o", "rss=", "-p", &std::process::id().to_string()])
        .output()
        .expect("run /bin/ps -o rss=");
    let text = String::from_utf8_lossy(&output.stdout);
    let kb: u64 = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("ps -o rss= said {text:?}"));
    kb * 1024
}

/// Raises the soft open-files limit to the hard one (1,000 clients need 2,000 descriptors
/// here: both ends are in this process).
pub fn raise_nofile_limit(wanted: u64) {
    // SAFETY: getrlimit/setrlimit with a valid, initialized struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted as libc::rlim_t {
            limit.rlim_cur = limit.rlim_max.min(wanted as libc::rlim_t);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
