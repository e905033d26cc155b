//! The `ballista tpch` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ballista::config::{BallistaSettings, MemoryAmount};
use clap::Args;
use datafusion::prelude::SessionContext;

use super::{bench, datagen, processes, queries};
use crate::cli::{ClusterArgs, connect, describe, error_exit};

/// `ballista tpch`.
#[derive(Debug, Args)]
pub struct TpchArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Scale factor of generated data.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Data folder: used as is when it holds TPC-H tables, generated into
    /// otherwise (default ./tpch-data/sf<scale>).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Queries to run, e.g. 1,3,5-7 (default: all 22).
    #[arg(long, default_value = "")]
    pub queries: String,
    /// Runs per query (times are averaged).
    #[arg(long, default_value_t = 1)]
    pub iterations: usize,
    /// Also run on single-process DataFusion, compare values and times.
    #[arg(long)]
    pub compare_local: bool,
    /// Partitions per stage (datafusion.execution.target_partitions).
    #[arg(long)]
    pub partitions: Option<usize>,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Start the scheduler and --executors executors as separate processes,
    /// each executor with this memory limit (e.g. 512MiB, or 25% of the
    /// machine), and report every executor's peak resident memory, measured
    /// by the kernel, next to it. Their plugins come from --config (e.g.
    /// `[memory] kind = "quota"`).
    #[arg(long, value_name = "SIZE")]
    pub memory_limit: Option<MemoryAmount>,
}

