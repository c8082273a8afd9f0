//! The HTTP knobs of `gw_serve_options` ([`HttpOptions`] but its routes, which are
//! `http_routes.rs`): the request limits, `Strict-Transport-Security`, where a WebSocket
//! upgrade is accepted, and the Control UI mount ([`ControlUiOptions`]).
//!
//! [`HttpOptions`]: crate::HttpOptions
//! [`ControlUiOptions`]: crate::ControlUiOptions

use std::ffi::c_char;
use std::time::Duration;

use super::boundary::{
    json_argument, name_argument, non_null, optional_utf8_argument, result_boundary,
};
use super::result::{fail, gw_result};
use super::serve_options::{gw_serve_options, update, update_with_name};
use crate::server::{ControlUiBuildSource, ControlUiOptions, WebSocketPaths};

/// The largest request head (request line and headers) read; past it the client is answered
/// `431` and the connection closed (default 65536).
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) for a size the Rust `ServeOptions::validate`
/// refuses; `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_http_max_header_bytes(
    options: *mut gw_serve_options,
    bytes: usize,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_serve_options_set_http_max_header_bytes", options, |o| {
            o.http.max_header_bytes = bytes
        })
    }
}

/// TCP connections open at once on the gateway's port, HTTP and WebSocket alike; past it a new
/// connection is answered `503` and closed without being read (default 10240).
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) for a value the Rust `ServeOptions::validate`
/// refuses; `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_http_max_connections(
    options: *mut gw_serve_options,
    n: usize,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update("gw_serve_options_set_http_max_connections", options, |o| {
            o.http.max_connections = n
        })
    }
}

/// A request head not complete within this closes the connection (default 30000 ms).
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) for 0 or more than a day (86400000 ms);
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_http_header_timeout_ms(
    options: *mut gw_serve_options,
    ms: u64,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update(
            "gw_serve_options_set_http_header_timeout_ms",
            options,
            |o| o.http.header_timeout = Duration::from_millis(ms),
        )
    }
}

/// A request body that sends nothing for this long fails its read (`gw_http_exchange_read`
/// gives `GW_ERR_HTTP_BODY`) and the client is answered `408` (default 30000 ms).
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) for 0 or more than a day (86400000 ms);
/// `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_http_body_idle_timeout_ms(
    options: *mut gw_serve_options,
    ms: u64,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update(
            "gw_serve_options_set_http_body_idle_timeout_ms",
            options,
            |o| o.http.body_idle_timeout = Duration::from_millis(ms),
        )
    }
}

/// Sends `Strict-Transport-Security: <value>` on every HTTP response (e.g.
/// `"max-age=31536000"`; Node's `gateway.http.securityHeaders.strictTransportSecurity`); NULL
/// sends none (the default).
///
/// The string is copied. `GW_ERR_INVALID_ARGUMENT` (options unchanged) for an empty value, one
/// that is not a valid header value, or not UTF-8; `GW_ERR_NULL_ARGUMENT` when `options` is
/// NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call;
/// `value` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_http_strict_transport_security(
    options: *mut gw_serve_options,
    value: *const c_char,
) -> gw_result {
    const FUNCTION: &str = "gw_serve_options_set_http_strict_transport_security";
    result_boundary(FUNCTION, || {
        non_null(FUNCTION, "options", options)?;
        // SAFETY: NULL or NUL-terminated, by the contract.
        let value = unsafe { optional_utf8_argument(FUNCTION, "value", value) }?;
        // `ServeOptions::validate` refuses a value that is empty or not a header value.
        let value = value.map(str::to_owned);
        // SAFETY: forwarded contract.
        match unsafe {
            update(FUNCTION, options, |o| {
                o.http.strict_transport_security = value
            })
        } {
            gw_result::GW_OK => Ok(()),
            refused => Err(refused),
        }
    })
}

/// Accepts WebSocket upgrades at `path` (exact, e.g. `"/"` or `"/openclaw"`). By default an
/// upgrade is accepted at every path but the ones OpenClaw reserves, as Node does; the first
/// call restricts upgrades to the paths added (an upgrade elsewhere is answered `404`), each
/// call adds one.
///
/// The string is copied. `GW_ERR_INVALID_ARGUMENT` (options unchanged) for a path that does
/// not start with `/`, or is not UTF-8; `GW_ERR_NULL_ARGUMENT` when an argument is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call;
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_add_websocket_path(
    options: *mut gw_serve_options,
    path: *const c_char,
) -> gw_result {
    const FUNCTION: &str = "gw_serve_options_add_websocket_path";
    result_boundary(FUNCTION, || {
        non_null(FUNCTION, "options", options)?;
        // SAFETY: NULL or NUL-terminated, by the contract.
        let path = unsafe { name_argument(FUNCTION, "path", path) }?;
        // `ServeOptions::validate` refuses a path without its leading '/'.
        // SAFETY: forwarded contract.
        let added = unsafe {
            update(FUNCTION, options, |o| match &mut o.http.websocket_paths {
                WebSocketPaths::Only(paths) => paths.push(path.to_owned()),
                any => *any = WebSocketPaths::Only(vec![path.to_owned()]),
            })
        };
        match added {
            gw_result::GW_OK => Ok(()),
            refused => Err(refused),
        }
    })
}

