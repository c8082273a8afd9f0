//! What every integration test needs, one module per purpose, all re-exported here so a test
//! says `use common::*`:
//!
//! - [`env`]: an isolated home and state dir, and the `gateway` command pointed at it;
//! - [`process`]: a `gateway run` started to its ready line, any command run to its exit;
//! - [`ports`]: test ports outside the ephemeral range, and whether a port is free again;
//! - [`sockets`]: the kernel's view of a port's sockets (states, unread bytes);
//! - [`http`]: health checks and single HTTP requests, the client closing first;
//! - [`wait`]: waiting for a condition with a deadline;
//! - [`logger`]: a library logger that records;
//! - [`node`]: the real OpenClaw on Node (its gateway, its client commands), for the tests
//!   `scripts/node-interop.sh` runs;
//! - [`remote`]: a peer on another host (a network namespace), for non-loopback clients;
//! - [`tap`]: a recording TCP proxy that reads the WebSocket frames passing through it;
//! - [`etcd`]: a real etcd cluster of Debian's `etcd-server` on loopback ports, for cluster
//!   mode (Linux);
//! - [`hosts`]: machines on one LAN (a bridge, a network namespace per host), whose links can
//!   be cut, for cluster mode's partitions (Linux);
//! - [`readyz`]: a sampler that asks every gateway's `/readyz` every 10 ms (Linux).
//!
//! Every test runs real processes on real sockets. The other test-support modules, each for
//! one kind of test and used next to this one: `lockkit` (lock files and stand-in owners),
//! `race` (starts released together behind a barrier), `wsclient` (a WebSocket client and an
//! in-process gateway).
// Every test binary (and the benches) compiles this module and uses its own share of it.
#![allow(dead_code, unused_imports)]

pub mod env;
#[cfg(target_os = "linux")]
pub mod etcd;
#[cfg(target_os = "linux")]
pub mod hosts;
pub mod http;
pub mod logger;
pub mod node;
pub mod ports;
pub mod process;
#[cfg(target_os = "linux")]
pub mod readyz;
#[cfg(target_os = "linux")]
pub mod remote;
pub mod sockets;
pub mod tap;
pub mod wait;

pub use env::*;
pub use http::*;
pub use logger::*;
pub use ports::*;
pub use process::*;
#[cfg(target_os = "linux")]
pub use remote::*;
pub use sockets::*;
pub use wait::*;
