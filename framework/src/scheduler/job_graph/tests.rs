//! Unit tests of the job graph: stage progress, retries, lost output.

use super::*;
use crate::plan::two_stage_test_plan;

/// Two stages: a 3-task map stage hash-partitioned into 2, then the final stage.
fn graph(max_attempts: u32) -> JobGraph {
    let job_id = JobId::parse("job1").unwrap();
    let plan = two_stage_test_plan(&job_id);
    JobGraph::try_new(job_id, plan, max_attempts).unwrap()
}

/// 10 bytes written by map task `map` to output partition `output`.
fn location(stage: u32, map: usize, output: usize) -> ShuffleLocation {
    crate::plan::test_plans::location(stage, map, output, 10)
}

fn location_on(map: usize, output: usize, executor: &str, durable: bool) -> ShuffleLocation {
    let mut l = location(1, map, output);
    l.executor.id = ExecutorId::new(executor);
    l.durable = durable;
    l
}

fn run_on(graph: &mut JobGraph, stage: u32, partition: usize, executor: &str) -> u32 {
    graph
        .start_task(
            PendingTask {
                stage_id: StageId(stage),
                partition,
            },
            &ExecutorId::new(executor),
        )
        .unwrap()
        .0
}

/// Runs the map stage: partitions 0 and 1 on e1, 2 on e2.
fn complete_map_stage(g: &mut JobGraph, durable: bool) {
    for (p, executor) in [(0, "e1"), (1, "e1"), (2, "e2")] {
        let attempt = run_on(g, 1, p, executor);
        let locations = vec![
            location_on(p, 0, executor, durable),
            location_on(p, 1, executor, durable),
        ];
        g.task_succeeded(StageId(1), p, attempt, locations, Default::default())
            .unwrap();
    }
}

pub(super) fn pending_of(g: &JobGraph, stage: u32) -> Vec<usize> {
    g.pending_tasks()
        .into_iter()
        .filter(|t| t.stage_id == StageId(stage))
        .map(|t| t.partition)
        .collect()
}

fn fetch_failure(executor: &str, map_partition: u32) -> BallistaError {
    BallistaError::FetchFailed {
        executor_id: executor.into(),
        map_stage_id: 1,
        map_partition,
        message: "connection refused".into(),
    }
}

#[test]
fn a_lost_executor_reruns_only_its_map_tasks_and_the_consumer_stage_continues() {
    let mut g = graph(3);
    complete_map_stage(&mut g, false);
    assert_eq!(pending_of(&g, 2), vec![0, 1]);
    let consumer = run_on(&mut g, 2, 0, "e2");

    assert_eq!(g.executor_outputs_lost(&ExecutorId::new("e1")), 2);
    assert_eq!(pending_of(&g, 1), vec![0, 1], "only e1's map tasks re-run");
    assert!(pending_of(&g, 2).is_empty(), "the consumer waits for them");
    assert_eq!(g.progress().map_tasks_recomputed, 2);
    // The running consumer read the lost output: it runs again once the
    // map stage is complete again, without counting as a failure.
    assert_eq!(
        g.task_failed(StageId(2), 0, consumer, fetch_failure("e1", 0))
            .unwrap(),
        TaskOutcome::Progress
    );
    let states: Vec<String> = g.stage_infos()[1]
        .tasks
        .iter()
        .map(|t| t.state.clone())
        .collect();
    assert_eq!(
        states,
        vec!["waiting", "waiting"],
        "no plan, nothing pending"
    );
    for p in [0, 1] {
        let attempt = run_on(&mut g, 1, p, "e2");
        assert_eq!(attempt, 1);
        let locations = vec![
            location_on(p, 0, "e2", false),
            location_on(p, 1, "e2", false),
        ];
        g.task_succeeded(StageId(1), p, attempt, locations, Default::default())
            .unwrap();
    }
    assert_eq!(pending_of(&g, 2), vec![0, 1]);
    assert_eq!(g.progress().map_tasks_recomputed, 2, "nothing re-ran twice");
    for p in [0, 1] {
        let attempt = run_on(&mut g, 2, p, "e2");
        g.task_succeeded(StageId(2), p, attempt, vec![], Default::default())
            .unwrap();
    }
    assert!(g.is_complete());
    assert_eq!(g.stages[&StageId(2)].failures, vec![0, 0]);
}

