//! The scheduler's bookkeeping: jobs, executors, and the decisions that
//! follow each event. Everything here is synchronous and runs under one lock;
//! the network calls it decides on are returned as [`Effects`] and performed
//! by the caller after the lock is released.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod answers;
mod cluster;
mod effects;
mod overview;
mod tasks;

pub use answers::{CLEANUP_DELAY, KeptAnswer, ReportAnswer, ReportStart, ReportWaiter};
pub use effects::{Cleanup, Effects, Launch, TaskLaunch};

use tokio::sync::watch;

use super::executors::ExecutorRegistry;
use super::job_graph::JobGraph;
use crate::config::{JOB_TIMEOUT_KEY, SchedulerSettings};
use crate::error::{BallistaError, Result};
use crate::http::SchedulerMetrics;
use crate::ids::{ExecutorId, JobId};
use crate::plan::DistributedPlan;
use crate::plugin::auth::Identity;
use crate::plugin::scheduling::{
    Admission, ExistingJob, JobLabels, JobSubmission, TaskSchedulingPolicy,
};
use crate::plugin::shuffle::ShuffleLocation;
use crate::proto::{self, JobState};
use crate::util::now_ms;

/// Where a job is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobPhase {
    /// Waiting for admission.
    Queued(String),
    /// Being planned.
    Planning,
    /// Tasks are running.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Cancelled by a user or a disconnected client.
    Cancelled,
}

impl JobPhase {
    fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobPhase::Succeeded | JobPhase::Failed | JobPhase::Cancelled
        )
    }
}

struct JobEntry {
    seq: u64,
    session_id: String,
    /// What was asked, for the REST API and the web UI: the SQL (cut to
    /// [`QUERY_TEXT_LIMIT`]), or a note that a plan was sent.
    query: String,
    /// Who submitted it: status, cancel, release and results are theirs
    /// (or an admin's), and it reads and writes only what they are granted.
    owner: Arc<Identity>,
    settings: Arc<HashMap<String, String>>,
    /// `settings` as sent with each task, converted once.
    task_settings: Vec<proto::KeyValue>,
    phase: JobPhase,
    graph: Option<JobGraph>,
    status_tx: watch::Sender<proto::JobStatus>,
    submitted_ms: u64,
    started_ms: u64,
    ended_ms: u64,
    ended_at: Option<Instant>,
    error: Option<proto::ErrorInfo>,
    /// Executors that ran tasks of the job and may hold its data.
    data_on: HashSet<ExecutorId>,
    data_removed: bool,
    /// The request of a queued job, planned once it is admitted.
    queued_request: Option<proto::ExecuteQueryRequest>,
    /// Memory its tasks hold on each executor (latest figures, highest peak).
    memory: BTreeMap<ExecutorId, proto::JobMemory>,
    /// The pool and priority the policy files it under.
    labels: JobLabels,
    /// When it left the queue (its timeout counts from here).
    admitted_at: Option<Instant>,
}

/// Longest query text kept with a job.
pub const QUERY_TEXT_LIMIT: usize = 8192;

/// What a job was asked to do, as the REST API shows it.
fn query_text(request: &proto::ExecuteQueryRequest) -> String {
    let given = request.query_text.trim();
    match &request.query {
        _ if !given.is_empty() => crate::util::cut_at_char(given, QUERY_TEXT_LIMIT),
        Some(proto::execute_query_request::Query::Sql(sql)) => {
            crate::util::cut_at_char(sql.trim(), QUERY_TEXT_LIMIT)
        }
        Some(proto::execute_query_request::Query::LogicalPlan(_)) => {
            "(a logical plan sent by a DataFrame client)".to_string()
        }
        None => String::new(),
    }
}

/// A queued job the policy now admits, to be planned.
#[derive(Debug)]
pub struct AdmittedJob {
    /// The job.
    pub job_id: JobId,
    /// What was submitted.
    pub request: proto::ExecuteQueryRequest,
    /// Its session settings.
    pub settings: Arc<HashMap<String, String>>,
    /// Who submitted it, with their grants.
    pub identity: Arc<Identity>,
}

