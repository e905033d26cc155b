//! Scheduling policies on real scheduler and executor processes: FIFO order,
//! strict priority, aging, weighted-fair pools and admission limits.

use std::time::{Duration, Instant};

use ballista::BallistaError;
use ballista::client::SchedulerClient;
use ballista::ids::JobId;
use ballista::proto::{self, ErrorKind, JobState};
use ballista_tests::cluster::TestCluster;
use ballista_tests::data::tpch_data;
use tonic::Streaming;

/// Every partition of its first stage scans a slice of lineitem and works
/// on each comment: tasks of a few hundred milliseconds.
const SLOW_QUERY: &str = "SELECT l_returnflag, count(*) AS n FROM lineitem
    WHERE length(regexp_replace(repeat(l_comment, 4), '[aeiou]+', '-', 'g')) > 10
    GROUP BY l_returnflag ORDER BY l_returnflag";

/// The same work over `even` (lineitem's comments in row groups of equal
/// size, one per task), with a single-task final stage: every task but one
/// per job is of about the same length.
const EVEN_QUERY: &str = "SELECT count(*) AS n FROM even
    WHERE length(regexp_replace(repeat(l_comment, 4), '[aeiou]+', '-', 'g')) > 10";

/// Rows per row group of `even`: lineitem at SF 0.1 in 48 row groups.
const EVEN_ROW_GROUP_ROWS: usize = 12_500;

