//! Object-store shuffle: map outputs are Arrow IPC objects under a configured
//! URL (`s3://bucket/shuffle/`, `file:///mnt/shared/shuffle/`, …), read by
//! consumers on any executor straight from the store. Finished map outputs
//! survive the loss of the executor that wrote them.
//!
//! Layout under the root: `<job>/<hh>/s<stage>/m<map>-a<attempt>-p<output>.arrow`.
//! `<hh>` is two hex digits derived from stage and map task: object stores
//! such as S3 scale request rates per key prefix, so a job's objects are
//! spread over 256 prefixes instead of one hot one.
//!
//! Each map task attempt first writes its partitions to local files (the
//! local-disk shuffle's writer, in a staging folder of the work directory)
//! and uploads them when it commits: one PUT per partition, multipart for
//! large ones. An object therefore appears only whole, only for an attempt
//! that committed, and under a name no other attempt uses, so a retried
//! attempt never mixes with an earlier one. Uploaded objects of an attempt
//! whose commit fails are deleted. Everything under `<root>/<job>/` is
//! deleted when the job ends.

use std::path::Path as FsPath;
use std::sync::Arc;

use arrow::ipc::CompressionType;
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;
use url::Url;

use super::local::{LocalDiskShuffle, remove_local_job_dir};
use super::{
    MapOutputWriter, MapTaskContext, ShuffleLocation, ShuffleReadContext, ShuffleReader,
    ShuffleStorage, ShuffleWriter,
};
use crate::error::{BallistaError, Result};
use crate::flight::ipc_chunk_batches;
use crate::ids::{JobId, TaskId};

/// Folder of the work directory where partitions wait for upload.
const STAGING_DIR: &str = "object-store-staging";
/// Partitions up to this size are uploaded with one PUT.
const SINGLE_PUT_BYTES: u64 = 8 * 1024 * 1024;
/// Part size of multipart uploads (S3 needs at least 5 MiB per part).
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// Partitions of one map task uploaded at once.
const UPLOADS_IN_FLIGHT: usize = 4;
/// Read size when streaming a staged file into a multipart upload.
const READ_BYTES: usize = 1024 * 1024;
/// Size of the ranged GETs a shuffle object is read with.
const READ_RANGE_BYTES: u64 = 8 * 1024 * 1024;

/// Object-store shuffle (writer and reader).
#[derive(Debug, Clone)]
pub struct ObjectStoreShuffle {
    /// Ends with `/`.
    root: Url,
    root_path: ObjectPath,
    staging: LocalDiskShuffle,
}

impl ObjectStoreShuffle {
    /// A shuffle under `root` (a folder URL whose scheme a storage plugin
    /// serves), writing Arrow IPC with the given body compression.
    pub fn new(root: &Url, compression: Option<CompressionType>) -> Result<Self> {
        if root.cannot_be_a_base() || root.query().is_some() || root.fragment().is_some() {
            return Err(BallistaError::Configuration(format!(
                "shuffle root {root} must be a folder URL such as s3://bucket/shuffle/"
            )));
        }
        let mut root = root.clone();
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        let root_path = ObjectPath::from_url_path(root.path()).map_err(|e| {
            BallistaError::Configuration(format!("shuffle root {root} is not a valid path: {e}"))
        })?;
        Ok(Self {
            root,
            root_path,
            staging: LocalDiskShuffle::with_compression(compression),
        })
    }

    /// The root URL (ends with `/`).
    pub fn root(&self) -> &Url {
        &self.root
    }

    fn store(&self, registry: &dyn ObjectStoreRegistry) -> Result<Arc<dyn ObjectStore>> {
        registry
            .get_store(&self.root)
            .map_err(BallistaError::from_datafusion)
    }

    /// `<job>/<hh>/s<stage>/<file>`: relative to the root.
    fn relative_key(task: &TaskId, output_partition: usize) -> String {
        let spread = spread_prefix(task.stage_id.0, task.partition);
        format!(
            "{}/{spread:02x}/s{}/m{}-a{}-p{output_partition}.arrow",
            task.job_id, task.stage_id, task.partition, task.attempt
        )
    }

    fn object_path(&self, relative: &str) -> ObjectPath {
        relative
            .split('/')
            .fold(self.root_path.clone(), |path, part| path.join(part))
    }

    fn job_prefix(&self, job_id: &JobId) -> ObjectPath {
        self.root_path.clone().join(job_id.as_str())
    }

