//! Cluster mode against a real 3-member etcd and real faults (issue 14): `gateway run
//! --cluster` processes, each its own "host" (its own state dir; its own network namespace
//! where the fault is the network), under one cluster key. A sampler asks every gateway's
//! `/readyz` every 10 ms throughout each scenario: at no sampled instant may two answer 200.
//! The sample counts and the measured failover times are printed (`--nocapture`).
//!
//! The scenarios run one at a time: each starts 3 etcd members and 3 gateways, and the
//! failover bounds (200 ms for a graceful stop) are measured, which two cores shared by
//! parallel scenarios would blur.
#![cfg(all(target_os = "linux", feature = "cluster-etcd"))]

mod common;
mod race;
mod wsclient;

use std::io::{BufRead as _, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::etcd::EtcdCluster;
use common::hosts::{Host, Lan};
use common::readyz::{Answer, Sampler, Samples, Target, probe_readyz};
use common::*;

/// The lease TTL every scenario runs with: the default, as the bounds are given for.
const TTL: Duration = Duration::from_secs(5);
/// The renew deadline: a leader that has not renewed for this long stops serving.
const RENEW_DEADLINE: Duration = Duration::from_millis(5000 * 2 / 3);
/// How long a condition that must come may take on a loaded machine (never a bound).
const SETTLE: Duration = Duration::from_secs(30);
/// The cluster name every gateway of a scenario joins (their config paths differ).
const CLUSTER: &str = "ctest";

/// One scenario at a time (see the module docs).
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A process's output lines, each with when it was read.
#[derive(Clone)]
struct Lines(Arc<Mutex<Vec<(Instant, String)>>>);

impl Lines {
    fn read(stream: impl Read + Send + 'static) -> Self {
        let lines = Self(Arc::new(Mutex::new(Vec::new())));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap().push((Instant::now(), line));
            }
        });
        lines
    }

    /// The first line read at or after `since` that contains `needle`.
    fn find(&self, needle: &str, since: Instant) -> Option<(Instant, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|(at, line)| *at >= since && line.contains(needle))
            .cloned()
    }

    fn wait(&self, needle: &str, since: Instant, timeout: Duration) -> Option<(Instant, String)> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.find(needle, since);
            found.is_some()
        });
        found
    }

    fn text(&self) -> String {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .map(|(_, line)| line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One `gateway run --cluster` on its own "host": its own state dir, maybe its own network
/// namespace. Killed on drop.
struct Member {
    name: String,
    child: Child,
    port: u16,
    target: Target,
    stdout: Lines,
    stderr: Lines,
    exit: Option<(Instant, ExitStatus)>,
    _env: TestEnv,
}

impl Member {
    /// `gateway run`'s arguments for `port` in cluster mode on `etcd` (`etcd=URL,...`).
    fn args(port: u16, etcd: &str, bind_host: Option<&Host>) -> Vec<String> {
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--cluster",
            etcd,
            "--cluster-name",
            CLUSTER,
            "--cluster-ttl",
            "5s",
        ]
        .map(str::to_owned)
        .to_vec();
        if let Some(host) = bind_host {
            // Off loopback a gateway needs a token; /readyz needs none.
            args.extend(
                [
                    "--bind",
                    "custom",
                    "--host",
                    &host.address.to_string(),
                    "--auth",
                    "token",
                    "--token",
                    "ctest-token",
                ]
                .map(str::to_owned),
            );
        }
        args
    }

    fn spawn(name: &str, env: TestEnv, mut command: Command, port: u16, target: Target) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gateway run --cluster");
        Self {
            name: name.to_owned(),
            stdout: Lines::read(child.stdout.take().unwrap()),
            stderr: Lines::read(child.stderr.take().unwrap()),
            child,
            port,
            target,
            exit: None,
            _env: env,
        }
    }

    /// A gateway on loopback at a port of its own.
    fn on_loopback(name: &str, etcd: &EtcdCluster) -> Self {
        let env = TestEnv::new();
        let port = free_port();
        let args = Self::args(port, &etcd.cluster_arg(), None);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let command = env.command(&[&["run"], &args[..]].concat());
        Self::spawn(name, env, command, port, Target::loopback(port))
    }

    /// A gateway on `host`, dialling etcd across the LAN.
    fn on_host(name: &str, host: &Host, etcd: &EtcdCluster, lan: &Lan, port: u16) -> Self {
        let env = TestEnv::new();
        let store = format!("etcd={}", etcd.endpoints_on(lan.bridge_ip()).join(","));
        let args = Self::args(port, &store, Some(host));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let command = host.command(&env.command(&[&["run"], &args[..]].concat()));
        let target = Target {
            addr: (host.address, port).into(),
            namespace: Some(Arc::new(host.namespace())),
        };
        Self::spawn(name, env, command, port, target)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The fencing token of its latest term as leader that began at or after `since`.
    fn led_since(&self, since: Instant) -> Option<(Instant, u64)> {
        let (at, line) = self.stdout.find("cluster leader, fencing token ", since)?;
        let token = line.rsplit(' ').next()?.parse().ok()?;
        Some((at, token))
    }

    fn wait_leads(&self, since: Instant, timeout: Duration) -> Option<(Instant, u64)> {
        let mut led = None;
        wait_until(timeout, || {
            led = self.led_since(since);
            led.is_some()
        });
        led
    }

    /// Whether it said, at or after `since`, that another gateway leads.
    fn stood_by_since(&self, since: Instant) -> bool {
        self.stderr
            .find(&format!("cluster {CLUSTER}: standing by; the leader is"), since)
            .is_some()
    }

    fn readyz(&self) -> Answer {
        if self.target.namespace.is_none() {
            return probe_readyz(self.target.addr);
        }
        let namespace = Arc::clone(self.target.namespace.as_ref().unwrap());
        let addr = self.target.addr;
        std::thread::spawn(move || {
            common::hosts::enter_namespace(&namespace);
            probe_readyz(addr)
        })
        .join()
        .unwrap()
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling our own child, not yet reaped (`exit` is None until then).
        assert!(self.exit.is_none(), "{} already exited", self.name);
        unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
    }

    /// Polls every millisecond for its exit: when it was seen, and how.
    fn wait_exit(&mut self, timeout: Duration) -> Option<(Instant, ExitStatus)> {
        let deadline = Instant::now() + timeout;
        while self.exit.is_none() && Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exit = Some((Instant::now(), status));
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.exit
    }

    fn running(&mut self) -> bool {
        if self.exit.is_none()
            && let Some(status) = self.child.try_wait().expect("try_wait")
        {
            self.exit = Some((Instant::now(), status));
        }
        self.exit.is_none()
    }

    /// SIGTERM, and its exit code.
    fn terminate(&mut self) -> Option<i32> {
        if self.running() {
            self.signal(libc::SIGTERM);
        }
        self.wait_exit(Duration::from_secs(15))
            .and_then(|(_, status)| status.code())
    }

    fn describe(&self) -> String {
        format!(
            "--- {} (pid {}, port {}, exit {:?})\nstdout:\n{}\nstderr:\n{}\n",
            self.name,
            self.pid(),
            self.port,
            self.exit.map(|(_, status)| status),
            self.stdout.text(),
            self.stderr.text()
        )
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if self.exit.is_none() {
            // A stopped process dies of SIGKILL too; SIGCONT is for its reaper's sake.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn describe(members: &[Member]) -> String {
    members.iter().map(Member::describe).collect()
}

fn targets(members: &[Member]) -> Vec<Target> {
    members.iter().map(|m| m.target.clone()).collect()
}

/// Waits until exactly one member says it leads (since `since`) and answers `/readyz` 200,
/// and every other running member says it stands by. Returns the leader's index and token.
fn wait_one_leader(members: &mut [Member], since: Instant, context: &str) -> (usize, u64) {
    let mut leader = None;
    let settled = wait_until(SETTLE, || {
        let leading: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].led_since(since).is_some())
            .collect();
        let [one] = leading[..] else { return false };
        let others_stand_by = (0..members.len())
            .filter(|&i| i != one)
            .all(|i| members[i].stood_by_since(since));
        if others_stand_by && members[one].readyz().serves() {
            leader = Some(one);
        }
        leader.is_some()
    });
    assert!(
        settled,
        "{context}: no single leader with the others standing by within {SETTLE:?}\n{}",
        describe(members)
    );
    let one = leader.unwrap();
    for (i, member) in members.iter_mut().enumerate() {
        assert!(member.running(), "{context}: {} exited", member.name);
        if i != one {
            assert!(
                !member.readyz().serves(),
                "{context}: standby {} answers /readyz 200\n{}",
                member.name,
                member.describe()
            );
        }
    }
    let (_, token) = members[one].led_since(since).unwrap();
    (one, token)
}

/// Waits (up to [`SETTLE`]) for a sample taken after `after` in which a member other than
/// `old` serves; returns it with its index.
fn wait_takeover(
    sampler: &Sampler,
    old: usize,
    after: Instant,
    members: &[Member],
) -> (usize, Instant) {
    let mut found = None;
    wait_until(SETTLE, || {
        found = sampler
            .snapshot()
            .first_after(after, |answers| {
                (0..answers.len()).any(|i| i != old && answers[i].serves())
            })
            .map(|s| {
                let new = (0..s.answers.len())
                    .find(|&i| i != old && s.answers[i].serves())
                    .unwrap();
                (new, s.done)
            });
        found.is_some()
    });
    found.unwrap_or_else(|| {
        panic!(
            "no standby served within {SETTLE:?} after {}'s end\n{}",
            members[old].name,
            describe(members)
        )
    })
}

/// Three gateways on loopback (each its own state dir and port) under one cluster key, with a
/// sampler on them, and their first leader settled.
fn three_on_loopback(etcd: &EtcdCluster) -> (Vec<Member>, Sampler, usize, u64) {
    let since = Instant::now();
    let mut members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|name| Member::on_loopback(name, etcd))
        .collect();
    let sampler = Sampler::start(targets(&members));
    let (leader, token) = wait_one_leader(&mut members, since, "start");
    (members, sampler, leader, token)
}

