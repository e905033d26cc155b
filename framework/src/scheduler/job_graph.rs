//! One job's stages and tasks: which tasks can run, what happened to each
//! attempt, and when a stage's consumers become runnable.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;

use crate::error::{BallistaError, Result};
use crate::ids::{ExecutorId, JobId, StageId};
use crate::plan::{DistributedPlan, ShuffleWriterExec, encode_stage_plan, resolve_shuffle_reads};
use crate::plugin::scheduling::PendingTask;
use crate::plugin::shuffle::ShuffleLocation;
use crate::proto;

/// State of one task (one partition of a stage).
#[derive(Debug, Clone)]
pub enum TaskState {
    /// Its stage is not runnable yet.
    Waiting,
    /// Ready to be launched as attempt `attempt`.
    Pending {
        /// The attempt that will run next.
        attempt: u32,
    },
    /// Launched.
    Running {
        /// The running attempt.
        attempt: u32,
        /// Where it runs.
        executor: ExecutorId,
    },
    /// Committed its output.
    Done {
        /// The attempt that succeeded.
        attempt: u32,
        /// Where its output lives.
        executor: ExecutorId,
        /// Its committed output partitions.
        locations: Vec<ShuffleLocation>,
        /// What it reported about itself.
        metrics: proto::TaskMetrics,
    },
}

/// One stage of a job.
#[derive(Debug)]
pub struct Stage {
    /// Stage id.
    pub id: StageId,
    /// The plan with unresolved shuffle reads.
    pub plan: Arc<ShuffleWriterExec>,
    /// Stages this one reads.
    pub inputs: Vec<StageId>,
    /// Stages reading this one.
    pub consumers: Vec<StageId>,
    /// The plan ready to ship, once every input has completed.
    pub encoded_plan: Option<Arc<Vec<u8>>>,
    /// Per-partition task state.
    pub tasks: Vec<TaskState>,
    /// Failed attempts per partition.
    pub failures: Vec<u32>,
}

impl Stage {
    fn is_complete(&self) -> bool {
        self.encoded_plan.is_some()
            && self
                .tasks
                .iter()
                .all(|t| matches!(t, TaskState::Done { .. }))
    }
}

/// What a task status update meant for the job.
#[derive(Debug, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Nothing changed for the job as a whole.
    Progress,
    /// The final stage completed: the job succeeded.
    JobSucceeded,
    /// The job cannot succeed any more.
    JobFailed,
    /// The update was for an attempt that is no longer current; ignored.
    Stale,
}

/// The stage/task graph of one job.
#[derive(Debug)]
pub struct JobGraph {
    job_id: JobId,
    stages: BTreeMap<StageId, Stage>,
    final_stage: StageId,
    max_attempts: u32,
    failure: Option<BallistaError>,
}

impl JobGraph {
    /// A graph for `plan`; stages without inputs become runnable at once.
    pub fn try_new(job_id: JobId, plan: DistributedPlan, max_attempts: u32) -> Result<Self> {
        let mut consumers: HashMap<StageId, Vec<StageId>> = HashMap::new();
        for stage in &plan.stages {
            for input in &stage.inputs {
                consumers.entry(*input).or_default().push(stage.stage_id);
            }
        }
        let stages = plan
            .stages
            .into_iter()
            .map(|s| {
                let partitions = s.plan.input_partition_count();
                let stage = Stage {
                    id: s.stage_id,
                    consumers: consumers.remove(&s.stage_id).unwrap_or_default(),
                    inputs: s.inputs,
                    plan: s.plan,
                    encoded_plan: None,
                    tasks: vec![TaskState::Waiting; partitions],
                    failures: vec![0; partitions],
                };
                (stage.id, stage)
            })
            .collect();
        let mut graph = Self {
            job_id,
            stages,
            final_stage: plan.final_stage,
            max_attempts: max_attempts.max(1),
            failure: None,
        };
        let roots: Vec<StageId> = graph
            .stages
            .values()
            .filter(|s| s.inputs.is_empty())
            .map(|s| s.id)
            .collect();
        for id in roots {
            graph.make_runnable(id)?;
        }
        Ok(graph)
    }

