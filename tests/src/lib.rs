//! Helpers for integration tests: real scheduler and executor processes
//! started from the stock binaries, and shared TPC-H test data.

pub mod auth;
pub mod cluster;
pub mod data;
pub mod flight_sql;
pub mod http;
pub mod probe;
pub mod python;
pub mod s3;
pub mod secured;
pub mod semantics;
pub mod session;
pub mod slt;

pub use ballista_bin::tpch::{bench, compare, queries};

/// This checkout's `tests` folder. Read when the test runs (cargo sets
/// `CARGO_MANIFEST_DIR` for the tests it starts), not when it was compiled:
/// the target directory is shared between checkouts, and a test binary
/// built in another one that has since moved or gone would otherwise read
/// that checkout's files.
pub fn tests_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}

/// The root of this checkout (see [`tests_dir`]).
pub fn repo_root() -> std::path::PathBuf {
    tests_dir().join("..")
}

use datafusion::prelude::SessionContext;

/// Single-process DataFusion with the TPC-H tables of `data` registered:
/// the reference the cluster's answers are compared with.
pub async fn local_tpch_session(data: &std::path::Path) -> SessionContext {
    let local = SessionContext::new();
    bench::register_tables(&local, data)
        .await
        .expect("register TPC-H tables in single-process DataFusion");
    local
}

/// Runs TPC-H queries on both sessions; one line per query whose values
/// differ, that fails, or that returns no rows at all (it would prove nothing).
pub async fn tpch_differences(
    distributed: &SessionContext,
    local: &SessionContext,
    queries: impl IntoIterator<Item = usize>,
) -> Vec<String> {
    let mut differences = Vec::new();
    for q in queries {
        let expected = bench::run_query(local, q)
            .await
            .expect("single-process DataFusion");
        if expected.iter().all(|b| b.num_rows() == 0) {
            differences.push(format!("q{q} returns no rows at this scale"));
            continue;
        }
        match bench::run_query(distributed, q).await {
            Ok(actual) => {
                if let Err(e) = compare::compare(&expected, &actual) {
                    differences.push(format!("q{q}: {e}"));
                }
            }
            Err(e) => differences.push(format!("q{q} failed: {e}")),
        }
    }
    differences
}

/// Runs SQL statements on both sessions; one entry per statement whose
/// values differ or that fails on the cluster.
pub async fn sql_differences(
    distributed: &SessionContext,
    local: &SessionContext,
    queries: &[&str],
) -> Vec<String> {
    let mut differences = Vec::new();
    for sql in queries {
        let expected = match local.sql(sql).await {
            Ok(df) => df
                .collect()
                .await
                .unwrap_or_else(|e| panic!("DataFusion fails {sql}: {e}")),
            Err(e) => panic!("DataFusion cannot plan {sql}: {e}"),
        };
        let actual = match distributed.sql(sql).await {
            Ok(df) => df.collect().await,
            Err(e) => Err(e),
        };
        match actual {
            Ok(actual) => {
                if let Err(e) = compare::compare(&expected, &actual) {
                    differences.push(format!("{sql}\n  {e}"));
                }
            }
            Err(e) => differences.push(format!("{sql}\n  failed: {e}")),
        }
    }
    differences
}
