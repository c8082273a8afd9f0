//! A side-effect-free look at the gateway that holds (or held) a config's lock.

use std::path::PathBuf;
use std::time::Duration;

use super::dir::LockDir;
use super::ground::{self, Ground};
use super::host::HostIdentity;
use super::inspect::{BeaconProbe, Observed, inspect};
use super::verdict::{Verdict, judge};
use crate::error::GatewayLockError;
use crate::options::GatewayOptions;
use crate::{paths, probe};

const STATUS_PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// What `status` found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// A live gateway holds the lock.
    pub running: bool,
    /// The pid the lock file records (also when its owner is dead).
    pub pid: Option<u32>,
    /// The port the lock file records, else the resolved port.
    pub port: u16,
    /// The holder's start time as the lock file records it (SPEC §4's units).
    pub start_time: Option<u64>,
    /// The config file the lock file names.
    pub config_path: Option<String>,
    /// `http://127.0.0.1:<port>/healthz` answered live.
    pub healthy: bool,
    /// The lock file that was read, if any.
    pub lock_path: Option<PathBuf>,
    /// A lock file is left by an owner that is provably dead (the next start reclaims it).
    pub stale: bool,
    /// The file system holding the lock dir (or where it would be created), and whether its
    /// locks are seen from other hosts sharing the state dir.
    pub ground: Ground,
    /// The holder's host name as the lock file records it (else its machine or boot id); none
    /// in a file of OpenClaw's Node gateway.
    pub host: Option<String>,
    /// The holder runs on another machine (issue 13): `running` means "not ours to start
    /// over", `healthy` says nothing about it (its port is not on our loopback), and only
    /// `gateway unlock --force` removes its lock.
    pub on_other_host: bool,
    /// Cluster mode (the options name a cluster): the cluster's leader as the store says, read
    /// without taking part. A local holder that is not the leader is a standby.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::ClusterStatus>,
}

/// Looks at the lock files and probes `/healthz`. Takes no lock, creates, changes or deletes
/// no file, and signals no process. Inside the macOS App Sandbox, refuses a state dir that was
/// not given, as acquiring does ([`GatewayLockError::SandboxedStateDir`]).
pub fn status(options: &GatewayOptions) -> Result<GatewayStatus, GatewayLockError> {
    let resolved = options.resolve()?;
    // Inside the App Sandbox the default state dir is the app's own: the answer would be about
    // a gateway nobody else uses.
    options.check_app_sandbox(&resolved)?;
    // The state lock first; a config lock with a live holder is preferred to a dead one.
    let mut found: Option<(PathBuf, Observed, Verdict)> = None;
    if let Some(dir) = LockDir::open_existing(&resolved.lock_dir)? {
        let config_lock = paths::config_lock_name(&resolved.config_path);
        for name in [paths::STATE_LOCK_NAME, &config_lock] {
            let Some(observed) = inspect(&dir, name, BeaconProbe::Passive)? else {
                continue;
            };
            let path = dir.join(name);
            let verdict = judge(&observed, options.stale_after, &path);
            let alive = matches!(verdict, Verdict::Alive { .. } | Verdict::OtherHost { .. });
            if alive || found.is_none() {
                found = Some((path, observed, verdict));
            }
            if alive {
                break;
            }
        }
    }
    let running = matches!(
        found,
        Some((_, _, Verdict::Alive { .. } | Verdict::OtherHost { .. }))
    );
    let on_other_host = matches!(found, Some((_, _, Verdict::OtherHost { .. })));
    let stale = matches!(found, Some((_, _, Verdict::Reclaimable)));
    let (lock_path, payload) = match found {
        Some((path, observed, _)) => (Some(path), observed.payload),
        None => (None, None),
    };
    let port = payload
        .as_ref()
        .and_then(|p| p.port)
        .unwrap_or(resolved.port);
    // Another machine's port is not on our loopback: whatever answers there is not it.
    let healthy = !on_other_host && port != 0 && probe::healthz(port, STATUS_PROBE_TIMEOUT);
    let host = payload
        .as_ref()
        .filter(|p| p.host != HostIdentity::default())
        .map(|p| p.host.display_name());
    Ok(GatewayStatus {
        running,
        pid: payload.as_ref().map(|p| p.pid),
        port,
        start_time: payload.as_ref().and_then(|p| p.start_time),
        config_path: payload.and_then(|p| p.config_path),
        healthy,
        lock_path,
        stale,
        ground: ground::detect(&resolved.lock_dir),
        host,
        on_other_host,
        cluster: options
            .cluster
            .as_ref()
            .map(|cluster| crate::cluster::leader_status(cluster, &resolved)),
    })
}
