//! Where the shared catalog is kept: a JSON document, replaced atomically
//! on each change, so that a crash leaves the old catalog or the new one,
//! never half of one. A local file is written beside the old one, flushed,
//! then renamed over it; an object (`s3://bucket/key`, through the
//! scheduler's storage plugins) is replaced by one `PUT`, which object
//! stores apply whole.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

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

/// Where the catalog is kept.
#[derive(Debug, Clone)]
pub(crate) enum CatalogStore {
    /// Nowhere: in memory only.
    Memory,
    /// A local file.
    File(PathBuf),
    /// An object of an object store.
    Object {
        /// The store.
        store: Arc<dyn ObjectStore>,
        /// The object's path in it.
        path: ObjectPath,
        /// Its URL, for messages.
        url: String,
    },
}

impl std::fmt::Display for CatalogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogStore::Memory => write!(f, "memory (not kept across restarts)"),
            CatalogStore::File(file) => write!(f, "{}", file.display()),
            CatalogStore::Object { url, .. } => write!(f, "{url}"),
        }
    }
}

impl CatalogStore {
    /// The entries kept; none when nothing was kept yet.
    pub(crate) async fn load(&self) -> Result<Vec<StoredEntry>> {
        let unreadable = |e: &dyn std::fmt::Display| {
            BallistaError::Configuration(format!(
                "scheduler.catalog.location: cannot read {self}: {e}"
            ))
        };
        let text = match self {
            CatalogStore::Memory => return Ok(Vec::new()),
            CatalogStore::File(file) => match tokio::fs::read_to_string(file).await {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(unreadable(&e)),
            },
            CatalogStore::Object { store, path, .. } => match store.get(path).await {
                Ok(found) => {
                    let bytes = found.bytes().await.map_err(|e| unreadable(&e))?;
                    String::from_utf8(bytes.to_vec()).map_err(|e| unreadable(&e))?
                }
                Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
                Err(e) => return Err(unreadable(&e)),
            },
        };
        let parsed: CatalogFile = serde_json::from_str(&text).map_err(|e| {
            BallistaError::Configuration(format!(
                "scheduler.catalog.location: {self} is not a catalog this scheduler wrote: {e}"
            ))
        })?;
        if parsed.version != VERSION {
            return Err(BallistaError::Configuration(format!(
                "scheduler.catalog.location: {self} is of catalog version {}; this scheduler reads version {VERSION}",
                parsed.version
            )));
        }
        Ok(parsed.entries)
    }

    /// Replaces what is kept with `entries`.
    pub(crate) async fn save(&self, entries: &[StoredEntry]) -> Result<()> {
        let text = serde_json::to_string_pretty(&CatalogFile {
            version: VERSION,
            entries: entries.to_vec(),
        })
        .map_err(|e| BallistaError::Internal(format!("encoding the catalog: {e}")))?;
        match self {
            CatalogStore::Memory => Ok(()),
            CatalogStore::File(file) => {
                let file = file.clone();
                tokio::task::spawn_blocking(move || write_atomically(&file, text.as_bytes()))
                    .await
                    .map_err(|e| BallistaError::Internal(format!("writing the catalog: {e}")))?
            }
            CatalogStore::Object { store, path, url } => store
                .put(path, PutPayload::from(text.into_bytes()))
                .await
                .map(|_| ())
                .map_err(|e| BallistaError::Io(format!("cannot write the catalog to {url}: {e}"))),
        }
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
        let store = CatalogStore::File(dir.path().join("sub/catalog.json"));
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

#[cfg(test)]
mod object_tests {
    use super::*;

    #[tokio::test]
    async fn an_object_store_keeps_the_catalog_too() {
        let store = CatalogStore::Object {
            store: Arc::new(object_store::memory::InMemory::new()),
            path: ObjectPath::from("state/catalog.json"),
            url: "memory:///state/catalog.json".into(),
        };
        assert!(store.load().await.unwrap().is_empty());
        let entries = vec![StoredEntry {
            kind: EntryKind::Schema,
            name: "sales".into(),
            owner: "ana".into(),
            sql: "CREATE SCHEMA sales".into(),
        }];
        store.save(&entries).await.unwrap();
        assert_eq!(store.load().await.unwrap(), entries);
    }
}
