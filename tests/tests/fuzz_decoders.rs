//! Deterministic, bounded fuzzing of every decoder a peer on the network can
//! reach, run with the other tests.
//!
//! Inputs start from valid messages built the way the framework builds them
//! (a client's encoded plans, the scheduler's task plans, real tickets,
//! registrations and task reports), then mutated: bit flips, bytes set to
//! 0x00 / 0xff / 0x7f / 0x80, truncation, a duplicated slice, inserted random
//! bytes, huge varints and length prefixes (`ff ff ff ff 0f`), two seeds
//! spliced, and now and then a fully random buffer. A seeded xorshift64*
//! makes every choice, so a campaign is the same on every run (up to the ids
//! and ports the cluster picks).
//!
//! * Over the network, 1,000 inputs per method: every method of the scheduler
//!   (`ballista.SchedulerGrpc`), of the executor's control service
//!   (`ballista.ExecutorControl`) and of its Arrow Flight service, the
//!   mutated bytes sent as the request body through a raw-bytes codec, to a
//!   scheduler and an executor started in this process on loopback. Task
//!   reports also name a real job while it runs. Every call must be answered
//!   within 30 s; after each method the scheduler must still list the real
//!   executor and the executor must still answer; at the end a query through
//!   the client must return the right rows.
//! * In process, 10,000 inputs each: a client's logical plan as the scheduler
//!   decodes it (`decode_client_plan`) and plans it (`JobPlanner::plan`), a
//!   stage plan as an executor decodes it (`decode_stage_plan`), Arrow IPC
//!   schemas (`decode_schema`), Flight tickets (`decode_ticket` and
//!   `resolve_ticket_path`) and the `ErrorInfo` in a gRPC status's details.
//!
//! Every test asserts: no panic anywhere in the process (the services run
//! here, where tonic and tokio would catch a handler's panic, so a panic hook
//! counts them) except inside the framework's guarded decoders, which turn a
//! third-party decoder's panic into an `InvalidInput` error (those are
//! counted and reported), every unchanged seed answered as expected, no input that
//! does not parse accepted, the invariants of accepted inputs (a ticket
//! resolves inside its job's directory; an error keeps its kind), at most
//! 1 GiB held at once and no single allocation over 512 MiB (a counting
//! global allocator). A request over 4 GiB is refused rather than let a
//! decoder take the machine's memory: the process then stops with "memory
//! allocation of N bytes failed", and the last `fuzzing <decoder>` line on
//! stderr names the decoder. The Arrow IPC data streams are fuzzed in
//! `fuzz_shuffle_data.rs`.
//!
//! A longer campaign: `BALLISTA_FUZZ_INPUTS=5000 cargo test -p ballista-tests
//! --test fuzz_decoders -- --nocapture` (in-process decoders get ten times
//! as many); `BALLISTA_FUZZ_SEED=<n>` explores other inputs. Each decoder's
//! line in the output says how many inputs it got, how many parsed as its
//! message, how many it accepted, and how many got which gRPC code or error
//! kind.

mod fuzz_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow_flight::utils::batches_to_flight_data;
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, HandshakeRequest, Ticket,
};
use ballista::BallistaError;
use ballista::auth::{AuthChannel, CallCredentials, SecretKey};
use ballista::client::ClientAuth;
use ballista::client::{SchedulerClient, SessionContextExt};
use ballista::config::{
    BallistaConfig, JOB_TIMEOUT_KEY, session_config_from_settings, settings_from_session_config,
};
use ballista::executor::{ExecutorHandle, start_executor};
use ballista::flight::{
    decode_ticket, encode_ticket, flight_endpoint, resolve_ticket_path, sign_ticket,
};
use ballista::ids::{ExecutorId, JobId, StageId};
use ballista::plan::{
    DistributedPlan, StagePlan, decode_client_plan, decode_stage_plan, encode_client_plan,
    encode_stage_plan, resolve_shuffle_reads,
};
use ballista::plugin::auth::Identity;
use ballista::plugin::shuffle::{ExecutorAddress, PartitionStats, ShuffleLocation};
use ballista::proto::executor_control_client::ExecutorControlClient;
use ballista::proto::scheduler_grpc_client::SchedulerGrpcClient;
use ballista::proto::task_status::Result as TaskResult;
use ballista::proto::{self, decode_schema, encode_schema, execute_query_request::Query};
use ballista::scheduler::{JobPlanner, SchedulerHandle, start_scheduler};
use ballista::util::{LargeStack, now_ms};
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{CsvReadOptions, SessionContext};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use fuzz_support::{
    Campaign, DecoderSeed, Mutator, Origin, Tally, Verdict, fuzz_in_process, network_inputs,
    parses_as, runtime,
};
use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};

/// A call not answered within this long is a hung handler.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// A stream of responses is read for at most this long (a job's status
/// stream lasts as long as the job), then dropped.
const STREAM_DRAIN_BOUND: Duration = Duration::from_secs(10);
/// Jobs that mutated requests start end by themselves after this long.
const JOB_TIMEOUT_SECS: u64 = 60;
const EXECUTOR_SLOTS: usize = 4;
/// Executor ids of the registrations, heartbeats and reports the fuzzer
/// sends: never the real executor's.
const JUNK_EXECUTORS: [&str; 2] = ["fuzz-executor-1", "fuzz-executor-2"];
/// Nothing listens there: tasks placed on a junk executor fail to launch at once.
const JUNK_EXECUTOR_PORT: u32 = 1;
const INVALID_JOB_ID: &str = "../../etc";
/// Clean-up calls and the final query may take longer than one call.
const CLEAN_UP_TIMEOUT: Duration = Duration::from_secs(60);
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// The job id of the plans and tasks built as seeds (fixed, so that the
/// seeds are the same bytes on every run).
fn fuzz_job_id() -> JobId {
    JobId::parse("fuzzjob-000000001").expect("a valid job id")
}

// ---------------------------------------------------------------------------
// Raw gRPC calls
// ---------------------------------------------------------------------------

/// A codec that sends the request bytes as they are and returns the
/// response bytes undecoded.
#[derive(Debug, Clone, Copy, Default)]
struct RawBytes;

impl Codec for RawBytes {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }

    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl Encoder for RawBytes {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}

#[derive(Debug, Clone, Copy)]
enum Service {
    Scheduler,
    Executor,
}

#[derive(Debug, Clone, Copy)]
enum CallShape {
    Unary,
    ServerStreaming,
    /// One request message, then the responses.
    BidiStreaming,
}

/// A valid request and the code it must be answered with.
#[derive(Clone)]
struct Seed {
    bytes: Vec<u8>,
    answer: Code,
}

fn seed<M: Message>(message: &M, answer: Code) -> Seed {
    Seed {
        bytes: message.encode_to_vec(),
        answer,
    }
}

/// One RPC method and its seeds.
struct NetworkTarget {
    service: Service,
    /// `/package.Service/Method`, as the generated clients call it.
    method: &'static str,
    shape: CallShape,
    /// Whether bytes parse as the method's request message.
    parses: fn(&[u8]) -> bool,
    seeds: Vec<Seed>,
}

impl NetworkTarget {
    fn new<M: Message + Default>(
        service: Service,
        method: &'static str,
        shape: CallShape,
        seeds: Vec<Seed>,
    ) -> Self {
        Self {
            service,
            method,
            shape,
            parses: parses_as::<M>,
            seeds,
        }
    }
}

/// How a call ended.
enum Answer {
    Code(Code),
    NoAnswer,
}

async fn call(channel: AuthChannel, target: &NetworkTarget, body: Vec<u8>) -> Answer {
    let exchanged = exchange(channel, target.method, target.shape, Bytes::from(body));
    match tokio::time::timeout(CALL_TIMEOUT, exchanged).await {
        Ok(Ok(())) => Answer::Code(Code::Ok),
        Ok(Err(status)) => Answer::Code(status.code()),
        Err(_) => Answer::NoAnswer,
    }
}

async fn exchange(
    channel: AuthChannel,
    method: &'static str,
    shape: CallShape,
    body: Bytes,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("the channel is not ready: {e}")))?;
    let path = PathAndQuery::from_static(method);
    match shape {
        CallShape::Unary => grpc
            .unary(Request::new(body), path, RawBytes)
            .await
            .map(|_| ()),
        CallShape::ServerStreaming => {
            let responses = grpc
                .server_streaming(Request::new(body), path, RawBytes)
                .await?;
            drain(responses.into_inner()).await
        }
        CallShape::BidiStreaming => {
            let requests = futures::stream::once(std::future::ready(body));
            let responses = grpc
                .streaming(Request::new(requests), path, RawBytes)
                .await?;
            drain(responses.into_inner()).await
        }
    }
}

