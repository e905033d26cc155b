//! Shuffle seam: how a stage's output partitions are written, and where
//! consumers read them from.
//!
//! The model: every map task (one partition of a stage) opens a
//! [`MapOutputWriter`] through the [`ShuffleWriter`], writes batches to any of
//! the stage's output partitions, then commits. Commit returns one
//! [`ShuffleLocation`] per non-empty output partition, with row and byte
//! counts; only committed locations are ever read, so a failed or retried
//! attempt never mixes with another. Consumers read each location through the
//! [`ShuffleReader`].
//!
//! The framework default, [`local::LocalDiskShuffle`], keeps map outputs in
//! the executor's memory while its [`memory_tier`] has room, and otherwise
//! writes compressed Arrow IPC files under the executor's work directory; it
//! serves both to other executors over Arrow Flight.

pub mod local;
pub mod memory_tier;
pub mod object_store;

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::object_store::ObjectStoreRegistry;
use futures::stream::BoxStream;

use crate::error::{BallistaError, Result};
use crate::flight::FlightClientPool;
use crate::ids::{ExecutorId, JobId, StageId, TaskId};
use crate::proto;

/// Network identity of an executor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExecutorAddress {
    /// Executor id.
    pub id: ExecutorId,
    /// Host name or address other processes use to reach it.
    pub host: String,
    /// Port of its Flight + control service.
    pub port: u16,
}

/// Size of one written partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionStats {
    /// Rows written.
    pub num_rows: u64,
    /// Record batches written.
    pub num_batches: u64,
    /// Bytes stored: the file's (compressed) bytes on disk, or the memory
    /// of the Arrow buffers for output held in memory.
    pub num_bytes: u64,
}

/// Where one output partition of one map task can be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShuffleLocation {
    /// Job that produced it.
    pub job_id: JobId,
    /// Stage that produced it.
    pub stage_id: StageId,
    /// Map task (partition of the producing stage).
    pub map_partition: usize,
    /// Output partition of the shuffle.
    pub output_partition: usize,
    /// Attempt of the map task that committed it.
    pub attempt: u32,
    /// Executor that wrote it.
    pub executor: ExecutorAddress,
    /// Meaningful to the reader matching the writer that produced it: for the
    /// local-disk shuffle, a path relative to the executor's work directory.
    pub path: String,
    /// What was written.
    pub stats: PartitionStats,
    /// Whether the data outlives the executor that wrote it (object
    /// storage). The scheduler re-runs the map task of a non-durable
    /// location when its executor is lost; a durable one is re-run only when
    /// a consumer reports that it cannot be fetched.
    pub durable: bool,
    /// The Flight ticket the scheduler signed for reading this location from
    /// its executor (a capability for this one partition, until it
    /// expires). Writers leave it empty: the scheduler fills it in when the
    /// map task commits, overwriting whatever an executor put there.
    pub ticket: Vec<u8>,
}

impl ShuffleLocation {
    /// Wire form.
    pub fn to_proto(&self) -> proto::ShuffleLocation {
        proto::ShuffleLocation {
            job_id: self.job_id.to_string(),
            stage_id: self.stage_id.0,
            map_partition: self.map_partition as u32,
            output_partition: self.output_partition as u32,
            attempt: self.attempt,
            executor_id: self.executor.id.to_string(),
            host: self.executor.host.clone(),
            port: self.executor.port as u32,
            path: self.path.clone(),
            stats: Some(proto::PartitionStats {
                num_rows: self.stats.num_rows,
                num_batches: self.stats.num_batches,
                num_bytes: self.stats.num_bytes,
            }),
            durable: self.durable,
            ticket: self.ticket.clone(),
        }
    }

    /// Wire form of a list of read partitions (each a list of locations).
    pub fn partitions_to_proto(
        partitions: &[Vec<ShuffleLocation>],
    ) -> Vec<proto::ShuffleReadPartition> {
        partitions
            .iter()
            .map(|locations| proto::ShuffleReadPartition {
                locations: locations.iter().map(ShuffleLocation::to_proto).collect(),
            })
            .collect()
    }

    /// Parses what [`partitions_to_proto`](Self::partitions_to_proto) wrote.
    pub fn partitions_from_proto(
        partitions: &[proto::ShuffleReadPartition],
    ) -> Result<Vec<Vec<ShuffleLocation>>> {
        partitions
            .iter()
            .map(|p| {
                p.locations
                    .iter()
                    .map(ShuffleLocation::from_proto)
                    .collect()
            })
            .collect()
    }

    /// Parses the wire form, validating ids.
    pub fn from_proto(p: &proto::ShuffleLocation) -> Result<Self> {
        let stats = p.stats.unwrap_or_default();
        let port = u16::try_from(p.port)
            .map_err(|_| BallistaError::InvalidInput(format!("invalid port {}", p.port)))?;
        Ok(Self {
            job_id: JobId::parse(&p.job_id)?,
            stage_id: StageId(p.stage_id),
            map_partition: p.map_partition as usize,
            output_partition: p.output_partition as usize,
            attempt: p.attempt,
            executor: ExecutorAddress {
                id: ExecutorId::new(p.executor_id.clone()),
                host: p.host.clone(),
                port,
            },
            path: p.path.clone(),
            stats: PartitionStats {
                num_rows: stats.num_rows,
                num_batches: stats.num_batches,
                num_bytes: stats.num_bytes,
            },
            durable: p.durable,
            ticket: p.ticket.to_vec(),
        })
    }
}