/// Serves OpenClaw's Control UI (a built `dist/control-ui/`, unmodified) from the directory
/// `root` under `base_path` (`""` or NULL: the site's root; normalized as Node does,
/// `"openclaw/"` → `"/openclaw"`), as a configured build: its page does not reload when
/// `hello-ok.server.buildId` differs from its own. It answers after the host's HTTP routes.
/// Replaces a mount set before, with the defaults for the other `gw_serve_options_set_control_ui_*`
/// settings. The directory is read when `gw_serve` is called, which fails naming what is wrong
/// with it.
///
/// The strings are copied. `GW_ERR_INVALID_ARGUMENT` (options unchanged) for an empty `root`
/// or a string that is not UTF-8; `GW_ERR_NULL_ARGUMENT` when
/// `options` or `root` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call;
/// `root` and `base_path` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_control_ui(
    options: *mut gw_serve_options,
    root: *const c_char,
    base_path: *const c_char,
) -> gw_result {
    const FUNCTION: &str = "gw_serve_options_set_control_ui";
    result_boundary(FUNCTION, || {
        non_null(FUNCTION, "options", options)?;
        // SAFETY: NULL or NUL-terminated, by the contract.
        let base_path =
            unsafe { optional_utf8_argument(FUNCTION, "base_path", base_path) }?.unwrap_or("");
        // SAFETY: forwarded contract.
        let set = unsafe {
            update_with_name(FUNCTION, options, "root", root, |o, root| {
                o.http.control_ui = Some(ControlUiOptions::new(root).base_path(base_path));
            })
        };
        match set {
            gw_result::GW_OK => Ok(()),
            refused => Err(refused),
        }
    })
}

/// Applies `change` to the Control UI mount, or refuses when there is none yet.
///
/// # Safety
///
/// As [`update`].
unsafe fn update_control_ui(
    function: &'static str,
    options: *mut gw_serve_options,
    change: impl FnOnce(&mut ControlUiOptions),
) -> gw_result {
    result_boundary(function, || {
        let live = non_null(function, "options", options)?;
        // SAFETY: non-NULL, live and not shared, by the contract.
        if unsafe { &*live }.inner.http.control_ui.is_none() {
            return Err(fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!(
                    "{function}: no Control UI is mounted: call gw_serve_options_set_control_ui first"
                ),
            ));
        }
        // SAFETY: forwarded contract.
        let changed = unsafe {
            update(function, options, |o| {
                if let Some(ui) = o.http.control_ui.as_mut() {
                    change(ui)
                }
            })
        };
        match changed {
            gw_result::GW_OK => Ok(()),
            refused => Err(refused),
        }
    })
}

/// The keys of `control-ui-config.json` the host sets (`config_json`, `len` bytes of UTF-8, a
/// JSON object such as `{"assistantName":"Ada"}`, copied); the gateway fills `basePath`,
/// `serverVersion` and `serverBuildId` itself, and Node's defaults for the rest.
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) when no Control UI is mounted
/// (`gw_serve_options_set_control_ui` first) or `config_json` is not a JSON object;
/// `GW_ERR_NULL_ARGUMENT` when a pointer is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call;
/// `config_json` is NULL or `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_control_ui_config_json(
    options: *mut gw_serve_options,
    config_json: *const c_char,
    len: usize,
) -> gw_result {
    const FUNCTION: &str = "gw_serve_options_set_control_ui_config_json";
    result_boundary(FUNCTION, || {
        // SAFETY: NULL or `len` readable bytes, by the contract.
        let config = unsafe { json_argument(FUNCTION, "config_json", config_json, len) }?;
        let serde_json::Value::Object(config) = config else {
            return Err(fail(
                gw_result::GW_ERR_INVALID_ARGUMENT,
                format!(
                    "{FUNCTION}: config_json is not a JSON object: give {{\"key\": value, ...}}"
                ),
            ));
        };
        // SAFETY: forwarded contract.
        match unsafe { update_control_ui(FUNCTION, options, |ui| ui.config = config) } {
            gw_result::GW_OK => Ok(()),
            refused => Err(refused),
        }
    })
}

