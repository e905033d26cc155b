//! The plugin registry: maps the `kind` names written in TOML to factories.
//!
//! Each seam has its own table in the configuration. The table's `kind`
//! names a registered plugin; every other key is that plugin's option:
//!
//! ```toml
//! [shuffle]
//! kind = "local-disk"
//! compression = "zstd"
//!
//! [[storage]]            # one table per storage plugin
//! kind = "mount"
//! scheme = "warehouse"
//! root = "/srv/warehouse"
//! ```
//!
//! A plugin registers a factory with a typed options struct. The registry
//! deserializes the table into it, so a plugin validates its own options
//! simply by declaring them (use `#[serde(deny_unknown_fields)]`), and
//! errors name the full key path (`shuffle.compression: unknown variant
//! …`). The options type's [`JsonSchema`] documents the plugin in the
//! generated configuration reference. Options holding secrets should be typed
//! [`Secret`](crate::config::Secret).
//!
//! ```
//! use std::sync::Arc;
//! use ballista::plugin::registry::{NoOptions, PluginRegistry};
//! use ballista::plugin::scheduling::FifoPolicy;
//!
//! let mut registry = PluginRegistry::with_builtins();
//! registry.register_scheduling("my-fifo", "FIFO, under another name", |_: NoOptions, _| {
//!     Ok(Arc::new(FifoPolicy))
//! });
//! ```
//!
//! Registering a kind that already exists replaces it, so a binary can swap
//! a built-in implementation while keeping its name.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::ipc::CompressionType;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use super::auth::{Authenticator, UsersFileAuthenticator, UsersFileOptions};
use super::memory::{ExecutorMemoryManager, MemoryManager};
use super::scheduling::{FifoPolicy, TaskSchedulingPolicy};
use super::shuffle::local::LocalDiskShuffle;
use super::shuffle::object_store::ObjectStoreShuffle;
use super::shuffle::{ShuffleReader, ShuffleWriter};
use super::storage::ObjectStoreProvider;
use crate::config::{
    BallistaSettings, ByteSize, PluginSpec, REDACTED, is_secret_key, scrub_values,
};
use crate::error::{BallistaError, Result};

/// The plugin seams that are chosen in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seam {
    /// `[[storage]]`: object stores for URL schemes.
    Storage,
    /// `[memory]`: the memory pools of executor tasks.
    Memory,
    /// `[scheduling]`: admission and task placement.
    Scheduling,
    /// `[shuffle]`: writing and reading map outputs.
    Shuffle,
    /// `[auth]`: who clients are and what they are granted.
    Auth,
}

impl Seam {
    /// Every seam, in the order the configuration lists them.
    pub const ALL: [Seam; 5] = [
        Seam::Storage,
        Seam::Memory,
        Seam::Scheduling,
        Seam::Shuffle,
        Seam::Auth,
    ];

    /// The seam's table name in TOML.
    pub fn key(self) -> &'static str {
        match self {
            Seam::Storage => "storage",
            Seam::Memory => "memory",
            Seam::Scheduling => "scheduling",
            Seam::Shuffle => "shuffle",
            Seam::Auth => "auth",
        }
    }

    /// The kind used when the table does not name one (`None` for storage,
    /// which always serves local files and adds the listed plugins).
    pub fn default_kind(self) -> Option<&'static str> {
        match self {
            Seam::Storage => None,
            Seam::Memory => Some("shared"),
            Seam::Scheduling => Some("fifo"),
            Seam::Shuffle => Some("local-disk"),
            Seam::Auth => Some("users-file"),
        }
    }
}

impl fmt::Display for Seam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// What a factory is given besides its options.
#[derive(Debug, Clone)]
pub struct PluginContext<'a> {
    /// All settings of the process being built (e.g. the executor's memory
    /// limit for a memory plugin).
    pub settings: &'a BallistaSettings,
    /// Where the plugin's table is in the configuration, e.g. `memory` or
    /// `storage[1]`.
    pub key_path: String,
}

