//! The plan sent with a launched task: shared by the stage, or the stage's
//! hollow plan with the task's own reads beside it.

use std::sync::Arc;

use crate::error::Result;
use crate::plan::PerTaskPlans;
use crate::proto;

/// The plan a launched task is sent.
#[derive(Debug, Clone)]
pub enum TaskPlan {
    /// The stage's plan, encoded once for all of its tasks.
    Shared(bytes::Bytes),
    /// The stage's hollow plan (encoded once) and only the shuffle
    /// locations and files the task reads ([`PerTaskPlans`]); its reads are
    /// encoded when the launch is sent, outside the scheduler's lock.
    OwnReads {
        /// The stage's plan, prepared once for all of its tasks.
        plans: Arc<PerTaskPlans>,
        /// The task's partition.
        partition: usize,
    },
}

impl TaskPlan {
    /// Puts the plan into `definition` as the executor receives it.
    pub fn write_into(self, definition: &mut proto::TaskDefinition) -> Result<()> {
        match self {
            TaskPlan::Shared(bytes) => definition.plan = bytes,
            TaskPlan::OwnReads { plans, partition } => {
                definition.own_reads = Some(plans.task_reads(partition)?);
            }
        }
        Ok(())
    }
}
