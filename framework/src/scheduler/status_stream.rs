//! The stream of status updates returned by `ExecuteQuery`. Dropping it
//! before the job ends (the client went away) cancels the job.

use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};

use futures::Stream;
use tokio_stream::wrappers::WatchStream;

use super::SchedulerInner;
use crate::ids::JobId;
use crate::proto::{self, JobState};

pub(crate) struct JobStatusStream {
    updates: WatchStream<proto::JobStatus>,
    job_id: JobId,
    scheduler: Weak<SchedulerInner>,
    finished: bool,
}

impl JobStatusStream {
    pub(crate) fn new(
        job_id: JobId,
        updates: tokio::sync::watch::Receiver<proto::JobStatus>,
        scheduler: Weak<SchedulerInner>,
    ) -> Self {
        Self {
            updates: WatchStream::new(updates),
            job_id,
            scheduler,
            finished: false,
        }
    }
}

fn is_terminal(status: &proto::JobStatus) -> bool {
    matches!(
        JobState::try_from(status.state),
        Ok(JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    )
}

impl Stream for JobStatusStream {
    type Item = Result<proto::JobStatus, tonic::Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.updates).poll_next(cx) {
            Poll::Ready(Some(status)) => {
                if is_terminal(&status) {
                    self.finished = true;
                }
                Poll::Ready(Some(Ok(status)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for JobStatusStream {
    fn drop(&mut self) {
        if !self.finished
            && let Some(scheduler) = self.scheduler.upgrade()
        {
            scheduler.cancel(
                &self.job_id,
                "was cancelled because its client disconnected",
            );
        }
    }
}
