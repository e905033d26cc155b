//! Configuration: the typed settings of the stock binaries and the
//! [`BallistaConfig`] that assembles plugins into a scheduler or executor.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ballista::config::BallistaConfig;
//! use ballista::plugin::scheduling::FifoPolicy;
//!
//! let config = BallistaConfig::builder()
//!     .scheduling_policy(Arc::new(FifoPolicy))
//!     .build();
//! ```

mod byte_size;
mod client_settings;
mod load;
mod memory_amount;
mod plugin_spec;
pub mod reference;
mod secret;
mod server_limits;
mod session;
mod settings;
mod tls_settings;

use std::sync::Arc;

use object_store::ObjectStore;
use typed_builder::TypedBuilder;
use url::Url;

pub use byte_size::ByteSize;
pub use client_settings::check_client_settings;
pub(crate) use load::full_key_path;
pub use load::{ENV_PREFIX, env_var_for};
pub use memory_amount::MemoryAmount;
pub use plugin_spec::PluginSpec;
pub(crate) use secret::scrub_values;
pub use secret::{REDACTED, Secret, is_secret_key};
pub use server_limits::ServerLimits;
pub use session::{
    ADAPTIVE_BROADCAST_BYTES_KEY, BallistaSessionOptions, DEFAULT_ADAPTIVE_BROADCAST_BYTES,
    DEFAULT_TASK_INPUT_BYTES, EARLY_CONSUMERS_KEY, JOB_TIMEOUT_KEY, MEMORY_QUOTA_KEY, POOL_KEY,
    PRIORITY_KEY, SPILL_TO_DISK_KEY, TASK_INPUT_BYTES_KEY, TENANT_KEY, adaptive_broadcast_bytes_of,
    distributed_session_defaults, distributed_session_overrides, early_consumers_of,
    memory_quota_of, new_session_config, pool_of, priority_of, session_config_from_settings,
    settings_from_session_config, task_input_bytes_of, tenant_of, validate_ballista_settings,
};
pub use settings::{
    BallistaSettings, CatalogSettings, ClientSettings, ClusterSettings, DEFAULT_EXECUTOR_HTTP_PORT,
    DEFAULT_SCHEDULER_HTTP_PORT, ExecutorSettings, FlightSqlResults, FlightSqlSettings,
    HttpSettings, InvalidSetting, SchedulerLimits, SchedulerSettings, SessionDefaults,
    TableDefinition, TableFormat,
};
pub use tls_settings::{ServerTlsSettings, TlsSettings};

use crate::auth::SecretKey;
use crate::error::Result;
use crate::plugin::auth::Authenticator;
use crate::plugin::memory::MemoryManager;
use crate::plugin::registry::{PluginRegistry, Seam, ShuffleComponents};
use crate::plugin::scheduling::TaskSchedulingPolicy;
use crate::plugin::shuffle::{ShuffleReader, ShuffleWriter};
use crate::plugin::storage::{
    BallistaObjectStoreRegistry, LocalFileSystemProvider, ObjectStoreProvider,
};

/// Everything a scheduler or an executor is built from: settings, the plugin
/// registry that turns the settings' plugin tables into components, and
/// components set in code. Both processes are constructed only from this.
///
/// For each seam a component set in code wins over the one the settings
/// select by `kind`; storage providers set in code are added after (and so
/// override, scheme by scheme) those the settings list.
#[derive(Debug, Clone, TypedBuilder)]
#[builder(mutators(
    /// Adds a storage plugin; it serves the URL schemes it declares (a later
    /// provider for the same scheme wins).
    pub fn with_storage_provider(&mut self, provider: Arc<dyn ObjectStoreProvider>) {
        self.storage_providers.push(provider);
    }
    /// Registers a concrete store for a URL's scheme and authority, e.g.
    /// `s3://my-bucket`.
    pub fn with_object_store(&mut self, url: Url, store: Arc<dyn ObjectStore>) {
        self.object_stores.push((url, store));
    }
))]
pub struct BallistaConfig {
    /// Scheduler and executor settings, including the plugin tables.
    #[builder(default)]
    pub settings: BallistaSettings,
    /// Factories for the plugin kinds the settings may name (default: the
    /// framework's built-ins).
    #[builder(default = Arc::new(PluginRegistry::with_builtins()), setter(transform = |registry: PluginRegistry| Arc::new(registry)))]
    pub registry: Arc<PluginRegistry>,
    /// Storage plugins set in code, after local files and `[[storage]]`.
    #[builder(via_mutators)]
    pub storage_providers: Vec<Arc<dyn ObjectStoreProvider>>,
    /// Concrete stores registered up front.
    #[builder(via_mutators)]
    pub object_stores: Vec<(Url, Arc<dyn ObjectStore>)>,
    /// Admission and task placement set in code (default: `[scheduling]`).
    #[builder(default, setter(strip_option))]
    pub scheduling_policy: Option<Arc<dyn TaskSchedulingPolicy>>,
    /// Memory pools for tasks set in code, shared by every executor built
    /// from this config (default: `[memory]`, created per executor).
    #[builder(default, setter(strip_option))]
    pub memory_manager: Option<Arc<dyn MemoryManager>>,
    /// How map outputs are written, set in code (default: `[shuffle]`).
    #[builder(default, setter(strip_option))]
    pub shuffle_writer: Option<Arc<dyn ShuffleWriter>>,
    /// How map outputs are read, set in code (default: `[shuffle]`).
    #[builder(default, setter(strip_option))]
    pub shuffle_reader: Option<Arc<dyn ShuffleReader>>,
    /// Who clients are, set in code (default: `[auth]`).
    #[builder(default, setter(strip_option))]
    pub authenticator: Option<Arc<dyn Authenticator>>,
    /// The cluster key, set in code (default: `[cluster]`, see
    /// [`crate::auth::cluster_key`]). An embedded cluster makes a fresh one.
    #[builder(default, setter(strip_option))]
    pub cluster_key: Option<SecretKey>,
}

