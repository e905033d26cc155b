//! The scheduler: accepts queries, plans them into stages, places tasks on
//! executors' free slots through the [`TaskSchedulingPolicy`](crate::plugin::scheduling::TaskSchedulingPolicy),
//! and streams each job's status back to its client.
//!
//! State changes happen under one lock in [`state::SchedulerState`]; the
//! network calls they imply (launching, cancelling, deleting data) are
//! performed afterwards, so a slow executor never blocks the scheduler.

mod executors;
mod grpc;
mod job_graph;
mod liveness;
mod planner;
mod state;
mod status_stream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

use crate::auth::{ExecutorKeys, Gate, GateLayer, Login};
use crate::config::{BallistaConfig, POOL_KEY, TENANT_KEY};
use crate::error::{BallistaError, Result};
use crate::flight_sql::FlightSqlFrontDoor;
use crate::ids::{ExecutorId, JobId};
use crate::plugin::auth::Identity;
use crate::proto;
use crate::proto::scheduler_grpc_server::SchedulerGrpcServer;
use crate::tls::{PeerTransport, ServerTls, TlsTrust};
use arrow_flight::flight_service_server::FlightServiceServer;

pub use job_graph::{JobGraph, TaskOutcome, TaskPlan, TaskState};
pub use planner::JobPlanner;
pub use state::{
    AdmittedJob, CLEANUP_DELAY, Cleanup, Effects, JobPhase, KeptAnswer, Launch, QUERY_TEXT_LIMIT,
    ReportAnswer, ReportStart, ReportWaiter, SchedulerState, TaskLaunch,
};

/// Longest a status report waits for placement to answer it (a round takes
/// milliseconds; this only bounds a report should the placement loop stall).
const REPORT_ANSWER_WAIT: Duration = Duration::from_secs(5);

/// Longest a held report (an idle executor's, on its report stream) waits
/// for work before it is answered with nothing; its executor then sends
/// another. Long, so that an idle cluster costs a message per executor
/// every half minute.
const HELD_REPORT_WAIT: Duration = Duration::from_secs(30);

/// Shared by the gRPC service and the background loops.
pub(crate) struct SchedulerInner {
    state: Mutex<SchedulerState>,
    planner: JobPlanner,
    /// Wakes the placement loop: the state defers task placement, so that
    /// one round serves every event since the last.
    placement: Arc<Notify>,
    /// Woken when a task's state changed: tasks that started early wait
    /// on it for the map outputs they await (`AwaitMapOutputs`).
    map_outputs: Notify,
}

impl SchedulerInner {
    /// The state, for the HTTP service's read-only views.
    pub(crate) fn state(&self) -> &Mutex<SchedulerState> {
        &self.state
    }

    /// Performs the network calls decided under the lock.
    fn apply(self: &Arc<Self>, effects: Effects) {
        if effects.tasks_changed {
            self.map_outputs.notify_waiters();
        }
        if effects.place_tasks {
            self.placement.notify_one();
        }
        for launch in effects.launches {
            let inner = Arc::clone(self);
            tokio::spawn(async move { inner.launch(launch).await });
        }
        if !effects.cleanups.is_empty() {
            let now = self.state.lock().defer_cleanups(effects.cleanups);
            Self::send_cleanups(now);
        }
    }

    /// Sends cleanups by call, one per job and executor.
    fn send_cleanups(cleanups: Vec<Cleanup>) {
        for cleanup in cleanups {
            tokio::spawn(async move {
                let mut client = cleanup.client;
                if cleanup.cancel {
                    let request = proto::CancelTasksRequest {
                        job_id: cleanup.job_id.to_string(),
                    };
                    if let Err(e) = client.cancel_tasks(request).await {
                        tracing::warn!(
                            "cancelling job {} on {}: {}",
                            cleanup.job_id,
                            cleanup.executor_id,
                            e.message()
                        );
                    }
                }
                if cleanup.remove_data && !cleanup.stages.is_empty() {
                    let request = proto::ReleaseStageOutputsRequest {
                        job_id: cleanup.job_id.to_string(),
                        stage_ids: cleanup.stages.iter().map(|s| s.0).collect(),
                    };
                    // An executor of an earlier version does not know the
                    // call (Unimplemented): it keeps the output until the
                    // job ends, as it always did.
                    if let Err(e) = client.release_stage_outputs(request).await
                        && e.code() != tonic::Code::Unimplemented
                    {
                        tracing::debug!(
                            "releasing stage output of job {} on {}: {}",
                            cleanup.job_id,
                            cleanup.executor_id,
                            e.message()
                        );
                    }
                } else if cleanup.remove_data {
                    let request = proto::RemoveJobDataRequest {
                        job_id: cleanup.job_id.to_string(),
                    };
                    if let Err(e) = client.remove_job_data(request).await {
                        tracing::warn!(
                            "deleting data of job {} on {}: {}",
                            cleanup.job_id,
                            cleanup.executor_id,
                            e.message()
                        );
                    }
                }
            });
        }
    }

