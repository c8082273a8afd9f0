//! The figures the README quotes, measured on the real `gateway` binary and the library, each
//! next to its target and the Node gateway's figure.
//!
//! `cargo bench --bench gateway` runs the full set (about a minute); `-- --quick` runs a few
//! iterations of each with `wrk -d1s`, to check in CI that the bench still works; figure
//! letters (`-- d f`) run only those figures. Without `wrk` on the PATH the throughput figures
//! are reported as skipped. Targets that
//! are missed are reported, not failed: the bench fails only when the gateway misbehaves (no
//! `/healthz` 200, a duplicate that is not refused with exit 1, lock files left behind).
//!
//! Every process gets a scrubbed environment and a temp `HOME`; every child is killed on the
//! way out, panics included. Only loopback addresses are used.

/// The integration tests' isolated env (scrubbed environment, HOME, lock dir listing) and test ports.
#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use gateway::{GatewayLock, GatewayOptions, Logger};
use socket2::{Domain, Protocol, Socket, Type};

/// The same bytes hyper sends for `/healthz` (with a fixed date), so the throughput floor
/// writes as much per request as the gateway does.
const FIXED_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncache-control: no-store\r\ncontent-length: 27\r\ndate: Sat, 21 Nov 2026 00:36:45 GMT\r\n\r\n{\"ok\":true,\"status\":\"live\"}";

/// The floor server's threads, by name, so they can be pinned.
const FLOOR_THREAD: &str = "bench-floor";

const WRK_THREADS: &str = "-t2";
const WRK_CONNECTIONS: &str = "-c32";

struct Plan {
    quick: bool,
    /// Figure letters to run (`a`..`g`); empty runs them all.
    only: Vec<String>,
    /// Iterations of each process-level figure (a), (b), (c).
    process_iterations: usize,
    /// Blocks of 100 `acquire`+drop and 100 bind+drop, interleaved.
    acquire_blocks: usize,
    /// Gateways whose idle RSS is read.
    rss_instances: usize,
    /// Sequential keep-alive requests for the latency figure.
    latency_requests: usize,
    wrk_duration: &'static str,
    /// wrk runs against each server, alternating gateway and floor.
    wrk_runs: usize,
}

impl Plan {
    /// `[--quick] [a|b|c|d|e|f|g ...]`; cargo's own `--bench` and other flags are ignored.
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
                process_iterations: 5,
                acquire_blocks: 3,
                rss_instances: 2,
                latency_requests: 300,
                wrk_duration: "-d1s",
                wrk_runs: 1,
            }
        } else {
            Self {
                quick: false,
                only,
                process_iterations: 30,
                acquire_blocks: 10,
                rss_instances: 8,
                latency_requests: 5000,
                wrk_duration: "-d5s",
                wrk_runs: 5,
            }
        }
    }

    fn runs(&self, figure: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|f| f == figure)
    }
}

fn main() {
    let plan = Plan::from_args();
    let machine = Machine::now();
    let busy_before = machine_busy_percent();
    println!(
        "gateway bench ({}) on {}",
        if plan.quick { "quick" } else { "full" },
        machine.describe()
    );
    let started = Instant::now();
    let mut rows = Vec::new();

    if plan.runs("a") {
        section("(a) CLI start to /healthz 200");
        rows.push(cold_start(&plan));
    }
    if plan.runs("b") {
        section("(b) duplicate start refused");
        rows.extend(duplicate_refused(&plan));
    }
    if plan.runs("c") {
        section("(c) restart after SIGKILL to /healthz 200");
        rows.push(restart_after_sigkill(&plan));
    }
    if plan.runs("d") {
        section("(d) in-process GatewayLock::acquire vs raw-socket floor");
        // The default state dir is `~/.openclaw`: the target is for the state dir there.
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|home| home.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        rows.extend(acquire_vs_floor(&plan, &home, true));
        // For context, the same on /tmp and on memory: the lock files cost what the file
        // system makes them cost, which the file floor of each row shows.
        let temp = std::env::temp_dir();
        if temp != home {
            rows.extend(acquire_vs_floor(&plan, &temp, false));
        }
        let shm = PathBuf::from("/dev/shm");
        if fs_name(&temp) != "tmpfs" && fs_name(&shm) == "tmpfs" {
            rows.extend(acquire_vs_floor(&plan, &shm, false));
        }
    }
    if plan.runs("e") {
        section("(e) idle RSS");
        rows.push(idle_rss(&plan));
    }
    if plan.runs("f") {
        section("(f) /healthz latency and throughput");
        rows.extend(http_figures(&plan));
    }

    if plan.runs("g") {
        section("(g) acquire → serve → shutdown: C ABI vs Rust API");
        rows.extend(c_abi_vs_rust(&plan));
    }

    let after = Machine::now();
    let busy_after = machine_busy_percent();
    println!();
    println!("{}", table(&rows));
    println!(
        "machine: {}\nCPU busy (all processes, 0.5 s sample) before: {busy_before:.0}%; after: {busy_after:.0}%\nload average before: {}; after: {}\nother rustc/cargo processes before: {}/{}; after: {}/{}\nbench wall time: {:.1} s",
        machine.describe(),
        machine.loadavg,
        after.loadavg,
        machine.rustc_processes,
        machine.cargo_processes,
        after.rustc_processes,
        after.cargo_processes,
        started.elapsed().as_secs_f64()
    );
}

