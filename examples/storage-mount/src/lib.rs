//! `ballista-storage-mount`: an example of a third-party plugin crate.
//!
//! It serves a local folder under a URL scheme of the operator's choice, so
//! that tables can be declared as `warehouse://sales/orders/` and the folder
//! behind them moved without touching any query or table definition. A
//! binary links it with [`register`]; TOML then selects it like a built-in:
//!
//! ```toml
//! [[storage]]
//! kind = "mount"
//! scheme = "warehouse"
//! root = "/srv/warehouse"   # warehouse://sales/x.parquet is /srv/warehouse/sales/x.parquet
//! ```
//!
//! It depends on `ballista-framework` only: the framework re-exports the
//! libraries its plugin traits are written in.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use ballista::object_store::ObjectStore;
use ballista::object_store::local::LocalFileSystem;
use ballista::plugin::registry::{PluginContext, PluginRegistry};
use ballista::plugin::storage::ObjectStoreProvider;
use ballista::schemars::JsonSchema;
use ballista::serde::Deserialize;
use ballista::url::Url;
use ballista::{BallistaError, Result};

/// The name TOML selects this plugin by.
pub const KIND: &str = "mount";

/// Options of `[[storage]] kind = "mount"`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(crate = "ballista::serde", deny_unknown_fields)]
#[schemars(crate = "ballista::schemars")]
pub struct MountOptions {
    /// URL scheme the folder is served under, e.g. `warehouse` for
    /// `warehouse://sales/orders/`. Lower-case letters, digits, `+`, `-`, `.`;
    /// `file`, `s3`, `http` and `https` cannot be taken over.
    pub scheme: String,
    /// The folder URLs resolve into: `<scheme>://<name>/<path>` is
    /// `<root>/<name>/<path>`. Must exist.
    pub root: PathBuf,
}

/// Serves `<scheme>://<name>/…` from `<root>/<name>/…`.
#[derive(Debug)]
pub struct MountProvider {
    scheme: String,
    root: PathBuf,
}

impl MountProvider {
    /// Checks the options; errors name the option's key path.
    pub fn new(options: MountOptions, context: &PluginContext<'_>) -> Result<Self> {
        let scheme = options.scheme;
        let valid = scheme.starts_with(|c: char| c.is_ascii_lowercase())
            && scheme
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if !valid {
            return Err(context.invalid_option(
                "scheme",
                Some(&scheme),
                "expected a URL scheme: a lower-case letter, then letters, digits, '+', '-' or '.'",
            ));
        }
        if ["file", "s3", "http", "https"].contains(&scheme.as_str()) {
            return Err(context.invalid_option(
                "scheme",
                Some(&scheme),
                "that scheme belongs to another storage plugin; choose a name of your own",
            ));
        }
        let root = options.root.canonicalize().map_err(|e| {
            context.invalid_option(
                "root",
                Some(&options.root),
                format!("expected an existing folder ({e})"),
            )
        })?;
        if !root.is_dir() {
            return Err(context.invalid_option(
                "root",
                Some(&root),
                "expected a folder, found a file",
            ));
        }
        Ok(Self { scheme, root })
    }
}

impl ObjectStoreProvider for MountProvider {
    fn schemes(&self) -> Vec<String> {
        vec![self.scheme.clone()]
    }

    fn create_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let name = url.host_str().unwrap_or_default();
        // The name becomes one path component under the root, never more.
        let is_one_component = matches!(
            Path::new(name).components().collect::<Vec<_>>().as_slice(),
            [Component::Normal(_)]
        );
        if !is_one_component {
            return Err(BallistaError::InvalidInput(format!(
                "{url}: expected {}://<folder name>/<path>",
                self.scheme
            )));
        }
        let folder = self.root.join(name);
        if !folder.is_dir() {
            return Err(BallistaError::NotFound(format!(
                "{}://{name}: no folder {} under the mount root",
                self.scheme,
                folder.display()
            )));
        }
        let store = LocalFileSystem::new_with_prefix(&folder)
            .map_err(|e| BallistaError::Io(format!("cannot open {}: {e}", folder.display())))?;
        Ok(Arc::new(store))
    }
}

/// Registers the plugin as `kind = "mount"`.
pub fn register(registry: &mut PluginRegistry) {
    registry.register_storage(
        KIND,
        "Serves a local folder under a URL scheme of your choice (example third-party plugin).",
        |options: MountOptions, context| Ok(Arc::new(MountProvider::new(options, context)?)),
    );
}
