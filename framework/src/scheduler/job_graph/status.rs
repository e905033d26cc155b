//! How a job's stages and tasks are reported: where each task ran, with
//! its figures, and each stage's operator metrics (for job status, the REST
//! API and `EXPLAIN ANALYZE`).

use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;

use super::{JobGraph, Stage, TaskState};
use crate::proto;

impl Stage {
    /// Its operators with their metrics summed over its finished tasks,
    /// each named by its one-line description.
    pub fn operator_metrics(&self) -> Vec<proto::OperatorMetrics> {
        let mut totals = self.operator_totals.clone();
        let plan: Arc<dyn ExecutionPlan> = Arc::clone(&self.plan) as Arc<dyn ExecutionPlan>;
        crate::plan::describe_operators(&plan, &mut totals);
        totals
    }
}

impl JobGraph {
    /// Where every task ran, stage by stage.
    pub fn stage_infos(&self) -> Vec<proto::StageInfo> {
        self.stages
            .values()
            .map(|stage| proto::StageInfo {
                stage_id: stage.id.0,
                inputs: stage.inputs.iter().map(|s| s.0).collect(),
                is_final: stage.id == self.final_stage,
                tasks: stage
                    .tasks
                    .iter()
                    .enumerate()
                    .map(|(partition, task)| {
                        let (state, attempt, executor, metrics) = match task {
                            TaskState::Waiting { attempt } => ("waiting", *attempt, None, None),
                            TaskState::Pending { attempt } => ("pending", *attempt, None, None),
                            TaskState::Running {
                                attempt, executor, ..
                            } => ("running", *attempt, Some(executor), None),
                            TaskState::Done {
                                attempt,
                                executor,
                                metrics,
                                ..
                            } => ("done", *attempt, Some(executor), Some(metrics.clone())),
                        };
                        proto::TaskInfo {
                            partition: partition as u32,
                            attempt,
                            executor_id: executor.map(ToString::to_string).unwrap_or_default(),
                            state: state.to_string(),
                            metrics,
                            failures: stage.attempt_failures[partition]
                                .iter()
                                .map(|f| proto::TaskAttemptFailure {
                                    attempt: f.attempt,
                                    executor_id: f.executor.to_string(),
                                    error: Some(f.error.clone()),
                                })
                                .collect(),
                            recomputed: stage.recomputed[partition],
                        }
                    })
                    .collect(),
                operators: stage.operator_metrics(),
            })
            .collect()
    }
}

impl JobGraph {
    /// Progress figures for status.
    pub fn progress(&self) -> proto::JobProgress {
        let mut p = proto::JobProgress {
            stages_total: self.stages.len() as u32,
            ..Default::default()
        };
        for stage in self.stages.values() {
            if stage.is_complete() {
                p.stages_completed += 1;
            }
            p.tasks_total += stage.tasks.len() as u32;
            p.map_tasks_recomputed += stage.recomputed.iter().sum::<u32>();
            for t in &stage.tasks {
                match t {
                    TaskState::Done { .. } => p.tasks_completed += 1,
                    // A failed or cancelled job's other attempts are being
                    // cancelled: none of them runs on for the job any more.
                    TaskState::Running { .. } if self.failure.is_none() => p.tasks_running += 1,
                    _ => {}
                }
            }
        }
        p
    }
}
