//! The gateway lock: the state and config lock files, then the exclusive listener(s).

mod beacon;
mod dir;
pub(crate) mod format;
mod ground;
pub(crate) mod host;
mod inspect;
pub(crate) mod liveness;
mod publish;
mod reclaim;
mod status;
mod unlock;
mod verdict;
mod watch;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use ground::{Ground, LockReach};
pub use status::{GatewayStatus, status};
pub use unlock::{RemovedLock, unlock};

use crate::bind;
use crate::error::GatewayLockError;
use crate::options::{GatewayOptions, LogLevel, Logger, ResolvedOptions};
use crate::{paths, probe};
use dir::LockDir;
use format::LockPayload;
use inspect::{BeaconProbe, inspect};
use publish::{Created, HeldFile};
use reclaim::{Reclaim, reclaim};
use verdict::{Verdict, judge};
use watch::LockWatch;

/// Longest a holder's `/healthz` may take to count as healthy while we acquire.
const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Proof that this process is the gateway for a config and a port: both lock files are held
/// and the listener(s) are bound. Dropping it releases everything.
#[derive(Debug)]
pub struct GatewayLock {
    resolved: ResolvedOptions,
    owner_id: String,
    files: Vec<HeldFile>,
    listeners: Vec<TcpListener>,
    /// Held until the lock is released, after the server closed the listeners (see
    /// [`bind::Bound::guards`]).
    port_guards: Vec<socket2::Socket>,
    watch: Option<LockWatch>,
    /// Cluster mode: the leadership held, renewed by its own thread; resigned on release.
    cluster: Option<crate::cluster::Held>,
    logger: Logger,
}

impl GatewayLock {
    /// State lock → config lock → listener(s) (SPEC §5–6). On success this process is the
    /// gateway; on failure nothing taken is kept. Inside the macOS App Sandbox a state dir must
    /// be given ([`GatewayLockError::SandboxedStateDir`]).
    pub fn acquire(options: &GatewayOptions) -> Result<Self, GatewayLockError> {
        Self::acquire_inner(options, None)
    }

    /// Like [`acquire`](Self::acquire), but adopts a listener the caller already has (socket
    /// activation): the port is the listener's, the file locks are still taken.
    pub fn acquire_with_listener(
        options: &GatewayOptions,
        listener: TcpListener,
    ) -> Result<Self, GatewayLockError> {
        let adopted = bind::Bound {
            listeners: vec![listener],
            guards: Vec::new(),
        };
        Self::acquire_inner(options, Some(adopted))
    }

    fn acquire_inner(
        options: &GatewayOptions,
        adopted: Option<bind::Bound>,
    ) -> Result<Self, GatewayLockError> {
        let mut resolved = options.resolve()?;
        options.check_app_sandbox(&resolved)?;
        if let Some(cluster) = &options.cluster {
            cluster.validate()?;
        }
        // With an ephemeral port (or an adopted listener) nobody can collide on the port, so
        // bind first and record the real port in the files.
        let early_listeners = match adopted {
            Some(listeners) => Some(listeners),
            None if resolved.port == 0 => Some(bind::bind_listeners(
                &resolved.bind,
                0,
                None,
                &options.logger,
            )?),
            None => None,
        };
        if let Some(primary) = early_listeners.as_ref().and_then(|b| b.listeners.first()) {
            resolved.port = primary
                .local_addr()
                .map_err(GatewayLockError::Runtime)?
                .port();
        }

        let dir = Arc::new(LockDir::prepare(&resolved.lock_dir)?);
        let (level, line) = ground::detect(&resolved.lock_dir).acquire_log_line(&resolved.lock_dir);
        options.logger.log(level, &line);
        let (owner_id, token) = random_identity().map_err(|source| GatewayLockError::LockIo {
            path: resolved.lock_dir.clone(),
            source,
        })?;
        let contents = LockPayload {
            pid: std::process::id(),
            owner_id: Some(owner_id.clone()),
            created_at: Some(format::timestamp_now()),
            config_path: Some(resolved.config_path.to_string_lossy().into_owned()),
            state_dir: Some(resolved.state_dir.to_string_lossy().into_owned()),
            port: Some(resolved.port).filter(|port| *port != 0),
            start_time: liveness::own_start_time(),
            host: host::HostIdentity::this().clone(),
        }
        .render(&token);

        let mut names = vec![paths::STATE_LOCK_NAME.to_owned()];
        if !resolved.allow_multi {
            names.push(paths::config_lock_name(&resolved.config_path));
        }
        // `None`: a timeout too long for an `Instant` to hold, so no deadline at all.
        let deadline = Instant::now().checked_add(options.timeout);
        let mut files = Vec::with_capacity(names.len());
        for name in &names {
            match acquire_file(&dir, name, &contents, files.first(), deadline, options) {
                Ok(held) => files.push(held),
                Err(err) => {
                    release_files(files, &owner_id);
                    return Err(err);
                }
            }
        }

        // Cluster mode: only the cluster's leader goes on to bind (issue 14).
        let cluster = match &options.cluster {
            Some(cluster) => {
                match crate::cluster::campaign(cluster, &resolved, &owner_id, &options.logger) {
                    Ok(held) => Some(held),
                    Err(err) => {
                        release_files(files, &owner_id);
                        return Err(err);
                    }
                }
            }
            None => None,
        };
        let bound = match early_listeners {
            Some(bound) => bound,
            None => match bind::bind_listeners(
                &resolved.bind,
                resolved.port,
                options.bind_retry,
                &options.logger,
            ) {
                Ok(bound) => bound,
                Err(err) => {
                    drop(cluster);
                    release_files(files, &owner_id);
                    return Err(err);
                }
            },
        };
        let mut lock = Self {
            resolved,
            owner_id,
            files,
            listeners: bound.listeners,
            port_guards: bound.guards,
            watch: None,
            cluster,
            logger: options.logger.clone(),
        };
        lock.watch = Some(LockWatch::start(
            lock.files
                .iter()
                .map(|f| (f.path().to_path_buf(), f.identity()))
                .collect(),
            options.recheck_interval,
            options.logger.clone(),
        ));
        Ok(lock)
    }

