//! The wire format of OpenClaw's protocol version 4 (SPEC §9): frames, the `connect` params,
//! error shapes, `hello-ok`, and the exact failure texts.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The protocol version this gateway speaks.
pub const PROTOCOL_VERSION: u64 = 4;
/// The oldest version a `probe` client may ask for.
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

/// The `connect.challenge` event a connection opens with (SPEC §9, step 1), serialized.
pub fn connect_challenge() -> String {
    let challenge = json!({
        "nonce": uuid::Uuid::new_v4().to_string(),
        "ts": now_ms(),
    });
    event("connect.challenge", &challenge, None)
}

/// What `hello-ok` tells a client that completed the handshake (SPEC §9, step 7).
#[derive(Debug)]
pub struct Hello<'a> {
    /// `server.version`.
    pub server_version: &'a str,
    /// `server.connId` (sent as a string).
    pub conn_id: u64,
    /// `features.methods`.
    pub methods: &'a [String],
    /// `features.events`.
    pub events: &'a [String],
    /// `snapshot.health`.
    pub health: Value,
    /// `snapshot.stateVersion.health`: how many times the host set its health.
    pub health_version: u64,
    /// `snapshot.uptimeMs`.
    pub uptime_ms: u64,
    /// `auth.role`.
    pub role: &'a str,
    /// `auth.scopes`.
    pub scopes: &'a [String],
    /// `policy.maxPayload`.
    pub max_payload: usize,
    /// `policy.maxBufferedBytes`.
    pub max_buffered_bytes: usize,
    /// `policy.tickIntervalMs`.
    pub tick_interval_ms: u64,
}

/// The `hello-ok` payload that answers a successful `connect`.
pub fn hello_ok(hello: Hello<'_>) -> Value {
    json!({
        "type": "hello-ok",
        "protocol": PROTOCOL_VERSION,
        "server": {
            "version": hello.server_version,
            "connId": hello.conn_id.to_string(),
        },
        "features": { "methods": hello.methods, "events": hello.events },
        "snapshot": {
            "presence": [],
            "health": hello.health,
            "stateVersion": { "presence": 0, "health": hello.health_version },
            "uptimeMs": hello.uptime_ms,
        },
        "auth": { "role": hello.role, "scopes": hello.scopes },
        "policy": {
            "maxPayload": hello.max_payload,
            "maxBufferedBytes": hello.max_buffered_bytes,
            "tickIntervalMs": hello.tick_interval_ms,
        },
    })
}

