//! The read-only methods `gateway run` answers so that `openclaw gateway probe` gets a full,
//! non-degraded answer (SPEC §12.9): `status` and `config.get`, both `operator.read`; and
//! `last-heartbeat`, which the Control UI calls every 5 s as its ping.

use std::path::Path;
use std::time::Instant;

use gateway::{Auth, BindMode, ControlUiOptions, Handlers, ResolvedOptions};
use serde_json::{Value, json};

/// What the methods report about the gateway, fixed when it starts.
#[derive(Clone)]
pub struct Facts {
    pub resolved: ResolvedOptions,
    /// The port it listens on (the resolved one may be 0: the kernel's choice).
    pub port: u16,
    /// `server.version`.
    pub version: String,
    pub started: Instant,
    /// The Control UI mount (`--control-ui`), as `config.get` reports it.
    pub control_ui: Option<ControlUiOptions>,
}

/// `status`, `config.get` and `last-heartbeat`, registered with `operator.read` (SPEC §12.4).
pub fn register(handlers: Handlers, facts: Facts) -> Handlers {
    let status_facts = facts.clone();
    handlers
        // Node answers the last agent heartbeat event, `null` before any
        // (`system-B9X__69d.mjs:329`, `system-event-ownership-CHVGbaAW.mjs:34`): this gateway
        // runs no agents, so there never is one. The Control UI times this call as its ping.
        .method_with_scope("last-heartbeat", "operator.read", |_request| async {
            Ok(Value::Null)
        })
        .method_with_scope("status", "operator.read", move |_request| {
            let facts = status_facts.clone();
            async move { Ok(status(&facts)) }
        })
        .method_with_scope("config.get", "operator.read", move |_request| {
            let facts = facts.clone();
            async move { Ok(config_get(&facts)) }
        })
}

/// `gateway.controlUi` as the config would say it: enabled, with its root and base path, when
/// `--control-ui` mounts one.
fn control_ui_config(ui: Option<&ControlUiOptions>) -> Value {
    match ui {
        Some(ui) => json!({
            "enabled": true,
            "root": ui.root.display().to_string(),
            "basePath": ui.base_path,
        }),
        None => json!({ "enabled": false }),
    }
}

/// What Node's `config.get` shows in place of a secret (`redact-sentinel-f_PhnHTI.mjs`).
const REDACTED: &str = "__OPENCLAW_REDACTED__";

fn bind_name(bind: &BindMode) -> &'static str {
    match bind {
        BindMode::Loopback => "loopback",
        BindMode::Lan => "lan",
        BindMode::Custom(_) => "custom",
    }
}

/// `status`: opaque to the probe (GP:167-179). This gateway runs no agents, channels or
/// sessions, so it says so with the empty shapes Node's summary uses
/// (`summary-CSHggWXP.mjs:325-377`), beside what it is.
fn status(facts: &Facts) -> Value {
    json!({
        "gateway": {
            "implementation": "gateway (Rust)",
            "version": facts.version,
            "pid": std::process::id(),
            "port": facts.port,
            "bind": bind_name(&facts.resolved.bind),
            "authMode": facts.resolved.auth.mode(),
            "uptimeMs": facts.started.elapsed().as_millis() as u64,
        },
        "heartbeat": { "agents": [] },
        "channelSummary": [],
        "queuedSystemEvents": [],
        "sessions": {
            "paths": [],
            "count": 0,
            "defaults": { "model": null, "contextTokens": null },
            "recent": [],
            "byAgent": [],
        },
    })
}

/// `config.get` in the shape the probe reads (GP:99-150): the config file's path, whether it
/// exists and parses, and the settings this gateway actually runs with (from its flags and
/// environment; `gateway run` reads no config file). Secrets are never echoed: a set one is
/// shown as Node's redaction sentinel.
fn config_get(facts: &Facts) -> Value {
    let resolved = &facts.resolved;
    let (exists, issues) = inspect(&resolved.config_path);
    let mut gateway = json!({
        "mode": "local",
        "bind": bind_name(&resolved.bind),
        "port": facts.port,
        "auth": { "mode": resolved.auth.mode() },
        "controlUi": control_ui_config(facts.control_ui.as_ref()),
    });
    if let BindMode::Custom(host) = &resolved.bind {
        gateway["customBindHost"] = json!(host);
    }
    // A secret is said to be set the way Node's redacted config says it
    // (`redact-snapshot-BpJeMUTt.mjs:120-150`), so the probe reports it configured.
    match &resolved.auth {
        Auth::Token(_) => gateway["auth"]["token"] = json!(REDACTED),
        Auth::Password(_) => gateway["auth"]["password"] = json!(REDACTED),
        Auth::None => {}
    }
    json!({
        "path": resolved.config_path.display().to_string(),
        "exists": exists,
        "valid": issues.is_empty(),
        "issues": issues,
        "legacyIssues": [],
        "config": { "gateway": gateway },
    })
}

/// Whether the config file exists, and what is wrong with it as far as this gateway can tell:
/// it checks that the file is readable JSON (OpenClaw also accepts JSON5, which this does not
/// parse, so such a file is reported with a message saying why rather than as valid).
fn inspect(path: &Path) -> (bool, Vec<Value>) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return (false, Vec::new()),
        Err(err) => {
            let message = format!("cannot read {}: {err}", path.display());
            return (true, vec![json!({ "path": "", "message": message })]);
        }
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(_)) => (true, Vec::new()),
        Ok(_) => (
            true,
            vec![json!({ "path": "", "message": "the config must be a JSON object" })],
        ),
        Err(err) => {
            let message = format!(
                "not plain JSON ({err}); gateway run reads no config file and does not check \
                 JSON5"
            );
            (true, vec![json!({ "path": "", "message": message })])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_is_judged_only_as_far_as_the_gateway_can_tell() {
        let dir = std::env::temp_dir().join(format!("gateway-config-get-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases: &[(&str, Option<&str>, bool, Option<&str>)] = &[
            // name, content (None: absent) → exists, issue starts with
            ("absent.json", None, false, None),
            (
                "object.json",
                Some(r#"{"gateway": {"port": 1}}"#),
                true,
                None,
            ),
            (
                "array.json",
                Some("[1]"),
                true,
                Some("the config must be a JSON object"),
            ),
            (
                "json5.json",
                Some("{gateway: {port: 1,},}"),
                true,
                Some("not plain JSON"),
            ),
        ];
        for (name, content, exists, issue) in cases {
            let path = dir.join(name);
            if let Some(content) = content {
                std::fs::write(&path, content).unwrap();
            }
            let (found, issues) = inspect(&path);
            assert_eq!(found, *exists, "{name}");
            match issue {
                None => assert!(issues.is_empty(), "{name}: {issues:?}"),
                Some(start) => assert!(
                    issues[0]["message"].as_str().unwrap().starts_with(start),
                    "{name}: {issues:?}"
                ),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
