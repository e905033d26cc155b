//! How an executor's numbered status reports reach the scheduler.
//!
//! At a thousand executors the scheduler's cost is per call: HTTP/2
//! stream set-up, headers, routing and the call's limits come to more than
//! the report's own work. A [`ReportChannel`] therefore keeps one stream
//! (`ReportTaskStatuses`) open and sends each report as one message on it;
//! the answers come back on the answer stream in order. A scheduler that
//! does not offer the stream (an older one) answers `UNIMPLEMENTED`, and
//! the channel sends one `UpdateTaskStatus` call per report from then on.
//!
//! Nothing is lost when the stream breaks: the report in flight fails like
//! a failed call, the caller sends it again under the same number (on a
//! new stream), and the scheduler answers it as it answers a retried call:
//! with the same answer, its statuses applied once.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

use crate::auth::AuthChannel;
use crate::proto::{self, scheduler_grpc_client::SchedulerGrpcClient};

/// Delivers an executor's numbered status reports (`report_seq > 0`) and
/// returns their answers; see the [module docs](self).
#[derive(Debug)]
pub struct ReportChannel {
    client: SchedulerGrpcClient<AuthChannel>,
    stream: Option<OpenReportStream>,
    /// The scheduler answered that it has no report stream.
    calls_only: bool,
}

#[derive(Debug)]
struct OpenReportStream {
    reports: mpsc::Sender<proto::UpdateTaskStatusRequest>,
    answers: Streaming<proto::UpdateTaskStatusResponse>,
}

impl ReportChannel {
    /// A channel over `client`, whose calls prove the executor's session
    /// key. The stream opens with the first report.
    pub fn new(client: SchedulerGrpcClient<AuthChannel>) -> Self {
        Self {
            client,
            stream: None,
            calls_only: false,
        }
    }

    /// Whether reports go by one call each because the scheduler offers no
    /// report stream.
    pub fn calls_only(&self) -> bool {
        self.calls_only
    }

    /// Sends `report` and waits for its answer. After an error the report
    /// may or may not have arrived: send it again, with the same number,
    /// until it is answered (the next attempt opens a new stream).
    pub async fn send(
        &mut self,
        report: &proto::UpdateTaskStatusRequest,
    ) -> Result<proto::UpdateTaskStatusResponse, Status> {
        if !self.calls_only && self.stream.is_none() {
            self.stream = self.open().await?;
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(self
                .client
                .update_task_status(report.clone())
                .await?
                .into_inner());
        };
        let answer =
            async {
                stream.reports.send(report.clone()).await.map_err(|_| {
                    Status::unavailable("the report stream to the scheduler closed")
                })?;
                stream
                    .answers
                    .message()
                    .await?
                    .ok_or_else(|| Status::unavailable("the scheduler ended the report stream"))
            }
            .await;
        if answer.is_err() {
            self.stream = None;
        }
        answer
    }

    /// Opens the report stream; `None` when the scheduler has none.
    async fn open(&mut self) -> Result<Option<OpenReportStream>, Status> {
        // One report is in flight at a time: it is answered before the next.
        let (reports, outgoing) = mpsc::channel(1);
        match self
            .client
            .report_task_statuses(ReceiverStream::new(outgoing))
            .await
        {
            Ok(answers) => Ok(Some(OpenReportStream {
                reports,
                answers: answers.into_inner(),
            })),
            Err(status) if status.code() == Code::Unimplemented => {
                tracing::info!(
                    "the scheduler has no report stream (an older version?): task statuses go \
                     by one call each"
                );
                self.calls_only = true;
                Ok(None)
            }
            Err(status) => Err(status),
        }
    }
}
