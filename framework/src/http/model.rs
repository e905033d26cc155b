//! The JSON documents of the REST API (`/api/v1/…`). Field names are the
//! API's contract: times are milliseconds since the Unix epoch (`null` when
//! not reached yet), durations milliseconds, sizes bytes.

use std::collections::BTreeMap;

use serde::Serialize;

/// Counts of a job's stages and tasks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProgressView {
    /// Stages of the job.
    pub stages_total: u32,
    /// Stages whose every task is done.
    pub stages_completed: u32,
    /// Tasks over all stages.
    pub tasks_total: u32,
    /// Tasks done.
    pub tasks_completed: u32,
    /// Tasks running now.
    pub tasks_running: u32,
}

/// One job in `GET /api/v1/jobs`.
#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    /// The job's id.
    pub job_id: String,
    /// `queued`, `planning`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// Who submitted it.
    pub owner: String,
    /// The tenant its memory counts against (`null`: none).
    pub tenant: Option<String>,
    /// The scheduling pool it runs in (`null`: none).
    pub pool: Option<String>,
    /// Its priority as the scheduling policy sees it.
    pub priority: i64,
    /// The SQL it runs (cut at 8 KiB), or a note that a plan was sent.
    pub query: String,
    /// When it was submitted.
    pub submitted_ms: u64,
    /// When its tasks could start (planned).
    pub started_ms: Option<u64>,
    /// When it ended.
    pub ended_ms: Option<u64>,
    /// From submission to its end, or to now while it runs.
    pub duration_ms: u64,
    /// Stage and task counts (`null` before it is planned).
    pub progress: Option<ProgressView>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// The kind of that error (`cancelled`, `resources_exhausted`, …).
    pub error_kind: Option<String>,
    /// Why it waits, while queued.
    pub queue_reason: Option<String>,
}

/// Task durations of one stage, for spotting skew.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskDurations {
    /// The fastest finished task.
    pub min_ms: u64,
    /// The median finished task.
    pub median_ms: u64,
    /// The slowest finished task.
    pub max_ms: u64,
    /// The partition of the slowest task.
    pub slowest_partition: Option<usize>,
    /// Where the slowest task ran.
    pub slowest_executor: Option<String>,
}

/// Tasks of a stage by state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskCounts {
    /// Tasks of the stage (its partitions).
    pub total: usize,
    /// Waiting for the stages they read.
    pub waiting: usize,
    /// Ready, waiting for a slot.
    pub pending: usize,
    /// Running now.
    pub running: usize,
    /// Finished (their output committed).
    pub done: usize,
    /// Running when their job failed or was cancelled, and stopped then.
    pub stopped: usize,
}

/// One operator of a stage with its metrics summed over the stage's
/// finished tasks.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorView {
    /// Its one-line description.
    pub name: String,
    /// Depth in the stage's plan (0: the root).
    pub depth: u32,
    /// Metric name to value (times in nanoseconds, sizes in bytes).
    pub metrics: BTreeMap<String, u64>,
}

/// One stage of a job.
#[derive(Debug, Clone, Serialize)]
pub struct StageView {
    /// The stage's id.
    pub stage_id: u32,
    /// Stages it reads (edges of the DAG).
    pub inputs: Vec<u32>,
    /// Stages reading it.
    pub consumers: Vec<u32>,
    /// Whether its output is the job's result.
    pub is_final: bool,
    /// Its physical plan, indented.
    pub plan: String,
    /// Its tasks by state.
    pub tasks: TaskCounts,
    /// Rows its finished tasks wrote.
    pub output_rows: u64,
    /// Bytes its finished tasks wrote.
    pub output_bytes: u64,
    /// Bytes its finished tasks spilled.
    pub spilled_bytes: u64,
    /// Spill files its finished tasks wrote.
    pub spill_count: u64,
    /// Shuffle locations its tasks read from other executors.
    pub remote_fetches: u64,
    /// Shuffle locations its tasks read on their own executor.
    pub local_reads: u64,
    /// When its first finished task started.
    pub started_ms: Option<u64>,
    /// When its last task ended, once all are done.
    pub ended_ms: Option<u64>,
    /// From the first start to the last end of its finished tasks.
    pub duration_ms: u64,
    /// Durations of its finished tasks.
    pub task_durations: TaskDurations,
    /// Failed attempts of its tasks.
    pub failed_attempts: usize,
    /// Tasks run again because their committed output was lost.
    pub recomputed: u32,
    /// Its operators with their metrics, as EXPLAIN ANALYZE prints them.
    pub metrics_text: String,
    /// The same figures, structured.
    pub operators: Vec<OperatorView>,
}

