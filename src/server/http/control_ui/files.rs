//! Files of the UI's root: which file a path names, refusing every way out of the root, and
//! how each is sent (content type, encoding, validators), as control-ui-DWr4NUmu.mjs does.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::routing::split_outside_quotes;

/// Root files the build emits and serves under any mount, also reachable as
/// `/__openclaw__/<name>` (control-ui-root-assets-DS7D1PNh.mjs:4-12).
pub(super) const ROOT_PUBLIC_ASSETS: [&str; 6] = [
    "apple-touch-icon.png",
    "favicon-32.png",
    "favicon.ico",
    "favicon.svg",
    "manifest.webmanifest",
    "sw.js",
];

/// Whether `rel` is covered by the document's content-bound build id, so `?v=<build id>`
/// makes it immutable (control-ui-root-assets-DS7D1PNh.mjs:15-17): the root assets but
/// `sw.js`; `fonts/*.css|woff2`; `themes/*.css`; icon folders' `*.svg`; art `*.webp`.
pub(super) fn is_versioned_public_asset(rel: &str) -> bool {
    if ROOT_PUBLIC_ASSETS.contains(&rel) {
        return rel != "sw.js";
    }
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let single = |prefix: &str, exts: &[&str]| {
        dir == prefix && !name.is_empty() && exts.iter().any(|ext| name.ends_with(ext))
    };
    single("fonts", &[".css", ".woff2"])
        || single("themes", &[".css"])
        || single("provider-icons", &[".svg"])
        || single("cloud-provider-icons", &[".svg"])
        || ((dir == "file-icons" || dir.starts_with("file-icons/"))
            && !dir.split('/').any(str::is_empty)
            && name.ends_with(".svg"))
        || single("app-art", &[".webp"])
        || single("community-art", &[".webp"])
}

/// `Content-Type` by extension, Node's table (CUI:247-264); anything else is
/// `application/octet-stream`.
pub(super) fn content_type(rel: &str) -> &'static str {
    match extension(rel).as_str() {
        ".html" => "text/html; charset=utf-8",
        ".js" => "application/javascript; charset=utf-8",
        ".css" => "text/css; charset=utf-8",
        ".json" | ".map" => "application/json; charset=utf-8",
        ".svg" => "image/svg+xml",
        ".png" => "image/png",
        ".jpg" | ".jpeg" => "image/jpeg",
        ".gif" => "image/gif",
        ".webp" => "image/webp",
        ".ico" => "image/x-icon",
        ".txt" => "text/plain; charset=utf-8",
        ".wasm" => "application/wasm",
        ".webmanifest" => "application/manifest+json; charset=utf-8",
        ".woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// A missing file with one of these extensions is a `404`, never the SPA fallback (CUI:270-272).
pub(super) fn is_static_asset(rel: &str) -> bool {
    extension(rel) != ".html" && content_type(rel) != "application/octet-stream"
}

/// Extensions whose precompressed `.br`/`.gz` siblings are served (CUI:236-245).
pub(super) fn is_compressible(rel: &str) -> bool {
    matches!(
        extension(rel).as_str(),
        ".css" | ".html" | ".js" | ".json" | ".svg" | ".txt" | ".wasm" | ".webmanifest"
    )
}

/// `path.extname` lowercased: from the last `.` of the last segment, not a leading one.
pub(super) fn extension(rel: &str) -> String {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    match name.rfind('.') {
        Some(0) | None => String::new(),
        Some(dot) => name[dot..].to_ascii_lowercase(),
    }
}

/// The file a UI path (the request path without the base path) names, relative to the root
/// (CUI:1086-1098): the share card, `index.html` for `/` and every directory, a root asset
/// under `/__openclaw__/`, and `assets/` from wherever it appears (deep links load
/// `…/x/assets/y.js`). Still percent-encoded.
pub(super) fn requested(ui_path: &str, standalone_document: bool) -> String {
    if standalone_document {
        return "index.html".to_owned();
    }
    let rel = if ui_path == "/share/card.png" {
        "social-card.png"
    } else if ui_path == "/" {
        ""
    } else if let Some(asset) = ui_path
        .strip_prefix("/__openclaw__/")
        .filter(|asset| ROOT_PUBLIC_ASSETS.contains(asset))
    {
        asset
    } else if let Some(at) = ui_path.find("/assets/") {
        &ui_path[at + 1..]
    } else {
        ui_path.strip_prefix('/').unwrap_or(ui_path)
    };
    if rel.is_empty() || rel.ends_with('/') {
        format!("{rel}index.html")
    } else {
        rel.to_owned()
    }
}

/// Why a path was refused: each is answered `404`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// Not valid percent-encoding, or not UTF-8 once decoded (`decodeURIComponent` throws).
    Undecodable,
    /// An encoded `/` or `\`: one segment posing as two.
    EncodedSeparator,
    /// A backslash, NUL or control character.
    BadCharacter,
    /// Absolute (`/x`, `C:…`).
    Absolute,
    /// A `.` or `..` segment, or an empty one.
    DotSegment,
}

