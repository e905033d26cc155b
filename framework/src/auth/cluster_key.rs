//! The cluster key: the one secret that makes a process a member of a
//! cluster. The scheduler, every executor and the operator's own clients
//! hold it; nobody else can.
//!
//! Where it comes from, first match wins: set in code
//! ([`BallistaConfig::cluster_key`](crate::config::BallistaConfig)), the
//! `cluster.key` setting (64 hex digits, e.g. from a Kubernetes secret through
//! `BALLISTA_CLUSTER__KEY`), the file `cluster.key_file`, or the default file
//! `~/.ballista/cluster.key` (`$BALLISTA_HOME/cluster.key` when set). A
//! missing default file is created with a fresh random key, readable by its
//! owner only, so that processes of one user on one machine form a secured
//! cluster with no set-up; processes on other machines need a copy.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::crypto::SecretKey;
use crate::error::{BallistaError, Result};

/// Environment variable naming the folder of the default key file.
pub const BALLISTA_HOME_ENV: &str = "BALLISTA_HOME";

/// The default key file: `$BALLISTA_HOME/cluster.key`, else
/// `~/.ballista/cluster.key`.
pub fn default_key_file() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os(BALLISTA_HOME_ENV).filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home).join("cluster.key"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            BallistaError::Configuration(
                "cannot find the cluster key: neither cluster.key nor cluster.key_file is set, \
                 and neither BALLISTA_HOME nor HOME is set to find the default key file"
                    .into(),
            )
        })?;
    Ok(PathBuf::from(home).join(".ballista").join("cluster.key"))
}

/// Reads the key in `path`. The file must hold 64 hex digits and be
/// readable by its owner only (like an SSH private key).
pub fn read_key_file(path: &Path) -> Result<SecretKey> {
    let metadata = std::fs::metadata(path).map_err(|e| {
        BallistaError::Configuration(format!(
            "cannot read the cluster key file {}: {e}",
            path.display()
        ))
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(BallistaError::Configuration(format!(
            "the cluster key file {} may be read by other users (mode {mode:03o}); \
             make it private with: chmod 600 {}",
            path.display(),
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        BallistaError::Configuration(format!(
            "cannot read the cluster key file {}: {e}",
            path.display()
        ))
    })?;
    SecretKey::from_hex(&text).map_err(|_| {
        BallistaError::Configuration(format!(
            "the cluster key file {} does not hold a key (64 hex digits)",
            path.display()
        ))
    })
}

/// Reads the key in `path`, first creating the file with a fresh key when
/// it does not exist. Concurrent creators agree on one key: the file
/// appears whole or not at all.
pub fn read_or_create_key_file(path: &Path) -> Result<SecretKey> {
    if path.exists() {
        return read_key_file(path);
    }
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(folder) = folder {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .map_err(|e| {
                BallistaError::Configuration(format!(
                    "cannot create {} for the cluster key: {e}",
                    folder.display()
                ))
            })?;
    }
    let key = SecretKey::random()?;
    let temp = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(key.to_hex().as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        });
    let linked = written.and_then(|()| std::fs::hard_link(&temp, path));
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            tracing::info!(
                "created the cluster key {} (copy it to every machine of the cluster)",
                path.display()
            );
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(path),
        Err(e) => Err(BallistaError::Configuration(format!(
            "cannot create the cluster key file {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("cluster.key");
        let created = read_or_create_key_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_or_create_key_file(&path).unwrap(), created);
        assert_eq!(read_key_file(&path).unwrap(), created);
    }

    #[test]
    fn a_file_others_can_read_or_that_holds_no_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        std::fs::write(&path, SecretKey::random().unwrap().to_hex()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_key_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("mode 644") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not a key").unwrap();
        let err = read_key_file(&path).unwrap_err().to_string();
        assert!(err.contains("does not hold a key"), "{err}");
    }
}
