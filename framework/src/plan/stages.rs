//! Splitting an optimized physical plan into stages, and resolving a stage's
//! shuffle reads once its inputs are complete.
//!
//! Exchange boundaries:
//! - `RepartitionExec` (hash, round robin, range): the child becomes a stage
//!   writing that partitioning; the consumer reads partition `p` of every map
//!   task (a sort-preserving repartition re-sorts each read partition).
//! - `CoalescePartitionsExec` over several partitions: the child becomes a
//!   stage; the consumer reads every map task's output as one partition. This
//!   is also how a collected join build side is broadcast: every task of the
//!   join stage reads all of it.
//! - `SortPreservingMergeExec` over several partitions: the child becomes a
//!   stage; the merge reads one map task per partition, order preserved.
//!
//! - An input that every partition of its consumer reads whole (the build
//!   side of a collected join) becomes a stage of one task, unless
//!   recomputing it in each task is cheap and gives the same rows (a shuffle
//!   read or a scan, maybe projected or filtered): a LIMIT, a sort with a
//!   fetch, an aggregate or a window computed once per consumer task could
//!   differ from task to task, since shuffle reads return rows in arrival
//!   order. An operator whose meaning spans all of its input runs exactly once.
//!
//! A recursive query runs whole in one task: its iterations exchange rows
//! through an in-memory work table, which cannot span processes.
//!
//! The final stage writes the plan's output; a top-level coalesce is dropped
//! so that the client reads the final partitions in turn instead of paying
//! for one more stage.
//!
//! Uncorrelated scalar subqueries: DataFusion wraps the whole plan in a
//! `ScalarSubqueryExec` that computes each subquery once and hands the values
//! to `ScalarSubqueryExpr`s anywhere below. Once the plan is cut into stages
//! those expressions can land in stages below the wrapper, so every stage
//! that uses a subquery value gets its own wrapper (with the subquery plans,
//! themselves split into stages). Each task then computes the value by reading
//! the subquery's last stage, which is small; a subquery whose last step is
//! not cheap to repeat (a LIMIT, an aggregate) is a stage of its own, so that
//! every task sees the same value.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::physical_planning_context::ScalarSubqueryResults;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::scalar_subquery::ScalarSubqueryExpr;
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::memory::LazyMemoryExec;
use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::recursive_query::RecursiveQueryExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::scalar_subquery::{ScalarSubqueryExec, ScalarSubqueryLink};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{
    Distribution, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    replace_children_if_necessary,
};

use super::{
    ShuffleReadMode, ShuffleReaderExec, ShuffleWriterExec, UnresolvedShuffleExec, read_equivalence,
};
use crate::error::{BallistaError, Result};
use crate::ids::{JobId, StageId};
use crate::plugin::shuffle::ShuffleLocation;

/// One stage of a distributed plan.
#[derive(Debug, Clone)]
pub struct StagePlan {
    /// Stage id (unique within the job).
    pub stage_id: StageId,
    /// The stage plan, rooted at its [`ShuffleWriterExec`].
    pub plan: Arc<ShuffleWriterExec>,
    /// Stages whose output this stage reads.
    pub inputs: Vec<StageId>,
}

/// A physical plan split into stages.
#[derive(Debug, Clone)]
pub struct DistributedPlan {
    /// Stages, producers before their consumers.
    pub stages: Vec<StagePlan>,
    /// The stage whose output is the query result.
    pub final_stage: StageId,
    /// Shuffled input each task of a stage should get: a stage whose input
    /// turns out smaller runs as fewer tasks
    /// ([`PartitionGroups`](super::PartitionGroups)); 0 keeps the planned
    /// counts.
    pub task_input_bytes: u64,
    /// Largest output of a stage read as the build side of a partitioned
    /// join for the join to broadcast it once it has run, when the probe
    /// side has not started ([`late_broadcast_candidate`](super::late_broadcast_candidate)); 0
    /// keeps every join as planned.
    pub broadcast_output_bytes: u64,
    /// Whether a consumer stage may start while the stages it reads are
    /// still running their last tasks, on slots that would be idle.
    pub early_consumers: bool,
}

