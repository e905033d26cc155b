//! A development CA and certificates for a scheduler and executors
//! (`ballista certs generate`).

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::error::{BallistaError, Result};

/// Names every certificate carries, so that a cluster on one machine works
/// as generated.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// How long the generated certificates are valid.
const CA_VALIDITY_DAYS: i64 = 5 * 365;
const LEAF_VALIDITY_DAYS: i64 = 365;

/// The files [`write_dev_certificates`] wrote.
#[derive(Debug, Clone)]
pub struct DevCertificateFiles {
    /// The CA certificate: `tls.ca_file` of every process and client.
    pub ca_cert: PathBuf,
    /// The CA's private key: keep it to sign more certificates, or delete it.
    pub ca_key: PathBuf,
    /// `scheduler.tls.cert_file`.
    pub scheduler_cert: PathBuf,
    /// `scheduler.tls.key_file`.
    pub scheduler_key: PathBuf,
    /// `executor.tls.cert_file` (one certificate for all executors).
    pub executor_cert: PathBuf,
    /// `executor.tls.key_file`.
    pub executor_key: PathBuf,
}

/// Writes into `dir` a new CA (`ca.pem`, `ca.key`) and certificates signed
/// by it for a scheduler (`scheduler.pem`, `scheduler.key`) and for
/// executors (`executor.pem`, `executor.key`), valid for `localhost`,
/// `127.0.0.1`, `::1` and each of `hosts` (DNS names or IP addresses).
/// Keys are ECDSA P-256, readable by their owner only. Refuses to replace
/// existing files unless `force`.
pub fn write_dev_certificates(
    dir: &Path,
    hosts: &[String],
    force: bool,
) -> Result<DevCertificateFiles> {
    let files = DevCertificateFiles {
        ca_cert: dir.join("ca.pem"),
        ca_key: dir.join("ca.key"),
        scheduler_cert: dir.join("scheduler.pem"),
        scheduler_key: dir.join("scheduler.key"),
        executor_cert: dir.join("executor.pem"),
        executor_key: dir.join("executor.key"),
    };
    let all = [
        &files.ca_cert,
        &files.ca_key,
        &files.scheduler_cert,
        &files.scheduler_key,
        &files.executor_cert,
        &files.executor_key,
    ];
    if !force && let Some(existing) = all.iter().find(|p| p.exists()) {
        return Err(BallistaError::InvalidInput(format!(
            "{} exists: not replacing certificates (use --force to replace them)",
            existing.display()
        )));
    }
    let mut names: Vec<String> = LOCAL_NAMES.iter().map(|s| s.to_string()).collect();
    for host in hosts {
        let host = host.trim();
        if host.is_empty() {
            return Err(BallistaError::InvalidInput(
                "an empty host name: expected a DNS name or an IP address".into(),
            ));
        }
        if !names.iter().any(|n| n == host) {
            names.push(host.to_string());
        }
    }
    let now = OffsetDateTime::now_utc();
    let cert_error = |what: &str, e: rcgen::Error| {
        BallistaError::InvalidInput(format!("cannot make the {what} certificate: {e}"))
    };

    let ca_key = KeyPair::generate().map_err(|e| cert_error("CA", e))?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| cert_error("CA", e))?;
    // A name of its own, so that a certificate from another development CA
    // is reported as from an unknown issuer rather than a bad signature.
    let mut tag = [0u8; 4];
    getrandom::fill(&mut tag)
        .map_err(|e| BallistaError::Internal(format!("no randomness for the CA name: {e}")))?;
    ca.distinguished_name.push(
        DnType::CommonName,
        format!(
            "Ballista development CA {}",
            crate::auth::crypto::to_hex(&tag)
        ),
    );
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = now - Duration::days(1);
    ca.not_after = now + Duration::days(CA_VALIDITY_DAYS);
    let ca_cert = ca.self_signed(&ca_key).map_err(|e| cert_error("CA", e))?;
    let issuer = Issuer::new(ca, &ca_key);

    let leaf = |role: &str| -> Result<(String, String)> {
        let key = KeyPair::generate().map_err(|e| cert_error(role, e))?;
        let mut params = CertificateParams::new(names.clone()).map_err(|e| cert_error(role, e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("ballista {role}"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(LEAF_VALIDITY_DAYS);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| cert_error(role, e))?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (scheduler_cert, scheduler_key) = leaf("scheduler")?;
    let (executor_cert, executor_key) = leaf("executor")?;

    std::fs::create_dir_all(dir)
        .map_err(|e| BallistaError::Io(format!("cannot create {}: {e}", dir.display())))?;
    write_file(&files.ca_cert, &ca_cert.pem(), false)?;
    write_file(&files.ca_key, &ca_key.serialize_pem(), true)?;
    write_file(&files.scheduler_cert, &scheduler_cert, false)?;
    write_file(&files.scheduler_key, &scheduler_key, true)?;
    write_file(&files.executor_cert, &executor_cert, false)?;
    write_file(&files.executor_key, &executor_key, true)?;
    Ok(files)
}

/// Writes `text` to `path` through a temporary file renamed into place, so
/// that a reader (a listener reloading on SIGHUP) never sees half a file;
/// `secret` files are readable by their owner only.
fn write_file(path: &Path, text: &str, secret: bool) -> Result<()> {
    let io_error =
        |e: std::io::Error| BallistaError::Io(format!("cannot write {}: {e}", path.display()));
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io_error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if secret { 0o600 } else { 0o644 };
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io_error)?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    file.write_all(text.as_bytes()).map_err(io_error)?;
    file.as_file().sync_all().map_err(io_error)?;
    file.persist(path).map_err(|e| io_error(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_load_as_a_listener_and_a_trust() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_dev_certificates(dir.path(), &["scheduler.internal".into()], false)
            .expect("generate");
        crate::tls::ServerTls::load(&files.scheduler_cert, &files.scheduler_key, "scheduler.tls")
            .expect("scheduler certificate loads");
        crate::tls::ServerTls::load(&files.executor_cert, &files.executor_key, "executor.tls")
            .expect("executor certificate loads");
        let trust = crate::tls::TlsTrust::from_ca_file(&files.ca_cert).expect("CA loads");
        assert_eq!(trust.ca_file(), Some(files.ca_cert.as_path()));

        let again = write_dev_certificates(dir.path(), &[], false).unwrap_err();
        assert!(
            again.to_string().contains("ca.pem exists"),
            "refuses to overwrite: {again}"
        );
        write_dev_certificates(dir.path(), &[], true).expect("--force replaces them");
    }

    #[test]
    fn a_key_that_does_not_match_its_certificate_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_dev_certificates(dir.path(), &[], false).unwrap();
        let error = crate::tls::ServerTls::load(
            &files.scheduler_cert,
            &files.executor_key,
            "scheduler.tls",
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("executor.key") && text.contains("does not go with"),
            "{text}"
        );
    }
}
