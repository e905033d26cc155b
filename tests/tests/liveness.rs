//! Liveness both ways: an executor killed mid-query has its tasks run again
//! within seconds (its closed port gives it away, long before the heartbeat
//! timeout), and a live executor whose cores are saturated by its own tasks
//! and by another program keeps sending heartbeats on time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ballista::client::{SchedulerClient, SessionContextExt};
use ballista_tests::cluster::TestCluster;
use ballista_tests::probe::single_i64 as count_of;
use datafusion::prelude::SessionContext;

const GROUPED: &str = "SELECT count(*) FROM (SELECT value % 1000 AS k, count(*) AS n \
     FROM generate_series(1, 300000) GROUP BY value % 1000) WHERE n > 0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_executors_tasks_run_again_within_seconds() {
    // A heartbeat timeout of 5 minutes: only the closed port can tell.
    let mut cluster = TestCluster::start_with(
        3,
        1,
        Some("[scheduler]\nexecutor_timeout_secs = 300\n"),
        Some("[executor]\nfailure_injection = true\nheartbeat_interval_secs = 1\n"),
    )
    .await;
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();
    // First attempts hold their slot 7 s, so the victim is still running
    // its task when killed. The test waits for the victim's own log of the
    // task starting: the scheduler counts a task as running from the moment
    // it assigns it, and a kill before the task arrived would be found by
    // the failed launch, not by the probe of its port.
    ctx.sql("SET ballista.inject_failures = '*:*:0:delay=7000'")
        .await
        .unwrap();
    ctx.sql("SET datafusion.execution.target_partitions = 3")
        .await
        .unwrap();
    // Three tasks per stage, one per executor, however small the input: the
    // victim must run one.
    ctx.sql("SET ballista.task_input_bytes = 0").await.unwrap();
    let query = tokio::spawn(async move { count_of(&ctx, GROUPED).await });

    let victim = cluster.executor_ids[0].clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.executors[0]
        .stderr_lines_containing("injected delay")
        .is_empty()
    {
        assert!(Instant::now() < deadline, "{victim} never ran a task");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed_at = Instant::now();
    cluster.executors[0].kill();
    let count = tokio::time::timeout(Duration::from_secs(60), query)
        .await
        .expect("the job ends within 60 s of the kill, not at the 300 s heartbeat timeout")
        .expect("query task");
    eprintln!(
        "the job finished {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );
    assert_eq!(count, 1000);
    let logs = cluster.scheduler.logs();
    assert!(
        logs.contains(&format!("executor {victim} lost: its port"))
            && logs.contains("refuses connections: the process is gone"),
        "{logs}"
    );
}

/// Busy loops on `threads` threads of this process until `stop` is set:
/// another program competing for the same cores.
fn cpu_hog(threads: usize, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x: u64 = 1;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..100_000 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    }
                    std::hint::black_box(x);
                }
            })
        })
        .collect()
}

const CPU_BOUND: &str = "SELECT count(*) FROM generate_series(1, 4000) a \
     JOIN generate_series(1, 4000) b ON (a.value * 7 + b.value * 13) % 101 = 0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_arrive_on_time_while_every_core_is_busy() {
    let mut cluster = TestCluster::start_with(
        2,
        2,
        Some("[scheduler]\nexecutor_timeout_secs = 5\n"),
        Some("[executor]\nheartbeat_interval_secs = 1\n"),
    )
    .await;
    let expected = count_of(&SessionContext::new(), CPU_BOUND).await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let hog = cpu_hog(
        std::thread::available_parallelism().map_or(2, |n| n.get()),
        Arc::clone(&stop),
    );
    // As many query loops as task slots, for 20 s.
    let until = Instant::now() + Duration::from_secs(20);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let url = cluster.scheduler_url.clone();
        workers.push(tokio::spawn(async move {
            let ctx = SessionContext::remote(&url).await.unwrap();
            let mut answers = Vec::new();
            while Instant::now() < until {
                answers.push(count_of(&ctx, CPU_BOUND).await);
            }
            answers
        }));
    }
    let mut worst_gap_ms = 0u64;
    let mut samples = 0;
    while Instant::now() < until {
        let executors = scheduler.executors().await.unwrap();
        assert_eq!(executors.len(), 2, "an executor was dropped: {executors:?}");
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        for executor in &executors {
            worst_gap_ms = worst_gap_ms.max(now_ms.saturating_sub(executor.last_heartbeat_ms));
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    for thread in hog {
        thread.join().unwrap();
    }
    eprintln!(
        "{} queries ran; over {samples} samples the longest time since an executor's \
         last heartbeat was {worst_gap_ms} ms (interval 1000 ms)",
        answers.len()
    );
    assert!(!answers.is_empty());
    assert!(
        answers.iter().all(|a| *a == expected),
        "{answers:?} != {expected}"
    );
    // On time: within a second and a half of when it was due.
    assert!(
        worst_gap_ms < 2500,
        "a heartbeat came {worst_gap_ms} ms after the previous one"
    );
    let logs = cluster.scheduler.logs();
    assert!(!logs.contains(" lost: "), "{logs}");
    for executor in &mut cluster.executors {
        assert!(executor.is_running(), "{}", executor.logs());
    }
}
