//! A scheduler binary of your own, assembled with `BallistaConfig::builder()`.
//!
//! It reads the same TOML as the stock scheduler (`custom-scheduler --config
//! FILE`), can select the third-party `mount` storage plugin from it, and
//! injects a component of its own: an admission rule that only runs jobs
//! that carry a name (`SET ballista.job_name = '…'`), so that every query on
//! a shared cluster can be traced to its owner.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use ballista::BallistaError;
use ballista::config::{BallistaConfig, BallistaSettings};
use ballista::plugin::registry::PluginRegistry;
use ballista::plugin::scheduling::{
    Admission, ExecutorSlots, FifoPolicy, JobSubmission, SchedulableJob, TaskAssignment,
    TaskSchedulingPolicy,
};
use ballista::scheduler::start_scheduler;

/// FIFO placement; refuses jobs without a `ballista.job_name`.
#[derive(Debug, Default)]
struct NamedJobsOnly(FifoPolicy);

impl TaskSchedulingPolicy for NamedJobsOnly {
    fn name(&self) -> &str {
        "named-jobs-only"
    }

    fn admit(&self, job: &JobSubmission<'_>) -> Admission {
        match job.settings.get("ballista.job_name") {
            Some(name) if !name.trim().is_empty() => Admission::Run,
            _ => Admission::Reject {
                reason: "this cluster runs named jobs only: SET ballista.job_name = '<name>' first"
                    .into(),
            },
        }
    }

    fn assign(&self, jobs: &[SchedulableJob<'_>], slots: &[ExecutorSlots]) -> Vec<TaskAssignment> {
        self.0.assign(jobs, slots)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom-scheduler: {e}");
            ExitCode::from(if matches!(e, BallistaError::Configuration(_)) {
                2
            } else {
                1
            })
        }
    }
}

async fn run() -> ballista::Result<()> {
    // `custom-scheduler [--config FILE]`; BALLISTA_* variables apply as usual.
    let file = std::env::args().skip_while(|a| a != "--config").nth(1);
    let settings = BallistaSettings::load(file.as_deref().map(Path::new))?;

    let mut registry = PluginRegistry::with_builtins();
    ballista_storage_mount::register(&mut registry);
    let config = BallistaConfig::builder()
        .settings(settings)
        .registry(registry)
        .scheduling_policy(Arc::new(NamedJobsOnly::default()))
        .build();

    let scheduler = start_scheduler(config).await?;
    println!("custom-scheduler listening on {}", scheduler.local_addr());
    scheduler.wait().await
}
