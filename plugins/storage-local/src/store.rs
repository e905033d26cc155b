//! The object store: `LocalFileSystem`, with every path checked first.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ballista::async_trait::async_trait;
use ballista::object_store::local::LocalFileSystem;
use ballista::object_store::path::Path as ObjectPath;
use ballista::object_store::{
    CopyOptions, Error as StoreError, GetOptions, GetResult, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result as StoreResult,
};
use ballista::url::Url;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::sandbox::Sandbox;

/// A `file://` object store that only reaches paths under its roots.
///
/// Every request checks its path (both paths for a copy or rename) before
/// the local file system is touched, and refuses with
/// `object_store::Error::PermissionDenied`. Listings check their prefix and
/// then each entry, so a link inside a root that leads out of it shows up as
/// an error in the listing instead of being served or silently skipped.
///
/// Created by [`SandboxedLocalProvider`](crate::SandboxedLocalProvider).
#[derive(Debug, Clone)]
pub struct SandboxedFileStore {
    inner: LocalFileSystem,
    sandbox: Arc<Sandbox>,
}

impl SandboxedFileStore {
    pub(crate) fn new(sandbox: Arc<Sandbox>) -> Self {
        Self {
            // No prefix: object paths are absolute file system paths, the
            // way DataFusion hands `file://` locations to the store.
            inner: LocalFileSystem::new(),
            sandbox,
        }
    }

    /// The folders (or files) this store reaches, symbolic links resolved.
    pub fn roots(&self) -> &[PathBuf] {
        self.sandbox.roots()
    }

    /// Checks an object's path, mapped exactly as the inner store maps it.
    fn check(&self, location: &ObjectPath) -> StoreResult<()> {
        let path = self.inner.path_to_filesystem(location)?;
        self.check_path(&path)
    }

    /// Checks a listing prefix (a folder; `None` is `/`).
    fn check_prefix(&self, prefix: Option<&ObjectPath>) -> StoreResult<()> {
        let path = prefix_to_filesystem(prefix)?;
        self.check_path(&path)
    }

    fn check_path(&self, path: &Path) -> StoreResult<()> {
        self.sandbox.check(path, None).map_err(|refusal| {
            tracing::debug!(%refusal, "refused a local path");
            StoreError::PermissionDenied {
                path: path.display().to_string(),
                source: Box::new(refusal),
            }
        })
    }

    /// `listing`, with every entry outside the roots turned into an error.
    fn checked(
        &self,
        listing: BoxStream<'static, StoreResult<ObjectMeta>>,
    ) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        let store = self.clone();
        listing
            .map(
                move |entry: StoreResult<ObjectMeta>| -> StoreResult<ObjectMeta> {
                    let meta = entry?;
                    store.check(&meta.location)?;
                    Ok(meta)
                },
            )
            .boxed()
    }
}

/// The folder `prefix` names, mapped as `LocalFileSystem::new()` maps a
/// listing prefix (its own mapping is private, and `path_to_filesystem`
/// refuses paths that are valid prefixes but not valid file names).
fn prefix_to_filesystem(prefix: Option<&ObjectPath>) -> StoreResult<PathBuf> {
    let mut url = Url::parse("file:///").expect("a valid URL");
    if let Some(prefix) = prefix {
        url.path_segments_mut()
            .expect("file URLs have a path")
            .pop_if_empty()
            .extend(prefix.parts());
    }
    url.to_file_path().map_err(|()| StoreError::Generic {
        store: "SandboxedFileStore",
        source: format!("{url} is not a local path").into(),
    })
}

impl fmt::Display for SandboxedFileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SandboxedFileStore(roots: {})",
            self.sandbox.roots_list()
        )
    }
}

