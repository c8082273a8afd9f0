//! A real etcd cluster for the cluster-mode tests and benches (issue 14): Debian's
//! `etcd-server` (3.4), `members` processes on loopback ports of this test process's block,
//! each with its own data dir. Every member dies with the test: on drop, and by
//! `PR_SET_PDEATHSIG` if the test process itself is killed. (The kernel sends that signal when
//! the *thread* that started the member ends: start and keep a cluster within one test's
//! thread, never in a static shared between tests.)
#![cfg(target_os = "linux")]

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::ports::free_port;
use super::wait::wait_until;

/// How long a cluster (or a restarted member) may take to answer healthy.
pub const ETCD_START_TIMEOUT: Duration = Duration::from_secs(30);

/// One member: its ports, its data dir, its process while it runs.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    process: Option<Child>,
}

/// A running etcd cluster. Dropped: every member is SIGKILLed and its data dir removed.
pub struct EtcdCluster {
    members: Vec<Member>,
    /// Besides 127.0.0.1, the clients' address every member listens on (a bridge the test's
    /// network namespaces reach), if any.
    extra_ip: Option<Ipv4Addr>,
    dir: tempfile::TempDir,
}

/// Fails naming the package when etcd is not installed.
fn etcd_binary() -> &'static str {
    let found = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "etcd is not installed: the cluster tests need Debian's etcd-server (scripts/test.sh installs it)"
    );
    "etcd"
}

impl EtcdCluster {
    /// Starts `members` members on loopback and waits until the cluster answers healthy.
    pub fn start(members: usize) -> Self {
        Self::start_with(members, None)
    }

    /// As [`start`](Self::start), each member also serving clients on `extra_ip` (an address of
    /// this namespace, e.g. a bridge's) at its client port.
    pub fn start_with(members: usize, extra_ip: Option<Ipv4Addr>) -> Self {
        etcd_binary();
        let dir = tempfile::Builder::new()
            .prefix("gateway-etcd-")
            .tempdir()
            .expect("a temp dir for etcd");
        let members = (0..members)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.path().join(format!("m{i}.data")),
                log: dir.path().join(format!("m{i}.log")),
                process: None,
            })
            .collect();
        let mut cluster = Self {
            members,
            extra_ip,
            dir,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i, "new");
        }
        cluster.wait_healthy(cluster.members.len());
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let initial_cluster = self.initial_cluster();
        let extra_ip = self.extra_ip;
        let member = &mut self.members[i];
        let mut listen = format!("http://127.0.0.1:{}", member.client_port);
        if let Some(ip) = extra_ip {
            listen.push_str(&format!(",http://{ip}:{}", member.client_port));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .expect("etcd log file");
        let mut command = Command::new(etcd_binary());
        command
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &listen])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{}", member.client_port),
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", member.peer_port),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", member.peer_port),
            ])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", "gateway-tests"])
            // etcd's defaults (100 ms heartbeat, 1 s election): an etcd leader lost is replaced
            // in about a second.
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd log file"))
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL this child
        // when the thread that spawned it (the test) dies.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        member.process = Some(command.spawn().expect("start etcd"));
    }

    /// The members' client URLs, on loopback.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The members' client URLs on the extra address (what a network namespace dials).
    pub fn endpoints_on(&self, ip: Ipv4Addr) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://{ip}:{}", m.client_port))
            .collect()
    }

    /// `--cluster`'s value for [`endpoints`](Self::endpoints).
    pub fn cluster_arg(&self) -> String {
        format!("etcd={}", self.endpoints().join(","))
    }

    /// `etcdctl` (v3 API) against every member, to its exit: its stdout, or a panic with its
    /// output.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let output = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints().join(",")))
            .args(["--command-timeout=3s", "--dial-timeout=2s"])
            .args(args)
            .output()
            .expect("run etcdctl (Debian's etcd-client)");
        assert!(
            output.status.success(),
            "etcdctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// How many running members answer healthy (a member without quorum does not).
    pub fn healthy_members(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.process.is_some())
            .filter(|m| {
                Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .arg(format!("--endpoints=http://127.0.0.1:{}", m.client_port))
                    .args([
                        "--command-timeout=1s",
                        "--dial-timeout=1s",
                        "endpoint",
                        "health",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .count()
    }

    /// Waits until `count` members answer healthy; panics with the logs if they do not.
    pub fn wait_healthy(&self, count: usize) {
        if !wait_until(ETCD_START_TIMEOUT, || self.healthy_members() >= count) {
            panic!(
                "etcd: {count} members did not become healthy within {ETCD_START_TIMEOUT:?}\n{}",
                self.logs()
            );
        }
    }

    /// Every member's log, for a failure message.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                format!(
                    "--- {} (last lines)\n{}",
                    m.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// SIGKILLs member `i` (its data stays, for [`restart`](Self::restart)).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.members[i].process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts member `i` again on its data dir, rejoining the cluster. Does not wait.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].process.is_none(), "member {i} still runs");
        self.spawn(i, "existing");
    }

    /// Which member is etcd's (raft) leader, as the running members say.
    pub fn leader(&self) -> Option<usize> {
        let statuses: Vec<(u64, u64)> = (0..self.members.len())
            .map(|i| {
                if self.members[i].process.is_none() {
                    return (0, 0);
                }
                let output = Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .arg(format!("--endpoints={}", self.endpoints()[i]))
                    .args(["--command-timeout=2s", "endpoint", "status", "-w", "json"])
                    .output()
                    .expect("run etcdctl");
                let status: serde_json::Value =
                    serde_json::from_slice(&output.stdout).unwrap_or_default();
                let status = &status[0]["Status"];
                (
                    status["header"]["member_id"].as_u64().unwrap_or(0),
                    status["leader"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let leader = statuses
            .iter()
            .map(|&(_, leader)| leader)
            .find(|&l| l != 0)?;
        statuses.iter().position(|&(member, _)| member == leader)
    }

    /// The pid of member `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].process.as_ref().map(Child::id)
    }

    /// Where the members keep their data and logs.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
