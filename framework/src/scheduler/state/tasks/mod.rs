//! Task placement and task status reports.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Cleanup, Effects, JobPhase, Launch, SchedulerState, TaskLaunch};
use crate::error::{BallistaError, Result};
use crate::flight::sign_ticket;
use crate::ids::{ExecutorId, JobId, StageId};
use crate::plugin::scheduling::{ExecutorSlots, PendingTask, SchedulableJob};
use crate::plugin::shuffle::{ExecutorAddress, ShuffleLocation};
use crate::proto;
use crate::scheduler::executors::TaskKey;
use crate::scheduler::job_graph::TaskOutcome;

/// Tasks given a slot earlier in a placement round, by job.
type TakenTasks = HashMap<JobId, HashSet<PendingTask>>;

/// Ignored statuses of one report that are logged one by one.
const IGNORED_STATUSES_LOGGED: usize = 3;

impl SchedulerState {
    /// Something may have let tasks run: places them now, or, when
    /// placement is deferred, asks the caller to.
    pub fn schedule(&mut self) -> Effects {
        if self.defer_placement {
            return Effects {
                place_tasks: true,
                ..Effects::default()
            };
        }
        self.place_tasks()
    }

    /// Asks the policy to fill free slots and prepares the launches; the
    /// tasks placed on executors whose status reports wait go in the
    /// answers to those reports, and launch calls carry the cleanups
    /// waiting for their executors.
    pub fn place_tasks(&mut self) -> Effects {
        let mut effects = self.fill_free_slots();
        self.answer_waiting_reports(&mut effects);
        self.add_cleanups_to_launches(&mut effects);
        effects
    }

