//! Executors dying, leaving and being stopped under running jobs, on real
//! scheduler and executor processes: `kill -9` mid-stage and after map
//! outputs were written (local-disk and object-store shuffle), every
//! executor killed, cancel and client disconnect, and a graceful drain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use ballista::BallistaError;
use ballista::client::SchedulerClient;
use ballista::ids::JobId;
use ballista::proto::{self, ErrorKind, JobState};
use ballista_tests::cluster::{Finished, TestCluster, run_to_exit};
use ballista_tests::compare::compare;
use ballista_tests::data::tpch_data;
use ballista_tests::http::{get, http_url, sample};
use ballista_tests::s3;
use ballista_tests::session::{TrackedSession, expected};
use tokio::task::JoinHandle;

/// Stage 1 scans lineitem (4 tasks), stage 2 aggregates what it shuffled.
const QUERY: &str = "SELECT l_returnflag, l_linestatus, count(*) AS n, sum(l_quantity) AS q
    FROM lineitem GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus";

/// About 10^11 joined rows: runs for minutes, computing without yielding.
const EXPLODING: &str =
    "SELECT count(*) FROM lineitem a JOIN lineitem b ON a.l_returnflag = b.l_returnflag";

const SCHEDULER: &str = "[scheduler]\nexecutor_timeout_secs = 3\n";
const EXECUTOR: &str = "[executor]\nfailure_injection = true\nheartbeat_interval_secs = 1\n";

type Run = JoinHandle<(Result<Vec<RecordBatch>, BallistaError>, JobId)>;

/// Shuffle files (`*.arrow`) under a work directory.
fn shuffle_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                shuffle_files(&path)
            } else {
                usize::from(path.extension().is_some_and(|e| e == "arrow"))
            }
        })
        .sum()
}

/// A cluster of `executors` × `slots` and a client of its scheduler.
async fn start_cluster(
    executors: usize,
    slots: usize,
    scheduler_toml: Option<&str>,
    executor_toml: Option<&str>,
) -> (TestCluster, SchedulerClient) {
    let cluster = TestCluster::start_with(executors, slots, scheduler_toml, executor_toml).await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    (cluster, scheduler)
}

async fn session(cluster: &TestCluster, rules: &str) -> Arc<TrackedSession> {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let mut settings = vec![("datafusion.execution.target_partitions", "4")];
    if !rules.is_empty() {
        settings.push(("ballista.inject_failures", rules));
    }
    Arc::new(TrackedSession::new(&cluster.scheduler_url, &data, &settings).await)
}

async fn want(sql: &str) -> Vec<RecordBatch> {
    expected(&tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1), sql).await
}

