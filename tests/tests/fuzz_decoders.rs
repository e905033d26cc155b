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

#[path = "fuzz_decoders/cluster.rs"]
mod cluster;
#[path = "fuzz_decoders/executor_seeds.rs"]
mod executor_seeds;
mod fuzz_support;
#[path = "fuzz_decoders/in_process.rs"]
mod in_process;
#[path = "fuzz_decoders/plan_seeds.rs"]
mod plan_seeds;
#[path = "fuzz_decoders/raw_calls.rs"]
mod raw_calls;
#[path = "fuzz_decoders/scheduler_seeds.rs"]
mod scheduler_seeds;

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
use cluster::*;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{CsvReadOptions, SessionContext};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use executor_seeds::*;
use fuzz_support::{
    Campaign, DecoderSeed, Mutator, Origin, Tally, Verdict, fuzz_in_process, network_inputs,
    parses_as, runtime,
};
use plan_seeds::*;
use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes};
use raw_calls::*;
use scheduler_seeds::*;
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
