//! The unauthenticated HTTP probes, byte for byte (SPEC §8), and what they say while the
//! gateway drains (SPEC §7).

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use gateway::{Gateway, GatewayLock, ServeOptions};

/// Every probe path and its body while the gateway is ready.
const PROBES: [(&str, &str); 6] = [
    ("/health", r#"{"ok":true,"status":"live"}"#),
    ("/healthz", r#"{"ok":true,"status":"live"}"#),
    ("/ready", r#"{"ready":true}"#),
    ("/readyz", r#"{"ready":true}"#),
    ("/startup", r#"{"ok":true,"status":"started"}"#),
    ("/startupz", r#"{"ok":true,"status":"started"}"#),
];

const JSON: &str = "application/json; charset=utf-8";

/// All values of a (lower-case) header, in order.
fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .collect()
}

#[test]
fn get_answers_every_probe_with_exact_status_headers_and_body() {
    let env = TestEnv::new();
    let gateway = env.start(&["--port", &free_port().to_string()]);
    for (path, body) in PROBES {
        let (status, headers, got) = http(gateway.port, "GET", path).unwrap();
        assert_eq!(status, 200, "GET {path}");
        assert_eq!(values(&headers, "content-type"), [JSON], "GET {path}");
        assert_eq!(
            values(&headers, "cache-control"),
            ["no-store"],
            "GET {path}"
        );
        assert_eq!(
            values(&headers, "content-length"),
            [body.len().to_string()],
            "GET {path}"
        );
        assert_eq!(String::from_utf8_lossy(&got), body, "GET {path}");
    }
}

#[test]
fn head_answers_every_probe_with_the_get_headers_and_no_body() {
    let env = TestEnv::new();
    let gateway = env.start(&["--port", &free_port().to_string()]);
    for (path, body) in PROBES {
        let (status, headers, got) = http(gateway.port, "HEAD", path).unwrap();
        assert_eq!(status, 200, "HEAD {path}");
        assert_eq!(values(&headers, "content-type"), [JSON], "HEAD {path}");
        assert_eq!(
            values(&headers, "cache-control"),
            ["no-store"],
            "HEAD {path}"
        );
        // The length of the body a GET would have had.
        assert_eq!(
            values(&headers, "content-length"),
            [body.len().to_string()],
            "HEAD {path}"
        );
        assert!(got.is_empty(), "HEAD {path} sent a body: {got:?}");
    }
}

#[test]
fn other_methods_get_405_with_allow_on_every_probe() {
    let env = TestEnv::new();
    let gateway = env.start(&["--port", &free_port().to_string()]);
    for (path, _) in PROBES {
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let (status, headers, got) = http(gateway.port, method, path).unwrap();
            assert_eq!(status, 405, "{method} {path}");
            assert_eq!(values(&headers, "allow"), ["GET, HEAD"], "{method} {path}");
            assert_eq!(
                values(&headers, "content-type"),
                ["text/plain; charset=utf-8"],
                "{method} {path}"
            );
            assert_eq!(
                values(&headers, "content-length"),
                ["18"],
                "{method} {path}"
            );
            assert_eq!(
                String::from_utf8_lossy(&got),
                "Method Not Allowed",
                "{method} {path}"
            );
        }
    }
}

#[test]
fn paths_below_a_probe_are_not_probes() {
    let env = TestEnv::new();
    let gateway = env.start(&["--port", &free_port().to_string()]);
    for path in ["/healthz/x", "/readyz/x", "/startupz/x", "/healthzx"] {
        for method in ["GET", "HEAD", "POST"] {
            let (status, headers, _) = http(gateway.port, method, path).unwrap();
            assert_eq!(status, 404, "{method} {path}");
            assert!(values(&headers, "allow").is_empty(), "{method} {path}");
        }
    }
    // The gateway is still there and still right.
    assert!(healthy(gateway.port));
}

/// A connection that has sent only the start of its first request. hyper keeps such a
/// connection through a graceful shutdown and answers it, which lets the test see the
/// probes while the gateway drains.
fn start_request(port: u16, first_line: &str) -> TcpStream {
    let mut stream = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(first_line.as_bytes()).unwrap();
    stream
}

/// Sends the rest of the request, reads the response, and checks that nothing follows it
/// before the draining server closes the connection.
fn finish_request(
    mut stream: TcpStream,
    port: u16,
    head: bool,
) -> (u16, Vec<(String, String)>, String) {
    write!(stream, "Host: 127.0.0.1:{port}\r\n\r\n").unwrap();
    let (status, headers, body) = read_response(&mut stream, head).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "bytes after the response: {rest:?}");
    (status, headers, String::from_utf8(body).unwrap())
}

#[test]
fn readyz_and_startupz_say_draining_during_shutdown() {
    let env = TestEnv::new();
    let lock = GatewayLock::acquire(&env.options().port(free_port())).unwrap();
    let port = lock.port();
    let gateway = Gateway::serve(lock, ServeOptions::default()).unwrap();
    assert_eq!(http(port, "GET", "/readyz").unwrap().0, 200);

    let ready = start_request(port, "GET /readyz HTTP/1.1\r\n");
    let startup = start_request(port, "GET /startupz HTTP/1.1\r\n");
    let head = start_request(port, "HEAD /ready HTTP/1.1\r\n");
    // The server has read the partial requests before it is told to stop.
    assert!(
        wait_until_server_read(port, 3),
        "{:?}",
        tcp_sockets_on(port)
    );

    let shutdown = std::thread::spawn(move || {
        let started = Instant::now();
        gateway.shutdown(Duration::from_secs(10));
        started.elapsed()
    });
    // Shutdown closes the listeners first: new connections are refused from now on.
    assert!(
        wait_until(Duration::from_secs(3), || {
            TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_err()
        }),
        "the listener still accepts during shutdown"
    );
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for open requests"
    );

    let (status, headers, body) = finish_request(ready, port, false);
    assert_eq!((status, body.as_str()), (503, r#"{"ready":false}"#));
    assert_eq!(values(&headers, "content-type"), [JSON]);
    assert_eq!(values(&headers, "cache-control"), ["no-store"]);
    assert_eq!(values(&headers, "content-length"), ["15"]);

    let (status, headers, body) = finish_request(startup, port, false);
    let draining = r#"{"ok":false,"status":"draining"}"#;
    assert_eq!((status, body.as_str()), (503, draining));
    assert_eq!(values(&headers, "content-type"), [JSON]);
    assert_eq!(values(&headers, "cache-control"), ["no-store"]);
    assert_eq!(
        values(&headers, "content-length"),
        [draining.len().to_string()]
    );

    let (status, headers, body) = finish_request(head, port, true);
    assert_eq!((status, body.as_str()), (503, ""));
    assert_eq!(values(&headers, "content-length"), ["15"]);

    // The drain ended when the last client was answered, long before the 10 s bound.
    let elapsed = shutdown.join().unwrap();
    assert!(
        elapsed < Duration::from_secs(5),
        "shutdown took {elapsed:?}"
    );
    assert!(port_is_free(port));
    assert!(
        env.lock_dir_entries().is_empty(),
        "{:?}",
        env.lock_dir_entries()
    );
}

/// Binds `127.0.0.1:port` as a program that does not set `SO_REUSEADDR` does (std's
/// `TcpListener` sets it on Unix, which would hide a TIME_WAIT left on the port).
fn bind_without_reuseaddr(port: u16) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())?;
    socket.listen(1)?;
    Ok(socket)
}

#[test]
fn port_binds_without_reuseaddr_at_once_after_probes_and_a_refused_duplicate() {
    let env = TestEnv::new();
    let gateway = env.start(&["--port", &free_port().to_string()]);
    let port = gateway.port;

    // The duplicate finds the lock held and asks the holder's /healthz before it gives up.
    let mut duplicate = env
        .command(&["run", "--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_with_timeout(&mut duplicate, Duration::from_secs(10))
        .expect("the duplicate exits at once");
    let mut stderr = String::new();
    duplicate
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("it is healthy on ws://127.0.0.1:{port}")),
        "the duplicate did not probe the holder: {stderr}"
    );

    // More probes, as `gateway status` and supervised duplicates make, some at once, and the
    // tests' own requests. With a client that lets the server close, which side closes first
    // is a race: these make sure the server would have won it at least once.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..25 {
                    assert!(gateway::test_support::healthz(port, Duration::from_secs(2)));
                    assert_eq!(http(port, "GET", "/readyz").unwrap().0, 200);
                    assert_eq!(http(port, "HEAD", "/healthz").unwrap().0, 200);
                }
            });
        }
    });

    assert_eq!(gateway.terminate(), 0);
    // The probe closed its connection first, so no TIME_WAIT sits on the gateway's port.
    if let Err(err) = bind_without_reuseaddr(port) {
        panic!("port {port} cannot be bound without SO_REUSEADDR after shutdown: {err}");
    }
}