fn section(name: &str) {
    println!("-- {name}");
}

// ---------------------------------------------------------------------------------------------
// The figures
// ---------------------------------------------------------------------------------------------

/// (a) From spawning `gateway run` on a clean state dir to its first `/healthz` 200. Each
/// iteration stops the gateway with SIGTERM and checks that it left no lock file behind.
fn cold_start(plan: &Plan) -> Row {
    let env = Env::new();
    let port = common::free_port();
    let mut samples = Vec::new();
    for _ in 0..plan.process_iterations {
        assert!(env.lock_files().is_empty(), "state is clean before a start");
        let begin = Instant::now();
        let mut gateway = env.spawn_run(port);
        wait_healthy(port, &mut gateway, &env);
        samples.push(begin.elapsed());
        gateway.terminate(&env);
        assert!(
            env.lock_files().is_empty(),
            "SIGTERM left lock files: {:?}",
            env.lock_files()
        );
    }
    Row::time("(a) CLI start → /healthz 200", &samples)
        .target(Target::AtMost(ms(10.0)))
        .node("12,100 ms")
}

/// (b) With a healthy holder, from spawning a second `gateway run` on the same port to its
/// exit 1: on the same state (refused by the lock, its holder healthy) or on another state dir
/// (refused by the port).
fn duplicate_refused(plan: &Plan) -> Vec<Row> {
    let env = Env::new();
    let other = Env::new();
    let port = common::free_port();
    let mut holder = env.spawn_run(port);
    wait_healthy(port, &mut holder, &env);
    let refusals = |duplicate: &Env, expected: &str| {
        let mut samples = Vec::new();
        for _ in 0..plan.process_iterations {
            let begin = Instant::now();
            let output = duplicate
                .command(&["run", "--port", &port.to_string()])
                .stdout(Stdio::null())
                .output()
                .expect("spawn the duplicate");
            samples.push(begin.elapsed());
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(1),
                "the duplicate is refused with exit 1; stderr: {stderr}"
            );
            assert!(stderr.contains(expected), "{expected:?} in: {stderr}");
        }
        assert!(healthy(port), "the holder survives the duplicates");
        samples
    };
    let same_state = refusals(&env, "already running");
    let other_state = refusals(&other, "already listening");
    holder.terminate(&env);
    vec![
        Row::time("(b) duplicate start refused (exit 1)", &same_state)
            .target(Target::AtMost(ms(10.0)))
            .node("2,503 ms"),
        Row::time(
            "(b) duplicate on the same port, another state dir, refused (exit 1)",
            &other_state,
        )
        .target(Target::AtMost(ms(10.0)))
        .node("19,621 ms"),
    ]
}

/// (c) SIGKILL the holder (and reap it), then from spawning a new `gateway run` on the same
/// state and port to its `/healthz` 200: the new one reclaims the dead holder's files.
fn restart_after_sigkill(plan: &Plan) -> Row {
    let env = Env::new();
    let port = common::free_port();
    let mut holder = env.spawn_run(port);
    wait_healthy(port, &mut holder, &env);
    let mut samples = Vec::new();
    for _ in 0..plan.process_iterations {
        holder.sigkill();
        assert_eq!(env.lock_files().len(), 2, "SIGKILL leaves both lock files");
        let begin = Instant::now();
        holder = env.spawn_run(port);
        wait_healthy(port, &mut holder, &env);
        samples.push(begin.elapsed());
    }
    holder.terminate(&env);
    assert!(env.lock_files().is_empty());
    Row::time("(c) restart after SIGKILL → /healthz 200", &samples)
        .target(Target::AtMost(ms(10.0)))
        .node("8,700 ms")
}