/// Starts `sql` in the background; returns it and its job once submitted.
async fn start(session: &Arc<TrackedSession>, sql: &'static str) -> (Run, JobId) {
    let jobs = session.jobs();
    let before = jobs.lock().len();
    let run = tokio::spawn({
        let session = Arc::clone(session);
        async move { session.run(sql).await }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(job) = jobs.lock().get(before) {
            return (run, job.clone());
        }
        assert!(Instant::now() < deadline, "the job was not submitted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the job's status until `done` holds.
async fn wait_for(
    scheduler: &SchedulerClient,
    job: &JobId,
    what: &str,
    done: impl Fn(&proto::JobStatus) -> bool,
) -> proto::JobStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = scheduler.job_status(job).await.unwrap();
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {status:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn tasks(status: &proto::JobStatus, stage: u32) -> Vec<&proto::TaskInfo> {
    status
        .stages
        .iter()
        .filter(|s| s.stage_id == stage)
        .flat_map(|s| &s.tasks)
        .collect()
}

fn running_on(status: &proto::JobStatus, executor: &str) -> usize {
    status
        .stages
        .iter()
        .flat_map(|s| &s.tasks)
        .filter(|t| t.state == "running" && t.executor_id == executor)
        .count()
}

/// Waits until every executor of `ids` has a task of the job placed on it.
async fn wait_for_tasks_on(scheduler: &SchedulerClient, job: &JobId, ids: &[String]) {
    wait_for(scheduler, job, "tasks on every executor", |s| {
        ids.iter().all(|id| running_on(s, id) > 0)
    })
    .await;
}

fn stage_done(status: &proto::JobStatus, stage: u32) -> bool {
    let tasks = tasks(status, stage);
    !tasks.is_empty() && tasks.iter().all(|t| t.state == "done")
}

fn recomputed(status: &proto::JobStatus) -> u32 {
    status
        .progress
        .as_ref()
        .map_or(0, |p| p.map_tasks_recomputed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_an_executor_mid_stage_the_job_completes_correctly() {
    let (mut cluster, scheduler) = start_cluster(2, 2, Some(SCHEDULER), Some(EXECUTOR)).await;
    // First attempts of the scan tasks take 6 s: the kill lands mid-stage.
    let session = session(&cluster, "1:*:0:delay=6000").await;
    let (run, job) = start(&session, QUERY).await;
    let victim = cluster.executor_ids[0].clone();
    wait_for(&scheduler, &job, "a task placed on the victim", |s| {
        running_on(s, &victim) > 0
    })
    .await;
    // Placed is not yet started: wait until the victim runs it.
    cluster.executors[0].wait_for_stderr("injected delay", Duration::from_secs(30));
    cluster.executors[0].kill();

    let (rows, _) = run.await.unwrap();
    compare(
        &want(QUERY).await,
        &rows.expect("the job survives the kill"),
    )
    .unwrap();
    let status = scheduler.job_status(&job).await.unwrap();
    let lost: Vec<(u32, &proto::TaskInfo)> = status
        .stages
        .iter()
        .flat_map(|s| s.tasks.iter().map(move |t| (s.stage_id, t)))
        .filter(|(_, t)| {
            t.failures.iter().any(|f| {
                f.executor_id == victim
                    && f.error.as_ref().map(|e| e.kind) == Some(ErrorKind::ExecutorLost as i32)
            })
        })
        .collect();
    for (stage, task) in &lost {
        eprintln!(
            "task {stage}/{} lost with the executor, attempt {} ran on {}",
            task.partition, task.attempt, task.executor_id
        );
        assert_ne!(task.executor_id, victim);
    }
    assert!(
        !lost.is_empty(),
        "no task was lost with the killed executor"
    );
}

/// Kills the executor holding most of stage 1's output once stage 1 has
/// completed and stage 2 runs; returns the final status and how many map
/// outputs the killed executor held.
async fn kill_after_map_outputs(
    executor_toml: &str,
    scheduler_toml: &str,
) -> (proto::JobStatus, u32) {
    let (mut cluster, scheduler) =
        start_cluster(2, 2, Some(scheduler_toml), Some(executor_toml)).await;
    // The consumers' first attempts wait 4 s before reading their input.
    let session = session(&cluster, "2:*:0:delay=4000").await;
    let (run, job) = start(&session, QUERY).await;
    let status = wait_for(&scheduler, &job, "stage 1 done", |s| stage_done(s, 1)).await;
    let held = |id: &str| {
        tasks(&status, 1)
            .iter()
            .filter(|t| t.executor_id == id)
            .count() as u32
    };
    let victim = (0..2)
        .max_by_key(|i| held(&cluster.executor_ids[*i]))
        .unwrap();
    let victim_id = cluster.executor_ids[victim].clone();
    let lost = held(&victim_id);
    eprintln!(
        "stage 1: {} map task(s) done on the victim {victim_id}, {} on the other",
        lost,
        tasks(&status, 1).len() as u32 - lost
    );
    assert!(lost > 0);
    // Where the victim keeps the output it loses: with the local-disk
    // shuffle, in memory (no shuffle file), so what is recomputed below is
    // the in-memory tier's output.
    let victim_metrics = get(&http_url(&mut cluster.executors[victim]), "/metrics", &[])
        .await
        .body;
    let victim_files = shuffle_files(&cluster.executor_work_dirs()[victim]);
    let in_memory = sample(&victim_metrics, "ballista_shuffle_memory_held_bytes") > 0.0;
    eprintln!(
        "the victim holds {} bytes of map output in memory and {} shuffle file(s)",
        sample(&victim_metrics, "ballista_shuffle_memory_held_bytes"),
        victim_files
    );
    if !executor_toml.contains("object-store") {
        assert!(in_memory && victim_files == 0, "{victim_metrics}");
    }
    cluster.executors[victim].kill();

    let (rows, _) = run.await.unwrap();
    compare(
        &want(QUERY).await,
        &rows.expect("the job survives the kill"),
    )
    .unwrap();
    let status = scheduler.job_status(&job).await.unwrap();
    for stage in &status.stages {
        for task in &stage.tasks {
            for failure in &task.failures {
                let error = failure.error.as_ref().map(BallistaError::from_proto);
                eprintln!(
                    "task {}/{} attempt {} on {}: {}",
                    stage.stage_id,
                    task.partition,
                    failure.attempt,
                    failure.executor_id,
                    error.map(|e| e.to_string()).unwrap_or_default()
                );
            }
        }
    }
    (status, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_map_outputs_were_written_reruns_only_the_lost_map_tasks() {
    let (status, lost) = kill_after_map_outputs(EXECUTOR, SCHEDULER).await;
    let rerun = recomputed(&status);
    eprintln!("local-disk shuffle: {lost} map output(s) lost, {rerun} map task(s) re-run");
    assert_eq!(rerun, lost, "exactly the lost map tasks run again");
    for task in tasks(&status, 1) {
        assert!(task.recomputed <= 1, "{task:?}");
    }
    assert_eq!(
        tasks(&status, 1)
            .iter()
            .filter(|t| t.recomputed == 1)
            .count() as u32,
        lost
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_map_outputs_were_written_to_object_storage_reruns_nothing() {
    let bucket = s3::unique_bucket("chaos");
    let shuffle = format!(
        "{}\n[shuffle]\nkind = \"object-store\"\nurl = \"s3://{bucket}/shuffle/\"\n",
        s3::storage_toml()
    );
    let (status, lost) = kill_after_map_outputs(
        &format!("{EXECUTOR}{shuffle}"),
        &format!("{SCHEDULER}{shuffle}"),
    )
    .await;
    let rerun = recomputed(&status);
    eprintln!(
        "object-store shuffle: the killed executor had written {lost} map output(s); {rerun} map task(s) re-run"
    );
    assert_eq!(rerun, 0, "durable map output is read from the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_executor_killed_the_job_fails_clearly_within_the_grace_period() {
    let (mut cluster, scheduler) = start_cluster(2, 1, Some(SCHEDULER), Some(EXECUTOR)).await;
    let session = session(&cluster, "1:*:*:delay=60000").await;
    let (run, job) = start(&session, QUERY).await;
    let ids = cluster.executor_ids.clone();
    wait_for_tasks_on(&scheduler, &job, &ids).await;
    for executor in &mut cluster.executors {
        executor.kill();
    }
    let killed = Instant::now();
    let (rows, _) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the job hangs with no executor left")
        .unwrap();
    let took = killed.elapsed();
    let error = rows.expect_err("no executor can run it");
    eprintln!("after {:.1} s: {error}", took.as_secs_f64());
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.to_string().contains("no executor"), "{error}");
    // Lost after 3 s of silence, failed 3 s later: the grace period is the
    // executor timeout, checked every second.
    assert!(took < Duration::from_secs(12), "failed only after {took:?}");

    // The scheduler is healthy: a new executor runs the next job.
    cluster.restart_executor(0);
    cluster.wait_for_executors(1).await;
    let (rows, _) = session_without_rules(&cluster).await.run(QUERY).await;
    compare(&want(QUERY).await, &rows.unwrap()).unwrap();
}

async fn session_without_rules(cluster: &TestCluster) -> Arc<TrackedSession> {
    session(cluster, "").await
}

/// `ballista job <action> <job> --scheduler <the cluster's>`.
fn job_cli(cluster: &TestCluster, action: &str, job: &str) -> Finished {
    run_to_exit(
        "ballista",
        &["job", action, job, "--scheduler", &cluster.scheduler_url],
        &[],
        30,
    )
}

/// Waits until no executor runs a task of `job` (as the executors
/// themselves report) and its shuffle folders are gone; returns how long
/// that took.
async fn wait_until_stopped_and_deleted(
    cluster: &TestCluster,
    scheduler: &SchedulerClient,
    job: &JobId,
) -> Duration {
    let since = Instant::now();
    loop {
        let executors = scheduler.executors().await.unwrap();
        let busy: u32 = executors
            .iter()
            .map(|e| e.running_tasks + e.reported_running_tasks)
            .sum();
        let left: Vec<_> = cluster
            .executor_work_dirs()
            .iter()
            .map(|d| d.join("shuffle").join(job.as_str()))
            .filter(|d| d.exists())
            .collect();
        if busy == 0 && left.is_empty() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "5 s on: {busy} task(s) still running, shuffle data left in {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_client_disconnect_free_the_slots_within_5_s_and_delete_shuffle_data() {
    let (cluster, scheduler) = start_cluster(2, 1, None, Some(EXECUTOR)).await;

    // Cancelled from the command line while it joins.
    let session = session(&cluster, "").await;
    let (run, job) = start(&session, EXPLODING).await;
    let joining = |s: &proto::JobStatus| {
        s.progress
            .as_ref()
            .is_some_and(|p| p.stages_completed >= 1 && p.tasks_running >= 1)
    };
    wait_for(&scheduler, &job, "the join running", joining).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let written: Vec<_> = cluster
        .executor_work_dirs()
        .iter()
        .map(|d| d.join("shuffle").join(job.as_str()))
        .filter(|d| d.exists())
        .collect();
    assert!(!written.is_empty(), "the scans wrote shuffle data");
    let cancel = job_cli(&cluster, "cancel", job.as_str());
    assert_eq!(cancel.code, Some(0), "{}", cancel.stderr);
    assert!(cancel.stdout.contains("cancelled"), "{}", cancel.stdout);
    let took = wait_until_stopped_and_deleted(&cluster, &scheduler, &job).await;
    eprintln!("cancel: slots free and shuffle data deleted after {took:?}");
    let (rows, _) = run.await.unwrap();
    let error = rows.expect_err("cancelled");
    assert_eq!(error.kind(), ErrorKind::Cancelled, "{error}");
    assert_eq!(
        scheduler.job_status(&job).await.unwrap().state,
        JobState::Cancelled as i32
    );
    let status = job_cli(&cluster, "status", job.as_str());
    assert!(status.stdout.contains("cancelled"), "{}", status.stdout);

    // The client goes away while it joins.
    let session = session_without_rules(&cluster).await;
    let (run, job) = start(&session, EXPLODING).await;
    wait_for(&scheduler, &job, "the join running", joining).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    run.abort();
    drop(session);
    let took = wait_until_stopped_and_deleted(&cluster, &scheduler, &job).await;
    eprintln!("client disconnect: slots free and shuffle data deleted after {took:?}");
    assert_eq!(
        scheduler.job_status(&job).await.unwrap().state,
        JobState::Cancelled as i32
    );

    // Both executors serve the next job.
    let (rows, _) = session_without_rules(&cluster).await.run(QUERY).await;
    compare(&want(QUERY).await, &rows.unwrap()).unwrap();
    let unknown = job_cli(&cluster, "cancel", "no-such-job");
    assert_eq!(unknown.code, Some(1), "{}", unknown.stdout);
    assert!(unknown.stderr.contains("no-such-job"), "{}", unknown.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_executor_its_running_task_finishes_then_it_deregisters() {
    // The default 30 s executor timeout: leaving sooner is deregistration.
    let (mut cluster, scheduler) = start_cluster(2, 1, None, Some(EXECUTOR)).await;
    let session = session(&cluster, "1:*:0:delay=3000").await;
    let (run, job) = start(&session, QUERY).await;
    let ids = cluster.executor_ids.clone();
    wait_for_tasks_on(&scheduler, &job, &ids).await;
    cluster.executors[0].wait_for_stderr("injected delay", Duration::from_secs(30));
    cluster.executors[0].terminate();
    let code = cluster.executors[0]
        .wait_exit(Duration::from_secs(20))
        .expect("the drained executor exits");
    assert_eq!(code, Some(0));
    let drained = cluster.executors[0].stderr_lines_containing("drained: ");
    eprintln!("{drained:?}");
    assert!(
        drained
            .iter()
            .any(|l| l.contains("1 of 1 task(s) finished, 0 cancelled")),
        "{drained:?}"
    );
    let listed: Vec<String> = scheduler
        .executors()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.metadata.map(|m| m.id))
        .collect();
    assert_eq!(
        listed,
        vec![ids[1].clone()],
        "the drained executor deregistered"
    );

    let (rows, _) = run.await.unwrap();
    compare(&want(QUERY).await, &rows.expect("the job completes")).unwrap();
    let status = scheduler.job_status(&job).await.unwrap();
    // Its one finished map task was not failed; its output, on its own
    // disk, left with it and was computed again.
    assert!(
        tasks(&status, 1)
            .iter()
            .all(|t| t.failures.is_empty() && t.executor_id == ids[1]),
        "{:?}",
        tasks(&status, 1)
    );
    assert_eq!(recomputed(&status), 1);
}

/// A consumer task that started early (`ballista.early_consumers`) waits on
/// the last map task; the executor running that map task is killed. The
/// waiting task must give its slot back (a fetch failure) so that the map
/// task can run again there: with one slot per executor, holding it would
/// hang the job. The job completes with the right answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_map_task_an_early_consumer_awaits_the_job_completes() {
    let (mut cluster, scheduler) = start_cluster(2, 1, Some(SCHEDULER), Some(EXECUTOR)).await;
    // The first attempt of scan task 3 takes 6 s; the others are quick, so
    // the slot next to it is idle and the aggregate stage starts there.
    let session = session(&cluster, "1:3:0:delay=6000").await;
    let (run, job) = start(&session, QUERY).await;
    let status = wait_for(&scheduler, &job, "an early consumer", |s| {
        tasks(s, 2).iter().any(|t| t.state == "running")
            && tasks(s, 1).get(3).is_some_and(|t| t.state == "running")
    })
    .await;
    let victim = tasks(&status, 1)[3].executor_id.clone();
    let index = cluster
        .executor_ids
        .iter()
        .position(|id| *id == victim)
        .expect("a known executor");
    cluster.executors[index].wait_for_stderr("injected delay", Duration::from_secs(30));
    cluster.executors[index].kill();

    let (rows, _) = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the job hangs: the waiting consumer kept the slot the map task needs")
        .unwrap();
    compare(
        &want(QUERY).await,
        &rows.expect("the job survives the kill"),
    )
    .unwrap();
    let status = scheduler.job_status(&job).await.unwrap();
    let consumer_failures: Vec<&proto::TaskAttemptFailure> = tasks(&status, 2)
        .into_iter()
        .flat_map(|t| &t.failures)
        .collect();
    for failure in &consumer_failures {
        eprintln!("stage 2 attempt failed: {:?}", failure.error);
    }
    assert!(
        consumer_failures
            .iter()
            .any(|f| { f.error.as_ref().map(|e| e.kind) == Some(ErrorKind::FetchFailed as i32) }),
        "the waiting consumer gave its slot back with a fetch failure: {consumer_failures:?}"
    );
    assert!(
        tasks(&status, 1)[3].executor_id != victim,
        "map task 3 ran again elsewhere"
    );
}
