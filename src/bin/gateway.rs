//! The `gateway` command: a thin host of the library that runs the gateway as a service.

#[path = "gateway/methods.rs"]
mod methods;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use gateway::supervisor::{self, ConflictAction, ConflictPolicy, Supervisor};
use gateway::{
    Auth, BindMode, ClusterOptions, ControlUiOptions, Gateway, GatewayLock, GatewayLockError,
    GatewayOptions, GatewayState, Handlers, LogLevel, Logger, ProtocolOptions, ServeOptions,
    StateHandler,
};

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "Run the OpenClaw gateway: one per config and per port on this host"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Take the gateway lock, bind, and serve until SIGINT or SIGTERM.
    Run(Box<RunArgs>),
    /// Show the gateway that holds the lock, without changing anything.
    Status(StatusArgs),
    /// Remove the lock of a gateway that is gone; one on another machine only with --force.
    Unlock(UnlockArgs),
}

#[derive(Args)]
struct Target {
    /// Port (default: OPENCLAW_GATEWAY_PORT, the profile's port, else 18789).
    #[arg(long)]
    port: Option<u16>,
    /// A named profile: state in ~/.openclaw-NAME, its own port.
    #[arg(long, value_name = "NAME", conflicts_with = "dev")]
    profile: Option<String>,
    /// The dev profile (port 19001).
    #[arg(long)]
    dev: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// Where to listen.
    #[arg(long, value_enum, default_value_t = BindArg::Loopback)]
    bind: BindArg,
    /// The host for `--bind custom`.
    #[arg(long, required_if_eq("bind", "custom"))]
    host: Option<String>,
    /// How WebSocket clients authenticate (default: from OPENCLAW_GATEWAY_TOKEN/PASSWORD).
    #[arg(long, value_enum)]
    auth: Option<AuthArg>,
    /// The token for `--auth token` (default: OPENCLAW_GATEWAY_TOKEN).
    #[arg(long)]
    token: Option<String>,
    /// The password for `--auth password` (default: OPENCLAW_GATEWAY_PASSWORD).
    #[arg(long)]
    password: Option<String>,
    /// Skip the per-config lock (several gateways on one config, on different ports).
    #[arg(long)]
    allow_multi: bool,
    /// The version clients are told in `hello-ok` (default: this program's own), for a host
    /// that speaks for another product (e.g. the OpenClaw release it stands in for).
    #[arg(long, value_name = "VERSION")]
    server_version: Option<String>,
    /// Serve OpenClaw's Control UI from this directory (a built UI: `dist/control-ui` of the
    /// openclaw package) on the gateway's port.
    #[arg(long, value_name = "DIR")]
    control_ui: Option<std::path::PathBuf>,
    /// Where the Control UI is mounted (`gateway.controlUi.basePath`; default the root).
    #[arg(long, value_name = "P", requires = "control_ui")]
    base_path: Option<String>,
    /// Cluster mode: one gateway per config across machines, elected in etcd
    /// (`etcd=http://a:2379,http://b:2379`). The others stand by and one takes over when the
    /// leader stops or dies.
    #[arg(long, value_name = "etcd=URL,...")]
    cluster: Option<String>,
    /// The cluster's name (default: from the config path, like the config lock's).
    #[arg(long, value_name = "N", requires = "cluster")]
    cluster_name: Option<String>,
    /// The cluster lease's TTL: a dead leader is replaced about this long after it died.
    #[arg(long, value_name = "DURATION", requires = "cluster", value_parser = humantime::parse_duration)]
    cluster_ttl: Option<Duration>,
    /// Log more.
    #[arg(long, short)]
    verbose: bool,
    /// Test knobs: lock re-check interval, supervised retry interval and window, lock timeout.
    #[arg(long, hide = true)]
    lock_recheck_ms: Option<u64>,
    #[arg(long, hide = true)]
    supervised_retry_ms: Option<u64>,
    #[arg(long, hide = true)]
    supervised_window_ms: Option<u64>,
    #[arg(long, hide = true)]
    lock_timeout_ms: Option<u64>,
    /// Test knob: the `tick` interval (default 30 s), so a client's tick watch can be seen
    /// through in seconds.
    #[arg(long, hide = true)]
    tick_interval_ms: Option<u64>,
}

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    target: Target,
    /// Also show the cluster's leader, read from this store (`etcd=URL,...`).
    #[arg(long, value_name = "etcd=URL,...")]
    cluster: Option<String>,
    /// The cluster's name (default: from the config path).
    #[arg(long, value_name = "N", requires = "cluster")]
    cluster_name: Option<String>,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct UnlockArgs {
    #[command(flatten)]
    target: Target,
    /// Also remove a lock whose holder is on another machine: only once you know that gateway
    /// is gone (its lock file's pid means nothing here). A live gateway's lock on this machine
    /// is never removed.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BindArg {
    Loopback,
    Lan,
    Custom,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AuthArg {
    None,
    Token,
    Password,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Status(args) => status(args),
        Command::Unlock(args) => unlock(args),
    }
}

