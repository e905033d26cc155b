//! The quota memory plugin (`[memory] kind = "quota"`) on real scheduler and
//! executor processes: spilling under a job quota, the quota-naming error
//! when spilling is off, a job's guarantee against a heavy neighbour, and a
//! tenant quota over concurrent jobs.

use std::time::{Duration, Instant};

use ballista::BallistaError;
use ballista::client::SchedulerClient;
use ballista::ids::JobId;
use ballista::proto::{self, ErrorKind, JobState};
use ballista_tests::cluster::TestCluster;
use ballista_tests::compare::compare;
use ballista_tests::data::tpch_data;
use ballista_tests::session::TrackedSession;

const MIB: u64 = 1 << 20;

/// A window over the whole of lineitem: one task sorts every row.
const SORT_QUERY: &str = "SELECT max(rn) AS rows, min(l_comment) AS first_comment FROM (
    SELECT l_comment, row_number() OVER (ORDER BY l_comment, l_shipinstruct, l_shipmode, l_orderkey, l_linenumber) AS rn
    FROM lineitem)";

/// About as many groups as rows.
const AGGREGATE_QUERY: &str = "SELECT count(*) AS groups, sum(c) AS rows, max(s) AS most FROM (
    SELECT l_orderkey, l_partkey, l_suppkey, count(*) AS c, sum(l_quantity) AS s
    FROM lineitem GROUP BY l_orderkey, l_partkey, l_suppkey)";

/// A join and an aggregate that need a few MiB: the light job.
const LIGHT_QUERY: &str = "SELECT o_orderpriority, count(*) AS orders, sum(l_quantity) AS quantity
    FROM orders JOIN lineitem ON o_orderkey = l_orderkey
    WHERE l_commitdate < l_receiptdate
    GROUP BY o_orderpriority ORDER BY o_orderpriority";

fn executor_toml(memory_limit: &str, memory: &str) -> String {
    format!(
        "[executor]\nmemory_limit = \"{memory_limit}\"\nheartbeat_interval_secs = 1\n\n[memory]\nkind = \"quota\"\n{memory}\n"
    )
}

/// A tracked session with the settings these small quotas need.
async fn quota_session(cluster: &TestCluster, settings: &[(&str, &str)]) -> TrackedSession {
    // The quotas here are a few MiB, to match the small test data:
    // batches and the space DataFusion sets aside per sort for merging
    // its spills (10 MiB by default) are scaled down with them, or a
    // single batch would not fit an operator's share.
    let mut all = vec![
        ("datafusion.execution.batch_size", "1024"),
        (
            "datafusion.execution.sort_spill_reservation_bytes",
            "1048576",
        ),
        // Parquet strings read as views share their page buffers, and an
        // operator accounts a whole buffer for each small batch.
        (
            "datafusion.execution.parquet.schema_force_view_types",
            "false",
        ),
    ];
    all.extend_from_slice(settings);
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    TrackedSession::new(&cluster.scheduler_url, &data, &all).await
}

async fn expected(sql: &str) -> Vec<arrow::record_batch::RecordBatch> {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    ballista_tests::session::expected(&data, sql).await
}

/// The job's status once the executors have reported its final figures
/// (they keep an ended job's figures in heartbeats for a while).
async fn final_status(scheduler: &SchedulerClient, job_id: &JobId) -> proto::JobStatus {
    tokio::time::sleep(Duration::from_millis(2500)).await;
    scheduler.job_status(job_id).await.expect("job status")
}

fn peak_per_executor(status: &proto::JobStatus) -> Vec<u64> {
    status.memory.iter().map(|m| m.peak_bytes).collect()
}