/// (d) `GatewayLock::acquire` + drop (both files, `127.0.0.1` and `[::1]` on one fixed port),
/// with the state dir in a new directory under `base`, against bind + listen + drop of the same
/// listener(s) with socket2 and `SO_REUSEADDR`, in interleaved blocks so both see the same
/// machine. `targeted`: the targets apply to this placement (the default state dir's).
fn acquire_vs_floor(plan: &Plan, base: &Path, targeted: bool) -> Vec<Row> {
    let env = Env::new_in(base);
    let place = format!("{} ({})", base.display(), fs_name(base));
    println!("   state dir on {place}");
    let port = common::free_port();
    let options = GatewayOptions::new()
        .state_dir(env.state_dir())
        .config_path(env.state_dir().join("openclaw.json"))
        .port(port)
        .logger(Logger::new(|_, _| {}));
    let addrs = {
        let lock = GatewayLock::acquire(&options).expect("acquire");
        lock.local_addrs()
    };
    assert!(env.lock_files().is_empty(), "drop releases the files");
    println!(
        "   listeners: {}",
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    const BLOCK: usize = 100;
    for _ in 0..BLOCK {
        drop(GatewayLock::acquire(&options).expect("acquire"));
        drop(bind_floor(&addrs));
    }
    let mut acquire = Vec::with_capacity(plan.acquire_blocks * BLOCK);
    let mut floor = Vec::with_capacity(plan.acquire_blocks * BLOCK);
    let mut file_floor = Vec::with_capacity(plan.acquire_blocks * BLOCK);
    let scratch = env.state_dir();
    std::fs::create_dir_all(&scratch).expect("state dir");
    for _ in 0..plan.acquire_blocks {
        for _ in 0..BLOCK {
            let begin = Instant::now();
            file_floor_once(&scratch);
            file_floor.push(begin.elapsed());
        }
        for _ in 0..BLOCK {
            let begin = Instant::now();
            let lock = GatewayLock::acquire(&options).expect("acquire");
            drop(lock);
            acquire.push(begin.elapsed());
        }
        for _ in 0..BLOCK {
            let begin = Instant::now();
            let listeners = bind_floor(&addrs);
            drop(listeners);
            floor.push(begin.elapsed());
        }
    }
    assert!(env.lock_files().is_empty());
    let ratio = median(&acquire).as_secs_f64() / median(&floor).as_secs_f64();
    let ratio_p90 = percentile(&acquire, 0.9).as_secs_f64() / percentile(&floor, 0.9).as_secs_f64();
    let target = |target| if targeted { target } else { Target::None };
    vec![
        Row::time(
            format!("(d) GatewayLock::acquire + drop, state on {place}"),
            &acquire,
        )
        .target(target(Target::AtMost(us(300.0)))),
        Row::time("(d) raw-socket floor: bind + listen + drop", &floor),
        Row::time(
            format!("(d) file floor on {place}: create + write + unlink + close of one file"),
            &file_floor,
        ),
        Row {
            name: format!("(d) acquire ÷ floor, state on {place}"),
            unit: Unit::Ratio,
            median: ratio,
            spread: Some(ratio_p90),
            n: acquire.len(),
            target: target(Target::AtMost(5.0)),
            node: None,
        },
    ]
}

/// The least a lock file can cost on this file system: one new file with a payload, removed.
fn file_floor_once(dir: &Path) {
    let path = dir.join("floor.lock");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("create");
    file.write_all(&[b' '; 420]).expect("write");
    std::fs::remove_file(&path).expect("unlink");
}

/// (g) The whole embedding cycle, acquire → serve → shutdown on an ephemeral port, through the
/// C ABI (`gw_lock_acquire`, `gw_serve`, `gw_shutdown`: the functions a C host links, called
/// here directly) and through the Rust API, in interleaved blocks of the same run.
fn c_abi_vs_rust(plan: &Plan) -> Vec<Row> {
    use gateway::ffi::*;
    use std::ffi::CString;
    use std::ptr::{null, null_mut};

    let env = Env::new();
    let state_dir = env.state_dir();
    let config_path = state_dir.join("openclaw.json");
    let options = GatewayOptions::new()
        .state_dir(&state_dir)
        .config_path(&config_path)
        .port(0)
        .logger(Logger::new(|_, _| {}));
    let c_options = gw_options_new();
    let c_state_dir = CString::new(state_dir.to_str().expect("UTF-8 temp dir")).unwrap();
    let c_config_path = CString::new(config_path.to_str().expect("UTF-8 temp dir")).unwrap();
    // SAFETY: `c_options` is live until freed below; the strings are NUL-terminated.
    unsafe {
        assert_eq!(
            gw_options_set_state_dir(c_options, c_state_dir.as_ptr()),
            gw_result::GW_OK
        );
        assert_eq!(
            gw_options_set_config_path(c_options, c_config_path.as_ptr()),
            gw_result::GW_OK
        );
        assert_eq!(gw_options_set_port(c_options, 0), gw_result::GW_OK);
    }
    let rust_cycle = || {
        let lock = GatewayLock::acquire(&options).expect("acquire");
        let gateway =
            gateway::Gateway::serve(lock, gateway::ServeOptions::default()).expect("serve");
        assert!(gateway.shutdown(Duration::from_secs(1)).drained);
    };
    let c_cycle = || {
        let mut lock = null_mut();
        let mut server = null_mut();
        // SAFETY: the C ABI's contract: live options, writable outputs, each handle handed on once.
        unsafe {
            assert_eq!(gw_lock_acquire(c_options, &mut lock), gw_result::GW_OK);
            assert_eq!(
                gw_serve(lock, null(), null(), &mut server),
                gw_result::GW_OK
            );
            assert_eq!(gw_shutdown(server, 1000), gw_result::GW_OK);
        }
    };
    const BLOCK: usize = 20;
    for _ in 0..5 {
        rust_cycle();
        c_cycle();
    }
    let mut rust = Vec::with_capacity(plan.acquire_blocks * BLOCK);
    let mut c_abi = Vec::with_capacity(plan.acquire_blocks * BLOCK);
    for _ in 0..plan.acquire_blocks {
        for _ in 0..BLOCK {
            let begin = Instant::now();
            c_cycle();
            c_abi.push(begin.elapsed());
        }
        for _ in 0..BLOCK {
            let begin = Instant::now();
            rust_cycle();
            rust.push(begin.elapsed());
        }
    }
    // SAFETY: created above, not used afterwards.
    unsafe { gw_options_free(c_options) };
    assert!(
        env.lock_files().is_empty(),
        "every cycle released its files"
    );
    let ratio = median(&c_abi).as_secs_f64() / median(&rust).as_secs_f64();
    let ratio_p90 = percentile(&c_abi, 0.9).as_secs_f64() / percentile(&rust, 0.9).as_secs_f64();
    vec![
        Row::time(
            "(g) C ABI: gw_lock_acquire → gw_serve → gw_shutdown",
            &c_abi,
        ),
        Row::time(
            "(g) Rust: GatewayLock::acquire → Gateway::serve → shutdown",
            &rust,
        ),
        Row {
            name: "(g) C ABI ÷ Rust API".into(),
            unit: Unit::Ratio,
            median: ratio,
            spread: Some(ratio_p90),
            n: c_abi.len(),
            target: Target::AtMost(1.05),
            node: None,
        },
    ]
}

fn bind_floor(addrs: &[SocketAddr]) -> Vec<Socket> {
    addrs
        .iter()
        .map(|addr| {
            let socket = Socket::new(
                Domain::for_address(*addr),
                Type::STREAM,
                Some(Protocol::TCP),
            )
            .expect("socket");
            if addr.is_ipv6() {
                socket.set_only_v6(true).expect("IPV6_V6ONLY");
            }
            socket.set_reuse_address(true).expect("SO_REUSEADDR");
            socket.bind(&(*addr).into()).expect("bind");
            socket.listen(1024).expect("listen");
            socket
        })
        .collect()
}

/// (e) `VmRSS` of running `gateway run`s after a second idle (one `/healthz` answered each).
fn idle_rss(plan: &Plan) -> Row {
    let envs: Vec<Env> = (0..plan.rss_instances).map(|_| Env::new()).collect();
    let mut gateways: Vec<(u16, Gateway)> = envs
        .iter()
        .map(|env| {
            let port = common::free_port();
            (port, env.spawn_run(port))
        })
        .collect();
    for ((port, gateway), env) in gateways.iter_mut().zip(&envs) {
        wait_healthy(*port, gateway, env);
    }
    std::thread::sleep(Duration::from_millis(1000));
    let samples: Vec<f64> = gateways
        .iter()
        .map(|(_, gateway)| vm_kib(gateway.pid(), "VmRSS") as f64 * 1024.0)
        .collect();
    for ((_, gateway), env) in gateways.into_iter().zip(&envs) {
        gateway.terminate(env);
    }
    Row::values(
        "(e) idle RSS (VmRSS after 1 s)",
        Unit::Bytes,
        samples,
        false,
    )
    .target(Target::AtMost(8.0 * 1024.0 * 1024.0))
    .node("757 MB")
}

/// (f) Sequential keep-alive latency, then `wrk -t2 -c32` throughput, each against the gateway
/// and against a floor server that answers every request with fixed bytes without parsing.
fn http_figures(plan: &Plan) -> Vec<Row> {
    let env = Env::new();
    let port = common::free_port();
    let mut gateway = env.spawn_run(port);
    wait_healthy(port, &mut gateway, &env);
    let floor_port = start_floor_server();

    let mut rows = Vec::new();
    // Left to the scheduler, a round trip is ~14 µs when client and server share a core and
    // ~40 µs when each wakeup crosses cores, and which one a run gets is chance. So the client
    // is pinned to one core and the server to another: the cross-core figure, every time.
    let pinned = cores() >= 2;
    let latency_of = |server_pid: u32, threads: Option<&str>, port: u16| {
        if pinned {
            pin_threads(std::process::id(), Some(&current_thread_name()), &[0]);
            pin_threads(server_pid, threads, &[1]);
        }
        let samples = keep_alive_latency(port, plan.latency_requests);
        if pinned {
            let all: Vec<usize> = (0..cores()).collect();
            pin_threads(server_pid, threads, &all);
            pin_threads(std::process::id(), Some(&current_thread_name()), &all);
        }
        samples
    };
    let latency = latency_of(gateway.pid(), None, port);
    let floor_latency = latency_of(std::process::id(), Some(FLOOR_THREAD), floor_port);
    let pinning = if pinned {
        ", client and server on different cores"
    } else {
        ""
    };
    rows.push(Row::time(
        format!("(f) GET /healthz latency, 1 keep-alive conn{pinning}"),
        &latency,
    ));
    rows.push(Row::time(
        "(f) floor: same request, fixed-response server",
        &floor_latency,
    ));

    let wrk_line = format!("wrk {WRK_THREADS} {WRK_CONNECTIONS} {}", plan.wrk_duration);
    if !wrk_available() {
        println!("   wrk not found: throughput skipped (install it with `apt-get install -y wrk`)");
        rows.push(Row::skipped(
            format!("(f) /healthz throughput, `{wrk_line}`"),
            Target::AtLeast(60_000.0),
            "11,855 req/s",
        ));
        gateway.terminate(&env);
        return rows;
    }
    let gateway_pid = gateway.pid();
    if !plan.quick {
        // Unrecorded: the first run after start is slower (page faults, the kernel's socket
        // caches, CPU frequency), for either server.
        wrk_measuring(port, "-d1s", gateway_pid);
        wrk(floor_port, "-d1s");
    }
    // Alternating, so both servers see the same machine. The floor runs in this process,
    // whose main thread sleeps in `wait` meanwhile: its CPU time is the floor server's.
    let (mut ours, mut ours_cpu, mut floor, mut floor_cpu) = (vec![], vec![], vec![], vec![]);
    for _ in 0..plan.wrk_runs {
        let run = wrk_measuring(port, plan.wrk_duration, gateway_pid);
        ours.push(run.rate);
        ours_cpu.push(Duration::from_secs_f64(run.cpu_per_request));
        let run = wrk(floor_port, plan.wrk_duration);
        floor.push(run.rate);
        floor_cpu.push(Duration::from_secs_f64(run.cpu_per_request));
    }
    let rss_after = vm_kib(gateway.pid(), "VmRSS") as f64 * 1024.0;
    let peak = vm_kib(gateway.pid(), "VmHWM") as f64 * 1024.0;
    println!(
        "   gateway after load: VmRSS {}, VmHWM {}",
        Unit::Bytes.format(rss_after),
        Unit::Bytes.format(peak)
    );
    assert!(healthy(port), "the gateway is still healthy after load");
    gateway.terminate(&env);

    let ratio = median_f64(&ours) / median_f64(&floor);
    rows.push(
        Row::values(
            format!("(f) /healthz throughput, `{wrk_line}`"),
            Unit::Rate,
            ours,
            true,
        )
        .target(Target::AtLeast(60_000.0))
        .node("11,855 req/s"),
    );
    rows.push(Row::values(
        "(f) floor: fixed-response tokio server, same wrk",
        Unit::Rate,
        floor,
        true,
    ));
    rows.push(Row {
        name: "(f) throughput ÷ floor".into(),
        unit: Unit::Ratio,
        median: ratio,
        spread: None,
        n: plan.wrk_runs,
        target: Target::None,
        node: None,
    });
    rows.push(Row::time(
        "(f) gateway CPU per request under wrk (user+sys)",
        &ours_cpu,
    ));
    rows.push(Row::time("(f) floor CPU per request under wrk", &floor_cpu));
    rows.push(Row {
        name: "(f) CPU per request ÷ floor".into(),
        unit: Unit::Ratio,
        median: median(&ours_cpu).as_secs_f64() / median(&floor_cpu).as_secs_f64(),
        spread: None,
        n: plan.wrk_runs,
        target: Target::None,
        node: None,
    });
    rows.push(Row {
        name: "(f) RSS after the wrk runs".into(),
        unit: Unit::Bytes,
        median: rss_after,
        spread: None,
        n: 1,
        target: Target::None,
        node: None,
    });
    rows
}

fn keep_alive_latency(port: u16, requests: usize) -> Vec<Duration> {
    let mut stream =
        TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let request = format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let mut buffer = Vec::with_capacity(1024);
    let mut samples = Vec::with_capacity(requests);
    for i in 0..requests + requests / 10 {
        let begin = Instant::now();
        stream.write_all(request.as_bytes()).expect("write");
        let status = read_response(&mut stream, &mut buffer).expect("response");
        let elapsed = begin.elapsed();
        assert_eq!(status, 200);
        if i >= requests / 10 {
            samples.push(elapsed); // the first tenth warms up
        }
    }
    samples
}

/// Reads one response with a `content-length` body; returns its status.
fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<u16> {
    buffer.clear();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::other("connection closed mid-response"));
        }
        buffer.extend_from_slice(&chunk[..n]);
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0);
        if buffer.len() >= end + 4 + length {
            return head
                .split(' ')
                .nth(1)
                .and_then(|status| status.parse().ok())
                .ok_or_else(|| io::Error::other("bad status line"));
        }
    }
}

