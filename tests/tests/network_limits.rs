//! What one peer can pin on a listener is bounded, and strings from the
//! network are checked at the door: silent and excess connections are
//! closed, a request over its method's size or time is refused naming the
//! limit, ids and hosts are validated, and what is logged of a request is
//! escaped and bounded. After each, the same processes answer a query.

use std::time::{Duration, Instant};

use ballista::auth::{AuthChannel, CallCredentials, unwrap_session_key};
use ballista::client::SessionContextExt;
use ballista::proto::{self, scheduler_grpc_client::SchedulerGrpcClient};
use ballista_tests::auth;
use ballista_tests::cluster::TestCluster;
use ballista_tests::probe::{assert_processes_up, single_i64};
use bytes::Bytes;
use datafusion::prelude::SessionContext;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

async fn scheduler_client(
    cluster: &TestCluster,
    credentials: &CallCredentials,
) -> SchedulerGrpcClient<AuthChannel> {
    auth::scheduler_grpc(&cluster.scheduler_url, credentials)
        .await
        .max_encoding_message_size(64 << 20)
}

fn scheduler_port(cluster: &TestCluster) -> u16 {
    cluster
        .scheduler_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in the scheduler URL")
}

/// The processes are up and a query through the client gives its answer.
async fn assert_serves(cluster: &mut TestCluster) {
    assert_processes_up(cluster);
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .expect("connect");
    let sum = single_i64(&ctx, "SELECT sum(value) FROM generate_series(1, 100)").await;
    assert_eq!(sum, 5050);
}

/// Whether the server closed `stream` within `within` (EOF or reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // The server's HTTP/2 settings frame: keep reading.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_excess_connections_are_closed() {
    let mut cluster = TestCluster::start(
        1,
        2,
        Some("[scheduler.server]\nmax_connections = 32\nhandshake_timeout_secs = 2\n"),
    )
    .await;
    let port = scheduler_port(&cluster);
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(
            TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
        );
    }
    // The executor holds a connection or two: at most the rest of the 32
    // slots stay open, every other connection is closed at once (checked
    // all together, well before the handshake timeout).
    let checks = silent
        .iter_mut()
        .map(|stream| closed_within(stream, Duration::from_millis(300)));
    let closed_at_once = futures::future::join_all(checks)
        .await
        .into_iter()
        .filter(|closed| *closed)
        .count();
    assert!(
        closed_at_once >= 300 - 32,
        "only {closed_at_once} of 300 connections over a limit of 32 were closed at once"
    );
    // The ones admitted never sent the HTTP/2 preface: closed at the
    // handshake timeout.
    for (i, stream) in silent.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(5)).await,
            "silent connection {i} is still open after the handshake timeout"
        );
    }
    let logs = cluster.scheduler.logs();
    assert!(
        logs.contains("over the limit of 32 open at once (scheduler.server.max_connections)"),
        "{logs}"
    );
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_its_method_limit_is_refused_naming_the_limit() {
    let mut cluster = TestCluster::start(
        1,
        2,
        Some(
            "[scheduler.server]\nmax_control_message_bytes = \"64KiB\"\n\
             max_plan_message_bytes = \"1MiB\"\n",
        ),
    )
    .await;
    let mut client = scheduler_client(&cluster, &auth::admin()).await;
    let status = client
        .get_job_status(proto::GetJobStatusRequest {
            job_id: "x".repeat(100 * 1024),
        })
        .await
        .expect_err("a 100 KiB status request is over a 64 KiB limit");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("/ballista.SchedulerGrpc/GetJobStatus is larger than 65536 bytes (scheduler.server.max_control_message_bytes)"),
        "{status:?}"
    );
    // A plan over its own limit is refused on the length it declares.
    let status = client
        .execute_query(proto::ExecuteQueryRequest {
            query: Some(proto::execute_query_request::Query::Sql(format!(
                "SELECT '{}'",
                "z".repeat(2 << 20)
            ))),
            ..Default::default()
        })
        .await
        .expect_err("a 2 MiB query is over a 1 MiB limit");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("(scheduler.server.max_plan_message_bytes)"),
        "{status:?}"
    );
    // A query is a plan: its own, larger limit applies.
    let literal = "y".repeat(100 * 1024);
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .expect("connect");
    let batches = ctx
        .sql(&format!("SELECT length('{literal}') AS n"))
        .await
        .expect("plan")
        .collect()
        .await
        .expect("a 100 KiB query is under the plan limit");
    let n = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Int32Array>()
        .expect("an Int32 length")
        .value(0);
    assert_eq!(n, 100 * 1024);
    assert_serves(&mut cluster).await;
}

