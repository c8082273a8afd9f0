//! The one error type of the library. Each `Display` is the exact message of SPEC §5/§6.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why the gateway could not be locked, bound or served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayLockError {
    /// A live gateway holds the lock. `healthy` is true when its port answered `/healthz`, in
    /// which case we failed at once instead of waiting for the timeout.
    #[error("{}", already_running_message(*pid, *port, *healthy, *timeout_ms))]
    AlreadyRunning {
        /// The holder's pid, when its lock file names one.
        pid: Option<u32>,
        /// The holder's port, when its lock file records one.
        port: Option<u16>,
        /// Whether the holder answered `/healthz` on that port.
        healthy: bool,
        /// How long acquisition waited before it gave up (SPEC §5's timeout).
        timeout_ms: u64,
    },
    /// The lock file records a gateway on another machine (issue 13): its pid means nothing
    /// here, so it is never reclaimed; refused at once. If that gateway is gone, `gateway unlock
    /// --force` (or [`crate::unlock`] with `force`) removes its lock. `pid` is on that machine:
    /// never signal it here.
    #[error(
        "gateway already running on host {host} (pid {pid}); if that gateway is gone, run `gateway unlock --force` on this machine"
    )]
    HeldByOtherHost {
        /// The holder's host name (else its machine id, else its boot id), as its lock file
        /// records it.
        host: String,
        /// The holder's pid, on its own machine.
        pid: u32,
        /// The port its lock file records.
        port: Option<u16>,
        /// The lock file.
        lock_path: PathBuf,
    },
    /// `unlock` found a lock that a live gateway holds (or may hold): on this machine, or on
    /// another one whose beacon the file system shares. Nothing was removed (but see
    /// [`GatewayLockError::UnlockIncomplete`]).
    #[error("{}", lock_in_use_message(self))]
    LockInUse {
        /// The holder's pid, when the file names one.
        pid: Option<u32>,
        /// The holder's host when it is another machine; `None`: this machine.
        host: Option<String>,
        /// The lock file.
        lock_path: PathBuf,
        /// The port the lock file records.
        port: Option<u16>,
        /// How old the lock file is: by its `createdAt`, else its mtime.
        age: std::time::Duration,
        /// The holder is certainly alive (its beacon, or its pid and start time); `false`: it
        /// may be (a gateway starting, or a pid that cannot be told from a live gateway's).
        confirmed: bool,
    },
    /// `unlock` removed some lock files (each judged stale and unchanged), then found the next
    /// one held: taken by a gateway that started meanwhile. `refusal` says by whom.
    #[error("{refusal} (already removed, as stale: {})", paths_list(removed))]
    UnlockIncomplete {
        /// The lock files removed before the refusal.
        removed: Vec<PathBuf>,
        /// Why the rest was not removed: [`GatewayLockError::LockInUse`] or
        /// [`GatewayLockError::HeldByOtherHost`].
        refusal: Box<GatewayLockError>,
    },
    /// The port is taken (by another gateway or anything else).
    #[error("another gateway instance is already listening on {url}")]
    AddrInUse {
        /// The address that was taken, as `ws://host:port`.
        url: String,
    },
    /// Binding or listening failed for another reason.
    #[error("failed to bind gateway socket on {url}: {source}")]
    Bind {
        /// The address that could not be bound, as `ws://host:port`.
        url: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// Reading, creating or removing a lock file failed.
    #[error("failed to acquire gateway lock at {}: {source}", path.display())]
    LockIo {
        /// The lock file or directory the operation was on.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The lock directory is not safe to use (a symlink, another owner, open permissions).
    #[error("refusing to use gateway lock directory {}: {problem}; remove it or make it a directory owned by uid {uid} with mode 0700", path.display())]
    UnsafeLockDir {
        /// The lock directory.
        path: PathBuf,
        /// What is wrong with it, for people.
        problem: String,
        /// The uid that should own it (ours).
        uid: u32,
    },
    /// A lock path is something other than a regular file (a symlink, FIFO, directory).
    #[error("refusing to use gateway lock file {}: {problem}; remove it and start again", path.display())]
    UnsafeLockFile {
        /// The lock path.
        path: PathBuf,
        /// What is wrong with it, for people.
        problem: String,
    },
    /// `lan` bind mode was asked for with auth mode `none`.
    #[error("Refusing to bind gateway to lan without auth.")]
    LanWithoutAuth,
    /// The process runs in the macOS App Sandbox (`APP_SANDBOX_CONTAINER_ID` is set) and the
    /// state dir was not given: the default one would be inside the app's container (the
    /// sandbox sets `HOME` there), so this gateway would not exclude one that uses the user's
    /// `~/.openclaw`. Pass the state dir explicitly; the message says which and how.
    #[error("{}", sandboxed_state_dir_message(container_id, state_dir, user_state_dir.as_deref()))]
    SandboxedStateDir {
        /// The app's sandbox container (`APP_SANDBOX_CONTAINER_ID`).
        container_id: String,
        /// The state dir the defaults resolved to, inside the container.
        state_dir: PathBuf,
        /// The user's own state dir (`~/.openclaw` of the account's home), when known.
        user_state_dir: Option<PathBuf>,
    },
    /// An option or environment value is invalid; the message names it.
    #[error("{0}")]
    InvalidOption(String),
    /// The server could not be started (runtime or listener set-up).
    #[error("failed to start gateway server: {0}")]
    Runtime(io::Error),
    /// Cluster mode (issue 14): another gateway leads this config's cluster, and this one was
    /// not asked to stand by ([`crate::ClusterOptions::wait`]), or its wait ran out.
    #[error(
        "gateway already running in cluster {cluster} on host {} (pid {}, port {}, leader since {}, fencing token {}); this gateway is a standby: stop that one, or let this one wait (gateway run --cluster waits)",
        leader.host, leader.pid, leader.port, since(leader.since_ms), leader.fencing_token
    )]
    ClusterLeaderElsewhere {
        /// The cluster's name.
        cluster: String,
        /// The leader, as its claim in the store says.
        leader: crate::cluster::ClusterLeader,
    },
    /// Cluster mode: the store did not answer (down, unreachable, without quorum) or refused.
    /// The local lock was released.
    #[error(
        "cannot reach the cluster store {store}: {detail}; check that etcd runs at those client URLs and that this machine reaches them"
    )]
    ClusterUnavailable {
        /// The store, as `etcd=URL,...`.
        store: String,
        /// What the client saw.
        detail: String,
    },
    /// Cluster mode: the store answered with a refusal that trying again will not change
    /// (authentication, permissions). The local lock was released.
    #[error(
        "the cluster store {store} refused this gateway: {detail}; it connects to etcd without TLS or authentication, so give it endpoints that allow that"
    )]
    ClusterRefused {
        /// The store, as `etcd=URL,...`.
        store: String,
        /// What the store said.
        detail: String,
    },
    /// A standby's wait was cancelled by the host ([`crate::ClusterOptions::cancel_on`]).
    #[error("gateway start cancelled while it stood by for the cluster's leadership")]
    Cancelled,
    /// The device store (paired devices and their tokens, SPEC §11.5) cannot be used; the
    /// message says what to do.
    #[error("refusing to use the device store {}: {problem}", path.display())]
    DeviceStore {
        /// The store file.
        path: PathBuf,
        /// What is wrong with it and what to do, for people.
        problem: String,
    },
}

