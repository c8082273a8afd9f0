//! Which requests are the Control UI's (SPEC §13.3 "Routing"): the base path, the paths other
//! stages own, and whether a miss may fall back to `index.html` (the `Accept` rule).

use hyper::Method;

/// `gateway.controlUi.basePath` as Node normalizes it (control-ui-shared-DqFhbHR8.mjs:4-9):
/// trimmed; `""` or `/` is the root (`""`); otherwise a leading `/` and no trailing one.
pub(crate) fn normalize_base_path(raw: &str) -> String {
    let value = raw.trim();
    if value.is_empty() || value == "/" {
        return String::new();
    }
    let with_slash = if value.starts_with('/') {
        value.to_owned()
    } else {
        format!("/{value}")
    };
    match with_slash.strip_suffix('/') {
        Some(stripped) => stripped.to_owned(),
        None => with_slash,
    }
}

/// What the Control UI stage does with a request (control-ui-share-BY-xYcC6.mjs:44-75).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// Another stage's, or nobody's: the pipeline goes on.
    NotControlUi,
    /// `404` with the Control UI's headers (`/ui` at the root).
    NotFound,
    /// `302` to this location (the base path without its slash).
    Redirect(String),
    /// Served; a missing file falls back to `index.html` when `spa_fallback`.
    Serve { spa_fallback: bool },
}

/// Paths OpenClaw's other stages own when the UI sits at the root (CUR:53-64): the probes, the
/// MCP app shell, the worker and workspace-transfer namespaces, `/api`, `/j`, `/v1`.
fn reserved_at_root(path: &str) -> bool {
    const NAMESPACES: [&str; 12] = [
        "/health",
        "/healthz",
        "/ready",
        "/readyz",
        "/startup",
        "/startupz",
        "/__openclaw__/mcp-app",
        "/__openclaw__/worker",
        "/__openclaw__/worker-transfer",
        "/api",
        "/j",
        "/v1",
    ];
    NAMESPACES.iter().any(|root| within(path, root))
}

/// `path` is `root` or below it.
fn within(path: &str, root: &str) -> bool {
    path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Classifies a request for a UI mounted at `base` (normalized).
pub(super) fn classify(
    base: &str,
    path: &str,
    query: Option<&str>,
    method: &Method,
    accept: Option<&str>,
) -> Route {
    let read = *method == Method::GET || *method == Method::HEAD;
    let plugin_manager = read && {
        let manager = format!("{base}/settings/plugins");
        path == manager || path.strip_prefix(&manager) == Some("/")
    };
    let spa_fallback = plugin_manager || accepts_html(accept);
    if base.is_empty() {
        if within(path, "/ui") {
            return Route::NotFound;
        }
        if reserved_at_root(path) {
            return Route::NotControlUi;
        }
        // `/plugins/<id>` belongs to the UI only for a known plugin; this core has none, so
        // only the plugin list itself (CUR:58-60).
        if within(path, "/plugins")
            && !(matches!(path, "/plugins" | "/plugins/") && read && spa_fallback)
        {
            return Route::NotControlUi;
        }
        if !read {
            return Route::NotControlUi;
        }
        return Route::Serve { spa_fallback };
    }
    if !within(path, base) {
        return Route::NotControlUi;
    }
    if !read {
        return Route::NotControlUi;
    }
    if path == base {
        let search = query.map(|q| format!("?{q}")).unwrap_or_default();
        return Route::Redirect(format!("{base}/{search}"));
    }
    Route::Serve { spa_fallback }
}

/// Whether `Accept` lets a miss be answered with the app's HTML (http-common-vk2jgtAM.mjs:
/// 114-118): absent or blank; a range (wildcards count) accepting `text/html; charset=utf-8`
/// with q > 0; or `application/xhtml+xml` named explicitly.
pub(super) fn accepts_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return true;
    };
    accepts_media_type(accept, ("text", "html", Some("utf-8")), true)
        || accepts_media_type(accept, ("application", "xhtml+xml", None), false)
}

/// One parsed media range of `Accept`.
struct MediaRange {
    kind: String,
    subtype: String,
    parameters: Vec<(String, String)>,
    quality: f64,
}

