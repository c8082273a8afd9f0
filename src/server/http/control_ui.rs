//! OpenClaw's Control UI served from a directory (SPEC §13.3): base path, the `index.html`
//! rewrite, SPA fallback, caching, conditional and compressed responses, Node's security
//! headers, and `control-ui-config.json`. Follows control-ui-DWr4NUmu.mjs (CUI) and
//! control-ui-share-BY-xYcC6.mjs (CUR) of `openclaw` 2026.9.6.

mod cache;
mod config;
mod files;
mod index;
mod routing;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::SystemTime;

use bytes::Bytes;
use hyper::body::Frame;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value};
use tokio_util::io::ReaderStream;

use super::Body;
use crate::options::Auth;
use crate::server::response::{internal_error, not_found, plain, unauthorized};
use crate::server::ws::ProtocolOptions;
use crate::server::{Shared, locality, protocol};
use files::{Encoding, OpenFile};

pub(crate) use routing::normalize_base_path;

/// Where the UI's build came from, as `hello-ok.server.controlUiBuildSource` reports it. A
/// bundled UI compares `hello-ok.server.buildId` with its own build id and reloads on a
/// difference; a `Configured` one does not (SPEC §13.3 "Build match").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlUiBuildSource {
    /// The UI shipped with the gateway, built for exactly this server build.
    Bundled,
    /// A UI directory the user chose (`gateway.controlUi.root`, `--control-ui DIR`).
    Configured,
}

impl ControlUiBuildSource {
    /// The value of `hello-ok.server.controlUiBuildSource`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bundled => "bundled",
            Self::Configured => "configured",
        }
    }
}

/// The Control UI mount.
#[derive(Debug, Clone)]
pub struct ControlUiOptions {
    /// The built UI (`dist/control-ui/` of the `openclaw` package): `index.html`, `assets/`, …
    pub root: PathBuf,
    /// `gateway.controlUi.basePath`, normalized as Node does (`""`, or `/x` without a trailing
    /// slash).
    pub base_path: String,
    /// Bundled or configured (default configured: a host points at a directory).
    pub build_source: ControlUiBuildSource,
    /// Keys of `control-ui-config.json` the host sets (`assistantName`, …); the gateway fills
    /// `basePath`, `serverVersion` and `serverBuildId` itself and Node's defaults for the rest.
    pub config: Map<String, Value>,
    /// `data-openclaw-terminal-enabled` and the `wasm-unsafe-eval` CSP source (default off).
    pub terminal_enabled: bool,
    /// `gateway.controlUi.environment`, inserted into `index.html` when set.
    pub environment: Option<Value>,
}

impl ControlUiOptions {
    /// Serves the UI in `root` at the site's root, as a configured build.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            base_path: String::new(),
            build_source: ControlUiBuildSource::Configured,
            config: Map::new(),
            terminal_enabled: false,
            environment: None,
        }
    }

    /// Mounts it under `base_path` (normalized as Node does: `"openclaw/"` → `/openclaw`).
    pub fn base_path(mut self, base_path: &str) -> Self {
        self.base_path = normalize_base_path(base_path);
        self
    }
}

/// Files larger than this are streamed from disk rather than read whole.
const READ_WHOLE_LIMIT: u64 = 64 * 1024;

/// A mount ready to serve: the root checked and made canonical, `index.html` read, rewritten,
/// hashed and compressed once at `serve` (its body does not vary per request; only its CSP's
/// `connect-src` does).
pub(crate) struct ControlUi {
    root_real: PathBuf,
    base_path: String,
    build_source: ControlUiBuildSource,
    /// The `<html>` build id of the page, when it has one: a Control UI build, whose `assets/`
    /// are fingerprinted and come with precompressed siblings.
    build_id: Option<String>,
    terminal_enabled: bool,
    index: Representations,
    /// The first 96 bits of the served page's SHA-256, in hex: its `ETag`s' stem.
    index_digest: String,
    script_hashes: Vec<String>,
    config_body: Value,
    /// `ProtocolOptions::allowed_origins`, for the config's browser check in mode none.
    allowed_origins: Vec<String>,
    assets: cache::AssetCache,
}

