//! Retrying a taken port is an option, never the default, and is skipped when the holder is a
//! healthy gateway (SPEC §6).

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;
use gateway::{BindRetry, GatewayLock, GatewayLockError};

#[test]
fn default_fails_fast_on_a_taken_port() {
    let env = TestEnv::new();
    let foreign = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = foreign.local_addr().unwrap().port();
    let started = Instant::now();
    let err = GatewayLock::acquire(&env.options().port(port)).unwrap_err();
    assert!(matches!(err, GatewayLockError::AddrInUse { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert!(env.lock_dir_entries().is_empty());
}

#[test]
fn retry_waits_for_the_port_to_be_freed() {
    let env = TestEnv::new();
    // A test port: the gateway binds it after the foreign listener let it go.
    let port = free_port();
    let foreign = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(foreign);
    });
    // Up to 10 s of retries for a release after 300 ms: a loaded machine may be late.
    let options = env.options().port(port).bind_retry(BindRetry {
        attempts: 200,
        interval: Duration::from_millis(50),
    });
    let lock = GatewayLock::acquire(&options).expect("the port is freed within the retries");
    assert_eq!(lock.port(), port);
    releaser.join().unwrap();
}

#[test]
fn retry_gives_up_with_the_message() {
    let env = TestEnv::new();
    let foreign = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = foreign.local_addr().unwrap().port();
    let options = env.options().port(port).bind_retry(BindRetry {
        attempts: 3,
        interval: Duration::from_millis(20),
    });
    let err = GatewayLock::acquire(&options).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("another gateway instance is already listening on ws://127.0.0.1:{port}")
    );
}

#[test]
fn retry_is_skipped_when_the_holder_is_healthy() {
    let holder_env = TestEnv::new();
    let holder = holder_env.start(&["--port", "0"]);
    // Another state dir, so only the port collides.
    let env = TestEnv::new();
    let options = env.options().port(holder.port).bind_retry(BindRetry {
        attempts: 50,
        interval: Duration::from_millis(100),
    });
    let started = Instant::now();
    let err = GatewayLock::acquire(&options).unwrap_err();
    assert!(matches!(err, GatewayLockError::AddrInUse { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "retried against a healthy gateway for {:?}",
        started.elapsed()
    );
    assert!(healthy(holder.port));
}
