//! Cluster mode (issue 14): at most one gateway per config *in a cluster of machines*, by a
//! lease in a consensus store, with a fencing token and self-fencing before the lease can
//! expire.
//!
//! The local lock is taken first, exactly as without a cluster (so a Node gateway on the same
//! host is still excluded); then the gateway campaigns for a key derived from the config,
//! bound to a lease of `ttl`. The winner binds and serves; the others are standbys. The leader
//! renews its lease well inside the TTL; when it has not renewed by the *renew deadline*
//! (two thirds of the TTL after it sent its last successful renewal, on a clock that counts
//! while the process is stopped), it stops serving before anyone else can be elected.
//!
//! The store is behind [`ClusterBackend`]: etcd v3 (`cluster-etcd` feature) today. How a
//! Kubernetes `Lease` maps onto it is written in README "Running several machines".

mod clock;
#[cfg(feature = "cluster-etcd")]
mod etcd;
mod fence;
mod session;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub(crate) use fence::Fence;
pub use fence::Leadership;
pub(crate) use session::{Held, campaign, leader_status};

/// The lease TTL when none is given (`--cluster-ttl`): Kubernetes' default is 15 s, Patroni's
/// 30 s; 5 s gives a crash failover of about 5 s on a LAN.
pub const DEFAULT_CLUSTER_TTL: Duration = Duration::from_secs(5);
/// The shortest TTL accepted. Shorter leases would make the leader fence itself on ordinary
/// etcd leader elections (1 to 2 s with etcd's defaults, during which renewals fail: the renew
/// deadline is 2 s at this TTL), and etcd's own minimum lease is 1.5 × its election timeout.
pub const MIN_CLUSTER_TTL: Duration = Duration::from_secs(3);
/// Every key of ours in the store starts with this.
pub const KEY_PREFIX: &str = "/openclaw/gateway/";

/// Which consensus store holds the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterStore {
    /// etcd v3 at these client URLs (`http://host:2379`), tried in turn.
    Etcd {
        /// The members' client URLs.
        endpoints: Vec<String>,
    },
}

impl fmt::Display for ClusterStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Etcd { endpoints } => write!(f, "etcd={}", endpoints.join(",")),
        }
    }
}

/// Cluster mode's settings, given to [`GatewayOptions::cluster`](crate::GatewayOptions::cluster).
#[derive(Clone)]
pub struct ClusterOptions {
    pub(crate) store: ClusterStore,
    pub(crate) name: Option<String>,
    pub(crate) ttl: Duration,
    pub(crate) wait: Option<Duration>,
    pub(crate) cancel: Option<Arc<AtomicBool>>,
    pub(crate) backend: Option<Arc<dyn ClusterBackend>>,
}

