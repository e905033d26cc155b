//! How an executor's numbered status reports reach the scheduler.
//!
//! At a thousand executors the scheduler's cost is per call: HTTP/2
//! stream set-up, headers, routing and the call's limits come to more than
//! the report's own work. A [`ReportChannel`] therefore keeps one stream
//! (`ReportTaskStatuses`) open and sends each report as one message on it;
//! the answers come back on the answer stream in order. A scheduler that
//! does not offer the stream (an older one) refuses it (`UNIMPLEMENTED`, or
//! its gate's `PERMISSION_DENIED` naming a call executors do not make), and
//! the channel sends one `UpdateTaskStatus` call per report, trying the
//! stream again a minute later (the scheduler may have been upgraded).
//!
//! On the stream an executor's reports are *held* (`hold`) while it has
//! free slots, and an idle one sends an empty held report: the scheduler
//! answers a held report when it has tasks (or data to free) for the
//! executor, so that an idle executor's tasks come in an answer too rather
//! than by a `LaunchTasks` call. A task that ends meanwhile is reported at
//! once, in a second report, which answers the held one with nothing; a
//! third waits for the first answer.
//!
//! Nothing is lost when the stream breaks: the channel opens another and
//! sends every unanswered report again, in order, under the same numbers;
//! the scheduler answers each as it answers a retried call, with the
//! answer it gave (its statuses applied once).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Code, Status, Streaming};

use crate::auth::AuthChannel;
use crate::proto::{self, scheduler_grpc_client::SchedulerGrpcClient};

/// First wait after a failure; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Whether executors hold reports (see the module docs). A switch for
/// measuring without (the scheduler answers both kinds).
pub const HOLD_REPORTS: bool = true;

/// How long reports go by call after the scheduler refused the stream.
const STREAM_RETRY: Duration = Duration::from_secs(60);
/// How long an executor waits after a held report was answered with
/// nothing before it holds another (a scheduler that does not know it
/// answers at once).
const HOLD_PAUSE: Duration = Duration::from_secs(1);

/// Delivers an executor's numbered status reports (`report_seq > 0`) and
/// returns their answers, in order: as messages on one long-lived
/// `ReportTaskStatuses` stream, or by one `UpdateTaskStatus` call each when
/// the scheduler has no stream. While slots are free reports are held (the
/// scheduler answers them with work), so an idle executor's tasks come in
/// an answer rather than by a launch call; after a broken stream every
/// unanswered report is sent again under its number, which the scheduler
/// answers as it did the first time.
#[derive(Debug)]
pub struct ReportChannel {
    client: SchedulerGrpcClient<AuthChannel>,
    stream: Option<OpenReportStream>,
    /// The scheduler answered that it has no report stream: reports go by
    /// call until then.
    calls_until: Option<Instant>,
    /// Reports sent and not answered, oldest first.
    unanswered: VecDeque<proto::UpdateTaskStatusRequest>,
    /// After a failure, when to try again, and the wait after the next.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// No held report before this (the last was answered with nothing).
    hold_after: Option<Instant>,
    /// Whether reports are held ([`HOLD_REPORTS`]).
    holds: bool,
    /// A call or a stream opening under way, kept while `answer` is
    /// dropped.
    in_flight: Option<InFlight>,
}

/// A call to the scheduler, boxed to be kept across awaits.
type CallFuture<T> = Pin<Box<dyn Future<Output = Result<T, Status>> + Send>>;

/// What [`ReportChannel::answer`] waits for besides the stream's next
/// message.
enum InFlight {
    /// The report stream is being opened.
    Opening(CallFuture<Option<OpenReportStream>>),
    /// The oldest unanswered report goes by call.
    Call(CallFuture<proto::UpdateTaskStatusResponse>),
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InFlight::Opening(_) => "Opening",
            InFlight::Call(_) => "Call",
        })
    }
}

#[derive(Debug)]
struct OpenReportStream {
    reports: mpsc::UnboundedSender<proto::UpdateTaskStatusRequest>,
    answers: Streaming<proto::UpdateTaskStatusResponse>,
}