fn spilled_bytes(status: &proto::JobStatus) -> u64 {
    status
        .stages
        .iter()
        .flat_map(|s| &s.tasks)
        .filter_map(|t| t.metrics.as_ref())
        .map(|m| m.spilled_bytes)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_and_aggregate_over_their_job_quota_spill_and_without_spilling_fail_naming_it() {
    let cluster = TestCluster::start_with(
        2,
        2,
        None,
        Some(&executor_toml("512MiB", "job_reserve = \"0\"")),
    )
    .await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let unlimited = quota_session(&cluster, &[]).await;
    // DataFusion's sort needs more room to work in than its aggregate. Its
    // merge reservation is handed back just before a spill's merge asks for
    // memory again, and the job's other sort task may take what was handed
    // back: only a reservation of about twice what the merge asks for (its
    // fair share of the freed room goes to the other sorter) keeps the
    // merge from failing rather than spilling.
    for (label, sql, quota_mib, merge_reservation) in [
        ("sort", SORT_QUERY, 48, "8388608"),
        ("aggregate", AGGREGATE_QUERY, 6, "1048576"),
    ] {
        let quota_setting = format!("{quota_mib}MiB");
        let reservation = (
            "datafusion.execution.sort_spill_reservation_bytes",
            merge_reservation,
        );
        let quota = quota_session(
            &cluster,
            &[("ballista.memory_quota", &quota_setting), reservation],
        )
        .await;
        let no_spill = quota_session(
            &cluster,
            &[
                ("ballista.memory_quota", &quota_setting),
                ("ballista.spill_to_disk", "false"),
                reservation,
            ],
        )
        .await;
        let want = expected(sql).await;
        let q = quota_mib * MIB;

        let (rows, job) = unlimited.run(sql).await;
        compare(&want, &rows.expect("unlimited run")).expect("unlimited run equals DataFusion");
        let working_set = peak_per_executor(&final_status(&scheduler, &job).await)
            .into_iter()
            .max()
            .unwrap_or(0);
        eprintln!(
            "{label}: working set {:.1} MiB unlimited",
            working_set as f64 / MIB as f64
        );

        let (rows, job) = quota.run(sql).await;
        compare(&want, &rows.expect("run under its job quota"))
            .expect("the run under the quota equals DataFusion");
        let status = final_status(&scheduler, &job).await;
        let peaks = peak_per_executor(&status);
        let spilled = spilled_bytes(&status);
        eprintln!(
            "{label}: working set {:.1} MiB unlimited; under the {quota_mib} MiB quota peaks {:?} MiB, spilled {:.1} MiB",
            working_set as f64 / MIB as f64,
            peaks.iter().map(|p| p / MIB).collect::<Vec<_>>(),
            spilled as f64 / MIB as f64
        );
        assert!(
            working_set >= 3 * q,
            "{label}: the working set ({working_set} bytes) should be several times the quota"
        );
        assert!(
            !peaks.is_empty(),
            "{label}: no memory figures in job status"
        );
        assert!(
            peaks.iter().all(|p| *p <= q),
            "{label}: a peak exceeds the quota: {peaks:?}"
        );
        assert!(spilled > 0, "{label}: nothing was spilled");
        assert!(
            status.memory.iter().all(|m| m.quota_bytes == q),
            "{label}: {:?}",
            status.memory
        );

        let (result, _) = no_spill.run(sql).await;
        let error = result.expect_err("without spilling the query cannot fit its quota");
        let message = error.to_string();
        eprintln!("{label} without spilling: {message}");
        assert_eq!(error.kind(), ErrorKind::ResourcesExhausted, "{message}");
        assert!(message.contains("memory quota of job"), "{message}");
        let named = format!("{quota_mib}.0 MiB quota");
        assert!(message.contains(&named), "{message}");
        assert!(message.contains("largest consumers:"), "{message}");
    }

    // The cluster is healthy afterwards.
    let (rows, _) = unlimited.run(LIGHT_QUERY).await;
    compare(&expected(LIGHT_QUERY).await, &rows.unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heavy_job_cannot_take_the_memory_guaranteed_to_a_light_one() {
    // 32 MiB budget, 8 MiB guaranteed to each job: the heavy job alone may
    // use 24 MiB on an executor.
    let cluster = TestCluster::start_with(
        2,
        2,
        None,
        Some(&executor_toml("32MiB", "job_reserve = \"25%\"")),
    )
    .await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let heavy = quota_session(&cluster, &[("datafusion.execution.target_partitions", "2")]).await;
    let light = quota_session(&cluster, &[("datafusion.execution.target_partitions", "2")]).await;
    let heavy_want = expected(AGGREGATE_QUERY).await;
    let light_want = expected(LIGHT_QUERY).await;

    let heavy_run = tokio::spawn(async move {
        let (rows, job) = heavy.run(AGGREGATE_QUERY).await;
        (rows, job, Instant::now())
    });
    // Start the light job once the heavy one runs tasks.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = scheduler
            .executors()
            .await
            .unwrap()
            .iter()
            .any(|e| e.running_tasks > 0);
        if running {
            break;
        }
        assert!(!heavy_run.is_finished(), "the heavy job ended early");
        assert!(Instant::now() < deadline, "the heavy job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let light_started = Instant::now();
    let (rows, light_job) = light.run(LIGHT_QUERY).await;
    let light_done = Instant::now();
    compare(&light_want, &rows.expect("the light job succeeds"))
        .expect("the light job's result equals DataFusion");

    let (rows, heavy_job, heavy_done) = heavy_run.await.unwrap();
    compare(
        &heavy_want,
        &rows.expect("the heavy job succeeds (by spilling)"),
    )
    .expect("the heavy job's result equals DataFusion");
    assert!(
        light_started < heavy_done,
        "the light job ran while the heavy one did"
    );
    let _ = light_done;

    let heavy_status = final_status(&scheduler, &heavy_job).await;
    let light_status = scheduler.job_status(&light_job).await.unwrap();
    let heavy_peaks = peak_per_executor(&heavy_status);
    eprintln!(
        "heavy peaks {:?} MiB (spilled {:.1} MiB), light peaks {:?} KiB",
        heavy_peaks.iter().map(|p| p / MIB).collect::<Vec<_>>(),
        spilled_bytes(&heavy_status) as f64 / MIB as f64,
        peak_per_executor(&light_status)
            .iter()
            .map(|p| p >> 10)
            .collect::<Vec<_>>()
    );
    assert!(
        heavy_peaks.iter().all(|p| *p <= 24 * MIB),
        "the heavy job took memory kept for other jobs: {heavy_peaks:?}"
    );
    assert!(
        heavy_peaks.iter().any(|p| *p > 12 * MIB),
        "the heavy job should have pressed against its limit: {heavy_peaks:?}"
    );
    assert!(spilled_bytes(&heavy_status) > 0, "the heavy job spilled");
    assert_eq!(light_status.state, JobState::Succeeded as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_quota_caps_the_sum_of_its_concurrent_jobs() {
    // One executor, so that both jobs' aggregates share it; the tenant
    // `capped` may hold 12 MiB there in all, every job alone up to 100% of
    // 256 MiB.
    let cluster = TestCluster::start_with(
        1,
        4,
        None,
        Some(&executor_toml(
            "256MiB",
            "job_reserve = \"0\"\n[memory.tenants.capped]\nquota = \"12MiB\"",
        )),
    )
    .await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let want = expected(AGGREGATE_QUERY).await;
    // Two partitions each: both jobs' aggregates fit the four slots at once.
    let capped = [
        ("ballista.tenant", "capped"),
        ("datafusion.execution.target_partitions", "2"),
    ];
    let first = quota_session(&cluster, &capped).await;
    let second = quota_session(&cluster, &capped).await;

    let (a, b) = tokio::join!(first.run(AGGREGATE_QUERY), second.run(AGGREGATE_QUERY));
    let (rows_a, job_a) = a;
    let (rows_b, job_b) = b;
    compare(&want, &rows_a.expect("first job")).expect("first job equals DataFusion");
    compare(&want, &rows_b.expect("second job")).expect("second job equals DataFusion");
    let status_a = final_status(&scheduler, &job_a).await;
    let status_b = scheduler.job_status(&job_b).await.unwrap();
    // They ran at the same time.
    assert!(
        status_a.started_at_ms < status_b.ended_at_ms
            && status_b.started_at_ms < status_a.ended_at_ms,
        "the jobs did not overlap"
    );
    // Only the tenant's jobs have run on this executor so far: its peak is
    // the most they held together.
    let executor_peak = scheduler.executors().await.unwrap()[0]
        .memory
        .as_ref()
        .map(|m| m.peak_bytes)
        .unwrap_or(0);
    assert!(status_a.memory.iter().all(|m| m.tenant == "capped"));

    // The same query for another tenant takes more than the quota on its own:
    // the cap was binding.
    let other = quota_session(
        &cluster,
        &[
            ("ballista.tenant", "other"),
            ("datafusion.execution.target_partitions", "2"),
        ],
    )
    .await;
    let (rows, job) = other.run(AGGREGATE_QUERY).await;
    compare(&want, &rows.unwrap()).unwrap();
    let alone = peak_per_executor(&final_status(&scheduler, &job).await)
        .into_iter()
        .max()
        .unwrap_or(0);
    eprintln!(
        "tenant 'capped': both jobs together peaked at {:.1} MiB (quota 12 MiB; job peaks {:?} / {:?} MiB); the same query alone for another tenant: {:.1} MiB",
        executor_peak as f64 / MIB as f64,
        peak_per_executor(&status_a)
            .iter()
            .map(|p| p / MIB)
            .collect::<Vec<_>>(),
        peak_per_executor(&status_b)
            .iter()
            .map(|p| p / MIB)
            .collect::<Vec<_>>(),
        alone as f64 / MIB as f64
    );
    assert!(executor_peak > 0);
    assert!(
        executor_peak <= 12 * MIB,
        "the tenant's jobs held {executor_peak} bytes together"
    );
    assert!(
        alone > 12 * MIB,
        "alone the query should need more than the tenant quota (took {alone} bytes)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_shared_pool_reports_each_jobs_memory_too() {
    let cluster = TestCluster::start_with(
        2,
        2,
        None,
        Some("[executor]\nmemory_limit = \"256MiB\"\nheartbeat_interval_secs = 1\n"),
    )
    .await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let session = quota_session(&cluster, &[]).await;
    let (rows, job) = session.run(AGGREGATE_QUERY).await;
    compare(&expected(AGGREGATE_QUERY).await, &rows.unwrap()).unwrap();
    let status = final_status(&scheduler, &job).await;
    let peaks = peak_per_executor(&status);
    eprintln!(
        "shared pool: job peaks {:?} KiB",
        peaks.iter().map(|p| p >> 10).collect::<Vec<_>>()
    );
    assert_eq!(peaks.len(), 2, "{:?}", status.memory);
    assert!(peaks.iter().all(|p| *p > 0), "{:?}", status.memory);
    assert!(status.memory.iter().all(|m| m.reserved_bytes == 0));
    let executors = scheduler.executors().await.unwrap();
    assert!(executors.iter().all(|e| {
        e.memory
            .as_ref()
            .is_some_and(|m| m.budget_bytes == 256 * MIB && m.peak_bytes > 0)
    }));
}

/// glibc's allocator keeps one heap per task slot in a stock executor
/// (fewer heaps holding freed memory), unless `MALLOC_ARENA_MAX` chose.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_keep_one_allocator_heap_per_task_slot() {
    let mut cluster = TestCluster::start(1, 3, None).await;
    let line = "allocator limited to 3 heap(s)";
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        let limited = cluster.executors[0].stderr_lines_containing(line);
        assert!(limited.is_empty(), "{limited:?}");
    } else {
        // Stdout and stderr are read by separate threads: the stderr line
        // may be read after "listening on" although it was printed first.
        cluster.executors[0].wait_for_stderr(line, Duration::from_secs(10));
        assert_eq!(cluster.executors[0].stderr_lines_containing(line).len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_memory_settings_are_refused_clearly() {
    let cluster = TestCluster::start_with(1, 1, None, Some(&executor_toml("64MiB", ""))).await;
    let session = quota_session(&cluster, &[]).await;
    let error = session
        .ctx
        .sql("SET ballista.memory_quota = 'lots'")
        .await
        .err();
    // DataFusion stores the text; the scheduler refuses it with the job.
    let message = match error {
        Some(e) => BallistaError::from_datafusion(e).typed().to_string(),
        None => {
            let (result, _) = session.run("SELECT 1").await;
            let error = result.expect_err("a bad quota is refused");
            assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
            error.to_string()
        }
    };
    assert!(message.contains("ballista.memory_quota"), "{message}");
    assert!(message.contains("\"lots\""), "{message}");
}
