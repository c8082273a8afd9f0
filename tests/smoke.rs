//! The first thing a user does: run the gateway with no configuration, probe it, stop it.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::*;

/// Each test checks that its port is free once it stops, so they must not pick up each
/// other's ports in between: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn runs_with_no_configuration_and_stops_cleanly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let port = free_port().to_string();
    let gateway = env.start(&["--port", &port]);
    assert!(healthy(gateway.port));
    let entries = env.lock_dir_entries();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let port = gateway.port;
    assert_eq!(gateway.terminate(), 0);
    assert!(port_is_free(port));
    assert!(env.lock_dir_entries().is_empty());
}

#[test]
fn library_acquire_serve_shutdown() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = TestEnv::new();
    let lock = gateway::GatewayLock::acquire(&env.options().port(free_port())).unwrap();
    let port = lock.port();
    assert_ne!(port, 0);
    let server = gateway::Gateway::serve(lock, gateway::ServeOptions::default()).unwrap();
    assert!(healthy(port));
    server.shutdown(Duration::from_secs(2));
    assert!(port_is_free(port));
    assert!(env.lock_dir_entries().is_empty());
}
