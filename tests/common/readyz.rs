//! A `/readyz` sampler for the cluster-mode tests: every 10 ms it asks every gateway at once
//! (one prober thread each, in the gateway's network namespace when it has one) and records
//! who answered what, so a test can check that at no sampled instant two gateways served, and
//! can measure when one started or stopped serving.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the sampler asks.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(10);
/// How long one probe may take to connect, and then to be answered.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(50);

/// Where a gateway answers: its address, and its network namespace if not the test's.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub namespace: Option<Arc<File>>,
}

impl Target {
    pub fn loopback(port: u16) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            namespace: None,
        }
    }
}

/// One probe's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP status.
    Status(u16),
    /// Nothing listens (connection refused): the gateway serves nobody.
    Refused,
    /// No answer within [`PROBE_TIMEOUT`] (a stopped process, a partition, a busy machine).
    Silent,
}

impl Answer {
    pub fn serves(self) -> bool {
        self == Answer::Status(200)
    }
}

/// `GET /readyz` once, with short timeouts.
pub fn probe_readyz(addr: SocketAddr) -> Answer {
    let mut stream = match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
        Ok(stream) => stream,
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => return Answer::Refused,
        Err(_) => return Answer::Silent,
    };
    let _ = stream.set_read_timeout(Some(PROBE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(PROBE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    if write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return Answer::Silent;
    }
    // The status line is all a sample needs: `HTTP/1.1 200 OK`.
    let mut head = [0u8; 12];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {
                return Answer::Refused;
            }
            Err(_) => return Answer::Silent,
        }
    }
    match std::str::from_utf8(&head[..read])
        .ok()
        .and_then(|line| line.strip_prefix("HTTP/1.1 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
    {
        Some(code) => Answer::Status(code),
        None if read == 0 => Answer::Refused,
        None => Answer::Silent,
    }
}

/// One sampled instant: when it was asked, when the last answer came, and each target's
/// answer (in target order). A measurement from an event to a sample uses `done`: the answer
/// was surely given by then.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub done: Instant,
    pub answers: Vec<Answer>,
}

impl Sample {
    pub fn serving(&self) -> Vec<usize> {
        (0..self.answers.len())
            .filter(|&i| self.answers[i].serves())
            .collect()
    }
}

/// The sampler while it runs; [`stop`](Self::stop) returns what it saw.
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling `targets` every [`SAMPLE_INTERVAL`].
    pub fn start(targets: Vec<Target>) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicBool::new(true));
        let thread = {
            let samples = Arc::clone(&samples);
            let running = Arc::clone(&running);
            std::thread::spawn(move || sample(targets, &samples, &running))
        };
        Self {
            samples,
            running,
            thread: Some(thread),
        }
    }

    /// The samples so far.
    pub fn snapshot(&self) -> Samples {
        Samples(self.samples.lock().unwrap().clone())
    }

    pub fn stop(mut self) -> Samples {
        self.running.store(false, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the sampler thread");
        }
        self.snapshot()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Release);
    }
}

/// The coordinator: each tick, every prober asks once, all at the same time; the tick is
/// recorded once all have answered (or timed out).
fn sample(targets: Vec<Target>, samples: &Mutex<Vec<Sample>>, running: &AtomicBool) {
    let (answers_tx, answers) = mpsc::channel::<(usize, Answer)>();
    let probers: Vec<mpsc::Sender<()>> = targets
        .into_iter()
        .enumerate()
        .map(|(index, target)| {
            let (tick_tx, ticks) = mpsc::channel::<()>();
            let answers_tx = answers_tx.clone();
            std::thread::spawn(move || {
                if let Some(namespace) = &target.namespace {
                    super::hosts::enter_namespace(namespace);
                }
                while ticks.recv().is_ok() {
                    if answers_tx.send((index, probe_readyz(target.addr))).is_err() {
                        return;
                    }
                }
            });
            tick_tx
        })
        .collect();
    let mut next = Instant::now();
    while running.load(Ordering::Acquire) {
        let at = Instant::now();
        for prober in &probers {
            prober.send(()).expect("a prober thread");
        }
        let mut row = vec![Answer::Silent; probers.len()];
        for _ in 0..probers.len() {
            let (index, answer) = answers.recv().expect("a prober's answer");
            row[index] = answer;
        }
        samples.lock().unwrap().push(Sample {
            at,
            done: Instant::now(),
            answers: row,
        });
        next += SAMPLE_INTERVAL;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            // A slow tick (probes timing out): the next one starts now, not in a burst.
            next = now;
        }
    }
}

/// What a sampler saw.
#[derive(Debug, Clone)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// How many samples found exactly one gateway serving, and how many found none.
    pub fn one_and_none(&self) -> (usize, usize) {
        let one = self.0.iter().filter(|s| s.serving().len() == 1).count();
        let none = self.0.iter().filter(|s| s.serving().is_empty()).count();
        (one, none)
    }

    /// Panics naming the first instant at which two or more gateways answered 200.
    pub fn assert_never_two_serving(&self, scenario: &str) {
        let start = self.0.first().map(|s| s.at);
        if let Some(sample) = self.0.iter().find(|s| s.serving().len() > 1) {
            panic!(
                "{scenario}: gateways {:?} all answered /readyz 200 in the sample taken {:?} \
                 into the scenario: {:?}",
                sample.serving(),
                sample.at - start.unwrap(),
                sample.answers
            );
        }
    }

    /// One line for the report: the sample counts.
    pub fn report(&self, scenario: &str) {
        let (one, none) = self.one_and_none();
        let two = self.0.iter().filter(|s| s.serving().len() > 1).count();
        eprintln!(
            "[cluster] {scenario}: {} /readyz samples every {} ms: {one} with exactly one \
             gateway serving, {none} with none, {two} with two or more",
            self.len(),
            SAMPLE_INTERVAL.as_millis()
        );
    }

    /// The first sample taken at or after `after` in which `matches(answers)` holds.
    pub fn first_after(
        &self,
        after: Instant,
        matches: impl Fn(&[Answer]) -> bool,
    ) -> Option<&Sample> {
        self.0.iter().find(|s| s.at >= after && matches(&s.answers))
    }

    /// The samples taken at or after `after`.
    pub fn since(&self, after: Instant) -> impl Iterator<Item = &Sample> {
        self.0.iter().filter(move |s| s.at >= after)
    }
}
