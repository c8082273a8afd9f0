//! The holder's periodic re-check: a lost lock is reported once, also to a handler set late,
//! and the handler may release the lock from the watch thread.

mod common;

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::*;
use gateway::GatewayLock;

#[test]
fn a_handler_set_after_the_loss_is_told_at_once() {
    let env = TestEnv::new();
    let lock = GatewayLock::acquire(
        &env.options()
            .port(0)
            .recheck_interval(Duration::from_millis(20)),
    )
    .unwrap();
    std::fs::remove_file(env.config_lock()).unwrap();
    assert!(wait_until(Duration::from_secs(5), || lock.is_lost()));
    let (tx, rx) = mpsc::channel();
    lock.on_lost(move |path| tx.send(path.to_path_buf()).unwrap());
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(1)).unwrap(),
        env.config_lock()
    );
}

#[test]
fn the_handler_may_release_the_lock_itself() {
    let env = TestEnv::new();
    let lock = GatewayLock::acquire(
        &env.options()
            .port(free_port())
            .recheck_interval(Duration::from_millis(20)),
    )
    .unwrap();
    let port = lock.port();
    let slot = Arc::new(Mutex::new(None::<GatewayLock>));
    let (done_tx, done_rx) = mpsc::channel();
    let handler_slot = Arc::clone(&slot);
    lock.on_lost(move |_| {
        // Dropping the lock here runs its release on the watch thread.
        drop(handler_slot.lock().unwrap().take());
        done_tx.send(()).unwrap();
    });
    *slot.lock().unwrap() = Some(lock);
    std::fs::remove_file(env.state_lock()).unwrap();
    done_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the handler ran and released the lock without deadlock or panic");
    assert!(port_is_free(port));
    assert!(
        env.lock_dir_entries().is_empty(),
        "{:?}",
        env.lock_dir_entries()
    );
}

#[test]
fn a_panicking_handler_does_not_stop_the_recheck_of_other_locks() {
    let first_env = TestEnv::new();
    let options = |env: &TestEnv| {
        env.options()
            .port(0)
            .recheck_interval(Duration::from_millis(20))
    };
    let first = GatewayLock::acquire(&options(&first_env)).unwrap();
    first.on_lost(|_| panic!("a host handler that panics"));
    std::fs::remove_file(first_env.state_lock()).unwrap();
    assert!(wait_until(Duration::from_secs(5), || first.is_lost()));

    // The one re-check thread of the process must still watch a lock taken afterwards.
    let second_env = TestEnv::new();
    let second = GatewayLock::acquire(&options(&second_env)).unwrap();
    let (tx, rx) = mpsc::channel();
    second.on_lost(move |path| tx.send(path.to_path_buf()).unwrap());
    std::fs::remove_file(second_env.config_lock()).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        second_env.config_lock()
    );
}

#[test]
fn a_zero_recheck_interval_is_refused() {
    let env = TestEnv::new();
    let err =
        GatewayLock::acquire(&env.options().port(0).recheck_interval(Duration::ZERO)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the lock re-check interval must be above 0 ms"
    );
    // A huge one is "rarely", not an overflow.
    let lock = GatewayLock::acquire(&env.options().port(0).recheck_interval(Duration::MAX))
        .expect("acquire with a huge re-check interval");
    drop(lock);
    assert!(env.lock_dir_entries().is_empty());
}
