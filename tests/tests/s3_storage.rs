//! Tables, writes and shuffle in S3, on a real S3-compatible server
//! (`moto_server`, started by `scripts/test.sh`) with separate scheduler and
//! executor processes. Without the server these tests fail; they never skip.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ballista::BallistaError;
use ballista::client::{JobProgressListener, SchedulerClient, SessionContextExt};
use ballista::config::BallistaSettings;
use ballista::flight::FlightClientPool;
use ballista::ids::JobId;
use ballista::proto::{self, JobState};
use ballista_tests::cluster::TestCluster;
use ballista_tests::data::tpch_data;
use ballista_tests::{bench, compare, s3, tpch_differences};
use datafusion::prelude::SessionContext;
use parking_lot::Mutex;

const TPCH_BUCKET: &str = "tpch-sf01";

/// A client whose own storage settings (`toml`) let it plan S3 tables.
async fn client(cluster: &TestCluster, toml: &str) -> SessionContext {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.toml");
    std::fs::write(&path, toml).unwrap();
    let settings = BallistaSettings::load(Some(&path)).unwrap();
    let config = ballista_bin::server::stock_config(settings);
    SessionContext::remote_with_config(&cluster.scheduler_url, config)
        .await
        .unwrap()
}

/// TPC-H scale factor 0.1 as parquet in the test bucket (uploaded once per
/// server).
async fn tpch_in_s3() -> std::path::PathBuf {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    s3::create_bucket(TPCH_BUCKET);
    if s3::list(TPCH_BUCKET, "tpch/supplier").await.is_empty() {
        s3::upload_dir(&data, TPCH_BUCKET, "tpch").await;
    }
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_22_tpch_queries_over_s3_equal_the_answers_over_local_files() {
    let data = tpch_in_s3().await;
    let storage = s3::storage_toml();
    let cluster = TestCluster::start_with(2, 2, Some(&storage), Some(&storage)).await;
    let distributed = client(&cluster, &storage).await;
    bench::register_tables_at(&distributed, &format!("s3://{TPCH_BUCKET}/tpch"))
        .await
        .unwrap();
    let local = ballista_tests::local_tpch_session(&data).await;
    let differences = tpch_differences(&distributed, &local, 1..=22).await;
    assert!(
        differences.is_empty(),
        "TPC-H over S3 differs from local files:\n{}",
        differences.join("\n")
    );
}

const SHUFFLE_QUERY: &str = "SELECT o_orderpriority, count(*) AS line_count, sum(l_quantity) AS qty \
                             FROM orders JOIN lineitem ON l_orderkey = o_orderkey \
                             GROUP BY o_orderpriority ORDER BY o_orderpriority";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_shuffle_writes_under_the_prefix_is_read_across_executors_and_is_deleted() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let bucket = s3::unique_bucket("shuffle-test");
    let bucket = bucket.as_str();
    let storage = s3::storage_toml();
    let executor_toml = format!(
        "{storage}\n[shuffle]\nkind = \"object-store\"\nurl = \"s3://{bucket}/shuffle/\"\n"
    );
    // The scheduler reads the same file: it keeps queries out of the
    // shuffle storage.
    let cluster = TestCluster::start_with(2, 2, Some(&executor_toml), Some(&executor_toml)).await;
    let distributed = client(&cluster, &storage).await;
    bench::register_tables(&distributed, &data).await.unwrap();
    distributed
        .sql("SET datafusion.execution.target_partitions = 4")
        .await
        .unwrap();
    let last_status: Arc<Mutex<Option<proto::JobStatus>>> = Arc::default();
    let recorded = Arc::clone(&last_status);
    distributed
        .state_ref()
        .write()
        .config_mut()
        .set_extension(Arc::new(JobProgressListener(Arc::new(move |status| {
            *recorded.lock() = Some(status.clone());
        }))));

    // Watch the prefix while the job runs.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = tokio::spawn({
        let done = Arc::clone(&done);
        let bucket = bucket.to_string();
        async move {
            let mut seen = BTreeSet::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                seen.extend(s3::list(&bucket, "shuffle").await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        }
    });
    let actual = distributed
        .sql(SHUFFLE_QUERY)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = watcher.await.unwrap();

    let local = ballista_tests::local_tpch_session(&data).await;
    let expected = local
        .sql(SHUFFLE_QUERY)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    compare::compare(&expected, &actual).unwrap();

    let status = last_status.lock().clone().expect("job status seen");
    eprintln!(
        "{} shuffle object(s) seen under s3://{bucket}/shuffle/ while the job ran",
        seen.len()
    );
    assert_eq!(status.state, JobState::Succeeded as i32);
    let job_prefix = format!("shuffle/{}/", status.job_id);
    assert!(
        !seen.is_empty() && seen.iter().all(|key| key.starts_with(&job_prefix)),
        "shuffle objects under {job_prefix} while the job ran: {seen:?}"
    );
    assert!(
        seen.iter().all(|key| key.ends_with(".arrow")),
        "only committed objects are ever listed: {seen:?}"
    );
    // A consumer stage read map outputs written by the other executor.
    let stage_executors = |stage: &proto::StageInfo| -> BTreeSet<String> {
        stage.tasks.iter().map(|t| t.executor_id.clone()).collect()
    };
    let cross_read = status.stages.iter().any(|stage| {
        !stage.inputs.is_empty()
            && stage.tasks.iter().any(|task| {
                task.metrics.as_ref().is_some_and(|m| m.remote_fetches > 0)
                    && stage.inputs.iter().any(|input| {
                        status
                            .stages
                            .iter()
                            .find(|s| s.stage_id == *input)
                            .is_some_and(|s| {
                                stage_executors(s).iter().any(|e| *e != task.executor_id)
                            })
                    })
            })
    });
    assert!(
        cross_read,
        "no consumer read another executor's output: {:#?}",
        status.stages
    );

    // Deleted once the job has ended and its results were read.
    let mut remaining = s3::list(bucket, "shuffle").await;
    for _ in 0..100 {
        if remaining.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        remaining = s3::list(bucket, "shuffle").await;
    }
    assert!(remaining.is_empty(), "shuffle objects left: {remaining:?}");

    // Queries cannot reach into the shuffle storage...
    let error = failure_of(
        &distributed,
        &format!(
            "COPY (SELECT 1 AS x) TO 's3://{bucket}/shuffle/{}/' STORED AS CSV",
            status.job_id
        ),
    )
    .await;
    assert!(
        matches!(error, BallistaError::PermissionDenied(_))
            && error.to_string().contains("inside the shuffle storage"),
        "{error:?}"
    );
    // ...and an executor's Flight service hands out no object without a
    // ticket the scheduler signed (and then only objects its own tasks
    // committed), not any key it could read with its credentials.
    let executor = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap()
        .executors()
        .await
        .unwrap()
        .into_iter()
        .find_map(|e| e.metadata)
        .unwrap();
    let seen_key = seen.iter().next().unwrap();
    let refused = FlightClientPool::with_credentials(ballista_tests::auth::admin())
        .fetch(
            &executor.host,
            executor.port as u16,
            &JobId::parse(&status.job_id).unwrap(),
            &format!("s3://{bucket}/{seen_key}"),
            &[],
            Arc::new(arrow::datatypes::Schema::empty()),
        )
        .await
        .map(|_| ())
        .expect_err("a deleted job's object must not be served");
    assert!(
        matches!(refused, BallistaError::PermissionDenied(_)),
        "{refused:?}"
    );
}

