//! The executor: registers with the scheduler, runs tasks in its slots under
//! the memory pool its [`MemoryManager`](crate::plugin::memory::MemoryManager)
//! gives each, writes their output through the shuffle plugin, and serves
//! shuffle partitions and results over Arrow Flight.
//!
//! One port serves both the control service (called by the scheduler) and
//! Arrow Flight (called by other executors and clients).

mod control_service;
pub mod failure_injection;
mod flight_service;
mod job_cleanup;
mod malloc_arenas;
mod report_channel;
mod scheduler_link;
mod staged_writes;
mod task_runner;
mod task_threads;
mod work_dir;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::auth::{AuthChannel, CallCredentials, Gate, GateLayer, SessionKeySlot};
use crate::config::BallistaConfig;
use crate::error::{BallistaError, Result};
use crate::ids::{ExecutorId, JobId};
use crate::plugin::shuffle::ExecutorAddress;
use crate::plugin::shuffle::memory_tier::ShuffleMemoryTier;
use crate::plugin::storage::StorageAccess;
use crate::proto;
use crate::proto::executor_control_server::ExecutorControlServer;
use crate::proto::scheduler_grpc_client::SchedulerGrpcClient;
use crate::tls::{PeerTransport, ServerTls, TlsTrust};

pub use malloc_arenas::limit_malloc_arenas;
pub use report_channel::ReportChannel;
use task_runner::{TaskRunner, TaskRunnerParts};

/// Fraction of the machine's memory an executor uses when no limit is set.
pub const DEFAULT_MEMORY_FRACTION: f64 = 0.7;

/// A running executor.
pub struct ExecutorHandle {
    address: ExecutorAddress,
    local_addr: SocketAddr,
    http: Option<crate::http::HttpHandle>,
    work_dir: PathBuf,
    runner: Arc<TaskRunner>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::result::Result<(), tonic::transport::Error>>>,
    registration: JoinHandle<()>,
    reporter: JoinHandle<()>,
    scheduler: SchedulerGrpcClient<AuthChannel>,
    session_key: SessionKeySlot,
    undelivered: Arc<AtomicUsize>,
    drain_timeout: Duration,
    _work_dir_lock: Option<work_dir::WorkDirLock>,
    _temp_dir: Option<tempfile::TempDir>,
    _task_threads: task_threads::TaskThreads,
}

/// How long a drain waits for the outcomes of finished tasks to reach the
/// scheduler.
const DRAIN_DELIVERY_GRACE: Duration = Duration::from_secs(5);

/// Longest a leaving executor spends deleting the data of finished jobs
/// the scheduler handed over at deregistration.
const LEAVING_CLEANUP_WAIT: Duration = Duration::from_secs(10);

/// Executor calls that carry a plan; every other call (cancellations,
/// Flight tickets) gets the control message limit.
const PLAN_METHODS: &[&str] = &["/ballista.ExecutorControl/LaunchTasks"];

/// How a drain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// Tasks that were running when the drain began.
    pub running_at_start: usize,
    /// Tasks still running at the deadline, cancelled (the scheduler runs
    /// them again elsewhere).
    pub cancelled: usize,
    /// Whether the scheduler acknowledged the deregistration (when not, it
    /// forgets the executor after its heartbeat timeout).
    pub deregistered: bool,
}

impl ExecutorHandle {
    /// How the cluster reaches this executor.
    pub fn address(&self) -> &ExecutorAddress {
        &self.address
    }

    /// The socket the executor listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Base URL of its HTTP service (metrics, health), when enabled.
    pub fn http_url(&self) -> Option<String> {
        self.http.as_ref().map(crate::http::HttpHandle::url)
    }

    /// The executor's work directory.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The credentials its scheduler calls its control service with (none
    /// before it has registered). Whoever holds them can launch, cancel and
    /// delete this executor's tasks: for tests and for a process embedding
    /// the executor, never to be sent anywhere.
    pub fn scheduler_credentials(&self) -> Option<CallCredentials> {
        let key = self.session_key.read().clone()?;
        Some(CallCredentials::Scheduler {
            executor_id: self.address.id.to_string(),
            key,
        })
    }

    /// The credentials this executor calls its scheduler with (heartbeats,
    /// task statuses), under the same caution as
    /// [`scheduler_credentials`](Self::scheduler_credentials).
    pub fn executor_credentials(&self) -> Option<CallCredentials> {
        let key = self.session_key.read().clone()?;
        Some(CallCredentials::Executor {
            cluster: key.clone(),
            id: self.address.id.to_string(),
            session: Arc::new(parking_lot::RwLock::new(Some(key))),
        })
    }

