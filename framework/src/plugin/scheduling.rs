//! Scheduling seam: which jobs run, and which runnable task goes to which
//! free executor slot.
//!
//! The scheduler calls [`TaskSchedulingPolicy::admit`] once per submitted job
//! and [`TaskSchedulingPolicy::assign`] whenever something changes (a job
//! became runnable, a task ended, an executor joined). `assign` sees every job
//! with runnable tasks and a group of executors with free slots, and returns
//! the assignments it wants; the scheduler launches them in the returned order
//! and ignores any that name a task or slot that is not available.
//!
//! The framework default, [`FifoPolicy`], serves jobs strictly in submission
//! order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Debug;

use crate::ids::{ExecutorId, JobId, StageId};

/// A job asking to be admitted.
#[derive(Debug, Clone)]
pub struct JobSubmission<'a> {
    /// The job.
    pub job_id: &'a JobId,
    /// Its session settings (pool, priority and the like live here).
    pub settings: &'a HashMap<String, String>,
    /// Its position in submission order (strictly increasing).
    pub submission_seq: u64,
    /// Jobs currently running (or being planned) on the cluster.
    pub running_jobs: usize,
    /// Every other job admitted or queued and not yet ended, so that a
    /// policy can count them per pool.
    pub others: &'a [ExistingJob<'a>],
}

/// A job that is queued or running, as admission sees it.
#[derive(Debug, Clone)]
pub struct ExistingJob<'a> {
    /// The job.
    pub job_id: &'a JobId,
    /// Its session settings.
    pub settings: &'a HashMap<String, String>,
    /// Its position in submission order.
    pub submission_seq: u64,
    /// Queued (waiting for admission) rather than running.
    pub queued: bool,
}

/// How a policy files a job, for job status and the executor listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobLabels {
    /// The pool the job is counted in (empty: the policy has no pools).
    pub pool: String,
    /// Its priority (0 when the policy has none).
    pub priority: i64,
}

/// What to do with a submitted job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Plan and run it now.
    Run,
    /// Keep it queued; the reason is shown in its status.
    Queue {
        /// Why the job waits.
        reason: String,
    },
    /// Refuse it; the reason is returned to the client.
    Reject {
        /// Why the job is refused.
        reason: String,
    },
}

/// A task that could start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PendingTask {
    /// Stage of the task.
    pub stage_id: StageId,
    /// Partition of the stage the task computes.
    pub partition: usize,
}

/// A job with tasks ready to run.
#[derive(Debug, Clone)]
pub struct SchedulableJob<'a> {
    /// The job.
    pub job_id: &'a JobId,
    /// Position in submission order (strictly increasing).
    pub submission_seq: u64,
    /// When it was submitted (ms since the epoch), e.g. for aging.
    pub submitted_at_ms: u64,
    /// Its session settings.
    pub settings: &'a HashMap<String, String>,
    /// Tasks of this job running now.
    pub running_tasks: usize,
    /// Tasks ready to start, earliest stage first, at most as many as the
    /// round has free slots (none could be placed beyond those). Empty for
    /// a running job that waits for its running tasks (listed so that a
    /// policy sees what every job occupies).
    pub pending_tasks: &'a [PendingTask],
    /// Admitted but still being planned (no tasks yet): listed so that a
    /// policy can keep later jobs from overtaking it.
    pub planning: bool,
}

/// Free capacity on one executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorSlots {
    /// The executor.
    pub executor_id: ExecutorId,
    /// Task slots free right now.
    pub free_slots: usize,
}

/// One decision: run this task on that executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskAssignment {
    /// The job of the task.
    pub job_id: JobId,
    /// The task.
    pub task: PendingTask,
    /// Where to run it.
    pub executor_id: ExecutorId,
}

/// Decides admission and task placement.
pub trait TaskSchedulingPolicy: Send + Sync + Debug {
    /// Short name, shown in logs and status.
    fn name(&self) -> &str;

    /// Admission of a newly submitted job. The default admits everything.
    fn admit(&self, _job: &JobSubmission<'_>) -> Admission {
        Admission::Run
    }

