//! Runs tasks in a fixed number of slots and reports how each ended.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use datafusion::execution::TaskContext;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{AggregateUDF, HigherOrderUDF, ScalarUDF, WindowUDF};
use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;

use super::failure_injection::{
    INJECT_FAILURES_KEY, InjectedFailure, fail, injected_failure, parse_failure_rules,
};
use super::staged_writes::{StagedWrites, StagingRegistry};
use crate::config::{SPILL_TO_DISK_KEY, session_config_from_settings};
use crate::error::{BallistaError, Result};
use crate::flight::FlightClientPool;
use crate::ids::{JobId, StageId, TaskId};
use crate::plan::{
    CancelFlag, ShuffleReadTotals, ShuffleWriterExec, TaskEnv, collect_operator_metrics,
    decode_stage_plan, fill_task_reads, shuffle_read_counts, spill_totals, with_cancellation,
};
use crate::plugin::memory::{MemoryManager, TaskMemoryRequest};
use crate::plugin::shuffle::memory_tier::ShuffleMemoryTier;
use crate::plugin::shuffle::{
    ExecutorAddress, ShuffleLocation, ShuffleReader, ShuffleStorage, ShuffleWriter,
};
use crate::proto;
use crate::util::now_ms;

/// What a successful task produced.
struct TaskOutput {
    locations: Vec<ShuffleLocation>,
    reads: ShuffleReadTotals,
    spill_count: u64,
    spilled_bytes: u64,
    operators: Vec<proto::OperatorMetrics>,
}

/// The functions every task can call (DataFusion's defaults).
struct FunctionSet {
    scalar: HashMap<String, Arc<ScalarUDF>>,
    higher_order: HashMap<String, Arc<HigherOrderUDF>>,
    aggregate: HashMap<String, Arc<AggregateUDF>>,
    window: HashMap<String, Arc<WindowUDF>>,
}

/// What the runner needs from the executor.
pub(crate) struct TaskRunnerParts {
    pub executor: ExecutorAddress,
    pub work_dir: PathBuf,
    pub slots: usize,
    pub runtime: Arc<RuntimeEnv>,
    pub memory: Arc<dyn MemoryManager>,
    /// Whether jobs may ask for injected failures (tests only).
    pub failure_injection: bool,
    pub shuffle_writer: Arc<dyn ShuffleWriter>,
    pub shuffle_reader: Arc<dyn ShuffleReader>,
    /// Where map outputs may stay in memory.
    pub memory_tier: Arc<ShuffleMemoryTier>,
    pub status_tx: mpsc::UnboundedSender<proto::TaskStatus>,
    /// Statuses sent to `status_tx` and not yet accepted by the scheduler.
    pub undelivered: Arc<AtomicUsize>,
    /// The runtime tasks run on, apart from the control plane's.
    pub task_threads: tokio::runtime::Handle,
    /// What this executor proves when it fetches shuffle data from others.
    pub flight_credentials: crate::auth::CallCredentials,
    /// How other executors' Flight services are reached (TLS or not).
    pub flight_transport: crate::tls::PeerTransport,
    /// What `/metrics` shows.
    pub metrics: Arc<crate::http::ExecutorMetrics>,
}

/// A task in flight, and how to stop it.
#[derive(Clone)]
struct RunningTask {
    id: TaskId,
    abort: AbortHandle,
    cancel: CancelFlag,
}

impl RunningTask {
    fn stop(&self, why: &str) {
        tracing::info!("cancelling task {}{why}", self.id);
        // The abort takes effect at the task's next yield; the flag stops
        // operators that compute without yielding, at their next batch.
        self.cancel.cancel();
        self.abort.abort();
    }
}

/// Runs tasks.
pub(crate) struct TaskRunner {
    parts: TaskRunnerParts,
    slots: Arc<Semaphore>,
    functions: FunctionSet,
    flight: FlightClientPool,
    running: Mutex<HashMap<JobId, Vec<RunningTask>>>,
    ended_jobs: Mutex<EndedJobs>,
    draining: AtomicBool,
    published: Arc<PublishedObjects>,
    /// Woken when draining begins or tasks are launched (the status
    /// reporter then reconsiders a held report).
    slots_changed: tokio::sync::Notify,
    /// The scheduler, for tasks started before their input stages
    /// completed (set once the scheduler client exists).
    map_outputs: std::sync::OnceLock<Arc<dyn crate::plan::MapOutputSource>>,
}

