//! `ballista scheduler-bench`: the scheduler at scale, without the cost of
//! running tasks.
//!
//! A real scheduler starts in this process on loopback, with its gRPC
//! service, authentication and the configured scheduling policy. Simulated
//! executors ([`fleet`]) register with it over gRPC and answer every launch
//! at once with a success. Clients submit SQL jobs whose stages have many
//! tasks (a GROUP BY over a table of one file per partition: a scan stage and
//! an aggregate stage of `--partitions` tasks each), several at a time, and
//! wait for each on its status stream. What is measured is the scheduler's
//! own work: planning, admission, placement, launch calls, status handling
//! and stage transitions. The scheduler runs on threads of its own
//! ([`isolated`]), so that its CPU time is measured apart from the
//! simulation's.

mod command;
pub mod fleet;
mod isolated;
mod report;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballista::auth::SecretKey;
use ballista::client::{ClientAuth, SchedulerClient};
use ballista::config::{BallistaSettings, TableDefinition, TableFormat};
use ballista::error::{BallistaError, Result};
use ballista::ids::JobId;
use ballista::proto;
use ballista::tls::TlsTrust;
use futures::StreamExt;

pub use command::{SchedulerBenchArgs, command};
pub use report::{JobFigures, Percentiles, SchedulerBenchReport};

use fleet::{FleetOptions, SimulatedFleet};
use isolated::{CpuTimes, IsolatedScheduler};

/// The table every job reads.
const TABLE: &str = "bench_input";

/// Longest one benchmark job may take before the run is given up.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);

/// What to run.
#[derive(Debug, Clone)]
pub struct SchedulerBenchOptions {
    /// Simulated executors to register.
    pub executors: usize,
    /// Task slots of each.
    pub slots: usize,
    /// Jobs to run.
    pub jobs: usize,
    /// Jobs submitted at once.
    pub concurrency: usize,
    /// Tasks of each stage (the table's files and the aggregate's
    /// partitions).
    pub partitions: usize,
    /// How long each simulated task takes.
    pub task_time: Duration,
    /// Heartbeat period of each simulated executor.
    pub heartbeat_interval: Duration,
}

