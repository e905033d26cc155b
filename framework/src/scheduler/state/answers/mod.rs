//! What the answer to an executor's status report carries: its next tasks
//! and the job data it may free.
//!
//! At scale the scheduler's cost is per call, not per task: a launch call, a
//! status report and a cleanup call per task made three. An executor that
//! numbers its reports (`report_seq`) takes its next tasks and its cleanups
//! in the answer to its report instead. Its report waits for the next
//! placement round (one round serves every report since the last, as
//! before), which fills the slots the report freed; the tasks placed on the
//! reporting executor go back in the answer, the rest by `LaunchTasks` as
//! before. Cleanups that are not urgent (stage outputs no consumer will
//! read, a finished job's data) of an executor that numbers its reports
//! wait here for its next answer or launch call (when it registered with
//! `cleanups_in_launches`), or are sent by call once [`CLEANUP_DELAY`] has
//! passed without either. An executor gets new work only by one of those,
//! which then also carries what it may free: the wait costs an idle
//! executor little.
//!
//! An answer lost on the way (the connection broke) must not lose its
//! tasks: the executor sends the same report again under the same number,
//! and gets the same answer, kept here, without its statuses being applied
//! twice.
//!
//! An executor with free slots on a report stream keeps a report *held*
//! (`hold`): a round answers it only with work (tasks, data to free), so
//! that an idle executor gets its tasks in an answer too, not by a launch
//! call. Its next report may come before the held one is answered (a task
//! ended); the held one is then answered with nothing. Two reports can so
//! be unanswered when a stream breaks, and both answers are kept: the
//! executor sends both again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Cleanup, Effects, SchedulerState, TaskLaunch};
use crate::ids::{ExecutorId, JobId, StageId};
use crate::proto;

/// How long a cleanup waits for its executor's next report or launch call
/// before it is sent by a call of its own. A busy executor of a large
/// cluster reports a few times a second: a shorter wait sends most
/// cleanups by call just before the report that would have carried them.
pub const CLEANUP_DELAY: Duration = Duration::from_secs(1);

/// An answer to a status report, shared with the copy kept for a retry.
pub type ReportAnswer = Arc<KeptAnswer>;

/// The tasks and cleanups a report is answered with. The tasks' plans are
/// encoded by the report's handler, outside the scheduler's lock (a round
/// may answer hundreds of reports), once: a retry sends the same bytes.
#[derive(Debug)]
pub struct KeptAnswer {
    tasks: Vec<TaskLaunch>,
    cleanups: Vec<proto::JobCleanup>,
    encoded: OnceLock<EncodedAnswer>,
}

/// An answer as sent, and the tasks whose plans could not be encoded.
#[derive(Debug)]
struct EncodedAnswer {
    response: proto::UpdateTaskStatusResponse,
    unencodable: Vec<(proto::TaskId, proto::ErrorInfo)>,
}

impl KeptAnswer {
    /// The answer as sent. The first call encodes it and also returns the
    /// tasks whose plans could not be encoded (they must fail, once); later
    /// calls return only the answer.
    pub fn encode(
        &self,
    ) -> (
        proto::UpdateTaskStatusResponse,
        Vec<(proto::TaskId, proto::ErrorInfo)>,
    ) {
        let mut first = false;
        let encoded = self.encoded.get_or_init(|| {
            first = true;
            let mut launches = Vec::with_capacity(self.tasks.len());
            let mut unencodable = Vec::new();
            for task in &self.tasks {
                match task.clone().into_definition() {
                    Ok(definition) => launches.push(definition),
                    Err(error) => unencodable.extend(
                        task.definition
                            .task
                            .clone()
                            .map(|id| (id, error.to_proto())),
                    ),
                }
            }
            EncodedAnswer {
                response: proto::UpdateTaskStatusResponse {
                    launches,
                    cleanups: self.cleanups.clone(),
                },
                unencodable,
            }
        });
        let unencodable = if first {
            encoded.unencodable.clone()
        } else {
            Vec::new()
        };
        (encoded.response.clone(), unencodable)
    }
}

/// How a numbered report starts.
#[derive(Debug)]
pub enum ReportStart {
    /// A new report: apply it, run placement, then wait for the answer on
    /// the receiver.
    New(ReportWaiter),
    /// A copy of a report that still waits (its sender gave up on it): it
    /// waits for the answer instead of the first, which is answered with
    /// nothing. Its statuses are applied already.
    Copy(ReportWaiter),
    /// The report was answered already (that answer was lost on the way):
    /// send this again, and apply nothing.
    Repeated(ReportAnswer),
    /// An older report than the last one (a delayed copy): answer it with
    /// nothing and apply nothing.
    Stale,
}

