//! The port as the last line of defence (SPEC §5–6): whatever socket options a foreign
//! listener used, we never share its port; a foreign `[::1]` alone only costs us the alias;
//! a deleted lock file does not let a second gateway in, and the holder notices; a release
//! raced by two starters never gives two holders.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use gateway::{Gateway, GatewayLock, GatewayLockError, LogLevel, ServeOptions};
use socket2::{Domain, Protocol, Socket, Type};

/// A listener that is not a gateway, bound the way other programs bind.
#[derive(Debug, Clone, Copy)]
struct Foreign {
    ip: &'static str,
    /// `Some(false)`: a dual-stack IPv6 socket that also takes IPv4.
    only_v6: Option<bool>,
    reuse_addr: bool,
    reuse_port: bool,
}

impl Foreign {
    const fn v4(ip: &'static str, reuse_addr: bool, reuse_port: bool) -> Self {
        Self {
            ip,
            only_v6: None,
            reuse_addr,
            reuse_port,
        }
    }

    const fn dual_stack(reuse_addr: bool, reuse_port: bool) -> Self {
        Self {
            ip: "::",
            only_v6: Some(false),
            reuse_addr,
            reuse_port,
        }
    }

    /// Listens on a test port and returns it. Not one from `bind(0)`: that is free only for
    /// this socket's reach, and a test that then binds `127.0.0.1` beside a `[::1]` listener
    /// would race every outgoing connection for it.
    fn listen(self) -> (Socket, u16) {
        let addr = SocketAddr::new(self.ip.parse().unwrap(), free_port());
        let socket =
            Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).unwrap();
        if let Some(only_v6) = self.only_v6 {
            socket.set_only_v6(only_v6).unwrap();
        }
        socket.set_reuse_address(self.reuse_addr).unwrap();
        socket.set_reuse_port(self.reuse_port).unwrap();
        socket.bind(&addr.into()).unwrap();
        socket.listen(128).unwrap();
        socket.set_nonblocking(true).unwrap();
        let port = socket.local_addr().unwrap().as_socket().unwrap().port();
        (socket, port)
    }
}

const FOREIGN_LISTENERS: [Foreign; 10] = [
    Foreign::v4("127.0.0.1", false, false),
    Foreign::v4("127.0.0.1", true, false),
    Foreign::v4("127.0.0.1", false, true),
    Foreign::v4("127.0.0.1", true, true),
    Foreign::v4("0.0.0.0", false, false),
    Foreign::v4("0.0.0.0", true, false),
    Foreign::v4("0.0.0.0", true, true),
    Foreign::dual_stack(false, false),
    Foreign::dual_stack(true, false),
    Foreign::dual_stack(true, true),
];

/// Connects `count` times to `addr`; each connection must be accepted by `foreign`. A
/// connection that reached any other listener would never show up in its queue.
fn assert_foreign_gets_every_connection(foreign: &Socket, addr: SocketAddr, count: usize) {
    for i in 0..count {
        let _client = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("connection {i} to {addr}: {e}"));
        assert!(
            wait_until(Duration::from_secs(2), || foreign.accept().is_ok()),
            "connection {i} to {addr} did not reach the foreign listener"
        );
    }
}