/// Decodes and checks a requested path (CUI:1101-1118, stricter): Node resolves `..` inside
/// the root and accepts what stays there; here every `.`/`..`/empty segment, encoded
/// separator, backslash and control character is refused outright, so nothing but plain names
/// reaches the file system.
pub(super) fn safe_relative(requested: &str) -> Result<String, Refused> {
    let lowered = requested.to_ascii_lowercase();
    if lowered.contains("%2f") || lowered.contains("%5c") {
        return Err(Refused::EncodedSeparator);
    }
    let decoded = percent_decode(requested).ok_or(Refused::Undecodable)?;
    if decoded.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(Refused::BadCharacter);
    }
    let bytes = decoded.as_bytes();
    if decoded.starts_with('/') || (bytes.len() >= 2 && bytes[1] == b':') {
        return Err(Refused::Absolute);
    }
    if decoded
        .split('/')
        .any(|segment| matches!(segment, "" | "." | ".."))
    {
        return Err(Refused::DotSegment);
    }
    Ok(decoded)
}

/// `decodeURIComponent`: every `%XX` decoded, the result UTF-8; a stray `%` fails.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A regular file of the root, open, with what its headers need.
#[derive(Debug)]
pub(super) struct OpenFile {
    pub file: File,
    pub len: u64,
    /// Seconds since the epoch, floored, never after now (CUI:1147).
    pub last_modified: SystemTime,
    /// A strong validator: the file's identity, size and modification time to the nanosecond.
    pub etag: String,
}

/// Opens `rel` below `root_real` (the root, canonical) when it is a regular file whose real
/// path stays below the root: symlinks inside the root are followed, one leading out is not
/// (Node's `openRootFileSync` with its boundary check). The real path is opened with
/// `O_NOFOLLOW`, so a final component swapped for a symlink after the check fails to open.
/// `reject_hardlinks`: a file with more than one link is refused, as Node refuses it in a
/// configured root (a hard link can bring a file from elsewhere inside). `Ok(None)`: nothing
/// servable there.
pub(super) fn open_below(
    root_real: &Path,
    rel: &str,
    reject_hardlinks: bool,
) -> io::Result<Option<OpenFile>> {
    let real = match root_real.join(rel).canonicalize() {
        Ok(real) => real,
        Err(err) if is_absent(&err) => return Ok(None),
        Err(err) => return Err(err),
    };
    if !real.starts_with(root_real) {
        return Ok(None);
    }
    let file = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&real)
    {
        Ok(file) => file,
        Err(err) if is_absent(&err) => return Ok(None),
        Err(err) => return Err(err),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || (reject_hardlinks && meta.nlink() > 1) || !opened_below(&file, root_real)
    {
        return Ok(None);
    }
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let since_epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let floored = since_epoch(modified).min(since_epoch(SystemTime::now()));
    let nanos = since_epoch(modified).as_nanos();
    Ok(Some(OpenFile {
        len: meta.len(),
        last_modified: UNIX_EPOCH + std::time::Duration::from_secs(floored.as_secs()),
        etag: format!("\"{:x}-{:x}-{:x}\"", meta.ino(), meta.len(), nanos),
        file,
    }))
}

/// Whether the file opened is below the root, as the kernel names it: a directory on the way
/// swapped for a symlink between the check and the open is caught here. Where the kernel does
/// not say (no `/proc`), the check before the open stands.
#[cfg(target_os = "linux")]
fn opened_below(file: &File, root_real: &Path) -> bool {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_or(true, |path| path.starts_with(root_real))
}

#[cfg(not(target_os = "linux"))]
fn opened_below(_file: &File, _root_real: &Path) -> bool {
    true
}

/// Not there, not a directory on the way, or a symlink where none may be: all "no file".
fn is_absent(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG)
    )
}

/// `root` made canonical, for [`open_below`].
pub(super) fn canonical_root(root: &Path) -> io::Result<PathBuf> {
    root.canonicalize()
}

/// A content coding the client may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

