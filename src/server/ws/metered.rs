//! The upgraded connection's byte stream, metered: before the handshake a client may send only
//! so many bytes, counted under tungstenite so that memory is bounded before a frame is
//! assembled; once a limit was hit, whatever else arrives is read and dropped.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest WebSocket frame header (2 + 8 length + 4 mask bytes): the pre-auth budget is
/// the largest payload plus one header.
pub(super) const MAX_FRAME_HEADER: usize = 14;

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
}

impl Metered {
    pub fn new(upgraded: Upgraded, budget: Arc<ReadBudget>) -> Self {
        Self {
            inner: TokioIo::new(upgraded),
            budget,
        }
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