/// The throughput floor: a tokio server on the same number of worker threads as the gateway
/// that writes [`FIXED_RESPONSE`] once per `\r\n\r\n` it reads. Runs until the bench exits.
fn start_floor_server() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the floor");
    let port = listener.local_addr().expect("floor address").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let workers = gateway::ServeOptions::default().worker_threads;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(FLOOR_THREAD)
            .enable_io()
            .build()
            .expect("floor runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("floor listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(floor_connection(stream));
            }
        });
    });
    port
}

async fn floor_connection(stream: tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut chunk = [0u8; 4096];
    // The last three bytes of the previous read, then this read: so a terminator split across
    // reads counts.
    let mut window = [0u8; 4096 + 3];
    let mut carried = 0;
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        let n = match stream.try_read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        let seen = &mut window[..carried + n];
        seen[carried..].copy_from_slice(&chunk[..n]);
        let requests = seen.windows(4).filter(|w| *w == b"\r\n\r\n").count();
        let keep = seen.len().min(3);
        let tail = seen.len() - keep;
        seen.copy_within(tail.., 0);
        carried = keep;
        for _ in 0..requests {
            let mut written = 0;
            while written < FIXED_RESPONSE.len() {
                if stream.writable().await.is_err() {
                    return;
                }
                match stream.try_write(&FIXED_RESPONSE[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        }
    }
}

fn wrk_available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Requests/sec from one wrk run. Socket errors or non-2xx answers fail the bench: the figure
/// would not be a count of good responses.
fn wrk(port: u16, duration: &str) -> WrkRun {
    wrk_measuring(port, duration, std::process::id())
}

/// One wrk run: its requests/sec, and the server's CPU time per request (`server_pid`'s user +
/// system time over the run, divided by the requests wrk completed).
struct WrkRun {
    rate: f64,
    cpu_per_request: f64,
}

/// Socket errors or non-2xx answers fail the bench: the figure would not be a count of good
/// responses.
fn wrk_measuring(port: u16, duration: &str, server_pid: u32) -> WrkRun {
    let url = format!("http://127.0.0.1:{port}/healthz");
    let cpu_before = cpu_seconds(server_pid);
    let output = Command::new("wrk")
        .args([WRK_THREADS, WRK_CONNECTIONS, duration, &url])
        .stdin(Stdio::null())
        .output()
        .expect("run wrk");
    let cpu = cpu_seconds(server_pid) - cpu_before;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "wrk saw errors against port {port}:\n{text}"
    );
    let rate: f64 = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    // `  812345 requests in 5.00s, 100.00MB read`
    let requests: f64 = text
        .lines()
        .find_map(|line| line.trim().split_once(" requests in "))
        .and_then(|(count, _)| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk output:\n{text}"));
    let cpu_per_request = cpu / requests;
    println!(
        "   wrk :{port} → {rate:.0} req/s, server CPU {:.1} µs/request",
        cpu_per_request * 1e6
    );
    WrkRun {
        rate,
        cpu_per_request,
    }
}

/// User + system CPU time of a process, from `/proc/<pid>/stat` (clock-tick resolution).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / per_second as f64
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A temp `HOME` with its own state dir; the gateway's stderr goes to a log file in it.
struct Env(common::TestEnv);

impl Env {
    fn new() -> Self {
        Self::new_in(&std::env::temp_dir())
    }

    fn new_in(base: &Path) -> Self {
        Self(common::TestEnv {
            root: tempfile::Builder::new()
                .prefix("gateway-bench-")
                .tempdir_in(base)
                .expect("temp dir"),
        })
    }

    fn state_dir(&self) -> PathBuf {
        self.0.state_dir()
    }

    fn log_path(&self) -> PathBuf {
        self.0.home().join("gateway.log")
    }

    /// The files in `<state>/tmp/openclaw-<uid>`.
    fn lock_files(&self) -> Vec<String> {
        self.0.lock_dir_entries()
    }

    /// `gateway <args>` with a scrubbed environment whose HOME is this env's home.
    fn command(&self, args: &[&str]) -> Command {
        self.0.command(args)
    }

    fn spawn_run(&self, port: u16) -> Gateway {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("gateway log");
        let child = self
            .command(&["run", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn gateway run");
        Gateway { child: Some(child) }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

/// A `gateway run` child; SIGKILLed and reaped on drop if still running.
struct Gateway {
    child: Option<Child>,
}

impl Gateway {
    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGKILL, and reap it so its pid is gone, not a zombie.
    fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait (10 s at most) for exit 0.
    fn terminate(mut self, env: &Env) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: signalling our own child, which has not been reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "gateway did not exit within 10 s of SIGTERM; log:\n{}",
                    env.log()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(
            status.success(),
            "gateway exited {status} after SIGTERM; log:\n{}",
            env.log()
        );
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.sigkill();
    }
}

/// Polls `GET /healthz` every 200 µs until it answers 200 (10 s at most).
fn wait_healthy(port: u16, gateway: &mut Gateway, env: &Env) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if healthy(port) {
            return;
        }
        if let Some(status) = gateway.exited() {
            panic!(
                "gateway exited {status} before /healthz answered; log:\n{}",
                env.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no /healthz 200 on port {port} within 10 s; log:\n{}",
            env.log()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// One `GET /healthz` on a fresh connection answers 200.
fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))) else {
        return false;
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    read_response(&mut stream, &mut Vec::new()).is_ok_and(|status| status == 200)
}

/// A `Vm*` line of `/proc/<pid>/status`, in KiB.
fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// This thread's name as the kernel knows it (`comm`, 15 bytes at most).
fn current_thread_name() -> String {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

/// Sets the CPU affinity of every thread of `pid` (those whose name starts with `name`, when
/// given) to `cpus`.
fn pin_threads(pid: u32, name: Option<&str>, cpus: &[usize]) {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: `cpu` is below the number of cores, well inside CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.filter_map(Result::ok) {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if name.is_some_and(|name| !comm.trim().starts_with(name)) {
            continue;
        }
        let Ok(tid) = task.file_name().to_string_lossy().parse::<libc::pid_t>() else {
            continue;
        };
        // SAFETY: `set` is a valid cpu_set_t of the size passed.
        unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
    }
}

/// The file system a path is on, by `statfs` magic (the common ones only).
fn fs_name(path: &Path) -> &'static str {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return "unknown";
    };
    // SAFETY: a zeroed statfs is a valid out-parameter; the path is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; statfs only writes into `stat`.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return "unknown";
    }
    match stat.f_type as u64 {
        0xEF53 => "ext4",
        0x0102_1994 => "tmpfs",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x794C_7630 => "overlayfs",
        0x2FC1_2FC1 => "zfs",
        _ => "other fs",
    }
}

// ---------------------------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------------------------

struct Machine {
    cores: usize,
    cpu: String,
    kernel: String,
    loadavg: String,
    /// Other builds on the machine: `rustc` processes, and `cargo` ones besides our parent.
    rustc_processes: usize,
    cargo_processes: usize,
}

impl Machine {
    fn now() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into())
        };
        let loadavg = read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            kernel: format!("Linux {}", read("/proc/sys/kernel/osrelease")),
            loadavg,
            rustc_processes: count_processes("rustc"),
            cargo_processes: count_processes("cargo").saturating_sub(1),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} cores (nproc), {}, {}",
            self.cores, self.cpu, self.kernel
        )
    }
}