fn target_options(target: &Target) -> Result<GatewayOptions, GatewayLockError> {
    let mut options = GatewayOptions::from_env()?.dev(target.dev);
    if let Some(port) = target.port {
        options = options.port(port);
    }
    if let Some(profile) = &target.profile {
        options = options.profile(profile);
    }
    options.resolve()?;
    Ok(options)
}

fn run_options(args: &RunArgs) -> Result<GatewayOptions, GatewayLockError> {
    let verbose = args.verbose;
    let mut options = target_options(&args.target)?.logger(Logger::new(move |level, message| {
        // Cluster mode's changes (leading, standing by, resigned) are the service's life.
        if verbose || level >= LogLevel::Warn || message.starts_with("cluster ") {
            eprintln!("gateway: {message}");
        }
    }));
    options = options.bind(match args.bind {
        BindArg::Loopback => BindMode::Loopback,
        BindArg::Lan => BindMode::Lan,
        BindArg::Custom => BindMode::Custom(args.host.clone().unwrap_or_default()),
    });
    let secret = |value: &Option<String>, flag: &str| {
        let variable = format!("OPENCLAW_GATEWAY_{}", flag.to_uppercase());
        value
            .clone()
            .or_else(|| std::env::var(&variable).ok())
            .ok_or_else(|| {
                GatewayLockError::InvalidOption(format!(
                    "--auth {flag} needs --{flag} (or {variable})"
                ))
            })
    };
    match args.auth {
        Some(AuthArg::None) => options = options.auth(Auth::None),
        Some(AuthArg::Token) => options = options.auth(Auth::Token(secret(&args.token, "token")?)),
        Some(AuthArg::Password) => {
            options = options.auth(Auth::Password(secret(&args.password, "password")?))
        }
        None => {}
    }
    if args.allow_multi {
        options = options.allow_multi(true);
    }
    if let Some(ms) = args.lock_recheck_ms {
        options = options.recheck_interval(Duration::from_millis(ms));
    }
    if let Some(ms) = args.lock_timeout_ms {
        options = options.timeout(Duration::from_millis(ms));
    }
    if let Some(spec) = &args.cluster {
        // A service stands by for as long as it takes.
        let cluster = cluster_options(spec, args.cluster_name.as_deref())?
            .ttl(
                args.cluster_ttl
                    .unwrap_or(gateway::cluster::DEFAULT_CLUSTER_TTL),
            )
            .wait(Some(Duration::MAX));
        options = options.cluster(cluster);
    }
    options.resolve()?;
    Ok(options)
}

fn cluster_options(spec: &str, name: Option<&str>) -> Result<ClusterOptions, GatewayLockError> {
    let mut cluster = ClusterOptions::parse(spec)?;
    if let Some(name) = name {
        cluster = cluster.name(name);
    }
    Ok(cluster)
}

fn fail(err: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("Gateway failed to start: {err}");
    ExitCode::FAILURE
}

