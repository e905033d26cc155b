//! The `ballista scheduler-bench` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ballista::config::BallistaSettings;
use clap::Args;

use super::{SchedulerBenchOptions, run};

/// `ballista scheduler-bench`.
#[derive(Debug, Clone, Args)]
pub struct SchedulerBenchArgs {
    /// Simulated executors to register.
    #[arg(long, default_value_t = 1000)]
    pub executors: usize,
    /// Task slots of each simulated executor.
    #[arg(long, default_value_t = 2)]
    pub slots: usize,
    /// Jobs to run (after one warm-up job).
    #[arg(long, default_value_t = 20)]
    pub jobs: usize,
    /// Jobs submitted at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Tasks of each of a job's two stages.
    #[arg(long, default_value_t = 1000)]
    pub partitions: usize,
    /// How long each simulated task runs, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub task_ms: u64,
    /// Heartbeat period of each simulated executor, in seconds.
    #[arg(long, default_value_t = 2)]
    pub heartbeat_secs: u64,
    /// Scheduler configuration (its `[scheduling]` policy, `[scheduler.limits]`, ...).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs the benchmark and prints its table (and writes its JSON).
pub async fn command(args: SchedulerBenchArgs) -> ExitCode {
    let settings = match BallistaSettings::load(args.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(2);
        }
    };
    let options = SchedulerBenchOptions {
        executors: args.executors,
        slots: args.slots,
        jobs: args.jobs,
        concurrency: args.concurrency,
        partitions: args.partitions,
        task_time: Duration::from_millis(args.task_ms),
        heartbeat_interval: Duration::from_secs(args.heartbeat_secs.max(1)),
    };
    let report = match run(settings, &options, &|line: &str| eprintln!("{line}")).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(1);
        }
    };
    print!("{}", report.render());
    if let Some(path) = &args.output {
        let written = serde_json::to_string_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|json| std::fs::write(path, json).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("Error: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
