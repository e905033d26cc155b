//! `ballista-storage-local`: `file://` object stores restricted to configured
//! root folders.
//!
//! Without this plugin a cluster serves every `file://` path its processes
//! can open, so any query may read `/etc/passwd` or `COPY` over a
//! configuration file. Listing it replaces that built-in store for
//! `file://`; every other local path is refused:
//!
//! ```toml
//! [[storage]]
//! kind = "local"
//! roots = ["/data/tpch", "exports"]   # `exports` resolves against the working directory
//! ```
//!
//! The scheduler asks the plugin about every location a plan reads or writes
//! before it runs the plan, and the store checks every request again (on the
//! executors too), so a refusal names the offending path up front:
//!
//! ```text
//! file:///etc/passwd is outside the allowed local folders (/data/tpch, /srv/exports);
//! add its folder to the roots of [[storage]] kind = "local"
//! ```
//!
//! A path is allowed when it lies under a root both as written (after `.`
//! and `..` are applied) and once symbolic links are resolved, so neither
//! `/data/tpch/../../etc` nor a link inside a root pointing elsewhere gets
//! out. The check guards against what queries ask for; it cannot stop a
//! local user who swaps a link between the check and the access.
//!
//! Folders the framework itself reaches through `file://` URLs (for example
//! an object-store shuffle on local disk) must be listed among the roots too.

#![warn(missing_docs)]

mod sandbox;
mod store;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use ballista::object_store::ObjectStore;
use ballista::plugin::registry::{PluginContext, PluginRegistry};
use ballista::plugin::storage::{ObjectStoreProvider, StorageAccess};
use ballista::schemars::JsonSchema;
use ballista::serde::Deserialize;
use ballista::url::Url;
use ballista::{BallistaError, Result};

use crate::sandbox::{InvalidRoot, Sandbox};
pub use crate::store::SandboxedFileStore;

/// The name TOML selects this plugin by.
pub const KIND: &str = "local";

/// Options of `[[storage]] kind = "local"`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(crate = "ballista::serde", default, deny_unknown_fields)]
#[schemars(crate = "ballista::schemars")]
pub struct LocalStorageOptions {
    /// Folders (or single files) that queries may read and write under;
    /// every other local path is refused, including one reached through a
    /// symbolic link inside a root. Each must exist when the process starts.
    /// Relative roots resolve against the process's current directory. An
    /// empty list means the current directory.
    pub roots: Vec<PathBuf>,
}

/// Serves `file://` URLs, limited to the configured roots.
#[derive(Debug, Clone)]
pub struct SandboxedLocalProvider {
    sandbox: Arc<Sandbox>,
}

impl SandboxedLocalProvider {
    /// Resolves the roots of `options`; a root that does not exist is a
    /// configuration error naming its key (`storage[0].roots[1] = …`).
    pub fn new(options: LocalStorageOptions, context: &PluginContext<'_>) -> Result<Self> {
        Self::build(&options.roots, |invalid| {
            context.invalid_option(&invalid.key, Some(&invalid.path), invalid.reason)
        })
    }

    /// The same as [`new`](Self::new), for code that builds its providers
    /// without a configuration file.
    pub fn with_roots(roots: Vec<PathBuf>) -> Result<Self> {
        Self::build(&roots, |invalid| {
            BallistaError::Configuration(format!(
                "{KIND} storage {} = {:?}: {}",
                invalid.key, invalid.path, invalid.reason
            ))
        })
    }

    fn build(
        roots: &[PathBuf],
        invalid_root: impl FnOnce(InvalidRoot) -> BallistaError,
    ) -> Result<Self> {
        let sandbox = Sandbox::new(roots).map_err(invalid_root)?;
        tracing::info!(roots = %sandbox.roots_list(), "file:// access limited to the configured roots");
        Ok(Self {
            sandbox: Arc::new(sandbox),
        })
    }

    /// The folders (or files) queries may use, symbolic links resolved.
    pub fn roots(&self) -> &[PathBuf] {
        self.sandbox.roots()
    }

    /// A store limited to these roots.
    pub fn store(&self) -> SandboxedFileStore {
        SandboxedFileStore::new(Arc::clone(&self.sandbox))
    }
}

impl ObjectStoreProvider for SandboxedLocalProvider {
    fn schemes(&self) -> Vec<String> {
        vec!["file".to_string()]
    }

    fn create_store(&self, _url: &Url) -> Result<Arc<dyn ObjectStore>> {
        Ok(Arc::new(self.store()))
    }

    /// Reads and writes are held to the same roots. A pattern such as
    /// `file:///data/t/*.parquet` is judged by the folder it searches; the
    /// store then checks each file the pattern matches.
    fn check_access(&self, url: &Url, _access: StorageAccess) -> Result<()> {
        let path = match url.scheme() {
            "file" => url.to_file_path().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            BallistaError::InvalidInput(format!(
                "{url} is not a local path: expected file:///<absolute path>"
            ))
        })?;
        let searched = pattern_folder(&path, url.query().is_some());
        self.sandbox
            .check(&searched, Some(url.as_str()))
            .map_err(|refusal| BallistaError::PermissionDenied(refusal.to_string()))
    }
}

