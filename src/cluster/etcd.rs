//! The etcd v3 backend (feature `cluster-etcd`), through the `etcd-client` crate (gRPC).
//!
//! The campaign is one transaction: if the key has never been created (`create_revision == 0`),
//! put the claim bound to a fresh lease, else read the holder. The fencing token is the
//! revision of that put: etcd's revision grows with every write, so each new leader's token is
//! larger than every earlier one's. (etcd's own election API does the same with a queue of
//! keys; one key is enough for one leader and keeps "who leads" a single read.) Verified
//! against Debian 12's `etcd-server` 3.4.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};

use super::{Attempt, ClusterBackend, ClusterError, Renewed, Term};
use crate::error::GatewayLockError;

/// etcd v3 at a set of client URLs, with one connection (balanced over the members) and one
/// runtime thread of its own. Calls block the calling thread on a channel, never inside a
/// runtime: a host may acquire from a thread of its own async runtime.
pub(crate) struct EtcdBackend {
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
}

struct Shared {
    endpoints: Vec<String>,
    connect: ConnectOptions,
    /// One client per member, connected when first used. Calls go to the member that last
    /// answered and move on to the next at once when it does not: a balanced channel over all
    /// members kept sending a share of the calls to a member that was gone, and a leader lost
    /// its lease to connection errors while two members of three were fine.
    clients: Vec<Mutex<Option<Client>>>,
    /// The member calls go to first.
    preferred: AtomicUsize,
    /// The open keep-alive stream of the lease being renewed, reused from one renewal to the
    /// next.
    keeper: tokio::sync::Mutex<Option<(i64, LeaseKeeper, LeaseKeepAliveStream)>>,
    /// A standby's open watch of the leader's key (the key, the revision it watches after),
    /// kept from one slice of waiting to the next: opening a watch per slice cost a standby
    /// 13 times the leader's CPU and traffic.
    watch: tokio::sync::Mutex<Option<(String, i64, WatchStream)>>,
}

