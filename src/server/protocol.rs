//! The wire format of OpenClaw's protocol version 4 (SPEC §9): frames, the `connect` params,
//! error shapes, `hello-ok`, and the exact failure texts.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The protocol version this gateway speaks.
pub const PROTOCOL_VERSION: u64 = 4;
/// The oldest version a `probe` client, or a node host (role and mode `node`), may ask for.
pub const PROBE_MIN_PROTOCOL: u64 = 3;

/// Close codes (RFC 6455 §7.4.1) the gateway uses.
pub mod close {
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const SERVICE_RESTART: u16 = 1012;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Error codes of the `res` error shape.
pub mod codes {
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The error of a `res` frame: `{code, message, details?, retryable?, retryAfterMs?}`. It
/// deserializes from the same object (what the C ABI's `gw_respond` takes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodError {
    /// OpenClaw's error code: `INVALID_REQUEST`, `FORBIDDEN`, `UNAVAILABLE`, ...
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// Anything a client may act on (e.g. `{"code": "CONTROL_UI_ORIGIN_NOT_ALLOWED"}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// Whether the same request may succeed if sent again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// When to send it again, in milliseconds.
    #[serde(rename = "retryAfterMs", skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl MethodError {
    /// An error with this code (e.g. `INVALID_REQUEST`, `UNAVAILABLE`, or the host's own).
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            details: None,
            retryable: None,
            retry_after_ms: None,
        }
    }

    /// `INVALID_REQUEST` with this message.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_REQUEST, message)
    }

    /// `UNAVAILABLE` with this message.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(codes::UNAVAILABLE, message)
    }

    /// Adds `details` (by convention an object with a `code`).
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Says whether retrying may succeed, and after how long.
    #[must_use]
    pub fn with_retry(mut self, retryable: bool, retry_after_ms: Option<u64>) -> Self {
        self.retryable = Some(retryable);
        self.retry_after_ms = retry_after_ms;
        self
    }
}

impl std::fmt::Display for MethodError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for MethodError {}

#[derive(Serialize)]
struct ResFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a Value,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a MethodError>,
}

/// A `res` frame, serialized.
pub fn res(id: &Value, result: &Result<Value, MethodError>) -> String {
    let frame = match result {
        Ok(payload) => ResFrame {
            kind: "res",
            id,
            ok: true,
            payload: Some(payload),
            error: None,
        },
        Err(error) => ResFrame {
            kind: "res",
            id,
            ok: false,
            payload: None,
            error: Some(error),
        },
    };
    serde_json::to_string(&frame).expect("a res frame serializes")
}

#[derive(Serialize)]
struct EventFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    event: &'a str,
    payload: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

/// An `event` frame, serialized; broadcasts carry a `seq`, targeted events none.
pub fn event(event: &str, payload: &Value, seq: Option<u64>) -> String {
    serde_json::to_string(&EventFrame {
        kind: "event",
        event,
        payload,
        seq,
    })
    .expect("an event frame serializes")
}

/// An `event` frame (its `seq` appended per client) with the frame-level `stateVersion:{presence, health}` that
/// `presence` and `health` events carry (SPEC §12.6–12.7), serialized.
pub fn state_event(event: &str, payload: &Value, presence: u64, health: u64) -> String {
    json!({
        "type": "event",
        "event": event,
        "payload": payload,
        "stateVersion": { "presence": presence, "health": health },
    })
    .to_string()
}

/// The `connect.challenge` event a connection opens with (SPEC §9, step 1), serialized: the
/// `nonce` (a fresh UUID v4 per connection) is what a `device` block must sign (SPEC §11.3), and
/// `capabilities` are what the gateway honours in `connect` (SPEC §12.8).
pub fn connect_challenge(nonce: &uuid::Uuid, capabilities: &[String]) -> String {
    let challenge = json!({
        "nonce": nonce.hyphenated().to_string(),
        "ts": now_ms(),
        "capabilities": capabilities,
    });
    event("connect.challenge", &challenge, None)
}