    fn fill_free_slots(&mut self) -> Effects {
        let free = self.executors.free_slots();
        if free.is_empty() {
            return Effects::default();
        }
        self.open_early_stages_on_idle_slots();
        let free_total: usize = free.iter().map(|s| s.free_slots).sum();
        struct Candidate {
            job_id: JobId,
            seq: u64,
            submitted_ms: u64,
            settings: Arc<HashMap<String, String>>,
            running: usize,
            pending: Vec<PendingTask>,
            planning: bool,
        }
        impl Candidate {
            /// The job as a policy sees it; `placed` of its tasks were
            /// already given slots in this round and count as running.
            fn view<'a>(&'a self, pending: &'a [PendingTask], placed: usize) -> SchedulableJob<'a> {
                SchedulableJob {
                    job_id: &self.job_id,
                    submission_seq: self.seq,
                    submitted_at_ms: self.submitted_ms,
                    settings: &self.settings,
                    running_tasks: self.running + placed,
                    pending_tasks: pending,
                    planning: self.planning,
                }
            }
        }
        let candidates: Vec<Candidate> = self
            .jobs
            .iter()
            .filter_map(|(id, j)| {
                let (running, pending, planning) = match (&j.phase, &j.graph) {
                    (JobPhase::Running, Some(graph)) => {
                        let pending = graph.first_pending_tasks(free_total);
                        (graph.running_task_count(), pending, false)
                    }
                    (JobPhase::Planning, _) => (0, Vec::new(), true),
                    _ => return None,
                };
                Some(Candidate {
                    job_id: id.clone(),
                    seq: j.seq,
                    submitted_ms: j.submitted_ms,
                    settings: Arc::clone(&j.settings),
                    running,
                    pending,
                    planning,
                })
            })
            .collect();
        // Jobs that only wait for their running tasks are listed too: a
        // policy weighing pools needs what every job occupies.
        if candidates.iter().all(|c| c.pending.is_empty()) {
            return Effects::default();
        }
        // Executors whose memory can take a task of every candidate job are
        // offered to the policy together; one that can hold only some jobs
        // (those already running there) is offered alone, with those jobs.
        let (open, limited): (Vec<ExecutorSlots>, Vec<ExecutorSlots>) =
            free.into_iter().partition(|slots| {
                self.executors.get(&slots.executor_id).is_some_and(|e| {
                    candidates
                        .iter()
                        .filter(|c| !c.pending.is_empty())
                        .all(|c| e.memory_can_hold(&c.job_id))
                })
            });
        // The jobs as offered for `held_by` (all executors that can hold
        // every job when `None`): a job it cannot hold, or a task already
        // taken, is listed without those pending tasks.
        let schedulable = |held_by: Option<&ExecutorId>, taken: &TakenTasks| {
            candidates
                .iter()
                .map(|c| {
                    let holdable = held_by.is_none_or(|id| {
                        self.executors
                            .get(id)
                            .is_some_and(|e| e.memory_can_hold(&c.job_id))
                    });
                    let pending: Vec<PendingTask> = if holdable {
                        match taken.get(&c.job_id) {
                            Some(taken) => c
                                .pending
                                .iter()
                                .filter(|t| !taken.contains(t))
                                .copied()
                                .collect(),
                            None => c.pending.clone(),
                        }
                    } else {
                        Vec::new()
                    };
                    (c, pending)
                })
                .collect::<Vec<_>>()
        };
        // Executors whose status reports wait for this round are offered
        // first. When there are fewer tasks than free slots, a task placed
        // there goes back in the answer, while one placed on an idle
        // executor needs a launch call of its own, and the reporting
        // executor, answered with nothing, would then need one later too.
        let (answering, idle): (Vec<ExecutorSlots>, Vec<ExecutorSlots>) = open
            .into_iter()
            .partition(|slots| self.answers.is_waiting(&slots.executor_id));
        let offers = [(None, answering), (None, idle)].into_iter().chain(
            limited
                .into_iter()
                .map(|slots| (Some(slots.executor_id.clone()), vec![slots])),
        );
        let mut taken = TakenTasks::new();
        let mut assignments = Vec::new();
        for (held_by, slots) in offers {
            if slots.is_empty() {
                continue;
            }
            let jobs = schedulable(held_by.as_ref(), &taken);
            if jobs.iter().all(|(_, pending)| pending.is_empty()) {
                continue;
            }
            let views: Vec<SchedulableJob<'_>> = jobs
                .iter()
                .map(|(c, p)| {
                    let placed = taken.get(&c.job_id).map_or(0, HashSet::len);
                    c.view(p, placed)
                })
                .collect();
            let more = self.policy.assign(&views, &slots);
            for a in &more {
                taken.entry(a.job_id.clone()).or_default().insert(a.task);
            }
            assignments.extend(more);
        }

        let mut by_executor: HashMap<ExecutorId, Vec<TaskLaunch>> = HashMap::new();
        let mut launched_jobs: HashSet<JobId> = HashSet::new();
        // A retry goes to another executor than the one it failed on, when
        // there is one: the fault may lie with that executor. The executors
        // to choose from are listed the first time a retry needs them.
        let mut active_ids: Option<Vec<ExecutorId>> = None;
        for mut assignment in assignments {
            let graph = self
                .jobs
                .get(&assignment.job_id)
                .and_then(|j| j.graph.as_ref());
            if let Some(graph) = graph
                && graph.blames(assignment.task, &assignment.executor_id)
                && let active = active_ids
                    .get_or_insert_with(|| {
                        self.executors
                            .all()
                            .filter(|e| !e.paused)
                            .map(|e| e.address.id.clone())
                            .collect()
                    })
                    .iter()
                    .collect::<Vec<&ExecutorId>>()
                && graph.should_avoid(assignment.task, &assignment.executor_id, &active)
            {
                // The policy does not know where a task failed: move the
                // retry to a free executor it has not failed on, or leave it
                // for a later round (heartbeats schedule again) until
                // RETRY_ELSEWHERE_MS have passed.
                // The one with the most free slots: in id order alone,
                // retries would pile onto the same executor.
                let elsewhere = active
                    .iter()
                    .filter_map(|id| {
                        let e = self.executors.get(id)?;
                        (!graph.blames(assignment.task, id)
                            && e.free_slots() > 0
                            && e.memory_can_hold(&assignment.job_id))
                        .then_some((e.free_slots(), *id))
                    })
                    .max_by_key(|(free, _)| *free)
                    .map(|(_, id)| id);
                let Some(elsewhere) = elsewhere else {
                    continue;
                };
                assignment.executor_id = (*elsewhere).clone();
            }
            let Some(executor) = self.executors.get_mut(&assignment.executor_id) else {
                continue;
            };
            if executor.paused
                || executor.free_slots() == 0
                || !executor.memory_can_hold(&assignment.job_id)
            {
                continue;
            }
            let new_here = !executor
                .running
                .iter()
                .any(|(job_id, ..)| *job_id == assignment.job_id);
            let Some(job) = self.jobs.get_mut(&assignment.job_id) else {
                continue;
            };
            let Some(graph) = job.graph.as_mut() else {
                continue;
            };
            let Ok((attempt, plan)) = graph.start_task(assignment.task, &assignment.executor_id)
            else {
                continue;
            };
            if new_here {
                executor
                    .jobs_placed_since_report
                    .insert(assignment.job_id.clone());
            }
            let task = assignment.task;
            executor.running.insert((
                assignment.job_id.clone(),
                task.stage_id,
                task.partition,
                attempt,
            ));
            job.data_on.insert(assignment.executor_id.clone());
            launched_jobs.insert(assignment.job_id.clone());
            by_executor
                .entry(assignment.executor_id)
                .or_default()
                .push(TaskLaunch {
                    definition: proto::TaskDefinition {
                        task: Some(proto::TaskId {
                            job_id: assignment.job_id.to_string(),
                            stage_id: task.stage_id.0,
                            partition: task.partition as u32,
                            attempt,
                        }),
                        plan: bytes::Bytes::new(),
                        settings: job.task_settings.clone(),
                        session_id: job.session_id.clone(),
                        own_reads: None,
                    },
                    plan,
                });
        }
        self.unpublished.extend(launched_jobs);
        self.publish_changed();
        let launches = by_executor
            .into_iter()
            .filter_map(|(executor_id, tasks)| {
                let client = self.executors.get(&executor_id)?.client.clone();
                self.metrics.task_launches.inc_by(tasks.len() as u64);
                Some(Launch {
                    executor_id,
                    client,
                    tasks,
                    cleanups: Vec::new(),
                })
            })
            .collect();
        Effects {
            launches,
            ..Effects::default()
        }
    }