#[async_trait]
impl ObjectStore for SandboxedFileStore {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> StoreResult<PutResult> {
        self.check(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> StoreResult<Box<dyn MultipartUpload>> {
        self.check(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &ObjectPath, options: GetOptions) -> StoreResult<GetResult> {
        self.check(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &ObjectPath,
        ranges: &[Range<u64>],
    ) -> StoreResult<Vec<Bytes>> {
        self.check(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, StoreResult<ObjectPath>>,
    ) -> BoxStream<'static, StoreResult<ObjectPath>> {
        let store = self.clone();
        // The inner store passes an error item through instead of deleting,
        // so a refused location fails alone and the others proceed.
        let checked = locations
            .map(
                move |location: StoreResult<ObjectPath>| -> StoreResult<ObjectPath> {
                    let location = location?;
                    store.check(&location)?;
                    Ok(location)
                },
            )
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&ObjectPath>) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        match self.check_prefix(prefix) {
            Ok(()) => self.checked(self.inner.list(prefix)),
            Err(refusal) => stream::iter([Err::<ObjectMeta, _>(refusal)]).boxed(),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&ObjectPath>,
        offset: &ObjectPath,
    ) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        match self.check_prefix(prefix) {
            Ok(()) => self.checked(self.inner.list_with_offset(prefix, offset)),
            Err(refusal) => stream::iter([Err::<ObjectMeta, _>(refusal)]).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&ObjectPath>) -> StoreResult<ListResult> {
        self.check_prefix(prefix)?;
        let listing = self.inner.list_with_delimiter(prefix).await?;
        // A linked folder leading out of the roots is an entry too: naming
        // it would invite a listing of it.
        for folder in &listing.common_prefixes {
            self.check_prefix(Some(folder))?;
        }
        for meta in &listing.objects {
            self.check(&meta.location)?;
        }
        Ok(listing)
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> StoreResult<()> {
        self.check(from)?;
        self.check(to)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: RenameOptions,
    ) -> StoreResult<()> {
        self.check(from)?;
        self.check(to)?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballista::object_store::ObjectStoreExt;
    use futures::TryStreamExt;
    use std::fs;

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
        store: SandboxedFileStore,
    }

    /// `root` (the only root) holds `inside.txt`; its sibling `outside`
    /// holds `secret.txt`.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(root.join("inside.txt"), "inside").unwrap();
        fs::write(outside.join("secret.txt"), "secret").unwrap();
        let store = crate::SandboxedLocalProvider::with_roots(vec![root.clone()])
            .unwrap()
            .store();
        Fixture {
            _dir: dir,
            root,
            outside,
            store,
        }
    }

    fn at(path: &Path) -> ObjectPath {
        ObjectPath::from_absolute_path(path).unwrap()
    }

    #[track_caller]
    fn assert_refused(e: &StoreError) {
        assert!(matches!(e, StoreError::PermissionDenied { .. }), "{e:?}");
        assert!(
            e.to_string().contains("outside the allowed local folders"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn reads_writes_and_lists_inside_a_root() {
        let f = fixture();
        let got = f.store.get(&at(&f.root.join("inside.txt"))).await.unwrap();
        assert_eq!(&got.bytes().await.unwrap()[..], b"inside");
        let head = f.store.head(&at(&f.root.join("inside.txt"))).await.unwrap();
        assert_eq!(head.size, 6);
        f.store
            .put(
                &at(&f.root.join("new/out.txt")),
                PutPayload::from_static(b"x"),
            )
            .await
            .unwrap();
        assert_eq!(fs::read(f.root.join("new/out.txt")).unwrap(), b"x");
        let listed: Vec<ObjectMeta> = f
            .store
            .list(Some(&at(&f.root)))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        let shallow = f
            .store
            .list_with_delimiter(Some(&at(&f.root)))
            .await
            .unwrap();
        assert_eq!(shallow.objects.len(), 1);
        assert_eq!(shallow.common_prefixes, vec![at(&f.root.join("new"))]);
        f.store
            .delete(&at(&f.root.join("new/out.txt")))
            .await
            .unwrap();
        assert!(
            f.store
                .to_string()
                .starts_with("SandboxedFileStore(roots: ")
        );
    }

    #[tokio::test]
    async fn paths_outside_every_root_are_refused_before_any_io() {
        let f = fixture();
        let secret = at(&f.outside.join("secret.txt"));
        let e = f.store.get(&secret).await.unwrap_err();
        assert_refused(&e);
        let message = e.to_string();
        assert!(message.contains("secret.txt"), "{message}");
        assert!(message.contains(&f.root.display().to_string()), "{message}");
        assert_refused(&f.store.head(&secret).await.unwrap_err());
        assert_refused(&f.store.get_range(&secret, 0..1).await.unwrap_err());

        let planted = f.outside.join("planted.txt");
        let e = f
            .store
            .put(&at(&planted), PutPayload::from_static(b"x"))
            .await
            .unwrap_err();
        assert_refused(&e);
        assert_refused(&f.store.put_multipart(&at(&planted)).await.err().unwrap());
        let inside = at(&f.root.join("inside.txt"));
        assert_refused(&f.store.copy(&inside, &at(&planted)).await.unwrap_err());
        assert_refused(&f.store.rename(&secret, &inside).await.unwrap_err());
        assert!(!planted.exists());
        assert_refused(&f.store.delete(&secret).await.unwrap_err());
        assert!(f.outside.join("secret.txt").exists());

        let items: Vec<_> = f.store.list(Some(&at(&f.outside))).collect().await;
        assert_eq!(items.len(), 1);
        assert_refused(items[0].as_ref().unwrap_err());
        assert_refused(
            &f.store
                .list(None)
                .try_collect::<Vec<_>>()
                .await
                .unwrap_err(),
        );
        let e = f
            .store
            .list_with_delimiter(Some(&at(&f.outside)))
            .await
            .unwrap_err();
        assert_refused(&e);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_link_inside_a_root_to_a_file_outside_is_refused() {
        let f = fixture();
        let link = f.root.join("link.txt");
        std::os::unix::fs::symlink(f.outside.join("secret.txt"), &link).unwrap();
        let e = f.store.get(&at(&link)).await.unwrap_err();
        assert_refused(&e);
        assert!(e.to_string().contains("which resolves to"), "{e}");
        assert_refused(&f.store.head(&at(&link)).await.unwrap_err());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_linked_folder_leading_outside_cannot_be_listed() {
        let f = fixture();
        let linked = f.root.join("linked");
        std::os::unix::fs::symlink(&f.outside, &linked).unwrap();
        let items: Vec<_> = f.store.list(Some(&at(&linked))).collect().await;
        assert_eq!(items.len(), 1, "{items:?}");
        assert_refused(items[0].as_ref().unwrap_err());
        assert_refused(
            &f.store
                .list_with_delimiter(Some(&at(&linked)))
                .await
                .unwrap_err(),
        );
        // Naming it in a listing of the root is refused too.
        assert_refused(
            &f.store
                .list_with_delimiter(Some(&at(&f.root)))
                .await
                .unwrap_err(),
        );
        assert_refused(
            &f.store
                .get(&at(&linked.join("secret.txt")))
                .await
                .unwrap_err(),
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn listing_a_root_turns_a_link_leading_outside_into_an_error_item() {
        let f = fixture();
        std::os::unix::fs::symlink(f.outside.join("secret.txt"), f.root.join("link.txt")).unwrap();
        let items: Vec<StoreResult<ObjectMeta>> = f.store.list(Some(&at(&f.root))).collect().await;
        assert_eq!(items.len(), 2, "{items:?}");
        assert!(
            items.iter().any(
                |item| matches!(item, Ok(meta) if meta.location.filename() == Some("inside.txt"))
            ),
            "{items:?}"
        );
        let errors: Vec<&StoreError> = items
            .iter()
            .filter_map(|item| item.as_ref().err())
            .collect();
        assert_eq!(errors.len(), 1, "{items:?}");
        assert_refused(errors[0]);
        assert!(errors[0].to_string().contains("link.txt"), "{}", errors[0]);
    }
}