/// Reads responses until the stream ends, fails, or [`STREAM_DRAIN_BOUND`]
/// passes (a stream still open then was answered).
async fn drain(mut responses: Streaming<Bytes>) -> Result<(), Status> {
    let deadline = tokio::time::Instant::now() + STREAM_DRAIN_BOUND;
    loop {
        match tokio::time::timeout_at(deadline, responses.message()).await {
            Err(_) | Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(_))) => {}
            Ok(Err(status)) => return Err(status),
        }
    }
}

async fn connect(url: &str) -> Channel {
    flight_endpoint(url, &Default::default())
        .expect("a valid URL")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

// ---------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------

/// A scheduler and one executor in this process, on loopback.
struct Cluster {
    scheduler: SchedulerHandle,
    executor: ExecutorHandle,
    scheduler_url: String,
    client: SchedulerClient,
    scheduler_channel: Channel,
    executor_channel: Channel,
    cluster_key: SecretKey,
}

impl Cluster {
    async fn start() -> Self {
        let mut config = BallistaConfig::default();
        let cluster_key = SecretKey::random().expect("a random key");
        config.cluster_key = Some(cluster_key.clone());
        let scheduler_settings = &mut config.settings.scheduler;
        scheduler_settings.bind_host = "127.0.0.1".into();
        scheduler_settings.port = 0;
        scheduler_settings.http.port = Some(0);
        scheduler_settings.job_timeout_secs = JOB_TIMEOUT_SECS;
        let scheduler = start_scheduler(config.clone())
            .await
            .expect("the scheduler starts");
        let scheduler_url = scheduler.url();

        let executor_settings = &mut config.settings.executor;
        executor_settings.bind_host = "127.0.0.1".into();
        executor_settings.external_host = Some("127.0.0.1".into());
        executor_settings.port = 0;
        executor_settings.http.port = Some(0);
        executor_settings.scheduler_url = scheduler_url.clone();
        executor_settings.slots = EXECUTOR_SLOTS;
        executor_settings.heartbeat_interval_secs = 1;
        let executor = start_executor(config).await.expect("the executor starts");
        let executor_url = format!("http://127.0.0.1:{}", executor.local_addr().port());

        let cluster = Self {
            client: SchedulerClient::connect_with(
                &scheduler_url,
                ClientAuth::ClusterKey(cluster_key.clone()),
            )
            .await
            .expect("the scheduler answers"),
            cluster_key,
            scheduler_channel: connect(&scheduler_url).await,
            executor_channel: connect(&executor_url).await,
            scheduler,
            executor,
            scheduler_url,
        };
        cluster.wait_for_real_executor().await;
        cluster
    }

    fn executor_id(&self) -> &str {
        self.executor.address().id.as_str()
    }

    /// A channel to `target`'s service with the credentials its callers
    /// have: the executor's for the calls executors make, the scheduler's
    /// for the executor's control service, an admin's for the rest. The
    /// fuzzed bodies then reach the decoders behind the gate.
    fn channel(&self, target: &NetworkTarget) -> AuthChannel {
        let credentials = match target.method {
            "/ballista.SchedulerGrpc/RegisterExecutor" => CallCredentials::Register {
                cluster: self.cluster_key.clone(),
                id: JUNK_EXECUTORS[0].to_string(),
            },
            "/ballista.SchedulerGrpc/HeartBeat"
            | "/ballista.SchedulerGrpc/UpdateTaskStatus"
            | "/ballista.SchedulerGrpc/ReportTaskStatuses" => self
                .executor
                .executor_credentials()
                .expect("the executor has registered"),
            method if method.starts_with("/ballista.ExecutorControl/") => {
                self.scheduler_credentials()
            }
            _ => self.admin(),
        };
        let channel = match target.service {
            Service::Scheduler => self.scheduler_channel.clone(),
            Service::Executor => self.executor_channel.clone(),
        };
        credentials.wrap(channel)
    }

    fn admin(&self) -> CallCredentials {
        CallCredentials::Admin(self.cluster_key.clone())
    }

    /// What the scheduler calls the executor's control service with.
    fn scheduler_credentials(&self) -> CallCredentials {
        self.executor
            .scheduler_credentials()
            .expect("the executor has registered")
    }

    /// The ids of the executors the scheduler lists.
    async fn registered_executors(&self) -> Vec<String> {
        tokio::time::timeout(CALL_TIMEOUT, self.client.executors())
            .await
            .expect("GetExecutorsMetadata is answered in time")
            .expect("GetExecutorsMetadata succeeds")
            .into_iter()
            .filter_map(|executor| executor.metadata)
            .map(|metadata| metadata.id)
            .collect()
    }

    /// Waits until the scheduler lists the real executor (one the scheduler
    /// forgot registers again at its next heartbeat).
    async fn wait_for_real_executor(&self) {
        let deadline = Instant::now() + CLEAN_UP_TIMEOUT;
        loop {
            let registered = self.registered_executors().await;
            if registered.iter().any(|id| id == self.executor_id()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the scheduler no longer lists executor {}: {registered:?}",
                self.executor_id()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Both services still answer real requests.
    async fn assert_serving(&self) {
        self.wait_for_real_executor().await;
        let mut control = ExecutorControlClient::new(
            self.scheduler_credentials()
                .wrap(self.executor_channel.clone()),
        );
        let request = proto::CancelTasksRequest {
            job_id: JobId::generate().to_string(),
        };
        let reply = tokio::time::timeout(CALL_TIMEOUT, control.cancel_tasks(request))
            .await
            .expect("the executor answers in time")
            .expect("the executor serves CancelTasks");
        assert_eq!(reply.into_inner().cancelled, 0);
    }

    /// Deregisters every executor but the real one; returns how many.
    async fn remove_junk_executors(&self) -> usize {
        let mut scheduler =
            SchedulerGrpcClient::new(self.admin().wrap(self.scheduler_channel.clone()));
        let junk: Vec<String> = self
            .registered_executors()
            .await
            .into_iter()
            .filter(|id| id != self.executor_id())
            .collect();
        for executor_id in &junk {
            let request = proto::DeregisterExecutorRequest {
                executor_id: executor_id.clone(),
                reason: "fuzz clean-up".into(),
                takes_removals: false,
            };
            tokio::time::timeout(CALL_TIMEOUT, scheduler.deregister_executor(request))
                .await
                .expect("DeregisterExecutor is answered in time")
                .expect("DeregisterExecutor succeeds");
        }
        junk.len()
    }

    /// Stops what the executor runs of `job_id` and deletes its data.
    async fn forget_job_on_executor(&self, job_id: &JobId) {
        let mut control = ExecutorControlClient::new(
            self.scheduler_credentials()
                .wrap(self.executor_channel.clone()),
        );
        let cancel = proto::CancelTasksRequest {
            job_id: job_id.to_string(),
        };
        tokio::time::timeout(CLEAN_UP_TIMEOUT, control.cancel_tasks(cancel))
            .await
            .expect("CancelTasks is answered in time")
            .expect("CancelTasks succeeds");
        let remove = proto::RemoveJobDataRequest {
            job_id: job_id.to_string(),
        };
        tokio::time::timeout(CLEAN_UP_TIMEOUT, control.remove_job_data(remove))
            .await
            .expect("RemoveJobData is answered in time")
            .expect("RemoveJobData succeeds");
    }

    async fn shutdown(self) {
        self.executor.shutdown().await;
        self.scheduler.shutdown().await;
    }
}

/// Runs SQL text on the cluster to its end; its final status.
async fn run_sql_to_end(client: &SchedulerClient, sql: &str) -> proto::JobStatus {
    let request = proto::ExecuteQueryRequest {
        query: Some(Query::Sql(sql.to_string())),
        ..Default::default()
    };
    let finished = tokio::time::timeout(QUERY_TIMEOUT, async {
        let mut updates = client
            .execute(request)
            .await
            .expect("the query is accepted");
        let mut last = None;
        while let Some(status) = updates.message().await.expect("the status stream") {
            last = Some(status);
        }
        last.expect("a final status")
    })
    .await
    .unwrap_or_else(|_| panic!("{sql} did not end within {QUERY_TIMEOUT:?}"));
    assert_eq!(
        finished.state,
        proto::JobState::Succeeded as i32,
        "{sql}: {finished:?}"
    );
    finished
}

/// The path of a result partition that holds rows.
fn result_path(status: &proto::JobStatus) -> String {
    status
        .result
        .iter()
        .flat_map(|result| &result.partitions)
        .flat_map(|partition| &partition.locations)
        .find(|location| location.stats.as_ref().is_some_and(|s| s.num_rows > 0))
        .map(|location| location.path.clone())
        .unwrap_or_else(|| panic!("no result location holds rows: {status:?}"))
}

async fn collect_sql(
    ctx: &SessionContext,
    sql: &str,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    ctx.sql(sql).await?.collect().await
}

/// A query through the framework's client returns the right rows.
async fn assert_cluster_answers_queries(cluster: &Cluster) {
    let config = BallistaConfig::builder()
        .cluster_key(cluster.cluster_key.clone())
        .build();
    let ctx = SessionContext::remote_with_config(&cluster.scheduler_url, config)
        .await
        .expect("a client connects");
    let sql = "SELECT v % 7 AS k, count(*) AS n \
               FROM (SELECT value AS v FROM generate_series(1, 1000)) GROUP BY v % 7";
    let batches = tokio::time::timeout(QUERY_TIMEOUT, collect_sql(&ctx, sql))
        .await
        .expect("the query ends in time")
        .expect("the query succeeds");
    let mut counts = Vec::new();
    for batch in &batches {
        let column = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("an Int64 column")
                .clone()
        };
        let (k, n) = (column(0), column(1));
        counts.extend((0..batch.num_rows()).map(|row| (k.value(row), n.value(row))));
    }
    counts.sort_unstable();
    let expected: Vec<(i64, i64)> = (0..7)
        .map(|k| (k, if k == 0 { 142 } else { 143 }))
        .collect();
    assert_eq!(counts, expected, "{sql}");
}

// ---------------------------------------------------------------------------
// Plans as the client and the scheduler encode them
// ---------------------------------------------------------------------------

/// The queries whose plans are seeds, and whether a task of theirs ends in
/// bounded time whatever numbers a mutation puts into its plan (their rows
/// travel in the plan: no `generate_series` bound or recursion limit to
/// raise), so that the executor may run mutated ones.
const SEED_QUERIES: &[(&str, bool)] = &[
    (
        "SELECT k, name, score FROM (VALUES (1, 'one'), (2, 'two'), (3, 'three')) AS t(k, name) \
         JOIN (VALUES (1, 1.5), (3, 2.5)) AS u(j, score) ON k = j",
        true,
    ),
    (
        "SELECT region, sum(amount) AS total, count(*) AS n FROM sales \
         GROUP BY region HAVING sum(amount) > 10 ORDER BY total DESC",
        true,
    ),
    (
        "SELECT DISTINCT s, length(s) AS len FROM (VALUES ('a'), ('bb'), (NULL), ('a')) AS t(s) \
         WHERE s IS NOT NULL ORDER BY s LIMIT 10",
        true,
    ),
    (
        "SELECT region, amount, row_number() OVER (PARTITION BY region ORDER BY amount DESC) AS r, \
         sum(amount) OVER (ORDER BY amount ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS w \
         FROM sales",
        true,
    ),
    ("SELECT 1 AS one, 'x' AS s, CAST(NULL AS DOUBLE) AS d", true),
    (
        "SELECT v % 7 AS k, count(*) AS n, sum(v) AS s \
         FROM (SELECT value AS v FROM generate_series(1, 1000)) GROUP BY v % 7 ORDER BY k",
        false,
    ),
    (
        "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 10) \
         SELECT sum(n) AS total FROM r",
        false,
    ),
    (
        "SELECT id, upper(name) AS name FROM people WHERE id > 1",
        false,
    ),
];

/// A stage plan as the scheduler ships it.
struct EncodedStage {
    stage_id: StageId,
    plan: Vec<u8>,
}

struct SeedQuery {
    /// What the client sends.
    request: proto::ExecuteQueryRequest,
    /// The job's settings on the scheduler (sorted).
    settings: Vec<(String, String)>,
    /// Its stages, shuffle reads resolved, as executors receive them.
    stages: Vec<EncodedStage>,
    /// Its stages as the planner checks that they travel.
    unresolved_stages: Vec<Vec<u8>>,
    bounded: bool,
}

/// The seed queries planned by a client session and by the scheduler's
/// planner, as job [`fuzz_job_id`].
struct PlanFixtures {
    planner: Arc<JobPlanner>,
    job_id: JobId,
    queries: Vec<SeedQuery>,
    _data_dir: tempfile::TempDir,
}

impl PlanFixtures {
    /// Shuffle reads resolve to locations on `executor`.
    async fn build(executor: &ExecutorAddress) -> Self {
        let job_id = fuzz_job_id();
        let planner = JobPlanner::try_new(&BallistaConfig::default())
            .await
            .expect("a job planner");
        let data_dir = tempfile::tempdir().expect("a temporary directory");
        let client = client_session(&planner, data_dir.path()).await;
        let mut queries = Vec::new();
        for &(sql, bounded) in SEED_QUERIES {
            let request = client_request(&client, sql).await;
            let job_settings = planner.job_settings(&request, EXECUTOR_SLOTS);
            let plan = planner
                .plan(&job_id, &request, &job_settings, &Identity::cluster_admin())
                .await
                .unwrap_or_else(|e| panic!("the scheduler cannot plan {sql}: {e}"));
            let mut settings: Vec<(String, String)> = job_settings.into_iter().collect();
            settings.sort();
            queries.push(SeedQuery {
                stages: encode_resolved_stages(&plan, executor),
                unresolved_stages: encode_unresolved_stages(&plan),
                request,
                settings,
                bounded,
            });
        }
        Self {
            planner: Arc::new(planner),
            job_id,
            queries,
            _data_dir: data_dir,
        }
    }

    /// The client plans, as the scheduler receives them.
    fn logical_plans(&self) -> Vec<Vec<u8>> {
        self.queries
            .iter()
            .filter_map(|query| match &query.request.query {
                Some(Query::LogicalPlan(bytes)) => Some(bytes.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every stage plan, resolved and unresolved.
    fn stage_plans(&self) -> Vec<Vec<u8>> {
        self.queries
            .iter()
            .flat_map(|query| {
                let resolved = query.stages.iter().map(|stage| stage.plan.clone());
                resolved.chain(query.unresolved_stages.iter().cloned())
            })
            .collect()
    }

    /// A task context like the one an executor decodes a task's plan with.
    fn task_context(&self) -> Arc<TaskContext> {
        let settings: HashMap<String, String> = self.queries[0].settings.iter().cloned().collect();
        let config = session_config_from_settings(&settings).expect("the job's settings are valid");
        SessionContext::new_with_config(config).task_ctx()
    }
}

/// A session like a client's: the scheduler's session defaults, a table in
/// memory (which travels with the query) and a CSV file.
async fn client_session(planner: &JobPlanner, data_dir: &Path) -> SessionContext {
    let defaults = planner.default_settings(EXECUTOR_SLOTS);
    let config = session_config_from_settings(&defaults)
        .expect("the scheduler's session defaults are valid");
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    let client = SessionContext::new_with_state(state);
    client
        .register_batch("sales", sales())
        .expect("register the sales table");
    let people = data_dir.join("people.csv");
    std::fs::write(&people, "id,name\n1,ada\n2,grace\n3,linus\n").expect("write people.csv");
    client
        .register_csv(
            "people",
            people.to_str().expect("a UTF-8 path"),
            CsvReadOptions::new(),
        )
        .await
        .expect("register the people table");
    client
}

fn sales() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("region", DataType::Utf8, true),
        Field::new("amount", DataType::Int64, false),
    ]));
    let regions = StringArray::from(vec![
        Some("north"),
        Some("south"),
        None,
        Some("north"),
        Some("east"),
    ]);
    let amounts = Int64Array::from(vec![12, 7, 3, 25, 9]);
    RecordBatch::try_new(
        schema,
        vec![Arc::new(regions) as ArrayRef, Arc::new(amounts) as ArrayRef],
    )
    .expect("a valid batch")
}

/// The request a client sends for `sql`: its optimized plan, encoded as the
/// client encodes it, with the session's settings.
async fn client_request(client: &SessionContext, sql: &str) -> proto::ExecuteQueryRequest {
    let plan = client
        .sql(sql)
        .await
        .and_then(|frame| frame.into_optimized_plan())
        .unwrap_or_else(|e| panic!("the client cannot plan {sql}: {e}"));
    let state = client.state();
    let bytes = encode_client_plan(&plan, &state)
        .await
        .unwrap_or_else(|e| panic!("the client cannot encode {sql}: {e}"));
    proto::ExecuteQueryRequest {
        query: Some(Query::LogicalPlan(bytes)),
        settings: proto::key_values(settings_from_session_config(state.config())),
        plan_is_optimized: true,
        session_id: state.session_id().to_string(),
        ..Default::default()
    }
}

/// What every task of `stage` would commit, on `executor`.
fn committed_outputs(stage: &StagePlan, executor: &ExecutorAddress) -> Vec<ShuffleLocation> {
    let job_id = stage.plan.job_id();
    let mut locations = Vec::new();
    for map_partition in 0..stage.plan.input_partition_count() {
        for output_partition in 0..stage.plan.output_partition_count() {
            locations.push(ShuffleLocation {
                job_id: job_id.clone(),
                stage_id: stage.stage_id,
                map_partition,
                output_partition,
                attempt: 0,
                executor: executor.clone(),
                path: format!(
                    "{job_id}/s{}/m{map_partition}-a0-p{output_partition}.arrow",
                    stage.stage_id
                ),
                stats: PartitionStats {
                    num_rows: 100,
                    num_batches: 1,
                    num_bytes: 4096,
                },
                durable: false,
                ticket: Vec::new(),
            });
        }
    }
    locations
}

/// Every stage of `plan` as the scheduler ships it to an executor: its
/// shuffle reads resolved to locations on `executor`.
fn encode_resolved_stages(plan: &DistributedPlan, executor: &ExecutorAddress) -> Vec<EncodedStage> {
    let outputs: HashMap<StageId, Vec<ShuffleLocation>> = plan
        .stages
        .iter()
        .map(|stage| (stage.stage_id, committed_outputs(stage, executor)))
        .collect();
    plan.stages
        .iter()
        .map(|stage| {
            let unresolved: Arc<dyn ExecutionPlan> = stage.plan.clone();
            let resolved =
                resolve_shuffle_reads(unresolved, &outputs).expect("the stage's reads resolve");
            EncodedStage {
                stage_id: stage.stage_id,
                plan: encode_stage_plan(&resolved).expect("a resolved stage plan encodes"),
            }
        })
        .collect()
}

fn encode_unresolved_stages(plan: &DistributedPlan) -> Vec<Vec<u8>> {
    plan.stages
        .iter()
        .map(|stage| {
            let unresolved: Arc<dyn ExecutionPlan> = stage.plan.clone();
            encode_stage_plan(&unresolved).expect("a stage plan encodes")
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Seeds of the network methods
// ---------------------------------------------------------------------------

/// What the network seeds refer to.
struct NetworkFixtures {
    plans: PlanFixtures,
    /// A job that has ended.
    finished_job: JobId,
    /// A job whose results are kept (and served over Flight) to the end.
    result_job: JobId,
    result_path: String,
    executor: ExecutorAddress,
    /// The executor's session key, which the scheduler signs its tickets with.
    ticket_key: SecretKey,
}

impl NetworkFixtures {
    async fn prepare(cluster: &Cluster) -> Self {
        let sql = "SELECT v, v * v AS square FROM (SELECT value AS v FROM generate_series(1, 100))";
        let finished = run_sql_to_end(&cluster.client, sql).await;
        let results = run_sql_to_end(&cluster.client, sql).await;
        let executor = cluster.executor.address().clone();
        let Some(CallCredentials::Scheduler {
            key: ticket_key, ..
        }) = cluster.executor.scheduler_credentials()
        else {
            panic!("the executor has registered");
        };
        Self {
            ticket_key,
            plans: PlanFixtures::build(&executor).await,
            finished_job: JobId::parse(&finished.job_id).expect("a job id"),
            result_job: JobId::parse(&results.job_id).expect("a job id"),
            result_path: result_path(&results),
            executor,
        }
    }
}

/// Seeds of a method taking a job id: a job that has ended, a job the
/// scheduler never saw and an invalid id, with the answers they must get.
fn job_id_seeds<M: Message>(
    fixtures: &NetworkFixtures,
    request: impl Fn(String) -> M,
    answers: [Code; 3],
) -> Vec<Seed> {
    let job_ids = [
        fixtures.finished_job.to_string(),
        "fuzzjob-never-seen".to_string(),
        INVALID_JOB_ID.to_string(),
    ];
    job_ids
        .into_iter()
        .zip(answers)
        .map(|(job_id, answer)| seed(&request(job_id), answer))
        .collect()
}

fn scheduler_query_targets(fixtures: &NetworkFixtures) -> Vec<NetworkTarget> {
    vec![
        NetworkTarget::new::<proto::GetExecutorsMetadataRequest>(
            Service::Scheduler,
            "/ballista.SchedulerGrpc/GetExecutorsMetadata",
            CallShape::Unary,
            vec![seed(&proto::GetExecutorsMetadataRequest {}, Code::Ok)],
        ),
        NetworkTarget::new::<proto::GetSessionDefaultsRequest>(
            Service::Scheduler,
            "/ballista.SchedulerGrpc/GetSessionDefaults",
            CallShape::Unary,
            vec![seed(&proto::GetSessionDefaultsRequest {}, Code::Ok)],
        ),
        NetworkTarget::new::<proto::GetJobStatusRequest>(
            Service::Scheduler,
            "/ballista.SchedulerGrpc/GetJobStatus",
            CallShape::Unary,
            job_id_seeds(
                fixtures,
                |job_id| proto::GetJobStatusRequest { job_id },
                [Code::Ok, Code::NotFound, Code::InvalidArgument],
            ),
        ),
        NetworkTarget::new::<proto::CancelJobRequest>(
            Service::Scheduler,
            "/ballista.SchedulerGrpc/CancelJob",
            CallShape::Unary,
            job_id_seeds(
                fixtures,
                |job_id| proto::CancelJobRequest { job_id },
                [Code::Ok, Code::NotFound, Code::InvalidArgument],
            ),
        ),
        NetworkTarget::new::<proto::ReleaseJobRequest>(
            Service::Scheduler,
            "/ballista.SchedulerGrpc/ReleaseJob",
            CallShape::Unary,
            job_id_seeds(
                fixtures,
                |job_id| proto::ReleaseJobRequest { job_id },
                [Code::Ok, Code::Ok, Code::InvalidArgument],
            ),
        ),
    ]
}

fn execute_query_target(fixtures: &NetworkFixtures) -> NetworkTarget {
    let sql = proto::ExecuteQueryRequest {
        query: Some(Query::Sql(
            "SELECT v % 7 AS k, count(*) AS n \
             FROM (SELECT value AS v FROM generate_series(1, 1000)) GROUP BY v % 7"
                .into(),
        )),
        settings: proto::key_values([
            ("datafusion.execution.batch_size", "1024"),
            (JOB_TIMEOUT_KEY, "30"),
        ]),
        plan_is_optimized: false,
        session_id: "fuzz-session".into(),
        query_text: String::new(),
    };
    let mut seeds = vec![seed(&sql, Code::Ok)];
    seeds.extend(
        fixtures
            .plans
            .queries
            .iter()
            .map(|query| seed(&query.request, Code::Ok)),
    );
    NetworkTarget::new::<proto::ExecuteQueryRequest>(
        Service::Scheduler,
        "/ballista.SchedulerGrpc/ExecuteQuery",
        CallShape::ServerStreaming,
        seeds,
    )
}

fn memory_report(job_id: &JobId) -> proto::MemoryReport {
    proto::MemoryReport {
        budget_bytes: 8 << 30,
        reserved_bytes: 64 << 20,
        peak_bytes: 256 << 20,
        available_bytes: 4 << 30,
        task_min_bytes: 16 << 20,
        jobs: vec![proto::JobMemory {
            job_id: job_id.to_string(),
            executor_id: String::new(),
            tenant: "default".into(),
            reserved_bytes: 32 << 20,
            peak_bytes: 64 << 20,
            quota_bytes: 1 << 30,
        }],
    }
}

fn registration(id: &str, port: u32, slots: u32, job_id: &JobId) -> proto::RegisterExecutorRequest {
    proto::RegisterExecutorRequest {
        metadata: Some(proto::ExecutorMetadata {
            id: id.into(),
            host: "127.0.0.1".into(),
            port,
            slots,
            version: "0.1.0".into(),
        }),
        memory: Some(memory_report(job_id)),
        cleanups_in_launches: false,
    }
}

fn register_executor_target(fixtures: &NetworkFixtures) -> NetworkTarget {
    let job = &fixtures.finished_job;
    let [first, second] = JUNK_EXECUTORS;
    NetworkTarget::new::<proto::RegisterExecutorRequest>(
        Service::Scheduler,
        "/ballista.SchedulerGrpc/RegisterExecutor",
        CallShape::Unary,
        vec![
            seed(&registration(first, JUNK_EXECUTOR_PORT, 2, job), Code::Ok),
            // Its credentials are the first junk executor's: the second's
            // id is not theirs to register.
            seed(
                &registration(second, JUNK_EXECUTOR_PORT, 8, job),
                Code::PermissionDenied,
            ),
            seed(
                &registration("fuzz-executor-3", JUNK_EXECUTOR_PORT, 0, job),
                Code::InvalidArgument,
            ),
            seed(
                &registration("fuzz-executor-4", 0, 2, job),
                Code::InvalidArgument,
            ),
            seed(
                &proto::RegisterExecutorRequest::default(),
                Code::InvalidArgument,
            ),
        ],
    )
}

fn heart_beat_target(fixtures: &NetworkFixtures) -> NetworkTarget {
    let beat = |executor_id: &str, draining| proto::HeartBeatRequest {
        executor_id: executor_id.into(),
        running_tasks: 1,
        memory: Some(memory_report(&fixtures.finished_job)),
        draining,
    };
    NetworkTarget::new::<proto::HeartBeatRequest>(
        Service::Scheduler,
        "/ballista.SchedulerGrpc/HeartBeat",
        CallShape::Unary,
        vec![
            // Sent with the real executor's credentials: only its own id
            // is accepted.
            seed(&beat(fixtures.executor.id.as_str(), false), Code::Ok),
            seed(&beat(JUNK_EXECUTORS[0], false), Code::PermissionDenied),
            seed(&beat("fuzz-executor-9", false), Code::PermissionDenied),
        ],
    )
}

fn deregister_executor_target() -> NetworkTarget {
    let leave = |executor_id: &str, reason: &str| proto::DeregisterExecutorRequest {
        takes_removals: false,
        executor_id: executor_id.into(),
        reason: reason.into(),
    };
    NetworkTarget::new::<proto::DeregisterExecutorRequest>(
        Service::Scheduler,
        "/ballista.SchedulerGrpc/DeregisterExecutor",
        CallShape::Unary,
        vec![
            seed(&leave(JUNK_EXECUTORS[0], "drained"), Code::Ok),
            seed(&leave(JUNK_EXECUTORS[1], ""), Code::Ok),
        ],
    )
}

/// A job that runs until it is cancelled, and one of its running tasks.
struct RunningJob {
    job_id: JobId,
    stage_id: u32,
    task: proto::TaskInfo,
    /// The stage reading its output, and that stage's task count.
    consumer: Option<(u32, usize)>,
    /// Dropping the status stream would cancel the job.
    _updates: Streaming<proto::JobStatus>,
}

impl RunningJob {
    async fn start(cluster: &Cluster) -> Self {
        let request = proto::ExecuteQueryRequest {
            query: Some(Query::Sql(
                "SELECT v % 4 AS k, count(*) AS n \
                 FROM (SELECT value AS v FROM generate_series(1, 1000000000000)) GROUP BY v % 4"
                    .into(),
            )),
            ..Default::default()
        };
        let mut updates = cluster
            .client
            .execute(request)
            .await
            .expect("the endless query is accepted");
        let first = updates
            .message()
            .await
            .expect("the status stream")
            .expect("a first status");
        let job_id = JobId::parse(&first.job_id).expect("a job id");
        let deadline = Instant::now() + CLEAN_UP_TIMEOUT;
        loop {
            let status = cluster
                .client
                .job_status(&job_id)
                .await
                .expect("the endless job's status");
            if let Some((stage_id, task)) = running_task(&status, cluster.executor_id()) {
                let consumer = status
                    .stages
                    .iter()
                    .find(|stage| stage.inputs.contains(&stage_id))
                    .map(|stage| (stage.stage_id, stage.tasks.len()));
                return Self {
                    job_id,
                    stage_id,
                    task,
                    consumer,
                    _updates: updates,
                };
            }
            assert!(
                Instant::now() < deadline,
                "no task of the endless job runs: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn cancel(self, cluster: &Cluster) {
        tokio::time::timeout(CALL_TIMEOUT, cluster.client.cancel(&self.job_id))
            .await
            .expect("CancelJob is answered in time")
            .expect("CancelJob succeeds");
    }

    /// Reports as the executor running the task would send them.
    fn reports(&self, executor: &ExecutorAddress) -> Vec<proto::UpdateTaskStatusRequest> {
        let reporter = self.task.executor_id.as_str();
        let outputs = self.consumer.map_or(1, |(_, tasks)| tasks);
        let locations = (0..outputs)
            .map(|output_partition| {
                ShuffleLocation {
                    job_id: self.job_id.clone(),
                    stage_id: StageId(self.stage_id),
                    map_partition: self.task.partition as usize,
                    output_partition,
                    attempt: self.task.attempt,
                    executor: executor.clone(),
                    path: format!(
                        "{}/s{}/m{}-a{}-p{output_partition}.arrow",
                        self.job_id, self.stage_id, self.task.partition, self.task.attempt
                    ),
                    stats: PartitionStats {
                        num_rows: 250,
                        num_batches: 1,
                        num_bytes: 8192,
                    },
                    durable: false,
                    ticket: Vec::new(),
                }
                .to_proto()
            })
            .collect();
        let now = now_ms();
        let succeeded = proto::TaskStatus {
            task: Some(proto::TaskId {
                job_id: self.job_id.to_string(),
                stage_id: self.stage_id,
                partition: self.task.partition,
                attempt: self.task.attempt,
            }),
            executor_id: reporter.into(),
            result: Some(TaskResult::Succeeded(proto::TaskSuccess {
                locations,
                metrics: Some(task_metrics(now)),
            })),
            started_at_ms: now - 1_000,
            ended_at_ms: now,
        };
        let io_failed = proto::TaskStatus {
            result: Some(TaskResult::Failed(
                BallistaError::Io("the disk went away".into()).to_proto(),
            )),
            ..succeeded.clone()
        };
        let mut reports = vec![report(reporter, vec![io_failed])];
        if let Some((consumer_stage, _)) = self.consumer {
            let fetch_failed = proto::TaskStatus {
                task: Some(proto::TaskId {
                    job_id: self.job_id.to_string(),
                    stage_id: consumer_stage,
                    partition: 0,
                    attempt: 0,
                }),
                result: Some(TaskResult::Failed(
                    BallistaError::FetchFailed {
                        executor_id: reporter.into(),
                        map_stage_id: self.stage_id,
                        map_partition: self.task.partition,
                        message: "connection reset by peer".into(),
                    }
                    .to_proto(),
                )),
                ..succeeded.clone()
            };
            reports.push(report(reporter, vec![fetch_failed]));
        }
        reports.push(report(reporter, vec![succeeded]));
        reports
    }
}

/// A task of the job running on `executor_id`, with its stage.
fn running_task(status: &proto::JobStatus, executor_id: &str) -> Option<(u32, proto::TaskInfo)> {
    status.stages.iter().find_map(|stage| {
        stage
            .tasks
            .iter()
            .find(|task| task.state == "running" && task.executor_id == executor_id)
            .map(|task| (stage.stage_id, task.clone()))
    })
}

fn task_metrics(now: u64) -> proto::TaskMetrics {
    proto::TaskMetrics {
        output_rows: 1000,
        output_bytes: 32 << 10,
        remote_fetches: 0,
        local_reads: 1,
        spill_count: 0,
        spilled_bytes: 0,
        started_at_ms: now - 1_000,
        ended_at_ms: now,
        ..Default::default()
    }
}

fn report(executor_id: &str, statuses: Vec<proto::TaskStatus>) -> proto::UpdateTaskStatusRequest {
    proto::UpdateTaskStatusRequest {
        executor_id: executor_id.into(),
        statuses,
        ..Default::default()
    }
}

/// Reports from `reporter` about a job that has ended.
fn finished_job_reports(job_id: &JobId, reporter: &str) -> Vec<proto::UpdateTaskStatusRequest> {
    let now = now_ms();
    let failed = proto::TaskStatus {
        task: Some(proto::TaskId {
            job_id: job_id.to_string(),
            stage_id: 1,
            partition: 0,
            attempt: 0,
        }),
        executor_id: reporter.into(),
        result: Some(TaskResult::Failed(
            BallistaError::DataFusion(DataFusionError::Context(
                "while reading partition 0".into(),
                Box::new(DataFusionError::Execution("Divide by zero error".into())),
            ))
            .to_proto(),
        )),
        started_at_ms: now - 500,
        ended_at_ms: now,
    };
    let lost = proto::TaskStatus {
        result: Some(TaskResult::Failed(
            BallistaError::ExecutorLost {
                executor_id: JUNK_EXECUTORS[0].into(),
                message: "no heartbeat for 30s".into(),
            }
            .to_proto(),
        )),
        ..failed.clone()
    };
    vec![report(reporter, vec![failed, lost])]
}

fn update_task_status_target(fixtures: &NetworkFixtures, running: &RunningJob) -> NetworkTarget {
    let reports = running
        .reports(&fixtures.executor)
        .into_iter()
        .chain(finished_job_reports(
            &fixtures.finished_job,
            fixtures.executor.id.as_str(),
        ));
    NetworkTarget::new::<proto::UpdateTaskStatusRequest>(
        Service::Scheduler,
        "/ballista.SchedulerGrpc/UpdateTaskStatus",
        CallShape::Unary,
        reports.map(|request| seed(&request, Code::Ok)).collect(),
    )
}

/// The same reports on the report stream. Unnumbered, each ends its stream
/// with a refusal; mutations that number them reach the stream's answers.
fn report_stream_target(fixtures: &NetworkFixtures, running: &RunningJob) -> NetworkTarget {
    let unary = update_task_status_target(fixtures, running);
    NetworkTarget {
        method: "/ballista.SchedulerGrpc/ReportTaskStatuses",
        shape: CallShape::BidiStreaming,
        seeds: unary
            .seeds
            .into_iter()
            .map(|seed| Seed {
                answer: Code::InvalidArgument,
                ..seed
            })
            .collect(),
        ..unary
    }
}

/// The first task of `stage`, as the scheduler launches it.
fn launch(job_id: &str, query: &SeedQuery, stage: &EncodedStage) -> proto::LaunchTasksRequest {
    proto::LaunchTasksRequest {
        tasks: vec![proto::TaskDefinition {
            task: Some(proto::TaskId {
                job_id: job_id.to_string(),
                stage_id: stage.stage_id.0,
                partition: 0,
                attempt: 0,
            }),
            plan: stage.plan.clone().into(),
            settings: proto::key_values(query.settings.clone()),
            session_id: query.request.session_id.clone(),
            own_reads: None,
        }],
        // A cleanup of another job rides along, as the scheduler sends
        // them: seeds the executor's reading of those too.
        cleanups: vec![proto::JobCleanup {
            job_id: "fuzz-other-job".into(),
            remove_job: false,
            release_stages: vec![1, 2],
        }],
    }
}

/// `launch` with the stage's plan sent hollow, beside reads of both kinds
/// (a shuffle reader's locations and a scan's files), as the scheduler sends
/// stages of many tasks: seeds the executor's filling of a task's reads.
fn launch_with_own_reads(
    job_id: &str,
    query: &SeedQuery,
    stage: &EncodedStage,
) -> proto::LaunchTasksRequest {
    let mut request = launch(job_id, query, stage);
    let files = datafusion_proto::protobuf::FileGroup {
        files: vec![datafusion_proto::protobuf::PartitionedFile {
            path: "data/part-0.csv".into(),
            size: 10,
            ..Default::default()
        }],
    };
    for task in &mut request.tasks {
        task.own_reads = Some(proto::TaskReads {
            hollow_plan: std::mem::take(&mut task.plan),
            partitions: 2,
            reads: vec![
                proto::TaskRead {
                    read: Some(proto::task_read::Read::Shuffle(
                        proto::ShuffleReadPartition::default(),
                    )),
                },
                proto::TaskRead {
                    read: Some(proto::task_read::Read::Files(
                        prost::Message::encode_to_vec(&files),
                    )),
                },
            ],
        });
    }
    request
}

fn executor_control_targets(fixtures: &NetworkFixtures) -> Vec<NetworkTarget> {
    let plans = &fixtures.plans;
    let job_id = plans.job_id.to_string();
    let mut launches: Vec<_> = plans
        .queries
        .iter()
        .filter(|query| query.bounded)
        .flat_map(|query| {
            let job_id = job_id.as_str();
            query
                .stages
                .iter()
                .map(move |stage| seed(&launch(job_id, query, stage), Code::Ok))
        })
        .collect();
    if let Some(query) = plans.queries.iter().find(|query| query.bounded) {
        launches.extend(
            query
                .stages
                .iter()
                .map(|stage| seed(&launch_with_own_reads(&job_id, query, stage), Code::Ok)),
        );
    }
    let cancels = vec![
        seed(
            &proto::CancelTasksRequest {
                job_id: job_id.clone(),
            },
            Code::Ok,
        ),
        seed(
            &proto::CancelTasksRequest {
                job_id: INVALID_JOB_ID.into(),
            },
            Code::InvalidArgument,
        ),
    ];
    let removals = vec![
        seed(
            &proto::RemoveJobDataRequest {
                job_id: job_id.clone(),
            },
            Code::Ok,
        ),
        seed(
            &proto::RemoveJobDataRequest {
                job_id: INVALID_JOB_ID.into(),
            },
            Code::InvalidArgument,
        ),
    ];
    let releases = vec![
        seed(
            &proto::ReleaseStageOutputsRequest {
                job_id: job_id.clone(),
                stage_ids: vec![1, 2, u32::MAX],
            },
            Code::Ok,
        ),
        seed(
            &proto::ReleaseStageOutputsRequest {
                job_id: INVALID_JOB_ID.into(),
                stage_ids: vec![1],
            },
            Code::InvalidArgument,
        ),
    ];
    vec![
        NetworkTarget::new::<proto::LaunchTasksRequest>(
            Service::Executor,
            "/ballista.ExecutorControl/LaunchTasks",
            CallShape::Unary,
            launches,
        ),
        NetworkTarget::new::<proto::CancelTasksRequest>(
            Service::Executor,
            "/ballista.ExecutorControl/CancelTasks",
            CallShape::Unary,
            cancels,
        ),
        NetworkTarget::new::<proto::RemoveJobDataRequest>(
            Service::Executor,
            "/ballista.ExecutorControl/RemoveJobData",
            CallShape::Unary,
            removals,
        ),
        NetworkTarget::new::<proto::ReleaseStageOutputsRequest>(
            Service::Executor,
            "/ballista.ExecutorControl/ReleaseStageOutputs",
            CallShape::Unary,
            releases,
        ),
    ]
}

/// A batch and its Flight messages, for `DoPut` and `DoExchange`.
fn flight_data(descriptor: &FlightDescriptor) -> Vec<FlightData> {
    let batch = sales();
    let mut messages =
        batches_to_flight_data(&batch.schema(), vec![batch]).expect("a batch as Flight data");
    if let Some(first) = messages.first_mut() {
        first.flight_descriptor = Some(descriptor.clone());
    }
    messages
}

fn flight_targets(fixtures: &NetworkFixtures) -> Vec<NetworkTarget> {
    let job = &fixtures.result_job;
    // Signed as the scheduler signs them, so that mutations of them reach
    // the path checks behind the signature check.
    let signed = |path: &str| {
        Ticket::new(sign_ticket(
            &fixtures.ticket_key,
            job,
            path,
            fixtures.executor.id.as_str(),
            3600,
        ))
    };
    let tickets = vec![
        seed(&signed(&fixtures.result_path), Code::Ok),
        seed(
            &signed(&format!("{job}/s1/m0-a0-p99.arrow")),
            Code::NotFound,
        ),
        seed(&signed("../../etc/passwd"), Code::PermissionDenied),
        seed(
            &signed("s3://bucket/shuffle/m0-a0-p0.arrow"),
            Code::PermissionDenied,
        ),
        // A job id and a path, unsigned, open nothing.
        seed(
            &encode_ticket(job, &fixtures.result_path),
            Code::PermissionDenied,
        ),
    ];
    let by_path = FlightDescriptor::new_path(vec![job.to_string(), "s1".into()]);
    let descriptors = vec![
        seed(&by_path, Code::Unimplemented),
        seed(&FlightDescriptor::new_cmd("SELECT 1"), Code::Unimplemented),
    ];
    let data: Vec<Seed> = flight_data(&by_path)
        .iter()
        .map(|message| seed(message, Code::Unimplemented))
        .collect();
    let handshake = HandshakeRequest {
        protocol_version: 0,
        payload: Bytes::from_static(b"fuzz:secret"),
    };
    let criteria = Criteria {
        expression: Bytes::from_static(b"job"),
    };
    let action = Action::new("remove_job", Bytes::from(job.to_string()));
    vec![
        NetworkTarget::new::<Ticket>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/DoGet",
            CallShape::ServerStreaming,
            tickets,
        ),
        NetworkTarget::new::<HandshakeRequest>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/Handshake",
            CallShape::BidiStreaming,
            vec![seed(&handshake, Code::Unimplemented)],
        ),
        NetworkTarget::new::<Criteria>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/ListFlights",
            CallShape::ServerStreaming,
            vec![seed(&criteria, Code::Unimplemented)],
        ),
        NetworkTarget::new::<FlightDescriptor>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/GetFlightInfo",
            CallShape::Unary,
            descriptors.clone(),
        ),
        NetworkTarget::new::<FlightDescriptor>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/PollFlightInfo",
            CallShape::Unary,
            descriptors.clone(),
        ),
        NetworkTarget::new::<FlightDescriptor>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/GetSchema",
            CallShape::Unary,
            descriptors,
        ),
        NetworkTarget::new::<FlightData>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/DoPut",
            CallShape::BidiStreaming,
            data.clone(),
        ),
        NetworkTarget::new::<FlightData>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/DoExchange",
            CallShape::BidiStreaming,
            data,
        ),
        NetworkTarget::new::<Action>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/DoAction",
            CallShape::ServerStreaming,
            vec![seed(&action, Code::Unimplemented)],
        ),
        NetworkTarget::new::<Empty>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/ListActions",
            CallShape::ServerStreaming,
            vec![seed(&Empty {}, Code::Unimplemented)],
        ),
    ]
}