/// `gateway.controlUi.environment` (`environment_json`, `len` bytes of UTF-8 JSON, any value,
/// copied), inserted into the UI's `index.html`; NULL removes it (the default).
///
/// `GW_ERR_INVALID_ARGUMENT` (options unchanged) when no Control UI is mounted or the text is
/// not JSON; `GW_ERR_NULL_ARGUMENT` when `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call;
/// `environment_json` is NULL or `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_control_ui_environment_json(
    options: *mut gw_serve_options,
    environment_json: *const c_char,
    len: usize,
) -> gw_result {
    const FUNCTION: &str = "gw_serve_options_set_control_ui_environment_json";
    result_boundary(FUNCTION, || {
        let environment = match environment_json.is_null() {
            true => None,
            false => {
                // SAFETY: `len` readable bytes, by the contract.
                let value =
                    unsafe { json_argument(FUNCTION, "environment_json", environment_json, len) };
                Some(value?)
            }
        };
        // SAFETY: forwarded contract.
        match unsafe { update_control_ui(FUNCTION, options, |ui| ui.environment = environment) } {
            gw_result::GW_OK => Ok(()),
            refused => Err(refused),
        }
    })
}

/// Whether the mounted UI is the one shipped with this gateway build (`true`: a bundled build,
/// which reloads when `hello-ok.server.buildId` differs from its own) or one the user chose
/// (`false`, the default: `server.controlUiBuildSource` is `"configured"`, and it never
/// reloads for that).
///
/// `GW_ERR_INVALID_ARGUMENT` when no Control UI is mounted; `GW_ERR_NULL_ARGUMENT` when
/// `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_control_ui_bundled(
    options: *mut gw_serve_options,
    bundled: bool,
) -> gw_result {
    let source = match bundled {
        true => ControlUiBuildSource::Bundled,
        false => ControlUiBuildSource::Configured,
    };
    // SAFETY: forwarded contract.
    unsafe {
        update_control_ui("gw_serve_options_set_control_ui_bundled", options, |ui| {
            ui.build_source = source
        })
    }
}

/// Whether the UI offers its terminal (`data-openclaw-terminal-enabled`, and the
/// `wasm-unsafe-eval` source in its Content-Security-Policy) (default false).
///
/// `GW_ERR_INVALID_ARGUMENT` when no Control UI is mounted; `GW_ERR_NULL_ARGUMENT` when
/// `options` is NULL.
///
/// # Safety
///
/// `options` is NULL or a live `gw_serve_options` that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gw_serve_options_set_control_ui_terminal(
    options: *mut gw_serve_options,
    enabled: bool,
) -> gw_result {
    // SAFETY: forwarded contract.
    unsafe {
        update_control_ui("gw_serve_options_set_control_ui_terminal", options, |ui| {
            ui.terminal_enabled = enabled
        })
    }
}

#[cfg(test)]
mod tests {
    use std::ptr::{null, null_mut};

    use super::*;
    use crate::ffi::boundary::last_error;
    use crate::ffi::serve_options::{gw_serve_options_free, gw_serve_options_new};

    #[test]
    fn the_http_knobs_set_the_rust_options() {
        let options = gw_serve_options_new();
        // SAFETY: live options until freed at the end; NUL-terminated strings.
        unsafe {
            assert_eq!(
                gw_serve_options_set_http_max_header_bytes(options, 32768),
                gw_result::GW_OK
            );
            assert_eq!(
                gw_serve_options_set_http_header_timeout_ms(options, 1500),
                gw_result::GW_OK
            );
            assert_eq!(
                gw_serve_options_set_http_body_idle_timeout_ms(options, 2500),
                gw_result::GW_OK
            );
            let hsts =
                |v: *const c_char| gw_serve_options_set_http_strict_transport_security(options, v);
            assert_eq!(hsts(c"max-age=60".as_ptr()), gw_result::GW_OK);
            assert_eq!(hsts(c"".as_ptr()), gw_result::GW_ERR_INVALID_ARGUMENT);
            assert_eq!(hsts(c"a\x01b".as_ptr()), gw_result::GW_ERR_INVALID_ARGUMENT);
            assert!(
                last_error().contains("is not a header value"),
                "{}",
                last_error()
            );
            let ws = |p: &std::ffi::CStr| gw_serve_options_add_websocket_path(options, p.as_ptr());
            assert_eq!((*options).inner.http.websocket_paths, WebSocketPaths::Any);
            assert_eq!(ws(c"/"), gw_result::GW_OK);
            assert_eq!(ws(c"/openclaw"), gw_result::GW_OK);
            assert_eq!(ws(c"openclaw"), gw_result::GW_ERR_INVALID_ARGUMENT);
            assert!(
                last_error().contains("does not start with '/'"),
                "{}",
                last_error()
            );
            let http = &(*options).inner.http;
            assert_eq!(http.max_header_bytes, 32768);
            assert_eq!(http.header_timeout, Duration::from_millis(1500));
            assert_eq!(http.body_idle_timeout, Duration::from_millis(2500));
            assert_eq!(
                http.strict_transport_security.as_deref(),
                Some("max-age=60")
            );
            assert_eq!(
                http.websocket_paths,
                WebSocketPaths::Only(vec!["/".into(), "/openclaw".into()])
            );
            assert_eq!(hsts(null()), gw_result::GW_OK);
            assert_eq!((*options).inner.http.strict_transport_security, None);
            assert_eq!(
                gw_serve_options_set_http_max_header_bytes(null_mut(), 1),
                gw_result::GW_ERR_NULL_ARGUMENT
            );
            gw_serve_options_free(options);
        }
    }

