//! What the `ballista` client's subcommands share: the flags that say which
//! cluster to reach, connecting to it, the progress line and how errors are
//! printed.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ballista::client::{JobProgressListener, SessionContextExt};
use ballista::config::BallistaSettings;
use ballista::proto::{JobState, JobStatus};
use clap::Args;
use datafusion::prelude::SessionContext;

/// Which cluster a subcommand runs on: `--scheduler`, or an embedded one.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Scheduler URL, e.g. http://localhost:50050 (default: client.scheduler_url
    /// of the configuration). Without either an embedded cluster (scheduler
    /// and executors in this process) is started.
    #[arg(long, value_name = "URL")]
    pub scheduler: Option<String>,
    /// Configuration file: [client], and for the embedded cluster its tables,
    /// executor settings and plugins. BALLISTA_* variables override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Executors of the embedded cluster.
    #[arg(long, default_value_t = 1)]
    pub executors: usize,
    /// Task slots per embedded executor (default: one per CPU core).
    #[arg(long)]
    pub slots: Option<usize>,
    /// Log in to --scheduler as this user; the password is read from
    /// BALLISTA_PASSWORD (default: client.user, else the cluster key of this
    /// machine, as the cluster administrator).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// CA certificate (PEM) to trust for an https:// scheduler and its
    /// executors (default: tls.ca_file, else the system's roots).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Send the password or token to a scheduler on another machine over
    /// http:// (plain text) all the same.
    #[arg(long)]
    pub insecure: bool,
}

/// The job whose failure or cancellation ended the current statement, so
/// that the error printed for it can name it (DataFusion's errors do not).
pub type EndedJob = Arc<std::sync::Mutex<Option<String>>>;

/// Records jobs that failed into `ended` and, when `show` and stderr is a
/// terminal, draws the progress line of the running job.
pub fn progress_listener(show: bool, ended: EndedJob) -> JobProgressListener {
    let show = show && std::io::stderr().is_terminal();
    JobProgressListener(Arc::new(move |status: &JobStatus| {
        let state = JobState::try_from(status.state);
        if matches!(state, Ok(JobState::Failed | JobState::Cancelled)) {
            *ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(status.job_id.clone());
        }
        if !show {
            return;
        }
        let done = matches!(
            state,
            Ok(JobState::Succeeded | JobState::Failed | JobState::Cancelled)
        );
        let mut err = std::io::stderr();
        if done {
            let _ = write!(err, "\r\x1b[2K");
        } else if status.state == JobState::Queued as i32 {
            let _ = write!(
                err,
                "\r\x1b[2K[job {}] queued, position {} in pool '{}': {}",
                status.job_id, status.queue_position, status.pool, status.queue_reason
            );
        } else if let Some(p) = &status.progress {
            let _ = write!(
                err,
                "\r\x1b[2K[job {}] stages {}/{} · tasks {}/{} ({} running){}",
                status.job_id,
                p.stages_completed,
                p.stages_total,
                p.tasks_completed,
                p.tasks_total,
                p.tasks_running,
                if p.map_tasks_recomputed > 0 {
                    format!(" · {} lost map task(s) re-run", p.map_tasks_recomputed)
                } else {
                    String::new()
                }
            );
        }
        let _ = err.flush();
    }))
}

/// A session on the cluster `args` name, with `listener` for job progress.
pub async fn connect(
    args: &ClusterArgs,
    listener: Option<JobProgressListener>,
) -> Result<SessionContext, String> {
    let mut settings = BallistaSettings::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    if let Some(slots) = args.slots {
        settings.executor.slots = slots;
    }
    if let Some(user) = &args.user {
        settings.client.user = Some(user.clone());
    }
    apply_tls_flags(&mut settings, args.ca_file.clone(), args.insecure);
    let scheduler = args
        .scheduler
        .clone()
        .or_else(|| settings.client.scheduler_url.clone());
    let config = crate::server::stock_config(settings);
    let ctx = match scheduler {
        Some(url) => SessionContext::remote_with_config(&url, config)
            .await
            .map_err(describe)?,
        None => SessionContext::standalone_with_config(config, args.executors)
            .await
            .map_err(describe)?,
    };
    if let Some(listener) = listener {
        ctx.state_ref()
            .write()
            .config_mut()
            .set_extension(Arc::new(listener));
    }
    Ok(ctx)
}

/// A DataFusion error as the user should read it: Ballista's typed error
/// without DataFusion's "External error" wrapper.
pub fn describe(error: datafusion::error::DataFusionError) -> String {
    ballista::BallistaError::from_datafusion(error)
        .typed()
        .to_string()
}

/// Prints `message` as the command's error and returns exit code 1.
pub fn error_exit(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("Error: {message}");
    ExitCode::from(1)
}

/// `--ca-file` and `--insecure` over the configuration's `[tls]`.
pub fn apply_tls_flags(settings: &mut BallistaSettings, ca_file: Option<PathBuf>, insecure: bool) {
    if let Some(ca_file) = ca_file {
        settings.tls.ca_file = Some(ca_file);
    }
    if insecure {
        settings.tls.allow_plain_text = true;
    }
}
