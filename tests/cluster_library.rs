//! Cluster mode through the Rust API (issue 14), against a real etcd: the leader's fencing
//! token and leadership, a standby refused at once naming the leader or waiting to take over,
//! cancelling a wait, the served gateway fencing itself when its lease cannot be renewed, and
//! acquiring and releasing from inside a host's own async runtime. The fault scenarios between
//! machines are tests/cluster.rs's.
#![cfg(all(target_os = "linux", feature = "cluster-etcd"))]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::etcd::EtcdCluster;
use common::*;
use gateway::{
    ClusterOptions, Gateway, GatewayLock, GatewayLockError, GatewayState, ServeOptions,
    StateHandler,
};

const TTL: Duration = Duration::from_secs(3);
/// etcd's election timeout as tests/common/etcd.rs starts it.
const ETCD_ELECTION_TIMEOUT: Duration = Duration::from_secs(1);

fn cluster(etcd: &EtcdCluster, name: &str) -> ClusterOptions {
    ClusterOptions::etcd(etcd.endpoints()).name(name).ttl(TTL)
}

#[test]
fn the_leader_holds_a_token_and_a_standby_is_refused_naming_it_or_takes_over() {
    let etcd = EtcdCluster::start(1);
    let (a, b) = (TestEnv::new(), TestEnv::new());
    let leader = GatewayLock::acquire(&a.options().port(0).cluster(cluster(&etcd, "lib")))
        .expect("the first gateway leads");
    let leadership = leader.leadership().expect("cluster mode has a leadership");
    let token = leadership.fencing_token();
    assert!(token > 0 && leader.fencing_token() == Some(token));
    assert!(leadership.holds() && leadership.valid_for() > Duration::ZERO);
    assert_eq!(leadership.cluster(), "lib");
    assert_eq!(leadership.key(), "/openclaw/gateway/lib");

    // Fail at once (the default), naming the leader; nothing of b's is left behind.
    let started = Instant::now();
    let refused = GatewayLock::acquire(&b.options().port(0).cluster(cluster(&etcd, "lib")))
        .expect_err("a second gateway in the cluster is refused");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once"
    );
    match &refused {
        GatewayLockError::ClusterLeaderElsewhere {
            cluster,
            leader: who,
        } => {
            assert_eq!(cluster, "lib");
            assert_eq!(who.pid, std::process::id());
            assert_eq!(who.port, leader.port());
            assert_eq!(who.owner_id, leader.owner_id());
            assert_eq!(who.fencing_token, token);
        }
        other => panic!("expected ClusterLeaderElsewhere, got {other:?}"),
    }
    assert!(
        b.lock_dir_entries().is_empty(),
        "{:?}",
        b.lock_dir_entries()
    );

    // Standing by: takes over as soon as the leader releases, with a larger token.
    let waiting = std::thread::spawn({
        let options = b
            .options()
            .port(0)
            .cluster(cluster(&etcd, "lib").wait(Some(Duration::from_secs(30))));
        move || GatewayLock::acquire(&options)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !waiting.is_finished(),
        "the standby waits while the leader holds"
    );
    let released = Instant::now();
    drop(leader);
    assert!(!leadership.holds(), "a released leadership no longer holds");
    let next = waiting.join().unwrap().expect("the standby takes over");
    let handover = released.elapsed();
    assert!(
        handover < Duration::from_secs(1),
        "a release hands over at once (revoked lease), not after the TTL: {handover:?}"
    );
    assert!(next.fencing_token().unwrap() > token);
}

#[test]
fn a_standby_wait_ends_when_cancelled_or_when_it_runs_out() {
    let etcd = EtcdCluster::start(1);
    let (a, b) = (TestEnv::new(), TestEnv::new());
    let _leader =
        GatewayLock::acquire(&a.options().port(0).cluster(cluster(&etcd, "wait"))).unwrap();

    let started = Instant::now();
    let out_of_time = GatewayLock::acquire(
        &b.options()
            .port(0)
            .cluster(cluster(&etcd, "wait").wait(Some(Duration::from_millis(600)))),
    )
    .expect_err("the wait runs out");
    assert!(matches!(
        out_of_time,
        GatewayLockError::ClusterLeaderElsewhere { .. }
    ));
    assert!(started.elapsed() >= Duration::from_millis(600));

    let cancel = Arc::new(AtomicBool::new(false));
    let waiting = std::thread::spawn({
        let options = b.options().port(0).cluster(
            cluster(&etcd, "wait")
                .wait(Some(Duration::MAX))
                .cancel_on(Arc::clone(&cancel)),
        );
        move || GatewayLock::acquire(&options)
    });
    std::thread::sleep(Duration::from_millis(300));
    let cancelled = Instant::now();
    cancel.store(true, Ordering::Release);
    let err = waiting.join().unwrap().expect_err("cancelled");
    assert!(matches!(err, GatewayLockError::Cancelled), "{err:?}");
    assert!(cancelled.elapsed() < Duration::from_secs(2));
    assert!(
        b.lock_dir_entries().is_empty(),
        "{:?}",
        b.lock_dir_entries()
    );
}

