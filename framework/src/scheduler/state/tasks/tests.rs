//! Placement and status-report tests, and the helpers other state tests
//! share.

use std::sync::Arc;

use super::*;
use crate::config::SchedulerSettings;
use crate::plan::two_stage_test_plan;
use crate::plugin::memory::MemoryUsage;
use crate::plugin::scheduling::FifoPolicy;
use crate::plugin::shuffle::ExecutorAddress;

/// A status of stage 1's task `partition`, attempt `attempt`, as
/// `executor` reports it.
fn status(
    job: &JobId,
    partition: u32,
    attempt: u32,
    executor: &str,
    result: proto::task_status::Result,
) -> proto::TaskStatus {
    proto::TaskStatus {
        task: Some(proto::TaskId {
            job_id: job.to_string(),
            stage_id: 1,
            partition,
            attempt,
        }),
        executor_id: executor.into(),
        result: Some(result),
        started_at_ms: 0,
        ended_at_ms: 0,
    }
}

/// A job whose first stage has three map tasks.
pub(crate) fn submit(state: &mut SchedulerState, name: &str) -> JobId {
    let job_id = JobId::parse(name).unwrap();
    state
        .submit(
            job_id.clone(),
            String::new(),
            Arc::new(crate::plugin::auth::Identity::cluster_admin()),
            Arc::default(),
            proto::ExecuteQueryRequest::default(),
        )
        .unwrap();
    let plan = two_stage_test_plan(&job_id);
    let _ = state.planned(&job_id, Ok(plan));
    job_id
}

fn memory(available: u64) -> MemoryUsage {
    MemoryUsage {
        budget_bytes: 100,
        reserved_bytes: 100 - available,
        peak_bytes: 100,
        available_bytes: available,
        task_min_bytes: 20,
    }
}

/// Registers executor `id` with `slots` slots and `available` bytes free.
pub(crate) fn register(
    state: &mut SchedulerState,
    id: &str,
    slots: usize,
    available: u64,
) -> Effects {
    let address = ExecutorAddress {
        id: ExecutorId::new(id),
        host: "127.0.0.1".into(),
        port: 1,
    };
    state
        .register_executor(
            address,
            slots,
            "test".into(),
            memory(available),
            crate::auth::SecretKey::random().unwrap(),
        )
        .unwrap()
}

