//! The body of every response the gateway sends: whole bytes, nothing, or a stream the host
//! writes into (a download, server-sent events) with back-pressure.

use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;

/// Why a body stopped early: the peer went away, a limit was passed, the writer gave up.
pub type BodyError = std::io::Error;

/// A response body.
pub struct Body(BoxBody<Bytes, BodyError>);

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("size_hint", &hyper::body::Body::size_hint(&self.0))
            .finish()
    }
}

impl Body {
    /// No bytes.
    pub fn empty() -> Self {
        Self(Empty::new().map_err(|never| match never {}).boxed())
    }

    /// These bytes, with their length known (`Content-Length`).
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self(
            Full::new(bytes.into())
                .map_err(|never| match never {})
                .boxed(),
        )
    }

    /// A body the returned [`BodyWriter`] writes, chunk by chunk (sent chunked). At most
    /// `capacity` chunks wait unsent; past that the writer waits for the peer. The body ends
    /// when the writer is dropped or [`finish`](BodyWriter::finish)ed, and is cut short (the
    /// peer sees an incomplete response) when the writer [`abort`](BodyWriter::abort)s.
    pub fn channel(capacity: usize) -> (BodyWriter, Self) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let stream = Arc::new(Stream {
            rx: Mutex::new(rx),
            aborted: OnceLock::new(),
            body_waker: AtomicWaker::new(),
        });
        let writer = BodyWriter {
            tx,
            stream: Arc::clone(&stream),
        };
        (writer, Self(ChannelBody { stream }.boxed()))
    }

    /// Any other `http_body::Body`.
    pub fn wrap<B>(body: B) -> Self
    where
        B: hyper::body::Body<Data = Bytes, Error = BodyError> + Send + Sync + 'static,
    {
        Self(body.boxed())
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self::full(bytes)
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Self::full(Bytes::from_static(text.as_bytes()))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Self::full(text)
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Self::full(bytes)
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// Writes a [`Body::channel`] body, from async code ([`send`](Self::send)) or from a thread
/// of the host's own ([`blocking_send`](Self::blocking_send)). A clone writes the same body,
/// which ends when every clone is dropped or finished; an abort through any clone ends it for
/// all, and wakes a clone waiting in a send.
#[derive(Debug, Clone)]
pub struct BodyWriter {
    tx: mpsc::Sender<Result<Bytes, BodyError>>,
    stream: Arc<Stream>,
}

/// What the writers and the body share.
struct Stream {
    /// The body's end of the queue, behind a lock held only for a poll or a close: an abort
    /// closes it from the writer's side, which fails a send waiting for room at once (a client
    /// that never reads would otherwise hold it forever).
    rx: Mutex<mpsc::Receiver<Result<Bytes, BodyError>>>,
    /// Set by `abort`: the body fails at its next poll, even when the queue was full.
    aborted: OnceLock<String>,
    /// The body's task, woken by an abort.
    body_waker: AtomicWaker,
}

impl Stream {
    fn close(&self) {
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).close();
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("aborted", &self.aborted.get())
            .finish()
    }
}

/// Why a chunk was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodySendError {
    /// The peer is gone (or the gateway is stopping): nothing more will be read.
    #[error("the HTTP client is gone: the response body is no longer read")]
    Closed,
    /// The writer aborted the body (through this writer or a clone): nothing more is sent.
    #[error("the response was aborted: nothing more of it is sent")]
    Aborted,
    /// `blocking_send` was called on one of the gateway's worker threads.
    #[error(
        "blocking_send was called on a gateway worker thread, which it would stall: \
         use `send` there, or write from a thread of your own"
    )]
    OnGatewayWorker,
}

impl BodyWriter {
    /// Queues `chunk`, waiting while `capacity` chunks are unsent.
    pub async fn send(&self, chunk: impl Into<Bytes>) -> Result<(), BodySendError> {
        let sent = self.tx.send(Ok(chunk.into())).await;
        sent.map_err(|_| self.why_not_sent())
    }

    /// [`send`](Self::send) for a thread that is not one of the gateway's workers. Called on
    /// a worker it would stall the runtime, so there it fails at once with
    /// [`BodySendError::OnGatewayWorker`].
    pub fn blocking_send(&self, chunk: impl Into<Bytes>) -> Result<(), BodySendError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(BodySendError::OnGatewayWorker);
        }
        let sent = self.tx.blocking_send(Ok(chunk.into()));
        sent.map_err(|_| self.why_not_sent())
    }

    fn why_not_sent(&self) -> BodySendError {
        match self.stream.aborted.get() {
            Some(_) => BodySendError::Aborted,
            None => BodySendError::Closed,
        }
    }

    /// Ends the body normally (as dropping the writer does), once no clone is left.
    pub fn finish(self) {}

    /// Cuts the body short: the connection is closed without the final chunk, so the client
    /// sees an incomplete response rather than a truncated one that looks whole. Never
    /// blocks; a clone waiting in a send returns [`BodySendError::Aborted`] at once.
    pub fn abort(self, why: &str) {
        let _ = self.stream.aborted.set(why.to_owned());
        self.stream.close();
        self.stream.body_waker.wake();
    }

    /// Whether the peer is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

struct ChannelBody {
    stream: Arc<Stream>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let stream = &self.stream;
        stream.body_waker.register(cx.waker());
        // Checked before every chunk: what an aborting writer had queued is not sent either.
        if let Some(why) = stream.aborted.get() {
            return Poll::Ready(Some(Err(BodyError::other(why.clone()))));
        }
        let mut rx = stream.rx.lock().unwrap_or_else(|e| e.into_inner());
        rx.poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| chunk.map(Frame::data)))
    }
}

impl Drop for ChannelBody {
    /// The client is gone (or the response dropped): writers, clones included, learn it at
    /// their next send, or at once when one waits for room.
    fn drop(&mut self) {
        self.stream.close();
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::Body;

    #[tokio::test]
    async fn an_abort_is_not_lost_behind_a_full_queue() {
        let (writer, mut body) = Body::channel(1);
        writer
            .send("queued")
            .await
            .expect("the queue has room for one");
        writer.abort("gave up");
        let frame = body.frame().await.expect("the body reports the abort");
        assert_eq!(
            frame.expect_err("an aborted body fails").to_string(),
            "gave up"
        );
    }

    #[test]
    fn an_abort_wakes_a_clone_blocked_on_a_full_queue() {
        let (writer, body) = Body::channel(1);
        let blocked = writer.clone();
        let sending = std::thread::spawn(move || {
            blocked
                .blocking_send("fills the queue")
                .expect("room for one");
            blocked.blocking_send("waits: nobody reads")
        });
        // The second send waits for room that never comes, until the abort.
        while !sending.is_finished() && writer.tx.capacity() > 0 {
            std::thread::yield_now();
        }
        // Most likely waiting by now; either way the send must end in the abort's error.
        std::thread::sleep(std::time::Duration::from_millis(100));
        writer.abort("gave up");
        assert_eq!(
            sending.join().expect("the sender returns"),
            Err(super::BodySendError::Aborted)
        );
        drop(body);
    }

    #[tokio::test]
    async fn a_finished_body_ends_after_its_chunks() {
        let (writer, body) = Body::channel(1);
        let sending = tokio::spawn(async move {
            writer.send("a").await.expect("read");
            writer.send("b").await.expect("read");
            writer.finish();
        });
        let all = body.collect().await.expect("a whole body").to_bytes();
        sending.await.expect("the writer ends");
        assert_eq!(&all[..], b"ab");
    }
}