fn run(args: RunArgs) -> ExitCode {
    let options = match run_options(&args) {
        Ok(options) => options,
        Err(err) => return fail(&err),
    };
    // Before any thread starts: the activation variables are removed from the environment.
    let activated = match supervisor::take_activated_listener() {
        Ok(listener) => listener,
        Err(err) => return fail(&err),
    };
    // The launchd job's label depends on the profile run as (`--profile`, `--dev`).
    let profile = options.resolve().ok().and_then(|resolved| resolved.profile);
    let supervisor = Supervisor::detect_for_profile(profile.as_deref());
    let mut policy = ConflictPolicy::default();
    if let Some(ms) = args.supervised_retry_ms {
        policy.retry_interval = Duration::from_millis(ms);
    }
    if let Some(ms) = args.supervised_window_ms {
        policy.retry_window = Duration::from_millis(ms);
    }
    if args.cluster.is_some() {
        return run_cluster(&args, options, supervisor);
    }
    let started = Instant::now();
    let lock = loop {
        // A failed attempt closes what it was given, so each one gets a duplicate of the
        // socket systemd passed: every retry serves on that socket, never on a port of its own.
        let attempt = match &activated {
            Some(listener) => match listener.try_clone() {
                Ok(listener) => GatewayLock::acquire_with_listener(&options, listener),
                Err(err) => return fail(&err),
            },
            None => GatewayLock::acquire(&options),
        };
        let err = match attempt {
            // The lock holds its own descriptor of the socket; ours would keep it open.
            Ok(lock) => {
                drop(activated);
                break lock;
            }
            Err(err) => err,
        };
        let action = supervisor.and_then(|supervisor| {
            let configured_port = options.resolve().map_or(0, |r| r.port);
            supervisor::on_lock_error(supervisor, &err, configured_port, &policy)
        });
        let Some(action) = action else {
            return fail(&err);
        };
        match action {
            ConflictAction::Exit { code, message } => {
                eprintln!("{message}");
                return ExitCode::from(code as u8);
            }
            ConflictAction::Retry
                if started.elapsed() + policy.retry_interval <= policy.retry_window =>
            {
                let why = match err {
                    GatewayLockError::HeldByOtherHost { .. } => {
                        "its health cannot be checked from here"
                    }
                    _ => "the running gateway is not healthy",
                };
                eprintln!(
                    "gateway: {err}; {why}, retrying in {} ms",
                    policy.retry_interval.as_millis()
                );
                std::thread::sleep(policy.retry_interval);
            }
            ConflictAction::Retry => return fail(&err),
        }
    };
    // Handlers go in before the ready line, so a signal sent on seeing it is never lost.
    let termination = match Termination::install() {
        Ok(termination) => termination,
        Err(err) => return fail(&err),
    };
    let gateway = match start_serving(lock, &args, supervisor, None) {
        Ok(gateway) => gateway,
        Err(err) => return fail(&err),
    };
    termination.wait();
    let _ = supervisor::notify("STOPPING=1");
    gateway.shutdown(Duration::from_secs(5));
    ExitCode::SUCCESS
}

/// How long a fenced leader that cannot reach the store waits before it tries again.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// What ends a cluster member's term as leader.
enum ClusterEvent {
    Terminate,
    LeadershipLost,
}