/// What `hello-ok` tells a client that completed the handshake (SPEC §9, step 7; §12.8).
/// Its `Debug` leaves the device token out.
pub struct Hello<'a> {
    /// `server.version`.
    pub server_version: &'a str,
    /// `server.buildId`, when the host gave one.
    pub build_id: Option<&'a str>,
    /// `server.bootId`: one UUID per gateway.
    pub boot_id: &'a str,
    /// `server.controlUiBuildSource` (`bundled` or `configured`), when the gateway serves the
    /// Control UI (SPEC §13.3 "Build match").
    pub control_ui_build_source: Option<&'a str>,
    /// `server.connId` (sent as a string).
    pub conn_id: u64,
    /// `features.methods`.
    pub methods: &'a [String],
    /// `features.events`.
    pub events: &'a [String],
    /// `features.capabilities`: the wire contracts this gateway keeps.
    pub capabilities: &'a [String],
    /// `snapshot.presence`, projected for this client.
    pub presence: Vec<Value>,
    /// `snapshot.stateVersion.presence`.
    pub presence_version: u64,
    /// `snapshot.health`.
    pub health: Value,
    /// `snapshot.stateVersion.health`: 1, plus one per refresh.
    pub health_version: u64,
    /// `snapshot.configPath`, `stateDir`, `authMode`: only for a caller holding
    /// `operator.admin` (MH:2349-2360).
    pub admin: Option<AdminSnapshot<'a>>,
    /// `snapshot.uptimeMs`.
    pub uptime_ms: u64,
    /// `auth.method`: how the client authenticated (`none`, `token`, `password`,
    /// `device-token`, `bootstrap-token`, …) (SPEC §11.8).
    pub auth_method: &'a str,
    /// `auth.role`.
    pub role: &'a str,
    /// `auth.scopes`.
    pub scopes: &'a [String],
    /// `auth.recoveryScope` (operators only, SPEC §11.8).
    pub recovery_scope: Option<&'a str>,
    /// `auth.deviceToken` and `auth.issuedAtMs`: the token a paired device reconnects with
    /// (an operator's also sets `auth.recoveryMigrationAllowed`).
    pub device_token: Option<(&'a str, u64)>,
    /// `policy.maxPayload`.
    pub max_payload: usize,
    /// `policy.maxBufferedBytes`.
    pub max_buffered_bytes: usize,
    /// `policy.tickIntervalMs`.
    pub tick_interval_ms: u64,
}

impl std::fmt::Debug for Hello<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field by name, so that a new one is not forgotten here.
        let Self {
            server_version,
            build_id,
            boot_id,
            control_ui_build_source,
            conn_id,
            methods,
            events,
            capabilities,
            presence,
            presence_version,
            health,
            health_version,
            admin,
            uptime_ms,
            auth_method,
            role,
            scopes,
            recovery_scope,
            device_token,
            max_payload,
            max_buffered_bytes,
            tick_interval_ms,
        } = self;
        f.debug_struct("Hello")
            .field("server_version", server_version)
            .field("build_id", build_id)
            .field("boot_id", boot_id)
            .field("control_ui_build_source", control_ui_build_source)
            .field("conn_id", conn_id)
            .field("methods", methods)
            .field("events", events)
            .field("capabilities", capabilities)
            .field("presence", presence)
            .field("presence_version", presence_version)
            .field("health", health)
            .field("health_version", health_version)
            .field("admin", admin)
            .field("uptime_ms", uptime_ms)
            .field("auth_method", auth_method)
            .field("role", role)
            .field("scopes", scopes)
            .field("recovery_scope", recovery_scope)
            .field(
                "device_token",
                &device_token.map(|(_, issued_at_ms)| (REDACTED, issued_at_ms)),
            )
            .field("max_payload", max_payload)
            .field("max_buffered_bytes", max_buffered_bytes)
            .field("tick_interval_ms", tick_interval_ms)
            .finish()
    }
}

/// What a `Debug` shows in place of a credential.
pub(crate) const REDACTED: &str = "<redacted>";

/// The snapshot fields only an admin is shown.
#[derive(Debug)]
pub struct AdminSnapshot<'a> {
    /// `snapshot.configPath`.
    pub config_path: &'a str,
    /// `snapshot.stateDir`.
    pub state_dir: &'a str,
    /// `snapshot.authMode`: `none`, `token` or `password`.
    pub auth_mode: &'a str,
}

