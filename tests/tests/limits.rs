//! No request can crash or exhaust a process: deep expressions and session
//! settings over the cluster's limits are refused with typed errors naming
//! the limit, and the processes keep serving.

use ballista::BallistaError;
use ballista::client::{SchedulerClient, SessionContextExt};
use ballista::proto::{self, ErrorKind, JobState};
use ballista_tests::cluster::TestCluster;
use datafusion::prelude::SessionContext;

fn kind_of(error: datafusion::error::DataFusionError) -> (ErrorKind, String) {
    let typed = BallistaError::from_datafusion(error).typed();
    (typed.kind(), typed.to_string())
}

/// The error the cluster answers `sql` with, by kind and message.
async fn refusal(ctx: &SessionContext, sql: &str) -> (ErrorKind, String) {
    let err = ctx
        .sql(sql)
        .await
        .expect("plans in the client")
        .collect()
        .await
        .expect_err("the cluster refuses the query");
    kind_of(err)
}

async fn sum_of(ctx: &SessionContext, sql: &str) -> i64 {
    let batches = ctx
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("the query succeeds");
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

async fn assert_healthy(cluster: &mut TestCluster, ctx: &SessionContext) {
    assert!(
        cluster.scheduler.is_running(),
        "{}",
        cluster.scheduler.logs()
    );
    for executor in &mut cluster.executors {
        assert!(executor.is_running(), "{}", executor.logs());
    }
    let n = sum_of(
        ctx,
        "SELECT sum(v) FROM (SELECT value AS v FROM generate_series(1, 100)) GROUP BY v % 1 ",
    )
    .await;
    assert_eq!(n, 5050);
}

/// `SELECT sum(v + v + … + v)` with `terms` terms over v = 1, 2, 3 (a
/// column, so that no optimizer folds the chain into a constant).
fn chain(terms: usize) -> String {
    format!(
        "SELECT sum({}) FROM (SELECT value AS v FROM generate_series(1, 3))",
        vec!["v"; terms].join("+")
    )
}

async fn final_status(
    scheduler: &SchedulerClient,
    request: proto::ExecuteQueryRequest,
) -> proto::JobStatus {
    let mut updates = scheduler.execute(request).await.expect("submit");
    let mut last = None;
    while let Some(status) = updates.message().await.expect("status stream") {
        last = Some(status);
    }
    last.expect("final status")
}

fn assert_refused(status: &proto::JobStatus, kind: ErrorKind, needles: &[&str]) {
    assert_eq!(status.state, JobState::Failed as i32, "{status:?}");
    let error = status.error.as_ref().expect("an error");
    assert_eq!(error.kind, kind as i32, "{error:?}");
    for needle in needles {
        assert!(
            error.message.contains(needle),
            "{needle}: {}",
            error.message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_expressions_are_refused_naming_the_limit() {
    let mut cluster = TestCluster::start(1, 2, None).await;
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();
    assert_healthy(&mut cluster, &ctx).await;

    // Within the limit: the answer.
    assert_eq!(sum_of(&ctx, &chain(30)).await, 180);

    // 1,000 terms planned by the client, then sent as a plan.
    let (kind, message) = refusal(&ctx, &chain(1000)).await;
    assert_eq!(kind, ErrorKind::InvalidInput, "{message}");
    assert!(
        message.contains("1001 levels") && message.contains("max_expression_depth"),
        "{message}"
    );
    assert_healthy(&mut cluster, &ctx).await;

    // SQL text parsed by the scheduler itself.
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let status = final_status(
        &scheduler,
        proto::ExecuteQueryRequest {
            query: Some(proto::execute_query_request::Query::Sql(chain(5000))),
            ..Default::default()
        },
    )
    .await;
    assert_refused(&status, ErrorKind::InvalidInput, &["max_expression_depth"]);
    assert_healthy(&mut cluster, &ctx).await;

    assert_healthy(&mut cluster, &ctx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_outside_the_cluster_limits_are_refused() {
    let mut cluster = TestCluster::start(
        2,
        1,
        Some("[scheduler.limits]\nmax_partitions_per_stage = 64\nmax_tasks_per_job = 40\n"),
    )
    .await;
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();
    assert_healthy(&mut cluster, &ctx).await;

    for (setting, needles) in [
        (
            "datafusion.execution.batch_size = 35184372088832",
            &[
                "datafusion.execution.batch_size = 35184372088832",
                "1 to 1048576 (scheduler.limits.max_batch_size)",
            ][..],
        ),
        (
            "datafusion.execution.target_partitions = 1099511627776",
            &[
                "datafusion.execution.target_partitions = 1099511627776",
                "0 to 64 (scheduler.limits.max_partitions_per_stage)",
            ][..],
        ),
        (
            "datafusion.execution.target_partitions = 20000",
            &["0 to 64"][..],
        ),
        (
            "datafusion.sql_parser.recursion_limit = 100000",
            &["1 to 500 (scheduler.limits.max_parser_recursion)"][..],
        ),
    ] {
        let session = SessionContext::remote(&cluster.scheduler_url)
            .await
            .unwrap();
        session.sql(&format!("SET {setting}")).await.unwrap();
        let (kind, message) = refusal(&session, "SELECT count(*) FROM generate_series(1, 3)").await;
        assert_eq!(kind, ErrorKind::InvalidInput, "{setting}: {message}");
        for needle in needles {
            assert!(message.contains(needle), "{needle}: {message}");
        }
        assert_healthy(&mut cluster, &ctx).await;
    }

    // Within the partition limit, but over the tasks a job may run.
    let session = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();
    session
        .sql("SET datafusion.execution.target_partitions = 64")
        .await
        .unwrap();
    let (kind, message) = refusal(
        &session,
        "SELECT v % 7 AS k, count(*) FROM (SELECT value AS v FROM generate_series(1, 1000)) \
         GROUP BY v % 7",
    )
    .await;
    assert_eq!(kind, ErrorKind::ResourcesExhausted, "{message}");
    assert!(
        message.contains("the limit is 40 (scheduler.limits.max_tasks_per_job)"),
        "{message}"
    );
    assert_healthy(&mut cluster, &ctx).await;
}