impl PluginContext<'_> {
    /// A configuration error about the plugin's option `key`, in the same
    /// form as the framework's own: `memory.job_quota = "x": expected …`.
    /// Pass the offending value already formatted, or `None` for secrets.
    pub fn invalid_option(
        &self,
        key: &str,
        value: Option<&dyn fmt::Debug>,
        expected: impl fmt::Display,
    ) -> BallistaError {
        let shown = match value {
            Some(v) if !is_secret_key(key) => format!(" = {v:?}"),
            Some(_) => format!(" = {REDACTED}"),
            None => String::new(),
        };
        BallistaError::Configuration(format!("{}.{key}{shown}: {expected}", self.key_path))
    }
}

/// Options of a plugin that takes none: any key in its table is refused.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

/// A shuffle plugin's two halves.
#[derive(Debug, Clone)]
pub struct ShuffleComponents {
    /// Writes map outputs (on executors).
    pub writer: Arc<dyn ShuffleWriter>,
    /// Reads map outputs (on executors and clients).
    pub reader: Arc<dyn ShuffleReader>,
}

/// A registered plugin, as listed in the configuration reference.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// The seam it plugs into.
    pub seam: Seam,
    /// The name TOML selects it by.
    pub kind: String,
    /// One line on what it does.
    pub description: String,
    /// JSON schema of its options table.
    pub options_schema: Schema,
}

