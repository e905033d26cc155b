//! Unit tests of consumer stages started before their inputs complete.

use super::*;
use crate::ids::JobId;
use crate::plan::two_stage_test_plan;
use crate::plugin::scheduling::PendingTask;
use crate::scheduler::job_graph::tests::pending_of;
use crate::scheduler::job_graph::{TaskOutcome, TaskPlan};

/// The two-stage test plan (3 map tasks hash-partitioned into 2, then the
/// final stage) with early consumers on or off.
fn graph(early: bool, task_input_bytes: u64) -> JobGraph {
    let job_id = JobId::parse("job1").unwrap();
    let mut plan = two_stage_test_plan(&job_id);
    plan.early_consumers = early;
    plan.task_input_bytes = task_input_bytes;
    JobGraph::try_new(job_id, plan, 3).unwrap()
}

fn e1() -> ExecutorId {
    ExecutorId::new("e1")
}

fn start(g: &mut JobGraph, stage: u32, partition: usize) -> (u32, TaskPlan) {
    g.start_task(
        PendingTask {
            stage_id: StageId(stage),
            partition,
        },
        &e1(),
    )
    .unwrap()
}

/// Map task `map` commits 10 bytes to each of the two partitions.
fn commit_map(g: &mut JobGraph, map: usize, attempt: u32) -> TaskOutcome {
    let locations = (0..2)
        .map(|p| crate::plan::test_plans::location(1, map, p, 10))
        .collect();
    g.task_succeeded(StageId(1), map, attempt, locations, Default::default())
        .unwrap()
}

/// Every map task launched, map task 0 committed, the consumer stage
/// opened early (see [`graph`]); the map tasks' attempts.
fn opened_early(task_input_bytes: u64) -> (JobGraph, Vec<u32>) {
    let (mut g, attempts) = launched(true, task_input_bytes);
    assert_eq!(g.open_early_stages(), 1);
    (g, attempts)
}

/// Every map task launched, map task 0 committed; the map tasks' attempts.
fn launched(early: bool, task_input_bytes: u64) -> (JobGraph, Vec<u32>) {
    let mut g = graph(early, task_input_bytes);
    let attempts: Vec<u32> = (0..3).map(|p| start(&mut g, 1, p).0).collect();
    commit_map(&mut g, 0, attempts[0]);
    (g, attempts)
}

