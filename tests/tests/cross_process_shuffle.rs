//! The shuffle really crosses processes: a multi-stage query's tasks run on
//! both executors, and downstream tasks read partitions written by the other
//! executor over Arrow Flight. Tables are declared in the scheduler's TOML
//! and the query is sent as SQL text, as a thin client would.

use std::collections::{BTreeMap, HashMap, HashSet};

use ballista::client::{SchedulerClient, SessionContextExt};
use ballista::proto::{self, JobState};
use ballista_tests::cluster::TestCluster;
use ballista_tests::compare;
use ballista_tests::data::tpch_data;
use ballista_tests::session::{TrackedSession, expected};
use datafusion::prelude::SessionContext;

const QUERY: &str = "SELECT o_orderpriority, count(*) AS line_count, sum(l_quantity) AS qty \
                     FROM orders JOIN lineitem ON l_orderkey = o_orderkey \
                     GROUP BY o_orderpriority ORDER BY o_orderpriority";

fn scheduler_toml(data: &std::path::Path) -> String {
    let mut toml = String::from("[scheduler]\n");
    for table in ["orders", "lineitem"] {
        toml.push_str(&format!(
            "[[scheduler.tables]]\nname = \"{table}\"\nlocation = \"{}/{table}/\"\nformat = \"parquet\"\n",
            data.display()
        ));
    }
    toml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffle_partitions_are_read_across_executors_over_flight() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let cluster = TestCluster::start(2, 2, Some(&scheduler_toml(&data))).await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();

    let request = proto::ExecuteQueryRequest {
        query: Some(proto::execute_query_request::Query::Sql(QUERY.into())),
        // Enough partitions that every stage has tasks for both executors,
        // and as many as planned whatever their input's size.
        settings: proto::key_values([
            ("datafusion.execution.target_partitions", "4"),
            ("ballista.task_input_bytes", "0"),
        ]),
        ..Default::default()
    };
    let mut updates = scheduler.execute(request).await.unwrap();
    let mut last = None;
    while let Some(status) = updates.message().await.unwrap() {
        last = Some(status);
    }
    let status = last.expect("a final status");
    assert_eq!(
        status.state,
        JobState::Succeeded as i32,
        "job failed: {:?}",
        status.error
    );
    assert!(
        status.stages.len() >= 3,
        "expected a multi-stage plan, got {} stages",
        status.stages.len()
    );

    let executors: HashSet<String> = scheduler
        .executors()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.metadata.map(|m| m.id))
        .collect();
    assert_eq!(executors.len(), 2);
    let ran_on = |stage: &proto::StageInfo| -> HashSet<String> {
        stage.tasks.iter().map(|t| t.executor_id.clone()).collect()
    };
    let stages: HashMap<u32, &proto::StageInfo> =
        status.stages.iter().map(|s| (s.stage_id, s)).collect();

    // A consumer stage whose tasks ran on both executors, each of which read
    // some of its input from the other executor over Flight.
    let crossing = status.stages.iter().find(|stage| {
        !stage.inputs.is_empty()
            && ran_on(stage) == executors
            && stage
                .tasks
                .iter()
                .all(|t| t.metrics.as_ref().is_some_and(|m| m.remote_fetches > 0))
            && stage.inputs.iter().all(|i| ran_on(stages[i]) == executors)
    });
    let stage =
        crossing.unwrap_or_else(|| panic!("no stage read across executors: {:#?}", status.stages));
    for task in &stage.tasks {
        let producers: HashSet<String> = stage
            .inputs
            .iter()
            .flat_map(|i| ran_on(stages[i]))
            .collect();
        let others: Vec<&String> = producers
            .iter()
            .filter(|e| **e != task.executor_id)
            .collect();
        assert!(
            !others.is_empty(),
            "task {} on {} fetched remotely but no other executor produced its input",
            task.partition,
            task.executor_id
        );
    }

    // And the answer is right.
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();
    let actual = ctx.sql(QUERY).await.unwrap().collect().await.unwrap();
    let local = ballista_tests::local_tpch_session(&data).await;
    let expected = local.sql(QUERY).await.unwrap().collect().await.unwrap();
    compare::compare(&expected, &actual).unwrap();
}

