//! The executor's control service, called by the scheduler.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::task_runner::TaskRunner;
use crate::ids::JobId;
use crate::proto::{self, executor_control_server::ExecutorControl};

pub(crate) struct ExecutorControlService {
    runner: Arc<TaskRunner>,
}

impl ExecutorControlService {
    pub(crate) fn new(runner: Arc<TaskRunner>) -> Self {
        Self { runner }
    }
}

#[tonic::async_trait]
impl ExecutorControl for ExecutorControlService {
    async fn launch_tasks(
        &self,
        request: Request<proto::LaunchTasksRequest>,
    ) -> Result<Response<proto::LaunchTasksResponse>, Status> {
        let rejected = self.runner.launch(request.into_inner().tasks);
        Ok(Response::new(proto::LaunchTasksResponse { rejected }))
    }

    async fn cancel_tasks(
        &self,
        request: Request<proto::CancelTasksRequest>,
    ) -> Result<Response<proto::CancelTasksResponse>, Status> {
        let job_id = JobId::parse(&request.into_inner().job_id)?;
        let cancelled = self.runner.cancel_job(&job_id) as u32;
        Ok(Response::new(proto::CancelTasksResponse { cancelled }))
    }

    async fn remove_job_data(
        &self,
        request: Request<proto::RemoveJobDataRequest>,
    ) -> Result<Response<proto::RemoveJobDataResponse>, Status> {
        let job_id = JobId::parse(&request.into_inner().job_id)?;
        self.runner.forget_job(&job_id);
        self.runner
            .shuffle_writer()
            .remove_job_data(&job_id, &self.runner.shuffle_storage())
            .await?;
        tracing::debug!("removed data of job {job_id}");
        Ok(Response::new(proto::RemoveJobDataResponse {}))
    }
}