/// The rewritten `index.html` in each encoding it is sent in.
struct Representations {
    identity: Bytes,
    brotli: Bytes,
    gzip: Bytes,
}

impl std::fmt::Debug for ControlUi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlUi")
            .field("root", &self.root_real)
            .field("base_path", &self.base_path)
            .field("build_id", &self.build_id)
            .finish()
    }
}

impl ControlUi {
    /// Checks and reads the UI in `options.root`; `Err` says what is wrong and what to do
    /// (`Gateway::serve` refuses to start with it rather than answer `503` later).
    pub(crate) fn prepare(
        options: &ControlUiOptions,
        protocol: &ProtocolOptions,
        auth_required: bool,
    ) -> Result<Self, String> {
        let root = &options.root;
        let not_found = |why: String| {
            format!(
                "Control UI assets not found at {}: {why}. Point it at a built Control UI \
                 (dist/control-ui of the openclaw package: index.html and assets/)",
                root.display()
            )
        };
        let root_real = files::canonical_root(root).map_err(|e| not_found(e.to_string()))?;
        if !root_real.is_dir() {
            return Err(not_found("not a directory".into()));
        }
        let html = read_index(&root_real).map_err(not_found)?;
        let base_path = normalize_base_path(&options.base_path);
        let build_id = index::public_asset_build_id(&html);
        let served = index::rewrite(
            &html,
            &index::Rewrite {
                base_path: &base_path,
                build_id: build_id.as_deref(),
                terminal_enabled: options.terminal_enabled,
                environment: options.environment.as_ref(),
            },
        );
        let script_hashes = index::inline_script_hashes(&served);
        let index_digest = {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(served.as_bytes());
            digest[..12].iter().map(|b| format!("{b:02x}")).collect()
        };
        let index = Representations {
            brotli: compress(&served, Encoding::Brotli),
            gzip: compress(&served, Encoding::Gzip),
            identity: Bytes::from(served),
        };
        let config_body = config::body(options, &base_path, protocol, auth_required);
        Ok(Self {
            root_real,
            base_path,
            build_source: options.build_source,
            build_id,
            terminal_enabled: options.terminal_enabled,
            index,
            index_digest,
            script_hashes,
            config_body,
            allowed_origins: protocol.allowed_origins.clone(),
            assets: cache::AssetCache::default(),
        })
    }

    /// `hello-ok.server.controlUiBuildSource`.
    pub(crate) fn build_source(&self) -> ControlUiBuildSource {
        self.build_source
    }
}

/// `index.html` of the root, at most 256 KiB as Node reads it (control-ui-assets-CiL5aN79.mjs:198).
fn read_index(root_real: &Path) -> Result<String, String> {
    let file = files::open_below(root_real, "index.html", false)
        .map_err(|e| format!("index.html cannot be read ({e})"))?
        .ok_or_else(|| "it has no index.html".to_owned())?;
    if file.len > 256 * 1024 {
        return Err("index.html is over 256 KiB".into());
    }
    let mut html = String::new();
    std::io::Read::read_to_string(&mut &file.file, &mut html)
        .map_err(|e| format!("index.html is not UTF-8 text ({e})"))?;
    Ok(html)
}

/// Brotli at quality 4, gzip at level 6, as Node compresses the page (CUI:333-344).
fn compress(text: &str, encoding: Encoding) -> Bytes {
    let mut out = Vec::new();
    match encoding {
        Encoding::Brotli => {
            let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 4, 22);
            let _ = writer.write_all(text.as_bytes());
        }
        Encoding::Gzip => {
            let mut writer = flate2::write::GzEncoder::new(&mut out, flate2::Compression::new(6));
            let _ = writer.write_all(text.as_bytes());
            let _ = writer.finish();
        }
        Encoding::Identity => out.extend_from_slice(text.as_bytes()),
    }
    Bytes::from(out)
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The Control UI stage of the pipeline (SPEC §13.1 stage 15): `None` when the request is not
/// the UI's (the pipeline goes on to its `404`). `path` is the pathname the pipeline routes by
/// (`/x/../chat` is `/chat`), as Node's handler reads `new URL(req.url).pathname` (CUI:958).
pub(crate) async fn respond(
    shared: &Shared,
    request: &Request<hyper::body::Incoming>,
    path: &str,
    peer: SocketAddr,
) -> Option<Response<Body>> {
    let ui = shared.control_ui.as_ref()?;
    let mut response = ui.answer(shared, request, path, peer).await?;
    security_headers(response.headers_mut());
    Some(response)
}