#[test]
fn foreign_listener_keeps_its_port_whatever_its_socket_options() {
    for foreign in FOREIGN_LISTENERS {
        let env = TestEnv::new();
        let (socket, port) = foreign.listen();
        // On Apple platforms a wildcard listener (IPv4, or dual-stack `[::]`, which takes
        // 0.0.0.0 too) is met by the guard on 0.0.0.0 (src/bind.rs), and named as such.
        let refused_at = if cfg!(target_vendor = "apple") && foreign.ip != "127.0.0.1" {
            "0.0.0.0"
        } else {
            "127.0.0.1"
        };
        let expected =
            format!("another gateway instance is already listening on ws://{refused_at}:{port}");

        // The library, over and over, while clients connect: every connection is the
        // foreign listener's, and no attempt ever gets the port.
        let attempting = AtomicBool::new(true);
        std::thread::scope(|scope| {
            let attempts = scope.spawn(|| {
                let mut count = 0;
                while attempting.load(Ordering::Relaxed) || count < 5 {
                    match GatewayLock::acquire(&env.options().port(port)) {
                        Err(err @ GatewayLockError::AddrInUse { .. }) => {
                            assert_eq!(err.to_string(), expected, "{foreign:?}")
                        }
                        Err(err) => panic!("{foreign:?}: unexpected error {err}"),
                        Ok(lock) => {
                            panic!("{foreign:?}: we got the port: {:?}", lock.local_addrs())
                        }
                    }
                    count += 1;
                }
                count
            });
            assert_foreign_gets_every_connection(
                &socket,
                SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                30,
            );
            attempting.store(false, Ordering::Relaxed);
            assert!(attempts.join().unwrap() >= 5);
        });
        assert_eq!(env.lock_dir_entries(), Vec::<String>::new(), "{foreign:?}");

        // The CLI says the same and exits 1 at once.
        let exit = run_to_exit(
            env.command(&["run", "--port", &port.to_string()]),
            Duration::from_secs(10),
        );
        assert_eq!(exit.code, Some(1), "{foreign:?}: {exit:?}");
        assert!(
            exit.elapsed < Duration::from_secs(2),
            "{foreign:?}: {exit:?}"
        );
        assert_eq!(
            exit.stderr_lines(),
            [format!("Gateway failed to start: {expected}")],
            "{foreign:?}"
        );
        assert!(exit.stdout.is_empty(), "{foreign:?}: {exit:?}");
        assert_eq!(env.lock_dir_entries(), Vec::<String>::new(), "{foreign:?}");
        assert_foreign_gets_every_connection(
            &socket,
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            3,
        );
    }
}

#[test]
fn without_a_foreign_listener_both_loopbacks_are_ours() {
    // The control of the next test: the alias is bound when it is free.
    let env = TestEnv::new();
    let (logger, lines) = recording_logger();
    let lock = GatewayLock::acquire(&env.options().port(free_port()).logger(logger)).unwrap();
    let port = lock.port();
    assert_eq!(
        lock.local_addrs(),
        [
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        ]
    );
    let warnings: Vec<_> = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(level, _)| *level >= LogLevel::Warn)
        .cloned()
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn foreign_ipv6_loopback_alone_costs_only_the_alias_library() {
    for (reuse_addr, reuse_port) in [(false, false), (true, false), (false, true), (true, true)] {
        let foreign = Foreign {
            ip: "::1",
            only_v6: None,
            reuse_addr,
            reuse_port,
        };
        let env = TestEnv::new();
        let (socket, port) = foreign.listen();
        let (logger, lines) = recording_logger();
        let lock = GatewayLock::acquire(&env.options().port(port).logger(logger)).unwrap();
        assert_eq!(
            lock.local_addrs(),
            [SocketAddr::from((Ipv4Addr::LOCALHOST, port))],
            "{foreign:?}"
        );
        let expected = format!(
            "not listening on the IPv6 loopback alias: another gateway instance is already listening on ws://[::1]:{port}"
        );
        assert!(
            lines
                .lock()
                .unwrap()
                .iter()
                .any(|(level, line)| *level == LogLevel::Warn && *line == expected),
            "{foreign:?}: {:?}",
            lines.lock().unwrap()
        );
        let gateway = Gateway::serve(lock, ServeOptions::default()).unwrap();
        assert!(healthy(port), "{foreign:?}");
        // [::1] stays the foreign listener's.
        let alias = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        assert_foreign_gets_every_connection(&socket, alias, 10);
        gateway.shutdown(Duration::from_secs(2));
        assert!(port_is_free(port), "{foreign:?}");
        assert!(env.lock_dir_entries().is_empty(), "{foreign:?}");
        assert_foreign_gets_every_connection(&socket, alias, 1);
    }
}

