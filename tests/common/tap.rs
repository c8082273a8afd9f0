//! A recording tap: a loopback TCP proxy in front of a gateway that forwards every byte as it
//! is and keeps a copy of each WebSocket frame, per connection and direction, with the time it
//! passed. A real client pointed at the tap talks to the gateway behind it; the test then reads
//! what was said (requests, answers, events, closes) the same way whichever gateway is behind.
//!
//! The one change made to the traffic: the client's `Sec-WebSocket-Extensions` header is
//! dropped from the upgrade request, so neither side turns on `permessage-deflate` and every
//! frame can be read as sent. Nothing in the protocol depends on compression.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Which way a frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the gateway.
    Up,
    /// From the gateway to the client.
    Down,
}

/// What passed on one connection.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    /// The client connected and the tap reached the gateway.
    Open,
    /// The client connected but the gateway's port refused the tap (the client is closed).
    GatewayDown,
    /// The status line of the gateway's HTTP answer: `HTTP/1.1 101 Switching Protocols` for a
    /// WebSocket; anything else (a `/startupz` probe) and the rest is passed on unread.
    Upgrade(String),
    /// A whole text message (fragments joined).
    Text(String),
    /// A close frame: code (when given) and reason.
    Close(Option<u16>, String),
}

/// One thing seen, on connection `conn` (numbered from 1 in accept order).
#[derive(Clone, Debug)]
pub struct Record {
    pub conn: usize,
    pub direction: Direction,
    pub at: Instant,
    pub seen: Seen,
}

impl Record {
    /// The message as JSON, when it is a text frame holding JSON.
    pub fn json(&self) -> Option<Value> {
        match &self.seen {
            Seen::Text(text) => serde_json::from_str(text).ok(),
            _ => None,
        }
    }
}

/// A running tap; stops accepting and cuts every open connection on drop.
pub struct Tap {
    pub port: u16,
    records: Arc<Mutex<Vec<Record>>>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Tap {
    /// A tap on a free loopback port in front of `127.0.0.1:<upstream>`.
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("the tap binds a loopback port");
        let port = listener.local_addr().unwrap().port();
        let records = Arc::new(Mutex::new(Vec::new()));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, halt) = (records.clone(), streams.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut conn = 0;
            for client in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                conn += 1;
                let record = |direction, seen| Record {
                    conn,
                    direction,
                    at: Instant::now(),
                    seen,
                };
                let Ok(gateway) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    r.lock()
                        .unwrap()
                        .push(record(Direction::Down, Seen::GatewayDown));
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                r.lock().unwrap().push(record(Direction::Up, Seen::Open));
                let _ = client.set_nodelay(true);
                let _ = gateway.set_nodelay(true);
                {
                    let mut open = s.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(gateway.try_clone().unwrap());
                }
                let (up_from, up_to) = (client.try_clone().unwrap(), gateway.try_clone().unwrap());
                let (r1, r2) = (r.clone(), r.clone());
                std::thread::spawn(move || pump(up_from, up_to, conn, Direction::Up, &r1));
                std::thread::spawn(move || pump(gateway, client, conn, Direction::Down, &r2));
            }
        });
        Self {
            port,
            records,
            streams,
            stop,
        }
    }

    /// `ws://127.0.0.1:<tap port>`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Everything seen so far, in the order it passed.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }

    /// Forgets what was seen so far (connection numbers keep counting).
    pub fn clear(&self) {
        self.records.lock().unwrap().clear();
    }

    /// The JSON messages that went `direction`, with their connection and time.
    pub fn messages(&self, direction: Direction) -> Vec<(usize, Instant, Value)> {
        self.records()
            .into_iter()
            .filter(|r| r.direction == direction)
            .filter_map(|r| r.json().map(|json| (r.conn, r.at, json)))
            .collect()
    }

    /// Waits up to `timeout` for a record that `matches`; returns the first.
    pub fn wait_for(&self, timeout: Duration, matches: impl Fn(&Record) -> bool) -> Option<Record> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.records().into_iter().find(|r| matches(r)) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for stream in self.streams.lock().unwrap().iter() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` byte for byte (after the client's upgrade request, minus its
/// extensions header) and records each frame; on end of input, ends `to`'s output.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    conn: usize,
    direction: Direction,
    records: &Mutex<Vec<Record>>,
) {
    let push = |seen| {
        records.lock().unwrap().push(Record {
            conn,
            direction,
            at: Instant::now(),
            seen,
        })
    };
    let mut head = Vec::new();
    let mut frames = FrameReader::default();
    let mut in_head = true;
    let mut websocket = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut data = &buf[..n];
        if in_head {
            head.extend_from_slice(data);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let rest = head.split_off(end + 4);
            let text = String::from_utf8_lossy(&head).into_owned();
            let kept: Vec<&str> = text
                .split("\r\n")
                .filter(|line| {
                    direction == Direction::Down
                        || !line
                            .to_ascii_lowercase()
                            .starts_with("sec-websocket-extensions:")
                })
                .collect();
            websocket = match direction {
                Direction::Down => kept[0].contains(" 101 "),
                Direction::Up => kept.iter().any(|line| {
                    line.split_once(':').is_some_and(|(name, value)| {
                        name.trim().eq_ignore_ascii_case("upgrade")
                            && value.trim().eq_ignore_ascii_case("websocket")
                    })
                }),
            };
            if direction == Direction::Down {
                push(Seen::Upgrade(kept[0].to_owned()));
            }
            if to.write_all(kept.join("\r\n").as_bytes()).is_err() {
                break;
            }
            in_head = false;
            if rest.is_empty() {
                continue;
            }
            head = rest;
            data = &head;
        }
        // Recorded before it is passed on, so an answer is never recorded before its cause.
        if websocket {
            frames.feed(data);
            while let Some(seen) = frames.next() {
                push(seen);
            }
        }
        if to.write_all(data).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Reads WebSocket frames (RFC 6455 §5.2) from bytes fed in any pieces.
#[derive(Default)]
struct FrameReader {
    buf: Vec<u8>,
    fragments: Vec<u8>,
}

impl FrameReader {
    fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole text message or close frame, when enough bytes are in.
    fn next(&mut self) -> Option<Seen> {
        loop {
            let (fin, opcode, payload) = self.frame()?;
            match opcode {
                0 | 1 => {
                    self.fragments.extend_from_slice(&payload);
                    if fin {
                        let text = String::from_utf8_lossy(&self.fragments).into_owned();
                        self.fragments.clear();
                        return Some(Seen::Text(text));
                    }
                }
                8 => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default());
                    return Some(Seen::Close(code, reason.into_owned()));
                }
                _ => {} // ping, pong, binary: not recorded
            }
        }
    }

    /// One whole frame off the front of the buffer: (FIN, opcode, unmasked payload).
    fn frame(&mut self) -> Option<(bool, u8, Vec<u8>)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let (fin, opcode, masked) = (b[0] & 0x80 != 0, b[0] & 0x0f, b[1] & 0x80 != 0);
        let (len, mut at) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        let key = if masked {
            let key: [u8; 4] = b.get(at..at + 4)?.try_into().unwrap();
            at += 4;
            Some(key)
        } else {
            None
        };
        let mut payload = b.get(at..at + len)?.to_vec();
        if let Some(key) = key {
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= key[i % 4];
            }
        }
        self.buf.drain(..at + len);
        Some((fin, opcode, payload))
    }
}