/// A leader's `since` (ms since the epoch, its wall clock) as RFC 3339, to the second.
fn since(ms: u64) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

fn already_running_message(
    pid: Option<u32>,
    port: Option<u16>,
    healthy: bool,
    timeout_ms: u64,
) -> String {
    struct Pid(Option<u32>);
    impl fmt::Display for Pid {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                Some(pid) => write!(f, " (pid {pid})"),
                None => Ok(()),
            }
        }
    }
    match (healthy, port) {
        (true, Some(port)) => format!(
            "gateway already running{}; it is healthy on ws://127.0.0.1:{port}",
            Pid(pid)
        ),
        _ => format!(
            "gateway already running{}; lock timeout after {timeout_ms}ms",
            Pid(pid)
        ),
    }
}

fn lock_in_use_message(err: &GatewayLockError) -> String {
    let GatewayLockError::LockInUse {
        pid,
        host,
        lock_path,
        port,
        age,
        confirmed,
    } = err
    else {
        return String::new();
    };
    let mut facts = Vec::new();
    if let Some(pid) = pid {
        facts.push(format!("pid {pid}"));
    }
    if let Some(port) = port {
        facts.push(format!("port {port}"));
    }
    let age = humantime::format_duration(std::time::Duration::from_secs(age.as_secs()));
    facts.push(format!("locked {age} ago"));
    let holder = match pid {
        Some(_) => "gateway",
        None => "a starting gateway",
    };
    let place = match host {
        Some(host) => format!("on host {host} (the file system shares its lock)"),
        None => "on this machine".to_owned(),
    };
    let is = if *confirmed { "is" } else { "may be" };
    format!(
        "refusing to unlock {}: {holder} ({}) {is} alive {place}; stop that gateway first (gateway unlock never removes a live gateway's lock)",
        lock_path.display(),
        facts.join(", ")
    )
}

