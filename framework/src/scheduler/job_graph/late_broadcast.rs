//! Broadcast joins decided from the build side's real size
//! ([`crate::plan::late_broadcast_candidate`]).
//!
//! The decision needs the probe stage not to have started, so while the
//! build stage runs (not while it waits for its own inputs) and what it has
//! written so far extrapolates to a small output, the probe stage's tasks
//! are held back; as soon as the estimate says the build side is large, or
//! the build stage completes, they go.

use std::sync::Arc;

use super::{JobGraph, ReadyPlan, Result, Stage, StageId, TaskState};
use crate::plan::{LateBroadcast, broadcast_build_side, may_coalesce};

impl Stage {
    /// Whether none of its tasks has been launched in any attempt.
    fn not_started(&self) -> bool {
        self.tasks.iter().all(|t| {
            matches!(
                t,
                TaskState::Waiting { attempt: 0 } | TaskState::Pending { attempt: 0 }
            )
        })
    }

    /// Bytes its committed tasks wrote (`None` when some output's size is
    /// unknown: rows without bytes, from a shuffle writer that does not
    /// measure them), and how many tasks committed.
    fn committed_bytes(&self) -> (Option<u64>, usize) {
        let mut bytes = Some(0u64);
        let mut done = 0;
        for task in &self.tasks {
            if let TaskState::Done { locations, .. } = task {
                done += 1;
                for location in locations {
                    let stats = &location.stats;
                    bytes = bytes.filter(|_| stats.num_rows == 0 || stats.num_bytes > 0);
                    bytes = bytes.map(|b| b.saturating_add(stats.num_bytes));
                }
            }
        }
        (bytes, done)
    }
}

