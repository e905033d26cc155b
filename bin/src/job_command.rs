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
    /// Print its state, progress, its stages (tasks, when they ran) and,
    /// per task, failed attempts.
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

/// One line per stage: the stages it reads, its tasks by state, and when
/// its finished tasks ran, in ms from the job's first task start (a stage
/// that started before its input ended shows it: `ballista.early_consumers`).
fn describe_stages(stages: &[proto::StageInfo]) -> String {
    let times = |stage: &proto::StageInfo| -> Vec<(u64, u64)> {
        stage
            .tasks
            .iter()
            .filter_map(|t| t.metrics.as_ref())
            .filter(|m| m.started_at_ms > 0)
            .map(|m| (m.started_at_ms, m.ended_at_ms.max(m.started_at_ms)))
            .collect()
    };
    let Some(origin) = stages.iter().flat_map(times).map(|(start, _)| start).min() else {
        return stages
            .iter()
            .map(|stage| stage_counts(stage) + "\n")
            .collect();
    };
    let mut out = String::new();
    for stage in stages {
        out += &stage_counts(stage);
        let ran = times(stage);
        if let (Some(start), Some(end)) = (
            ran.iter().map(|(start, _)| *start).min(),
            ran.iter().map(|(_, end)| *end).max(),
        ) {
            out += &format!(
                " · ran +{} to +{} ms",
                start.saturating_sub(origin),
                end.saturating_sub(origin)
            );
        }
        out += "\n";
    }
    out
}

/// `  stage 2 (reads 1): 3/4 tasks done, 1 running` (no newline).
fn stage_counts(stage: &proto::StageInfo) -> String {
    let reads = match stage.inputs.as_slice() {
        [] => String::new(),
        inputs => format!(
            " (reads {})",
            inputs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let done = stage.tasks.iter().filter(|t| t.state == "done").count();
    let running = stage.tasks.iter().filter(|t| t.state == "running").count();
    let mut line = format!(
        "  stage {}{reads}: {done}/{} tasks done",
        stage.stage_id,
        stage.tasks.len()
    );
    if running > 0 {
        line += &format!(", {running} running");
    }
    line
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
    out += &describe_stages(&status.stages);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn task(state: &str, times: Option<(u64, u64)>) -> proto::TaskInfo {
        proto::TaskInfo {
            state: state.to_string(),
            metrics: times.map(|(started_at_ms, ended_at_ms)| proto::TaskMetrics {
                started_at_ms,
                ended_at_ms,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn each_stage_shows_its_inputs_tasks_and_when_they_ran() {
        let status = proto::JobStatus {
            job_id: "j1".into(),
            state: JobState::Running as i32,
            stages: vec![
                proto::StageInfo {
                    stage_id: 1,
                    tasks: vec![
                        task("done", Some((1_000, 1_200))),
                        task("done", Some((1_000, 2_700))),
                    ],
                    ..Default::default()
                },
                proto::StageInfo {
                    stage_id: 2,
                    inputs: vec![1],
                    tasks: vec![task("done", Some((1_210, 2_750))), task("running", None)],
                    ..Default::default()
                },
                proto::StageInfo {
                    stage_id: 3,
                    inputs: vec![1, 2],
                    tasks: vec![task("waiting", None)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let text = describe_status(&status);
        assert!(
            text.contains("  stage 1: 2/2 tasks done · ran +0 to +1700 ms\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  stage 2 (reads 1): 1/2 tasks done, 1 running · ran +210 to +1750 ms\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  stage 3 (reads 1, 2): 0/1 tasks done\n"),
            "{text}"
        );
    }
}