impl Drop for EtcdBackend {
    fn drop(&mut self) {
        // Never blocks, and (unlike dropping a runtime) may happen inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The longest a standby waits for its watch of the leader's key to open.
const WATCH_OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// How a call cut off by its timeout begins its message.
const NO_ANSWER: &str = "no answer from etcd";

fn unavailable(err: impl std::fmt::Display) -> ClusterError {
    ClusterError::Unavailable(err.to_string())
}

/// Sorts the client's errors: a refusal by a reachable store is final, everything else is
/// worth another try.
fn classify(err: etcd_client::Error) -> ClusterError {
    match &err {
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            tonic::Code::InvalidArgument
            | tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
            | tonic::Code::FailedPrecondition
            | tonic::Code::Unimplemented => {
                ClusterError::Refused(format!("etcd refused the request: {}", status.message()))
            }
            _ => unavailable(format!("etcd: {}", status.message())),
        },
        _ => unavailable(err),
    }
}

impl EtcdBackend {
    pub(crate) fn new(endpoints: Vec<String>, ttl: Duration) -> Result<Self, GatewayLockError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("gateway-etcd")
            .enable_all()
            .build()
            .map_err(GatewayLockError::Runtime)?;
        // HTTP/2 pings find a dead connection within a renewal or two; without a leader a
        // member refuses at once instead of letting a request hang (etcd's require-leader).
        let probe = (ttl / 5).max(Duration::from_millis(500));
        let connect = ConnectOptions::new()
            .with_connect_timeout(probe)
            .with_keep_alive(probe, probe)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        Ok(Self {
            runtime: Some(runtime),
            shared: Arc::new(Shared {
                clients: endpoints.iter().map(|_| Mutex::new(None)).collect(),
                preferred: AtomicUsize::new(0),
                endpoints,
                connect,
                keeper: tokio::sync::Mutex::new(None),
                watch: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Runs `op` on the backend's runtime with a client of one member, for at most `timeout`
    /// in all, and waits for it here. A member that fails or does not answer in its share of
    /// the time is left for the next one (a refusal is final: every member would say the same).
    fn call<T, F, Fut>(&self, timeout: Duration, op: F) -> Result<T, ClusterError>
    where
        T: Send + 'static,
        F: Fn(Arc<Shared>, Client) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, ClusterError>> + Send,
    {
        let Some(runtime) = &self.runtime else {
            return Err(unavailable("the etcd client has shut down"));
        };
        let shared = Arc::clone(&self.shared);
        let (done, outcome) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let members = shared.endpoints.len();
            let first = shared.preferred.load(Ordering::Relaxed);
            let mut failure = unavailable(format!("{NO_ANSWER} within {} ms", timeout.as_millis()));
            for tried in 0..members {
                let member = (first + tried) % members;
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                // Its share of what is left, so that the others can still be tried.
                let share = left / (members - tried) as u32;
                let attempt = tokio::time::timeout(share, async {
                    let client = shared.client(member).await?;
                    op(Arc::clone(&shared), client).await
                })
                .await;
                match attempt {
                    Ok(Ok(answer)) => {
                        shared.preferred.store(member, Ordering::Relaxed);
                        let _ = done.send(Ok(answer));
                        return;
                    }
                    Ok(Err(refused @ ClusterError::Refused(_))) => {
                        let _ = done.send(Err(refused));
                        return;
                    }
                    Ok(Err(err)) => failure = err,
                    Err(_) => {
                        failure =
                            unavailable(format!("{NO_ANSWER} within {} ms", timeout.as_millis()))
                    }
                }
                // The streams may be on that member's connection: open new ones next time.
                shared.forget_streams();
                shared
                    .preferred
                    .store((member + 1) % members, Ordering::Relaxed);
            }
            let _ = done.send(Err(failure));
        });
        outcome
            .recv()
            .unwrap_or_else(|_| Err(unavailable("the etcd client stopped mid-call")))
    }
}

impl Shared {
    async fn client(&self, member: usize) -> Result<Client, ClusterError> {
        let slot = &self.clients[member];
        if let Some(client) = slot.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(client);
        }
        let client = Client::connect(
            [self.endpoints[member].as_str()],
            Some(self.connect.clone()),
        )
        .await
        .map_err(classify)?;
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(client.clone());
        Ok(client)
    }

    /// Drops the open keep-alive and watch streams (when no call holds them).
    fn forget_streams(&self) {
        if let Ok(mut keeper) = self.keeper.try_lock() {
            *keeper = None;
        }
        if let Ok(mut watch) = self.watch.try_lock() {
            *watch = None;
        }
    }
}

impl ClusterBackend for EtcdBackend {
    fn try_campaign(
        &self,
        key: &str,
        claim: &[u8],
        ttl: Duration,
        timeout: Duration,
    ) -> Result<Attempt, ClusterError> {
        let (key, claim) = (key.to_owned(), claim.to_vec());
        self.call(timeout, move |_, mut client| {
            let (key, claim) = (key.clone(), claim.clone());
            async move {
                let lease = client
                    .lease_grant(ttl.as_secs() as i64, None)
                    .await
                    .map_err(classify)?
                    .id();
                let txn = Txn::new()
                    .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(
                        key.as_str(),
                        claim,
                        Some(PutOptions::new().with_lease(lease)),
                    )])
                    .or_else([TxnOp::get(key.as_str(), None)]);
                let answer = match client.txn(txn).await {
                    Ok(answer) => answer,
                    Err(err) => {
                        // The put may or may not have happened; a lease of ours left behind would
                        // hold the key for a TTL with nobody serving, so give it up.
                        let _ = client.lease_revoke(lease).await;
                        return Err(classify(err));
                    }
                };
                let revision = answer.header().map_or(0, |h| h.revision());
                if answer.succeeded() {
                    return Ok(Attempt::Won(Term {
                        key,
                        lease,
                        token: revision as u64,
                    }));
                }
                let _ = client.lease_revoke(lease).await;
                let holder = answer.op_responses().into_iter().find_map(|op| match op {
                    TxnOpResponse::Get(get) => get.kvs().first().cloned(),
                    _ => None,
                });
                Ok(match holder {
                    Some(kv) => Attempt::Held {
                        claim: kv.value().to_vec(),
                        token: kv.create_revision() as u64,
                        lease: kv.lease(),
                        revision,
                    },
                    // Deleted between the compare and the get: both ran at one revision, so this
                    // cannot be; try again.
                    None => Attempt::Held {
                        claim: Vec::new(),
                        token: 0,
                        lease: 0,
                        revision,
                    },
                })
            }
        })
    }

