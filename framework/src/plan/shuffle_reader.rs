//! Reads a completed stage's shuffle output.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::TaskEnv;
use super::unresolved_shuffle::read_properties;
use super::wire_types::{conform, wire_schema};
use crate::error::BallistaError;
use crate::flight::FlightClientPool;
use crate::ids::StageId;
use crate::plugin::shuffle::local::LocalDiskShuffle;
use crate::plugin::shuffle::{ShuffleLocation, ShuffleReadContext, ShuffleReader};
use crate::proto;

/// Metric: shuffle locations read from another executor.
pub const REMOTE_FETCHES: &str = "remote_fetches";
/// Metric: shuffle locations read from the local work directory.
pub const LOCAL_READS: &str = "local_reads";
/// Metric: bytes of the locations counted in [`REMOTE_FETCHES`].
pub const REMOTE_FETCH_BYTES: &str = "remote_fetch_bytes";
/// Metric: bytes of the locations counted in [`LOCAL_READS`].
pub const LOCAL_READ_BYTES: &str = "local_read_bytes";

/// How many map outputs one partition reads at the same time.
const CONCURRENT_FETCHES: usize = 8;

/// Reads, for each of its partitions, a list of committed shuffle locations.
#[derive(Debug)]
pub struct ShuffleReaderExec {
    stage_id: StageId,
    schema: SchemaRef,
    partitions: Vec<Vec<ShuffleLocation>>,
    output_partitioning: Partitioning,
    equivalence: EquivalenceProperties,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// Map tasks still running when the plan was made, whose outputs the
    /// executor asks the scheduler for ([`MapOutputSource`]).
    pending_map_tasks: Vec<u32>,
}

/// Where a consumer task that started while a stage it reads was still
/// running gets the outputs of that stage's later map tasks: the executor
/// asks the scheduler (`AwaitMapOutputs`).
pub trait MapOutputSource: Send + Sync + fmt::Debug {
    /// The outputs of `request.awaited_map_tasks` committed by now, or none
    /// after a short wait.
    fn await_map_outputs(
        &self,
        request: proto::AwaitMapOutputsRequest,
    ) -> BoxFuture<'static, crate::error::Result<proto::AwaitMapOutputsResponse>>;
}

impl ShuffleReaderExec {
    /// A reader of `stage_id`'s output; `partitions[p]` lists what partition
    /// `p` reads. `output_partitioning` must have `partitions.len()` partitions.
    pub fn try_new(
        stage_id: StageId,
        schema: SchemaRef,
        partitions: Vec<Vec<ShuffleLocation>>,
        output_partitioning: Partitioning,
        equivalence: EquivalenceProperties,
    ) -> crate::error::Result<Self> {
        if output_partitioning.partition_count() != partitions.len() {
            return Err(BallistaError::Internal(format!(
                "shuffle reader of stage {stage_id}: partitioning has {} partitions but {} were given",
                output_partitioning.partition_count(),
                partitions.len()
            )));
        }
        let properties = read_properties(&output_partitioning, equivalence.clone());
        Ok(Self {
            stage_id,
            schema,
            partitions,
            output_partitioning,
            equivalence,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
            pending_map_tasks: Vec::new(),
        })
    }

    /// The same read (stage, schema, what is known of the rows, awaited
    /// map tasks) over `partitions`, declared as `output_partitioning`.
    pub fn with_partitions(
        &self,
        partitions: Vec<Vec<ShuffleLocation>>,
        output_partitioning: Partitioning,
    ) -> crate::error::Result<Self> {
        Ok(Self::try_new(
            self.stage_id,
            Arc::clone(&self.schema),
            partitions,
            output_partitioning,
            self.equivalence.clone(),
        )?
        .with_pending_map_tasks(self.pending_map_tasks.clone()))
    }

    /// The same reader, awaiting the outputs of `map_tasks` as well: its
    /// partitions list only the map outputs committed so far.
    pub fn with_pending_map_tasks(mut self, mut map_tasks: Vec<u32>) -> Self {
        map_tasks.sort_unstable();
        map_tasks.dedup();
        self.pending_map_tasks = map_tasks;
        self
    }

    /// Map tasks whose outputs it still awaits (empty: its partitions list
    /// everything it reads).
    pub fn pending_map_tasks(&self) -> &[u32] {
        &self.pending_map_tasks
    }