    /// The object a location names, refusing anything that is not exactly a
    /// shuffle object of the location's job under this root: the key must
    /// have the layout this shuffle writes, prefix digits included
    /// (locations can arrive from the network).
    fn object_of(&self, location: &ShuffleLocation) -> Result<ObjectPath> {
        let refuse = |why: &str| {
            BallistaError::PermissionDenied(format!(
                "shuffle location {:?} {why} (shuffle root {})",
                location.path, self.root
            ))
        };
        let relative = location
            .path
            .strip_prefix(self.root.as_str())
            .ok_or_else(|| refuse("is not under the shuffle root"))?;
        let parts: Vec<&str> = relative.split('/').collect();
        let [job, spread, stage, file] = parts.as_slice() else {
            return Err(refuse("is not a shuffle object path"));
        };
        if *job != location.job_id.as_str() {
            return Err(refuse("does not belong to its job"));
        }
        let stage: u32 = stage
            .strip_prefix('s')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| refuse("is not a shuffle object path"))?;
        let (map, attempt, output) =
            parse_object_name(file).ok_or_else(|| refuse("is not a shuffle object path"))?;
        let task = TaskId {
            job_id: location.job_id.clone(),
            stage_id: crate::ids::StageId(stage),
            partition: map,
            attempt,
        };
        let expected = Self::relative_key(&task, output);
        if relative != expected || *spread != format!("{:02x}", spread_prefix(stage, map)) {
            return Err(refuse("is not a shuffle object path"));
        }
        Ok(self.object_path(relative))
    }

    fn fetch_failed(location: &ShuffleLocation, message: String) -> BallistaError {
        BallistaError::FetchFailed {
            executor_id: location.executor.id.to_string(),
            map_stage_id: location.stage_id.0,
            map_partition: location.map_partition as u32,
            message,
        }
    }

    /// The object's bytes, fetched in bounded ranges one after the other: a
    /// single GET would have to finish within the store's request timeout
    /// however slowly its consumer reads.
    async fn open_object(
        &self,
        location: &ShuffleLocation,
        ctx: &ShuffleReadContext,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let path = self.object_of(location)?;
        let store = self.store(ctx.object_stores.as_ref())?;
        let size = store
            .head(&path)
            .await
            .map_err(|e| Self::read_failed(location, e))?
            .size;
        let location = location.clone();
        let ranges = (0..size).step_by(READ_RANGE_BYTES as usize);
        Ok(futures::stream::iter(ranges)
            .then(move |start| {
                let store = Arc::clone(&store);
                let path = path.clone();
                let location = location.clone();
                async move {
                    let end = (start + READ_RANGE_BYTES).min(size);
                    store
                        .get_range(&path, start..end)
                        .await
                        .map_err(|e| Self::read_failed(&location, e))
                }
            })
            .boxed())
    }

    /// A missing object is lost map output (a fetch failure, so the map task
    /// can be recomputed); other errors keep their kind (credentials,
    /// configuration, a store that is down).
    fn read_failed(location: &ShuffleLocation, error: object_store::Error) -> BallistaError {
        match error {
            object_store::Error::NotFound { .. } => {
                Self::fetch_failed(location, format!("reading {}: {error}", location.path))
            }
            other => BallistaError::from(other),
        }
    }
}

/// `m<map>-a<attempt>-p<output>.arrow` → (map, attempt, output).
fn parse_object_name(name: &str) -> Option<(usize, u32, usize)> {
    let rest = name.strip_prefix('m')?.strip_suffix(".arrow")?;
    let (map, rest) = rest.split_once("-a")?;
    let (attempt, output) = rest.split_once("-p")?;
    Some((
        map.parse().ok()?,
        attempt.parse().ok()?,
        output.parse().ok()?,
    ))
}

/// A stable 0..=255 spread of (stage, map task) over key prefixes.
fn spread_prefix(stage: u32, map_partition: usize) -> u8 {
    // FNV-1a over the two numbers: stable across processes and versions.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in stage
        .to_le_bytes()
        .into_iter()
        .chain((map_partition as u64).to_le_bytes())
    {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash ^ (hash >> 8) ^ (hash >> 16) ^ (hash >> 24)) as u8
}

#[async_trait]
impl ShuffleWriter for ObjectStoreShuffle {
    fn name(&self) -> &str {
        "object-store"
    }

    fn storage_url(&self) -> Option<&Url> {
        Some(&self.root)
    }

