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
            &JoinType::Inner,
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
