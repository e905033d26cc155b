//! Serving an axum router on its own port: HTTP/1.1 and HTTP/2, over TLS
//! when the process's gRPC listener has a certificate.
//!
//! Anyone who can reach the port may connect, so connections are bounded:
//! at most [`MAX_CONNECTIONS`] in all and [`MAX_CONNECTIONS_PER_PEER`] from
//! one address (a client hoarding connections cannot starve the health
//! probes of the others), a deadline for the TLS handshake and for each
//! request's headers, HTTP/2 keep-alive pings that drop a silent peer, and
//! a longest life per connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{BallistaError, Result};
use crate::tls::ServerTls;

/// Connections open at once; one more is closed at once.
const MAX_CONNECTIONS: usize = 256;
/// Connections open at once from one address.
const MAX_CONNECTIONS_PER_PEER: usize = 32;
/// Longest a client may take for its TLS handshake, or to send a
/// request's headers (also the longest an idle HTTP/1.1 connection stays).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 peers are pinged this often and dropped when a ping goes
/// unanswered as long.
const KEEP_ALIVE: Duration = Duration::from_secs(20);
/// Longest life of one connection; browsers and scrapers reconnect.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(600);
/// Requests at once on one HTTP/2 connection.
const MAX_STREAMS: u32 = 32;

/// An HTTP listener bound but not serving yet: binding first lets a
/// process fail on a taken port before it starts anything else.
#[derive(Debug)]
pub struct HttpListener {
    listener: TcpListener,
}

/// Binds `host:port`; `what` (such as `scheduler.http`) names the setting
/// in the error.
async fn bind(host: &str, port: u16, what: &str) -> Result<HttpListener> {
    let address = format!("{host}:{port}");
    let listener = TcpListener::bind(&address).await.map_err(|e| {
        BallistaError::Configuration(format!(
            "the HTTP service cannot listen on {address}: {e} (set {what}.port, 0 for any free \
             port, or {what}.enabled = false)"
        ))
    })?;
    Ok(HttpListener { listener })
}

/// Binds the service `settings` describe on `host` (its port, else
/// `default_port`), or `None` when it is turned off.
pub(crate) async fn bind_if_enabled(
    settings: &crate::config::HttpSettings,
    host: &str,
    default_port: u16,
    what: &str,
) -> Result<Option<HttpListener>> {
    if !settings.enabled {
        return Ok(None);
    }
    bind(host, settings.port_or(default_port), what)
        .await
        .map(Some)
}

/// A running HTTP service; it and its connections stop when dropped.
#[derive(Debug)]
pub struct HttpHandle {
    local_addr: SocketAddr,
    tls: bool,
    stop: watch::Sender<bool>,
    accept_loop: JoinHandle<()>,
}

impl HttpHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Its base URL (loopback when bound to all interfaces).
    pub fn url(&self) -> String {
        crate::util::local_url(self.local_addr, self.tls)
    }
}

impl Drop for HttpHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.accept_loop.abort();
    }
}

/// Serves `router` on `listener`.
pub(crate) fn serve(
    listener: HttpListener,
    tls: Option<Arc<ServerTls>>,
    router: Router,
) -> Result<HttpHandle> {
    let local_addr = listener.listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let is_tls = tls.is_some();
    let accept_loop = tokio::spawn(accept_loop(listener.listener, tls, router, stopped));
    Ok(HttpHandle {
        local_addr,
        tls: is_tls,
        stop,
        accept_loop,
    })
}

/// Connections open per peer address, and in all.
#[derive(Default)]
struct OpenConnections {
    per_peer: HashMap<IpAddr, usize>,
    total: usize,
}

/// One admitted connection; gives its place back when dropped.
struct ConnectionSlot {
    peer: IpAddr,
    open: Arc<Mutex<OpenConnections>>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        open.total -= 1;
        if let Some(n) = open.per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.per_peer.remove(&self.peer);
            }
        }
    }
}

fn admit(open: &Arc<Mutex<OpenConnections>>, peer: IpAddr) -> Option<ConnectionSlot> {
    let mut guard = open.lock();
    let from_peer = guard.per_peer.get(&peer).copied().unwrap_or(0);
    if guard.total >= MAX_CONNECTIONS || from_peer >= MAX_CONNECTIONS_PER_PEER {
        return None;
    }
    guard.total += 1;
    *guard.per_peer.entry(peer).or_default() += 1;
    Some(ConnectionSlot {
        peer,
        open: Arc::clone(open),
    })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    router: Router,
    mut stopped: watch::Receiver<bool>,
) {
    let open = Arc::new(Mutex::new(OpenConnections::default()));
    loop {
        let accepted = tokio::select! {
            _ = stopped.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("HTTP service: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = admit(&open, peer.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stopped.changed() => {}
                _ = tokio::time::timeout(MAX_CONNECTION_AGE, serve_connection(stream, tls, router)) => {}
            }
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
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE)
        .keep_alive_timeout(KEEP_ALIVE)
        .max_concurrent_streams(MAX_STREAMS);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_peer_cannot_take_every_connection() {
        let open = Arc::new(Mutex::new(OpenConnections::default()));
        let hoarder: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..MAX_CONNECTIONS_PER_PEER)
            .map(|_| admit(&open, hoarder).expect("under the cap"))
            .collect();
        assert!(admit(&open, hoarder).is_none());
        // A probe from elsewhere still gets in.
        let probe = admit(&open, "10.0.0.2".parse().unwrap());
        assert!(probe.is_some());
        drop(held);
        drop(probe);
        assert_eq!(open.lock().total, 0);
        assert!(open.lock().per_peer.is_empty());
    }
}
