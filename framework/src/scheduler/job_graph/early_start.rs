//! Consumer stages that start before the stages they read have completed.
//!
//! A stage's last tasks leave slots idle: a consumer stage normally waits
//! for every map task of its inputs. When every task of an input stage has
//! been launched and slots are still free (nothing else is pending), the
//! consumer stage is made runnable from the map outputs committed so far;
//! its readers of the unfinished input list those outputs and name the map
//! tasks still running ([`ShuffleReaderExec::pending_map_tasks`]). Its tasks
//! start reading (a hash aggregate aggregates, a join builds) while the last
//! map tasks run, and ask the scheduler for the later outputs as they are
//! committed ([`JobGraph::awaited_map_outputs`]).
//!
//! Retries keep working because a reader tracks map tasks, not locations:
//! each map task's output is read once, from wherever it was committed when
//! the reader learned of it. A map task that must run again (it failed, or
//! its output or executor was lost) while a reader awaits it is a fetch
//! failure for that reader: its task gives its slot back and starts again
//! later, so a waiting task never holds the slot the map task needs. Only one level starts early (a stage whose input itself started
//! early waits), so a waiting task always waits for tasks that are running.
//! Stages whose plan depends on their inputs' final sizes are left alone:
//! a join that may still become a broadcast join, and the probe side of one.
//! A stage whose task count adapts to its input's size decides it from the
//! committed outputs, extrapolated.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::ExecutionPlan;

use super::{
    AWAITED_MAP_TASK_RERUNS, JobGraph, Result, ShuffleLocation, Stage, StageId, TaskState,
};
use crate::error::BallistaError;
use crate::ids::ExecutorId;
use crate::plan::{ShuffleReaderExec, UnresolvedShuffleExec, resolve_shuffle_reads};
use crate::proto;

impl JobGraph {
    /// Makes runnable the stages that may start before their inputs have
    /// completed (see the module docs); returns how many it opened. Called
    /// when slots are free and no task is pending.
    pub fn open_early_stages(&mut self) -> usize {
        if !self.early_consumers || self.failure.is_some() {
            return 0;
        }
        let probes: Vec<StageId> = self.late_broadcasts().map(|(_, c)| c.probe).collect();
        let ready: Vec<StageId> = self
            .stages
            .values()
            .filter(|s| !probes.contains(&s.id) && self.may_start_early(s))
            .map(|s| s.id)
            .collect();
        let mut opened = 0;
        for id in ready {
            match self.make_early_runnable(id) {
                Ok(()) => opened += 1,
                // It starts once its inputs have completed, as planned.
                Err(e) => {
                    tracing::warn!(
                        "job {}: stage {id} waits for its inputs to complete: {e}",
                        self.job_id
                    );
                    if let Some(stage) = self.stages.get_mut(&id) {
                        stage.early_refused = true;
                    }
                }
            }
        }
        opened
    }

    /// Whether `stage` may start now although an input is incomplete. (A
    /// probe stage held for a late broadcast has no launched task, so it
    /// is never such an input.)
    fn may_start_early(&self, stage: &Stage) -> bool {
        if stage.ready_plan.is_some()
            || stage.early_refused
            || stage.late_broadcast.is_some()
            || stage.inputs.is_empty()
        {
            return false;
        }
        let mut incomplete = 0;
        for input in &stage.inputs {
            let Some(input) = self.stages.get(input) else {
                return false;
            };
            if input.is_complete() {
                continue;
            }
            incomplete += 1;
            let all_launched = input
                .tasks
                .iter()
                .all(|t| matches!(t, TaskState::Running { .. } | TaskState::Done { .. }));
            let some_done = input
                .tasks
                .iter()
                .any(|t| matches!(t, TaskState::Done { .. }));
            if input.ready_plan.is_none()
                || input.early
                || !all_launched
                || !some_done
                || readers_of(stage, input.id) != 1
            {
                return false;
            }
        }
        incomplete > 0
    }