/// A report waiting for its answer.
#[derive(Debug)]
pub struct ReportWaiter {
    /// Where the answer comes.
    pub answer: oneshot::Receiver<ReportAnswer>,
    /// Names this wait, to [`abandon_report`](SchedulerState::abandon_report).
    pub token: u64,
    /// The report is held: only work answers it.
    pub hold: bool,
}

/// A report waiting for the next placement round.
#[derive(Debug)]
struct WaitingReport {
    token: u64,
    answer: oneshot::Sender<ReportAnswer>,
}

/// An executor's last report numbers and their answers once given.
#[derive(Debug)]
struct ReportHistory {
    seq: u64,
    answer: Option<ReportAnswer>,
    /// The report before, when it was answered: it may have been held, and
    /// its answer lost with the stream after the last report was sent.
    previous: Option<(u64, ReportAnswer)>,
}

/// The data a job may free on one executor, waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PendingRelease {
    /// These stages' outputs (in memory).
    Stages(BTreeSet<StageId>),
    /// All of the job's data.
    Job,
}

#[derive(Debug, Default)]
struct PendingCleanups {
    since: Option<Instant>,
    jobs: BTreeMap<JobId, PendingRelease>,
}

/// Executors' report answers and undelivered cleanups.
#[derive(Debug, Default)]
pub(super) struct ReportAnswers {
    /// Reports waiting for the next placement round.
    waiting: HashMap<ExecutorId, WaitingReport>,
    /// Those of them not held: every round answers them.
    unheld: HashSet<ExecutorId>,
    next_token: u64,
    /// Executors that take tasks and cleanups in their answers.
    answered_executors: HashSet<ExecutorId>,
    /// Executors that take cleanups in launch calls.
    launch_cleanup_executors: HashSet<ExecutorId>,
    /// The last report numbers of each, and their answers once given.
    last: HashMap<ExecutorId, ReportHistory>,
    cleanups: HashMap<ExecutorId, PendingCleanups>,
}

