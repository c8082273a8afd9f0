//! Cluster mode's figures (issue 14), on a real 3-member etcd (Debian's `etcd-server`, started
//! by `tests/common/etcd.rs` on loopback ports) and the real `gateway` binary, each "host" a
//! `gateway run --cluster …` on a state dir of its own:
//!
//! - (a) failover after SIGKILL of the leader (TTL 5 s): from the kill to the standby's first
//!   `/readyz` 200, next to the goal (TTL + 1 s) and its anchors, Kubernetes' leader
//!   election (up to its 15 s lease + 2 s retry) and Patroni (about its 30 s TTL);
//! - (b) failover after a graceful stop: from SIGTERM to the standby's first `/readyz` 200, and
//!   whether the old leader ever answered 200 again after that;
//! - (c) what holding the lease costs an idle leader (and a standby) per minute: CPU time
//!   (user + system, all threads, on the process's CPU-time clock: `/proc/<pid>/stat`'s
//!   utime + stime to the nanosecond) above a gateway without cluster mode over the same slices
//!   of time, and the TCP payload bytes to and from etcd (HTTP/2 frames, TCP/IP headers not
//!   counted), through a proxy of this bench between the gateway and each member;
//! - (d) the time cluster mode adds to an in-process `GatewayLock::acquire` on loopback (and to
//!   its release, which revokes the lease), rounds of both taken in turn.
//!
//! `cargo bench --bench cluster --features cluster-etcd` runs the full set (about three and a
//! half minutes, most of it waiting out leases and the idle minute); `-- --quick` runs a few rounds
//! of each and a 6-second idle window, to check in CI that the bench still works; figure
//! letters (`-- a c`) run only those. Targets that are missed are reported, not failed: the
//! bench fails only when a gateway misbehaves (no takeover within TTL + 10 s, an exit other
//! than 0 after SIGTERM, a standby that never stands by).
//!
//! Every gateway gets a scrubbed environment and a temp `HOME`, and is killed on the way out,
//! panics included; etcd's members die with the bench. Only loopback addresses are used.

/// The integration tests' isolated env, test ports and the etcd cluster.
#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::etcd::EtcdCluster;
use gateway::cluster::ClusterOptions;
use gateway::{GatewayLock, Logger};

/// The lease TTL of every figure: the default, which the goal is stated for.
const TTL: Duration = Duration::from_secs(5);
/// How long a standby may take to take over before the bench calls it broken.
const TAKEOVER_DEADLINE: Duration = Duration::from_secs(15);
/// How long a gateway may take to lead or to stand by after its start.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// Between two `/readyz` samples while waiting for a takeover.
const SAMPLE_EVERY: Duration = Duration::from_millis(1);
/// Kubernetes' leader election, worst case: a 15 s lease, then a 2 s retry period.
const KUBERNETES_WORST: Duration = Duration::from_secs(17);
/// Patroni: a dead leader's key expires after its 30 s TTL.
const PATRONI_TTL: Duration = Duration::from_secs(30);

struct Plan {
    quick: bool,
    /// Figure letters to run (`a`..`d`); empty runs them all.
    only: Vec<String>,
    crash_rounds: usize,
    graceful_rounds: usize,
    /// The idle window is cut into slices; each slice is one sample of (c).
    idle_slices: usize,
    idle_slice: Duration,
    acquire_rounds: usize,
}

impl Plan {
    /// `[--quick] [a|b|c|d ...]`; cargo's own `--bench` and other flags are ignored.
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let only = args
            .iter()
            .filter(|a| !a.starts_with('-'))
            .cloned()
            .collect();
        if args.iter().any(|arg| arg == "--quick") {
            Self {
                quick: true,
                only,
                crash_rounds: 2,
                graceful_rounds: 3,
                idle_slices: 3,
                idle_slice: Duration::from_secs(2),
                acquire_rounds: 20,
            }
        } else {
            Self {
                quick: false,
                only,
                crash_rounds: 15,
                graceful_rounds: 30,
                // One minute, as six slices of ten seconds.
                idle_slices: 6,
                idle_slice: Duration::from_secs(10),
                acquire_rounds: 300,
            }
        }
    }

    fn runs(&self, figure: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|f| f == figure)
    }
}

