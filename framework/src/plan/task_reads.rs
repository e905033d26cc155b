//! Sending each task only the shuffle locations it reads.
//!
//! A resolved stage plan lists, in every shuffle reader, the locations of
//! every partition. When a consumer stage of N tasks reads a hash shuffle of
//! M map tasks, each task's plan would carry all N×M locations although it
//! reads M of them: N² bytes per stage, which dominates launching at scale.
//! Where it is safe, a task's plan keeps only its own partition's locations
//! (the other partitions stay, empty).
//!
//! It is safe when task `p` executes partition `p` of the reader and
//! nothing else of it: every operator between the stage's root and the
//! reader maps partition `p` of its output to partition `p` of its inputs.
//! Only operators known to do so are allowed (a union renumbers its
//! children's partitions; a scalar subquery or a nested-loop join may
//! execute every partition of an input), and only readers with as many
//! partitions as the stage has tasks are trimmed.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::ExecutionPlan;

use super::ShuffleReaderExec;
use crate::error::Result;

/// Operators whose partition `p` reads exactly partition `p` of each input
/// (or, for a join's collected side, an input of one partition).
const PARTITION_PRESERVING: &[&str] = &[
    "ShuffleWriterExec",
    "ShuffleReaderExec",
    "ProjectionExec",
    "FilterExec",
    "AggregateExec",
    "HashJoinExec",
    "SortMergeJoinExec",
    "SymmetricHashJoinExec",
    "SortExec",
    "CoalesceBatchesExec",
    "BoundedWindowAggExec",
    "WindowAggExec",
    "LocalLimitExec",
    "CooperativeExec",
    "DataSourceExec",
    "EmptyExec",
    "PlaceholderRowExec",
];

/// Fewest locations in trimmable readers for trimming to be worth encoding
/// the plan once per task.
const WORTHWHILE_LOCATIONS: usize = 256;

/// Whether tasks of `plan` (a resolved stage plan of `tasks` tasks) should
/// each get a plan trimmed to their own partition's locations.
pub fn trim_per_task(plan: &Arc<dyn ExecutionPlan>, tasks: usize) -> bool {
    let mut safe = true;
    let mut trimmable = 0;
    let _ = plan.apply(|node| {
        if !PARTITION_PRESERVING.contains(&node.name()) {
            safe = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        if let Some(reader) = node.downcast_ref::<ShuffleReaderExec>()
            && reader.partitions().len() == tasks
        {
            trimmable += reader.partitions().iter().map(Vec::len).sum::<usize>();
        }
        Ok(TreeNodeRecursion::Continue)
    });
    safe && tasks > 1 && trimmable >= WORTHWHILE_LOCATIONS
}

/// `plan` as task `partition` of `tasks` needs it: readers with one
/// partition per task keep only that partition's locations. Only for plans
/// [`trim_per_task`] accepts.
pub fn plan_for_task(
    plan: &Arc<dyn ExecutionPlan>,
    tasks: usize,
    partition: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    let trimmed = Arc::clone(plan).transform_up(|node| {
        let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() else {
            return Ok(Transformed::no(node));
        };
        if reader.partitions().len() != tasks {
            return Ok(Transformed::no(node));
        }
        let partitions = reader
            .partitions()
            .iter()
            .enumerate()
            .map(|(p, locations)| {
                if p == partition {
                    locations.clone()
                } else {
                    Vec::new()
                }
            })
            .collect();
        let trimmed = ShuffleReaderExec::try_new(
            reader.stage_id(),
            reader.schema(),
            partitions,
            reader.output_partitioning().clone(),
            reader.equivalence().clone(),
        )?;
        Ok(Transformed::yes(Arc::new(trimmed) as Arc<dyn ExecutionPlan>))
    })?;
    Ok(trimmed.data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ExecutorId, JobId, StageId};
    use crate::plan::ShuffleWriterExec;
    use crate::plugin::shuffle::{ExecutorAddress, PartitionStats, ShuffleLocation};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::EquivalenceProperties;
    use datafusion::physical_plan::Partitioning;
    use datafusion::physical_plan::union::UnionExec;

    fn reader(partitions: usize, per_partition: usize) -> Arc<dyn ExecutionPlan> {
        let job_id = JobId::parse("job1").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let locations = (0..partitions)
            .map(|p| {
                (0..per_partition)
                    .map(|m| ShuffleLocation {
                        job_id: job_id.clone(),
                        stage_id: StageId(1),
                        map_partition: m,
                        output_partition: p,
                        attempt: 0,
                        executor: ExecutorAddress {
                            id: ExecutorId::new("e1"),
                            host: "127.0.0.1".into(),
                            port: 1,
                        },
                        path: format!("job1/s1/m{m}-a0-p{p}.arrow"),
                        stats: PartitionStats::default(),
                        durable: false,
                        ticket: Vec::new(),
                    })
                    .collect()
            })
            .collect();
        Arc::new(
            ShuffleReaderExec::try_new(
                StageId(1),
                Arc::clone(&schema),
                locations,
                Partitioning::UnknownPartitioning(partitions),
                EquivalenceProperties::new(schema),
            )
            .unwrap(),
        )
    }

    fn stage(input: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        Arc::new(
            ShuffleWriterExec::try_new(JobId::parse("job1").unwrap(), StageId(2), input, None)
                .unwrap(),
        )
    }

    fn reader_partitions(plan: &Arc<dyn ExecutionPlan>) -> Vec<usize> {
        let mut counts = Vec::new();
        let _ = plan.apply(|node| {
            if let Some(r) = node.downcast_ref::<ShuffleReaderExec>() {
                counts.extend(r.partitions().iter().map(Vec::len));
            }
            Ok(TreeNodeRecursion::Continue)
        });
        counts
    }

    #[test]
    fn a_task_gets_only_its_own_partitions_locations() {
        let plan = stage(reader(4, 100));
        assert!(trim_per_task(&plan, 4));
        let task = plan_for_task(&plan, 4, 2).unwrap();
        assert_eq!(reader_partitions(&task), vec![0, 0, 100, 0]);
        // The stage plan itself is untouched.
        assert_eq!(reader_partitions(&plan), vec![100; 4]);
    }

    #[test]
    fn plans_that_may_read_other_partitions_or_few_locations_are_sent_whole() {
        // A union renumbers its children's partitions.
        let union: Arc<dyn ExecutionPlan> =
            UnionExec::try_new(vec![reader(2, 200), reader(2, 200)]).unwrap();
        assert!(!trim_per_task(&stage(union), 4));
        // Too few locations to be worth a plan per task.
        assert!(!trim_per_task(&stage(reader(4, 2)), 4));
        // A reader that is not one partition per task.
        assert!(!trim_per_task(&stage(reader(1, 400)), 4));
    }
}
