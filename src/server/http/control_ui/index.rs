//! `index.html` as the gateway serves it (SPEC §13.3 "index.html rewrite"): asset URLs under
//! the base path, root assets versioned by the build id, the `<html>` attributes the app
//! reads, and the Content-Security-Policy that admits exactly its inline scripts.

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::files::{ROOT_PUBLIC_ASSETS, is_versioned_public_asset};

const BUILD_ID_ATTRIBUTE: &str = "data-openclaw-control-ui-build-id";

/// The build id the bundled `index.html` carries on `<html>` (`<buildId>-<64 hex>`), as Node
/// reads it (control-ui-assets-CiL5aN79.mjs:232): 1–161 of `[a-zA-Z0-9._-]`.
pub(super) fn public_asset_build_id(html: &str) -> Option<String> {
    let marker = format!("{BUILD_ID_ATTRIBUTE}=\"");
    let start = html.find(&marker)? + marker.len();
    let rest = &html[start..];
    let end = rest.find('"')?;
    let id = &rest[..end];
    let valid = (1..=161).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    valid.then(|| id.to_owned())
}

/// What the rewrite puts in.
pub(super) struct Rewrite<'a> {
    /// The normalized base path (`""` or `/x`).
    pub base_path: &'a str,
    /// The build id for `?v=` and the `<html>` attribute, when the page had one.
    pub build_id: Option<&'a str>,
    pub terminal_enabled: bool,
    pub environment: Option<&'a Value>,
}

/// The served `index.html` (CUI:421-433, 881-897), by plain string replacement as Node does.
pub(super) fn rewrite(html: &str, with: &Rewrite<'_>) -> String {
    let with_assets = rewrite_asset_hrefs(html, with.base_path, with.build_id);
    let mut attributes = format!(
        " data-openclaw-control-ui-base-path=\"{}\" data-openclaw-terminal-enabled=\"{}\"",
        escape_html(with.base_path),
        with.terminal_enabled
    );
    if let Some(environment) = with.environment {
        attributes.push_str(&format!(
            " data-openclaw-environment=\"{}\"",
            escape_html(&environment.to_string())
        ));
    }
    if let Some(id) = with.build_id {
        attributes.push_str(&format!(" {BUILD_ID_ATTRIBUTE}=\"{}\"", escape_html(id)));
    }
    let Some((start, end)) = first_html_tag(&with_assets) else {
        return with_assets;
    };
    let tag = remove_build_id_attributes(&with_assets[start..end]);
    // `<html` (any case) becomes `<html` + the attributes; the rest of the tag stays.
    let tag = format!("<html{attributes}{}", &tag[5..]);
    format!("{}{tag}{}", &with_assets[..start], &with_assets[end..])
}