    /// Waits until the server stops.
    pub async fn wait(mut self) -> Result<()> {
        match self.server.take() {
            Some(server) => match server.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(BallistaError::Io(format!("executor server failed: {e}"))),
                Err(e) => Err(BallistaError::Internal(format!(
                    "executor server task: {e}"
                ))),
            },
            None => Ok(()),
        }
    }

    /// Serves until the server stops, or until `stop` completes; then
    /// drains ([`drain`](Self::drain)) within `executor.drain_timeout_secs`.
    /// The stock binary passes its SIGTERM / Ctrl-C future.
    pub async fn serve_until(mut self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        tokio::select! {
            result = &mut server => match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(BallistaError::Io(format!("executor server failed: {e}"))),
                Err(e) => Err(BallistaError::Internal(format!("executor server task: {e}"))),
            },
            () = stop => {
                self.server = Some(server);
                let timeout = self.drain_timeout;
                self.drain(timeout).await;
                Ok(())
            }
        }
    }

    /// Leaves the cluster gracefully: takes no new task (the scheduler is
    /// told at once), lets running tasks finish for up to `timeout` and
    /// delivers their outcomes, then deregisters and stops. Tasks still
    /// running at the deadline are cancelled after the deregistration, so
    /// the scheduler runs them again elsewhere instead of failing them.
    ///
    /// Beyond `timeout`, delivering results, deregistering and stopping the
    /// server take up to 12 s more when the scheduler does not answer
    /// (well under a second when it does, plus the deletion of finished
    /// jobs' data it hands over, at most 10 s).
    ///
    /// Shuffle output this executor kept on its own disk leaves with it:
    /// the scheduler re-runs the map tasks whose output running jobs still
    /// need. Output in object storage (`[shuffle] kind = "object-store"`)
    /// stays readable.
    pub async fn drain(mut self, timeout: Duration) -> DrainReport {
        let id = self.address.id.to_string();
        self.runner.set_draining();
        let running_at_start = self.runner.running_tasks();
        tracing::info!(
            "executor {id} draining: taking no new tasks; waiting up to {}s for {running_at_start} running task(s)",
            timeout.as_secs()
        );
        let deadline = tokio::time::Instant::now() + timeout;
        scheduler_link::heartbeat_now(&mut self.scheduler, id.clone(), &self.runner).await;
        while self.runner.running_tasks() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let unfinished = self.runner.running_tasks();
        // Outcomes of the tasks that did finish reach the scheduler before
        // it forgets this executor (it would run them again otherwise); a
        // task ending at the deadline still gets its grace.
        let delivery_deadline = tokio::time::Instant::now() + DRAIN_DELIVERY_GRACE;
        while self.undelivered.load(Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < delivery_deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // No heartbeat may register the executor again once it has left.
        self.registration.abort();
        let reason = if unfinished == 0 {
            "drained".to_string()
        } else {
            format!(
                "drained; {unfinished} task(s) still running after {}s are cancelled",
                timeout.as_secs()
            )
        };
        let mut remove_jobs = Vec::new();
        let deregistered = match scheduler_link::deregister(&mut self.scheduler, id.clone(), reason)
            .await
        {
            Ok(jobs) => {
                remove_jobs = jobs;
                true
            }
            Err(e) => {
                tracing::warn!(
                    "executor {id}: deregistering failed ({e}); the scheduler will notice the heartbeats stop"
                );
                false
            }
        };
        // Cancelled before anything else: the scheduler runs them again
        // elsewhere now.
        let cancelled = if unfinished > 0 {
            self.runner.cancel_all()
        } else {
            0
        };
        self.remove_finished_jobs(&id, remove_jobs).await;
        tracing::info!(
            "executor {id} drained: {} of {running_at_start} task(s) finished, {cancelled} cancelled",
            running_at_start.saturating_sub(unfinished)
        );
        self.stop();
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        }
        DrainReport {
            running_at_start,
            cancelled,
            deregistered,
        }
    }

    /// Deletes the data of finished jobs the scheduler handed over when
    /// this executor deregistered (it would otherwise have sent them by
    /// call, to a service about to stop), within [`LEAVING_CLEANUP_WAIT`].
    async fn remove_finished_jobs(&self, id: &str, jobs: Vec<String>) {
        if jobs.is_empty() {
            return;
        }
        let removals = jobs.iter().map(|job| async move {
            let result = match JobId::parse(job) {
                Ok(job_id) => self.runner.remove_job_data(&job_id).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!("executor {id}: deleting data of job {job} before leaving: {e}");
            }
        });
        let all = futures::future::join_all(removals);
        match tokio::time::timeout(LEAVING_CLEANUP_WAIT, all).await {
            Ok(_) => tracing::info!(
                "executor {id}: deleted the data of {} finished job(s) before leaving",
                jobs.len()
            ),
            Err(_) => tracing::warn!(
                "executor {id}: deleting the data of {} finished job(s) took longer than {}s; \
                 leaving without waiting",
                jobs.len(),
                LEAVING_CLEANUP_WAIT.as_secs()
            ),
        }
    }

    /// Stops taking tasks, stops the running ones and the server.
    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
    }

    fn stop(&mut self) {
        self.runner.set_draining();
        self.registration.abort();
        self.reporter.abort();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for ExecutorHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn prepare_work_dir(configured: Option<&PathBuf>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match configured {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                BallistaError::Configuration(format!(
                    "cannot create work directory {}: {e}",
                    dir.display()
                ))
            })?;
            Ok((dir.canonicalize()?, None))
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix(work_dir::TEMP_DIR_PREFIX)
                .tempdir()?;
            Ok((temp.path().canonicalize()?, Some(temp)))
        }
    }
}

