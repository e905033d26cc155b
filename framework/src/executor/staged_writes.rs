//! Output of `COPY` and `INSERT INTO` becomes visible all at once, or not at
//! all.
//!
//! DataFusion's file sinks write several files and give up halfway when the
//! query fails, leaving the files they finished in the destination. A task
//! therefore runs with a [`StagingRegistry`]: every object the plan writes
//! goes to a hidden staging name next to its destination
//! (`dir/.name.<task>.inprogress`, which neither DataFusion's listing nor a
//! `*.parquet` glob picks up). When the task has succeeded, each staged
//! object is renamed to its real name (an atomic rename on local disks, a
//! server-side copy on S3); when it fails or is cancelled, the staged objects
//! are deleted. Shuffle output does not pass through here: shuffle plugins
//! get the executor's own registry.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::error::Result as DFResult;
use datafusion::execution::object_store::ObjectStoreRegistry;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use parking_lot::Mutex;
use url::Url;

use crate::error::{BallistaError, Result};

/// One object written under a staging name.
struct StagedObject {
    store: Arc<dyn ObjectStore>,
    staged: Path,
    destination: Path,
}

/// The objects one task has written so far.
pub(crate) struct StagedWrites {
    token: String,
    objects: Mutex<Vec<StagedObject>>,
    finished: Mutex<bool>,
}

impl StagedWrites {
    /// `token` tells apart the staging names of different task attempts.
    pub(crate) fn new(token: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            token: token
                .into()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect(),
            objects: Mutex::new(Vec::new()),
            finished: Mutex::new(false),
        })
    }

    fn stage(
        &self,
        store: &Arc<dyn ObjectStore>,
        destination: &Path,
    ) -> object_store::Result<Path> {
        let name = destination
            .filename()
            .ok_or_else(|| object_store::Error::Generic {
                store: "staged writes",
                source: format!("cannot write to the root of a store ({destination})").into(),
            })?;
        let staged_name = format!(".{name}.{}.inprogress", self.token);
        let staged = match destination.parent() {
            Some(parent) => parent.join(staged_name.as_str()),
            None => Path::from(staged_name.as_str()),
        };
        self.objects.lock().push(StagedObject {
            store: Arc::clone(store),
            staged: staged.clone(),
            destination: destination.clone(),
        });
        Ok(staged)
    }

    /// Moves every staged object to its destination. If a move fails, the
    /// objects already moved are deleted again and the rest discarded, so
    /// the destination never shows part of the output.
    pub(crate) async fn commit(&self) -> Result<usize> {
        *self.finished.lock() = true;
        let objects = std::mem::take(&mut *self.objects.lock());
        let count = objects.len();
        for (i, object) in objects.iter().enumerate() {
            if let Err(e) = object
                .store
                .rename(&object.staged, &object.destination)
                .await
            {
                for moved in &objects[..i] {
                    let _ = moved.store.delete(&moved.destination).await;
                }
                for unmoved in &objects[i..] {
                    let _ = unmoved.store.delete(&unmoved.staged).await;
                }
                return Err(BallistaError::Io(format!(
                    "publishing written file {}: {e}; none of this task's output was kept",
                    object.destination
                )));
            }
        }
        Ok(count)
    }

    /// Deletes every staged object; returns how many there were.
    pub(crate) async fn abort(&self) -> usize {
        *self.finished.lock() = true;
        let objects = std::mem::take(&mut *self.objects.lock());
        let count = objects.len();
        delete_staged(objects).await;
        count
    }
}

async fn delete_staged(objects: Vec<StagedObject>) {
    for object in objects {
        match object.store.delete(&object.staged).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!("could not delete staged file {}: {e}", object.staged),
        }
    }
}

impl Drop for StagedWrites {
    /// A cancelled task never reaches commit or abort: discard its output.
    fn drop(&mut self) {
        if *self.finished.lock() {
            return;
        }
        let objects = std::mem::take(&mut *self.objects.lock());
        if !objects.is_empty()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(delete_staged(objects));
        }
    }
}