impl Default for BallistaConfig {
    fn default() -> Self {
        BallistaConfig::builder().build()
    }
}

impl BallistaConfig {
    /// A config with the built-in plugins and the given settings.
    pub fn from_settings(settings: BallistaSettings) -> Self {
        BallistaConfig::builder().settings(settings).build()
    }

    /// The object store registry both scheduler and executors resolve URLs
    /// with: local files, then the `[[storage]]` plugins, then providers set
    /// in code, then concrete stores.
    pub fn object_store_registry(&self) -> Result<Arc<BallistaObjectStoreRegistry>> {
        use datafusion::execution::object_store::ObjectStoreRegistry;
        let mut providers: Vec<Arc<dyn ObjectStoreProvider>> =
            vec![Arc::new(LocalFileSystemProvider)];
        providers.extend(self.registry.storage_providers(&self.settings)?);
        providers.extend(self.storage_providers.iter().cloned());
        let registry = BallistaObjectStoreRegistry::new(&providers);
        for (url, store) in &self.object_stores {
            registry.register_store(url, Arc::clone(store));
        }
        Ok(Arc::new(registry))
    }

    /// The scheduling policy: the one set in code, else `[scheduling]`.
    pub fn resolve_scheduling_policy(&self) -> Result<Arc<dyn TaskSchedulingPolicy>> {
        match &self.scheduling_policy {
            Some(policy) => {
                self.warn_if_overridden(Seam::Scheduling);
                Ok(Arc::clone(policy))
            }
            None => self.registry.scheduling_policy(&self.settings),
        }
    }

    /// The memory manager: the one set in code, else a new one from
    /// `[memory]` for this executor's settings.
    pub fn resolve_memory_manager(&self) -> Result<Arc<dyn MemoryManager>> {
        match &self.memory_manager {
            Some(manager) => {
                self.warn_if_overridden(Seam::Memory);
                Ok(Arc::clone(manager))
            }
            None => self.registry.memory_manager(&self.settings),
        }
    }

    /// The shuffle writer and reader: those set in code, else `[shuffle]`.
    pub fn resolve_shuffle(&self) -> Result<ShuffleComponents> {
        if let (Some(writer), Some(reader)) = (&self.shuffle_writer, &self.shuffle_reader) {
            self.warn_if_overridden(Seam::Shuffle);
            return Ok(ShuffleComponents {
                writer: Arc::clone(writer),
                reader: Arc::clone(reader),
            });
        }
        let configured = self.registry.shuffle(&self.settings)?;
        Ok(ShuffleComponents {
            writer: self
                .shuffle_writer
                .clone()
                .unwrap_or_else(|| Arc::clone(&configured.writer)),
            reader: self
                .shuffle_reader
                .clone()
                .unwrap_or_else(|| Arc::clone(&configured.reader)),
        })
    }

    /// The authenticator: the one set in code, else `[auth]`.
    pub fn resolve_authenticator(&self) -> Result<Arc<dyn Authenticator>> {
        match &self.authenticator {
            Some(authenticator) => {
                self.warn_if_overridden(Seam::Auth);
                Ok(Arc::clone(authenticator))
            }
            None => self.registry.authenticator(&self.settings),
        }
    }

    /// The cluster key: the one set in code, else `cluster.key`, else the
    /// file `cluster.key_file`, else the default key file, created when
    /// missing (see [`crate::auth::cluster_key`]).
    pub fn resolve_cluster_key(&self) -> Result<SecretKey> {
        if let Some(key) = &self.cluster_key {
            return Ok(key.clone());
        }
        let cluster = &self.settings.cluster;
        if let Some(key) = &cluster.key {
            return SecretKey::from_hex(key.expose()).map_err(|_| {
                crate::error::BallistaError::Configuration(
                    "cluster.key: expected 64 hex digits".into(),
                )
            });
        }
        match &cluster.key_file {
            Some(path) => crate::auth::read_key_file(path),
            None => crate::auth::read_or_create_key_file(&crate::auth::default_key_file()?),
        }
    }

    /// Builds every plugin the settings select, so that a bad plugin table
    /// fails at start-up rather than on first use.
    pub fn validate_plugins(&self) -> Result<()> {
        self.object_store_registry()?;
        self.resolve_scheduling_policy()?;
        self.resolve_memory_manager()?;
        self.resolve_shuffle()?;
        self.resolve_authenticator()?;
        // Certificates and the CA, so that `--print-config` and `ballista
        // config check` catch a missing or mismatched file as start-up would.
        crate::tls::ServerTls::from_settings(&self.settings.scheduler.tls, "scheduler.tls")?;
        crate::tls::ServerTls::from_settings(&self.settings.executor.tls, "executor.tls")?;
        crate::tls::TlsTrust::from_settings(&self.settings.tls)?;
        Ok(())
    }

    fn warn_if_overridden(&self, seam: Seam) {
        let spec = match seam {
            Seam::Memory => &self.settings.memory,
            Seam::Scheduling => &self.settings.scheduling,
            Seam::Shuffle => &self.settings.shuffle,
            Seam::Auth => &self.settings.auth,
            Seam::Storage => return,
        };
        if let Some(kind) = &spec.kind {
            tracing::warn!(
                "[{seam}] kind = {kind:?} in the configuration is not used: this binary sets its {seam} plugin in code"
            );
        }
    }
}
