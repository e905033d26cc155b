//! Cluster membership (registration, heartbeats, lost executors) and
//! periodic housekeeping.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use super::{Cleanup, Effects, JobPhase, SchedulerState};
use crate::auth::SecretKey;
use crate::error::{BallistaError, Result};
use crate::ids::{ExecutorId, JobId};
use crate::plugin::memory::MemoryUsage;
use crate::plugin::shuffle::ExecutorAddress;
use crate::proto;
use crate::util::now_ms;

impl SchedulerState {
    /// Registers (or re-registers) an executor.
    pub fn register_executor(
        &mut self,
        address: ExecutorAddress,
        slots: usize,
        version: String,
        memory: MemoryUsage,
        session_key: SecretKey,
    ) -> Result<Effects> {
        let id = address.id.clone();
        let mut effects = Effects::default();
        let max_executors = self.settings.limits.max_executors;
        if self.executors.get(&id).is_none() && self.executors.len() >= max_executors {
            return Err(BallistaError::ResourcesExhausted(format!(
                "executor {id} refused: {max_executors} executors are registered, the most \
                 the scheduler accepts (scheduler.limits.max_executors)"
            )));
        }
        if self.executors.get(&id).is_some() {
            // Same id again: the process restarted; what it ran is gone.
            effects.merge(self.executor_lost(&id, "it registered again (restarted)"));
        }
        tracing::info!(
            "executor {id} registered at {}:{} with {slots} slots",
            crate::util::loggable(&address.host),
            address.port
        );
        self.executors
            .register(address, slots, version, memory, session_key)?;
        self.metrics.executors_registered.inc();
        self.no_executors_since = None;
        effects.merge(self.schedule());
        Ok(effects)
    }

    /// Whether `id` is registered (and not declared lost).
    pub fn is_executor_registered(&self, id: &ExecutorId) -> bool {
        self.executors.get(id).is_some()
    }

    /// Like [`is_executor_registered`](Self::is_executor_registered), for an
    /// id as text.
    pub fn is_executor_registered_str(&self, id: &str) -> bool {
        self.executors.get(&ExecutorId::new(id)).is_some()
    }

    /// Records a heartbeat. Returns false when the executor should register again.
    pub fn heartbeat(
        &mut self,
        executor_id: &ExecutorId,
        memory: MemoryUsage,
        jobs: Vec<proto::JobMemory>,
        draining: bool,
    ) -> (bool, Effects) {
        let reported: HashSet<JobId> = jobs
            .iter()
            .filter_map(|j| JobId::parse(&j.job_id).ok())
            .collect();
        let known = self
            .executors
            .heartbeat(executor_id, memory, &reported, draining);
        if known {
            self.record_job_memory(executor_id, jobs);
        }
        let effects = if known {
            self.schedule()
        } else {
            Effects::default()
        };
        (known, effects)
    }

    /// Records how many tasks an executor said it runs.
    pub fn note_reported_running(&mut self, executor_id: &ExecutorId, running: u32) {
        if let Some(entry) = self.executors.get_mut(executor_id) {
            entry.reported_running = running;
        }
    }

    /// Addresses of the executors running tasks.
    pub fn busy_executors(&self) -> Vec<ExecutorAddress> {
        self.executors
            .all()
            .filter(|e| !e.running.is_empty())
            .map(|e| e.address.clone())
            .collect()
    }

    /// Forgets an executor; its running tasks fail as lost (and are retried).
    pub fn executor_lost(&mut self, executor_id: &ExecutorId, reason: &str) -> Effects {
        let mut effects = self.forget_executor(executor_id, reason, true, false).0;
        effects.tasks_changed = true;
        effects
    }

    /// Forgets an executor that left on purpose (it drained and
    /// deregistered): like [`executor_lost`](Self::executor_lost), but not
    /// counted as a loss. With `hand_over` (the executor itself leaves and
    /// deletes what it is told to before it goes) the finished jobs whose
    /// data it was still to delete are returned for it, since a call sent
    /// after it would find its service stopped; otherwise they go by call.
    pub fn executor_left(
        &mut self,
        executor_id: &ExecutorId,
        reason: &str,
        hand_over: bool,
    ) -> (Effects, Vec<JobId>) {
        let (mut effects, jobs) = self.forget_executor(executor_id, reason, false, hand_over);
        effects.tasks_changed = true;
        (effects, jobs)
    }

