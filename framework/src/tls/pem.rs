//! Reading PEM certificates and keys, with errors that name the file.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{BallistaError, Result};

/// The certificates in the PEM file `path` (`key` names the setting, for
/// errors); at least one.
pub(super) fn certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = read(path, key)?;
    certificates_in(&bytes, path, key)
}

/// The certificates in `bytes`, read from `path`.
pub(super) fn certificates_in(
    bytes: &[u8],
    path: &Path,
    key: &str,
) -> Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            BallistaError::Configuration(format!(
                "{key} = {}: not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certificates.is_empty() {
        return Err(BallistaError::Configuration(format!(
            "{key} = {}: no certificate in it (expected PEM blocks starting with \
             -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certificates)
}

/// The private key in the PEM file `path`.
pub(super) fn private_key(path: &Path, key: &str) -> Result<PrivateKeyDer<'static>> {
    let bytes = read(path, key)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        BallistaError::Configuration(format!(
            "{key} = {}: no PEM private key in it (PKCS#8, PKCS#1 or SEC1): {e}",
            path.display()
        ))
    })
}

pub(super) fn read(path: &Path, key: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        BallistaError::Configuration(format!("{key} = {}: cannot read it: {e}", path.display()))
    })
}
