//! The WebSocket protocol's limits and policies, with OpenClaw's defaults.

use std::time::Duration;

use super::state::HealthSource;
use crate::server::auth::AuthThrottle;

/// The protocol's limits and policies. The defaults are OpenClaw's.
#[derive(Debug, Clone)]
pub struct ProtocolOptions {
    /// Origins allowed besides loopback ones (e.g. `https://app.example.com`; `*` allows all).
    pub allowed_origins: Vec<String>,
    /// No valid `connect` within this → close 1008 `handshake timeout` (default 15 s).
    pub handshake_timeout: Duration,
    /// `tick` events, and `policy.tickIntervalMs` in `hello-ok` (default 30 s).
    pub tick_interval: Duration,
    /// A ping every interval; a peer that answers nothing for a whole interval after a ping
    /// is dropped (default 30 s).
    pub ping_interval: Duration,
    /// A host method not answered within this gets `UNAVAILABLE` (default 30 s).
    pub request_timeout: Duration,
    /// WebSocket connections served at once; past it a client is closed with 1013
    /// `too many connections` (default 10 000).
    pub max_connections: usize,
    /// Bytes a client may send before it is authenticated (default 64 KiB).
    pub max_preauth_payload: usize,
    /// The largest frame after the handshake (default 25 MiB).
    pub max_payload: usize,
    /// Unsent bytes a client may have queued before it is closed as a slow consumer
    /// (default 50 MiB).
    pub max_buffered_bytes: usize,
    /// Throttling of wrong secrets per peer address.
    pub auth_throttle: AuthThrottle,
    /// `server.version` in `hello-ok` and the `version` of the gateway's own presence row
    /// (default this crate's version; a host that speaks for another product sets its own).
    pub server_version: String,
    /// `server.buildId` in `hello-ok` (at most 96 characters; default none, and then it is
    /// left out).
    pub build_id: Option<String>,
    /// `features.capabilities` in `hello-ok`: the wire contracts this gateway keeps (default
    /// none). Each is a promise to clients: list only what the host implements.
    pub capabilities: Vec<String>,
    /// `capabilities` of the `connect.challenge` event: what the gateway honours in `connect`
    /// (default none). OpenClaw's gateway lists `model-catalog-snapshot`, which makes clients
    /// send `modelCatalog` in `connect`; this core does nothing with it, so it is not listed
    /// unless the host says it reads it.
    pub challenge_capabilities: Vec<String>,
    /// How often the health snapshot is refreshed and sent as a `health` event, and how old a
    /// cached one may be when `health` answers it (default 60 s, SPEC §12.7).
    pub health_refresh_interval: Duration,
    /// Where refreshed health snapshots come from (default none: the last snapshot given to
    /// `GatewayHandle::set_health`, else `{"ok":true,"ts":<now>,"durationMs":0}`).
    pub health_source: Option<HealthSource>,
}

impl Default for ProtocolOptions {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            handshake_timeout: Duration::from_secs(15),
            tick_interval: Duration::from_secs(30),
            ping_interval: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_preauth_payload: 64 * 1024,
            max_payload: 25 * 1024 * 1024,
            max_buffered_bytes: 50 * 1024 * 1024,
            auth_throttle: AuthThrottle::default(),
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
            build_id: None,
            capabilities: Vec::new(),
            challenge_capabilities: Vec::new(),
            health_refresh_interval: Duration::from_secs(60),
            health_source: None,
        }
    }
}
