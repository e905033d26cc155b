//! What a running task's plan needs from the executor it runs on.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreRegistry;

use crate::error::{BallistaError, Result};
use crate::flight::FlightClientPool;
use crate::ids::TaskId;
use crate::plugin::shuffle::{ExecutorAddress, ShuffleReader, ShuffleWriter};

/// Carried in the task's `SessionConfig` extensions; shuffle nodes read it at
/// execution time, so a plan decoded on an executor writes and reads through
/// that executor's shuffle plugins.
#[derive(Debug)]
pub struct TaskEnv {
    /// The task being run.
    pub task: TaskId,
    /// The executor running it.
    pub executor: ExecutorAddress,
    /// The executor's work directory (canonical).
    pub work_dir: PathBuf,
    /// Shuffle writer plugin.
    pub shuffle_writer: Arc<dyn ShuffleWriter>,
    /// Shuffle reader plugin.
    pub shuffle_reader: Arc<dyn ShuffleReader>,
    /// Shared Flight connections.
    pub flight: FlightClientPool,
    /// The executor's object stores, for shuffle plugins. (The task's own
    /// runtime stages what the plan writes; shuffle output must not be.)
    pub object_stores: Arc<dyn ObjectStoreRegistry>,
    /// The executor's in-memory shuffle tier.
    pub memory_tier: Option<Arc<crate::plugin::shuffle::memory_tier::ShuffleMemoryTier>>,
    /// Where a task started before its input stages completed asks for
    /// their later outputs (`None`: such a read fails).
    pub map_outputs: Option<Arc<dyn super::MapOutputSource>>,
}

impl TaskEnv {
    /// The environment of the task `context` belongs to.
    pub fn from_context(context: &TaskContext) -> Result<Arc<TaskEnv>> {
        context
            .session_config()
            .get_extension::<TaskEnv>()
            .ok_or_else(|| {
                BallistaError::Internal(
                    "shuffle operators can only run inside a Ballista executor task".into(),
                )
            })
    }
}