/// Runs the benchmark with `settings` for the scheduler (its plugins,
/// limits and policy); its address, port, HTTP service and tables are set
/// here. `progress` receives a line now and then.
pub async fn run(
    mut settings: BallistaSettings,
    options: &SchedulerBenchOptions,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<SchedulerBenchReport> {
    for (flag, value) in [
        ("--executors", options.executors),
        ("--slots", options.slots),
        ("--jobs", options.jobs),
    ] {
        if value == 0 {
            return Err(BallistaError::InvalidInput(format!(
                "{flag} 0: must be at least 1"
            )));
        }
    }
    let limits = &settings.scheduler.limits;
    if options.partitions == 0 || options.partitions > limits.max_partitions_per_stage {
        return Err(BallistaError::InvalidInput(format!(
            "--partitions must be between 1 and scheduler.limits.max_partitions_per_stage ({})",
            limits.max_partitions_per_stage
        )));
    }
    if options.executors > limits.max_executors {
        return Err(BallistaError::InvalidInput(format!(
            "--executors {} is over scheduler.limits.max_executors ({}); raise it in --config",
            options.executors, limits.max_executors
        )));
    }
    let data = tempfile::Builder::new()
        .prefix("ballista-scheduler-bench-")
        .tempdir()?;
    write_input_files(data.path(), options.partitions)?;

    let cluster_key = SecretKey::random()?;
    let scheduler_settings = &mut settings.scheduler;
    scheduler_settings.bind_host = "127.0.0.1".into();
    scheduler_settings.port = 0;
    scheduler_settings.http.enabled = false;
    if scheduler_settings.catalog.location.is_empty() {
        scheduler_settings.catalog.location = "memory".into();
    }
    scheduler_settings.tables.push(TableDefinition {
        name: TABLE.into(),
        location: format!("{}/", data.path().display()),
        format: TableFormat::Csv,
        has_header: Some(true),
        delimiter: None,
        file_extension: None,
    });
    let trust = TlsTrust::from_settings(&settings.tls)?;
    let mut config = crate::server::stock_config(settings);
    config.cluster_key = Some(cluster_key.clone());
    // As many threads as a stock scheduler's runtime has on this machine.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let scheduler = IsolatedScheduler::start(config, workers).await?;
    let url = scheduler.url().to_string();

    progress(&format!(
        "registering {} simulated executors of {} slot(s) with the scheduler at {url}",
        options.executors, options.slots
    ));
    let registering = Instant::now();
    let fleet = SimulatedFleet::start(
        &url,
        &cluster_key,
        &trust,
        &FleetOptions {
            executors: options.executors,
            slots: options.slots,
            task_time: options.task_time,
            heartbeat_interval: options.heartbeat_interval,
        },
    )
    .await?;
    let registration_time = registering.elapsed();
    let client = Arc::new(
        SchedulerClient::connect_trusting(&url, ClientAuth::ClusterKey(cluster_key), &trust)
            .await?,
    );
    let registered = client.executors().await?.len();
    if registered != options.executors {
        return Err(BallistaError::Internal(format!(
            "{registered} of {} simulated executors are registered",
            options.executors
        )));
    }
    progress(&format!(
        "{registered} executors registered in {:.2}s; running {} job(s) of {} tasks, {} at a time",
        registration_time.as_secs_f64(),
        options.jobs,
        2 * options.partitions,
        options.concurrency.max(1)
    ));

    // One job first, so that the table's schema and the plan caches are
    // warm and every measured job finds the executors idle.
    run_job(&client, options.partitions).await?;
    fleet.take_log();
    // Wait for the warm-up's release to be handled, so that it is not
    // counted in the measured jobs' time.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let cpu_at_start = CpuTimes::now();
    let partitions = options.partitions;
    let mut finished = 0usize;
    let mut jobs = Vec::with_capacity(options.jobs);
    let mut runs = futures::stream::iter(0..options.jobs)
        .map(|_| {
            let client = Arc::clone(&client);
            async move {
                let submitted = Instant::now();
                let (job_id, succeeded) = run_job(&client, partitions).await?;
                Ok::<_, BallistaError>((job_id, submitted, succeeded))
            }
        })
        .buffer_unordered(options.concurrency.max(1));
    let mut last_progress = Instant::now();
    while let Some(result) = runs.next().await {
        jobs.push(result?);
        finished += 1;
        if last_progress.elapsed() >= Duration::from_secs(2) || finished == options.jobs {
            last_progress = Instant::now();
            progress(&format!(
                "{finished}/{} jobs done, {} task launches, {:.1}s",
                options.jobs,
                fleet.launches_seen(),
                started.elapsed().as_secs_f64()
            ));
        }
    }
    let elapsed = started.elapsed();
    let cpu = cpu_at_start
        .zip(CpuTimes::now())
        .map(|(at_start, now)| now.since(&at_start));
    let log = fleet.take_log();
    drop(fleet);
    scheduler.shutdown().await;
    Ok(report::summarize(
        options,
        registration_time,
        elapsed,
        cpu,
        &jobs,
        &log,
    ))
}

/// One file per partition, one row each: the scan stage gets one task per
/// file.
fn write_input_files(dir: &Path, partitions: usize) -> Result<()> {
    for i in 0..partitions {
        std::fs::write(
            dir.join(format!("part-{i:05}.csv")),
            format!("k,v\n{},{i}\n", i % 97),
        )?;
    }
    Ok(())
}

/// Submits one job and waits for it to succeed; its results (which exist
/// nowhere: the simulated tasks only report them) are released at once.
/// Returns the job and when its success was seen.
async fn run_job(client: &SchedulerClient, partitions: usize) -> Result<(JobId, Instant)> {
    tokio::time::timeout(JOB_TIMEOUT, run_job_once(client, partitions))
        .await
        .map_err(|_| {
            BallistaError::Timeout(format!(
                "a benchmark job did not finish within {}s",
                JOB_TIMEOUT.as_secs()
            ))
        })?
}

async fn run_job_once(client: &SchedulerClient, partitions: usize) -> Result<(JobId, Instant)> {
    let request = proto::ExecuteQueryRequest {
        query: Some(proto::execute_query_request::Query::Sql(format!(
            "SELECT k, count(*) AS n, sum(v) AS total FROM {TABLE} GROUP BY k"
        ))),
        // Every planned task runs: the simulated outputs are a few bytes,
        // which would make the consumer stage one task.
        settings: proto::key_values([
            (
                "datafusion.execution.target_partitions".to_string(),
                partitions.to_string(),
            ),
            (
                ballista::config::TASK_INPUT_BYTES_KEY.to_string(),
                "0".to_string(),
            ),
        ]),
        query_text: "scheduler-bench".into(),
        ..Default::default()
    };
    let mut statuses = client.execute(request).await?;
    let mut job_id = None;
    while let Some(status) = statuses.next().await {
        let status = status.map_err(|s| BallistaError::Internal(s.message().to_string()))?;
        if job_id.is_none() && !status.job_id.is_empty() {
            job_id = Some(JobId::parse(&status.job_id)?);
        }
        match proto::JobState::try_from(status.state) {
            Ok(proto::JobState::Succeeded) => {
                let succeeded = Instant::now();
                let job_id = job_id.ok_or_else(|| {
                    BallistaError::Internal("a job succeeded without an id".into())
                })?;
                client.release(&job_id).await?;
                return Ok((job_id, succeeded));
            }
            Ok(proto::JobState::Failed | proto::JobState::Cancelled) => {
                return Err(BallistaError::Internal(format!(
                    "benchmark job {} ended {:?}: {}",
                    status.job_id,
                    proto::JobState::try_from(status.state),
                    status.error.map(|e| e.message).unwrap_or_default()
                )));
            }
            _ => {}
        }
    }
    Err(BallistaError::Internal(
        "the job's status stream ended before the job did".into(),
    ))
}