impl ReportChannel {
    /// A channel over `client`, whose calls prove the executor's session
    /// key. The stream opens when the first answer is awaited.
    pub fn new(client: SchedulerGrpcClient<AuthChannel>) -> Self {
        Self {
            client,
            stream: None,
            calls_until: None,
            unanswered: VecDeque::new(),
            retry_at: None,
            backoff: FIRST_BACKOFF,
            hold_after: None,
            holds: HOLD_REPORTS,
            in_flight: None,
        }
    }

    /// Whether reports go by one call each because the scheduler offers no
    /// report stream.
    pub fn calls_only(&self) -> bool {
        self.calls_until.is_some_and(|until| Instant::now() < until)
    }

    /// Reports sent and not answered yet.
    pub fn unanswered(&self) -> usize {
        self.unanswered.len()
    }

    /// Whether a report should be sent now, and if so whether it is held
    /// (when `free_slots`, on a stream):
    /// - one with news (`has_news`: statuses, refused tasks) goes when at
    ///   most a held report is unanswered;
    /// - an empty held one goes when the executor is `idle` (no task
    ///   runs: a running task's report soon asks for work anyway, and
    ///   holding beside short tasks costs two messages for nothing) and no
    ///   report is unanswered, unless within a pause after a held report
    ///   was answered with nothing;
    /// - an empty one not held goes to have a held one answered once slots
    ///   are no longer free (so that a draining executor does not wait).
    pub fn report_due(&self, has_news: bool, free_slots: bool, idle: bool) -> Option<bool> {
        let calls_only = self.calls_only();
        let hold = self.holds && free_slots && !calls_only;
        let room = match self.unanswered.len() {
            0 => true,
            1 => !calls_only && self.unanswered[0].hold,
            _ => false,
        };
        if !room {
            return None;
        }
        if has_news {
            return Some(hold);
        }
        if !hold && !self.unanswered.is_empty() {
            // The held report is no longer wanted (slots filled, draining):
            // an empty report answers it.
            return Some(false);
        }
        let paused = self.hold_after.is_some_and(|at| Instant::now() < at);
        (hold && idle && self.unanswered.is_empty() && !paused).then_some(true)
    }

    /// When an empty held report may next be sent, if that is still to
    /// come (see [`report_due`](Self::report_due)).
    pub fn hold_pause_ends(&self) -> Option<Instant> {
        self.hold_after.filter(|at| Instant::now() < *at)
    }

    /// Sends `report` (numbered one more than the last); its answer comes
    /// from [`answer`](Self::answer).
    pub fn send(&mut self, report: proto::UpdateTaskStatusRequest) {
        if let Some(stream) = &self.stream
            && stream.reports.send(report.clone()).is_err()
        {
            self.stream = None;
        }
        self.unanswered.push_back(report);
    }

