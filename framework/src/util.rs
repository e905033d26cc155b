//! Small helpers shared across modules.

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
