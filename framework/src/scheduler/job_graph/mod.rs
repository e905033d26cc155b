//! One job's stages and tasks: which tasks can run, what happened to each
//! attempt, and when a stage's consumers become runnable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;

use crate::error::{BallistaError, Result};
use crate::ids::{ExecutorId, JobId, StageId};
use crate::plan::{
    DistributedPlan, LateBroadcast, PartitionGroups, ShuffleWriterExec, late_broadcast_candidate,
    may_coalesce, resolve_shuffle_reads,
};
use crate::plugin::scheduling::PendingTask;
use crate::plugin::shuffle::ShuffleLocation;
use crate::proto;

pub use task_plan::TaskPlan;

/// State of one task (one partition of a stage).
#[derive(Debug, Clone)]
pub enum TaskState {
    /// Its stage is not runnable yet (its inputs are incomplete).
    Waiting {
        /// The attempt that will run once it is.
        attempt: u32,
    },
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
        /// When it was launched (ms since the epoch).
        since_ms: u64,
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

/// How many times a consumer task may fail to fetch its input before the
/// job fails: each fetch failure re-runs the lost map tasks, so an input that
/// can never be read must not loop forever.
pub const MAX_FETCH_FAILURES_PER_TASK: u32 = 4;

/// The executor a fetch failure names when the map task a reader awaited
/// must run again ([`JobGraph::awaited_map_outputs`]): none holds its output.
pub const AWAITED_MAP_TASK_RERUNS: &str = "(re-running)";

/// How long a retry waits for a free slot on an executor it has not failed
/// on; after that it may run where it failed (a busy cluster must not keep
/// it waiting indefinitely).
pub const RETRY_ELSEWHERE_MS: u64 = 10_000;

/// One failed attempt of a task, kept for status and for placing the retry.
#[derive(Debug, Clone)]
pub struct AttemptFailure {
    /// The attempt.
    pub attempt: u32,
    /// Where it ran.
    pub executor: ExecutorId,
    /// Why it failed.
    pub error: proto::ErrorInfo,
    /// When the failure was recorded (ms since the epoch).
    pub at_ms: u64,
}

impl AttemptFailure {
    /// Whether the executor itself may be at fault: a failed fetch is the
    /// producer's problem, and a lost executor is gone anyway.
    fn blames_executor(&self) -> bool {
        !matches!(
            proto::ErrorKind::try_from(self.error.kind),
            Ok(proto::ErrorKind::FetchFailed | proto::ErrorKind::ExecutorLost)
        )
    }
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
    pub ready_plan: Option<ReadyPlan>,
    /// Per-partition task state.
    pub tasks: Vec<TaskState>,
    /// Failed attempts per partition that count against
    /// `task_max_attempts` (fetch failures do not).
    pub failures: Vec<u32>,
    /// Failed fetches of input per partition.
    pub fetch_failures: Vec<u32>,
    /// Every failed attempt per partition, oldest first.
    pub attempt_failures: Vec<Vec<AttemptFailure>>,
    /// Per partition, how often its committed output was lost and re-run.
    pub recomputed: Vec<u32>,
    /// Its operators' metrics summed over its committed tasks (a task run
    /// again after its output was lost counts again: it did the work).
    pub operator_totals: Vec<proto::OperatorMetrics>,
    /// Whether its task count is still to be decided from its input's
    /// size, when it first becomes runnable ([`may_coalesce`]).
    undecided_count: bool,
    /// How its tasks group the planned partitions, when it runs as fewer
    /// tasks than planned (kept for every later resolution of its reads).
    pub groups: Option<PartitionGroups>,
    /// Its partitioned join that may still become a broadcast join once
    /// its build side has run ([`crate::plan::late_broadcast_candidate`]).
    late_broadcast: Option<LateBroadcast>,
    /// Its ready plan was made while an input stage was still running: its
    /// readers of that stage await the later map outputs (`early_start`).
    early: bool,
    /// Its plan could not be prepared early: it waits for its inputs.
    early_refused: bool,
}

/// A runnable stage's plan, as its tasks are sent it.
#[derive(Debug, Clone)]
pub enum ReadyPlan {
    /// Encoded once, the same for every task.
    Whole(bytes::Bytes),
    /// Prepared for sending each task only the shuffle locations and files
    /// it reads, when that is safe and pays ([`crate::plan::PerTaskPlans`]).
    PerTask(Arc<crate::plan::PerTaskPlans>),
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
    /// See [`DistributedPlan::task_input_bytes`].
    task_input_bytes: u64,
    /// See [`DistributedPlan::broadcast_output_bytes`].
    broadcast_output_bytes: u64,
    /// See [`DistributedPlan::early_consumers`].
    early_consumers: bool,
    failure: Option<BallistaError>,
    /// Stages whose output was reported as no longer read
    /// ([`take_unread_outputs`](Self::take_unread_outputs)).
    unread_reported: HashSet<StageId>,
    /// A stage completed since the last look for unread output.
    stage_completed: bool,
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
        let task_input_bytes = plan.task_input_bytes;
        let broadcast_output_bytes = plan.broadcast_output_bytes;
        let early_consumers = plan.early_consumers;
        let stages = plan
            .stages
            .into_iter()
            .map(|s| {
                let partitions = s.plan.input_partition_count();
                let unresolved: Arc<dyn ExecutionPlan> = s.plan.clone();
                let stage = Stage {
                    undecided_count: task_input_bytes > 0 && may_coalesce(&unresolved, partitions),
                    groups: None,
                    late_broadcast: (broadcast_output_bytes > 0)
                        .then(|| late_broadcast_candidate(&s.plan))
                        .flatten(),
                    early: false,
                    early_refused: false,
                    id: s.stage_id,
                    consumers: consumers.remove(&s.stage_id).unwrap_or_default(),
                    inputs: s.inputs,
                    plan: s.plan,
                    ready_plan: None,
                    tasks: vec![TaskState::Waiting { attempt: 0 }; partitions],
                    failures: vec![0; partitions],
                    fetch_failures: vec![0; partitions],
                    attempt_failures: vec![Vec::new(); partitions],
                    recomputed: vec![0; partitions],
                    operator_totals: Vec::new(),
                };
                (stage.id, stage)
            })
            .collect();
        let mut graph = Self {
            job_id,
            stages,
            final_stage: plan.final_stage,
            max_attempts: max_attempts.max(1),
            task_input_bytes,
            broadcast_output_bytes,
            early_consumers,
            failure: None,
            unread_reported: HashSet::new(),
            stage_completed: false,
        };
        graph.drop_impossible_broadcasts();
        for (id, candidate) in graph.late_broadcasts() {
            tracing::debug!(
                "job {}: stage {id} may broadcast stage {}'s output once it has run, unless stage {} starts first",
                graph.job_id,
                candidate.build,
                candidate.probe
            );
        }
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

