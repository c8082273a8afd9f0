//! Running under a service manager (SPEC §10): detection, the conflict policy and its exit
//! codes, readiness notification, socket activation.

use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};
use std::time::Duration;

use crate::error::GatewayLockError;
use crate::paths::{EnvLookup, process_env};
use crate::probe;

/// systemd's "do not restart me" exit status for a duplicate (with `RestartPreventExitStatus=78`).
pub const EXIT_DUPLICATE_UNDER_SYSTEMD: i32 = 78;

/// The service manager this process runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supervisor {
    /// systemd (`INVOCATION_ID`, `JOURNAL_STREAM`, ... are set).
    Systemd,
    /// launchd running OpenClaw's gateway job (`OPENCLAW_LAUNCHD_LABEL` is set, or the job
    /// label is the gateway's).
    Launchd,
}

/// launchd's label for the gateway job without a profile.
pub const GATEWAY_LAUNCHD_LABEL: &str = "ai.openclaw.gateway";

impl Supervisor {
    /// From the markers each manager sets in its services' environment, for the profile
    /// `OPENCLAW_PROFILE` names (none: the default gateway).
    pub fn detect() -> Option<Self> {
        Self::detect_with(&process_env, None)
    }

    /// As [`Supervisor::detect`], for a gateway run as `profile` (the CLI's `--profile`, or
    /// `dev` for `--dev`); `None` falls back to `OPENCLAW_PROFILE`, as Node's CLI sets it.
    pub fn detect_for_profile(profile: Option<&str>) -> Option<Self> {
        Self::detect_with(&process_env, profile)
    }