fn paths_list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn sandboxed_state_dir_message(
    container_id: &str,
    state_dir: &std::path::Path,
    user_state_dir: Option<&std::path::Path>,
) -> String {
    let user = user_state_dir.map_or_else(
        || "the user's ~/.openclaw".to_owned(),
        |dir| dir.display().to_string(),
    );
    format!(
        "refusing to use the default state dir {} inside the App Sandbox container of {container_id}: \
         a gateway using {user} would not be excluded. Give the state dir explicitly (the \
         state_dir option, gw_options_set_state_dir, Swift's stateDirectory, or \
         OPENCLAW_STATE_DIR): {user} needs the entitlement \
         com.apple.security.temporary-exception.files.home-relative-path.read-write with \
         \"/.openclaw/\"; a dir inside the container excludes only gateways started with that \
         same dir",
        state_dir.display()
    )
}

impl GatewayLockError {
    /// The holder's pid, when the error is about a live gateway that holds the lock.
    pub fn holder_pid(&self) -> Option<u32> {
        match self {
            Self::AlreadyRunning { pid, .. } => *pid,
            _ => None,
        }
    }

    /// True for the conflicts a service manager treats specially: the lock is held by a live
    /// gateway, or the port is taken.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::AlreadyRunning { .. } | Self::AddrInUse { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_spec() {
        let timeout = GatewayLockError::AlreadyRunning {
            pid: Some(4242),
            port: Some(18789),
            healthy: false,
            timeout_ms: 5000,
        };
        assert_eq!(
            timeout.to_string(),
            "gateway already running (pid 4242); lock timeout after 5000ms"
        );
        let unknown = GatewayLockError::AlreadyRunning {
            pid: None,
            port: None,
            healthy: false,
            timeout_ms: 5000,
        };
        assert_eq!(
            unknown.to_string(),
            "gateway already running; lock timeout after 5000ms"
        );
        let in_use = GatewayLockError::AddrInUse {
            url: "ws://[::1]:18789".into(),
        };
        assert_eq!(
            in_use.to_string(),
            "another gateway instance is already listening on ws://[::1]:18789"
        );
        let other_host = GatewayLockError::HeldByOtherHost {
            host: "host-a".into(),
            pid: 42,
            port: Some(18789),
            lock_path: "/s/tmp/openclaw-0/gateway.state.lock".into(),
        };
        assert_eq!(
            other_host.to_string(),
            "gateway already running on host host-a (pid 42); if that gateway is gone, run `gateway unlock --force` on this machine"
        );
        let in_use = GatewayLockError::LockInUse {
            pid: Some(42),
            host: None,
            lock_path: "/s/l".into(),
            port: Some(18789),
            age: std::time::Duration::from_millis(125_900),
            confirmed: true,
        };
        assert_eq!(
            in_use.to_string(),
            "refusing to unlock /s/l: gateway (pid 42, port 18789, locked 2m 5s ago) is alive on this machine; stop that gateway first (gateway unlock never removes a live gateway's lock)"
        );
        let starting = GatewayLockError::LockInUse {
            pid: None,
            host: None,
            lock_path: "/s/l".into(),
            port: None,
            age: std::time::Duration::ZERO,
            confirmed: false,
        };
        assert_eq!(
            starting.to_string(),
            "refusing to unlock /s/l: a starting gateway (locked 0s ago) may be alive on this machine; stop that gateway first (gateway unlock never removes a live gateway's lock)"
        );
        let incomplete = GatewayLockError::UnlockIncomplete {
            removed: vec!["/s/a".into()],
            refusal: Box::new(starting),
        };
        assert_eq!(
            incomplete.to_string(),
            "refusing to unlock /s/l: a starting gateway (locked 0s ago) may be alive on this machine; stop that gateway first (gateway unlock never removes a live gateway's lock) (already removed, as stale: /s/a)"
        );
        assert_eq!(
            GatewayLockError::LanWithoutAuth.to_string(),
            "Refusing to bind gateway to lan without auth."
        );
        let leader = GatewayLockError::ClusterLeaderElsewhere {
            cluster: "prod".into(),
            leader: crate::cluster::ClusterLeader {
                host: "host-a".into(),
                pid: 42,
                port: 18789,
                since_ms: 1_795_000_000_123,
                owner_id: "o".into(),
                fencing_token: 17,
            },
        };
        assert_eq!(
            leader.to_string(),
            "gateway already running in cluster prod on host host-a (pid 42, port 18789, leader since 2026-11-18T11:06:40Z, fencing token 17); this gateway is a standby: stop that one, or let this one wait (gateway run --cluster waits)"
        );
        let unreachable = GatewayLockError::ClusterUnavailable {
            store: "etcd=http://10.0.0.2:2379".into(),
            detail: "no answer from etcd within 5000 ms".into(),
        };
        assert_eq!(
            unreachable.to_string(),
            "cannot reach the cluster store etcd=http://10.0.0.2:2379: no answer from etcd within 5000 ms; check that etcd runs at those client URLs and that this machine reaches them"
        );
    }
}
