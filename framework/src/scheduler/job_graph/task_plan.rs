//! The plan sent with a launched task: shared by the stage, or trimmed to
//! the task's own reads.

use std::sync::Arc;

use crate::error::Result;
use crate::plan::{PerTaskPlans, encode_stage_plan};

/// The plan a launched task is sent.
#[derive(Debug, Clone)]
pub enum TaskPlan {
    /// The stage's plan, encoded once for all of its tasks.
    Shared(bytes::Bytes),
    /// A plan of the task's own, listing only the shuffle locations and
    /// files it reads ([`PerTaskPlans`]); encoded by
    /// [`encode`](Self::encode) when the launch is sent, outside the
    /// scheduler's lock, since trimming and encoding thousands of them
    /// would hold up every other event.
    OwnReads {
        /// The stage's plan, prepared once for all of its tasks.
        plans: Arc<PerTaskPlans>,
        /// The task's partition.
        partition: usize,
    },
}

impl TaskPlan {
    /// The plan as the executor receives it.
    pub fn encode(self) -> Result<bytes::Bytes> {
        match self {
            TaskPlan::Shared(bytes) => Ok(bytes),
            TaskPlan::OwnReads { plans, partition } => {
                Ok(encode_stage_plan(&plans.plan_for(partition)?)?.into())
            }
        }
    }
}