#[test]
fn durable_output_survives_its_executor() {
    let mut g = graph(3);
    complete_map_stage(&mut g, true);
    assert_eq!(g.executor_outputs_lost(&ExecutorId::new("e1")), 0);
    assert_eq!(pending_of(&g, 2), vec![0, 1]);
    assert_eq!(g.progress().map_tasks_recomputed, 0);
}

#[test]
fn output_no_consumer_needs_any_more_is_not_rerun() {
    let mut g = graph(3);
    complete_map_stage(&mut g, false);
    for p in [0, 1] {
        let attempt = run_on(&mut g, 2, p, "e2");
        let mut output = location(2, p, 0);
        output.executor.id = ExecutorId::new("e2");
        g.task_succeeded(StageId(2), p, attempt, vec![output], Default::default())
            .unwrap();
    }
    assert!(g.is_complete());
    assert_eq!(g.executor_outputs_lost(&ExecutorId::new("e1")), 0);
}

#[test]
fn fetch_failures_rerun_the_lost_map_output_until_they_exhaust() {
    let mut g = graph(3);
    complete_map_stage(&mut g, false);
    for round in 1..MAX_FETCH_FAILURES_PER_TASK {
        let attempt = run_on(&mut g, 2, 0, "e2");
        assert_eq!(
            g.task_failed(StageId(2), 0, attempt, fetch_failure("e1", 0))
                .unwrap(),
            TaskOutcome::Progress
        );
        assert_eq!(
            pending_of(&g, 1),
            vec![0, 1],
            "e1's outputs of stage 1 re-run"
        );
        assert!(pending_of(&g, 2).is_empty());
        for p in [0, 1] {
            let attempt = run_on(&mut g, 1, p, "e1");
            let locations = vec![
                location_on(p, 0, "e1", false),
                location_on(p, 1, "e1", false),
            ];
            g.task_succeeded(StageId(1), p, attempt, locations, Default::default())
                .unwrap();
        }
        assert_eq!(g.progress().map_tasks_recomputed, 2 * round);
    }
    let attempt = run_on(&mut g, 2, 0, "e2");
    assert_eq!(
        g.task_failed(StageId(2), 0, attempt, fetch_failure("e1", 0))
            .unwrap(),
        TaskOutcome::JobFailed
    );
    assert!(matches!(
        g.failure(),
        Some(BallistaError::FetchFailed { .. })
    ));
}

#[test]
fn a_durable_fetch_failure_reruns_only_the_named_map_task() {
    let mut g = graph(3);
    complete_map_stage(&mut g, true);
    let attempt = run_on(&mut g, 2, 1, "e2");
    g.task_failed(StageId(2), 1, attempt, fetch_failure("e1", 1))
        .unwrap();
    assert_eq!(pending_of(&g, 1), vec![1]);
}

