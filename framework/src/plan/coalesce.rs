//! Adaptive task counts: fewer tasks for a stage whose shuffled input
//! turned out small.
//!
//! A stage's task count is fixed when the query is planned
//! (`datafusion.execution.target_partitions`), before anyone knows how much
//! its inputs will hold. Once every stage it reads has completed, the
//! scheduler knows the bytes of each shuffled partition; a stage whose input
//! is small then runs as fewer tasks, each reading a run of consecutive
//! partitions, so that each task gets about `ballista.task_input_bytes`
//! (a stage over a small input runs as one task). Every task costs a launch,
//! a fetch from every map task and a report; a small stage's tasks cost more
//! in those than in their work.
//!
//! It is safe when every read of the stage that has one partition per task
//! is regrouped the same way, and every operator between them and the
//! stage's output maps partition `p` of its output to partition `p` of its
//! inputs (the operators [`PerTaskPlans`](super::PerTaskPlans) trims for):
//! rows that met in one task before (equal join or grouping keys land in the
//! same partition of every hash read) still meet in one task. Stages with
//! another operator, with a file scan or other source of several partitions,
//! with a read in another mode than by hash (its partitions are the map
//! tasks' own, and may be ordered), or with a hash read of a single map
//! task (each of its partitions keeps that task's order, which DataFusion
//! may have planned on) keep their planned count.

use std::ops::Range;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};

use super::task_reads::PARTITION_PRESERVING;
use super::{ShuffleReadMode, ShuffleReaderExec, UnresolvedShuffleExec};
use crate::error::{BallistaError, Result};