/// Object-storage locations this executor's tasks committed, per job: the
/// only stored objects its Flight service hands out (a ticket naming any
/// other object is refused, so the executor's storage credentials cannot be
/// used to read arbitrary data).
#[derive(Default)]
pub(crate) struct PublishedObjects(Mutex<HashMap<JobId, HashSet<String>>>);

impl PublishedObjects {
    fn record(&self, job_id: &JobId, locations: &[ShuffleLocation]) {
        let stored: Vec<String> = locations
            .iter()
            .filter(|l| l.path.contains("://"))
            .map(|l| l.path.clone())
            .collect();
        if !stored.is_empty() {
            self.0
                .lock()
                .entry(job_id.clone())
                .or_default()
                .extend(stored);
        }
    }

    pub(crate) fn contains(&self, job_id: &JobId, path: &str) -> bool {
        self.0
            .lock()
            .get(job_id)
            .is_some_and(|paths| paths.contains(path))
    }

    fn forget(&self, job_id: &JobId) {
        self.0.lock().remove(job_id);
    }
}

/// Jobs this executor was told to cancel or forget. A launch can overtake
/// the cancellation on the network; tasks of an ended job are refused so they
/// cannot write data after it was deleted.
#[derive(Default)]
struct EndedJobs {
    order: VecDeque<JobId>,
    set: HashSet<JobId>,
}

impl EndedJobs {
    const CAPACITY: usize = 10_000;

    fn insert(&mut self, job_id: &JobId) {
        if self.set.insert(job_id.clone()) {
            self.order.push_back(job_id.clone());
            if self.order.len() > Self::CAPACITY
                && let Some(oldest) = self.order.pop_front()
            {
                self.set.remove(&oldest);
            }
        }
    }
}

impl TaskRunner {
    pub(crate) fn new(parts: TaskRunnerParts) -> Self {
        let state = SessionStateBuilder::new().with_default_features().build();
        let functions = FunctionSet {
            scalar: state.scalar_functions().clone(),
            higher_order: state.higher_order_functions().clone(),
            aggregate: state.aggregate_functions().clone(),
            window: state.window_functions().clone(),
        };
        Self {
            slots: Arc::new(Semaphore::new(parts.slots)),
            flight: FlightClientPool::with_credentials(parts.flight_credentials.clone())
                .over(parts.flight_transport.clone()),
            parts,
            functions,
            running: Mutex::new(HashMap::new()),
            ended_jobs: Mutex::new(EndedJobs::default()),
            draining: AtomicBool::new(false),
            published: Arc::default(),
            slots_changed: tokio::sync::Notify::new(),
            map_outputs: std::sync::OnceLock::new(),
        }
    }

    /// Where tasks started early ask for their input stages' later outputs.
    pub(crate) fn set_map_output_source(&self, source: Arc<dyn crate::plan::MapOutputSource>) {
        let _ = self.map_outputs.set(source);
    }

    /// The job's data is being deleted: refuse its later launches.
    pub(crate) fn forget_job(&self, job_id: &JobId) {
        self.ended_jobs.lock().insert(job_id);
        self.published.forget(job_id);
    }

    /// The stored objects this executor's tasks committed.
    pub(crate) fn published(&self) -> Arc<PublishedObjects> {
        Arc::clone(&self.published)
    }

    pub(crate) fn shuffle_writer(&self) -> &Arc<dyn ShuffleWriter> {
        &self.parts.shuffle_writer
    }

    /// Where this executor's shuffle data lives, for clean-up.
    pub(crate) fn shuffle_storage(&self) -> ShuffleStorage {
        ShuffleStorage {
            work_dir: self.parts.work_dir.clone(),
            object_stores: Arc::clone(&self.parts.runtime.object_store_registry),
        }
    }

    pub(crate) fn memory_tier(&self) -> &Arc<ShuffleMemoryTier> {
        &self.parts.memory_tier
    }

    pub(crate) fn memory(&self) -> &Arc<dyn MemoryManager> {
        &self.parts.memory
    }

    /// Slots no task holds now.
    pub(crate) fn free_slots(&self) -> usize {
        self.slots.available_permits()
    }

    /// Resolves once draining begins or tasks are launched after the last
    /// call (a wake-up that came while nobody waited is kept).
    pub(crate) async fn slots_changed(&self) {
        self.slots_changed.notified().await;
    }

