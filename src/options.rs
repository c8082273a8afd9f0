//! Every knob of the gateway, with a builder, and their resolution by SPEC §1.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::GatewayLockError;
use crate::paths::{self, EnvLookup};

/// Where the gateway listens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BindMode {
    /// `127.0.0.1`, plus `[::1]` when it can be had.
    #[default]
    Loopback,
    /// `0.0.0.0`; refused without auth.
    Lan,
    /// A host name or IP address of the caller's choosing.
    Custom(String),
}

/// How WebSocket clients authenticate.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// Any client may connect (loopback only: `lan` refuses it).
    #[default]
    None,
    /// Clients send this shared token in `connect`'s `auth.token`.
    Token(String),
    /// Clients send this shared password in `connect`'s `auth.password`.
    Password(String),
}

impl Auth {
    /// The mode's name as OpenClaw's `gateway.auth.mode` spells it: `none`, `token` or
    /// `password`.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Token(_) => "token",
            Self::Password(_) => "password",
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets never reach logs.
        match self {
            Self::None => f.write_str("None"),
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::Password(_) => f.write_str("Password(<redacted>)"),
        }
    }
}

/// How loud a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Detail for whoever debugs the gateway.
    Debug,
    /// The gateway's life: ready, stopped, a lock reclaimed.
    Info,
    /// Something went wrong and the gateway carried on.
    Warn,
    /// Something went wrong that the host should act on.
    Error,
}

/// Where the library's log lines go. The default writes warnings and errors to stderr.
#[derive(Clone)]
pub struct Logger(Arc<LogSink>);

type LogSink = dyn Fn(LogLevel, &str) + Send + Sync;

impl Logger {
    /// A logger that hands every line to `sink`, from any thread (possibly several at once).
    pub fn new(sink: impl Fn(LogLevel, &str) + Send + Sync + 'static) -> Self {
        Self(Arc::new(sink))
    }

    /// Logs one line.
    pub fn log(&self, level: LogLevel, message: &str) {
        (self.0)(level, message)
    }
}

impl Default for Logger {
    fn default() -> Self {
        Self::new(|level, message| {
            if level >= LogLevel::Warn {
                eprintln!("gateway: {message}");
            }
        })
    }
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Logger")
    }
}

/// Retrying a taken port (OpenClaw: 20 × 500 ms). Never the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindRetry {
    /// Binds tried in all, the first included.
    pub attempts: u32,
    /// The wait between two tries.
    pub interval: Duration,
}

/// Everything that decides where the gateway locks and listens, and how patiently.
///
/// Fields left unset are resolved by SPEC §1 when the lock is acquired: from the home
/// directory only with [`GatewayOptions::new`], and also from the `OPENCLAW_*` environment
/// with [`GatewayOptions::from_env`]. Explicit settings always win.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) config_path: Option<PathBuf>,
    pub(crate) lock_dir: Option<PathBuf>,
    pub(crate) profile: Option<String>,
    pub(crate) dev: bool,
    pub(crate) port: Option<u16>,
    pub(crate) bind: BindMode,
    pub(crate) auth: Option<Auth>,
    pub(crate) allow_multi: Option<bool>,
    pub(crate) timeout: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) stale_after: Duration,
    pub(crate) recheck_interval: Duration,
    pub(crate) bind_retry: Option<BindRetry>,
    pub(crate) logger: Logger,
    pub(crate) cluster: Option<crate::cluster::ClusterOptions>,
    use_env: bool,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            state_dir: None,
            config_path: None,
            lock_dir: None,
            profile: None,
            dev: false,
            port: None,
            bind: BindMode::Loopback,
            auth: None,
            allow_multi: None,
            timeout: Duration::from_millis(5000),
            poll_interval: Duration::from_millis(100),
            stale_after: Duration::from_millis(30_000),
            recheck_interval: Duration::from_secs(60),
            bind_retry: None,
            logger: Logger::default(),
            cluster: None,
            use_env: false,
        }
    }
}

