//! The exclusive listener(s) and their error messages (SPEC §6), and on Apple platforms what
//! closes the hole `SO_REUSEADDR` leaves there: xnu lets a specific-address listener and a
//! wildcard one share a port, so a gateway on `127.0.0.1:P` and another on `0.0.0.0:P` would
//! both start (and local clients would reach the more specific one).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::GatewayLockError;
use crate::failpoint::failpoint;
use crate::options::{BindMode, BindRetry, LogLevel, Logger};
use crate::probe;

const BACKLOG: i32 = 1024;

/// `ws://host:port`, with IPv6 hosts in brackets.
pub fn ws_url(ip: IpAddr, port: u16) -> String {
    format!("ws://{}", SocketAddr::new(ip, port))
}

/// What binding a mode holds for the gateway's life: the listeners it serves (the primary one
/// first) and the sockets that only keep the port from others.
#[derive(Debug, Default)]
pub struct Bound {
    /// The listeners to serve, the primary one first.
    pub listeners: Vec<TcpListener>,
    /// Bound, never listening: on Apple platforms, the wildcard addresses on the port when the
    /// gateway listens on a specific address (see [`wildcard_guards`]). Empty elsewhere.
    pub guards: Vec<Socket>,
}

/// Binds the listener(s) for a bind mode. Loopback: `127.0.0.1`, then `[::1]` on the same port
/// at best (its failure only logs). The first listener is the primary one. On Apple platforms
/// also: a specific address is guarded by the wildcard ones ([`wildcard_guards`]), and `lan`
/// (`0.0.0.0`) serves the `127.0.0.1` alias too, so no gateway can take that address from it.
/// There every socket is bound before any listens ([`bind_apple`]), so a gateway that then
/// refuses to start never accepted a connection.
pub fn bind_listeners(
    mode: &BindMode,
    port: u16,
    retry: Option<BindRetry>,
    logger: &Logger,
) -> Result<Bound, GatewayLockError> {
    let primary_ip = primary_ip(mode, port)?;
    if cfg!(target_vendor = "apple") {
        return with_retry(port, retry, || bind_apple(mode, primary_ip, port, logger));
    }
    let primary = with_retry(port, retry, || {
        bind_exclusive(SocketAddr::new(primary_ip, port))
    })?;
    let port = bound_port(|| primary.local_addr(), primary_ip, port)?;
    let mut bound = Bound {
        listeners: vec![primary],
        guards: Vec::new(),
    };
    if *mode == BindMode::Loopback {
        match bind_exclusive(ipv6_alias(port)) {
            Ok(alias) => bound.listeners.push(alias),
            Err(err) => log_no_ipv6_alias(logger, &err),
        }
    }
    Ok(bound)
}

/// Apple platforms: bind everything first, then listen. The primary address, the `[::1]` alias
/// (loopback), the wildcard guards (a specific address) or the `127.0.0.1` alias (`lan`) are
/// all bound before any of them listens: a wildcard listener already on the port fails a guard
/// while our loopback socket still accepts nothing, so no local client ever reaches a gateway
/// that is about to refuse. Errors come in the order (and with the messages) of binding one by
/// one: the primary address's, then the guards' or the alias's.
fn bind_apple(
    mode: &BindMode,
    primary_ip: IpAddr,
    port: u16,
    logger: &Logger,
) -> Result<Bound, GatewayLockError> {
    let primary_addr = SocketAddr::new(primary_ip, port);
    let primary = bind_socket(primary_addr)?;
    // An ephemeral port is known once bound; the aliases and guards take the same one.
    let port = bound_port(
        || {
            primary.local_addr()?.as_socket().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address")
            })
        },
        primary_ip,
        port,
    )?;
    let primary_addr = SocketAddr::new(primary_ip, port);
    let mut ipv6_alias_socket = None;
    if *mode == BindMode::Loopback {
        match bind_socket(ipv6_alias(port)) {
            Ok(socket) => ipv6_alias_socket = Some(socket),
            Err(err) => log_no_ipv6_alias(logger, &err),
        }
    }
    let mut loopback_alias = None;
    let mut guards = Vec::new();
    if primary_ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED) {
        // A gateway on 127.0.0.1:P beside ours would get every local client.
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        loopback_alias = Some((addr, bind_socket(addr)?));
    } else if !primary_ip.is_unspecified() {
        guards = wildcard_guards(port, logger)?;
    }
    failpoint("after-bind");

    let mut listeners = vec![listen(primary, primary_addr)?];
    failpoint("after-listen");
    if let Some((addr, socket)) = loopback_alias {
        listeners.push(listen(socket, addr)?);
    }
    if let Some(socket) = ipv6_alias_socket {
        match listen(socket, ipv6_alias(port)) {
            Ok(alias) => listeners.push(alias),
            Err(err) => log_no_ipv6_alias(logger, &err),
        }
    }
    Ok(Bound { listeners, guards })
}

fn ipv6_alias(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port)
}

fn log_no_ipv6_alias(logger: &Logger, err: &GatewayLockError) {
    logger.log(
        LogLevel::Warn,
        &format!("not listening on the IPv6 loopback alias: {err}"),
    );
}

/// The port asked for, or the ephemeral one a socket got for port 0 (known once bound).
fn bound_port(
    local_addr: impl FnOnce() -> io::Result<SocketAddr>,
    ip: IpAddr,
    port: u16,
) -> Result<u16, GatewayLockError> {
    match port {
        0 => local_addr()
            .map(|addr| addr.port())
            .map_err(|source| GatewayLockError::Bind {
                url: ws_url(ip, port),
                source,
            }),
        port => Ok(port),
    }
}

