//! The plan sent with a launched task: shared by the stage, or trimmed to
//! the task's own reads.

use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;

use crate::error::Result;
use crate::plan::encode_stage_plan;

/// The plan a launched task is sent.
#[derive(Debug, Clone)]
pub enum TaskPlan {
    /// The stage's plan, encoded once for all of its tasks.
    Shared(bytes::Bytes),
    /// A plan of the task's own, listing only the shuffle locations it
    /// reads ([`crate::plan::plan_for_task`]); encoded by
    /// [`encode`](Self::encode) when the launch is sent, outside the
    /// scheduler's lock, since trimming and encoding thousands of them
    /// would hold up every other event.
    OwnReads {
        /// The stage's resolved plan, with every task's locations.
        stage_plan: Arc<dyn ExecutionPlan>,
        /// Tasks of the stage.
        tasks: usize,
        /// The task's partition.
        partition: usize,
    },
}

impl TaskPlan {
    /// The plan as the executor receives it.
    pub fn encode(self) -> Result<bytes::Bytes> {
        match self {
            TaskPlan::Shared(bytes) => Ok(bytes),
            TaskPlan::OwnReads {
                stage_plan,
                tasks,
                partition,
            } => {
                let trimmed = crate::plan::plan_for_task(&stage_plan, tasks, partition)?;
                Ok(encode_stage_plan(&trimmed)?.into())
            }
        }
    }
}
