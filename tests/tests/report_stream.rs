//! An executor's status reports over one long-lived stream
//! (`ReportTaskStatuses`), spoken to a real scheduler process by a fake
//! executor: each report is answered in order, a retried report on a new
//! stream gets its answer again, the size limit holds per message (a long
//! stream may carry far more than one call could), the stream outlives the
//! call deadline, wrong reports end the stream with a refusal naming what
//! was wrong, and a held report waits for work and gets a query's tasks.
//! After each, the scheduler answers a query.

use std::time::Duration;

use ballista::auth::{AuthChannel, CallCredentials, unwrap_session_key};
use ballista::client::SessionContextExt;
use ballista::proto::{self, scheduler_grpc_client::SchedulerGrpcClient};
use ballista_tests::auth;
use ballista_tests::cluster::TestCluster;
use ballista_tests::probe::{assert_processes_up, single_i64};
use datafusion::prelude::SessionContext;
use futures::SinkExt;
use futures::channel::mpsc;

const FAKE: &str = "fake-stream-1";

/// A report stream opened by `client`: where reports go, and the answers.
struct OpenStream {
    reports: mpsc::Sender<proto::UpdateTaskStatusRequest>,
    answers: tonic::Streaming<proto::UpdateTaskStatusResponse>,
}

impl OpenStream {
    async fn open(client: &mut SchedulerGrpcClient<AuthChannel>) -> Result<Self, tonic::Status> {
        let (reports, outgoing) = mpsc::channel(4);
        let answers = client.report_task_statuses(outgoing).await?.into_inner();
        Ok(Self { reports, answers })
    }

    /// Sends `report` and returns what came back: an answer, or the status
    /// the stream ended with.
    async fn send(
        &mut self,
        report: proto::UpdateTaskStatusRequest,
    ) -> Result<proto::UpdateTaskStatusResponse, tonic::Status> {
        self.reports.send(report).await.expect("stream open");
        self.next_answer(Duration::from_secs(20))
            .await
            .expect("no answer within 20s")
    }

    /// The next answer or the status the stream ended with; `None` when
    /// nothing came within `within`.
    async fn next_answer(
        &mut self,
        within: Duration,
    ) -> Option<Result<proto::UpdateTaskStatusResponse, tonic::Status>> {
        match tokio::time::timeout(within, self.answers.message()).await {
            Ok(Ok(Some(answer))) => Some(Ok(answer)),
            Ok(Ok(None)) => panic!("the stream ended without an answer or a refusal"),
            Ok(Err(status)) => Some(Err(status)),
            Err(_) => None,
        }
    }
}

