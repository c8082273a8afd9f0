//! The C ABI (`include/gateway.h`, generated from this module by cbindgen in `build.rs`).
//!
//! It translates the safe Rust API and adds no logic of its own: handles own the Rust values,
//! results and messages come from [`GatewayLockError`], `gw_serve_options` is [`ServeOptions`]
//! (checked by [`ServeOptions::validate`]), callbacks become a [`Logger`], a [`StateHandler`]
//! and [`Handlers`] whose methods the host answers by id (`gw_respond` is
//! [`GatewayHandle::respond`]). Every export NULL-checks its pointers, writes its outputs only on success,
//! and runs its body behind a panic boundary: a panic becomes `GW_ERR_PANIC`, never an abort
//! or an unwind into C.
//!
//! [`Logger`]: crate::Logger
//! [`StateHandler`]: crate::StateHandler
//! [`Handlers`]: crate::Handlers
//! [`GatewayHandle::respond`]: crate::GatewayHandle::respond
//! [`ServeOptions`]: crate::ServeOptions
//! [`ServeOptions::validate`]: crate::ServeOptions::validate

// The C names are the ABI: `gw_options`, `gw_result`, `GW_OK`.
#![allow(non_camel_case_types)]

mod boundary;
mod callbacks;
mod calls;
mod cluster;
mod handlers;
mod host;
mod http_exchange;
mod http_options;
mod http_routes;
mod lock;
mod log;
mod options;
mod pairing;
mod requests;
mod result;
mod serve_options;
mod server;
mod state;
mod userdata;

pub use callbacks::{
    gw_callbacks, gw_connection_fn, gw_log_fn, gw_log_level, gw_request_fn, gw_request_id,
    gw_state, gw_state_fn,
};
pub use cluster::*;
pub use handlers::{
    gw_handlers, gw_handlers_add_event, gw_handlers_add_method, gw_handlers_free, gw_handlers_new,
};
pub use http_exchange::*;
pub use http_options::*;
pub use http_routes::{gw_http_route_flags, gw_http_route_fn, gw_serve_options_add_http_route};
pub use lock::{
    gw_lock, gw_lock_acquire, gw_lock_acquire_with_listener, gw_lock_is_lost, gw_lock_port,
    gw_lock_release, gw_lock_status, gw_status,
};
pub use options::*;
pub use pairing::*;
pub use result::{gw_last_error_holder, gw_last_error_message, gw_result, gw_result_name};
pub use serve_options::*;
pub use server::{
    gw_broadcast, gw_json_fn, gw_respond, gw_send_event, gw_serve, gw_server,
    gw_server_connection_count, gw_server_port, gw_server_presence, gw_set_health, gw_shutdown,
};
pub use state::*;

use std::ffi::c_char;

#[cfg(doc)]
use crate::GatewayLockError;

/// The version of the C ABI described by this header. It changes only when an existing
/// function, type or value changes meaning; additions keep it. What changed in each version
/// is in the docs of [`gw_abi_version`].
pub const ABI_VERSION: u32 = 2;

/// The library's version, `MAJOR.MINOR.PATCH` (the `GATEWAY_VERSION_*` macros of the header
/// the host was compiled with may differ when it loads a newer shared library).
///
/// Returns a static NUL-terminated string: never NULL, never to be freed. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn gw_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The version of the C ABI the library implements (`GATEWAY_ABI_VERSION` in the header the
/// host was compiled with). A host should refuse to run when the two differ. Any thread.
///
/// Version 2 (this header) broke version 1: `gw_serve` takes a `gw_serve_options` (NULL for
/// the defaults) before `out`; `on_request` (`gw_request_fn`) gets the `gw_server` after
/// `userdata`; the request timeout moved from `gw_handlers_set_request_timeout_ms` (gone) to
/// `gw_serve_options_set_request_timeout_ms`; registering a method twice is
/// `GW_ERR_INVALID_ARGUMENT` (version 1 replaced its scope). New in 2: `gw_serve_options_*`,
/// `gw_set_health`, `gw_server_connection_count`, `gw_last_error_holder`,
/// `gw_lock_acquire_with_listener`, `gw_lock_is_lost`. Also in 2: `on_connection`
/// (`gw_connection_fn`) gets the `gw_server` after `userdata` and may run before `gw_serve`
/// returns; `gw_options_set_log` takes a `free_userdata` finalizer after `userdata`. Added
/// since, without a new version: host HTTP routes (`gw_serve_options_add_http_route`,
/// `gw_http_exchange_*`), `gw_unlock` and `gw_last_error_holder_host` (issue 13), and the
/// results `GW_ERR_HTTP_BODY`, `GW_ERR_WRONG_THREAD` and `GW_ERR_HELD_BY_OTHER_HOST`; cluster
/// mode (issue 14: `gw_options_set_cluster_*`, `gw_cancel_*`, `gw_lock_fencing_token`,
/// `gw_lock_is_leader`, `gw_server_fencing_token`, `gw_server_is_leader`,
/// `gw_lock_cluster_leader`, and the results 17 to 20).
#[unsafe(no_mangle)]
pub extern "C" fn gw_abi_version() -> u32 {
    ABI_VERSION
}