    /// The job.
    pub fn job_id(&self) -> &JobId {
        &self.job_id
    }

    /// Whether every stage has completed.
    pub fn is_complete(&self) -> bool {
        self.stages
            .get(&self.final_stage)
            .is_some_and(Stage::is_complete)
    }

    /// Why the job failed, once it has.
    pub fn failure(&self) -> Option<&BallistaError> {
        self.failure.as_ref()
    }

    /// Resolves a stage's reads, encodes its plan and marks its tasks pending.
    /// A stage without tasks completes at once, which may cascade.
    fn make_runnable(&mut self, stage_id: StageId) -> Result<()> {
        let mut queue = vec![stage_id];
        while let Some(id) = queue.pop() {
            let outputs = self.completed_outputs();
            let stage = self.stage_mut(id)?;
            let plan: Arc<dyn ExecutionPlan> = stage.plan.clone();
            let resolved = resolve_shuffle_reads(plan, &outputs)?;
            stage.encoded_plan = Some(Arc::new(encode_stage_plan(&resolved)?));
            for task in &mut stage.tasks {
                *task = TaskState::Pending { attempt: 0 };
            }
            if stage.tasks.is_empty() {
                queue.extend(self.newly_runnable_consumers(id));
            }
        }
        Ok(())
    }

    fn newly_runnable_consumers(&self, completed: StageId) -> Vec<StageId> {
        let Some(stage) = self.stages.get(&completed) else {
            return Vec::new();
        };
        stage
            .consumers
            .iter()
            .filter(|c| {
                self.stages.get(c).is_some_and(|consumer| {
                    consumer.encoded_plan.is_none()
                        && consumer
                            .inputs
                            .iter()
                            .all(|i| self.stages.get(i).is_some_and(Stage::is_complete))
                })
            })
            .copied()
            .collect()
    }

    fn completed_outputs(&self) -> HashMap<StageId, Vec<ShuffleLocation>> {
        self.stages
            .values()
            .filter(|s| s.is_complete())
            .map(|s| {
                let locations = s
                    .tasks
                    .iter()
                    .flat_map(|t| match t {
                        TaskState::Done { locations, .. } => locations.clone(),
                        _ => Vec::new(),
                    })
                    .collect();
                (s.id, locations)
            })
            .collect()
    }

    fn stage_mut(&mut self, id: StageId) -> Result<&mut Stage> {
        self.stages.get_mut(&id).ok_or_else(|| {
            BallistaError::Internal(format!("job {} has no stage {id}", self.job_id))
        })
    }

    /// Tasks ready to launch, earliest stage first.
    pub fn pending_tasks(&self) -> Vec<PendingTask> {
        if self.failure.is_some() {
            return Vec::new();
        }
        self.stages
            .values()
            .flat_map(|s| {
                s.tasks
                    .iter()
                    .enumerate()
                    .filter_map(move |(partition, t)| {
                        matches!(t, TaskState::Pending { .. }).then_some(PendingTask {
                            stage_id: s.id,
                            partition,
                        })
                    })
            })
            .collect()
    }

    /// Marks a pending task as launched on `executor`; returns the attempt
    /// number and the stage plan to send.
    pub fn start_task(
        &mut self,
        task: PendingTask,
        executor: &ExecutorId,
    ) -> Result<(u32, Arc<Vec<u8>>)> {
        let stage = self.stage_mut(task.stage_id)?;
        let plan = stage.encoded_plan.clone().ok_or_else(|| {
            BallistaError::Internal(format!("stage {} is not runnable", task.stage_id))
        })?;
        let state = stage.tasks.get_mut(task.partition).ok_or_else(|| {
            BallistaError::Internal(format!(
                "no partition {} in stage {}",
                task.partition, task.stage_id
            ))
        })?;
        let TaskState::Pending { attempt } = *state else {
            return Err(BallistaError::Internal(format!(
                "task {}/{} is not pending",
                task.stage_id, task.partition
            )));
        };
        *state = TaskState::Running {
            attempt,
            executor: executor.clone(),
        };
        Ok((attempt, plan))
    }

