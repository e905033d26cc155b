//! Sending each task only what it reads.
//!
//! A resolved stage plan lists, in every shuffle reader, the locations of
//! every partition, and in every file scan, the files of every partition.
//! When a consumer stage of N tasks reads a hash shuffle of M map tasks,
//! each task's plan would carry all N×M locations although it reads M of
//! them; a scan stage of N tasks over N file groups would send every task
//! all N groups. That is N² bytes per stage, which dominates launching at
//! scale. Where it is safe, a task is sent the stage's plan with those
//! partitions emptied (the "hollow" plan, encoded once for the whole stage)
//! and, beside it, its own partition of each emptied node
//! ([`proto::TaskReads`]); the executor puts them back
//! ([`fill_task_reads`]). The scheduler's work per task is then only the
//! encoding of what that task reads: building and encoding a plan per task
//! took a fifth of its time at a thousand executors.
//!
//! It is safe when task `p` executes partition `p` of the reader or scan
//! and nothing else of it: every operator between the stage's root and the
//! reader maps partition `p` of its output to partition `p` of its inputs.
//! Only operators known to do so are allowed (a union renumbers its
//! children's partitions; a scalar subquery or a nested-loop join may
//! execute every partition of an input), and only readers and scans with as
//! many partitions as the stage has tasks are trimmed. The emptied
//! partitions stay in the plan, so that it keeps its partitioning: the
//! hollow plan still grows with the stage's width, at a few bytes per
//! partition, but it is encoded once.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::ExecutionPlan;
use prost::Message;

use super::ShuffleReaderExec;
use crate::error::{BallistaError, Result};
use crate::plugin::shuffle::ShuffleLocation;
use crate::proto;

