//! A peer on another host, for the tests that need a client that is not loopback: a network
//! namespace joined to this one by a veth pair (needs root or CAP_SYS_ADMIN, `unshare` and
//! `ip`, as the namespace tests).
#![cfg(target_os = "linux")]

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A network namespace (a `sleep` in it) joined to this one by a veth pair: this side
/// `10.<a>.<b>.1/30`, the other `.2`. Dropped: the process is killed, the pair deleted.
pub struct RemotePeer {
    holder: Child,
    host_link: String,
    pub host_ip: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

impl RemotePeer {
    pub fn new() -> Self {
        let holder = Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --net (needs root or CAP_SYS_ADMIN, as tests/namespaces.rs)");
        let pid = holder.id();
        // Wait until the child is in its own namespace.
        let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
        let joined = super::wait_until(Duration::from_secs(5), || {
            std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|ns| ns != mine)
        });
        assert!(
            joined,
            "unshare --net did not enter a new network namespace"
        );
        let (a, b) = ((pid >> 8) as u8 % 200 + 20, (pid as u8) & 0xfc);
        let host_ip = Ipv4Addr::new(10, a, b, 1);
        let peer_ip = Ipv4Addr::new(10, a, b, 2);
        let host_link = format!("gwl{pid}h");
        let peer_link = format!("gwl{pid}p");
        let pid_text = pid.to_string();
        ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", &peer_link, "netns",
            &pid_text,
        ]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_link]);
        ip(&["link", "set", &host_link, "up"]);
        let inside = |args: &[&str]| {
            let status = Command::new("nsenter")
                .args(["-t", &pid_text, "-n", "ip"])
                .args(args)
                .status()
                .expect("run nsenter");
            assert!(status.success(), "nsenter ip {args:?} failed");
        };
        inside(&["addr", "add", &format!("{peer_ip}/30"), "dev", &peer_link]);
        inside(&["link", "set", &peer_link, "up"]);
        inside(&["link", "set", "lo", "up"]);
        Self {
            holder,
            host_link,
            host_ip,
        }
    }

    /// Runs `f` on a thread inside the peer's namespace, with its own tokio runtime.
    pub fn run<T: Send>(&self, f: impl AsyncFnOnce() -> T + Send) -> T {
        use std::os::fd::AsRawFd;
        let namespace = std::fs::File::open(format!("/proc/{}/ns/net", self.holder.id())).unwrap();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns on an open namespace fd changes only this thread's
                    // namespace; the runtime below is built on (and stays on) this thread.
                    let rc = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(f())
                })
                .join()
                .unwrap()
        })
    }
}

impl Drop for RemotePeer {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .stderr(Stdio::null())
            .status();
    }
}
