//! The kernel's view of a port's sockets (`/proc/net/tcp` on Linux, `netstat` on macOS): their
//! states and unread bytes, to wait for what a server has read instead of sleeping.

use std::time::Duration;

use super::wait::wait_until;

/// `/proc/net/tcp`'s state numbers (include/net/tcp_states.h); macOS's `netstat` names are
/// mapped onto them.
pub const TCP_ESTABLISHED: u8 = 0x01;
pub const TCP_FIN_WAIT2: u8 = 0x05;

/// A TCP socket whose local port is the one asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    pub state: u8,
    /// Bytes received and not read yet by the program that owns the socket.
    pub unread: u64,
    /// Its inode (0 once no process holds it: TIME_WAIT, an orphan; always 0 on macOS, where
    /// sockets have none to show).
    pub inode: u64,
}

/// The TCP sockets (IPv4 and IPv6) of this network namespace whose local port is `port`: a
/// listener, the connections it accepted or will accept, what they leave behind.
#[cfg(not(target_os = "macos"))]
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

/// macOS: the lines of `netstat -an -p tcp` (IPv4 and IPv6) whose local address ends in
/// `.<port>`: `tcp4  <Recv-Q> <Send-Q>  127.0.0.1.<port>  127.0.0.1.<peer>  ESTABLISHED`, where
/// Recv-Q is the socket's unread bytes (`so_rcv.sb_cc`, network_cmds netstat.tproj/inet.c).
#[cfg(target_os = "macos")]
pub fn tcp_sockets_on(port: u16) -> Vec<TcpSocket> {
    let output = std::process::Command::new("/usr/sbin/netstat")
        .args(["-an", "-p", "tcp"])
        .output()
        .expect("run /usr/sbin/netstat -an -p tcp");
    assert!(output.status.success(), "netstat: {:?}", output);
    let suffix = format!(".{port}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if !fields.first()?.starts_with("tcp") || !fields.get(3)?.ends_with(&suffix) {
                return None;
            }
            // tcp_states.h's numbers, for netstat's names (xnu bsd/netinet/tcp_fsm.h, tcpstates).
            // network_cmds' netstat may mark a T/TCP hidden state with a trailing `*`.
            let state = match fields.get(5)?.trim_end_matches('*') {
                "ESTABLISHED" => TCP_ESTABLISHED,
                "SYN_SENT" => 0x02,
                "SYN_RCVD" => 0x03,
                "FIN_WAIT_1" => 0x04,
                "FIN_WAIT_2" => TCP_FIN_WAIT2,
                "TIME_WAIT" => 0x06,
                "CLOSED" => 0x07,
                "CLOSE_WAIT" => 0x08,
                "LAST_ACK" => 0x09,
                "LISTEN" => 0x0A,
                "CLOSING" => 0x0B,
                _ => 0, // none of tcp_states.h's: no test waits for it
            };
            Some(TcpSocket {
                state,
                unread: fields.get(1)?.parse().ok()?,
                inode: 0,
            })
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