    /// Its stages in id order.
    pub fn stages(&self) -> impl Iterator<Item = &Stage> {
        self.stages.values()
    }

    /// One of its stages.
    pub fn stage(&self, id: StageId) -> Option<&Stage> {
        self.stages.get(&id)
    }

    /// The stage whose output is the job's result.
    pub fn final_stage_id(&self) -> StageId {
        self.final_stage
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

    /// Resolves a stage's reads, encodes its plan and marks its waiting
    /// tasks pending (tasks that are done or still running from before its
    /// input was lost keep their state). A stage that is complete at once
    /// (no tasks, or all done) may make its consumers runnable in turn.
    fn make_runnable(&mut self, stage_id: StageId) -> Result<()> {
        let mut queue = vec![stage_id];
        while let Some(id) = queue.pop() {
            let job_id = self.job_id.clone();
            let outputs = self.completed_outputs();
            let task_input_bytes = self.task_input_bytes;
            let stage = self.stage_mut(id)?;
            let plan: Arc<dyn ExecutionPlan> = stage.plan.clone();
            let resolved = resolve_shuffle_reads(plan, &outputs)?;
            let resolved = stage.regroup(&job_id, resolved, task_input_bytes)?;
            stage.set_ready_plan(&job_id, &resolved)?;
            stage.early = false;
            if stage.is_complete() {
                queue.extend(self.newly_runnable_consumers(id));
            }
        }
        Ok(())
    }

    /// Whether a stage's committed output is still needed: the final stage's
    /// is the result; another's is needed while some consumer is incomplete.
    fn output_needed(&self, stage: &Stage) -> bool {
        stage.id == self.final_stage
            || stage.consumers.iter().any(|c| {
                self.stages
                    .get(c)
                    .is_some_and(|consumer| !consumer.is_complete())
            })
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
                    (consumer.ready_plan.is_none() || consumer.early)
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
    #[cfg(test)]
    pub fn pending_tasks(&self) -> Vec<PendingTask> {
        self.first_pending_tasks(usize::MAX)
    }

    /// The first `limit` tasks ready to launch, earliest stage first: a
    /// placement round cannot place more tasks than it has free slots, and
    /// a stage of thousands of tasks would otherwise be listed in full at
    /// every round.
    pub fn first_pending_tasks(&self, limit: usize) -> Vec<PendingTask> {
        if self.failure.is_some() {
            return Vec::new();
        }
        let held = self.held_probe_stages();
        self.stages
            .values()
            .filter(|s| s.ready_plan.is_some() && !held.contains(&s.id))
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
            .take(limit)
            .collect()
    }

    /// Marks a pending task as launched on `executor`; returns the attempt
    /// number and the plan to send.
    pub fn start_task(
        &mut self,
        task: PendingTask,
        executor: &ExecutorId,
    ) -> Result<(u32, TaskPlan)> {
        let stage = self.stage_mut(task.stage_id)?;
        let plan = match &stage.ready_plan {
            Some(ReadyPlan::PerTask(plans)) => TaskPlan::OwnReads {
                plans: Arc::clone(plans),
                partition: task.partition,
            },
            Some(ReadyPlan::Whole(bytes)) => TaskPlan::Shared(bytes.clone()),
            None => {
                return Err(BallistaError::Internal(format!(
                    "stage {} is not runnable",
                    task.stage_id
                )));
            }
        };
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
            since_ms: crate::util::now_ms(),
        };
        Ok((attempt, plan))
    }

    /// A launched task the executor refused: it becomes pending again under
    /// the same attempt number, and this does not count as a failure. (A
    /// launch whose answer never came is an attempt lost with its executor,
    /// see `SchedulerState::launch_refused`.)
    pub fn unlaunch_task(&mut self, stage_id: StageId, partition: usize, attempt: u32) {
        if let Ok(stage) = self.stage_mut(stage_id)
            && let Some(state) = stage.tasks.get_mut(partition)
            && matches!(state, TaskState::Running { attempt: a, .. } if *a == attempt)
        {
            *state = TaskState::Pending { attempt };
            if stage.ready_plan.is_none() {
                *state = TaskState::Waiting { attempt };
            }
        }
    }

    /// Where `attempt` runs, when it is the task's current attempt of a job
    /// still going; a report of any other attempt is stale.
    pub fn current_attempt(
        &self,
        stage_id: StageId,
        partition: usize,
        attempt: u32,
    ) -> Option<ExecutorId> {
        if self.failure.is_some() {
            return None;
        }
        match self.stages.get(&stage_id)?.tasks.get(partition)? {
            TaskState::Running {
                attempt: running,
                executor,
                ..
            } if *running == attempt => Some(executor.clone()),
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
        mut metrics: proto::TaskMetrics,
    ) -> Result<TaskOutcome> {
        let Some(executor) = self.current_attempt(stage_id, partition, attempt) else {
            return Ok(TaskOutcome::Stale);
        };
        let stage = self.stage_mut(stage_id)?;
        // Kept once per stage, not per task: a job of many tasks would
        // otherwise hold every operator's figures of every task.
        let operators = std::mem::take(&mut metrics.operators);
        crate::plan::add_operator_metrics(&mut stage.operator_totals, &operators);
        stage.tasks[partition] = TaskState::Done {
            attempt,
            executor,
            locations,
            metrics,
        };
        if !stage.is_complete() {
            return Ok(TaskOutcome::Progress);
        }
        self.stage_completed = true;
        if stage_id == self.final_stage {
            return Ok(TaskOutcome::JobSucceeded);
        }
        self.broadcast_small_build_sides(stage_id)?;
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
        let Some(executor) = self.current_attempt(stage_id, partition, attempt) else {
            return Ok(TaskOutcome::Stale);
        };
        let max_attempts = self.max_attempts;
        let job_id = self.job_id.clone();
        let stage = self.stage_mut(stage_id)?;
        stage.attempt_failures[partition].push(AttemptFailure {
            attempt,
            executor,
            error: error.to_proto(),
            at_ms: crate::util::now_ms(),
        });
        if let BallistaError::FetchFailed {
            executor_id,
            map_stage_id,
            map_partition,
            ..
        } = &error
        {
            // A task that started early and gave its slot back to a map
            // task running again lost nothing of its own: not counted.
            if executor_id != AWAITED_MAP_TASK_RERUNS {
                stage.fetch_failures[partition] += 1;
            }
            if stage.fetch_failures[partition] < MAX_FETCH_FAILURES_PER_TASK {
                stage.tasks[partition] = stage.to_run(attempt + 1);
                let (producer, map_partition) = (StageId(*map_stage_id), *map_partition as usize);
                // Output the executors were told to free is gone on all of
                // them: run the whole stage again, not one executor's share
                // per failed fetch.
                let released = self.unread_reported.remove(&producer);
                let rerun = self.rerun_lost(&[producer], |p, location| {
                    (location.executor.id.as_str() == executor_id || released)
                        && (!location.durable || p == map_partition)
                });
                if executor_id == AWAITED_MAP_TASK_RERUNS {
                    tracing::info!(
                        "job {job_id}: task {stage_id}/{partition} attempt {attempt} started early and \
                         gave its slot back: map task {map_partition} of stage {producer} runs again"
                    );
                } else {
                    tracing::warn!(
                        "job {job_id}: task {stage_id}/{partition} attempt {attempt} could not fetch its input, \
                         {rerun} map task(s) of stage {producer} run again: {error}"
                    );
                }
                self.refresh_plans_or_fail();
                return Ok(if self.failure.is_some() {
                    TaskOutcome::JobFailed
                } else {
                    TaskOutcome::Progress
                });
            }
            stage.tasks[partition] = stage.to_run(attempt + 1);
            self.failure = Some(error);
            return Ok(TaskOutcome::JobFailed);
        }
        stage.failures[partition] += 1;
        if error.is_retryable() && stage.failures[partition] < max_attempts {
            tracing::warn!(
                "job {job_id}: task {stage_id}/{partition} attempt {attempt} failed, retrying: {error}"
            );
            stage.tasks[partition] = stage.to_run(attempt + 1);
            return Ok(TaskOutcome::Progress);
        }
        stage.tasks[partition] = stage.to_run(attempt + 1);
        self.failure = Some(error);
        Ok(TaskOutcome::JobFailed)
    }

    /// Marks the job failed from outside (cancellation, lost cluster).
    pub fn fail(&mut self, error: BallistaError) {
        if self.failure.is_none() {
            self.failure = Some(error);
        }
    }

    /// Whether an attempt of `task` failed on `executor`, for a reason that
    /// may lie with the executor, less than `RETRY_ELSEWHERE_MS` ago.
    pub fn blames(&self, task: PendingTask, executor: &ExecutorId) -> bool {
        let since = crate::util::now_ms().saturating_sub(RETRY_ELSEWHERE_MS);
        self.stages
            .get(&task.stage_id)
            .and_then(|s| s.attempt_failures.get(task.partition))
            .is_some_and(|failures| {
                failures
                    .iter()
                    .any(|f| f.blames_executor() && &f.executor == executor && f.at_ms >= since)
            })
    }

    /// Whether `task` should rather not run on `executor`: an earlier
    /// attempt failed there ([`blames`](Self::blames)) and one of `others`
    /// has not failed it yet.
    pub fn should_avoid(
        &self,
        task: PendingTask,
        executor: &ExecutorId,
        others: &[&ExecutorId],
    ) -> bool {
        self.blames(task, executor)
            && others
                .iter()
                .any(|o| *o != executor && !self.blames(task, o))
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
                        TaskState::Running {
                            attempt, executor, ..
                        } => Some((s.id, p, *attempt, executor.clone())),
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

    /// The schema of the job's result.
    pub fn result_schema(&self) -> Option<arrow::datatypes::SchemaRef> {
        self.stages
            .get(&self.final_stage)
            .map(|s| s.plan.input().schema())
    }
}

mod early_start;
mod late_broadcast;
mod lost_output;
mod stage;
mod status;
mod task_plan;
#[cfg(test)]
mod tests;
mod unread;
