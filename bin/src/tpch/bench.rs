//! Runs the TPC-H queries on a session (distributed) and optionally on
//! single-process DataFusion over the same files, times them and checks that
//! both give the same values.

use std::path::Path;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use serde::Serialize;

use super::compare::compare;
use super::datagen::TABLES;
use super::queries::statements;

/// Registers the eight tables of the TPC-H data folder `dir`.
pub async fn register_tables(ctx: &SessionContext, dir: &Path) -> Result<()> {
    register_tables_at(ctx, &dir.display().to_string()).await
}

/// Registers the eight TPC-H tables stored as `<base>/<table>/` folders of
/// parquet files, where `base` is a local folder or a URL such as
/// `s3://bucket/tpch`.
pub async fn register_tables_at(ctx: &SessionContext, base: &str) -> Result<()> {
    let base = base.trim_end_matches('/');
    for table in TABLES {
        let location = format!("{base}/{table}/");
        // The data asked for wins over a table of the same name the
        // scheduler declares (and registers in remote sessions).
        ctx.deregister_table(table)?;
        ctx.register_parquet(table, &location, ParquetReadOptions::default())
            .await?;
    }
    Ok(())
}

/// Runs query `n` (all its statements, in order) and returns the rows of the
/// statement that produces them.
pub async fn run_query(ctx: &SessionContext, n: usize) -> Result<Vec<RecordBatch>> {
    let mut result = Vec::new();
    for sql in statements(n) {
        // Classify before executing: `SessionContext::sql` runs DDL eagerly
        // and hands back an empty relation that looks like a query.
        let plan = ctx.state().create_logical_plan(sql).await?;
        let returns_rows = !matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Statement(_));
        let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
        if returns_rows {
            result = batches;
        }
    }
    Ok(result)
}

/// Outcome of the value check for one query.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum Check {
    /// Not compared.
    NotChecked,
    /// Same values as single-process DataFusion.
    Match,
    /// Values differ.
    Mismatch(String),
    /// The query failed.
    Failed(String),
}

/// Timings and check of one query.
#[derive(Debug, Clone, Serialize)]
pub struct QueryReport {
    /// Query number.
    pub query: usize,
    /// Rows returned.
    pub rows: usize,
    /// Milliseconds per iteration on the cluster.
    pub distributed_ms: Vec<f64>,
    /// Milliseconds per iteration on single-process DataFusion.
    pub local_ms: Vec<f64>,
    /// Value check.
    pub check: Check,
    /// Highest resident memory of any executor process while the query ran
    /// (only when `ballista tpch` started the executors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor_peak_rss_bytes: Option<u64>,
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

impl QueryReport {
    /// Mean distributed time.
    pub fn distributed_mean(&self) -> Option<f64> {
        mean(&self.distributed_ms)
    }
    /// Mean single-process time.
    pub fn local_mean(&self) -> Option<f64> {
        mean(&self.local_ms)
    }
}

/// Everything `ballista tpch` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Scale factor of the data.
    pub scale: f64,
    /// Where the data was.
    pub data_dir: String,
    /// Iterations per query.
    pub iterations: usize,
    /// Description of the cluster.
    pub cluster: String,
    /// Per-query results.
    pub queries: Vec<QueryReport>,
    /// Sum of mean distributed times (ms).
    pub total_distributed_ms: f64,
    /// Sum of mean single-process times (ms), when compared.
    pub total_local_ms: Option<f64>,
    /// Total distributed / total single-process.
    pub ratio: Option<f64>,
    /// With separate processes: the highest total resident size of the
    /// scheduler and the executors together, sampled every 20 ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_peak_rss_bytes: Option<u64>,
    /// With separate processes: the highest resident size of this process
    /// (`VmHWM`), which ran the client and single-process DataFusion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_peak_rss_bytes: Option<u64>,
    /// Executor memory, when `ballista tpch` started the executors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub executor_memory: Vec<super::processes::ExecutorMemoryReport>,
}

async fn timed(ctx: &SessionContext, n: usize) -> (f64, Result<Vec<RecordBatch>>) {
    let start = Instant::now();
    let result = run_query(ctx, n).await;
    (start.elapsed().as_secs_f64() * 1000.0, result)
}

/// Runs `queries` `iterations` times each on `cluster` (and on `local` when
/// given), reporting each query as it finishes through `progress`.
pub async fn run(
    cluster: &SessionContext,
    local: Option<&SessionContext>,
    queries: &[usize],
    iterations: usize,
    progress: &dyn Fn(&QueryReport),
) -> Vec<QueryReport> {
    let mut reports = Vec::new();
    for &n in queries {
        let mut report = QueryReport {
            query: n,
            rows: 0,
            distributed_ms: Vec::new(),
            local_ms: Vec::new(),
            check: Check::NotChecked,
            executor_peak_rss_bytes: None,
        };
        let mut distributed_result = None;
        for _ in 0..iterations.max(1) {
            let (ms, result) = timed(cluster, n).await;
            match result {
                Ok(batches) => {
                    report.distributed_ms.push(ms);
                    report.rows = batches.iter().map(|b| b.num_rows()).sum();
                    distributed_result = Some(batches);
                }
                Err(e) => {
                    report.check = Check::Failed(e.strip_backtrace());
                    distributed_result = None;
                    break;
                }
            }
        }
        if let (Some(local), Some(actual)) = (local, &distributed_result) {
            let mut expected = None;
            for _ in 0..iterations.max(1) {
                let (ms, result) = timed(local, n).await;
                match result {
                    Ok(batches) => {
                        report.local_ms.push(ms);
                        expected = Some(batches);
                    }
                    Err(e) => {
                        report.check = Check::Failed(format!(
                            "single-process DataFusion failed: {}",
                            e.strip_backtrace()
                        ));
                        break;
                    }
                }
            }
            if let Some(expected) = expected {
                report.check = match compare(&expected, actual) {
                    Ok(()) => Check::Match,
                    Err(e) => Check::Mismatch(e),
                };
            }
        }
        progress(&report);
        reports.push(report);
    }
    reports
}