/// SQL text planned by the scheduler itself: `count(*)` over a table
/// function leaves a `generate_series` scan projected to no columns, which
/// must reach the executors as such (datafusion-proto alone would send the
/// projected schema without the projection, and the task fail with
/// "number of columns(1) must match number of fields(0)").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_planned_count_over_a_table_function_runs() {
    let cluster = TestCluster::start(2, 2, None).await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    for sql in [
        "SELECT count(*) FROM generate_series(1, 10)",
        "SELECT count(*) FROM range(5) WHERE random() >= 0",
    ] {
        let request = proto::ExecuteQueryRequest {
            query: Some(proto::execute_query_request::Query::Sql(sql.into())),
            ..Default::default()
        };
        let status = ballista_tests::probe::final_status(&scheduler, request).await;
        assert_eq!(
            status.state,
            JobState::Succeeded as i32,
            "{sql}: {:?}",
            status.error
        );
        let result = status.result.expect("a result");
        let schema = ballista::proto::decode_schema(&result.schema).unwrap();
        assert_eq!(schema.fields().len(), 1, "{sql}: {schema:?}");
        let rows: u64 = result
            .partitions
            .iter()
            .flat_map(|p| &p.locations)
            .map(|l| l.stats.as_ref().map_or(0, |s| s.num_rows))
            .sum();
        assert_eq!(rows, 1, "{sql}");
    }
}

/// A stage whose shuffled input turns out small runs as fewer tasks than
/// planned (`ballista.task_input_bytes`, on by default), with DataFusion's
/// answer; `0` keeps every planned task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_over_small_inputs_run_as_fewer_tasks_with_the_same_answer() {
    let (planned, adaptive) = tasks_per_stage_off_and_on(
        QUERY,
        &[("datafusion.execution.target_partitions", "4")],
        "ballista.task_input_bytes",
    )
    .await;
    assert!(
        planned.values().any(|&tasks| tasks == 4),
        "some stage runs its 4 planned tasks with 0: {planned:?}"
    );
    assert!(
        adaptive
            .iter()
            .all(|(stage, tasks)| *tasks <= planned[stage]),
        "never more tasks than planned: {planned:?} vs {adaptive:?}"
    );
    // The aggregate of five priorities reads a few hundred bytes: one task.
    let coalesced: Vec<u32> = adaptive
        .iter()
        .filter(|(stage, tasks)| **tasks == 1 && planned[*stage] == 4)
        .map(|(stage, _)| *stage)
        .collect();
    assert!(
        !coalesced.is_empty(),
        "no stage of 4 planned tasks ran as one: {planned:?} vs {adaptive:?}"
    );
}

/// A join DataFusion planned to shuffle both sides (thresholds 0) whose
/// build side turns out small once its stage ran becomes a broadcast join
/// (`ballista.adaptive_broadcast_bytes`, on by default): the probe stage runs
/// no tasks, its rows are joined where they are read, and the answer is
/// DataFusion's; `0` keeps the partitioned join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_join_broadcasts_a_build_side_that_turned_out_small() {
    const SELECTIVE: &str = "SELECT o_orderpriority, count(*) AS line_count, sum(l_quantity) AS qty \
                             FROM orders JOIN lineitem ON l_orderkey = o_orderkey \
                             WHERE o_orderdate < DATE '1992-02-01' \
                             GROUP BY o_orderpriority ORDER BY o_orderpriority";
    let (planned, adaptive) = tasks_per_stage_off_and_on(
        SELECTIVE,
        &[
            ("datafusion.execution.target_partitions", "4"),
            (
                "datafusion.optimizer.hash_join_single_partition_threshold",
                "0",
            ),
            (
                "datafusion.optimizer.hash_join_single_partition_threshold_rows",
                "0",
            ),
            ("ballista.task_input_bytes", "0"),
        ],
        "ballista.adaptive_broadcast_bytes",
    )
    .await;
    assert!(
        planned.values().all(|&tasks| tasks > 0),
        "with 0 every stage runs: {planned:?}"
    );
    let skipped: Vec<u32> = adaptive
        .iter()
        .filter(|(_, tasks)| **tasks == 0)
        .map(|(stage, _)| *stage)
        .collect();
    assert_eq!(
        skipped.len(),
        1,
        "the probe stage (lineitem) runs no tasks by default: {adaptive:?}"
    );
}

