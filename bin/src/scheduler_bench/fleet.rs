//! Simulated executors: each registers with the scheduler over its real gRPC
//! service, proving the cluster key, heartbeats, and answers every task the
//! scheduler launches with an immediate success (one small output partition,
//! numbered like the task, so that every consumer task reads one location),
//! so that the scheduler is the only thing measured.
//!
//! The executors share one control server (the scheduler keeps a connection
//! per executor, as with real ones). A launch names its executor in the
//! scheduler's proof, which is checked against that executor's session key,
//! so a launch is accepted exactly as a real executor would accept it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ballista::auth::proof::{Proof, ProofRole};
use ballista::auth::{AuthChannel, CallCredentials, SecretKey, SessionKeySlot, unwrap_session_key};
use ballista::error::{BallistaError, Result};
use ballista::executor::ReportChannel;
use ballista::flight::{MAX_MESSAGE_SIZE, flight_endpoint};
use ballista::ids::ExecutorId;
use ballista::proto::{
    self, executor_control_server::ExecutorControl, executor_control_server::ExecutorControlServer,
    scheduler_grpc_client::SchedulerGrpcClient,
};
use ballista::tls::TlsTrust;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Registrations sent at once.
const REGISTRATION_CONCURRENCY: usize = 64;
/// Connections the simulated executors' calls to the scheduler share.
const SCHEDULER_CHANNELS: usize = 16;

/// One launched task, as its executor saw it.
#[derive(Debug, Clone)]
pub struct LaunchRecord {
    /// When the launch arrived.
    pub at: Instant,
    /// The task's job.
    pub job_id: String,
    /// The task's stage.
    pub stage_id: u32,
    /// When its executor had a slot free for it (the completion report
    /// that freed the slot, or the fleet's start for a slot never used).
    pub slot_free_at: Instant,
}

/// One task completion the fleet reported.
#[derive(Debug, Clone)]
pub struct CompletionRecord {
    /// When the report was handed to the reporter.
    pub at: Instant,
    /// The task's job.
    pub job_id: String,
    /// The task's stage.
    pub stage_id: u32,
}

/// What the fleet saw, for the report.
#[derive(Debug, Default)]
pub struct FleetLog {
    /// Every launch, in arrival order.
    pub launches: Vec<LaunchRecord>,
    /// Every completion, in report order.
    pub completions: Vec<CompletionRecord>,
    /// Launch requests (one per scheduler call, each with one or more tasks).
    pub launch_calls: u64,
    /// Status report answers that carried tasks.
    pub answers_with_tasks: u64,
    /// The tasks those answers carried.
    pub answer_tasks: u64,
    /// Encoded size of the launch calls, and of the tasks in answers, summed (bytes).
    pub launch_bytes: u64,
    /// Status reports sent (each with one or more task statuses, or held
    /// empty while the executor has free slots), over the report stream.
    pub status_calls: u64,
    /// Of those, the empty held reports.
    pub held_reports: u64,
    /// Calls that free a job's slots or data: cancel, remove job data,
    /// release stage outputs.
    pub cleanup_calls: u64,
    /// Job cleanups (one job's data on one executor) that came in status
    /// report answers instead of calls.
    pub answer_cleanups: u64,
    /// Job cleanups that came with launch calls.
    pub launch_cleanups: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
}

struct SimulatedExecutor {
    id: String,
    session: SessionKeySlot,
    /// When each free slot became free, oldest first.
    free_since: Mutex<VecDeque<Instant>>,
    slots: usize,
    statuses: mpsc::UnboundedSender<proto::TaskStatus>,
}

impl SimulatedExecutor {
    /// A scheduler client proving this executor's session key.
    fn client(
        &self,
        channel: &Channel,
        cluster_key: &SecretKey,
    ) -> SchedulerGrpcClient<AuthChannel> {
        scheduler_client(
            channel,
            CallCredentials::Executor {
                cluster: cluster_key.clone(),
                id: self.id.clone(),
                session: Arc::clone(&self.session),
            },
        )
    }
}

struct Shared {
    /// The control server every simulated executor advertises.
    address: SocketAddr,
    executors: HashMap<String, Arc<SimulatedExecutor>>,
    task_time: Duration,
    log: Mutex<FleetLog>,
}

/// Simulated executors registered with one scheduler.
pub struct SimulatedFleet {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How to build a fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Executors to register.
    pub executors: usize,
    /// Task slots of each.
    pub slots: usize,
    /// How long each task "runs" before its success is reported.
    pub task_time: Duration,
    /// Heartbeat period of each executor.
    pub heartbeat_interval: Duration,
}