fn ms(duration: Duration) -> u128 {
    duration.as_millis()
}

#[test]
fn exactly_one_of_three_serves_in_twenty_start_races() {
    let _serial = serial();
    let etcd = EtcdCluster::start(3);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let sampler = Sampler::start(ports.iter().map(|&p| Target::loopback(p)).collect());
    let mut tokens = Vec::new();
    for round in 1..=20 {
        let (gate, release) = race::barrier_pipe();
        let since = Instant::now();
        let mut members: Vec<Member> = (0..3)
            .map(|i| {
                let args = Member::args(ports[i], &etcd.cluster_arg(), None);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let env = TestEnv::new();
                let command = race::gated_gateway(&env, &gate, &args);
                Member::spawn(
                    &format!("round {round} #{i}"),
                    env,
                    command,
                    ports[i],
                    Target::loopback(ports[i]),
                )
            })
            .collect();
        drop(gate);
        for member in &members {
            assert!(
                member.stdout.wait("armed", since, SETTLE).is_some(),
                "round {round}: {} did not arm",
                member.name
            );
        }
        // EOF on every reader at once: the barrier opens.
        drop(release);
        let (leader, token) = wait_one_leader(&mut members, since, &format!("round {round}"));
        tokens.push(token);
        for member in &mut members {
            let code = member.terminate();
            assert_eq!(
                code,
                Some(0),
                "round {round}: {} exits 0 on SIGTERM (leader: #{leader})\n{}",
                member.name,
                member.describe()
            );
        }
    }
    let samples = sampler.stop();
    samples.report("20 start races of 3 gateways");
    samples.assert_never_two_serving("start races");
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "each round's leader has a larger fencing token than the last: {tokens:?}"
    );
    eprintln!("[cluster] start races: fencing tokens {tokens:?}");
}

