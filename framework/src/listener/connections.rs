//! Accepting connections under a cap, with a deadline for the HTTP/2
//! preface.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Bytes of the HTTP/2 client preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
const PREFACE_BYTES: usize = 24;

/// Refusals of connections over the cap are logged at most this often.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// An accepted connection that holds one of the listener's connection
/// slots until it closes, and fails its reads when the client has not sent
/// the HTTP/2 preface in time (a silent socket would otherwise be held
/// forever: HTTP/2 keepalive only starts once the handshake is done).
pub struct GuardedConnection {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    handshake_deadline: Option<Pin<Box<Sleep>>>,
    preface_left: usize,
    handshake_timeout: Duration,
}

impl GuardedConnection {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, handshake_timeout: Duration) -> Self {
        Self {
            stream,
            _slot: slot,
            handshake_deadline: Some(Box::pin(tokio::time::sleep(handshake_timeout))),
            preface_left: PREFACE_BYTES,
            handshake_timeout,
        }
    }
}

impl AsyncRead for GuardedConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(deadline) = this.handshake_deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no HTTP/2 preface within {}s of connecting (server.handshake_timeout_secs)",
                    this.handshake_timeout.as_secs()
                ),
            )));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        if this.handshake_deadline.is_some() {
            let read = buf.filled().len() - before;
            this.preface_left = this.preface_left.saturating_sub(read);
            if this.preface_left == 0 {
                this.handshake_deadline = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for GuardedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for GuardedConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

struct AcceptState {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    max_connections: usize,
    handshake_timeout: Duration,
    last_refusal_log: Option<Instant>,
    refused_since_log: u64,
}

impl AcceptState {
    fn note_refusal(&mut self, name: &str) {
        self.refused_since_log += 1;
        let due = self
            .last_refusal_log
            .is_none_or(|t| t.elapsed() >= REFUSAL_LOG_INTERVAL);
        if due {
            tracing::warn!(
                "{name}: closed {} connection(s) over the limit of {} open at once \
                 ({name}.server.max_connections)",
                self.refused_since_log,
                self.max_connections
            );
            self.last_refusal_log = Some(Instant::now());
            self.refused_since_log = 0;
        }
    }
}

/// The connections accepted on `listener`: at most `max_connections` open
/// at once (one over the cap is closed at once), Nagle's algorithm off
/// (small responses would otherwise wait for delayed ACKs), and each must
/// send the HTTP/2 preface within `handshake_timeout`. Accept errors (such
/// as running out of file descriptors) are logged and retried after a
/// pause; the stream never ends.
pub fn guarded_connections(
    listener: TcpListener,
    max_connections: usize,
    handshake_timeout: Duration,
    name: &'static str,
) -> impl Stream<Item = io::Result<GuardedConnection>> + Send + 'static {
    let state = AcceptState {
        listener,
        slots: Arc::new(Semaphore::new(max_connections)),
        max_connections,
        handshake_timeout,
        last_refusal_log: None,
        refused_since_log: 0,
    };
    futures::stream::unfold(state, move |mut state| async move {
        loop {
            match state.listener.accept().await {
                Ok((stream, _peer)) => match Arc::clone(&state.slots).try_acquire_owned() {
                    Ok(slot) => {
                        let _ = stream.set_nodelay(true);
                        let connection =
                            GuardedConnection::new(stream, slot, state.handshake_timeout);
                        return Some((Ok(connection), state));
                    }
                    Err(_) => {
                        drop(stream);
                        state.note_refusal(name);
                    }
                },
                Err(e) => {
                    tracing::warn!("{name}: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}