type CreateFn<T> = dyn Fn(&Map<String, Value>, &PluginContext<'_>) -> Result<Arc<T>> + Send + Sync;

struct Factory<T: ?Sized> {
    info: PluginInfo,
    create: Arc<CreateFn<T>>,
}

impl<T: ?Sized> Clone for Factory<T> {
    fn clone(&self) -> Self {
        Self {
            info: self.info.clone(),
            create: Arc::clone(&self.create),
        }
    }
}

struct Kinds<T: ?Sized> {
    seam: Seam,
    factories: BTreeMap<String, Factory<T>>,
}

impl<T: ?Sized> Clone for Kinds<T> {
    fn clone(&self) -> Self {
        Self {
            seam: self.seam,
            factories: self.factories.clone(),
        }
    }
}

impl<T: ?Sized + 'static> Kinds<T> {
    fn new(seam: Seam) -> Self {
        Self {
            seam,
            factories: BTreeMap::new(),
        }
    }

    fn register<O, F>(&mut self, kind: &str, description: &str, create: F)
    where
        O: DeserializeOwned + JsonSchema + 'static,
        F: Fn(O, &PluginContext<'_>) -> Result<Arc<T>> + Send + Sync + 'static,
    {
        let info = PluginInfo {
            seam: self.seam,
            kind: kind.to_string(),
            description: description.to_string(),
            options_schema: SchemaGenerator::default().into_root_schema_for::<O>(),
        };
        let create: Arc<CreateFn<T>> = Arc::new(move |options, context| {
            let options: O = parse_options(options, context)?;
            create(options, context)
        });
        self.factories
            .insert(kind.to_string(), Factory { info, create });
    }

    fn create(
        &self,
        spec: &PluginSpec,
        key_path: String,
        settings: &BallistaSettings,
    ) -> Result<Arc<T>> {
        let kind = spec
            .kind
            .as_deref()
            .or(self.seam.default_kind())
            .ok_or_else(|| {
                BallistaError::Configuration(format!(
                    "{key_path}.kind is missing: expected the name of a registered {} plugin (registered: {})",
                    self.seam,
                    self.names()
                ))
            })?;
        let factory = self.factories.get(kind).ok_or_else(|| {
            BallistaError::Configuration(format!(
                "{key_path}.kind = {kind:?}: no {} plugin of that name is registered in this binary; registered: {}",
                self.seam,
                self.names()
            ))
        })?;
        let context = PluginContext { settings, key_path };
        (factory.create)(&spec.options, &context)
    }

    fn names(&self) -> String {
        if self.factories.is_empty() {
            return "(none)".into();
        }
        self.factories
            .keys()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Deserializes a plugin's options table into its typed options, with errors
/// that name the full key path and never echo a secret-looking value.
fn parse_options<O: DeserializeOwned>(
    options: &Map<String, Value>,
    context: &PluginContext<'_>,
) -> Result<O> {
    serde_path_to_error::deserialize(Value::Object(options.clone())).map_err(|e| {
        let path = crate::config::full_key_path(&e);
        let message = format!("{}.{path}: {}", context.key_path, e.inner());
        let secrets: Vec<String> = options
            .iter()
            .filter(|(key, _)| is_secret_key(key))
            .map(|(_, value)| match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        let message = scrub_values(message, secrets.iter().map(String::as_str));
        BallistaError::Configuration(message)
    })
}

/// Maps plugin names to factories, one namespace per [`Seam`].
///
/// [`with_builtins`](Self::with_builtins) holds the framework's own
/// implementations; the stock binaries add every first-party plugin crate,
/// and a custom binary adds whatever else it links.
#[derive(Clone)]
pub struct PluginRegistry {
    storage: Kinds<dyn ObjectStoreProvider>,
    memory: Kinds<dyn MemoryManager>,
    scheduling: Kinds<dyn TaskSchedulingPolicy>,
    shuffle: Kinds<ShuffleComponents>,
    auth: Kinds<dyn Authenticator>,
}

impl fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginRegistry")
            .field("storage", &self.storage.names())
            .field("memory", &self.memory.names())
            .field("scheduling", &self.scheduling.names())
            .field("shuffle", &self.shuffle.names())
            .field("auth", &self.auth.names())
            .finish()
    }
}

impl Default for PluginRegistry {
    fn default() -> Self {
        Self::with_builtins()
    }
}

/// Options of the built-in `local-disk` shuffle.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LocalDiskShuffleOptions {
    /// Compression of the Arrow IPC shuffle files.
    pub compression: ShuffleCompression,
    /// Share of the executor's memory budget (0 to 1) that map outputs may
    /// hold in memory, where consumers on the same executor read them
    /// without decoding and others fetch them over Flight without a disk
    /// round trip. A map output whose memory is refused (this share, or the
    /// job's or tenant's quota, is reached) is written to disk instead.
    /// Held output is freed once every stage reading it has finished, or
    /// when the job ends. 0 writes every map output to disk.
    pub memory_fraction: f64,
    /// The largest map output (all its partitions together) kept in memory,
    /// e.g. `"32MiB"` (the default); a larger one is written to disk. Small outputs gain
    /// most from memory (their stages are short), while a large one stays
    /// resident next to the memory of the stages reading it. 0 writes every
    /// map output to disk.
    pub memory_max_output: ByteSize,
}

impl Default for LocalDiskShuffleOptions {
    fn default() -> Self {
        Self {
            compression: ShuffleCompression::default(),
            memory_fraction: crate::plugin::shuffle::local::DEFAULT_MEMORY_FRACTION,
            memory_max_output: ByteSize(crate::plugin::shuffle::local::DEFAULT_MEMORY_MAX_OUTPUT),
        }
    }
}

/// Compression of shuffle files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ShuffleCompression {
    /// LZ4 frames: fast, moderate ratio.
    #[default]
    Lz4,
    /// Zstandard: smaller files, more CPU.
    Zstd,
    /// Uncompressed.
    None,
}

impl ShuffleCompression {
    /// The Arrow IPC body compression it stands for.
    pub fn ipc_compression(self) -> Option<CompressionType> {
        match self {
            ShuffleCompression::Lz4 => Some(CompressionType::LZ4_FRAME),
            ShuffleCompression::Zstd => Some(CompressionType::ZSTD),
            ShuffleCompression::None => None,
        }
    }
}

