//! One connection as the rest of the gateway sees it: a queue of outgoing frames, counted so
//! that a slow consumer is cut off instead of growing our memory, and the task that writes them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use serde_json::Value;

use super::flood::{self, FloodGuard};
use super::metered::Metered;
use crate::server::protocol::{self, MethodError, close};
use crate::server::scopes::{EventGate, Grant};

/// Frames the writer hands to the socket before one flush.
const WRITE_BATCH: usize = 64;

/// The writing half of a connection's WebSocket.
pub(super) type Sink = SplitSink<WebSocketStream<Metered>, Message>;

/// What the writer task sends, in order.
enum Out {
    Text(Utf8Bytes),
    Ping,
    Close(u16, String),
}

/// How the writer task ended.
pub(super) enum WriterEnd {
    /// A close frame went out; the reader waits a little for the peer's. The sink comes back
    /// so that the socket can be drained when tungstenite can no longer read it.
    CloseSent(Sink),
    /// Killed, the peer is gone, or the queue closed.
    Gone,
}

/// What became of an answer given to [`Conn::answer`].
pub(super) struct Answered {
    /// It is queued (`false`: the connection was dropped).
    pub queued: bool,
    /// The flood guard closes the connection after it.
    pub closing: bool,
}

/// The frames waiting for the writer. A queue of our own rather than a channel: a tokio
/// channel allocates a block of 32 slots (about 1.6 KB with its header) up front and keeps it
/// for the connection's life, while this one is empty, and holds no memory, whenever the
/// writer has caught up, which is most of an idle connection's life.
#[derive(Default)]
struct Queue {
    frames: VecDeque<Out>,
    /// The writer is gone: nothing is queued any more.
    closed: bool,
}

/// One connection's outgoing side, shared by its session, the hub and the host's handles.
pub(super) struct Conn {
    pub id: u64,
    queue: Mutex<Queue>,
    /// Something was queued (or the queue closed) since the writer last looked.
    queued: Notify,
    buffered: AtomicUsize,
    max_buffered: usize,
    /// The role and scopes granted at the handshake; set once it completes.
    grant: OnceLock<Grant>,
    /// The `seq` of the last broadcast this client got (SPEC §12.7: per client).
    seq: AtomicU64,
    killed: AtomicBool,
    kill: Notify,
    /// Something arrived since the last keepalive round.
    heard: AtomicBool,
    pinged: AtomicBool,
    /// `unauthorized role` answers in a row, whoever answered.
    flood: FloodGuard,
}

impl Conn {
    /// A connection writing to `sink`, and its writer task (on the current runtime), which
    /// drops it past `max_buffered` unsent bytes.
    pub fn start(id: u64, sink: Sink, max_buffered: usize) -> (Arc<Self>, JoinHandle<WriterEnd>) {
        let conn = Arc::new(Self {
            id,
            queue: Mutex::default(),
            queued: Notify::new(),
            buffered: AtomicUsize::new(0),
            max_buffered,
            grant: OnceLock::new(),
            seq: AtomicU64::new(0),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
            heard: AtomicBool::new(false),
            pinged: AtomicBool::new(false),
            flood: FloodGuard::default(),
        });
        let writer = tokio::spawn(write_loop(sink, QueueCloser(Arc::clone(&conn))));
        (conn, writer)
    }

    /// Queues a text frame; past `max_buffered` unsent bytes the connection is dropped
    /// (`force` is for the last frames of a shutdown).
    pub fn push_text(&self, text: Utf8Bytes, force: bool) -> bool {
        if self.killed.load(Ordering::Acquire) {
            return false;
        }
        let len = text.len();
        let queued = self.buffered.fetch_add(len, Ordering::AcqRel) + len;
        if queued > self.max_buffered && !force {
            self.kill();
            return false;
        }
        self.send(Out::Text(text))
    }

    /// Queues a text frame unless the client already has more than `max_buffered` bytes
    /// unsent: then the frame is skipped and the client kept (Node's `dropIfSlow`, SS:3285).
    pub fn push_text_unless_slow(&self, text: Utf8Bytes) -> bool {
        if self.killed.load(Ordering::Acquire)
            || self.buffered.load(Ordering::Acquire) + text.len() > self.max_buffered
        {
            return false;
        }
        self.push_text(text, false)
    }

    /// Queues the answer to request `id`, and counts it in the flood guard: the eleventh
    /// `unauthorized role` answer in a row is followed by a close. Answers to malformed frames
    /// go through [`push_text`](Self::push_text), uncounted.
    pub fn answer(&self, id: &Value, result: &Result<Value, MethodError>) -> Answered {
        let queued = self.push_text(protocol::res(id, result).into(), false);
        let closing = self.flood.answered(result);
        if closing {
            self.close(close::POLICY_VIOLATION, flood::CLOSE_REASON);
        }
        Answered { queued, closing }
    }