impl ReportAnswers {
    /// Drops what is kept for an executor; returns the job removals still
    /// queued for it.
    fn forget(&mut self, executor_id: &ExecutorId) -> Vec<JobId> {
        self.take_waiting(executor_id);
        self.answered_executors.remove(executor_id);
        self.launch_cleanup_executors.remove(executor_id);
        self.last.remove(executor_id);
        self.cleanups
            .remove(executor_id)
            .map(|pending| {
                pending
                    .jobs
                    .into_iter()
                    .filter(|(_, release)| *release == PendingRelease::Job)
                    .map(|(job_id, _)| job_id)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether a report of `executor_id` waits for the next placement round.
    pub(super) fn is_waiting(&self, executor_id: &ExecutorId) -> bool {
        self.waiting.contains_key(executor_id)
    }

    fn wait(&mut self, executor_id: &ExecutorId, hold: bool) -> ReportWaiter {
        let (tx, answer) = oneshot::channel();
        self.next_token += 1;
        let token = self.next_token;
        if hold {
            self.unheld.remove(executor_id);
        } else {
            self.unheld.insert(executor_id.clone());
        }
        self.waiting
            .insert(executor_id.clone(), WaitingReport { token, answer: tx });
        ReportWaiter {
            answer,
            token,
            hold,
        }
    }

    /// The waiting report of `executor_id`, no longer waiting.
    fn take_waiting(&mut self, executor_id: &ExecutorId) -> Option<WaitingReport> {
        self.unheld.remove(executor_id);
        self.waiting.remove(executor_id)
    }

    /// Answers the waiting report of `executor_id` with `tasks` and its
    /// queued cleanups, and keeps the answer for a retry.
    fn answer(&mut self, executor_id: &ExecutorId, waiting: WaitingReport, tasks: Vec<TaskLaunch>) {
        let cleanups = self.take_cleanups(executor_id);
        self.send_answer(executor_id, waiting, tasks, cleanups);
    }

    /// Answers `waiting` with `tasks` and `cleanups`, and keeps the answer
    /// for a retry.
    fn send_answer(
        &mut self,
        executor_id: &ExecutorId,
        waiting: WaitingReport,
        tasks: Vec<TaskLaunch>,
        cleanups: Vec<proto::JobCleanup>,
    ) {
        let answer = Arc::new(KeptAnswer {
            tasks,
            cleanups,
            encoded: OnceLock::new(),
        });
        if let Some(history) = self.last.get_mut(executor_id) {
            history.answer = Some(Arc::clone(&answer));
        }
        // A report whose call or stream has ended is answered when its
        // executor sends it again (it saw no answer): the answer is kept.
        let _ = waiting.answer.send(answer);
    }

    fn queue(&mut self, executor_id: ExecutorId, job_id: JobId, stages: &[StageId]) {
        let pending = self.cleanups.entry(executor_id).or_default();
        pending.since.get_or_insert_with(Instant::now);
        let release = pending
            .jobs
            .entry(job_id)
            .or_insert_with(|| PendingRelease::Stages(BTreeSet::new()));
        match (release, stages.is_empty()) {
            (release, true) => *release = PendingRelease::Job,
            (PendingRelease::Stages(queued), false) => queued.extend(stages.iter().copied()),
            // The whole job goes already.
            (PendingRelease::Job, false) => {}
        }
    }

    fn take_cleanups(&mut self, executor_id: &ExecutorId) -> Vec<proto::JobCleanup> {
        let Some(pending) = self.cleanups.remove(executor_id) else {
            return Vec::new();
        };
        pending
            .jobs
            .into_iter()
            .map(|(job_id, release)| match release {
                PendingRelease::Job => proto::JobCleanup {
                    job_id: job_id.to_string(),
                    remove_job: true,
                    release_stages: Vec::new(),
                },
                PendingRelease::Stages(stages) => proto::JobCleanup {
                    job_id: job_id.to_string(),
                    remove_job: false,
                    release_stages: stages.into_iter().map(|s| s.0).collect(),
                },
            })
            .collect()
    }
}

impl SchedulerState {
    /// Starts handling report `seq` of `executor_id`, which takes tasks and
    /// cleanups in its answer (a report numbered again after its answer was
    /// lost gets that answer again). A new report
    /// must then be applied and placement run
    /// ([`schedule`](Self::schedule)), which answers it.
    ///
    /// A `hold` report (from a report stream) is answered only with work
    /// (or when its wait runs out); the executor's next report answers it
    /// with nothing.
    pub fn begin_report(&mut self, executor_id: &ExecutorId, seq: u64, hold: bool) -> ReportStart {
        let answers = &mut self.answers;
        let previous = match answers.last.get(executor_id) {
            Some(history) if seq == history.seq => {
                return match &history.answer {
                    Some(answer) => ReportStart::Repeated(Arc::clone(answer)),
                    None => ReportStart::Copy(answers.wait(executor_id, hold)),
                };
            }
            Some(ReportHistory {
                previous: Some((previous, answer)),
                ..
            }) if seq == *previous => return ReportStart::Repeated(Arc::clone(answer)),
            Some(history) if seq < history.seq => return ReportStart::Stale,
            Some(_) => {
                // The last report still waits (it was held): this one
                // answers it, with nothing.
                // Its cleanups stay queued for the next answer.
                if let Some(waiting) = answers.take_waiting(executor_id) {
                    answers.send_answer(executor_id, waiting, Vec::new(), Vec::new());
                }
                let history = &answers.last[executor_id];
                history
                    .answer
                    .as_ref()
                    .map(|answer| (history.seq, Arc::clone(answer)))
            }
            None => None,
        };
        answers.answered_executors.insert(executor_id.clone());
        answers.last.insert(
            executor_id.clone(),
            ReportHistory {
                seq,
                answer: None,
                previous,
            },
        );
        ReportStart::New(answers.wait(executor_id, hold))
    }

    /// A report that stopped waiting (its time ran out). Returns false when
    /// a round has answered it meanwhile: that answer is on its receiver
    /// and must be sent. A later wait of the same executor (a copy, a newer
    /// report) is left alone.
    pub fn abandon_report(&mut self, executor_id: &ExecutorId, token: u64) -> bool {
        match self.answers.waiting.get(executor_id) {
            Some(waiting) if waiting.token == token => {
                self.answers.take_waiting(executor_id);
                true
            }
            _ => false,
        }
    }

    /// Answers the waiting reports with the tasks of this round placed on
    /// their executors (taken out of `effects`) and their cleanups; the
    /// answer is kept for a retry should it be lost. A held report without
    /// either keeps waiting.
    pub(super) fn answer_waiting_reports(&mut self, effects: &mut Effects) {
        if self.answers.waiting.is_empty() {
            return;
        }
        // The reports whose executors got tasks this round, then every
        // report not held, and the held ones with cleanups. Held reports
        // without work (a thousand idle executors) are not visited.
        let answers = &mut self.answers;
        let mut calls = Vec::with_capacity(effects.launches.len());
        for launch in std::mem::take(&mut effects.launches) {
            match answers.take_waiting(&launch.executor_id) {
                Some(waiting) => answers.answer(&launch.executor_id, waiting, launch.tasks),
                None => calls.push(launch),
            }
        }
        effects.launches = calls;
        let mut due: Vec<ExecutorId> = answers.unheld.drain().collect();
        due.extend(
            answers
                .cleanups
                .keys()
                .filter(|id| answers.waiting.contains_key(*id))
                .cloned(),
        );
        for executor_id in due {
            if let Some(waiting) = answers.take_waiting(&executor_id) {
                answers.answer(&executor_id, waiting, Vec::new());
            }
        }
    }

    /// Keeps the cleanups that can wait for their executors' next answers
    /// (data to free on executors that take cleanups in answers) and
    /// returns the rest, to be sent now.
    pub fn defer_cleanups(&mut self, cleanups: Vec<Cleanup>) -> Vec<Cleanup> {
        let mut now = Vec::new();
        for cleanup in cleanups {
            let can_wait = !cleanup.cancel
                && cleanup.remove_data
                && self
                    .answers
                    .answered_executors
                    .contains(&cleanup.executor_id);
            if can_wait {
                self.answers
                    .queue(cleanup.executor_id, cleanup.job_id, &cleanup.stages);
            } else {
                now.push(cleanup);
            }
        }
        now
    }

    /// `executor_id` registered saying it applies the cleanups a launch
    /// call carries.
    pub fn takes_cleanups_in_launches(&mut self, executor_id: &ExecutorId) {
        self.answers
            .launch_cleanup_executors
            .insert(executor_id.clone());
    }

    /// Gives the launch calls of a round the cleanups waiting for their
    /// executors, where those executors take them.
    pub(super) fn add_cleanups_to_launches(&mut self, effects: &mut Effects) {
        for launch in &mut effects.launches {
            if self
                .answers
                .launch_cleanup_executors
                .contains(&launch.executor_id)
            {
                launch.cleanups = self.answers.take_cleanups(&launch.executor_id);
            }
        }
    }

    /// Cleanups that have waited [`CLEANUP_DELAY`] without an answer to
    /// carry them, to be sent by call.
    pub fn overdue_cleanups(&mut self) -> Vec<Cleanup> {
        let due: Vec<ExecutorId> = self
            .answers
            .cleanups
            .iter()
            .filter(|(_, p)| p.since.is_some_and(|t| t.elapsed() >= CLEANUP_DELAY))
            .map(|(id, _)| id.clone())
            .collect();
        let mut cleanups = Vec::new();
        for executor_id in due {
            // A held report takes them (a round would have answered it
            // with them; none has run since they were queued).
            if let Some(waiting) = self.answers.take_waiting(&executor_id) {
                self.answers.answer(&executor_id, waiting, Vec::new());
                continue;
            }
            let Some(pending) = self.answers.cleanups.remove(&executor_id) else {
                continue;
            };
            let Some(entry) = self.executors.get(&executor_id) else {
                continue;
            };
            for (job_id, release) in pending.jobs {
                cleanups.push(Cleanup {
                    executor_id: executor_id.clone(),
                    client: entry.client.clone(),
                    job_id,
                    cancel: false,
                    remove_data: true,
                    stages: match release {
                        PendingRelease::Job => Vec::new(),
                        PendingRelease::Stages(stages) => stages.into_iter().collect(),
                    },
                });
            }
        }
        cleanups
    }

    /// Drops what is kept for an executor the scheduler forgets (a report
    /// of it still waiting is answered with nothing). The job removals
    /// queued for it are returned, to be sent now: data it wrote to
    /// storage it does not own outlives it.
    pub(super) fn forget_answers(&mut self, executor_id: &ExecutorId) -> Vec<JobId> {
        self.answers.forget(executor_id)
    }
}

#[cfg(test)]
mod tests;