/// A parquet folder of lineitem's comments in row groups of equal size, so
/// that a scan split into as many partitions has tasks of equal length
/// (lineitem's own five large row groups would leave most partitions empty).
async fn even_table() -> std::path::PathBuf {
    let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = base.join("scheduling-even");
    if dir.join("done").exists() {
        return dir;
    }
    let staging = base.join(format!("scheduling-even.staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let local = ballista_tests::local_tpch_session(&data).await;
    local
        .sql(&format!(
            "SET datafusion.execution.parquet.max_row_group_size = {EVEN_ROW_GROUP_ROWS}"
        ))
        .await
        .unwrap();
    local
        .sql(&format!(
            "COPY (SELECT l_comment FROM lineitem ORDER BY l_orderkey, l_linenumber) TO '{}/data.parquet' STORED AS PARQUET",
            staging.display()
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    std::fs::write(staging.join("done"), b"").unwrap();
    match std::fs::rename(&staging, &dir) {
        Ok(()) => dir,
        Err(_) if dir.join("done").exists() => dir,
        Err(e) => panic!("placing {}: {e}", dir.display()),
    }
}

fn scheduler_toml(scheduling: &str) -> String {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    format!(
        "[[scheduler.tables]]\nname = \"lineitem\"\nlocation = \"{}/lineitem/\"\nformat = \"parquet\"\n\n{scheduling}\n",
        data.display()
    )
}

/// A submitted job and the stream of its status.
struct Submitted {
    job_id: JobId,
    updates: Streaming<proto::JobStatus>,
    first: proto::JobStatus,
}

async fn submit(
    scheduler: &SchedulerClient,
    partitions: usize,
    settings: &[(&str, &str)],
) -> Result<Submitted, BallistaError> {
    submit_sql(scheduler, SLOW_QUERY, partitions, settings).await
}

async fn submit_sql(
    scheduler: &SchedulerClient,
    sql: &str,
    partitions: usize,
    settings: &[(&str, &str)],
) -> Result<Submitted, BallistaError> {
    let mut all: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.push((
        "datafusion.execution.target_partitions".into(),
        partitions.to_string(),
    ));
    let request = proto::ExecuteQueryRequest {
        query: Some(proto::execute_query_request::Query::Sql(sql.into())),
        settings: proto::key_values(all),
        ..Default::default()
    };
    let mut updates = scheduler.execute(request).await?;
    let first = updates
        .message()
        .await
        .map_err(|s| BallistaError::Internal(s.to_string()))?
        .expect("a first status");
    Ok(Submitted {
        job_id: JobId::parse(&first.job_id).unwrap(),
        updates,
        first,
    })
}

impl Submitted {
    /// Waits for the end of the job; returns its full status (with where
    /// and when each task ran).
    async fn finish(mut self, scheduler: &SchedulerClient) -> proto::JobStatus {
        let mut last = self.first.clone();
        while let Some(status) = self.updates.message().await.unwrap() {
            last = status;
        }
        assert_eq!(
            last.state,
            JobState::Succeeded as i32,
            "job {} ended with {:?}",
            self.job_id,
            last.error
        );
        let _ = scheduler.release(&self.job_id).await;
        scheduler.job_status(&self.job_id).await.unwrap()
    }
}

/// (start, end) of every task of a finished job, stage by stage.
fn task_times(status: &proto::JobStatus) -> Vec<(u32, u64, u64)> {
    status
        .stages
        .iter()
        .flat_map(|s| {
            s.tasks.iter().filter_map(move |t| {
                t.metrics
                    .as_ref()
                    .map(|m| (s.stage_id, m.started_at_ms, m.ended_at_ms))
            })
        })
        .collect()
}

fn first_start(status: &proto::JobStatus) -> u64 {
    task_times(status).iter().map(|t| t.1).min().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_starts_jobs_in_submission_order() {
    let cluster = TestCluster::start(1, 1, Some(&scheduler_toml(""))).await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(submit(&scheduler, 2, &[]).await.unwrap());
    }
    let mut starts = Vec::new();
    for job in jobs {
        starts.push(first_start(&job.finish(&scheduler).await));
    }
    eprintln!(
        "first task starts (ms after A's): {:?}",
        starts
            .iter()
            .map(|s| *s as i64 - starts[0] as i64)
            .collect::<Vec<_>>()
    );
    assert!(
        starts[0] < starts[1] && starts[1] < starts[2],
        "A, B, C started at {starts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_high_priority_job_starts_before_the_low_jobs_remaining_tasks() {
    let toml = scheduler_toml("[scheduling]\nkind = \"priority\"\naging_per_second = 0\n");
    let cluster = TestCluster::start(1, 2, Some(&toml)).await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let low = submit(&scheduler, 16, &[("ballista.priority", "0")])
        .await
        .unwrap();
    // Both slots busy with the low job.
    let deadline = Instant::now() + Duration::from_secs(60);
    while scheduler.executors().await.unwrap()[0].running_tasks < 2 {
        assert!(
            Instant::now() < deadline,
            "the low job never filled the slots"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let high = submit(&scheduler, 4, &[("ballista.priority", "10")])
        .await
        .unwrap();
    assert_eq!(high.first.priority, 10);
    let high = high.finish(&scheduler).await;
    let low = low.finish(&scheduler).await;

    let high_first_stage = task_times(&high).iter().map(|t| t.0).min().unwrap();
    let high_starts: Vec<u64> = task_times(&high)
        .iter()
        .filter(|t| t.0 == high_first_stage)
        .map(|t| t.1)
        .collect();
    let last_high_start = *high_starts.iter().max().unwrap();
    // Low tasks launched after the high job was planned (allowing for the
    // launches already on their way to the executor).
    let later_low: Vec<u64> = task_times(&low)
        .iter()
        .map(|t| t.1)
        .filter(|s| *s > high.started_at_ms + 100)
        .collect();
    eprintln!(
        "high planned at 0 ms; its first-stage tasks started at {:?} ms; low tasks after it at {:?} ms",
        high_starts
            .iter()
            .map(|s| s.saturating_sub(high.started_at_ms))
            .collect::<Vec<_>>(),
        later_low
            .iter()
            .map(|s| s - high.started_at_ms)
            .collect::<Vec<_>>()
    );
    assert!(!later_low.is_empty(), "the low job had no tasks left");
    assert!(
        later_low.iter().all(|s| *s >= last_high_start),
        "a low task started before the high job's tasks"
    );
}

/// Slot time (ms) each of two pools' tasks used within the window where
/// both pools were running work, leaving out its first and last tenth
/// (the pools fill and drain there).
fn slot_time_in_common_window(a: &[proto::JobStatus], b: &[proto::JobStatus]) -> (u64, u64, u64) {
    let times = |jobs: &[proto::JobStatus]| -> Vec<(u64, u64)> {
        jobs.iter()
            .flat_map(task_times)
            .map(|(_, s, e)| (s, e))
            .collect()
    };
    let (ta, tb) = (times(a), times(b));
    let start = ta
        .iter()
        .map(|t| t.0)
        .min()
        .unwrap()
        .max(tb.iter().map(|t| t.0).min().unwrap());
    let end = ta
        .iter()
        .map(|t| t.0)
        .max()
        .unwrap()
        .min(tb.iter().map(|t| t.0).max().unwrap());
    let trim = end.saturating_sub(start) / 10;
    let (start, end) = (start + trim, end - trim);
    let used = |tasks: &[(u64, u64)]| -> u64 {
        tasks
            .iter()
            .map(|(s, e)| (*e).min(end).saturating_sub((*s).max(start)))
            .sum()
    };
    (used(&ta), used(&tb), end.saturating_sub(start))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_weighted_two_to_one_share_slot_time_two_to_one() {
    let even = even_table().await;
    let toml = scheduler_toml(&format!(
        "[[scheduler.tables]]\nname = \"even\"\nlocation = \"{}/data.parquet\"\nformat = \"parquet\"\n\n[scheduling]\nkind = \"fair\"\n[scheduling.pools.a]\nweight = 2\n[scheduling.pools.b]\nweight = 1\n",
        even.display()
    ));
    let cluster = TestCluster::start(1, 3, Some(&toml)).await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let mut a = Vec::new();
    let mut b = Vec::new();
    // Many short tasks, so that the measure is not one task's length
    // either way.
    for _ in 0..6 {
        let in_a = [("ballista.pool", "a")];
        let in_b = [("ballista.pool", "b")];
        a.push(submit_sql(&scheduler, EVEN_QUERY, 48, &in_a).await.unwrap());
        b.push(submit_sql(&scheduler, EVEN_QUERY, 48, &in_b).await.unwrap());
    }
    let listing = scheduler.executors().await.unwrap();
    eprintln!(
        "executor listing while both pools run: {:?}",
        listing[0].running_tasks_by_pool
    );
    let mut done_a = Vec::new();
    for job in a {
        done_a.push(job.finish(&scheduler).await);
    }
    let mut done_b = Vec::new();
    for job in b {
        done_b.push(job.finish(&scheduler).await);
    }
    assert!(done_a.iter().all(|s| s.pool == "a") && done_b.iter().all(|s| s.pool == "b"));
    let (used_a, used_b, window) = slot_time_in_common_window(&done_a, &done_b);
    let ratio = used_a as f64 / used_b as f64;
    eprintln!(
        "over {window} ms in which both pools ran: pool a {used_a} ms of slot time, pool b {used_b} ms: ratio {ratio:.2}"
    );
    assert!(window > 2000, "the pools overlapped for {window} ms only");
    assert!(
        (1.8..=2.2).contains(&ratio),
        "slot time a:b = {ratio:.2}, expected 2 within 10%"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aging_lets_a_low_priority_job_finish_under_a_stream_of_high_ones() {
    // A job of priority 0 overtakes high ones (10) submitted more than 5 s
    // after it.
    let toml = scheduler_toml("[scheduling]\nkind = \"priority\"\naging_per_second = 2\n");
    let cluster = TestCluster::start(1, 2, Some(&toml)).await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let stream_scheduler = scheduler.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream_stop = std::sync::Arc::clone(&stop);
    // How many high jobs the stream has submitted: the test stops it only
    // once one was submitted after the low job ended, however slow the jobs.
    let submitted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stream_submitted = std::sync::Arc::clone(&submitted);
    // Two high jobs in flight at all times.
    let stream = tokio::spawn(async move {
        let mut in_flight = tokio::task::JoinSet::new();
        let mut finished = Vec::new();
        while !stream_stop.load(std::sync::atomic::Ordering::SeqCst) {
            while in_flight.len() < 2 {
                let job = submit(&stream_scheduler, 4, &[("ballista.priority", "10")])
                    .await
                    .unwrap();
                stream_submitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let s = stream_scheduler.clone();
                in_flight.spawn(async move { job.finish(&s).await });
            }
            if let Some(done) = in_flight.join_next().await {
                finished.push(done.unwrap());
            }
        }
        while let Some(done) = in_flight.join_next().await {
            finished.push(done.unwrap());
        }
        finished
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let submitted_at = Instant::now();
    let low = submit(&scheduler, 4, &[("ballista.priority", "0")])
        .await
        .unwrap();
    let low_status = tokio::time::timeout(Duration::from_secs(40), low.finish(&scheduler))
        .await
        .expect("the low-priority job finished within 40 s");
    let took = submitted_at.elapsed();
    // Let more high jobs come after it (on a loaded machine the two in flight
    // can take several seconds to finish). Two more submissions, since one
    // may have been on the wire while the low job ended.
    let submitted_when_low_ended = submitted.load(std::sync::atomic::Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    while submitted.load(std::sync::atomic::Ordering::SeqCst) < submitted_when_low_ended + 2 {
        assert!(
            Instant::now() < deadline,
            "no high job was submitted within 60 s after the low job ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let highs = stream.await.unwrap();
    let waited = first_start(&low_status).saturating_sub(low_status.submitted_at_ms);
    let low_first_stage = task_times(&low_status).iter().map(|t| t.0).min().unwrap();
    let low_stage_done = task_times(&low_status)
        .iter()
        .filter(|t| t.0 == low_first_stage)
        .map(|t| t.1)
        .max()
        .unwrap();
    // High jobs submitted more than 5 s (+1 s of margin) after the low one
    // rank below it by then: none of them may start before the low job's
    // first stage has all its slots.
    let overtaken: Vec<&proto::JobStatus> = highs
        .iter()
        .filter(|h| h.submitted_at_ms > low_status.submitted_at_ms + 6_000)
        .filter(|h| h.submitted_at_ms < low_stage_done)
        .collect();
    eprintln!(
        "low job: first task after {waited} ms, done after {:.1} s; {} high jobs ran meanwhile, {} of them submitted more than 6 s after it and before its first stage had started",
        took.as_secs_f64(),
        highs.len(),
        overtaken.len()
    );
    assert!(
        took < Duration::from_secs(20),
        "the low job took {took:?}: aging did not lift it"
    );
    assert!(
        highs.len() >= 4,
        "the high stream was not running ({} jobs)",
        highs.len()
    );
    for high in overtaken {
        assert!(
            first_start(high) >= low_stage_done,
            "high job {} (submitted {} ms after the low one) started before the low job",
            high.job_id,
            high.submitted_at_ms - low_status.submitted_at_ms
        );
    }
    // Without aging the low job would have waited for the stream to end.
    assert!(
        highs
            .iter()
            .any(|h| h.submitted_at_ms > low_status.ended_at_ms),
        "the stream went on after the low job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_the_next_job_and_running_ones_are_unaffected() {
    let toml = scheduler_toml(
        "[scheduling]\nkind = \"fair\"\n[scheduling.pools.etl]\nmax_running_jobs = 1\nmax_queued_jobs = 1\n",
    );
    let cluster = TestCluster::start(1, 2, Some(&toml)).await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let etl = [("ballista.pool", "etl"), ("ballista.priority", "3")];
    let running = submit(&scheduler, 8, &etl).await.unwrap();
    assert_eq!(running.first.pool, "etl");
    assert_eq!(running.first.priority, 3);
    let queued = submit(&scheduler, 2, &etl).await.unwrap();
    assert_eq!(queued.first.state, JobState::Queued as i32);
    assert_eq!(queued.first.queue_position, 1);
    assert!(
        queued
            .first
            .queue_reason
            .contains("scheduling pool 'etl' runs its limit of 1 job(s)"),
        "{}",
        queued.first.queue_reason
    );
    let status = scheduler.job_status(&queued.job_id).await.unwrap();
    assert_eq!(
        (status.state, status.queue_position, status.pool.as_str()),
        (JobState::Queued as i32, 1, "etl")
    );

    let refused = submit(&scheduler, 2, &etl).await.err().expect("refused");
    eprintln!("third job: {refused}");
    assert_eq!(refused.kind(), ErrorKind::ResourcesExhausted, "{refused}");
    let message = refused.to_string();
    assert!(
        message.contains("scheduling pool 'etl' is full"),
        "{message}"
    );
    assert!(message.contains("max_queued_jobs = 1"), "{message}");

    // The running job goes on, then the queued one runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    let by_pool = loop {
        let listing = scheduler.executors().await.unwrap();
        if listing[0].running_tasks > 0 {
            break listing[0].running_tasks_by_pool.clone();
        }
        assert!(Instant::now() < deadline, "the first job never ran a task");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let first = running.finish(&scheduler).await;
    let second = queued.finish(&scheduler).await;
    eprintln!("running tasks by pool while the first ran: {by_pool:?}");
    assert!(by_pool.iter().any(|kv| kv.key == "etl"), "{by_pool:?}");
    assert!(
        first.ended_at_ms <= first_start(&second),
        "the queued job waited for the first"
    );
    // An unknown pool is refused by name.
    let unknown = submit(&scheduler, 2, &[("ballista.pool", "nope")])
        .await
        .err()
        .expect("refused");
    assert!(
        unknown
            .to_string()
            .contains("unknown scheduling pool 'nope'"),
        "{unknown}"
    );
}