    /// The answer to a status report once placement has run (see
    /// [`state::ReportStart`]); nothing if it does not come in time.
    async fn report_answer(
        self: &Arc<Self>,
        executor_id: &ExecutorId,
        waiter: ReportWaiter,
    ) -> proto::UpdateTaskStatusResponse {
        let ReportWaiter {
            mut answer,
            token,
            hold,
        } = waiter;
        let wait = if hold {
            HELD_REPORT_WAIT
        } else {
            REPORT_ANSWER_WAIT
        };
        let answer = match tokio::time::timeout(wait, &mut answer).await {
            Ok(answer) => answer.ok(),
            // A round may have answered it between the timeout and the lock.
            Err(_) if self.state.lock().abandon_report(executor_id, token) => None,
            Err(_) => answer.try_recv().ok(),
        };
        match answer {
            Some(answer) => self.send_answer(executor_id, &answer),
            None => proto::UpdateTaskStatusResponse::default(),
        }
    }

    /// An answer as sent, its plans encoded here, outside the lock; a task
    /// whose plan cannot be encoded fails (the first time only: a retry
    /// sends the same answer).
    fn send_answer(
        self: &Arc<Self>,
        executor_id: &ExecutorId,
        answer: &ReportAnswer,
    ) -> proto::UpdateTaskStatusResponse {
        let (response, unencodable) = answer.encode();
        for (task, error) in unencodable {
            let error = BallistaError::from_proto(&error);
            let effects = self.fail_launched(executor_id, vec![task], &error);
            self.apply(effects);
        }
        response
    }