    /// Slots are free: when no job has a task waiting for one, stages
    /// whose inputs are running their last tasks start on them
    /// ([`JobGraph::open_early_stages`](crate::scheduler::job_graph::JobGraph::open_early_stages)).
    fn open_early_stages_on_idle_slots(&mut self) {
        let running_graphs = || {
            self.jobs
                .values()
                .filter_map(|j| match (&j.phase, &j.graph) {
                    (JobPhase::Running, Some(graph)) => Some(graph),
                    _ => None,
                })
        };
        if running_graphs().any(|g| !g.first_pending_tasks(1).is_empty()) {
            return;
        }
        for job in self.jobs.values_mut() {
            if let (JobPhase::Running, Some(graph)) = (&job.phase, &mut job.graph) {
                graph.open_early_stages();
            }
        }
    }

    /// What a task that started early reads of the map outputs it awaits
    /// (see [`JobGraph::awaited_map_outputs`](crate::scheduler::job_graph::JobGraph::awaited_map_outputs)).
    pub fn awaited_map_outputs(
        &self,
        task: &crate::ids::TaskId,
        executor: &ExecutorId,
        map_stage: StageId,
        reader_partition: usize,
        awaited: &[u32],
    ) -> Result<Option<proto::AwaitMapOutputsResponse>> {
        let graph = match self.jobs.get(&task.job_id) {
            Some(job) => match (&job.phase, &job.graph) {
                (JobPhase::Running, Some(graph)) => graph,
                _ => {
                    return Err(BallistaError::Cancelled(format!(
                        "job {} is no longer running",
                        task.job_id
                    )));
                }
            },
            None => {
                return Err(BallistaError::Cancelled(format!(
                    "job {} is not known to the scheduler",
                    task.job_id
                )));
            }
        };
        graph.awaited_map_outputs(
            (task.stage_id, task.partition, task.attempt),
            executor,
            map_stage,
            reader_partition,
            awaited,
        )
    }

