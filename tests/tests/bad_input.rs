//! Bad input reaches the client as a clear, typed error and leaves the
//! cluster healthy; tickets cannot escape the work directory; executors and
//! the CLI say so when the scheduler cannot be reached.

use std::net::TcpListener;
use std::time::Duration;

use arrow_flight::Ticket;
use arrow_flight::flight_service_client::FlightServiceClient;
use ballista::BallistaError;
use ballista::client::{SchedulerClient, SessionContextExt};
use ballista::proto::{self, ErrorKind, FetchPartitionTicket, JobState};
use ballista_tests::cluster::{Process, TestCluster, binary};
use ballista_tests::data::tpch_data;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn kind_of(error: datafusion::error::DataFusionError) -> (ErrorKind, String) {
    let typed = BallistaError::from_datafusion(error).typed();
    (typed.kind(), typed.to_string())
}

async fn sql_text_job(scheduler: &SchedulerClient, sql: &str) -> proto::JobStatus {
    let request = proto::ExecuteQueryRequest {
        query: Some(proto::execute_query_request::Query::Sql(sql.into())),
        ..Default::default()
    };
    let mut updates = scheduler.execute(request).await.expect("submit");
    let mut last = None;
    while let Some(status) = updates.message().await.expect("status stream") {
        last = Some(status);
    }
    last.expect("final status")
}

async fn assert_healthy(ctx: &SessionContext) {
    let batches = ctx
        .sql("SELECT count(*) AS n FROM nation")
        .await
        .expect("plan")
        .collect()
        .await
        .expect("the next query succeeds");
    let n = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n, 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_fail_clearly_and_the_cluster_keeps_serving() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let cluster = TestCluster::start(1, 2, None).await;
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();
    ctx.register_parquet(
        "nation",
        &format!("{}/nation/", data.display()),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    assert_healthy(&ctx).await;

    // Syntax error.
    let err = ctx.sql("SELEC n_name FROM nation").await.unwrap_err();
    let (kind, message) = kind_of(err);
    assert_eq!(kind, ErrorKind::InvalidInput, "{message}");
    assert!(message.contains("SELEC"), "{message}");
    assert_healthy(&ctx).await;

    // Unknown table.
    let err = ctx.sql("SELECT * FROM no_such_table").await.unwrap_err();
    let (kind, message) = kind_of(err);
    assert_eq!(kind, ErrorKind::Plan, "{message}");
    assert!(message.contains("no_such_table"), "{message}");
    assert_healthy(&ctx).await;

    // A table over a file that does not exist: the scheduler refuses to plan it.
    ctx.sql("CREATE EXTERNAL TABLE gone (a INT, b VARCHAR) STORED AS CSV LOCATION '/nonexistent/ballista/data.csv'")
        .await
        .unwrap();
    let err = ctx
        .sql("SELECT * FROM gone")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    let (kind, message) = kind_of(err);
    assert_eq!(kind, ErrorKind::NotFound, "{message}");
    assert!(
        message.contains("/nonexistent/ballista/data.csv"),
        "{message}"
    );
    assert_healthy(&ctx).await;

    // A file deleted after it was registered.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("nation.parquet");
    std::fs::copy(data.join("nation/part-1.parquet"), &copy).unwrap();
    ctx.register_parquet(
        "doomed",
        copy.to_str().unwrap(),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    std::fs::remove_file(&copy).unwrap();
    let err = ctx
        .sql("SELECT count(*) FROM doomed")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    let (kind, message) = kind_of(err);
    assert_eq!(kind, ErrorKind::NotFound, "{message}");
    assert!(message.contains("nation.parquet"), "{message}");
    assert_healthy(&ctx).await;

    // The same mistakes sent as SQL text to the scheduler fail the job with
    // the same kinds.
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    for (sql, expected, needle) in [
        ("SELEC 1", ErrorKind::InvalidInput, "SELEC"),
        (
            "SELECT * FROM no_such_table",
            ErrorKind::Plan,
            "no_such_table",
        ),
    ] {
        let status = sql_text_job(&scheduler, sql).await;
        assert_eq!(status.state, JobState::Failed as i32);
        let error = status.error.expect("error info");
        assert_eq!(error.kind, expected as i32, "{}", error.message);
        assert!(error.message.contains(needle), "{}", error.message);
    }
    let status = sql_text_job(&scheduler, "SELECT 1 + 1").await;
    assert_eq!(
        status.state,
        JobState::Succeeded as i32,
        "{:?}",
        status.error
    );
    assert_healthy(&ctx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_tickets_cannot_name_files_outside_the_work_directory() {
    let cluster = TestCluster::start(1, 1, None).await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let executor = scheduler
        .executors()
        .await
        .unwrap()
        .remove(0)
        .metadata
        .unwrap();
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", executor.port))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut flight = FlightServiceClient::new(ballista_tests::auth::admin().wrap(channel));

    for (job_id, path, code) in [
        (
            "job1",
            "../../../../etc/passwd",
            tonic::Code::PermissionDenied,
        ),
        (
            "job1",
            "job1/../../../../etc/passwd",
            tonic::Code::PermissionDenied,
        ),
        ("job1", "/etc/passwd", tonic::Code::PermissionDenied),
        // Unsigned, it is refused before its job id is even read.
        ("..", "../etc/passwd", tonic::Code::PermissionDenied),
    ] {
        // Unsigned tickets: the executor serves only what the scheduler
        // signed (the path checks behind the signature are unit-tested and
        // fuzzed).
        let ticket = FetchPartitionTicket {
            job_id: job_id.into(),
            path: path.into(),
            ..Default::default()
        };
        let status = match flight
            .do_get(Ticket::new(prost::Message::encode_to_vec(&ticket)))
            .await
        {
            Err(status) => status,
            Ok(mut stream) => stream
                .get_mut()
                .message()
                .await
                .expect_err("no data may be served"),
        };
        assert_eq!(status.code(), code, "{path}: {}", status.message());
        assert!(!status.message().contains("root:"), "{}", status.message());
    }
    // The executor is still serving.
    assert_eq!(scheduler.executors().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_without_scheduler_says_so_and_keeps_retrying() {
    let port = dead_port();
    let work = tempfile::tempdir().unwrap();
    let args = [
        "--port",
        "0",
        "--bind-host",
        "127.0.0.1",
        "--scheduler-url",
        &format!("http://127.0.0.1:{port}"),
        "--work-dir",
        work.path().to_str().unwrap(),
    ]
    .map(String::from);
    let mut executor = Process::start("executor", "ballista-executor", &args, &[]);
    executor.wait_for_stderr("cannot reach the scheduler", Duration::from_secs(20));
    // It keeps trying (back-off starts at one second) and stays up.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while executor
        .stderr_lines_containing("cannot reach the scheduler")
        .len()
        < 3
    {
        assert!(std::time::Instant::now() < deadline, "{}", executor.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(executor.is_running());
    let line = &executor.stderr_lines_containing("cannot reach the scheduler")[0];
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
}

#[test]
fn cli_against_a_dead_scheduler_fails_with_a_clear_message() {
    let port = dead_port();
    let output = std::process::Command::new(binary("ballista"))
        .args([
            "sql",
            "--scheduler",
            &format!("http://127.0.0.1:{port}"),
            "-c",
            "SELECT 1",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot reach the scheduler at http://127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}