/// A report of `count` statuses of tasks of an unknown job, of about
/// `count` × 40 bytes.
fn report(seq: u64, count: usize) -> proto::UpdateTaskStatusRequest {
    let statuses = (0..count)
        .map(|i| proto::TaskStatus {
            task: Some(proto::TaskId {
                job_id: format!("nojob{seq}x{i}"),
                stage_id: 1,
                partition: i as u32,
                attempt: 0,
            }),
            executor_id: FAKE.into(),
            result: None,
            started_at_ms: 0,
            ended_at_ms: 0,
        })
        .collect();
    proto::UpdateTaskStatusRequest {
        executor_id: FAKE.into(),
        statuses,
        report_seq: seq,
        refused: Vec::new(),
        hold: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_stream_answers_in_order_with_limits_per_message_and_refuses_wrong_reports() {
    let cluster = TestCluster::start(
        1,
        2,
        Some(
            "[scheduler.server]\nmax_control_message_bytes = \"64KiB\"\nrequest_timeout_secs = 2\n",
        ),
    )
    .await;
    let mut registration =
        auth::scheduler_grpc(&cluster.scheduler_url, &auth::register(FAKE)).await;
    let answer = registration
        .register_executor(proto::RegisterExecutorRequest {
            metadata: Some(proto::ExecutorMetadata {
                id: FAKE.into(),
                host: "127.0.0.1".into(),
                port: 4000,
                slots: 8,
                version: "test".into(),
            }),
            memory: None,
            cleanups_in_launches: false,
        })
        .await
        .expect("registered")
        .into_inner();
    let key = unwrap_session_key(
        &auth::cluster_key(),
        FAKE,
        &answer.session_key,
        &answer.key_nonce,
    )
    .expect("a session key");
    let credentials = CallCredentials::Executor {
        cluster: auth::cluster_key(),
        id: FAKE.into(),
        session: std::sync::Arc::new(parking_lot::RwLock::new(Some(key))),
    };
    let mut client = auth::scheduler_grpc(&cluster.scheduler_url, &credentials).await;

    // 40 reports of ~8 KiB each: 320 KiB over one stream, five times the
    // 64 KiB a single call may carry. Each is answered, in order; the
    // stream outlives the 2 s call deadline.
    let mut stream = OpenStream::open(&mut client).await.expect("stream opens");
    for seq in 1..=40 {
        stream.send(report(seq, 200)).await.expect("answered");
        if seq == 20 {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
    // A report sent again on a new stream (its answer was lost) is
    // answered again, and an older one is answered with nothing.
    drop(stream);
    let mut stream = OpenStream::open(&mut client).await.expect("stream opens");
    let again = stream.send(report(40, 200)).await.expect("answered again");
    assert_eq!(again, proto::UpdateTaskStatusResponse::default());
    stream
        .send(report(12, 1))
        .await
        .expect("a stale report is answered");

    // One message over the limit ends the stream, naming the limit.
    let status = stream
        .send(report(41, 2000))
        .await
        .expect_err("an 80 KiB report is over a 64 KiB limit");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains(
            "/ballista.SchedulerGrpc/ReportTaskStatuses is larger than 65536 bytes \
             (scheduler.server.max_control_message_bytes)"
        ),
        "{status:?}"
    );

    // Another executor's report, and an unnumbered one, end the stream
    // with a refusal naming what was wrong.
    let mut stream = OpenStream::open(&mut client).await.expect("stream opens");
    let mut other = report(42, 1);
    other.executor_id = "fake-stream-2".into();
    let status = stream.send(other).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("may not report task statuses for executor fake-stream-2"),
        "{status:?}"
    );
    let mut stream = OpenStream::open(&mut client).await.expect("stream opens");
    let status = stream.send(report(0, 1)).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("must be numbered"), "{status:?}");

    // A client is not an executor.
    let mut admin = auth::scheduler_grpc(&cluster.scheduler_url, &auth::admin()).await;
    let status = match OpenStream::open(&mut admin).await {
        Err(status) => status,
        Ok(mut stream) => stream.send(report(1, 1)).await.expect_err("refused"),
    };
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("/ballista.SchedulerGrpc/ReportTaskStatuses is for cluster members only"),
        "{status:?}"
    );

    // A held report (an idle executor's) is not answered until there is
    // work for it; a report sent after it answers it with nothing at once.
    let mut stream = OpenStream::open(&mut client).await.expect("stream opens");
    let held = |seq| proto::UpdateTaskStatusRequest {
        hold: true,
        ..report(seq, 0)
    };
    stream.reports.send(held(50)).await.expect("stream open");
    assert!(
        stream.next_answer(Duration::from_secs(1)).await.is_none(),
        "a held report with no work for it is answered"
    );
    stream
        .reports
        .send(report(51, 1))
        .await
        .expect("stream open");
    for seq in [50, 51] {
        let answer = stream
            .next_answer(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("report {seq} not answered"))
            .expect("answered");
        assert_eq!(answer, proto::UpdateTaskStatusResponse::default());
    }
    // Held again: a query's tasks come in the answer (the fake executor
    // offers the most free slots), not by a launch call to its address,
    // where nothing listens.
    stream.reports.send(held(52)).await.expect("stream open");
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .expect("connect");
    let query = tokio::spawn(async move {
        single_i64(
            &ctx,
            "SELECT count(*) FROM (SELECT value % 7 AS k FROM generate_series(1, 1000) GROUP BY k)",
        )
        .await
    });
    let answer = stream
        .next_answer(Duration::from_secs(20))
        .await
        .expect("the held report is answered with the query's tasks")
        .expect("answered");
    assert!(!answer.launches.is_empty(), "{answer:?}");
    // The fake executor leaves; its tasks run on the real one.
    drop(stream);
    client
        .deregister_executor(proto::DeregisterExecutorRequest {
            executor_id: FAKE.into(),
            reason: "its tasks go elsewhere".into(),
            takes_removals: false,
        })
        .await
        .expect("deregistered");
    assert_eq!(query.await.expect("query task"), 7);
    let mut cluster = cluster;
    assert_processes_up(&mut cluster);
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .expect("connect");
    let sum = single_i64(&ctx, "SELECT sum(value) FROM generate_series(1, 100)").await;
    assert_eq!(sum, 5050);
}