/// Jobs and executors.
pub struct SchedulerState {
    jobs: HashMap<JobId, JobEntry>,
    executors: ExecutorRegistry,
    next_seq: u64,
    settings: SchedulerSettings,
    policy: Arc<dyn TaskSchedulingPolicy>,
    no_executors_since: Option<Instant>,
    metrics: Arc<SchedulerMetrics>,
    /// Placement is left to the caller (see [`Self::deferring_placement`]).
    defer_placement: bool,
    /// Jobs whose progress changed and whose status is not yet published:
    /// a report of many statuses publishes each job once.
    unpublished: HashSet<JobId>,
    /// Status reports waiting for their answers, and cleanups waiting for
    /// an answer to carry them.
    answers: answers::ReportAnswers,
}

impl SchedulerState {
    /// Empty state.
    pub fn new(settings: SchedulerSettings, policy: Arc<dyn TaskSchedulingPolicy>) -> Self {
        Self {
            jobs: HashMap::new(),
            executors: ExecutorRegistry::default(),
            next_seq: 1,
            settings,
            policy,
            no_executors_since: Some(Instant::now()),
            metrics: Arc::new(SchedulerMetrics::new()),
            defer_placement: false,
            unpublished: HashSet::new(),
            answers: answers::ReportAnswers::default(),
        }
    }

    /// This state, leaving task placement to its owner: events that may let
    /// tasks run return [`Effects::place_tasks`] instead of placing them,
    /// and the owner calls [`place_tasks`](Self::place_tasks) once for any
    /// number of them. Under load (thousands of status reports a second)
    /// one placement round then serves every slot freed since the last,
    /// instead of one round, over every executor and pending task, per
    /// report.
    pub fn deferring_placement(mut self) -> Self {
        self.defer_placement = true;
        self
    }

    /// What `/metrics` shows.
    pub fn metrics(&self) -> &Arc<SchedulerMetrics> {
        &self.metrics
    }

    /// This state, reaching executors' control services over `transport`.
    pub fn reaching_executors_over(mut self, transport: crate::tls::PeerTransport) -> Self {
        self.executors.set_transport(transport);
        self
    }

    // ----- jobs -------------------------------------------------------------

    /// Registers a submitted job and asks the policy to admit it. Returns the
    /// request back when the job may be planned now (a queued job keeps it
    /// until [`admit_queued`](Self::admit_queued) lets it run), and a receiver
    /// of its status.
    pub fn submit(
        &mut self,
        job_id: JobId,
        session_id: String,
        owner: Arc<Identity>,
        settings: Arc<HashMap<String, String>>,
        request: proto::ExecuteQueryRequest,
    ) -> Result<(
        Option<proto::ExecuteQueryRequest>,
        watch::Receiver<proto::JobStatus>,
    )> {
        self.check_job_counts(&session_id)?;
        let query = query_text(&request);
        let seq = self.next_seq;
        self.next_seq += 1;
        let admission = self.admission_of(&job_id, &settings, seq);
        let phase = match admission {
            Admission::Run => JobPhase::Planning,
            Admission::Queue { reason } => JobPhase::Queued(reason),
            Admission::Reject { reason } => {
                return Err(BallistaError::ResourcesExhausted(format!(
                    "job refused: {reason}"
                )));
            }
        };
        let (to_plan, queued_request) = if phase == JobPhase::Planning {
            (Some(request), None)
        } else {
            (None, Some(request))
        };
        let (status_tx, status_rx) = watch::channel(proto::JobStatus::default());
        let labels = self.policy.job_labels(&settings);
        let admitted_at = (phase == JobPhase::Planning).then(Instant::now);
        self.jobs.insert(
            job_id.clone(),
            JobEntry {
                seq,
                session_id,
                query,
                owner,
                task_settings: proto::key_values(
                    settings.iter().map(|(k, v)| (k.clone(), v.clone())),
                ),
                settings,
                phase,
                graph: None,
                status_tx,
                submitted_ms: now_ms(),
                started_ms: 0,
                ended_ms: 0,
                ended_at: None,
                error: None,
                data_on: HashSet::new(),
                data_removed: false,
                queued_request,
                memory: BTreeMap::new(),
                labels,
                admitted_at,
            },
        );
        self.metrics.jobs_submitted.inc();
        self.publish(&job_id);
        Ok((to_plan, status_rx))
    }

