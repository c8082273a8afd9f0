//! What every WebSocket connection of one gateway shares: the hub, the host's methods and
//! events, the auth policy and the protocol's limits.

use std::collections::HashMap;
use std::sync::Arc;

use super::handle::GatewayHandle;
use super::handlers::{Handlers, Method};
use super::hub::Hub;
use super::options::ProtocolOptions;
use crate::options::{Auth, Logger};
use crate::server::auth::Throttle;
use crate::server::pairing::{DefaultPairingPolicy, DeviceStore, PairingPolicy};

/// The events every gateway emits, listed first in `hello-ok`'s `features.events`.
/// `device.pair.*` are the handshake's pairing broadcasts (SPEC §11.5).
const BUILTIN_EVENTS: [&str; 6] = [
    "connect.challenge",
    "tick",
    "health",
    "shutdown",
    "device.pair.requested",
    "device.pair.resolved",
];

/// The WebSocket endpoint at `/` of one gateway.
pub(crate) struct Endpoint {
    pub(super) hub: Arc<Hub>,
    pub(super) options: ProtocolOptions,
    pub(super) auth: Auth,
    pub(super) throttle: Throttle,
    pub(super) handlers: Handlers,
    pub(super) methods: HashMap<String, Method>,
    /// `features.methods` of `hello-ok`: `health`, then the host's.
    pub(super) method_names: Vec<String>,
    /// `features.events` of `hello-ok`: the built-in events, then the host's.
    pub(super) event_names: Vec<String>,
    /// Paired devices, pending requests and device tokens (SPEC §11.5).
    pub(super) devices: DeviceStore,
    /// The host's say over who pairs.
    pub(super) pairing: Arc<dyn PairingPolicy>,
}

impl Endpoint {
    pub(crate) fn new(
        options: ProtocolOptions,
        handlers: Handlers,
        auth: Auth,
        logger: Logger,
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
            hub: Hub::new(&options, logger),
            throttle: Throttle::new(options.auth_throttle),
            methods: handlers.lookup(),
            options,
            auth,
            handlers,
            method_names,
            event_names,
            devices: DeviceStore::default(),
            pairing: Arc::new(DefaultPairingPolicy),
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
