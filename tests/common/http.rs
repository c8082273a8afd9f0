//! HTTP on a test port: whether a gateway is healthy (the library's own probe), and the status,
//! headers and body of any one request. The client closes every connection first, with the
//! whole response read, so no TIME_WAIT lands on the gateway's port (SPEC §7: the port can be
//! bound at once by anyone after the gateway stops).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long a health check or one read of a response may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The most header lines a response may have.
const MAX_HEADERS: usize = 32;

/// Status, headers (names lower-cased, in order) and body of an HTTP response.
pub type HttpResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// `GET /healthz` answers 200 with `{"ok":true,…}` within 5 s: the probe the library itself
/// runs before it reports a holder healthy.
pub fn healthy(port: u16) -> bool {
    gateway::test_support::healthz(port, ANSWER_TIMEOUT)
}

/// One HTTP/1.1 request to `127.0.0.1:port`, answered in full; then this side closes.
pub fn http(port: u16, method: &str, path: &str) -> io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )?;
    let response = read_response(&mut stream, method == "HEAD");
    // Closing here, with the whole response read, makes us the side that closes first.
    drop(stream);
    response
}

/// Reads one response from `stream`: its head, then the `Content-Length` bytes of its body
/// (none after a `HEAD` request, and none for 1xx, 204 and 304). The connection stays open.
pub fn read_response(stream: &mut impl Read, after_head_request: bool) -> io::Result<HttpResponse> {
    let mut raw = Vec::with_capacity(1024);
    let (head_len, status, headers) = loop {
        read_more(stream, &mut raw, "the end of the response head")?;
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut slots);
        let parsed = response.parse(&raw).map_err(|err| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "not an HTTP response ({err}): {:?}",
                    String::from_utf8_lossy(&raw)
                ),
            )
        })?;
        if let httparse::Status::Complete(head_len) = parsed {
            let headers: Vec<(String, String)> = response
                .headers
                .iter()
                .map(|header| {
                    let value = String::from_utf8_lossy(header.value).into_owned();
                    (header.name.to_ascii_lowercase(), value)
                })
                .collect();
            break (head_len, response.code.unwrap_or_default(), headers);
        }
    };
    let bodiless = after_head_request || status / 100 == 1 || status == 204 || status == 304;
    let length = if bodiless {
        0
    } else {
        content_length(&headers)?
    };
    let mut body = raw.split_off(head_len);
    while body.len() < length {
        read_more(stream, &mut body, "the end of the body")?;
    }
    body.truncate(length);
    Ok((status, headers, body))
}

/// The body length a response announces; an error for a body without one (chunked, or read
/// to the close), which the gateway never sends and this helper does not read.
fn content_length(headers: &[(String, String)]) -> io::Result<usize> {
    let value = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map(|(_, value)| value)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the response has no Content-Length: {headers:?}"),
            )
        })?;
    value.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("Content-Length {value:?} is not a number"),
        )
    })
}

/// Appends what `stream` has to `buffer`; an error when it closes first. A read cut short by
/// a signal is retried, as `Read::read_exact` does: on Linux a socket read with a timeout
/// fails with EINTR when the process was stopped and continued meanwhile, with no handler.
fn read_more(stream: &mut impl Read, buffer: &mut Vec<u8>, waiting_for: &str) -> io::Result<()> {
    let mut chunk = [0u8; 1024];
    let read = loop {
        match stream.read(&mut chunk) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    match read {
        0 => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the connection closed before {waiting_for}, after {} bytes",
                buffer.len()
            ),
        )),
        read => {
            buffer.extend_from_slice(&chunk[..read]);
            Ok(())
        }
    }
}