impl ControlUi {
    async fn answer(
        &self,
        shared: &Shared,
        request: &Request<hyper::body::Incoming>,
        path: &str,
        peer: SocketAddr,
    ) -> Option<Response<Body>> {
        let uri = request.uri();
        let headers = request.headers();
        let method = request.method();
        let base = self.base_path.as_str();
        let accept = joined(headers, header::ACCEPT);
        let route = routing::classify(base, path, uri.query(), method, accept.as_deref());
        let spa_fallback = match route {
            routing::Route::NotControlUi => return None,
            routing::Route::NotFound => return Some(not_found()),
            routing::Route::Redirect(location) => {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = StatusCode::FOUND;
                if let Ok(location) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, location);
                }
                return Some(response);
            }
            routing::Route::Serve { spa_fallback } => spa_fallback,
        };
        let ui_path = path
            .strip_prefix(base)
            .filter(|p| p.starts_with('/'))
            .unwrap_or(path);
        // `B/share…` are the public share documents (a feature this core has not); only the
        // card image is a file (CUI:970).
        if ui_path == "/share" || (ui_path.starts_with("/share/") && ui_path != "/share/card.png") {
            return Some(not_found());
        }
        if config::is_config_path(path, base) {
            if self.foreign_browser_without_auth(shared, headers, peer) {
                return Some(unauthorized());
            }
            return Some(
                match super::auth::gateway_bearer(shared, headers, peer).await {
                    Err(refused) => refused,
                    Ok(_) => config::respond(&self.config_body, method == Method::HEAD),
                },
            );
        }
        let standalone = is_standalone_document(ui_path);
        let Ok(rel) = files::safe_relative(&files::requested(ui_path, standalone)) else {
            return Some(not_found());
        };
        if rel == "index.html" {
            return Some(self.index(request));
        }
        // Node treats `assets/` as fingerprinted (immutable, precompressed siblings, siblings
        // not served directly) only in its bundled root; here in any root whose page carries
        // a Control UI build id, so `--control-ui <the package's UI>` is cached as Node
        // caches its own. A directory without one is served as plain files.
        let bundled_assets = self.build_id.is_some();
        // A Control UI build's precompressed siblings are representations, not resources
        // (CUI:1119-1122).
        if bundled_assets && matches!(files::extension(&rel).as_str(), ".br" | ".gz") {
            return Some(not_found());
        }
        // Node refuses hard-linked files in a configured root (one can bring in a file from
        // elsewhere); a Control UI build is trusted as its bundled one is, so a package
        // installed with hard links (pnpm's store) still serves.
        let reject_hardlinks =
            self.build_source == ControlUiBuildSource::Configured && !bundled_assets;
        if bundled_assets && rel.starts_with("assets/") && file_name(&rel) != "index.html" {
            if let Some(asset) = self.assets.get(&rel) {
                return Some(self.cached(request, &rel, &asset));
            }
            let loaded = {
                let (root, rel) = (self.root_real.clone(), rel.clone());
                let compressible = files::is_compressible(&rel);
                tokio::task::spawn_blocking(move || {
                    cache::load(&root, &rel, reject_hardlinks, compressible)
                })
                .await
            };
            match loaded {
                Ok(Ok(Some(asset))) => {
                    let asset = self.assets.insert(rel.clone(), asset);
                    return Some(self.cached(request, &rel, &asset));
                }
                // Not there, or too large to keep: the disk path answers.
                Ok(Ok(None)) => {}
                Ok(Err(_)) | Err(_) => return Some(internal_error()),
            }
        }
        let opened = {
            let (root, rel) = (self.root_real.clone(), rel.clone());
            tokio::task::spawn_blocking(move || files::open_below(&root, &rel, reject_hardlinks))
                .await
        };
        match opened {
            Ok(Ok(Some(file))) if file_name(&rel) != "index.html" => {
                Some(self.file(request, &rel, file, reject_hardlinks).await)
            }
            Ok(Ok(_)) => {
                if files::is_static_asset(&rel) {
                    Some(not_found())
                } else if spa_fallback {
                    Some(self.index(request))
                } else {
                    None
                }
            }
            Ok(Err(_)) | Err(_) => Some(internal_error()),
        }
    }

    /// With auth mode `none` the config needs no credential, but a page that sends `Origin`
    /// must come from one the gateway trusts, as for the WebSocket (auth-BiOY0Xi8.mjs: mode
    /// none → `authorizeHttpBrowserOrigin`; origin-check-Dh0t_-zy.mjs:48-76): listed in the
    /// allowed origins, the gateway's own host when that host may be trusted, or loopback from
    /// this host. Refused → `401` (http-common-vk2jgtAM.mjs:179-192).
    fn foreign_browser_without_auth(
        &self,
        shared: &Shared,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> bool {
        let origin = text(headers, header::ORIGIN)
            .map(str::trim)
            .filter(|o| !o.is_empty());
        let (Auth::None, Some(origin)) = (&shared.ws.auth, origin) else {
            return false;
        };
        let ingress = locality::ingress(peer, headers);
        let local = ingress.kind == locality::IngressKind::DirectLocal;
        !(protocol::origin_listed(&self.allowed_origins, origin)
            || locality::same_trusted_origin(&ingress, origin)
            || (local && protocol::is_loopback_origin(origin)))
    }

    /// A file other than `index.html` (CUI:1140-1180).
    async fn file(
        &self,
        request: &Request<hyper::body::Incoming>,
        rel: &str,
        source: OpenFile,
        reject_hardlinks: bool,
    ) -> Response<Body> {
        let headers = request.headers();
        let fingerprinted = self.build_id.is_some() && rel.starts_with("assets/");
        let last_modified = source.last_modified;
        let compressible = fingerprinted && files::is_compressible(rel);
        let encodings = files::acceptable_encodings(
            joined(headers, header::ACCEPT_ENCODING).as_deref(),
            compressible,
        );
        let mut chosen = None;
        for encoding in encodings {
            if encoding == Encoding::Identity {
                chosen = Some((Encoding::Identity, None));
                break;
            }
            let sibling = format!("{rel}{}", encoding.suffix());
            let root = self.root_real.clone();
            if let Ok(Ok(Some(file))) = tokio::task::spawn_blocking(move || {
                files::open_below(&root, &sibling, reject_hardlinks)
            })
            .await
            {
                chosen = Some((encoding, Some(file)));
                break;
            }
        }
        let Some((encoding, sibling)) = chosen else {
            return not_acceptable();
        };
        let body_file = sibling.unwrap_or(source);
        let validators = Validators::new(
            representation_etag(&body_file.etag, encoding),
            last_modified,
        );
        let mut response = self.file_head(request, rel, &validators, encoding);
        if response.status() == StatusCode::NOT_MODIFIED {
            return response;
        }
        // HEAD can only say what the metadata says; a GET's length is that of the bytes it
        // sends, so a file rewritten in the meantime never leaves header and body disagreeing.
        if request.method() == Method::HEAD {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(body_file.len));
            return response;
        }
        let Some((len, body)) = file_body(body_file).await else {
            return internal_error();
        };
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        *response.body_mut() = body;
        response
    }

    /// A fingerprinted asset from memory: the representation `Accept-Encoding` picks among
    /// the ones the build has, as the disk path picks.
    fn cached(
        &self,
        request: &Request<hyper::body::Incoming>,
        rel: &str,
        asset: &cache::CachedAsset,
    ) -> Response<Body> {
        let accepted = files::acceptable_encodings(
            joined(request.headers(), header::ACCEPT_ENCODING).as_deref(),
            files::is_compressible(rel),
        );
        let Some(chosen) = accepted
            .into_iter()
            .find_map(|encoding| asset.get(encoding))
        else {
            return not_acceptable();
        };
        let body = || {
            if request.method() == Method::HEAD {
                Body::empty()
            } else {
                Body::full(chosen.bytes.clone())
            }
        };
        let conditional = [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE]
            .iter()
            .any(|name| request.headers().contains_key(name));
        if !conditional {
            // The whole head of a 200 for this representation, made on its first request and
            // cloned after: it depends on nothing else of a request that is not conditional (a
            // build's `assets/` are always immutable), and a page load asks for dozens.
            let head = chosen.head.get_or_init(|| {
                let mut response = self.whole_head(request, rel, chosen);
                security_headers(response.headers_mut());
                std::mem::take(response.headers_mut())
            });
            let mut response = Response::new(body());
            *response.headers_mut() = head.clone();
            return response;
        }
        let mut response = self.whole_head(request, rel, chosen);
        if response.status() != StatusCode::NOT_MODIFIED {
            *response.body_mut() = body();
        }
        response
    }

    /// [`file_head`](Self::file_head) of a cached representation, with its length.
    fn whole_head(
        &self,
        request: &Request<hyper::body::Incoming>,
        rel: &str,
        chosen: &cache::Representation,
    ) -> Response<Body> {
        let mut response = self.file_head(request, rel, &chosen.validators, chosen.encoding);
        if response.status() != StatusCode::NOT_MODIFIED {
            response.headers_mut().insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(chosen.bytes.len()),
            );
        }
        response
    }

    /// The head of a file's representation (CUI:300-330): `Cache-Control` (immutable for a
    /// build's `assets/` and for a versioned asset asked for with `?v=<build id>`, else
    /// `no-cache`), `Last-Modified`, `Vary`, `ETag`, the type and coding; or, to a conditional
    /// request it satisfies, the `304` to send as is.
    fn file_head(
        &self,
        request: &Request<hyper::body::Incoming>,
        rel: &str,
        validators: &Validators,
        encoding: Encoding,
    ) -> Response<Body> {
        let fingerprinted = self.build_id.is_some() && rel.starts_with("assets/");
        let versioned = self.build_id.as_deref().is_some_and(|id| {
            query_param(request.uri().query(), "v").as_deref() == Some(id)
                && files::is_versioned_public_asset(rel)
        });
        let cache_control = if fingerprinted || versioned {
            IMMUTABLE
        } else {
            "no-cache"
        };
        let mut response = Response::new(Body::empty());
        let out = response.headers_mut();
        out.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
        out.insert(
            header::LAST_MODIFIED,
            validators.last_modified_header.clone(),
        );
        out.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        if let Some(value) = &validators.etag_header {
            out.insert(header::ETAG, value.clone());
        }
        if unmodified(
            request.headers(),
            &validators.etag,
            Some(validators.last_modified),
        ) {
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            return response;
        }
        out.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(files::content_type(rel)),
        );
        if let (Some(coding), true) = (encoding.header(), files::is_compressible(rel)) {
            out.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
        }
        response
    }

    /// The rewritten `index.html` (CUI:881-897, 1192-1202): its CSP names its inline scripts
    /// and the request's host; compressed per `Accept-Encoding`; revalidated by its `ETag`.
    fn index(&self, request: &Request<hyper::body::Incoming>) -> Response<Body> {
        let headers = request.headers();
        let encodings =
            files::acceptable_encodings(joined(headers, header::ACCEPT_ENCODING).as_deref(), true);
        let Some(&encoding) = encodings.first() else {
            return not_acceptable();
        };
        let (body, suffix) = match encoding {
            Encoding::Identity => (&self.index.identity, ""),
            Encoding::Brotli => (&self.index.brotli, "-br"),
            Encoding::Gzip => (&self.index.gzip, "-gzip"),
        };
        // One strong validator per representation: the page's digest and its coding.
        let etag = format!("\"{}{suffix}\"", self.index_digest);
        let mut response = Response::new(Body::empty());
        let out = response.headers_mut();
        let csp = index::csp(
            &self.script_hashes,
            self.terminal_enabled,
            text(headers, header::HOST),
        );
        if let Ok(csp) = HeaderValue::from_str(&csp) {
            out.insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        out.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        if let Ok(value) = HeaderValue::from_str(&etag) {
            out.insert(header::ETAG, value);
        }
        if unmodified(headers, &etag, None) {
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            return response;
        }
        out.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        if let Some(coding) = encoding.header() {
            out.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
        }
        // Node sends no length for a HEAD of the page (it is compressed on the fly); ours is
        // known, so both methods carry it.
        out.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        if request.method() != Method::HEAD {
            *response.body_mut() = Body::full(body.clone());
        }
        response
    }
}

