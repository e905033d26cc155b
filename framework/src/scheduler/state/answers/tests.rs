//! Tests of report answers: numbered, held and repeated reports, and the
//! cleanups they carry.

use super::super::tasks::tests::{placed_on, register, submit};
use super::*;
use crate::config::SchedulerSettings;
use crate::plugin::scheduling::FifoPolicy;

fn deferring() -> SchedulerState {
    SchedulerState::new(SchedulerSettings::default(), Arc::new(FifoPolicy)).deferring_placement()
}

/// A deferring state whose executor e1 (two slots) runs two of job
/// joba's three map tasks, and the round that placed them.
fn one_job_on_e1() -> (SchedulerState, ExecutorId, JobId, Effects) {
    let mut state = deferring();
    let _ = register(&mut state, "e1", 2, 100);
    let job = submit(&mut state, "joba");
    let first = state.place_tasks();
    (state, ExecutorId::new("e1"), job, first)
}

fn done(job: &JobId, partition: u32, executor: &str) -> proto::TaskStatus {
    proto::TaskStatus {
        task: Some(proto::TaskId {
            job_id: job.to_string(),
            stage_id: 1,
            partition,
            attempt: 0,
        }),
        executor_id: executor.into(),
        result: Some(proto::task_status::Result::Succeeded(proto::TaskSuccess {
            locations: Vec::new(),
            metrics: None,
        })),
        started_at_ms: 0,
        ended_at_ms: 0,
    }
}

fn new_report(
    state: &mut SchedulerState,
    executor: &ExecutorId,
    seq: u64,
) -> oneshot::Receiver<ReportAnswer> {
    match state.begin_report(executor, seq, false) {
        ReportStart::New(waiter) => waiter.answer,
        other => panic!("report {seq} should be new, got {other:?}"),
    }
}

/// `round` made no launch call (its tasks went in answers).
fn assert_no_launch_calls(round: &Effects, why: &str) {
    let called: Vec<&ExecutorId> = round.launches.iter().map(|l| &l.executor_id).collect();
    assert!(called.is_empty(), "{why}, not by a call to {called:?}");
}

fn launched(answer: &KeptAnswer) -> Vec<u32> {
    let (sent, unencodable) = answer.encode();
    assert!(unencodable.is_empty());
    sent.launches
        .iter()
        .map(|t| t.task.as_ref().unwrap().partition)
        .collect()
}

#[tokio::test]
async fn a_numbered_report_is_answered_with_the_tasks_placed_on_its_executor() {
    let (mut state, e1, job, first) = one_job_on_e1();
    assert_eq!(first.launches.len(), 1, "no report waits: launched by call");

    let mut answer = new_report(&mut state, &e1, 1);
    let effects = state.task_statuses(&e1, vec![done(&job, 0, "e1")]);
    assert!(effects.launches.is_empty());
    let round = state.place_tasks();
    assert_no_launch_calls(&round, "the task for e1 goes in its answer");
    let answer = answer.try_recv().expect("the round answers the report");
    assert_eq!(launched(&answer), vec![2]);
    assert!(
        !answer.encode().0.launches[0].plan.is_empty(),
        "the plan is encoded"
    );
    assert_eq!(placed_on(&state, &job), vec!["e1", "e1"]);

    // The same report again (its answer was lost): the same answer,
    // nothing applied twice.
    match state.begin_report(&e1, 1, false) {
        ReportStart::Repeated(again) => assert!(Arc::ptr_eq(&again, &answer)),
        other => panic!("expected the kept answer, got {other:?}"),
    }
    // An older report than the last: nothing.
    let _waiting = new_report(&mut state, &e1, 3);
    assert!(matches!(
        state.begin_report(&e1, 2, false),
        ReportStart::Stale
    ));
}

fn held_report(
    state: &mut SchedulerState,
    executor: &ExecutorId,
    seq: u64,
) -> oneshot::Receiver<ReportAnswer> {
    match state.begin_report(executor, seq, true) {
        ReportStart::New(waiter) => {
            assert!(waiter.hold);
            waiter.answer
        }
        other => panic!("report {seq} should be new, got {other:?}"),
    }
}

