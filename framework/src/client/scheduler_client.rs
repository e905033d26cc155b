//! A client of the scheduler service, with errors that say what happened.

use std::time::Duration;

use tonic::Streaming;
use tonic::transport::Channel;

use crate::error::{BallistaError, Result};
use crate::flight::{MAX_MESSAGE_SIZE, flight_endpoint};
use crate::ids::JobId;
use crate::proto::{self, scheduler_grpc_client::SchedulerGrpcClient};

/// How long connecting to the scheduler may take before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connection to a scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerClient {
    url: String,
    client: SchedulerGrpcClient<Channel>,
}

fn unreachable(url: &str, error: &dyn std::error::Error) -> BallistaError {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    BallistaError::Unavailable(format!("cannot reach the scheduler at {url}: {text}"))
}

impl SchedulerClient {
    /// Connects, failing within [`CONNECT_TIMEOUT`] when nothing answers.
    pub async fn connect(url: &str) -> Result<Self> {
        let url = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        let endpoint = flight_endpoint(&url)?.connect_timeout(CONNECT_TIMEOUT);
        let channel = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect())
            .await
            .map_err(|_| {
                BallistaError::Unavailable(format!(
                    "cannot reach the scheduler at {url}: timed out"
                ))
            })?
            .map_err(|e| unreachable(&url, &e))?;
        let client = SchedulerGrpcClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        Ok(Self { url, client })
    }

    /// The scheduler's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn map_status(&self, status: tonic::Status) -> BallistaError {
        if status.code() == tonic::Code::Unavailable && status.details().is_empty() {
            return BallistaError::Unavailable(format!(
                "cannot reach the scheduler at {}: {}",
                self.url,
                status.message()
            ));
        }
        BallistaError::from(status)
    }

    /// Tables and session defaults.
    pub async fn session_defaults(&self) -> Result<proto::GetSessionDefaultsResponse> {
        let mut client = self.client.clone();
        Ok(client
            .get_session_defaults(proto::GetSessionDefaultsRequest {})
            .await
            .map_err(|s| self.map_status(s))?
            .into_inner())
    }

    /// Submits a query; the job's status streams back.
    pub async fn execute(
        &self,
        request: proto::ExecuteQueryRequest,
    ) -> Result<Streaming<proto::JobStatus>> {
        let mut client = self.client.clone();
        Ok(client
            .execute_query(request)
            .await
            .map_err(|s| self.map_status(s))?
            .into_inner())
    }

    /// A job's current status.
    pub async fn job_status(&self, job_id: &JobId) -> Result<proto::JobStatus> {
        let mut client = self.client.clone();
        Ok(client
            .get_job_status(proto::GetJobStatusRequest {
                job_id: job_id.to_string(),
            })
            .await
            .map_err(|s| self.map_status(s))?
            .into_inner())
    }

    /// Cancels a job; false when it had already ended.
    pub async fn cancel(&self, job_id: &JobId) -> Result<bool> {
        let mut client = self.client.clone();
        Ok(client
            .cancel_job(proto::CancelJobRequest {
                job_id: job_id.to_string(),
            })
            .await
            .map_err(|s| self.map_status(s))?
            .into_inner()
            .cancelled)
    }

    /// Tells the scheduler the job's results have been read.
    pub async fn release(&self, job_id: &JobId) -> Result<()> {
        let mut client = self.client.clone();
        client
            .release_job(proto::ReleaseJobRequest {
                job_id: job_id.to_string(),
            })
            .await
            .map_err(|s| self.map_status(s))?;
        Ok(())
    }

    /// The registered executors.
    pub async fn executors(&self) -> Result<Vec<proto::ExecutorInfo>> {
        let mut client = self.client.clone();
        Ok(client
            .get_executors_metadata(proto::GetExecutorsMetadataRequest {})
            .await
            .map_err(|s| self.map_status(s))?
            .into_inner()
            .executors)
    }
}
