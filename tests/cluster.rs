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
use common::readyz::{Answer, Sampler, Target, probe_readyz};
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
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    env: TestEnv,
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
            env,
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
            .find(
                &format!("cluster {CLUSTER}: standing by; the leader is"),
                since,
            )
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
        assert!(self.exit.is_none(), "{} already exited", self.name);
        // SAFETY: signalling our own child, not yet reaped (`exit` is None until then).
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
            // SIGKILL ends a stopped process too.
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
/// and every other member says it stands by (all still running). Returns the leader's index
/// and fencing token.
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
    let (_, new_token) = members[new]
        .led_since(killed)
        .expect("the new leader says so");
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

/// How a request sent on a connection ended.
#[derive(Debug)]
enum Reply {
    /// The request's `res`: ok, and the error code if not.
    Answered { ok: bool, code: Option<String> },
    /// A close frame with this code, before any `res`.
    Closed(u16),
    /// The connection ended without either.
    Ended,
}

/// Reads `client`'s frames (events skipped) until the `res` to `id`, a close, or the end.
async fn reply_to(client: &mut wsclient::Client, id: &str) -> (Reply, Option<u16>) {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let mut reply = None;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), client.ws.next()).await;
        match next {
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                if frame["type"] == "res" && frame["id"] == id && reply.is_none() {
                    reply = Some(Reply::Answered {
                        ok: frame["ok"] == true,
                        code: frame["error"]["code"].as_str().map(str::to_owned),
                    });
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                let code = frame.map(|f| u16::from(f.code));
                return (reply.unwrap_or(Reply::Closed(code.unwrap_or(0))), code);
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return (reply.unwrap_or(Reply::Ended), None),
            Err(_) => panic!("no reply and no close within 10 s of SIGCONT: {reply:?}"),
        }
    }
}

#[test]
fn a_leader_resumed_after_sigstop_past_the_ttl_never_serves_again_and_stands_by() {
    let _serial = serial();
    let etcd = EtcdCluster::start(3);
    let (mut members, sampler, leader, _) = three_on_loopback(&etcd);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = members[leader].port;
    // A client of the leader, connected and answered before the pause.
    let mut client = runtime.block_on(async {
        let mut client = wsclient::Client::listener(port, None).await;
        let res = client.call("before", "health", serde_json::json!({})).await;
        assert_eq!(res["ok"], true, "health before the pause: {res}");
        client
    });

    let stopped = Instant::now();
    members[leader].signal(libc::SIGSTOP);
    let (new, served) = wait_takeover(&sampler, leader, stopped, &members);
    eprintln!(
        "[cluster] SIGSTOP of the leader: a standby served {} ms after the stop",
        ms(served - stopped)
    );
    // Stopped past the TTL, whatever the takeover took.
    std::thread::sleep(
        (stopped + TTL + Duration::from_millis(500)).saturating_duration_since(Instant::now()),
    );
    // A method call that waits in the socket for the process to resume: the first thing it
    // reads after SIGCONT.
    runtime.block_on(client.send(serde_json::json!({
        "type": "req", "id": "after", "method": "health", "params": {},
    })));

    // From the moment it resumes, ask its /readyz as fast as it answers, for 3 s.
    let addr = members[leader].target.addr;
    let resumed = Instant::now();
    members[leader].signal(libc::SIGCONT);
    let prober = std::thread::spawn(move || {
        let (mut probes, mut served) = (0, Vec::new());
        while resumed.elapsed() < Duration::from_secs(3) {
            let answer = probe_readyz(addr);
            probes += 1;
            if answer.serves() {
                served.push(resumed.elapsed());
            }
        }
        (probes, served)
    });
    let (reply, close) = runtime.block_on(reply_to(&mut client, "after"));
    let (probes, served_after) = prober.join().unwrap();
    eprintln!(
        "[cluster] SIGCONT: {probes} /readyz probes of the old leader in 3 s, {} answered 200; the call waiting in its socket got {reply:?} (close {close:?})",
        served_after.len()
    );
    assert!(
        served_after.is_empty(),
        "the resumed old leader answered /readyz 200 at {served_after:?} after SIGCONT"
    );
    match reply {
        Reply::Answered { ok: false, code } => {
            assert_eq!(code.as_deref(), Some("UNAVAILABLE"));
            assert_eq!(close, Some(1012), "closed 1012 after the refusal");
        }
        Reply::Closed(code) => assert_eq!(code, 1012, "closed 1012"),
        other => {
            panic!("the call sent before SIGCONT was answered as leader or not refused: {other:?}")
        }
    }
    // It becomes a standby of the new leader.
    let fenced = members[leader].stderr.wait(
        "no longer the cluster's leader; standing by",
        resumed,
        SETTLE,
    );
    assert!(fenced.is_some(), "{}", members[leader].describe());
    let standing_by =
        members[leader]
            .stderr
            .wait("standing by; the leader is host", resumed, SETTLE);
    let new_pid = members[new].pid();
    assert!(
        standing_by.is_some_and(|(_, line)| line.contains(&format!("(pid {new_pid},"))),
        "the old leader stands by naming the new one (pid {new_pid})\n{}",
        members[leader].describe()
    );
    assert!(members[leader].running());
    std::thread::sleep(Duration::from_millis(500));
    let samples = sampler.stop();
    samples.report("SIGSTOP past the TTL, then SIGCONT");
    samples.assert_never_two_serving("SIGSTOP/SIGCONT of the leader");
    assert!(
        samples.since(resumed).all(|s| !s.answers[leader].serves()),
        "the old leader served in a sample after SIGCONT"
    );
}

