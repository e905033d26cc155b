//! [`BucketStore`]: one bucket's `AmazonS3` client, with errors that name
//! the bucket.
//!
//! `object_store`'s S3 errors name an object key (`data/x.parquet`) or
//! nothing at all; a query reading several buckets then fails with a message
//! that does not say which. Every error leaving a [`BucketStore`] keeps its
//! variant (so `NotFound` stays "not found" and a refused credential stays
//! `PermissionDenied`) but names `s3://<bucket>/<key>`.

use std::error::Error as StdError;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use ballista::async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{
    CopyOptions, Error, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result, UploadPart,
};

use crate::client::BucketClient;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Rewrites `object_store` errors of one bucket so that they name it.
#[derive(Debug, Clone)]
pub(crate) struct BucketErrors {
    /// `s3://<bucket>` (or `s3a://…`, as the store was addressed).
    root: Arc<str>,
    /// The client's region, for hints on redirects.
    region: Arc<str>,
    /// The instance metadata endpoint, when credentials come from it.
    metadata_endpoint: Option<Arc<str>>,
}

impl BucketErrors {
    /// Errors of the bucket `root` (`s3://<bucket>`).
    pub(crate) fn new(root: &str, region: &str, metadata_endpoint: Option<&str>) -> Self {
        Self {
            root: root.into(),
            region: region.into(),
            metadata_endpoint: metadata_endpoint.map(Into::into),
        }
    }

    /// `s3://<bucket>/<path>`; a path already carrying a scheme is kept.
    fn location(&self, path: &str) -> String {
        if path.contains("://") {
            path.to_string()
        } else {
            format!("{}/{}", self.root, path.trim_start_matches('/'))
        }
    }

    /// `error`, naming the bucket. `path` is the key (or prefix) the failed
    /// operation was about, used when the error itself names none.
    pub(crate) fn wrap(&self, error: Error, path: Option<&Path>) -> Error {
        match error {
            Error::NotFound { path, source } => Error::NotFound {
                path: self.location(&path),
                source,
            },
            Error::AlreadyExists { path, source } => Error::AlreadyExists {
                path: self.location(&path),
                source,
            },
            Error::Precondition { path, source } => Error::Precondition {
                path: self.location(&path),
                source,
            },
            Error::NotModified { path, source } => Error::NotModified {
                path: self.location(&path),
                source,
            },
            Error::PermissionDenied { path, source } => Error::PermissionDenied {
                path: self.location(&path),
                source,
            },
            Error::Unauthenticated { path, source } => Error::Unauthenticated {
                path: self.location(&path),
                source,
            },
            Error::Generic { store, source } => {
                let location = match path {
                    Some(path) => self.location(path.as_ref()),
                    None => self.root.to_string(),
                };
                let text = source.to_string();
                let hint = self.hint(&text);
                // Listing and credential errors arrive as `Generic` even when
                // the server refused the credentials: keep them typed.
                match http_status(&text) {
                    Some(403) => Error::PermissionDenied {
                        path: location,
                        source: Box::new(Context::new(None, hint, source)),
                    },
                    Some(401) => Error::Unauthenticated {
                        path: location,
                        source: Box::new(Context::new(None, hint, source)),
                    },
                    // A listing of a missing prefix is empty, not a 404: a
                    // 404 here is the bucket itself.
                    Some(404) if text.contains("NoSuchBucket") => Error::NotFound {
                        path: location,
                        source: Box::new(Context::new(
                            None,
                            Some(format!("the bucket {} does not exist", self.root)),
                            source,
                        )),
                    },
                    _ => Error::Generic {
                        store,
                        source: Box::new(Context::new(Some(location), hint, source)),
                    },
                }
            }
            Error::NotSupported { source } => Error::NotSupported {
                source: Box::new(Context::new(Some(self.root.to_string()), None, source)),
            },
            Error::NotImplemented {
                operation,
                implementer,
            } => Error::NotImplemented {
                operation,
                implementer: format!("{implementer} ({})", self.root),
            },
            // Invalid paths name the path already; the rest carry no location.
            other => other,
        }
    }

    /// A hint for errors whose cause is usually the configuration.
    fn hint(&self, text: &str) -> Option<String> {
        if let Some(metadata) = &self.metadata_endpoint
            && text.contains(metadata.trim_end_matches('/'))
        {
            return Some(
                "no credentials are configured, so they were requested from the EC2 instance \
                 metadata service, which failed: set access_key_id and secret_access_key, export \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, run with an IAM role, or set \
                 skip_signature = true for a public bucket"
                    .to_string(),
            );
        }
        if text.contains("incorrectly configured region") || http_status(text) == Some(301) {
            return Some(format!(
                "the client uses region {}; set the bucket's region under \
                 [storage.buckets.<name>]",
                self.region
            ));
        }
        None
    }
}

