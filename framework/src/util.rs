//! Small helpers shared across modules.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// DataFusion's cache settings for Ballista's processes: no cache of file
/// listings. A listing cached by the scheduler would hide the files an
/// executor has just written (`INSERT INTO`, `COPY`) from the next query;
/// DataFusion only invalidates its cache for writes made in the same process.
pub fn cache_settings() -> datafusion::execution::cache::cache_manager::CacheManagerConfig {
    datafusion::execution::cache::cache_manager::CacheManagerConfig::default()
        .with_list_files_cache_limit(0)
}

/// Stack each poll of a [`LargeStack`] future runs on. Only the pages a poll
/// touches are committed; the rest is address space.
pub const PLANNING_STACK_BYTES: usize = 256 << 20;

/// A future whose every poll runs on a stack of [`PLANNING_STACK_BYTES`].
///
/// Planning a query walks its expressions recursively, and not every walk in
/// DataFusion grows its stack on demand (formatting a column name, cloning
/// and dropping an expression do not). A runtime worker's stack is 2 MiB by
/// default; the scheduler plans each job on this one instead, so that an
/// expression as deep as the limits allow cannot abort the process.
pub struct LargeStack<F> {
    inner: Pin<Box<F>>,
}

impl<F: Future> LargeStack<F> {
    /// Wraps `future`.
    pub fn new(future: F) -> Self {
        Self {
            inner: Box::pin(future),
        }
    }
}

impl<F: Future> Future for LargeStack<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let inner = self.inner.as_mut();
        stacker::grow(PLANNING_STACK_BYTES, move || inner.poll(cx))
    }
}
