//! `ballista job status|cancel JOB_ID`: a running cluster's jobs from the
//! command line.

use std::process::ExitCode;

use ballista::client::{ClientAuth, SchedulerClient};
use ballista::ids::JobId;
use ballista::proto::{self, JobState};
use ballista::tls::TlsTrust;

/// What to do with the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    /// Print its state, progress and, per task, failed attempts.
    Status,
    /// Cancel it: its tasks stop, their slots and memory are freed, its
    /// shuffle data is deleted.
    Cancel,
}

/// Runs `action` against the scheduler at `url`; exit code 1 with the
/// scheduler's error (unknown job, bad id, unreachable scheduler).
/// An `https://` scheduler is checked against `trust`.
pub async fn run(
    url: &str,
    job_id: &str,
    action: JobAction,
    auth: ClientAuth,
    trust: &TlsTrust,
) -> ExitCode {
    match try_run(url, job_id, action, auth, trust).await {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn try_run(
    url: &str,
    job_id: &str,
    action: JobAction,
    auth: ClientAuth,
    trust: &TlsTrust,
) -> ballista::Result<String> {
    let job_id = JobId::parse(job_id)?;
    let client = SchedulerClient::connect_trusting(url, auth, trust).await?;
    match action {
        JobAction::Cancel => {
            let cancelled = client.cancel(&job_id).await?;
            let state = client
                .job_status(&job_id)
                .await
                .map(|s| state_name(s.state))
                .unwrap_or("unknown");
            Ok(if cancelled {
                format!("job {job_id} cancelled\n")
            } else {
                format!("job {job_id} had already ended ({state}); nothing to cancel\n")
            })
        }
        JobAction::Status => Ok(describe_status(&client.job_status(&job_id).await?)),
    }
}

fn state_name(state: i32) -> &'static str {
    match JobState::try_from(state) {
        Ok(JobState::Queued) => "queued",
        Ok(JobState::Running) => "running",
        Ok(JobState::Succeeded) => "succeeded",
        Ok(JobState::Failed) => "failed",
        Ok(JobState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

/// The status as a few lines of text.
pub fn describe_status(status: &proto::JobStatus) -> String {
    let mut out = format!("job {}: {}\n", status.job_id, state_name(status.state));
    if let Some(p) = &status.progress {
        out += &format!(
            "  stages {}/{} · tasks {}/{} ({} running) · map tasks recomputed {}\n",
            p.stages_completed,
            p.stages_total,
            p.tasks_completed,
            p.tasks_total,
            p.tasks_running,
            p.map_tasks_recomputed
        );
    }
    if !status.queue_reason.is_empty() {
        out += &format!("  queued: {}\n", status.queue_reason);
    }
    if let Some(error) = &status.error {
        out += &format!("  error: {}\n", ballista::BallistaError::from_proto(error));
    }
    for stage in &status.stages {
        for task in &stage.tasks {
            for failure in &task.failures {
                let error = failure
                    .error
                    .as_ref()
                    .map(|e| ballista::BallistaError::from_proto(e).to_string())
                    .unwrap_or_default();
                out += &format!(
                    "  task {}/{} attempt {} failed on {}: {error}\n",
                    stage.stage_id, task.partition, failure.attempt, failure.executor_id
                );
            }
            if task.recomputed > 0 {
                out += &format!(
                    "  task {}/{} re-run {} time(s): its output was lost\n",
                    stage.stage_id, task.partition, task.recomputed
                );
            }
        }
    }
    out
}
