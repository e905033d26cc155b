//! Output that is gone: a lost executor's map outputs run again where they
//! are still needed, and stages whose plans named them are resolved again.

use super::{JobGraph, Result, ShuffleLocation, StageId, TaskState};
use crate::ids::ExecutorId;

impl JobGraph {
    /// Committed outputs of `executor` are gone (the executor was lost): the
    /// map tasks that wrote them to its own storage run again where their
    /// output is still needed. Durable outputs (object storage) are kept.
    /// Returns how many tasks will run again.
    pub fn executor_outputs_lost(&mut self, executor: &ExecutorId) -> usize {
        if self.failure.is_some() {
            return 0;
        }
        let mut total = 0;
        // Re-running a stage makes it incomplete, which can make the output
        // of its own inputs needed again: repeat until nothing changes. A
        // stage whose output executors were told to free is needed again
        // that way too, and runs again everywhere at once (rather than
        // failing one fetch per executor that held it).
        loop {
            let needed: Vec<StageId> = self
                .stages
                .values()
                .filter(|s| self.output_needed(s))
                .map(|s| s.id)
                .collect();
            let released = std::mem::take(&mut self.unread_reported);
            let lost = self.rerun_lost(&needed, |_, location| {
                !location.durable
                    && (&location.executor.id == executor || released.contains(&location.stage_id))
            });
            self.unread_reported = released
                .into_iter()
                .filter(|s| !needed.contains(s))
                .collect();
            if lost == 0 {
                break;
            }
            total += lost;
        }
        if total > 0 {
            tracing::warn!(
                "job {}: {total} map task(s) run again: their output on executor {executor} is lost",
                self.job_id
            );
            self.refresh_plans_or_fail();
        }
        total
    }

    /// Sets done tasks of `stages` whose output matches `lost` (given the
    /// task's partition and one of its locations) back to pending.
    pub(super) fn rerun_lost(
        &mut self,
        stages: &[StageId],
        lost: impl Fn(usize, &ShuffleLocation) -> bool,
    ) -> usize {
        let mut count = 0;
        for id in stages {
            let Some(stage) = self.stages.get_mut(id) else {
                continue;
            };
            for (partition, task) in stage.tasks.iter_mut().enumerate() {
                let TaskState::Done {
                    attempt, locations, ..
                } = task
                else {
                    continue;
                };
                if locations.iter().any(|l| lost(partition, l)) {
                    *task = TaskState::Waiting {
                        attempt: *attempt + 1,
                    };
                    stage.recomputed[partition] += 1;
                    count += 1;
                }
            }
        }
        count
    }

    /// After outputs were lost, no task may start from a plan naming
    /// locations that are gone. A stage with an incomplete input waits (its
    /// pending tasks go back to waiting); a stage with tasks to run whose
    /// inputs are complete has its plan resolved again from where the
    /// outputs live now. Stages whose tasks are all done are left alone, and
    /// running tasks keep the plan they started with (if it names a lost
    /// location they fail to fetch and run again).
    fn refresh_plans(&mut self) -> Result<()> {
        let complete: Vec<StageId> = self
            .stages
            .values()
            .filter(|s| s.is_complete())
            .map(|s| s.id)
            .collect();
        let ids: Vec<StageId> = self.stages.keys().copied().collect();
        for id in ids {
            let stage = self.stage_mut(id)?;
            if stage
                .tasks
                .iter()
                .all(|t| matches!(t, TaskState::Done { .. }))
            {
                continue;
            }
            if stage.inputs.iter().all(|i| complete.contains(i)) {
                self.make_runnable(id)?;
            } else {
                stage.ready_plan = None;
                stage.early = false;
                for task in &mut stage.tasks {
                    if let TaskState::Pending { attempt } = *task {
                        *task = TaskState::Waiting { attempt };
                    }
                }
            }
        }
        Ok(())
    }

    /// [`refresh_plans`](Self::refresh_plans); a plan that cannot be
    /// prepared fails the job.
    pub(super) fn refresh_plans_or_fail(&mut self) {
        if let Err(e) = self.refresh_plans() {
            self.fail(e);
        }
    }
}
