//! Storage seam: where tables (and object-store shuffle) live.
//!
//! An [`ObjectStoreProvider`] turns a URL's scheme and authority
//! (`s3://bucket`, `file://`) into an [`ObjectStore`]. The
//! [`BallistaObjectStoreRegistry`] implements DataFusion's
//! [`ObjectStoreRegistry`] on top of the providers: stores are created lazily
//! on first use, once per scheme + authority, and cached. The scheduler (which
//! lists files and reads parquet footers while planning) and the executors
//! (which scan) both resolve stores through this registry, so they agree on
//! what a URL means.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::object_store::ObjectStoreRegistry;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use parking_lot::RwLock;
use url::Url;

use crate::error::{BallistaError, Result};

/// Creates object stores for the URL schemes it serves.
///
/// Implementations are called at most once per scheme + authority (for
/// example once per S3 bucket); the registry caches what they return.
/// Creation must not perform network I/O that can hang: defer it to the
/// store's first request.
pub trait ObjectStoreProvider: Send + Sync + Debug {
    /// The URL schemes this provider serves, e.g. `["s3"]`.
    fn schemes(&self) -> Vec<String>;

    /// Creates the store for `url`'s scheme and authority. The path part of
    /// `url` is not significant.
    fn create_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>>;

    /// Checks, without touching any data, that a plan may `access` the
    /// location `url` (a file or a folder).
    ///
    /// The scheduler calls it for every location a query reads or writes
    /// (scans, `COPY` destinations, `INSERT` targets) before the query runs,
    /// so a sandboxing provider refuses a forbidden location with a clear
    /// error instead of failing halfway through a job. Stores should enforce
    /// the same rule on every request as well. The default allows everything.
    fn check_access(&self, url: &Url, access: StorageAccess) -> Result<()> {
        let _ = (url, access);
        Ok(())
    }
}

/// What a query does at a storage location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageAccess {
    /// Lists or reads.
    Read,
    /// Creates or replaces objects.
    Write,
}

impl std::fmt::Display for StorageAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StorageAccess::Read => "read",
            StorageAccess::Write => "write",
        })
    }
}

/// Serves `file://` URLs from the local file system, unrestricted.
///
/// The `ballista-storage-local` plugin provides a sandboxed alternative.
#[derive(Debug, Default)]
pub struct LocalFileSystemProvider;

impl ObjectStoreProvider for LocalFileSystemProvider {
    fn schemes(&self) -> Vec<String> {
        vec!["file".to_string()]
    }

    fn create_store(&self, _url: &Url) -> Result<Arc<dyn ObjectStore>> {
        Ok(Arc::new(LocalFileSystem::new()))
    }
}

/// DataFusion object store registry backed by [`ObjectStoreProvider`]s.
#[derive(Debug)]
pub struct BallistaObjectStoreRegistry {
    providers: HashMap<String, Arc<dyn ObjectStoreProvider>>,
    stores: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl BallistaObjectStoreRegistry {
    /// A registry serving the schemes of `providers`. A later provider for
    /// the same scheme replaces an earlier one.
    pub fn new(providers: &[Arc<dyn ObjectStoreProvider>]) -> Self {
        let mut by_scheme = HashMap::new();
        for provider in providers {
            for scheme in provider.schemes() {
                by_scheme.insert(scheme.to_ascii_lowercase(), Arc::clone(provider));
            }
        }
        Self {
            providers: by_scheme,
            stores: RwLock::new(HashMap::new()),
        }
    }

    /// The schemes the registry can create stores for.
    pub fn schemes(&self) -> Vec<String> {
        let mut schemes: Vec<String> = self.providers.keys().cloned().collect();
        schemes.sort();
        schemes
    }

    /// Asks the provider serving `url`'s scheme whether a plan may `access`
    /// it (see [`ObjectStoreProvider::check_access`]). A scheme no provider
    /// serves is refused.
    pub fn check_access(&self, url: &Url, access: StorageAccess) -> Result<()> {
        match self.provider_for(url) {
            Ok(provider) => provider.check_access(url, access),
            // A store registered in code without a provider is trusted as is.
            Err(_) if self.stores.read().contains_key(&Self::key(url)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn provider_for(&self, url: &Url) -> Result<&Arc<dyn ObjectStoreProvider>> {
        self.providers.get(url.scheme()).ok_or_else(|| {
            BallistaError::NotSupported(format!(
                "no storage plugin serves the URL scheme '{}' (of {url}); available schemes: {}",
                url.scheme(),
                self.schemes().join(", ")
            ))
        })
    }

    fn key(url: &Url) -> String {
        let mut key = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
        if let Some(port) = url.port() {
            key.push_str(&format!(":{port}"));
        }
        key
    }
}

impl ObjectStoreRegistry for BallistaObjectStoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.stores.write().insert(Self::key(url), store)
    }

    fn deregister_store(&self, url: &Url) -> DFResult<Arc<dyn ObjectStore>> {
        self.stores.write().remove(&Self::key(url)).ok_or_else(|| {
            DataFusionError::Execution(format!("no object store registered for {url}"))
        })
    }

    fn get_store(&self, url: &Url) -> DFResult<Arc<dyn ObjectStore>> {
        let key = Self::key(url);
        if let Some(store) = self.stores.read().get(&key) {
            return Ok(Arc::clone(store));
        }
        let provider = self.provider_for(url).map_err(DataFusionError::from)?;
        let mut stores = self.stores.write();
        // Another caller may have created it while we waited for the lock.
        if let Some(store) = stores.get(&key) {
            return Ok(Arc::clone(store));
        }
        let store = provider.create_store(url).map_err(DataFusionError::from)?;
        stores.insert(key, Arc::clone(&store));
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Default)]
    struct CountingProvider(AtomicUsize);

    impl ObjectStoreProvider for CountingProvider {
        fn schemes(&self) -> Vec<String> {
            vec!["mem".into()]
        }
        fn create_store(&self, _url: &Url) -> Result<Arc<dyn ObjectStore>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Arc::new(object_store::memory::InMemory::new()))
        }
    }

    #[test]
    fn stores_are_created_once_per_authority_and_cached() {
        let provider = Arc::new(CountingProvider::default());
        let registry = BallistaObjectStoreRegistry::new(&[
            Arc::new(LocalFileSystemProvider) as Arc<dyn ObjectStoreProvider>,
            provider.clone(),
        ]);
        let a1 = registry
            .get_store(&Url::parse("mem://a/x/y").unwrap())
            .unwrap();
        let a2 = registry
            .get_store(&Url::parse("mem://a/other").unwrap())
            .unwrap();
        let _b = registry
            .get_store(&Url::parse("mem://b/").unwrap())
            .unwrap();
        assert!(Arc::ptr_eq(&a1, &a2));
        assert_eq!(provider.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn unknown_scheme_names_the_scheme() {
        let registry = BallistaObjectStoreRegistry::new(&[Arc::new(LocalFileSystemProvider)]);
        let err = registry
            .get_store(&Url::parse("gs://bucket/x").unwrap())
            .unwrap_err();
        let typed = BallistaError::from_datafusion(err);
        assert!(
            matches!(typed, BallistaError::NotSupported(ref m) if m.contains("'gs'")),
            "{typed}"
        );
    }
}
