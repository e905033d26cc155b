//! The executor's side of its conversation with the scheduler: registering
//! (and re-registering), heartbeats, and delivering task statuses.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::auth::{AuthChannel, CallCredentials, SecretKey, SessionKeySlot, unwrap_session_key};
use tokio::sync::mpsc;

use super::ReportChannel;
use super::task_runner::TaskRunner;
use crate::error::Result;
use crate::flight::{MAX_MESSAGE_SIZE, flight_endpoint};
use crate::plugin::memory::MemoryManager;
use crate::proto::{self, scheduler_grpc_client::SchedulerGrpcClient};
use crate::tls::TlsTrust;

const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A client of the scheduler at `url` (checked against `trust` when
/// `https://`) whose calls carry `credentials`.
pub(crate) fn scheduler_client(
    url: &str,
    trust: &TlsTrust,
    credentials: &CallCredentials,
) -> Result<SchedulerGrpcClient<AuthChannel>> {
    Ok(
        SchedulerGrpcClient::new(credentials.wrap(flight_endpoint(url, trust)?.connect_lazy()))
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE),
    )
}

/// The scheduler as the source of map outputs committed after a task
/// started ([`crate::plan::MapOutputSource`]).
#[derive(Debug, Clone)]
pub(crate) struct SchedulerMapOutputs {
    client: SchedulerGrpcClient<AuthChannel>,
}

impl SchedulerMapOutputs {
    pub(crate) fn new(client: SchedulerGrpcClient<AuthChannel>) -> Self {
        Self { client }
    }
}

impl crate::plan::MapOutputSource for SchedulerMapOutputs {
    fn await_map_outputs(
        &self,
        request: proto::AwaitMapOutputsRequest,
    ) -> futures::future::BoxFuture<'static, Result<proto::AwaitMapOutputsResponse>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            Ok(client
                .await_map_outputs(request)
                .await
                .map_err(crate::error::BallistaError::from)?
                .into_inner())
        })
    }
}

/// The memory manager's figures as sent to the scheduler.
fn memory_report(memory: &dyn MemoryManager) -> proto::MemoryReport {
    let usage = memory.usage();
    proto::MemoryReport {
        budget_bytes: usage.budget_bytes,
        reserved_bytes: usage.reserved_bytes,
        peak_bytes: usage.peak_bytes,
        available_bytes: usage.available_bytes,
        task_min_bytes: usage.task_min_bytes,
        jobs: memory
            .job_usage()
            .into_iter()
            .map(|job| proto::JobMemory {
                job_id: job.job_id.to_string(),
                executor_id: String::new(),
                tenant: job.tenant,
                reserved_bytes: job.reserved_bytes,
                peak_bytes: job.peak_bytes,
                quota_bytes: job.quota_bytes,
            })
            .collect(),
    }
}

/// The cluster key the scheduler wraps its answer under, where the
/// session key it answers goes, and the CA its certificate is checked
/// against (named in hints when that fails).
pub(crate) struct SessionKeys {
    pub cluster: SecretKey,
    pub slot: SessionKeySlot,
    pub trust: TlsTrust,
}