// ---------------------------------------------------------------------------
// Over the network
// ---------------------------------------------------------------------------

/// Sends every input of `target` and checks each answer; then checks the
/// cluster still serves.
async fn fuzz_network_target(campaign: &mut Campaign, cluster: &Cluster, target: &NetworkTarget) {
    let name = target.method.trim_start_matches('/');
    let mut tally = Tally::new(name);
    let seeds = target.seeds.iter().map(|seed| seed.bytes.clone()).collect();
    let mut inputs = Mutator::new(name, seeds);
    let channel = cluster.channel(target);
    for index in 0..network_inputs().max(target.seeds.len()) {
        let input = inputs.input(index);
        let parses = (target.parses)(&input.bytes);
        let Answer::Code(code) = call(channel.clone(), target, input.bytes).await else {
            tally.count(parses, "no answer", false);
            campaign.fail(format!(
                "{name}: input #{index} ({:?}) got no answer within {CALL_TIMEOUT:?}",
                input.origin
            ));
            continue;
        };
        let accepted = code == Code::Ok;
        tally.count(parses, &format!("{code:?}"), accepted);
        if let Origin::Seed(n) = input.origin
            && code != target.seeds[n].answer
        {
            campaign.fail(format!(
                "{name}: seed #{n} was answered {code:?}, expected {:?}",
                target.seeds[n].answer
            ));
        }
        if accepted && !parses {
            campaign.fail(format!(
                "{name}: input #{index} does not parse as the request, yet was accepted"
            ));
        }
    }
    campaign.record(tally);
    cluster.assert_serving().await;
}