    async fn launch(self: Arc<Self>, launch: Launch) {
        let Launch {
            executor_id,
            mut client,
            tasks,
            cleanups,
        } = launch;
        let ids: Vec<proto::TaskId> = tasks
            .iter()
            .filter_map(|t| t.definition.task.clone())
            .collect();
        tracing::debug!("launching {} task(s) on {executor_id}", ids.len());
        let definitions = match tasks
            .into_iter()
            .map(TaskLaunch::into_definition)
            .collect::<Result<Vec<_>>>()
        {
            Ok(definitions) => definitions,
            Err(error) => {
                Self::send_cleanups(cleanups_by_call(&executor_id, &client, cleanups));
                let effects = self.fail_launched(&executor_id, ids, &error);
                self.apply(effects);
                return;
            }
        };
        let carried = cleanups.clone();
        let result = client
            .launch_tasks(proto::LaunchTasksRequest {
                tasks: definitions,
                cleanups,
            })
            .await;
        if result.is_err() {
            // Whether they were applied is unknown, and the executor may
            // be forgotten below: they go by call now (freeing twice is
            // harmless; a removal must reach storage the executor shares).
            Self::send_cleanups(cleanups_by_call(&executor_id, &client, carried));
        }
        let effects = match result {
            Ok(response) => {
                let rejected = response.into_inner().rejected;
                if rejected.is_empty() {
                    return;
                }
                tracing::info!("executor {executor_id} refused {} task(s)", rejected.len());
                self.state.lock().launch_refused(&executor_id, &rejected)
            }
            // No answer: the connection failed, or broke mid-request (the
            // client side then reports Cancelled — the executor died, say).
            // The tasks may or may not have started there: they are lost
            // with the executor, like the tasks it was already running, and
            // their retries run under new attempt numbers.
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                ) =>
            {
                tracing::warn!(
                    "cannot reach executor {executor_id} to launch tasks: {}",
                    status.message()
                );
                self.state.lock().executor_lost(
                    &executor_id,
                    "its control service could not be reached to launch tasks",
                )
            }
            // The executor answered but refused the request itself: the
            // tasks fail (and are retried if the error allows).
            Err(status) => self.fail_launched(&executor_id, ids, &BallistaError::from(status)),
        };
        self.apply(effects);
    }

    /// Launched tasks that failed before they could run, as if their
    /// executor had reported the failure.
    fn fail_launched(
        &self,
        executor_id: &crate::ids::ExecutorId,
        ids: Vec<proto::TaskId>,
        error: &BallistaError,
    ) -> Effects {
        let statuses = ids
            .into_iter()
            .map(|task| proto::TaskStatus {
                task: Some(task),
                executor_id: executor_id.to_string(),
                result: Some(proto::task_status::Result::Failed(error.to_proto())),
                started_at_ms: 0,
                ended_at_ms: crate::util::now_ms(),
            })
            .collect();
        self.state.lock().task_statuses(executor_id, statuses)
    }

    /// Accepts a query: admission, then planning in the background.
    pub(crate) fn submit(
        self: &Arc<Self>,
        request: proto::ExecuteQueryRequest,
        identity: Arc<Identity>,
    ) -> Result<(JobId, watch::Receiver<proto::JobStatus>)> {
        if request.query.is_none() {
            return Err(BallistaError::InvalidInput(
                "the request holds no query".into(),
            ));
        }
        check_session_id(&request.session_id)?;
        let job_id = JobId::generate();
        let cluster_slots = self.state.lock().total_slots();
        let mut settings = self.planner.job_settings(&request, cluster_slots);
        // The tenant and pool a job is filed under come from its identity:
        // a session picks among those granted, never others.
        let requested = |key: &str| {
            request
                .settings
                .iter()
                .find(|kv| kv.key == key && !kv.value.is_empty())
                .map(|kv| kv.value.as_str())
        };
        if let Some(tenant) = identity.tenant_for(requested(TENANT_KEY))? {
            settings.insert(TENANT_KEY.to_string(), tenant);
        }
        if let Some(pool) = identity.pool_for(requested(POOL_KEY))? {
            settings.insert(POOL_KEY.to_string(), pool);
        }
        let settings = Arc::new(settings);
        let session_id = request.session_id.clone();
        let (to_plan, status) = self.state.lock().submit(
            job_id.clone(),
            session_id,
            Arc::clone(&identity),
            Arc::clone(&settings),
            request,
        )?;
        if let Some(request) = to_plan {
            self.start_planning(job_id.clone(), request, settings, identity);
        }
        Ok((job_id, status))
    }

    fn start_planning(
        self: &Arc<Self>,
        job_id: JobId,
        request: proto::ExecuteQueryRequest,
        settings: Arc<HashMap<String, String>>,
        identity: Arc<Identity>,
    ) {
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            let planning = {
                let inner = Arc::clone(&inner);
                let job_id = job_id.clone();
                tokio::spawn(crate::util::LargeStack::new(async move {
                    inner
                        .planner
                        .plan(&job_id, &request, &settings, &identity)
                        .await
                }))
            };
            // A planner panic fails the job rather than leaving it planning forever.
            let plan = planning.await.unwrap_or_else(|e| {
                Err(BallistaError::Internal(format!(
                    "planning the query failed unexpectedly: {e}"
                )))
            });
            let effects = inner.state.lock().planned(&job_id, plan);
            inner.apply(effects);
        });
    }

    pub(crate) fn cancel(self: &Arc<Self>, job_id: &JobId, reason: &str) -> bool {
        let (cancelled, effects) = self.state.lock().cancel(job_id, reason);
        self.apply(effects);
        self.admit_queued();
        cancelled
    }

    /// Answers `sql` from the shared catalog when it is a statement the
    /// catalog keeps, or a query of its `information_schema`, for
    /// `identity`; `None` for any other statement.
    pub(crate) async fn catalog_statement(
        &self,
        sql: &str,
        identity: &Identity,
    ) -> Result<Option<crate::catalog::CatalogAnswer>> {
        let slots = self.state.lock().total_slots();
        self.planner.catalog_statement(sql, identity, slots).await
    }

    /// Carries out `sql`, a statement the shared catalog keeps, for
    /// `identity`.
    pub(crate) async fn catalog_change(
        &self,
        sql: &str,
        identity: &Identity,
    ) -> Result<crate::catalog::CatalogChange> {
        let slots = self.state.lock().total_slots();
        self.planner.catalog_change(sql, identity, slots).await
    }

    /// A DataFusion session holding the tables queries can name, for
    /// listing them.
    pub(crate) fn catalog_context(&self) -> Result<datafusion::prelude::SessionContext> {
        let slots = self.state.lock().total_slots();
        self.planner.catalog_context(slots)
    }

    /// Refuses `identity` a job it neither owns nor administers.
    /// `what` names the act in the refusal (`cancel it`).
    pub(crate) fn check_owner(
        &self,
        identity: &Identity,
        job_id: &JobId,
        what: &str,
    ) -> Result<()> {
        let owner = self.state.lock().owner_of(job_id).ok_or_else(|| {
            BallistaError::NotFound(format!("job {job_id} is not known to this scheduler"))
        })?;
        if !identity.admin && owner != identity.user {
            return Err(BallistaError::PermissionDenied(format!(
                "job {job_id} belongs to another user; only its owner or an admin may {what}"
            )));
        }
        Ok(())
    }

    /// Cancels job `job_id` for `identity` (its owner or an admin) and
    /// drops its results.
    pub(crate) fn cancel_for(self: &Arc<Self>, identity: &Identity, job_id: &JobId) -> Result<()> {
        self.check_owner(identity, job_id, "cancel it")?;
        self.cancel(job_id, "was cancelled on request");
        let released = self.state.lock().release(job_id);
        self.apply(released);
        Ok(())
    }

    /// The `index`-th non-empty result location of a succeeded job, for its
    /// owner (or an admin).
    pub(crate) fn result_location(
        &self,
        identity: &Identity,
        job_id: &JobId,
        index: usize,
    ) -> Result<crate::plugin::shuffle::ShuffleLocation> {
        let forgotten = || {
            BallistaError::NotFound(format!(
                "job {job_id} is not known to this scheduler (its results are kept for \
                 scheduler.result_retention_secs)"
            ))
        };
        self.check_owner(identity, job_id, "read its results")
            .map_err(|e| match e {
                BallistaError::NotFound(_) => forgotten(),
                other => other,
            })?;
        let status = self.state.lock().status(job_id).ok_or_else(forgotten)?;
        let result = status.result.unwrap_or_default();
        crate::plugin::shuffle::ShuffleLocation::partitions_from_proto(&result.partitions)?
            .into_iter()
            .flatten()
            .filter(|l| l.stats.num_rows > 0)
            .nth(index)
            .ok_or_else(|| {
                BallistaError::NotFound(format!("job {job_id} has no result location {index}"))
            })
    }

    fn admit_queued(self: &Arc<Self>) {
        let admitted = self.state.lock().admit_queued();
        for job in admitted {
            self.start_planning(job.job_id, job.request, job.settings, job.identity);
        }
    }

    fn housekeeping(self: &Arc<Self>) {
        let effects = self.state.lock().housekeeping();
        self.apply(effects);
        self.admit_queued();
    }
}

