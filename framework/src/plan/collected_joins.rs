//! Joins that collect one side and emit that side's unmatched (or matched)
//! rows at the end are not safe to spread over tasks as DataFusion plans them.
//!
//! For left, left-semi, left-anti, left-mark and full joins in `CollectLeft`
//! mode, DataFusion emits the build side's rows once the *last* output
//! partition of the join finishes, tracked by a counter shared by the
//! partitions of one plan instance. A distributed task runs one partition of
//! its own plan instance, so that moment never comes and those rows are lost.
//!
//! Before splitting into stages:
//! - such a hash join becomes a partitioned join: both sides are
//!   hash-repartitioned on the join keys, so each task owns its build rows;
//! - a null-aware anti join (`x NOT IN (subquery)`) cannot be partitioned:
//!   one NULL anywhere on the probe side empties the whole result, so like a
//!   nested-loop join (no keys to partition on) it reads its probe side as a
//!   single partition, and one task sees every probe row.

use std::sync::Arc;

use datafusion::common::JoinType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, PartitionMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, Partitioning, replace_children_if_necessary,
};

use crate::error::Result;

/// Whether the join emits build-side rows after all probe rows were seen.
fn emits_build_rows_at_end(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Left
            | JoinType::LeftSemi
            | JoinType::LeftAnti
            | JoinType::LeftMark
            | JoinType::Full
    )
}

/// The join with its probe side read as one partition.
fn with_single_partition_probe(
    join: Arc<dyn ExecutionPlan>,
    build: Arc<dyn ExecutionPlan>,
    probe: Arc<dyn ExecutionPlan>,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    let probe: Arc<dyn ExecutionPlan> = Arc::new(CoalescePartitionsExec::new(probe));
    replace_children_if_necessary(join, vec![build, probe])
}

/// Rewrites the joins described in the module documentation.
pub fn distribute_collected_joins(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let rewritten = plan.transform_up(|node| {
        if let Some(join) = node.downcast_ref::<HashJoinExec>() {
            let probe_partitions = join.right().output_partitioning().partition_count();
            let unsafe_collect = *join.partition_mode() == PartitionMode::CollectLeft
                && emits_build_rows_at_end(*join.join_type())
                && probe_partitions > 1;
            if unsafe_collect && join.null_aware {
                let (build, probe) = (Arc::clone(join.left()), Arc::clone(join.right()));
                return Ok(Transformed::yes(with_single_partition_probe(
                    node, build, probe,
                )?));
            }
            if unsafe_collect {
                let build = match join.left().downcast_ref::<CoalescePartitionsExec>() {
                    Some(coalesce) if coalesce.fetch().is_none() => Arc::clone(coalesce.input()),
                    _ => Arc::clone(join.left()),
                };
                let (left_keys, right_keys): (Vec<_>, Vec<_>) = join.on().iter().cloned().unzip();
                let left: Arc<dyn ExecutionPlan> = Arc::new(RepartitionExec::try_new(
                    build,
                    Partitioning::Hash(left_keys, probe_partitions),
                )?);
                let right: Arc<dyn ExecutionPlan> = Arc::new(RepartitionExec::try_new(
                    Arc::clone(join.right()),
                    Partitioning::Hash(right_keys, probe_partitions),
                )?);
                let partitioned = join
                    .builder()
                    .with_partition_mode(PartitionMode::Partitioned)
                    .with_new_children(vec![left, right])?
                    .recompute_properties()
                    .reset_state()
                    .build_exec()?;
                return Ok(Transformed::yes(partitioned));
            }
        }
        if let Some(join) = node.downcast_ref::<NestedLoopJoinExec>()
            && emits_build_rows_at_end(*join.join_type())
            && join.right().output_partitioning().partition_count() > 1
        {
            let (build, probe) = (Arc::clone(join.left()), Arc::clone(join.right()));
            return Ok(Transformed::yes(with_single_partition_probe(
                node, build, probe,
            )?));
        }
        Ok(Transformed::no(node))
    })?;
    Ok(rewritten.data)
}
