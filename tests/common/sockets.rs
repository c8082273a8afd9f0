//! The kernel's view of a port's sockets (`/proc/net/tcp`): their states and unread bytes, to
//! wait for what a server has read instead of sleeping.

use std::time::Duration;

use super::wait::wait_until;

/// `/proc/net/tcp`'s state numbers (include/net/tcp_states.h).
pub const TCP_ESTABLISHED: u8 = 0x01;
pub const TCP_FIN_WAIT2: u8 = 0x05;

/// A TCP socket whose local port is the one asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    pub state: u8,
    /// Bytes received and not read yet by the program that owns the socket.
    pub unread: u64,
    /// Its inode (0 once no process holds it: TIME_WAIT, an orphan).
    pub inode: u64,
}

/// The TCP sockets (IPv4 and IPv6) of this network namespace whose local port is `port`: a
/// listener, the connections it accepted or will accept, what they leave behind.
pub fn tcp_sockets_on(port: u16) -> Vec<TcpSocket> {
    let suffix = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    if !fields.get(1)?.ends_with(&suffix) {
                        return None;
                    }
                    let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
                    let unread = u64::from_str_radix(fields.get(4)?.split_once(':')?.1, 16).ok()?;
                    let inode = fields.get(9)?.parse().ok()?;
                    Some(TcpSocket {
                        state,
                        unread,
                        inode,
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits (10 s at most) until the server on `port` has accepted at least `connections`
/// connections and read everything sent on them so far: what a sleep would only hope for
/// before a test tells the server to stop with requests half sent.
pub fn wait_until_server_read(port: u16, connections: usize) -> bool {
    wait_until(Duration::from_secs(10), || {
        let established: Vec<TcpSocket> = tcp_sockets_on(port)
            .into_iter()
            .filter(|socket| socket.state == TCP_ESTABLISHED)
            .collect();
        established.len() >= connections && established.iter().all(|socket| socket.unread == 0)
    })
}
