//! The root of every stage: runs one partition of its input and writes the
//! rows to the shuffle, split by the stage's output partitioning.

use std::fmt;
use std::sync::Arc;

use arrow::compute::BatchCoalescer;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result as DFResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::repartition::BatchPartitioner;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::StreamExt;

use super::TaskEnv;
use super::compact::{compact_view_columns, shrink_over_allocated};
use super::wire_types::{conform, wire_schema};
use crate::error::{BallistaError, Result};
use crate::ids::{JobId, StageId};
use crate::plugin::shuffle::memory_tier::MemoryTierAccess;
use crate::plugin::shuffle::{MapOutputWriter, MapTaskContext, ShuffleLocation};

/// Writes one partition of `input` per task into the shuffle.
#[derive(Debug)]
pub struct ShuffleWriterExec {
    job_id: JobId,
    stage_id: StageId,
    input: Arc<dyn ExecutionPlan>,
    output_partitioning: Option<Partitioning>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl ShuffleWriterExec {
    /// A stage root. With `output_partitioning` = `None` each task writes its
    /// whole output as partition 0; otherwise rows are split by it.
    pub fn try_new(
        job_id: JobId,
        stage_id: StageId,
        input: Arc<dyn ExecutionPlan>,
        output_partitioning: Option<Partitioning>,
    ) -> Result<Self> {
        if let Some(p) = &output_partitioning
            && !matches!(
                p,
                Partitioning::Hash(..) | Partitioning::RoundRobinBatch(_) | Partitioning::Range(_)
            )
        {
            return Err(BallistaError::NotSupported(format!(
                "shuffle output partitioning {p} is not supported"
            )));
        }
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Self {
            job_id,
            stage_id,
            input,
            output_partitioning,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// Job of the stage.
    pub fn job_id(&self) -> &JobId {
        &self.job_id
    }
    /// The stage this writer is the root of.
    pub fn stage_id(&self) -> StageId {
        self.stage_id
    }
    /// The plan whose partitions are written.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
    /// How rows are split into output partitions (`None`: one per task).
    pub fn shuffle_partitioning(&self) -> Option<&Partitioning> {
        self.output_partitioning.as_ref()
    }
    /// Number of tasks of the stage.
    pub fn input_partition_count(&self) -> usize {
        self.input.output_partitioning().partition_count()
    }
    /// Number of output partitions each task writes.
    pub fn output_partition_count(&self) -> usize {
        self.output_partitioning
            .as_ref()
            .map_or(1, Partitioning::partition_count)
    }

    /// Runs map task `partition` and writes its output through the
    /// executor's shuffle writer. On any error the attempt is aborted, so
    /// nothing of it is ever read.
    pub async fn write_map_output(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<Vec<ShuffleLocation>> {
        let env = TaskEnv::from_context(&context)?;
        let mut task = env.task.clone();
        task.partition = partition;
        let mut writer = env
            .shuffle_writer
            .open(MapTaskContext {
                task,
                schema: wire_schema(&self.input.schema()),
                num_output_partitions: self.output_partition_count(),
                executor: env.executor.clone(),
                work_dir: env.work_dir.clone(),
                object_stores: Arc::clone(&env.object_stores),
                memory_tier: env.memory_tier.as_ref().map(|tier| MemoryTierAccess {
                    tier: Arc::clone(tier),
                    pool: Arc::clone(&context.runtime_env().memory_pool),
                }),
            })
            .await?;
        match self.write_all(partition, &context, writer.as_mut()).await {
            Ok(()) => writer.commit().await,
            Err(e) => {
                writer.abort().await;
                Err(e)
            }
        }
    }

    async fn write_all(
        &self,
        partition: usize,
        context: &Arc<TaskContext>,
        writer: &mut dyn MapOutputWriter,
    ) -> Result<()> {
        let schema = self.input.schema();
        let wire = wire_schema(&schema);
        let batch_size = context.session_config().batch_size();
        let mut coalescers: Vec<BatchCoalescer> = (0..self.output_partition_count())
            .map(|_| {
                // Batches at least half full pass through without a copy.
                BatchCoalescer::new(Arc::clone(&schema), batch_size)
                    .with_biggest_coalesce_batch_size(Some(batch_size / 2))
            })
            .collect();
        let write_time = MetricBuilder::new(&self.metrics).subset_time("write_time", partition);
        let repart_time = MetricBuilder::new(&self.metrics).subset_time("repart_time", partition);
        let output_rows = MetricBuilder::new(&self.metrics).output_rows(partition);
        let mut partitioner = self
            .output_partitioning
            .clone()
            .map(|p| {
                BatchPartitioner::try_new(p, repart_time, partition, self.input_partition_count())
            })
            .transpose()?;

        let mut input = self.input.execute(partition, Arc::clone(context))?;
        while let Some(batch) = input.next().await {
            let batch = batch?;
            output_rows.add(batch.num_rows());
            let parts: Vec<(usize, RecordBatch)> = match partitioner.as_mut() {
                Some(p) => p.partition_iter(batch)?.collect::<DFResult<_>>()?,
                None => vec![(0, batch)],
            };
            for (output, part) in parts {
                let coalescer = &mut coalescers[output];
                coalescer.push_batch(part)?;
                while let Some(done) = coalescer.next_completed_batch() {
                    let _timer = write_time.timer();
                    let done = conform(compact_view_columns(done)?, &wire)?;
                    writer.write(output, done).await?;
                }
            }
        }
        for (output, mut coalescer) in coalescers.into_iter().enumerate() {
            coalescer.finish_buffered_batch()?;
            while let Some(done) = coalescer.next_completed_batch() {
                let _timer = write_time.timer();
                let done = shrink_over_allocated(done)?;
                let done = conform(compact_view_columns(done)?, &wire)?;
                writer.write(output, done).await?;
            }
        }
        Ok(())
    }
}

impl DisplayAs for ShuffleWriterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.output_partitioning {
            Some(p) => write!(
                f,
                "ShuffleWriterExec: stage={}, partitioning={p}",
                self.stage_id
            ),
            None => write!(
                f,
                "ShuffleWriterExec: stage={}, partitioning=per-task",
                self.stage_id
            ),
        }
    }
}

impl ExecutionPlan for ShuffleWriterExec {
    fn name(&self) -> &str {
        "ShuffleWriterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        if let Some(Partitioning::Hash(exprs, _)) = &self.output_partitioning {
            for e in exprs {
                if f(e)? == TreeNodeRecursion::Stop {
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(BallistaError::Internal("ShuffleWriterExec takes one child".into()).into());
        }
        Ok(Arc::new(ShuffleWriterExec::try_new(
            self.job_id.clone(),
            self.stage_id,
            children.remove(0),
            self.output_partitioning.clone(),
        )?))
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        Err(BallistaError::Internal(
            "ShuffleWriterExec is run by an executor's task runner (write_map_output), not executed as a stream"
                .into(),
        )
        .into())
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}