/// Places tasks whenever an event may have let some run. A burst of events
/// (status reports, heartbeats, launches refused) wakes it once: the
/// [`Notify`] keeps one wake-up, however many arrive while a round runs.
async fn place_tasks_when_woken(inner: std::sync::Weak<SchedulerInner>, woken: Arc<Notify>) {
    loop {
        woken.notified().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let effects = inner.state.lock().place_tasks();
        inner.apply(effects);
    }
}

/// The cleanups a launch call carried, as calls of their own.
fn cleanups_by_call(
    executor_id: &ExecutorId,
    client: &proto::executor_control_client::ExecutorControlClient<crate::auth::AuthChannel>,
    cleanups: Vec<proto::JobCleanup>,
) -> Vec<Cleanup> {
    cleanups
        .into_iter()
        .filter_map(|cleanup| {
            let job_id = JobId::parse(&cleanup.job_id).ok()?;
            let stages = if cleanup.remove_job {
                Vec::new()
            } else {
                cleanup
                    .release_stages
                    .into_iter()
                    .map(crate::ids::StageId)
                    .collect()
            };
            Some(Cleanup {
                executor_id: executor_id.clone(),
                client: client.clone(),
                job_id,
                cancel: false,
                remove_data: true,
                stages,
            })
        })
        .collect()
}

/// Sends the cleanups that waited [`CLEANUP_DELAY`] for a status report's
/// answer or a launch call to carry them (their executors are idle).
async fn send_overdue_cleanups(inner: std::sync::Weak<SchedulerInner>) {
    let mut tick = tokio::time::interval(CLEANUP_DELAY / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let overdue = inner.state.lock().overdue_cleanups();
        SchedulerInner::send_cleanups(overdue);
    }
}

