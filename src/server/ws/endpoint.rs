//! What every WebSocket connection of one gateway shares: the hub, the host's methods and
//! events, the auth policy and the protocol's limits.

use std::collections::HashMap;
use std::sync::Arc;

use super::budget::ControlPlaneBudget;
use super::handle::GatewayHandle;
use super::handlers::{Handlers, Method};
use super::hub::Hub;
use super::options::ProtocolOptions;
use crate::options::{Auth, Logger};
use crate::server::auth::Throttle;
use crate::server::pairing::{DeviceStore, PairingPolicy};

/// The events every gateway emits, listed first in `hello-ok`'s `features.events`.
const BUILTIN_EVENTS: [&str; 4] = ["connect.challenge", "tick", "health", "shutdown"];

/// The WebSocket endpoint at `/` of one gateway.
pub(crate) struct Endpoint {
    pub(super) hub: Arc<Hub>,
    pub(super) options: ProtocolOptions,
    pub(super) auth: Auth,
    /// Every listener is on loopback, so loopback origins are allowed too.
    pub(super) loopback: bool,
    pub(super) throttle: Throttle,
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
    #[allow(dead_code)] // skeleton: the identity part reads it
    pub(super) devices: Arc<DeviceStore>,
    /// The host's say over who pairs.
    #[allow(dead_code)] // skeleton: the identity part reads it
    pub(super) pairing: Arc<dyn PairingPolicy>,
}

impl Endpoint {
    pub(crate) fn new(
        options: ProtocolOptions,
        handlers: Handlers,
        auth: Auth,
        loopback: bool,
        logger: Logger,
        devices: Arc<DeviceStore>,
        pairing: Arc<dyn PairingPolicy>,
    ) -> Arc<Self> {
        let mut method_names = vec!["health".to_owned()];
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
            throttle: Throttle::new(options.auth_throttle),
            control_plane: ControlPlaneBudget::default(),
            methods: handlers.lookup(),
            options,
            auth,
            loopback,
            handlers,
            method_names,
            event_names,
            devices,
            pairing,
        })
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
}