/// Runs `query` on two executor processes with `settings`, first with
/// `key = 0`, then with `key` at its default; both answers must be
/// DataFusion's. Returns each run's task count per stage (with 0, then by
/// default), over the same stages.
async fn tasks_per_stage_off_and_on(
    query: &str,
    settings: &[(&str, &str)],
    key: &str,
) -> (BTreeMap<u32, usize>, BTreeMap<u32, usize>) {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let cluster = TestCluster::start(2, 2, None).await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let want = expected(&data, query).await;
    let mut tasks_per_stage = Vec::new();
    for value in [Some("0"), None] {
        let mut settings = settings.to_vec();
        settings.extend(value.map(|value| (key, value)));
        let session = TrackedSession::new(&cluster.scheduler_url, &data, &settings).await;
        let (rows, job) = session.run(query).await;
        let rows = rows.unwrap_or_else(|e| panic!("{key} {value:?}: {e}"));
        compare::compare(&want, &rows).unwrap_or_else(|e| panic!("{key} {value:?}: {e}"));
        let status = scheduler.job_status(&job).await.unwrap();
        let tasks: BTreeMap<u32, usize> = status
            .stages
            .iter()
            .map(|stage| (stage.stage_id, stage.tasks.len()))
            .collect();
        tasks_per_stage.push(tasks);
    }
    let adaptive = tasks_per_stage.pop().expect("two runs");
    let planned = tasks_per_stage.pop().expect("two runs");
    eprintln!("{key}: tasks per stage with 0 {planned:?}, by default {adaptive:?}");
    assert_eq!(
        planned.keys().collect::<Vec<_>>(),
        adaptive.keys().collect::<Vec<_>>(),
        "the same stages"
    );
    (planned, adaptive)
}

/// When every map task of a stage has been launched and a slot is idle, a
/// stage reading it starts on that slot (`ballista.early_consumers`, on by
/// default): it reads the outputs committed so far and the last map task's
/// output when it commits, and the answer is DataFusion's. With `false` it
/// starts only after the whole stage. Map task 3 of the scan stage is held
/// for 1.5 s, so the slot next to it is idle meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stage_starts_on_idle_slots_while_its_input_stage_finishes() {
    const AGGREGATE: &str = "SELECT l_returnflag, l_linestatus, sum(l_quantity) AS qty, \
                             count(*) AS n FROM lineitem \
                             GROUP BY l_returnflag, l_linestatus ORDER BY 1, 2";
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let cluster =
        TestCluster::start_with(2, 1, None, Some("[executor]\nfailure_injection = true\n")).await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let want = expected(&data, AGGREGATE).await;
    for early in ["true", "false"] {
        let settings = [
            ("datafusion.execution.target_partitions", "4"),
            ("ballista.task_input_bytes", "0"),
            ("ballista.inject_failures", "1:3:0:delay=1500"),
            ("ballista.early_consumers", early),
        ];
        let session = TrackedSession::new(&cluster.scheduler_url, &data, &settings).await;
        let (rows, job) = session.run(AGGREGATE).await;
        let rows = rows.unwrap_or_else(|e| panic!("early_consumers {early}: {e}"));
        compare::compare(&want, &rows).unwrap_or_else(|e| panic!("early_consumers {early}: {e}"));
        let status = scheduler.job_status(&job).await.unwrap();
        let times = |stage: &proto::StageInfo| -> Vec<(u64, u64)> {
            stage
                .tasks
                .iter()
                .map(|t| {
                    let m = t.metrics.as_ref().expect("every task is done");
                    (m.started_at_ms, m.ended_at_ms)
                })
                .collect()
        };
        let scan = status
            .stages
            .iter()
            .find(|s| s.stage_id == 1)
            .expect("stage 1");
        assert!(scan.inputs.is_empty(), "stage 1 scans lineitem: {scan:?}");
        let scan_end = times(scan).iter().map(|(_, end)| *end).max().unwrap();
        let consumer = status
            .stages
            .iter()
            .find(|s| s.inputs.contains(&1))
            .expect("a stage reads stage 1");
        let first_start = times(consumer)
            .iter()
            .map(|(start, _)| *start)
            .min()
            .unwrap();
        eprintln!(
            "early_consumers {early}: stage {} started {} ms before stage 1 ended",
            consumer.stage_id,
            scan_end as i64 - first_start as i64
        );
        if early == "true" {
            assert!(
                first_start + 500 < scan_end,
                "a task of stage {} started at {first_start}, stage 1 ended at {scan_end}",
                consumer.stage_id
            );
        } else {
            assert!(
                first_start >= scan_end,
                "stage {} started at {first_start}, before stage 1 ended at {scan_end}",
                consumer.stage_id
            );
        }
    }
}
