//! Which servers a connection over `https://` trusts, and the scheme
//! members use for each other.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig};

use super::pem;
use crate::config::TlsSettings;
use crate::error::Result;

/// Environment variable naming a CA file, read by clients built without
/// settings (`tls.ca_file` in the environment loader's spelling).
const CA_FILE_ENV: &str = "BALLISTA_TLS__CA_FILE";

/// Environment variable that lets clients built without settings send
/// passwords and tokens over plain text (`tls.allow_plain_text`).
const ALLOW_PLAIN_TEXT_ENV: &str = "BALLISTA_TLS__ALLOW_PLAIN_TEXT";

/// Longest a TLS handshake with a server may take (the connect timeout
/// covers only TCP).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificates a connection over `https://` accepts: those signed by
/// a configured CA, or by the system's trusted roots; and whether secrets
/// may go to another machine over `http://`.
#[derive(Debug, Clone, Default)]
pub struct TlsTrust {
    ca: Option<TrustedCa>,
    allow_plain_text: bool,
}

#[derive(Debug, Clone)]
struct TrustedCa {
    pem: Arc<Vec<u8>>,
    file: PathBuf,
}

impl TlsTrust {
    /// The system's trusted roots (public certificates).
    pub fn system_roots() -> Self {
        Self::default()
    }

    /// Certificates signed by the CA(s) in the PEM file `path` only.
    pub fn from_ca_file(path: &Path) -> Result<Self> {
        let bytes = pem::read(path, "tls.ca_file")?;
        pem::certificates_in(&bytes, path, "tls.ca_file")?;
        Ok(Self {
            ca: Some(TrustedCa {
                pem: Arc::new(bytes),
                file: path.to_path_buf(),
            }),
            allow_plain_text: false,
        })
    }

    /// This trust, letting passwords and tokens go to another machine over
    /// `http://` when `allow` (a network the operator trusts).
    pub fn allowing_plain_text(mut self, allow: bool) -> Self {
        self.allow_plain_text = allow;
        self
    }

    /// Whether passwords and tokens may go to another machine over
    /// `http://`.
    pub fn allows_plain_text(&self) -> bool {
        self.allow_plain_text
    }

    /// The trust of `[tls]`.
    pub fn from_settings(settings: &TlsSettings) -> Result<Self> {
        let trust = match &settings.ca_file {
            Some(path) => Self::from_ca_file(path)?,
            None => Self::system_roots(),
        };
        Ok(trust.allowing_plain_text(settings.allow_plain_text))
    }

    /// The CA file in `BALLISTA_TLS__CA_FILE`, else the system's roots, and
    /// `BALLISTA_TLS__ALLOW_PLAIN_TEXT`: for clients built without settings.
    pub fn from_env() -> Result<Self> {
        let trust = match std::env::var_os(CA_FILE_ENV) {
            Some(path) if !path.is_empty() => Self::from_ca_file(Path::new(&path))?,
            _ => Self::system_roots(),
        };
        let allow = std::env::var(ALLOW_PLAIN_TEXT_ENV)
            .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        Ok(trust.allowing_plain_text(allow))
    }

    /// [`from_settings`](Self::from_settings), with what they leave unset
    /// taken from [`from_env`](Self::from_env) (a `BallistaConfig` built in
    /// code reads no environment).
    pub fn from_settings_or_env(settings: &TlsSettings) -> Result<Self> {
        let env = Self::from_env()?;
        let trust = match &settings.ca_file {
            Some(path) => Self::from_ca_file(path)?,
            None => env.clone(),
        };
        Ok(trust.allowing_plain_text(settings.allow_plain_text || env.allow_plain_text))
    }

    /// The CA file trusted, if not the system's roots.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca.as_ref().map(|ca| ca.file.as_path())
    }

    /// tonic's client configuration for this trust.
    pub(crate) fn client_config(&self) -> ClientTlsConfig {
        let config = match &self.ca {
            Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&*ca.pem)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        config.timeout(HANDSHAKE_TIMEOUT)
    }
}

/// How this process reaches cluster members it knows by host and port
/// (executors, as the scheduler lists them): plain `http://`, or
/// `https://` with a trust.
#[derive(Debug, Clone, Default)]
pub struct PeerTransport {
    tls: Option<TlsTrust>,
}

impl PeerTransport {
    /// Plain text.
    pub fn plain() -> Self {
        Self::default()
    }

    /// TLS, trusting `trust`.
    pub fn tls(trust: TlsTrust) -> Self {
        Self { tls: Some(trust) }
    }

    /// The transport matching `url`'s scheme: members are reached the way
    /// the scheduler is.
    pub fn like(url: &str, trust: &TlsTrust) -> Self {
        if url.starts_with("https://") {
            Self::tls(trust.clone())
        } else {
            Self::plain()
        }
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The URL of the member at `host:port`.
    pub fn url(&self, host: &str, port: u16) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        if host.contains(':') && !host.starts_with('[') {
            format!("{scheme}://[{host}]:{port}")
        } else {
            format!("{scheme}://{host}:{port}")
        }
    }

    /// The trust for `https://` URLs (the system's roots when plain).
    pub fn trust(&self) -> TlsTrust {
        self.tls.clone().unwrap_or_default()
    }
}

/// Whether `host` (a name or an address, IPv6 with or without brackets)
/// can be reached from this machine only.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `url` names this machine (a loopback address or `localhost`),
/// where plain text never crosses a network.
pub fn is_loopback_url(url: &str) -> bool {
    url::Url::parse(url)
        .ok()
        .and_then(|parsed| parsed.host_str().map(is_loopback_host))
        .unwrap_or(false)
}

/// A hint for a connection to `url` that failed with `error_text` (the
/// whole chain of causes), when TLS is the likely reason; empty otherwise.
pub fn connection_hint(url: &str, error_text: &str, trust: &TlsTrust) -> String {
    let tls = url.starts_with("https://");
    if tls && error_text.contains("NotValidForName") {
        return " (the server's certificate does not name the host in the URL: connect with a \
                 name the certificate lists, or make one that lists this name, e.g. with \
                 `ballista certs generate DIR --host NAME`)"
            .into();
    }
    if tls && error_text.contains("invalid peer certificate") {
        let trusted = match trust.ca_file() {
            Some(file) => format!("the CA in {}", file.display()),
            None => "the system's roots (no tls.ca_file is set)".to_string(),
        };
        return format!(
            " (the server's certificate is not one this client trusts: it trusts {trusted}; \
             give the CA that signed the server's certificate with --ca-file, tls.ca_file or \
             BALLISTA_TLS__CA_FILE)"
        );
    }
    if tls
        && (error_text.contains("InvalidContentType")
            || error_text.contains("corrupt message")
            || error_text.contains("peer is incompatible")
            || error_text.contains("tls handshake eof"))
    {
        return " (the server does not speak TLS on that port: is it an http:// URL?)".into();
    }
    String::new()
}