/// Apple platforms: `0.0.0.0:P` and `[::]:P` (`IPV6_V6ONLY`) bound and never listened on, held
/// beside a listener on a specific address. xnu refuses a later bind of the same wildcard
/// address (a gateway in `lan` mode) unless it sets `SO_REUSEPORT`, which neither Node nor we
/// do; a wildcard listener already there makes this bind fail, and the gateway refuses to
/// start with SPEC §6's message naming that address. A socket that never listens accepts
/// nothing (a SYN to it is answered with a reset), so it opens nothing to the network. The IPv6
/// guard is best effort (a machine may have IPv6 off): its failures other than `EADDRINUSE`
/// only log. Each guard has the listener's socket options ([`bind_socket`]): `SO_REUSEADDR`,
/// so our own specific-address listener on the port does not refuse it; never `SO_REUSEPORT`.
pub fn wildcard_guards(port: u16, logger: &Logger) -> Result<Vec<Socket>, GatewayLockError> {
    let mut guards = vec![bind_socket(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port,
    ))?];
    match bind_socket(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)) {
        Ok(guard) => guards.push(guard),
        Err(err @ GatewayLockError::AddrInUse { .. }) => return Err(err),
        Err(err) => logger.log(
            LogLevel::Warn,
            &format!("not guarding the IPv6 wildcard address: {err}"),
        ),
    }
    Ok(guards)
}

/// SPEC §6: `EADDRINUSE` is "another gateway instance", anything else a bind failure.
fn bind_error(addr: SocketAddr) -> impl Fn(io::Error) -> GatewayLockError {
    let url = ws_url(addr.ip(), addr.port());
    move |source: io::Error| {
        if source.raw_os_error() == Some(libc::EADDRINUSE) {
            GatewayLockError::AddrInUse { url: url.clone() }
        } else {
            GatewayLockError::Bind {
                url: url.clone(),
                source,
            }
        }
    }
}

fn primary_ip(mode: &BindMode, port: u16) -> Result<IpAddr, GatewayLockError> {
    match mode {
        BindMode::Loopback => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        BindMode::Lan => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        BindMode::Custom(host) => {
            let host = host.trim().trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = host.parse() {
                return Ok(ip);
            }
            (host, port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut addrs| addrs.next())
                .map(|addr| addr.ip())
                .ok_or_else(|| {
                    GatewayLockError::InvalidOption(format!(
                        "cannot resolve bind host {host:?}: give an IP address or a resolvable host name"
                    ))
                })
        }
    }
}

/// Runs `bind` again while it fails with `EADDRINUSE` and `retry` allows, unless a gateway
/// answers `/healthz` on the port (it will not go away).
fn with_retry<T>(
    port: u16,
    retry: Option<BindRetry>,
    mut bind: impl FnMut() -> Result<T, GatewayLockError>,
) -> Result<T, GatewayLockError> {
    let mut attempts_left = retry.map_or(0, |r| r.attempts);
    loop {
        match bind() {
            Err(GatewayLockError::AddrInUse { .. })
                if attempts_left > 0 && !probe::healthz(port, Duration::from_millis(500)) =>
            {
                attempts_left -= 1;
                std::thread::sleep(retry.map_or(Duration::ZERO, |r| r.interval));
            }
            other => return other,
        }
    }
}

/// One listener: `SO_REUSEADDR` (restart over TIME_WAIT; on Linux it never lets two listeners
/// share a port), never `SO_REUSEPORT`, close-on-exec (socket2 opens with `SOCK_CLOEXEC`).
/// `EADDRINUSE` from `bind` or `listen` is "another gateway instance".
pub fn bind_exclusive(addr: SocketAddr) -> Result<TcpListener, GatewayLockError> {
    let socket = bind_socket(addr)?;
    failpoint("after-bind");
    let listener = listen(socket, addr)?;
    failpoint("after-listen");
    Ok(listener)
}

/// A TCP socket with the listener's options, bound to `addr`, not listening yet.
fn bind_socket(addr: SocketAddr) -> Result<Socket, GatewayLockError> {
    let fail = bind_error(addr);
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(&fail)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(&fail)?;
    }
    socket.set_reuse_address(true).map_err(&fail)?;
    socket.bind(&addr.into()).map_err(&fail)?;
    Ok(socket)
}

/// Starts listening on a socket [`bind_socket`] bound to `addr`.
fn listen(socket: Socket, addr: SocketAddr) -> Result<TcpListener, GatewayLockError> {
    socket.listen(BACKLOG).map_err(bind_error(addr))?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_bracket_ipv6() {
        assert_eq!(
            ws_url(IpAddr::V6(Ipv6Addr::LOCALHOST), 18789),
            "ws://[::1]:18789"
        );
        assert_eq!(
            ws_url(IpAddr::V4(Ipv4Addr::LOCALHOST), 1),
            "ws://127.0.0.1:1"
        );
    }

    /// The guards' other half works on Linux too: a wildcard listener already on the port stops
    /// them with SPEC §6's message naming its address. (Their first half, refusing a later
    /// wildcard listener, is xnu's and tested on macOS: tests/macos_bind.rs.)
    #[test]
    fn a_wildcard_listener_stops_the_guards_with_its_address() {
        let wildcard = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = wildcard.local_addr().unwrap().port();
        let err = wildcard_guards(port, &Logger::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("another gateway instance is already listening on ws://0.0.0.0:{port}")
        );
    }

    #[test]
    fn second_bind_is_refused_with_the_message() {
        let first = bind_exclusive("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = first.local_addr().unwrap().port();
        let err = bind_exclusive(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("another gateway instance is already listening on ws://127.0.0.1:{port}")
        );
    }
}