/// How busy the whole machine is right now: non-idle share of all CPUs over half a second,
/// from `/proc/stat` (the load average also counts tasks blocked in the kernel, so it can read
/// 2 on an idle VM).
fn machine_busy_percent() -> f64 {
    fn sample() -> (u64, u64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        (fields.iter().take(8).sum(), idle)
    }
    let (total0, idle0) = sample();
    std::thread::sleep(Duration::from_millis(500));
    let (total1, idle1) = sample();
    let total = total1.saturating_sub(total0).max(1);
    100.0 * (total - idle1.saturating_sub(idle0).min(total)) as f64 / total as f64
}

fn count_processes(comm: &str) -> usize {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == comm)
                })
                .count()
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Statistics and the table
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Unit {
    /// Seconds.
    Time,
    Bytes,
    /// Requests per second.
    Rate,
    Ratio,
}

impl Unit {
    fn format(self, value: f64) -> String {
        match self {
            Self::Time if value < 1e-3 => format!("{:.1} µs", value * 1e6),
            Self::Time => format!("{:.2} ms", value * 1e3),
            Self::Bytes => format!("{:.1} MB", value / (1024.0 * 1024.0)),
            Self::Rate => format!("{} req/s", thousands(value)),
            Self::Ratio => format!("{value:.2}×"),
        }
    }
}