/// The `hello-ok` payload that answers a successful `connect`.
pub fn hello_ok(hello: Hello<'_>) -> Value {
    let mut server = json!({ "version": hello.server_version });
    if let Some(build_id) = hello.build_id {
        server["buildId"] = json!(build_id);
    }
    server["bootId"] = json!(hello.boot_id);
    // Node's key order: version, buildId, bootId, controlUiBuildSource, connId (MH:2360-2368).
    if let Some(source) = hello.control_ui_build_source {
        server["controlUiBuildSource"] = json!(source);
    }
    server["connId"] = json!(hello.conn_id.to_string());
    let mut snapshot = json!({
        "presence": hello.presence,
        "health": hello.health,
        "stateVersion": { "presence": hello.presence_version, "health": hello.health_version },
        "uptimeMs": hello.uptime_ms,
    });
    if let Some(admin) = &hello.admin {
        snapshot["configPath"] = json!(admin.config_path);
        snapshot["stateDir"] = json!(admin.state_dir);
        snapshot["authMode"] = json!(admin.auth_mode);
    }
    json!({
        "type": "hello-ok",
        "protocol": PROTOCOL_VERSION,
        "server": server,
        "features": {
            "methods": hello.methods,
            "events": hello.events,
            "capabilities": hello.capabilities,
        },
        "snapshot": snapshot,
        "auth": hello_auth(&hello),
        "policy": {
            "maxPayload": hello.max_payload,
            "maxBufferedBytes": hello.max_buffered_bytes,
            "tickIntervalMs": hello.tick_interval_ms,
        },
    })
}

/// `hello-ok.auth` in Node's key order (MH:2403-2414).
fn hello_auth(hello: &Hello<'_>) -> Value {
    let mut auth = json!({
        "method": hello.auth_method,
        "role": hello.role,
        "scopes": hello.scopes,
    });
    if let Some(scope) = hello.recovery_scope {
        auth["recoveryScope"] = Value::from(scope);
    }
    if hello.device_token.is_some() && hello.role == "operator" {
        auth["recoveryMigrationAllowed"] = Value::from(true);
    }
    if let Some((token, issued_at_ms)) = hello.device_token {
        auth["deviceToken"] = Value::from(token);
        auth["issuedAtMs"] = Value::from(issued_at_ms);
    }
    auth
}

/// The longest close reason OpenClaw sends (close-reason-B67wSC7I.mjs:6): RFC 6455 allows 123
/// bytes, Node cuts at 120.
pub const CLOSE_REASON_MAX_BYTES: usize = 120;

/// A close reason cut to [`CLOSE_REASON_MAX_BYTES`] at a character boundary.
pub fn close_reason(reason: &str) -> String {
    if reason.len() <= CLOSE_REASON_MAX_BYTES {
        return reason.to_owned();
    }
    let mut end = CLOSE_REASON_MAX_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// A frame that passed the `req` shape check.
#[derive(Debug)]
pub struct RequestFrame {
    pub id: Value,
    pub method: String,
    pub params: Option<Value>,
}

/// Why a frame is not a `req`, with the `id` to answer to (the frame's own when it has one).
#[derive(Debug)]
pub struct InvalidFrame {
    pub id: Value,
    pub why: String,
}

/// Parses and checks a text frame: a JSON object with `type:"req"`, a non-empty string `id`
/// and `method`, and optional `params`.
pub fn parse_request(text: &str) -> Result<RequestFrame, InvalidFrame> {
    let invalid = |id: Value, why: &str| InvalidFrame {
        id,
        why: why.to_owned(),
    };
    let value: Value = serde_json::from_str(text).map_err(|err| InvalidFrame {
        id: Value::from("invalid"),
        why: format!("invalid JSON ({err})"),
    })?;
    let Value::Object(mut object) = value else {
        return Err(invalid("invalid".into(), "frame must be an object"));
    };
    let echo = object
        .get("id")
        .cloned()
        .unwrap_or_else(|| Value::from("invalid"));
    if object.get("type").and_then(Value::as_str) != Some("req") {
        return Err(invalid(echo, "type must be \"req\""));
    }
    match object.get("id") {
        Some(Value::String(id)) if !id.is_empty() => {}
        _ => return Err(invalid(echo, "id must be a non-empty string")),
    }
    let method = match object.remove("method") {
        Some(Value::String(method)) if !method.is_empty() => method,
        _ => return Err(invalid(echo, "method must be a non-empty string")),
    };
    Ok(RequestFrame {
        id: object.remove("id").expect("checked above"),
        method,
        params: object.remove("params"),
    })
}

/// The `connect` params a gateway core needs; the rest of the `client` object is kept as is.
/// Its `Debug` shows of each credential only whether it was sent.
#[derive(Clone)]
pub struct ConnectParams {
    pub min_protocol: u64,
    pub max_protocol: u64,
    pub client: Map<String, Value>,
    pub mode: String,
    /// `auth.token`, untrimmed.
    pub token: Option<String>,
    /// `auth.password`, untrimmed.
    pub password: Option<String>,
    /// `auth.deviceToken`, untrimmed.
    pub device_token: Option<String>,
    /// `auth.bootstrapToken`, untrimmed.
    pub bootstrap_token: Option<String>,
    pub role: Option<String>,
    /// As received: order kept, nothing trimmed or removed (the signed payload needs them so).
    pub scopes: Vec<String>,
    /// The signed `device` block (SPEC §11.1).
    pub device: Option<super::device::DeviceBlock>,
}

impl std::fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field by name, so that a new one is not forgotten here.
        let Self {
            min_protocol,
            max_protocol,
            client,
            mode,
            token,
            password,
            device_token,
            bootstrap_token,
            role,
            scopes,
            device,
        } = self;
        let secret = |value: &Option<String>| value.as_ref().map(|_| REDACTED);
        f.debug_struct("ConnectParams")
            .field("min_protocol", min_protocol)
            .field("max_protocol", max_protocol)
            .field("client", client)
            .field("mode", mode)
            .field("token", &secret(token))
            .field("password", &secret(password))
            .field("device_token", &secret(device_token))
            .field("bootstrap_token", &secret(bootstrap_token))
            .field("role", role)
            .field("scopes", scopes)
            .field("device", device)
            .finish()
    }
}