    /// Resolves `id`'s reads from the outputs committed so far, its readers
    /// of incomplete inputs awaiting the rest, and makes its tasks pending.
    fn make_early_runnable(&mut self, id: StageId) -> Result<()> {
        let mut outputs = self.completed_outputs();
        let mut pending: HashMap<StageId, Vec<u32>> = HashMap::new();
        // The share of the incomplete inputs' map tasks that have
        // committed, to extrapolate their size from.
        let (mut done, mut total) = (0u64, 0u64);
        let inputs = self.stage_mut(id)?.inputs.clone();
        for input_id in inputs {
            if outputs.contains_key(&input_id) {
                continue;
            }
            let input = self.stage_mut(input_id)?;
            let mut locations = Vec::new();
            let mut awaited = Vec::new();
            for (m, task) in input.tasks.iter().enumerate() {
                match task {
                    TaskState::Done { locations: l, .. } => locations.extend(l.iter().cloned()),
                    _ => awaited.push(m as u32),
                }
            }
            total += input.tasks.len() as u64;
            done += (input.tasks.len() - awaited.len()) as u64;
            outputs.insert(input_id, locations);
            pending.insert(input_id, awaited);
        }
        let job_id = self.job_id.clone();
        let task_input_bytes = self.task_input_bytes.saturating_mul(done) / total.max(1);
        let stage = self.stage_mut(id)?;
        let resolved = resolve_shuffle_reads(Arc::clone(&stage.plan) as _, &outputs)?;
        let resolved = stage.regroup(&job_id, resolved, task_input_bytes.max(1))?;
        let resolved = await_pending(resolved, &pending)?;
        stage.set_ready_plan(&job_id, &resolved)?;
        stage.early = true;
        tracing::debug!(
            "job {job_id}: stage {id} starts before its input completed: {} task(s), awaiting {} map task(s)",
            stage.tasks.len(),
            pending.values().map(Vec::len).sum::<usize>()
        );
        Ok(())
    }

