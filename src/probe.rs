//! A minimal, blocking `/healthz` client: is a live gateway answering on a port?
//!
//! TCP leaves its TIME_WAIT with whichever side closes first. A request that says
//! `Connection: close` makes the server close first, which leaves TIME_WAIT on the gateway's
//! port, and for a minute after the gateway stops a program that binds that port without
//! `SO_REUSEADDR` is refused (SPEC §7 says anyone can bind it at once). So the probe keeps the
//! connection alive, reads the whole answer by its `Content-Length`, and closes first: the
//! TIME_WAIT stays on our own ephemeral port.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The most of an answer we read: a `/healthz` answer is a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 8192;

/// `GET http://127.0.0.1:<port>/healthz` answers 200 with `{"ok":true,…}` within `timeout`.
pub fn healthz(port: u16, timeout: Duration) -> bool {
    healthz_at(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), timeout)
}

/// The same probe against any address.
pub fn healthz_at(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let answer = exchange(&mut stream, addr, deadline);
    // Closing here, with the whole answer read, is what makes us the side that closes first.
    drop(stream);
    answer.is_some_and(|answer| answer.is_healthy())
}

/// Sends the request and reads one whole answer, or `None` on any failure or at the deadline.
fn exchange(stream: &mut TcpStream, addr: SocketAddr, deadline: Instant) -> Option<Answer> {
    let remaining =
        || Some(deadline.saturating_duration_since(Instant::now())).filter(|left| !left.is_zero());
    let _ = stream.set_nodelay(true);
    let request =
        format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: gateway-probe\r\n\r\n");
    stream.set_write_timeout(Some(remaining()?)).ok()?;
    stream.write_all(request.as_bytes()).ok()?;

    let mut received = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        stream.set_read_timeout(Some(remaining()?)).ok()?;
        let closed = match stream.read(&mut chunk) {
            Ok(0) => true,
            Ok(n) => {
                received.extend_from_slice(&chunk[..n]);
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        match Progress::of(&received, closed) {
            Progress::Whole(answer) => return Some(answer),
            Progress::Partial if !closed && received.len() <= MAX_ANSWER_BYTES => {}
            Progress::Partial | Progress::Unusable => return None,
        }
    }
}

/// A whole HTTP answer: its status and its body.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    /// 200 with a JSON body whose `ok` is `true` (SPEC §8).
    fn is_healthy(&self) -> bool {
        self.status == 200
            && serde_json::from_slice::<serde_json::Value>(&self.body)
                .is_ok_and(|value| value.get("ok") == Some(&serde_json::Value::Bool(true)))
    }
}

/// How far the bytes received so far go towards one answer.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    Whole(Answer),
    /// Read more.
    Partial,
    /// Not HTTP, or framed in a way a probe does not read (chunked): not healthy.
    Unusable,
}

impl Progress {
    /// `closed`: the server has closed its side, so nothing more will come.
    fn of(received: &[u8], closed: bool) -> Self {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(received) {
            Ok(httparse::Status::Complete(head_len)) => head_len,
            Ok(httparse::Status::Partial) => return Self::Partial,
            Err(_) => return Self::Unusable,
        };
        let Some(status) = response.code else {
            return Self::Unusable;
        };
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|header| header.name.eq_ignore_ascii_case(name))
                .map(|header| header.value)
        };
        if header("transfer-encoding").is_some() {
            return Self::Unusable;
        }
        let body = &received[head_len..];
        let whole = |body: &[u8]| {
            Self::Whole(Answer {
                status,
                body: body.to_vec(),
            })
        };
        match header("content-length") {
            Some(value) => {
                let Some(length) = std::str::from_utf8(value)
                    .ok()
                    .and_then(|value| value.trim().parse::<usize>().ok())
                else {
                    return Self::Unusable;
                };
                match body.get(..length) {
                    Some(body) => whole(body),
                    None => Self::Partial,
                }
            }
            // No length: the body ends where the server closes.
            None if closed => whole(body),
            None => Self::Partial,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = r#"{"ok":true,"status":"live"}"#;

    fn answer(status: u16, body: &str) -> Progress {
        Progress::Whole(Answer {
            status,
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn reads_an_answer_as_far_as_it_has_come() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 27\r\n\r\n{\"ok\":true,\"status\":\"live\"}";
        #[rustfmt::skip]
        let table: [(&str, bool, Progress); 9] = [
            // received so far,                                         server closed, progress
            (ok,                                                          false, answer(200, LIVE)),
            (&ok[..ok.len() - 1],                                         false, Progress::Partial),
            ("HTTP/1.1 200 OK\r\ncontent-len",                            false, Progress::Partial),
            ("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi and more",   false, answer(200, "hi")),
            ("HTTP/1.1 200 OK\r\n\r\n{\"ok\":true}",                      false, Progress::Partial),
            ("HTTP/1.1 200 OK\r\n\r\n{\"ok\":true}",                      true,  answer(200, "{\"ok\":true}")),
            ("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",     false, Progress::Unusable),
            ("HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",              false, Progress::Unusable),
            ("garbage\r\n\r\n",                                           false, Progress::Unusable),
        ];
        for (received, closed, progress) in table {
            assert_eq!(
                Progress::of(received.as_bytes(), closed),
                progress,
                "{received:?}"
            );
        }
    }

    #[test]
    fn healthy_is_200_with_ok_true() {
        let healthy = |status, body: &str| {
            Answer {
                status,
                body: body.as_bytes().to_vec(),
            }
            .is_healthy()
        };
        assert!(healthy(200, LIVE));
        assert!(!healthy(503, r#"{"ok":true}"#));
        assert!(!healthy(200, r#"{"ok":false}"#));
        assert!(!healthy(200, "hi"));
    }

    #[test]
    fn closed_port_is_not_healthy() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        assert!(!healthz(port, Duration::from_millis(200)));
    }
}
