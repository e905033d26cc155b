//! Accepting connections under a cap, with deadlines for the TLS
//! handshake and the HTTP/2 preface.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::tls::ServerTls;

/// Bytes of the HTTP/2 client preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
const PREFACE_BYTES: usize = 24;

/// Refusals of connections over the cap are logged at most this often.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// An accepted connection that holds one of the listener's connection
/// slots until it closes, and fails its reads when the client has not sent
/// the HTTP/2 preface in time (a silent socket would otherwise be held
/// forever: HTTP/2 keepalive only starts once the handshake is done).
pub struct GuardedConnection {
    stream: ServedStream,
    _slot: OwnedSemaphorePermit,
    handshake_deadline: Option<Pin<Box<Sleep>>>,
    preface_left: usize,
    handshake_timeout: Duration,
}

/// The bytes of a connection: as they arrive, or decrypted.
enum ServedStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl ServedStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            ServedStream::Plain(tcp) => tcp,
            ServedStream::Tls(tls) => tls.get_ref().0,
        }
    }
}

macro_rules! on_stream {
    ($stream:expr, $s:ident => $body:expr) => {
        match $stream {
            ServedStream::Plain($s) => $body,
            ServedStream::Tls($s) => $body,
        }
    };
}

impl GuardedConnection {
    fn new(
        stream: ServedStream,
        slot: OwnedSemaphorePermit,
        deadline: tokio::time::Instant,
        handshake_timeout: Duration,
    ) -> Self {
        Self {
            stream,
            _slot: slot,
            handshake_deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
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
        ready!(on_stream!(&mut this.stream, s => Pin::new(s).poll_read(cx, buf)))?;
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
        on_stream!(&mut self.get_mut().stream, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_stream!(&mut self.get_mut().stream, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_stream!(&mut self.get_mut().stream, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_stream!(&mut self.get_mut().stream, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        on_stream!(&self.stream, s => s.is_write_vectored())
    }
}

impl Connected for GuardedConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.tcp().connect_info()
    }
}

/// Connections accepted at once that wait for the server to take them.
const ACCEPTED_BACKLOG: usize = 64;

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What accepting one connection needs, shared by the accept loop and the
/// handshakes it starts.
#[derive(Clone)]
struct Acceptance {
    handshake_timeout: Duration,
    tls: Option<Arc<ServerTls>>,
    name: &'static str,
    accepted: mpsc::Sender<io::Result<GuardedConnection>>,
}

impl Acceptance {
    /// Hands `stream` to the server once it is ready to speak HTTP/2: at
    /// once in plain text; after the TLS handshake (off the accept loop)
    /// with TLS. The handshake and the HTTP/2 preface share one deadline,
    /// the handshake timeout from accepting.
    async fn admit(self, stream: TcpStream, slot: OwnedSemaphorePermit) {
        let deadline = tokio::time::Instant::now() + self.handshake_timeout;
        let stream = match &self.tls {
            None => ServedStream::Plain(stream),
            Some(tls) => {
                let acceptor = tls.acceptor();
                let handshake = async {
                    let mut first = [0u8; 1];
                    if stream.peek(&mut first).await? == 1 && first[0] != TLS_HANDSHAKE_RECORD {
                        return Ok(Err(stream));
                    }
                    acceptor.accept(stream).await.map(Ok)
                };
                match tokio::time::timeout_at(deadline, handshake).await {
                    Ok(Ok(Ok(tls))) => ServedStream::Tls(Box::new(tls)),
                    Ok(Ok(Err(plain))) => {
                        super::plain_text_refusal::answer(plain, self.name, self.handshake_timeout)
                            .await;
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!("{}: TLS handshake failed: {e}", self.name);
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(
                            "{}: no TLS handshake within {}s of connecting \
                             (server.handshake_timeout_secs)",
                            self.name,
                            self.handshake_timeout.as_secs()
                        );
                        return;
                    }
                }
            }
        };
        let connection = GuardedConnection::new(stream, slot, deadline, self.handshake_timeout);
        let _ = self.accepted.send(Ok(connection)).await;
    }
}

struct RefusalLog {
    last: Option<Instant>,
    refused_since: u64,
}

impl RefusalLog {
    fn note(&mut self, name: &str, max_connections: usize) {
        self.refused_since += 1;
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= REFUSAL_LOG_INTERVAL);
        if due {
            tracing::warn!(
                "{name}: closed {} connection(s) over the limit of {max_connections} open at \
                 once ({name}.server.max_connections)",
                self.refused_since
            );
            self.last = Some(Instant::now());
            self.refused_since = 0;
        }
    }
}

/// The connections accepted on `listener`: at most `max_connections` open
/// at once (one over the cap is closed at once, and one still in its TLS
/// handshake counts), Nagle's algorithm off (small responses would
/// otherwise wait for delayed ACKs), and each must finish its TLS
/// handshake (when `tls` is set) and then send the HTTP/2 preface, each
/// within `handshake_timeout`. Accept errors (such as running out of file
/// descriptors) are logged and retried after a pause. The stream ends only
/// when dropped, which closes the listener.
pub fn guarded_connections(
    listener: TcpListener,
    max_connections: usize,
    handshake_timeout: Duration,
    tls: Option<Arc<ServerTls>>,
    name: &'static str,
) -> impl Stream<Item = io::Result<GuardedConnection>> + Send + 'static {
    let (accepted, connections) = mpsc::channel(ACCEPTED_BACKLOG);
    let acceptance = Acceptance {
        handshake_timeout,
        tls,
        name,
        accepted,
    };
    tokio::spawn(accept_loop(listener, max_connections, acceptance));
    tokio_stream::wrappers::ReceiverStream::new(connections)
}

async fn accept_loop(listener: TcpListener, max_connections: usize, acceptance: Acceptance) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut refusals = RefusalLog {
        last: None,
        refused_since: 0,
    };
    loop {
        let accepted = tokio::select! {
            // The server stopped taking connections: stop listening.
            () = acceptance.accepted.closed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => match Arc::clone(&slots).try_acquire_owned() {
                Ok(slot) => {
                    let _ = stream.set_nodelay(true);
                    if acceptance.tls.is_some() {
                        tokio::spawn(acceptance.clone().admit(stream, slot));
                    } else {
                        acceptance.clone().admit(stream, slot).await;
                    }
                }
                Err(_) => {
                    drop(stream);
                    refusals.note(acceptance.name, max_connections);
                }
            },
            Err(e) => {
                tracing::warn!("{}: cannot accept a connection: {e}", acceptance.name);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
