//! Running under a service manager (SPEC §10): detection, the conflict policy and its exit
//! codes, readiness notification, socket activation.

use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};
use std::time::Duration;

use crate::paths::{EnvLookup, process_env};
use crate::probe;

/// systemd's "do not restart me" exit status for a duplicate (with `RestartPreventExitStatus=78`).
pub const EXIT_DUPLICATE_UNDER_SYSTEMD: i32 = 78;

/// The service manager this process runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supervisor {
    /// systemd (`INVOCATION_ID`, `JOURNAL_STREAM`, ... are set).
    Systemd,
    /// launchd (`XPC_SERVICE_NAME`, `LAUNCH_JOB_LABEL`, ... are set).
    Launchd,
}

impl Supervisor {
    /// From the markers each manager sets in its services' environment.
    pub fn detect() -> Option<Self> {
        Self::detect_with(&process_env)
    }

    pub(crate) fn detect_with(env: EnvLookup) -> Option<Self> {
        // A macOS terminal session has XPC_SERVICE_NAME=0: that is not launchd running us.
        let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty() && v.trim() != "0");
        let systemd = [
            "INVOCATION_ID",
            "SYSTEMD_EXEC_PID",
            "JOURNAL_STREAM",
            "OPENCLAW_SYSTEMD_UNIT",
        ];
        let launchd = [
            "XPC_SERVICE_NAME",
            "LAUNCH_JOB_LABEL",
            "OPENCLAW_LAUNCHD_LABEL",
        ];
        if systemd.iter().any(|name| set(name)) {
            Some(Self::Systemd)
        } else if launchd.iter().any(|name| set(name)) {
            Some(Self::Launchd)
        } else {
            None
        }
    }
}

/// What a supervised duplicate does about a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConflictPolicy {
    /// How long the `/healthz` probe may take.
    pub probe_timeout: Duration,
    /// Between attempts while the incumbent is not healthy.
    pub retry_interval: Duration,
    /// How long to keep trying before exiting 1.
    pub retry_window: Duration,
}

impl Default for ConflictPolicy {
    fn default() -> Self {
        Self {
            probe_timeout: Duration::from_secs(1),
            retry_interval: Duration::from_secs(5),
            retry_window: Duration::from_secs(300),
        }
    }
}

/// The decision for one conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictAction {
    /// Leave the healthy incumbent in control: print `message`, exit with `code`.
    Exit {
        /// The process's exit status.
        code: i32,
        /// What to print before exiting.
        message: String,
    },
    /// The incumbent is not healthy: wait `retry_interval` and try again.
    Retry,
}

/// Probes the incumbent on `port` and decides, as SPEC §10 says.
pub fn on_conflict(supervisor: Supervisor, port: u16, policy: &ConflictPolicy) -> ConflictAction {
    if !probe::healthz(port, policy.probe_timeout) {
        return ConflictAction::Retry;
    }
    match supervisor {
        Supervisor::Systemd => ConflictAction::Exit {
            code: EXIT_DUPLICATE_UNDER_SYSTEMD,
            message: "gateway already running under systemd; existing gateway is healthy, exiting with code 78 to prevent a systemd Restart=always loop".into(),
        },
        Supervisor::Launchd => ConflictAction::Exit {
            code: 0,
            message: "gateway already running under launchd; existing gateway is healthy, leaving it in control".into(),
        },
    }
}

/// Sends `state` (e.g. `READY=1`) to `$NOTIFY_SOCKET`. `Ok(false)` when it is not set.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    match bytes.strip_prefix(b"@") {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        }
        _ => {
            socket.send_to(state.as_bytes(), &path)?;
        }
    }
    Ok(true)
}

/// The listener systemd passed (`LISTEN_PID` is us, `LISTEN_FDS` is 1: fd 3), if any; only the
/// first call in a process takes it. The fd is made close-on-exec; children ignore the
/// variables, whose `LISTEN_PID` is not theirs.
pub fn take_activated_listener() -> io::Result<Option<TcpListener>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    const FIRST_FD: RawFd = 3;
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse::<u32>().ok());
    if !ours || count.is_none() || TAKEN.swap(true, Ordering::AcqRel) {
        return Ok(None);
    }
    if count != Some(1) {
        return Err(io::Error::other(format!(
            "socket activation passed {} sockets; the gateway takes exactly one",
            count.unwrap_or(0)
        )));
    }
    // SAFETY: F_SETFD on fd 3 touches only its flags; an invalid fd returns EBADF.
    if unsafe { libc::fcntl(FIRST_FD, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: systemd passed fd 3 to this process for it to own, and `TAKEN` makes this the
    // only owner the library creates.
    let listener = unsafe { TcpListener::from_raw_fd(FIRST_FD) };
    listener.local_addr()?; // not a socket, or not an inet one: refuse now
    Ok(Some(listener))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn detect(vars: &[(&str, &str)]) -> Option<Supervisor> {
        let map: HashMap<_, _> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Supervisor::detect_with(&|name| map.get(name).cloned())
    }

    #[test]
    fn detects_markers() {
        assert_eq!(detect(&[]), None);
        assert_eq!(
            detect(&[("INVOCATION_ID", "abc")]),
            Some(Supervisor::Systemd)
        );
        assert_eq!(
            detect(&[("JOURNAL_STREAM", "8:1")]),
            Some(Supervisor::Systemd)
        );
        assert_eq!(
            detect(&[("XPC_SERVICE_NAME", "ai.openclaw")]),
            Some(Supervisor::Launchd)
        );
        assert_eq!(
            detect(&[("OPENCLAW_LAUNCHD_LABEL", "x")]),
            Some(Supervisor::Launchd)
        );
        assert_eq!(detect(&[("INVOCATION_ID", " ")]), None);
        assert_eq!(detect(&[("XPC_SERVICE_NAME", "0")]), None);
    }
}