impl ConnectParams {
    /// `client.id`.
    pub fn client_id(&self) -> &str {
        self.client_str("id").unwrap_or_default()
    }

    /// A string field of `client` (`platform`, `deviceFamily`, `displayName`, …).
    pub fn client_str(&self, field: &str) -> Option<&str> {
        self.client.get(field).and_then(Value::as_str)
    }
}

/// `client.id` values OpenClaw accepts (`GATEWAY_CLIENT_IDS`, client-info-B_ICKCYw.mjs:10-28).
pub const CLIENT_IDS: [&str; 17] = [
    "webchat-ui",
    "openclaw-control-ui",
    "openclaw-browser-copilot",
    "openclaw-tui",
    "webchat",
    "cli",
    "gateway-client",
    "openclaw-macos",
    "openclaw-linux",
    "openclaw-ios",
    "openclaw-watchos",
    "openclaw-android",
    "node-host",
    "openclaw-worker",
    "test",
    "fingerprint",
    "openclaw-probe",
];

/// `client.mode` values OpenClaw accepts (`GATEWAY_CLIENT_MODES`, client-info-B_ICKCYw.mjs:31-40).
pub const CLIENT_MODES: [&str; 8] = [
    "webchat", "cli", "ui", "backend", "node", "worker", "probe", "test",
];

/// One field of a closed object in the `connect` schema (SES `ConnectParamsSchema`,
/// sessions-KsldKmtI.mjs:1701-1759).
#[derive(Clone, Copy)]
enum Field {
    /// `Type.Integer({minimum})`.
    Integer(u64),
    /// A string with a length range (in characters); `NonEmptyString` is `Str(1, None)`.
    Str(usize, Option<usize>),
    /// A string from a closed list.
    Enum(&'static [&'static str]),
    /// An array of non-empty strings.
    NonEmptyStrings,
    /// An object whose values are booleans.
    Booleans,
    /// Any object (shapes this core does not read: `workerRuns`, `modelCatalog`).
    AnyObject,
    /// Anything.
    Any,
    /// A nested closed object.
    Closed(&'static [(&'static str, bool, Field)]),
}

const NON_EMPTY: Field = Field::Str(1, None);
const ANY_STRING: Field = Field::Str(0, None);

const CLIENT_SCHEMA: &[(&str, bool, Field)] = &[
    ("id", true, Field::Enum(&CLIENT_IDS)),
    ("displayName", false, NON_EMPTY),
    ("version", true, NON_EMPTY),
    ("buildId", false, Field::Str(1, Some(96))),
    ("platform", true, NON_EMPTY),
    ("deviceFamily", false, NON_EMPTY),
    ("modelIdentifier", false, NON_EMPTY),
    ("timeZone", false, Field::Str(1, Some(64))),
    ("mode", true, Field::Enum(&CLIENT_MODES)),
    ("instanceId", false, NON_EMPTY),
];

const DEVICE_SCHEMA: &[(&str, bool, Field)] = &[
    ("id", true, NON_EMPTY),
    ("publicKey", true, NON_EMPTY),
    ("signature", true, NON_EMPTY),
    ("signedAt", true, Field::Integer(0)),
    ("nonce", true, NON_EMPTY),
];

const AUTH_SCHEMA: &[(&str, bool, Field)] = &[
    ("token", false, ANY_STRING),
    ("bootstrapToken", false, ANY_STRING),
    ("deviceToken", false, ANY_STRING),
    ("password", false, ANY_STRING),
    ("approvalRuntimeToken", false, ANY_STRING),
    ("agentRuntimeIdentityToken", false, ANY_STRING),
];