impl Encoding {
    /// The `Content-Encoding` value, `None` for identity.
    pub(super) fn header(self) -> Option<&'static str> {
        match self {
            Self::Brotli => Some("br"),
            Self::Gzip => Some("gzip"),
            Self::Identity => None,
        }
    }

    /// The precompressed sibling's suffix.
    pub(super) fn suffix(self) -> &'static str {
        match self {
            Self::Brotli => ".br",
            Self::Gzip => ".gz",
            Self::Identity => "",
        }
    }
}

/// The encodings `Accept-Encoding` allows, best first, among identity and (when `compressed`)
/// `br` and `gzip` (http-content-encoding-BxlZphnc.mjs:6-26): no header → identity; q-values
/// of `0.000`–`1.000` (malformed → 0); `*` stands for the codings not named; identity is
/// refused only by `identity;q=0` or `*;q=0`. Ties keep the order br, gzip, identity. Empty:
/// every one is refused (`406`).
pub(crate) fn acceptable_encodings(header: Option<&str>, compressed: bool) -> Vec<Encoding> {
    let header = header.unwrap_or("");
    if header.trim().is_empty() {
        return vec![Encoding::Identity];
    }
    let mut qualities: Vec<(String, f64)> = Vec::new();
    for entry in header.split(',') {
        let mut parts = entry.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        let q_text = parts
            .map(str::trim)
            .find(|p| p.to_ascii_lowercase().starts_with("q="))
            .map(|p| &p[2..]);
        let quality = match q_text {
            None => 1.0,
            Some(text) => quality(text).unwrap_or(0.0),
        };
        match qualities.iter_mut().find(|(n, _)| *n == name) {
            Some((_, q)) => *q = q.max(quality),
            None => qualities.push((name, quality)),
        }
    }
    let named = |name: &str| qualities.iter().find(|(n, _)| n == name).map(|(_, q)| *q);
    let wildcard = named("*");
    let identity = named("identity").unwrap_or(if wildcard == Some(0.0) { 0.0 } else { 1.0 });
    let quality_of = |encoding: Encoding| match encoding {
        Encoding::Identity => identity,
        Encoding::Brotli => named("br").or(wildcard).unwrap_or(0.0),
        Encoding::Gzip => named("gzip").or(wildcard).unwrap_or(0.0),
    };
    let mut accepted: Vec<Encoding> = [Encoding::Brotli, Encoding::Gzip, Encoding::Identity]
        .into_iter()
        .filter(|e| (*e == Encoding::Identity || compressed) && quality_of(*e) > 0.0)
        .collect();
    // A stable sort: equal qualities keep br, gzip, identity.
    accepted.sort_by(|a, b| quality_of(*b).total_cmp(&quality_of(*a)));
    accepted
}

/// A q-value as Node's pattern allows it: `0`, `0.` + up to 3 digits, `1`, `1.` + up to 3 zeros.
pub(super) fn quality(text: &str) -> Option<f64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let valid = fraction.len() <= 3
        && match whole {
            "0" => fraction.bytes().all(|b| b.is_ascii_digit()),
            "1" => fraction.bytes().all(|b| b == b'0'),
            _ => false,
        };
    match (valid, whole) {
        (false, _) => None,
        (true, "1") => Some(1.0),
        (true, _) => format!("0.{fraction}0").parse().ok(),
    }
}

/// Whether `If-None-Match` names `etag`: `*`, or any listed tag equal to it under the weak
/// comparison RFC 9110 §13.1.2 prescribes for it (http-conditional-vOFTJV-M.mjs:11-16).
pub(super) fn none_match(header: &str, etag: &str) -> bool {
    if header.trim() == "*" {
        return true;
    }
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let expected = opaque(etag);
    split_outside_quotes(header, ',')
        .is_some_and(|tags| tags.iter().any(|tag| opaque(tag) == expected))
}