    /// A launched task did not start: it becomes pending again. A task the
    /// executor refused keeps its attempt number; one whose launch may have
    /// reached the executor (`maybe_started`) gets the next number, so a copy
    /// that did start can never be taken for the retry. Neither counts as a
    /// failure.
    pub fn unlaunch_task(
        &mut self,
        stage_id: StageId,
        partition: usize,
        attempt: u32,
        maybe_started: bool,
    ) {
        if let Ok(stage) = self.stage_mut(stage_id)
            && let Some(state) = stage.tasks.get_mut(partition)
            && matches!(state, TaskState::Running { attempt: a, .. } if *a == attempt)
        {
            let attempt = if maybe_started { attempt + 1 } else { attempt };
            *state = TaskState::Pending { attempt };
        }
    }

    fn running_attempt(&self, stage_id: StageId, partition: usize) -> Option<(u32, &ExecutorId)> {
        match self.stages.get(&stage_id)?.tasks.get(partition)? {
            TaskState::Running { attempt, executor } => Some((*attempt, executor)),
            _ => None,
        }
    }

    /// Records a committed task.
    pub fn task_succeeded(
        &mut self,
        stage_id: StageId,
        partition: usize,
        attempt: u32,
        locations: Vec<ShuffleLocation>,
        metrics: proto::TaskMetrics,
    ) -> Result<TaskOutcome> {
        let Some((running, executor)) = self.running_attempt(stage_id, partition) else {
            return Ok(TaskOutcome::Stale);
        };
        if running != attempt || self.failure.is_some() {
            return Ok(TaskOutcome::Stale);
        }
        let executor = executor.clone();
        let stage = self.stage_mut(stage_id)?;
        stage.tasks[partition] = TaskState::Done {
            attempt,
            executor,
            locations,
            metrics,
        };
        if !stage.is_complete() {
            return Ok(TaskOutcome::Progress);
        }
        if stage_id == self.final_stage {
            return Ok(TaskOutcome::JobSucceeded);
        }
        for consumer in self.newly_runnable_consumers(stage_id) {
            self.make_runnable(consumer)?;
        }
        Ok(if self.is_complete() {
            TaskOutcome::JobSucceeded
        } else {
            TaskOutcome::Progress
        })
    }

    /// Records a failed attempt: retried when the error may be transient and
    /// attempts remain, otherwise the job fails with this error.
    pub fn task_failed(
        &mut self,
        stage_id: StageId,
        partition: usize,
        attempt: u32,
        error: BallistaError,
    ) -> Result<TaskOutcome> {
        let Some((running, _)) = self.running_attempt(stage_id, partition) else {
            return Ok(TaskOutcome::Stale);
        };
        if running != attempt || self.failure.is_some() {
            return Ok(TaskOutcome::Stale);
        }
        let max_attempts = self.max_attempts;
        let job_id = self.job_id.clone();
        let stage = self.stage_mut(stage_id)?;
        stage.failures[partition] += 1;
        if error.is_retryable() && stage.failures[partition] < max_attempts {
            tracing::warn!(
                "job {job_id}: task {stage_id}/{partition} attempt {attempt} failed, retrying: {error}"
            );
            stage.tasks[partition] = TaskState::Pending {
                attempt: attempt + 1,
            };
            return Ok(TaskOutcome::Progress);
        }
        stage.tasks[partition] = TaskState::Pending {
            attempt: attempt + 1,
        };
        self.failure = Some(error);
        Ok(TaskOutcome::JobFailed)
    }

    /// Marks the job failed from outside (cancellation, lost cluster).
    pub fn fail(&mut self, error: BallistaError) {
        if self.failure.is_none() {
            self.failure = Some(error);
        }
    }

