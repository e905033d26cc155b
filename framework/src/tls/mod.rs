//! TLS on the cluster's listeners and connections.
//!
//! A listener serves TLS when its section names a certificate and key
//! ([`ServerTls`]); it then speaks TLS only, and a plain-text caller is
//! answered in plain HTTP/2 with an error saying to use `https://` rather
//! than a dropped connection. Files are read again on SIGHUP, so that a
//! renewed certificate needs no restart.
//!
//! Connections choose TLS by URL: `https://` verifies the server's
//! certificate against [`TlsTrust`] (a configured CA, or the system's
//! roots). Members learn each other by host and port only, so
//! [`PeerTransport`] carries the scheme: a cluster serves TLS on every
//! listener or on none.
//!
//! TLS protects the bytes on the wire and proves the server's identity to
//! the caller; who the caller is stays the business of
//! [`crate::auth`] (the cluster key and users), which is why no client
//! certificates are asked for.

mod client;
mod dev_certs;
mod pem;
mod server;

pub use client::{PeerTransport, TlsTrust, connection_hint, is_loopback_host, is_loopback_url};
pub use dev_certs::{DevCertificateFiles, write_dev_certificates};
pub use server::ServerTls;
