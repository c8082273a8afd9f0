//! A minimal, blocking `/healthz` client: is a live gateway answering on a port?

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// `GET http://127.0.0.1:<port>/healthz` answers 200 with `{"ok":true,…}` within `timeout`.
pub fn healthz(port: u16, timeout: Duration) -> bool {
    healthz_at(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), timeout)
}

/// The same probe against any address.
pub fn healthz_at(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_nodelay(true);
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: gateway-probe\r\n\r\n"
    );
    if stream
        .set_write_timeout(Some(remaining().max(Duration::from_millis(1))))
        .is_err()
        || stream.write_all(request.as_bytes()).is_err()
    {
        return false;
    }
    let mut response = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let left = remaining();
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&chunk[..n]);
                if response.len() > 8192 || is_complete(&response) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    is_healthy(&response)
}

fn split_head(response: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&response[..end], &response[end + 4..]))
}

fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

fn is_complete(response: &[u8]) -> bool {
    split_head(response)
        .is_some_and(|(head, body)| content_length(head).is_some_and(|length| body.len() >= length))
}

fn is_healthy(response: &[u8]) -> bool {
    let Some((head, body)) = split_head(response) else {
        return false;
    };
    let status_ok = head.starts_with(b"HTTP/1.1 200 ") || head.starts_with(b"HTTP/1.0 200 ");
    let body = match content_length(head) {
        Some(length) if body.len() >= length => &body[..length],
        _ => body,
    };
    status_ok
        && serde_json::from_slice::<serde_json::Value>(body)
            .is_ok_and(|value| value.get("ok") == Some(&serde_json::Value::Bool(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_responses() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 27\r\n\r\n{\"ok\":true,\"status\":\"live\"}";
        assert!(is_healthy(ok));
        assert!(is_complete(ok));
        assert!(!is_healthy(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"
        ));
        assert!(!is_healthy(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"
        ));
        assert!(!is_healthy(b"garbage"));
    }

    #[test]
    fn closed_port_is_not_healthy() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        assert!(!healthz(port, Duration::from_millis(200)));
    }
}