#[test]
fn a_retry_avoids_the_executor_it_failed_on_while_another_remains() {
    let mut g = graph(3);
    let attempt = run_on(&mut g, 1, 0, "e1");
    g.task_failed(StageId(1), 0, attempt, BallistaError::Io("disk".into()))
        .unwrap();
    let task = PendingTask {
        stage_id: StageId(1),
        partition: 0,
    };
    let (e1, e2) = (ExecutorId::new("e1"), ExecutorId::new("e2"));
    assert!(g.should_avoid(task, &e1, &[&e1, &e2]));
    assert!(!g.should_avoid(task, &e2, &[&e1, &e2]));
    assert!(
        !g.should_avoid(task, &e1, &[&e1]),
        "the only executor still runs it"
    );
    let other = PendingTask {
        stage_id: StageId(1),
        partition: 1,
    };
    assert!(!g.should_avoid(other, &e1, &[&e1, &e2]));
    // Not for ever: a busy cluster must not keep the retry waiting.
    g.stages.get_mut(&StageId(1)).unwrap().attempt_failures[0][0].at_ms -= RETRY_ELSEWHERE_MS + 1;
    assert!(!g.should_avoid(task, &e1, &[&e1, &e2]));
    let infos = g.stage_infos();
    let failures = &infos[0].tasks[0].failures;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].executor_id, "e1");
}

fn run(graph: &mut JobGraph, stage: u32, partition: usize) -> u32 {
    let (attempt, _) = graph
        .start_task(
            PendingTask {
                stage_id: StageId(stage),
                partition,
            },
            &ExecutorId::new("e1"),
        )
        .unwrap();
    attempt
}

#[test]
fn consumer_stage_becomes_runnable_when_all_map_tasks_commit() {
    let mut g = graph(3);
    assert_eq!(g.pending_tasks().len(), 3, "only the map stage is runnable");
    assert_eq!(g.first_pending_tasks(2), g.pending_tasks()[..2].to_vec());
    assert_eq!(g.first_pending_tasks(0), Vec::new());
    for p in 0..3 {
        let attempt = run(&mut g, 1, p);
        let outcome = g
            .task_succeeded(
                StageId(1),
                p,
                attempt,
                vec![location(1, p, 0), location(1, p, 1)],
                Default::default(),
            )
            .unwrap();
        assert_eq!(outcome, TaskOutcome::Progress);
    }
    let pending = g.pending_tasks();
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|t| t.stage_id == StageId(2)));
    for p in 0..2 {
        let attempt = run(&mut g, 2, p);
        let outcome = g
            .task_succeeded(
                StageId(2),
                p,
                attempt,
                vec![location(2, p, 0)],
                Default::default(),
            )
            .unwrap();
        assert_eq!(
            outcome,
            if p == 1 {
                TaskOutcome::JobSucceeded
            } else {
                TaskOutcome::Progress
            }
        );
    }
    assert!(g.is_complete());
    assert_eq!(g.result_partitions().len(), 2);
}

#[test]
fn retryable_failures_retry_with_a_new_attempt_until_exhausted() {
    let mut g = graph(2);
    let attempt = run(&mut g, 1, 0);
    let io = || BallistaError::Io("disk hiccup".into());
    assert_eq!(
        g.task_failed(StageId(1), 0, attempt, io()).unwrap(),
        TaskOutcome::Progress
    );
    // A late report of the superseded attempt changes nothing.
    assert_eq!(
        g.task_succeeded(StageId(1), 0, attempt, vec![], Default::default())
            .unwrap(),
        TaskOutcome::Stale
    );
    let retry = run(&mut g, 1, 0);
    assert_eq!(retry, attempt + 1);
    assert_eq!(
        g.task_failed(StageId(1), 0, retry, io()).unwrap(),
        TaskOutcome::JobFailed
    );
    assert!(matches!(g.failure(), Some(BallistaError::Io(_))));
    assert!(
        g.pending_tasks().is_empty(),
        "a failed job launches nothing more"
    );
}

#[test]
fn deterministic_failures_fail_the_job_at_once() {
    let mut g = graph(5);
    let attempt = run(&mut g, 1, 2);
    let outcome = g
        .task_failed(
            StageId(1),
            2,
            attempt,
            BallistaError::NotFound("/data/x.parquet".into()),
        )
        .unwrap();
    assert_eq!(outcome, TaskOutcome::JobFailed);
}

