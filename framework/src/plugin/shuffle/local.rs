//! The default shuffle: compressed Arrow IPC stream files on the executor's
//! local disk, read directly when local and over Arrow Flight otherwise.
//!
//! Layout under the work directory:
//! `<job>/s<stage>/m<map>-a<attempt>-p<output>.arrow`. Files are written under
//! a temporary name and renamed on commit, so a reader never sees a partial
//! file and an aborted attempt leaves nothing behind.
//!
//! With the executor's in-memory tier ([`super::memory_tier`]) a map output
//! first stays in memory, under the same paths, as long as its reservation is
//! granted, it is within `memory_max_output` and the tier holds less than
//! `memory_fraction` of the executor's budget; the first refusal sends the
//! whole map output to disk.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow::ipc::CompressionType;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::TryStreamExt;

use super::memory_tier::MemoryMapOutput;
use super::{
    MapOutputWriter, MapTaskContext, PartitionStats, ShuffleLocation, ShuffleReadContext,
    ShuffleReader, ShuffleStorage, ShuffleWriter,
};
use crate::error::{BallistaError, Result};
use crate::flight::ipc_file_batches;
use crate::ids::JobId;

const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// Share of an executor's memory budget its in-memory shuffle tier may hold
/// by default.
///
/// The tier pays where stages are many and small: it saves their encoding,
/// file and decoding round trips, which dominate a short stage. A large
/// output gains little from it (its files stream through the page cache),
/// yet stays resident on top of the operators' memory until every stage
/// reading it has finished. At TPC-H scale factor 10 a quarter of a 7 GiB
/// budget held 1.8 GiB per executor, took the cluster's peak resident size
/// to twice single-process DataFusion's, and ran no faster than 5% did
/// (README, Performance); at scale factor 1, 5% of that budget already holds
/// every output.
pub const DEFAULT_MEMORY_FRACTION: f64 = 0.05;

/// The largest map output (all its partitions) the in-memory tier keeps by
/// default; a larger one is written to disk.
///
/// A held output stays resident until every stage reading it has finished,
/// i.e. while those stages build their hash tables and aggregates, so the
/// largest outputs set the executor's peak. At TPC-H scale factor 1 the
/// outputs above this (joined rows and partial aggregates of 50-65 MB per
/// task in q18 and q21) took each executor's peak from about 300-350 MiB to
/// 270 MiB and the cluster's from 1.29-1.44x single-process DataFusion's to
/// 1.13-1.21x; at 8 MiB the peak was the same but q7, q9, q17, q18 and q21
/// lost 50-200 ms each to encoding and decoding (README, Performance).
pub const DEFAULT_MEMORY_MAX_OUTPUT: u64 = 32 << 20;

/// Local-disk shuffle (writer and reader).
#[derive(Debug, Clone)]
pub struct LocalDiskShuffle {
    compression: Option<CompressionType>,
    memory_fraction: f64,
    memory_max_output: usize,
}

impl Default for LocalDiskShuffle {
    fn default() -> Self {
        Self {
            compression: Some(CompressionType::LZ4_FRAME),
            memory_fraction: DEFAULT_MEMORY_FRACTION,
            memory_max_output: usize::try_from(DEFAULT_MEMORY_MAX_OUTPUT).unwrap_or(usize::MAX),
        }
    }
}

impl LocalDiskShuffle {
    /// A shuffle writing with the given IPC body compression (`None` for none).
    pub fn with_compression(compression: Option<CompressionType>) -> Self {
        Self {
            compression,
            ..Self::default()
        }
    }

    /// Keeps map outputs in the executor's memory while its in-memory tier
    /// holds less than `fraction` of the executor's budget (0: always
    /// write files).
    pub fn with_memory_fraction(mut self, fraction: f64) -> Self {
        self.memory_fraction = fraction.clamp(0.0, 1.0);
        self
    }

    /// Keeps in memory only map outputs of at most `bytes` (all their
    /// partitions together); larger ones are written to disk.
    pub fn with_memory_max_output(mut self, bytes: u64) -> Self {
        self.memory_max_output = usize::try_from(bytes).unwrap_or(usize::MAX);
        self
    }

    fn write_options(&self) -> Result<IpcWriteOptions> {
        Ok(IpcWriteOptions::default().try_with_compression(self.compression)?)
    }
}

#[async_trait]
impl ShuffleWriter for LocalDiskShuffle {
    fn name(&self) -> &str {
        "local"
    }