/// Operators whose partition `p` reads exactly partition `p` of each input
/// (or, for a join's collected side, an input of one partition).
pub(super) const PARTITION_PRESERVING: &[&str] = &[
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

/// Fewest locations and files in trimmable nodes for a hollow plan and
/// reads per task to pay over one plan for all tasks.
const WORTHWHILE_READS: usize = 256;

/// What one trimmable node reads, per partition.
#[derive(Debug)]
enum NodeReads {
    /// A shuffle reader's locations.
    Shuffle(Vec<Vec<ShuffleLocation>>),
    /// A file scan's file groups.
    Files(Vec<FileGroup>),
}

/// Whether `node` is a shuffle reader or a file scan of `partitions`
/// partitions: a node the scheduler empties and the executor fills.
fn is_trimmable(node: &Arc<dyn ExecutionPlan>, partitions: usize) -> bool {
    if let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() {
        return reader.partitions().len() == partitions;
    }
    file_scan(node).is_some_and(|files| files.file_groups.len() == partitions)
}

impl NodeReads {
    /// The reads of `node` when it is [trimmable](is_trimmable).
    fn of(node: &Arc<dyn ExecutionPlan>, tasks: usize) -> Option<Self> {
        if !is_trimmable(node, tasks) {
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

    /// Partition `partition` of these reads, as a task is sent it.
    fn to_proto(&self, partition: usize) -> Result<proto::TaskRead> {
        let missing = || BallistaError::Internal(format!("no partition {partition} to read"));
        let read = match self {
            NodeReads::Shuffle(partitions) => {
                let locations = partitions.get(partition).ok_or_else(missing)?;
                proto::task_read::Read::Shuffle(proto::ShuffleReadPartition {
                    locations: locations.iter().map(ShuffleLocation::to_proto).collect(),
                })
            }
            NodeReads::Files(groups) => {
                let group = groups.get(partition).ok_or_else(missing)?;
                let group = datafusion_proto::protobuf::FileGroup::try_from(group)
                    .map_err(BallistaError::from_datafusion)?;
                proto::task_read::Read::Files(group.encode_to_vec())
            }
        };
        Ok(proto::TaskRead { read: Some(read) })
    }

    /// `node` with every partition emptied.
    fn hollow(&self, node: &Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        match self {
            NodeReads::Shuffle(partitions) => {
                let reader = node
                    .downcast_ref::<ShuffleReaderExec>()
                    .ok_or_else(|| BallistaError::Internal("expected a shuffle reader".into()))?;
                Ok(Arc::new(reader.with_partitions(
                    vec![Vec::new(); partitions.len()],
                    reader.output_partitioning().clone(),
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

/// `hollow` (a trimmable node with every partition emptied) with
/// `read` put back as its partition `partition`.
fn fill_node(
    hollow: &Arc<dyn ExecutionPlan>,
    partition: usize,
    read: &proto::TaskRead,
) -> Result<Arc<dyn ExecutionPlan>> {
    let wrong = |what: &str| {
        BallistaError::InvalidInput(format!("the task's reads do not match its plan: {what}"))
    };
    match &read.read {
        Some(proto::task_read::Read::Shuffle(own)) => {
            let reader = hollow.downcast_ref::<ShuffleReaderExec>().ok_or_else(|| {
                wrong("shuffle locations for a node that is not a shuffle reader")
            })?;
            let mut own = Some(
                own.locations
                    .iter()
                    .map(ShuffleLocation::from_proto)
                    .collect::<Result<Vec<_>>>()?,
            );
            let partitions = (0..reader.partitions().len())
                .map(|p| {
                    if p == partition {
                        own.take().unwrap_or_default()
                    } else {
                        Vec::new()
                    }
                })
                .collect();
            Ok(Arc::new(reader.with_partitions(
                partitions,
                reader.output_partitioning().clone(),
            )?))
        }
        Some(proto::task_read::Read::Files(bytes)) => {
            let config = file_scan(hollow)
                .ok_or_else(|| wrong("files for a node that is not a file scan"))?;
            let group = datafusion_proto::protobuf::FileGroup::decode(bytes.as_ref())
                .map_err(|e| wrong(&format!("undecodable file group: {e}")))?;
            let group = FileGroup::try_from(&group)
                .map_err(|e| wrong(&format!("unreadable file group: {e}")))?;
            let mut config = config.clone();
            let slot = config
                .file_groups
                .get_mut(partition)
                .ok_or_else(|| wrong("a partition past the scan's"))?;
            *slot = group;
            Ok(DataSourceExec::from_data_source(config))
        }
        None => Err(wrong("an empty read")),
    }
}

/// The file scan configuration of a `DataSourceExec` that scans files.
fn file_scan(node: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    node.downcast_ref::<DataSourceExec>()?
        .data_source()
        .downcast_ref::<FileScanConfig>()
}

/// A stage plan prepared to send each of its tasks only that task's own
/// shuffle locations and files.
#[derive(Debug)]
pub struct PerTaskPlans {
    /// The stage plan with every trimmable node's partitions emptied,
    /// encoded once for every task.
    hollow: bytes::Bytes,
    /// Each trimmable node's reads, in the order a post-order walk of the
    /// plan meets those nodes.
    reads: Vec<NodeReads>,
    tasks: usize,
}

impl PerTaskPlans {
    /// Prepares `plan` (a resolved stage plan of `tasks` tasks), or `None`
    /// when its tasks should all get the plan whole: it has operators that
    /// may read other partitions, a single task, or too little to trim for
    /// reads per task to pay.
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
            hollow: super::encode_stage_plan(&hollow.data)?.into(),
            reads,
            tasks,
        }))
    }

    /// What task `partition` is sent: the shared hollow plan and its own
    /// reads.
    pub fn task_reads(&self, partition: usize) -> Result<proto::TaskReads> {
        if partition >= self.tasks {
            return Err(BallistaError::Internal(format!(
                "no task {partition} in a stage of {}",
                self.tasks
            )));
        }
        Ok(proto::TaskReads {
            hollow_plan: self.hollow.clone(),
            partitions: self.tasks as u32,
            reads: self
                .reads
                .iter()
                .map(|reads| reads.to_proto(partition))
                .collect::<Result<_>>()?,
        })
    }
}

/// Puts a task's own reads back into the hollow plan it was sent with them
/// (decoded from [`proto::TaskReads::hollow_plan`]), as the plan of task
/// `partition`. Reads that do not match the plan (a count, a kind or a
/// partition that differs) are refused: the task would read the wrong data.
pub fn fill_task_reads(
    hollow: Arc<dyn ExecutionPlan>,
    partition: usize,
    own: &proto::TaskReads,
) -> Result<Arc<dyn ExecutionPlan>> {
    let partitions = own.partitions as usize;
    // The scheduler sends reads only for stages with many: none would run
    // the hollow plan, reading nothing, and report it a success.
    if own.reads.is_empty() {
        return Err(BallistaError::InvalidInput(
            "the task's reads do not match its plan: none were sent".into(),
        ));
    }
    if partition >= partitions {
        return Err(BallistaError::InvalidInput(format!(
            "the task's reads are for {partitions} partitions, not for its partition {partition}"
        )));
    }
    let mut next = own.reads.iter();
    let filled = hollow.transform_up(|node| {
        if !is_trimmable(&node, partitions) {
            return Ok(Transformed::no(node));
        }
        let read = next.next().ok_or_else(|| {
            DataFusionError::from(BallistaError::InvalidInput(format!(
                "the task's reads do not match its plan: {} read(s) for more nodes",
                own.reads.len()
            )))
        })?;
        let filled = fill_node(&node, partition, read).map_err(DataFusionError::from)?;
        Ok(Transformed::yes(filled))
    });
    let filled = filled.map_err(BallistaError::from_datafusion)?;
    if next.next().is_some() {
        return Err(BallistaError::InvalidInput(format!(
            "the task's reads do not match its plan: {} read(s) for fewer nodes",
            own.reads.len()
        )));
    }
    Ok(filled.data)
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

    impl PerTaskPlans {
        /// Task `partition`'s plan as its executor makes it: the hollow
        /// plan decoded, the task's reads put back.
        fn plan_for(&self, partition: usize) -> Result<Arc<dyn ExecutionPlan>> {
            let own = self.task_reads(partition)?;
            fill_task_reads(decode(&own.hollow_plan), partition, &own)
        }
    }

    fn decode(bytes: &[u8]) -> Arc<dyn ExecutionPlan> {
        let ctx = datafusion::prelude::SessionContext::new();
        crate::plan::decode_stage_plan(bytes, &ctx.task_ctx()).unwrap()
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
        join_in(
            datafusion::physical_plan::joins::PartitionMode::Partitioned,
            left,
            right,
        )
    }

    use crate::plan::test_plans::join_on_k as join_in;

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
        let mut own = Vec::new();
        let _ = task.apply(|node| {
            if let Some(r) = node.downcast_ref::<ShuffleReaderExec>() {
                own.extend(r.partitions()[2].iter().map(|l| l.output_partition));
            }
            Ok(TreeNodeRecursion::Continue)
        });
        assert_eq!(
            own,
            vec![2; 100],
            "partition 2 holds partition 2's locations"
        );
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
    fn a_collected_build_side_is_sent_whole_beside_a_trimmed_probe_side() {
        // The build side is one partition read by every task: it is not
        // trimmed, and every task's plan keeps all of its locations.
        let build = reader(1, 400);
        let probe = reader(300, 1);
        let join = join_in(
            datafusion::physical_plan::joins::PartitionMode::CollectLeft,
            build,
            probe,
        );
        let plans = PerTaskPlans::prepare(&stage(join), 300)
            .unwrap()
            .expect("trimmed");
        assert_eq!(plans.task_reads(5).unwrap().reads.len(), 1);
        let counts = reader_partitions(&plans.plan_for(5).unwrap());
        let mut expected = vec![400];
        expected.extend((0..300).map(|p| usize::from(p == 5)));
        assert_eq!(counts, expected);
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
    fn the_hollow_plan_is_encoded_once_for_the_whole_stage() {
        let plans = PerTaskPlans::prepare(&stage(reader(300, 1)), 300)
            .unwrap()
            .expect("trimmed");
        let first = plans.task_reads(0).unwrap();
        let last = plans.task_reads(299).unwrap();
        assert_eq!(first.hollow_plan.as_ptr(), last.hollow_plan.as_ptr());
        assert_eq!(reader_partitions(&decode(&first.hollow_plan)), vec![0; 300]);
        assert_eq!((first.partitions, first.reads.len()), (300, 1));
    }

    #[test]
    fn reads_that_do_not_match_the_plan_are_refused() {
        let left = reader(300, 1);
        let right = csv_scan(300, 1);
        let plans = PerTaskPlans::prepare(&stage(partitioned_join(left, right)), 300)
            .unwrap()
            .expect("trimmed");
        let own = plans.task_reads(3).unwrap();
        let hollow = decode(&own.hollow_plan);
        let refused = |own: &proto::TaskReads, partition: usize| {
            let error = fill_task_reads(Arc::clone(&hollow), partition, own).unwrap_err();
            assert_eq!(error.kind(), proto::ErrorKind::InvalidInput, "{error}");
            error.to_string()
        };
        let mut fewer = own.clone();
        fewer.reads.pop();
        assert!(refused(&fewer, 3).contains("1 read(s) for more nodes"));
        let mut more = own.clone();
        more.reads.push(own.reads[0].clone());
        assert!(refused(&more, 3).contains("3 read(s) for fewer nodes"));
        let mut swapped = own.clone();
        swapped.reads.reverse();
        assert!(refused(&swapped, 3).contains("is not a file scan"));
        let mut empty = own.clone();
        empty.reads[1].read = None;
        assert!(refused(&empty, 3).contains("an empty read"));
        let mut none = own.clone();
        none.reads.clear();
        assert!(refused(&none, 3).contains("none were sent"));
        let mut garbled = own.clone();
        garbled.reads[1].read = Some(proto::task_read::Read::Files(vec![0xff; 3]));
        assert!(refused(&garbled, 3).contains("undecodable file group"));
        assert!(refused(&own, 300).contains("not for its partition 300"));
        // The reads it was sent fill it.
        let filled = fill_task_reads(Arc::clone(&hollow), 3, &own).unwrap();
        assert_eq!(scan_files(&filled)[3], vec!["data/g3-f0.csv"]);
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
