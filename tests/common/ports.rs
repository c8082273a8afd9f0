//! Test ports: where a test may bind (outside the kernel's ephemeral range, in a block of its
//! own process), and whether a port is free again after a test.

use std::fs::{File, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

#[cfg(not(target_os = "macos"))]
use super::sockets::tcp_sockets_on;
use super::wait::wait_until;

/// Ports below this are left alone: well-known services live there.
const LOWEST_TEST_PORT: u16 = 10_000;
/// How many ports one test process claims.
const PORT_BLOCK: u16 = 256;
/// Where test processes record which block each one holds (one `flock`ed file per block).
const PORT_CLAIMS_DIR: &str = "/tmp/gateway-test-ports";

/// A loopback port for a test to bind later (often more than once: restarts, takeovers).
///
/// It never comes from the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`;
/// on macOS the sysctls `net.inet.ip.portrange.first`/`last`),
/// so no outgoing connection on the machine can take it between the pick and the use, as a port
/// from `bind(0)` can. It comes from a block of [`PORT_BLOCK`] ports that this process alone
/// holds (an `flock` on a file under [`PORT_CLAIMS_DIR`], starting at a block derived from the
/// pid), so two test processes running at once never pick the same port; in the block, an atomic
/// counter hands each port out once before it wraps, and a port that cannot be bound right now
/// on `127.0.0.1` (and `[::1]`), without `SO_REUSEADDR` (so a TIME_WAIT left by an earlier test
/// counts as taken), is skipped.
pub fn free_port() -> u16 {
    let block = port_block();
    for _ in 0..PORT_BLOCK {
        let port = block.first + block.next.fetch_add(1, Ordering::Relaxed) % PORT_BLOCK;
        if bindable_now(port) {
            return port;
        }
    }
    panic!(
        "every port of this test process's block {}..{} is taken: are other programs binding \
         ports there? (see free_port in tests/common/ports.rs)",
        block.first,
        block.first + PORT_BLOCK
    );
}

/// The block of ports this process holds, claimed on first use and held until it exits.
struct PortBlock {
    first: u16,
    next: AtomicU16,
    _claim: File,
}

fn port_block() -> &'static PortBlock {
    static BLOCK: OnceLock<PortBlock> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let blocks = test_port_blocks(ephemeral_port_range());
        assert!(
            !blocks.is_empty(),
            "no room for test ports outside the ephemeral range {:?}",
            ephemeral_port_range()
        );
        let dir = Path::new(PORT_CLAIMS_DIR);
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
        // Shared by every user's test runs, as /tmp is (the owner alone can change the mode).
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
        let start = std::process::id() as usize % blocks.len();
        for i in 0..blocks.len() {
            let first = blocks[(start + i) % blocks.len()];
            let path = dir.join(format!("{first}.lock"));
            let claim = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .or_else(|_| File::open(&path)) // another user's file: reading is enough
                .unwrap_or_else(|err| panic!("cannot open {}: {err}", path.display()));
            if claim.try_lock().is_ok() {
                return PortBlock {
                    first,
                    next: AtomicU16::new(0),
                    _claim: claim,
                };
            }
        }
        panic!(
            "all {} test port blocks are held by other test processes (files in {})",
            blocks.len(),
            dir.display()
        );
    })
}

/// The kernel's ephemeral port range, inclusive (Linux's default when it cannot be read).
#[cfg(not(target_os = "macos"))]
fn ephemeral_port_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut numbers = text.split_whitespace().map(str::parse::<u16>);
            Some((numbers.next()?.ok()?, numbers.next()?.ok()?))
        })
        .unwrap_or((32768, 60999))
}

/// macOS: the ephemeral port range, inclusive, from the sysctls `net.inet.ip.portrange.first`
/// and `.last` (xnu's default, 49152–65535, when they cannot be read).
#[cfg(target_os = "macos")]
fn ephemeral_port_range() -> (u16, u16) {
    fn read(name: &std::ffi::CStr) -> Option<u16> {
        let mut value: libc::c_int = 0;
        let mut size = std::mem::size_of::<libc::c_int>();
        // SAFETY: `name` is NUL-terminated; `value` is a writable int of `size` bytes; no new
        // value is set (null, 0).
        let rc = unsafe {
            libc::sysctlbyname(
                name.as_ptr(),
                (&raw mut value).cast(),
                &mut size,
                std::ptr::null_mut(),
                0,
            )
        };
        if rc != 0 || size != std::mem::size_of::<libc::c_int>() {
            return None;
        }
        u16::try_from(value).ok()
    }
    match (
        read(c"net.inet.ip.portrange.first"),
        read(c"net.inet.ip.portrange.last"),
    ) {
        (Some(first), Some(last)) => (first, last),
        _ => (49152, 65535),
    }
}