/// Whether `If-Modified-Since` (exactly one, an HTTP date) is at or after `last_modified`
/// (http-conditional-vOFTJV-M.mjs:4-10).
pub(super) fn not_modified_since(values: &[&str], last_modified: SystemTime) -> bool {
    match values {
        [value] => {
            httpdate::parse_http_date(value.trim()).is_ok_and(|since| last_modified <= since)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_file_a_path_names() {
        for (ui_path, rel) in [
            ("/", "index.html"),
            ("/chat", "chat"),
            ("/chat/", "chat/index.html"),
            ("/share/card.png", "social-card.png"),
            ("/__openclaw__/favicon.svg", "favicon.svg"),
            ("/__openclaw__/other.svg", "__openclaw__/other.svg"),
            ("/assets/a.js", "assets/a.js"),
            ("/deep/link/assets/a.js", "assets/a.js"),
            ("/favicon.ico", "favicon.ico"),
        ] {
            assert_eq!(requested(ui_path, false), rel, "{ui_path}");
        }
        assert_eq!(requested("/approve/x", true), "index.html");
    }

    /// Each way out of the root, and each way of hiding one, refused before the file system.
    #[test]
    fn hostile_paths_are_refused() {
        use Refused::*;
        for (path, why) in [
            ("../etc/passwd", DotSegment),
            ("assets/../../etc/passwd", DotSegment),
            ("%2e%2e/etc/passwd", DotSegment),
            ("%2E%2E/%2E%2E/etc/passwd", DotSegment),
            ("assets/%2e%2e%2fx", EncodedSeparator),
            ("..%2fetc%2fpasswd", EncodedSeparator),
            ("..%5cetc", EncodedSeparator),
            ("assets\\..\\x", BadCharacter),
            ("a%00b", BadCharacter),
            ("a%0ab", BadCharacter),
            ("%2fetc/passwd", EncodedSeparator),
            ("C:/windows", Absolute),
            ("./index.html", DotSegment),
            ("assets//a.js", DotSegment),
            ("%zz", Undecodable),
            ("%c3", Undecodable),
            ("%", Undecodable),
        ] {
            assert_eq!(safe_relative(path), Err(why), "{path}");
        }
        assert_eq!(
            safe_relative("assets/a%20b.js").as_deref(),
            Ok("assets/a b.js")
        );
        assert_eq!(safe_relative("caf%C3%A9.txt").as_deref(), Ok("café.txt"));
    }

    #[test]
    fn content_types_follow_nodes_table() {
        for (rel, ty) in [
            ("index.html", "text/html; charset=utf-8"),
            ("a.JS", "application/javascript; charset=utf-8"),
            ("a.map", "application/json; charset=utf-8"),
            ("m.webmanifest", "application/manifest+json; charset=utf-8"),
            ("f.woff2", "font/woff2"),
            ("x.ico", "image/x-icon"),
            ("x.woff", "application/octet-stream"),
            (".hidden", "application/octet-stream"),
            ("noext", "application/octet-stream"),
        ] {
            assert_eq!(content_type(rel), ty, "{rel}");
        }
    }

    #[test]
    fn versioned_public_assets() {
        for (rel, versioned) in [
            ("favicon.svg", true),
            ("sw.js", false),
            ("fonts/inter.woff2", true),
            ("fonts/a/b.woff2", false),
            ("themes/knot.css", true),
            ("file-icons/a/b/c.svg", true),
            ("file-icons//c.svg", false),
            ("app-art/x.webp", true),
            ("assets/x.js", false),
        ] {
            assert_eq!(is_versioned_public_asset(rel), versioned, "{rel}");
        }
    }

    #[test]
    fn accept_encoding_with_q_values() {
        use Encoding::*;
        for (header, expected) in [
            (None, vec![Identity]),
            (Some(""), vec![Identity]),
            (Some("gzip, deflate, br"), vec![Brotli, Gzip, Identity]),
            (Some("gzip;q=1, br;q=0.5"), vec![Gzip, Identity, Brotli]),
            (Some("br;q=0"), vec![Identity]),
            (Some("identity;q=0"), vec![]),
            (Some("*;q=0"), vec![]),
            (Some("*;q=0, gzip"), vec![Gzip]),
            (Some("*"), vec![Brotli, Gzip, Identity]),
            (Some("gzip;q=1.5"), vec![Identity]),
            (Some("identity;q=0.5, br"), vec![Brotli, Identity]),
        ] {
            assert_eq!(acceptable_encodings(header, true), expected, "{header:?}");
        }
        assert_eq!(acceptable_encodings(Some("br"), false), vec![Identity]);
        assert_eq!(
            acceptable_encodings(Some("br, identity;q=0"), false),
            vec![]
        );
    }

    #[test]
    fn if_none_match() {
        let tag = "\"1-2-3\"";
        assert!(none_match("*", tag));
        assert!(none_match("\"1-2-3\"", tag));
        assert!(none_match("W/\"1-2-3\"", tag));
        assert!(none_match("\"x\", \"1-2-3\"", tag));
        assert!(!none_match("\"x\"", tag));
        assert!(!none_match("\"1-2-3", tag));
    }
}