impl GatewayOptions {
    /// Defaults that consult no `OPENCLAW_*` variable (only `HOME`, to find `~`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Defaults resolved from the process environment exactly as SPEC §1 says
    /// (`OPENCLAW_HOME`, `OPENCLAW_STATE_DIR`, `OPENCLAW_CONFIG_PATH`, `OPENCLAW_GATEWAY_PORT`,
    /// `OPENCLAW_ALLOW_MULTI_GATEWAY`, `OPENCLAW_GATEWAY_TOKEN`, `OPENCLAW_GATEWAY_PASSWORD`).
    /// Fails now, naming the value, when one of them is invalid.
    pub fn from_env() -> Result<Self, GatewayLockError> {
        let options = Self {
            use_env: true,
            ..Self::default()
        };
        options.resolve()?;
        Ok(options)
    }

    /// The state dir (instead of `~/.openclaw`).
    #[must_use]
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// The config path, whose SHA-256 names the config lock.
    #[must_use]
    pub fn config_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_path = Some(path.into());
        self
    }

    /// The lock dir (instead of `<state>/tmp/openclaw-<uid>`).
    #[must_use]
    pub fn lock_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.lock_dir = Some(dir.into());
        self
    }

    /// A named profile: state dir `~/.openclaw-NAME` and its own port.
    #[must_use]
    pub fn profile(mut self, name: impl Into<String>) -> Self {
        self.profile = Some(name.into());
        self
    }

    /// The `dev` profile on port 19001.
    #[must_use]
    pub fn dev(mut self, dev: bool) -> Self {
        self.dev = dev;
        self
    }

    /// The port; 0 asks the OS for a free one (tests, embedding).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Where to listen.
    #[must_use]
    pub fn bind(mut self, bind: BindMode) -> Self {
        self.bind = bind;
        self
    }

    /// How WebSocket clients authenticate.
    #[must_use]
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Skip the config lock (OpenClaw's `OPENCLAW_ALLOW_MULTI_GATEWAY=1`).
    #[must_use]
    pub fn allow_multi(mut self, allow: bool) -> Self {
        self.allow_multi = Some(allow);
        self
    }

    /// How long to wait for a live holder to go away (default 5000 ms).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often to look again while waiting (default 100 ms).
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How old a lock file without a payload must be to be reclaimed (default 30 s).
    #[must_use]
    pub fn stale_after(mut self, stale: Duration) -> Self {
        self.stale_after = stale;
        self
    }

    /// How often a holder checks that its lock files are still its own (default 60 s).
    #[must_use]
    pub fn recheck_interval(mut self, interval: Duration) -> Self {
        self.recheck_interval = interval;
        self
    }

    /// Retry a taken port (off by default; skipped when the holder answers `/healthz`).
    #[must_use]
    pub fn bind_retry(mut self, retry: BindRetry) -> Self {
        self.bind_retry = Some(retry);
        self
    }

    /// Where log lines go.
    #[must_use]
    pub fn logger(mut self, logger: Logger) -> Self {
        self.logger = logger;
        self
    }

    /// Cluster mode (issue 14): after the local lock, campaign for the cluster's leadership
    /// in a consensus store; only the leader binds and serves. See [`crate::ClusterOptions`].
    #[must_use]
    pub fn cluster(mut self, cluster: crate::cluster::ClusterOptions) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The cluster options, when cluster mode is on.
    pub fn cluster_options(&self) -> Option<&crate::cluster::ClusterOptions> {
        self.cluster.as_ref()
    }

    /// Applies SPEC §1 to what was left unset.
    pub fn resolve(&self) -> Result<ResolvedOptions, GatewayLockError> {
        let process_env = paths::process_env;
        let home_only = |name: &str| (name == "HOME").then(|| paths::process_env(name)).flatten();
        let env: EnvLookup = if self.use_env {
            &process_env
        } else {
            &home_only
        };
        self.resolve_with(env)
    }

    pub(crate) fn resolve_with(&self, env: EnvLookup) -> Result<ResolvedOptions, GatewayLockError> {
        let profile = match (&self.profile, self.dev) {
            (Some(_), true) => {
                return Err(GatewayLockError::InvalidOption(
                    "Cannot combine --dev with --profile".into(),
                ));
            }
            (Some(name), false) => paths::validate_profile(name)?.map(str::to_owned),
            (None, true) => Some("dev".to_owned()),
            (None, false) => None,
        };
        let home = paths::home_dir(env);
        let state_dir = match (&self.state_dir, &profile) {
            (Some(dir), _) => dir.clone(),
            (None, Some(name)) => paths::profile_state_dir(&home, name),
            (None, None) => paths::state_dir(env, &home),
        };
        let config_path = match (&self.config_path, &profile) {
            (Some(path), _) => path.clone(),
            (None, Some(_)) => state_dir.join("openclaw.json"),
            (None, None) => paths::config_path(env, &home, &state_dir),
        };
        let lock_dir = self
            .lock_dir
            .clone()
            .unwrap_or_else(|| paths::lock_dir(&state_dir));
        let port = match self.port {
            Some(port) => port,
            None => match env("OPENCLAW_GATEWAY_PORT").filter(|v| !v.trim().is_empty()) {
                Some(raw) => paths::parse_env_port(&raw)?,
                None if self.dev => paths::DEV_PORT,
                None => profile
                    .as_deref()
                    .map_or(paths::DEFAULT_PORT, paths::profile_port),
            },
        };
        let allow_multi = self
            .allow_multi
            .unwrap_or_else(|| env("OPENCLAW_ALLOW_MULTI_GATEWAY").as_deref() == Some("1"));
        let auth = match &self.auth {
            Some(auth) => auth.clone(),
            None => match (
                env("OPENCLAW_GATEWAY_TOKEN").filter(|t| !t.is_empty()),
                env("OPENCLAW_GATEWAY_PASSWORD").filter(|p| !p.is_empty()),
            ) {
                (Some(token), _) => Auth::Token(token),
                (None, Some(password)) => Auth::Password(password),
                (None, None) => Auth::None,
            },
        };
        match &auth {
            Auth::Token(secret) | Auth::Password(secret) if secret.is_empty() => {
                return Err(GatewayLockError::InvalidOption(
                    "the gateway token or password is empty: give a non-empty secret or use auth mode none".into(),
                ));
            }
            _ => {}
        }
        if let BindMode::Custom(host) = &self.bind
            && host.trim().is_empty()
        {
            return Err(GatewayLockError::InvalidOption(
                "the custom bind host is empty: give a host name or IP address".into(),
            ));
        }
        if self.bind == BindMode::Lan && auth == Auth::None {
            return Err(GatewayLockError::LanWithoutAuth);
        }
        if self.poll_interval.is_zero() {
            return Err(GatewayLockError::InvalidOption(
                "the lock poll interval must be above 0 ms".into(),
            ));
        }
        if self.recheck_interval.is_zero() {
            return Err(GatewayLockError::InvalidOption(
                "the lock re-check interval must be above 0 ms".into(),
            ));
        }
        Ok(ResolvedOptions {
            state_dir,
            config_path,
            lock_dir,
            profile,
            port,
            bind: self.bind.clone(),
            auth,
            allow_multi,
        })
    }
}