    async fn open(&self, ctx: MapTaskContext) -> Result<Box<dyn MapOutputWriter>> {
        // Resolve the store first: a misconfigured root fails the task before
        // any work is done.
        let store = self.store(ctx.object_stores.as_ref())?;
        let staging_dir = ctx.work_dir.join(STAGING_DIR);
        let staged = self
            .staging
            .open(MapTaskContext {
                work_dir: staging_dir.clone(),
                // Staged as files, which are then uploaded: the object store
                // is what makes the output durable.
                memory_tier: None,
                ..ctx.clone()
            })
            .await?;
        Ok(Box::new(ObjectStoreMapOutputWriter {
            shuffle: self.clone(),
            store,
            staged,
            staging_dir,
            task: ctx.task,
        }))
    }

    async fn remove_job_data(&self, job_id: &JobId, storage: &ShuffleStorage) -> Result<()> {
        remove_local_job_dir(job_id, &storage.work_dir.join(STAGING_DIR)).await?;
        let store = self.store(storage.object_stores.as_ref())?;
        let prefix = self.job_prefix(job_id);
        let objects = store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = store.delete_stream(objects);
        let mut count = 0usize;
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) => count += 1,
                // Another executor cleaning the same job got there first.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(BallistaError::Io(format!(
                        "deleting shuffle data of job {job_id} under {}: {e}",
                        self.root
                    )));
                }
            }
        }
        // Deleting files leaves their folders behind on a local or mounted
        // file system.
        if self.root.scheme() == "file"
            && let Ok(root) = self.root.to_file_path()
        {
            match tokio::fs::remove_dir_all(root.join(job_id.as_str())).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("removing shuffle folders of job {job_id}: {e}"),
            }
        }
        tracing::debug!(
            "deleted {count} shuffle object(s) of job {job_id} under {}",
            self.root
        );
        Ok(())
    }
}

struct ObjectStoreMapOutputWriter {
    shuffle: ObjectStoreShuffle,
    store: Arc<dyn ObjectStore>,
    staged: Box<dyn MapOutputWriter>,
    staging_dir: std::path::PathBuf,
    task: TaskId,
}

#[async_trait]
impl MapOutputWriter for ObjectStoreMapOutputWriter {
    async fn write(
        &mut self,
        output_partition: usize,
        batch: arrow::record_batch::RecordBatch,
    ) -> Result<()> {
        self.staged.write(output_partition, batch).await
    }

    async fn commit(self: Box<Self>) -> Result<Vec<ShuffleLocation>> {
        let this = *self;
        let staged = this.staged.commit().await?;
        let uploads = staged.into_iter().map(|local| {
            let relative = ObjectStoreShuffle::relative_key(&this.task, local.output_partition);
            let file = this.staging_dir.join(&local.path);
            let path = this.shuffle.object_path(&relative);
            let url = format!("{}{relative}", this.shuffle.root);
            let store = Arc::clone(&this.store);
            async move {
                let uploaded = upload_file(store.as_ref(), &file, &path).await;
                let _ = tokio::fs::remove_file(&file).await;
                uploaded
                    .map(|()| ShuffleLocation {
                        path: url,
                        durable: true,
                        ticket: Vec::new(),
                        ..local
                    })
                    .map_err(|e| (path, e))
            }
        });
        let results: Vec<std::result::Result<ShuffleLocation, (ObjectPath, BallistaError)>> =
            futures::stream::iter(uploads)
                .buffer_unordered(UPLOADS_IN_FLIGHT)
                .collect()
                .await;
        let mut locations = Vec::with_capacity(results.len());
        let mut failure = None;
        for result in results {
            match result {
                Ok(location) => locations.push(location),
                Err((path, e)) => failure = failure.or(Some((path, e))),
            }
        }
        if let Some((path, error)) = failure {
            // Nothing of a failed commit may stay readable.
            for location in &locations {
                if let Ok(uploaded) = this.shuffle.object_of(location) {
                    let _ = this.store.delete(&uploaded).await;
                }
            }
            return Err(BallistaError::Io(format!(
                "uploading shuffle output of task {} to {}: {error}",
                this.task,
                this.shuffle.object_path_url(&path)
            )));
        }
        locations.sort_by_key(|l| l.output_partition);
        Ok(locations)
    }

    async fn abort(self: Box<Self>) {
        self.staged.abort().await;
    }
}

impl ObjectStoreShuffle {
    fn object_path_url(&self, path: &ObjectPath) -> String {
        let mut url = self.root.clone();
        url.set_path(&format!("/{path}"));
        url.to_string()
    }
}