    fn forget_executor(
        &mut self,
        executor_id: &ExecutorId,
        reason: &str,
        lost: bool,
        hand_over: bool,
    ) -> (Effects, Vec<JobId>) {
        let Some(entry) = self.executors.remove(executor_id) else {
            return (Effects::default(), Vec::new());
        };
        let queued_removals = self.forget_answers(executor_id);
        if lost {
            self.metrics.executors_lost.inc();
            tracing::warn!(
                "executor {executor_id} lost: {}",
                crate::util::loggable_message(reason)
            );
        } else {
            tracing::info!(
                "executor {executor_id} left: {}",
                crate::util::loggable_message(reason)
            );
        }
        if self.executors.is_empty() {
            self.no_executors_since = Some(Instant::now());
        }
        let mut effects = Effects::default();
        let handed_over = if hand_over {
            queued_removals
        } else {
            // Data it wrote to storage it does not own outlives it: should
            // it still answer, it deletes that.
            effects
                .cleanups
                .extend(queued_removals.into_iter().map(|job_id| Cleanup {
                    executor_id: executor_id.clone(),
                    client: entry.client.clone(),
                    job_id,
                    cancel: false,
                    remove_data: true,
                    stages: Vec::new(),
                }));
            Vec::new()
        };
        for (job_id, stage_id, partition, attempt) in entry.running {
            let error = BallistaError::ExecutorLost {
                executor_id: executor_id.to_string(),
                message: reason.to_string(),
            };
            let failure = proto::TaskStatus {
                task: Some(proto::TaskId {
                    job_id: job_id.to_string(),
                    stage_id: stage_id.0,
                    partition: partition as u32,
                    attempt,
                }),
                executor_id: executor_id.to_string(),
                result: Some(proto::task_status::Result::Failed(error.to_proto())),
                started_at_ms: 0,
                ended_at_ms: now_ms(),
            };
            match self.task_status(executor_id, failure) {
                Ok(e) => effects.merge(e),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        // What it had committed to its own disk is gone with it.
        for job_id in self.running_jobs() {
            let rerun = self
                .jobs
                .get_mut(&job_id)
                .and_then(|j| j.graph.as_mut())
                .map_or(0, |g| g.executor_outputs_lost(executor_id));
            if rerun > 0 {
                self.unpublished.insert(job_id);
            }
        }
        self.publish_changed();
        effects.merge(self.schedule());
        (effects, handed_over)
    }

    fn running_jobs(&self) -> Vec<JobId> {
        self.jobs
            .iter()
            .filter(|(_, j)| j.phase == JobPhase::Running)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Periodic housekeeping: lost executors, jobs that cannot make progress,
    /// and expiry of finished jobs' data and records.
    pub fn housekeeping(&mut self) -> Effects {
        let mut effects = Effects::default();
        let timeout = Duration::from_secs(self.settings.executor_timeout_secs);
        for id in self.executors.expired(timeout) {
            effects.merge(
                self.executor_lost(&id, &format!("no heartbeat for {}s", timeout.as_secs())),
            );
        }

        if let Some(since) = self.no_executors_since
            && since.elapsed() > timeout
        {
            for job_id in self.running_jobs() {
                effects.merge(self.finish_failed(
                    &job_id,
                    BallistaError::Unavailable(format!(
                        "no executor has been available for {}s; the job cannot make progress",
                        since.elapsed().as_secs()
                    )),
                    JobPhase::Failed,
                ));
            }
        }

        effects.merge(self.expire_jobs());

        let retention = Duration::from_secs(self.settings.result_retention_secs);
        let expired: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.phase == JobPhase::Succeeded && !j.data_removed)
            .filter(|(_, j)| j.ended_at.is_some_and(|t| t.elapsed() > retention))
            .map(|(id, _)| id.clone())
            .collect();
        for job_id in expired {
            tracing::info!(
                "job {job_id}: results were not released within {}s; deleting them",
                retention.as_secs()
            );
            effects.merge(self.release(&job_id));
        }

        let mut finished: Vec<(Instant, JobId)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.data_removed)
            .filter_map(|(id, j)| j.ended_at.map(|t| (t, id.clone())))
            .collect();
        finished.sort();
        let limits = &self.settings.limits;
        let excess = finished.len().saturating_sub(limits.max_finished_jobs);
        let retention = Duration::from_secs(limits.finished_job_retention_secs);
        for (i, (ended, job_id)) in finished.into_iter().enumerate() {
            if i < excess || ended.elapsed() > retention {
                self.jobs.remove(&job_id);
            }
        }
        effects
    }

    /// Keeps the latest per-job memory figures of an executor, and the
    /// highest peak it reported for each job.
    fn record_job_memory(&mut self, executor_id: &ExecutorId, jobs: Vec<proto::JobMemory>) {
        for mut figures in jobs {
            let Ok(job_id) = JobId::parse(&figures.job_id) else {
                continue;
            };
            let Some(job) = self.jobs.get_mut(&job_id) else {
                continue;
            };
            figures.executor_id = executor_id.to_string();
            let entry = job
                .memory
                .entry(executor_id.clone())
                .or_insert_with(|| figures.clone());
            let peak = entry.peak_bytes.max(figures.peak_bytes);
            *entry = figures;
            entry.peak_bytes = peak;
        }
    }

    /// Task slots of all registered executors.
    pub fn total_slots(&self) -> usize {
        self.executors.all().map(|e| e.slots).sum()
    }

    /// Executors for `GetExecutorsMetadata`.
    pub fn executors_info(&self) -> Vec<proto::ExecutorInfo> {
        let mut out: Vec<proto::ExecutorInfo> = self
            .executors
            .all()
            .map(|e| proto::ExecutorInfo {
                metadata: Some(proto::ExecutorMetadata {
                    id: e.address.id.to_string(),
                    host: e.address.host.clone(),
                    port: e.address.port as u32,
                    slots: e.slots as u32,
                    version: e.version.clone(),
                }),
                free_slots: e.free_slots() as u32,
                running_tasks: e.running.len() as u32,
                reported_running_tasks: e.reported_running,
                last_heartbeat_ms: e.last_seen_ms,
                status: if e.paused {
                    "paused".into()
                } else {
                    "active".into()
                },
                memory: Some(proto::MemoryReport::from_usage(&e.memory)),
                running_tasks_by_pool: {
                    let mut by_pool: BTreeMap<&str, u32> = BTreeMap::new();
                    for (job_id, ..) in &e.running {
                        if let Some(job) = self.jobs.get(job_id)
                            && !job.labels.pool.is_empty()
                        {
                            *by_pool.entry(job.labels.pool.as_str()).or_default() += 1;
                        }
                    }
                    proto::key_values(
                        by_pool
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v.to_string())),
                    )
                },
            })
            .collect();
        out.sort_by(|a, b| {
            let id = |x: &proto::ExecutorInfo| {
                x.metadata
                    .as_ref()
                    .map(|m| m.id.clone())
                    .unwrap_or_default()
            };
            id(a).cmp(&id(b))
        });
        out
    }
}