/// The HTTP status in an `object_store` error message ("… status code: 403
/// Forbidden …"): the retry error type that carries it is not public.
fn http_status(text: &str) -> Option<u16> {
    let (_, rest) = text.split_once("status code: ")?;
    rest.get(..3)?.parse().ok()
}

/// An error's cause, with the location it happened at and a hint.
#[derive(Debug)]
struct Context {
    location: Option<String>,
    hint: Option<String>,
    source: BoxError,
}

impl Context {
    fn new(location: Option<String>, hint: Option<String>, source: BoxError) -> Self {
        Self {
            location,
            hint,
            source,
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        write!(f, "{}", self.source)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl StdError for Context {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

/// One bucket's S3 client; every error names the bucket.
pub(crate) struct BucketStore {
    inner: AmazonS3,
    bucket: String,
    region: String,
    endpoint: Option<String>,
    credentials: &'static str,
    errors: BucketErrors,
}

impl BucketStore {
    /// Wraps the client of `bucket`, addressed as `<scheme>://<bucket>`.
    pub(crate) fn new(scheme: &str, bucket: &str, client: BucketClient) -> Self {
        let errors = BucketErrors::new(
            &format!("{scheme}://{bucket}"),
            &client.region,
            client.metadata_endpoint.as_deref(),
        );
        Self {
            inner: client.store,
            bucket: bucket.to_string(),
            region: client.region,
            endpoint: client.endpoint,
            credentials: client.credentials,
            errors,
        }
    }

    /// Rewrites an error of an operation on `location`.
    fn wrap<'a>(&'a self, location: &'a Path) -> impl Fn(Error) -> Error + 'a {
        move |e| self.errors.wrap(e, Some(location))
    }
}

impl fmt::Debug for BucketStore {
    // Not derived: the inner client's `Debug` shows the access key id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketStore")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for BucketStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S3({})", self.bucket)
    }
}

#[async_trait]
impl ObjectStore for BucketStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner
            .put_opts(location, payload, opts)
            .await
            .map_err(self.wrap(location))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = self
            .inner
            .put_multipart_opts(location, opts)
            .await
            .map_err(self.wrap(location))?;
        Ok(Box::new(BucketUpload {
            inner: upload,
            location: location.clone(),
            errors: self.errors.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let mut result = self
            .inner
            .get_opts(location, options)
            .await
            .map_err(self.wrap(location))?;
        // Errors while the body streams (a dropped connection past the
        // retries) name the bucket too.
        result.payload = match result.payload {
            GetResultPayload::Stream(stream) => {
                let errors = self.errors.clone();
                let location = location.clone();
                GetResultPayload::Stream(
                    stream
                        .map_err(move |e| errors.wrap(e, Some(&location)))
                        .boxed(),
                )
            }
            #[allow(unreachable_patterns)]
            other => other,
        };
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner
            .get_ranges(location, ranges)
            .await
            .map_err(self.wrap(location))
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let errors = self.errors.clone();
        self.inner
            .delete_stream(locations)
            .map_err(move |e| errors.wrap(e, None))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let errors = self.errors.clone();
        let prefix_owned = prefix.cloned();
        self.inner
            .list(prefix)
            .map_err(move |e| errors.wrap(e, prefix_owned.as_ref()))
            .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let errors = self.errors.clone();
        let prefix_owned = prefix.cloned();
        self.inner
            .list_with_offset(prefix, offset)
            .map_err(move |e| errors.wrap(e, prefix_owned.as_ref()))
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner
            .list_with_delimiter(prefix)
            .await
            .map_err(|e| self.errors.wrap(e, prefix))
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner
            .copy_opts(from, to, options)
            .await
            .map_err(self.wrap(from))
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner
            .rename_opts(from, to, options)
            .await
            .map_err(self.wrap(from))
    }
}

/// A multipart upload whose errors name the bucket.
#[derive(Debug)]
struct BucketUpload {
    inner: Box<dyn MultipartUpload>,
    location: Path,
    errors: BucketErrors,
}

#[async_trait]
impl MultipartUpload for BucketUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let errors = self.errors.clone();
        let location = self.location.clone();
        Box::pin(async move { part.await.map_err(|e| errors.wrap(e, Some(&location))) })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let result = self.inner.complete().await;
        result.map_err(|e| self.errors.wrap(e, Some(&self.location)))
    }

    async fn abort(&mut self) -> Result<()> {
        let result = self.inner.abort().await;
        result.map_err(|e| self.errors.wrap(e, Some(&self.location)))
    }
}

#[cfg(test)]
mod tests;