#[tokio::test]
async fn a_held_report_waits_for_work_and_the_next_report_answers_it_with_nothing() {
    let mut state = deferring();
    let e1 = ExecutorId::new("e1");
    let _ = register(&mut state, "e1", 2, 100);
    // An idle executor holds a report: rounds without work for it
    // leave it waiting.
    let mut answer = held_report(&mut state, &e1, 1);
    let _ = state.place_tasks();
    assert!(answer.try_recv().is_err(), "no work: still held");

    // A job arrives: its tasks come in the held report's answer, not
    // by a launch call.
    let job = submit(&mut state, "joba");
    let round = state.place_tasks();
    assert_no_launch_calls(&round, "the tasks go in e1's held answer");
    let first = answer.try_recv().expect("work answers the held report");
    assert_eq!(launched(&first), vec![0, 1]);
    assert_eq!(placed_on(&state, &job), vec!["e1", "e1"]);

    // A task ends while report 2 is held (no slot free for the third
    // task: nothing to give it). Report 3 answers report 2 with
    // nothing at once, and is answered by the round with the task.
    let mut second = held_report(&mut state, &e1, 2);
    let _ = state.place_tasks();
    assert!(second.try_recv().is_err(), "still held");
    let mut third = held_report(&mut state, &e1, 3);
    let empty = second.try_recv().expect("the next report answers it");
    assert!(launched(&empty).is_empty());
    let _ = state.task_statuses(&e1, vec![done(&job, 0, "e1")]);
    let round = state.place_tasks();
    assert_no_launch_calls(&round, "the last task goes in e1's answer");
    let third = third.try_recv().expect("answered with work");
    assert_eq!(launched(&third), vec![2]);

    // The stream broke with reports 2 and 3 unanswered on the
    // executor's side: both are sent again and get their answers.
    match state.begin_report(&e1, 2, true) {
        ReportStart::Repeated(again) => assert!(Arc::ptr_eq(&again, &empty)),
        other => panic!("expected report 2's answer, got {other:?}"),
    }
    match state.begin_report(&e1, 3, true) {
        ReportStart::Repeated(again) => assert!(Arc::ptr_eq(&again, &third)),
        other => panic!("expected report 3's answer, got {other:?}"),
    }
    assert!(matches!(
        state.begin_report(&e1, 1, true),
        ReportStart::Stale
    ));
}

#[tokio::test]
async fn a_held_report_is_answered_with_its_executors_cleanups() {
    let mut state = deferring();
    let e1 = ExecutorId::new("e1");
    let _ = register(&mut state, "e1", 2, 100);
    let ended = JobId::parse("ended").unwrap();
    let release = |state: &SchedulerState| Cleanup {
        executor_id: e1.clone(),
        client: state.executors.get(&e1).unwrap().client.clone(),
        job_id: ended.clone(),
        cancel: false,
        remove_data: true,
        stages: Vec::new(),
    };
    let expected = vec![proto::JobCleanup {
        job_id: ended.to_string(),
        remove_job: true,
        release_stages: vec![],
    }];
    // Queued while a report is held: the next round answers with it.
    let mut answer = held_report(&mut state, &e1, 1);
    assert!(state.defer_cleanups(vec![release(&state)]).is_empty());
    let _ = state.place_tasks();
    let answer = answer.try_recv().expect("answered with the cleanup");
    assert_eq!(answer.encode().0.cleanups, expected);

    // Queued with no round to follow: once overdue it goes in the held
    // report's answer, not by a call.
    let mut answer = held_report(&mut state, &e1, 2);
    let _ = state.place_tasks();
    assert!(state.defer_cleanups(vec![release(&state)]).is_empty());
    std::thread::sleep(CLEANUP_DELAY + Duration::from_millis(20));
    assert!(state.overdue_cleanups().is_empty(), "no call");
    let answer = answer.try_recv().expect("answered with the cleanup");
    assert_eq!(answer.encode().0.cleanups, expected);
}

#[tokio::test]
async fn a_waiting_report_is_offered_its_freed_slot_before_an_idle_executor() {
    let (mut state, e1, job, _) = one_job_on_e1();
    // e0 joins idle, with more free slots than e1 will have and the
    // lower id: offered together, the policy would pick e0 (most free
    // slots first) and e1's report would be answered with nothing.
    let _ = register(&mut state, "e0", 2, 100);
    let mut answer = new_report(&mut state, &e1, 1);
    let _ = state.task_statuses(&e1, vec![done(&job, 0, "e1")]);
    let round = state.place_tasks();
    assert_no_launch_calls(&round, "the last task goes in e1's answer");
    let answer = answer.try_recv().expect("the round answers the report");
    assert_eq!(launched(&answer), vec![2]);
    assert_eq!(placed_on(&state, &job), vec!["e1", "e1"]);
}

