//! The scheduler's gRPC service.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use futures::stream::FuturesOrdered;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::SchedulerInner;
use super::state::{Effects, ReportStart};
use super::status_stream::JobStatusStream;
use crate::auth::{Caller, ExecutorKeys, SecretKey, wrap_session_key};
use crate::error::BallistaError;
use crate::ids::{ExecutorId, JobId};
use crate::plugin::shuffle::ExecutorAddress;
use crate::proto::{self, scheduler_grpc_server::SchedulerGrpc};

pub(crate) struct SchedulerService {
    inner: Arc<SchedulerInner>,
    executor_keys: ExecutorKeys,
    /// Wraps the session keys registrations answer.
    cluster_key: SecretKey,
}

impl SchedulerService {
    pub(crate) fn new(
        inner: Arc<SchedulerInner>,
        executor_keys: ExecutorKeys,
        cluster_key: SecretKey,
    ) -> Self {
        Self {
            inner,
            executor_keys,
            cluster_key,
        }
    }

    /// The job `job_id` when `caller` may see and act on it: its owner or an
    /// admin.
    fn owned_job(&self, caller: &Caller, job_id: &JobId, what: &str) -> Result<(), Status> {
        let identity = caller.client(what)?;
        Ok(self.inner.check_owner(&identity, job_id, what)?)
    }
}

/// The executor id a member's call was proven for, which must be the one the
/// request names.
fn executor_caller(caller: &Caller, claimed: &ExecutorId, what: &str) -> Result<(), Status> {
    match caller {
        Caller::Executor(id) | Caller::Member(id) if id == claimed.as_str() => Ok(()),
        Caller::Executor(id) | Caller::Member(id) => Err(BallistaError::PermissionDenied(format!(
            "executor {} may not {what} for executor {claimed}",
            crate::util::loggable(id)
        ))
        .into()),
        other => Err(BallistaError::PermissionDenied(format!(
            "only executors may {what}; this caller is {}",
            other.describe()
        ))
        .into()),
    }
}

/// Longest an `AwaitMapOutputs` call waits for news before answering
/// empty (the task asks again): well inside any request deadline.
const AWAIT_MAP_OUTPUTS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn parse_job_id(value: &str) -> Result<JobId, Status> {
    JobId::parse(value).map_err(Status::from)
}

fn parse_executor_id(value: &str) -> Result<ExecutorId, Status> {
    ExecutorId::parse(value).map_err(Status::from)
}

/// A host name or IP address as an executor advertises it: at most 253
/// characters of letters, digits, `-`, `.`, `_`, and for IPv6 `:`, `[`, `]`.
fn check_host(host: &str) -> Result<(), Status> {
    if !host.is_empty() && crate::ids::is_plain_ascii(host, 253, b"-._:[]") {
        Ok(())
    } else {
        Err(BallistaError::InvalidInput(format!(
            "invalid executor host \"{}\": expected a host name or IP address",
            crate::util::loggable(host)
        ))
        .into())
    }
}

/// The answers of a report stream, one per report, in order.
pub(crate) type ReportAnswerStream =
    Pin<Box<dyn Stream<Item = Result<proto::UpdateTaskStatusResponse, Status>> + Send>>;

/// Most reports of one stream unanswered at once. A well-behaved executor
/// has at most two: a held report and the next (see
/// `UpdateTaskStatusRequest.hold`).
const MAX_UNANSWERED_REPORTS: usize = 4;

