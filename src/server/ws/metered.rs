//! The upgraded connection's byte stream, metered: before the handshake a client may send only
//! so many bytes, counted under tungstenite so that memory is bounded before a frame is
//! assembled; once a limit was hit, whatever else arrives is read and dropped.
//!
//! It also reads ahead of tungstenite: tungstenite keeps a read buffer of its
//! `read_buffer_size` for the connection's life and reads at most that much at a time, so a
//! large buffer costs every idle connection its size and a small one costs large frames a
//! system call per few hundred bytes. Tungstenite's is small ([`TUNGSTENITE_READ_BUFFER`]); each
//! read from the socket here takes up to [`READ_AHEAD`] bytes, and what tungstenite did not
//! take waits in a buffer that exists only until tungstenite took it all.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest WebSocket frame header (2 + 8 length + 4 mask bytes): the pre-auth budget is
/// the largest payload plus one header.
pub(super) const MAX_FRAME_HEADER: usize = 14;

/// Tungstenite's `read_buffer_size`: the buffer every connection keeps, and the most it reads
/// from [`Metered`] at a time (a `connect` frame with a token fits in one read).
pub(super) const TUNGSTENITE_READ_BUFFER: usize = 512;

/// The most one read takes from the socket (into a stack buffer; what tungstenite does not
/// take at once goes to the heap until it does).
const READ_AHEAD: usize = 16 * 1024;

/// The most one read takes before the handshake: what tungstenite used to read at a time, so
/// that bytes pipelined behind `connect` count against the pre-auth budget as they did.
const PREAUTH_READ: usize = 4096;

/// Marks the read error of a client that sent more than `max_preauth_payload` before it
/// authenticated.
#[derive(Debug)]
struct PreauthLimit;

impl std::fmt::Display for PreauthLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("preauth payload too large")
    }
}

impl std::error::Error for PreauthLimit {}

/// Whether a read failed because the client went over its pre-auth budget.
pub(super) fn is_preauth_limit(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<PreauthLimit>())
}

/// Bytes a connection may still read before it authenticates; `discard` drains the socket
/// without keeping anything once a limit was hit and the close frame is on its way.
#[derive(Debug)]
pub(super) struct ReadBudget {
    remaining: AtomicUsize,
    discard: AtomicBool,
}

impl ReadBudget {
    pub fn new(limit: usize) -> Self {
        Self {
            remaining: AtomicUsize::new(limit),
            discard: AtomicBool::new(false),
        }
    }

    /// The client authenticated: no limit from here on.
    pub fn unlimit(&self) {
        self.remaining.store(usize::MAX, Ordering::Release);
    }

    /// Reads are dropped from here on.
    pub fn discard(&self) {
        self.discard.store(true, Ordering::Release);
    }
}

/// The upgraded connection, with its [`ReadBudget`] enforced on every read.
pub(super) struct Metered {
    inner: TokioIo<Upgraded>,
    budget: Arc<ReadBudget>,
    /// Bytes read from the socket (and counted) that tungstenite has not taken yet; it holds
    /// no memory when empty.
    ahead: BytesMut,
}

impl Metered {
    pub fn new(upgraded: Upgraded, budget: Arc<ReadBudget>) -> Self {
        Self {
            inner: TokioIo::new(upgraded),
            budget,
            ahead: BytesMut::new(),
        }
    }

    /// One read from the socket into `buf`, counted against the budget.
    fn poll_read_socket(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        let remaining = self.budget.remaining.load(Ordering::Acquire);
        if remaining != usize::MAX {
            if read > remaining {
                self.budget.remaining.store(0, Ordering::Release);
                return Poll::Ready(Err(io::Error::other(PreauthLimit)));
            }
            self.budget
                .remaining
                .store(remaining - read, Ordering::Release);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.budget.discard.load(Ordering::Acquire) {
            let mut scratch = [0u8; 4096];
            loop {
                let mut sink = ReadBuf::new(&mut scratch);
                ready!(Pin::new(&mut self.inner).poll_read(cx, &mut sink))?;
                if sink.filled().is_empty() {
                    return Poll::Ready(Ok(()));
                }
            }
        }
        let this = &mut *self;
        if !this.ahead.is_empty() {
            let n = this.ahead.len().min(buf.remaining());
            buf.put_slice(&this.ahead[..n]);
            this.ahead.advance(n);
            if this.ahead.is_empty() {
                // Taken: its memory goes back at once.
                this.ahead = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        let limited = this.budget.remaining.load(Ordering::Acquire) != usize::MAX;
        let size = if limited { PREAUTH_READ } else { READ_AHEAD };
        if buf.remaining() >= size {
            return this.poll_read_socket(cx, buf);
        }
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_AHEAD];
        let mut chunk = ReadBuf::uninit(&mut chunk[..size]);
        ready!(this.poll_read_socket(cx, &mut chunk))?;
        let read = chunk.filled();
        let n = read.len().min(buf.remaining());
        buf.put_slice(&read[..n]);
        if n < read.len() {
            this.ahead = BytesMut::from(&read[n..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
