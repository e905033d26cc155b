//! TPC-H data for tests, generated once per scale factor and shared by every
//! test binary (generation goes to a private folder that is renamed into
//! place, so concurrent test processes never see half-written data).

use std::path::{Path, PathBuf};

use ballista_bin::tpch::datagen;

/// The folder holding TPC-H data at `scale`, under `base` (pass
/// `env!("CARGO_TARGET_TMPDIR")`), generating it if needed.
pub fn tpch_data(base: &str, scale: f64) -> PathBuf {
    let dir = Path::new(base).join(format!("tpch-sf{scale}"));
    if datagen::has_data(&dir, scale) {
        return dir;
    }
    // Unique per call: two tests of one binary may generate at once.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = Path::new(base).join(format!(
        "tpch-sf{scale}.staging-{}-{call}",
        std::process::id()
    ));
    datagen::generate(&staging, scale, &|_| {})
        .unwrap_or_else(|e| panic!("generating TPC-H data: {e}"));
    match std::fs::rename(&staging, &dir) {
        Ok(()) => {}
        // Another process got there first; its data is complete.
        Err(_) if datagen::has_data(&dir, scale) => {
            let _ = std::fs::remove_dir_all(&staging);
        }
        Err(e) => {
            if dir.exists() {
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::rename(&staging, &dir)
                    .unwrap_or_else(|e| panic!("placing TPC-H data: {e}"));
            } else {
                panic!("placing TPC-H data in {}: {e}", dir.display());
            }
        }
    }
    dir
}

/// `[[scheduler.tables]]` entries declaring every TPC-H table of `data`.
pub fn tpch_tables_toml(data: &Path) -> String {
    let mut tables = String::new();
    for table in datagen::TABLES {
        tables.push_str(&format!(
            "[[scheduler.tables]]\nname = \"{table}\"\nlocation = \"{}/{table}/\"\nformat = \"parquet\"\n",
            data.display()
        ));
    }
    tables
}