pub(crate) fn placed_on(state: &SchedulerState, job: &JobId) -> Vec<String> {
    let mut out: Vec<String> = state
        .executors
        .all()
        .flat_map(|e| {
            e.running
                .iter()
                .filter(|(j, ..)| j == job)
                .map(|_| e.address.id.to_string())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_new_job_is_not_placed_where_memory_cannot_hold_it() {
    let mut state = SchedulerState::new(SchedulerSettings::default(), Arc::new(FifoPolicy));
    for (id, slots, available) in [("e1", 4, 10), ("e2", 1, 100)] {
        let _ = register(&mut state, id, slots, available);
    }
    // Executors running nothing take any job: their figures may be old.
    let a = submit(&mut state, "joba");
    assert_eq!(placed_on(&state, &a), vec!["e1", "e1", "e1"]);

    // e1 runs job a and has 10 bytes free, a new job needs 20: job b
    // gets e2's slot, and e1's free slot stays empty.
    let b = submit(&mut state, "jobb");
    assert_eq!(placed_on(&state, &b), vec!["e2"]);

    // Once e1 reports room, b's next task goes there.
    let (_, _) = state.heartbeat(&ExecutorId::new("e1"), memory(60), Vec::new(), false);
    assert_eq!(placed_on(&state, &b), vec!["e1", "e2"]);
}

#[tokio::test]
async fn deferred_placement_places_once_for_many_events() {
    let mut state = SchedulerState::new(SchedulerSettings::default(), Arc::new(FifoPolicy))
        .deferring_placement();
    let registered = register(&mut state, "e1", 2, 100);
    assert!(registered.launches.is_empty());
    // Two jobs planned: each asks for a round, and none is placed yet.
    let (a, b) = (submit(&mut state, "joba"), submit(&mut state, "jobb"));
    assert!(placed_on(&state, &a).is_empty() && placed_on(&state, &b).is_empty());

    // One round fills both slots, in submission order.
    let effects = state.place_tasks();
    assert!(!effects.place_tasks);
    assert_eq!(effects.launches.len(), 1);
    assert_eq!(effects.launches[0].tasks.len(), 2);
    assert_eq!(placed_on(&state, &a), vec!["e1", "e1"]);

    // A status report frees a slot and asks for a round instead of
    // placing the next task itself.
    let done = status(
        &a,
        0,
        0,
        "e1",
        proto::task_status::Result::Succeeded(proto::TaskSuccess {
            locations: Vec::new(),
            metrics: None,
        }),
    );
    let effects = state.task_statuses(&ExecutorId::new("e1"), vec![done]);
    assert!(effects.place_tasks && effects.launches.is_empty());
    assert_eq!(placed_on(&state, &a), vec!["e1"]);
    let effects = state.place_tasks();
    assert_eq!(effects.launches[0].tasks.len(), 1);
    assert_eq!(placed_on(&state, &a), vec!["e1", "e1"]);
}

#[tokio::test]
async fn a_retry_goes_to_another_executor_than_the_one_it_failed_on() {
    let mut state = SchedulerState::new(SchedulerSettings::default(), Arc::new(FifoPolicy));
    for id in ["e1", "e2"] {
        let _ = register(&mut state, id, 4, 100);
    }
    let job = submit(&mut state, "joba");
    let runs = |state: &SchedulerState, attempt: u32| -> Vec<String> {
        state
            .executors
            .all()
            .filter(|e| {
                e.running
                    .iter()
                    .any(|(j, s, p, a)| *j == job && s.0 == 1 && *p == 0 && *a == attempt)
            })
            .map(|e| e.address.id.to_string())
            .collect()
    };
    let first = runs(&state, 0);
    assert_eq!(first.len(), 1);
    // Fail it wherever it ran, every time: each retry moves to the
    // executor it has not failed on yet, until it failed on both.
    let mut failed_on = Vec::new();
    for attempt in 0..2 {
        let on = runs(&state, attempt);
        assert_eq!(on.len(), 1, "attempt {attempt} runs once");
        assert!(
            !failed_on.contains(&on[0]),
            "attempt {attempt} ran on {on:?} again"
        );
        let failure = status(
            &job,
            0,
            attempt,
            &on[0],
            proto::task_status::Result::Failed(BallistaError::Io("disk".into()).to_proto()),
        );
        let _ = state.task_statuses(&ExecutorId::new(on[0].clone()), vec![failure]);
        failed_on.push(on[0].clone());
    }
    failed_on.sort();
    assert_eq!(failed_on, vec!["e1", "e2"]);
    assert_eq!(
        runs(&state, 2).len(),
        1,
        "with no other left, it runs anyway"
    );
}

#[tokio::test]
async fn a_launch_that_got_no_answer_is_an_attempt_lost_with_its_executor() {
    let settings = SchedulerSettings {
        task_max_attempts: 2,
        ..Default::default()
    };
    let mut state = SchedulerState::new(settings, Arc::new(FifoPolicy));
    let _ = register(&mut state, "e1", 1, 100);
    let job = submit(&mut state, "joba");
    assert_eq!(placed_on(&state, &job), vec!["e1"]);
    let _ = register(&mut state, "e2", 4, 100);

    // The launch RPC to e1 got no answer: the scheduler loses e1 with the
    // task it had just placed there, which may have started.
    let _ = state.executor_lost(
        &ExecutorId::new("e1"),
        "its control service could not be reached to launch tasks",
    );
    assert!(state.executors.get(&ExecutorId::new("e1")).is_none());
    let graph = state.jobs[&job].graph.as_ref().unwrap();
    let stage = graph.stages().find(|s| s.id == StageId(1)).unwrap();
    let failures = &stage.attempt_failures[0];
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].attempt, 0);
    assert_eq!(failures[0].executor.as_str(), "e1");
    assert_eq!(
        failures[0].error.kind,
        proto::ErrorKind::ExecutorLost as i32
    );
    assert_eq!(stage.failures[0], 1, "the lost attempt counts");
    // The retry runs elsewhere under a new attempt; the first copy's
    // report is stale.
    assert_eq!(graph.current_attempt(StageId(1), 0, 0), None);
    assert_eq!(
        graph
            .current_attempt(StageId(1), 0, 1)
            .map(|e| e.to_string()),
        Some("e2".to_string())
    );

    // The lost executor was only slow: its success of the given-up
    // attempt arrives, with output on itself at an address the
    // scheduler no longer knows. It is stale, and the job goes on.
    let late = status(
        &job,
        0,
        0,
        "e1",
        proto::task_status::Result::Succeeded(proto::TaskSuccess {
            locations: vec![proto::ShuffleLocation {
                job_id: job.to_string(),
                stage_id: 1,
                map_partition: 0,
                output_partition: 0,
                attempt: 0,
                executor_id: "e1".into(),
                host: "127.0.0.1".into(),
                port: 1,
                path: format!("{job}/s1/m0-a0-p0.arrow"),
                stats: None,
                durable: false,
                ticket: Default::default(),
            }],
            metrics: None,
        }),
    );
    let _ = state.task_statuses(&ExecutorId::new("e1"), vec![late]);
    assert!(
        matches!(state.jobs[&job].phase, JobPhase::Running),
        "{:?}",
        state.jobs[&job].phase
    );
    let graph = state.jobs[&job].graph.as_ref().unwrap();
    assert!(graph.failure().is_none());
    assert_eq!(
        graph
            .current_attempt(StageId(1), 0, 1)
            .map(|e| e.to_string()),
        Some("e2".to_string()),
        "the retry still runs"
    );
}
