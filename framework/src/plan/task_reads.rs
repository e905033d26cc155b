//! Sending each task only what it reads.
//!
//! A resolved stage plan lists, in every shuffle reader, the locations of
//! every partition, and in every file scan, the files of every partition.
//! When a consumer stage of N tasks reads a hash shuffle of M map tasks,
//! each task's plan would carry all N×M locations although it reads M of
//! them; a scan stage of N tasks over N file groups would send every task
//! all N groups. That is N² bytes per stage, which dominates launching at
//! scale. Where it is safe, a task's plan keeps only its own partition's
//! locations and files (the other partitions stay, empty, so that the plan
//! keeps its partitioning).
//!
//! It is safe when task `p` executes partition `p` of the reader or scan
//! and nothing else of it: every operator between the stage's root and the
//! reader maps partition `p` of its output to partition `p` of its inputs.
//! Only operators known to do so are allowed (a union renumbers its
//! children's partitions; a scalar subquery or a nested-loop join may
//! execute every partition of an input), and only readers and scans with as
//! many partitions as the stage has tasks are trimmed.
//!
//! [`PerTaskPlans::prepare`] does the stage-wide work once (it walks the
//! plan and empties what it will trim); [`PerTaskPlans::plan_for`] then
//! copies only the task's own reads. Each task's plan still holds an empty
//! entry per other partition (a few bytes each), so the sizes grow with the
//! stage's width, at a small constant.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::ExecutionPlan;

use super::ShuffleReaderExec;
use crate::error::{BallistaError, Result};
use crate::plugin::shuffle::ShuffleLocation;

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

/// Fewest locations and files in trimmable nodes for trimming to be worth
/// encoding the plan once per task.
const WORTHWHILE_READS: usize = 256;

/// What one trimmable node reads, per partition.
#[derive(Debug)]
enum NodeReads {
    /// A shuffle reader's locations.
    Shuffle(Vec<Vec<ShuffleLocation>>),
    /// A file scan's file groups.
    Files(Vec<FileGroup>),
}

impl NodeReads {
    /// Whether `node` is a shuffle reader or a file scan with one partition
    /// per task.
    fn is_trimmable(node: &Arc<dyn ExecutionPlan>, tasks: usize) -> bool {
        if let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() {
            return reader.partitions().len() == tasks;
        }
        file_scan(node).is_some_and(|files| files.file_groups.len() == tasks)
    }

    /// The reads of `node` when it is [trimmable](Self::is_trimmable).
    fn of(node: &Arc<dyn ExecutionPlan>, tasks: usize) -> Option<Self> {
        if !Self::is_trimmable(node, tasks) {
            return None;
        }
        if let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() {
            return Some(NodeReads::Shuffle(reader.partitions().to_vec()));
        }
        file_scan(node).map(|files| NodeReads::Files(files.file_groups.clone()))
    }

    fn count(&self) -> usize {
        match self {
            NodeReads::Shuffle(partitions) => partitions.iter().map(Vec::len).sum(),
            NodeReads::Files(groups) => groups.iter().map(FileGroup::len).sum(),
        }
    }

    /// `hollow` (the node with every partition emptied) with partition
    /// `partition`'s reads put back.
    fn fill(
        &self,
        hollow: &Arc<dyn ExecutionPlan>,
        partition: usize,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match self {
            NodeReads::Shuffle(partitions) => {
                let reader = hollow.downcast_ref::<ShuffleReaderExec>().ok_or_else(|| {
                    BallistaError::Internal("a trimmed plan lost a shuffle reader".into())
                })?;
                let own = (0..partitions.len())
                    .map(|p| {
                        if p == partition {
                            partitions[p].clone()
                        } else {
                            Vec::new()
                        }
                    })
                    .collect();
                Ok(Arc::new(with_locations(reader, own)?))
            }
            NodeReads::Files(groups) => {
                let config = file_scan(hollow).ok_or_else(|| {
                    BallistaError::Internal("a trimmed plan lost a file scan".into())
                })?;
                let mut config = config.clone();
                if let (Some(slot), Some(group)) =
                    (config.file_groups.get_mut(partition), groups.get(partition))
                {
                    *slot = group.clone();
                }
                Ok(DataSourceExec::from_data_source(config))
            }
        }
    }

    /// `node` with every partition emptied.
    fn hollow(&self, node: &Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        match self {
            NodeReads::Shuffle(partitions) => {
                let reader = node
                    .downcast_ref::<ShuffleReaderExec>()
                    .ok_or_else(|| BallistaError::Internal("expected a shuffle reader".into()))?;
                Ok(Arc::new(with_locations(
                    reader,
                    vec![Vec::new(); partitions.len()],
                )?))
            }
            NodeReads::Files(groups) => {
                let config = file_scan(node)
                    .ok_or_else(|| BallistaError::Internal("expected a file scan".into()))?;
                let mut config = config.clone();
                config.file_groups = vec![FileGroup::default(); groups.len()];
                Ok(DataSourceExec::from_data_source(config))
            }
        }
    }
}