/// A running scheduler.
pub struct SchedulerHandle {
    local_addr: SocketAddr,
    http: Option<crate::http::HttpHandle>,
    tls: bool,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::result::Result<(), tonic::transport::Error>>,
    housekeeping: JoinHandle<()>,
}

impl SchedulerHandle {
    /// The address the scheduler listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Base URL of the HTTP service (web UI, REST API, metrics), when it
    /// is enabled.
    pub fn http_url(&self) -> Option<String> {
        self.http.as_ref().map(crate::http::HttpHandle::url)
    }

    /// URL clients and executors connect to (loopback when bound to all interfaces).
    pub fn url(&self) -> String {
        crate::util::local_url(self.local_addr, self.tls)
    }

    /// Waits until the server stops.
    pub async fn wait(mut self) -> Result<()> {
        let server = std::mem::replace(&mut self.server, tokio::spawn(async { Ok(()) }));
        match server.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BallistaError::Io(format!("scheduler server failed: {e}"))),
            Err(e) => Err(BallistaError::Internal(format!(
                "scheduler server task: {e}"
            ))),
        }
    }

    /// Stops the server.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.housekeeping.abort();
        let server = std::mem::replace(&mut self.server, tokio::spawn(async { Ok(()) }));
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.housekeeping.abort();
    }
}

/// A client's session id: at most 128 ASCII letters, digits, `-`, `_`,
/// `.` or `:` (it is kept with every job and logged).
fn check_session_id(session_id: &str) -> Result<()> {
    if crate::ids::is_plain_ascii(session_id, 128, b"-_.:") {
        Ok(())
    } else {
        Err(BallistaError::InvalidInput(format!(
            "invalid session id \"{}\": expected at most 128 ASCII letters, digits, '-', '_', '.' or ':'",
            crate::util::loggable(session_id)
        )))
    }
}