    /// Refuses a job over `max_jobs` or `max_jobs_per_session`.
    fn check_job_counts(&self, session_id: &str) -> Result<()> {
        let limits = &self.settings.limits;
        let active = self.jobs.values().filter(|j| !j.phase.is_terminal());
        let (mut total, mut of_session) = (0usize, 0usize);
        for job in active {
            total += 1;
            if job.session_id == session_id {
                of_session += 1;
            }
        }
        if total >= limits.max_jobs {
            return Err(BallistaError::ResourcesExhausted(format!(
                "job refused: {total} jobs are queued or running, the most the scheduler \
                 admits at once (scheduler.limits.max_jobs = {})",
                limits.max_jobs
            )));
        }
        if of_session >= limits.max_jobs_per_session {
            return Err(BallistaError::ResourcesExhausted(format!(
                "job refused: this session has {of_session} jobs queued or running, the most \
                 one session may have (scheduler.limits.max_jobs_per_session = {})",
                limits.max_jobs_per_session
            )));
        }
        Ok(())
    }

    /// Asks the policy again about queued jobs, oldest first; returns the
    /// ones it now admits, to be planned.
    pub fn admit_queued(&mut self) -> Vec<AdmittedJob> {
        let mut queued: Vec<(u64, JobId)> = self
            .jobs
            .iter()
            .filter(|(_, j)| matches!(j.phase, JobPhase::Queued(_)))
            .map(|(id, j)| (j.seq, id.clone()))
            .collect();
        queued.sort();
        let mut admitted = Vec::new();
        let mut refused = Vec::new();
        for (seq, job_id) in queued {
            let Some(job) = self.jobs.get(&job_id) else {
                continue;
            };
            let settings = Arc::clone(&job.settings);
            let decision = self.admission_of(&job_id, &settings, seq);
            let job = self.jobs.get_mut(&job_id).expect("present above");
            match decision {
                Admission::Run => {
                    job.phase = JobPhase::Planning;
                    job.admitted_at = Some(Instant::now());
                    if let Some(request) = job.queued_request.take() {
                        admitted.push(AdmittedJob {
                            job_id: job_id.clone(),
                            request,
                            settings: Arc::clone(&job.settings),
                            identity: Arc::clone(&job.owner),
                        });
                    }
                }
                Admission::Queue { reason } => job.phase = JobPhase::Queued(reason),
                Admission::Reject { reason } => {
                    refused.push((job_id, reason));
                    continue;
                }
            }
            self.publish(&job_id);
        }
        for (job_id, reason) in refused {
            // Nothing ran yet, so there is nothing to clean up.
            let _ = self.finish_failed(
                &job_id,
                BallistaError::ResourcesExhausted(format!("job refused: {reason}")),
                JobPhase::Failed,
            );
        }
        admitted
    }

    /// Asks the policy about one job, showing it every other queued or
    /// running job.
    fn admission_of(
        &self,
        job_id: &JobId,
        settings: &HashMap<String, String>,
        seq: u64,
    ) -> Admission {
        let others: Vec<ExistingJob<'_>> = self
            .jobs
            .iter()
            .filter(|(id, j)| {
                *id != job_id
                    && matches!(
                        j.phase,
                        JobPhase::Queued(_) | JobPhase::Planning | JobPhase::Running
                    )
            })
            .map(|(id, j)| ExistingJob {
                job_id: id,
                settings: &j.settings,
                submission_seq: j.seq,
                queued: matches!(j.phase, JobPhase::Queued(_)),
            })
            .collect();
        let running_jobs = others.iter().filter(|j| !j.queued).count();
        self.policy.admit(&JobSubmission {
            job_id,
            settings,
            submission_seq: seq,
            running_jobs,
            others: &others,
        })
    }

    /// 1-based position of a queued job among the queued jobs of its pool.
    fn queue_position(&self, job_id: &JobId) -> u32 {
        let Some(job) = self.jobs.get(job_id) else {
            return 0;
        };
        if !matches!(job.phase, JobPhase::Queued(_)) {
            return 0;
        }
        1 + self
            .jobs
            .values()
            .filter(|j| {
                matches!(j.phase, JobPhase::Queued(_))
                    && j.labels.pool == job.labels.pool
                    && j.seq < job.seq
            })
            .count() as u32
    }

