//! The in-memory shuffle tier on real processes: map outputs stay in the
//! executors' memory (no shuffle file is written), other executors fetch
//! them over Flight, memory is returned stage by stage and at the job's
//! end, and with too little memory (or an output above
//! `memory_max_output`) the outputs go to disk with the same answers.

use std::path::Path;
use std::time::{Duration, Instant};

use ballista::client::{SchedulerClient, SessionContextExt};
use ballista::ids::JobId;
use ballista::proto::{self, JobState};
use ballista_tests::cluster::TestCluster;
use ballista_tests::data::{tpch_data, tpch_tables_toml};
use ballista_tests::http::{get, http_url, sample};
use datafusion::prelude::SessionContext;

const QUERY: &str = "SELECT o_orderpriority, count(*) AS line_count, sum(l_quantity) AS qty \
                     FROM orders JOIN lineitem ON l_orderkey = o_orderkey \
                     GROUP BY o_orderpriority ORDER BY o_orderpriority";

/// Shuffle files (`*.arrow`) under the executors' work directories.
fn shuffle_files(work_dirs: &[std::path::PathBuf]) -> Vec<String> {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "arrow") {
                found.push(path.display().to_string());
            }
        }
    }
    let mut found = Vec::new();
    for dir in work_dirs {
        walk(dir, &mut found);
    }
    found
}

async fn metric(urls: &[String], name: &str) -> f64 {
    let mut total = 0.0;
    for url in urls {
        let answer = get(url, "/metrics", &[]).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        total += sample(&answer.body, name);
    }
    total
}

/// Waits until `name`, summed over the executors, equals `expected`.
async fn metric_becomes(urls: &[String], name: &str, expected: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = metric(urls, name).await;
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} stays at {now}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `QUERY` over four partitions as a job; returns its final status,
/// which must be a success.
async fn run_query_job(scheduler: &SchedulerClient) -> proto::JobStatus {
    let request = proto::ExecuteQueryRequest {
        query: Some(proto::execute_query_request::Query::Sql(QUERY.into())),
        settings: proto::key_values([("datafusion.execution.target_partitions", "4")]),
        ..Default::default()
    };
    let status = ballista_tests::probe::final_status(scheduler, request).await;
    assert_eq!(
        status.state,
        JobState::Succeeded as i32,
        "{:?}",
        status.error
    );
    status
}

/// `QUERY` read through the client equals single-process DataFusion's answer.
async fn assert_answer_is_datafusions(scheduler_url: &str, data: &Path) {
    let ctx = SessionContext::remote(scheduler_url).await.unwrap();
    let actual = ctx.sql(QUERY).await.unwrap().collect().await.unwrap();
    let local = ballista_tests::local_tpch_session(data).await;
    let expected = local.sql(QUERY).await.unwrap().collect().await.unwrap();
    ballista_tests::compare::compare(&expected, &actual).unwrap();
}