/// A registry whose stores stage every write in a [`StagedWrites`].
pub(crate) struct StagingRegistry {
    inner: Arc<dyn ObjectStoreRegistry>,
    writes: Arc<StagedWrites>,
}

impl StagingRegistry {
    pub(crate) fn new(inner: Arc<dyn ObjectStoreRegistry>, writes: Arc<StagedWrites>) -> Self {
        Self { inner, writes }
    }
}

impl fmt::Debug for StagingRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StagingRegistry")
            .field("inner", &self.inner)
            .finish()
    }
}

impl ObjectStoreRegistry for StagingRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> DFResult<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> DFResult<Arc<dyn ObjectStore>> {
        let inner = self.inner.get_store(url)?;
        Ok(Arc::new(StagingStore {
            inner,
            writes: Arc::clone(&self.writes),
        }))
    }
}

/// Writes go to staging names; everything else passes through.
#[derive(Debug)]
struct StagingStore {
    inner: Arc<dyn ObjectStore>,
    writes: Arc<StagedWrites>,
}

impl fmt::Debug for StagedWrites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StagedWrites({} object(s))", self.objects.lock().len())
    }
}

impl fmt::Display for StagingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Staged({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for StagingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let staged = self.writes.stage(&self.inner, location)?;
        self.inner.put_opts(&staged, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let staged = self.writes.stage(&self.inner, location)?;
        self.inner.put_multipart_opts(&staged, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let staged = self.writes.stage(&self.inner, to)?;
        self.inner.copy_opts(from, &staged, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let staged = self.writes.stage(&self.inner, to)?;
        self.inner.rename_opts(from, &staged, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::storage::{BallistaObjectStoreRegistry, LocalFileSystemProvider};
    use futures::TryStreamExt;

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    async fn write_two(registry: &StagingRegistry, dir: &std::path::Path) {
        let url = Url::from_directory_path(dir).unwrap();
        let store = registry.get_store(&url).unwrap();
        let base = Path::from_filesystem_path(dir).unwrap();
        store
            .put(&base.clone().join("a.parquet"), PutPayload::from("one"))
            .await
            .unwrap();
        let mut upload = store
            .put_multipart(&base.clone().join("b.parquet"))
            .await
            .unwrap();
        upload.put_part(PutPayload::from("two")).await.unwrap();
        upload.complete().await.unwrap();
    }

    fn registry(writes: &Arc<StagedWrites>) -> StagingRegistry {
        StagingRegistry::new(
            Arc::new(BallistaObjectStoreRegistry::new(&[Arc::new(
                LocalFileSystemProvider,
            )])),
            Arc::clone(writes),
        )
    }

    #[tokio::test]
    async fn output_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().canonicalize().unwrap();
        let writes = StagedWrites::new("job1/2/0/1");
        write_two(&registry(&writes), &out).await;
        assert_eq!(
            names(&out),
            vec![
                ".a.parquet.job1-2-0-1.inprogress",
                ".b.parquet.job1-2-0-1.inprogress"
            ]
        );
        // Reads see through the staging (nothing published yet).
        let store = registry(&writes)
            .get_store(&Url::from_directory_path(&out).unwrap())
            .unwrap();
        let listed: Vec<ObjectMeta> = store
            .list(Some(&Path::from_filesystem_path(&out).unwrap()))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(writes.commit().await.unwrap(), 2);
        assert_eq!(names(&out), vec!["a.parquet", "b.parquet"]);
        assert_eq!(
            std::fs::read_to_string(out.join("b.parquet")).unwrap(),
            "two"
        );
    }

    #[tokio::test]
    async fn abort_and_drop_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().canonicalize().unwrap();
        let writes = StagedWrites::new("t1");
        write_two(&registry(&writes), &out).await;
        assert_eq!(writes.abort().await, 2);
        assert!(names(&out).is_empty(), "{:?}", names(&out));

        let writes = StagedWrites::new("t2");
        write_two(&registry(&writes), &out).await;
        drop(writes);
        for _ in 0..50 {
            if names(&out).is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(names(&out).is_empty(), "{:?}", names(&out));
    }
}