/// Per reader partition, the (map task, output partition) of each location,
/// and the map tasks the reader awaits.
fn reads(plan: TaskPlan) -> (Vec<Vec<(usize, usize)>>, Vec<u32>) {
    let TaskPlan::Shared(bytes) = plan else {
        panic!("a plan this small is sent whole");
    };
    let ctx = datafusion::prelude::SessionContext::new();
    let plan = crate::plan::decode_stage_plan(&bytes, &ctx.task_ctx()).unwrap();
    let mut found = (Vec::new(), Vec::new());
    let _ = plan.apply(|node| {
        if let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() {
            found.0 = reader
                .partitions()
                .iter()
                .map(|ls| {
                    ls.iter()
                        .map(|l| (l.map_partition, l.output_partition))
                        .collect()
                })
                .collect();
            found.1 = reader.pending_map_tasks().to_vec();
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn awaited(
    g: &JobGraph,
    consumer: (u32, usize, u32),
    partition: usize,
    map_tasks: &[u32],
) -> Result<Option<proto::AwaitMapOutputsResponse>> {
    g.awaited_map_outputs(
        (StageId(consumer.0), consumer.1, consumer.2),
        &e1(),
        StageId(1),
        partition,
        map_tasks,
    )
}

#[test]
fn a_consumer_starts_once_every_map_task_is_launched_and_reads_later_outputs_as_they_commit() {
    let mut g = graph(true, 0);
    let (a0, _) = start(&mut g, 1, 0);
    let (a1, _) = start(&mut g, 1, 1);
    commit_map(&mut g, 0, a0);
    assert_eq!(g.open_early_stages(), 0, "map task 2 has not been launched");
    let (a2, _) = start(&mut g, 1, 2);
    assert_eq!(g.open_early_stages(), 1);
    assert_eq!(pending_of(&g, 2), vec![0, 1]);
    assert_eq!(g.open_early_stages(), 0, "opened once");

    let (c0, plan) = start(&mut g, 2, 0);
    let (read, pending) = reads(plan);
    assert_eq!(read, vec![vec![(0, 0)], vec![(0, 1)]]);
    assert_eq!(pending, vec![1, 2], "the map tasks still running");
    assert_eq!(awaited(&g, (2, 0, c0), 0, &[1, 2]).unwrap(), None);

    commit_map(&mut g, 1, a1);
    let answer = awaited(&g, (2, 0, c0), 0, &[1, 2]).unwrap().unwrap();
    assert_eq!(answer.map_tasks, vec![1]);
    assert!(!answer.complete);
    let got: Vec<(u32, u32)> = answer
        .locations
        .iter()
        .map(|l| (l.map_partition, l.output_partition))
        .collect();
    assert_eq!(got, vec![(1, 0)], "only what reader partition 0 reads");

    // The input completes: the stage's plan is resolved in full for the
    // tasks still to launch; the running one gets the last output.
    assert_eq!(commit_map(&mut g, 2, a2), TaskOutcome::Progress);
    let (c1, plan) = start(&mut g, 2, 1);
    let (read, pending) = reads(plan);
    assert_eq!(read[1], vec![(0, 1), (1, 1), (2, 1)]);
    assert!(pending.is_empty(), "{pending:?}");
    let answer = awaited(&g, (2, 0, c0), 0, &[2]).unwrap().unwrap();
    assert_eq!((answer.map_tasks, answer.complete), (vec![2], true));
    g.task_succeeded(StageId(2), 0, c0, vec![], Default::default())
        .unwrap();
    assert_eq!(
        g.task_succeeded(StageId(2), 1, c1, vec![], Default::default())
            .unwrap(),
        TaskOutcome::JobSucceeded
    );
}

#[test]
fn nothing_starts_early_when_the_setting_is_off_or_no_map_task_has_committed() {
    let (mut g, _) = launched(false, 0);
    assert_eq!(g.open_early_stages(), 0);
    assert!(pending_of(&g, 2).is_empty());

    let mut g = graph(true, 0);
    for p in 0..3 {
        start(&mut g, 1, p);
    }
    assert_eq!(g.open_early_stages(), 0, "nothing to read yet");
}

#[test]
fn an_awaited_read_is_refused_for_a_stale_attempt_an_unread_stage_or_an_unknown_map_task() {
    let (mut g, _) = opened_early(0);
    let (c0, _) = start(&mut g, 2, 0);
    let stale = awaited(&g, (2, 0, c0 + 1), 0, &[1]).unwrap_err();
    assert!(matches!(stale, BallistaError::Cancelled(_)), "{stale}");
    assert!(stale.to_string().contains("no longer runs"), "{stale}");
    let elsewhere = g
        .awaited_map_outputs(
            (StageId(2), 0, c0),
            &ExecutorId::new("e9"),
            StageId(1),
            0,
            &[1],
        )
        .unwrap_err();
    assert!(
        matches!(elsewhere, BallistaError::Cancelled(_)),
        "{elsewhere}"
    );
    let unread = g
        .awaited_map_outputs((StageId(2), 0, c0), &e1(), StageId(2), 0, &[1])
        .unwrap_err();
    assert!(matches!(unread, BallistaError::InvalidInput(_)), "{unread}");
    assert!(
        unread.to_string().contains("does not read stage 2"),
        "{unread}"
    );
    let unknown = awaited(&g, (2, 0, c0), 0, &[7]).unwrap_err();
    assert!(unknown.to_string().contains("no map task 7"), "{unknown}");
}

#[test]
fn lost_input_closes_the_early_stage_until_its_input_is_rerun() {
    let (mut g, attempts) = opened_early(0);
    let (c0, _) = start(&mut g, 2, 0);
    // The executor holding map task 0's output is lost: it runs again, and
    // the consumer's other task waits for the input (no launch names the
    // lost location); the running one keeps its attempt.
    assert_eq!(g.executor_outputs_lost(&e1()), 1);
    assert!(pending_of(&g, 2).is_empty());
    assert!(!g.stage(StageId(2)).unwrap().early);
    assert_eq!(g.current_attempt(StageId(2), 0, c0), Some(e1()));
    assert_eq!(pending_of(&g, 1), vec![0]);
    assert_eq!(
        awaited(&g, (2, 0, c0), 0, &[1, 2]).unwrap(),
        None,
        "still running"
    );

    // An awaited map task that must run again: the waiting task fails to
    // fetch (and gives its slot back) instead of waiting on.
    let failed = g
        .task_failed(
            StageId(1),
            1,
            attempts[1],
            BallistaError::Io("disk full".into()),
        )
        .unwrap();
    assert_eq!(failed, TaskOutcome::Progress);
    let err = awaited(&g, (2, 0, c0), 0, &[1, 2]).unwrap_err();
    assert!(
        matches!(
            err,
            BallistaError::FetchFailed {
                map_stage_id: 1,
                map_partition: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("runs again"), "{err}");
    let outcome = g.task_failed(StageId(2), 0, c0, err).unwrap();
    assert_eq!(outcome, TaskOutcome::Progress);
    assert_eq!(
        g.stage(StageId(2)).unwrap().fetch_failures[0],
        0,
        "giving the slot back is not one of the task's fetch failures"
    );
    assert!(
        !g.pending_tasks().iter().any(|t| t.stage_id == StageId(2)),
        "the consumer waits for its input again"
    );
}

#[test]
fn an_adaptive_task_count_is_decided_from_the_committed_share_of_the_input() {
    // 60 bytes in all (3 map tasks × 2 partitions × 10): one task of 60.
    let (mut g, attempts) = opened_early(60);
    assert_eq!(pending_of(&g, 2), vec![0], "20 of ~60 bytes: one task");
    let (c0, plan) = start(&mut g, 2, 0);
    let (read, pending) = reads(plan);
    assert_eq!(read, vec![vec![(0, 0), (0, 1)]]);
    assert_eq!(pending, vec![1, 2]);
    commit_map(&mut g, 1, attempts[1]);
    let answer = awaited(&g, (2, 0, c0), 0, &[1, 2]).unwrap().unwrap();
    let got: Vec<(u32, u32)> = answer
        .locations
        .iter()
        .map(|l| (l.map_partition, l.output_partition))
        .collect();
    assert_eq!(
        got,
        vec![(1, 0), (1, 1)],
        "the grouped task reads both partitions"
    );

    // 30 bytes per partition: the planned two tasks.
    let (g, _) = opened_early(30);
    assert_eq!(pending_of(&g, 2), vec![0, 1]);
}

#[test]
fn a_consumer_whose_tasks_finish_before_its_input_completes_only_with_it() {
    // Tasks may finish without reading all they await (a limit, an empty
    // join side): the stage, and the job, complete when the input does.
    let (mut g, attempts) = opened_early(0);
    let consumers: Vec<u32> = (0..2).map(|p| start(&mut g, 2, p).0).collect();
    for (p, attempt) in consumers.into_iter().enumerate() {
        let outcome = g
            .task_succeeded(StageId(2), p, attempt, vec![], Default::default())
            .unwrap();
        assert_eq!(outcome, TaskOutcome::Progress, "task {p}");
    }
    assert!(!g.is_complete());
    assert_eq!(g.progress().stages_completed, 0);
    assert_eq!(commit_map(&mut g, 1, attempts[1]), TaskOutcome::Progress);
    assert_eq!(
        commit_map(&mut g, 2, attempts[2]),
        TaskOutcome::JobSucceeded
    );
    assert!(g.is_complete());
    assert!(!g.stage(StageId(2)).unwrap().early);
}

#[test]
fn an_awaited_list_with_repeats_or_more_tasks_than_the_stage_is_refused() {
    let (mut g, _) = opened_early(0);
    let (c0, _) = start(&mut g, 2, 0);
    for list in [vec![1, 1], vec![0, 1, 2, 2]] {
        let err = awaited(&g, (2, 0, c0), 0, &list).unwrap_err();
        assert!(matches!(err, BallistaError::InvalidInput(_)), "{err}");
        assert!(err.to_string().contains("must be distinct"), "{err}");
    }
}