    /// Queues a close frame; the writer stops after it.
    pub fn close(&self, code: u16, reason: &str) {
        self.send(Out::Close(code, protocol::close_reason(reason)));
    }

    /// Stops the writer at once (slow consumer, dead peer, connection over).
    pub fn kill(&self) {
        if !self.killed.swap(true, Ordering::AcqRel) {
            self.kill.notify_one();
        }
    }

    /// Whether the client completed the handshake (only then does it get events).
    pub fn is_authenticated(&self) -> bool {
        self.grant.get().is_some()
    }

    /// The client completed the handshake with `grant`; call after `hello-ok` is queued, so
    /// that no event can overtake it. Broadcasts are judged by this grant from here on.
    pub fn authenticate(&self, grant: Grant) {
        let _ = self.grant.set(grant);
    }

    /// Whether a broadcast behind `gate` reaches this client: it completed the handshake and
    /// its role and scopes pass the gate.
    pub fn admits(&self, gate: EventGate) -> bool {
        self.grant
            .get()
            .is_some_and(|grant| gate.admits(&grant.role, &grant.scopes))
    }

    /// The next broadcast `seq` of this client; the hub takes it under its broadcast lock, so
    /// that a client's `seq` grows in the order its frames are queued.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Something arrived from the peer: it is alive.
    pub fn heard(&self) {
        self.heard.store(true, Ordering::Release);
    }

    /// One keepalive round: queues a ping, or returns `false` when the peer sent nothing since
    /// the previous round's ping (it is dead).
    pub fn ping(&self) -> bool {
        let heard = self.heard.swap(false, Ordering::AcqRel);
        if !heard && self.pinged.load(Ordering::Acquire) {
            return false;
        }
        self.pinged.store(true, Ordering::Release);
        self.send(Out::Ping);
        true
    }

    /// Queues `out` for the writer; `false` when the writer is gone.
    fn send(&self, out: Out) -> bool {
        {
            let mut queue = self.lock_queue();
            if queue.closed {
                return false;
            }
            queue.frames.push_back(out);
        }
        self.queued.notify_one();
        true
    }

    /// The next frame for the writer, waiting for one. When the queue is empty its memory goes
    /// back before the wait, so that an idle connection holds none.
    async fn next_out(&self) -> Out {
        loop {
            {
                let mut queue = self.lock_queue();
                if let Some(out) = queue.frames.pop_front() {
                    return out;
                }
                if queue.frames.capacity() > 0 {
                    queue.frames = VecDeque::new();
                }
            }
            // A frame queued after the look above left a permit: this returns at once.
            self.queued.notified().await;
        }
    }

    /// The next frame if one is queued.
    fn try_next_out(&self) -> Option<Out> {
        self.lock_queue().frames.pop_front()
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Closes the queue when the writer ends, however it ends (returned, or aborted with its
/// task, even before it first ran), and drops what was still queued, as a channel does when its receiver goes.
struct QueueCloser(Arc<Conn>);

impl Drop for QueueCloser {
    fn drop(&mut self) {
        let frames = {
            let mut queue = self.0.lock_queue();
            queue.closed = true;
            std::mem::take(&mut queue.frames)
        };
        drop(frames);
    }
}

async fn write_loop(mut sink: Sink, closer: QueueCloser) -> WriterEnd {
    let conn = &closer.0;
    loop {
        let first = tokio::select! {
            biased;
            _ = conn.kill.notified() => return WriterEnd::Gone,
            out = conn.next_out() => out,
        };
        let write = async {
            let mut next = Some(first);
            let mut written = 0;
            let mut frames = 0;
            while let Some(out) = next.take() {
                match out {
                    Out::Text(text) => {
                        written += text.len();
                        sink.feed(Message::Text(text)).await?;
                    }
                    Out::Ping => sink.feed(Message::Ping(Bytes::new())).await?,
                    Out::Close(code, reason) => {
                        sink.send(Message::Close(Some(CloseFrame {
                            code: CloseCode::from(code),
                            reason: reason.into(),
                        })))
                        .await?;
                        return Ok::<_, WsError>((written, true));
                    }
                }
                frames += 1;
                if frames < WRITE_BATCH {
                    next = conn.try_next_out();
                }
            }
            sink.flush().await?;
            Ok((written, false))
        };
        let result = tokio::select! {
            biased;
            _ = conn.kill.notified() => return WriterEnd::Gone,
            result = write => result,
        };
        match result {
            Ok((written, closed)) => {
                conn.buffered.fetch_sub(written, Ordering::AcqRel);
                if closed {
                    return WriterEnd::CloseSent(sink);
                }
            }
            Err(_) => return WriterEnd::Gone,
        }
    }
}
