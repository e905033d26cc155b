//! Where the shared catalog is kept: a JSON file, replaced atomically on
//! each change (written beside it, flushed, then renamed over it), so that a
//! crash leaves the old catalog or the new one, never half of one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{BallistaError, Result};

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EntryKind {
    /// `CREATE SCHEMA`.
    Schema,
    /// `CREATE EXTERNAL TABLE`.
    Table,
    /// `CREATE VIEW`.
    View,
}

impl EntryKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            EntryKind::Schema => "schema",
            EntryKind::Table => "table",
            EntryKind::View => "view",
        }
    }
}

/// One entry as it is kept: the statement that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredEntry {
    pub kind: EntryKind,
    /// `catalog.schema.table` for tables and views; the schema's name.
    pub name: String,
    /// The user who made it.
    pub owner: String,
    /// The statement, as the user wrote it.
    pub sql: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    version: u32,
    entries: Vec<StoredEntry>,
}

const VERSION: u32 = 1;

/// Where the catalog is kept: a file, or nowhere (kept in memory only).
#[derive(Debug, Clone)]
pub(crate) struct CatalogStore {
    file: Option<PathBuf>,
}

impl std::fmt::Display for CatalogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}", file.display()),
            None => write!(f, "memory (not kept across restarts)"),
        }
    }
}

impl CatalogStore {
    /// A catalog kept in `file`, or in memory only for `None`.
    pub(crate) fn new(file: Option<PathBuf>) -> Self {
        Self { file }
    }

    /// The entries kept; none when the file does not exist yet.
    pub(crate) async fn load(&self) -> Result<Vec<StoredEntry>> {
        let Some(file) = &self.file else {
            return Ok(Vec::new());
        };
        let text = match tokio::fs::read_to_string(file).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(BallistaError::Configuration(format!(
                    "scheduler.catalog.location: cannot read {}: {e}",
                    file.display()
                )));
            }
        };
        let parsed: CatalogFile = serde_json::from_str(&text).map_err(|e| {
            BallistaError::Configuration(format!(
                "scheduler.catalog.location: {} is not a catalog this scheduler wrote: {e}",
                file.display()
            ))
        })?;
        if parsed.version != VERSION {
            return Err(BallistaError::Configuration(format!(
                "scheduler.catalog.location: {} is of catalog version {}; this scheduler reads version {VERSION}",
                file.display(),
                parsed.version
            )));
        }
        Ok(parsed.entries)
    }

    /// Replaces what is kept with `entries`.
    pub(crate) async fn save(&self, entries: &[StoredEntry]) -> Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let text = serde_json::to_string_pretty(&CatalogFile {
            version: VERSION,
            entries: entries.to_vec(),
        })
        .map_err(|e| BallistaError::Internal(format!("encoding the catalog: {e}")))?;
        let file = file.clone();
        tokio::task::spawn_blocking(move || write_atomically(&file, text.as_bytes()))
            .await
            .map_err(|e| BallistaError::Internal(format!("writing the catalog: {e}")))?
    }
}

fn write_atomically(file: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let failed = |e: std::io::Error| {
        BallistaError::Io(format!(
            "cannot write the catalog to {}: {e}",
            file.display()
        ))
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let staging = file.with_extension(format!("tmp-{}", std::process::id()));
    let mut out = std::fs::File::create(&staging).map_err(failed)?;
    out.write_all(bytes).map_err(failed)?;
    out.sync_all().map_err(failed)?;
    drop(out);
    std::fs::rename(&staging, file).map_err(failed)?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_round_trip_and_a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::new(Some(dir.path().join("sub/catalog.json")));
        assert!(store.load().await.unwrap().is_empty(), "no file yet: empty");
        let entries = vec![StoredEntry {
            kind: EntryKind::View,
            name: "datafusion.public.v".into(),
            owner: "ana".into(),
            sql: "CREATE VIEW v AS SELECT 1".into(),
        }];
        store.save(&entries).await.unwrap();
        assert_eq!(store.load().await.unwrap(), entries);
        std::fs::write(dir.path().join("sub/catalog.json"), "{\"tables\": []}").unwrap();
        let err = store.load().await.unwrap_err().to_string();
        assert!(
            err.contains("is not a catalog this scheduler wrote"),
            "{err}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no staging file left: {leftovers:?}");
    }
}