/// Builds the report from per-query results.
pub fn summarize(
    scale: f64,
    data_dir: &Path,
    iterations: usize,
    cluster: String,
    queries: Vec<QueryReport>,
) -> BenchReport {
    // An empty f64 sum is -0.0, which would print as "-0.0 ms".
    let total_distributed_ms = queries
        .iter()
        .filter_map(QueryReport::distributed_mean)
        .sum::<f64>()
        + 0.0;
    let compared = queries.iter().any(|q| !q.local_ms.is_empty());
    let total_local_ms = compared.then(|| {
        queries
            .iter()
            .filter_map(QueryReport::local_mean)
            .sum::<f64>()
    });
    let ratio = total_local_ms
        .filter(|l| *l > 0.0)
        .map(|l| total_distributed_ms / l);
    BenchReport {
        scale,
        data_dir: data_dir.display().to_string(),
        iterations,
        cluster,
        queries,
        total_distributed_ms,
        total_local_ms,
        ratio,
        executor_memory: Vec::new(),
        cluster_peak_rss_bytes: None,
        client_peak_rss_bytes: None,
    }
}

const MIB: f64 = (1u64 << 20) as f64;

/// The report as a text table.
pub fn render_table(report: &BenchReport) -> String {
    let compared = report.total_local_ms.is_some();
    let rss = report
        .queries
        .iter()
        .any(|q| q.executor_peak_rss_bytes.is_some());
    let mut out = String::new();
    let (rss_head, rss_rule) = if rss {
        (
            "      | executor peak RSS MiB",
            "------+-----------------------",
        )
    } else {
        ("", "")
    };
    if compared {
        out.push_str(&format!(
            "query | distributed ms | single-process ms | ratio | rows | result{rss_head}\n"
        ));
        out.push_str(&format!(
            "------+----------------+-------------------+-------+------+-------{rss_rule}\n"
        ));
    } else {
        out.push_str(&format!(
            "query | distributed ms | rows | result{rss_head}\n"
        ));
        out.push_str(&format!(
            "------+----------------+------+-------{rss_rule}\n"
        ));
    }
    for q in &report.queries {
        let d = q
            .distributed_mean()
            .map_or("-".to_string(), |v| format!("{v:.1}"));
        let status = match &q.check {
            Check::NotChecked => "ok".to_string(),
            Check::Match => "same values".to_string(),
            Check::Mismatch(_) => "MISMATCH".to_string(),
            Check::Failed(_) => "FAILED".to_string(),
        };
        let status = match q.executor_peak_rss_bytes {
            Some(bytes) if rss => format!("{status:<11} | {:>8.1}", bytes as f64 / MIB),
            None if rss => format!("{status:<11} | {:>8}", "-"),
            _ => status,
        };
        if compared {
            let l = q
                .local_mean()
                .map_or("-".to_string(), |v| format!("{v:.1}"));
            let r = match (q.distributed_mean(), q.local_mean()) {
                (Some(d), Some(l)) if l > 0.0 => format!("{:.2}", d / l),
                _ => "-".to_string(),
            };
            out.push_str(&format!(
                "q{:<4} | {d:>14} | {l:>17} | {r:>5} | {:>4} | {status}\n",
                q.query, q.rows
            ));
        } else {
            out.push_str(&format!(
                "q{:<4} | {d:>14} | {:>4} | {status}\n",
                q.query, q.rows
            ));
        }
    }
    out.push_str(&format!(
        "total distributed: {:.1} ms\n",
        report.total_distributed_ms
    ));
    if let (Some(local), Some(ratio)) = (report.total_local_ms, report.ratio) {
        out.push_str(&format!("total single-process: {local:.1} ms\n"));
        out.push_str(&format!(
            "ratio (distributed / single-process): {ratio:.2}\n"
        ));
    }
    if let Some(cluster) = report.cluster_peak_rss_bytes {
        out.push_str(&format!(
            "cluster peak RSS (scheduler + executors, sampled): {:.1} MiB\n",
            cluster as f64 / MIB
        ));
    }
    if let Some(client) = report.client_peak_rss_bytes {
        out.push_str(&format!(
            "this process's peak RSS (client and single-process DataFusion): {:.1} MiB\n",
            client as f64 / MIB
        ));
    }
    for e in &report.executor_memory {
        out.push_str(&format!(
            "executor pid {} (port {}): peak RSS {:.1} MiB = {:.1}% of its {:.1} MiB budget; peak reserved {:.1} MiB\n",
            e.pid,
            e.port,
            e.peak_rss_bytes as f64 / MIB,
            e.rss_ratio() * 100.0,
            e.budget_bytes as f64 / MIB,
            e.peak_reserved_bytes as f64 / MIB
        ));
    }
    for q in &report.queries {
        match &q.check {
            Check::Mismatch(detail) => out.push_str(&format!("q{} mismatch: {detail}\n", q.query)),
            Check::Failed(detail) => out.push_str(&format!("q{} failed: {detail}\n", q.query)),
            _ => {}
        }
    }
    out
}
