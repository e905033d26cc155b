//! Serving an axum router on its own port: HTTP/1.1 and HTTP/2, over TLS
//! when the process's gRPC listener has a certificate, with a cap on open
//! connections and deadlines for a slow client's handshake and headers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

use crate::error::{BallistaError, Result};
use crate::tls::ServerTls;

/// Connections open at once; one more is closed at once.
const MAX_CONNECTIONS: usize = 256;
/// Longest a client may take for its TLS handshake, or to send a
/// request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running HTTP service; stops when dropped.
#[derive(Debug)]
pub struct HttpHandle {
    local_addr: SocketAddr,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    accept_loop: JoinHandle<()>,
}

impl HttpHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Its base URL (loopback when bound to all interfaces).
    pub fn url(&self) -> String {
        let ip = if self.local_addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            self.local_addr.ip().to_string()
        };
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{ip}:{}", self.local_addr.port())
    }
}

impl Drop for HttpHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.accept_loop.abort();
    }
}

/// Serves `router` on `host:port`; `what` (such as `scheduler.http`) names
/// the setting in a bind error.
pub(crate) async fn serve(
    host: &str,
    port: u16,
    tls: Option<Arc<ServerTls>>,
    router: Router,
    what: &str,
) -> Result<HttpHandle> {
    let bind = format!("{host}:{port}");
    let listener = TcpListener::bind(&bind).await.map_err(|e| {
        BallistaError::Configuration(format!(
            "the HTTP service cannot listen on {bind}: {e} (set {what}.port, or {what}.enabled = false)"
        ))
    })?;
    let local_addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel();
    let is_tls = tls.is_some();
    let accept_loop = tokio::spawn(accept_loop(listener, tls, router, stopped));
    Ok(HttpHandle {
        local_addr,
        tls: is_tls,
        stop: Some(stop),
        accept_loop,
    })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    router: Router,
    mut stopped: oneshot::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("HTTP service: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            serve_connection(stream, tls, router).await;
            drop(slot);
        });
    }
}

async fn serve_connection(stream: TcpStream, tls: Option<Arc<ServerTls>>, router: Router) {
    let service = TowerToHyperService::new(router);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    let served = match tls {
        Some(tls) => {
            let handshake =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.http_acceptor().accept(stream)).await;
            match handshake {
                Ok(Ok(stream)) => {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
                _ => return,
            }
        }
        None => {
            builder
                .serve_connection(TokioIo::new(stream), service)
                .await
        }
    };
    if let Err(e) = served {
        tracing::debug!("HTTP connection ended: {e}");
    }
}