impl SimulatedFleet {
    /// Starts the shared control server on loopback and registers
    /// `options.executors` executors with the scheduler at `scheduler_url`.
    pub async fn start(
        scheduler_url: &str,
        cluster_key: &SecretKey,
        trust: &TlsTrust,
        options: &FleetOptions,
    ) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let control_addr = listener.local_addr()?;
        let channels: Vec<Channel> = (0..SCHEDULER_CHANNELS)
            .map(|_| Ok(flight_endpoint(scheduler_url, trust)?.connect_lazy()))
            .collect::<Result<_>>()?;
        let started = Instant::now();
        let mut executors = HashMap::new();
        let mut receivers = Vec::new();
        for _ in 0..options.executors {
            let id = ExecutorId::generate().to_string();
            let (tx, rx) = mpsc::unbounded_channel();
            let executor = Arc::new(SimulatedExecutor {
                id: id.clone(),
                session: SessionKeySlot::default(),
                free_since: Mutex::new(std::iter::repeat_n(started, options.slots).collect()),
                slots: options.slots,
                statuses: tx,
            });
            receivers.push((Arc::clone(&executor), rx));
            executors.insert(id, executor);
        }
        let shared = Arc::new(Shared {
            address: control_addr,
            executors,
            task_time: options.task_time,
            log: Mutex::new(FleetLog::default()),
        });

        let mut tasks = Vec::new();
        let server = ExecutorControlServer::new(SimulatedControl {
            shared: Arc::clone(&shared),
        })
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
        tasks.push(tokio::spawn(async move {
            let incoming = tokio_stream_of(listener);
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(server)
                .serve_with_incoming(incoming)
                .await
            {
                tracing::error!("simulated executors' control server stopped: {e}");
            }
        }));

        register_all(&shared, &channels, cluster_key, control_addr, options.slots).await?;

        // Statuses go back on the executor's own credentials (once it has
        // them: registered), batched like a real executor's reporter.
        for (i, (executor, rx)) in receivers.into_iter().enumerate() {
            let client = executor.client(&channels[i % channels.len()], cluster_key);
            tasks.push(tokio::spawn(report_statuses(
                Arc::clone(&shared),
                client,
                Arc::clone(&executor),
                rx,
            )));
        }

        let heartbeat = tokio::spawn(heartbeats(
            Arc::clone(&shared),
            channels.clone(),
            cluster_key.clone(),
            options.heartbeat_interval,
        ));
        tasks.push(heartbeat);
        Ok(Self { shared, tasks })
    }

    /// Takes what the fleet has seen so far.
    pub fn take_log(&self) -> FleetLog {
        std::mem::take(&mut *self.shared.log.lock())
    }

    /// Launches seen so far.
    pub fn launches_seen(&self) -> usize {
        self.shared.log.lock().launches.len()
    }
}

impl Drop for SimulatedFleet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn tokio_stream_of(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let next = listener.accept().await.map(|(stream, _)| {
            let _ = stream.set_nodelay(true);
            stream
        });
        Some((next, listener))
    })
}