/// Runs `ballista tpch`: generates the data if needed, runs the queries and
/// prints (and writes) the report.
pub async fn command(args: TpchArgs) -> ExitCode {
    let query_list = match queries::parse_query_list(&args.queries) {
        Ok(q) => q,
        Err(e) => return error_exit(e),
    };
    let data_dir = args
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("tpch-data/sf{}", args.scale)));
    if datagen::has_data(&data_dir, args.scale)
        || (args.data.is_some() && datagen::has_tables(&data_dir))
    {
        eprintln!("using TPC-H data in {}", data_dir.display());
    } else {
        eprintln!(
            "generating TPC-H data at scale factor {} in {}",
            args.scale,
            data_dir.display()
        );
        let started = Instant::now();
        let scale = args.scale;
        let dir = data_dir.clone();
        let result = tokio::task::spawn_blocking(move || {
            datagen::generate(&dir, scale, &|line: &str| eprintln!("  {line}"))
        })
        .await;
        match result {
            Ok(Ok(bytes)) => eprintln!(
                "generated {:.1} MB in {:.1}s",
                bytes as f64 / 1e6,
                started.elapsed().as_secs_f64()
            ),
            Ok(Err(e)) => return error_exit(e),
            Err(e) => return error_exit(format!("data generation failed: {e}")),
        }
    }

    let mut cluster_args = args.cluster.clone();
    if cluster_args.scheduler.is_none() && cluster_args.executors == 0 {
        cluster_args.executors = 1;
    }
    let processes = match &args.memory_limit {
        None => None,
        Some(_) if args.cluster.scheduler.is_some() => {
            return error_exit(
                "--memory-limit starts its own scheduler and executors and cannot be used with --scheduler; \
                 set the memory limit of a running cluster's executors on the executors",
            );
        }
        Some(limit) => {
            let tls = match BallistaSettings::load(cluster_args.config.as_deref()) {
                Ok(settings) => settings.scheduler.tls.enabled(),
                Err(e) => return error_exit(e),
            };
            let spec = processes::ProcessClusterSpec {
                executors: cluster_args.executors,
                slots: cluster_args.slots,
                memory_limit: limit.to_string(),
                config: cluster_args.config.clone(),
                tls,
            };
            match processes::ProcessCluster::start(&spec) {
                Ok(cluster) => {
                    eprintln!(
                        "started a scheduler and {} executor process(es) with a {limit} memory limit each (logs in {})",
                        spec.executors,
                        cluster.log_path().display()
                    );
                    cluster_args.scheduler = Some(cluster.scheduler_url.clone());
                    Some(cluster)
                }
                Err(e) => return error_exit(e),
            }
        }
    };
    let ctx = match connect(&cluster_args, None).await {
        Ok(ctx) => ctx,
        Err(e) => return error_exit(e),
    };
    if let Some(p) = args.partitions
        && let Err(e) = ctx
            .sql(&format!("SET datafusion.execution.target_partitions = {p}"))
            .await
    {
        return error_exit(describe(e));
    }
    if let Err(e) = bench::register_tables(&ctx, &data_dir).await {
        return error_exit(format!(
            "registering tables from {}: {}",
            data_dir.display(),
            describe(e)
        ));
    }
    let local = if args.compare_local {
        let local = SessionContext::new();
        if let Err(e) = bench::register_tables(&local, &data_dir).await {
            return error_exit(describe(e));
        }
        Some(local)
    } else {
        None
    };
    let cluster = match (&args.cluster.scheduler, &args.memory_limit) {
        (Some(url), _) => format!("scheduler {url}"),
        (None, Some(limit)) => format!(
            "scheduler and {} executor process(es), memory limit {limit} each",
            cluster_args.executors
        ),
        (None, None) => format!("embedded cluster, {} executor(s)", cluster_args.executors),
    };
    eprintln!("running {} queries on {cluster}", query_list.len());
    let monitor = processes.as_ref().map(|p| {
        processes::RssMonitor::start(
            p.executor_pids(),
            vec![p.scheduler_pid()],
            Duration::from_millis(20),
        )
    });
    let query_rss = std::sync::Mutex::new(Vec::new());
    let mut reports = bench::run(&ctx, local.as_ref(), &query_list, args.iterations, &|q| {
        let rss = monitor.as_ref().map(|m| m.take_window());
        if let Some(rss) = rss {
            query_rss.lock().expect("not poisoned").push((q.query, rss));
        }
        let rss = rss.map_or(String::new(), |b| {
            format!(
                ", executor peak RSS {:.1} MiB",
                b as f64 / (1u64 << 20) as f64
            )
        });
        let d = q
            .distributed_mean()
            .map_or("-".into(), |v| format!("{v:.1} ms"));
        let l = q
            .local_mean()
            .map_or(String::new(), |v| format!(", single-process {v:.1} ms"));
        let status = match &q.check {
            bench::Check::Match => " (same values)",
            bench::Check::Mismatch(_) => " (MISMATCH)",
            bench::Check::Failed(_) => " (FAILED)",
            bench::Check::NotChecked => "",
        };
        eprintln!("  q{:<2} {d}{l}{status}{rss}", q.query);
    })
    .await;
    for (query, rss) in query_rss.into_inner().expect("not poisoned") {
        if let Some(report) = reports.iter_mut().find(|r| r.query == query) {
            report.executor_peak_rss_bytes = Some(rss);
        }
    }
    let cluster_peak_rss = monitor.as_ref().map(processes::RssMonitor::total_peak);
    drop(monitor);
    let executor_memory = match &processes {
        Some(p) => executor_memory(p, &cluster_args).await,
        None => Vec::new(),
    };
    let failed = reports
        .iter()
        .any(|q| matches!(q.check, bench::Check::Failed(_)));
    let processes_were_used = processes.is_some();
    if let Some(processes) = processes {
        if failed {
            let logs = processes.keep_logs();
            eprintln!(
                "a query failed: the scheduler's and executors' logs are kept in {}",
                logs.display()
            );
        } else {
            drop(processes);
        }
    }
    let mut report = bench::summarize(args.scale, &data_dir, args.iterations, cluster, reports);
    report.executor_memory = executor_memory;
    report.cluster_peak_rss_bytes = cluster_peak_rss;
    if processes_were_used {
        // This process ran the client and single-process DataFusion only.
        report.client_peak_rss_bytes = processes::proc_status_bytes(std::process::id(), "VmHWM");
    }
    print!("{}", bench::render_table(&report));
    if let Some(path) = &args.output {
        let json = serde_json::to_string_pretty(&report).expect("report serializes");
        if let Err(e) = std::fs::write(path, json) {
            return error_exit(format!("cannot write {}: {e}", path.display()));
        }
        eprintln!("wrote {}", path.display());
    }
    let all_good = report
        .queries
        .iter()
        .all(|q| matches!(q.check, bench::Check::Match | bench::Check::NotChecked));
    if all_good {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Each executor process's peak resident memory (the kernel's `VmHWM`), its
/// budget and peak reservation as it reported them to the scheduler.
async fn executor_memory(
    cluster: &processes::ProcessCluster,
    args: &ClusterArgs,
) -> Vec<processes::ExecutorMemoryReport> {
    // The executors' last figures reach the scheduler with their next
    // heartbeat.
    let heartbeat = BallistaSettings::load(args.config.as_deref())
        .map_or(2, |s| s.executor.heartbeat_interval_secs.max(1));
    tokio::time::sleep(Duration::from_millis(heartbeat * 1000 + 500)).await;
    let reported = match &args.scheduler {
        Some(url) => match ballista::client::SchedulerClient::connect(url).await {
            Ok(client) => client.executors().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        },
        None => Vec::new(),
    };
    cluster
        .executor_processes()
        .into_iter()
        .map(|(pid, port)| {
            let memory = reported
                .iter()
                .find(|e| e.metadata.as_ref().is_some_and(|m| m.port == port as u32))
                .and_then(|e| e.memory.clone())
                .unwrap_or_default();
            processes::ExecutorMemoryReport {
                pid,
                port,
                budget_bytes: memory.budget_bytes,
                peak_rss_bytes: processes::proc_status_bytes(pid, "VmHWM").unwrap_or(0),
                peak_reserved_bytes: memory.peak_bytes,
            }
        })
        .collect()
}