fn main() {
    let plan = Plan::from_args();
    println!(
        "cluster bench ({}) on {}, commit {}",
        if plan.quick { "quick" } else { "full" },
        machine(),
        commit()
    );
    let load_before = loadavg();
    let started = Instant::now();
    // Started and kept on this thread: its members die with it (PR_SET_PDEATHSIG).
    let etcd = EtcdCluster::start(3);
    println!(
        "   etcd {} with 3 members at {}",
        etcd_version(),
        etcd.endpoints().join(",")
    );
    let mut rows = Vec::new();

    if plan.runs("a") {
        section("(a) SIGKILL of the leader → the standby's /readyz 200, TTL 5 s");
        rows.extend(crash_failover(&plan, &etcd));
    }
    if plan.runs("b") {
        section("(b) SIGTERM to the leader → the standby's /readyz 200");
        rows.extend(graceful_failover(&plan, &etcd));
    }
    if plan.runs("c") {
        section("(c) an idle leader's (and standby's) lease: CPU and bytes per minute");
        rows.extend(renewal_cost(&plan, &etcd));
    }
    if plan.runs("d") {
        section("(d) in-process GatewayLock::acquire with cluster options vs without");
        rows.extend(acquire_added(&plan, &etcd));
    }

    println!();
    println!("{}", table(&rows));
    println!(
        "machine: {}\ncommit: {}\nload average before: {load_before}; after: {}\nbench wall time: {:.1} s",
        machine(),
        commit(),
        loadavg(),
        started.elapsed().as_secs_f64()
    );
}

fn section(name: &str) {
    println!("-- {name}");
}

// ---------------------------------------------------------------------------------------------
// (a) and (b): failover
// ---------------------------------------------------------------------------------------------

/// (a) Two hosts on one cluster key; each round SIGKILLs the leader (at a phase of its renewal
/// interval of its own) and times the standby's takeover, then starts the dead one again as the
/// next round's standby.
fn crash_failover(plan: &Plan, etcd: &EtcdCluster) -> Vec<Row> {
    let samples = failover_rounds(etcd, "bench-crash", plan.crash_rounds, Stop::Kill).takeovers;
    let median = median(&samples);
    println!(
        "   median {:.2} s: {:.2}× Kubernetes' worst case (15 s lease + 2 s retry), {:.2}× Patroni's 30 s TTL",
        median,
        median / KUBERNETES_WORST.as_secs_f64(),
        median / PATRONI_TTL.as_secs_f64()
    );
    let ratio_to = |anchor: Duration| -> Vec<f64> {
        samples.iter().map(|s| s / anchor.as_secs_f64()).collect()
    };
    vec![
        Row::new(
            "(a) SIGKILL of the leader → the standby's /readyz 200 (TTL 5 s)",
            Unit::Time,
            &samples,
        )
        .at_most((TTL + Duration::from_secs(1)).as_secs_f64()),
        Row::new(
            "(a) the same ÷ Kubernetes' worst case (15 s lease + 2 s retry = 17 s)",
            Unit::Ratio,
            &ratio_to(KUBERNETES_WORST),
        )
        .at_most(1.0),
        Row::new(
            "(a) the same ÷ Patroni's TTL (30 s)",
            Unit::Ratio,
            &ratio_to(PATRONI_TTL),
        )
        .at_most(1.0),
    ]
}

