//! A stage's own bookkeeping: the state of a task to run, its task count
//! once decided from its input's size, its ready plan, its completion.

use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;

use super::{ReadyPlan, Stage, TaskState};
use crate::error::Result;
use crate::ids::JobId;
use crate::plan::{PartitionGroups, encode_stage_plan};

impl Stage {
    /// The state of a task that is to run (again) as `attempt`: pending
    /// when the stage can run, waiting while its input is incomplete.
    pub(super) fn to_run(&self, attempt: u32) -> TaskState {
        if self.ready_plan.is_some() {
            TaskState::Pending { attempt }
        } else {
            TaskState::Waiting { attempt }
        }
    }

    /// Sets its task count to `tasks`, before any task ran.
    pub(super) fn set_task_count(&mut self, tasks: usize) {
        self.tasks = vec![TaskState::Waiting { attempt: 0 }; tasks];
        self.failures = vec![0; tasks];
        self.fetch_failures = vec![0; tasks];
        self.attempt_failures = vec![Vec::new(); tasks];
        self.recomputed = vec![0; tasks];
    }

    /// `resolved` (its plan with the reads resolved) as its tasks run it:
    /// regrouped when its input is small. The count is decided the first
    /// time only, when no task has run yet; later resolutions (after lost
    /// output) keep it.
    pub(super) fn regroup(
        &mut self,
        job_id: &JobId,
        resolved: Arc<dyn ExecutionPlan>,
        task_input_bytes: u64,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if std::mem::take(&mut self.undecided_count)
            && let Some(groups) =
                PartitionGroups::by_size(&resolved, self.tasks.len(), task_input_bytes)
        {
            // A plan that cannot be regrouped runs as planned.
            match groups.apply(Arc::clone(&resolved)) {
                Ok(regrouped) => {
                    tracing::debug!(
                        "job {job_id}: stage {} runs as {} task(s) instead of {}: its input is small",
                        self.id,
                        groups.task_count(),
                        groups.planned()
                    );
                    self.set_task_count(groups.task_count());
                    self.groups = Some(groups);
                    return Ok(regrouped);
                }
                Err(e) => tracing::warn!(
                    "job {job_id}: stage {} runs its {} planned tasks: {e}",
                    self.id,
                    self.tasks.len()
                ),
            }
        }
        match &self.groups {
            Some(groups) => groups.apply(resolved),
            None => Ok(resolved),
        }
    }

    /// Prepares `resolved` (its plan with reads resolved and regrouped)
    /// for sending and marks its waiting tasks pending.
    pub(super) fn set_ready_plan(
        &mut self,
        job_id: &JobId,
        resolved: &Arc<dyn ExecutionPlan>,
    ) -> Result<()> {
        // A plan that cannot be prepared per task is sent whole: the tasks
        // read the same, only the launches are larger.
        let per_task = match crate::plan::PerTaskPlans::prepare(resolved, self.tasks.len()) {
            Ok(plans) => plans,
            Err(e) => {
                tracing::warn!(
                    "job {job_id}: stage {} is sent whole to each task: {e}",
                    self.id
                );
                None
            }
        };
        self.ready_plan = Some(match per_task {
            Some(plans) => ReadyPlan::PerTask(Arc::new(plans)),
            None => ReadyPlan::Whole(encode_stage_plan(resolved)?.into()),
        });
        for task in &mut self.tasks {
            if let TaskState::Waiting { attempt } = *task {
                *task = TaskState::Pending { attempt };
            }
        }
        Ok(())
    }

    /// Every task has committed, from a plan over its inputs' complete
    /// output. A stage that started early is not complete before its
    /// inputs are, even when its tasks all finished without reading
    /// everything (a limit, an empty join side): its consumers, the job's
    /// success and the release of its inputs' output wait for them.
    pub(super) fn is_complete(&self) -> bool {
        self.ready_plan.is_some()
            && !self.early
            && self
                .tasks
                .iter()
                .all(|t| matches!(t, TaskState::Done { .. }))
    }
}