#[test]
fn a_refused_launch_keeps_its_attempt_and_is_no_failure() {
    let mut g = graph(1);
    let first = run(&mut g, 1, 0);
    g.unlaunch_task(StageId(1), 0, first);
    assert_eq!(run(&mut g, 1, 0), first);
    let stage = &g.stages[&StageId(1)];
    assert_eq!(stage.failures[0], 0);
    assert!(stage.attempt_failures[0].is_empty());
}

#[test]
fn a_failed_job_shows_no_running_tasks() {
    let mut g = graph(1);
    run_on(&mut g, 1, 0, "e1");
    run_on(&mut g, 1, 1, "e2");
    assert_eq!(g.progress().tasks_running, 2);
    g.fail(BallistaError::Cancelled("cancelled by its client".into()));
    assert_eq!(g.progress().tasks_running, 0);
}

#[test]
fn output_is_reported_unread_once_every_stage_reading_it_has_completed() {
    let mut g = graph(3);
    complete_map_stage(&mut g, false);
    assert!(
        g.take_unread_outputs().is_empty(),
        "the final stage reads it"
    );
    for p in 0..2 {
        let attempt = run_on(&mut g, 2, p, "e1");
        g.task_succeeded(
            StageId(2),
            p,
            attempt,
            vec![location(2, p, 0)],
            Default::default(),
        )
        .unwrap();
    }
    assert!(g.is_complete());
    // The map stage's output is unread; the final stage's is the result.
    assert_eq!(g.take_unread_outputs(), vec![StageId(1)]);
    assert!(g.take_unread_outputs().is_empty(), "reported once");
}

#[test]
fn released_output_needed_again_runs_again_everywhere_at_once() {
    // A fetch of released output fails: every executor's share of the
    // stage runs again, not only the one the fetch failed on.
    let mut g = graph(3);
    complete_map_stage(&mut g, false);
    g.unread_reported.insert(StageId(1));
    let attempt = run_on(&mut g, 2, 0, "e2");
    assert_eq!(
        g.task_failed(StageId(2), 0, attempt, fetch_failure("e1", 0))
            .unwrap(),
        TaskOutcome::Progress
    );
    assert_eq!(pending_of(&g, 1), vec![0, 1, 2]);
    assert!(!g.unread_reported.contains(&StageId(1)));

    // A lost executor makes released output needed again: it all runs
    // again, on the lost executor and elsewhere.
    let mut g = graph(3);
    complete_map_stage(&mut g, false);
    g.unread_reported.insert(StageId(1));
    assert_eq!(g.executor_outputs_lost(&ExecutorId::new("e2")), 3);
    assert_eq!(pending_of(&g, 1), vec![0, 1, 2]);
    assert!(!g.unread_reported.contains(&StageId(1)));
}

