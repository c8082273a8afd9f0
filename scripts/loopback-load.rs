//! Opens and closes TCP connections to listeners of its own on 127.0.0.1, as fast as it can,
//! for a bounded time: the background load that takes ports of the kernel's ephemeral range
//! as busy programs on a machine do: one thread binds listeners on port 0 and holds each for a
//! while (see `listen`), the others connect and close as fast as they can (see `churn`). The
//! tests' ports must survive it (tests/common/mod.rs, `free_port`); ports from `bind(0)` do not.
//! Linux only (see `reset`).
//!
//! Built and run by scripts/loopback-load.sh; std only, so plain `rustc` builds it.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How many listeners the connections of `churn` go round.
const LISTENERS: usize = 16;

/// How many of its port-0 listeners `listen` keeps open at a time.
const HELD_LISTENERS: usize = 1000;

const USAGE: &str =
    "usage: loopback-load --seconds N [--threads T]   (N: 1..=86400, T: 2..=64, default 3)";

fn main() -> ExitCode {
    let (seconds, threads) = match parse_args(std::env::args().skip(1).collect()) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("loopback-load: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut addrs = Vec::new();
    for _ in 0..LISTENERS {
        let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("loopback-load: cannot listen on 127.0.0.1: {err}");
                return ExitCode::FAILURE;
            }
        };
        addrs.push(listener.local_addr().expect("the listener's address"));
        // The server side accepts and closes at once; it is never the bottleneck.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                drop(stream);
            }
        });
    }
    let addrs: Arc<[SocketAddr]> = addrs.into();
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));

    let clients: Vec<_> = (0..threads)
        .map(|thread| {
            let (addrs, stop) = (addrs.clone(), stop.clone());
            let (opened, failed) = (opened.clone(), failed.clone());
            std::thread::spawn(move || {
                if thread == 0 {
                    listen(&stop, &opened, &failed)
                } else {
                    churn(&addrs, &stop, &opened, &failed)
                }
            })
        })
        .collect();

    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.join();
    }
    let opened = opened.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "loopback-load: {opened} connections to {LISTENERS} listeners on 127.0.0.1 in {elapsed:.1} s ({:.0}/s), {} failed",
        opened as f64 / elapsed,
        failed.load(Ordering::Relaxed)
    );
    ExitCode::SUCCESS
}

/// Takes ports the way `bind(0)` hands them out, as other test suites and servers started on
/// port 0 do: binds a listener on `127.0.0.1:0`, makes one connection to it, and keeps the last
/// [`HELD_LISTENERS`] listeners open, so each holds its port for a while (a fraction of a
/// second) before it goes back. A test that picked its port with `bind(0)` and let it go finds
/// it taken now and then; the tests' ports, outside the ephemeral range, never.
fn listen(stop: &AtomicBool, opened: &AtomicU64, failed: &AtomicU64) {
    let mut held = VecDeque::with_capacity(HELD_LISTENERS);
    while !stop.load(Ordering::Relaxed) {
        let connected = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|listener| {
            let client = TcpStream::connect(listener.local_addr()?)?;
            let (server, _) = listener.accept()?;
            reset(client);
            drop(server);
            if held.len() == HELD_LISTENERS {
                held.pop_front();
            }
            held.push_back(listener);
            Ok(())
        });
        count(connected, opened, failed);
    }
}

/// Cycles through the range quickly: connects round the listeners and resets each connection
/// at once, so its local port comes back for the next connect to take.
fn churn(addrs: &[SocketAddr], stop: &AtomicBool, opened: &AtomicU64, failed: &AtomicU64) {
    for addr in addrs.iter().cycle() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        count(TcpStream::connect(addr).map(reset), opened, failed);
    }
}

/// Closes with a reset (`SO_LINGER` 0) instead of a FIN: no TIME_WAIT is left on either side.
/// Tens of thousands of connections a second would otherwise fill the kernel's TIME_WAIT table
/// (`tcp_max_tw_buckets`), and then it drops every new TIME_WAIT and FIN_WAIT2 at once,
/// everyone's: not a machine the tests are meant for, and a test that watches a killed
/// gateway's sockets linger (race_and_crash) would see none.
fn reset(stream: TcpStream) {
    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    unsafe extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
    }
    // Linux's values (asm-generic/socket.h; this load is for the Linux test machines).
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    let linger = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `stream` owns the descriptor for the whole call, and `linger` is a valid
    // `struct linger` whose size is the length passed.
    unsafe {
        setsockopt(
            stream.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            &linger,
            size_of::<Linger>() as u32,
        );
    }
    drop(stream);
}

/// Counts a connection; a failed connect (the ephemeral range exhausted, an accept queue full)
/// is retried after a breath.
fn count(connected: std::io::Result<()>, opened: &AtomicU64, failed: &AtomicU64) {
    match connected {
        Ok(()) => {
            opened.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            failed.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn parse_args(args: Vec<String>) -> Result<(u64, usize), String> {
    let mut seconds = None;
    let mut threads = 3;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--seconds" => {
                let text = value("--seconds")?;
                seconds = Some(
                    text.parse::<u64>()
                        .ok()
                        .filter(|n| (1..=86_400).contains(n))
                        .ok_or_else(|| {
                            format!("--seconds {text:?} is not a number of seconds in 1..=86400")
                        })?,
                );
            }
            "--threads" => {
                let text = value("--threads")?;
                threads = text
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (2..=64).contains(n))
                    .ok_or_else(|| format!("--threads {text:?} is not a number in 2..=64 (one thread listens, the others churn)"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let seconds = seconds.ok_or("--seconds is required: the load always stops by itself")?;
    Ok((seconds, threads))
}