/// The first sample after `after` in which `member` stopped serving for sure: `/readyz` 503 or
/// its port closed (a silent probe says nothing).
fn wait_fenced(sampler: &Sampler, member: usize, after: Instant) -> Option<Instant> {
    let mut fenced = None;
    wait_until(SETTLE, || {
        fenced = sampler
            .snapshot()
            .first_after(after, |answers| {
                matches!(answers[member], Answer::Status(503) | Answer::Refused)
            })
            .map(|s| s.done);
        fenced.is_some()
    });
    fenced
}

#[test]
fn a_leader_partitioned_from_etcd_fences_itself_before_the_ttl_and_a_standby_takes_over() {
    let _serial = serial();
    let mut lan = Lan::new();
    let etcd = EtcdCluster::start_with(3, Some(lan.bridge_ip()));
    let hosts: Vec<Host> = (0..3).map(|_| lan.host()).collect();
    // The same port on every host: they are different machines.
    let port = free_port();
    let since = Instant::now();
    let mut members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .zip(&hosts)
        .map(|(name, host)| Member::on_host(name, host, &etcd, &lan, port))
        .collect();
    let sampler = Sampler::start(targets(&members));
    let (leader, token) = wait_one_leader(&mut members, since, "start");

    // Cut right after the election, before the first renewal: the deadline still runs from
    // the campaign's send, so the fence comes as late as it can (a renew deadline after).
    let cut = Instant::now();
    hosts[leader].partition();
    let fenced = wait_fenced(&sampler, leader, cut).unwrap_or_else(|| {
        panic!(
            "the partitioned leader kept serving\n{}",
            describe(&members)
        )
    });
    let (new, served) = wait_takeover(&sampler, leader, cut, &members);
    eprintln!(
        "[cluster] partition of the leader: it stopped serving {} ms after its link went down (renew deadline {} ms, TTL {} ms); a standby served {} ms after the cut",
        ms(fenced - cut),
        ms(RENEW_DEADLINE),
        ms(TTL),
        ms(served - cut)
    );
    assert!(
        fenced - cut < TTL,
        "the partitioned leader stopped serving {} ms after the cut, not before the TTL\n{}",
        ms(fenced - cut),
        describe(&members)
    );
    let (_, new_token) = members[new].led_since(cut).expect("the new leader says so");
    assert!(new_token > token, "fencing token {new_token} after {token}");

    let healed = Instant::now();
    hosts[leader].heal();
    // The old leader rejoins as a standby of the new one; one leader throughout.
    let standing_by =
        members[leader]
            .stderr
            .wait("standing by; the leader is host", healed, SETTLE);
    assert!(
        standing_by.is_some() && members[leader].running(),
        "after the heal the old leader stands by\n{}",
        describe(&members)
    );
    std::thread::sleep(Duration::from_secs(1));
    let last = sampler.snapshot();
    let settled: Vec<&common::readyz::Sample> = last
        .since(Instant::now() - Duration::from_millis(500))
        .collect();
    assert!(
        settled
            .iter()
            .all(|s| s.serving() == [new] || s.answers[new] == Answer::Silent),
        "after the heal only the new leader serves: {:?}",
        settled.iter().map(|s| &s.answers).collect::<Vec<_>>()
    );
    let samples = sampler.stop();
    samples.report("partition of the leader, then heal");
    samples.assert_never_two_serving("partition of the leader");
}