impl fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("store", &self.store)
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl ClusterOptions {
    /// etcd v3 at `endpoints` (client URLs such as `http://10.0.0.2:2379`). Checked when the
    /// lock is acquired.
    pub fn etcd<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            store: ClusterStore::Etcd {
                endpoints: endpoints.into_iter().map(Into::into).collect(),
            },
            name: None,
            ttl: DEFAULT_CLUSTER_TTL,
            wait: None,
            cancel: None,
            backend: None,
        }
    }

    /// Parses `--cluster`'s value: `etcd=http://a:2379,http://b:2379`.
    pub fn parse(spec: &str) -> Result<Self, crate::GatewayLockError> {
        let Some(endpoints) = spec.strip_prefix("etcd=") else {
            return Err(crate::GatewayLockError::InvalidOption(format!(
                "--cluster {spec:?} names no store: write etcd=http://HOST:2379[,http://HOST:2379...]"
            )));
        };
        Ok(Self::etcd(endpoints.split(',').map(str::trim)))
    }

    /// The cluster's name: gateways with the same name (and store) elect one leader. Default:
    /// derived from the config path, as the config lock's name is (so give one when the
    /// machines keep their configs at different paths).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The lease TTL (default [`DEFAULT_CLUSTER_TTL`], at least [`MIN_CLUSTER_TTL`], whole
    /// seconds: etcd counts leases in seconds). A crashed leader is replaced about this long
    /// after it died.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long `acquire` stands by while another gateway leads: `None` (the default) fails at
    /// once with [`GatewayLockError::ClusterLeaderElsewhere`](crate::GatewayLockError), naming
    /// the leader; `Some(d)` waits up to `d` to become leader (`Duration::MAX`: for ever).
    pub fn wait(mut self, wait: Option<Duration>) -> Self {
        self.wait = wait;
        self
    }

    /// A flag that, once set, ends a standby's wait with
    /// [`GatewayLockError::Cancelled`](crate::GatewayLockError) within about 250 ms, or once a
    /// call to the store in flight ends (at most the TTL, and 5 s): a service stopped while it
    /// stands by.
    pub fn cancel_on(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// Uses `backend` instead of the one [`ClusterStore`] names (a store of the host's own).
    pub fn backend(mut self, backend: Arc<dyn ClusterBackend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// The renew deadline: a leader that has not renewed for this long since it sent its last
    /// successful renewal stops serving (Kubernetes: 10 s of a 15 s lease). Two thirds of the
    /// TTL leave a third for clock-rate drift between us and the store, and for the stop.
    pub fn renew_deadline(&self) -> Duration {
        self.ttl * 2 / 3
    }

    /// How often the leader renews: five times per TTL, so two lost renewals in a row still
    /// leave the deadline ahead.
    pub fn renew_interval(&self) -> Duration {
        self.ttl / 5
    }

    pub(crate) fn validate(&self) -> Result<(), crate::GatewayLockError> {
        let invalid = |why: String| Err(crate::GatewayLockError::InvalidOption(why));
        if self.ttl < MIN_CLUSTER_TTL || self.ttl.subsec_nanos() != 0 {
            return invalid(format!(
                "cluster TTL {} is not a whole number of seconds of at least {} s: give e.g. --cluster-ttl 5s",
                humantime::format_duration(self.ttl),
                MIN_CLUSTER_TTL.as_secs()
            ));
        }
        if let Some(name) = &self.name
            && (name.is_empty()
                || name.len() > 128
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        {
            return invalid(format!(
                "cluster name {name:?} is not 1-128 letters, digits, '-', '_' or '.': choose such a name"
            ));
        }
        if self.backend.is_some() {
            return Ok(());
        }
        match &self.store {
            ClusterStore::Etcd { endpoints } => {
                if endpoints.is_empty() || endpoints.iter().any(String::is_empty) {
                    return invalid(
                        "--cluster etcd= names an empty endpoint: write etcd=http://HOST:2379[,http://HOST:2379...]"
                            .to_owned(),
                    );
                }
                if let Some(bad) = endpoints.iter().find(|e| !e.starts_with("http://")) {
                    return invalid(format!(
                        "etcd endpoint {bad:?} is not an http:// URL: give each member's client URL, e.g. http://10.0.0.2:2379 (TLS is not supported yet)"
                    ));
                }
                if cfg!(not(feature = "cluster-etcd")) {
                    return invalid(
                        "cluster mode on etcd needs the library built with the cluster-etcd feature"
                            .to_owned(),
                    );
                }
                Ok(())
            }
        }
    }
}

/// The gateway that leads a cluster, as its claim in the store says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterLeader {
    /// Its host name (else the machine id's hash).
    pub host: String,
    /// Its pid, on its own machine.
    pub pid: u32,
    /// The port it serves on (0: unknown).
    pub port: u16,
    /// When it became leader, in milliseconds since the Unix epoch (its wall clock).
    pub since_ms: u64,
    /// Its lock's owner id.
    pub owner_id: String,
    /// Its fencing token: the store revision at which it took the key.
    #[serde(default)]
    pub fencing_token: u64,
}

/// What `status` says of a cluster: its leader, read without taking part.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The cluster's name.
    pub name: String,
    /// The key in the store.
    pub key: String,
    /// The store, as `etcd=URL,...`.
    pub store: String,
    /// The leader, if there is one.
    pub leader: Option<ClusterLeader>,
    /// Why the store could not be read, if it could not (then `leader` says nothing).
    pub error: Option<String>,
}

/// A lease held in the store: what a backend needs to renew or give it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The key held.
    pub key: String,
    /// The store's lease id.
    pub lease: i64,
    /// The fencing token: a number that grows with every new leader of any key in the store.
    pub token: u64,
}

/// One campaign attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The key was free and is ours now, bound to this lease.
    Won(Term),
    /// Another gateway holds the key.
    Held {
        /// Its claim (JSON of [`ClusterLeader`] without the token).
        claim: Vec<u8>,
        /// Its fencing token.
        token: u64,
        /// Its lease (a claim of our own left by an attempt cut off mid-way is given up by it).
        lease: i64,
        /// The store revision the answer was read at: a change after it is worth a new try.
        revision: i64,
    },
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewed {
    /// The lease lives on; the store gives it this long from now.
    Alive(Duration),
    /// The store no longer knows the lease (it expired or was revoked), or the key is no
    /// longer the one this term took (deleted, or taken again by another).
    Expired,
}

/// Why the store did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterError {
    /// No answer in time, or no connection: the store may be down, partitioned or without
    /// quorum. Worth retrying.
    Unavailable(String),
    /// The store answered with a refusal that retrying will not change (auth, permissions, a
    /// malformed request). Final: never retried.
    Refused(String),
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(why) | Self::Refused(why) => f.write_str(why),
        }
    }
}