    /// The locations of the pending map tasks that `partition` reads, as
    /// the scheduler hands them out: each answer's readable locations, in
    /// turn, until every pending map task has committed.
    fn later_locations(
        &self,
        partition: usize,
        env: Option<&Arc<TaskEnv>>,
    ) -> DFResult<BoxStream<'static, DFResult<ShuffleLocation>>> {
        if self.pending_map_tasks.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        let (task, executor, source) = match env.and_then(|env| {
            env.map_outputs.as_ref().map(|source| {
                (
                    env.task.clone(),
                    env.executor.id.clone(),
                    Arc::clone(source),
                )
            })
        }) {
            Some(found) => found,
            None => {
                return Err(DataFusionError::from(BallistaError::Internal(format!(
                    "shuffle reader of stage {} awaits map outputs but runs outside an executor task",
                    self.stage_id
                ))));
            }
        };
        let request = proto::AwaitMapOutputsRequest {
            task: Some(proto::TaskId {
                job_id: task.job_id.to_string(),
                stage_id: task.stage_id.0,
                partition: task.partition as u32,
                attempt: task.attempt,
            }),
            executor_id: executor.to_string(),
            map_stage_id: self.stage_id.0,
            reader_partition: partition as u32,
            awaited_map_tasks: self.pending_map_tasks.clone(),
        };
        let answers = futures::stream::try_unfold(request, move |mut request| {
            let source = Arc::clone(&source);
            async move {
                while !request.awaited_map_tasks.is_empty() {
                    let answer = source.await_map_outputs(request.clone()).await?;
                    if answer.complete {
                        request.awaited_map_tasks.clear();
                    } else {
                        request
                            .awaited_map_tasks
                            .retain(|m| !answer.map_tasks.contains(m));
                    }
                    if answer.locations.is_empty() {
                        continue;
                    }
                    let locations = answer
                        .locations
                        .iter()
                        .map(ShuffleLocation::from_proto)
                        .collect::<crate::error::Result<Vec<_>>>()?;
                    return Ok(Some((locations, request)));
                }
                Ok::<_, BallistaError>(None)
            }
        });
        Ok(answers
            .map_err(DataFusionError::from)
            .map_ok(|locations| {
                futures::stream::iter(
                    locations
                        .into_iter()
                        .filter(|l| l.stats.num_rows > 0)
                        .map(Ok::<_, DataFusionError>),
                )
            })
            .try_flatten()
            .boxed())
    }

    /// The producer stage.
    pub fn stage_id(&self) -> StageId {
        self.stage_id
    }
    /// The locations each partition reads.
    pub fn partitions(&self) -> &[Vec<ShuffleLocation>] {
        &self.partitions
    }
    /// Declared output partitioning.
    pub fn output_partitioning(&self) -> &Partitioning {
        &self.output_partitioning
    }
    /// What is known of the rows read: orderings, equal expressions, constants.
    pub fn equivalence(&self) -> &EquivalenceProperties {
        &self.equivalence
    }
}