/// Starts an executor from a [`BallistaConfig`]; it keeps trying to register
/// with the configured scheduler until it succeeds.
pub async fn start_executor(config: BallistaConfig) -> Result<ExecutorHandle> {
    let settings = config.settings.executor.clone();
    let slots = settings.effective_slots();
    let server_tls = ServerTls::from_settings(&settings.tls, "executor.tls")?.map(Arc::new);
    let trust = TlsTrust::from_settings(&config.settings.tls)?;
    let peers = match (&server_tls, settings.scheduler_url.starts_with("https://")) {
        (Some(_), true) => PeerTransport::tls(trust.clone()),
        (None, false) => PeerTransport::plain(),
        (Some(_), false) => {
            return Err(BallistaError::Configuration(format!(
                "executor.tls is set but executor.scheduler_url = {} is not https://: a cluster \
                 serves TLS on every listener or on none",
                settings.scheduler_url
            )));
        }
        (None, true) => {
            return Err(BallistaError::Configuration(format!(
                "executor.scheduler_url = {} is https:// but executor.tls names no certificate: \
                 a cluster serves TLS on every listener or on none (set executor.tls.cert_file \
                 and key_file)",
                settings.scheduler_url
            )));
        }
    };
    if matches!(settings.bind_host.as_str(), "0.0.0.0" | "::")
        && settings.external_host.as_deref().is_none_or(str::is_empty)
    {
        tracing::warn!(
            "executor listens on all interfaces ({}) but advertises 127.0.0.1: other machines \
             cannot reach it; set executor.external_host (--external-host) to its name",
            settings.bind_host
        );
    }
    let (work_dir, temp_dir) = prepare_work_dir(settings.work_dir.as_ref())?;

    let bind = format!("{}:{}", settings.bind_host, settings.port);
    let listener = TcpListener::bind(&bind).await.map_err(|e| {
        BallistaError::Configuration(format!("executor cannot listen on {bind}: {e}"))
    })?;
    let local_addr = listener.local_addr()?;
    let http_listener = crate::http::bind_if_enabled(
        &settings.http,
        &settings.bind_host,
        crate::config::DEFAULT_EXECUTOR_HTTP_PORT,
        "executor.http",
    )
    .await?;
    let address = ExecutorAddress {
        id: ExecutorId::generate(),
        host: settings.advertised_host(),
        port: local_addr.port(),
    };

    let cluster_key = config.resolve_cluster_key()?;
    let session_key = SessionKeySlot::default();
    let member = CallCredentials::Member {
        cluster: cluster_key.clone(),
        id: address.id.to_string(),
    };
    let memory = config.resolve_memory_manager()?;
    // Map outputs kept in memory count against the same budget as the
    // tasks' operators.
    let memory_budget = match memory.usage().budget_bytes {
        0 => settings.memory_budget_bytes(),
        reported => reported,
    };
    let memory_tier = Arc::new(ShuffleMemoryTier::new(
        usize::try_from(memory_budget).unwrap_or(usize::MAX),
    ));
    let shuffle = config.resolve_shuffle()?;
    // Shuffle files live in their own folder, the only one Flight serves, so
    // that nothing else in a configured work directory can be reached by a
    // ticket or deleted by a job clean-up.
    let shuffle_dir = work_dir.join("shuffle");
    let spill_dir = work_dir.join("spill");
    let work_dir_lock = work_dir::claim(&work_dir, &[&shuffle_dir, &spill_dir], temp_dir.is_some());
    std::fs::create_dir_all(&shuffle_dir)?;
    let shuffle_dir = shuffle_dir.canonicalize()?;
    std::fs::create_dir_all(&spill_dir)?;
    let registry = config.object_store_registry()?;
    if let Some(url) = shuffle.writer.storage_url() {
        registry
            .check_access(url, StorageAccess::Write)
            .and_then(|()| {
                registry
                    .get_store(url)
                    .map_err(BallistaError::from_datafusion)
            })
            .map_err(|e| {
                BallistaError::Configuration(format!(
                    "shuffle.url = {url}: the executor cannot use it: {e}"
                ))
            })?;
    }
    let object_stores: Arc<dyn ObjectStoreRegistry> = registry;
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(crate::util::cache_settings())
        .with_object_store_registry(Arc::clone(&object_stores))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![spill_dir])),
        )
        .build_arc()?;

    let task_threads = task_threads::TaskThreads::start(
        std::thread::available_parallelism().map_or(2, |n| n.get()),
    )?;
    let (status_tx, status_rx) = mpsc::unbounded_channel();
    let undelivered = Arc::new(AtomicUsize::new(0));
    let metrics = Arc::new(crate::http::ExecutorMetrics::new());
    metrics.slots.set(slots as i64);
    let runner = Arc::new(TaskRunner::new(TaskRunnerParts {
        executor: address.clone(),
        work_dir: shuffle_dir.clone(),
        slots,
        runtime,
        memory,
        failure_injection: settings.failure_injection,
        shuffle_writer: shuffle.writer,
        shuffle_reader: Arc::clone(&shuffle.reader),
        memory_tier: Arc::clone(&memory_tier),
        status_tx,
        undelivered: Arc::clone(&undelivered),
        task_threads: task_threads.handle(),
        flight_credentials: member.clone(),
        flight_transport: peers.clone(),
        metrics: Arc::clone(&metrics),
    }));

    let flight = FlightServiceServer::new(flight_service::ExecutorFlightService::new(
        shuffle_dir,
        address.clone(),
        Arc::clone(&shuffle.reader),
        object_stores,
        runner.published(),
        memory_tier,
        Arc::clone(&session_key),
    ))
    .max_decoding_message_size(crate::listener::max_decoding_message_size(&settings.server))
    .max_encoding_message_size(crate::flight::MAX_MESSAGE_SIZE);
    let control = ExecutorControlServer::new(control_service::ExecutorControlService::new(
        Arc::clone(&runner),
    ))
    .max_decoding_message_size(crate::listener::max_decoding_message_size(&settings.server))
    .max_encoding_message_size(crate::flight::MAX_MESSAGE_SIZE);
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    if let Some(tls) = &server_tls {
        ServerTls::reload_on_hangup(tls, "executor");
    }
    let connections =
        crate::listener::connections(listener, &settings.server, server_tls.clone(), "executor");
    let server = tokio::spawn(
        crate::listener::grpc_server(
            &settings.server,
            crate::listener::MethodLimits {
                plan: PLAN_METHODS,
                ..Default::default()
            },
            "executor.server",
        )
        .layer(crate::http::CountFlightCalls::executor(&metrics))
        .layer(GateLayer::new(Arc::new(Gate::executor(
            cluster_key.clone(),
            address.id.to_string(),
            Arc::clone(&session_key),
        ))))
        .add_service(flight)
        .add_service(control)
        .serve_with_incoming_shutdown(connections, async {
            let _ = shutdown_rx.await;
        }),
    );

    let scheduler_url = settings.scheduler_url.clone();
    let register_client = scheduler_link::scheduler_client(
        &scheduler_url,
        &trust,
        &CallCredentials::Register {
            cluster: cluster_key.clone(),
            id: address.id.to_string(),
        },
    )?;
    let client = scheduler_link::scheduler_client(
        &scheduler_url,
        &trust,
        &CallCredentials::Executor {
            cluster: cluster_key.clone(),
            id: address.id.to_string(),
            session: Arc::clone(&session_key),
        },
    )?;
    runner.set_map_output_source(Arc::new(scheduler_link::SchedulerMapOutputs::new(
        client.clone(),
    )));
    let metadata = proto::ExecutorMetadata {
        id: address.id.to_string(),
        host: address.host.clone(),
        port: address.port as u32,
        slots: slots as u32,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let registration = tokio::spawn(scheduler_link::registration_loop(
        register_client,
        client.clone(),
        scheduler_link::SessionKeys {
            cluster: cluster_key.clone(),
            slot: Arc::clone(&session_key),
            trust: trust.clone(),
        },
        scheduler_url,
        metadata,
        Arc::clone(&runner),
        Duration::from_secs(settings.heartbeat_interval_secs.max(1)),
    ));
    let reporter = tokio::spawn(scheduler_link::status_reporter(
        client.clone(),
        address.id.to_string(),
        status_rx,
        Arc::clone(&undelivered),
        Arc::clone(&runner),
        Arc::clone(&session_key),
    ));

    let http = match http_listener {
        Some(listener) => {
            let probe = Arc::new(HealthProbe {
                runner: Arc::clone(&runner),
                session_key: Arc::clone(&session_key),
                scrape: parking_lot::Mutex::new(()),
            });
            let router = crate::http::executor_router(probe, metrics);
            let http = crate::http::serve(listener, server_tls, router)?;
            tracing::info!("executor /metrics, /healthz and /readyz on {}", http.url());
            Some(http)
        }
        None => None,
    };
    tracing::info!(
        "executor {} listening on {local_addr} (advertised as {}:{}), {slots} slots, work dir {}",
        address.id,
        address.host,
        address.port,
        work_dir.display()
    );
    Ok(ExecutorHandle {
        address,
        local_addr,
        http,
        work_dir,
        runner,
        shutdown: Some(shutdown_tx),
        server: Some(server),
        registration,
        reporter,
        scheduler: client,
        session_key,
        undelivered,
        drain_timeout: Duration::from_secs(settings.drain_timeout_secs),
        _work_dir_lock: work_dir_lock,
        _temp_dir: temp_dir,
        _task_threads: task_threads,
    })
}

