//! Freeing a job's data on this executor, whether the scheduler asks by a
//! control call or in the answer to a status report.

use crate::error::Result;
use crate::ids::{JobId, StageId};
use crate::proto;

use super::task_runner::TaskRunner;

/// Longest the deletion of a job's data waits for its tasks to stop.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl TaskRunner {
    /// Deletes a job's data: its tasks are stopped first, then its output
    /// in memory and in shuffle storage is deleted.
    pub(crate) async fn remove_job_data(&self, job_id: &JobId) -> Result<()> {
        self.forget_job(job_id);
        // A task of the job still running could write again after the
        // deletion (a new partition file recreates its folder): stop them
        // and let them end first.
        let unfinished = self.stop_job_tasks(job_id, STOP_WAIT).await;
        if unfinished > 0 {
            tracing::warn!(
                "{unfinished} task(s) of job {job_id} still run {}s after being stopped; deleting its data anyway",
                STOP_WAIT.as_secs()
            );
        }
        // After the tasks have stopped: none can commit output any more.
        self.memory_tier().release_job(job_id);
        self.shuffle_writer()
            .remove_job_data(job_id, &self.shuffle_storage())
            .await?;
        tracing::debug!("removed data of job {job_id}");
        Ok(())
    }

    /// Frees what this executor holds in memory of these stages' output
    /// (no consumer will read it again); returns the bytes freed.
    pub(crate) fn release_stage_outputs(&self, job_id: &JobId, stages: &[StageId]) -> usize {
        let freed = self.memory_tier().release_stages(job_id, stages);
        if freed > 0 {
            tracing::debug!(
                "released {freed} bytes of shuffle output of job {job_id}, stage(s) {stages:?}"
            );
        }
        freed
    }

    /// Performs cleanups that came in the answer to a status report; a
    /// deletion runs in the background (it may wait for tasks to stop).
    pub(crate) fn apply_cleanups(self: &std::sync::Arc<Self>, cleanups: Vec<proto::JobCleanup>) {
        for cleanup in cleanups {
            let job_id = match JobId::parse(&cleanup.job_id) {
                Ok(job_id) => job_id,
                Err(e) => {
                    tracing::warn!("ignoring a cleanup from the scheduler: {e}");
                    continue;
                }
            };
            if cleanup.remove_job {
                // At once, so that no task of the job starts meanwhile.
                self.forget_job(&job_id);
                let runner = std::sync::Arc::clone(self);
                tokio::spawn(async move {
                    if let Err(e) = runner.remove_job_data(&job_id).await {
                        tracing::warn!("deleting data of job {job_id}: {e}");
                    }
                });
            } else {
                let stages: Vec<StageId> =
                    cleanup.release_stages.into_iter().map(StageId).collect();
                self.release_stage_outputs(&job_id, &stages);
            }
        }
    }
}