/// Uploads a staged file: one PUT when small, multipart otherwise (aborted on
/// failure, so no part stays behind).
async fn upload_file(store: &dyn ObjectStore, file: &FsPath, to: &ObjectPath) -> Result<()> {
    let size = tokio::fs::metadata(file).await?.len();
    if size <= SINGLE_PUT_BYTES {
        let bytes = tokio::fs::read(file).await?;
        store
            .put(to, PutPayload::from(bytes))
            .await
            .map_err(|e| BallistaError::Io(e.to_string()))?;
        return Ok(());
    }
    let upload = store
        .put_multipart(to)
        .await
        .map_err(|e| BallistaError::Io(e.to_string()))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
    let mut source = tokio::fs::File::open(file).await?;
    let mut buffer = vec![0u8; READ_BYTES];
    let streamed: Result<()> = async {
        loop {
            let n = source.read(&mut buffer).await?;
            if n == 0 {
                return Ok(());
            }
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|e| BallistaError::Io(e.to_string()))?;
            writer.write(&buffer[..n]);
        }
    }
    .await;
    match streamed {
        Ok(()) => {
            writer
                .finish()
                .await
                .map_err(|e| BallistaError::Io(e.to_string()))?;
            Ok(())
        }
        Err(e) => {
            let _ = writer.abort().await;
            Err(e)
        }
    }
}

#[async_trait]
impl ShuffleReader for ObjectStoreShuffle {
    fn name(&self) -> &str {
        "object-store"
    }