    /// The port the gateway listens on (the real one when 0 was asked for).
    pub fn port(&self) -> u16 {
        self.resolved.port
    }

    /// The addresses of the bound listeners, primary first.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The options as resolved for this acquisition.
    pub fn resolved(&self) -> &ResolvedOptions {
        &self.resolved
    }

    /// Where the lock (and a server built on it) logs.
    pub fn logger(&self) -> &Logger {
        &self.logger
    }

    /// Sends this lock's log lines, its re-check's included, to `logger` from now on.
    pub(crate) fn set_logger(&mut self, logger: Logger) {
        if let Some(watch) = &self.watch {
            watch.set_logger(logger.clone());
        }
        self.logger = logger;
    }

    /// The random id written in both lock files.
    pub fn owner_id(&self) -> &str {
        &self.owner_id
    }

    /// The lock files held, state lock first.
    pub fn lock_paths(&self) -> Vec<&Path> {
        self.files.iter().map(HeldFile::path).collect()
    }

    /// Cluster mode: this gateway's leadership (its fencing token, whether it still holds).
    /// `None` without cluster mode.
    pub fn leadership(&self) -> Option<crate::cluster::Leadership> {
        self.cluster.as_ref().map(crate::cluster::Held::leadership)
    }

    /// Cluster mode: the fencing token of this gateway's leadership (see
    /// [`Leadership::fencing_token`](crate::Leadership::fencing_token)).
    pub fn fencing_token(&self) -> Option<u64> {
        self.cluster
            .as_ref()
            .map(|held| held.leadership().fencing_token())
    }

    pub(crate) fn fence(&self) -> Option<Arc<crate::cluster::Fence>> {
        self.cluster.as_ref().map(|held| Arc::clone(held.fence()))
    }

    /// True once the periodic re-check found a lock file deleted or replaced, or, in cluster
    /// mode, once this gateway fenced itself (its leadership lost).
    pub fn is_lost(&self) -> bool {
        self.watch.as_ref().is_some_and(LockWatch::is_lost)
            || self
                .cluster
                .as_ref()
                .is_some_and(|held| held.fence().is_fenced())
    }

    /// Calls `on_lost` once, from the re-check thread, when a lock file is deleted or replaced
    /// (at once if that was already found). It may release the lock.
    pub fn on_lost(&self, on_lost: impl Fn(&Path) + Send + Sync + 'static) {
        if let Some(watch) = &self.watch {
            watch.set_handler(Box::new(on_lost));
        }
    }

    /// Closes the listener(s), then removes the files that are still ours. Dropping the lock
    /// does the same.
    pub fn release(self) {
        drop(self)
    }

    /// Hands the listeners to a server; the files stay held until the lock is released.
    pub(crate) fn take_listeners(&mut self) -> Vec<TcpListener> {
        std::mem::take(&mut self.listeners)
    }
}