/// The validator of one representation: the file's own, marked with its coding, so that the
/// identity and compressed bodies never share a tag.
fn representation_etag(file_etag: &str, encoding: Encoding) -> String {
    match encoding.header() {
        Some(coding) => format!("{}-{coding}\"", file_etag.trim_end_matches('"')),
        None => file_etag.to_owned(),
    }
}

/// `B/approve[/<id>]` and `B/focus[/…]`: documents the app renders itself (CUR:27-40).
fn is_standalone_document(ui_path: &str) -> bool {
    let approve = ui_path == "/approve"
        || ui_path == "/approve/"
        || ui_path
            .strip_prefix("/approve/")
            .is_some_and(|id| !id.is_empty() && !id.contains('/'));
    let trimmed = ui_path.trim_end_matches('/');
    approve || trimmed == "/focus" || trimmed.starts_with("/focus/")
}

/// Conditional GET/HEAD: `If-None-Match` decides alone when present (a listed tag or `*`,
/// as Node answers `*`); otherwise `If-Modified-Since` at or after `Last-Modified`
/// (CUI:325-330).
fn unmodified(headers: &HeaderMap, etag: &str, last_modified: Option<SystemTime>) -> bool {
    if let Some(tags) = text(headers, header::IF_NONE_MATCH) {
        return files::none_match(tags, etag);
    }
    let Some(last_modified) = last_modified else {
        return false;
    };
    let values: Vec<&str> = headers
        .get_all(header::IF_MODIFIED_SINCE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    files::not_modified_since(&values, last_modified)
}

/// The file's bytes and their count: read whole when small, streamed in 64 KiB chunks
/// otherwise. `None` when the read fails (the caller answers `500`).
async fn file_body(file: OpenFile) -> Option<(u64, Body)> {
    if file.len <= READ_WHOLE_LIMIT {
        let read = tokio::task::spawn_blocking(move || {
            let mut bytes = Vec::with_capacity(file.len as usize);
            let mut limited = std::io::Read::take(&file.file, file.len);
            std::io::Read::read_to_end(&mut limited, &mut bytes).map(|_| bytes)
        })
        .await;
        let bytes = read.ok()?.ok()?;
        return Some((bytes.len() as u64, Body::full(bytes)));
    }
    let len = file.len;
    let file = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file.file), len);
    let chunks = ReaderStream::with_capacity(file, 64 * 1024);
    Some((len, Body::wrap(ExactFileBody { chunks, left: len })))
}