/// The output partitions each shuffle location a task's plan reads holds,
/// per partition of its reader.
fn read_outputs(plan: TaskPlan) -> Vec<Vec<(usize, usize)>> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let TaskPlan::Shared(bytes) = plan else {
        panic!("a plan this small is sent whole");
    };
    let ctx = datafusion::prelude::SessionContext::new();
    let plan = crate::plan::decode_stage_plan(&bytes, &ctx.task_ctx()).unwrap();
    let mut reads = Vec::new();
    let _ = plan.apply(|node| {
        if let Some(reader) = node.downcast_ref::<crate::plan::ShuffleReaderExec>() {
            reads.extend(reader.partitions().iter().map(|locations| {
                locations
                    .iter()
                    .map(|l| (l.map_partition, l.output_partition))
                    .collect()
            }));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    reads
}

#[test]
fn a_stage_over_a_small_input_runs_as_one_task_and_keeps_that_count_after_lost_output() {
    let job_id = JobId::parse("job1").unwrap();
    let mut plan = two_stage_test_plan(&job_id);
    // Three map tasks write 10 bytes to each of the two partitions.
    plan.task_input_bytes = 60;
    let mut g = JobGraph::try_new(job_id, plan, 3).unwrap();
    assert_eq!(g.stage(StageId(2)).unwrap().tasks.len(), 2, "as planned");
    complete_map_stage(&mut g, false);
    assert_eq!(pending_of(&g, 2), vec![0], "60 bytes: one task");
    assert_eq!(g.progress().tasks_total, 4);
    let (consumer, task_plan) = g
        .start_task(
            PendingTask {
                stage_id: StageId(2),
                partition: 0,
            },
            &ExecutorId::new("e2"),
        )
        .unwrap();
    let every_location: Vec<(usize, usize)> = vec![(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)];
    let mut read = read_outputs(task_plan);
    read[0].sort_by_key(|(map, output)| (*output, *map));
    assert_eq!(
        read,
        vec![every_location],
        "the one task reads both partitions"
    );

    // Output lost under it: the map tasks run again, the stage stays one
    // task (its count is decided once) and finishes the job.
    assert_eq!(g.executor_outputs_lost(&ExecutorId::new("e1")), 2);
    for p in [0, 1] {
        let attempt = run_on(&mut g, 1, p, "e2");
        let locations = vec![
            location_on(p, 0, "e2", false),
            location_on(p, 1, "e2", false),
        ];
        g.task_succeeded(StageId(1), p, attempt, locations, Default::default())
            .unwrap();
    }
    assert_eq!(g.stage(StageId(2)).unwrap().tasks.len(), 1);
    assert_eq!(
        g.task_succeeded(StageId(2), 0, consumer, vec![], Default::default())
            .unwrap(),
        TaskOutcome::JobSucceeded
    );

    // A larger input keeps the planned count: 30 bytes per partition.
    let job_id = JobId::parse("job2").unwrap();
    let mut plan = two_stage_test_plan(&job_id);
    plan.task_input_bytes = 30;
    let mut g = JobGraph::try_new(job_id, plan, 3).unwrap();
    complete_map_stage(&mut g, false);
    assert_eq!(pending_of(&g, 2), vec![0, 1]);
}

#[test]
fn a_fetch_failure_of_a_regrouped_task_reruns_the_lost_map_output_and_keeps_the_count() {
    let job_id = JobId::parse("job1").unwrap();
    let mut plan = two_stage_test_plan(&job_id);
    plan.task_input_bytes = 60;
    let mut g = JobGraph::try_new(job_id, plan, 3).unwrap();
    complete_map_stage(&mut g, false);
    assert_eq!(pending_of(&g, 2), vec![0], "one task reads both partitions");
    let attempt = run_on(&mut g, 2, 0, "e2");
    assert_eq!(
        g.task_failed(StageId(2), 0, attempt, fetch_failure("e1", 0))
            .unwrap(),
        TaskOutcome::Progress
    );
    assert_eq!(pending_of(&g, 1), vec![0, 1], "e1's map outputs run again");
    assert!(pending_of(&g, 2).is_empty(), "the reader waits for them");
    for p in [0, 1] {
        let attempt = run_on(&mut g, 1, p, "e2");
        let locations = vec![
            location_on(p, 0, "e2", false),
            location_on(p, 1, "e2", false),
        ];
        g.task_succeeded(StageId(1), p, attempt, locations, Default::default())
            .unwrap();
    }
    assert_eq!(pending_of(&g, 2), vec![0], "still one task");
    let (retry, task_plan) = g
        .start_task(
            PendingTask {
                stage_id: StageId(2),
                partition: 0,
            },
            &ExecutorId::new("e2"),
        )
        .unwrap();
    assert!(retry > attempt, "a new attempt");
    let mut read = read_outputs(task_plan);
    read[0].sort_by_key(|(map, output)| (*output, *map));
    assert_eq!(
        read,
        vec![vec![(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]],
        "the retry reads every map task's output of both partitions"
    );
    assert_eq!(
        g.task_succeeded(StageId(2), 0, retry, vec![], Default::default())
            .unwrap(),
        TaskOutcome::JobSucceeded
    );
}