async fn fuzz_network_services(campaign: &mut Campaign) {
    let cluster = Cluster::start().await;
    let fixtures = NetworkFixtures::prepare(&cluster).await;

    for target in scheduler_query_targets(&fixtures) {
        fuzz_network_target(campaign, &cluster, &target).await;
    }
    fuzz_network_target(campaign, &cluster, &execute_query_target(&fixtures)).await;
    // Reports about a job while it runs, before junk executors exist that
    // its tasks could be placed on.
    let running = RunningJob::start(&cluster).await;
    fuzz_network_target(
        campaign,
        &cluster,
        &update_task_status_target(&fixtures, &running),
    )
    .await;
    fuzz_network_target(
        campaign,
        &cluster,
        &report_stream_target(&fixtures, &running),
    )
    .await;
    running.cancel(&cluster).await;
    fuzz_network_target(campaign, &cluster, &register_executor_target(&fixtures)).await;
    fuzz_network_target(campaign, &cluster, &heart_beat_target(&fixtures)).await;
    fuzz_network_target(campaign, &cluster, &deregister_executor_target()).await;
    let removed = cluster.remove_junk_executors().await;
    println!("deregistered {removed} executor(s) that fuzzed requests registered");
    cluster.wait_for_real_executor().await;
    assert_eq!(
        cluster.registered_executors().await,
        vec![cluster.executor_id().to_string()],
        "only the real executor is left"
    );

    for target in executor_control_targets(&fixtures) {
        fuzz_network_target(campaign, &cluster, &target).await;
    }
    cluster.forget_job_on_executor(&fixtures.plans.job_id).await;

    for target in flight_targets(&fixtures) {
        fuzz_network_target(campaign, &cluster, &target).await;
    }
    cluster
        .client
        .release(&fixtures.result_job)
        .await
        .expect("the results are released");

    assert_cluster_answers_queries(&cluster).await;
    cluster.shutdown().await;
}

