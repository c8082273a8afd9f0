//! Cluster mode through the Rust API (issue 14), against a real etcd: the leader's fencing
//! token and leadership, a standby refused at once naming the leader or waiting to take over,
//! cancelling a wait, the served gateway fencing itself when its lease cannot be renewed, and
//! acquiring and releasing from inside a host's own async runtime. The fault scenarios between
//! machines are tests/cluster.rs's.
#![cfg(all(target_os = "linux", feature = "cluster-etcd"))]

mod common;
mod wsclient;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::etcd::EtcdCluster;
use common::*;
use gateway::cluster::{Attempt, ClusterError, Renewed, Term};
use gateway::{
    Body, ClusterBackend, ClusterOptions, Gateway, GatewayLock, GatewayLockError, GatewayState,
    HttpOptions, HttpRoute, HttpRoutes, Response, ServeOptions, StateHandler,
};
use serde_json::json;
use wsclient::{Client, connect_params};

/// The lease of the tests that wait for a fence: the shortest there is.
const TTL: Duration = Duration::from_secs(3);
/// The lease of the tests that never wait one out (a release revokes it at once): long, so a
/// loaded machine cannot miss a renew deadline, which would fence the leader mid-test.
const LONG_TTL: Duration = Duration::from_secs(30);
/// etcd's election timeout as tests/common/etcd.rs starts it.
const ETCD_ELECTION_TIMEOUT: Duration = Duration::from_secs(1);