    /// The pool and priority the policy files a job under, from its
    /// settings; shown in job status and the executor listing. The default
    /// files every job nowhere.
    fn job_labels(&self, _settings: &HashMap<String, String>) -> JobLabels {
        JobLabels::default()
    }

    /// Chooses tasks for free slots. A placement round follows any event
    /// that may free a slot or make a task runnable (a status report, a
    /// heartbeat, a planned job), and the events that arrive while a round
    /// runs are served together by the next one, so `executors` may list
    /// many free slots at once.
    ///
    /// A round offers the free slots in groups, calling `assign` once per
    /// group that has work: first the executors whose status reports wait
    /// for the round (their tasks travel in the reports' answers instead of
    /// launch calls of their own, so with fewer tasks than free slots these
    /// executors get them), then the other executors whose memory can take
    /// a task of any job, then each executor that can take only some jobs,
    /// alone. Within a round, tasks placed by an earlier call count in
    /// `running_tasks` and are no longer in `pending_tasks`; a policy that
    /// keeps state across calls must not assume one call per round.
    fn assign(
        &self,
        jobs: &[SchedulableJob<'_>],
        executors: &[ExecutorSlots],
    ) -> Vec<TaskAssignment>;
}

/// How long a job still being planned holds back the jobs submitted after it
/// under submission-order policies: long enough for any ordinary plan, short
/// enough that one stuck planner (a hanging listing of remote files) does not
/// stop the cluster.
pub const PLANNING_HOLD_MS: u64 = 5_000;

impl SchedulableJob<'_> {
    /// Whether submission order requires holding back the jobs submitted
    /// after this one: it is still being planned, for less than
    /// [`PLANNING_HOLD_MS`] since its submission.
    pub fn holds_back_later_jobs(&self, now_ms: u64) -> bool {
        self.planning && now_ms.saturating_sub(self.submitted_at_ms) < PLANNING_HOLD_MS
    }
}

/// First in, first out: every runnable task of an earlier-submitted job is
/// placed before any task of a later one, and no task of a later job starts
/// while an earlier one is still being planned (up to [`PLANNING_HOLD_MS`]),
/// so jobs start in submission order even when a later one plans faster.
#[derive(Debug, Default)]
pub struct FifoPolicy;

impl TaskSchedulingPolicy for FifoPolicy {
    fn name(&self) -> &str {
        "fifo"
    }