#[test]
fn network_services_survive_mutated_requests() {
    let mut campaign = Campaign::start("network decoders");
    let runtime = runtime();
    // Boxed: the test thread's stack is small for a future this size.
    runtime.block_on(Box::pin(fuzz_network_services(&mut campaign)));
    runtime.shutdown_timeout(Duration::from_secs(10));
    campaign.finish();
}

// ---------------------------------------------------------------------------
// In process
// ---------------------------------------------------------------------------

async fn fuzz_plan_codecs(campaign: &mut Campaign) {
    let executor = ExecutorAddress {
        id: ExecutorId::new("exec-0123456789ab"),
        host: "127.0.0.1".into(),
        port: 50051,
    };
    let fixtures = PlanFixtures::build(&executor).await;
    let logical_plans: Vec<DecoderSeed> = fixtures
        .logical_plans()
        .into_iter()
        .map(DecoderSeed::valid)
        .collect();

    let context = fixtures.task_context();
    fuzz_in_process(
        campaign,
        "decode_client_plan (scheduler)",
        logical_plans.clone(),
        parses_as::<LogicalPlanNode>,
        move |bytes| {
            let context = Arc::clone(&context);
            // The scheduler plans on a large stack; so does this.
            LargeStack::new(async move {
                Verdict::of(
                    decode_client_plan(&bytes, &context).map_err(BallistaError::from_datafusion),
                )
            })
        },
    )
    .await;

    let planner = Arc::clone(&fixtures.planner);
    let template = fixtures.queries[0].request.clone();
    fuzz_in_process(
        campaign,
        "JobPlanner::plan of a client plan (scheduler)",
        logical_plans,
        parses_as::<LogicalPlanNode>,
        move |bytes| {
            let planner = Arc::clone(&planner);
            let mut request = template.clone();
            request.query = Some(Query::LogicalPlan(bytes));
            LargeStack::new(async move {
                let settings = planner.job_settings(&request, EXECUTOR_SLOTS);
                let admin = Identity::cluster_admin();
                Verdict::of(
                    planner
                        .plan(&JobId::generate(), &request, &settings, &admin)
                        .await,
                )
            })
        },
    )
    .await;

    let stage_plans = fixtures
        .stage_plans()
        .into_iter()
        .map(DecoderSeed::valid)
        .collect();
    let context = fixtures.task_context();
    fuzz_in_process(
        campaign,
        "decode_stage_plan (executor)",
        stage_plans,
        parses_as::<PhysicalPlanNode>,
        move |bytes| {
            let context = Arc::clone(&context);
            async move { Verdict::of(decode_stage_plan(&bytes, &context)) }
        },
    )
    .await;
}