#[test]
fn a_standby_serves_within_ttl_plus_one_second_of_the_leaders_sigkill() {
    let _serial = serial();
    let etcd = EtcdCluster::start(3);
    let (mut members, sampler, leader, token) = three_on_loopback(&etcd);
    let killed = Instant::now();
    members[leader].signal(libc::SIGKILL);
    members[leader].wait_exit(SETTLE).expect("SIGKILL ends it");
    let (new, served) = wait_takeover(&sampler, leader, killed, &members);
    let failover = served - killed;
    // Let the new leader's term show in the samples for a while.
    std::thread::sleep(Duration::from_secs(1));
    let samples = sampler.stop();
    samples.report("SIGKILL of the leader");
    samples.assert_never_two_serving("SIGKILL of the leader");
    eprintln!(
        "[cluster] SIGKILL of the leader: a standby served {} ms after the kill (bound: TTL + 1 s = {} ms)",
        ms(failover),
        ms(TTL + Duration::from_secs(1))
    );
    assert!(
        failover <= TTL + Duration::from_secs(1),
        "a standby served {} ms after the leader's SIGKILL, past TTL + 1 s\n{}",
        ms(failover),
        describe(&members)
    );
    let (_, new_token) = members[new].led_since(killed).expect("the new leader says so");
    assert!(new_token > token, "fencing token {new_token} after {token}");
}

#[test]
fn a_standby_serves_within_200_ms_of_the_leaders_graceful_exit() {
    let _serial = serial();
    let etcd = EtcdCluster::start(3);
    let (mut members, sampler, mut leader, mut token) = three_on_loopback(&etcd);
    let mut tokens = vec![token];
    // Two hand-overs: a, then the one that took over, stop in turn.
    for hand_over in 1..=2 {
        let asked = Instant::now();
        members[leader].signal(libc::SIGTERM);
        let (exited, status) = members[leader]
            .wait_exit(SETTLE)
            .expect("the leader exits after SIGTERM");
        assert_eq!(status.code(), Some(0), "{}", members[leader].describe());
        let (new, served) = wait_takeover(&sampler, leader, asked, &members);
        let after_exit = served.saturating_duration_since(exited);
        eprintln!(
            "[cluster] graceful stop {hand_over}: the leader exited {} ms after SIGTERM; a standby served {} ms after its exit (bound 200 ms)",
            ms(exited - asked),
            ms(after_exit)
        );
        assert!(
            after_exit <= Duration::from_millis(200),
            "hand-over {hand_over}: a standby served {} ms after the leader's graceful exit, past 200 ms\n{}",
            ms(after_exit),
            describe(&members)
        );
        let (_, new_token) = members[new]
            .wait_leads(asked, SETTLE)
            .expect("the new leader says so");
        assert!(new_token > token, "fencing token {new_token} after {token}");
        tokens.push(new_token);
        (leader, token) = (new, new_token);
    }
    std::thread::sleep(Duration::from_millis(500));
    let samples = sampler.stop();
    samples.report("graceful stops of the leader");
    samples.assert_never_two_serving("graceful stops of the leader");
    eprintln!("[cluster] graceful stops: fencing tokens {tokens:?}");
}