/// What a shuffle writer is told about the map task it writes for.
#[derive(Debug, Clone)]
pub struct MapTaskContext {
    /// The map task.
    pub task: TaskId,
    /// Schema of every batch that will be written.
    pub schema: SchemaRef,
    /// Number of output partitions of the shuffle.
    pub num_output_partitions: usize,
    /// The executor running the task.
    pub executor: ExecutorAddress,
    /// The executor's work directory (absolute).
    pub work_dir: PathBuf,
    /// The executor's object stores (every configured storage plugin), for
    /// shuffles that write to object storage.
    pub object_stores: Arc<dyn ObjectStoreRegistry>,
    /// The executor's in-memory shuffle tier and the task's memory pool, for
    /// a shuffle that keeps output in memory (`None`: files only). Output
    /// kept there must be published under the location's `path`, so that
    /// the executor's Flight service and local readers find it.
    pub memory_tier: Option<memory_tier::MemoryTierAccess>,
}

/// Where an executor keeps shuffle data: handed to clean-up.
#[derive(Debug, Clone)]
pub struct ShuffleStorage {
    /// The executor's work directory (absolute).
    pub work_dir: PathBuf,
    /// The executor's object stores.
    pub object_stores: Arc<dyn ObjectStoreRegistry>,
}

/// Creates a writer per map task.
#[async_trait]
pub trait ShuffleWriter: Send + Sync + Debug {
    /// Short name, for logs.
    fn name(&self) -> &str;

    /// The object-storage folder this shuffle writes under, if it writes to
    /// object storage at all. The executor checks at start-up that a storage
    /// plugin serves it and allows writing there.
    fn storage_url(&self) -> Option<&url::Url> {
        None
    }

    /// Opens the writer for one map task attempt.
    async fn open(&self, ctx: MapTaskContext) -> Result<Box<dyn MapOutputWriter>>;

    /// Deletes everything written for `job_id`. Called on every executor
    /// that ran tasks of the job once the job has ended (succeeded, failed or
    /// cancelled), so it must be idempotent: shared storage may already have
    /// been cleaned by another executor.
    async fn remove_job_data(&self, job_id: &JobId, storage: &ShuffleStorage) -> Result<()>;
}

/// Receives one map task's output, partition by partition.
#[async_trait]
pub trait MapOutputWriter: Send {
    /// Appends a batch to an output partition.
    async fn write(&mut self, output_partition: usize, batch: RecordBatch) -> Result<()>;

    /// Makes the written partitions visible and returns their locations
    /// (non-empty partitions only).
    async fn commit(self: Box<Self>) -> Result<Vec<ShuffleLocation>>;

    /// Discards everything written; nothing of this attempt is ever read.
    async fn abort(self: Box<Self>);
}

/// What a reader knows about where it runs.
#[derive(Debug, Clone)]
pub struct ShuffleReadContext {
    /// Schema of the data.
    pub schema: SchemaRef,
    /// The executor doing the reading, when it is one (clients are not).
    pub local_executor: Option<ExecutorId>,
    /// That executor's work directory.
    pub work_dir: Option<PathBuf>,
    /// Shared Flight connections.
    pub flight: FlightClientPool,
    /// The reading process's object stores.
    pub object_stores: Arc<dyn ObjectStoreRegistry>,
    /// The reading executor's in-memory shuffle tier: a location of this
    /// executor may be held there rather than on disk.
    pub memory_tier: Option<Arc<memory_tier::ShuffleMemoryTier>>,
}

/// Reads committed shuffle locations.
#[async_trait]
pub trait ShuffleReader: Send + Sync + Debug {
    /// Short name, for logs.
    fn name(&self) -> &str;

    /// A stream of the batches stored at `location`. Failures to reach or read
    /// the data are reported as [`BallistaError::FetchFailed`].
    async fn read(
        &self,
        location: &ShuffleLocation,
        ctx: &ShuffleReadContext,
    ) -> Result<SendableRecordBatchStream>;

    /// The stored Arrow IPC stream of `location`, undecoded, for the
    /// executor's Flight service to pass on to a client that cannot read the
    /// shuffle storage itself (a job's final results). Returns `Ok(None)`
    /// for locations this reader does not keep as IPC bytes outside the work
    /// directory (the default; the local-disk shuffle's files are served
    /// from the work directory directly). Implementations must refuse
    /// locations outside their own storage: the request comes from the
    /// network.
    async fn open_ipc_bytes(
        &self,
        location: &ShuffleLocation,
        ctx: &ShuffleReadContext,
    ) -> Result<Option<BoxStream<'static, Result<Bytes>>>> {
        let _ = (location, ctx);
        Ok(None)
    }
}