/// The folder a listing pattern searches: `path` up to its first component
/// holding a wildcard (`*`, `?`, `[`). A URL parser reads a `?` wildcard as
/// the start of a query, so with `has_query` the last component is a
/// pattern too.
fn pattern_folder(path: &Path, has_query: bool) -> PathBuf {
    let components: Vec<Component<'_>> = path.components().collect();
    let first_pattern = components.iter().position(|component| {
        matches!(component, Component::Normal(name)
            if name.to_string_lossy().contains(['*', '?', '[']))
    });
    let keep = match first_pattern {
        Some(i) => i,
        None if has_query => components.len().saturating_sub(1),
        None => components.len(),
    };
    // Never drop the root itself, so the result stays absolute.
    components[..keep.max(1).min(components.len())]
        .iter()
        .collect()
}

/// Registers the plugin as `kind = "local"`.
pub fn register(registry: &mut PluginRegistry) {
    registry.register_storage(
        KIND,
        "file:// paths limited to configured root folders.",
        |options: LocalStorageOptions, context| {
            Ok(Arc::new(SandboxedLocalProvider::new(options, context)?))
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballista::config::{BallistaSettings, PluginSpec};
    use ballista::serde_json::Value;

    fn url_of(path: &Path) -> Url {
        Url::from_file_path(path).unwrap()
    }

    #[track_caller]
    fn assert_denied(result: Result<()>) {
        match result {
            Err(BallistaError::PermissionDenied(message)) => {
                assert!(
                    message.contains("outside the allowed local folders"),
                    "{message}"
                );
                assert!(message.contains("kind = \"local\""), "{message}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_root_fails_new_naming_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let settings = BallistaSettings::default();
        let context = PluginContext {
            settings: &settings,
            key_path: "storage[0]".into(),
        };
        let options = LocalStorageOptions {
            roots: vec![missing.clone()],
        };
        match SandboxedLocalProvider::new(options, &context) {
            Err(BallistaError::Configuration(message)) => {
                assert!(message.starts_with("storage[0].roots[0] = "), "{message}");
                assert!(
                    message.contains(&missing.display().to_string()),
                    "{message}"
                );
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
        match SandboxedLocalProvider::with_roots(vec![missing]) {
            Err(BallistaError::Configuration(message)) => {
                assert!(message.contains("roots[0]"), "{message}")
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn the_registered_kind_reads_its_options() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = PluginRegistry::empty();
        register(&mut registry);
        let mut settings = BallistaSettings::default();
        let root = dir.path().display().to_string();
        settings
            .storage
            .push(PluginSpec::kind(KIND).with_option("roots", Value::from(vec![root])));
        let providers = registry.storage_providers(&settings).unwrap();
        assert_eq!(providers[0].schemes(), vec!["file".to_string()]);

        settings.storage[0] = PluginSpec::kind(KIND).with_option("root", "/data");
        match registry.storage_providers(&settings) {
            Err(BallistaError::Configuration(message)) => {
                assert!(
                    message.starts_with("storage[0].root: unknown field"),
                    "{message}"
                )
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn empty_roots_mean_the_current_directory() {
        let provider = SandboxedLocalProvider::with_roots(Vec::new()).unwrap();
        let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(provider.roots(), std::slice::from_ref(&cwd));
        provider
            .check_access(&url_of(&cwd.join("data/x.csv")), StorageAccess::Read)
            .unwrap();
        if let Some(parent) = cwd.parent() {
            let elsewhere = url_of(&parent.join("elsewhere.csv"));
            assert_denied(provider.check_access(&elsewhere, StorageAccess::Write));
        }
    }

    #[test]
    fn check_access_judges_a_pattern_by_the_folder_it_searches() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("data");
        std::fs::create_dir_all(root.join("t")).unwrap();
        let provider = SandboxedLocalProvider::with_roots(vec![root.clone()]).unwrap();
        let inside = url_of(&root);
        for allowed in [
            "/t/*.parquet",
            "/t/",
            "/t/part-[0-9].csv",
            "/new/out.parquet",
        ] {
            let url = Url::parse(&format!("{inside}{allowed}")).unwrap();
            for access in [StorageAccess::Read, StorageAccess::Write] {
                provider.check_access(&url, access).unwrap();
            }
        }
        let outside = url_of(&base.join("other"));
        let pattern = Url::parse(&format!("{outside}/*.parquet")).unwrap();
        let result = provider.check_access(&pattern, StorageAccess::Read);
        if let Err(BallistaError::PermissionDenied(message)) = &result {
            assert!(message.starts_with(pattern.as_str()), "{message}");
            assert!(message.contains(&root.display().to_string()), "{message}");
        }
        assert_denied(result);
        let climbing = Url::parse(&format!("{inside}/../other/x.csv")).unwrap();
        assert_denied(provider.check_access(&climbing, StorageAccess::Write));
        let remote = Url::parse("file://otherhost/data/x.csv").unwrap();
        assert!(matches!(
            provider.check_access(&remote, StorageAccess::Read),
            Err(BallistaError::InvalidInput(_))
        ));
    }

    #[test]
    fn pattern_folder_stops_at_the_first_wildcard() {
        let folder = |p: &str, q| pattern_folder(Path::new(p), q);
        assert_eq!(folder("/d/t/*.parquet", false), PathBuf::from("/d/t"));
        assert_eq!(folder("/d/*/x.csv", false), PathBuf::from("/d"));
        assert_eq!(folder("/d/t/x.csv", false), PathBuf::from("/d/t/x.csv"));
        assert_eq!(folder("/d/t/part-", true), PathBuf::from("/d/t"));
        assert_eq!(folder("/*", false), PathBuf::from("/"));
    }
}
