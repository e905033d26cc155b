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
mod load;
mod session;
mod settings;

use std::sync::Arc;

use object_store::ObjectStore;
use typed_builder::TypedBuilder;
use url::Url;

pub use byte_size::ByteSize;
pub use load::ENV_PREFIX;
pub use session::{
    BallistaSessionOptions, distributed_session_defaults, distributed_session_overrides,
    new_session_config, session_config_from_settings, settings_from_session_config,
};
pub use settings::{
    BallistaSettings, ExecutorSettings, SchedulerSettings, TableDefinition, TableFormat,
};

use crate::plugin::memory::MemoryManager;
use crate::plugin::scheduling::{FifoPolicy, TaskSchedulingPolicy};
use crate::plugin::shuffle::local::LocalDiskShuffle;
use crate::plugin::shuffle::{ShuffleReader, ShuffleWriter};
use crate::plugin::storage::{
    BallistaObjectStoreRegistry, LocalFileSystemProvider, ObjectStoreProvider,
};

/// Everything a scheduler or an executor is built from: settings plus the
/// plugin behind each seam. Both processes are constructed only from this.
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
    /// Scheduler and executor settings.
    #[builder(default)]
    pub settings: BallistaSettings,
    /// Storage plugins (default: local files).
    #[builder(via_mutators(init = vec![Arc::new(LocalFileSystemProvider) as Arc<dyn ObjectStoreProvider>]))]
    pub storage_providers: Vec<Arc<dyn ObjectStoreProvider>>,
    /// Concrete stores registered up front.
    #[builder(via_mutators)]
    pub object_stores: Vec<(Url, Arc<dyn ObjectStore>)>,
    /// Admission and task placement (default: FIFO).
    #[builder(default = Arc::new(FifoPolicy))]
    pub scheduling_policy: Arc<dyn TaskSchedulingPolicy>,
    /// Memory pools for tasks (default: one bounded pool per executor sized by
    /// `executor.memory_limit`).
    #[builder(default, setter(strip_option))]
    pub memory_manager: Option<Arc<dyn MemoryManager>>,
    /// How map outputs are written (default: local-disk Arrow IPC).
    #[builder(default = Arc::new(LocalDiskShuffle::default()))]
    pub shuffle_writer: Arc<dyn ShuffleWriter>,
    /// How map outputs are read (default: local files or Arrow Flight).
    #[builder(default = Arc::new(LocalDiskShuffle::default()))]
    pub shuffle_reader: Arc<dyn ShuffleReader>,
}

impl Default for BallistaConfig {
    fn default() -> Self {
        BallistaConfig::builder().build()
    }
}

impl BallistaConfig {
    /// A config with default plugins and the given settings.
    pub fn from_settings(settings: BallistaSettings) -> Self {
        BallistaConfig::builder().settings(settings).build()
    }

    /// The object store registry both scheduler and executors resolve URLs with.
    pub fn object_store_registry(&self) -> Arc<BallistaObjectStoreRegistry> {
        use datafusion::execution::object_store::ObjectStoreRegistry;
        let registry = BallistaObjectStoreRegistry::new(&self.storage_providers);
        for (url, store) in &self.object_stores {
            registry.register_store(url, Arc::clone(store));
        }
        Arc::new(registry)
    }
}