const CONNECT_SCHEMA: &[(&str, bool, Field)] = &[
    ("minProtocol", true, Field::Integer(1)),
    ("maxProtocol", true, Field::Integer(1)),
    ("client", true, Field::Closed(CLIENT_SCHEMA)),
    ("caps", false, Field::NonEmptyStrings),
    ("commands", false, Field::NonEmptyStrings),
    ("computerUse", false, Field::Any),
    ("workerRuns", false, Field::AnyObject),
    ("permissions", false, Field::Booleans),
    ("pathEnv", false, ANY_STRING),
    ("role", false, NON_EMPTY),
    ("scopes", false, Field::NonEmptyStrings),
    ("modelCatalog", false, Field::AnyObject),
    ("device", false, Field::Closed(DEVICE_SCHEMA)),
    ("auth", false, Field::Closed(AUTH_SCHEMA)),
    ("locale", false, ANY_STRING),
    ("userAgent", false, ANY_STRING),
];

/// The integer value of a JSON number that is a whole number ≥ 0 (JSON Schema's `integer`
/// takes `1e20` and `4.0` too).
fn whole_number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0)
            .map(|f| f as u64)
    })
}

/// Checks `value` at `path` against `field`, adding Node's messages to `errors`
/// (`formatValidationErrors`, src-BRUl7oDv.mjs:931-960).
fn check_field(value: &Value, path: &str, field: Field, errors: &mut Vec<String>) {
    let at = if path.is_empty() {
        String::new()
    } else {
        format!("at {path}: ")
    };
    match field {
        Field::Integer(minimum) => match value.as_f64() {
            Some(n) if n.fract() == 0.0 => {
                if n < minimum as f64 {
                    errors.push(format!("{at}must be >= {minimum}"));
                }
            }
            _ => errors.push(format!("{at}must be integer")),
        },
        Field::Str(min, max) => match value.as_str() {
            None => errors.push(format!("{at}must be string")),
            Some(s) => {
                let len = s.chars().count();
                if len < min {
                    errors.push(format!("{at}must not have fewer than {min} characters"));
                } else if let Some(max) = max.filter(|max| len > *max) {
                    errors.push(format!("{at}must not have more than {max} characters"));
                }
            }
        },
        Field::Enum(allowed) => {
            if !value.as_str().is_some_and(|s| allowed.contains(&s)) {
                errors.push(format!("{at}must be equal to one of the allowed values"));
            }
        }
        Field::NonEmptyStrings => match value.as_array() {
            None => errors.push(format!("{at}must be array")),
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_field(item, &format!("{path}/{i}"), NON_EMPTY, errors);
                }
            }
        },
        Field::Booleans => match value.as_object() {
            None => errors.push(format!("{at}must be object")),
            Some(map) => {
                for (key, item) in map {
                    if !item.is_boolean() {
                        errors.push(format!("at {path}/{key}: must be boolean"));
                    }
                }
            }
        },
        Field::AnyObject => {
            if !value.is_object() {
                errors.push(format!("{at}must be object"));
            }
        }
        Field::Any => {}
        Field::Closed(schema) => {
            let Some(map) = value.as_object() else {
                errors.push(format!("{at}must be object"));
                return;
            };
            // Node reports the first missing property, then the first unknown one, then each
            // property's own errors in the schema's order.
            if let Some((name, ..)) = schema
                .iter()
                .find(|(name, required, _)| *required && !map.contains_key(*name))
            {
                errors.push(format!("{at}must have required property '{name}'"));
            }
            if let Some(name) = map
                .keys()
                .find(|key| !schema.iter().any(|(name, ..)| name == key))
            {
                let at = if path.is_empty() { "root" } else { path };
                errors.push(format!("at {at}: unexpected property '{name}'"));
            }
            for (name, _, field) in schema {
                if let Some(item) = map.get(*name) {
                    check_field(item, &format!("{path}/{name}"), *field, errors);
                }
            }
        }
    }
}

