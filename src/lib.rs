//! An embeddable OpenClaw gateway with a hard guarantee: one gateway per config and per port
//! on a host.
//!
//! The lock is the Node gateway's own (same files, same format, same messages), made stronger:
//! a kernel `flock` beacon proves a holder alive, start times defeat pid reuse, and only a
//! provably dead owner's files are reclaimed. Then the listener is bound exclusively.
//!
//! ```no_run
//! use std::time::Duration;
//! use gateway::{Gateway, GatewayLock, GatewayOptions, ServeOptions};
//!
//! # fn main() -> Result<(), gateway::GatewayLockError> {
//! let options = GatewayOptions::from_env()?.port(0);
//! let lock = GatewayLock::acquire(&options)?;   // this process is now the gateway
//! let gateway = Gateway::serve(lock, ServeOptions::default())?;
//! println!("listening on ws://127.0.0.1:{}", gateway.port());
//! gateway.shutdown(Duration::from_secs(5));      // port free, lock files gone
//! # Ok(())
//! # }
//! ```

mod bind;
pub mod cluster;
mod error;
mod failpoint;
pub mod ffi;
pub mod lock;
mod options;
pub mod paths;
mod probe;
pub mod server;
pub mod supervisor;

pub use cluster::{
    ClusterBackend, ClusterLeader, ClusterOptions, ClusterStatus, ClusterStore, Leadership,
};
pub use error::GatewayLockError;
/// The HTTP types host routes are written with (hyper 1's, from the `http` crate), so a host
/// needs no dependency of its own on them.
pub use hyper::{HeaderMap, Method, Response, StatusCode, Uri, header};
pub use lock::{GatewayLock, GatewayStatus, Ground, LockReach, RemovedLock, status, unlock};
pub use options::{Auth, BindMode, BindRetry, GatewayOptions, LogLevel, Logger, ResolvedOptions};
pub use server::HealthSource;
pub use server::HttpAuthMethod;
pub use server::{
    AuthThrottle, ClientInfo, ConnectionEvent, GatewayHandle, Handlers, MethodError, MethodHandler,
    MethodRequest, PROTOCOL_VERSION, ProtocolOptions, Responder,
};
pub use server::{
    BOOTSTRAP_TOKEN_TTL_MS, BootstrapProfile, DEVICE_STORE_FILE, DefaultPairingPolicy, Locality,
    PAIRING_REQUEST_TTL_MS, PairedDevice, PairingContext, PairingDecision, PairingError,
    PairingOptions, PairingPolicy, PairingReason, PairingRequest, silent_local_approval,
};
pub use server::{
    Body, BodyError, BodySendError, BodyWriter, ControlUiBuildSource, ControlUiOptions,
    DEFAULT_MAX_BODY_BYTES, HttpHandler, HttpOptions, HttpRequest, HttpRoute, HttpRoutes,
    RequestBody, ResponseFuture, RouteAuth, RouteMatch, WebSocketPaths,
};
pub use server::{Gateway, GatewayState, Phase, ServeOptions, ShutdownReport, StateHandler};
pub use server::{MAX_PENDING, MAX_PENDING_PER_IP};

/// Internals the integration tests and benchmarks reach into. **Not API**: outside semver, and
/// any of it may change or go in any release. Hosts use the items at the crate root.
#[doc(hidden)]
pub mod test_support {
    pub use crate::lock::format::LockPayload;
    pub use crate::lock::host::{BOOT_TIME_MARGIN, HostIdentity, machine_id_hash};
    pub use crate::lock::liveness::{
        is_gateway_argv, parse_procargs2, pid_is_running, process_argv, process_start_time,
    };
    pub use crate::probe::healthz;
}

/// Every environment variable the library or the `gateway` CLI reads (SPEC §1, §10), plus the
/// test-only ones of the `failpoints` feature. A host that starts gateways with an environment
/// of its own making (a test, a benchmark) removes these to keep the caller's set-up out.
pub const ENVIRONMENT_VARIABLES: [&str; 24] = [
    "OPENCLAW_HOME",
    "OPENCLAW_STATE_DIR",
    "OPENCLAW_CONFIG_PATH",
    "OPENCLAW_GATEWAY_PORT",
    "OPENCLAW_ALLOW_MULTI_GATEWAY",
    "OPENCLAW_GATEWAY_TOKEN",
    "OPENCLAW_GATEWAY_PASSWORD",
    "INVOCATION_ID",
    "SYSTEMD_EXEC_PID",
    "JOURNAL_STREAM",
    "OPENCLAW_SYSTEMD_UNIT",
    "XPC_SERVICE_NAME",
    "LAUNCH_JOB_LABEL",
    "LAUNCH_JOB_NAME",
    "OPENCLAW_LAUNCHD_LABEL",
    "OPENCLAW_PROFILE",
    "APP_SANDBOX_CONTAINER_ID",
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "GATEWAY_FAILPOINT",
    "GATEWAY_FORCE_NAMED_TEMP",
    "GATEWAY_FFI_PANIC",
];