#[tokio::test]
async fn an_answer_whose_call_ended_is_kept_for_the_retry() {
    let (mut state, e1, job, _) = one_job_on_e1();

    drop(new_report(&mut state, &e1, 1));
    let _ = state.task_statuses(&e1, vec![done(&job, 0, "e1")]);
    let round = state.place_tasks();
    assert!(round.launches.is_empty(), "not launched twice");
    match state.begin_report(&e1, 1, false) {
        ReportStart::Repeated(answer) => assert_eq!(launched(&answer), vec![2]),
        other => panic!("expected the kept answer, got {other:?}"),
    }

    // A copy of a report that still waits takes its place.
    let mut first = new_report(&mut state, &e1, 2);
    let mut copy = match state.begin_report(&e1, 2, false) {
        ReportStart::Copy(waiter) => waiter.answer,
        other => panic!("expected a copy, got {other:?}"),
    };
    let _ = state.place_tasks();
    assert!(first.try_recv().is_err());
    assert!(copy.try_recv().is_ok());

    // A wait that timed out removes only itself, not a newer one.
    let old = match state.begin_report(&e1, 3, false) {
        ReportStart::New(waiter) => waiter.token,
        other => panic!("expected a new report, got {other:?}"),
    };
    let newer = match state.begin_report(&e1, 3, false) {
        ReportStart::Copy(waiter) => waiter,
        other => panic!("expected a copy, got {other:?}"),
    };
    assert!(!state.abandon_report(&e1, old));
    assert!(state.abandon_report(&e1, newer.token));
}

#[tokio::test]
async fn a_launch_call_carries_the_cleanups_waiting_for_its_executor() {
    let mut state = deferring();
    let (e1, e2) = (ExecutorId::new("e1"), ExecutorId::new("e2"));
    let _ = register(&mut state, "e1", 2, 100);
    let _ = register(&mut state, "e2", 2, 100);
    // Both number their reports; only e1 registered saying it applies
    // cleanups that come with a launch.
    state.takes_cleanups_in_launches(&e1);
    let (_r1, _r2) = (
        new_report(&mut state, &e1, 1),
        new_report(&mut state, &e2, 1),
    );
    let _ = state.place_tasks();
    let ended = JobId::parse("ended").unwrap();
    let release = |state: &SchedulerState, executor: &ExecutorId| Cleanup {
        executor_id: executor.clone(),
        client: state.executors.get(executor).unwrap().client.clone(),
        job_id: ended.clone(),
        cancel: false,
        remove_data: true,
        stages: vec![StageId(1)],
    };
    let now = state.defer_cleanups(vec![release(&state, &e1), release(&state, &e2)]);
    assert!(now.is_empty(), "both wait for an answer");

    // A job arrives; no report waits, so its tasks go by call to both.
    let job = submit(&mut state, "joba");
    let round = state.place_tasks();
    let carried = |executor: &ExecutorId| -> Vec<proto::JobCleanup> {
        round
            .launches
            .iter()
            .find(|l| &l.executor_id == executor)
            .unwrap_or_else(|| panic!("a launch call to {executor}"))
            .cleanups
            .clone()
    };
    let expected = vec![proto::JobCleanup {
        job_id: "ended".into(),
        remove_job: false,
        release_stages: vec![1],
    }];
    assert_eq!(carried(&e1), expected);
    assert!(carried(&e2).is_empty(), "e2 did not say it takes them");
    assert!(state.answers.cleanups.contains_key(&e2));
    assert!(!state.answers.cleanups.contains_key(&e1), "given once");
    assert_eq!(placed_on(&state, &job).len(), 3);
}