    /// Waits for the answer to the oldest unanswered report, and returns
    /// that report with it; until one comes it retries, opening a new
    /// stream and sending every unanswered report again. Pending forever
    /// when no report is unanswered. Cancel-safe: dropped, it loses
    /// nothing.
    pub async fn answer(
        &mut self,
    ) -> (
        proto::UpdateTaskStatusRequest,
        proto::UpdateTaskStatusResponse,
    ) {
        loop {
            if self.unanswered.is_empty() {
                return std::future::pending().await;
            }
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
                self.retry_at = None;
            }
            match self.next_answer().await {
                Ok(answer) => {
                    self.backoff = FIRST_BACKOFF;
                    let report = self
                        .unanswered
                        .pop_front()
                        .expect("a report was unanswered");
                    // A held report answered with nothing while no later
                    // one was sent: its wait ran out, or the scheduler
                    // does not know this executor.
                    let empty = answer.launches.is_empty() && answer.cleanups.is_empty();
                    let timed_out = report.hold && empty && self.unanswered.is_empty();
                    self.hold_after = timed_out.then(|| Instant::now() + HOLD_PAUSE);
                    return (report, answer);
                }
                Err(status) => {
                    let statuses: usize = self.unanswered.iter().map(|r| r.statuses.len()).sum();
                    tracing::warn!(
                        "cannot deliver {} report(s) of {statuses} task status(es) to the \
                         scheduler: {}; retrying in {:.1}s",
                        self.unanswered.len(),
                        super::scheduler_link::describe(&status),
                        self.backoff.as_secs_f64()
                    );
                    self.stream = None;
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// The answer to the oldest unanswered report: the next on the
    /// stream, which is opened first (and every unanswered report sent on
    /// it) if needed, or that of a call when the scheduler has no stream.
    /// A call or an opening under way is kept in `in_flight` when this is
    /// dropped and picked up by the next: otherwise each new status, which
    /// interrupts the wait, would start it again, and a report stream
    /// would never open while statuses come faster than it does.
    async fn next_answer(&mut self) -> Result<proto::UpdateTaskStatusResponse, Status> {
        loop {
            let calls_only = self.calls_only();
            match &mut self.in_flight {
                Some(InFlight::Call(call)) => {
                    let answer = call.await;
                    self.in_flight = None;
                    return answer;
                }
                Some(InFlight::Opening(opening)) => {
                    let opened = opening.await;
                    self.in_flight = None;
                    match opened? {
                        Some(stream) => {
                            for report in &self.unanswered {
                                let _ = stream.reports.send(report.clone());
                            }
                            self.stream = Some(stream);
                        }
                        None => {
                            tracing::info!(
                                "the scheduler has no report stream (an older version?): task \
                                 statuses go by one call each for {}s",
                                STREAM_RETRY.as_secs()
                            );
                            self.calls_until = Some(Instant::now() + STREAM_RETRY);
                        }
                    }
                }
                None if calls_only => {
                    let mut client = self.client.clone();
                    let report = self.unanswered[0].clone();
                    self.in_flight = Some(InFlight::Call(Box::pin(async move {
                        Ok(client.update_task_status(report).await?.into_inner())
                    })));
                }
                None => match &mut self.stream {
                    // `Streaming::message` keeps its decoding state in the
                    // stream: dropped, it loses nothing.
                    Some(stream) => {
                        return stream.answers.message().await?.ok_or_else(|| {
                            Status::unavailable("the scheduler ended the report stream")
                        });
                    }
                    None => self.in_flight = Some(InFlight::Opening(self.open())),
                },
            }
        }
    }

    /// Opens the report stream; `None` when the scheduler has none.
    fn open(&self) -> CallFuture<Option<OpenReportStream>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            let (reports, outgoing) = mpsc::unbounded_channel();
            match client
                .report_task_statuses(UnboundedReceiverStream::new(outgoing))
                .await
            {
                Ok(answers) => Ok(Some(OpenReportStream {
                    reports,
                    answers: answers.into_inner(),
                })),
                Err(status) if no_report_stream(&status) => Ok(None),
                Err(status) => Err(status),
            }
        })
    }
}