/// Whether a stage of `tasks` tasks may run as fewer, judged from its plan
/// before its reads are resolved (see the module docs).
pub fn may_coalesce(unresolved: &Arc<dyn ExecutionPlan>, tasks: usize) -> bool {
    if tasks <= 1 {
        return false;
    }
    let mut safe = true;
    let mut hash_reads = 0;
    let _ = unresolved.apply(|node| {
        let partitions = node.output_partitioning().partition_count();
        let allowed = if let Some(read) = node.downcast_ref::<UnresolvedShuffleExec>() {
            if partitions == tasks {
                hash_reads += 1;
                // The hash partitions of one map task's output keep its
                // order, and the plan may count on it (a merge above): a
                // run of several would not.
                read.mode() == ShuffleReadMode::Hash && read.input_partitions() > 1
            } else {
                partitions == 1
            }
        } else if node.children().is_empty() {
            // A source every task reads whole (a broadcast side) is
            // unaffected; one of several partitions would be cut apart.
            partitions == 1 && PARTITION_PRESERVING.contains(&node.name())
        } else {
            PARTITION_PRESERVING.contains(&node.name())
        };
        if !allowed {
            safe = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    safe && hash_reads > 0
}

/// Runs of a stage's planned partitions, one per task: task `t` reads the
/// partitions `groups[t]` of every regrouped read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionGroups {
    planned: usize,
    groups: Vec<Range<usize>>,
}

impl PartitionGroups {
    /// Groups for `resolved`, a stage plan of `planned` tasks that
    /// [`may_coalesce`], giving each task about `target_bytes` of shuffled
    /// input; `None` when that would not lower the task count, when
    /// `target_bytes` is 0, or when a location holds rows but no size (a
    /// shuffle writer that does not measure its output). Reads of one partition (broadcast sides) are
    /// read by every task whatever the count and are not weighed.
    pub fn by_size(
        resolved: &Arc<dyn ExecutionPlan>,
        planned: usize,
        target_bytes: u64,
    ) -> Option<Self> {
        if target_bytes == 0 || planned <= 1 {
            return None;
        }
        let mut bytes = vec![0u64; planned];
        let mut sizes_known = true;
        let _ = resolved.apply(|node| {
            if let Some(reader) = node.downcast_ref::<ShuffleReaderExec>()
                && reader.partitions().len() == planned
            {
                for (p, locations) in reader.partitions().iter().enumerate() {
                    for location in locations {
                        // Rows without bytes: a writer that does not
                        // measure its output, not an empty one.
                        sizes_known &= location.stats.num_bytes > 0 || location.stats.num_rows == 0;
                        bytes[p] = bytes[p].saturating_add(location.stats.num_bytes);
                    }
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        if !sizes_known {
            return None;
        }
        let mut groups: Vec<Range<usize>> = Vec::new();
        let mut group_bytes = 0u64;
        for (p, size) in bytes.iter().enumerate() {
            match groups.last_mut() {
                Some(group) if group_bytes.saturating_add(*size) <= target_bytes => {
                    group.end = p + 1;
                    group_bytes = group_bytes.saturating_add(*size);
                }
                _ => {
                    groups.push(p..p + 1);
                    group_bytes = *size;
                }
            }
        }
        (groups.len() < planned).then_some(Self { planned, groups })
    }

    /// How many tasks the stage runs.
    pub fn task_count(&self) -> usize {
        self.groups.len()
    }

    /// The planned task count.
    pub fn planned(&self) -> usize {
        self.planned
    }

    /// `resolved` (the stage's plan with its reads resolved) with every read
    /// of the planned width reading the groups instead: the operators above
    /// are rebuilt, so the plan runs [`task_count`](Self::task_count) tasks.
    pub fn apply(&self, resolved: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        let regrouped = resolved.transform_up(|node| {
            let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() else {
                return Ok(Transformed::no(node));
            };
            if reader.partitions().len() != self.planned {
                return Ok(Transformed::no(node));
            }
            let partitions = self
                .groups
                .iter()
                .map(|group| {
                    reader.partitions()[group.clone()]
                        .iter()
                        .flatten()
                        .cloned()
                        .collect()
                })
                .collect();
            // Still declared hash-partitioned on the same keys, though a row
            // is no longer in partition `hash % count`: the operators above
            // (a partitioned join, a final aggregate) check that both sides
            // are partitioned alike, which they are, group for group. Nothing
            // re-plans the stage after this (no optimizer pass runs, and the
            // join's dynamic filter, which routes by hash, is off on the
            // cluster).
            let partitioning = match reader.output_partitioning() {
                Partitioning::Hash(exprs, _) => {
                    Partitioning::Hash(exprs.clone(), self.task_count())
                }
                _ => Partitioning::UnknownPartitioning(self.task_count()),
            };
            let regrouped = reader
                .with_partitions(partitions, partitioning)
                .map_err(DataFusionError::from)?;
            Ok(Transformed::yes(
                Arc::new(regrouped) as Arc<dyn ExecutionPlan>
            ))
        });
        let regrouped = regrouped.map_err(BallistaError::from_datafusion)?.data;
        let tasks = regrouped.output_partitioning().partition_count();
        if tasks != self.task_count() {
            return Err(BallistaError::Internal(format!(
                "a stage regrouped into {} tasks has {tasks} partitions",
                self.task_count()
            )));
        }
        Ok(regrouped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{JobId, StageId};
    use crate::plan::ShuffleWriterExec;
    use crate::plan::test_plans::{join_on_k, location};
    use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use datafusion::physical_expr::EquivalenceProperties;
    use datafusion::physical_plan::expressions::Column;
    use datafusion::physical_plan::joins::PartitionMode;
    use datafusion::physical_plan::union::UnionExec;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]))
    }

    fn hash(partitions: usize) -> Partitioning {
        Partitioning::Hash(vec![Arc::new(Column::new("k", 0))], partitions)
    }

    /// A hash read of stage `stage`: two map tasks each wrote `bytes[p]` / 2
    /// to partition `p`.
    fn reader(stage: u32, bytes: &[u64]) -> Arc<dyn ExecutionPlan> {
        let partitions = bytes
            .iter()
            .enumerate()
            .map(|(p, b)| (0..2).map(|m| location(stage, m, p, b / 2)).collect())
            .collect();
        Arc::new(
            ShuffleReaderExec::try_new(
                StageId(stage),
                schema(),
                partitions,
                hash(bytes.len()),
                EquivalenceProperties::new(schema()),
            )
            .unwrap(),
        )
    }

    fn unresolved(stage: u32, mode: ShuffleReadMode, partitions: usize) -> Arc<dyn ExecutionPlan> {
        Arc::new(UnresolvedShuffleExec::new(
            StageId(stage),
            mode,
            2,
            if partitions == 1 {
                Partitioning::UnknownPartitioning(1)
            } else {
                hash(partitions)
            },
            EquivalenceProperties::new(schema()),
        ))
    }

    fn join(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        mode: PartitionMode,
    ) -> Arc<dyn ExecutionPlan> {
        join_on_k(mode, left, right)
    }

    fn stage(input: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        Arc::new(
            ShuffleWriterExec::try_new(
                JobId::parse("job1").unwrap(),
                StageId(3),
                input,
                Some(hash(4)),
            )
            .unwrap(),
        )
    }

    /// Per regrouped reader, the output partitions each task reads.
    fn reads(plan: &Arc<dyn ExecutionPlan>) -> Vec<Vec<Vec<usize>>> {
        let mut reads = Vec::new();
        let _ = plan.apply(|node| {
            if let Some(r) = node.downcast_ref::<ShuffleReaderExec>() {
                reads.push(
                    r.partitions()
                        .iter()
                        .map(|ls| {
                            let mut outputs: Vec<usize> =
                                ls.iter().map(|l| l.output_partition).collect();
                            outputs.dedup();
                            outputs
                        })
                        .collect(),
                );
            }
            Ok(TreeNodeRecursion::Continue)
        });
        reads
    }

    #[test]
    fn a_partitioned_join_of_small_inputs_runs_as_fewer_tasks_reading_the_same_partitions_of_both_sides()
     {
        let plan = stage(join(
            reader(1, &[10, 10, 10, 10]),
            reader(2, &[5, 5, 5, 5]),
            PartitionMode::Partitioned,
        ));
        // 15 bytes per planned partition: two fit in 30.
        let groups = PartitionGroups::by_size(&plan, 4, 30).expect("fewer tasks");
        assert_eq!(groups.task_count(), 2);
        let regrouped = groups.apply(Arc::clone(&plan)).unwrap();
        assert_eq!(regrouped.output_partitioning().partition_count(), 2);
        let writer = regrouped.downcast_ref::<ShuffleWriterExec>().unwrap();
        assert_eq!(writer.input_partition_count(), 2);
        assert_eq!(
            writer.output_partition_count(),
            4,
            "the stage's output is unchanged"
        );
        let both = vec![vec![0, 1], vec![2, 3]];
        assert_eq!(reads(&regrouped), vec![both.clone(), both]);

        let one = PartitionGroups::by_size(&plan, 4, 1 << 20).expect("one task");
        assert_eq!(one.task_count(), 1);
        assert_eq!(reads(&one.apply(plan).unwrap())[0], vec![vec![0, 1, 2, 3]]);
    }

    #[test]
    fn large_or_skewed_partitions_keep_their_own_task() {
        let plan = stage(reader(1, &[100, 10, 10, 100]));
        let groups = PartitionGroups::by_size(&plan, 4, 50).expect("the small ones merge");
        assert_eq!(
            reads(&groups.apply(Arc::clone(&plan)).unwrap())[0],
            vec![vec![0], vec![1, 2], vec![3]]
        );
        let large = stage(reader(1, &[100, 100, 100, 100]));
        assert_eq!(PartitionGroups::by_size(&large, 4, 50), None, "none merge");
        assert_eq!(
            PartitionGroups::by_size(&plan, 4, 0),
            None,
            "0 turns it off"
        );
    }

    #[test]
    fn a_broadcast_side_is_read_whole_by_every_task_and_not_weighed() {
        let plan = stage(join(
            reader(1, &[1_000_000]),
            reader(2, &[4, 4, 4, 4]),
            PartitionMode::CollectLeft,
        ));
        let groups = PartitionGroups::by_size(&plan, 4, 100).expect("the probe side is small");
        assert_eq!(groups.task_count(), 1);
        let regrouped = groups.apply(plan).unwrap();
        assert_eq!(
            reads(&regrouped),
            vec![vec![vec![0]], vec![vec![0, 1, 2, 3]]]
        );
    }

    #[test]
    fn only_stages_of_hash_reads_under_partition_preserving_operators_may_coalesce() {
        let hash_read = || unresolved(1, ShuffleReadMode::Hash, 4);
        assert!(may_coalesce(&stage(hash_read()), 4));
        assert!(may_coalesce(
            &stage(join(
                unresolved(2, ShuffleReadMode::Coalesce, 1),
                hash_read(),
                PartitionMode::CollectLeft
            )),
            4
        ));
        assert!(!may_coalesce(&stage(hash_read()), 1), "one task already");
        let of_one_map_task: Arc<dyn ExecutionPlan> = Arc::new(UnresolvedShuffleExec::new(
            StageId(1),
            ShuffleReadMode::Hash,
            1,
            hash(4),
            EquivalenceProperties::new(schema()),
        ));
        assert!(
            !may_coalesce(&stage(of_one_map_task), 4),
            "each partition of one map task's output may be ordered"
        );
        assert!(
            !may_coalesce(&stage(unresolved(1, ShuffleReadMode::PerMapTask, 4)), 4),
            "a map task's own output, maybe ordered"
        );
        let union = UnionExec::try_new(vec![
            unresolved(1, ShuffleReadMode::Hash, 2),
            unresolved(2, ShuffleReadMode::Hash, 2),
        ])
        .unwrap();
        assert!(
            !may_coalesce(&stage(union), 4),
            "a union renumbers its inputs' partitions"
        );
        let scan: Arc<dyn ExecutionPlan> =
            Arc::new(datafusion::physical_plan::empty::EmptyExec::new(schema()).with_partitions(4));
        assert!(
            !may_coalesce(
                &stage(join(scan, hash_read(), PartitionMode::Partitioned)),
                4
            ),
            "a source of several partitions"
        );
    }
}
