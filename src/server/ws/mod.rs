//! The WebSocket endpoint at `/` (SPEC §9): what the host gives it and gets from it, and the
//! parts that serve it, one reader (session) and one writer (conn) task per connection.
//!
//! The imports run one way: `handlers` (what the host gives) → `handle` (what it gets) → `hub`
//! (the connections) → `conn` → `metered`; `endpoint`, `session` and `upgrade` sit on top.

mod admission;
mod budget;
mod conn;
mod credentials;
mod endpoint;
mod flood;
mod handle;
mod handlers;
mod hub;
mod metered;
mod options;
mod pending;
mod session;
mod state;
mod upgrade;

pub(crate) use endpoint::{Endpoint, StatePaths};
pub use handle::{GatewayHandle, Responder};
pub use handlers::{ClientInfo, ConnectionEvent, Handlers, MethodHandler, MethodRequest};
pub use options::ProtocolOptions;
pub use state::HealthSource;
pub(crate) use upgrade::accept;
