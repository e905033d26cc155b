//! Memory seam: which DataFusion [`MemoryPool`] each task runs under.
//!
//! A [`MemoryManager`] lives in the executor. For every task it hands out the
//! pool the task's operators reserve memory from; spilling operators (sort,
//! aggregate, some joins) spill when their reservation is refused. The manager
//! also reports budget / reserved / peak figures for heartbeats.
//!
//! The framework default, [`ExecutorMemoryManager`], is one bounded pool per
//! executor shared by all its tasks: a [`FairSpillPool`] (so concurrent
//! spillable consumers get fair shares) wrapped in [`TrackConsumersPool`]
//! (so a refused reservation names the largest consumers).

use std::fmt::Debug;
use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryPool, PeakRecordingPool, TrackConsumersPool,
};

use crate::error::Result;
use crate::ids::{JobId, TaskId};

/// What a memory manager knows about the task asking for a pool.
#[derive(Debug, Clone)]
pub struct TaskMemoryRequest<'a> {
    /// The task.
    pub task: &'a TaskId,
    /// The session settings the job runs with (e.g. a tenant or quota key).
    pub settings: &'a std::collections::HashMap<String, String>,
}

/// Memory figures of one executor, reported in heartbeats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Bytes the executor may reserve in total (0: unknown).
    pub budget_bytes: u64,
    /// Bytes reserved right now.
    pub reserved_bytes: u64,
    /// Highest reserved figure seen.
    pub peak_bytes: u64,
    /// Memory neither reserved nor guaranteed to the jobs running here: what
    /// a job new to this executor could count on right now (a manager may
    /// keep part of it back, e.g. for yet another job).
    pub available_bytes: u64,
    /// What a task of a new job needs free to be placed here; the scheduler
    /// does not place such a task when `available_bytes` is below it. Zero
    /// when the manager guarantees nothing.
    pub task_min_bytes: u64,
}

/// Memory figures of one job on one executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMemoryUsage {
    /// The job.
    pub job_id: JobId,
    /// Tenant the job's memory is counted against (empty: none).
    pub tenant: String,
    /// Bytes its tasks hold right now.
    pub reserved_bytes: u64,
    /// Highest figure its tasks held together.
    pub peak_bytes: u64,
    /// The most it may hold on this executor (0: no quota of its own).
    pub quota_bytes: u64,
}

/// Decides the memory pool every task runs under.
pub trait MemoryManager: Send + Sync + Debug {
    /// The pool for a task that is about to start. Called once per task
    /// attempt, before its plan is executed.
    fn task_pool(&self, request: &TaskMemoryRequest<'_>) -> Result<Arc<dyn MemoryPool>>;

    /// The task has ended (in any way); per-task bookkeeping can be released.
    fn task_finished(&self, _task: &TaskId) {}

    /// Current usage, for heartbeats and metrics.
    fn usage(&self) -> MemoryUsage;

    /// Per-job figures, for heartbeats and job status: the jobs with tasks
    /// here now, and those that ended recently (so their final peak reaches
    /// the scheduler). The default reports none.
    fn job_usage(&self) -> Vec<JobMemoryUsage> {
        Vec::new()
    }

    /// Why the last reservation refused to `task` was refused, naming the
    /// quota that was hit. The executor adds it to a task failure of kind
    /// resources-exhausted whose message lacks it: an operator may swallow
    /// the pool's refusal, e.g. a sort that then fails to spill with
    /// "DiskManager is disabled". Asked before
    /// [`task_finished`](Self::task_finished).
    fn refusal(&self, _task: &TaskId) -> Option<String> {
        None
    }
}

/// One bounded, fair-spilling pool per executor, shared by all its tasks.
#[derive(Debug)]
pub struct ExecutorMemoryManager {
    budget: usize,
    pool: Arc<PeakRecordingPool>,
}

impl ExecutorMemoryManager {
    /// A manager whose tasks share `budget_bytes` in total.
    pub fn new(budget_bytes: usize) -> Self {
        let tracked = TrackConsumersPool::new(
            FairSpillPool::new(budget_bytes),
            NonZeroUsize::new(5).expect("non-zero"),
        );
        Self {
            budget: budget_bytes,
            pool: Arc::new(PeakRecordingPool::new(Arc::new(tracked))),
        }
    }

    /// The executor budget.
    pub fn budget(&self) -> usize {
        self.budget
    }
}

impl MemoryManager for ExecutorMemoryManager {
    fn task_pool(&self, _request: &TaskMemoryRequest<'_>) -> Result<Arc<dyn MemoryPool>> {
        Ok(Arc::clone(&self.pool) as Arc<dyn MemoryPool>)
    }

    fn usage(&self) -> MemoryUsage {
        MemoryUsage {
            budget_bytes: self.budget as u64,
            reserved_bytes: self.pool.reserved() as u64,
            peak_bytes: self.pool.peak_reserved() as u64,
            available_bytes: self.budget.saturating_sub(self.pool.reserved()) as u64,
            task_min_bytes: 0,
        }
    }
}

/// Physical memory available to this process: the cgroup (v2 or v1) limit
/// when one is set, otherwise the host's total memory.
pub fn available_memory_bytes() -> Option<u64> {
    let host = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .map(|kb| kb * 1024)
        });
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .filter_map(|v| v.trim().parse::<u64>().ok())
    .find(|v| *v > 0 && *v < (1 << 60));
    match (host, cgroup) {
        (Some(h), Some(c)) => Some(h.min(c)),
        (h, c) => h.or(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::StageId;
    use datafusion::execution::memory_pool::MemoryConsumer;

    #[test]
    fn refused_reservation_names_the_consumer_and_usage_is_reported() {
        let manager = ExecutorMemoryManager::new(1000);
        let task = TaskId {
            job_id: JobId::generate(),
            stage_id: StageId(1),
            partition: 0,
            attempt: 0,
        };
        let settings = Default::default();
        let pool = manager
            .task_pool(&TaskMemoryRequest {
                task: &task,
                settings: &settings,
            })
            .unwrap();
        let reservation = MemoryConsumer::new("big-sort").register(&pool);
        reservation.try_grow(600).unwrap();
        let err = reservation.try_grow(600).unwrap_err().to_string();
        assert!(err.contains("big-sort"), "{err}");
        let usage = manager.usage();
        assert_eq!(usage.budget_bytes, 1000);
        assert_eq!(usage.reserved_bytes, 600);
        assert!(usage.peak_bytes >= 600);
    }
}