/// Checks `connect` params against OpenClaw's closed schema; the error is the `<why>` of
/// `invalid connect params: <why>`, worded as Node words it (every error, joined by `; `).
pub fn parse_connect(params: Option<&Value>) -> Result<ConnectParams, String> {
    let params = params.unwrap_or(&Value::Null);
    let mut errors = Vec::new();
    check_field(params, "", Field::Closed(CONNECT_SCHEMA), &mut errors);
    if !errors.is_empty() {
        errors.dedup();
        return Err(errors.join("; "));
    }
    let string = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let strings = |value: Option<&Value>| -> Vec<String> {
        value
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let auth = params.get("auth");
    let auth_field = |name: &str| string(auth.and_then(|a| a.get(name)));
    let device = params.get("device").map(|d| super::device::DeviceBlock {
        id: string(d.get("id")).unwrap_or_default(),
        public_key: string(d.get("publicKey")).unwrap_or_default(),
        signature: string(d.get("signature")).unwrap_or_default(),
        signed_at: whole_number(&d["signedAt"]).unwrap_or_default(),
        nonce: string(d.get("nonce")).unwrap_or_default(),
    });
    let client = params["client"].as_object().cloned().unwrap_or_default();
    Ok(ConnectParams {
        min_protocol: whole_number(&params["minProtocol"]).unwrap_or_default(),
        max_protocol: whole_number(&params["maxProtocol"]).unwrap_or_default(),
        mode: string(client.get("mode")).unwrap_or_default(),
        client,
        token: auth_field("token"),
        password: auth_field("password"),
        device_token: auth_field("deviceToken"),
        bootstrap_token: auth_field("bootstrapToken"),
        role: string(params.get("role")),
        scopes: strings(params.get("scopes")),
        device,
    })
}

/// A pre-auth frame whose params claim to be a worker (`role:"worker"`, `client.id`
/// `openclaw-worker` or `client.mode` `worker`) is closed 1008 `invalid-handshake` without an
/// answer (MH:3292-3300, 3389-3395).
pub fn claims_worker(params: Option<&Value>) -> bool {
    let Some(Value::Object(params)) = params else {
        return false;
    };
    params.get("role").and_then(Value::as_str) == Some("worker")
        || params.get("client").is_some_and(|client| {
            client.get("id").and_then(Value::as_str) == Some("openclaw-worker")
                || client.get("mode").and_then(Value::as_str) == Some("worker")
        })
}

/// Version negotiation (SPEC §9.4; MH:576-581): a range holding protocol 4; for a `probe`
/// client one reaching 3..4; for a node host (role `node`, mode `node`) one holding 3, the
/// previous node protocol (`hello-ok` still says 4, as Node's does).
pub fn protocol_accepted(params: &ConnectParams) -> bool {
    let (min, max) = (params.min_protocol, params.max_protocol);
    let current = max >= PROTOCOL_VERSION && min <= PROTOCOL_VERSION;
    let probe = params.mode == "probe" && max >= PROBE_MIN_PROTOCOL && min <= PROTOCOL_VERSION;
    let node_host = params.role.as_deref() == Some("node")
        && params.mode == "node"
        && max >= PROBE_MIN_PROTOCOL
        && min <= PROBE_MIN_PROTOCOL;
    current || probe || node_host
}

/// The `protocol mismatch` error (SPEC §9.4).
pub fn protocol_mismatch(params: &ConnectParams) -> MethodError {
    MethodError::invalid_request("protocol mismatch").with_details(json!({
        "code": "PROTOCOL_MISMATCH",
        "clientMinProtocol": params.min_protocol,
        "clientMaxProtocol": params.max_protocol,
        "expectedProtocol": PROTOCOL_VERSION,
        "minimumProbeProtocol": PROBE_MIN_PROTOCOL,
    }))
}

/// `FORBIDDEN` `missing scope: <missing>`, with every scope the method `required` in
/// `details.requiredScopes` (SPEC §12.2 step 6; `missingScopeErrorShape`, SM:195-198).
pub fn missing_scope(missing: &str, required: &[&str]) -> MethodError {
    MethodError::new(codes::FORBIDDEN, format!("missing scope: {missing}")).with_details(json!({
        "code": "MISSING_SCOPE",
        "missingScope": missing,
        "requiredScopes": required,
    }))
}

/// `INVALID_REQUEST` `unknown method: <m>`.
pub fn unknown_method(method: &str) -> MethodError {
    MethodError::invalid_request(format!("unknown method: {method}"))
}

/// Whether an `Origin` header value names a loopback host (any scheme, any port).
pub fn is_loopback_origin(origin: &str) -> bool {
    let Some((_, rest)) = origin.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, _)) => host,
            None => return false,
        }
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    let host = host.to_ascii_lowercase();
    host == "localhost" || host == "127.0.0.1" || host == "::1"
}

