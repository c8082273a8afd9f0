//! `control-ui-config.json`: what the app reads at start (its base path, the assistant's
//! name, the server's version, feature switches) (SPEC §13.3; CUI:933-1045).

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

use super::{ControlUiBuildSource, ControlUiOptions};
use crate::server::http::Body;
use crate::server::ws::ProtocolOptions;

/// Whether `path` is the config's: `B/control-ui-config.json`, the legacy
/// `B/__openclaw/control-ui-config.json`, and at the root also
/// `/__openclaw__/control-ui-config.json` (CUI:948-951).
pub(super) fn is_config_path(path: &str, base: &str) -> bool {
    path.strip_prefix(base).is_some_and(|rest| {
        rest == "/control-ui-config.json" || rest == "/__openclaw/control-ui-config.json"
    }) || (base.is_empty() && path == "/__openclaw__/control-ui-config.json")
}

/// The body, in Node's key order, with Node's defaults where neither the gateway nor the host
/// has a value (no OpenClaw config: assistant "Assistant", avatar "A"), then the host's keys
/// over them. `basePath`, `serverVersion` and `serverBuildId` are the gateway's.
pub(super) fn body(
    options: &ControlUiOptions,
    base_path: &str,
    protocol: &ProtocolOptions,
    auth_required: bool,
) -> Value {
    let mut body = Map::new();
    let mut set = |key: &str, value: Value| {
        body.insert(key.to_owned(), value);
    };
    set("basePath", json!(base_path));
    set("assistantName", json!("Assistant"));
    set("assistantAvatar", json!("A"));
    set("assistantAvatarSource", Value::Null);
    set("assistantAvatarStatus", Value::Null);
    set("assistantAvatarReason", Value::Null);
    set("serverVersion", json!(protocol.server_version));
    // Only a bundled UI is told the server's build (CUI:1016).
    if let (ControlUiBuildSource::Bundled, Some(build_id)) =
        (options.build_source, &protocol.build_id)
    {
        set("serverBuildId", json!(build_id));
    }
    set("embedSandbox", json!("scripts"));
    set("allowExternalEmbedUrls", json!(false));
    set("automaticallyFetchFavicons", json!(true));
    if let Some(environment) = &options.environment {
        set("environment", environment.clone());
    }
    set("communityInvite", json!(true));
    set("terminalEnabled", json!(options.terminal_enabled));
    set("cliAgentsEnabled", json!(true));
    set("pluginAssetsRequireAuth", json!(auth_required));
    set("pluginFrameGrants", json!([]));
    for (key, value) in &options.config {
        if !matches!(key.as_str(), "basePath" | "serverVersion" | "serverBuildId") {
            body.insert(key.clone(), value.clone());
        }
    }
    Value::Object(body)
}

/// `200` with the body (HEAD: headers only, `Content-Length` included), `Cache-Control: no-cache` (CUI:986-992, 1040).
pub(super) fn respond(body: &Value, head: bool) -> Response<Body> {
    let text = body.to_string();
    let length = text.len();
    let mut response = Response::new(if head {
        Body::empty()
    } else {
        Body::from(text)
    });
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // HEAD says the length a GET would send, as Node's `res.end()` after the headers does.
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_paths() {
        for (path, base, is) in [
            ("/control-ui-config.json", "", true),
            ("/__openclaw/control-ui-config.json", "", true),
            ("/__openclaw__/control-ui-config.json", "", true),
            ("/oc/control-ui-config.json", "/oc", true),
            ("/oc/__openclaw/control-ui-config.json", "/oc", true),
            ("/oc/__openclaw__/control-ui-config.json", "/oc", false),
            ("/control-ui-config.json", "/oc", false),
            ("/x/control-ui-config.json", "", false),
        ] {
            assert_eq!(is_config_path(path, base), is, "{path} under {base:?}");
        }
    }
}
