//! No request can crash or exhaust a process: deep expressions and session
//! settings over the cluster's limits are refused with typed errors naming
//! the limit, and the processes keep serving.

use ballista::BallistaError;
use ballista::client::{SchedulerClient, SessionContextExt};
use ballista::ids::JobId;
use ballista::proto::{self, ErrorKind, JobState};
use ballista_tests::cluster::TestCluster;
use ballista_tests::probe::{assert_processes_up, final_status, single_i64 as sum_of};
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

async fn assert_healthy(cluster: &mut TestCluster, ctx: &SessionContext) {
    assert_processes_up(cluster);
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

    // 1,000 terms planned by the client, then sent as a plan: its list
    // of operands is refused before the scheduler decodes it.
    let (kind, message) = refusal(&ctx, &chain(1000)).await;
    assert_eq!(kind, ErrorKind::InvalidInput, "{message}");
    assert!(
        message.contains("chains 1000 operands") && message.contains("max_expression_depth"),
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

/// A job that holds its tasks for 30 s (an injected delay), in `session`.
fn long_job(session: &str) -> proto::ExecuteQueryRequest {
    proto::ExecuteQueryRequest {
        query: Some(proto::execute_query_request::Query::Sql(
            "SELECT sum(value) FROM generate_series(1, 10)".into(),
        )),
        settings: proto::key_values([("ballista.inject_failures", "*:*:*:delay=30000")]),
        session_id: session.into(),
        ..Default::default()
    }
}

fn quick_job() -> proto::ExecuteQueryRequest {
    proto::ExecuteQueryRequest {
        query: Some(proto::execute_query_request::Query::Sql(
            "SELECT sum(value) FROM generate_series(1, 10)".into(),
        )),
        session_id: "session-quick".into(),
        ..Default::default()
    }
}

fn assert_exhausted(error: BallistaError, needle: &str) {
    let typed = error.typed();
    assert_eq!(typed.kind(), ErrorKind::ResourcesExhausted, "{typed}");
    assert!(typed.to_string().contains(needle), "{needle}: {typed}");
}

fn fake_registration(id: &str) -> proto::RegisterExecutorRequest {
    proto::RegisterExecutorRequest {
        metadata: Some(proto::ExecutorMetadata {
            id: id.into(),
            host: "127.0.0.1".into(),
            port: 4000,
            slots: 1,
            version: "test".into(),
        }),
        memory: None,
        cleanups_in_launches: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_executors_and_history_are_capped_naming_the_limit() {
    let mut cluster = TestCluster::start_with(
        1,
        2,
        Some(
            "[scheduler.limits]\nmax_jobs = 3\nmax_jobs_per_session = 2\nmax_executors = 2\n\
             max_finished_jobs = 1\n",
        ),
        Some("[executor]\nfailure_injection = true\n"),
    )
    .await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();

    // Two long jobs of one session run (or queue); its third is refused.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(scheduler.execute(long_job("session-a")).await.unwrap());
    }
    let refused = scheduler.execute(long_job("session-a")).await.err();
    assert_exhausted(
        refused.expect("a third job of the session is refused"),
        "scheduler.limits.max_jobs_per_session = 2",
    );
    // Another session takes the last of the three places in all.
    held.push(scheduler.execute(long_job("session-b")).await.unwrap());
    let refused = scheduler.execute(long_job("session-c")).await.err();
    assert_exhausted(
        refused.expect("a fourth job in all is refused"),
        "scheduler.limits.max_jobs = 3",
    );
    let mut job_ids = Vec::new();
    for updates in &mut held {
        let first = updates.message().await.unwrap().expect("a first status");
        job_ids.push(JobId::parse(&first.job_id).unwrap());
    }
    for job_id in &job_ids {
        assert!(scheduler.cancel(job_id).await.unwrap());
    }
    drop(held);

    // One executor is registered: a second may join, a third may not.
    let url = &cluster.scheduler_url;
    ballista_tests::auth::scheduler_grpc(url, &ballista_tests::auth::register("fake-1"))
        .await
        .register_executor(fake_registration("fake-1"))
        .await
        .expect("a second executor registers");
    let status =
        ballista_tests::auth::scheduler_grpc(url, &ballista_tests::auth::register("fake-2"))
            .await
            .register_executor(fake_registration("fake-2"))
            .await
            .expect_err("a third executor is refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("scheduler.limits.max_executors"),
        "{status:?}"
    );
    let mut raw = ballista_tests::auth::scheduler_grpc(url, &ballista_tests::auth::admin()).await;
    raw.deregister_executor(proto::DeregisterExecutorRequest {
        executor_id: "fake-1".into(),
        reason: "test over".into(),
        takes_removals: false,
    })
    .await
    .unwrap();

    // Finished jobs whose results are released: only the newest is kept.
    let mut finished = Vec::new();
    for _ in 0..3 {
        let mut updates = scheduler.execute(quick_job()).await.unwrap();
        let mut last = None;
        while let Some(status) = updates.message().await.unwrap() {
            last = Some(status);
        }
        let last = last.expect("a final status");
        assert_eq!(last.state, JobState::Succeeded as i32, "{last:?}");
        let job_id = JobId::parse(&last.job_id).unwrap();
        scheduler.release(&job_id).await.unwrap();
        finished.push(job_id);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let forgotten = scheduler.job_status(&finished[0]).await.is_err()
            && scheduler.job_status(&finished[1]).await.is_err();
        if forgotten {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "finished jobs beyond scheduler.limits.max_finished_jobs = 1 are still kept"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    scheduler
        .job_status(&finished[2])
        .await
        .expect("the newest finished job is kept");
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();
    assert_healthy(&mut cluster, &ctx).await;
}

/// A client plan whose one binary operator lists 100,000 operands (585 KiB
/// on the wire) is refused before DataFusion rebuilds the chain, which
/// would take minutes and gigabytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_made_plan_with_a_huge_operand_list_is_refused_before_decoding() {
    use datafusion_proto::protobuf::logical_expr_node::ExprType;
    use datafusion_proto::protobuf::logical_plan_node::LogicalPlanType;
    use datafusion_proto::protobuf::{LogicalExprNode, LogicalPlanNode};
    use prost::Message;

    fn binary(expr: &mut LogicalExprNode) -> &mut datafusion_proto::protobuf::BinaryExprNode {
        match expr.expr_type.as_mut() {
            Some(ExprType::BinaryExpr(binary)) => binary,
            Some(ExprType::Alias(alias)) => {
                binary(alias.expr.as_mut().expect("aliased expression"))
            }
            other => panic!("not a binary expression: {other:?}"),
        }
    }

    let mut cluster = TestCluster::start(1, 2, None).await;
    let local = SessionContext::new();
    let plan = local
        .sql("SELECT v + v AS s FROM (VALUES (1), (2)) AS t(v)")
        .await
        .unwrap()
        .logical_plan()
        .clone();
    let bytes = ballista::plan::encode_client_plan(&plan, &local.state())
        .await
        .unwrap();
    let mut node = LogicalPlanNode::decode(bytes.as_slice()).unwrap();
    let Some(LogicalPlanType::Projection(projection)) = node.logical_plan_type.as_mut() else {
        panic!("not a projection: {node:?}");
    };
    let sum = binary(&mut projection.expr[0]);
    let operand = sum.operands[0].clone();
    sum.operands = vec![operand; 100_000];
    let huge = node.encode_to_vec();

    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let status = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        final_status(
            &scheduler,
            proto::ExecuteQueryRequest {
                query: Some(proto::execute_query_request::Query::LogicalPlan(huge)),
                ..Default::default()
            },
        ),
    )
    .await
    .expect("refused within a minute, not after minutes of decoding");
    assert_refused(
        &status,
        ErrorKind::InvalidInput,
        &[
            "chains 100000 operands",
            "scheduler.limits.max_expression_depth",
        ],
    );
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();
    assert_healthy(&mut cluster, &ctx).await;
}
