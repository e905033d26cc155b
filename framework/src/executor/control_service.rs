//! The executor's control service, called by the scheduler.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::task_runner::TaskRunner;
use crate::ids::{JobId, StageId};
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
        let request = request.into_inner();
        // Before the tasks: released stage outputs free memory they may
        // need (a job's removal goes on in the background).
        self.runner.apply_cleanups(request.cleanups);
        let rejected = self.runner.launch(request.tasks);
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
        self.runner.remove_job_data(&job_id).await?;
        Ok(Response::new(proto::RemoveJobDataResponse {}))
    }

    async fn release_stage_outputs(
        &self,
        request: Request<proto::ReleaseStageOutputsRequest>,
    ) -> Result<Response<proto::ReleaseStageOutputsResponse>, Status> {
        let request = request.into_inner();
        let job_id = JobId::parse(&request.job_id)?;
        let stages: Vec<StageId> = request.stage_ids.iter().copied().map(StageId).collect();
        let freed = self.runner.release_stage_outputs(&job_id, &stages);
        Ok(Response::new(proto::ReleaseStageOutputsResponse {
            released_bytes: freed as u64,
        }))
    }
}