    /// Tasks currently running, with their executor.
    pub fn running_tasks(&self) -> Vec<(StageId, usize, u32, ExecutorId)> {
        self.stages
            .values()
            .flat_map(|s| {
                s.tasks
                    .iter()
                    .enumerate()
                    .filter_map(move |(p, t)| match t {
                        TaskState::Running { attempt, executor } => {
                            Some((s.id, p, *attempt, executor.clone()))
                        }
                        _ => None,
                    })
            })
            .collect()
    }

    /// Number of tasks running now.
    pub fn running_task_count(&self) -> usize {
        self.stages
            .values()
            .flat_map(|s| s.tasks.iter())
            .filter(|t| matches!(t, TaskState::Running { .. }))
            .count()
    }

    /// Executors that hold (or may hold) data of this job.
    pub fn executors_used(&self) -> Vec<ExecutorId> {
        let mut out: Vec<ExecutorId> = self
            .stages
            .values()
            .flat_map(|s| s.tasks.iter())
            .filter_map(|t| match t {
                TaskState::Running { executor, .. } | TaskState::Done { executor, .. } => {
                    Some(executor.clone())
                }
                _ => None,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

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
            for t in &stage.tasks {
                match t {
                    TaskState::Done { .. } => p.tasks_completed += 1,
                    TaskState::Running { .. } => p.tasks_running += 1,
                    _ => {}
                }
            }
        }
        p
    }

    /// Where the result lives: for each final partition, the locations to read.
    pub fn result_partitions(&self) -> Vec<Vec<ShuffleLocation>> {
        self.stages
            .get(&self.final_stage)
            .map(|s| {
                s.tasks
                    .iter()
                    .map(|t| match t {
                        TaskState::Done { locations, .. } => locations.clone(),
                        _ => Vec::new(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

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
                            TaskState::Waiting => ("waiting", 0, None, None),
                            TaskState::Pending { attempt } => ("pending", *attempt, None, None),
                            TaskState::Running { attempt, executor } => {
                                ("running", *attempt, Some(executor), None)
                            }
                            TaskState::Done {
                                attempt,
                                executor,
                                metrics,
                                ..
                            } => ("done", *attempt, Some(executor), Some(*metrics)),
                        };
                        proto::TaskInfo {
                            partition: partition as u32,
                            attempt,
                            executor_id: executor.map(ToString::to_string).unwrap_or_default(),
                            state: state.to_string(),
                            metrics,
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    /// The schema of the job's result.
    pub fn result_schema(&self) -> Option<arrow::datatypes::SchemaRef> {
        self.stages
            .get(&self.final_stage)
            .map(|s| s.plan.input().schema())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::split_into_stages;
    use crate::plugin::shuffle::{ExecutorAddress, PartitionStats};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_plan::Partitioning;
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::physical_plan::repartition::RepartitionExec;

    /// Two stages: a 3-task map stage hash-partitioned into 2, then the final stage.
    fn graph(max_attempts: u32) -> JobGraph {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let scan = Arc::new(EmptyExec::new(schema).with_partitions(3));
        let repartition = RepartitionExec::try_new(
            scan,
            Partitioning::Hash(vec![Arc::new(Column::new("k", 0))], 2),
        )
        .unwrap();
        let job_id = JobId::parse("job1").unwrap();
        let plan = split_into_stages(&job_id, Arc::new(repartition)).unwrap();
        assert_eq!(plan.stages.len(), 2);
        JobGraph::try_new(job_id, plan, max_attempts).unwrap()
    }

    fn location(stage: u32, map: usize, output: usize) -> ShuffleLocation {
        ShuffleLocation {
            job_id: JobId::parse("job1").unwrap(),
            stage_id: StageId(stage),
            map_partition: map,
            output_partition: output,
            attempt: 0,
            executor: ExecutorAddress {
                id: ExecutorId::new("e1"),
                host: "127.0.0.1".into(),
                port: 1,
            },
            path: format!("job1/s{stage}/m{map}-p{output}.arrow"),
            stats: PartitionStats {
                num_rows: 1,
                num_batches: 1,
                num_bytes: 10,
            },
        }
    }

    fn run(graph: &mut JobGraph, stage: u32, partition: usize) -> u32 {
        let (attempt, _) = graph
            .start_task(
                PendingTask {
                    stage_id: StageId(stage),
                    partition,
                },
                &ExecutorId::new("e1"),
            )
            .unwrap();
        attempt
    }

    #[test]
    fn consumer_stage_becomes_runnable_when_all_map_tasks_commit() {
        let mut g = graph(3);
        assert_eq!(g.pending_tasks().len(), 3, "only the map stage is runnable");
        for p in 0..3 {
            let attempt = run(&mut g, 1, p);
            let outcome = g
                .task_succeeded(
                    StageId(1),
                    p,
                    attempt,
                    vec![location(1, p, 0), location(1, p, 1)],
                    Default::default(),
                )
                .unwrap();
            assert_eq!(outcome, TaskOutcome::Progress);
        }
        let pending = g.pending_tasks();
        assert_eq!(pending.len(), 2);
        assert!(pending.iter().all(|t| t.stage_id == StageId(2)));
        for p in 0..2 {
            let attempt = run(&mut g, 2, p);
            let outcome = g
                .task_succeeded(
                    StageId(2),
                    p,
                    attempt,
                    vec![location(2, p, 0)],
                    Default::default(),
                )
                .unwrap();
            assert_eq!(
                outcome,
                if p == 1 {
                    TaskOutcome::JobSucceeded
                } else {
                    TaskOutcome::Progress
                }
            );
        }
        assert!(g.is_complete());
        assert_eq!(g.result_partitions().len(), 2);
    }

    #[test]
    fn retryable_failures_retry_with_a_new_attempt_until_exhausted() {
        let mut g = graph(2);
        let attempt = run(&mut g, 1, 0);
        let io = || BallistaError::Io("disk hiccup".into());
        assert_eq!(
            g.task_failed(StageId(1), 0, attempt, io()).unwrap(),
            TaskOutcome::Progress
        );
        // A late report of the superseded attempt changes nothing.
        assert_eq!(
            g.task_succeeded(StageId(1), 0, attempt, vec![], Default::default())
                .unwrap(),
            TaskOutcome::Stale
        );
        let retry = run(&mut g, 1, 0);
        assert_eq!(retry, attempt + 1);
        assert_eq!(
            g.task_failed(StageId(1), 0, retry, io()).unwrap(),
            TaskOutcome::JobFailed
        );
        assert!(matches!(g.failure(), Some(BallistaError::Io(_))));
        assert!(
            g.pending_tasks().is_empty(),
            "a failed job launches nothing more"
        );
    }

    #[test]
    fn deterministic_failures_fail_the_job_at_once() {
        let mut g = graph(5);
        let attempt = run(&mut g, 1, 2);
        let outcome = g
            .task_failed(
                StageId(1),
                2,
                attempt,
                BallistaError::NotFound("/data/x.parquet".into()),
            )
            .unwrap();
        assert_eq!(outcome, TaskOutcome::JobFailed);
    }

    #[test]
    fn a_launch_that_may_have_started_is_retried_under_a_new_attempt() {
        let mut g = graph(3);
        let first = run(&mut g, 1, 0);
        g.unlaunch_task(StageId(1), 0, first, false);
        assert_eq!(
            run(&mut g, 1, 0),
            first,
            "a refused launch keeps its attempt"
        );
        g.unlaunch_task(StageId(1), 0, first, true);
        let second = run(&mut g, 1, 0);
        assert_eq!(second, first + 1);
        // The first copy, if it did run, is ignored.
        assert_eq!(
            g.task_succeeded(StageId(1), 0, first, vec![], Default::default())
                .unwrap(),
            TaskOutcome::Stale
        );
    }
}