enum Target {
    None,
    AtMost(f64),
    AtLeast(f64),
}

struct Row {
    name: String,
    unit: Unit,
    median: f64,
    /// p90 for times and sizes; the worst run for throughput.
    spread: Option<f64>,
    n: usize,
    target: Target,
    node: Option<&'static str>,
}

impl Row {
    fn time(name: impl Into<String>, samples: &[Duration]) -> Self {
        Self {
            name: name.into(),
            unit: Unit::Time,
            median: median(samples).as_secs_f64(),
            spread: Some(percentile(samples, 0.9).as_secs_f64()),
            n: samples.len(),
            target: Target::None,
            node: None,
        }
    }

    /// `higher_is_better`: the spread column shows the lowest sample instead of p90.
    fn values(
        name: impl Into<String>,
        unit: Unit,
        samples: Vec<f64>,
        higher_is_better: bool,
    ) -> Self {
        let mut sorted = samples;
        sorted.sort_by(f64::total_cmp);
        let spread = if higher_is_better {
            sorted[0]
        } else {
            sorted[((sorted.len() - 1) as f64 * 0.9).round() as usize]
        };
        Self {
            name: name.into(),
            unit,
            median: median_f64(&sorted),
            spread: Some(spread),
            n: sorted.len(),
            target: Target::None,
            node: None,
        }
    }

