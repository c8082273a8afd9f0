//! OpenClaw's Control UI served from a directory (SPEC §13.3): base path, the `index.html`
//! rewrite, SPA fallback, caching, conditional and compressed responses, Node's security
//! headers, and `control-ui-config.json`.

use std::path::PathBuf;

use serde_json::{Map, Value};

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
}
