//! The host's `on_request` and `on_connection` as the Rust API's method handler and connection
//! observer: each call is given the server and runs inside the server's call gate.

use std::sync::Arc;

use super::boundary::c_string;
use super::host::HostCallbacks;
use super::server::ServerPtr;
use crate::server::{ConnectionEvent, MethodHandler, MethodRequest, Responder};

/// Every registered method of a C host: `on_request`, answered by id through `gw_respond` on
/// the server it is given.
pub(crate) struct HostMethod {
    pub(crate) host: Arc<HostCallbacks>,
    pub(crate) server: ServerPtr,
}

impl MethodHandler for HostMethod {
    fn call(&self, request: MethodRequest, responder: Responder) {
        let Some(on_request) = self.host.on_request else {
            return;
        };
        let Some(_call) = self.host.calls.enter() else {
            return;
        };
        // The host answers by id through the server; dropping the responder answers nothing.
        drop(responder);
        let conn_id = request.conn_id();
        let params = c_string(request.params.to_string());
        let method = c_string(request.method);
        // SAFETY: a host callback with its own userdata (alive: `host` holds it), the server
        // (live while a call has entered, see `ServerPtr`), and NUL-terminated strings that
        // outlive the call.
        unsafe {
            on_request(
                self.host.userdata.get(),
                self.server.0,
                request.id,
                method.as_ptr(),
                method.as_bytes().len(),
                params.as_ptr(),
                params.as_bytes().len(),
                conn_id,
            )
        }
    }
}

/// Calls `on_connection` for `event` (on the worker that saw it, so a connection's `opened`
/// comes before its requests), unless the server is being freed.
pub(crate) fn announce_connection(
    host: &HostCallbacks,
    server: ServerPtr,
    event: &ConnectionEvent,
) {
    let Some(on_connection) = host.on_connection else {
        return;
    };
    let (opened, client) = match event {
        ConnectionEvent::Opened(client) => (true, client),
        ConnectionEvent::Closed(client) => (false, client),
    };
    let Some(_call) = host.calls.enter() else {
        return;
    };
    let json = c_string(client.to_json());
    // SAFETY: a host callback with its own userdata (alive: `host` holds it), the server
    // (live while a call has entered, see `ServerPtr`), and a NUL-terminated string that
    // outlives the call.
    unsafe {
        on_connection(
            host.userdata.get(),
            server.0,
            client.conn_id,
            opened,
            json.as_ptr(),
            json.as_bytes().len(),
        )
    }
}