/// A consensus store that can hold one leader per key, with leases. Each call blocks for at
/// most its `timeout`. Implemented for etcd v3; a Kubernetes `Lease` maps onto it as README
/// "Running several machines" describes.
pub trait ClusterBackend: Send + Sync {
    /// One attempt: a lease of `ttl`, and `key` put with `claim` bound to it if the key does
    /// not exist (else the holder's claim).
    fn try_campaign(
        &self,
        key: &str,
        claim: &[u8],
        ttl: Duration,
        timeout: Duration,
    ) -> Result<Attempt, ClusterError>;
    /// Waits up to `timeout` for `key` to be deleted after `revision`: `true` once it was (or
    /// may have been: the store can no longer tell), `false` at the timeout.
    fn wait_for_change(
        &self,
        key: &str,
        revision: i64,
        timeout: Duration,
    ) -> Result<bool, ClusterError>;
    /// Renews the lease once, and checks that the key is still the one the term took.
    fn renew(&self, term: &Term, timeout: Duration) -> Result<Renewed, ClusterError>;
    /// Gives the lease up (its key goes with it).
    fn resign(&self, term: &Term, timeout: Duration) -> Result<(), ClusterError>;
    /// Reads the key without taking part: the holder's claim and fencing token.
    fn leader(&self, key: &str, timeout: Duration) -> Result<Option<(Vec<u8>, u64)>, ClusterError>;
}

/// The backend the options name.
pub(crate) fn backend_for(
    options: &ClusterOptions,
) -> Result<Arc<dyn ClusterBackend>, crate::GatewayLockError> {
    if let Some(backend) = &options.backend {
        return Ok(Arc::clone(backend));
    }
    match &options.store {
        #[cfg(feature = "cluster-etcd")]
        ClusterStore::Etcd { endpoints } => Ok(Arc::new(etcd::EtcdBackend::new(
            endpoints.clone(),
            options.ttl,
        )?)),
        #[cfg(not(feature = "cluster-etcd"))]
        ClusterStore::Etcd { .. } => Err(crate::GatewayLockError::InvalidOption(
            "cluster mode on etcd needs the library built with the cluster-etcd feature".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(options: &ClusterOptions) -> String {
        options.validate().unwrap_err().to_string()
    }

    #[test]
    fn parse_takes_etcd_endpoints_and_names_a_bad_value() {
        let options = ClusterOptions::parse("etcd=http://a:2379, http://b:2379").unwrap();
        assert_eq!(
            options.store,
            ClusterStore::Etcd {
                endpoints: vec!["http://a:2379".into(), "http://b:2379".into()]
            }
        );
        assert_eq!(
            options.store.to_string(),
            "etcd=http://a:2379,http://b:2379"
        );
        let err = ClusterOptions::parse("zk=a:2181").unwrap_err().to_string();
        assert!(
            err.contains("\"zk=a:2181\"") && err.contains("etcd=http://"),
            "{err}"
        );
    }

    #[test]
    fn validate_names_what_is_wrong_and_what_to_do() {
        let ok = ClusterOptions::etcd(["http://127.0.0.1:2379"]);
        let ttl = refusal(&ok.clone().ttl(Duration::from_millis(1500)));
        assert!(
            ttl.contains("1s 500ms") && ttl.contains("--cluster-ttl"),
            "{ttl}"
        );
        let ttl = refusal(&ok.clone().ttl(Duration::from_millis(5500)));
        assert!(ttl.contains("whole number of seconds"), "{ttl}");
        let name = refusal(&ok.clone().name("a/b"));
        assert!(
            name.contains("\"a/b\"") && name.contains("choose"),
            "{name}"
        );
        let empty = refusal(&ClusterOptions::etcd(["http://a:2379", ""]));
        assert!(empty.contains("empty endpoint"), "{empty}");
        let https = refusal(&ClusterOptions::etcd(["https://a:2379"]));
        assert!(
            https.contains("\"https://a:2379\"") && https.contains("TLS"),
            "{https}"
        );
        if cfg!(feature = "cluster-etcd") {
            ok.validate().unwrap();
        } else {
            assert!(refusal(&ok).contains("cluster-etcd feature"));
        }
    }

    #[test]
    fn the_renew_deadline_leaves_a_third_of_the_ttl() {
        let options = ClusterOptions::etcd(["http://a:2379"]).ttl(Duration::from_secs(15));
        assert_eq!(options.renew_deadline(), Duration::from_secs(10));
        assert_eq!(options.renew_interval(), Duration::from_secs(3));
    }
}