impl JobGraph {
    /// The broadcast candidates of stages still undecided.
    pub(super) fn late_broadcasts(&self) -> impl Iterator<Item = (StageId, LateBroadcast)> + '_ {
        self.stages
            .values()
            .filter_map(|s| s.late_broadcast.map(|c| (s.id, c)))
    }

    /// Forgets candidates whose rewrite would be refused whatever the build
    /// side's size (a stage writing one output per task whose probe side
    /// has another partition count), so that their probe side is never held.
    pub(super) fn drop_impossible_broadcasts(&mut self) {
        let impossible: Vec<StageId> = self
            .late_broadcasts()
            .filter(|(join_id, candidate)| {
                let (Some(join), Some(probe)) =
                    (self.stages.get(join_id), self.stages.get(&candidate.probe))
                else {
                    return true;
                };
                join.plan.shuffle_partitioning().is_none()
                    && probe.plan.input_partition_count() != join.plan.input_partition_count()
            })
            .map(|(join_id, _)| join_id)
            .collect();
        for id in impossible {
            if let Some(stage) = self.stages.get_mut(&id) {
                stage.late_broadcast = None;
            }
        }
    }

    /// Probe stages whose tasks wait for their join's build side to show its
    /// size: it is running, and what it wrote so far (nothing yet, or some
    /// tasks' output scaled to all of its tasks) is within
    /// `broadcast_output_bytes`.
    pub(super) fn held_probe_stages(&self) -> Vec<StageId> {
        let limit = self.broadcast_output_bytes;
        self.late_broadcasts()
            .filter(|(_, candidate)| {
                let (Some(build), Some(probe)) = (
                    self.stages.get(&candidate.build),
                    self.stages.get(&candidate.probe),
                ) else {
                    return false;
                };
                if build.is_complete() || !probe.not_started() {
                    return false;
                }
                let (bytes, done) = build.committed_bytes();
                if done == 0 {
                    // Only a build stage that is running now is waited
                    // for: one still waiting for its own inputs could keep
                    // the probe side's slots idle for long.
                    return build.ready_plan.is_some();
                }
                bytes.is_some_and(|bytes| {
                    (bytes / done as u64).saturating_mul(build.tasks.len() as u64) <= limit
                })
            })
            .map(|(_, candidate)| candidate.probe)
            .collect()
    }

    /// `completed` (a stage that just completed) is the build side of
    /// partitioned joins: each whose build output is within
    /// `broadcast_output_bytes`, and whose probe and join stages have not
    /// started, becomes a broadcast join reading the probe side's plan
    /// itself; the probe stage is left with no tasks. Decided once per join.
    pub(super) fn broadcast_small_build_sides(&mut self, completed: StageId) -> Result<()> {
        let joins: Vec<(StageId, LateBroadcast)> = self
            .late_broadcasts()
            .filter(|(_, c)| c.build == completed)
            .collect();
        if joins.is_empty() {
            return Ok(());
        }
        let (written, _) = self.stage_mut(completed)?.committed_bytes();
        for (join_id, candidate) in joins {
            self.stage_mut(join_id)?.late_broadcast = None;
            let bytes = written;
            let Some(bytes) = bytes else {
                tracing::debug!(
                    "job {}: stage {join_id} keeps its partitioned join: the size of stage \
                     {completed}'s output is unknown",
                    self.job_id
                );
                continue;
            };
            if bytes > self.broadcast_output_bytes {
                tracing::debug!(
                    "job {}: stage {join_id} keeps its partitioned join: stage {completed} wrote \
                     {bytes} bytes, above {}",
                    self.job_id,
                    self.broadcast_output_bytes
                );
                continue;
            }
            let (Some(join), Some(build), Some(probe)) = (
                self.stages.get(&join_id),
                self.stages.get(&candidate.build),
                self.stages.get(&candidate.probe),
            ) else {
                continue;
            };
            let alone = probe.consumers == [join_id];
            if !alone || !probe.not_started() || !join.not_started() {
                tracing::debug!(
                    "job {}: stage {join_id} keeps its partitioned join: stage {} has started",
                    self.job_id,
                    if join.not_started() {
                        candidate.probe
                    } else {
                        join_id
                    }
                );
                continue;
            }
            // A plan that cannot be rewritten keeps its partitioned join.
            let rewritten = match broadcast_build_side(
                &join.plan,
                candidate,
                build.plan.input(),
                Arc::clone(probe.plan.input()),
            ) {
                Ok(Some(rewritten)) => rewritten,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(
                        "job {}: stage {join_id} keeps its partitioned join: {e}",
                        self.job_id
                    );
                    continue;
                }
            };
            let probe_inputs = probe.inputs.clone();
            let job_id = self.job_id.clone();
            let task_input_bytes = self.task_input_bytes;
            let join = self.stage_mut(join_id)?;
            let tasks = rewritten.input_partition_count();
            join.plan = Arc::new(rewritten);
            join.set_task_count(tasks);
            let plan: Arc<dyn datafusion::physical_plan::ExecutionPlan> = join.plan.clone();
            join.undecided_count = task_input_bytes > 0 && may_coalesce(&plan, tasks);
            join.groups = None;
            for input in &probe_inputs {
                if !join.inputs.contains(input) {
                    join.inputs.push(*input);
                }
            }
            join.inputs.retain(|input| *input != candidate.probe);
            join.inputs.sort();
            for input in &probe_inputs {
                let stage = self.stage_mut(*input)?;
                if !stage.consumers.contains(&join_id) {
                    stage.consumers.push(join_id);
                }
            }
            let probe = self.stage_mut(candidate.probe)?;
            probe.set_task_count(0);
            probe.late_broadcast = None;
            probe.undecided_count = false;
            probe.ready_plan = Some(ReadyPlan::Whole(bytes::Bytes::new()));
            tracing::info!(
                "job {job_id}: stage {join_id} broadcasts stage {}'s {bytes} bytes to {tasks} task(s), \
                 which read stage {}'s input themselves instead of its shuffled output",
                candidate.build,
                candidate.probe
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::common::JoinType;
    use datafusion::physical_plan::{ExecutionPlan, displayable};

    use super::*;
    use crate::ids::{ExecutorId, JobId};
    use crate::plan::test_plans::{location, partitioned_join_plan};
    use crate::plugin::scheduling::PendingTask;

    /// Build stage 1 (2 tasks), probe stage 2 (2 tasks), join stage 3,
    /// broadcasting build sides up to 100 bytes.
    fn graph(join_type: JoinType) -> JobGraph {
        let job_id = JobId::parse("job1").unwrap();
        let mut plan = partitioned_join_plan(&job_id, join_type, 2);
        plan.broadcast_output_bytes = 100;
        JobGraph::try_new(job_id, plan, 3).unwrap()
    }

    fn pending_stages(g: &JobGraph) -> Vec<u32> {
        let mut stages: Vec<u32> = g.pending_tasks().iter().map(|t| t.stage_id.0).collect();
        stages.dedup();
        stages
    }

    /// Runs task `partition` of `stage`, writing `bytes` to each of its 2
    /// output partitions.
    fn run(g: &mut JobGraph, stage: u32, partition: usize, bytes: u64) {
        let task = PendingTask {
            stage_id: StageId(stage),
            partition,
        };
        let (attempt, _) = g.start_task(task, &ExecutorId::new("e1")).unwrap();
        let locations = (0..2)
            .map(|output| location(stage, partition, output, bytes))
            .collect();
        g.task_succeeded(
            StageId(stage),
            partition,
            attempt,
            locations,
            Default::default(),
        )
        .unwrap();
    }

    fn join_plan_text(g: &JobGraph) -> String {
        let plan: Arc<dyn ExecutionPlan> = g.stage(StageId(3)).unwrap().plan.clone();
        displayable(plan.as_ref()).indent(false).to_string()
    }

    #[test]
    fn a_small_build_side_is_broadcast_and_the_probe_stage_runs_no_tasks() {
        let mut g = graph(JoinType::Inner);
        // Nothing of the build side is known yet: the probe side waits.
        assert_eq!(pending_stages(&g), vec![1]);
        run(&mut g, 1, 0, 10);
        // 2 x 10 bytes so far, 40 expected: still small.
        assert_eq!(pending_stages(&g), vec![1]);
        run(&mut g, 1, 1, 10);
        let probe = g.stage(StageId(2)).unwrap();
        assert!(probe.tasks.is_empty() && probe.is_complete());
        let join = g.stage(StageId(3)).unwrap();
        assert_eq!(join.inputs, vec![StageId(1)], "stage 2 is read no more");
        assert_eq!(pending_stages(&g), vec![3]);
        assert_eq!(g.pending_tasks().len(), 2);
        let text = join_plan_text(&g);
        assert!(text.contains("mode=CollectLeft"), "{text}");
        assert!(text.contains("EmptyExec"), "{text}");
        run(&mut g, 3, 0, 1);
        run(&mut g, 3, 1, 1);
        assert!(g.is_complete());
        assert_eq!(g.result_partitions().len(), 2);
    }

    #[test]
    fn a_build_side_that_looks_large_lets_the_probe_side_run_and_keeps_the_join() {
        let mut g = graph(JoinType::Inner);
        run(&mut g, 1, 0, 30);
        // 60 bytes from one of two tasks: 120 expected, above 100.
        assert_eq!(pending_stages(&g), vec![1, 2]);
        run(&mut g, 2, 0, 1);
        run(&mut g, 1, 1, 1);
        assert_eq!(g.stage(StageId(2)).unwrap().tasks.len(), 2);
        let text = join_plan_text(&g);
        assert!(text.contains("mode=Partitioned"), "{text}");
    }

    #[test]
    fn a_large_build_side_keeps_the_partitioned_join() {
        let mut g = graph(JoinType::Inner);
        run(&mut g, 1, 0, 20);
        run(&mut g, 1, 1, 40);
        // 120 bytes written in all.
        assert_eq!(pending_stages(&g), vec![2]);
        run(&mut g, 2, 0, 1);
        run(&mut g, 2, 1, 1);
        assert!(join_plan_text(&g).contains("mode=Partitioned"));
        assert_eq!(pending_stages(&g), vec![3]);
    }

    #[test]
    fn a_probe_side_already_running_keeps_the_partitioned_join() {
        let mut g = graph(JoinType::Inner);
        run(&mut g, 1, 0, 30);
        let probe_task = PendingTask {
            stage_id: StageId(2),
            partition: 0,
        };
        g.start_task(probe_task, &ExecutorId::new("e2")).unwrap();
        run(&mut g, 1, 1, 1);
        assert!(join_plan_text(&g).contains("mode=Partitioned"));
        assert_eq!(g.stage(StageId(2)).unwrap().tasks.len(), 2);
    }

    #[test]
    fn a_left_join_is_never_held_or_broadcast() {
        let mut g = graph(JoinType::Left);
        assert_eq!(pending_stages(&g), vec![1, 2]);
        run(&mut g, 1, 0, 1);
        run(&mut g, 1, 1, 1);
        assert!(join_plan_text(&g).contains("mode=Partitioned"));
    }

    #[test]
    fn a_build_stage_waiting_for_its_own_input_does_not_hold_the_probe_side() {
        let job_id = JobId::parse("job1").unwrap();
        let mut plan = crate::plan::test_plans::partitioned_join_over_two_build_stages(&job_id);
        plan.broadcast_output_bytes = 100;
        let mut g = JobGraph::try_new(job_id, plan, 3).unwrap();
        assert_eq!(
            g.stage(StageId(4)).unwrap().late_broadcast,
            Some(LateBroadcast {
                build: StageId(2),
                probe: StageId(3)
            })
        );
        // The build stage waits for stage 1: the probe side may start.
        assert_eq!(pending_stages(&g), vec![1, 3]);
        let probe_task = PendingTask {
            stage_id: StageId(3),
            partition: 0,
        };
        g.start_task(probe_task, &ExecutorId::new("e2")).unwrap();
        run(&mut g, 1, 0, 1);
        run(&mut g, 1, 1, 1);
        // A probe side that has started is not held.
        assert_eq!(pending_stages(&g), vec![2, 3]);
        run(&mut g, 2, 0, 1);
        run(&mut g, 2, 1, 1);
        let plan: Arc<dyn ExecutionPlan> = g.stage(StageId(4)).unwrap().plan.clone();
        let text = displayable(plan.as_ref()).indent(false).to_string();
        assert!(text.contains("mode=Partitioned"), "{text}");
    }

    #[test]
    fn output_of_unknown_size_is_never_broadcast_nor_waited_for() {
        let mut g = graph(JoinType::Inner);
        let task = PendingTask {
            stage_id: StageId(1),
            partition: 0,
        };
        let (attempt, _) = g.start_task(task, &ExecutorId::new("e1")).unwrap();
        // Rows without bytes: a shuffle writer that does not measure them.
        let mut unmeasured = location(1, 0, 0, 0);
        unmeasured.stats.num_rows = 5;
        g.task_succeeded(StageId(1), 0, attempt, vec![unmeasured], Default::default())
            .unwrap();
        assert_eq!(pending_stages(&g), vec![1, 2]);
        run(&mut g, 1, 1, 1);
        assert!(join_plan_text(&g).contains("mode=Partitioned"));
    }

    #[test]
    fn a_probe_side_the_join_stage_could_not_take_is_not_held() {
        let job_id = JobId::parse("job1").unwrap();
        // The final stage writes one output per task: 3 probe partitions
        // would make 3 tasks of the 2 its readers count on.
        let mut plan = partitioned_join_plan(&job_id, JoinType::Inner, 3);
        plan.broadcast_output_bytes = 100;
        let g = JobGraph::try_new(job_id, plan, 3).unwrap();
        assert_eq!(g.stage(StageId(3)).unwrap().late_broadcast, None);
        assert_eq!(pending_stages(&g), vec![1, 2]);
    }

    #[test]
    fn zero_turns_adaptive_broadcast_off() {
        let job_id = JobId::parse("job1").unwrap();
        let plan = partitioned_join_plan(&job_id, JoinType::Inner, 2);
        assert_eq!(plan.broadcast_output_bytes, 0);
        let mut g = JobGraph::try_new(job_id, plan, 3).unwrap();
        assert_eq!(pending_stages(&g), vec![1, 2]);
        run(&mut g, 1, 0, 1);
        run(&mut g, 1, 1, 1);
        assert!(join_plan_text(&g).contains("mode=Partitioned"));
    }
}