/// A WebSocket close reason is at most 123 bytes; cut at a character boundary.
pub fn close_reason(reason: &str) -> String {
    if reason.len() <= 123 {
        return reason.to_owned();
    }
    let mut end = 123;
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
#[derive(Debug, Clone)]
pub struct ConnectParams {
    pub min_protocol: u64,
    pub max_protocol: u64,
    pub client: Map<String, Value>,
    pub mode: String,
    pub token: Option<String>,
    pub password: Option<String>,
    pub role: Option<String>,
    pub scopes: Vec<String>,
}

/// Checks `connect` params; the error is the `<why>` of `invalid connect params: <why>`.
pub fn parse_connect(params: Option<&Value>) -> Result<ConnectParams, String> {
    let Some(Value::Object(params)) = params else {
        return Err("at root: must be object".into());
    };
    let protocol = |name: &str| -> Result<u64, String> {
        match params.get(name) {
            None => Err(format!("at root: must have required property '{name}'")),
            Some(value) => match value.as_u64() {
                Some(0) => Err(format!("at /{name}: must be >= 1")),
                Some(n) => Ok(n),
                None => Err(format!("at /{name}: must be integer")),
            },
        }
    };
    let min_protocol = protocol("minProtocol")?;
    let max_protocol = protocol("maxProtocol")?;
    let client = match params.get("client") {
        None => return Err("at root: must have required property 'client'".into()),
        Some(Value::Object(client)) => client,
        Some(_) => return Err("at /client: must be object".into()),
    };
    for field in ["id", "version", "platform", "mode"] {
        match client.get(field) {
            None => return Err(format!("at /client: must have required property '{field}'")),
            Some(Value::String(s)) if s.is_empty() => {
                return Err(format!(
                    "at /client/{field}: must NOT have fewer than 1 characters"
                ));
            }
            Some(Value::String(_)) => {}
            Some(_) => return Err(format!("at /client/{field}: must be string")),
        }
    }
    let (token, password) = match params.get("auth") {
        None | Some(Value::Null) => (None, None),
        Some(Value::Object(auth)) => {
            let secret = |name: &str| match auth.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("at /auth/{name}: must be string")),
            };
            (secret("token")?, secret("password")?)
        }
        Some(_) => return Err("at /auth: must be object".into()),
    };
    let role = match params.get("role") {
        None => None,
        Some(Value::String(role)) => Some(role.clone()),
        Some(_) => return Err("at /role: must be string".into()),
    };
    let scopes = match params.get("scopes") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, scope)| {
                scope
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("at /scopes/{i}: must be string"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("at /scopes: must be array".into()),
    };
    Ok(ConnectParams {
        min_protocol,
        max_protocol,
        mode: client["mode"].as_str().unwrap_or_default().to_owned(),
        client: client.clone(),
        token,
        password,
        role,
        scopes,
    })
}

/// Version negotiation (SPEC §9.4): protocol 4, and 3..4 for `probe` clients.
pub fn protocol_accepted(params: &ConnectParams) -> bool {
    let lowest = if params.mode == "probe" {
        PROBE_MIN_PROTOCOL
    } else {
        PROTOCOL_VERSION
    };
    params.max_protocol >= lowest && params.min_protocol <= PROTOCOL_VERSION
}

/// The `protocol mismatch` error (SPEC §9.4).
pub fn protocol_mismatch(params: &ConnectParams) -> MethodError {
    MethodError::invalid_request("protocol mismatch").with_details(json!({
        "code": "PROTOCOL_MISMATCH",
        "clientMinProtocol": params.min_protocol,
        "clientMaxProtocol": params.max_protocol,
        "expectedProtocol": PROTOCOL_VERSION,
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
    fn negotiation_and_scopes() {
        let mut params = parse_connect(Some(&json!({
            "minProtocol": 3, "maxProtocol": 3,
            "client": {"id": "c", "version": "1", "platform": "linux", "mode": "probe"},
        })))
        .unwrap();
        assert!(protocol_accepted(&params));
        params.mode = "cli".into();
        assert!(!protocol_accepted(&params));
        assert_eq!(close_reason(&"é".repeat(100)).len(), 122);
    }

    #[test]
    fn hello_ok_has_the_shape_of_spec_step_7() {
        let hello = hello_ok(Hello {
            server_version: "1.2.3",
            conn_id: 7,
            methods: &["health".into(), "echo".into()],
            events: &["tick".into()],
            health: json!({}),
            health_version: 0,
            uptime_ms: 5,
            role: "operator",
            scopes: &["operator.read".into()],
            max_payload: 26214400,
            max_buffered_bytes: 52428800,
            tick_interval_ms: 30000,
        });
        assert_eq!(
            hello.to_string(),
            concat!(
                r#"{"type":"hello-ok","protocol":4,"server":{"version":"1.2.3","connId":"7"},"#,
                r#""features":{"methods":["health","echo"],"events":["tick"]},"#,
                r#""snapshot":{"presence":[],"health":{},"stateVersion":{"presence":0,"health":0},"uptimeMs":5},"#,
                r#""auth":{"role":"operator","scopes":["operator.read"]},"#,
                r#""policy":{"maxPayload":26214400,"maxBufferedBytes":52428800,"tickIntervalMs":30000}}"#
            )
        );
    }
}