#[test]
fn plan_codecs_survive_mutated_plans() {
    let mut campaign = Campaign::start("plan codecs");
    let runtime = runtime();
    runtime.block_on(Box::pin(fuzz_plan_codecs(&mut campaign)));
    runtime.shutdown_timeout(Duration::from_secs(10));
    campaign.finish();
}

/// Schemas of the kinds plans and results carry.
fn seed_schemas() -> Vec<Schema> {
    let point = Fields::from(vec![
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
    ]);
    let tags = Arc::new(Field::new("item", DataType::Utf8, true));
    let city = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    vec![
        Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("day", DataType::Date32, true),
        ]),
        Schema::new(vec![
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("price", DataType::Decimal128(15, 2), true),
            Field::new("note", DataType::Utf8View, true),
            Field::new("raw", DataType::Binary, true),
        ]),
        Schema::new(vec![
            Field::new("tags", DataType::List(tags), true),
            Field::new("point", DataType::Struct(point), true),
            Field::new("city", city, true),
        ]),
        Schema::new_with_metadata(
            vec![Field::new("n", DataType::UInt32, false)],
            HashMap::from([("origin".to_string(), "fuzz".to_string())]),
        ),
    ]
}

fn parses_as_ipc_message(bytes: &[u8]) -> bool {
    arrow::ipc::root_as_message(bytes).is_ok()
}

