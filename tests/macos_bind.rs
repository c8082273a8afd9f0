//! Bind exclusion on macOS (issue 10, item 1): with `SO_REUSEADDR`, xnu lets a listener on a
//! specific address and one on the wildcard address share a port. A loopback gateway holds
//! the wildcard addresses bound (not listening) so no `lan` gateway can start beside it, and
//! refuses to start beside one, without ever accepting a client first (everything is bound
//! before anything listens); a `lan` gateway serves the `127.0.0.1` alias too. The other
//! listener is std's `TcpListener::bind`, which sets `SO_REUSEADDR` as Node (libuv) does.
//!
//! Compiled only for macOS (CI links it for both Apple targets); run by scripts/macos-test.sh.
#![cfg(target_os = "macos")]

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use gateway::{Auth, BindMode, GatewayLock, GatewayLockError};

#[test]
fn a_wildcard_listener_cannot_start_beside_a_loopback_gateway() {
    let env = TestEnv::new();
    let port = free_port();
    let lock = GatewayLock::acquire(&env.options().port(port)).expect("the gateway starts");
    for wildcard in ["0.0.0.0", "[::]"] {
        let err = TcpListener::bind(format!("{wildcard}:{port}")).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::AddrInUse,
            "a listener on {wildcard}:{port} started beside the gateway: {err}"
        );
    }
    // The guards do not listen: a connection reaches only the gateway's loopback listener.
    assert_eq!(
        lock.local_addrs()[0],
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());

    lock.release();
    let after = TcpListener::bind(("0.0.0.0", port));
    assert!(after.is_ok(), "the guards outlived the lock: {after:?}");
}

#[test]
fn a_loopback_gateway_refuses_to_start_beside_a_wildcard_listener() {
    let env = TestEnv::new();
    let port = free_port();
    let lan_gateway = TcpListener::bind(("0.0.0.0", port)).unwrap();
    let err = GatewayLock::acquire(&env.options().port(port)).unwrap_err();
    assert!(matches!(err, GatewayLockError::AddrInUse { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("another gateway instance is already listening on ws://0.0.0.0:{port}")
    );
    assert!(env.lock_dir_entries().is_empty());
    // Nothing of ours is left on the port.
    drop(lan_gateway);
    assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
}

/// Refusing must not be preceded by a moment of serving: every socket is bound before any
/// listens (src/bind.rs `bind_apple`), so while a wildcard listener holds the port, a gateway
/// that acquires over and over never accepts a local client, not even one it would close.
#[test]
fn no_client_ever_reaches_a_gateway_that_refuses_beside_a_wildcard_listener() {
    let env = TestEnv::new();
    let port = free_port();
    let lan_gateway = TcpListener::bind(("0.0.0.0", port)).unwrap();
    lan_gateway.set_nonblocking(true).unwrap();
    let expected = format!("another gateway instance is already listening on ws://0.0.0.0:{port}");
    let attempting = AtomicBool::new(true);
    std::thread::scope(|scope| {
        let attempts = scope.spawn(|| {
            let mut count = 0;
            while attempting.load(Ordering::Relaxed) || count < 20 {
                match GatewayLock::acquire(&env.options().port(port)) {
                    Err(err) => assert_eq!(err.to_string(), expected),
                    Ok(lock) => panic!("we got the port: {:?}", lock.local_addrs()),
                }
                count += 1;
            }
            count
        });
        // Each client must be the wildcard listener's: the connection it accepts is the one
        // this client made. One that reached our listener (even for the moment before it was
        // closed) never shows up there.
        for i in 0..300 {
            let client = TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                Duration::from_secs(2),
            )
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            let mut accepted = None;
            wait_until(Duration::from_secs(2), || {
                accepted = lan_gateway.accept().ok().map(|(_, peer)| peer);
                accepted.is_some()
            });
            assert_eq!(
                accepted,
                Some(client.local_addr().unwrap()),
                "connection {i} did not reach the wildcard listener"
            );
        }
        attempting.store(false, Ordering::Relaxed);
        assert!(attempts.join().unwrap() >= 20);
    });
    assert!(env.lock_dir_entries().is_empty());
}

#[test]
fn a_lan_gateway_serves_the_loopback_alias_so_none_can_take_it() {
    let env = TestEnv::new();
    let port = free_port();
    let options = env
        .options()
        .port(port)
        .bind(BindMode::Lan)
        .auth(Auth::Token("macos-test".into()));
    let lock = GatewayLock::acquire(&options).expect("the lan gateway starts");
    assert_eq!(
        lock.local_addrs(),
        vec![
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        ]
    );
    let err = TcpListener::bind(("127.0.0.1", port)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    lock.release();

    // And a loopback listener already there stops a lan gateway, named by its address.
    let loopback_gateway = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let err = GatewayLock::acquire(&options).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("another gateway instance is already listening on ws://127.0.0.1:{port}")
    );
    drop(loopback_gateway);
    assert!(env.lock_dir_entries().is_empty());
}
