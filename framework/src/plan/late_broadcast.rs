//! Broadcast decided from real sizes: a partitioned hash join whose build
//! side turned out small once its stage ran.
//!
//! DataFusion picks a collected ("broadcast") hash join only when a side's
//! *estimated* size is below `hash_join_single_partition_threshold`; an
//! estimate that is too high (a filter more selective than guessed, the
//! output of a join or an aggregate) plans a partitioned join, and both sides
//! are shuffled by the join keys, usually the far larger probe side too. Once
//! the build side's stage has run, its size is known. If it is below the
//! threshold and the probe side's stage has not started, the join stage is
//! rewritten: each of its tasks reads the whole build side, and the probe
//! side's plan runs inside the join stage, so its rows are joined where they
//! are read instead of being shuffled. The probe stage is left with nothing
//! to do.
//!
//! The rewrite keeps the join's meaning when:
//! - the join never emits build rows on their own (inner, right, right
//!   semi/anti/mark), since with the build side collected every task would
//!   emit them (see `collected_joins`), and it is not null-aware;
//! - both sides are hash reads of a stage, directly under the join, and the
//!   stage reads nothing else by hash;
//! - every operator between the join and the stage's output works one
//!   partition at a time (the join's output is then partitioned like the
//!   probe side's plan, no longer by the join keys);
//! - a stage writing one output per task keeps its task count, since its
//!   readers may count on it.

use std::sync::Arc;

use datafusion::common::JoinType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::{Distribution, ExecutionPlan, ExecutionPlanProperties};

use super::{ShuffleReadMode, ShuffleWriterExec, UnresolvedShuffleExec, read_equivalence};
use crate::error::{BallistaError, Result};
use crate::ids::StageId;

/// A partitioned join of a stage that may become a broadcast join once its
/// build side's stage has run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LateBroadcast {
    /// The stage read as the join's build (left) side.
    pub build: StageId,
    /// The stage read as its probe (right) side.
    pub probe: StageId,
}

/// Operators that may stand between the join and the stage's output: each
/// output partition comes from the same partition of its input.
const PER_PARTITION: &[&str] = &[
    "ProjectionExec",
    "FilterExec",
    "CoalesceBatchesExec",
    "CooperativeExec",
    "LocalLimitExec",
    "SortExec",
    "AggregateExec",
    "HashJoinExec",
];

/// The join of `stage` that may be broadcast once its build side has run
/// (see the module docs), if any.
pub fn late_broadcast_candidate(stage: &ShuffleWriterExec) -> Option<LateBroadcast> {
    if hash_reads(stage.input()) != 2 {
        return None;
    }
    find_join(stage.input())
}

fn hash_reads(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let mut count = 0;
    let _ = plan.apply(|node| {
        if node
            .downcast_ref::<UnresolvedShuffleExec>()
            .is_some_and(|read| read.mode() == ShuffleReadMode::Hash)
        {
            count += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    });
    count
}

fn hash_read_of(plan: &Arc<dyn ExecutionPlan>) -> Option<StageId> {
    plan.downcast_ref::<UnresolvedShuffleExec>()
        .filter(|read| read.mode() == ShuffleReadMode::Hash)
        .map(UnresolvedShuffleExec::stage_id)
}

/// Whether the join keeps its meaning with its build side collected whole
/// in every task: it never emits build rows on their own.
fn collectable(join: &HashJoinExec) -> bool {
    matches!(
        join.join_type(),
        JoinType::Inner
            | JoinType::Right
            | JoinType::RightSemi
            | JoinType::RightAnti
            | JoinType::RightMark
    ) && !join.null_aware
}

/// The join that may collect its build side at run time, when it is
/// reached from `node` through operators that work partition by partition.
fn find_join(node: &Arc<dyn ExecutionPlan>) -> Option<LateBroadcast> {
    if let Some(join) = node.downcast_ref::<HashJoinExec>()
        && *join.partition_mode() == PartitionMode::Partitioned
    {
        if !collectable(join) {
            return None;
        }
        return Some(LateBroadcast {
            build: hash_read_of(join.left())?,
            probe: hash_read_of(join.right())?,
        });
    }
    if !PER_PARTITION.contains(&node.name()) {
        return None;
    }
    // A collected join above, whose probe side this join would feed with
    // other partitions, must not emit build rows of its own either.
    if let Some(join) = node.downcast_ref::<HashJoinExec>()
        && !collectable(join)
    {
        return None;
    }
    if let Some(aggregate) = node.downcast_ref::<AggregateExec>()
        && *aggregate.mode() != AggregateMode::Partial
    {
        return None;
    }
    let required = node.input_distribution_requirements();
    let (index, child) = node
        .children()
        .into_iter()
        .enumerate()
        .find(|(_, child)| hash_reads(child) > 0)?;
    if !matches!(
        required.child_distribution(index),
        Some(Distribution::UnspecifiedDistribution)
    ) {
        return None;
    }
    find_join(child)
}

/// `stage` with the join of `candidate` collecting its whole build side in
/// every task and running `probe_input` (the probe stage's plan below its
/// shuffle writer) as its probe side. `build_input` is the build stage's
/// plan below its writer, for what its rows promise. `None` when the stage
/// writes one output per task and would change its task count.
pub fn broadcast_build_side(
    stage: &ShuffleWriterExec,
    candidate: LateBroadcast,
    build_input: &Arc<dyn ExecutionPlan>,
    probe_input: Arc<dyn ExecutionPlan>,
) -> Result<Option<ShuffleWriterExec>> {
    if stage.shuffle_partitioning().is_none()
        && probe_input.output_partitioning().partition_count() != stage.input_partition_count()
    {
        return Ok(None);
    }
    let mut replaced = false;
    let rewritten = Arc::clone(stage.input()).transform_up(|node| {
        let Some(join) = node.downcast_ref::<HashJoinExec>() else {
            return Ok(Transformed::no(node));
        };
        let build_read = join
            .left()
            .downcast_ref::<UnresolvedShuffleExec>()
            .filter(|read| read.stage_id() == candidate.build);
        let (Some(build_read), Some(candidate_probe)) = (build_read, hash_read_of(join.right()))
        else {
            return Ok(Transformed::no(node));
        };
        if candidate_probe != candidate.probe {
            return Ok(Transformed::no(node));
        }
        let whole_build: Arc<dyn ExecutionPlan> = Arc::new(UnresolvedShuffleExec::new(
            candidate.build,
            ShuffleReadMode::Coalesce,
            build_read.input_partitions(),
            datafusion::physical_plan::Partitioning::UnknownPartitioning(1),
            read_equivalence(build_input, ShuffleReadMode::Coalesce),
        ));
        let collected = join
            .builder()
            .with_partition_mode(PartitionMode::CollectLeft)
            .with_new_children(vec![whole_build, Arc::clone(&probe_input)])?
            .recompute_properties()
            .reset_state()
            .build_exec()?;
        replaced = true;
        Ok(Transformed::yes(collected))
    })?;
    if !replaced {
        return Err(BallistaError::Internal(format!(
            "stage {} has no partitioned join of stages {} and {}",
            stage.stage_id(),
            candidate.build,
            candidate.probe
        )));
    }
    Ok(Some(ShuffleWriterExec::try_new(
        stage.job_id().clone(),
        stage.stage_id(),
        rewritten.data,
        stage.shuffle_partitioning().cloned(),
    )?))
}

#[cfg(test)]
mod tests;
