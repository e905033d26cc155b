//! Injected task failures on real scheduler and executor processes: a
//! retried failure gives the right answer, exhausted retries fail the job
//! with the original error kind, a panicking task fails its task and not its
//! executor, and executors refuse injection unless started for tests.

use ballista::client::SchedulerClient;
use ballista::proto::{ErrorKind, JobState};
use ballista_tests::cluster::TestCluster;
use ballista_tests::compare::compare;
use ballista_tests::data::tpch_data;
use ballista_tests::session::{TrackedSession, expected};

const QUERY: &str = "SELECT l_returnflag, l_linestatus, count(*) AS n, sum(l_quantity) AS q
    FROM lineitem GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus";

const INJECTION: &str = "[executor]\nfailure_injection = true\n";

async fn session(cluster: &TestCluster, rules: &str) -> TrackedSession {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let mut settings = vec![("datafusion.execution.target_partitions", "4")];
    if !rules.is_empty() {
        settings.push(("ballista.inject_failures", rules));
    }
    TrackedSession::new(&cluster.scheduler_url, &data, &settings).await
}

async fn want() -> Vec<arrow::record_batch::RecordBatch> {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    expected(&data, QUERY).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_failures_are_retried_or_fail_the_job_with_their_own_kind() {
    let cluster = TestCluster::start_with(2, 2, None, Some(INJECTION)).await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let want = want().await;

    // An I/O failure of the first attempt of one task is retried.
    let (rows, job) = session(&cluster, "1:0:0:io").await.run(QUERY).await;
    compare(&want, &rows.expect("retried")).expect("the retried job's result equals DataFusion");
    let status = scheduler.job_status(&job).await.unwrap();
    let task = status
        .stages
        .iter()
        .find(|s| s.stage_id == 1)
        .and_then(|s| s.tasks.iter().find(|t| t.partition == 0))
        .expect("stage 1 partition 0");
    eprintln!(
        "retried task: attempt {} on {}",
        task.attempt, task.executor_id
    );
    assert_eq!(task.attempt, 1, "the task ran a second attempt");
    assert_eq!(task.failures.len(), 1, "{task:?}");
    let failed_on = &task.failures[0].executor_id;
    eprintln!("attempt 0 failed on {failed_on}");
    assert_ne!(
        failed_on, &task.executor_id,
        "the retry ran on the other executor"
    );
    assert!(
        cluster.executors.iter().any(|e| !e
            .stderr_lines_containing("injecting a Io failure")
            .is_empty()),
        "an executor logged the injection"
    );

    // Failing every attempt exhausts the retries: the job fails with the
    // I/O error, and the cluster runs the next job.
    let (rows, _) = session(&cluster, "1:0:*:io").await.run(QUERY).await;
    let error = rows.expect_err("every attempt fails");
    eprintln!("exhausted: {error}");
    assert_eq!(error.kind(), ErrorKind::Io, "{error}");
    assert!(
        error.to_string().contains("injected failure of task"),
        "{error}"
    );
    let (rows, _) = session(&cluster, "").await.run(QUERY).await;
    compare(&want, &rows.unwrap()).unwrap();

    // A panicking task fails its task (not retried: a bug is deterministic),
    // and every executor process lives on.
    let (rows, job) = session(&cluster, "1:1:0:panic").await.run(QUERY).await;
    let error = rows.expect_err("the task panicked");
    eprintln!("panic: {error}");
    assert_eq!(error.kind(), ErrorKind::Execution, "{error}");
    assert!(error.to_string().contains("panicked"), "{error}");
    assert!(
        error.to_string().contains("injected failure of task"),
        "{error}"
    );
    assert_eq!(
        scheduler.job_status(&job).await.unwrap().state,
        JobState::Failed as i32
    );
    let mut cluster = cluster;
    for executor in &mut cluster.executors {
        assert!(executor.is_running(), "an executor died with the panic");
    }
    assert_eq!(scheduler.executors().await.unwrap().len(), 2);
    let (rows, _) = session(&cluster, "").await.run(QUERY).await;
    compare(&want, &rows.unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_refuse_injected_failures_unless_started_for_tests() {
    let cluster = TestCluster::start(1, 2, None).await;
    let (rows, _) = session(&cluster, "1:0:0:io").await.run(QUERY).await;
    let error = rows.expect_err("refused");
    eprintln!("refused: {error}");
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    assert!(
        error.to_string().contains("executor.failure_injection"),
        "{error}"
    );
    // A malformed rule is refused with the job, naming the setting.
    let (rows, _) = session(&cluster, "1:0:io").await.run(QUERY).await;
    let error = rows.expect_err("malformed");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    assert!(
        error.to_string().contains("ballista.inject_failures"),
        "{error}"
    );
    // The cluster answers normally.
    let (rows, _) = session(&cluster, "").await.run(QUERY).await;
    compare(&want().await, &rows.unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_its_time_limit_fails_with_a_timeout_and_frees_its_slots() {
    let cluster = TestCluster::start(2, 1, None).await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let limited = TrackedSession::new(
        &cluster.scheduler_url,
        &data,
        &[("ballista.job_timeout_secs", "2")],
    )
    .await;
    // Seconds of work per row group: far longer than 2 s in all. (Stopping
    // an operator that computes without yielding is shown by the cancel
    // test in chaos.rs.)
    let heavy = "SELECT count(*) FROM lineitem
        WHERE length(regexp_replace(repeat(l_comment, 40), '[aeiou]+', '-', 'g')) > 10";
    let started = std::time::Instant::now();
    let (rows, job) = limited.run(heavy).await;
    let took = started.elapsed();
    let error = rows.expect_err("over its limit");
    eprintln!("after {:.1} s: {error}", took.as_secs_f64());
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(error.to_string().contains("limit of 2s"), "{error}");
    assert!(took.as_secs_f64() < 6.0, "the job ran {took:?}");
    assert_eq!(
        scheduler.job_status(&job).await.unwrap().state,
        JobState::Failed as i32
    );
    // Its tasks are stopped within seconds, and the slots serve the next job.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let busy: u32 = scheduler
            .executors()
            .await
            .unwrap()
            .iter()
            .map(|e| e.running_tasks)
            .sum();
        if busy == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{busy} task(s) still running 5 s after the timeout"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The scheduler counts them free at once; the next job shows that the
    // executors are.
    let (rows, _) = session(&cluster, "").await.run(QUERY).await;
    let next_done = started.elapsed();
    eprintln!(
        "the next job finished {:.1} s after the first was submitted",
        next_done.as_secs_f64()
    );
    compare(&want().await, &rows.unwrap()).unwrap();
    assert!(
        next_done.as_secs_f64() < 15.0,
        "the stopped job's tasks held the executors for {next_done:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_restarted_after_a_kill_rejoins_and_receives_tasks() {
    let mut cluster = TestCluster::start_with(
        2,
        1,
        Some("[scheduler]\nexecutor_timeout_secs = 3\n"),
        Some("[executor]\nheartbeat_interval_secs = 1\n"),
    )
    .await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let ids = |list: Vec<ballista::proto::ExecutorInfo>| -> Vec<String> {
        let mut ids: Vec<String> = list
            .into_iter()
            .filter_map(|e| e.metadata.map(|m| m.id))
            .collect();
        ids.sort();
        ids
    };
    let before = ids(scheduler.executors().await.unwrap());
    cluster.restart_executor(0);
    // The killed process is dropped once silent; the new one registers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let after = loop {
        let now = ids(scheduler.executors().await.unwrap());
        if now.len() == 2 && now.iter().filter(|id| before.contains(id)).count() == 1 {
            break now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "executors {now:?} (before the restart: {before:?})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let new_id = after
        .iter()
        .find(|id| !before.contains(id))
        .unwrap()
        .clone();
    eprintln!("executors before {before:?}, after the restart {after:?}");

    let (rows, job) = session(&cluster, "").await.run(QUERY).await;
    compare(&want().await, &rows.unwrap()).unwrap();
    let status = scheduler.job_status(&job).await.unwrap();
    let on_new = status
        .stages
        .iter()
        .flat_map(|s| &s.tasks)
        .filter(|t| t.executor_id == new_id)
        .count();
    eprintln!("{on_new} task(s) ran on the restarted executor {new_id}");
    assert!(on_new > 0, "the restarted executor received no task");
}