impl GatewayOptions {
    /// Inside the macOS App Sandbox (`APP_SANDBOX_CONTAINER_ID` is set, by the sandbox, in the
    /// app and every process it starts), refuses a state dir that was not given: neither the
    /// [`GatewayOptions::state_dir`] option nor, with [`GatewayOptions::from_env`],
    /// `OPENCLAW_STATE_DIR`. The sandbox sets `HOME` to the app's container, so the default
    /// would be a state dir of the app's own, and the lock would not exclude the user's
    /// gateway. Acquiring and `status` call it; resolving alone does not, so a host can still
    /// read the defaults and then set the state dir.
    pub(crate) fn check_app_sandbox(
        &self,
        resolved: &ResolvedOptions,
    ) -> Result<(), GatewayLockError> {
        self.check_app_sandbox_with(&paths::process_env, resolved)
    }

    pub(crate) fn check_app_sandbox_with(
        &self,
        env: EnvLookup,
        resolved: &ResolvedOptions,
    ) -> Result<(), GatewayLockError> {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let Some(container_id) = set("APP_SANDBOX_CONTAINER_ID") else {
            return Ok(());
        };
        if self.state_dir.is_some() || (self.use_env && set("OPENCLAW_STATE_DIR").is_some()) {
            return Ok(());
        }
        Err(GatewayLockError::SandboxedStateDir {
            container_id: container_id.trim().to_owned(),
            state_dir: resolved.state_dir.clone(),
            // The account's home from the user database: the sandbox changes HOME, not that.
            user_state_dir: paths::passwd_home().map(|home| home.join(".openclaw")),
        })
    }
}