/// Answers the reports arriving on `reports` in order, as
/// `UpdateTaskStatus` answers each, while reading the next: a held report
/// waits for work, and the executor's next report (a task ended) must not
/// wait behind it. The stream ends when the executor closes its side or
/// goes; a report the scheduler refuses (another executor's id, no number,
/// too many unanswered) ends it with that refusal, after which the
/// executor opens another.
fn report_answers(
    inner: Arc<SchedulerInner>,
    caller: Caller,
    mut reports: Streaming<proto::UpdateTaskStatusRequest>,
) -> ReportAnswerStream {
    let (answers, outgoing) = tokio::sync::mpsc::channel(MAX_UNANSWERED_REPORTS);
    tokio::spawn(async move {
        let mut unanswered = FuturesOrdered::new();
        // The waits of the unanswered reports, in the same order.
        let mut waits = VecDeque::new();
        let mut reading = true;
        while reading || !unanswered.is_empty() {
            tokio::select! {
                report = reports.message(), if reading => {
                    let started = match report {
                        Ok(Some(_)) if unanswered.len() >= MAX_UNANSWERED_REPORTS => {
                            Err(BallistaError::InvalidInput(format!(
                                "more than {MAX_UNANSWERED_REPORTS} reports unanswered on one \
                                 report stream"
                            ))
                            .into())
                        }
                        Ok(Some(report)) if report.report_seq == 0 => {
                            Err(BallistaError::InvalidInput(
                                "a report on a report stream must be numbered (report_seq > 0)"
                                    .into(),
                            )
                            .into())
                        }
                        Ok(Some(report)) => {
                            let hold = report.hold;
                            start_report(&inner, &caller, report, hold)
                        }
                        // The executor sent its last report: what still
                        // waits is answered now (with nothing, unless a
                        // round answered it already), then the stream ends.
                        Ok(None) => {
                            reading = false;
                            abandon_waits(&inner, &mut waits);
                            continue;
                        }
                        Err(status) => Err(status),
                    };
                    match started {
                        Ok(started) => {
                            waits.push_back(started.wait());
                            unanswered.push_back(started.answer(Arc::clone(&inner)));
                        }
                        Err(status) => {
                            let _ = answers.send(Err(status)).await;
                            break;
                        }
                    }
                }
                Some(answer) = unanswered.next(), if !unanswered.is_empty() => {
                    waits.pop_front();
                    if answers.send(Ok(answer)).await.is_err() {
                        break;
                    }
                }
                () = answers.closed() => break,
            }
        }
        abandon_waits(&inner, &mut waits);
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(outgoing))
}

/// Reports of a stream that ends (or reads no more) are no longer offered
/// work: tasks placed in their answers would wait for their executor to be
/// declared lost (a report sent again on a new stream waits anew).
fn abandon_waits(inner: &SchedulerInner, waits: &mut VecDeque<Option<(ExecutorId, u64)>>) {
    if waits.iter().any(Option::is_some) {
        let mut state = inner.state.lock();
        for (executor_id, token) in waits.iter_mut().filter_map(Option::take) {
            state.abandon_report(&executor_id, token);
        }
    }
}

/// A report applied, whose answer is still to come.
struct StartedReport {
    executor_id: ExecutorId,
    start: Option<ReportStart>,
}

impl StartedReport {
    /// The wait of a report that waits for placement, to abandon it.
    fn wait(&self) -> Option<(ExecutorId, u64)> {
        match &self.start {
            Some(ReportStart::New(waiter) | ReportStart::Copy(waiter)) => {
                Some((self.executor_id.clone(), waiter.token))
            }
            _ => None,
        }
    }

    /// Waits for the answer (placement's, or the kept one of a report sent
    /// again).
    async fn answer(self, inner: Arc<SchedulerInner>) -> proto::UpdateTaskStatusResponse {
        match self.start {
            Some(ReportStart::New(waiter) | ReportStart::Copy(waiter)) => {
                inner.report_answer(&self.executor_id, waiter).await
            }
            Some(ReportStart::Repeated(answer)) => inner.send_answer(&self.executor_id, &answer),
            Some(ReportStart::Stale) | None => proto::UpdateTaskStatusResponse::default(),
        }
    }
}

/// Applies one status report of an executor (`hold`: only work answers it,
/// which a report stream allows) and runs placement.
fn start_report(
    inner: &Arc<SchedulerInner>,
    caller: &Caller,
    request: proto::UpdateTaskStatusRequest,
    hold: bool,
) -> Result<StartedReport, Status> {
    let executor_id = parse_executor_id(&request.executor_id)?;
    executor_caller(caller, &executor_id, "report task statuses")?;
    let seq = request.report_seq;
    let (start, effects) = {
        let mut state = inner.state.lock();
        // An executor the scheduler does not know (it was declared lost)
        // still has its outcomes heard, and is given nothing.
        let start = (seq > 0 && state.is_executor_registered(&executor_id))
            .then(|| state.begin_report(&executor_id, seq, hold));
        let mut effects = Effects::default();
        if matches!(start, None | Some(ReportStart::New(_))) {
            effects.merge(state.launch_refused(&executor_id, &request.refused));
            effects.merge(state.task_statuses(&executor_id, request.statuses));
        }
        if matches!(start, Some(ReportStart::New(_) | ReportStart::Copy(_))) {
            // Placement answers the report, even if nothing else ran it.
            effects.merge(state.schedule());
        }
        (start, effects)
    };
    inner.apply(effects);
    inner.admit_queued();
    Ok(StartedReport { executor_id, start })
}

/// Most task slots one executor may offer (a claim of millions would draw
/// every job's tasks to one registration).
const MAX_EXECUTOR_SLOTS: u32 = 1024;

/// Longest version string an executor may report.
const MAX_VERSION_CHARS: usize = 64;

#[tonic::async_trait]
impl SchedulerGrpc for SchedulerService {
    type ExecuteQueryStream = JobStatusStream;

    async fn execute_query(
        &self,
        request: Request<proto::ExecuteQueryRequest>,
    ) -> Result<Response<Self::ExecuteQueryStream>, Status> {
        let identity = Caller::of(&request).client("submitting a query")?;
        let (job_id, status) = self.inner.submit(request.into_inner(), identity)?;
        tracing::info!("job {job_id} submitted");
        Ok(Response::new(JobStatusStream::new(
            job_id,
            status,
            Arc::downgrade(&self.inner),
        )))
    }

    async fn get_job_status(
        &self,
        request: Request<proto::GetJobStatusRequest>,
    ) -> Result<Response<proto::JobStatus>, Status> {
        let caller = Caller::of(&request);
        let job_id = parse_job_id(&request.into_inner().job_id)?;
        self.owned_job(&caller, &job_id, "see its status")?;
        let status = self.inner.state.lock().status(&job_id);
        status.map(Response::new).ok_or_else(|| {
            BallistaError::NotFound(format!("job {job_id} is not known to this scheduler")).into()
        })
    }

    async fn cancel_job(
        &self,
        request: Request<proto::CancelJobRequest>,
    ) -> Result<Response<proto::CancelJobResponse>, Status> {
        let caller = Caller::of(&request);
        let job_id = parse_job_id(&request.into_inner().job_id)?;
        self.owned_job(&caller, &job_id, "cancel it")?;
        let cancelled = self.inner.cancel(&job_id, "was cancelled on request");
        Ok(Response::new(proto::CancelJobResponse { cancelled }))
    }

    async fn release_job(
        &self,
        request: Request<proto::ReleaseJobRequest>,
    ) -> Result<Response<proto::ReleaseJobResponse>, Status> {
        let caller = Caller::of(&request);
        let job_id = parse_job_id(&request.into_inner().job_id)?;
        // Releasing a job already forgotten is done already.
        if !self.inner.state.lock().has_job(&job_id) {
            return Ok(Response::new(proto::ReleaseJobResponse {}));
        }
        self.owned_job(&caller, &job_id, "release it")?;
        let effects = self.inner.state.lock().release(&job_id);
        self.inner.apply(effects);
        Ok(Response::new(proto::ReleaseJobResponse {}))
    }

    async fn get_executors_metadata(
        &self,
        request: Request<proto::GetExecutorsMetadataRequest>,
    ) -> Result<Response<proto::GetExecutorsMetadataResponse>, Status> {
        Caller::of(&request).client("listing executors")?;
        let executors = self.inner.state.lock().executors_info();
        Ok(Response::new(proto::GetExecutorsMetadataResponse {
            executors,
        }))
    }

    async fn get_session_defaults(
        &self,
        request: Request<proto::GetSessionDefaultsRequest>,
    ) -> Result<Response<proto::GetSessionDefaultsResponse>, Status> {
        Caller::of(&request).client("reading session defaults")?;
        let cluster_slots = self.inner.state.lock().total_slots();
        Ok(Response::new(
            self.inner.planner.session_defaults(cluster_slots),
        ))
    }

    async fn get_catalog(
        &self,
        request: Request<proto::GetCatalogRequest>,
    ) -> Result<Response<proto::GetCatalogResponse>, Status> {
        Caller::of(&request).client("reading the catalog")?;
        let known = request.into_inner().known_version;
        Ok(Response::new(self.inner.planner.catalog_for_clients(known)))
    }

    async fn change_catalog(
        &self,
        request: Request<proto::ChangeCatalogRequest>,
    ) -> Result<Response<proto::ChangeCatalogResponse>, Status> {
        let identity = Caller::of(&request).client("changing the catalog")?;
        let sql = request.into_inner().sql;
        crate::flight_sql::check_sql_length(&sql)?;
        let change = self.inner.catalog_change(&sql, &identity).await?;
        Ok(Response::new(proto::ChangeCatalogResponse {
            description: change.description,
        }))
    }

    async fn register_executor(
        &self,
        request: Request<proto::RegisterExecutorRequest>,
    ) -> Result<Response<proto::RegisterExecutorResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let memory = request
            .memory
            .as_ref()
            .map(|m| m.usage())
            .unwrap_or_default();
        let metadata = request.metadata.ok_or_else(|| {
            BallistaError::InvalidInput("registration without executor metadata".into())
        })?;
        let id = parse_executor_id(&metadata.id)?;
        check_host(&metadata.host)?;
        let Some(port) = u16::try_from(metadata.port).ok().filter(|p| *p != 0) else {
            return Err(BallistaError::InvalidInput(format!(
                "invalid executor port {}: expected 1-65535",
                metadata.port
            ))
            .into());
        };
        if metadata.version.len() > MAX_VERSION_CHARS
            || metadata.version.chars().any(char::is_control)
        {
            return Err(BallistaError::InvalidInput(format!(
                "invalid executor version \"{}\": expected at most {MAX_VERSION_CHARS} printable characters",
                crate::util::loggable(&metadata.version)
            ))
            .into());
        }
        if metadata.slots == 0 || metadata.slots > MAX_EXECUTOR_SLOTS {
            return Err(BallistaError::InvalidInput(format!(
                "invalid executor slots {}: expected 1 to {MAX_EXECUTOR_SLOTS}",
                metadata.slots
            ))
            .into());
        }
        executor_caller(&caller, &id, "register")?;
        let address = ExecutorAddress {
            id: id.clone(),
            host: metadata.host,
            port,
        };
        let session_key = SecretKey::random()?;
        let effects = {
            let mut state = self.inner.state.lock();
            // An id cannot be taken over: while it is registered and alive,
            // nobody registers under it (its own process never needs to: it
            // registers again only when the scheduler no longer knows it).
            if state.is_executor_registered(&id) {
                return Err(BallistaError::PermissionDenied(format!(
                    "executor {id} is registered and alive; another registration under its id \
                     is refused (a restarted executor registers once the old one is declared \
                     lost, after scheduler.executor_timeout_secs)"
                ))
                .into());
            }
            let effects = state.register_executor(
                address,
                metadata.slots as usize,
                metadata.version,
                memory,
                session_key.clone(),
            )?;
            if request.cleanups_in_launches {
                state.takes_cleanups_in_launches(&id);
            }
            let mut keys = self.executor_keys.write();
            keys.retain(|known, _| state.is_executor_registered_str(known));
            keys.insert(id.to_string(), session_key.clone());
            effects
        };
        self.inner.apply(effects);
        let (session_key, key_nonce) =
            wrap_session_key(&self.cluster_key, id.as_str(), &session_key)?;
        Ok(Response::new(proto::RegisterExecutorResponse {
            session_key,
            key_nonce,
        }))
    }

    async fn heart_beat(
        &self,
        request: Request<proto::HeartBeatRequest>,
    ) -> Result<Response<proto::HeartBeatResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let memory = request.memory.unwrap_or_default();
        let executor_id = parse_executor_id(&request.executor_id)?;
        executor_caller(&caller, &executor_id, "send heartbeats")?;
        let (known, effects) = {
            let mut state = self.inner.state.lock();
            state.note_reported_running(&executor_id, request.running_tasks);
            state.heartbeat(&executor_id, memory.usage(), memory.jobs, request.draining)
        };
        if !known {
            self.executor_keys.write().remove(executor_id.as_str());
        }
        self.inner.apply(effects);
        Ok(Response::new(proto::HeartBeatResponse {
            reregister: !known,
        }))
    }

    async fn update_task_status(
        &self,
        request: Request<proto::UpdateTaskStatusRequest>,
    ) -> Result<Response<proto::UpdateTaskStatusResponse>, Status> {
        let caller = Caller::of(&request);
        // A call is not held: it would tie up a call and its deadline.
        let started = start_report(&self.inner, &caller, request.into_inner(), false)?;
        Ok(Response::new(started.answer(Arc::clone(&self.inner)).await))
    }

    type ReportTaskStatusesStream = ReportAnswerStream;

    async fn report_task_statuses(
        &self,
        request: Request<Streaming<proto::UpdateTaskStatusRequest>>,
    ) -> Result<Response<Self::ReportTaskStatusesStream>, Status> {
        let caller = Caller::of(&request);
        if !matches!(caller, Caller::Executor(_) | Caller::Member(_)) {
            return Err(BallistaError::PermissionDenied(format!(
                "only executors may report task statuses; this caller is {}",
                caller.describe()
            ))
            .into());
        }
        Ok(Response::new(report_answers(
            Arc::clone(&self.inner),
            caller,
            request.into_inner(),
        )))
    }

    async fn await_map_outputs(
        &self,
        request: Request<proto::AwaitMapOutputsRequest>,
    ) -> Result<Response<proto::AwaitMapOutputsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let executor_id = parse_executor_id(&request.executor_id)?;
        executor_caller(&caller, &executor_id, "await map outputs")?;
        let task = request.task.ok_or_else(|| {
            BallistaError::InvalidInput("an awaited read without a task id".into())
        })?;
        let task = crate::ids::TaskId {
            job_id: parse_job_id(&task.job_id)?,
            stage_id: crate::ids::StageId(task.stage_id),
            partition: task.partition as usize,
            attempt: task.attempt,
        };
        let map_stage = crate::ids::StageId(request.map_stage_id);
        let reader_partition = request.reader_partition as usize;
        let deadline = tokio::time::Instant::now() + AWAIT_MAP_OUTPUTS_WAIT;
        loop {
            // Registered before looking, so that a change in between wakes it.
            let changed = self.inner.map_outputs.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let answer = self.inner.state.lock().awaited_map_outputs(
                &task,
                &executor_id,
                map_stage,
                reader_partition,
                &request.awaited_map_tasks,
            )?;
            if let Some(answer) = answer {
                return Ok(Response::new(answer));
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Ok(Response::new(proto::AwaitMapOutputsResponse::default()));
            }
        }
    }

    async fn deregister_executor(
        &self,
        request: Request<proto::DeregisterExecutorRequest>,
    ) -> Result<Response<proto::DeregisterExecutorResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let executor_id = parse_executor_id(&request.executor_id)?;
        // An operator (admin) may remove an executor too.
        let by_itself = executor_caller(&caller, &executor_id, "deregister");
        if !matches!(&caller, Caller::Client(identity) if identity.admin) {
            by_itself.clone()?;
        }
        // Only the executor itself deletes its data on the way out.
        let hand_over = by_itself.is_ok() && request.takes_removals;
        let reason = if request.reason.trim().is_empty() {
            "it deregistered".to_string()
        } else {
            format!(
                "it deregistered ({})",
                crate::util::loggable(request.reason.trim())
            )
        };
        let (effects, remove_jobs) =
            self.inner
                .state
                .lock()
                .executor_left(&executor_id, &reason, hand_over);
        self.executor_keys.write().remove(executor_id.as_str());
        self.inner.apply(effects);
        self.inner.admit_queued();
        Ok(Response::new(proto::DeregisterExecutorResponse {
            remove_jobs: remove_jobs.iter().map(ToString::to_string).collect(),
        }))
    }
}
