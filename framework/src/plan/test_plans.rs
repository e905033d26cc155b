//! Plan pieces the unit tests of planning and scheduling build from.

use std::sync::Arc;

use datafusion::common::{JoinType, NullEquality};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};

use crate::ids::{ExecutorId, JobId, StageId};
use crate::plugin::shuffle::{ExecutorAddress, PartitionStats, ShuffleLocation};

/// An inner hash join in `mode` of two inputs whose first column is `k`, on `k`.
pub(crate) fn join_on_k(
    mode: PartitionMode,
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
) -> Arc<dyn ExecutionPlan> {
    typed_join_on_k(JoinType::Inner, mode, left, right)
}

/// A hash join of `join_type` in `mode` of two inputs whose first column is
/// `k`, on `k`.
pub(crate) fn typed_join_on_k(
    join_type: JoinType,
    mode: PartitionMode,
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
) -> Arc<dyn ExecutionPlan> {
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
            &join_type,
            None,
            mode,
            NullEquality::NullEqualsNothing,
            false,
        )
        .unwrap(),
    )
}

/// Output partition `output` of map task `map` of `stage` in job `job1`,
/// one row of `bytes` bytes, on executor `e1`.
pub(crate) fn location(stage: u32, map: usize, output: usize, bytes: u64) -> ShuffleLocation {
    ShuffleLocation {
        job_id: JobId::parse("job1").unwrap(),
        stage_id: StageId(stage),
        map_partition: map,
        output_partition: output,
        attempt: 0,
        executor: ExecutorAddress {
            id: ExecutorId::new("e1"),
            host: "127.0.0.1".into(),
            port: 1,
        },
        path: format!("job1/s{stage}/m{map}-a0-p{output}.arrow"),
        stats: PartitionStats {
            num_rows: 1,
            num_batches: 1,
            num_bytes: bytes,
        },
        durable: false,
        ticket: Vec::new(),
    }
}

/// Three stages: a build side of 2 partitions (stage 1) and a probe side of
/// `probe_partitions` (stage 2), both hash-partitioned on `k` into 2, and
/// the final stage (3) joining them in a partitioned `join_type` join.
pub(crate) fn partitioned_join_plan(
    job_id: &JobId,
    join_type: JoinType,
    probe_partitions: usize,
) -> crate::plan::DistributedPlan {
    join_plan(job_id, join_type, probe_partitions, false)
}

/// Like [`partitioned_join_plan`], but the build side first goes through a
/// round-robin stage of its own: stages 1 (round robin), 2 (build, reading
/// 1), 3 (probe) and 4 (join).
pub(crate) fn partitioned_join_over_two_build_stages(
    job_id: &JobId,
) -> crate::plan::DistributedPlan {
    join_plan(job_id, JoinType::Inner, 2, true)
}

fn join_plan(
    job_id: &JobId,
    join_type: JoinType,
    probe_partitions: usize,
    round_robin_build: bool,
) -> crate::plan::DistributedPlan {
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::Partitioning;
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::physical_plan::repartition::RepartitionExec;

    let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
    let hashed = |partitions: usize, round_robin: bool| -> Arc<dyn ExecutionPlan> {
        let mut scan: Arc<dyn ExecutionPlan> =
            Arc::new(EmptyExec::new(Arc::clone(&schema)).with_partitions(partitions));
        if round_robin {
            scan = Arc::new(
                RepartitionExec::try_new(scan, Partitioning::RoundRobinBatch(partitions)).unwrap(),
            );
        }
        Arc::new(
            RepartitionExec::try_new(
                scan,
                Partitioning::Hash(vec![Arc::new(Column::new("k", 0))], 2),
            )
            .unwrap(),
        )
    };
    let join = typed_join_on_k(
        join_type,
        PartitionMode::Partitioned,
        hashed(2, round_robin_build),
        hashed(probe_partitions, false),
    );
    crate::plan::split_into_stages(job_id, join).unwrap()
}