    pub(crate) fn running_tasks(&self) -> usize {
        self.running.lock().values().map(Vec::len).sum()
    }

    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.slots_changed.notify_one();
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Starts tasks; returns the ones refused for lack of a free slot.
    pub(crate) fn launch(
        self: &Arc<Self>,
        tasks: Vec<proto::TaskDefinition>,
    ) -> Vec<proto::TaskId> {
        self.slots_changed.notify_one();
        let mut rejected = Vec::new();
        for definition in tasks {
            let Some(wire_id) = definition.task.clone() else {
                continue;
            };
            let task_id = match JobId::parse(&wire_id.job_id) {
                Ok(job_id) => TaskId {
                    job_id,
                    stage_id: StageId(wire_id.stage_id),
                    partition: wire_id.partition as usize,
                    attempt: wire_id.attempt,
                },
                Err(e) => {
                    self.report(&wire_id, Err(e), now_ms());
                    continue;
                }
            };
            if self.ended_jobs.lock().set.contains(&task_id.job_id) {
                let error =
                    BallistaError::Cancelled(format!("job {} has already ended", task_id.job_id));
                self.report(&wire_id, Err(error), now_ms());
                continue;
            }
            if self.is_draining() {
                rejected.push(wire_id);
                continue;
            }
            let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
                rejected.push(wire_id);
                continue;
            };
            tracing::debug!("task {task_id} starting");
            self.parts.metrics.tasks_started.inc();
            let runner = Arc::clone(self);
            let started = now_ms();
            let cancel = CancelFlag::new();
            let work = self.parts.task_threads.spawn({
                let runner = Arc::clone(self);
                let task_id = task_id.clone();
                let cancel = cancel.clone();
                async move { runner.run(definition, task_id, cancel).await }
            });
            self.running
                .lock()
                .entry(task_id.job_id.clone())
                .or_default()
                .push(RunningTask {
                    id: task_id.clone(),
                    abort: work.abort_handle(),
                    cancel,
                });
            tokio::spawn(async move {
                let result = match work.await {
                    Ok(result) => result,
                    Err(e) if e.is_panic() => Err(BallistaError::Execution(format!(
                        "task {task_id} panicked: {}",
                        panic_message(e.into_panic())
                    ))),
                    Err(_) => Err(BallistaError::Cancelled(format!(
                        "task {task_id} was cancelled"
                    ))),
                };
                // Counted as undelivered before it stops counting as running,
                // so a drain never sees neither.
                runner.parts.undelivered.fetch_add(1, Ordering::SeqCst);
                runner.forget(&task_id);
                runner.parts.memory.task_finished(&task_id);
                drop(permit);
                runner.send_report(&wire_id, result, started);
            });
        }
        rejected
    }

    fn forget(&self, task_id: &TaskId) {
        let mut running = self.running.lock();
        if let Some(tasks) = running.get_mut(&task_id.job_id) {
            tasks.retain(|t| &t.id != task_id);
            if tasks.is_empty() {
                running.remove(&task_id.job_id);
            }
        }
    }

    /// Stops every running task (the executor is leaving).
    pub(crate) fn cancel_all(&self) -> usize {
        let tasks: Vec<RunningTask> = self.running.lock().values().flatten().cloned().collect();
        for task in &tasks {
            task.stop(": the executor is leaving");
        }
        tasks.len()
    }

    /// Stops the job's running tasks and waits up to `timeout` for them to
    /// end; returns how many still run.
    pub(crate) async fn stop_job_tasks(
        &self,
        job_id: &JobId,
        timeout: std::time::Duration,
    ) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Again each time: a launch that passed the ended-job check just
            // before it was recorded may have started since.
            self.cancel_job(job_id);
            let running = self.running.lock().get(job_id).map_or(0, Vec::len);
            if running == 0 || tokio::time::Instant::now() >= deadline {
                return running;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Stops every running task of a job and refuses its later launches;
    /// returns how many tasks were stopped.
    pub(crate) fn cancel_job(&self, job_id: &JobId) -> usize {
        self.ended_jobs.lock().insert(job_id);
        let tasks = self.running.lock().get(job_id).cloned().unwrap_or_default();
        for task in &tasks {
            task.stop("");
        }
        tasks.len()
    }

    fn report(&self, task: &proto::TaskId, result: Result<TaskOutput>, started: u64) {
        self.parts.undelivered.fetch_add(1, Ordering::SeqCst);
        self.send_report(task, result, started);
    }

    /// Sends a task's outcome, already counted in `undelivered`.
    fn send_report(&self, task: &proto::TaskId, result: Result<TaskOutput>, started: u64) {
        let result = match result {
            Ok(output) => {
                tracing::debug!(
                    "task {}/{}/{} done",
                    task.job_id,
                    task.stage_id,
                    task.partition
                );
                let metrics = proto::TaskMetrics {
                    output_rows: output.locations.iter().map(|l| l.stats.num_rows).sum(),
                    output_bytes: output.locations.iter().map(|l| l.stats.num_bytes).sum(),
                    remote_fetches: output.reads.remote_fetches,
                    local_reads: output.reads.local_reads,
                    spill_count: output.spill_count,
                    spilled_bytes: output.spilled_bytes,
                    // The scheduler takes these from the status itself.
                    started_at_ms: 0,
                    ended_at_ms: 0,
                    local_read_bytes: output.reads.local_read_bytes,
                    remote_fetch_bytes: output.reads.remote_fetch_bytes,
                    operators: output.operators,
                };
                proto::task_status::Result::Succeeded(proto::TaskSuccess {
                    locations: output
                        .locations
                        .iter()
                        .map(ShuffleLocation::to_proto)
                        .collect(),
                    metrics: Some(metrics),
                })
            }
            Err(e) => {
                // Encoded before typing: a DataFusion error keeps its
                // variant and text on the way to the client.
                let info = e.to_proto();
                let e = e.typed();
                if !matches!(e, BallistaError::Cancelled(_)) {
                    tracing::warn!(
                        "task {}/{}/{} failed: {e}",
                        task.job_id,
                        task.stage_id,
                        task.partition
                    );
                }
                proto::task_status::Result::Failed(info)
            }
        };
        let status = proto::TaskStatus {
            task: Some(task.clone()),
            executor_id: self.parts.executor.id.to_string(),
            result: Some(result),
            started_at_ms: started,
            ended_at_ms: now_ms(),
        };
        self.parts.metrics.task_ended(&status);
        if self.parts.status_tx.send(status).is_err() {
            self.parts.undelivered.fetch_sub(1, Ordering::SeqCst);
        }
    }

    async fn run(
        self: Arc<Self>,
        definition: proto::TaskDefinition,
        task_id: TaskId,
        cancel: CancelFlag,
    ) -> Result<TaskOutput> {
        let result = Arc::clone(&self)
            .run_task(definition, &task_id, &cancel)
            .await;
        result.map_err(|e| self.explain_memory_refusal(e, &task_id))
    }

    /// A resources-exhausted failure whose message does not say which quota
    /// refused memory (an operator may have swallowed the pool's refusal
    /// and failed otherwise, e.g. a sort that could not spill) gets the
    /// refusal the memory manager recorded for the task.
    fn explain_memory_refusal(&self, error: BallistaError, task_id: &TaskId) -> BallistaError {
        if !matches!(error.kind(), proto::ErrorKind::ResourcesExhausted) {
            return error;
        }
        let error = error.typed();
        match self.parts.memory.refusal(task_id) {
            Some(refusal) if !error.message().contains(&refusal) => {
                BallistaError::ResourcesExhausted(format!(
                    "{}; the task's last memory refusal: {refusal}",
                    error.message()
                ))
            }
            _ => error,
        }
    }

    /// Fails (or holds) the task as the job's `ballista.inject_failures`
    /// asks, when this executor allows injected failures; refuses the task
    /// when it does not.
    async fn inject_failure(
        &self,
        settings: &HashMap<String, String>,
        task_id: &TaskId,
    ) -> Result<()> {
        let rules = parse_failure_rules(
            settings
                .get(INJECT_FAILURES_KEY)
                .map(String::as_str)
                .unwrap_or(""),
        )?;
        if rules.is_empty() {
            return Ok(());
        }
        if !self.parts.failure_injection {
            return Err(BallistaError::PermissionDenied(format!(
                "job {} asks for injected failures ({INJECT_FAILURES_KEY}), which executor {} does not allow (executor.failure_injection is for test clusters only)",
                task_id.job_id, self.parts.executor.id
            )));
        }
        match injected_failure(&rules, task_id) {
            Some(InjectedFailure::Delay(ms)) => {
                tracing::info!("task {task_id}: injected delay of {ms} ms");
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                Ok(())
            }
            Some(failure) => {
                tracing::info!("task {task_id}: injecting a {failure:?} failure");
                fail(failure, task_id).map_or(Ok(()), Err)
            }
            None => Ok(()),
        }
    }

    async fn run_task(
        self: Arc<Self>,
        definition: proto::TaskDefinition,
        task_id: &TaskId,
        cancel: &CancelFlag,
    ) -> Result<TaskOutput> {
        let task_id = task_id.clone();
        let settings = proto::key_values_to_map(&definition.settings);
        self.inject_failure(&settings, &task_id).await?;
        let env = Arc::new(TaskEnv {
            task: task_id.clone(),
            executor: self.parts.executor.clone(),
            work_dir: self.parts.work_dir.clone(),
            shuffle_writer: Arc::clone(&self.parts.shuffle_writer),
            shuffle_reader: Arc::clone(&self.parts.shuffle_reader),
            flight: self.flight.clone(),
            object_stores: Arc::clone(&self.parts.runtime.object_store_registry),
            memory_tier: Some(Arc::clone(&self.parts.memory_tier)),
            map_outputs: self.map_outputs.get().cloned(),
        });
        let config = session_config_from_settings(&settings)?.with_extension(env);
        let pool = self.parts.memory.task_pool(&TaskMemoryRequest {
            task: &task_id,
            settings: &settings,
        })?;
        // What the plan itself writes (COPY, INSERT) is published only when
        // the task succeeds.
        let staged = StagedWrites::new(task_id.to_string());
        let mut runtime = RuntimeEnvBuilder::from_runtime_env(&self.parts.runtime);
        if !spill_allowed(&settings)? {
            runtime = runtime.with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            );
        }
        let runtime = runtime
            .with_memory_pool(pool)
            .with_object_store_registry(Arc::new(StagingRegistry::new(
                Arc::clone(&self.parts.runtime.object_store_registry),
                Arc::clone(&staged),
            )))
            .build_arc()?;
        let context = Arc::new(TaskContext::new(
            Some(task_id.to_string()),
            definition.session_id.clone(),
            config,
            self.functions.scalar.clone(),
            self.functions.higher_order.clone(),
            self.functions.aggregate.clone(),
            self.functions.window.clone(),
            runtime,
        ));
        let plan = match &definition.own_reads {
            // The stage's plan came hollow, with this task's reads beside it;
            // their files' partition values decode through DataFusion, which
            // may panic on malformed ones, hence the guard.
            Some(own) => {
                let hollow = decode_stage_plan(&own.hollow_plan, &context)?;
                crate::util::decode_guarded("task reads", || {
                    fill_task_reads(hollow, task_id.partition, own)
                })?
            }
            None => decode_stage_plan(&definition.plan, &context)?,
        };
        let plan = with_cancellation(plan, cancel).map_err(BallistaError::from_datafusion)?;
        let writer = plan.downcast_ref::<ShuffleWriterExec>().ok_or_else(|| {
            BallistaError::InvalidInput(format!(
                "the plan of task {task_id} is not rooted at a ShuffleWriterExec"
            ))
        })?;
        let written = writer.write_map_output(task_id.partition, context).await;
        // Publishing or discarding runs to its end in a task of its own: a
        // cancellation arriving meanwhile (this future dropped) must not stop
        // it halfway and leave part of the output visible.
        let finish = {
            let staged = Arc::clone(&staged);
            let succeeded = written.is_ok();
            tokio::spawn(async move {
                if succeeded {
                    staged.commit().await.map(|n| (n, true))
                } else {
                    Ok((staged.abort().await, false))
                }
            })
        };
        let finished = finish
            .await
            .map_err(|e| BallistaError::Internal(format!("publishing task output: {e}")))?;
        let locations = match (written, finished) {
            (Ok(locations), Ok((published, _))) => {
                if published > 0 {
                    tracing::debug!("task {task_id} published {published} written file(s)");
                }
                locations
            }
            (Ok(_), Err(e)) => return Err(e),
            (Err(e), discarded) => {
                if let Ok((n, _)) = discarded
                    && n > 0
                {
                    tracing::info!("task {task_id} failed: discarded {n} staged output file(s)");
                }
                return Err(e);
            }
        };
        self.published.record(&task_id.job_id, &locations);
        let reads = shuffle_read_counts(&plan);
        let (spill_count, spilled_bytes) = spill_totals(&plan);
        if spill_count > 0 {
            tracing::debug!(
                "task {task_id} spilled {spilled_bytes} bytes in {spill_count} file(s)"
            );
        }
        Ok(TaskOutput {
            locations,
            reads,
            spill_count,
            spilled_bytes,
            operators: collect_operator_metrics(&plan),
        })
    }
}

/// Whether the job lets its operators spill to disk
/// (`ballista.spill_to_disk`, default true).
fn spill_allowed(settings: &HashMap<String, String>) -> Result<bool> {
    match settings.get(SPILL_TO_DISK_KEY).map(|v| v.trim()) {
        None => Ok(true),
        Some(v) => v.to_ascii_lowercase().parse::<bool>().map_err(|_| {
            BallistaError::InvalidInput(format!(
                "invalid session setting {SPILL_TO_DISK_KEY} = {v:?}: expected true or false"
            ))
        }),
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}
