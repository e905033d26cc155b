//! The scheduler's gRPC service.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::SchedulerInner;
use super::status_stream::JobStatusStream;
use crate::error::BallistaError;
use crate::ids::{ExecutorId, JobId};
use crate::plugin::shuffle::ExecutorAddress;
use crate::proto::{self, scheduler_grpc_server::SchedulerGrpc};

pub(crate) struct SchedulerService {
    inner: Arc<SchedulerInner>,
}

impl SchedulerService {
    pub(crate) fn new(inner: Arc<SchedulerInner>) -> Self {
        Self { inner }
    }
}

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
        let (job_id, status) = self.inner.submit(request.into_inner())?;
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
        let job_id = parse_job_id(&request.into_inner().job_id)?;
        let status = self.inner.state.lock().status(&job_id);
        status.map(Response::new).ok_or_else(|| {
            BallistaError::NotFound(format!("job {job_id} is not known to this scheduler")).into()
        })
    }

    async fn cancel_job(
        &self,
        request: Request<proto::CancelJobRequest>,
    ) -> Result<Response<proto::CancelJobResponse>, Status> {
        let job_id = parse_job_id(&request.into_inner().job_id)?;
        if !self.inner.state.lock().has_job(&job_id) {
            return Err(BallistaError::NotFound(format!(
                "job {job_id} is not known to this scheduler"
            ))
            .into());
        }
        let cancelled = self.inner.cancel(&job_id, "was cancelled on request");
        Ok(Response::new(proto::CancelJobResponse { cancelled }))
    }

    async fn release_job(
        &self,
        request: Request<proto::ReleaseJobRequest>,
    ) -> Result<Response<proto::ReleaseJobResponse>, Status> {
        let job_id = parse_job_id(&request.into_inner().job_id)?;
        let effects = self.inner.state.lock().release(&job_id);
        self.inner.apply(effects);
        Ok(Response::new(proto::ReleaseJobResponse {}))
    }

    async fn get_executors_metadata(
        &self,
        _request: Request<proto::GetExecutorsMetadataRequest>,
    ) -> Result<Response<proto::GetExecutorsMetadataResponse>, Status> {
        let executors = self.inner.state.lock().executors_info();
        Ok(Response::new(proto::GetExecutorsMetadataResponse {
            executors,
        }))
    }

    async fn get_session_defaults(
        &self,
        _request: Request<proto::GetSessionDefaultsRequest>,
    ) -> Result<Response<proto::GetSessionDefaultsResponse>, Status> {
        let cluster_slots = self.inner.state.lock().total_slots();
        Ok(Response::new(
            self.inner.planner.session_defaults(cluster_slots),
        ))
    }

    async fn register_executor(
        &self,
        request: Request<proto::RegisterExecutorRequest>,
    ) -> Result<Response<proto::RegisterExecutorResponse>, Status> {
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
        let address = ExecutorAddress {
            id,
            host: metadata.host,
            port,
        };
        let effects = self.inner.state.lock().register_executor(
            address,
            metadata.slots as usize,
            metadata.version,
            memory,
        )?;
        self.inner.apply(effects);
        Ok(Response::new(proto::RegisterExecutorResponse {}))
    }

    async fn heart_beat(
        &self,
        request: Request<proto::HeartBeatRequest>,
    ) -> Result<Response<proto::HeartBeatResponse>, Status> {
        let request = request.into_inner();
        let memory = request.memory.unwrap_or_default();
        let executor_id = parse_executor_id(&request.executor_id)?;
        let (known, effects) = {
            let mut state = self.inner.state.lock();
            state.note_reported_running(&executor_id, request.running_tasks);
            state.heartbeat(&executor_id, memory.usage(), memory.jobs, request.draining)
        };
        self.inner.apply(effects);
        Ok(Response::new(proto::HeartBeatResponse {
            reregister: !known,
        }))
    }

    async fn update_task_status(
        &self,
        request: Request<proto::UpdateTaskStatusRequest>,
    ) -> Result<Response<proto::UpdateTaskStatusResponse>, Status> {
        let request = request.into_inner();
        let executor_id = parse_executor_id(&request.executor_id)?;
        let effects = self
            .inner
            .state
            .lock()
            .task_statuses(&executor_id, request.statuses);
        self.inner.apply(effects);
        self.inner.admit_queued();
        Ok(Response::new(proto::UpdateTaskStatusResponse {}))
    }

    async fn deregister_executor(
        &self,
        request: Request<proto::DeregisterExecutorRequest>,
    ) -> Result<Response<proto::DeregisterExecutorResponse>, Status> {
        let request = request.into_inner();
        let executor_id = parse_executor_id(&request.executor_id)?;
        let reason = if request.reason.trim().is_empty() {
            "it deregistered".to_string()
        } else {
            format!(
                "it deregistered ({})",
                crate::util::loggable(request.reason.trim())
            )
        };
        let effects = self.inner.state.lock().executor_lost(&executor_id, &reason);
        self.inner.apply(effects);
        self.inner.admit_queued();
        Ok(Response::new(proto::DeregisterExecutorResponse {}))
    }
}
