//! What every WebSocket connection of one gateway shares: the hub, the host's methods and
//! events, the auth policy and the protocol's limits.

use std::collections::HashMap;
use std::sync::Arc;

use super::budget::ControlPlaneBudget;
use super::handle::GatewayHandle;
use super::handlers::{Handlers, Method};
use super::hub::Hub;
use super::options::ProtocolOptions;
use super::state::SystemPresence;
use crate::options::{Auth, Logger, ResolvedOptions};
use crate::server::http::ControlUiBuildSource;
use crate::server::pairing::{DeviceStore, PairingPolicy};
use crate::server::rate_limit::RateLimiter;
use crate::server::scopes;

/// The events every gateway emits, listed first in `hello-ok`'s `features.events`.
/// `device.pair.*` are the handshake's pairing broadcasts (SPEC §11.5).
const BUILTIN_EVENTS: [&str; 7] = [
    "connect.challenge",
    "tick",
    "health",
    "shutdown",
    "presence",
    "device.pair.requested",
    "device.pair.resolved",
];

/// The core's method that lists presence (SPEC §12.6).
const SYSTEM_PRESENCE: &str = "system-presence";

/// Where the gateway keeps its config and state, shown to admins in `hello-ok` (SPEC §12.8).
pub(crate) struct StatePaths {
    pub config_path: String,
    pub state_dir: String,
}

impl StatePaths {
    pub(crate) fn of(resolved: &ResolvedOptions) -> Self {
        Self {
            config_path: resolved.config_path.display().to_string(),
            state_dir: resolved.state_dir.display().to_string(),
        }
    }
}

/// The WebSocket endpoint at `/` of one gateway.
pub(crate) struct Endpoint {
    pub(super) hub: Arc<Hub>,
    pub(super) options: ProtocolOptions,
    pub(crate) auth: Auth,
    /// Failed credentials of clients without an `Origin` header; loopback is never locked
    /// out, only slowed (SPEC §11.7).
    pub(super) throttle: RateLimiter,
    /// Failed credentials of clients with an `Origin` header: nobody is exempt (SS:4794-4798).
    pub(super) browser_throttle: RateLimiter,
    /// Node's 30-a-minute budget for control-plane writes (SPEC §12.2).
    pub(super) control_plane: ControlPlaneBudget,
    pub(super) handlers: Handlers,
    pub(super) methods: HashMap<String, Method>,
    /// `features.methods` of `hello-ok`: `health`, then the host's.
    pub(super) method_names: Vec<String>,
    /// `features.events` of `hello-ok`: the built-in events, then the host's.
    pub(super) event_names: Vec<String>,
    /// Paired devices, pending requests and device tokens (SPEC §11.5); the hub (and so the
    /// host's handle) holds it too.
    pub(super) devices: Arc<DeviceStore>,
    /// The host's say over who pairs.
    pub(super) pairing: Arc<dyn PairingPolicy>,
    /// `hello-ok.snapshot.configPath` and `stateDir` for admins.
    pub(super) paths: StatePaths,
    /// Where the Control UI this gateway serves came from, when it serves one
    /// (`hello-ok.server.controlUiBuildSource`, and whether its build must match, SPEC §13.3).
    pub(super) control_ui: Option<ControlUiBuildSource>,
    /// Cluster mode: the leader's fence, asked before each handshake and each request.
    pub(super) fence: Option<Arc<crate::cluster::Fence>>,
}

impl Endpoint {
    // Each argument is a separate part `serve` assembles; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        options: ProtocolOptions,
        handlers: Handlers,
        auth: Auth,
        logger: Logger,
        devices: Arc<DeviceStore>,
        pairing: Arc<dyn PairingPolicy>,
        paths: StatePaths,
        control_ui: Option<ControlUiBuildSource>,
        fence: Option<Arc<crate::cluster::Fence>>,
    ) -> Arc<Self> {
        let mut method_names = vec!["health".to_owned()];
        let mut methods = handlers.lookup();
        // SPEC §12.6: `system-presence` is the core's, unless the host answers it itself.
        if !methods.contains_key(SYSTEM_PRESENCE) {
            methods.insert(
                SYSTEM_PRESENCE.to_owned(),
                Method {
                    scope: Some(scopes::READ.to_owned()),
                    handler: Arc::new(SystemPresence),
                },
            );
            method_names.push(SYSTEM_PRESENCE.to_owned());
        }
        method_names.extend(
            handlers
                .method_names()
                .filter(|name| *name != "health")
                .map(str::to_owned),
        );
        let mut event_names: Vec<String> = BUILTIN_EVENTS.iter().map(|e| e.to_string()).collect();
        event_names.extend(
            handlers
                .events()
                .iter()
                .filter(|e| !BUILTIN_EVENTS.contains(&e.as_str()))
                .cloned(),
        );
        Arc::new(Self {
            hub: Hub::new(
                &options,
                logger,
                handlers.event_gates(),
                Arc::clone(&devices),
            ),
            throttle: RateLimiter::new(options.auth_throttle, true),
            browser_throttle: RateLimiter::new(options.auth_throttle, false),
            control_plane: ControlPlaneBudget::default(),
            methods,
            options,
            auth,
            handlers,
            method_names,
            event_names,
            devices,
            pairing,
            paths,
            control_ui,
            fence,
        })
    }

    /// True unless this gateway is in cluster mode and may no longer act as leader (checked
    /// on the clock, so also right after the process resumes from a pause).
    pub(crate) fn leads(&self) -> bool {
        self.fence.as_ref().is_none_or(|fence| fence.holds())
    }

    /// What the host gets to talk to this endpoint's clients.
    pub(crate) fn handle(&self) -> GatewayHandle {
        GatewayHandle::new(Arc::clone(&self.hub))
    }

    /// Starts the ticks, the keepalive and the request timeouts on the current runtime.
    pub(crate) fn start(&self) {
        self.hub.start();
    }

    /// SPEC §9.10: `shutdown` to every client, then close 1012; new upgrades are refused.
    pub(crate) fn shutdown(&self) {
        self.hub.shutdown();
    }

    /// The gateway's auth mode and secret (HTTP routes check bearers against it too).
    pub(crate) fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The limiter of wrong secrets from clients without `Origin`, which HTTP bearer failures
    /// count in too (SPEC §13.4).
    pub(crate) fn throttle(&self) -> &RateLimiter {
        &self.throttle
    }
}