    /// The time limit of a job: the scheduler's `job_timeout_secs` or the
    /// session's shorter one (`None`: no limit).
    fn job_timeout(&self, job: &JobEntry) -> Option<Duration> {
        let session = job
            .settings
            .get(JOB_TIMEOUT_KEY)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s > 0);
        let scheduler = Some(self.settings.job_timeout_secs).filter(|s| *s > 0);
        match (session, scheduler) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(Duration::from_secs)
    }

    /// Fails the jobs that ran past their time limit; their tasks are
    /// stopped and their data deleted.
    pub(super) fn expire_jobs(&mut self) -> Effects {
        let expired: Vec<(JobId, Duration)> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.phase.is_terminal())
            .filter_map(|(id, j)| {
                let limit = self.job_timeout(j)?;
                let ran = j.admitted_at?.elapsed();
                (ran > limit).then(|| (id.clone(), limit))
            })
            .collect();
        let mut effects = Effects::default();
        for (job_id, limit) in expired {
            effects.merge(self.finish_failed(
                &job_id,
                BallistaError::Timeout(format!(
                    "job {job_id} ran longer than its limit of {}s (scheduler.job_timeout_secs, or the session's {JOB_TIMEOUT_KEY}); its tasks were stopped",
                    limit.as_secs()
                )),
                JobPhase::Failed,
            ));
        }
        effects
    }

    /// Whether the job is still waiting for its plan (not cancelled meanwhile).
    pub fn is_planning(&self, job_id: &JobId) -> bool {
        self.jobs
            .get(job_id)
            .is_some_and(|j| j.phase == JobPhase::Planning)
    }

    /// Installs a job's plan, or fails the job with the planning error.
    pub fn planned(&mut self, job_id: &JobId, plan: Result<DistributedPlan>) -> Effects {
        let max_attempts = self.settings.task_max_attempts;
        let Some(job) = self.jobs.get_mut(job_id) else {
            return Effects::default();
        };
        if job.phase != JobPhase::Planning {
            return Effects::default();
        }
        let graph = plan.and_then(|plan| {
            tracing::debug!("job {job_id} stages:\n{}", plan.display());
            JobGraph::try_new(job_id.clone(), plan, max_attempts)
        });
        match graph {
            Ok(graph) => {
                let complete = graph.is_complete();
                job.graph = Some(graph);
                job.phase = JobPhase::Running;
                job.started_ms = now_ms();
                if complete {
                    self.succeed(job_id);
                    // Later jobs may have waited for this one's plan.
                    return self.schedule();
                }
                self.publish(job_id);
                self.schedule()
            }
            Err(e) => self.finish_failed(job_id, e, JobPhase::Failed),
        }
    }

    /// Current status of a job, with where each of its tasks ran.
    pub fn status(&self, job_id: &JobId) -> Option<proto::JobStatus> {
        self.jobs.get(job_id).map(|j| {
            let mut status = j.status_tx.borrow().clone();
            if let Some(graph) = &j.graph {
                status.stages = graph.stage_infos();
            }
            status.memory = j.memory.values().cloned().collect();
            status.queue_position = self.queue_position(job_id);
            status
        })
    }

    /// A fresh receiver of a job's status.
    pub fn subscribe(&self, job_id: &JobId) -> Option<watch::Receiver<proto::JobStatus>> {
        self.jobs.get(job_id).map(|j| j.status_tx.subscribe())
    }

    /// Publishes the status of every job whose progress changed since.
    fn publish_changed(&mut self) {
        for job_id in std::mem::take(&mut self.unpublished) {
            self.publish(&job_id);
        }
    }

    fn publish(&self, job_id: &JobId) {
        let Some(job) = self.jobs.get(job_id) else {
            return;
        };
        let mut status = proto::JobStatus {
            job_id: job_id.to_string(),
            state: match job.phase {
                JobPhase::Queued(_) => JobState::Queued,
                JobPhase::Planning | JobPhase::Running => JobState::Running,
                JobPhase::Succeeded => JobState::Succeeded,
                JobPhase::Failed => JobState::Failed,
                JobPhase::Cancelled => JobState::Cancelled,
            } as i32,
            progress: job.graph.as_ref().map(JobGraph::progress),
            error: job.error.clone(),
            result: None,
            submitted_at_ms: job.submitted_ms,
            started_at_ms: job.started_ms,
            ended_at_ms: job.ended_ms,
            queue_reason: match &job.phase {
                JobPhase::Queued(reason) => reason.clone(),
                _ => String::new(),
            },
            // Task placement is sent once, with the final status.
            stages: match (&job.graph, job.phase.is_terminal()) {
                (Some(graph), true) => graph.stage_infos(),
                _ => Vec::new(),
            },
            memory: job.memory.values().cloned().collect(),
            pool: job.labels.pool.clone(),
            priority: job.labels.priority,
            owner: job.owner.user.clone(),
            queue_position: self.queue_position(job_id),
        };
        if job.phase == JobPhase::Succeeded
            && let Some(graph) = &job.graph
        {
            status.result = Some(proto::JobResult {
                schema: graph
                    .result_schema()
                    .map(|s| proto::encode_schema(&s))
                    .unwrap_or_default(),
                partitions: ShuffleLocation::partitions_to_proto(&graph.result_partitions()),
            });
        }
        job.status_tx.send_replace(status);
    }

    fn succeed(&mut self, job_id: &JobId) {
        if let Some(job) = self.jobs.get_mut(job_id) {
            job.phase = JobPhase::Succeeded;
            job.ended_ms = now_ms();
            job.ended_at = Some(Instant::now());
            self.metrics.jobs_succeeded.inc();
            self.metrics
                .job_duration
                .with_label_values(&["succeeded"])
                .observe(job.ended_ms.saturating_sub(job.submitted_ms) as f64 / 1e3);
            tracing::info!(
                "job {job_id} succeeded in {} ms",
                job.ended_ms.saturating_sub(job.submitted_ms)
            );
        }
        self.publish(job_id);
    }

    /// Ends a job with an error (or as cancelled): stops its running tasks
    /// and deletes its data on every executor that may hold some.
    fn finish_failed(&mut self, job_id: &JobId, error: BallistaError, phase: JobPhase) -> Effects {
        let mut effects = Effects::default();
        let Some(job) = self.jobs.get_mut(job_id) else {
            return effects;
        };
        if job.phase.is_terminal() {
            return effects;
        }
        // Encoded before typing: a DataFusion error keeps its variant and
        // text on the way to the client.
        job.error = Some(error.to_proto());
        let error = error.typed();
        match phase {
            JobPhase::Cancelled => tracing::info!(
                "job {job_id} cancelled: {}",
                crate::util::loggable_message(&error.to_string())
            ),
            _ => tracing::warn!(
                "job {job_id} failed: {}",
                crate::util::loggable_message(&error.to_string())
            ),
        }
        let running = job
            .graph
            .as_ref()
            .map(JobGraph::running_tasks)
            .unwrap_or_default();
        if let Some(graph) = job.graph.as_mut() {
            graph.fail(error);
        }
        let (counter, state) = if phase == JobPhase::Cancelled {
            (&self.metrics.jobs_cancelled, "cancelled")
        } else {
            (&self.metrics.jobs_failed, "failed")
        };
        job.phase = phase;
        job.ended_ms = now_ms();
        job.ended_at = Some(Instant::now());
        job.data_removed = true;
        counter.inc();
        self.metrics
            .job_duration
            .with_label_values(&[state])
            .observe(job.ended_ms.saturating_sub(job.submitted_ms) as f64 / 1e3);
        let mut cancel_on: HashSet<ExecutorId> = HashSet::new();
        for (stage, partition, attempt, executor) in running {
            if let Some(entry) = self.executors.get_mut(&executor) {
                entry
                    .running
                    .remove(&(job_id.clone(), stage, partition, attempt));
            }
            cancel_on.insert(executor);
        }
        for executor in job
            .data_on
            .iter()
            .chain(cancel_on.iter())
            .collect::<HashSet<_>>()
        {
            if let Some(entry) = self.executors.get(executor) {
                effects.cleanups.push(Cleanup {
                    executor_id: executor.clone(),
                    client: entry.client.clone(),
                    job_id: job_id.clone(),
                    cancel: cancel_on.contains(executor),
                    remove_data: true,
                    stages: Vec::new(),
                });
            }
        }
        if effects.cleanups.iter().all(|c| c.job_id != *job_id) {
            effects.cleanups.extend(self.cleanup_elsewhere(job_id));
        }
        self.publish(job_id);
        // Freed slots can go to other jobs.
        effects.merge(self.schedule());
        effects
    }

    /// Every executor that wrote data of the job is gone. Shuffle data in
    /// shared storage outlives its writers, so another executor deletes it.
    fn cleanup_elsewhere(&self, job_id: &JobId) -> Option<Cleanup> {
        let wrote_data = self
            .jobs
            .get(job_id)
            .is_some_and(|job| !job.data_on.is_empty());
        if !wrote_data {
            return None;
        }
        let entry = self.executors.all().next()?;
        Some(Cleanup {
            executor_id: entry.address.id.clone(),
            client: entry.client.clone(),
            job_id: job_id.clone(),
            cancel: false,
            remove_data: true,
            stages: Vec::new(),
        })
    }

    /// Cancels a job. Returns false when the job is unknown or already over.
    pub fn cancel(&mut self, job_id: &JobId, reason: &str) -> (bool, Effects) {
        match self.jobs.get(job_id) {
            Some(job) if !job.phase.is_terminal() => {
                let effects = self.finish_failed(
                    job_id,
                    BallistaError::Cancelled(format!("job {job_id} {reason}")),
                    JobPhase::Cancelled,
                );
                (true, effects)
            }
            _ => (false, Effects::default()),
        }
    }

    /// The client has read the results: delete the job's data.
    pub fn release(&mut self, job_id: &JobId) -> Effects {
        let mut effects = Effects::default();
        if let Some(job) = self.jobs.get_mut(job_id)
            && job.phase == JobPhase::Succeeded
            && !job.data_removed
        {
            job.data_removed = true;
            for executor in &job.data_on {
                if let Some(entry) = self.executors.get(executor) {
                    effects.cleanups.push(Cleanup {
                        executor_id: executor.clone(),
                        client: entry.client.clone(),
                        job_id: job_id.clone(),
                        cancel: false,
                        remove_data: true,
                        stages: Vec::new(),
                    });
                }
            }
            if effects.cleanups.is_empty() {
                effects.cleanups.extend(self.cleanup_elsewhere(job_id));
            }
        }
        effects
    }

    /// Whether a job exists.
    pub fn has_job(&self, job_id: &JobId) -> bool {
        self.jobs.contains_key(job_id)
    }

    /// The user who submitted a job.
    pub fn owner_of(&self, job_id: &JobId) -> Option<String> {
        self.jobs.get(job_id).map(|job| job.owner.user.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::scheduling::{ExecutorSlots, SchedulableJob, TaskAssignment};
    use parking_lot::Mutex;

    /// Queues every job on submission, then refuses them when asked again.
    #[derive(Debug, Default)]
    struct QueueThenRefuse(Mutex<bool>);

    impl TaskSchedulingPolicy for QueueThenRefuse {
        fn name(&self) -> &str {
            "queue-then-refuse"
        }
        fn admit(&self, _job: &JobSubmission<'_>) -> Admission {
            let mut asked = self.0.lock();
            let first = !*asked;
            *asked = true;
            if first {
                Admission::Queue {
                    reason: "pool full".into(),
                }
            } else {
                Admission::Reject {
                    reason: "queue closed".into(),
                }
            }
        }
        fn assign(
            &self,
            _jobs: &[SchedulableJob<'_>],
            _executors: &[ExecutorSlots],
        ) -> Vec<TaskAssignment> {
            Vec::new()
        }
    }

    #[test]
    fn a_queued_job_refused_later_fails_with_the_reason() {
        let mut state = SchedulerState::new(
            SchedulerSettings::default(),
            Arc::new(QueueThenRefuse::default()),
        );
        let job_id = JobId::parse("queued1").unwrap();
        let (to_plan, status) = state
            .submit(
                job_id.clone(),
                String::new(),
                Arc::new(crate::plugin::auth::Identity::cluster_admin()),
                Arc::default(),
                proto::ExecuteQueryRequest::default(),
            )
            .unwrap();
        assert!(to_plan.is_none());
        assert_eq!(status.borrow().state, JobState::Queued as i32);
        assert_eq!(status.borrow().queue_reason, "pool full");

        assert!(state.admit_queued().is_empty());
        let status = status.borrow().clone();
        assert_eq!(status.state, JobState::Failed as i32);
        let error = status.error.unwrap();
        assert_eq!(error.kind, proto::ErrorKind::ResourcesExhausted as i32);
        assert!(error.message.contains("queue closed"), "{}", error.message);
    }
}