/// What the executor's `/readyz` and `/metrics` read.
struct HealthProbe {
    runner: Arc<TaskRunner>,
    session_key: SessionKeySlot,
    /// One scrape at a time: another must not see the gauges half set.
    scrape: parking_lot::Mutex<()>,
}

impl crate::http::ExecutorProbe for HealthProbe {
    fn registered(&self) -> bool {
        self.session_key.read().is_some()
    }

    fn draining(&self) -> bool {
        self.runner.is_draining()
    }

    fn scrape(&self, metrics: &crate::http::ExecutorMetrics) -> Result<String> {
        let _one_at_a_time = self.scrape.lock();
        let as_gauge = crate::http::as_gauge;
        let memory = self.runner.memory();
        let usage = memory.usage();
        metrics.memory_budget.set(as_gauge(usage.budget_bytes));
        metrics.memory_reserved.set(as_gauge(usage.reserved_bytes));
        metrics.memory_peak.set(as_gauge(usage.peak_bytes));
        let tier = self.runner.memory_tier();
        metrics
            .shuffle_memory_held
            .set(as_gauge(tier.held_bytes() as u64));
        // Only scrapes move these counters (one at a time, under the lock
        // above): bring them up to the tier's figures.
        let committed = &metrics.shuffle_memory_committed;
        committed.inc_by(tier.committed_bytes().saturating_sub(committed.get()));
        let refusals = &metrics.shuffle_memory_refusals;
        refusals.inc_by(
            tier.map_outputs_sent_to_disk()
                .saturating_sub(refusals.get()),
        );
        let mut tenants: std::collections::BTreeMap<String, u64> = Default::default();
        for job in memory.job_usage() {
            if !job.tenant.is_empty() {
                *tenants.entry(job.tenant).or_default() += job.reserved_bytes;
            }
        }
        metrics.tenant_memory_reserved.reset();
        for (tenant, bytes) in tenants {
            metrics
                .tenant_memory_reserved
                .with_label_values(&[tenant.as_str()])
                .set(as_gauge(bytes));
        }
        metrics
            .running_tasks
            .set(self.runner.running_tasks() as i64);
        metrics.draining.set(i64::from(self.runner.is_draining()));
        metrics.registered.set(i64::from(self.registered()));
        metrics.encode()
    }
}