/// Options of the built-in `object-store` shuffle.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectStoreShuffleOptions {
    /// Folder URL the map outputs are written under, e.g.
    /// `s3://bucket/shuffle/`. Its scheme must be served by a configured
    /// storage plugin (`[[storage]]`; `file://` always is, so a shared
    /// mount works too). Every executor must be able to read and write it.
    /// A job's objects are deleted when the job ends.
    pub url: String,
    /// Compression of the Arrow IPC objects.
    #[serde(default)]
    pub compression: ShuffleCompression,
}

impl PluginRegistry {
    /// A registry with no plugins at all.
    pub fn empty() -> Self {
        Self {
            storage: Kinds::new(Seam::Storage),
            memory: Kinds::new(Seam::Memory),
            scheduling: Kinds::new(Seam::Scheduling),
            shuffle: Kinds::new(Seam::Shuffle),
            auth: Kinds::new(Seam::Auth),
        }
    }

    /// The framework's own plugins: memory `shared`, scheduling `fifo`,
    /// shuffles `local-disk` and `object-store` (local files need no storage
    /// entry: they are always served).
    pub fn with_builtins() -> Self {
        let mut registry = Self::empty();
        registry.register_memory(
            "shared",
            "One bounded, fair-spilling pool per executor, shared by all its tasks and sized by executor.memory_limit.",
            |_: NoOptions, context| {
                let budget = context.settings.executor.memory_budget_bytes();
                Ok(Arc::new(ExecutorMemoryManager::new(budget as usize)))
            },
        );
        registry.register_scheduling(
            "fifo",
            "Jobs start in submission order (a job still being planned holds later ones back for up to 5 s); a later job gets slots its predecessors leave free.",
            |_: NoOptions, _| Ok(Arc::new(FifoPolicy)),
        );
        registry.register_shuffle(
            "local-disk",
            "Map outputs stay in the executor's memory while it grants them (see memory_fraction and memory_max_output), otherwise they are Arrow IPC files on its work_dir; either is served to other executors over Arrow Flight.",
            |options: LocalDiskShuffleOptions, ctx| {
                if !(0.0..=1.0).contains(&options.memory_fraction) {
                    return Err(ctx.invalid_option(
                        "memory_fraction",
                        Some(&options.memory_fraction),
                        "a share of the executor's memory budget between 0 and 1",
                    ));
                }
                let shuffle = Arc::new(
                    LocalDiskShuffle::with_compression(options.compression.ipc_compression())
                        .with_memory_fraction(options.memory_fraction)
                        .with_memory_max_output(options.memory_max_output.bytes()),
                );
                Ok(Arc::new(ShuffleComponents {
                    writer: shuffle.clone(),
                    reader: shuffle,
                }))
            },
        );
        registry.register_shuffle(
            "object-store",
            "Map outputs are Arrow IPC objects under a URL (e.g. s3://bucket/shuffle/), read by any executor straight from the store; finished map outputs survive executor loss.",
            |options: ObjectStoreShuffleOptions, ctx| {
                let url = Url::parse(&options.url).map_err(|e| {
                    ctx.invalid_option(
                        "url",
                        Some(&options.url),
                        format!("expected a folder URL such as s3://bucket/shuffle/ ({e})"),
                    )
                })?;
                let shuffle = ObjectStoreShuffle::new(&url, options.compression.ipc_compression())
                    .map_err(|e| ctx.invalid_option("url", Some(&options.url), e))?;
                let shuffle = Arc::new(shuffle);
                Ok(Arc::new(ShuffleComponents {
                    writer: shuffle.clone(),
                    reader: shuffle,
                }))
            },
        );
        registry.register_auth(
            "users-file",
            "Users, argon2 password hashes, tenants and pools from a TOML file (users_file); clients log in with the Arrow Flight handshake.",
            |options: UsersFileOptions, _| {
                Ok(match &options.users_file {
                    Some(path) => Arc::new(UsersFileAuthenticator::from_file(path)?),
                    None => Arc::new(UsersFileAuthenticator::default()),
                })
            },
        );
        registry
    }