/// (b) As (a), with SIGTERM: the leader resigns (revokes its lease) as it stops. The old leader
/// is sampled too, until it exits: it must never answer `/readyz` 200 once the standby has.
fn graceful_failover(plan: &Plan, etcd: &EtcdCluster) -> Vec<Row> {
    let rounds = failover_rounds(etcd, "bench-graceful", plan.graceful_rounds, Stop::Term);
    println!(
        "   old leader sampled {} times after the new one's first /readyz 200: {} answered 200",
        rounds.old_samples_after, rounds.old_ready_after
    );
    vec![
        Row::new(
            "(b) SIGTERM to the leader → the standby's /readyz 200",
            Unit::Time,
            &rounds.takeovers,
        )
        .at_most(0.200),
        Row {
            name: format!(
                "(b) the old leader's /readyz 200s after the new one's first (of {} samples)",
                rounds.old_samples_after
            ),
            unit: Unit::Count,
            median: rounds.old_ready_after as f64,
            range: None,
            n: rounds.takeovers.len(),
            at_most: Some(0.0),
        },
    ]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Kill,
    Term,
}

struct Rounds {
    /// Seconds from the stop to the standby's first `/readyz` 200, one per round.
    takeovers: Vec<f64>,
    /// `/readyz` samples of the old leader taken after the new one answered 200, and how many
    /// of them were 200.
    old_samples_after: usize,
    old_ready_after: usize,
}