    /// Applies task status reports from an executor.
    pub fn task_statuses(
        &mut self,
        executor_id: &ExecutorId,
        statuses: Vec<proto::TaskStatus>,
    ) -> Effects {
        let mut effects = Effects::default();
        let mut ignored = 0usize;
        for status in statuses {
            match self.task_status(executor_id, status) {
                Ok(e) => effects.merge(e),
                Err(e) => {
                    ignored += 1;
                    // A report may hold thousands of statuses: a few lines
                    // say what was wrong, one more how many.
                    if ignored <= IGNORED_STATUSES_LOGGED {
                        tracing::warn!(
                            "ignoring task status from {executor_id}: {}",
                            crate::util::loggable_message(&e.to_string())
                        );
                    }
                }
            }
        }
        if ignored > IGNORED_STATUSES_LOGGED {
            tracing::warn!(
                "ignored {} more task status(es) of the same report from {executor_id}",
                ignored - IGNORED_STATUSES_LOGGED
            );
        }
        self.publish_changed();
        effects.merge(self.schedule());
        effects.tasks_changed = true;
        effects
    }

    pub(super) fn task_status(
        &mut self,
        executor_id: &ExecutorId,
        status: proto::TaskStatus,
    ) -> Result<Effects> {
        let task = status
            .task
            .ok_or_else(|| BallistaError::InvalidInput("task status without a task id".into()))?;
        let job_id = JobId::parse(&task.job_id)?;
        let stage_id = StageId(task.stage_id);
        let partition = task.partition as usize;
        let key: TaskKey = (job_id.clone(), stage_id, partition, task.attempt);
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return Ok(Effects::default());
        };
        let Some(graph) = job.graph.as_mut() else {
            return Ok(Effects::default());
        };
        // Only the executor running an attempt speaks for it.
        let runner = graph.current_attempt(stage_id, partition, task.attempt);
        if let Some(runner) = &runner
            && runner != executor_id
        {
            return Err(BallistaError::PermissionDenied(format!(
                "task {stage_id}/{partition} attempt {} of job {job_id} runs on executor {runner}, \
                 not on {executor_id}",
                task.attempt
            )));
        }
        if let Some(entry) = self.executors.get_mut(executor_id) {
            entry.running.remove(&key);
        }
        // An attempt given up already is stale whatever it says. Its output
        // must not be checked against the executor's registration either:
        // an executor declared lost (its attempts given up with it) reports
        // late from an address the scheduler no longer knows, and that must
        // not fail the job.
        if runner.is_none() {
            return Ok(Effects::default());
        }
        let reporter = self.executors.get(executor_id).map(|e| e.address.clone());
        // Tickets for its output are signed with the reporter's session key:
        // only that executor can check them, and consumers cannot forge them.
        let ticket_key = self
            .executors
            .get(executor_id)
            .map(|e| e.session_key.clone());
        let ticket_ttl_secs = self.settings.ticket_ttl_secs;
        let mut failure_kind = None;
        let ran_secs = status.ended_at_ms.saturating_sub(status.started_at_ms) as f64 / 1e3;
        let applied: Result<TaskOutcome> = match status.result {
            Some(proto::task_status::Result::Succeeded(success)) => success
                .locations
                .iter()
                .map(ShuffleLocation::from_proto)
                .collect::<Result<Vec<_>>>()
                .and_then(|mut locations| {
                    check_locations(&locations, executor_id, reporter.as_ref())?;
                    for location in &mut locations {
                        location.ticket = match &ticket_key {
                            Some(key) => sign_ticket(
                                key,
                                &location.job_id,
                                &location.path,
                                location.executor.id.as_str(),
                                ticket_ttl_secs,
                            ),
                            None => Vec::new(),
                        };
                    }
                    let mut metrics = success.metrics.unwrap_or_default();
                    crate::plan::bound_operator_metrics(&mut metrics.operators);
                    metrics.started_at_ms = status.started_at_ms;
                    metrics.ended_at_ms = status.ended_at_ms;
                    graph.task_succeeded(stage_id, partition, task.attempt, locations, metrics)
                }),
            Some(proto::task_status::Result::Failed(info)) => {
                failure_kind = Some(crate::http::error_kind_label(&info));
                let error = BallistaError::from_proto(&info);
                graph.task_failed(stage_id, partition, task.attempt, error)
            }
            None => Err(BallistaError::InvalidInput(
                "task status without a result".into(),
            )),
        };
        // A job whose graph cannot take the update (say, the next stage's plan
        // cannot be prepared) could never finish: fail it instead of waiting.
        let outcome = match applied {
            Ok(outcome) => outcome,
            Err(e) => return Ok(self.finish_failed(&job_id, e, JobPhase::Failed)),
        };
        // Counted once the report is known to be current (a late report of
        // an attempt already replaced is not another task).
        if outcome != TaskOutcome::Stale {
            match failure_kind {
                Some(kind) => self.metrics.task_failures.with_label_values(&[kind]).inc(),
                None => self.metrics.task_duration.observe(ran_secs),
            }
        }
        Ok(match outcome {
            TaskOutcome::Stale => Effects::default(),
            TaskOutcome::Progress => {
                self.unpublished.insert(job_id.clone());
                self.release_unread_outputs(&job_id)
            }
            TaskOutcome::JobSucceeded => {
                // The result stays until the client has read it; what the
                // final stage read can go now.
                let released = self.release_unread_outputs(&job_id);
                self.succeed(&job_id);
                released
            }
            TaskOutcome::JobFailed => {
                let error = self
                    .jobs
                    .get(&job_id)
                    .and_then(|j| j.graph.as_ref())
                    .and_then(|g| g.failure())
                    .map(|e| BallistaError::from_proto(&e.to_proto()))
                    .unwrap_or_else(|| BallistaError::Internal("task failed".into()));
                // finish_failed records the error the graph already holds.
                self.finish_failed(&job_id, error, JobPhase::Failed)
            }
        })
    }

    /// Tells the executors that hold a job's data to free what they keep in
    /// memory of the stages no consumer will read again.
    fn release_unread_outputs(&mut self, job_id: &JobId) -> Effects {
        let Some(job) = self.jobs.get_mut(job_id) else {
            return Effects::default();
        };
        let Some(graph) = job.graph.as_mut() else {
            return Effects::default();
        };
        let stages = graph.take_unread_outputs();
        if stages.is_empty() {
            return Effects::default();
        }
        let cleanups = job
            .data_on
            .iter()
            .filter_map(|executor| {
                let entry = self.executors.get(executor)?;
                Some(Cleanup {
                    executor_id: executor.clone(),
                    client: entry.client.clone(),
                    job_id: job_id.clone(),
                    cancel: false,
                    remove_data: true,
                    stages: stages.clone(),
                })
            })
            .collect();
        Effects {
            cleanups,
            ..Effects::default()
        }
    }

    /// Tasks their executor refused to launch (it is full, or draining) go
    /// back to pending under the same attempt, and the executor gets no more
    /// until its next heartbeat. A launch that got no answer at all is not
    /// this: its executor is lost, and so are the tasks, which may have
    /// started there ([`executor_lost`](Self::executor_lost)).
    pub fn launch_refused(&mut self, executor_id: &ExecutorId, tasks: &[proto::TaskId]) -> Effects {
        let mut returned = false;
        for task in tasks {
            let Ok(job_id) = JobId::parse(&task.job_id) else {
                continue;
            };
            let stage_id = StageId(task.stage_id);
            // Only a task given to this executor can be refused by it.
            let Some(entry) = self.executors.get_mut(executor_id) else {
                continue;
            };
            let key = (job_id, stage_id, task.partition as usize, task.attempt);
            if !entry.running.remove(&key) {
                continue;
            }
            entry.paused = true;
            returned = true;
            if let Some(graph) = self.jobs.get_mut(&key.0).and_then(|j| j.graph.as_mut()) {
                graph.unlaunch_task(stage_id, task.partition as usize, task.attempt);
            }
        }
        if !returned {
            return Effects::default();
        }
        let mut effects = self.schedule();
        effects.tasks_changed = true;
        effects
    }
}

/// Output an executor reports is on that executor (where consumers will
/// fetch it from), or in durable storage: an executor cannot point
/// consumers at another host.
fn check_locations(
    locations: &[ShuffleLocation],
    reporter_id: &ExecutorId,
    reporter: Option<&ExecutorAddress>,
) -> Result<()> {
    for location in locations.iter().filter(|l| !l.durable) {
        let on_reporter = reporter.is_some_and(|r| {
            &location.executor.id == reporter_id
                && location.executor.host == r.host
                && location.executor.port == r.port
        });
        if !on_reporter {
            return Err(BallistaError::PermissionDenied(format!(
                "executor {reporter_id} reported output on executor {} at {}:{}, not on itself",
                location.executor.id,
                crate::util::loggable(&location.executor.host),
                location.executor.port
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests;