/// Cluster mode: stand by until this gateway leads, serve until SIGTERM/SIGINT or until it
/// fences itself, then stand by again.
fn run_cluster(
    args: &RunArgs,
    options: GatewayOptions,
    supervisor: Option<Supervisor>,
) -> ExitCode {
    // Signals are caught from the start: a standby stopped while it waits releases its local
    // lock and exits cleanly.
    let termination = match Termination::install() {
        Ok(termination) => termination,
        Err(err) => return fail(&err),
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let options = match options.cluster_options().cloned() {
        Some(cluster) => options.cluster(cluster.cancel_on(Arc::clone(&cancel))),
        None => options,
    };
    let (events, next_event) = std::sync::mpsc::channel();
    {
        let events = events.clone();
        let cancel = Arc::clone(&cancel);
        std::thread::spawn(move || {
            termination.wait();
            cancel.store(true, Ordering::Release);
            let _ = events.send(ClusterEvent::Terminate);
        });
    }
    // A store that cannot be reached fails the first start (a wrong endpoint is said at
    // once), but not a gateway that led and fenced itself: the store it lost (a partition, no
    // quorum) is the reason it fenced, and it stands by until the store answers again.
    let mut has_led = false;
    loop {
        let lock = match GatewayLock::acquire(&options) {
            Ok(lock) => lock,
            Err(GatewayLockError::Cancelled) => return ExitCode::SUCCESS,
            Err(err @ GatewayLockError::ClusterUnavailable { .. }) if has_led => {
                eprintln!(
                    "gateway: {err}; standing by, trying again in {} ms",
                    STORE_RETRY.as_millis()
                );
                match next_event.recv_timeout(STORE_RETRY) {
                    Ok(ClusterEvent::Terminate) => return ExitCode::SUCCESS,
                    // A term that has ended already: nothing more to stop.
                    Ok(ClusterEvent::LeadershipLost) | Err(_) => continue,
                }
            }
            Err(err) => return fail(&err),
        };
        has_led = true;
        let token = lock.fencing_token().unwrap_or_default();
        let lost = events.clone();
        let on_state = StateHandler::new(move |state| {
            if let GatewayState::LeadershipLost { .. } = state {
                let _ = lost.send(ClusterEvent::LeadershipLost);
            }
        });
        let gateway = match start_serving(lock, args, supervisor, Some(on_state)) {
            Ok(gateway) => gateway,
            Err(err) => return fail(&err),
        };
        println!("cluster leader, fencing token {token}");
        match next_event.recv() {
            Ok(ClusterEvent::LeadershipLost) => {
                gateway.shutdown(Duration::from_secs(1));
                eprintln!("gateway: no longer the cluster's leader; standing by");
            }
            Ok(ClusterEvent::Terminate) | Err(_) => {
                let _ = supervisor::notify("STOPPING=1");
                gateway.shutdown(Duration::from_secs(5));
                return ExitCode::SUCCESS;
            }
        }
    }
}

/// Serves on `lock` as `gateway run` does, prints the listening line (and the Control UI's),
/// and tells the service manager it is ready.
fn start_serving(
    lock: GatewayLock,
    args: &RunArgs,
    supervisor: Option<Supervisor>,
    on_state: Option<StateHandler>,
) -> Result<Gateway, GatewayLockError> {
    let version = args
        .server_version
        .clone()
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
    let control_ui = args.control_ui.as_ref().map(|root| {
        ControlUiOptions::new(root).base_path(args.base_path.as_deref().unwrap_or_default())
    });
    let facts = methods::Facts {
        resolved: lock.resolved().clone(),
        port: lock.port(),
        version: version.clone(),
        started: Instant::now(),
        control_ui: control_ui.clone(),
    };
    let mut serve = ServeOptions {
        protocol: ProtocolOptions {
            server_version: version,
            ..ProtocolOptions::default()
        },
        handlers: methods::register(Handlers::new(), facts),
        ..ServeOptions::default()
    };
    if let Some(ms) = args.tick_interval_ms {
        serve.protocol.tick_interval = Duration::from_millis(ms);
    }
    let token = match &lock.resolved().auth {
        Auth::Token(token) => Some(token.clone()),
        _ => None,
    };
    serve.http.control_ui = control_ui;
    serve.on_state = on_state;
    let serve_ui = serve.http.control_ui.clone();
    let gateway = Gateway::serve(lock, serve)?;
    let primary = gateway.local_addrs()[0];
    println!(
        "gateway listening on ws://{primary} (pid {})",
        std::process::id()
    );
    if let Some(ui) = &serve_ui {
        println!(
            "Control UI: {}",
            dashboard_line(primary, ui, token.as_deref(), supervisor)
        );
    }
    if let Err(err) = supervisor::notify("READY=1") {
        eprintln!("gateway: could not notify the service manager: {err}");
    }
    Ok(gateway)
}

/// What follows `Control UI: `: the URL that signs in, with the token, only for a person at a
/// terminal. Under a service manager, or with stdout a pipe or a file, stdout is a log (the
/// journal, launchd's file), which must not keep the secret: the URL then comes without it,
/// and the line says how to add it.
fn dashboard_line(
    listening: std::net::SocketAddr,
    ui: &ControlUiOptions,
    token: Option<&str>,
    supervisor: Option<Supervisor>,
) -> String {
    use std::io::IsTerminal as _;
    match token {
        Some(token) if supervisor.is_none() && std::io::stdout().is_terminal() => {
            dashboard_url(listening, ui, Some(token))
        }
        Some(_) => format!(
            "{} (add #token=<your gateway token> to sign in; it is not printed where a log \
             would keep it)",
            dashboard_url(listening, ui, None)
        ),
        None => dashboard_url(listening, ui, None),
    }
}

/// The URL that opens the Control UI signed in, in Node's dashboard form
/// (control-ui-links-jhnPjWes.mjs:7-27, control-ui-handoff-DN2qREmd.mjs:78):
/// `http://127.0.0.1:<port><base>/`, and `#token=<token>` in token mode (the app reads the
/// fragment, which never reaches a server or a log).
fn dashboard_url(
    listening: std::net::SocketAddr,
    ui: &ControlUiOptions,
    token: Option<&str>,
) -> String {
    let host = match listening.ip() {
        ip if ip.is_loopback() || ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let mut url = format!("http://{host}:{}{}/", listening.port(), ui.base_path);
    if let Some(token) = token {
        url.push_str("#token=");
        for b in token.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
                url.push(b as char);
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
    }
    url
}

/// SIGINT and SIGTERM, caught from the moment `install` returns.
struct Termination {
    runtime: tokio::runtime::Runtime,
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Termination {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let _context = runtime.enter();
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            runtime,
        })
    }

    /// Blocks until one of the two arrives.
    fn wait(mut self) {
        self.runtime.block_on(async {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
        });
    }
}