/// The executor's stderr when `--print-config` refuses `toml`, which it
/// must do with exit status 2.
fn start_up_refusal(toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("executor.toml");
    std::fs::write(&path, toml).unwrap();
    let output = std::process::Command::new(ballista_tests::cluster::binary("ballista-executor"))
        .args(["--config", path.to_str().unwrap(), "--print-config"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_outputs_stay_in_memory_are_fetched_over_flight_and_freed() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let mut cluster = TestCluster::start(2, 2, Some(&tpch_tables_toml(&data))).await;
    let urls: Vec<String> = cluster.executors.iter_mut().map(http_url).collect();
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let status = run_query_job(&scheduler).await;
    assert!(status.stages.len() >= 3, "{:#?}", status.stages);

    // Every map output stayed in memory: not one shuffle file was written,
    // and none was refused.
    let files = shuffle_files(&cluster.executor_work_dirs());
    assert!(files.is_empty(), "shuffle files written: {files:?}");
    assert!(metric(&urls, "ballista_shuffle_memory_committed_bytes_total").await > 0.0);
    assert_eq!(
        metric(&urls, "ballista_shuffle_memory_refused_outputs_total").await,
        0.0
    );
    // Consumers read their input both ways: from their own executor's
    // memory, and from the other's over Flight.
    let (mut local, mut remote) = (0, 0);
    for stage in &status.stages {
        for task in &stage.tasks {
            let m = task.metrics.clone().unwrap_or_default();
            local += m.local_reads;
            remote += m.remote_fetches;
        }
    }
    assert!(
        local > 0 && remote > 0,
        "{local} local, {remote} remote reads"
    );

    // The stages before the last were freed as soon as the stages reading
    // them finished: what is held now is exactly the job's result.
    let result = status.result.clone().expect("a result");
    let result_bytes: u64 = result
        .partitions
        .iter()
        .flat_map(|p| &p.locations)
        .map(|l| l.stats.as_ref().map_or(0, |s| s.num_bytes))
        .sum();
    assert!(result_bytes > 0);
    metric_becomes(
        &urls,
        "ballista_shuffle_memory_held_bytes",
        result_bytes as f64,
    )
    .await;
    let reserved = metric(&urls, "ballista_memory_reserved_bytes").await;
    assert!(
        reserved >= result_bytes as f64,
        "held output counts against the memory budget: {reserved} reserved"
    );

    // Once the client has read the results, everything is returned.
    scheduler
        .release(&JobId::parse(&status.job_id).unwrap())
        .await
        .unwrap();
    metric_becomes(&urls, "ballista_shuffle_memory_held_bytes", 0.0).await;
    metric_becomes(&urls, "ballista_memory_reserved_bytes", 0.0).await;

    // And the answer, read through the client (from memory over Flight),
    // is DataFusion's.
    assert_answer_is_datafusions(&cluster.scheduler_url, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_memory_to_spare_map_outputs_go_to_disk_with_the_same_answers() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    // 256 MiB of budget, of which the tier may take 0.1%: 256 KiB, less
    // than most map outputs of these queries.
    let executor_toml = "[executor]\nmemory_limit = \"256MiB\"\n\
                         [shuffle]\nkind = \"local-disk\"\nmemory_fraction = 0.001\n";
    let mut cluster =
        TestCluster::start_with(2, 2, Some(&tpch_tables_toml(&data)), Some(executor_toml)).await;
    let urls: Vec<String> = cluster.executors.iter_mut().map(http_url).collect();
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();
    let local = ballista_tests::local_tpch_session(&data).await;
    let differences = ballista_tests::tpch_differences(&ctx, &local, [3, 5, 9, 18, 21]).await;
    assert!(differences.is_empty(), "{differences:#?}");
    assert!(
        metric(&urls, "ballista_shuffle_memory_refused_outputs_total").await > 0.0,
        "some map outputs were refused memory"
    );
    metric_becomes(&urls, "ballista_shuffle_memory_held_bytes", 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_outputs_above_memory_max_output_go_to_disk_and_smaller_ones_stay() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    // The whole budget may hold output, but no single map output above
    // 256 KiB: the scans' outputs (MBs each) go to disk, the partial
    // aggregates' (a few rows) stay in memory.
    let executor_toml = "[shuffle]\nkind = \"local-disk\"\nmemory_fraction = 1.0\n\
                         memory_max_output = \"256KiB\"\n";
    let mut cluster =
        TestCluster::start_with(2, 2, Some(&tpch_tables_toml(&data)), Some(executor_toml)).await;
    let urls: Vec<String> = cluster.executors.iter_mut().map(http_url).collect();
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let status = run_query_job(&scheduler).await;
    let files = shuffle_files(&cluster.executor_work_dirs());
    assert!(
        !files.is_empty(),
        "the large map outputs were written to disk"
    );
    assert!(
        metric(&urls, "ballista_shuffle_memory_refused_outputs_total").await > 0.0,
        "large map outputs were refused memory"
    );
    assert!(
        metric(&urls, "ballista_shuffle_memory_committed_bytes_total").await > 0.0,
        "small map outputs stayed in memory"
    );
    let held = metric(&urls, "ballista_shuffle_memory_held_bytes").await;
    assert!(held <= 2.0 * 256.0 * 1024.0, "{held} bytes held");
    scheduler
        .release(&JobId::parse(&status.job_id).unwrap())
        .await
        .unwrap();
    metric_becomes(&urls, "ballista_shuffle_memory_held_bytes", 0.0).await;

    assert_answer_is_datafusions(&cluster.scheduler_url, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_memory_max_output_is_refused_at_start_up() {
    let stderr =
        start_up_refusal("[shuffle]\nkind = \"local-disk\"\nmemory_max_output = \"lots\"\n");
    assert!(
        stderr.contains("memory_max_output") && stderr.contains("lots"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_memory_fraction_is_refused_at_start_up() {
    let stderr = start_up_refusal("[shuffle]\nkind = \"local-disk\"\nmemory_fraction = 1.5\n");
    assert!(
        stderr.contains("shuffle.memory_fraction = 1.5") && stderr.contains("between 0 and 1"),
        "{stderr}"
    );
}