    async fn read(
        &self,
        location: &ShuffleLocation,
        ctx: &ShuffleReadContext,
    ) -> Result<SendableRecordBatchStream> {
        let chunks = self.open_object(location, ctx).await?;
        let failed = location.clone();
        let batches = ipc_chunk_batches(chunks).map_err(move |e| {
            let e = match e {
                // A corrupt or truncated object is as good as lost.
                BallistaError::DataFusion(DataFusionError::ArrowError(..))
                | BallistaError::Io(_) => ObjectStoreShuffle::fetch_failed(
                    &failed,
                    format!("decoding {}: {e}", failed.path),
                ),
                other => other,
            };
            DataFusionError::from(e)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            ctx.schema.clone(),
            batches,
        )))
    }

    async fn open_ipc_bytes(
        &self,
        location: &ShuffleLocation,
        ctx: &ShuffleReadContext,
    ) -> Result<Option<BoxStream<'static, Result<Bytes>>>> {
        self.open_object(location, ctx).await.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flight::FlightClientPool;
    use crate::ids::{ExecutorId, StageId};
    use crate::plugin::shuffle::ExecutorAddress;
    use crate::plugin::storage::{BallistaObjectStoreRegistry, LocalFileSystemProvider};
    use arrow::array::Int32Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    fn registry() -> Arc<dyn ObjectStoreRegistry> {
        Arc::new(BallistaObjectStoreRegistry::new(&[Arc::new(
            LocalFileSystemProvider,
        )]))
    }

    fn task(attempt: u32) -> TaskId {
        TaskId {
            job_id: JobId::parse("jobA").unwrap(),
            stage_id: StageId(1),
            partition: 2,
            attempt,
        }
    }

    fn map_context(work: &FsPath, attempt: u32) -> MapTaskContext {
        MapTaskContext {
            task: task(attempt),
            schema: Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)])),
            num_output_partitions: 3,
            executor: ExecutorAddress {
                id: ExecutorId::new("e1"),
                host: "127.0.0.1".into(),
                port: 1,
            },
            work_dir: work.to_path_buf(),
            object_stores: registry(),
            memory_tier: None,
        }
    }

    fn files_under(dir: &FsPath) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    found.push(path.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        found.sort();
        found
    }

    #[tokio::test]
    async fn committed_attempts_are_uploaded_read_back_and_deleted_with_the_job() {
        let work = tempfile::tempdir().unwrap();
        let bucket = tempfile::tempdir().unwrap();
        let root = Url::from_directory_path(bucket.path().canonicalize().unwrap()).unwrap();
        let shuffle = ObjectStoreShuffle::new(&root, Some(CompressionType::LZ4_FRAME)).unwrap();
        let ctx = map_context(work.path(), 1);
        let batch = RecordBatch::try_new(
            ctx.schema.clone(),
            vec![Arc::new(Int32Array::from(vec![1, 2, 3]))],
        )
        .unwrap();

        // An aborted earlier attempt leaves nothing in the store.
        let mut aborted = shuffle.open(map_context(work.path(), 0)).await.unwrap();
        aborted.write(0, batch.clone()).await.unwrap();
        aborted.abort().await;

        let mut writer = shuffle.open(ctx.clone()).await.unwrap();
        writer.write(0, batch.clone()).await.unwrap();
        writer.write(2, batch.clone()).await.unwrap();
        writer.write(2, batch.clone()).await.unwrap();
        let locations = writer.commit().await.unwrap();
        assert_eq!(locations.len(), 2);
        let spread = spread_prefix(1, 2);
        assert_eq!(
            files_under(bucket.path()),
            vec![
                format!("jobA/{spread:02x}/s1/m2-a1-p0.arrow"),
                format!("jobA/{spread:02x}/s1/m2-a1-p2.arrow"),
            ]
        );
        assert!(locations[1].path.starts_with(root.as_str()));
        assert!(
            files_under(&work.path().join(STAGING_DIR)).is_empty(),
            "staged files are removed after upload"
        );

        // Another executor reads it straight from the store.
        let read_ctx = ShuffleReadContext {
            schema: ctx.schema.clone(),
            local_executor: Some(ExecutorId::new("e2")),
            work_dir: None,
            flight: FlightClientPool::default(),
            object_stores: registry(),
            memory_tier: None,
        };
        let batches: Vec<RecordBatch> = shuffle
            .read(&locations[1], &read_ctx)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 6);

        shuffle
            .remove_job_data(
                &JobId::parse("jobA").unwrap(),
                &ShuffleStorage {
                    work_dir: work.path().to_path_buf(),
                    object_stores: registry(),
                },
            )
            .await
            .unwrap();
        assert!(files_under(bucket.path()).is_empty());
        let missing = match shuffle.read(&locations[0], &read_ctx).await {
            Err(e) => e,
            Ok(stream) => {
                BallistaError::from_datafusion(stream.try_collect::<Vec<_>>().await.unwrap_err())
            }
        };
        assert!(
            matches!(
                missing,
                BallistaError::FetchFailed {
                    map_partition: 2,
                    ..
                }
            ),
            "{missing:?}"
        );
    }

    #[test]
    fn locations_outside_the_root_or_their_job_are_refused() {
        let shuffle =
            ObjectStoreShuffle::new(&Url::parse("s3://bucket/shuffle").unwrap(), None).unwrap();
        assert_eq!(shuffle.root().as_str(), "s3://bucket/shuffle/");
        let location = |path: &str| ShuffleLocation {
            job_id: JobId::parse("jobA").unwrap(),
            stage_id: StageId(1),
            map_partition: 0,
            output_partition: 0,
            attempt: 0,
            executor: ExecutorAddress {
                id: ExecutorId::new("e1"),
                host: "h".into(),
                port: 1,
            },
            path: path.into(),
            stats: Default::default(),
            durable: true,
            ticket: Vec::new(),
        };
        let hh = format!("{:02x}", spread_prefix(1, 0));
        assert_eq!(
            shuffle
                .object_of(&location(&format!(
                    "s3://bucket/shuffle/jobA/{hh}/s1/m0-a0-p0.arrow"
                )))
                .unwrap()
                .as_ref(),
            format!("shuffle/jobA/{hh}/s1/m0-a0-p0.arrow")
        );
        let wrong_spread = format!("{:02x}", spread_prefix(1, 0).wrapping_add(1));
        let bad_paths = [
            format!("s3://bucket/shuffle/jobA/{wrong_spread}/s1/m0-a0-p0.arrow"),
            format!("s3://bucket/shuffle/jobA/{hh}/s1/secrets.arrow"),
            format!("s3://bucket/shuffle/jobA/{hh}/s1/m0-a0-p0.parquet"),
            format!("s3://bucket/shuffle/jobA/{hh}/s1/m00-a0-p0.arrow"),
            "s3://bucket/other/jobA/0f/s1/m0-a0-p0.arrow".to_string(),
            "s3://bucket/shuffle/jobB/0f/s1/m0-a0-p0.arrow".to_string(),
            "s3://bucket/shuffle/jobA/../../secret/x".to_string(),
            "s3://bucket/shuffle/jobA/0f/s1/%2e%2e".to_string(),
            "s3://bucket/shuffle/jobA/x".to_string(),
            "/etc/passwd".to_string(),
        ];
        for bad in &bad_paths {
            let err = shuffle.object_of(&location(bad)).unwrap_err();
            assert!(
                matches!(err, BallistaError::PermissionDenied(_)),
                "{bad}: {err:?}"
            );
        }
    }
}