fn status(args: StatusArgs) -> ExitCode {
    const EXIT_NOT_RUNNING: u8 = 3;
    let options = target_options(&args.target).and_then(|options| match &args.cluster {
        Some(spec) => Ok(options.cluster(cluster_options(spec, args.cluster_name.as_deref())?)),
        None => Ok(options),
    });
    let status = match options.and_then(|options| gateway::status(&options)) {
        Ok(status) => status,
        Err(err) => {
            eprintln!("gateway status failed: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Cluster mode: a local holder that is not the cluster's leader stands by, as it should.
    let standby = status.running
        && !status.on_other_host
        && status
            .cluster
            .as_ref()
            .and_then(|cluster| cluster.leader.as_ref())
            .is_some_and(|leader| {
                status.pid != Some(leader.pid) || status.host.as_deref() != Some(&leader.host)
            });
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("status serializes")
        );
    } else {
        let pid = status
            .pid
            .map(|p| format!(" (pid {p})"))
            .unwrap_or_default();
        let url = format!("ws://127.0.0.1:{}", status.port);
        let host = status.host.as_deref().unwrap_or("another machine");
        match (status.running, status.healthy) {
            _ if status.on_other_host => println!(
                "gateway running on host {host}{pid}, another machine: its health cannot be checked from here; if it is gone, run `gateway unlock --force`"
            ),
            _ if standby => println!(
                "gateway standing by{pid}: another gateway leads the cluster (below) and this one takes over if it goes"
            ),
            (true, true) => println!("gateway running{pid} on {url}, healthy"),
            (true, false) => println!(
                "gateway running{pid} but {url}/healthz does not answer (starting, stopping or stuck)"
            ),
            (false, true) => println!(
                "no gateway holds this config's lock, but {url}/healthz answers: another gateway (another config or state dir) has the port"
            ),
            (false, false) if status.stale => println!(
                "gateway not running; a stale lock{pid} is left and the next start reclaims it"
            ),
            (false, false) => println!("gateway not running"),
        }
        println!("lock dir on {}", status.ground.describe());
        if let Some(cluster) = &status.cluster {
            match (&cluster.leader, &cluster.error) {
                (_, Some(error)) => println!("cluster {}: {error}", cluster.name),
                (Some(leader), None) => println!(
                    "cluster {}: leader is host {} (pid {}, port {}), fencing token {}, since {}",
                    cluster.name,
                    leader.host,
                    leader.pid,
                    leader.port,
                    leader.fencing_token,
                    humantime::format_rfc3339_millis(
                        std::time::UNIX_EPOCH + Duration::from_millis(leader.since_ms)
                    )
                ),
                (None, None) => println!("cluster {}: no leader", cluster.name),
            }
        }
    }
    match (status.running, status.healthy) {
        (true, true) => ExitCode::SUCCESS,
        _ if standby => ExitCode::SUCCESS,
        (false, false) => ExitCode::from(EXIT_NOT_RUNNING),
        _ => ExitCode::FAILURE,
    }
}

fn unlock(args: UnlockArgs) -> ExitCode {
    let removed = match target_options(&args.target)
        .and_then(|options| gateway::unlock(&options, args.force))
    {
        Ok(removed) => removed,
        Err(err) => {
            eprintln!("gateway unlock: {err}");
            return ExitCode::FAILURE;
        }
    };
    if removed.is_empty() {
        println!("no gateway lock to remove");
    }
    for lock in removed {
        let pid = lock.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
        let host = match (&lock.host, lock.on_other_host) {
            (Some(host), true) => format!(" on host {host} (another machine)"),
            (Some(host), false) => format!(" on host {host} (this machine, gone)"),
            (None, _) => " (gone)".to_owned(),
        };
        println!(
            "removed {}: held by gateway{pid}{host}, locked {} ago",
            lock.lock_path.display(),
            humantime::format_duration(Duration::from_secs(lock.age.as_secs()))
        );
    }
    ExitCode::SUCCESS
}