    /// Node's rule (`dist/supervisor-markers-DL2AtFkv.mjs:4-40`), with both managers' markers
    /// read on every platform, systemd's first (Node reads only the running platform's; the
    /// markers of the other are not set there, and reading both lets Linux test launchd's).
    ///
    /// - systemd: `INVOCATION_ID`, `SYSTEMD_EXEC_PID`, `JOURNAL_STREAM` or
    ///   `OPENCLAW_SYSTEMD_UNIT` is set (not blank).
    /// - launchd: `OPENCLAW_LAUNCHD_LABEL` is set (not blank); or `LAUNCH_JOB_LABEL` or
    ///   `LAUNCH_JOB_NAME` is the gateway job's label for the profile (`ai.openclaw.gateway`,
    ///   `ai.openclaw.<profile>`); or `XPC_SERVICE_NAME` is `ai.openclaw.gateway`. Any other
    ///   `XPC_SERVICE_NAME` is not us: every process a GUI app starts (a terminal in an editor,
    ///   Xcode, a Swift host spawning `gateway run`) inherits the app's.
    pub(crate) fn detect_with(env: EnvLookup, profile: Option<&str>) -> Option<Self> {
        let value = |name: &str| {
            env(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let systemd = [
            "OPENCLAW_SYSTEMD_UNIT",
            "INVOCATION_ID",
            "SYSTEMD_EXEC_PID",
            "JOURNAL_STREAM",
        ];
        if systemd.iter().any(|name| value(name).is_some()) {
            return Some(Self::Systemd);
        }
        let profile = profile
            .map(str::to_owned)
            .or_else(|| env("OPENCLAW_PROFILE"));
        let expected = launchd_label(profile.as_deref());
        let launchd = value("OPENCLAW_LAUNCHD_LABEL").is_some()
            || ["LAUNCH_JOB_LABEL", "LAUNCH_JOB_NAME"]
                .iter()
                .any(|name| value(name).as_deref() == Some(expected.as_str()))
            || value("XPC_SERVICE_NAME").as_deref() == Some(GATEWAY_LAUNCHD_LABEL);
        launchd.then_some(Self::Launchd)
    }
}

/// The gateway job's launchd label for a profile: `ai.openclaw.<profile>`, or
/// `ai.openclaw.gateway` for none, a blank one or `default` in any case
/// (`dist/constants-CJCmIHb-.mjs:31-44`).
pub fn launchd_label(profile: Option<&str>) -> String {
    match profile.map(str::trim) {
        Some(name) if !name.is_empty() && !name.eq_ignore_ascii_case("default") => {
            format!("ai.openclaw.{name}")
        }
        _ => GATEWAY_LAUNCHD_LABEL.to_owned(),
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
    /// The incumbent is not healthy, or (on another machine) its health cannot be checked from
    /// here: wait `retry_interval` and try again, up to `retry_window`.
    Retry,
}

/// What a supervised duplicate does about the acquire error `err`; `None` when it is no
/// conflict (fail at once). `configured_port` is probed when the error names no port.
///
/// A holder on another machine (`HeldByOtherHost`) is retried like an unhealthy one: its
/// `/healthz` is not ours to probe, and exiting 1 at once would have a `Restart=always` unit
/// or a Kubernetes pod restarting in a loop.
pub fn on_lock_error(
    supervisor: Supervisor,
    err: &GatewayLockError,
    configured_port: u16,
    policy: &ConflictPolicy,
) -> Option<ConflictAction> {
    match err {
        GatewayLockError::HeldByOtherHost { .. } => Some(ConflictAction::Retry),
        GatewayLockError::AlreadyRunning {
            port: Some(port), ..
        } => Some(on_conflict(supervisor, *port, policy)),
        _ if err.is_conflict() => Some(on_conflict(supervisor, configured_port, policy)),
        _ => None,
    }
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

    fn detect(profile: Option<&str>, vars: &[(&str, &str)]) -> Option<Supervisor> {
        let map: HashMap<_, _> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Supervisor::detect_with(&|name| map.get(name).cloned(), profile)
    }

    /// (the profile run as, the environment, the supervisor detected)
    #[test]
    fn markers_by_nodes_rule() {
        use Supervisor::{Launchd, Systemd};
        type Case = (
            Option<&'static str>,
            &'static [(&'static str, &'static str)],
            Option<Supervisor>,
        );
        let cases: &[Case] = &[
            (None, &[], None),
            // systemd: any of its markers, not blank.
            (None, &[("INVOCATION_ID", "abc")], Some(Systemd)),
            (None, &[("JOURNAL_STREAM", "8:1")], Some(Systemd)),
            (None, &[("SYSTEMD_EXEC_PID", "12")], Some(Systemd)),
            (
                None,
                &[("OPENCLAW_SYSTEMD_UNIT", "openclaw-gateway")],
                Some(Systemd),
            ),
            (None, &[("INVOCATION_ID", " ")], None),
            // launchd: OpenClaw's own marker, whatever its value.
            (None, &[("OPENCLAW_LAUNCHD_LABEL", "x")], Some(Launchd)),
            (None, &[("OPENCLAW_LAUNCHD_LABEL", "  ")], None),
            // XPC_SERVICE_NAME counts only as the default gateway job's label.
            (
                None,
                &[("XPC_SERVICE_NAME", "ai.openclaw.gateway")],
                Some(Launchd),
            ),
            (
                None,
                &[("XPC_SERVICE_NAME", " ai.openclaw.gateway ")],
                Some(Launchd),
            ),
            (None, &[("XPC_SERVICE_NAME", "0")], None),
            (None, &[("XPC_SERVICE_NAME", "com.example.Editor")], None),
            (
                None,
                &[("XPC_SERVICE_NAME", "application.com.apple.Terminal.123")],
                None,
            ),
            (None, &[("XPC_SERVICE_NAME", "ai.openclaw")], None),
            (
                Some("work"),
                &[("XPC_SERVICE_NAME", "ai.openclaw.work")],
                None,
            ),
            // LAUNCH_JOB_LABEL / LAUNCH_JOB_NAME: the label for the profile run as.
            (
                None,
                &[("LAUNCH_JOB_LABEL", "ai.openclaw.gateway")],
                Some(Launchd),
            ),
            (
                None,
                &[("LAUNCH_JOB_NAME", "ai.openclaw.gateway")],
                Some(Launchd),
            ),
            (None, &[("LAUNCH_JOB_LABEL", "com.example.Editor")], None),
            (
                Some("work"),
                &[("LAUNCH_JOB_LABEL", "ai.openclaw.work")],
                Some(Launchd),
            ),
            (
                Some("work"),
                &[("LAUNCH_JOB_LABEL", "ai.openclaw.gateway")],
                None,
            ),
            (
                Some("Default"),
                &[("LAUNCH_JOB_LABEL", "ai.openclaw.gateway")],
                Some(Launchd),
            ),
            (
                None,
                &[
                    ("OPENCLAW_PROFILE", "work"),
                    ("LAUNCH_JOB_LABEL", "ai.openclaw.work"),
                ],
                Some(Launchd),
            ),
            // A profile given wins over OPENCLAW_PROFILE.
            (
                Some("ops"),
                &[
                    ("OPENCLAW_PROFILE", "work"),
                    ("LAUNCH_JOB_LABEL", "ai.openclaw.work"),
                ],
                None,
            ),
            // systemd's markers are read first.
            (
                None,
                &[("INVOCATION_ID", "abc"), ("OPENCLAW_LAUNCHD_LABEL", "x")],
                Some(Systemd),
            ),
        ];
        for (profile, vars, expected) in cases {
            assert_eq!(detect(*profile, vars), *expected, "{profile:?} {vars:?}");
        }
    }

    #[test]
    fn launchd_labels() {
        assert_eq!(launchd_label(None), "ai.openclaw.gateway");
        assert_eq!(launchd_label(Some(" ")), "ai.openclaw.gateway");
        assert_eq!(launchd_label(Some("DEFAULT")), "ai.openclaw.gateway");
        assert_eq!(launchd_label(Some(" work ")), "ai.openclaw.work");
        assert_eq!(launchd_label(Some("dev")), "ai.openclaw.dev");
    }
}