#[test]
fn losing_etcd_quorum_fences_the_leader_and_quorum_back_gives_one_leader() {
    let _serial = serial();
    let mut etcd = EtcdCluster::start(3);
    let (mut members, sampler, leader, token) = three_on_loopback(&etcd);

    // One member of three lost, etcd's own leader (the harder case: the others elect a new
    // one while the gateway's renewals fail): a quorum is left; nothing changes.
    let first = etcd.leader().expect("etcd has a leader");
    let second = (first + 1) % etcd.len();
    let first_loss = Instant::now();
    etcd.kill(first);
    std::thread::sleep(TTL + Duration::from_secs(1));
    let window = sampler.snapshot();
    let changed: Vec<_> = window
        .since(first_loss)
        .filter(|s| {
            (0..s.answers.len()).any(|i| match i == leader {
                true => matches!(s.answers[i], Answer::Status(503) | Answer::Refused),
                false => s.answers[i].serves(),
            })
        })
        .map(|s| s.answers.clone())
        .collect();
    assert!(
        changed.is_empty(),
        "with one etcd member of three lost, the leader must stay: {changed:?}\n{}",
        describe(&members)
    );
    assert!(members[leader].readyz().serves());
    // How close the leader came to its renew deadline while etcd elected a new leader.
    let closest = members[leader]
        .stderr
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at >= first_loss)
        .filter_map(|(_, line)| {
            let (before, _) = line.split_once(" ms left before this gateway stops serving")?;
            before.rsplit(' ').next()?.parse::<u64>().ok()
        })
        .min();
    let closest = match closest {
        Some(left) => format!("a failed renewal left {left} ms of its renew deadline at worst"),
        None => "no renewal failed".to_owned(),
    };
    eprintln!("[cluster] etcd leader lost (1 of 3): the gateway leader stayed; {closest}");
    assert!(
        members[leader]
            .stderr
            .find("stopped serving as leader", first_loss)
            .is_none(),
        "{}",
        members[leader].describe()
    );

    // Two of three lost: no quorum; the leader stops serving within the renew deadline of
    // its last answered renewal. That renewal may be answered after the loss: when the member
    // left is etcd's raft leader, it answers lease renewals itself until check-quorum makes it
    // step down. It checks once per election timeout (1 s in tests/common/etcd.rs) whether
    // each follower was heard from since the last check, so it steps down 1 to 2 election
    // timeouts after the loss. Half a second more for the busy machine. (This can end past
    // the TTL, and safely: without a quorum no lease expires, and a new etcd leader extends
    // every lease it takes over.)
    const MARGIN: Duration = Duration::from_millis(2 * 1000 + 500);
    let quorum_lost = Instant::now();
    etcd.kill(second);
    let fenced = wait_fenced(&sampler, leader, quorum_lost).unwrap_or_else(|| {
        panic!(
            "the leader kept serving without an etcd quorum\n{}",
            describe(&members)
        )
    });
    eprintln!(
        "[cluster] etcd quorum lost: the leader stopped serving {} ms after the second member died (bound: renew deadline {} ms + {} ms)",
        ms(fenced - quorum_lost),
        ms(RENEW_DEADLINE),
        ms(MARGIN)
    );
    assert!(
        fenced - quorum_lost <= RENEW_DEADLINE + MARGIN,
        "the leader stopped serving {} ms after quorum was lost\n{}",
        ms(fenced - quorum_lost),
        describe(&members)
    );
    // Nobody serves without a quorum, for longer than a TTL.
    std::thread::sleep(TTL + Duration::from_secs(1));
    let without_quorum = sampler.snapshot();
    let serving: Vec<_> = without_quorum
        .since(fenced)
        .filter(|s| !s.serving().is_empty())
        .map(|s| s.answers.clone())
        .collect();
    assert!(
        serving.is_empty(),
        "a gateway served without an etcd quorum: {serving:?}"
    );

    let restarted = Instant::now();
    etcd.restart(first);
    etcd.restart(second);
    etcd.wait_healthy(3);
    let mut next = None;
    wait_until(SETTLE, || {
        next = (0..members.len()).find(|&i| members[i].led_since(restarted).is_some());
        next.is_some()
    });
    let next =
        next.unwrap_or_else(|| panic!("no leader after quorum came back\n{}", describe(&members)));
    eprintln!(
        "[cluster] etcd quorum back: {} leads {} ms after the restart",
        members[next].name,
        ms(members[next].led_since(restarted).unwrap().0 - restarted)
    );
    let (_, new_token) = members[next].led_since(restarted).unwrap();
    assert!(new_token > token, "fencing token {new_token} after {token}");
    let (one, _) = wait_one_leader(&mut members, restarted, "quorum back");
    assert_eq!(one, next);
    std::thread::sleep(Duration::from_millis(500));
    let samples = sampler.stop();
    samples.report("etcd members lost and back");
    samples.assert_never_two_serving("etcd members lost and back");
}