impl DisplayAs for ShuffleReaderExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let locations: usize = self.partitions.iter().map(Vec::len).sum();
        write!(
            f,
            "ShuffleReaderExec: stage={}, partitions={}, locations={locations}",
            self.stage_id,
            self.partitions.len()
        )?;
        if !self.pending_map_tasks.is_empty() {
            write!(f, ", awaiting {} map task(s)", self.pending_map_tasks.len())?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ShuffleReaderExec {
    fn name(&self) -> &str {
        "ShuffleReaderExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    crate::plan::leaf_node_methods!();

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let locations: Vec<ShuffleLocation> = self
            .partitions
            .get(partition)
            .ok_or_else(|| {
                DataFusionError::from(BallistaError::Internal(format!(
                    "shuffle reader of stage {} has no partition {partition}",
                    self.stage_id
                )))
            })?
            .iter()
            .filter(|l| l.stats.num_rows > 0)
            .cloned()
            .collect();
        let env = TaskEnv::from_context(&context);
        let later = self.later_locations(partition, env.as_ref().ok())?;
        let (reader, read_ctx): (Arc<dyn ShuffleReader>, ShuffleReadContext) = match env {
            Ok(env) => (
                Arc::clone(&env.shuffle_reader),
                ShuffleReadContext {
                    schema: wire_schema(&self.schema),
                    local_executor: Some(env.executor.id.clone()),
                    work_dir: Some(env.work_dir.clone()),
                    flight: env.flight.clone(),
                    object_stores: Arc::clone(&env.object_stores),
                    memory_tier: env.memory_tier.clone(),
                },
            ),
            // Outside an executor (a client inspecting a plan): Flight only.
            Err(_) => (
                Arc::new(LocalDiskShuffle::default()),
                ShuffleReadContext {
                    schema: wire_schema(&self.schema),
                    local_executor: None,
                    work_dir: None,
                    flight: FlightClientPool::default(),
                    object_stores: Arc::clone(&context.runtime_env().object_store_registry),
                    memory_tier: None,
                },
            ),
        };
        let output_rows = MetricBuilder::new(&self.metrics).output_rows(partition);
        let remote_fetches = MetricBuilder::new(&self.metrics).counter(REMOTE_FETCHES, partition);
        let local_reads = MetricBuilder::new(&self.metrics).counter(LOCAL_READS, partition);
        let remote_bytes = MetricBuilder::new(&self.metrics).counter(REMOTE_FETCH_BYTES, partition);
        let local_bytes = MetricBuilder::new(&self.metrics).counter(LOCAL_READ_BYTES, partition);
        let read_ctx = Arc::new(read_ctx);
        let batches = futures::stream::iter(locations.into_iter().map(Ok))
            .chain(later)
            .map(move |location: DFResult<ShuffleLocation>| {
                let reader = Arc::clone(&reader);
                let read_ctx = Arc::clone(&read_ctx);
                let location = match location {
                    Ok(location) => location,
                    Err(e) => return futures::future::Either::Left(futures::future::ready(Err(e))),
                };
                let bytes = usize::try_from(location.stats.num_bytes).unwrap_or(usize::MAX);
                if read_ctx.local_executor.as_ref() == Some(&location.executor.id) {
                    local_reads.add(1);
                    local_bytes.add(bytes);
                } else {
                    remote_fetches.add(1);
                    remote_bytes.add(bytes);
                }
                futures::future::Either::Right(async move {
                    reader
                        .read(&location, &read_ctx)
                        .await
                        .map_err(DataFusionError::from)
                })
            })
            .buffer_unordered(CONCURRENT_FETCHES)
            .try_flatten_unordered(CONCURRENT_FETCHES)
            .and_then({
                let schema = Arc::clone(&self.schema);
                move |batch| {
                    futures::future::ready(conform(batch, &schema).map_err(DataFusionError::from))
                }
            })
            .inspect_ok(move |batch| output_rows.add(batch.num_rows()));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Totals of the shuffle-read counters over every reader in `plan`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShuffleReadTotals {
    /// Locations fetched from other executors.
    pub remote_fetches: u64,
    /// Locations read from this executor.
    pub local_reads: u64,
    /// Bytes of the locations fetched from other executors.
    pub remote_fetch_bytes: u64,
    /// Bytes of the locations read from this executor.
    pub local_read_bytes: u64,
}

/// The shuffle reads of an executed `plan`, added up over its readers.
pub fn shuffle_read_counts(plan: &Arc<dyn ExecutionPlan>) -> ShuffleReadTotals {
    let mut totals = ShuffleReadTotals::default();
    let mut stack = vec![Arc::clone(plan)];
    while let Some(node) = stack.pop() {
        if let Some(reader) = node.downcast_ref::<ShuffleReaderExec>()
            && let Some(metrics) = reader.metrics()
        {
            let sum = |name: &str| metrics.sum_by_name(name).map_or(0, |v| v.as_usize()) as u64;
            totals.remote_fetches += sum(REMOTE_FETCHES);
            totals.local_reads += sum(LOCAL_READS);
            totals.remote_fetch_bytes += sum(REMOTE_FETCH_BYTES);
            totals.local_read_bytes += sum(LOCAL_READ_BYTES);
        }
        stack.extend(node.children().into_iter().cloned());
    }
    totals
}

/// Spills of every operator of an executed plan: (spill files, bytes).
pub fn spill_totals(plan: &Arc<dyn ExecutionPlan>) -> (u64, u64) {
    let mut count = 0;
    let mut bytes = 0;
    let mut stack = vec![Arc::clone(plan)];
    while let Some(node) = stack.pop() {
        if let Some(metrics) = node.metrics() {
            count += metrics.spill_count().unwrap_or(0) as u64;
            bytes += metrics.spilled_bytes().unwrap_or(0) as u64;
        }
        stack.extend(node.children().into_iter().cloned());
    }
    (count, bytes)
}