    /// What the reader of `map_stage` in task `consumer` (running as
    /// `attempt` on `executor`) reads, at partition `reader_partition`, of
    /// the awaited map tasks that have committed by now; `None` when none
    /// has yet.
    pub fn awaited_map_outputs(
        &self,
        consumer: (StageId, usize, u32),
        executor: &ExecutorId,
        map_stage: StageId,
        reader_partition: usize,
        awaited: &[u32],
    ) -> Result<Option<proto::AwaitMapOutputsResponse>> {
        let (stage_id, partition, attempt) = consumer;
        if self.current_attempt(stage_id, partition, attempt).as_ref() != Some(executor) {
            return Err(BallistaError::Cancelled(format!(
                "task {stage_id}/{partition} attempt {attempt} of job {} no longer runs on executor {executor}",
                self.job_id
            )));
        }
        let stage = self.stages.get(&stage_id).ok_or_else(|| {
            BallistaError::InvalidInput(format!("job {} has no stage {stage_id}", self.job_id))
        })?;
        let producer = self
            .stages
            .get(&map_stage)
            .filter(|_| stage.inputs.contains(&map_stage))
            .ok_or_else(|| {
                BallistaError::InvalidInput(format!(
                    "stage {stage_id} of job {} does not read stage {map_stage}",
                    self.job_id
                ))
            })?;
        let distinct: std::collections::HashSet<u32> = awaited.iter().copied().collect();
        if distinct.len() != awaited.len() || awaited.len() > producer.tasks.len() {
            return Err(BallistaError::InvalidInput(format!(
                "awaited map tasks of stage {map_stage} must be distinct and at most its {} tasks",
                producer.tasks.len()
            )));
        }
        let mut committed = Vec::new();
        let mut locations: Vec<ShuffleLocation> = Vec::new();
        for &m in awaited {
            match producer.tasks.get(m as usize) {
                Some(TaskState::Done { locations: l, .. }) => {
                    committed.push(m);
                    locations.extend(l.iter().cloned());
                }
                Some(TaskState::Running { .. }) => {}
                // It runs again (it failed, or its output was lost): this
                // task gives its slot back, as when a fetch fails, rather
                // than hold it while the map task may need it.
                Some(TaskState::Waiting { .. } | TaskState::Pending { .. }) => {
                    return Err(BallistaError::FetchFailed {
                        // No executor holds it now; the name matches none,
                        // so nothing else is re-run for this failure, and
                        // it does not count against the task's fetch budget.
                        executor_id: AWAITED_MAP_TASK_RERUNS.into(),
                        map_stage_id: map_stage.0,
                        map_partition: m,
                        message: format!(
                            "map task {m} of stage {map_stage} runs again; task {stage_id}/{partition} \
                             gives its slot back and runs again later"
                        ),
                    });
                }
                None => {
                    return Err(BallistaError::InvalidInput(format!(
                        "stage {map_stage} of job {} has no map task {m}",
                        self.job_id
                    )));
                }
            }
        }
        if committed.is_empty() {
            return Ok(None);
        }
        // What the reader's partition reads of them, as the stage's plan was
        // resolved and grouped for its tasks.
        let outputs: HashMap<StageId, Vec<ShuffleLocation>> = stage
            .inputs
            .iter()
            .map(|i| {
                (
                    *i,
                    if *i == map_stage {
                        locations.clone()
                    } else {
                        Vec::new()
                    },
                )
            })
            .collect();
        let resolved = resolve_shuffle_reads(Arc::clone(&stage.plan) as _, &outputs)?;
        let resolved = match &stage.groups {
            Some(groups) => groups.apply(resolved)?,
            None => resolved,
        };
        let mut read = None;
        resolved
            .apply(|node| {
                if let Some(reader) = node.downcast_ref::<ShuffleReaderExec>()
                    && reader.stage_id() == map_stage
                {
                    read = Some(reader.partitions().get(reader_partition).cloned());
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .map_err(BallistaError::from_datafusion)?;
        let read = read.flatten().ok_or_else(|| {
            BallistaError::InvalidInput(format!(
                "stage {stage_id} of job {} has no partition {reader_partition} reading stage {map_stage}",
                self.job_id
            ))
        })?;
        Ok(Some(proto::AwaitMapOutputsResponse {
            complete: committed.len() == awaited.len(),
            map_tasks: committed,
            locations: read.iter().map(ShuffleLocation::to_proto).collect(),
        }))
    }
}

/// How many shuffle reads of `input` the stage's plan has.
fn readers_of(stage: &Stage, input: StageId) -> usize {
    let mut count = 0;
    let plan: Arc<dyn ExecutionPlan> = Arc::clone(&stage.plan) as _;
    let _ = plan.apply(|node| {
        if node
            .downcast_ref::<UnresolvedShuffleExec>()
            .is_some_and(|u| u.stage_id() == input)
        {
            count += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    });
    count
}

/// `plan` with its readers of the stages in `pending` awaiting those map
/// tasks.
fn await_pending(
    plan: Arc<dyn ExecutionPlan>,
    pending: &HashMap<StageId, Vec<u32>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let awaiting = plan.transform_up(|node| {
        let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() else {
            return Ok(Transformed::no(node));
        };
        let Some(map_tasks) = pending.get(&reader.stage_id()) else {
            return Ok(Transformed::no(node));
        };
        let awaiting = reader
            .with_partitions(
                reader.partitions().to_vec(),
                reader.output_partitioning().clone(),
            )?
            .with_pending_map_tasks(map_tasks.clone());
        Ok(Transformed::yes(
            Arc::new(awaiting) as Arc<dyn ExecutionPlan>
        ))
    });
    Ok(awaiting.map_err(BallistaError::from_datafusion)?.data)
}

#[cfg(test)]
mod tests;