/// `--cluster-name ctest`'s key in the store: its revision and the store's, by etcdctl.
fn key_revisions(etcd: &EtcdCluster) -> (i64, i64) {
    let answer: serde_json::Value = serde_json::from_str(&etcd.etcdctl(&[
        "get",
        &format!("/openclaw/gateway/{CLUSTER}"),
        "-w",
        "json",
    ]))
    .unwrap();
    (
        answer["kvs"][0]["mod_revision"]
            .as_i64()
            .expect("the key exists"),
        answer["header"]["revision"].as_i64().unwrap(),
    )
}

#[test]
fn cluster_errors_name_what_is_wrong_and_status_reads_the_leader_without_writing() {
    let _serial = serial();
    // An endpoint where nothing listens: `run` fails at once, naming it, with the lock files
    // gone and the port free for the next gateway.
    let env = TestEnv::new();
    let port = free_port().to_string();
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let exit = run_to_exit(
        env.command(&[
            "run",
            "--port",
            &port,
            "--cluster",
            &format!("etcd={nowhere}"),
        ]),
        SETTLE,
    );
    eprintln!(
        "[cluster] unreachable etcd: `gateway run` failed after {} ms",
        ms(exit.elapsed)
    );
    assert_eq!(exit.code, Some(1), "{exit}");
    assert!(
        exit.stderr.contains(&format!(
            "Gateway failed to start: cannot reach the cluster store etcd={nowhere}: "
        )) && exit
            .stderr
            .contains("check that etcd runs at those client URLs"),
        "{exit}"
    );
    assert!(
        !env.state_lock().exists() && !env.config_lock().exists(),
        "{:?}",
        env.lock_dir_entries()
    );
    env.start(&["--port", &port]).terminate();

    // A --cluster that names no store, and an endpoint that is no http:// URL.
    for (spec, named, hint) in [
        (
            "consul=http://127.0.0.1:8500",
            "\"consul=http://127.0.0.1:8500\"",
            "write etcd=http://HOST:2379",
        ),
        (
            "etcd=https://127.0.0.1:2379",
            "\"https://127.0.0.1:2379\"",
            "is not an http:// URL",
        ),
        (
            "etcd=",
            "names an empty endpoint",
            "write etcd=http://HOST:2379",
        ),
    ] {
        let exit = run_to_exit(
            env.command(&["run", "--port", &port, "--cluster", spec]),
            SETTLE,
        );
        assert_eq!(exit.code, Some(1), "--cluster {spec}: {exit}");
        assert!(
            exit.stderr.starts_with("Gateway failed to start: ")
                && exit.stderr.contains(named)
                && exit.stderr.contains(hint),
            "--cluster {spec}: {exit}"
        );
        assert!(
            env.lock_dir_entries().iter().all(|f| !f.ends_with(".lock")),
            "{:?}",
            env.lock_dir_entries()
        );
    }

    // `status --cluster` shows the leader and writes nothing.
    let etcd = EtcdCluster::start(3);
    let started = Instant::now();
    let leader = Member::on_loopback("a", &etcd);
    let (_, token) = leader
        .wait_leads(started, SETTLE)
        .unwrap_or_else(|| panic!("{}", leader.describe()));
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let hostname = hostname.trim();
    let before = key_revisions(&etcd);
    for _ in 0..2 {
        let exit = run_to_exit(
            leader.env.command(&[
                "status",
                "--port",
                &leader.port.to_string(),
                "--cluster",
                &etcd.cluster_arg(),
                "--cluster-name",
                CLUSTER,
                "--json",
            ]),
            SETTLE,
        );
        assert_eq!(exit.code, Some(0), "{exit}");
        let status: serde_json::Value = serde_json::from_str(&exit.stdout).unwrap();
        let shown = &status["cluster"]["leader"];
        assert_eq!(shown["pid"], leader.pid(), "{status}");
        assert_eq!(shown["port"], leader.port, "{status}");
        assert_eq!(shown["fencingToken"], token, "{status}");
        assert_eq!(shown["host"], hostname, "{status}");
        assert_eq!(status["cluster"]["name"], CLUSTER, "{status}");
    }
    assert_eq!(
        key_revisions(&etcd),
        before,
        "status changed the leader's key or wrote to the store"
    );
}