/// Node's `acceptsMediaType` (http-common-vk2jgtAM.mjs:80-104): the quality of the most
/// specific range that matches the representation (`type/subtype` and an optional charset),
/// ranges it cannot parse ignored.
fn accepts_media_type(
    accept: &str,
    (kind, subtype, charset): (&str, &str, Option<&str>),
    allow_wildcards: bool,
) -> bool {
    let Some(ranges) = split_outside_quotes(accept, ',') else {
        return false;
    };
    let mut best = (-1i32, -1i32, 0f64);
    for range in ranges.iter().filter_map(|r| parse_media_range(r)) {
        let exact = range.kind == kind && range.subtype == subtype;
        let wildcard =
            allow_wildcards && range.subtype == "*" && (range.kind == "*" || range.kind == kind);
        if !exact && !wildcard {
            continue;
        }
        let parameters_match = range
            .parameters
            .iter()
            .all(|(name, value)| name == "charset" && charset == Some(value.as_str()));
        if !parameters_match {
            continue;
        }
        let media = match (range.kind.as_str(), range.subtype.as_str()) {
            ("*", _) => 0,
            (_, "*") => 1,
            _ => 2,
        };
        let specificity = (media, range.parameters.len() as i32);
        if specificity > (best.0, best.1) {
            best = (specificity.0, specificity.1, range.quality);
        } else if specificity == (best.0, best.1) {
            best.2 = best.2.max(range.quality);
        }
    }
    best.2 > 0.0
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// One range of `Accept` as Node's `parseMediaType` reads it; `None` when malformed.
fn parse_media_range(text: &str) -> Option<MediaRange> {
    let segments = split_outside_quotes(text, ';')?;
    let (first, rest) = segments.split_first()?;
    let lowered = first.trim_matches([' ', '\t']).to_ascii_lowercase();
    let mut parts = lowered.split('/');
    let (kind, subtype) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_token(kind) || !is_token(subtype) {
        return None;
    }
    let mut range = MediaRange {
        kind: kind.to_owned(),
        subtype: subtype.to_owned(),
        parameters: Vec::new(),
        quality: 1.0,
    };
    let mut quality_seen = false;
    for parameter in rest.iter().map(|p| p.trim_matches([' ', '\t'])) {
        if parameter.is_empty() {
            continue;
        }
        let (name, value) = parameter.split_once('=')?;
        let name = name.to_ascii_lowercase();
        if !is_token(&name) || value.is_empty() {
            return None;
        }
        if name == "q" {
            if quality_seen {
                return None;
            }
            quality_seen = true;
            range.quality = super::files::quality(value)?;
            continue;
        }
        let value = unquote(value)?;
        if range.parameters.iter().any(|(n, _)| *n == name) {
            return None;
        }
        let value = if name == "charset" {
            value.to_ascii_lowercase()
        } else {
            value
        };
        range.parameters.push((name, value));
    }
    Some(range)
}

/// A token as is, or a quoted string without its quotes and escapes.
fn unquote(value: &str) -> Option<String> {
    if is_token(value) {
        return Some(value.to_owned());
    }
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// Splits a header value at `delimiter` outside quoted strings (http-header-value-Be14tJQx.mjs:
/// 14-32); `None` when a quote or escape is left open.
pub(super) fn split_outside_quotes(value: &str, delimiter: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (index, c) in value.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c == delimiter {
            parts.push(&value[start..index]);
            start = index + c.len_utf8();
        }
    }
    if quoted || escaped {
        return None;
    }
    parts.push(&value[start..]);
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_normalize_as_node_does() {
        for (raw, normalized) in [
            ("", ""),
            ("  ", ""),
            ("/", ""),
            ("openclaw", "/openclaw"),
            ("/openclaw/", "/openclaw"),
            (" /a/b/ ", "/a/b"),
        ] {
            assert_eq!(normalize_base_path(raw), normalized, "{raw:?}");
        }
    }

    #[test]
    fn the_routing_table() {
        use Route::*;
        let get = Method::GET;
        let serve = Serve { spa_fallback: true };
        let cases: &[(&str, &str, Method, Route)] = &[
            ("", "/", get.clone(), serve),
            ("", "/ui", get.clone(), NotFound),
            ("", "/ui/x", get.clone(), NotFound),
            ("", "/uix", get.clone(), Serve { spa_fallback: true }),
            ("", "/healthz/x", get.clone(), NotControlUi),
            ("", "/api", get.clone(), NotControlUi),
            ("", "/api/x", get.clone(), NotControlUi),
            ("", "/apix", get.clone(), Serve { spa_fallback: true }),
            ("", "/v1/models", get.clone(), NotControlUi),
            ("", "/j/abc", get.clone(), NotControlUi),
            (
                "",
                "/__openclaw__/worker-transfer/x",
                get.clone(),
                NotControlUi,
            ),
            ("", "/__openclaw__/mcp-app/view", get.clone(), NotControlUi),
            ("", "/plugins", get.clone(), Serve { spa_fallback: true }),
            ("", "/plugins/some-id", get.clone(), NotControlUi),
            ("", "/", Method::POST, NotControlUi),
            ("", "/", Method::HEAD, Serve { spa_fallback: true }),
            ("/oc", "/oc", get.clone(), Redirect("/oc/".into())),
            ("/oc", "/oc/", get.clone(), Serve { spa_fallback: true }),
            ("/oc", "/ocx", get.clone(), NotControlUi),
            ("/oc", "/", get.clone(), NotControlUi),
            ("/oc", "/ui", get.clone(), NotControlUi),
            ("/oc", "/oc/x", Method::PUT, NotControlUi),
        ];
        for (base, path, method, route) in cases {
            assert_eq!(
                classify(base, path, None, method, None),
                *route,
                "{method} {path} under {base:?}"
            );
        }
        assert_eq!(
            classify("/oc", "/oc", Some("a=1"), &get, None),
            Redirect("/oc/?a=1".into())
        );
    }

    #[test]
    fn the_accept_rule_for_the_spa_fallback() {
        for (accept, fallback) in [
            (None, true),
            (Some(""), true),
            (Some("text/html"), true),
            (Some("text/html,application/xhtml+xml,*/*;q=0.8"), true),
            (Some("*/*"), true),
            (Some("text/*"), true),
            (Some("text/html; charset=UTF-8"), true),
            (Some("text/html; charset=latin1"), false),
            (Some("text/html;q=0"), false),
            (Some("text/html;q=0, */*"), false),
            (Some("application/json"), false),
            (Some("image/avif,image/webp,*/*;q=0.8"), true),
            (Some("image/png"), false),
            (Some("application/xhtml+xml"), true),
            (Some("application/*"), false),
            (Some("text/html;q=2"), false),
            (Some("text/html;q=0.5"), true),
            (Some("\"unterminated"), false),
        ] {
            assert_eq!(accepts_html(accept), fallback, "{accept:?}");
        }
    }
}
