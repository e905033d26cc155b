//! The certificate a listener serves, reloadable while it serves.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::pem;
use crate::config::ServerTlsSettings;
use crate::error::{BallistaError, Result};

/// The TLS certificate and key of one listener. New connections use the
/// files as last loaded; [`reload`](Self::reload) (run on SIGHUP by
/// [`reload_on_hangup`](Self::reload_on_hangup)) swaps them without
/// dropping connections, and keeps the old ones when the new files are bad.
#[derive(Debug)]
pub struct ServerTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    section: String,
    config: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Loads `cert_file` and `key_file`; `section` (such as
    /// `scheduler.tls`) names them in errors.
    pub fn load(cert_file: &Path, key_file: &Path, section: &str) -> Result<Self> {
        let config = server_config(cert_file, key_file, section)?;
        Ok(Self {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            section: section.to_string(),
            config: RwLock::new(Arc::new(config)),
        })
    }

    /// The listener's TLS from its settings, `None` when they name no files.
    pub fn from_settings(settings: &ServerTlsSettings, section: &str) -> Result<Option<Self>> {
        settings
            .validate(section)
            .map_err(|e| BallistaError::Configuration(e.to_string()))?;
        match (&settings.cert_file, &settings.key_file) {
            (Some(cert), Some(key)) => Self::load(cert, key, section).map(Some),
            _ => Ok(None),
        }
    }

    /// Reads the files again; on an error the certificate in use stays.
    pub fn reload(&self) -> Result<()> {
        let config = server_config(&self.cert_file, &self.key_file, &self.section)?;
        *self.config.write() = Arc::new(config);
        Ok(())
    }

    /// An acceptor with the certificate as last loaded.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config.read()))
    }

    /// An acceptor for the HTTP service (web UI, REST API, metrics): the
    /// same certificate, offering HTTP/1.1 as well as HTTP/2 to browsers
    /// and scrapers.
    pub(crate) fn http_acceptor(&self) -> TlsAcceptor {
        let mut config = ServerConfig::clone(&self.config.read());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }

    /// Reloads the files each time the process gets SIGHUP, for as long as
    /// `tls` is alive; `name` (such as `scheduler`) prefixes what is logged.
    pub fn reload_on_hangup(tls: &Arc<Self>, name: &'static str) {
        crate::util::on_hangup(
            tls,
            &format!("{name}: the TLS files"),
            move |tls: &Self| match tls.reload() {
                Ok(()) => tracing::info!(
                    "{name}: reloaded the TLS certificate {} on SIGHUP",
                    tls.cert_file.display()
                ),
                Err(e) => tracing::error!(
                    "{name}: kept the TLS certificate in use; reloading it on SIGHUP failed: {e}"
                ),
            },
        );
    }
}

fn server_config(cert_file: &Path, key_file: &Path, section: &str) -> Result<ServerConfig> {
    let chain = pem::certificates(cert_file, &format!("{section}.cert_file"))?;
    let key = pem::private_key(key_file, &format!("{section}.key_file"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BallistaError::Internal(format!("TLS protocol versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            BallistaError::Configuration(format!(
                "{section}: the key {} does not go with the certificate {}: {e}",
                key_file.display(),
                cert_file.display()
            ))
        })?;
    // gRPC is HTTP/2 only; a client that cannot negotiate it fails the
    // handshake instead of a later, vaguer, protocol error.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