/// Runs `sql` on the cluster; the error, typed. Fails the test if it takes
/// longer than a minute (a hang) or succeeds.
async fn failure_of(ctx: &SessionContext, sql: &str) -> BallistaError {
    let run = async {
        match ctx.sql(sql).await {
            Ok(df) => df.collect().await,
            Err(e) => Err(e),
        }
    };
    match tokio::time::timeout(Duration::from_secs(60), run).await {
        Err(_) => panic!("{sql}: no answer within 60 s"),
        Ok(Ok(_)) => panic!("{sql}: succeeded, expected a failure"),
        Ok(Err(e)) => BallistaError::from_datafusion(e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_a_missing_bucket_and_an_unreachable_endpoint_fail_clearly() {
    tpch_in_s3().await;
    // One storage table, three bad buckets through per-bucket settings.
    let storage = format!(
        "{}\n[storage.buckets.locked]\nendpoint = \"{}\"\n\n[storage.buckets.nowhere]\nendpoint = \"http://127.0.0.1:9\"\n",
        s3::storage_toml(),
        s3::strict_endpoint()
    );
    let cluster = TestCluster::start_with(2, 2, Some(&storage), Some(&storage)).await;
    let ctx = client(&cluster, &storage).await;
    ctx.sql(&format!(
        "CREATE EXTERNAL TABLE nation STORED AS PARQUET LOCATION 's3://{TPCH_BUCKET}/tpch/nation/'"
    ))
    .await
    .unwrap();
    let healthy = "SELECT count(*) AS n FROM nation";
    let expected = ctx.sql(healthy).await.unwrap().collect().await.unwrap();

    type Kind = fn(&BallistaError) -> bool;
    let cases: [(&str, &[&str], Kind); 3] = [
        ("locked", &["locked", "InvalidAccessKeyId"], |e| {
            matches!(e, BallistaError::PermissionDenied(_))
        }),
        (
            "no-such-bucket",
            &["no-such-bucket", "does not exist"],
            |e| matches!(e, BallistaError::NotFound(_)),
        ),
        (
            "nowhere",
            &["nowhere", "127.0.0.1:9", "error sending request"],
            |e| matches!(e, BallistaError::Io(_) | BallistaError::Unavailable(_)),
        ),
    ];
    for (bucket, needles, expected_kind) in cases {
        // An explicit schema: the client plans without touching the bucket,
        // so the cluster is the one that meets the problem.
        ctx.sql(&format!(
            "CREATE EXTERNAL TABLE t_{0} (a INT) STORED AS CSV LOCATION 's3://{1}/data/'",
            bucket.replace('-', "_"),
            bucket
        ))
        .await
        .unwrap();
        let started = std::time::Instant::now();
        let error = failure_of(
            &ctx,
            &format!("SELECT count(*) FROM t_{}", bucket.replace('-', "_")),
        )
        .await;
        let message = error.to_string();
        eprintln!(
            "{bucket}: failed after {:.1} s with {}",
            started.elapsed().as_secs_f64(),
            message
        );
        assert!(expected_kind(&error), "{bucket}: wrong kind: {error:?}");
        for needle in needles {
            assert!(
                message.contains(needle),
                "{bucket}: error should contain {needle:?}: {message}"
            );
        }
        // The cluster still answers.
        let after = ctx.sql(healthy).await.unwrap().collect().await.unwrap();
        compare::compare(&expected, &after).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_insert_write_to_s3_and_a_failed_copy_leaves_nothing() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let bucket = s3::unique_bucket("writes-test");
    let bucket = bucket.as_str();
    let storage = s3::storage_toml();
    let cluster = TestCluster::start_with(2, 2, Some(&storage), Some(&storage)).await;
    let ctx = client(&cluster, &storage).await;
    bench::register_tables(&ctx, &data).await.unwrap();
    let local = ballista_tests::local_tpch_session(&data).await;

    // COPY to S3, read back.
    let select = "SELECT o_orderpriority, count(*) AS n FROM orders GROUP BY o_orderpriority";
    ctx.sql(&format!(
        "COPY ({select}) TO 's3://{bucket}/copied/' STORED AS PARQUET"
    ))
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
    assert!(!s3::list(bucket, "copied").await.is_empty());
    ctx.sql(&format!(
        "CREATE EXTERNAL TABLE copied STORED AS PARQUET LOCATION 's3://{bucket}/copied/'"
    ))
    .await
    .unwrap();
    let read_back = ctx
        .sql("SELECT * FROM copied ORDER BY o_orderpriority")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let expected = local
        .sql(&format!("{select} ORDER BY o_orderpriority"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    compare::compare(&expected, &read_back).unwrap();

    // INSERT INTO an external table on S3, twice.
    ctx.sql(&format!(
        "CREATE EXTERNAL TABLE inserted (n_nationkey BIGINT, n_name VARCHAR) STORED AS PARQUET LOCATION 's3://{bucket}/inserted/'"
    ))
    .await
    .unwrap();
    for _ in 0..2 {
        ctx.sql("INSERT INTO inserted SELECT n_nationkey, n_name FROM nation")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
    }
    let counted = ctx
        .sql("SELECT count(*) AS c, count(DISTINCT n_nationkey) AS d FROM inserted")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let expected = local
        .sql("SELECT 2 * count(*) AS c, count(DISTINCT n_nationkey) AS d FROM nation")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    compare::compare(&expected, &counted).unwrap();

    // A COPY that fails after it has written some files. Single-process
    // DataFusion shows the scenario is real: it leaves finished files behind.
    let failing = "SELECT l_orderkey, l_comment, \
                   CASE WHEN l_orderkey > 500000 THEN l_linenumber / (l_linenumber - l_linenumber) ELSE 1 END AS x \
                   FROM lineitem";
    let small_files = "SET datafusion.execution.soft_max_rows_per_output_file = 5000";
    local.sql(small_files).await.unwrap();
    let local_out = tempfile::tempdir().unwrap();
    let local_result = local
        .sql(&format!(
            "COPY ({failing}) TO '{}/' STORED AS PARQUET",
            local_out.path().display()
        ))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(local_result.is_err(), "the COPY must fail");
    let left_locally = std::fs::read_dir(local_out.path()).unwrap().count();
    eprintln!("single-process DataFusion left {left_locally} file(s) of the failed COPY");
    assert!(
        left_locally > 0,
        "single-process DataFusion should leave partial output (the scenario is not midway otherwise)"
    );

    // One partition: scan, projection and sink run in one task, so the sink
    // has written files when the failing rows arrive.
    ctx.sql(small_files).await.unwrap();
    ctx.sql("SET datafusion.execution.target_partitions = 1")
        .await
        .unwrap();
    let error = failure_of(
        &ctx,
        &format!("COPY ({failing}) TO 's3://{bucket}/failed/' STORED AS PARQUET"),
    )
    .await;
    assert!(
        error.to_string().contains("Divide by zero"),
        "unexpected error: {error}"
    );
    // Nothing is left under the destination, visible or staged.
    let mut left = s3::list(bucket, "failed").await;
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = s3::list(bucket, "failed").await;
    }
    assert!(left.is_empty(), "partial output of a failed COPY: {left:?}");
    // The executor had written files, and threw them away.
    let discarded: Vec<String> = cluster
        .executors
        .iter()
        .flat_map(|e| e.stderr_lines_containing("staged output file(s)"))
        .collect();
    assert!(
        discarded.iter().any(|line| line.contains("discarded")),
        "no executor discarded staged output: {discarded:?}"
    );
    eprintln!("{}", discarded.join("\n"));
}