/// `src="./assets/`, `href="./assets/` under the base path, and each root asset's `href`
/// (relative, absolute, or already under the base path) made `B/asset?v=<id>`
/// (control-ui-root-assets-DS7D1PNh.mjs; CUI:421-433). Node replaces with one alternation, so
/// at each position the first key that matches wins and replaced text is not looked at again.
fn rewrite_asset_hrefs(html: &str, base: &str, build_id: Option<&str>) -> String {
    let mut replacements: Vec<(String, String)> = vec![
        ("src=\"./assets/".into(), format!("src=\"{base}/assets/")),
        ("href=\"./assets/".into(), format!("href=\"{base}/assets/")),
    ];
    for asset in ROOT_PUBLIC_ASSETS {
        let version = match build_id {
            Some(id) if is_versioned_public_asset(asset) => {
                format!("?v={}", encode_uri_component(id))
            }
            _ => String::new(),
        };
        let href = format!("href=\"{base}/{asset}{version}\"");
        for key in [
            format!("href=\"./{asset}\""),
            format!("href=\"/{asset}\""),
            format!("href=\"{base}/{asset}\""),
        ] {
            replacements.push((key, href.clone()));
        }
    }
    let mut out = String::with_capacity(html.len() + 256);
    let mut rest = html;
    'scan: while !rest.is_empty() {
        for (key, value) in &replacements {
            if let Some(after) = rest.strip_prefix(key.as_str()) {
                out.push_str(value);
                rest = after;
                continue 'scan;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The span of the first `<html…>` tag (`/<html\b[^>]*>/i`).
fn first_html_tag(html: &str) -> Option<(usize, usize)> {
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find("<html") {
        let start = from + found;
        let next = lower.as_bytes().get(start + 5).copied();
        if next.is_none_or(|b| !(b.is_ascii_alphanumeric() || b == b'_')) {
            let end = start + lower[start..].find('>')? + 1;
            return Some((start, end));
        }
        from = start + 5;
    }
    None
}

/// The tag without any ` data-openclaw-control-ui-build-id="…"` (a whitespace, then the
/// attribute).
fn remove_build_id_attributes(tag: &str) -> String {
    let marker = format!("{BUILD_ID_ATTRIBUTE}=\"");
    let mut out = tag.to_owned();
    let mut from = 0;
    while let Some(found) = out[from..].find(&marker) {
        let at = from + found;
        let preceded_by_space = out[..at]
            .chars()
            .next_back()
            .is_some_and(char::is_whitespace);
        let value_end = out[at + marker.len()..].find('"');
        match (preceded_by_space, value_end) {
            (true, Some(end)) => {
                let space = out[..at].chars().next_back().map_or(1, char::len_utf8);
                out.replace_range(at - space..at + marker.len() + end + 1, "");
                from = at - space;
            }
            _ => from = at + marker.len(),
        }
    }
    out
}

/// `escapeHtml` (html-escape-BMD_QFeA.mjs): `& < > " '`.
fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `encodeURIComponent`: all but `A-Z a-z 0-9 - _ . ! ~ * ' ( )` percent-encoded as UTF-8.
fn encode_uri_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `sha256-<base64>` of each inline script: a `<script>` without a `src` attribute and with
/// something between its tags, hashed exactly as served (control-ui-DWr4NUmu.mjs:191-209).
pub(super) fn inline_script_hashes(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut hashes = Vec::new();
    let mut from = 0;
    while let Some(found) = lower[from..].find("<script") {
        let start = from + found;
        let after_name = start + "<script".len();
        let next = lower.as_bytes().get(after_name).copied();
        // `<script(?:\s[^>]*)?>`: the name ends at whitespace or `>`.
        if !next.is_some_and(|b| b == b'>' || b.is_ascii_whitespace()) {
            from = after_name;
            continue;
        }
        let Some(open_end) = lower[after_name..].find('>').map(|i| after_name + i + 1) else {
            break;
        };
        let Some(close) = lower[open_end..].find("</script>").map(|i| open_end + i) else {
            break;
        };
        let content = &html[open_end..close];
        if !has_src_attribute(&html[start..open_end]) && !content.is_empty() {
            let digest = Sha256::digest(content.as_bytes());
            hashes.push(format!(
                "sha256-{}",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
        }
        from = close + "</script>".len();
    }
    hashes
}

/// Whether an opening tag has an attribute named `src` (CUI:206-208: names are the runs after
/// whitespace up to `=`, `/`, `>` or whitespace; values skipped).
fn has_src_attribute(open_tag: &str) -> bool {
    let inner = open_tag
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim_start_matches(|c: char| !c.is_whitespace());
    let mut rest = inner;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return false;
        }
        let name_end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '=' | '/' | '>'))
            .unwrap_or(rest.len());
        if name_end == 0 {
            rest = &rest[1..];
            continue;
        }
        if rest[..name_end].eq_ignore_ascii_case("src") {
            return true;
        }
        rest = rest[name_end..].trim_start();
        if let Some(value) = rest.strip_prefix('=') {
            let value = value.trim_start();
            rest = match value.chars().next() {
                Some(quote @ ('"' | '\'')) => {
                    value[1..].find(quote).map_or("", |end| &value[end + 2..])
                }
                _ => value
                    .find(char::is_whitespace)
                    .map_or("", |end| &value[end..]),
            };
        }
    }
}

/// The Control UI's Content-Security-Policy (CUI:211-243): `script_hashes` and
/// `'wasm-unsafe-eval'` extend `script-src`; the request's `Host` (a bare host[:port]) adds
/// `http://<h>:* https://<h>:*` to `connect-src`.
pub(super) fn csp(script_hashes: &[String], allow_wasm: bool, host: Option<&str>) -> String {
    let mut script = vec!["'self'".to_owned()];
    script.extend(script_hashes.iter().map(|h| format!("'{h}'")));
    if allow_wasm {
        script.push("'wasm-unsafe-eval'".to_owned());
    }
    let mut connect = "'self' ws: wss: data: https://api.openai.com https://tweakcn.com".to_owned();
    if let Some(hostname) = host.and_then(portal_hostname) {
        connect.push_str(&format!(" http://{hostname}:* https://{hostname}:*"));
    }
    [
        "default-src 'self'".to_owned(),
        "base-uri 'none'".to_owned(),
        "object-src 'none'".to_owned(),
        "frame-ancestors 'none'".to_owned(),
        "frame-src 'self' http: https:".to_owned(),
        format!("script-src {}", script.join(" ")),
        "style-src 'self' 'unsafe-inline' https://fonts.googleapis.com".to_owned(),
        "img-src 'self' data: blob: https:".to_owned(),
        "media-src 'self' data: blob:".to_owned(),
        "font-src 'self' https://fonts.gstatic.com".to_owned(),
        "worker-src 'self'".to_owned(),
        format!("connect-src {connect}"),
    ]
    .join("; ")
}

/// The hostname of a `Host` header, when `http://<host>` parses as a URL with nothing but a
/// host and port (no userinfo, path, query or fragment) (CUI:225-228). IPv6 keeps its
/// brackets, names are lowercased, as the URL parser gives them.
fn portal_hostname(host: &str) -> Option<String> {
    if host.is_empty() || host.contains(['/', '?', '#', '@', '\\', ' ']) {
        return None;
    }
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (inside, after) = v6.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        (
            format!("[{}]", inside.to_ascii_lowercase()),
            after.strip_prefix(':'),
        )
    } else {
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !valid {
            return None;
        }
        (name.to_ascii_lowercase(), port)
    };
    match port {
        Some(port) if !port.is_empty() && port.parse::<u16>().is_err() => None,
        _ => Some(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = concat!(
        "<!doctype html>\n<HTML data-openclaw-control-ui-build-id=\"b-1\" lang=\"en\">",
        "<link rel=\"icon\" href=\"./favicon.svg\" /><link href=\"/sw.js\">",
        "<link rel=\"manifest\" href=\"./manifest.webmanifest\">",
        "<script>one()</script><script src=\"./assets/a.js\"></script>",
        "<script type=\"module\">two()</script><script></script>",
        "<link href=\"./assets/b.css\"></HTML>"
    );

    #[test]
    fn the_rewrite_of_spec_13_3() {
        let env = serde_json::json!({"name": "a\"b"});
        let served = rewrite(
            PAGE,
            &Rewrite {
                base_path: "/oc",
                build_id: Some("b-1"),
                terminal_enabled: false,
                environment: Some(&env),
            },
        );
        assert!(served.contains(
            "<html data-openclaw-control-ui-base-path=\"/oc\" data-openclaw-terminal-enabled=\"false\" \
             data-openclaw-environment=\"{&quot;name&quot;:&quot;a\\&quot;b&quot;}\" \
             data-openclaw-control-ui-build-id=\"b-1\" lang=\"en\">"
        ), "{served}");
        assert!(served.contains("href=\"/oc/favicon.svg?v=b-1\""));
        assert!(
            served.contains("href=\"/oc/sw.js\""),
            "sw.js is never versioned"
        );
        assert!(served.contains("href=\"/oc/manifest.webmanifest?v=b-1\""));
        assert!(served.contains("src=\"/oc/assets/a.js\""));
        assert!(served.contains("href=\"/oc/assets/b.css\""));
        assert_eq!(served.matches(BUILD_ID_ATTRIBUTE).count(), 1);
    }

    #[test]
    fn without_a_build_id_nothing_is_versioned() {
        let served = rewrite(
            PAGE,
            &Rewrite {
                base_path: "",
                build_id: None,
                terminal_enabled: true,
                environment: None,
            },
        );
        assert!(served.contains("<html data-openclaw-control-ui-base-path=\"\" data-openclaw-terminal-enabled=\"true\" lang=\"en\">"), "{served}");
        assert!(served.contains("href=\"/favicon.svg\""));
        assert!(!served.contains(BUILD_ID_ATTRIBUTE));
    }

    #[test]
    fn inline_scripts_are_hashed_and_the_rest_are_not() {
        let hashes = inline_script_hashes(PAGE);
        let expect = |text: &str| {
            format!(
                "sha256-{}",
                base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text))
            )
        };
        assert_eq!(hashes, vec![expect("one()"), expect("two()")]);
        assert!(has_src_attribute("<script data-x='a src' SRC=x>"));
        assert!(!has_src_attribute("<script data-src=\"x\" type=module>"));
        assert!(!has_src_attribute("<script title=\"src\">"));
    }

    #[test]
    fn the_csp_gains_hashes_wasm_and_the_host() {
        let policy = csp(&["sha256-x".into()], true, Some("LOCALHOST:18789"));
        assert!(policy.contains("script-src 'self' 'sha256-x' 'wasm-unsafe-eval'; "));
        assert!(policy.ends_with(
            "connect-src 'self' ws: wss: data: https://api.openai.com https://tweakcn.com \
             http://localhost:* https://localhost:*"
        ));
        for bad in ["a@b", "a/b", "a:b", "[zz]", ""] {
            assert!(!csp(&[], false, Some(bad)).contains("http://"), "{bad}");
        }
        assert!(csp(&[], false, Some("[::1]:80")).contains("http://[::1]:*"));
    }

    #[test]
    fn the_build_id_is_read_as_node_reads_it() {
        assert_eq!(public_asset_build_id(PAGE).as_deref(), Some("b-1"));
        assert_eq!(
            public_asset_build_id("<html data-openclaw-control-ui-build-id=\"a b\">"),
            None
        );
        assert_eq!(public_asset_build_id("<html>"), None);
    }
}