impl DistributedPlan {
    /// A readable description of every stage, for logs and EXPLAIN.
    pub fn display(&self) -> String {
        let mut out = String::new();
        for stage in &self.stages {
            let plan: Arc<dyn ExecutionPlan> = stage.plan.clone();
            let tasks = stage.plan.input_partition_count();
            let reads = match stage.inputs.as_slice() {
                [] => String::new(),
                inputs => format!(
                    ", reads stage {}",
                    inputs
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let last = if stage.stage_id == self.final_stage {
                ", final"
            } else {
                ""
            };
            out.push_str(&format!(
                "=== stage {} ({tasks} task{}{reads}{last}) ===\n{}",
                stage.stage_id,
                if tasks == 1 { "" } else { "s" },
                datafusion::physical_plan::displayable(plan.as_ref()).indent(false)
            ));
        }
        out.trim_end().to_string()
    }
}

/// For unit tests: two stages, a 3-task map stage hash-partitioned into 2
/// outputs, then the final stage.
#[cfg(test)]
pub(crate) fn two_stage_test_plan(job_id: &JobId) -> DistributedPlan {
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_plan::Partitioning;
    use datafusion::physical_plan::empty::EmptyExec;

    let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
    let scan = Arc::new(EmptyExec::new(schema).with_partitions(3));
    let repartition = RepartitionExec::try_new(
        scan,
        Partitioning::Hash(vec![Arc::new(Column::new("k", 0))], 2),
    )
    .expect("a valid repartition");
    let plan = split_into_stages(job_id, Arc::new(repartition)).expect("two stages");
    assert_eq!(plan.stages.len(), 2);
    plan
}

/// Splits `plan` into stages.
pub fn split_into_stages(job_id: &JobId, plan: Arc<dyn ExecutionPlan>) -> Result<DistributedPlan> {
    let mut splitter = Splitter {
        job_id: job_id.clone(),
        stages: Vec::new(),
        subquery_scopes: Vec::new(),
    };
    let plan = super::distribute_collected_joins(plan)?;
    let root = match plan.downcast_ref::<CoalescePartitionsExec>() {
        Some(coalesce) if coalesce.fetch().is_none() => Arc::clone(coalesce.input()),
        _ => plan,
    };
    let root = splitter.visit(root)?;
    let final_stage = splitter.add_stage(root, None)?;
    Ok(DistributedPlan {
        stages: splitter.stages,
        final_stage,
        task_input_bytes: 0,
        broadcast_output_bytes: 0,
        early_consumers: false,
    })
}

/// The subqueries of an enclosing `ScalarSubqueryExec`, already split.
#[derive(Clone)]
struct SubqueryScope {
    links: Vec<ScalarSubqueryLink>,
    results: ScalarSubqueryResults,
}

struct Splitter {
    job_id: JobId,
    stages: Vec<StagePlan>,
    /// Enclosing subquery scopes, innermost last.
    subquery_scopes: Vec<SubqueryScope>,
}

impl Splitter {
    /// Wraps `plan` in the enclosing subquery scopes when it uses a subquery
    /// value that nothing inside it computes.
    fn bind_subqueries(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        if self.subquery_scopes.is_empty() || !uses_unbound_subquery(&plan)? {
            return Ok(plan);
        }
        let mut plan = plan;
        for scope in self.subquery_scopes.iter().rev() {
            plan = Arc::new(ScalarSubqueryExec::new(
                plan,
                scope.links.clone(),
                scope.results.clone(),
            ));
        }
        Ok(plan)
    }

    fn add_stage(
        &mut self,
        input: Arc<dyn ExecutionPlan>,
        partitioning: Option<Partitioning>,
    ) -> Result<StageId> {
        let input = self.bind_subqueries(input)?;
        let stage_id = StageId(self.stages.len() as u32 + 1);
        let inputs = input_stages(&input)?;
        let plan = Arc::new(ShuffleWriterExec::try_new(
            self.job_id.clone(),
            stage_id,
            input,
            partitioning,
        )?);
        self.stages.push(StagePlan {
            stage_id,
            plan,
            inputs,
        });
        Ok(stage_id)
    }

    /// Makes `plan` a stage and returns a read of all of its output as one
    /// partition.
    fn read_whole(&mut self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        let map_tasks = plan.output_partitioning().partition_count();
        let equivalence = read_equivalence(&plan, ShuffleReadMode::Coalesce);
        let stage_id = self.add_stage(plan, None)?;
        Ok(Arc::new(UnresolvedShuffleExec::new(
            stage_id,
            ShuffleReadMode::Coalesce,
            map_tasks,
            Partitioning::UnknownPartitioning(1),
            equivalence,
        )))
    }

    /// Inputs that every output partition of `plan` reads whole (see the
    /// module documentation) become stages of their own unless they are
    /// cheap and deterministic to recompute.
    fn isolate_broadcast_inputs(
        &mut self,
        plan: &Arc<dyn ExecutionPlan>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Vec<Arc<dyn ExecutionPlan>>> {
        if plan.output_partitioning().partition_count() <= 1 {
            return Ok(children);
        }
        let required = plan.input_distribution_requirements();
        children
            .into_iter()
            .enumerate()
            .map(|(index, child)| {
                let read_whole = matches!(
                    required.child_distribution(index),
                    Some(Distribution::SinglePartition)
                );
                if !read_whole || is_replicable(&child)? {
                    Ok(child)
                } else {
                    self.read_whole(child)
                }
            })
            .collect()
    }

    fn visit(&mut self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(exec) = plan.downcast_ref::<ScalarSubqueryExec>() {
            let links = exec
                .subqueries()
                .iter()
                .map(|link| {
                    let plan = self.visit(Arc::clone(&link.plan))?;
                    let plan = if is_replicable(&plan)? {
                        plan
                    } else {
                        self.read_whole(plan)?
                    };
                    Ok(ScalarSubqueryLink {
                        plan,
                        index: link.index,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            self.subquery_scopes.push(SubqueryScope {
                links,
                results: exec.results().clone(),
            });
            let input = self.visit(Arc::clone(exec.input()));
            let scope = self.subquery_scopes.pop().expect("pushed above");
            let input = input?;
            return Ok(if uses_unbound_subquery(&input)? {
                Arc::new(ScalarSubqueryExec::new(input, scope.links, scope.results))
            } else {
                input
            });
        }
        if plan.is::<RecursiveQueryExec>() {
            return Ok(plan);
        }
        let children = plan
            .children()
            .into_iter()
            .map(|child| self.visit(Arc::clone(child)))
            .collect::<Result<Vec<_>>>()?;
        let children = self.isolate_broadcast_inputs(&plan, children)?;

        if let Some(repartition) = plan.downcast_ref::<RepartitionExec>() {
            let [child] = children.as_slice() else {
                return Err(BallistaError::Internal(
                    "RepartitionExec without its input".into(),
                ));
            };
            let partitioning = repartition.partitioning().clone();
            let output_partitions = partitioning.partition_count();
            let stage_id = self.add_stage(Arc::clone(child), Some(partitioning.clone()))?;
            let declared = match &partitioning {
                Partitioning::Hash(..) => partitioning.clone(),
                _ => Partitioning::UnknownPartitioning(output_partitions),
            };
            let read: Arc<dyn ExecutionPlan> = Arc::new(UnresolvedShuffleExec::new(
                stage_id,
                ShuffleReadMode::Hash,
                child.output_partitioning().partition_count(),
                declared,
                read_equivalence(child, ShuffleReadMode::Hash),
            ));
            // A sort-preserving repartition promised sorted partitions; reads
            // interleave map outputs, so sort each partition again.
            if repartition.preserve_order()
                && let Some(ordering) = child.output_ordering()
            {
                let sort = SortExec::new(ordering.clone(), read).with_preserve_partitioning(true);
                return Ok(Arc::new(sort));
            }
            return Ok(read);
        }

        if plan.is::<CoalescePartitionsExec>() || plan.is::<SortPreservingMergeExec>() {
            let [child] = children.as_slice() else {
                return Err(BallistaError::Internal(format!(
                    "{} without its input",
                    plan.name()
                )));
            };
            let input_partitions = child.output_partitioning().partition_count();
            if input_partitions <= 1 {
                return Ok(replace_children_if_necessary(plan, children)?);
            }
            let stage_id = self.add_stage(Arc::clone(child), None)?;
            let read: Arc<dyn ExecutionPlan> = if plan.is::<SortPreservingMergeExec>() {
                Arc::new(UnresolvedShuffleExec::new(
                    stage_id,
                    ShuffleReadMode::PerMapTask,
                    input_partitions,
                    Partitioning::UnknownPartitioning(input_partitions),
                    read_equivalence(child, ShuffleReadMode::PerMapTask),
                ))
            } else {
                Arc::new(UnresolvedShuffleExec::new(
                    stage_id,
                    ShuffleReadMode::Coalesce,
                    input_partitions,
                    Partitioning::UnknownPartitioning(1),
                    read_equivalence(child, ShuffleReadMode::Coalesce),
                ))
            };
            return Ok(replace_children_if_necessary(plan, vec![read])?);
        }

        Ok(replace_children_if_necessary(plan, children)?)
    }
}

/// Whether every task may compute `plan` itself and get the same rows at
/// little cost: shuffle reads and scans, maybe projected, filtered or merged
/// into one partition, with no row limit (rows read from a shuffle arrive in
/// no fixed order, so a limit over them could keep different rows in each
/// task) and no volatile expression.
fn is_replicable(plan: &Arc<dyn ExecutionPlan>) -> Result<bool> {
    let cheap = plan.is::<UnresolvedShuffleExec>()
        || plan.is::<DataSourceExec>()
        || plan.is::<EmptyExec>()
        || plan.is::<PlaceholderRowExec>()
        || plan.is::<LazyMemoryExec>()
        || plan.is::<ProjectionExec>()
        || plan.is::<FilterExec>()
        || plan.name() == "CoalesceBatchesExec"
        || plan.is::<CooperativeExec>()
        || plan.is::<CoalescePartitionsExec>();
    if !cheap || plan.fetch().is_some() {
        return Ok(false);
    }
    let mut volatile = false;
    plan.apply_expressions(&mut |expr: &Arc<dyn PhysicalExpr>| {
        if is_volatile(expr) {
            volatile = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if volatile {
        return Ok(false);
    }
    for child in plan.children() {
        if !is_replicable(child)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether some expression in `plan` reads a scalar subquery value that no
/// `ScalarSubqueryExec` inside `plan` provides.
fn uses_unbound_subquery(plan: &Arc<dyn ExecutionPlan>) -> Result<bool> {
    if plan.is::<ScalarSubqueryExec>() {
        return Ok(false);
    }
    let mut found = false;
    plan.apply_expressions(&mut |expr: &Arc<dyn PhysicalExpr>| {
        expr.apply(|e| {
            if e.is::<ScalarSubqueryExpr>() {
                found = true;
                Ok(TreeNodeRecursion::Stop)
            } else {
                Ok(TreeNodeRecursion::Continue)
            }
        })
    })?;
    if found {
        return Ok(true);
    }
    for child in plan.children() {
        if uses_unbound_subquery(child)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The stages a stage plan reads from.
fn input_stages(plan: &Arc<dyn ExecutionPlan>) -> Result<Vec<StageId>> {
    let mut inputs = Vec::new();
    plan.apply(|node| {
        if let Some(u) = node.downcast_ref::<UnresolvedShuffleExec>() {
            inputs.push(u.stage_id());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    inputs.sort();
    inputs.dedup();
    Ok(inputs)
}

/// Replaces every [`UnresolvedShuffleExec`] in `plan` by a
/// [`ShuffleReaderExec`] over the committed outputs of its stage.
/// `outputs[stage]` lists every location the stage's tasks committed.
pub fn resolve_shuffle_reads(
    plan: Arc<dyn ExecutionPlan>,
    outputs: &HashMap<StageId, Vec<ShuffleLocation>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let resolved = plan.transform_up(|node| {
        let Some(u) = node.downcast_ref::<UnresolvedShuffleExec>() else {
            return Ok(Transformed::no(node));
        };
        let locations = outputs.get(&u.stage_id()).ok_or_else(|| {
            BallistaError::Internal(format!("stage {} has not completed", u.stage_id()))
        })?;
        let output_partitions = u.output_partitioning().partition_count();
        let mut partitions: Vec<Vec<ShuffleLocation>> = vec![Vec::new(); output_partitions];
        for location in locations {
            let target = match u.mode() {
                ShuffleReadMode::Hash => location.output_partition,
                ShuffleReadMode::PerMapTask => location.map_partition,
                ShuffleReadMode::Coalesce => 0,
            };
            let slot = partitions.get_mut(target).ok_or_else(|| {
                BallistaError::Internal(format!(
                    "stage {} wrote partition {target}, beyond the {output_partitions} its reader expects",
                    u.stage_id()
                ))
            })?;
            slot.push(location.clone());
        }
        for p in &mut partitions {
            p.sort_by_key(|l| (l.map_partition, l.output_partition));
        }
        let reader = ShuffleReaderExec::try_new(
            u.stage_id(),
            u.schema(),
            partitions,
            u.output_partitioning().clone(),
            u.equivalence().clone(),
        )?;
        Ok(Transformed::yes(Arc::new(reader) as Arc<dyn ExecutionPlan>))
    })?;
    Ok(resolved.data)
}
