//! Machines on one LAN, for the cluster-mode tests: a bridge in the test's network namespace
//! (where etcd listens) and one network namespace per "host", joined to the bridge by a veth
//! pair. A host's link taken down on the bridge side is a network partition of that host; up
//! again, healed. Needs root or CAP_SYS_ADMIN, `unshare`, `nsenter` and `ip`, as
//! tests/namespaces.rs. Link names start with `ctest`.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::wait::wait_until;

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A short name no other bridge or link of this machine's tests has (interface names are at
/// most 15 bytes).
fn unique_suffix() -> (String, u32) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    (format!("{}{n}", std::process::id() % 100_000), n)
}

/// A bridge with an address of this namespace, `10.251.N.1/24`: what the hosts dial (etcd
/// listens there too). Dropped: deleted, after its hosts.
pub struct Lan {
    bridge: String,
    subnet: u8,
    next_host: u8,
}

impl Lan {
    pub fn new() -> Self {
        let (suffix, n) = unique_suffix();
        let bridge = format!("ctestb{suffix}");
        // A subnet per bridge, from the pid and the count: parallel tests keep apart.
        let subnet = (std::process::id() + n * 7) % 250 + 1;
        let lan = Self {
            bridge,
            subnet: subnet as u8,
            next_host: 10,
        };
        ip(&["link", "add", &lan.bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", lan.bridge_ip()),
            "dev",
            &lan.bridge,
        ]);
        ip(&["link", "set", &lan.bridge, "up"]);
        lan
    }

    /// This namespace's address on the LAN.
    pub fn bridge_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 251, self.subnet, 1)
    }

    /// A new host on the LAN: its own network namespace, its link up.
    pub fn host(&mut self) -> Host {
        let address = Ipv4Addr::new(10, 251, self.subnet, self.next_host);
        self.next_host += 1;
        Host::new(&self.bridge, address)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}

/// A machine on a [`Lan`]: a network namespace (held by a `sleep` in it) with its loopback and
/// one link to the bridge. Dropped: the namespace's holder killed, the link deleted.
pub struct Host {
    holder: Child,
    /// The bridge side of the veth pair: down is a partition.
    link: String,
    pub address: Ipv4Addr,
}

impl Host {
    fn new(bridge: &str, address: Ipv4Addr) -> Self {
        let holder = Command::new("unshare")
            .args(["--net", "sleep", "3600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --net (needs root or CAP_SYS_ADMIN)");
        let pid = holder.id().to_string();
        let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
        let entered = wait_until(Duration::from_secs(5), || {
            std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|ns| ns != mine)
        });
        assert!(
            entered,
            "unshare --net did not enter a new network namespace"
        );
        let (suffix, _) = unique_suffix();
        let link = format!("ctesth{suffix}");
        let inner = format!("ctestp{suffix}");
        let host = Self {
            holder,
            link,
            address,
        };
        ip(&[
            "link", "add", &host.link, "type", "veth", "peer", "name", &inner, "netns", &pid,
        ]);
        ip(&["link", "set", &host.link, "master", bridge]);
        ip(&["link", "set", &host.link, "up"]);
        host.inside(&["addr", "add", &format!("{address}/24"), "dev", &inner]);
        host.inside(&["link", "set", &inner, "up"]);
        host.inside(&["link", "set", "lo", "up"]);
        host
    }

    fn inside(&self, args: &[&str]) {
        let output = Command::new("nsenter")
            .args(["-t", &self.holder.id().to_string(), "-n", "ip"])
            .args(args)
            .output()
            .expect("run nsenter");
        assert!(
            output.status.success(),
            "nsenter ip {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `command` run in this host's namespace (`nsenter` execs it: the same pid).
    pub fn command(&self, command: &Command) -> Command {
        super::process::wrapped(
            command,
            "nsenter",
            &["-t", &self.holder.id().to_string(), "-n"],
        )
    }

    /// The namespace, kept open, for a thread that probes from inside the host.
    pub fn namespace(&self) -> File {
        File::open(format!("/proc/{}/ns/net", self.holder.id())).expect("the host's namespace")
    }

    /// Cuts the host off the LAN (its link down on the bridge side).
    pub fn partition(&self) {
        ip(&["link", "set", &self.link, "down"]);
    }

    /// Joins the host to the LAN again.
    pub fn heal(&self) {
        ip(&["link", "set", &self.link, "up"]);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .stderr(Stdio::null())
            .status();
    }
}

/// Moves the calling thread into `namespace` (a thread's network namespace is its own; the
/// rest of the process stays where it is).
pub fn enter_namespace(namespace: &File) {
    // SAFETY: setns on an open namespace fd changes only the calling thread's namespace.
    let rc = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}