    #[test]
    fn the_control_ui_is_mounted_then_configured() {
        let options = gw_serve_options_new();
        let config = r#"{"assistantName":"Ada"}"#;
        // SAFETY: live options until freed at the end; NUL-terminated strings, JSON with its
        // length.
        unsafe {
            let bundled = gw_serve_options_set_control_ui_bundled(options, true);
            assert_eq!(bundled, gw_result::GW_ERR_INVALID_ARGUMENT);
            assert!(last_error().contains("call gw_serve_options_set_control_ui first"));
            let mount = |root: *const c_char, base: *const c_char| {
                gw_serve_options_set_control_ui(options, root, base)
            };
            // Normalized as Node does, never refused.
            for (given, normal) in [
                (c"openclaw", "/openclaw"),
                (c"/openclaw/", "/openclaw"),
                (c"/", ""),
            ] {
                assert_eq!(mount(c"/ui".as_ptr(), given.as_ptr()), gw_result::GW_OK);
                let ui = (*options).inner.http.control_ui.as_ref().unwrap();
                assert_eq!(ui.base_path, normal, "{given:?}");
            }
            assert_eq!(
                mount(c"".as_ptr(), null()),
                gw_result::GW_ERR_INVALID_ARGUMENT
            );
            assert_eq!(mount(null(), null()), gw_result::GW_ERR_NULL_ARGUMENT);
            let unchanged = (*options).inner.http.control_ui.as_ref().unwrap();
            assert_eq!(
                unchanged.root,
                std::path::Path::new("/ui"),
                "a refusal changes nothing"
            );
            assert_eq!(
                mount(c"/srv/ui".as_ptr(), c"/openclaw".as_ptr()),
                gw_result::GW_OK
            );
            let json = |text: &str| {
                gw_serve_options_set_control_ui_config_json(
                    options,
                    text.as_ptr().cast(),
                    text.len(),
                )
            };
            assert_eq!(json(config), gw_result::GW_OK);
            assert_eq!(json("[1]"), gw_result::GW_ERR_INVALID_ARGUMENT);
            let env = r#"{"name":"staging"}"#;
            let set_env = gw_serve_options_set_control_ui_environment_json(
                options,
                env.as_ptr().cast(),
                env.len(),
            );
            assert_eq!(set_env, gw_result::GW_OK);
            assert_eq!(
                gw_serve_options_set_control_ui_bundled(options, true),
                gw_result::GW_OK
            );
            assert_eq!(
                gw_serve_options_set_control_ui_terminal(options, true),
                gw_result::GW_OK
            );
            let ui = (*options).inner.http.control_ui.clone().unwrap();
            assert_eq!(ui.root, std::path::Path::new("/srv/ui"));
            assert_eq!(ui.base_path, "/openclaw");
            assert_eq!(ui.config["assistantName"], "Ada");
            assert_eq!(ui.environment, Some(serde_json::json!({"name": "staging"})));
            assert_eq!(ui.build_source, ControlUiBuildSource::Bundled);
            assert!(ui.terminal_enabled);
            let cleared = gw_serve_options_set_control_ui_environment_json(options, null(), 0);
            assert_eq!(cleared, gw_result::GW_OK);
            // A new mount starts from the defaults.
            assert_eq!(mount(c"/srv/other".as_ptr(), null()), gw_result::GW_OK);
            let ui = (*options).inner.http.control_ui.clone().unwrap();
            assert_eq!((ui.base_path.as_str(), ui.terminal_enabled), ("", false));
            assert!(ui.config.is_empty() && ui.environment.is_none());
            gw_serve_options_free(options);
        }
    }
}