#[test]
fn an_unreachable_store_is_refused_naming_it_and_nothing_is_held() {
    let a = TestEnv::new();
    let port = free_port(); // nothing listens there
    let endpoint = format!("http://127.0.0.1:{port}");
    let err = GatewayLock::acquire(
        &a.options()
            .port(0)
            .cluster(ClusterOptions::etcd([endpoint.clone()]).ttl(TTL)),
    )
    .expect_err("no etcd there");
    let message = err.to_string();
    assert!(
        matches!(err, GatewayLockError::ClusterUnavailable { .. }),
        "{err:?}"
    );
    assert!(
        message.contains(&format!("etcd={endpoint}")) && message.contains("check that etcd runs"),
        "{message}"
    );
    assert!(
        a.lock_dir_entries().is_empty(),
        "{:?}",
        a.lock_dir_entries()
    );
}

/// The served leader whose store loses quorum stops serving by itself, before its lease
/// could expire: `/readyz` 503 and the host told. The etcd leader left alone goes on renewing
/// until its election timeout tells it it has lost its peers; from its last renewal the
/// gateway fences within the renew deadline (2/3 TTL).
#[test]
fn a_served_leader_fences_itself_when_it_cannot_renew() {
    let mut etcd = EtcdCluster::start(3);
    let a = TestEnv::new();
    let lock = GatewayLock::acquire(&a.options().port(0).cluster(cluster(&etcd, "fence"))).unwrap();
    let leadership = lock.leadership().unwrap();
    let told = Arc::new(Mutex::new(Vec::new()));
    let on_state = {
        let told = Arc::clone(&told);
        StateHandler::new(move |state| told.lock().unwrap().push((Instant::now(), state.clone())))
    };
    let gateway = Gateway::serve(
        lock,
        ServeOptions {
            on_state: Some(on_state),
            ..ServeOptions::default()
        },
    )
    .unwrap();
    let port = gateway.port();
    assert_eq!(http(port, "GET", "/readyz").unwrap().0, 200);

    // Two of three members gone: no quorum, no renewal.
    etcd.kill(1);
    etcd.kill(2);
    let quorum_lost = Instant::now();
    let fenced = wait_until(TTL * 2, || !leadership.holds());
    let after = quorum_lost.elapsed();
    assert!(fenced, "the leader never fenced itself");
    let bound = ETCD_ELECTION_TIMEOUT + TTL * 2 / 3 + Duration::from_secs(1);
    assert!(
        after < bound,
        "fenced {after:?} after quorum was lost: later than the etcd election timeout + the renew deadline + 1 s of slack ({bound:?})"
    );
    assert_eq!(http(port, "GET", "/readyz").unwrap().0, 503);
    assert!(wait_until(Duration::from_secs(5), || {
        told.lock()
            .unwrap()
            .iter()
            .any(|(_, s)| matches!(s, GatewayState::LeadershipLost { .. }))
    }));
    let lost = told
        .lock()
        .unwrap()
        .iter()
        .find_map(|(_, s)| match s {
            GatewayState::LeadershipLost {
                cluster,
                fencing_token,
                reason,
            } => Some((cluster.clone(), *fencing_token, reason.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(lost.0, "fence");
    assert_eq!(lost.1, leadership.fencing_token());
    assert!(lost.2.contains("renew"), "{}", lost.2);
    // Shutting down with the store still gone is clean: port free, lock files gone.
    let shutdown = Instant::now();
    gateway.shutdown(Duration::from_secs(1));
    assert!(shutdown.elapsed() < Duration::from_secs(4));
    assert!(
        a.lock_dir_entries().is_empty(),
        "{:?}",
        a.lock_dir_entries()
    );
}

/// A host on its own async runtime acquires, serves and releases from inside it: the etcd
/// client never starts a runtime within the caller's.
#[test]
fn acquire_and_release_from_inside_an_async_runtime() {
    let etcd = EtcdCluster::start(1);
    let a = TestEnv::new();
    let options = a.options().port(0).cluster(cluster(&etcd, "async"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let lock = GatewayLock::acquire(&options).expect("acquire inside a runtime");
        assert!(lock.leadership().unwrap().holds());
        drop(lock);
    });
    assert!(a.lock_dir_entries().is_empty());
}