    fn skipped(name: String, target: Target, node: &'static str) -> Self {
        Self {
            name,
            unit: Unit::Rate,
            median: f64::NAN,
            spread: None,
            n: 0,
            target,
            node: Some(node),
        }
    }

    fn target(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    fn node(mut self, node: &'static str) -> Self {
        self.node = Some(node);
        self
    }

    fn verdict(&self) -> &'static str {
        if self.median.is_nan() {
            return "skipped";
        }
        match self.target {
            Target::None => "",
            Target::AtMost(limit) if self.median <= limit => "met",
            Target::AtLeast(floor) if self.median >= floor => "met",
            _ => "**MISSED**",
        }
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| figure | median | p90 (throughput: worst run) | n | target | Node gateway | verdict |\n|---|---:|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        let cell = |value: Option<f64>| match value {
            Some(v) if !v.is_nan() => row.unit.format(v),
            _ => "—".into(),
        };
        let target = match row.target {
            Target::None => "—".into(),
            Target::AtMost(v) => format!("≤ {}", row.unit.format(v)),
            Target::AtLeast(v) => format!("≥ {}", row.unit.format(v)),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.name,
            cell(Some(row.median)),
            cell(row.spread),
            row.n,
            target,
            row.node.unwrap_or("—"),
            row.verdict()
        );
    }
    out
}

fn sorted(samples: &[Duration]) -> Vec<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted
}

fn median(samples: &[Duration]) -> Duration {
    percentile(samples, 0.5)
}

/// Nearest-rank on the sorted samples (the mean of the two middle ones for an even median).
fn percentile(samples: &[Duration], p: f64) -> Duration {
    let sorted = sorted(samples);
    if p == 0.5 && sorted.len().is_multiple_of(2) {
        let upper = sorted.len() / 2;
        return (sorted[upper - 1] + sorted[upper]) / 2;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn median_f64(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(value: f64) -> f64 {
    value / 1e3
}

fn us(value: f64) -> f64 {
    value / 1e6
}
