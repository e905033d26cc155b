//! What the REST API, the web UI and `/metrics` show of the scheduler's
//! state: read-only views built under the lock, then serialized outside it.

use std::collections::BTreeMap;

use super::{JobEntry, JobPhase, SchedulerState};
use crate::config::TENANT_KEY;
use crate::http::model::{
    AttemptFailureView, ClusterSummary, ExecutorView, JobDetail, JobMemoryView, JobSummary,
    MemoryView, OperatorView, ProgressView, StageView, TaskCounts, TaskDurations, TaskView,
};
use crate::http::{as_gauge, error_kind_label};
use crate::ids::{JobId, StageId};
use crate::plugin::auth::Identity;
use crate::scheduler::job_graph::{AttemptFailure, Stage, TaskState};
use crate::util::now_ms;

fn phase_name(phase: &JobPhase) -> &'static str {
    match phase {
        JobPhase::Queued(_) => "queued",
        JobPhase::Planning => "planning",
        JobPhase::Running => "running",
        JobPhase::Succeeded => "succeeded",
        JobPhase::Failed => "failed",
        JobPhase::Cancelled => "cancelled",
    }
}

fn nonzero(ms: u64) -> Option<u64> {
    (ms > 0).then_some(ms)
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

fn failure_view(stage: StageId, partition: usize, failure: &AttemptFailure) -> AttemptFailureView {
    AttemptFailureView {
        stage_id: stage.0,
        partition,
        attempt: failure.attempt,
        executor_id: failure.executor.to_string(),
        kind: error_kind_label(&failure.error).to_string(),
        message: failure.error.message.clone(),
        at_ms: failure.at_ms,
    }
}

fn job_summary(job_id: &JobId, job: &JobEntry) -> JobSummary {
    let end = if job.ended_ms > 0 {
        job.ended_ms
    } else {
        now_ms()
    };
    JobSummary {
        job_id: job_id.to_string(),
        state: phase_name(&job.phase).to_string(),
        owner: job.owner.user.clone(),
        tenant: job.settings.get(TENANT_KEY).and_then(|t| non_empty(t)),
        pool: non_empty(&job.labels.pool),
        priority: job.labels.priority,
        query: job.query.clone(),
        submitted_ms: job.submitted_ms,
        started_ms: nonzero(job.started_ms),
        ended_ms: nonzero(job.ended_ms),
        duration_ms: end.saturating_sub(job.submitted_ms),
        progress: job.graph.as_ref().map(|g| {
            let p = g.progress();
            ProgressView {
                stages_total: p.stages_total,
                stages_completed: p.stages_completed,
                tasks_total: p.tasks_total,
                tasks_completed: p.tasks_completed,
                tasks_running: p.tasks_running,
            }
        }),
        error: job.error.as_ref().map(|e| e.message.clone()),
        error_kind: job.error.as_ref().map(|e| error_kind_label(e).to_string()),
        queue_reason: match &job.phase {
            JobPhase::Queued(reason) => Some(reason.clone()),
            _ => None,
        },
    }
}

/// A stage's view; `job_ended` is when its job ended, if it has (tasks
/// still marked running then were stopped with it).
fn stage_view(stage: &Stage, is_final: bool, job_ended: Option<u64>) -> StageView {
    let mut counts = TaskCounts {
        total: stage.tasks.len(),
        ..TaskCounts::default()
    };
    let (mut rows, mut bytes, mut spilled, mut spills, mut remote, mut local) = (0, 0, 0, 0, 0, 0);
    let mut durations: Vec<(u64, usize, String)> = Vec::new();
    let (mut first_start, mut last_end) = (u64::MAX, 0u64);
    for (partition, task) in stage.tasks.iter().enumerate() {
        match task {
            TaskState::Waiting { .. } => counts.waiting += 1,
            TaskState::Pending { .. } => counts.pending += 1,
            TaskState::Running { since_ms, .. } => {
                first_start = first_start.min(*since_ms);
                match job_ended {
                    Some(_) => counts.stopped += 1,
                    None => counts.running += 1,
                }
            }
            TaskState::Done {
                metrics, executor, ..
            } => {
                counts.done += 1;
                rows = u64::saturating_add(rows, metrics.output_rows);
                bytes = u64::saturating_add(bytes, metrics.output_bytes);
                spilled = u64::saturating_add(spilled, metrics.spilled_bytes);
                spills = u64::saturating_add(spills, metrics.spill_count);
                remote = u64::saturating_add(remote, metrics.remote_fetches);
                local = u64::saturating_add(local, metrics.local_reads);
                if metrics.started_at_ms > 0 {
                    first_start = first_start.min(metrics.started_at_ms);
                    let took = metrics.ended_at_ms.saturating_sub(metrics.started_at_ms);
                    durations.push((took, partition, executor.to_string()));
                }
                last_end = last_end.max(metrics.ended_at_ms);
            }
        }
    }
    durations.sort();
    let task_durations = match (durations.first(), durations.last()) {
        (Some(fastest), Some(slowest)) => TaskDurations {
            min_ms: fastest.0,
            median_ms: durations[durations.len() / 2].0,
            max_ms: slowest.0,
            slowest_partition: Some(slowest.1),
            slowest_executor: Some(slowest.2.clone()),
        },
        _ => TaskDurations::default(),
    };
    let started_ms = (first_start != u64::MAX).then_some(first_start);
    let all_done = counts.done == counts.total;
    let operators = stage.operator_metrics();
    StageView {
        stage_id: stage.id.0,
        inputs: stage.inputs.iter().map(|s| s.0).collect(),
        consumers: stage.consumers.iter().map(|s| s.0).collect(),
        is_final,
        plan: datafusion::physical_plan::displayable(stage.plan.as_ref())
            .indent(false)
            .to_string(),
        tasks: counts,
        output_rows: rows,
        output_bytes: bytes,
        spilled_bytes: spilled,
        spill_count: spills,
        remote_fetches: remote,
        local_reads: local,
        started_ms,
        ended_ms: (all_done && last_end > 0).then_some(last_end),
        duration_ms: started_ms.map_or(0, |s| last_end.saturating_sub(s)),
        task_durations,
        failed_attempts: stage.attempt_failures.iter().map(Vec::len).sum(),
        recomputed: stage
            .recomputed
            .iter()
            .fold(0u32, |sum, n| sum.saturating_add(*n)),
        metrics_text: crate::plan::render_operator_metrics(&operators),
        operators: operators
            .into_iter()
            .map(|o| OperatorView {
                name: o.name,
                depth: o.depth,
                metrics: o.metrics.into_iter().map(|m| (m.name, m.value)).collect(),
            })
            .collect(),
    }
}

impl SchedulerState {
    /// The jobs `viewer` may see (an admin: all; anyone else: their own),
    /// newest first.
    /// In `state` (`running`, …) when given, at most `limit` of them.
    pub fn job_summaries(
        &self,
        viewer: &Identity,
        state: Option<&str>,
        limit: usize,
    ) -> Vec<JobSummary> {
        let mut jobs: Vec<(u64, &JobId, &JobEntry)> = self
            .jobs
            .iter()
            .filter(|(_, job)| viewer.admin || job.owner.user == viewer.user)
            .filter(|(_, job)| state.is_none_or(|s| phase_name(&job.phase) == s))
            .map(|(id, job)| (job.seq, id, job))
            .collect();
        jobs.sort_by_key(|job| std::cmp::Reverse(job.0));
        jobs.into_iter()
            .take(limit)
            .map(|(_, id, job)| job_summary(id, job))
            .collect()
    }

    /// One job's summary.
    pub fn job_summaries_of(&self, job_id: &JobId) -> Option<JobSummary> {
        self.jobs.get(job_id).map(|job| job_summary(job_id, job))
    }

    /// One job with its stages, failed attempts and memory.
    pub fn job_detail(&self, job_id: &JobId) -> Option<JobDetail> {
        let job = self.jobs.get(job_id)?;
        let mut stages = Vec::new();
        let mut failed_attempts = Vec::new();
        if let Some(graph) = &job.graph {
            for stage in graph.stages() {
                let ended = nonzero(job.ended_ms);
                stages.push(stage_view(stage, stage.id == graph.final_stage_id(), ended));
                for (partition, failures) in stage.attempt_failures.iter().enumerate() {
                    failed_attempts.extend(
                        failures
                            .iter()
                            .map(|f| failure_view(stage.id, partition, f)),
                    );
                }
            }
        }
        failed_attempts.sort_by_key(|f| f.at_ms);
        Some(JobDetail {
            summary: job_summary(job_id, job),
            stages,
            failed_attempts,
            memory: job
                .memory
                .values()
                .map(|m| JobMemoryView {
                    executor_id: m.executor_id.clone(),
                    reserved_bytes: m.reserved_bytes,
                    peak_bytes: m.peak_bytes,
                    quota_bytes: m.quota_bytes,
                })
                .collect(),
        })
    }

    /// The tasks of one stage of a job (`None`: no such job or stage).
    pub fn stage_tasks(&self, job_id: &JobId, stage_id: StageId) -> Option<Vec<TaskView>> {
        let job = self.jobs.get(job_id)?;
        let stage = job.graph.as_ref()?.stage(stage_id)?;
        // A task still marked running when its job ended was stopped then.
        let job_ended = nonzero(job.ended_ms);
        let now = job_ended.unwrap_or_else(now_ms);
        Some(
            stage
                .tasks
                .iter()
                .enumerate()
                .map(|(partition, task)| {
                    let mut view = TaskView {
                        partition,
                        attempt: 0,
                        state: String::new(),
                        executor_id: None,
                        started_ms: None,
                        ended_ms: None,
                        duration_ms: None,
                        output_rows: 0,
                        output_bytes: 0,
                        spilled_bytes: 0,
                        remote_fetches: 0,
                        local_reads: 0,
                        recomputed: stage.recomputed[partition],
                        failures: stage.attempt_failures[partition]
                            .iter()
                            .map(|f| failure_view(stage_id, partition, f))
                            .collect(),
                    };
                    match task {
                        TaskState::Waiting { attempt } => {
                            view.state = "waiting".into();
                            view.attempt = *attempt;
                        }
                        TaskState::Pending { attempt } => {
                            view.state = "pending".into();
                            view.attempt = *attempt;
                        }
                        TaskState::Running {
                            attempt,
                            executor,
                            since_ms,
                        } => {
                            view.state = match job_ended {
                                Some(_) => "stopped".into(),
                                None => "running".into(),
                            };
                            view.attempt = *attempt;
                            view.executor_id = Some(executor.to_string());
                            view.started_ms = Some(*since_ms);
                            view.ended_ms = job_ended;
                            view.duration_ms = Some(now.saturating_sub(*since_ms));
                        }
                        TaskState::Done {
                            attempt,
                            executor,
                            metrics,
                            ..
                        } => {
                            view.state = "done".into();
                            view.attempt = *attempt;
                            view.executor_id = Some(executor.to_string());
                            view.started_ms = nonzero(metrics.started_at_ms);
                            view.ended_ms = nonzero(metrics.ended_at_ms);
                            view.duration_ms =
                                Some(metrics.ended_at_ms.saturating_sub(metrics.started_at_ms));
                            view.output_rows = metrics.output_rows;
                            view.output_bytes = metrics.output_bytes;
                            view.spilled_bytes = metrics.spilled_bytes;
                            view.remote_fetches = metrics.remote_fetches;
                            view.local_reads = metrics.local_reads;
                        }
                    }
                    view
                })
                .collect(),
        )
    }

    /// The registered executors, by id.
    pub fn executor_views(&self) -> Vec<ExecutorView> {
        self.executors_info()
            .into_iter()
            .map(|e| {
                let metadata = e.metadata.unwrap_or_default();
                let memory = e.memory.unwrap_or_default();
                ExecutorView {
                    executor_id: metadata.id,
                    host: metadata.host,
                    port: metadata.port,
                    version: metadata.version,
                    state: e.status,
                    slots: metadata.slots,
                    free_slots: e.free_slots,
                    running_tasks: e.running_tasks,
                    last_heartbeat_ms: e.last_heartbeat_ms,
                    memory: MemoryView {
                        budget_bytes: memory.budget_bytes,
                        reserved_bytes: memory.reserved_bytes,
                        peak_bytes: memory.peak_bytes,
                        available_bytes: memory.available_bytes,
                    },
                }
            })
            .collect()
    }

    /// The cluster at a glance.
    pub fn cluster_summary(&self) -> ClusterSummary {
        let (mut queued, mut running, mut finished) = (0, 0, 0);
        for job in self.jobs.values() {
            match job.phase {
                JobPhase::Queued(_) => queued += 1,
                JobPhase::Planning | JobPhase::Running => running += 1,
                _ => finished += 1,
            }
        }
        let executors: Vec<_> = self.executors.all().collect();
        ClusterSummary {
            version: env!("CARGO_PKG_VERSION").to_string(),
            policy: self.policy.name().to_string(),
            executors: executors.len(),
            slots_total: executors.iter().map(|e| e.slots).sum(),
            slots_free: executors.iter().map(|e| e.free_slots()).sum(),
            tasks_running: executors.iter().map(|e| e.running.len()).sum(),
            jobs_queued: queued,
            jobs_running: running,
            jobs_finished: finished,
            memory_budget_bytes: executors.iter().map(|e| e.memory.budget_bytes).sum(),
            memory_reserved_bytes: executors.iter().map(|e| e.memory.reserved_bytes).sum(),
            finished_job_retention_secs: self.settings.limits.finished_job_retention_secs,
            max_finished_jobs: self.settings.limits.max_finished_jobs,
        }
    }

    /// Sets the gauges of `/metrics` that mirror this state.
    pub fn refresh_gauges(&self) {
        let m = &self.metrics;
        m.jobs_queued.reset();
        m.jobs_running.reset();
        // Always present, so that an idle cluster reads 0, not nothing.
        m.jobs_queued.with_label_values(&["default"]).set(0);
        m.jobs_running.with_label_values(&["default"]).set(0);
        let mut tenants: BTreeMap<&str, u64> = BTreeMap::new();
        for job in self.jobs.values() {
            let pool = if job.labels.pool.is_empty() {
                "default"
            } else {
                job.labels.pool.as_str()
            };
            match job.phase {
                JobPhase::Queued(_) => m.jobs_queued.with_label_values(&[pool]).inc(),
                JobPhase::Planning | JobPhase::Running => {
                    m.jobs_running.with_label_values(&[pool]).inc();
                    for figures in job.memory.values() {
                        if !figures.tenant.is_empty() {
                            let held = tenants.entry(figures.tenant.as_str()).or_default();
                            *held = held.saturating_add(figures.reserved_bytes);
                        }
                    }
                }
                _ => {}
            }
        }
        m.tenant_memory_reserved.reset();
        for (tenant, bytes) in tenants {
            m.tenant_memory_reserved
                .with_label_values(&[tenant])
                .set(as_gauge(bytes));
        }
        m.executor_memory_reserved.reset();
        m.executor_memory_budget.reset();
        m.executors.set(self.executors.len() as i64);
        for e in self.executors.all() {
            let id = e.address.id.to_string();
            m.executor_memory_reserved
                .with_label_values(&[id.as_str()])
                .set(as_gauge(e.memory.reserved_bytes));
            m.executor_memory_budget
                .with_label_values(&[id.as_str()])
                .set(as_gauge(e.memory.budget_bytes));
        }
    }
}