/// `reader` reading `partitions` instead.
fn with_locations(
    reader: &ShuffleReaderExec,
    partitions: Vec<Vec<ShuffleLocation>>,
) -> Result<ShuffleReaderExec> {
    ShuffleReaderExec::try_new(
        reader.stage_id(),
        reader.schema(),
        partitions,
        reader.output_partitioning().clone(),
        reader.equivalence().clone(),
    )
}

/// The file scan configuration of a `DataSourceExec` that scans files.
fn file_scan(node: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    node.downcast_ref::<DataSourceExec>()?
        .data_source()
        .downcast_ref::<FileScanConfig>()
}

/// A stage plan prepared to give each of its tasks a plan with only that
/// task's own shuffle locations and files.
#[derive(Debug)]
pub struct PerTaskPlans {
    /// The stage plan with every trimmable node's partitions emptied.
    hollow: Arc<dyn ExecutionPlan>,
    /// Each trimmable node's reads, in the order a post-order walk of the
    /// plan meets those nodes.
    reads: Vec<NodeReads>,
    tasks: usize,
}

impl PerTaskPlans {
    /// Prepares `plan` (a resolved stage plan of `tasks` tasks), or `None`
    /// when its tasks should all get the plan whole: it has operators that
    /// may read other partitions, a single task, or too little to trim for
    /// a plan per task to pay.
    pub fn prepare(plan: &Arc<dyn ExecutionPlan>, tasks: usize) -> Result<Option<Self>> {
        if tasks <= 1 {
            return Ok(None);
        }
        let mut safe = true;
        let _ = plan.apply(|node| {
            if !PARTITION_PRESERVING.contains(&node.name()) {
                safe = false;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        if !safe {
            return Ok(None);
        }
        let mut reads = Vec::new();
        let hollow = Arc::clone(plan).transform_up(|node| {
            let Some(node_reads) = NodeReads::of(&node, tasks) else {
                return Ok(Transformed::no(node));
            };
            let hollow = node_reads.hollow(&node).map_err(DataFusionError::from)?;
            reads.push(node_reads);
            Ok(Transformed::yes(hollow))
        })?;
        if reads.iter().map(NodeReads::count).sum::<usize>() < WORTHWHILE_READS {
            return Ok(None);
        }
        Ok(Some(Self {
            hollow: hollow.data,
            reads,
            tasks,
        }))
    }

    /// The plan task `partition` is sent.
    pub fn plan_for(&self, partition: usize) -> Result<Arc<dyn ExecutionPlan>> {
        if partition >= self.tasks {
            return Err(BallistaError::Internal(format!(
                "no task {partition} in a stage of {}",
                self.tasks
            )));
        }
        let mut next = self.reads.iter();
        let filled = Arc::clone(&self.hollow).transform_up(|node| {
            // The hollow plan has the same trimmable nodes, in the same
            // order, as the plan the reads were taken from.
            if NodeReads::is_trimmable(&node, self.tasks) {
                let reads = next.next().ok_or_else(|| {
                    DataFusionError::from(BallistaError::Internal(
                        "a trimmed plan has more readers than it had".into(),
                    ))
                })?;
                let filled = reads
                    .fill(&node, partition)
                    .map_err(DataFusionError::from)?;
                return Ok(Transformed::yes(filled));
            }
            Ok(Transformed::no(node))
        })?;
        Ok(filled.data)
    }
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

    fn csv_scan(groups: usize, files_per_group: usize) -> Arc<dyn ExecutionPlan> {
        csv_scan_in("data", groups, files_per_group)
    }

    fn csv_scan_in(folder: &str, groups: usize, files_per_group: usize) -> Arc<dyn ExecutionPlan> {
        use datafusion::datasource::listing::PartitionedFile;
        use datafusion::datasource::physical_plan::{CsvSource, FileScanConfigBuilder};
        use datafusion::execution::object_store::ObjectStoreUrl;
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let groups = (0..groups)
            .map(|g| {
                FileGroup::new(
                    (0..files_per_group)
                        .map(|f| PartitionedFile::new(format!("{folder}/g{g}-f{f}.csv"), 10))
                        .collect(),
                )
            })
            .collect();
        let config = FileScanConfigBuilder::new(
            ObjectStoreUrl::local_filesystem(),
            Arc::new(CsvSource::new(schema)),
        )
        .with_file_groups(groups)
        .build();
        DataSourceExec::from_data_source(config)
    }

    /// An inner hash join of two inputs of one partition per task, on `k`.
    fn partitioned_join(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
    ) -> Arc<dyn ExecutionPlan> {
        use datafusion::physical_plan::expressions::Column;
        use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
        let on = vec![(
            Arc::new(Column::new("k", 0)) as _,
            Arc::new(Column::new("k", 0)) as _,
        )];
        Arc::new(
            HashJoinExec::try_new(
                left,
                right,
                on,
                None,
                &datafusion::common::JoinType::Inner,
                None,
                PartitionMode::Partitioned,
                datafusion::common::NullEquality::NullEqualsNothing,
                false,
            )
            .unwrap(),
        )
    }

    fn scan_files(plan: &Arc<dyn ExecutionPlan>) -> Vec<Vec<String>> {
        let mut groups = Vec::new();
        let _ = plan.apply(|node| {
            if let Some(files) = file_scan(node) {
                groups.extend(files.file_groups.iter().map(|g| {
                    g.files()
                        .iter()
                        .map(|f| f.object_meta.location.to_string())
                        .collect()
                }));
            }
            Ok(TreeNodeRecursion::Continue)
        });
        groups
    }

    #[test]
    fn a_task_gets_only_its_own_partitions_locations() {
        let plan = stage(reader(4, 100));
        let plans = PerTaskPlans::prepare(&plan, 4).unwrap().expect("trimmed");
        let task = plans.plan_for(2).unwrap();
        assert_eq!(reader_partitions(&task), vec![0, 0, 100, 0]);
        assert_eq!(
            reader_partitions(&plans.plan_for(0).unwrap()),
            vec![100, 0, 0, 0]
        );
        // The stage plan itself is untouched.
        assert_eq!(reader_partitions(&plan), vec![100; 4]);
        assert!(plans.plan_for(4).is_err());
    }

    #[test]
    fn a_scan_task_gets_only_its_own_file_group() {
        let plan = stage(csv_scan(300, 2));
        let plans = PerTaskPlans::prepare(&plan, 300).unwrap().expect("trimmed");
        let task = plans.plan_for(7).unwrap();
        let groups = scan_files(&task);
        assert_eq!(groups.len(), 300, "the scan keeps its partitioning");
        assert_eq!(groups[7], vec!["data/g7-f0.csv", "data/g7-f1.csv"]);
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 2);
        assert_eq!(
            task.properties().output_partitioning().partition_count(),
            300
        );
        // The stage plan itself is untouched.
        assert_eq!(scan_files(&plan).iter().map(Vec::len).sum::<usize>(), 600);
        // It travels and comes back as the same trimmed scan.
        let encoded = crate::plan::encode_stage_plan(&task).unwrap();
        let ctx = datafusion::prelude::SessionContext::new();
        let decoded = crate::plan::decode_stage_plan(&encoded, &ctx.task_ctx()).unwrap();
        assert_eq!(scan_files(&decoded), groups);
    }

    #[test]
    fn a_stage_reading_a_shuffle_and_scanning_files_trims_both() {
        let left = reader(300, 1);
        let right = csv_scan(300, 1);
        let join = partitioned_join(left, right);
        let plans = PerTaskPlans::prepare(&stage(join), 300)
            .unwrap()
            .expect("trimmed");
        let task = plans.plan_for(299).unwrap();
        let mut expected = vec![0; 300];
        expected[299] = 1;
        assert_eq!(reader_partitions(&task), expected);
        let files = scan_files(&task);
        assert_eq!(files[299], vec!["data/g299-f0.csv"]);
        assert_eq!(files.iter().map(Vec::len).sum::<usize>(), 1);
    }

    #[test]
    fn two_scans_in_one_stage_each_keep_their_own_files() {
        let left = csv_scan_in("left/data", 300, 1);
        let right = csv_scan_in("right/data", 300, 1);
        let join = partitioned_join(left, right);
        let plans = PerTaskPlans::prepare(&stage(join), 300)
            .unwrap()
            .expect("trimmed");
        let files = scan_files(&plans.plan_for(5).unwrap());
        let listed: Vec<&String> = files.iter().flatten().collect();
        assert_eq!(
            listed,
            vec!["left/data/g5-f0.csv", "right/data/g5-f0.csv"],
            "each scan keeps its own group 5"
        );
    }

    #[test]
    fn plans_that_may_read_other_partitions_or_few_locations_are_sent_whole() {
        // A union renumbers its children's partitions.
        let union: Arc<dyn ExecutionPlan> =
            UnionExec::try_new(vec![reader(2, 200), reader(2, 200)]).unwrap();
        assert!(PerTaskPlans::prepare(&stage(union), 4).unwrap().is_none());
        // Too few locations or files to be worth a plan per task.
        assert!(
            PerTaskPlans::prepare(&stage(reader(4, 2)), 4)
                .unwrap()
                .is_none()
        );
        assert!(
            PerTaskPlans::prepare(&stage(csv_scan(4, 2)), 4)
                .unwrap()
                .is_none()
        );
        // A reader or a scan that is not one partition per task.
        assert!(
            PerTaskPlans::prepare(&stage(reader(1, 400)), 4)
                .unwrap()
                .is_none()
        );
        assert!(
            PerTaskPlans::prepare(&stage(csv_scan(300, 2)), 299)
                .unwrap()
                .is_none()
        );
        // A single task.
        assert!(
            PerTaskPlans::prepare(&stage(reader(1, 400)), 1)
                .unwrap()
                .is_none()
        );
    }
}