/// The options after SPEC §1: concrete paths, port and modes.
#[derive(Debug, Clone)]
pub struct ResolvedOptions {
    /// The state dir (`~/.openclaw`, a profile's, or as set).
    pub state_dir: PathBuf,
    /// The config file whose path names the config lock.
    pub config_path: PathBuf,
    /// Where the lock files are (`<state>/tmp/openclaw-<uid>` unless set).
    pub lock_dir: PathBuf,
    /// The profile, `dev` included, when one was chosen.
    pub profile: Option<String>,
    /// The port (0: the kernel chooses).
    pub port: u16,
    /// Where the gateway listens.
    pub bind: BindMode,
    /// How clients authenticate.
    pub auth: Auth,
    /// Whether the config lock is skipped.
    pub allow_multi: bool,
}

impl ResolvedOptions {
    /// The state lock file (`gateway.lock` in the lock dir).
    pub fn state_lock_path(&self) -> PathBuf {
        self.lock_dir.join(paths::STATE_LOCK_NAME)
    }

    /// The config lock file (`gateway.<hash of the config path>.lock` in the lock dir).
    pub fn config_lock_path(&self) -> PathBuf {
        self.lock_dir
            .join(paths::config_lock_name(&self.config_path))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;

    fn resolve(
        options: &GatewayOptions,
        vars: &[(&str, &str)],
    ) -> Result<ResolvedOptions, GatewayLockError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        options.resolve_with(&|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_under_home() {
        let r = resolve(&GatewayOptions::new(), &[("HOME", "/nonexistent-home")]).unwrap();
        assert_eq!(r.state_dir, Path::new("/nonexistent-home/.openclaw"));
        assert_eq!(
            r.config_path,
            Path::new("/nonexistent-home/.openclaw/openclaw.json")
        );
        assert_eq!(r.port, 18789);
        assert!(
            r.lock_dir
                .ends_with(format!("tmp/openclaw-{}", paths::current_uid()))
        );
        assert!(!r.allow_multi);
    }

    #[test]
    fn environment_and_precedence() {
        let vars = [
            ("HOME", "/h"),
            ("OPENCLAW_HOME", "~/oc"),
            ("OPENCLAW_STATE_DIR", " ~/state "),
            ("OPENCLAW_CONFIG_PATH", "/etc/oc.json"),
            ("OPENCLAW_GATEWAY_PORT", "[::1]:3000"),
            ("OPENCLAW_ALLOW_MULTI_GATEWAY", "1"),
        ];
        let r = resolve(&GatewayOptions::new(), &vars).unwrap();
        assert_eq!(r.state_dir, Path::new("/h/oc/state"));
        assert_eq!(r.config_path, Path::new("/etc/oc.json"));
        assert_eq!(r.port, 3000);
        assert!(r.allow_multi);
        let explicit = GatewayOptions::new()
            .port(4000)
            .state_dir("/s")
            .allow_multi(false);
        let r = resolve(&explicit, &vars).unwrap();
        assert_eq!(
            (r.port, r.state_dir.as_path(), r.allow_multi),
            (4000, Path::new("/s"), false)
        );
    }

    #[test]
    fn profiles() {
        let r = resolve(&GatewayOptions::new().profile("rescue"), &[("HOME", "/h")]).unwrap();
        assert_eq!(r.state_dir, Path::new("/h/.openclaw-rescue"));
        assert_eq!(
            r.config_path,
            Path::new("/h/.openclaw-rescue/openclaw.json")
        );
        assert_eq!(r.port, 23532);
        let r = resolve(&GatewayOptions::new().dev(true), &[("HOME", "/h")]).unwrap();
        assert_eq!(
            (r.port, r.state_dir.as_path()),
            (19001, Path::new("/h/.openclaw-dev"))
        );
        let r = resolve(&GatewayOptions::new().profile("default"), &[("HOME", "/h")]).unwrap();
        assert_eq!(r.port, 18789);
        let err = resolve(&GatewayOptions::new().dev(true).profile("x"), &[]).unwrap_err();
        assert_eq!(err.to_string(), "Cannot combine --dev with --profile");
    }

    #[test]
    fn bad_values_are_named() {
        let err = resolve(
            &GatewayOptions::new(),
            &[("OPENCLAW_GATEWAY_PORT", "99999")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"99999\""), "{err}");
        let err = resolve(&GatewayOptions::new().bind(BindMode::Lan), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Refusing to bind gateway to lan without auth."
        );
        let lan = GatewayOptions::new()
            .bind(BindMode::Lan)
            .auth(Auth::Token("t".into()));
        assert!(resolve(&lan, &[]).is_ok());
    }

    /// Inside the App Sandbox only a state dir given explicitly is used: (options, the
    /// environment, refused?).
    #[test]
    fn app_sandbox_needs_an_explicit_state_dir() {
        const SANDBOX: (&str, &str) = ("APP_SANDBOX_CONTAINER_ID", "com.example.App");
        const HOME: (&str, &str) = ("HOME", "/Users/u/Library/Containers/com.example.App/Data");
        const STATE_DIR: (&str, &str) = ("OPENCLAW_STATE_DIR", "/Users/u/.openclaw");
        let from_env = || GatewayOptions {
            use_env: true,
            ..GatewayOptions::default()
        };
        type Case = (GatewayOptions, Vec<(&'static str, &'static str)>, bool);
        let cases: Vec<Case> = vec![
            // Not sandboxed: the defaults are fine.
            (GatewayOptions::new(), vec![HOME], false),
            (
                GatewayOptions::new(),
                vec![("APP_SANDBOX_CONTAINER_ID", " "), HOME],
                false,
            ),
            // Sandboxed: the defaults, a profile or the dev profile live in the container.
            (GatewayOptions::new(), vec![SANDBOX, HOME], true),
            (from_env(), vec![SANDBOX, HOME], true),
            (
                GatewayOptions::new().profile("work"),
                vec![SANDBOX, HOME],
                true,
            ),
            (GatewayOptions::new().dev(true), vec![SANDBOX, HOME], true),
            // A lock dir alone is not enough: the config path still comes from the container.
            (
                GatewayOptions::new().lock_dir("/tmp/l"),
                vec![SANDBOX, HOME],
                true,
            ),
            // OPENCLAW_STATE_DIR counts only where the environment is read.
            (GatewayOptions::new(), vec![SANDBOX, HOME, STATE_DIR], true),
            (from_env(), vec![SANDBOX, HOME, STATE_DIR], false),
            (
                from_env(),
                vec![SANDBOX, HOME, ("OPENCLAW_STATE_DIR", " ")],
                true,
            ),
            // The option, whatever it names.
            (
                GatewayOptions::new().state_dir("/Users/u/.openclaw"),
                vec![SANDBOX, HOME],
                false,
            ),
            (
                GatewayOptions::new().state_dir("/c/Data/state"),
                vec![SANDBOX, HOME],
                false,
            ),
        ];
        for (options, vars, refused) in cases {
            let map: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let env = |name: &str| map.get(name).cloned();
            let resolved = options.resolve_with(&env).unwrap();
            let checked = options.check_app_sandbox_with(&env, &resolved);
            assert_eq!(checked.is_err(), refused, "{options:?} {vars:?}");
            if let Err(err) = checked {
                let message = err.to_string();
                assert!(
                    matches!(&err, GatewayLockError::SandboxedStateDir { container_id, .. } if container_id == "com.example.App"),
                    "{err:?}"
                );
                assert!(
                    message.contains(&resolved.state_dir.display().to_string()),
                    "{message}"
                );
                assert!(message.contains("OPENCLAW_STATE_DIR"), "{message}");
                assert!(
                    message.contains(
                        "com.apple.security.temporary-exception.files.home-relative-path.read-write"
                    ),
                    "{message}"
                );
            }
        }
    }
}