impl Drop for GatewayLock {
    fn drop(&mut self) {
        self.listeners.clear();
        self.port_guards.clear();
        // Resign before the files go: a standby elsewhere takes over at once.
        self.cluster = None;
        self.watch = None;
        release_files(std::mem::take(&mut self.files), &self.owner_id);
    }
}

fn release_files(files: Vec<HeldFile>, owner_id: &str) {
    // Config lock first, state lock last: the reverse of acquisition.
    for held in files.into_iter().rev() {
        held.release(owner_id);
    }
}

/// A fresh `ownerId` (UUID v4) and ownership token, from one read of the OS's randomness.
/// (`uuid` reads the same source, so there is nothing to fall back on when it fails.)
fn random_identity() -> std::io::Result<(String, [u8; 16])> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|err| {
        std::io::Error::other(format!(
            "the OS gave no random bytes for the lock's owner id ({err}); check that /dev/urandom or getrandom(2) works"
        ))
    })?;
    let (id, token) = random.split_at(16);
    let owner_id = uuid::Builder::from_random_bytes(id.try_into().expect("16 bytes"))
        .into_uuid()
        .to_string();
    Ok((owner_id, token.try_into().expect("16 bytes")))
}

/// Takes one lock file, judging and reclaiming as SPEC §5 says, until the deadline.
/// `taken`, when given, is the lock file already held for this acquisition: its inode gets this
/// name too where the platform allows it.
fn acquire_file(
    dir: &Arc<LockDir>,
    name: &str,
    contents: &[u8],
    taken: Option<&HeldFile>,
    deadline: Option<Instant>,
    options: &GatewayOptions,
) -> Result<HeldFile, GatewayLockError> {
    let mut last_holder: Option<(Option<u32>, Option<u16>)> = None;
    loop {
        let aliased = match taken {
            Some(held) if !crate::failpoint::force_named_temp() => {
                publish::create_alias(dir, name, held)?
            }
            _ => None,
        };
        let created = match aliased {
            Some(created) => created,
            None => publish::create(dir, name, contents, options.stale_after)?,
        };
        // A reclaim guard that kept our file from its name this round.
        let staying_guard = match created {
            Created::Held(held) => return Ok(held),
            Created::GuardStays(guard) => Some(guard),
            Created::Exists => {
                let Some(observed) = inspect(dir, name, BeaconProbe::Flock)? else {
                    continue; // Removed between our create and our look: try again at once.
                };
                match judge(&observed, options.stale_after, &dir.join(name)) {
                    Verdict::Reclaimable => {
                        options.logger.log(
                            LogLevel::Info,
                            &format!("reclaiming stale gateway lock {}", dir.join(name).display()),
                        );
                        if reclaim(dir, name, &observed, options.stale_after)? != Reclaim::Busy {
                            continue;
                        }
                    }
                    Verdict::Alive { pid, port } => {
                        last_holder = Some((Some(pid), port));
                        if let Some(port) = port {
                            let budget = deadline.map_or(HEALTH_PROBE_TIMEOUT, |deadline| {
                                deadline
                                    .saturating_duration_since(Instant::now())
                                    .min(HEALTH_PROBE_TIMEOUT)
                            });
                            if probe::healthz(port, budget) {
                                return Err(GatewayLockError::AlreadyRunning {
                                    pid: Some(pid),
                                    port: Some(port),
                                    healthy: true,
                                    timeout_ms: options.timeout.as_millis() as u64,
                                });
                            }
                        }
                    }
                    Verdict::Wait { pid, port } => last_holder = Some((pid, port)),
                    Verdict::OtherHost { pid, port, .. } => {
                        return Err(GatewayLockError::HeldByOtherHost {
                            host: observed
                                .payload
                                .as_ref()
                                .map_or_else(String::new, |p| p.host.display_name()),
                            pid,
                            port,
                            lock_path: dir.join(name),
                        });
                    }
                }
                None
            }
        };
        let left = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        if left.is_some_and(|left| left.is_zero()) {
            if let Some(guard) = staying_guard {
                return Err(GatewayLockError::LockIo {
                    path: dir.join(name),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "{} stayed in place for the whole lock timeout ({}ms) while another process reclaimed the lock; if no gateway is starting or stopping, remove it",
                            guard.display(),
                            options.timeout.as_millis()
                        ),
                    ),
                });
            }
            let (pid, port) = last_holder.unwrap_or((None, None));
            return Err(GatewayLockError::AlreadyRunning {
                pid,
                port,
                healthy: false,
                timeout_ms: options.timeout.as_millis() as u64,
            });
        }
        std::thread::sleep(left.map_or(options.poll_interval, |left| {
            options.poll_interval.min(left)
        }));
    }
}