#[test]
fn foreign_ipv6_loopback_alone_costs_only_the_alias_cli() {
    let env = TestEnv::new();
    let (socket, port) = Foreign {
        ip: "::1",
        only_v6: None,
        reuse_addr: true,
        reuse_port: false,
    }
    .listen();
    let gateway = env.start(&["--port", &port.to_string()]);
    assert_eq!(gateway.port, port);
    let line = gateway
        .wait_stderr("IPv6 loopback alias", Duration::from_secs(2))
        .expect("the alias failure is logged");
    assert_eq!(
        line,
        format!(
            "gateway: not listening on the IPv6 loopback alias: another gateway instance is already listening on ws://[::1]:{port}"
        )
    );
    assert!(healthy(port));
    assert_foreign_gets_every_connection(
        &socket,
        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        10,
    );
    assert_eq!(env.lock_dir_entries().len(), 2);
    assert_eq!(gateway.terminate(), 0);
    assert!(port_is_free(port));
    assert!(env.lock_dir_entries().is_empty());
}

#[test]
fn deleted_lock_files_leave_the_port_on_guard_and_the_holder_notices() {
    let env = TestEnv::new();
    let port = free_port().to_string();
    let holder = env.start(&["--port", &port, "--lock-recheck-ms", "200"]);
    let port = holder.port;
    let state_lock = env.state_lock();
    assert!(state_lock.exists() && env.config_lock().exists());
    std::fs::remove_file(&state_lock).unwrap();
    std::fs::remove_file(env.config_lock()).unwrap();
    let deleted = Instant::now();

    std::thread::scope(|scope| {
        // A new starter passes the (now missing) files and is stopped by the port.
        let starter = scope.spawn(|| {
            run_to_exit(
                env.command(&["run", "--port", &port.to_string()]),
                Duration::from_secs(10),
            )
        });
        let line = holder
            .wait_stderr("was removed or replaced", Duration::from_secs(5))
            .expect("the holder notices the deleted lock file");
        let noticed = deleted.elapsed();
        assert!(
            line.starts_with(&format!(
                "gateway: gateway lock file {} was removed or replaced; ",
                state_lock.display()
            )),
            "{line}"
        );
        // Within about one 200 ms re-check interval (the default is 60 s; the bound leaves room
        // for a loaded machine).
        assert!(
            noticed < Duration::from_secs(3),
            "noticed after {noticed:?}"
        );

        let exit = starter.join().unwrap();
        assert_eq!(exit.code, Some(1), "{exit:?}");
        assert_eq!(
            exit.stderr_lines(),
            [format!(
                "Gateway failed to start: another gateway instance is already listening on ws://127.0.0.1:{port}"
            )]
        );
    });
    assert_eq!(env.lock_dir_entries(), Vec::<String>::new());
    // The holder keeps serving; it has told its host, which decides.
    assert!(healthy(port));
    assert_eq!(holder.terminate(), 0);
    assert!(port_is_free(port));
    assert!(env.lock_dir_entries().is_empty());
}

#[test]
fn library_holder_learns_its_lock_file_was_replaced() {
    let env = TestEnv::new();
    let (logger, lines) = recording_logger();
    let options = env
        .options()
        .port(free_port())
        .recheck_interval(Duration::from_millis(200))
        .logger(logger);
    let lock = GatewayLock::acquire(&options).unwrap();
    let port = lock.port();
    let (lost_tx, lost_rx) = std::sync::mpsc::channel();
    lock.on_lost(move |path| lost_tx.send(path.to_path_buf()).unwrap());

    // Untouched for more than two intervals: nothing to report.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!lock.is_lost());
    assert!(lost_rx.try_recv().is_err());

    // Replaced: same bytes, another inode.
    let config_lock = env.config_lock();
    let bytes = std::fs::read(&config_lock).unwrap();
    std::fs::remove_file(&config_lock).unwrap();
    std::fs::write(&config_lock, &bytes).unwrap();
    let replaced = Instant::now();
    let path = lost_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("on_lost is called");
    // Within about one 200 ms interval (the default is 60 s), with room for a loaded machine.
    assert!(
        replaced.elapsed() < Duration::from_secs(3),
        "{:?}",
        replaced.elapsed()
    );
    assert_eq!(path, config_lock);
    assert!(lock.is_lost());
    let expected = format!(
        "gateway lock file {} was removed or replaced; ",
        config_lock.display()
    );
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|(level, line)| *level == LogLevel::Error && line.starts_with(&expected)),
        "{:?}",
        lines.lock().unwrap()
    );
    // Called once.
    std::thread::sleep(Duration::from_millis(500));
    assert!(lost_rx.try_recv().is_err());

    // A new starter on the same config is still refused: the state lock is intact and held.
    let err = GatewayLock::acquire(&env.options().port(port).timeout(Duration::from_millis(300)))
        .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "gateway already running (pid {})",
            std::process::id()
        )),
        "{err}"
    );

    // Release removes only what is still ours: the state lock, not the file that replaced
    // the config lock.
    lock.release();
    assert!(port_is_free(port));
    assert_eq!(
        env.lock_dir_entries(),
        [config_lock
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()]
    );
}

