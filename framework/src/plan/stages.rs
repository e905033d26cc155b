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
//! the subquery's last stage, which is small.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::physical_planning_context::ScalarSubqueryResults;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::scalar_subquery::ScalarSubqueryExpr;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::scalar_subquery::{ScalarSubqueryExec, ScalarSubqueryLink};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, Partitioning, replace_children_if_necessary,
};

use super::{ShuffleReadMode, ShuffleReaderExec, ShuffleWriterExec, UnresolvedShuffleExec};
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

    fn visit(&mut self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(exec) = plan.downcast_ref::<ScalarSubqueryExec>() {
            let links = exec
                .subqueries()
                .iter()
                .map(|link| {
                    Ok(ScalarSubqueryLink {
                        plan: self.visit(Arc::clone(&link.plan))?,
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
        let children = plan
            .children()
            .into_iter()
            .map(|child| self.visit(Arc::clone(child)))
            .collect::<Result<Vec<_>>>()?;

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
                child.schema(),
                ShuffleReadMode::Hash,
                child.output_partitioning().partition_count(),
                declared,
                None,
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
                    child.schema(),
                    ShuffleReadMode::PerMapTask,
                    input_partitions,
                    Partitioning::UnknownPartitioning(input_partitions),
                    child.output_ordering().cloned(),
                ))
            } else {
                Arc::new(UnresolvedShuffleExec::new(
                    stage_id,
                    child.schema(),
                    ShuffleReadMode::Coalesce,
                    input_partitions,
                    Partitioning::UnknownPartitioning(1),
                    None,
                ))
            };
            return Ok(replace_children_if_necessary(plan, vec![read])?);
        }

        Ok(replace_children_if_necessary(plan, children)?)
    }
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
            u.output_ordering().cloned(),
        )?;
        Ok(Transformed::yes(Arc::new(reader) as Arc<dyn ExecutionPlan>))
    })?;
    Ok(resolved.data)
}