    fn wait_for_change(
        &self,
        key: &str,
        revision: i64,
        timeout: Duration,
    ) -> Result<bool, ClusterError> {
        let key = key.to_owned();
        // Opening the watch has a budget of its own, and only the wait after it is the slice:
        // a slice shorter than one round trip to the store would otherwise cut every opening
        // off, and the standby would never see the leader go.
        let waited = self.call(WATCH_OPEN_TIMEOUT + timeout, move |shared, mut client| {
            let key = key.clone();
            async move {
                let mut open = shared.watch.lock().await;
                if open
                    .as_ref()
                    .is_none_or(|(watched, after, _)| *watched != key || *after != revision)
                {
                    // From the revision the holder was read at: a delete in between is
                    // replayed.
                    let stream = tokio::time::timeout(
                        WATCH_OPEN_TIMEOUT,
                        client.watch(
                            key.as_str(),
                            Some(WatchOptions::new().with_start_revision(revision + 1)),
                        ),
                    )
                    .await
                    .map_err(|_| unavailable("etcd did not open a watch of the leader's key"))?
                    .map_err(classify)?;
                    *open = Some((key, revision, stream));
                }
                let (_, _, stream) = open.as_mut().expect("set above");
                // Cut off at the slice's end, the wait is dropped mid-way: `message` keeps no
                // state of its own (tonic polls the stream), so the watch stays whole for the
                // next slice.
                let changed = tokio::time::timeout(timeout, async {
                    loop {
                        match stream.message().await {
                            // Cancelled (e.g. the revision was compacted away): the store
                            // cannot say what happened since, so look again.
                            Ok(Some(answer)) => {
                                if answer.canceled()
                                    || answer
                                        .events()
                                        .iter()
                                        .any(|event| event.event_type() == EventType::Delete)
                                {
                                    return Ok(true);
                                }
                            }
                            Ok(None) => return Ok(true),
                            Err(err) => return Err(classify(err)),
                        }
                    }
                })
                .await;
                match changed {
                    Err(_) => Ok(false), // the slice ended; the watch stays open
                    Ok(changed) => {
                        *open = None;
                        changed
                    }
                }
            }
        });
        match waited {
            // The opening itself was cut off by the call's budget: nothing seen.
            Err(ClusterError::Unavailable(why)) if why.starts_with(NO_ANSWER) => Ok(false),
            other => other,
        }
    }

    fn renew(&self, term: &Term, timeout: Duration) -> Result<Renewed, ClusterError> {
        let (lease, key, token) = (term.lease, term.key.clone(), term.token);
        let renewed = self.call(timeout, move |shared, mut client| {
            let key = key.clone();
            async move {
                let mut keeper = shared.keeper.lock().await;
                let answered = match keeper.as_mut() {
                    Some((open, sender, stream)) if *open == lease => {
                        async {
                            sender.keep_alive().await.map_err(classify)?;
                            stream
                                .message()
                                .await
                                .map_err(classify)?
                                .map(|answer| answer.ttl())
                                .ok_or_else(|| unavailable("etcd closed the keep-alive stream"))
                        }
                        .await
                    }
                    // Opening the stream renews once and reads the answer (etcd-client's
                    // `lease_keep_alive`); a lease etcd no longer knows is its own error there.
                    _ => match client.lease_keep_alive(lease).await {
                        Ok((sender, stream)) => {
                            let ttl = match client.lease_time_to_live(lease, None).await {
                                Ok(live) => Ok(live.ttl()),
                                Err(err) => Err(classify(err)),
                            };
                            *keeper = Some((lease, sender, stream));
                            ttl
                        }
                        Err(etcd_client::Error::LeaseKeepAliveError(why))
                            if why.contains("not found") =>
                        {
                            Ok(0)
                        }
                        Err(err) => Err(classify(err)),
                    },
                };
                let ttl = match answered {
                    Ok(ttl) => ttl,
                    Err(err) => {
                        // The stream is in an unknown state: open a new one next time.
                        *keeper = None;
                        return Err(err);
                    }
                };
                if ttl <= 0 {
                    return Ok(Renewed::Expired);
                }
                // The key must still be the one this term took: deleted by hand, or taken again
                // after a revocation, it is no longer ours, whatever the lease says.
                let held = client
                    .get(key, Some(GetOptions::new().with_keys_only()))
                    .await
                    .map_err(classify)?;
                match held.kvs().first() {
                    Some(kv) if kv.create_revision() as u64 == token && kv.lease() == lease => {
                        Ok(Renewed::Alive(Duration::from_secs(ttl as u64)))
                    }
                    _ => Ok(Renewed::Expired),
                }
            }
        });
        if renewed.is_err() {
            // A renewal cut off by the timeout leaves the stream with an answer in flight.
            if let Ok(mut keeper) = self.shared.keeper.try_lock() {
                *keeper = None;
            }
        }
        renewed
    }

    fn resign(&self, term: &Term, timeout: Duration) -> Result<(), ClusterError> {
        let lease = term.lease;
        self.call(timeout, move |_, mut client| async move {
            match client.lease_revoke(lease).await {
                Ok(_) => Ok(()),
                // Already gone (expired, or revoked by the renewal thread): resigned.
                Err(etcd_client::Error::GRpcStatus(status))
                    if status.code() == tonic::Code::NotFound =>
                {
                    Ok(())
                }
                Err(err) => Err(classify(err)),
            }
        })
    }

    fn leader(&self, key: &str, timeout: Duration) -> Result<Option<(Vec<u8>, u64)>, ClusterError> {
        let key = key.to_owned();
        self.call(timeout, move |_, mut client| {
            let key = key.clone();
            async move {
                let answer = client.get(key, None).await.map_err(classify)?;
                Ok(answer
                    .kvs()
                    .first()
                    .map(|kv| (kv.value().to_vec(), kv.create_revision() as u64)))
            }
        })
    }
}