#[tokio::test]
async fn cleanups_wait_for_an_answer_and_a_removal_covers_stage_releases() {
    let mut state = deferring();
    let (e1, e2) = (ExecutorId::new("e1"), ExecutorId::new("e2"));
    let _ = register(&mut state, "e1", 2, 100);
    let _ = register(&mut state, "e2", 2, 100);
    let job = submit(&mut state, "joba");
    let other = submit(&mut state, "jobb");
    // e1 numbers its reports; e2 has never reported.
    let mut answer = new_report(&mut state, &e1, 1);
    let cleanup =
        |state: &SchedulerState, executor: &ExecutorId, job: &JobId, stages: &[u32]| Cleanup {
            executor_id: executor.clone(),
            client: state.executors.get(executor).unwrap().client.clone(),
            job_id: job.clone(),
            cancel: false,
            remove_data: true,
            stages: stages.iter().copied().map(StageId).collect(),
        };
    let cancel = Cleanup {
        cancel: true,
        ..cleanup(&state, &e1, &other, &[])
    };
    let cleanups = vec![
        cleanup(&state, &e1, &job, &[1]),
        cleanup(&state, &e1, &job, &[]),
        cleanup(&state, &e1, &other, &[1]),
        cleanup(&state, &e1, &other, &[2]),
        cleanup(&state, &e2, &job, &[1]),
        cancel,
    ];
    let now = state.defer_cleanups(cleanups);
    let now: Vec<(String, bool)> = now
        .iter()
        .map(|c| (c.executor_id.to_string(), c.cancel))
        .collect();
    assert_eq!(now, vec![("e2".into(), false), ("e1".into(), true)]);

    let _ = state.place_tasks();
    let answer = answer.try_recv().unwrap();
    let mut cleanups = answer.encode().0.cleanups;
    cleanups.sort_by(|a, b| a.job_id.cmp(&b.job_id));
    assert_eq!(
        cleanups,
        vec![
            proto::JobCleanup {
                job_id: job.to_string(),
                remove_job: true,
                release_stages: vec![],
            },
            proto::JobCleanup {
                job_id: other.to_string(),
                remove_job: false,
                release_stages: vec![1, 2],
            },
        ]
    );

    // With no report to carry it, a cleanup goes by call once overdue.
    let _ = state.defer_cleanups(vec![cleanup(&state, &e1, &other, &[1])]);
    assert!(state.overdue_cleanups().is_empty());
    std::thread::sleep(CLEANUP_DELAY + Duration::from_millis(20));
    let overdue = state.overdue_cleanups();
    assert_eq!(overdue.len(), 1);
    assert_eq!(
        (overdue[0].job_id.clone(), overdue[0].stages.clone()),
        (other.clone(), vec![StageId(1)])
    );
    assert!(state.overdue_cleanups().is_empty(), "sent once");

    // An executor that leaves is handed the removals queued for it, to
    // apply before it goes: none is sent by call to its stopping service.
    let _ = state.defer_cleanups(vec![
        cleanup(&state, &e1, &job, &[]),
        cleanup(&state, &e1, &other, &[2]),
    ]);
    let (left, handed_over) = state.executor_left(&e1, "it drained", true);
    assert!(left.cleanups.is_empty(), "{:?}", left.cleanups);
    assert_eq!(handed_over, vec![job.clone()]);

    // One that is lost, or removed by an operator (it may well still run),
    // gets them by call.
    let sent = |effects: &Effects| -> Vec<(String, JobId, Vec<StageId>)> {
        effects
            .cleanups
            .iter()
            .map(|c| {
                (
                    c.executor_id.to_string(),
                    c.job_id.clone(),
                    c.stages.clone(),
                )
            })
            .collect()
    };
    let _ = register(&mut state, "e1", 1, 100);
    let _report = new_report(&mut state, &e1, 1);
    let _ = state.defer_cleanups(vec![cleanup(&state, &e1, &job, &[])]);
    let lost = state.executor_lost(&e1, "heartbeats stopped");
    assert_eq!(sent(&lost), vec![("e1".into(), job.clone(), vec![])]);
    let _ = register(&mut state, "e1", 1, 100);
    let _report = new_report(&mut state, &e1, 1);
    let _ = state.defer_cleanups(vec![cleanup(&state, &e1, &job, &[])]);
    let (removed, handed_over) = state.executor_left(&e1, "removed by an operator", false);
    assert!(handed_over.is_empty());
    assert_eq!(sent(&removed), vec![("e1".into(), job, vec![])]);
}

#[tokio::test]
async fn only_the_executor_a_task_was_given_to_can_refuse_it() {
    let mut state = deferring();
    let (e1, e2) = (ExecutorId::new("e1"), ExecutorId::new("e2"));
    let _ = register(&mut state, "e1", 1, 100);
    let _ = register(&mut state, "e2", 1, 100);
    let job = submit(&mut state, "joba");
    let round = state.place_tasks();
    let on_e1 = round
        .launches
        .iter()
        .find(|l| l.executor_id == e1)
        .and_then(|l| l.tasks[0].definition.task.clone())
        .unwrap();
    let _ = state.launch_refused(&e2, std::slice::from_ref(&on_e1));
    assert_eq!(placed_on(&state, &job), vec!["e1", "e2"]);
    assert!(!state.executors.get(&e2).unwrap().paused);

    let _ = state.launch_refused(&e1, &[on_e1]);
    assert_eq!(placed_on(&state, &job), vec!["e2"]);
    assert!(state.executors.get(&e1).unwrap().paused);
}