    /// Registers an authentication plugin factory under `kind`.
    pub fn register_auth<O, F>(&mut self, kind: &str, description: &str, create: F) -> &mut Self
    where
        O: DeserializeOwned + JsonSchema + 'static,
        F: Fn(O, &PluginContext<'_>) -> Result<Arc<dyn Authenticator>> + Send + Sync + 'static,
    {
        self.auth.register(kind, description, create);
        self
    }

    /// The authentication plugin selected by `settings.auth`.
    pub fn authenticator(&self, settings: &BallistaSettings) -> Result<Arc<dyn Authenticator>> {
        self.auth.create(&settings.auth, "auth".into(), settings)
    }

    /// Registers a storage plugin factory under `kind`.
    pub fn register_storage<O, F>(&mut self, kind: &str, description: &str, create: F) -> &mut Self
    where
        O: DeserializeOwned + JsonSchema + 'static,
        F: Fn(O, &PluginContext<'_>) -> Result<Arc<dyn ObjectStoreProvider>>
            + Send
            + Sync
            + 'static,
    {
        self.storage.register(kind, description, create);
        self
    }

    /// Registers a memory plugin factory under `kind`. It is called once
    /// per executor, with that executor's settings.
    pub fn register_memory<O, F>(&mut self, kind: &str, description: &str, create: F) -> &mut Self
    where
        O: DeserializeOwned + JsonSchema + 'static,
        F: Fn(O, &PluginContext<'_>) -> Result<Arc<dyn MemoryManager>> + Send + Sync + 'static,
    {
        self.memory.register(kind, description, create);
        self
    }

    /// Registers a scheduling plugin factory under `kind`.
    pub fn register_scheduling<O, F>(
        &mut self,
        kind: &str,
        description: &str,
        create: F,
    ) -> &mut Self
    where
        O: DeserializeOwned + JsonSchema + 'static,
        F: Fn(O, &PluginContext<'_>) -> Result<Arc<dyn TaskSchedulingPolicy>>
            + Send
            + Sync
            + 'static,
    {
        self.scheduling.register(kind, description, create);
        self
    }

    /// Registers a shuffle plugin factory under `kind`.
    pub fn register_shuffle<O, F>(&mut self, kind: &str, description: &str, create: F) -> &mut Self
    where
        O: DeserializeOwned + JsonSchema + 'static,
        F: Fn(O, &PluginContext<'_>) -> Result<Arc<ShuffleComponents>> + Send + Sync + 'static,
    {
        self.shuffle.register(kind, description, create);
        self
    }

    /// The plugins registered for `seam`, by name.
    pub fn plugins(&self, seam: Seam) -> Vec<PluginInfo> {
        fn infos<T: ?Sized>(kinds: &Kinds<T>) -> Vec<PluginInfo> {
            kinds.factories.values().map(|f| f.info.clone()).collect()
        }
        match seam {
            Seam::Storage => infos(&self.storage),
            Seam::Memory => infos(&self.memory),
            Seam::Scheduling => infos(&self.scheduling),
            Seam::Shuffle => infos(&self.shuffle),
            Seam::Auth => infos(&self.auth),
        }
    }

    /// The storage plugins listed in `settings.storage`, in order.
    pub fn storage_providers(
        &self,
        settings: &BallistaSettings,
    ) -> Result<Vec<Arc<dyn ObjectStoreProvider>>> {
        settings
            .storage
            .iter()
            .enumerate()
            .map(|(i, spec)| self.storage.create(spec, format!("storage[{i}]"), settings))
            .collect()
    }

    /// The memory plugin selected by `settings.memory`.
    pub fn memory_manager(&self, settings: &BallistaSettings) -> Result<Arc<dyn MemoryManager>> {
        self.memory
            .create(&settings.memory, "memory".into(), settings)
    }

    /// The scheduling plugin selected by `settings.scheduling`.
    pub fn scheduling_policy(
        &self,
        settings: &BallistaSettings,
    ) -> Result<Arc<dyn TaskSchedulingPolicy>> {
        self.scheduling
            .create(&settings.scheduling, "scheduling".into(), settings)
    }

    /// The shuffle plugin selected by `settings.shuffle`.
    pub fn shuffle(&self, settings: &BallistaSettings) -> Result<Arc<ShuffleComponents>> {
        self.shuffle
            .create(&settings.shuffle, "shuffle".into(), settings)
    }

    /// `settings` with every plugin table's `kind` filled in with the seam's
    /// default where it was left out, as the process will run it.
    pub fn with_default_kinds(settings: &BallistaSettings) -> BallistaSettings {
        let mut resolved = settings.clone();
        for (seam, spec) in [
            (Seam::Memory, &mut resolved.memory),
            (Seam::Scheduling, &mut resolved.scheduling),
            (Seam::Shuffle, &mut resolved.shuffle),
            (Seam::Auth, &mut resolved.auth),
        ] {
            if spec.kind.is_none() {
                spec.kind = seam.default_kind().map(str::to_string);
            }
        }
        resolved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct TokenOptions {
        #[allow(dead_code)]
        api_token: Secret,
        #[allow(dead_code)]
        level: u8,
    }

    fn settings(toml_text: &str) -> BallistaSettings {
        toml::from_str(toml_text).unwrap()
    }

    fn error_of<T>(result: Result<T>) -> String {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(BallistaError::Configuration(message)) => message,
            Err(other) => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_options_of_the_builtins() {
        let registry = PluginRegistry::with_builtins();
        let s = BallistaSettings::default();
        assert_eq!(registry.scheduling_policy(&s).unwrap().name(), "fifo");
        registry.memory_manager(&s).unwrap();
        registry
            .shuffle(&settings("[shuffle]\ncompression = \"zstd\"\n"))
            .unwrap();
        let err = error_of(registry.shuffle(&settings("[shuffle]\ncompression = \"brotli\"\n")));
        assert!(
            err.starts_with("shuffle.compression: unknown variant `brotli`"),
            "{err}"
        );
        let err =
            error_of(registry.memory_manager(&settings("[memory]\nkind = \"shared\"\nsize = 3\n")));
        assert!(
            err.starts_with("memory.size: unknown field `size`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_kinds_list_what_is_registered() {
        let registry = PluginRegistry::with_builtins();
        let err =
            error_of(registry.scheduling_policy(&settings("[scheduling]\nkind = \"fair\"\n")));
        assert!(err.contains("scheduling.kind = \"fair\""), "{err}");
        assert!(err.contains("registered: \"fifo\""), "{err}");
        let err = error_of(registry.storage_providers(&settings("[[storage]]\nroot = \"/x\"\n")));
        assert!(err.starts_with("storage[0].kind is missing"), "{err}");
    }

    #[test]
    fn third_party_kinds_are_selected_and_secrets_stay_hidden() {
        let mut registry = PluginRegistry::with_builtins();
        registry.register_scheduling("tokened", "test", |o: TokenOptions, _| {
            assert_eq!(o.api_token.expose(), "s3cr3t-value");
            Ok(Arc::new(FifoPolicy))
        });
        registry
            .scheduling_policy(&settings(
                "[scheduling]\nkind = \"tokened\"\napi_token = \"s3cr3t-value\"\nlevel = 2\n",
            ))
            .unwrap();
        let err = error_of(registry.scheduling_policy(&settings(
            "[scheduling]\nkind = \"tokened\"\napi_token = \"s3cr3t-value\"\nlevel = \"high\"\n",
        )));
        assert!(
            err.starts_with("scheduling.level: invalid type: string \"high\""),
            "{err}"
        );
        assert!(!err.contains("s3cr3t-value"), "{err}");
        let shown = format!(
            "{:?}",
            settings("[scheduling]\nkind = \"tokened\"\napi_token = \"s3cr3t-value\"\n")
        );
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
    }
}
