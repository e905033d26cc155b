//! Where the TLS certificates of a process are (`[tls]`, `[scheduler.tls]`,
//! `[executor.tls]`).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::InvalidSetting;

/// What this process trusts when it connects over `https://` (`[tls]`): to
/// the scheduler, and to executors when the cluster serves TLS.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// CA certificate(s), PEM, that signed the cluster's certificates (such
    /// as `ca.pem` from `ballista certs generate`). Unset: the system's
    /// trusted roots.
    pub ca_file: Option<PathBuf>,
    /// Let a client send its password or token to a scheduler on another
    /// machine over `http://` (plain text: anyone on the network can read
    /// them). Off, such a client refuses before sending anything; the
    /// `ballista` CLI's `--insecure` sets it.
    pub allow_plain_text: bool,
}

/// The certificate a listener serves TLS with (`[scheduler.tls]`,
/// `[executor.tls]`). Both files set: the listener speaks TLS only, and
/// this process reaches the other members over `https://`. Reloaded on
/// SIGHUP.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServerTlsSettings {
    /// Certificate chain, PEM, leaf first. Its names (DNS or IP) must
    /// include the host others connect to.
    pub cert_file: Option<PathBuf>,
    /// Private key of the certificate, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

impl ServerTlsSettings {
    /// Whether the listener serves TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }

    /// Both files or neither: half a configuration is a mistake, not a
    /// reason to serve plain text.
    pub(crate) fn validate(&self, section: &str) -> Result<(), InvalidSetting> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err(InvalidSetting::new(
                format!("{section}.key_file"),
                " is not set but cert_file is: a listener serves TLS with both files or neither",
            )),
            (None, Some(_)) => Err(InvalidSetting::new(
                format!("{section}.cert_file"),
                " is not set but key_file is: a listener serves TLS with both files or neither",
            )),
            _ => Ok(()),
        }
    }
}