fn scheduler_client(
    channel: &Channel,
    credentials: CallCredentials,
) -> SchedulerGrpcClient<AuthChannel> {
    SchedulerGrpcClient::new(credentials.wrap(channel.clone()))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

async fn register_all(
    shared: &Arc<Shared>,
    channels: &[Channel],
    cluster_key: &SecretKey,
    control_addr: SocketAddr,
    slots: usize,
) -> Result<()> {
    let executors: Vec<Arc<SimulatedExecutor>> = shared.executors.values().cloned().collect();
    let results: Vec<Result<()>> = futures::stream::iter(executors.into_iter().enumerate())
        .map(|(i, executor)| {
            let mut client = scheduler_client(
                &channels[i % channels.len()],
                CallCredentials::Register {
                    cluster: cluster_key.clone(),
                    id: executor.id.clone(),
                },
            );
            let cluster_key = cluster_key.clone();
            async move {
                let request = proto::RegisterExecutorRequest {
                    metadata: Some(proto::ExecutorMetadata {
                        id: executor.id.clone(),
                        host: control_addr.ip().to_string(),
                        port: control_addr.port() as u32,
                        slots: slots as u32,
                        version: format!("{}-simulated", env!("CARGO_PKG_VERSION")),
                    }),
                    memory: None,
                    cleanups_in_launches: true,
                };
                let answer = client
                    .register_executor(request)
                    .await
                    .map_err(|s| {
                        BallistaError::Internal(format!(
                            "simulated executor {} could not register: {}",
                            executor.id,
                            s.message()
                        ))
                    })?
                    .into_inner();
                let key = unwrap_session_key(
                    &cluster_key,
                    &executor.id,
                    &answer.session_key,
                    &answer.key_nonce,
                )?;
                *executor.session.write() = Some(key);
                Ok(())
            }
        })
        .buffer_unordered(REGISTRATION_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn heartbeats(
    shared: Arc<Shared>,
    channels: Vec<Channel>,
    cluster_key: SecretKey,
    interval: Duration,
) {
    let clients: Vec<(String, SchedulerGrpcClient<AuthChannel>)> = shared
        .executors
        .values()
        .enumerate()
        .map(|(i, executor)| {
            let client = executor.client(&channels[i % channels.len()], &cluster_key);
            (executor.id.clone(), client)
        })
        .collect();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        shared.log.lock().heartbeats += clients.len() as u64;
        futures::stream::iter(clients.iter().cloned())
            .for_each_concurrent(REGISTRATION_CONCURRENCY, |(id, mut client)| async move {
                let request = proto::HeartBeatRequest {
                    executor_id: id.clone(),
                    running_tasks: 0,
                    memory: None,
                    draining: false,
                };
                if let Err(status) = client.heart_beat(request).await {
                    tracing::warn!("heartbeat of simulated executor {id}: {}", status.message());
                }
            })
            .await;
    }
}

async fn report_statuses(
    shared: Arc<Shared>,
    client: SchedulerGrpcClient<AuthChannel>,
    executor: Arc<SimulatedExecutor>,
    mut statuses: mpsc::UnboundedReceiver<proto::TaskStatus>,
) {
    let executor_id = &executor.id;
    // Over the report stream, held while slots are free, as a real
    // executor sends them; retried until the scheduler has the outcome.
    let mut channel = ReportChannel::new(client);
    let mut report_seq = 0;
    let mut batch = Vec::new();
    loop {
        let (free_slots, idle) = {
            let free = executor.free_since.lock();
            (!free.is_empty(), free.len() >= executor.slots)
        };
        if let Some(hold) = channel.report_due(!batch.is_empty(), free_slots, idle) {
            report_seq += 1;
            {
                let mut log = shared.log.lock();
                log.status_calls += 1;
                log.held_reports += u64::from(hold && batch.is_empty());
            }
            channel.send(proto::UpdateTaskStatusRequest {
                executor_id: executor_id.clone(),
                statuses: std::mem::take(&mut batch),
                report_seq,
                refused: Vec::new(),
                hold,
            });
        }
        let pause_ends = channel.hold_pause_ends();
        tokio::select! {
            status = statuses.recv() => match status {
                Some(status) => {
                    batch.push(status);
                    while let Ok(more) = statuses.try_recv() {
                        batch.push(more);
                    }
                }
                None => return,
            },
            (_, answer) = channel.answer() => {
                if !answer.cleanups.is_empty() {
                    shared.log.lock().answer_cleanups += answer.cleanups.len() as u64;
                }
                if !answer.launches.is_empty() {
                    let bytes: usize = answer
                        .launches
                        .iter()
                        .map(prost::Message::encoded_len)
                        .sum();
                    {
                        let mut log = shared.log.lock();
                        log.answers_with_tasks += 1;
                        log.answer_tasks += answer.launches.len() as u64;
                    }
                    run_tasks(&shared, &executor, answer.launches, bytes as u64);
                }
            }
            () = tokio::time::sleep_until(pause_ends.unwrap_or_else(tokio::time::Instant::now)),
                if pause_ends.is_some() => {}
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Records tasks launched on `executor` (by call or in a report's answer)
/// and reports each a success once the task time has passed.
fn run_tasks(
    shared: &Arc<Shared>,
    executor: &Arc<SimulatedExecutor>,
    tasks: Vec<proto::TaskDefinition>,
    bytes: u64,
) {
    let at = Instant::now();
    let mut records = Vec::with_capacity(tasks.len());
    {
        let mut free = executor.free_since.lock();
        for task in &tasks {
            let id = task.task.clone().unwrap_or_default();
            records.push(LaunchRecord {
                at,
                job_id: id.job_id,
                stage_id: id.stage_id,
                slot_free_at: free.pop_front().unwrap_or(at),
            });
        }
    }
    {
        let mut log = shared.log.lock();
        log.launch_bytes += bytes;
        log.launches.extend(records);
    }
    let shared = Arc::clone(shared);
    let executor = Arc::clone(executor);
    tokio::spawn(async move {
        let started_at_ms = now_ms();
        if !shared.task_time.is_zero() {
            tokio::time::sleep(shared.task_time).await;
        }
        let ended_at_ms = now_ms();
        let done = Instant::now();
        let mut completions = Vec::with_capacity(tasks.len());
        for task in tasks {
            let id = task.task.unwrap_or_default();
            completions.push(CompletionRecord {
                at: done,
                job_id: id.job_id.clone(),
                stage_id: id.stage_id,
            });
            executor.free_since.lock().push_back(done);
            // One small output partition per task, numbered like the
            // task: every consumer task then reads one location.
            let location = proto::ShuffleLocation {
                job_id: id.job_id.clone(),
                stage_id: id.stage_id,
                map_partition: id.partition,
                output_partition: id.partition,
                attempt: id.attempt,
                executor_id: executor.id.clone(),
                host: shared.address.ip().to_string(),
                port: u32::from(shared.address.port()),
                path: format!(
                    "{}/s{}/m{}-a{}-p{}.arrow",
                    id.job_id, id.stage_id, id.partition, id.attempt, id.partition
                ),
                stats: Some(proto::PartitionStats {
                    num_rows: 1,
                    num_batches: 1,
                    num_bytes: 64,
                }),
                durable: false,
                ticket: Default::default(),
            };
            let status = proto::TaskStatus {
                task: Some(id),
                executor_id: executor.id.clone(),
                result: Some(proto::task_status::Result::Succeeded(proto::TaskSuccess {
                    locations: vec![location],
                    metrics: Some(proto::TaskMetrics {
                        started_at_ms,
                        ended_at_ms,
                        ..Default::default()
                    }),
                })),
                started_at_ms,
                ended_at_ms,
            };
            let _ = executor.statuses.send(status);
        }
        shared.log.lock().completions.extend(completions);
    });
}

struct SimulatedControl {
    shared: Arc<Shared>,
}

impl SimulatedControl {
    /// The executor a call is for, once the scheduler's proof is checked
    /// against that executor's session key.
    fn callee<T>(
        &self,
        request: &Request<T>,
    ) -> std::result::Result<Arc<SimulatedExecutor>, Status> {
        let proof = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(Proof::parse)
            .filter(|p| p.role == ProofRole::Scheduler)
            .ok_or_else(|| Status::unauthenticated("expected the scheduler's proof"))?;
        let executor = self
            .shared
            .executors
            .get(&proof.subject)
            .ok_or_else(|| Status::not_found(format!("no executor {}", proof.subject)))?;
        let valid = executor
            .session
            .read()
            .as_ref()
            .is_some_and(|key| proof.verify(key));
        if !valid {
            return Err(Status::unauthenticated(
                "the scheduler's proof does not match the session key",
            ));
        }
        Ok(Arc::clone(executor))
    }
}

#[tonic::async_trait]
impl ExecutorControl for SimulatedControl {
    async fn launch_tasks(
        &self,
        request: Request<proto::LaunchTasksRequest>,
    ) -> std::result::Result<Response<proto::LaunchTasksResponse>, Status> {
        let executor = self.callee(&request)?;
        let request = request.into_inner();
        let bytes = prost::Message::encoded_len(&request) as u64;
        {
            let mut log = self.shared.log.lock();
            log.launch_calls += 1;
            log.launch_cleanups += request.cleanups.len() as u64;
        }
        run_tasks(&self.shared, &executor, request.tasks, bytes);
        Ok(Response::new(proto::LaunchTasksResponse {
            rejected: Vec::new(),
        }))
    }

    async fn cancel_tasks(
        &self,
        request: Request<proto::CancelTasksRequest>,
    ) -> std::result::Result<Response<proto::CancelTasksResponse>, Status> {
        self.callee(&request)?;
        self.shared.log.lock().cleanup_calls += 1;
        Ok(Response::new(proto::CancelTasksResponse { cancelled: 0 }))
    }

    async fn remove_job_data(
        &self,
        request: Request<proto::RemoveJobDataRequest>,
    ) -> std::result::Result<Response<proto::RemoveJobDataResponse>, Status> {
        self.callee(&request)?;
        self.shared.log.lock().cleanup_calls += 1;
        Ok(Response::new(proto::RemoveJobDataResponse {}))
    }

    async fn release_stage_outputs(
        &self,
        request: Request<proto::ReleaseStageOutputsRequest>,
    ) -> std::result::Result<Response<proto::ReleaseStageOutputsResponse>, Status> {
        self.callee(&request)?;
        self.shared.log.lock().cleanup_calls += 1;
        Ok(Response::new(proto::ReleaseStageOutputsResponse {
            released_bytes: 0,
        }))
    }
}