/// Opens a raw HTTP/2 connection to `port` and starts a GetSessionDefaults
/// call (with `authorization` when given) whose message announces
/// `announced` bytes but sends one byte fewer, leaving the request open.
/// Returns the response's gRPC status code and message, and how long the
/// answer took.
async fn half_sent_request(
    port: u16,
    announced: usize,
    authorization: Option<String>,
) -> (String, String, Duration) {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (send, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://127.0.0.1:{port}/ballista.SchedulerGrpc/GetSessionDefaults"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let request = request.body(()).expect("request");
    let mut send = send.ready().await.expect("ready");
    let started = Instant::now();
    let (response, mut body) = send.send_request(request, false).expect("send");
    let mut frame = Vec::with_capacity(announced + 4);
    frame.push(0u8);
    frame.extend_from_slice(&(announced as u32).to_be_bytes());
    frame.resize(5 + announced - 1, b'z');
    // Flow control lets the body out as the server reads it; the send is
    // not awaited, so the request stays one byte short.
    body.reserve_capacity(frame.len());
    // A request refused at once (no credentials) has no stream left to
    // send on: its answer is what counts.
    let _ = body.send_data(Bytes::from(frame), false);
    let response = tokio::time::timeout(Duration::from_secs(30), response)
        .await
        .expect("an answer within 30 s")
        .expect("a response");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    let code = header("grpc-status");
    let message = header("grpc-message");
    (code, message, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_one_byte_short_is_dropped_at_the_deadline() {
    let mut cluster = TestCluster::start(
        1,
        2,
        Some("[scheduler.server]\nrequest_timeout_secs = 2\nmax_streams_per_connection = 8\n"),
    )
    .await;
    let port = scheduler_port(&cluster);
    // Without credentials it is refused at once (16: UNAUTHENTICATED): an
    // unknown peer pins nothing.
    let (code, message, took) = half_sent_request(port, 4 << 20, None).await;
    assert_eq!(code, "16", "grpc-message {message:?}");
    assert!(
        took < Duration::from_millis(1500),
        "answered after {took:?}"
    );
    let (code, message, took) = half_sent_request(port, 4 << 20, auth::admin().header()).await;
    // 4 is DEADLINE_EXCEEDED.
    assert_eq!(code, "4", "grpc-message {message:?}");
    assert!(
        message.contains("request_timeout_secs"),
        "grpc-message {message:?}"
    );
    // Held until the deadline (not refused at once, and not forever).
    assert!(
        took >= Duration::from_millis(1500),
        "answered after {took:?}"
    );

    // The stream cap is announced in the HTTP/2 settings.
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (send, mut connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    // The server's settings arrive with the first exchange.
    let _ = tokio::time::timeout(Duration::from_millis(500), &mut connection).await;
    assert_eq!(connection.max_concurrent_send_streams(), 8);
    drop(send);
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_and_hosts_from_the_network_are_checked_and_logged_safely() {
    let mut cluster = TestCluster::start(1, 2, None).await;
    let mut client = scheduler_client(&cluster, &auth::register("fake-1")).await;
    let register = |id: String, host: &str| proto::RegisterExecutorRequest {
        metadata: Some(proto::ExecutorMetadata {
            id,
            host: host.to_string(),
            port: 4000,
            slots: 2,
            version: "test".into(),
        }),
        memory: None,
        cleanups_in_launches: false,
    };

    let forged = "e1\n2026-11-30T00:00:00Z  INFO executor admin registered".to_string();
    let status = client
        .register_executor(register(forged, "127.0.0.1"))
        .await
        .expect_err("an id with a newline is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("invalid executor id"),
        "{status:?}"
    );
    assert!(!status.message().contains('\n'), "{status:?}");

    let huge = "a".repeat(4 << 20);
    let status = client
        .register_executor(register(huge, "127.0.0.1"))
        .await
        .expect_err("a 4 MiB id is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().len() < 1024,
        "{} bytes",
        status.message().len()
    );

    let status = client
        .register_executor(register("e-host".into(), "evil\nhost"))
        .await
        .expect_err("a host with a newline is refused");
    assert!(
        status.message().contains("invalid executor host"),
        "{status:?}"
    );

    // A registered (fake) executor, speaking with the session key its
    // registration answered.
    let answer = client
        .register_executor(register("fake-1".into(), "127.0.0.1"))
        .await
        .expect("a valid registration")
        .into_inner();
    let fake = CallCredentials::Executor {
        cluster: auth::cluster_key(),
        id: "fake-1".into(),
        session: std::sync::Arc::new(parking_lot::RwLock::new(Some(
            unwrap_session_key(
                &auth::cluster_key(),
                "fake-1",
                &answer.session_key,
                &answer.key_nonce,
            )
            .expect("a session key"),
        ))),
    };
    let mut client = scheduler_client(&cluster, &fake).await;

    // A heartbeat for an id that is not an id.
    let status = client
        .heart_beat(proto::HeartBeatRequest {
            executor_id: "x\ny".into(),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    // It reports 20,000 statuses of unknown jobs: a few log lines say so,
    // not 20,000.
    let log_before = cluster.scheduler.logs().len();
    let statuses = (0..20_000)
        .map(|i| proto::TaskStatus {
            task: Some(proto::TaskId {
                job_id: format!("nojob{i}"),
                stage_id: 1,
                partition: 0,
                attempt: 0,
            }),
            executor_id: "fake-1".into(),
            result: None,
            started_at_ms: 0,
            ended_at_ms: 0,
        })
        .collect();
    client
        .update_task_status(proto::UpdateTaskStatusRequest {
            executor_id: "fake-1".into(),
            statuses,
            ..Default::default()
        })
        .await
        .expect("a report of unknown tasks is answered");
    client
        .deregister_executor(proto::DeregisterExecutorRequest {
            executor_id: "fake-1".into(),
            reason: format!("bye\nforged line{}", "r".repeat(100_000)),
            takes_removals: false,
        })
        .await
        .expect("deregistered");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = cluster.scheduler.logs();
    let written = logs.len() - log_before;
    assert!(
        written < 4096,
        "the report and the deregistration wrote {written} bytes of log:\n{}",
        &logs[log_before..]
    );
    assert!(!logs.contains("\nforged line"), "{}", &logs[log_before..]);
    assert!(!logs.contains("executor admin registered"), "{logs}");
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_flight_ticket_is_refused_and_logged_in_brief() {
    use arrow_flight::Ticket;
    use arrow_flight::flight_service_client::FlightServiceClient;

    let mut cluster = TestCluster::start(1, 2, None).await;
    let executors = scheduler_client(&cluster, &auth::admin())
        .await
        .get_executors_metadata(proto::GetExecutorsMetadataRequest {})
        .await
        .expect("executors")
        .into_inner()
        .executors;
    let metadata = executors[0].metadata.clone().expect("metadata");
    let channel = tonic::transport::Channel::from_shared(format!(
        "http://{}:{}",
        metadata.host, metadata.port
    ))
    .expect("executor URL")
    .connect()
    .await
    .expect("executor reachable");
    let mut flight =
        FlightServiceClient::new(auth::admin().wrap(channel)).max_encoding_message_size(64 << 20);
    let log_before = cluster.executors[0].logs().len();
    let ticket = prost::Message::encode_to_vec(&proto::FetchPartitionTicket {
        job_id: "job1".into(),
        path: format!("job1/../{}\n", "p".repeat(8 << 20)),
        executor_id: metadata.id.clone(),
        expires_at_secs: u64::MAX,
        signature: vec![0; 32],
    });
    let status = flight
        .do_get(Ticket::new(ticket))
        .await
        .expect_err("an 8 MiB ticket path is refused");
    assert!(
        status.message().len() < 1024,
        "{} bytes",
        status.message().len()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = cluster.executors[0].logs();
    let written = &logs[log_before..];
    assert!(written.contains("refused Flight ticket"), "{written}");
    assert!(
        written.len() < 2048,
        "the ticket wrote {} bytes of log",
        written.len()
    );
    assert_serves(&mut cluster).await;
}