/// A failed attempt of a task.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptFailureView {
    /// The stage.
    pub stage_id: u32,
    /// The task's partition.
    pub partition: usize,
    /// The attempt that failed.
    pub attempt: u32,
    /// Where it ran.
    pub executor_id: String,
    /// The error's kind.
    pub kind: String,
    /// The error.
    pub message: String,
    /// When the failure was recorded.
    pub at_ms: u64,
}

/// Memory of a job on one executor.
#[derive(Debug, Clone, Serialize)]
pub struct JobMemoryView {
    /// The executor.
    pub executor_id: String,
    /// Bytes its tasks hold there now.
    pub reserved_bytes: u64,
    /// The most they held at once.
    pub peak_bytes: u64,
    /// The most it may hold there (0: no quota of its own).
    pub quota_bytes: u64,
}

/// `GET /api/v1/jobs/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct JobDetail {
    /// What the jobs list shows.
    #[serde(flatten)]
    pub summary: JobSummary,
    /// Its stages in id order (the DAG: `inputs` and `consumers`).
    pub stages: Vec<StageView>,
    /// Every failed task attempt, oldest first.
    pub failed_attempts: Vec<AttemptFailureView>,
    /// Its memory on each executor.
    pub memory: Vec<JobMemoryView>,
}

/// One task in `GET /api/v1/jobs/{id}/stages/{stage}/tasks`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// Its partition.
    pub partition: usize,
    /// Its current (or succeeded) attempt.
    pub attempt: u32,
    /// `waiting`, `pending`, `running`, `done`, or `stopped` (running when
    /// its job failed or was cancelled).
    pub state: String,
    /// Where it runs or ran.
    pub executor_id: Option<String>,
    /// When it started (running: when it was launched).
    pub started_ms: Option<u64>,
    /// When it ended.
    pub ended_ms: Option<u64>,
    /// Its run time (running: so far).
    pub duration_ms: Option<u64>,
    /// Rows it wrote.
    pub output_rows: u64,
    /// Bytes it wrote.
    pub output_bytes: u64,
    /// Bytes it spilled.
    pub spilled_bytes: u64,
    /// Shuffle locations it read from other executors.
    pub remote_fetches: u64,
    /// Shuffle locations it read on its own executor.
    pub local_reads: u64,
    /// Times its committed output was lost and it ran again.
    pub recomputed: u32,
    /// Its earlier attempts that failed.
    pub failures: Vec<AttemptFailureView>,
}

/// Memory figures of an executor.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryView {
    /// What all its tasks may reserve together.
    pub budget_bytes: u64,
    /// Reserved now.
    pub reserved_bytes: u64,
    /// The most reserved at once.
    pub peak_bytes: u64,
    /// What a new job could reserve now.
    pub available_bytes: u64,
}

/// One executor in `GET /api/v1/executors`.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutorView {
    /// Its id.
    pub executor_id: String,
    /// Host other processes reach it at.
    pub host: String,
    /// Its Flight and control port.
    pub port: u32,
    /// Its version.
    pub version: String,
    /// `active`, or `paused` (draining, or it refused a launch).
    pub state: String,
    /// Task slots.
    pub slots: u32,
    /// Slots without a task.
    pub free_slots: u32,
    /// Tasks the scheduler placed there and has not heard the end of.
    pub running_tasks: u32,
    /// Its last heartbeat.
    pub last_heartbeat_ms: u64,
    /// Its memory, from that heartbeat.
    pub memory: MemoryView,
}

/// `GET /api/v1/cluster`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSummary {
    /// The scheduler's version.
    pub version: String,
    /// The scheduling policy.
    pub policy: String,
    /// Executors registered.
    pub executors: usize,
    /// Their task slots.
    pub slots_total: usize,
    /// Slots without a task.
    pub slots_free: usize,
    /// Tasks running.
    pub tasks_running: usize,
    /// Jobs waiting for admission.
    pub jobs_queued: usize,
    /// Jobs planning or running.
    pub jobs_running: usize,
    /// Finished jobs still listed.
    pub jobs_finished: usize,
    /// Memory budget over all executors.
    pub memory_budget_bytes: u64,
    /// Memory reserved over all executors.
    pub memory_reserved_bytes: u64,
    /// How long finished jobs stay listed.
    pub finished_job_retention_secs: u64,
    /// How many finished jobs stay listed at most.
    pub max_finished_jobs: usize,
}
