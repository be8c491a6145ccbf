//! A connection's socket with deadlines, so a client cannot hold a
//! connection (and what its request holds) by going quiet:
//!
//! - **first bytes**: the first [`PREFACE`] bytes must arrive within the
//!   header timeout of the connection's start. hyper reads that many to
//!   tell HTTP/2 from HTTP/1.1 before its own header timeout starts, and
//!   has no deadline of its own for it.
//! - **idle**: no byte read or written for this long fails the next read.
//!   Progress either way counts, so a long download with no request bytes
//!   coming in is not idle, nor is a slow upload.
//! - **write**: a write the peer does not take for this long fails (a
//!   client that stopped reading a response).
//!
//! hyper then ends the connection and drops the request's response
//! stream, which releases whatever that stream held.
//!
//! The hot path does no timer work: progress only stores a timestamp, and
//! a deadline that fires is pushed forward to the last progress instead of
//! being reset on every read and write.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep, sleep};

/// How many bytes hyper reads to choose the protocol: the length of the
/// HTTP/2 connection preface.
const PREFACE: u64 = 24;

pub struct TimedIo<T> {
    inner: T,
    idle: Duration,
    write: Duration,
    /// When the first [`PREFACE`] bytes are due.
    first_bytes_due: Instant,
    read_total: u64,
    last_progress: Instant,
    idle_deadline: Pin<Box<Sleep>>,
    /// Set while a write is waiting for the peer; `None` when none waits.
    write_deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> TimedIo<T> {
    /// `first_bytes`: the header timeout; `idle` and `write` as above.
    pub fn new(inner: T, first_bytes: Duration, idle: Duration, write: Duration) -> TimedIo<T> {
        let now = Instant::now();
        TimedIo {
            inner,
            idle,
            write,
            first_bytes_due: now + first_bytes,
            read_total: 0,
            last_progress: now,
            idle_deadline: Box::pin(sleep(first_bytes.min(idle))),
            write_deadline: None,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn progressed(&mut self) {
        self.last_progress = Instant::now();
    }

    /// Whether the connection has been idle past its deadline. Registers
    /// the waker for the deadline when it has not.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.idle_deadline.as_mut().poll(cx).is_ready() {
            let due = if self.read_total < PREFACE {
                self.first_bytes_due.min(self.last_progress + self.idle)
            } else {
                self.last_progress + self.idle
            };
            if due <= Instant::now() {
                return true;
            }
            self.idle_deadline.as_mut().reset(due);
        }
        false
    }

    /// Whether the write waiting now has waited past its deadline; starts
    /// its clock on the first call of a wait.
    fn write_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let write = self.write;
        let deadline = self
            .write_deadline
            .get_or_insert_with(|| Box::pin(sleep(write)));
        deadline.as_mut().poll(cx).is_ready()
    }

    /// The outcome of a write-side poll, with the deadline applied.
    fn on_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending => {
                if self.write_expired(cx) {
                    self.write_deadline = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client did not take a write within the write timeout",
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.write_deadline = None;
                self.progressed();
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => {
                if this.idle_expired(cx) {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no byte read or written within the idle timeout",
                    )));
                }
                Poll::Pending
            }
            Poll::Ready(result) => {
                let read = buf.filled().len() - before;
                if read > 0 {
                    this.read_total += read as u64;
                    this.progressed();
                }
                Poll::Ready(result)
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.on_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.on_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.on_write(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.on_write(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    #[tokio::test(start_paused = true)]
    async fn a_quiet_peer_times_out_and_a_talking_one_does_not() {
        let (client, server) = duplex(64);
        let mut io = TimedIo::new(
            server,
            Duration::from_secs(1),
            Duration::from_secs(10),
            Duration::from_secs(5),
        );
        let mut client = client;
        // The preface's bytes, at once.
        client
            .write_all(&[b'x'; PREFACE as usize])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut preface = [0u8; PREFACE as usize];
        io.read_exact(&mut preface)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Bytes arriving every 6 s keep a 10 s idle deadline from firing.
        let talker = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(6)).await;
                client.write_all(b"x").await.map(|_| ())?;
            }
            Ok::<_, io::Error>(client)
        });
        let mut byte = [0u8; 1];
        for _ in 0..3 {
            io.read_exact(&mut byte)
                .await
                .map(|_| ())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let _client = talker.await;
        // Then silence: the read fails with TimedOut.
        let quiet = io.read(&mut byte).await;
        assert_eq!(
            quiet.map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::TimedOut)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_bytes_must_come_within_the_header_timeout() {
        let (mut client, server) = duplex(64);
        let mut io = TimedIo::new(
            server,
            Duration::from_secs(2),
            Duration::from_secs(600),
            Duration::from_secs(600),
        );
        // Trickled: one byte a second keeps no idle deadline from firing,
        // but the preface is not complete by the header timeout.
        let trickle = tokio::spawn(async move {
            for _ in 0..10 {
                if client.write_all(b"P").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let mut buf = [0u8; 64];
        let outcome = loop {
            match io.read(&mut buf).await {
                Ok(0) => break None,
                Ok(_) => continue,
                Err(e) => break Some(e.kind()),
            }
        };
        assert_eq!(outcome, Some(io::ErrorKind::TimedOut));
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_times_out() {
        let (_client, server) = duplex(16);
        let mut io = TimedIo::new(
            server,
            Duration::from_secs(600),
            Duration::from_secs(600),
            Duration::from_secs(5),
        );
        // The first 16 bytes fit the pipe; the rest wait for a reader that
        // never reads.
        let written = io.write_all(&[0u8; 64]).await;
        assert_eq!(
            written.map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::TimedOut)
        );
    }
}