fn failover_rounds(etcd: &EtcdCluster, name: &str, rounds: usize, stop: Stop) -> Rounds {
    let cluster = Some((etcd.cluster_arg(), name.to_owned()));
    let mut hosts = [Host::new(cluster.clone()), Host::new(cluster)];
    hosts[0].start();
    hosts[0].wait_ready();
    hosts[1].start();
    hosts[1].wait_line("standing by");
    let mut result = Rounds {
        takeovers: Vec::with_capacity(rounds),
        old_samples_after: 0,
        old_ready_after: 0,
    };
    // The library's own rule (TTL / 5), from options that are never used to connect.
    let interval = ClusterOptions::etcd(["http://127.0.0.1:2379"])
        .ttl(TTL)
        .renew_interval();
    let mut leader = 0;
    for round in 0..rounds {
        let standby = 1 - leader;
        // A leader that has just been elected (or renewed) holds a whole TTL, one that is about
        // to renew a TTL less one renewal interval: the rounds stop the leader at phases spread
        // evenly over an interval, after its first renewal, so the median is a fair one.
        let phase = (round as f64 + 0.5) / rounds as f64;
        std::thread::sleep(interval + interval.mul_f64(phase));
        let begin = Instant::now();
        match stop {
            Stop::Kill => hosts[leader].kill(),
            Stop::Term => hosts[leader].signal(libc::SIGTERM),
        }
        loop {
            if hosts[standby].ready() {
                break;
            }
            if begin.elapsed() > TAKEOVER_DEADLINE {
                panic!(
                    "no takeover within {TAKEOVER_DEADLINE:?} of the leader's stop\n{}\n{}\n{}",
                    hosts[leader].output(),
                    hosts[standby].output(),
                    etcd.logs()
                );
            }
            std::thread::sleep(SAMPLE_EVERY);
        }
        let took = begin.elapsed();
        result.takeovers.push(took.as_secs_f64());
        if stop == Stop::Term {
            // The old leader may still be draining: sample it until it has exited.
            while !hosts[leader].exited() {
                result.old_samples_after += 1;
                if hosts[leader].ready() {
                    result.old_ready_after += 1;
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            hosts[leader].expect_clean_exit();
        }
        println!("   {:.1} ms", took.as_secs_f64() * 1e3);
        hosts[leader].start();
        hosts[leader].wait_line("standing by");
        leader = standby;
    }
    for host in &mut hosts {
        host.signal(libc::SIGTERM);
        host.expect_clean_exit();
    }
    result
}

// ---------------------------------------------------------------------------------------------
// (c) The lease's cost
// ---------------------------------------------------------------------------------------------

/// (c) A leader and a standby, each reaching etcd only through counting proxies of this bench
/// (one per member), and a gateway without cluster mode as the floor, all idle. Each slice of
/// the window is one sample: CPU time above the floor's in the same slice, and bytes through
/// the proxies, both scaled to a minute.
fn renewal_cost(plan: &Plan, etcd: &EtcdCluster) -> Vec<Row> {
    let leader_traffic = Arc::new(Traffic::default());
    let standby_traffic = Arc::new(Traffic::default());
    let through = |traffic: &Arc<Traffic>| {
        let proxies: Vec<String> = etcd
            .endpoints()
            .iter()
            .map(|endpoint| {
                let port = start_proxy(member_address(endpoint), Arc::clone(traffic));
                format!("http://127.0.0.1:{port}")
            })
            .collect();
        Some((
            format!("etcd={}", proxies.join(",")),
            "bench-idle".to_owned(),
        ))
    };
    let mut leader = Host::new(through(&leader_traffic));
    let mut standby = Host::new(through(&standby_traffic));
    let mut floor = Host::new(None);
    leader.start();
    leader.wait_ready();
    standby.start();
    standby.wait_line("standing by");
    floor.start();
    floor.wait_ready();
    // Past the starts' own work (connections, the first watch).
    std::thread::sleep(Duration::from_secs(1));

    let per_minute = 60.0 / plan.idle_slice.as_secs_f64();
    let ticks_before = [leader.cpu_ticks(), standby.cpu_ticks(), floor.cpu_ticks()];
    let (mut leader_cpu, mut standby_cpu, mut floor_cpu) = (vec![], vec![], vec![]);
    let (mut leader_bytes, mut standby_bytes) = (vec![], vec![]);
    let mut leader_split = (0, 0);
    for _ in 0..plan.idle_slices {
        let cpu_before = [leader.cpu(), standby.cpu(), floor.cpu()];
        let bytes_before = [leader_traffic.snapshot(), standby_traffic.snapshot()];
        std::thread::sleep(plan.idle_slice);
        let cpu = [leader.cpu(), standby.cpu(), floor.cpu()]
            .iter()
            .zip(cpu_before)
            .map(|(after, before)| after - before)
            .collect::<Vec<_>>();
        let [leader_after, standby_after] = [leader_traffic.snapshot(), standby_traffic.snapshot()];
        floor_cpu.push(cpu[2] * per_minute);
        leader_cpu.push((cpu[0] - cpu[2]) * per_minute);
        standby_cpu.push((cpu[1] - cpu[2]) * per_minute);
        let sent = leader_after.0 - bytes_before[0].0;
        let received = leader_after.1 - bytes_before[0].1;
        leader_split = (leader_split.0 + sent, leader_split.1 + received);
        leader_bytes.push((sent + received) as f64 * per_minute);
        standby_bytes.push(
            ((standby_after.0 - bytes_before[1].0) + (standby_after.1 - bytes_before[1].1)) as f64
                * per_minute,
        );
    }
    let window = plan.idle_slice * plan.idle_slices as u32;
    let ticks = [leader.cpu_ticks(), standby.cpu_ticks(), floor.cpu_ticks()]
        .iter()
        .zip(ticks_before)
        .map(|(after, before)| format!("{:.0} ms", (after - before) * 1e3))
        .collect::<Vec<_>>();
    println!(
        "   over the {} s window the leader sent {} B to etcd and received {} B; /proc/<pid>/stat's utime + stime ({} ms ticks) over it: leader {}, standby {}, floor {}",
        window.as_secs(),
        leader_split.0,
        leader_split.1,
        1000 / clock_ticks_per_second(),
        ticks[0],
        ticks[1],
        ticks[2]
    );
    assert!(leader.ready(), "the leader still serves after the window");
    assert!(!standby.ready(), "the standby still stands by");
    for host in [&mut leader, &mut standby, &mut floor] {
        host.signal(libc::SIGTERM);
        host.expect_clean_exit();
    }
    let slice = plan.idle_slice.as_secs();
    vec![
        Row::new(
            format!(
                "(c) idle leader's CPU per minute above the floor ({slice} s slices × {per_minute:.0})"
            ),
            Unit::Time,
            &leader_cpu,
        ),
        Row::new(
            "(c) idle leader's TCP payload to + from etcd per minute",
            Unit::Bytes,
            &leader_bytes,
        ),
        Row::new(
            "(c) standby's CPU per minute above the floor",
            Unit::Time,
            &standby_cpu,
        ),
        Row::new(
            "(c) standby's TCP payload to + from etcd per minute",
            Unit::Bytes,
            &standby_bytes,
        ),
        Row::new(
            "(c) floor: the same gateway without cluster mode, CPU per minute",
            Unit::Time,
            &floor_cpu,
        ),
    ]
}

/// Bytes that went through a gateway's proxies: to etcd, and back.
#[derive(Default)]
struct Traffic {
    to_etcd: AtomicU64,
    from_etcd: AtomicU64,
}

impl Traffic {
    fn snapshot(&self) -> (u64, u64) {
        (
            self.to_etcd.load(Ordering::Relaxed),
            self.from_etcd.load(Ordering::Relaxed),
        )
    }
}

/// `http://127.0.0.1:2379` → its socket address.
fn member_address(endpoint: &str) -> SocketAddr {
    endpoint
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|err| panic!("etcd endpoint {endpoint:?} is not host:port: {err}"))
}

/// A TCP proxy on a loopback port to `member` that counts the bytes each way in `traffic`.
/// Runs until the bench exits.
fn start_proxy(member: SocketAddr, traffic: Arc<Traffic>) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a proxy");
    let port = listener.local_addr().expect("proxy address").port();
    std::thread::spawn(move || {
        for client in listener.incoming().filter_map(Result::ok) {
            let Ok(upstream) = TcpStream::connect(member) else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (Ok(client_read), Ok(upstream_read)) = (client.try_clone(), upstream.try_clone())
            else {
                continue;
            };
            let up = Arc::clone(&traffic);
            std::thread::spawn(move || pump(client_read, upstream, &up.to_etcd));
            let down = Arc::clone(&traffic);
            std::thread::spawn(move || pump(upstream_read, client, &down.from_etcd));
        }
    });
    port
}