/// Reads the authentication plugin's users again each time the process
/// gets SIGHUP (a user added, removed or given other grants), for as long
/// as the plugin is in use; a bad file is logged and the users in use stay.
fn reload_users_on_hangup(authenticator: &Arc<dyn crate::plugin::auth::Authenticator>) {
    crate::util::on_hangup(
        authenticator,
        "scheduler: the users",
        |authenticator: &(dyn crate::plugin::auth::Authenticator + 'static)| match authenticator
            .reload()
        {
            Ok(()) => tracing::info!(
                "scheduler: reloaded the users of {} on SIGHUP",
                authenticator.name()
            ),
            Err(e) => tracing::error!(
                "scheduler: kept the users in use; reloading them on SIGHUP failed: {e}"
            ),
        },
    );
}

/// Scheduler calls that carry a plan; every other call gets the control
/// message limit.
const PLAN_METHODS: &[&str] = &["/ballista.SchedulerGrpc/ExecuteQuery"];

/// Calls answered when a job has run: a Flight SQL query's `FlightInfo`,
/// and an update's row count (`DoPut`).
const JOB_METHODS: &[&str] = &[
    "/arrow.flight.protocol.FlightService/GetFlightInfo",
    "/arrow.flight.protocol.FlightService/DoPut",
];

/// Streams that live as long as their executor: status reports.
const STREAM_METHODS: &[&str] = &["/ballista.SchedulerGrpc/ReportTaskStatuses"];

/// Starts a scheduler from a [`BallistaConfig`].
pub async fn start_scheduler(config: BallistaConfig) -> Result<SchedulerHandle> {
    let settings = config.settings.scheduler.clone();
    let server_tls = ServerTls::from_settings(&settings.tls, "scheduler.tls")?.map(Arc::new);
    let executors_over = if server_tls.is_some() {
        PeerTransport::tls(TlsTrust::from_settings(&config.settings.tls)?)
    } else {
        PeerTransport::plain()
    };
    let policy = config.resolve_scheduling_policy()?;
    let mut planner = JobPlanner::try_new(&config).await?;
    planner.open_catalog(&settings.catalog).await?;
    let inner = Arc::new(SchedulerInner {
        state: Mutex::new(
            SchedulerState::new(settings.clone(), Arc::clone(&policy))
                .reaching_executors_over(executors_over.clone())
                .deferring_placement(),
        ),
        planner,
        placement: Arc::new(Notify::new()),
        map_outputs: Notify::new(),
    });

    let bind = format!("{}:{}", settings.bind_host, settings.port);
    let listener = TcpListener::bind(&bind).await.map_err(|e| {
        BallistaError::Configuration(format!("scheduler cannot listen on {bind}: {e}"))
    })?;
    let local_addr = listener.local_addr()?;
    let http_listener = crate::http::bind_if_enabled(
        &settings.http,
        &settings.bind_host,
        crate::config::DEFAULT_SCHEDULER_HTTP_PORT,
        "scheduler.http",
    )
    .await?;

    let weak = Arc::downgrade(&inner);
    let probed = Arc::downgrade(&inner);
    let placing = (Arc::downgrade(&inner), Arc::clone(&inner.placement));
    let overdue = Arc::downgrade(&inner);
    let housekeeping = tokio::spawn(async move {
        let periodic = async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(inner) => inner.housekeeping(),
                    None => return,
                }
            }
        };
        tokio::join!(
            periodic,
            liveness::probe_executors(probed),
            place_tasks_when_woken(placing.0, placing.1),
            send_overdue_cleanups(overdue)
        );
    });

    let cluster_key = config.resolve_cluster_key()?;
    let authenticator = config.resolve_authenticator()?;
    reload_users_on_hangup(&authenticator);
    let executor_keys = ExecutorKeys::default();
    let metrics = Arc::clone(inner.state.lock().metrics());
    let gate = Arc::new(Gate::scheduler(
        cluster_key.clone(),
        Arc::clone(&executor_keys),
        Arc::clone(&authenticator),
    ));
    let flight_sql = FlightServiceServer::new(FlightSqlFrontDoor::new(
        Login::new(
            &cluster_key,
            Arc::clone(&authenticator),
            settings.token_ttl_secs,
        ),
        Arc::clone(&inner),
        settings.flight_sql.results,
        settings.flight_sql.view_types,
        executors_over.clone(),
        cluster_key.clone(),
    ))
    .max_decoding_message_size(crate::listener::max_decoding_message_size(&settings.server))
    .max_encoding_message_size(crate::flight::MAX_MESSAGE_SIZE);

    let limits = &settings.server;
    let service = SchedulerGrpcServer::new(grpc::SchedulerService::new(
        Arc::clone(&inner),
        executor_keys,
        cluster_key.clone(),
    ))
    .max_decoding_message_size(crate::listener::max_decoding_message_size(limits))
    .max_encoding_message_size(crate::flight::MAX_MESSAGE_SIZE);
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    if let Some(tls) = &server_tls {
        ServerTls::reload_on_hangup(tls, "scheduler");
    }
    let connections =
        crate::listener::connections(listener, limits, server_tls.clone(), "scheduler");
    let serving = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let methods = crate::listener::MethodLimits {
        plan: PLAN_METHODS,
        job: JOB_METHODS,
        stream: STREAM_METHODS,
    };
    let grpc = crate::listener::grpc_server(limits, methods, "scheduler.server")
        .layer(crate::http::CountFlightCalls::scheduler(&metrics))
        .layer(GateLayer::new(Arc::clone(&gate)))
        .add_service(service)
        .add_service(flight_sql)
        .serve_with_incoming_shutdown(connections, async {
            let _ = shutdown_rx.await;
        });
    let server = tokio::spawn({
        let serving = Arc::clone(&serving);
        async move {
            let result = grpc.await;
            serving.store(false, std::sync::atomic::Ordering::SeqCst);
            result
        }
    });
    let http = match http_listener {
        Some(listener) => {
            let api = crate::http::SchedulerApi {
                inner: Arc::clone(&inner),
                auth: Arc::new(crate::http::HttpAuth::new(
                    Arc::clone(&gate),
                    Login::new(
                        &cluster_key,
                        Arc::clone(&authenticator),
                        settings.token_ttl_secs,
                    ),
                )),
                serving,
            };
            let http =
                crate::http::serve(listener, server_tls, crate::http::scheduler_router(api))?;
            tracing::info!("scheduler web UI, REST API and /metrics on {}", http.url());
            Some(http)
        }
        None => None,
    };
    tracing::info!(
        "scheduler listening on {local_addr} (policy: {}, authentication: {}, {})",
        policy.name(),
        authenticator.summary(),
        if executors_over.is_tls() {
            "TLS"
        } else {
            "no TLS"
        }
    );
    Ok(SchedulerHandle {
        local_addr,
        http,
        tls: executors_over.is_tls(),
        shutdown: Some(shutdown_tx),
        server,
        housekeeping,
    })
}