#[test]
fn schemas_survive_mutation() {
    let mut campaign = Campaign::start("schemas");
    let runtime = runtime();
    runtime.block_on(async {
        let seeds = seed_schemas()
            .iter()
            .map(|schema| DecoderSeed::valid(encode_schema(schema)))
            .collect();
        fuzz_in_process(
            &mut campaign,
            "decode_schema (plan nodes, job results, tables)",
            seeds,
            parses_as_ipc_message,
            |bytes| async move { Verdict::of(decode_schema(&bytes)) },
        )
        .await;
    });
    runtime.shutdown_timeout(Duration::from_secs(10));
    campaign.finish();
}

/// An executor's shuffle directory: two partition files of a job, a file
/// of an attempt in progress, a file of another job, and a link out.
struct TicketFixture {
    _root: tempfile::TempDir,
    work_dir: PathBuf,
    job_id: JobId,
    other_job: JobId,
}

impl TicketFixture {
    fn create() -> Self {
        let root = tempfile::tempdir().expect("a temporary directory");
        let base = root.path().canonicalize().expect("a canonical path");
        let work_dir = base.join("shuffle");
        let outside = base.join("outside");
        let job_id = JobId::parse("fuzzjob-tickets-1").expect("a valid job id");
        let other_job = JobId::parse("fuzzjob-tickets-2").expect("a valid job id");
        for file in [
            format!("{job_id}/s1/m0-a0-p0.arrow"),
            format!("{job_id}/s2/m1-a0-p3.arrow"),
            format!("{job_id}/s1/.m0-a1-p0.arrow.tmp"),
            format!("{other_job}/s1/m0-a0-p0.arrow"),
        ] {
            let path = work_dir.join(file);
            std::fs::create_dir_all(path.parent().expect("a stage directory"))
                .expect("create the stage directory");
            std::fs::write(&path, b"ARROW1").expect("write a partition file");
        }
        std::fs::create_dir_all(&outside).expect("create a directory outside");
        std::fs::write(outside.join("secret"), b"secret").expect("write a file outside");
        std::os::unix::fs::symlink(&outside, work_dir.join(format!("{job_id}/s1/escape")))
            .expect("a symbolic link out of the work directory");
        Self {
            _root: root,
            work_dir,
            job_id,
            other_job,
        }
    }