#[test]
fn release_raced_by_two_starters_never_gives_two_holders() {
    const ROUNDS: usize = 12;
    let env = TestEnv::new();
    let port = free_port().to_string();
    let mut holder = env.start(&["--port", &port]);
    let port = holder.port;
    let port_arg = port.to_string();
    for round in 0..ROUNDS {
        let stop = AtomicBool::new(false);
        let winners: Mutex<Vec<GatewayProcess>> = Mutex::new(Vec::new());
        let late_failures = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let starter = || {
                while !stop.load(Ordering::Acquire) {
                    let command =
                        env.command(&["run", "--port", &port_arg, "--lock-timeout-ms", "300"]);
                    match GatewayProcess::spawn(command) {
                        Ok(winner) => {
                            winners.lock().unwrap().push(winner);
                            return;
                        }
                        Err(exit) => {
                            assert_eq!(exit.code, Some(1), "round {round}: {exit:?}");
                            assert!(
                                exit.stderr.contains("gateway already running")
                                    || exit
                                        .stderr
                                        .contains("another gateway instance is already listening"),
                                "round {round}: {exit:?}"
                            );
                            if !winners.lock().unwrap().is_empty() {
                                late_failures.fetch_add(1, Ordering::Relaxed);
                            }
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
            };
            let starters = [scope.spawn(starter), scope.spawn(starter)];
            // Both are refused by the healthy holder; then it is told to stop.
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                winners.lock().unwrap().is_empty(),
                "round {round}: a starter beat a healthy holder"
            );
            holder.signal(libc::SIGTERM);
            assert!(
                wait_until(Duration::from_secs(10), || !winners
                    .lock()
                    .unwrap()
                    .is_empty()),
                "round {round}: nobody took over"
            );
            // The loser keeps trying for a while against the new holder.
            assert!(
                wait_until(Duration::from_secs(5), || late_failures
                    .load(Ordering::Relaxed)
                    >= 2
                    || starters.iter().all(|s| s.is_finished())),
                "round {round}: the loser did not try again"
            );
            stop.store(true, Ordering::Release);
            for starter in starters {
                starter.join().unwrap();
            }
        });
        let status = wait_with_timeout(&mut holder.child, Duration::from_secs(10));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "round {round}");
        let mut winners = winners.into_inner().unwrap();
        let pids: Vec<u32> = winners.iter().map(|w| w.pid).collect();
        assert_eq!(
            pids.len(),
            1,
            "round {round}: two holders at once: {pids:?}"
        );
        let mut winner = winners.pop().unwrap();
        assert!(winner.child.try_wait().unwrap().is_none(), "round {round}");
        assert!(healthy(port), "round {round}");
        // Both lock files are the winner's, and only they are left.
        assert_eq!(env.lock_dir_entries().len(), 2, "round {round}");
        for lock in [env.state_lock(), env.config_lock()] {
            let payload: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&lock).unwrap()).unwrap();
            assert_eq!(
                payload["pid"],
                winner.pid,
                "round {round}: {}",
                lock.display()
            );
        }
        holder = winner;
    }
    assert_eq!(holder.terminate(), 0);
    assert!(env.lock_dir_entries().is_empty());
}