/// Whether the scheduler refused the report stream because it has none:
/// tonic's answer for an unknown method, or the gate of a scheduler that
/// predates it (which refuses an executor's call it does not know).
fn no_report_stream(status: &Status) -> bool {
    status.code() == Code::Unimplemented
        || (status.code() == Code::PermissionDenied
            && status.message().contains("is not a call executors make"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> ReportChannel {
        let endpoint = tonic::transport::Endpoint::from_static("http://127.0.0.1:1");
        let client = SchedulerGrpcClient::new(
            crate::auth::CallCredentials::None.wrap(endpoint.connect_lazy()),
        );
        ReportChannel::new(client)
    }

    fn sent(channel: &mut ReportChannel, hold: bool) {
        channel
            .unanswered
            .push_back(proto::UpdateTaskStatusRequest {
                hold,
                ..Default::default()
            });
    }

    #[tokio::test]
    async fn an_opening_interrupted_by_new_statuses_goes_on_where_it_was() {
        // A scheduler that takes the connection and never answers: the
        // stream stays opening.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&accepted);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(socket);
            }
        });
        let endpoint = tonic::transport::Endpoint::from_shared(url).unwrap();
        let mut channel = ReportChannel::new(SchedulerGrpcClient::new(
            crate::auth::CallCredentials::None.wrap(endpoint.connect_lazy()),
        ));
        channel.send(proto::UpdateTaskStatusRequest {
            report_seq: 1,
            hold: true,
            ..Default::default()
        });
        // The reporter drops the wait for each new status (as a held
        // report's answer may take long); the opening must survive that,
        // or it starts again each time and, with statuses coming faster
        // than it completes, never ends, and with it neither does the wait
        // for a held answer that the statuses were to cut short.
        for _ in 0..3 {
            let waited = tokio::time::timeout(Duration::from_millis(100), channel.answer()).await;
            assert!(waited.is_err(), "nobody answers");
            assert!(
                matches!(channel.in_flight, Some(InFlight::Opening(_))),
                "{:?}",
                channel.in_flight
            );
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(channel.unanswered(), 1);
    }

    #[tokio::test]
    async fn reports_are_held_while_slots_are_free_and_at_most_one_goes_behind_a_held_one() {
        // Held reports off: one report at a time.
        let mut channel = channel();
        channel.holds = false;
        assert_eq!(channel.report_due(true, true, true), Some(false));
        assert_eq!(channel.report_due(false, true, true), None);
        sent(&mut channel, false);
        assert_eq!(channel.report_due(true, true, true), None);

        let mut channel = self::channel();
        channel.holds = true;
        // (has_news, free_slots, idle) with nothing unanswered.
        assert_eq!(channel.report_due(true, true, false), Some(true));
        assert_eq!(channel.report_due(true, false, false), Some(false));
        assert_eq!(
            channel.report_due(false, true, true),
            Some(true),
            "idle asks for work"
        );
        assert_eq!(channel.report_due(false, true, false), None, "a task runs");
        assert_eq!(channel.report_due(false, false, false), None);

        // Behind a held report: news goes, and an empty report once slots
        // are no longer free (to have the held one answered).
        sent(&mut channel, true);
        assert_eq!(channel.report_due(true, true, false), Some(true));
        assert_eq!(
            channel.report_due(false, true, true),
            None,
            "one held is enough"
        );
        assert_eq!(channel.report_due(false, false, false), Some(false));
        // Never a third, and nothing behind a report not held.
        sent(&mut channel, true);
        assert_eq!(channel.report_due(true, true, false), None);
        channel.unanswered.clear();
        sent(&mut channel, false);
        assert_eq!(channel.report_due(true, true, false), None);
        channel.unanswered.clear();

        // A held report answered with nothing: no empty one for a while.
        channel.hold_after = Some(Instant::now() + HOLD_PAUSE);
        assert!(channel.hold_pause_ends().is_some());
        assert_eq!(channel.report_due(false, true, true), None);
        assert_eq!(
            channel.report_due(true, true, true),
            Some(true),
            "news goes"
        );

        // A scheduler without the stream: tonic's answer, or an older
        // scheduler's gate; not any refusal.
        assert!(no_report_stream(&Status::unimplemented("")));
        assert!(no_report_stream(&Status::permission_denied(
            "permission denied: /ballista.SchedulerGrpc/ReportTaskStatuses is not a call \
             executors make"
        )));
        assert!(!no_report_stream(&Status::permission_denied(
            "executor a may not report task statuses for executor b"
        )));

        // By calls: nothing is held, one report at a time.
        let mut channel = self::channel();
        channel.holds = true;
        channel.calls_until = Some(Instant::now() + STREAM_RETRY);
        assert_eq!(channel.report_due(true, true, true), Some(false));
        assert_eq!(channel.report_due(false, true, true), None);
        sent(&mut channel, false);
        assert_eq!(channel.report_due(true, true, true), None);
    }
}