/// A streamed file of a promised length: never more than `left` bytes (a file that grew is
/// cut at the length sent), and an error rather than a clean end when the file shrank, so
/// the connection is closed instead of leaving the client waiting for bytes that never come.
struct ExactFileBody {
    chunks: ReaderStream<tokio::io::Take<tokio::fs::File>>,
    left: u64,
}

impl hyper::body::Body for ExactFileBody {
    type Data = Bytes;
    type Error = super::BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        use futures_util::Stream as _;
        let this = &mut *self;
        match std::task::ready!(std::pin::Pin::new(&mut this.chunks).poll_next(cx)) {
            Some(Ok(chunk)) => {
                this.left = this.left.saturating_sub(chunk.len() as u64);
                std::task::Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Some(Err(e)) => std::task::Poll::Ready(Some(Err(e))),
            None if this.left > 0 => {
                let short = super::BodyError::other(format!(
                    "the file shrank while it was sent: {} bytes missing",
                    this.left
                ));
                this.left = 0;
                std::task::Poll::Ready(Some(Err(short)))
            }
            None => std::task::Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

/// The first value of `name` in a query string (no decoding beyond `+`-free percent forms).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| value.to_owned())
    })
}

fn text(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Every value of a list header, joined as Node joins repeated ones (`a, b`).
fn joined(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// A representation's validators, with their header values made once.
pub(super) struct Validators {
    etag: String,
    etag_header: Option<HeaderValue>,
    last_modified: SystemTime,
    last_modified_header: HeaderValue,
}

impl Validators {
    pub(super) fn new(etag: String, last_modified: SystemTime) -> Self {
        Self {
            etag_header: HeaderValue::from_str(&etag).ok(),
            etag,
            last_modified_header: http_date(last_modified),
            last_modified,
        }
    }
}

fn http_date(time: SystemTime) -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(time))
        .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

/// Every encoding, identity included, refused (CUI:376-380).
fn not_acceptable() -> Response<Body> {
    let mut response = plain(StatusCode::NOT_ACCEPTABLE, "Not Acceptable");
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    response
}

/// The headers of every Control UI response (CUI:446-452); an `index.html` keeps the CSP it
/// was given.
fn security_headers(headers: &mut HeaderMap) {
    // A cached asset's head was made with them already.
    if headers.contains_key(header::X_FRAME_OPTIONS) {
        return;
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The default policy, made once (every asset response carries it).
    static DEFAULT_CSP: LazyLock<Option<HeaderValue>> =
        LazyLock::new(|| HeaderValue::from_str(&index::csp(&[], false, None)).ok());
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY)
        && let Some(csp) = DEFAULT_CSP.as_ref()
    {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(self), microphone=*, geolocation=*, clipboard-write=*"),
    );
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::{READ_WHOLE_LIMIT, file_body, files};

    /// Opens `name` in `dir` as a request does (metadata taken now), then rewrites the file
    /// to `now` bytes before its body is read: what a rewrite racing a request does.
    fn opened_then_rewritten(dir: &std::path::Path, was: usize, now: usize) -> files::OpenFile {
        let path = dir.join("f.bin");
        std::fs::write(&path, vec![b'a'; was]).unwrap();
        let root = std::fs::canonicalize(dir).unwrap();
        let file = files::open_below(&root, "f.bin", false).unwrap().unwrap();
        assert_eq!(file.len, was as u64);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(now as u64)
            .unwrap();
        file
    }

    #[tokio::test]
    async fn a_small_file_rewritten_after_open_sends_the_length_it_read() {
        let dir = tempfile::tempdir().unwrap();
        for (was, now) in [(20_000, 0), (20_000, 7), (7, 20_000)] {
            let file = opened_then_rewritten(dir.path(), was, now);
            let (len, body) = file_body(file).await.expect("the read succeeds");
            let bytes = body.collect().await.unwrap().to_bytes();
            assert_eq!(
                len,
                bytes.len() as u64,
                "{was} → {now} bytes: the length sent is the body's"
            );
            assert!(bytes.len() <= was, "never more than the length opened");
        }
    }

    #[tokio::test]
    async fn a_streamed_file_that_shrank_fails_its_body_and_one_that_grew_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let big = READ_WHOLE_LIMIT as usize * 4;
        let shrank = opened_then_rewritten(dir.path(), big, 1000);
        let (len, body) = file_body(shrank).await.expect("opened");
        assert_eq!(len, big as u64);
        assert!(
            body.collect().await.is_err(),
            "a short body is cut off, never ended cleanly under a longer Content-Length"
        );
        let grew = opened_then_rewritten(dir.path(), big, big * 2);
        let (len, body) = file_body(grew).await.expect("opened");
        let bytes = body.collect().await.expect("a whole body").to_bytes();
        assert_eq!((len, bytes.len()), (big as u64, big));
    }
}