/// The first port of every whole block between [`LOWEST_TEST_PORT`] and 65535 that does not
/// touch the ephemeral range.
fn test_port_blocks((ephemeral_low, ephemeral_high): (u16, u16)) -> Vec<u16> {
    let ranges = [
        (LOWEST_TEST_PORT as u32, ephemeral_low as u32),
        (ephemeral_high as u32 + 1, 65536),
    ];
    let mut blocks = Vec::new();
    for (low, end) in ranges {
        let mut first = low.max(LOWEST_TEST_PORT as u32);
        while first + PORT_BLOCK as u32 <= end {
            blocks.push(first as u16);
            first += PORT_BLOCK as u32;
        }
    }
    blocks
}

/// Nobody holds `port` on the loopback addresses, not even a TIME_WAIT: a bind without
/// `SO_REUSEADDR` succeeds on `127.0.0.1` and, where the machine has IPv6, on `[::1]`.
fn bindable_now(port: u16) -> bool {
    use socket2::{Domain, Socket, Type};
    let bind = |ip: IpAddr| -> std::io::Result<()> {
        let addr = SocketAddr::new(ip, port);
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&addr.into())
    };
    let v6 = bind(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let v6_free =
        v6.is_ok() || v6.is_err_and(|err| err.kind() == std::io::ErrorKind::AddrNotAvailable);
    v6_free && bind(IpAddr::V4(Ipv4Addr::LOCALHOST)).is_ok()
}

/// A plain listener (`SO_REUSEADDR`, as servers bind) can have the port: at once when no
/// socket of this process holds it.
///
/// Only a socket of another process may hold it for a moment: every process this test binary
/// starts is a copy of it until its `exec`, descriptors included (close-on-exec closes them at
/// the `exec`, not before), so a listener a test just closed can live on in a child another
/// test thread is starting. That copy goes within milliseconds; one that stays 2 s is a leak.
pub fn port_is_free(port: u16) -> bool {
    let bindable = || TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok();
    if bindable() {
        return true;
    }
    if held_by_this_process(port) {
        return false;
    }
    wait_until(Duration::from_secs(2), bindable)
}

/// A socket bound to `port` is open in this process (found by inode in /proc/self/fd).
#[cfg(not(target_os = "macos"))]
fn held_by_this_process(port: u16) -> bool {
    let inodes: Vec<String> = tcp_sockets_on(port)
        .iter()
        .map(|socket| format!("socket:[{}]", socket.inode))
        .collect();
    std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .any(|target| {
            inodes
                .iter()
                .any(|inode| target.as_os_str() == inode.as_str())
        })
}

/// macOS: a TCP socket bound to `port` is open in this process (each descriptor in /dev/fd
/// asked for its type and local address).
#[cfg(target_os = "macos")]
fn held_by_this_process(port: u16) -> bool {
    let fds: Vec<libc::c_int> = std::fs::read_dir("/dev/fd")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.into_iter().any(|fd| {
        let mut kind: libc::c_int = 0;
        let mut kind_len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `kind` is a writable int of `kind_len` bytes. A descriptor closed or reused
        // since the listing only makes the call fail (EBADF, ENOTSOCK) or ask another socket.
        let is_stream = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TYPE,
                (&raw mut kind).cast(),
                &mut kind_len,
            )
        } == 0
            && kind == libc::SOCK_STREAM;
        if !is_stream {
            return false;
        }
        // SAFETY: an all-zero sockaddr_storage is valid; getsockname writes at most `len` bytes.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `addr` is writable for `len` bytes; a stale descriptor only makes it fail.
        if unsafe { libc::getsockname(fd, (&raw mut addr).cast(), &mut len) } != 0 {
            return false;
        }
        let bound = match libc::c_int::from(addr.ss_family) {
            // SAFETY: the family says which sockaddr the storage holds; both fit in it.
            libc::AF_INET => unsafe { *(&raw const addr).cast::<libc::sockaddr_in>() }.sin_port,
            // SAFETY: as above.
            libc::AF_INET6 => unsafe { *(&raw const addr).cast::<libc::sockaddr_in6>() }.sin6_port,
            _ => return false,
        };
        u16::from_be(bound) == port
    })
}