    fn seeds(&self) -> Vec<DecoderSeed> {
        let ticket = |job_id: &str, path: String| {
            proto::FetchPartitionTicket {
                job_id: job_id.into(),
                path,
                ..Default::default()
            }
            .encode_to_vec()
        };
        let (job, other) = (self.job_id.as_str(), self.other_job.as_str());
        vec![
            DecoderSeed::valid(ticket(job, format!("{job}/s1/m0-a0-p0.arrow"))),
            DecoderSeed::valid(ticket(job, format!("{job}/s2/m1-a0-p3.arrow"))),
            DecoderSeed::invalid(ticket(job, format!("{job}/s1/.m0-a1-p0.arrow.tmp"))),
            DecoderSeed::invalid(ticket(job, format!("{job}/../{other}/s1/m0-a0-p0.arrow"))),
            DecoderSeed::invalid(ticket(job, format!("{other}/s1/m0-a0-p0.arrow"))),
            DecoderSeed::invalid(ticket(job, format!("{job}/s1/escape/secret"))),
            DecoderSeed::invalid(ticket(job, format!("{job}/s1/missing.arrow"))),
            DecoderSeed::invalid(ticket(job, "/etc/passwd".into())),
            DecoderSeed::invalid(ticket("..", "../x".into())),
        ]
    }
}

/// A ticket the executor would serve must name a plain file inside its
/// job's directory.
fn ticket_verdict(work_dir: &Path, bytes: &[u8]) -> Verdict {
    let ticket = match decode_ticket(bytes) {
        Ok(ticket) => ticket,
        Err(e) => return Verdict::refused(&e),
    };
    let path = match resolve_ticket_path(work_dir, &ticket) {
        Ok(path) => path,
        Err(e) => return Verdict::refused(&e),
    };
    let job_dir = work_dir.join(&ticket.job_id);
    let hidden = match path.strip_prefix(work_dir) {
        Ok(inside) => inside
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.')),
        Err(_) => true,
    };
    if path.starts_with(&job_dir) && !hidden {
        Verdict::accepted()
    } else {
        Verdict::violated(format!(
            "ticket {ticket:?} resolved to {}, not a plain file under {}",
            path.display(),
            job_dir.display()
        ))
    }
}

#[test]
fn flight_tickets_resolve_only_inside_their_job_directory() {
    let mut campaign = Campaign::start("flight tickets");
    let fixture = TicketFixture::create();
    let runtime = runtime();
    runtime.block_on(async {
        let work_dir = fixture.work_dir.clone();
        fuzz_in_process(
            &mut campaign,
            "decode_ticket + resolve_ticket_path (executor)",
            fixture.seeds(),
            parses_as::<proto::FetchPartitionTicket>,
            move |bytes| {
                let work_dir = work_dir.clone();
                async move { ticket_verdict(&work_dir, &bytes) }
            },
        )
        .await;
    });
    runtime.shutdown_timeout(Duration::from_secs(10));
    campaign.finish();
}

/// Errors of the kinds services send, as the `google.rpc.Status` details
/// holding their `ErrorInfo`.
fn error_seeds() -> Vec<DecoderSeed> {
    let errors = [
        BallistaError::InvalidInput("invalid job id \"..\"".into()),
        BallistaError::FetchFailed {
            executor_id: "exec-0123456789ab".into(),
            map_stage_id: 2,
            map_partition: 7,
            message: "connection reset by peer".into(),
        },
        BallistaError::ExecutorLost {
            executor_id: "exec-0123456789ab".into(),
            message: "no heartbeat for 30s".into(),
        },
        BallistaError::ResourcesExhausted("the job's memory quota is used up".into()),
        BallistaError::DataFusion(DataFusionError::Execution("Divide by zero error".into())),
        BallistaError::DataFusion(DataFusionError::Context(
            "while planning".into(),
            Box::new(DataFusionError::Plan("table 't' not found".into())),
        )),
    ];
    errors
        .iter()
        .map(|error| {
            DecoderSeed::valid(ballista::error::status_details(
                Code::Aborted,
                "fuzzed status",
                &error.to_proto(),
            ))
        })
        .collect()
}

/// A status whose details hold an `ErrorInfo` of a known kind becomes an
/// error of that kind (retries depend on it).
fn error_verdict(bytes: Vec<u8>) -> Verdict {
    let info = ballista::error::error_info_of_details(&bytes);
    let status = Status::with_details(Code::Aborted, "fuzzed status", Bytes::from(bytes));
    let error = BallistaError::from(status);
    let retried = if error.is_retryable() {
        ", retried"
    } else {
        ""
    };
    let outcome = format!("{:?}{retried}", error.kind());
    let known_kind = info.filter(|info| {
        info.kind != proto::ErrorKind::Unspecified as i32
            && proto::ErrorKind::try_from(info.kind).is_ok()
    });
    match known_kind {
        None => Verdict {
            outcome,
            accepted: false,
            violation: None,
        },
        Some(info) if error.kind() as i32 == info.kind => Verdict {
            outcome,
            accepted: true,
            violation: None,
        },
        Some(info) => Verdict::violated(format!(
            "details of kind {:?} became an error of kind {outcome}",
            proto::ErrorKind::try_from(info.kind)
        )),
    }
}

#[test]
fn error_details_keep_their_kind() {
    let mut campaign = Campaign::start("error details");
    let runtime = runtime();
    runtime.block_on(fuzz_in_process(
        &mut campaign,
        "ErrorInfo in gRPC status details (clients, scheduler)",
        error_seeds(),
        parses_as::<proto::ErrorInfo>,
        |bytes| async move { error_verdict(bytes) },
    ));
    runtime.shutdown_timeout(Duration::from_secs(10));
    campaign.finish();
}