/// Copies `from` to `to` until either side ends, adding every chunk's length to `count`; then
/// passes the end on.
fn pump(mut from: TcpStream, mut to: TcpStream, count: &AtomicU64) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

// ---------------------------------------------------------------------------------------------
// (d) Acquire
// ---------------------------------------------------------------------------------------------

/// (d) `GatewayLock::acquire` on one state dir with an ephemeral port, without and with cluster
/// options, in turn, each lock released (dropped) before the next acquire; the release is timed
/// too, since with cluster options it revokes the lease.
fn acquire_added(plan: &Plan, etcd: &EtcdCluster) -> Vec<Row> {
    let env = common::TestEnv::new();
    let plain = env.options().port(0).logger(Logger::new(|_, _| {}));
    let clustered = plain
        .clone()
        .cluster(ClusterOptions::etcd(etcd.endpoints()).name("bench-acquire"));
    let timed = |options: &gateway::GatewayOptions| {
        let begin = Instant::now();
        let lock = GatewayLock::acquire(options).expect("acquire");
        let acquired = begin.elapsed();
        let token = lock.fencing_token();
        let begin = Instant::now();
        drop(lock);
        (acquired.as_secs_f64(), begin.elapsed().as_secs_f64(), token)
    };
    for _ in 0..5 {
        timed(&plain);
        timed(&clustered);
    }
    let (mut plain_acquire, mut plain_release) = (vec![], vec![]);
    let (mut cluster_acquire, mut cluster_release) = (vec![], vec![]);
    let mut added = vec![];
    let mut tokens = vec![];
    for _ in 0..plan.acquire_rounds {
        let (acquire, release, token) = timed(&plain);
        assert_eq!(token, None, "no fencing token without cluster mode");
        plain_acquire.push(acquire);
        plain_release.push(release);
        let (clustered_acquire, release, token) = timed(&clustered);
        tokens.push(token.expect("a fencing token in cluster mode"));
        cluster_acquire.push(clustered_acquire);
        cluster_release.push(release);
        added.push(clustered_acquire - acquire);
    }
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "each new leader's fencing token is larger than the last"
    );
    assert!(
        env.lock_dir_entries().is_empty(),
        "every round released its files: {:?}",
        env.lock_dir_entries()
    );
    vec![
        Row::new(
            "(d) acquire without cluster mode (2 lock files + listeners)",
            Unit::Time,
            &plain_acquire,
        ),
        Row::new(
            "(d) acquire with cluster options (+ etcd client, lease grant, campaign txn)",
            Unit::Time,
            &cluster_acquire,
        ),
        Row::new(
            "(d) added by cluster mode (each round's difference)",
            Unit::Time,
            &added,
        ),
        Row::new(
            "(d) release without cluster mode",
            Unit::Time,
            &plain_release,
        ),
        Row::new(
            "(d) release with cluster options (lease revoked)",
            Unit::Time,
            &cluster_release,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Hosts
// ---------------------------------------------------------------------------------------------

/// One "host": a state dir and port of its own, and its `gateway run` while it runs (with
/// `--cluster <store> --cluster-name <name> --cluster-ttl 5s` when `cluster` is given).
struct Host {
    env: common::TestEnv,
    port: u16,
    cluster: Option<(String, String)>,
    process: Option<Child>,
    lines: Option<mpsc::Receiver<String>>,
    /// Every line it printed in this bench, for a failure's message.
    seen: Vec<String>,
}

impl Host {
    fn new(cluster: Option<(String, String)>) -> Self {
        Self {
            env: common::TestEnv::new(),
            port: common::free_port(),
            cluster,
            process: None,
            lines: None,
            seen: Vec::new(),
        }
    }

    fn start(&mut self) {
        assert!(self.process.is_none(), "started twice");
        let port = self.port.to_string();
        let ttl = format!("{}s", TTL.as_secs());
        let mut args = vec!["run", "--port", &port];
        if let Some((store, name)) = &self.cluster {
            args.extend([
                "--cluster",
                store,
                "--cluster-name",
                name,
                "--cluster-ttl",
                &ttl,
            ]);
        }
        let mut child = self
            .env
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gateway run");
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        self.seen
            .push(format!("--- started: gateway {}", args.join(" ")));
        self.process = Some(child);
        self.lines = Some(rx);
    }

    /// Waits for a line of its output that contains `needle`.
    fn wait_line(&mut self, needle: &str) {
        let deadline = Instant::now() + START_DEADLINE;
        let lines = self.lines.as_ref().expect("running");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!(
                    "the gateway printed no {needle:?} within {START_DEADLINE:?}\n{}",
                    self.output()
                ),
            }
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        while !self.ready() {
            if Instant::now() >= deadline || self.exited() {
                panic!(
                    "the gateway did not answer /readyz 200 within {START_DEADLINE:?}\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `GET /readyz` answers 200: this gateway serves as leader.
    fn ready(&self) -> bool {
        common::http(self.port, "GET", "/readyz").is_ok_and(|(status, _, _)| status == 200)
    }

    fn pid(&self) -> u32 {
        self.process.as_ref().expect("running").id()
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling our own child, which has not been reaped.
        unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
    }

    /// SIGKILL, and reap it.
    fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.drain_lines();
    }

    fn exited(&mut self) -> bool {
        self.process
            .as_mut()
            .is_none_or(|child| child.try_wait().ok().flatten().is_some())
    }

    /// Waits (10 s at most) for its exit, which must be 0.
    fn expect_clean_exit(&mut self) {
        let mut child = self.process.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                break child.wait().expect("reaped");
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        self.drain_lines();
        if !status.success() {
            panic!(
                "the gateway exited {status} after SIGTERM\n{}",
                self.output()
            );
        }
    }

    fn drain_lines(&mut self) {
        if let Some(lines) = self.lines.take() {
            // The readers end with the process; give them a moment to pass the last lines on.
            while let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
                self.seen.push(line);
            }
        }
    }

    /// What it printed, for a failure's message.
    fn output(&mut self) -> String {
        if let Some(lines) = &self.lines {
            self.seen.extend(lines.try_iter());
        }
        format!(
            "--- gateway on port {}:\n{}",
            self.port,
            self.seen.join("\n")
        )
    }

    /// User + system CPU time so far, in seconds, of all its threads (those that ended too), on
    /// the process's CPU-time clock: the time `/proc/<pid>/stat` shows as utime + stime, to the
    /// nanosecond instead of the clock tick (10 ms), which an idle lease's cost is below.
    fn cpu(&self) -> f64 {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: `clock` is a valid, writable clockid_t for the call to fill.
        let found = unsafe { libc::clock_getcpuclockid(self.pid() as libc::pid_t, &mut clock) };
        assert_eq!(found, 0, "no CPU-time clock for pid {}", self.pid());
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid, writable timespec for the call to fill.
        let read = unsafe { libc::clock_gettime(clock, &mut now) };
        assert_eq!(read, 0, "cannot read pid {}'s CPU-time clock", self.pid());
        now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9
    }

    /// User + system CPU time so far from `/proc/<pid>/stat`, in seconds (clock ticks), to
    /// check [`cpu`](Self::cpu) against.
    fn cpu_ticks(&self) -> f64 {
        let pid = self.pid();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
        let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
            .split_whitespace()
            .collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        ticks as f64 / clock_ticks_per_second() as f64
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64
}

// ---------------------------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------------------------

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} cores (nproc), {cpu}, Linux {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel.trim()
    )
}

fn commit() -> String {
    Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn etcd_version() -> String {
    Command::new("etcd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| {
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.lines()
                .find_map(|line| line.strip_prefix("etcd Version: ").map(str::to_owned))
        })
        .unwrap_or_else(|| "(version unknown)".into())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Unit {
    /// Seconds.
    Time,
    Bytes,
    Ratio,
    Count,
}

impl Unit {
    fn format(self, value: f64) -> String {
        match self {
            Self::Time if value.abs() >= 1.0 => format!("{value:.2} s"),
            Self::Time if value.abs() >= 1e-3 => format!("{:.2} ms", value * 1e3),
            Self::Time => format!("{:.1} µs", value * 1e6),
            Self::Bytes if value.abs() >= 1024.0 => format!("{:.1} KB", value / 1024.0),
            Self::Bytes => format!("{value:.0} B"),
            Self::Ratio => format!("{value:.2}×"),
            Self::Count => format!("{value:.0}"),
        }
    }
}

struct Row {
    name: String,
    unit: Unit,
    median: f64,
    /// Lowest and highest sample.
    range: Option<(f64, f64)>,
    n: usize,
    at_most: Option<f64>,
}

impl Row {
    fn new(name: impl Into<String>, unit: Unit, samples: &[f64]) -> Self {
        let low = samples.iter().copied().fold(f64::INFINITY, f64::min);
        let high = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Self {
            name: name.into(),
            unit,
            median: median(samples),
            range: Some((low, high)),
            n: samples.len(),
            at_most: None,
        }
    }

    fn at_most(mut self, limit: f64) -> Self {
        self.at_most = Some(limit);
        self
    }

    fn verdict(&self) -> &'static str {
        match self.at_most {
            None => "",
            Some(limit) if self.median <= limit => "met",
            Some(_) => "**MISSED**",
        }
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| figure | median | lowest – highest | n | target | verdict |\n|---|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        let range = row.range.map_or("—".into(), |(low, high)| {
            format!("{} – {}", row.unit.format(low), row.unit.format(high))
        });
        let target = row.at_most.map_or("—".into(), |limit| {
            format!("≤ {}", row.unit.format(limit))
        });
        let _ = writeln!(
            out,
            "| {} | {} | {range} | {} | {target} | {} |",
            row.name,
            row.unit.format(row.median),
            row.n,
            row.verdict()
        );
    }
    out
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.is_empty() {
        f64::NAN
    } else if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}