/// Registers (with `register_client`, which proves the cluster key), then
/// heartbeats forever (with `client`, which proves the session key the
/// scheduler answered, kept in `session`); registers again whenever the
/// scheduler says it does not know this executor. While the scheduler cannot
/// be reached it says so and keeps retrying.
pub(crate) async fn registration_loop(
    mut register_client: SchedulerGrpcClient<AuthChannel>,
    mut client: SchedulerGrpcClient<AuthChannel>,
    keys: SessionKeys,
    url: String,
    metadata: proto::ExecutorMetadata,
    runner: Arc<TaskRunner>,
    interval: Duration,
) {
    let mut registered = false;
    let mut backoff = Duration::from_secs(1);
    loop {
        if !registered {
            let request = proto::RegisterExecutorRequest {
                metadata: Some(metadata.clone()),
                memory: Some(memory_report(runner.memory().as_ref())),
                cleanups_in_launches: true,
            };
            let answer = register_client
                .register_executor(request)
                .await
                .map(|response| {
                    let answer = response.into_inner();
                    unwrap_session_key(
                        &keys.cluster,
                        &metadata.id,
                        &answer.session_key,
                        &answer.key_nonce,
                    )
                });
            match answer {
                Ok(Err(e)) => {
                    tracing::warn!(
                        "the scheduler at {url} answered the registration without a valid session key ({e}); retrying in {}s",
                        backoff.as_secs()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                Ok(Ok(key)) => {
                    *keys.slot.write() = Some(key);
                    tracing::info!(
                        "executor {} registered with the scheduler at {url}",
                        metadata.id
                    );
                    registered = true;
                    backoff = Duration::from_secs(1);
                }
                Err(status) => {
                    let text = describe(&status);
                    let hint = crate::tls::connection_hint(&url, &text, &keys.trust);
                    tracing::warn!(
                        "cannot reach the scheduler at {url} to register: {text}{hint}; retrying \
                         in {}s",
                        backoff.as_secs()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        tokio::time::sleep(interval).await;
        let request = proto::HeartBeatRequest {
            executor_id: metadata.id.clone(),
            running_tasks: runner.running_tasks() as u32,
            memory: Some(memory_report(runner.memory().as_ref())),
            draining: runner.is_draining(),
        };
        match client.heart_beat(request).await {
            Ok(response) if response.get_ref().reregister => {
                tracing::warn!(
                    "the scheduler at {url} does not know this executor (it restarted?); registering again"
                );
                registered = false;
            }
            Ok(_) => {}
            // The scheduler no longer knows this executor's session key (it
            // restarted, or declared the executor lost).
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                tracing::warn!(
                    "the scheduler at {url} refused the heartbeat ({}); registering again",
                    describe(&status)
                );
                registered = false;
            }
            Err(status) => {
                tracing::warn!(
                    "cannot reach the scheduler at {url} for a heartbeat: {}",
                    describe(&status)
                );
            }
        }
    }
}

/// Delivers task statuses as they come, in batches; retries until the
/// scheduler accepts them so that no outcome is lost. The reports are
/// numbered, so the scheduler answers each with this executor's next tasks
/// and the job data it may free (a retried report carries its number
/// again and gets the same answer); tasks the runner refuses go back with
/// the next report. With [`HOLD_REPORTS`](super::report_channel::HOLD_REPORTS)
/// on, a report is held while slots are free, so that new tasks come in
/// its answer (see [`ReportChannel`]).
pub(crate) async fn status_reporter(
    client: SchedulerGrpcClient<AuthChannel>,
    executor_id: String,
    mut statuses: mpsc::UnboundedReceiver<proto::TaskStatus>,
    undelivered: Arc<AtomicUsize>,
    runner: Arc<TaskRunner>,
    session_key: SessionKeySlot,
) {
    // Nothing is reported before the first registration: the scheduler
    // would refuse a report not signed with the session key (and no task
    // can have run yet).
    while session_key.read().is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut channel = ReportChannel::new(client);
    let mut report_seq = 0u64;
    let mut batch = Vec::new();
    let mut refused = Vec::new();
    let mut open = true;
    loop {
        let has_news = !batch.is_empty() || !refused.is_empty();
        // Nothing is held once the executor drains or stops.
        let free_slots = open && runner.free_slots() > 0 && !runner.is_draining();
        let idle = runner.running_tasks() == 0;
        if let Some(hold) = channel.report_due(has_news, free_slots, idle) {
            report_seq += 1;
            channel.send(proto::UpdateTaskStatusRequest {
                executor_id: executor_id.clone(),
                statuses: std::mem::take(&mut batch),
                report_seq,
                refused: std::mem::take(&mut refused),
                hold,
            });
        }
        if !open && channel.unanswered() == 0 && batch.is_empty() && refused.is_empty() {
            return;
        }
        let pause_ends = channel.hold_pause_ends();
        tokio::select! {
            status = statuses.recv(), if open => match status {
                Some(status) => {
                    batch.push(status);
                    while let Ok(more) = statuses.try_recv() {
                        batch.push(more);
                    }
                }
                None => open = false,
            },
            (report, answer) = channel.answer() => {
                undelivered.fetch_sub(report.statuses.len() + report.refused.len(), Ordering::SeqCst);
                runner.apply_cleanups(answer.cleanups);
                if !answer.launches.is_empty() {
                    let rejected = runner.launch(answer.launches);
                    // A refusal is an outcome the scheduler must hear before
                    // this executor may leave (draining waits for
                    // undelivered ones).
                    undelivered.fetch_add(rejected.len(), Ordering::SeqCst);
                    refused.extend(rejected);
                }
            }
            // A held report may go again.
            () = tokio::time::sleep_until(pause_ends.unwrap_or_else(tokio::time::Instant::now)),
                if pause_ends.is_some() => {}
            // Draining began, or a launch call took the free slots: a held
            // report is no longer wanted.
            () = runner.slots_changed() => {}
        }
    }
}

/// Tells the scheduler this executor leaves, so that it is forgotten now
/// rather than after the heartbeat timeout. Returns the jobs whose data it
/// should delete before it goes.
pub(crate) async fn deregister(
    client: &mut SchedulerGrpcClient<AuthChannel>,
    executor_id: String,
    reason: String,
) -> std::result::Result<Vec<String>, String> {
    let request = proto::DeregisterExecutorRequest {
        executor_id,
        reason,
        takes_removals: true,
    };
    match tokio::time::timeout(Duration::from_secs(5), client.deregister_executor(request)).await {
        Ok(Ok(response)) => Ok(response.into_inner().remove_jobs),
        Ok(Err(status)) => Err(describe(&status)),
        Err(_) => Err("no answer within 5s".into()),
    }
}

/// Sends one heartbeat now (say, to announce draining at once).
pub(crate) async fn heartbeat_now(
    client: &mut SchedulerGrpcClient<AuthChannel>,
    executor_id: String,
    runner: &TaskRunner,
) {
    let request = proto::HeartBeatRequest {
        executor_id,
        running_tasks: runner.running_tasks() as u32,
        memory: Some(memory_report(runner.memory().as_ref())),
        draining: runner.is_draining(),
    };
    if let Err(e) = tokio::time::timeout(Duration::from_secs(2), client.heart_beat(request)).await {
        tracing::warn!("heartbeat while draining: no answer within 2s ({e})");
    }
}

pub(super) fn describe(status: &tonic::Status) -> String {
    let text = crate::util::with_causes(
        status.message().to_string(),
        std::error::Error::source(status),
    );
    if text.is_empty() {
        status.code().to_string()
    } else {
        text
    }
}