    async fn open(&self, ctx: MapTaskContext) -> Result<Box<dyn MapOutputWriter>> {
        let relative_dir = format!("{}/s{}", ctx.task.job_id, ctx.task.stage_id);
        let stage_dir = ctx.work_dir.join(&relative_dir);
        tokio::fs::create_dir_all(&stage_dir).await?;
        let files = (0..ctx.num_output_partitions).map(|_| None).collect();
        let memory = match &ctx.memory_tier {
            Some(access) if self.memory_fraction > 0.0 && self.memory_max_output > 0 => {
                Some(MemoryMapOutput::new(
                    access,
                    &ctx.task.job_id,
                    &ctx.task.to_string(),
                    ctx.num_output_partitions,
                    self.memory_fraction,
                    self.memory_max_output,
                ))
            }
            _ => None,
        };
        Ok(Box::new(LocalMapOutputWriter {
            options: self.write_options()?,
            memory,
            ctx,
            stage_dir,
            relative_dir,
            files,
        }))
    }

    async fn remove_job_data(&self, job_id: &JobId, storage: &ShuffleStorage) -> Result<()> {
        remove_local_job_dir(job_id, &storage.work_dir).await
    }
}

/// Deletes `<work_dir>/<job>`, retrying briefly while cancelled tasks close
/// their files.
pub(crate) async fn remove_local_job_dir(job_id: &JobId, work_dir: &Path) -> Result<()> {
    let dir = work_dir.join(job_id.as_str());
    // A task being cancelled may still be closing a file in the folder;
    // try again briefly rather than leave the data behind.
    let mut attempt = 0;
    loop {
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) if attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

struct PartitionFile {
    writer: StreamWriter<BufWriter<File>>,
    temp_path: PathBuf,
    final_path: PathBuf,
    relative_path: String,
    rows: u64,
    batches: u64,
}

struct LocalMapOutputWriter {
    ctx: MapTaskContext,
    options: IpcWriteOptions,
    /// The output while it is kept in memory; `None` once it goes to files.
    memory: Option<MemoryMapOutput>,
    stage_dir: PathBuf,
    relative_dir: String,
    files: Vec<Option<PartitionFile>>,
}

impl LocalMapOutputWriter {
    fn file_name(&self, output_partition: usize) -> String {
        let task = &self.ctx.task;
        format!(
            "m{}-a{}-p{}.arrow",
            task.partition, task.attempt, output_partition
        )
    }

    fn write_to_file(&mut self, output_partition: usize, batch: &RecordBatch) -> Result<()> {
        let file = self.file_for(output_partition)?;
        file.writer.write(batch)?;
        file.rows += batch.num_rows() as u64;
        file.batches += 1;
        Ok(())
    }

    fn location(
        &self,
        output_partition: usize,
        path: String,
        stats: PartitionStats,
    ) -> ShuffleLocation {
        ShuffleLocation {
            job_id: self.ctx.task.job_id.clone(),
            stage_id: self.ctx.task.stage_id,
            map_partition: self.ctx.task.partition,
            output_partition,
            attempt: self.ctx.task.attempt,
            executor: self.ctx.executor.clone(),
            path,
            stats,
            // On this executor (memory or disk): gone with the executor.
            durable: false,
            ticket: Vec::new(),
        }
    }

    fn file_for(&mut self, output_partition: usize) -> Result<&mut PartitionFile> {
        let num = self.files.len();
        if output_partition >= num {
            return Err(BallistaError::Internal(format!(
                "output partition {output_partition} out of range (shuffle has {num})"
            )));
        }
        if self.files[output_partition].is_none() {
            let name = self.file_name(output_partition);
            let temp_path = self.stage_dir.join(format!(".{name}.tmp"));
            let final_path = self.stage_dir.join(&name);
            // Exclusive creation: two writers can never share a file.
            let file = File::options()
                .write(true)
                .create_new(true)
                .open(&temp_path)?;
            let file = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
            let writer =
                StreamWriter::try_new_with_options(file, &self.ctx.schema, self.options.clone())?;
            self.files[output_partition] = Some(PartitionFile {
                writer,
                temp_path,
                final_path,
                relative_path: format!("{}/{name}", self.relative_dir),
                rows: 0,
                batches: 0,
            });
        }
        Ok(self.files[output_partition]
            .as_mut()
            .expect("created above"))
    }
}

impl Drop for LocalMapOutputWriter {
    /// A task that is cancelled (its future dropped) never reaches `commit`
    /// or `abort`: its temporary files are removed here.
    fn drop(&mut self) {
        for file in std::mem::take(&mut self.files).into_iter().flatten() {
            let _ = std::fs::remove_file(&file.temp_path);
        }
    }
}

#[async_trait]
impl MapOutputWriter for LocalMapOutputWriter {
    async fn write(&mut self, output_partition: usize, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let Some(memory) = self.memory.as_mut() else {
            return self.write_to_file(output_partition, &batch);
        };
        let Err(refused) = memory.try_push(output_partition, batch) else {
            return Ok(());
        };
        // Memory refused: the whole map output goes to disk, what was kept
        // so far first, so that each partition's batches keep their order.
        let kept = self.memory.take().map(MemoryMapOutput::into_batches);
        for (partition, batches) in kept.into_iter().flatten().enumerate() {
            for batch in &batches {
                self.write_to_file(partition, batch)?;
            }
        }
        self.write_to_file(output_partition, &refused)
    }

    async fn commit(mut self: Box<Self>) -> Result<Vec<ShuffleLocation>> {
        if let Some(memory) = self.memory.take() {
            let paths: Vec<Option<String>> = (0..self.ctx.num_output_partitions)
                .map(|p| Some(format!("{}/{}", self.relative_dir, self.file_name(p))))
                .collect();
            let stats = memory.commit(self.ctx.task.stage_id, &paths);
            return Ok(stats
                .into_iter()
                .zip(paths)
                .enumerate()
                .filter(|(_, ((rows, _, _), _))| *rows > 0)
                .map(|(p, ((num_rows, num_batches, num_bytes), path))| {
                    self.location(
                        p,
                        path.unwrap_or_default(),
                        PartitionStats {
                            num_rows,
                            num_batches,
                            num_bytes,
                        },
                    )
                })
                .collect());
        }
        let mut locations = Vec::new();
        let files = std::mem::take(&mut self.files);
        for (output_partition, file) in files.into_iter().enumerate() {
            let Some(mut file) = file else { continue };
            file.writer.finish()?;
            let buffered = file.writer.into_inner()?;
            buffered
                .into_inner()
                .map_err(|e| BallistaError::Io(format!("flushing shuffle file: {e}")))?;
            std::fs::rename(&file.temp_path, &file.final_path)?;
            let num_bytes = std::fs::metadata(&file.final_path)?.len();
            let stats = PartitionStats {
                num_rows: file.rows,
                num_batches: file.batches,
                num_bytes,
            };
            locations.push(self.location(output_partition, file.relative_path, stats));
        }
        Ok(locations)
    }

    async fn abort(mut self: Box<Self>) {
        for file in std::mem::take(&mut self.files).into_iter().flatten() {
            drop(file.writer);
            let _ = std::fs::remove_file(&file.temp_path);
        }
    }
}

#[async_trait]
impl ShuffleReader for LocalDiskShuffle {
    fn name(&self) -> &str {
        "local"
    }

    async fn read(
        &self,
        location: &ShuffleLocation,
        ctx: &ShuffleReadContext,
    ) -> Result<SendableRecordBatchStream> {
        let fetch_failed = {
            let location = location.clone();
            move |message: String| BallistaError::FetchFailed {
                executor_id: location.executor.id.to_string(),
                map_stage_id: location.stage_id.0,
                map_partition: location.map_partition as u32,
                message,
            }
        };
        let is_local = ctx.local_executor.as_ref() == Some(&location.executor.id);
        if is_local
            && let Some(batches) = ctx
                .memory_tier
                .as_ref()
                .and_then(|tier| tier.partition(&location.job_id, &location.path))
        {
            // The map task's own batches: no decoding, no copy.
            let batches: Vec<RecordBatch> = batches.to_vec();
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                ctx.schema.clone(),
                futures::stream::iter(batches.into_iter().map(Ok)),
            )));
        }
        match (&ctx.work_dir, is_local) {
            (Some(work_dir), true) => {
                let path = work_dir.join(&location.path);
                if !path.starts_with(work_dir) || location.path.contains("..") {
                    return Err(BallistaError::PermissionDenied(format!(
                        "shuffle location {:?} is outside the work directory",
                        location.path
                    )));
                }
                let describe = location.path.clone();
                let batches = ipc_file_batches(path).map_err(move |e| {
                    DataFusionError::from(fetch_failed(format!("reading {describe}: {e}")))
                });
                Ok(Box::pin(RecordBatchStreamAdapter::new(
                    ctx.schema.clone(),
                    batches,
                )))
            }
            _ => {
                let stream = ctx
                    .flight
                    .fetch(
                        &location.executor.host,
                        location.executor.port,
                        &location.job_id,
                        &location.path,
                        &location.ticket,
                        ctx.schema.clone(),
                    )
                    .await
                    .map_err(|e| fetch_failed(e.to_string()))?;
                let schema = ctx.schema.clone();
                let mapped = stream.map_err(move |e| {
                    DataFusionError::from(fetch_failed(
                        BallistaError::from_datafusion(e).to_string(),
                    ))
                });
                Ok(Box::pin(RecordBatchStreamAdapter::new(schema, mapped)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flight::FlightClientPool;
    use crate::ids::{ExecutorId, StageId, TaskId};
    use crate::plugin::shuffle::ExecutorAddress;
    use arrow::array::Int32Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn context(work_dir: &Path, attempt: u32) -> MapTaskContext {
        MapTaskContext {
            task: TaskId {
                job_id: JobId::parse("job1").unwrap(),
                stage_id: StageId(2),
                partition: 3,
                attempt,
            },
            schema: Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)])),
            num_output_partitions: 4,
            executor: ExecutorAddress {
                id: ExecutorId::new("e1"),
                host: "127.0.0.1".into(),
                port: 1,
            },
            work_dir: work_dir.to_path_buf(),
            object_stores: registry(),
            memory_tier: None,
        }
    }

    fn registry() -> Arc<dyn datafusion::execution::object_store::ObjectStoreRegistry> {
        Arc::new(crate::plugin::storage::BallistaObjectStoreRegistry::new(&[]))
    }

    #[tokio::test]
    async fn commit_publishes_only_written_partitions_and_abort_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().canonicalize().unwrap();
        let shuffle = LocalDiskShuffle::default();
        let ctx = context(&work, 0);
        let batch = RecordBatch::try_new(
            ctx.schema.clone(),
            vec![Arc::new(Int32Array::from(vec![1, 2, 3]))],
        )
        .unwrap();

        let mut aborted = shuffle.open(context(&work, 1)).await.unwrap();
        aborted.write(0, batch.clone()).await.unwrap();
        aborted.abort().await;

        let mut writer = shuffle.open(ctx.clone()).await.unwrap();
        writer.write(1, batch.clone()).await.unwrap();
        writer.write(1, batch.clone()).await.unwrap();
        writer.write(3, batch.clone()).await.unwrap();
        let locations = writer.commit().await.unwrap();
        assert_eq!(
            locations
                .iter()
                .map(|l| l.output_partition)
                .collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(locations[0].stats.num_rows, 6);
        assert_eq!(locations[0].path, "job1/s2/m3-a0-p1.arrow");

        let entries: Vec<String> = std::fs::read_dir(work.join("job1/s2"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(entries.len(), 2, "only committed files remain: {entries:?}");

        let read_ctx = ShuffleReadContext {
            schema: ctx.schema.clone(),
            local_executor: Some(ExecutorId::new("e1")),
            work_dir: Some(work.clone()),
            flight: FlightClientPool::default(),
            object_stores: registry(),
            memory_tier: None,
        };
        let batches: Vec<RecordBatch> = shuffle
            .read(&locations[0], &read_ctx)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 6);

        shuffle
            .remove_job_data(
                &JobId::parse("job1").unwrap(),
                &ShuffleStorage {
                    work_dir: work.clone(),
                    object_stores: registry(),
                },
            )
            .await
            .unwrap();
        assert!(!work.join("job1").exists());
    }

    fn int_batch(ctx: &MapTaskContext, values: Vec<i32>) -> RecordBatch {
        RecordBatch::try_new(ctx.schema.clone(), vec![Arc::new(Int32Array::from(values))]).unwrap()
    }

    #[tokio::test]
    async fn output_stays_in_memory_while_granted_and_goes_to_disk_once_refused() {
        use super::super::memory_tier::{MemoryTierAccess, ShuffleMemoryTier};
        use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().canonicalize().unwrap();
        let tier = Arc::new(ShuffleMemoryTier::new(1 << 20));
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1 << 20));
        let with_tier = |attempt| MapTaskContext {
            memory_tier: Some(MemoryTierAccess {
                tier: Arc::clone(&tier),
                pool: Arc::clone(&pool),
            }),
            ..context(&work, attempt)
        };
        let ctx = with_tier(0);
        let shuffle = LocalDiskShuffle::default().with_memory_fraction(0.5);
        let mut writer = shuffle.open(ctx.clone()).await.unwrap();
        writer.write(2, int_batch(&ctx, vec![1, 2])).await.unwrap();
        writer.write(2, int_batch(&ctx, vec![3])).await.unwrap();
        let locations = writer.commit().await.unwrap();
        assert_eq!(locations.len(), 1);
        assert_eq!(locations[0].path, "job1/s2/m3-a0-p2.arrow");
        assert_eq!(locations[0].stats.num_rows, 3);
        assert!(tier.held_bytes() > 0 && pool.reserved() == tier.held_bytes());
        assert!(
            !work.join("job1/s2/m3-a0-p2.arrow").exists(),
            "held in memory only"
        );

        // A local reader gets the batches themselves.
        let read_ctx = ShuffleReadContext {
            schema: ctx.schema.clone(),
            local_executor: Some(ExecutorId::new("e1")),
            work_dir: Some(work.clone()),
            flight: FlightClientPool::default(),
            object_stores: registry(),
            memory_tier: Some(Arc::clone(&tier)),
        };
        let read: Vec<RecordBatch> = shuffle
            .read(&locations[0], &read_ctx)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let values: Vec<i32> = read
            .iter()
            .flat_map(|b| {
                let column = b.column(0).as_any().downcast_ref::<Int32Array>().unwrap();
                column.values().to_vec()
            })
            .collect();
        assert_eq!(values, vec![1, 2, 3]);

        // A map output larger than the tier's share goes to disk whole,
        // in order, and holds no memory.
        let tiny = LocalDiskShuffle::default().with_memory_fraction(0.0005);
        let ctx = with_tier(1);
        let held_before = tier.held_bytes();
        let mut writer = tiny.open(ctx.clone()).await.unwrap();
        writer.write(0, int_batch(&ctx, vec![7])).await.unwrap();
        writer
            .write(0, int_batch(&ctx, (0..1000).collect()))
            .await
            .unwrap();
        let spilled = writer.commit().await.unwrap();
        assert_eq!(spilled[0].stats.num_rows, 1001);
        assert!(work.join(&spilled[0].path).exists());
        assert_eq!(tier.held_bytes(), held_before);
        assert_eq!(tier.map_outputs_sent_to_disk(), 1);
        let read: Vec<RecordBatch> = tiny
            .read(&spilled[0], &read_ctx)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let first = read[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap();
        assert_eq!(first.value(0), 7);

        assert!(tier.release_job(&JobId::parse("job1").unwrap()) > 0);
        assert_eq!((tier.held_bytes(), pool.reserved()), (0, 0));
    }

    #[tokio::test]
    async fn unreachable_executor_is_a_fetch_failure() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path(), 0);
        let location = ShuffleLocation {
            job_id: ctx.task.job_id.clone(),
            stage_id: StageId(2),
            map_partition: 3,
            output_partition: 0,
            attempt: 0,
            executor: ExecutorAddress {
                id: ExecutorId::new("far"),
                host: "127.0.0.1".into(),
                port: 1,
            },
            path: "job1/s2/m3-a0-p0.arrow".into(),
            stats: PartitionStats::default(),
            durable: false,
            ticket: Vec::new(),
        };
        let read_ctx = ShuffleReadContext {
            schema: ctx.schema.clone(),
            local_executor: Some(ExecutorId::new("e1")),
            work_dir: None,
            flight: FlightClientPool::default(),
            object_stores: registry(),
            memory_tier: None,
        };
        let err = match LocalDiskShuffle::default().read(&location, &read_ctx).await {
            Err(e) => e,
            Ok(stream) => {
                let r: std::result::Result<Vec<RecordBatch>, _> = stream.try_collect().await;
                BallistaError::from_datafusion(r.unwrap_err())
            }
        };
        match err {
            BallistaError::FetchFailed {
                executor_id,
                map_stage_id,
                map_partition,
                ..
            } => {
                assert_eq!(
                    (executor_id.as_str(), map_stage_id, map_partition),
                    ("far", 2, 3)
                );
            }
            other => panic!("expected FetchFailed, got {other:?}"),
        }
    }
}