/// Whether `origin` is in the allow-list (case-insensitive, a trailing `/` ignored; `*` allows
/// every origin).
pub fn origin_listed(allowed: &[String], origin: &str) -> bool {
    let origin = origin.trim_end_matches('/');
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_errors_round_trip_through_json() {
        let error = MethodError::new("E_DEMO", "nope")
            .with_details(json!({"code": "DEMO"}))
            .with_retry(true, Some(250));
        let text = serde_json::to_string(&error).unwrap();
        assert_eq!(
            text,
            r#"{"code":"E_DEMO","message":"nope","details":{"code":"DEMO"},"retryable":true,"retryAfterMs":250}"#
        );
        assert_eq!(serde_json::from_str::<MethodError>(&text).unwrap(), error);
        let plain: MethodError = serde_json::from_str(r#"{"code":"X","message":"m"}"#).unwrap();
        assert_eq!(plain, MethodError::new("X", "m"));
        assert!(serde_json::from_str::<MethodError>(r#"{"code":"X"}"#).is_err());
        assert!(serde_json::from_str::<MethodError>(r#"["X","m"]"#).is_err());
    }

    #[test]
    fn request_frames() {
        let ok = parse_request(r#"{"type":"req","id":"a1","method":"health"}"#).unwrap();
        assert_eq!((ok.id, ok.method.as_str()), (Value::from("a1"), "health"));
        let bad = |text: &str| parse_request(text).unwrap_err();
        assert!(bad("nope").why.starts_with("invalid JSON"));
        assert_eq!(bad("[1]").why, "frame must be an object");
        assert_eq!(bad(r#"{"type":"event","id":"x"}"#).id, Value::from("x"));
        assert_eq!(
            bad(r#"{"type":"req","id":"","method":"m"}"#).why,
            "id must be a non-empty string"
        );
        assert_eq!(
            bad(r#"{"type":"req","id":"1","method":""}"#).why,
            "method must be a non-empty string"
        );
    }

    #[test]
    fn origins() {
        for origin in [
            "http://localhost",
            "http://127.0.0.1:8080",
            "https://[::1]:3000",
            "http://LOCALHOST:1",
        ] {
            assert!(is_loopback_origin(origin), "{origin}");
        }
        for origin in [
            "http://evil.example",
            "http://localhost.evil.example",
            "null",
            "http://127.0.0.2",
        ] {
            assert!(!is_loopback_origin(origin), "{origin}");
        }
        let allowed = vec!["https://app.example.com".to_owned()];
        assert!(origin_listed(&allowed, "https://APP.example.com/"));
        assert!(!origin_listed(&allowed, "https://app.example.com:8443"));
    }

    #[test]
    fn debug_output_never_shows_a_credential() {
        let params = parse_connect(Some(&json!({
            "minProtocol": 4, "maxProtocol": 4,
            "client": {"id": "cli", "version": "1", "platform": "linux", "mode": "cli"},
            "auth": {"token": "tok-SECRET-1", "password": "pw-SECRET-2",
                     "deviceToken": "dt-SECRET-3", "bootstrapToken": "bt-SECRET-4"},
        })))
        .unwrap();
        assert_eq!(params.token.as_deref(), Some("tok-SECRET-1"));
        let shown = format!("{params:?} {params:#?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("token: Some(\"<redacted>\")"), "{shown}");

        let hello = Hello {
            server_version: "1.2.3",
            build_id: None,
            control_ui_build_source: None,
            boot_id: "b00t",
            conn_id: 7,
            methods: &[],
            events: &[],
            capabilities: &[],
            presence: Vec::new(),
            presence_version: 1,
            health: json!({}),
            health_version: 1,
            admin: None,
            uptime_ms: 5,
            auth_method: "device-token",
            role: "operator",
            scopes: &[],
            recovery_scope: None,
            device_token: Some(("dt-SECRET-5", 9)),
            max_payload: 1,
            max_buffered_bytes: 1,
            tick_interval_ms: 1,
        };
        let shown = format!("{hello:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("(\"<redacted>\", 9)"), "{shown}");
    }

    #[test]
    fn negotiation_and_scopes() {
        let mut params = parse_connect(Some(&json!({
            "minProtocol": 3, "maxProtocol": 3,
            "client": {"id": "cli", "version": "1", "platform": "linux", "mode": "probe"},
        })))
        .unwrap();
        assert!(protocol_accepted(&params));
        params.mode = "cli".into();
        assert!(!protocol_accepted(&params));
        // (role, mode, min, max) → accepted, as MH:576-581 decides.
        let cases: &[(Option<&str>, &str, u64, u64, bool)] = &[
            (None, "cli", 4, 4, true),
            (None, "cli", 1, 9, true),
            (None, "cli", 3, 3, false),
            (None, "cli", 5, 5, false),
            (None, "probe", 3, 3, true),
            (None, "probe", 2, 3, true),
            (None, "probe", 2, 2, false),
            (None, "probe", 5, 6, false),
            (Some("node"), "node", 3, 3, true),
            (Some("node"), "node", 2, 3, true),
            (Some("node"), "node", 2, 2, false),
            // Holds neither 4 nor 3 for a node host.
            (Some("node"), "node", 5, 5, false),
            (Some("node"), "cli", 3, 3, false),
            (Some("operator"), "node", 3, 3, false),
            (None, "node", 3, 3, false),
        ];
        for (role, mode, min, max, accepted) in cases {
            params.role = role.map(str::to_owned);
            params.mode = mode.to_string();
            (params.min_protocol, params.max_protocol) = (*min, *max);
            assert_eq!(
                protocol_accepted(&params),
                *accepted,
                "{role:?} {mode} {min}..{max}"
            );
        }
        assert_eq!(
            protocol_mismatch(&params).details,
            Some(json!({"code": "PROTOCOL_MISMATCH", "clientMinProtocol": 3,
                        "clientMaxProtocol": 3, "expectedProtocol": 4,
                        "minimumProbeProtocol": 3}))
        );
        assert_eq!(close_reason(&"é".repeat(100)).len(), 120);
        assert_eq!(close_reason(&format!("a{}", "é".repeat(100))).len(), 119);
    }

    #[test]
    fn hello_ok_has_the_shape_of_spec_step_7() {
        let mut hello = Hello {
            server_version: "1.2.3",
            build_id: None,
            control_ui_build_source: None,
            boot_id: "b00t",
            conn_id: 7,
            methods: &["health".into(), "echo".into()],
            events: &["tick".into()],
            capabilities: &[],
            presence: vec![json!({"mode": "gateway", "reason": "self", "ts": 1})],
            presence_version: 1,
            health: json!({}),
            health_version: 1,
            admin: None,
            uptime_ms: 5,
            auth_method: "token",
            role: "operator",
            scopes: &["operator.read".into()],
            recovery_scope: Some("rs"),
            device_token: Some(("dt", 9)),
            max_payload: 26214400,
            max_buffered_bytes: 52428800,
            tick_interval_ms: 30000,
        };
        let plain = hello_ok(Hello {
            presence: hello.presence.clone(),
            health: hello.health.clone(),
            admin: None,
            ..hello
        });
        assert_eq!(
            plain.to_string(),
            concat!(
                r#"{"type":"hello-ok","protocol":4,"server":{"version":"1.2.3","bootId":"b00t","connId":"7"},"#,
                r#""features":{"methods":["health","echo"],"events":["tick"],"capabilities":[]},"#,
                r#""snapshot":{"presence":[{"mode":"gateway","reason":"self","ts":1}],"health":{},"#,
                r#""stateVersion":{"presence":1,"health":1},"uptimeMs":5},"#,
                r#""auth":{"method":"token","role":"operator","scopes":["operator.read"],"recoveryScope":"rs","recoveryMigrationAllowed":true,"deviceToken":"dt","issuedAtMs":9},"#,
                r#""policy":{"maxPayload":26214400,"maxBufferedBytes":52428800,"tickIntervalMs":30000}}"#
            )
        );
        hello.build_id = Some("b-1");
        hello.control_ui_build_source = Some("configured");
        hello.admin = Some(AdminSnapshot {
            config_path: "/c.json",
            state_dir: "/s",
            auth_mode: "token",
        });
        let admin = hello_ok(hello);
        assert_eq!(admin["server"]["buildId"], "b-1");
        let keys: Vec<&String> = admin["server"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "version",
                "buildId",
                "bootId",
                "controlUiBuildSource",
                "connId"
            ],
            "Node's order"
        );
        assert_eq!(admin["server"]["controlUiBuildSource"], "configured");
        assert_eq!(
            (
                &admin["snapshot"]["configPath"],
                &admin["snapshot"]["stateDir"],
                &admin["snapshot"]["authMode"]
            ),
            (&json!("/c.json"), &json!("/s"), &json!("token"))
        );
    }

    #[test]
    fn state_events_and_the_challenge_carry_their_extra_fields() {
        let frame: Value =
            serde_json::from_str(&state_event("presence", &json!({"presence": []}), 3, 2)).unwrap();
        assert_eq!(
            frame,
            json!({"type": "event", "event": "presence", "payload": {"presence": []},
                   "stateVersion": {"presence": 3, "health": 2}})
        );
        let challenge: Value = serde_json::from_str(&connect_challenge(
            &uuid::Uuid::new_v4(),
            &["x-cap".to_owned()],
        ))
        .unwrap();
        assert_eq!(challenge["payload"]["capabilities"], json!(["x-cap"]));
    }
}