fn cluster(etcd: &EtcdCluster, name: &str) -> ClusterOptions {
    ClusterOptions::etcd(etcd.endpoints())
        .name(name)
        .ttl(LONG_TTL)
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
    let lock = GatewayLock::acquire(
        &a.options()
            .port(0)
            .cluster(cluster(&etcd, "fence").ttl(TTL)),
    )
    .unwrap();
    let leadership = lock.leadership().unwrap();
    let (on_state, told) = recorder();
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
    // The etcd leader left alone answers renewals until it steps down, 1 to 2 election
    // timeouts after it lost its peers; the fence comes a renew deadline after the last one.
    let bound = ETCD_ELECTION_TIMEOUT * 2 + TTL * 2 / 3 + Duration::from_millis(500);
    assert!(
        after < bound,
        "fenced {after:?} after quorum was lost: later than 2 etcd election timeouts + the renew deadline + 0.5 s ({bound:?})"
    );
    assert_eq!(http(port, "GET", "/readyz").unwrap().0, 503);
    assert!(wait_until(Duration::from_secs(5), || {
        told.lock()
            .unwrap()
            .iter()
            .any(|s| matches!(s, GatewayState::LeadershipLost { .. }))
    }));
    let lost = told
        .lock()
        .unwrap()
        .iter()
        .find_map(|s| match s {
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

/// Records the states a served gateway tells, in order.
fn recorder() -> (StateHandler, Arc<Mutex<Vec<GatewayState>>>) {
    let told = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let told = Arc::clone(&told);
        StateHandler::new(move |state| told.lock().unwrap().push(state.clone()))
    };
    (handler, told)
}

/// A graceful stop resigns: the host hears `Ready` then `Stopped`, never a leadership lost.
#[test]
fn a_graceful_stop_tells_stopped_and_no_loss() {
    let etcd = EtcdCluster::start(1);
    let a = TestEnv::new();
    let lock = GatewayLock::acquire(&a.options().port(0).cluster(cluster(&etcd, "stop"))).unwrap();
    let (on_state, told) = recorder();
    let gateway = Gateway::serve(
        lock,
        ServeOptions {
            on_state: Some(on_state),
            ..ServeOptions::default()
        },
    )
    .unwrap();
    gateway.shutdown(Duration::from_secs(2));
    let told = told.lock().unwrap().clone();
    assert_eq!(
        told,
        vec![GatewayState::Ready, GatewayState::Stopped { drained: true }]
    );
    assert_eq!(etcd.etcdctl(&["get", "/openclaw/gateway/stop"]), "");
}

/// The host's reaction to a lost leadership is to shut the gateway down: doing so from the
/// state callback itself (on the cluster's renewal thread) works, and leaves no lock file.
#[test]
fn shutting_down_from_the_leadership_lost_callback_releases_everything() {
    let mut etcd = EtcdCluster::start(3);
    let a = TestEnv::new();
    let lock = GatewayLock::acquire(
        &a.options()
            .port(0)
            .cluster(cluster(&etcd, "inside").ttl(TTL)),
    )
    .unwrap();
    let slot: Arc<Mutex<Option<Gateway>>> = Arc::new(Mutex::new(None));
    let (done_tx, done) = std::sync::mpsc::channel();
    let on_state = {
        let slot = Arc::clone(&slot);
        StateHandler::new(move |state| {
            if let GatewayState::LeadershipLost { .. } = state {
                let gateway = slot.lock().unwrap().take();
                if let Some(gateway) = gateway {
                    let report = gateway.shutdown(Duration::from_secs(1));
                    let _ = done_tx.send(report.drained);
                }
            }
        })
    };
    let gateway = Gateway::serve(
        lock,
        ServeOptions {
            on_state: Some(on_state),
            ..ServeOptions::default()
        },
    )
    .unwrap();
    *slot.lock().unwrap() = Some(gateway);
    etcd.kill(1);
    etcd.kill(2);
    let drained = done
        .recv_timeout(Duration::from_secs(20))
        .expect("the callback shut the gateway down");
    assert!(drained);
    assert!(
        a.lock_dir_entries().is_empty(),
        "{:?}",
        a.lock_dir_entries()
    );
}

/// A store of the host's own whose renewal hangs past every deadline (it ignores its timeout):
/// the renewal thread never gets to fence, yet from the deadline on, on the clock alone, the
/// gateway answers nothing as leader.
struct Stalled;

impl ClusterBackend for Stalled {
    fn try_campaign(
        &self,
        key: &str,
        _claim: &[u8],
        _ttl: Duration,
        _timeout: Duration,
    ) -> Result<Attempt, ClusterError> {
        Ok(Attempt::Won(Term {
            key: key.to_owned(),
            lease: 1,
            token: 1,
        }))
    }

    fn wait_for_change(&self, _: &str, _: i64, _: Duration) -> Result<bool, ClusterError> {
        Ok(true)
    }

    fn renew(&self, _term: &Term, _timeout: Duration) -> Result<Renewed, ClusterError> {
        std::thread::sleep(Duration::from_secs(60));
        Ok(Renewed::Alive(TTL))
    }

    fn resign(&self, _term: &Term, _timeout: Duration) -> Result<(), ClusterError> {
        Ok(())
    }

    fn leader(&self, _: &str, _: Duration) -> Result<Option<(Vec<u8>, u64)>, ClusterError> {
        Ok(None)
    }
}

#[test]
fn past_the_deadline_nothing_is_answered_as_leader_even_before_the_fence_closes() {
    let a = TestEnv::new();
    let options = a.options().port(0).cluster(
        ClusterOptions::etcd(["http://127.0.0.1:9"])
            .name("stalled")
            .ttl(TTL)
            .backend(Arc::new(Stalled)),
    );
    let lock = GatewayLock::acquire(&options).unwrap();
    let leadership = lock.leadership().unwrap();
    let (on_state, told) = recorder();
    let route = HttpRoute::new(None, "/hook", |_| async {
        Response::new(Body::from("served"))
    });
    let gateway = Gateway::serve(
        lock,
        ServeOptions {
            on_state: Some(on_state),
            http: HttpOptions {
                routes: HttpRoutes::new().route(route),
                ..HttpOptions::default()
            },
            ..ServeOptions::default()
        },
    )
    .unwrap();
    let port = gateway.port();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A client connected while this gateway leads.
    let (mut client, _) = runtime.block_on(Client::connected(port, connect_params()));
    assert_eq!(http(port, "GET", "/readyz").unwrap().0, 200);
    assert_eq!(http(port, "GET", "/hook").unwrap().0, 200);

    assert!(
        wait_until(TTL * 2, || !leadership.holds()),
        "the renew deadline passed"
    );
    assert_eq!(http(port, "GET", "/readyz").unwrap().0, 503);
    assert_eq!(http(port, "GET", "/hook").unwrap().0, 503);
    let answer = runtime.block_on(client.call("h1", "health", json!({})));
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["error"]["code"], "UNAVAILABLE", "{answer}");
    let (code, _) = runtime.block_on(client.closed());
    assert_eq!(code, 1012);
    // A new client is not admitted either.
    let mut late = runtime.block_on(Client::open(port));
    runtime.block_on(late.challenge());
    let (code, _) = runtime.block_on(async {
        late.send(
            json!({"type": "req", "id": "c1", "method": "connect", "params": connect_params()}),
        )
        .await;
        late.closed().await
    });
    assert_eq!(code, 1012);
    // All of it on the clock alone: the renewal thread is still stuck in its renewal, so the
    // fence has not closed and nothing was told.
    assert!(
        !told
            .lock()
            .unwrap()
            .iter()
            .any(|s| matches!(s, GatewayState::LeadershipLost { .. })),
        "{:?}",
        told.lock().unwrap()
    );
    let stopping = Instant::now();
    gateway.shutdown(Duration::from_secs(1));
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "a renewal stuck in the store does not hold up the shutdown"
    );
    assert!(a.lock_dir_entries().is_empty());
}

/// The key is the leader's only while it is its own: deleted by hand, the leader stops at its
/// next renewal (every TTL / 5), though its lease lives on, so a standby taking the free key
/// never serves beside it.
#[test]
fn a_leader_whose_key_is_deleted_fences_itself_at_its_next_renewal() {
    let etcd = EtcdCluster::start(1);
    let a = TestEnv::new();
    let lock = GatewayLock::acquire(
        &a.options()
            .port(0)
            .cluster(cluster(&etcd, "deleted").ttl(TTL)),
    )
    .unwrap();
    let leadership = lock.leadership().unwrap();
    etcd.etcdctl(&["del", "/openclaw/gateway/deleted"]);
    let deleted = Instant::now();
    assert!(
        wait_until(TTL * 2, || !leadership.holds()),
        "the leader went on after its key was deleted"
    );
    let after = deleted.elapsed();
    // At the latest the renewal after next (one may have been in flight at the delete).
    let bound = TTL / 5 * 2 + Duration::from_millis(500);
    assert!(
        after < bound,
        "fenced {after:?} after the delete (bound {bound:?})"
    );
    assert!(
        lock.is_lost(),
        "a lock-only host sees the loss through is_lost"
    );
    drop(lock);
    assert!(a.lock_dir_entries().is_empty());
}