    fn assign(
        &self,
        jobs: &[SchedulableJob<'_>],
        executors: &[ExecutorSlots],
    ) -> Vec<TaskAssignment> {
        let mut ordered: Vec<&SchedulableJob<'_>> = jobs.iter().collect();
        ordered.sort_by_key(|j| j.submission_seq);
        let queue = ordered
            .into_iter()
            .take_while(|job| !job.holds_back_later_jobs(crate::util::now_ms()))
            .flat_map(|job| job.pending_tasks.iter().map(move |t| (job.job_id, *t)));
        fill_slots(queue, executors)
    }
}

/// Places tasks, in the order given, on the executor with the most free
/// slots at each step, so that work spreads over the executors offered. A
/// building block for policies: decide the order, let this place it.
pub fn fill_slots<'a>(
    tasks: impl IntoIterator<Item = (&'a JobId, PendingTask)>,
    executors: &[ExecutorSlots],
) -> Vec<TaskAssignment> {
    // Most free slots first; ties go to the earliest listed executor. A
    // heap keeps each step logarithmic: with a thousand executors and
    // thousands of tasks, a scan per task would dominate the round.
    let mut free: BinaryHeap<(usize, Reverse<usize>)> = executors
        .iter()
        .enumerate()
        .filter(|(_, e)| e.free_slots > 0)
        .map(|(i, e)| (e.free_slots, Reverse(i)))
        .collect();
    let mut assignments = Vec::new();
    for (job_id, task) in tasks {
        let Some((slots, Reverse(index))) = free.pop() else {
            break;
        };
        if slots > 1 {
            free.push((slots - 1, Reverse(index)));
        }
        assignments.push(TaskAssignment {
            job_id: job_id.clone(),
            task,
            executor_id: executors[index].executor_id.clone(),
        });
    }
    assignments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks(stage: u32, n: usize) -> Vec<PendingTask> {
        (0..n)
            .map(|partition| PendingTask {
                stage_id: StageId(stage),
                partition,
            })
            .collect()
    }

    #[test]
    fn fill_slots_takes_the_most_free_executor_and_the_earliest_on_ties() {
        let job = JobId::generate();
        let slots = |id: &str, free_slots| ExecutorSlots {
            executor_id: ExecutorId::new(id),
            free_slots,
        };
        let executors = vec![
            slots("e1", 1),
            slots("e2", 3),
            slots("e3", 0),
            slots("e4", 3),
        ];
        let placed: Vec<String> =
            fill_slots(tasks(1, 9).into_iter().map(|t| (&job, t)), &executors)
                .into_iter()
                .map(|a| a.executor_id.to_string())
                .collect();
        // e2 and e4 tie at 3 (e2 is listed first), then at 2, then e1, e2
        // and e4 tie at 1; e3 has nothing free, and two tasks find no slot.
        assert_eq!(placed, ["e2", "e4", "e2", "e4", "e1", "e2", "e4"]);
    }

    #[test]
    fn fifo_serves_jobs_in_submission_order_and_spreads_over_executors() {
        let (a, b, c) = (JobId::generate(), JobId::generate(), JobId::generate());
        let settings = HashMap::new();
        let (ta, tb, tc) = (tasks(1, 2), tasks(1, 2), tasks(1, 2));
        // Listed out of order on purpose: the policy must sort by submission.
        let jobs = vec![
            SchedulableJob {
                job_id: &c,
                submission_seq: 3,
                submitted_at_ms: 0,
                settings: &settings,
                running_tasks: 0,
                pending_tasks: &tc,
                planning: false,
            },
            SchedulableJob {
                job_id: &a,
                submission_seq: 1,
                submitted_at_ms: 0,
                settings: &settings,
                running_tasks: 0,
                pending_tasks: &ta,
                planning: false,
            },
            SchedulableJob {
                job_id: &b,
                submission_seq: 2,
                submitted_at_ms: 0,
                settings: &settings,
                running_tasks: 0,
                pending_tasks: &tb,
                planning: false,
            },
        ];
        let executors = vec![
            ExecutorSlots {
                executor_id: ExecutorId::new("e1"),
                free_slots: 2,
            },
            ExecutorSlots {
                executor_id: ExecutorId::new("e2"),
                free_slots: 3,
            },
        ];
        let out = FifoPolicy.assign(&jobs, &executors);
        let order: Vec<&JobId> = out.iter().map(|a| &a.job_id).collect();
        assert_eq!(order, vec![&a, &a, &b, &b, &c]);
        let on_e1 = out
            .iter()
            .filter(|a| a.executor_id.as_str() == "e1")
            .count();
        assert_eq!((on_e1, out.len() - on_e1), (2, 3));

        // A job still being planned holds back the jobs submitted after it.
        let planning = SchedulableJob {
            job_id: &a,
            submission_seq: 1,
            submitted_at_ms: crate::util::now_ms(),
            settings: &settings,
            running_tasks: 0,
            pending_tasks: &[],
            planning: true,
        };
        let jobs = vec![jobs[0].clone(), planning.clone(), jobs[2].clone()];
        assert!(FifoPolicy.assign(&jobs, &executors).is_empty());
        // ... but not for longer than PLANNING_HOLD_MS.
        let stuck = SchedulableJob {
            submitted_at_ms: crate::util::now_ms() - PLANNING_HOLD_MS - 1,
            ..planning
        };
        let jobs = vec![jobs[0].clone(), stuck, jobs[2].clone()];
        assert_eq!(FifoPolicy.assign(&jobs, &executors).len(), 4);
    }
}
