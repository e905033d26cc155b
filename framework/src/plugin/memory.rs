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

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::{self, Debug};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::error::Result as DfResult;
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, PeakRecordingPool,
    TrackConsumersPool,
};
use parking_lot::Mutex;

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
/// What each job's tasks reserve is tallied on the way, so that job status
/// shows it.
#[derive(Debug)]
pub struct ExecutorMemoryManager {
    budget: usize,
    pool: Arc<PeakRecordingPool>,
    tally: Arc<JobTally>,
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
            tally: Arc::default(),
        }
    }

    /// The executor budget.
    pub fn budget(&self) -> usize {
        self.budget
    }
}

impl MemoryManager for ExecutorMemoryManager {
    fn task_pool(&self, request: &TaskMemoryRequest<'_>) -> Result<Arc<dyn MemoryPool>> {
        let shared = Arc::clone(&self.pool) as Arc<dyn MemoryPool>;
        Ok(self.tally.pool_for(request.task, shared))
    }

    fn task_finished(&self, task: &TaskId) {
        self.tally.task_finished(task);
    }

    fn job_usage(&self) -> Vec<JobMemoryUsage> {
        self.tally.usage()
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

/// The figures of jobs whose last task on this executor ended recently.
/// Heartbeats keep reporting them for [`RETENTION`](Self::RETENTION), so that
/// a job's final peak reaches the scheduler even when the job ended between
/// two heartbeats.
#[derive(Debug, Default)]
pub struct RecentlyEndedJobs {
    entries: VecDeque<(Instant, JobMemoryUsage)>,
}

impl RecentlyEndedJobs {
    /// How long an ended job stays listed.
    pub const RETENTION: Duration = Duration::from_secs(30);

    /// A job's last task here ended with these figures.
    pub fn push(&mut self, figures: JobMemoryUsage) {
        self.entries.push_back((Instant::now(), figures));
    }

    /// A job starts here again (a later stage): it is no longer listed as
    /// ended; returns the peak it had reached, to carry on from.
    pub fn reopen(&mut self, job_id: &JobId) -> u64 {
        let mut peak = 0;
        self.entries.retain(|(_, figures)| {
            let same = &figures.job_id == job_id;
            if same {
                peak = peak.max(figures.peak_bytes);
            }
            !same
        });
        peak
    }

    /// The jobs still listed (older entries are dropped).
    pub fn current(&mut self) -> impl Iterator<Item = &JobMemoryUsage> {
        while self
            .entries
            .front()
            .is_some_and(|(at, _)| at.elapsed() > Self::RETENTION)
        {
            self.entries.pop_front();
        }
        self.entries.iter().map(|(_, figures)| figures)
    }
}

/// Per-job tallies of what tasks reserve through a pool they share: a
/// building block for managers without per-job accounting of their own.
/// [`pool_for`](Self::pool_for) wraps the shared pool for one task; every
/// reservation still goes through the shared pool, and is counted against
/// the task's job on the way.
#[derive(Debug, Default)]
pub struct JobTally {
    state: Mutex<TallyState>,
}

#[derive(Debug, Default)]
struct TallyState {
    jobs: HashMap<JobId, JobCount>,
    open_tasks: HashSet<TaskId>,
    ended: RecentlyEndedJobs,
}

#[derive(Debug, Default)]
struct JobCount {
    tasks: usize,
    reserved: usize,
    peak: usize,
}

impl JobTally {
    /// The pool `task` runs under: `shared`, counted against its job.
    pub fn pool_for(
        self: &Arc<Self>,
        task: &TaskId,
        shared: Arc<dyn MemoryPool>,
    ) -> Arc<dyn MemoryPool> {
        let mut st = self.state.lock();
        if st.open_tasks.insert(task.clone()) {
            if !st.jobs.contains_key(&task.job_id) {
                // Reopened (a later stage): keep the peak it reached before.
                let peak = st.ended.reopen(&task.job_id) as usize;
                st.jobs.insert(
                    task.job_id.clone(),
                    JobCount {
                        peak,
                        ..JobCount::default()
                    },
                );
            }
            if let Some(job) = st.jobs.get_mut(&task.job_id) {
                job.tasks += 1;
            }
        }
        Arc::new(TalliedPool {
            shared,
            tally: Arc::clone(self),
            job_id: task.job_id.clone(),
        })
    }

    /// `task` has ended.
    pub fn task_finished(&self, task: &TaskId) {
        let mut st = self.state.lock();
        if st.open_tasks.remove(task)
            && let Some(job) = st.jobs.get_mut(&task.job_id)
        {
            job.tasks = job.tasks.saturating_sub(1);
        }
        st.retire_if_idle(&task.job_id);
    }

    /// Jobs with tasks now, and those that ended recently.
    pub fn usage(&self) -> Vec<JobMemoryUsage> {
        let st = &mut *self.state.lock();
        let mut out: Vec<JobMemoryUsage> = st.ended.current().cloned().collect();
        out.extend(st.jobs.iter().map(|(id, job)| job.usage(id)));
        out.sort_by(|a, b| a.job_id.cmp(&b.job_id));
        out
    }

    fn add(&self, job_id: &JobId, bytes: usize) {
        let mut st = self.state.lock();
        if let Some(job) = st.jobs.get_mut(job_id) {
            job.reserved += bytes;
            job.peak = job.peak.max(job.reserved);
        }
    }

    fn sub(&self, job_id: &JobId, bytes: usize) {
        let mut st = self.state.lock();
        if let Some(job) = st.jobs.get_mut(job_id) {
            job.reserved = job.reserved.saturating_sub(bytes);
        }
        st.retire_if_idle(job_id);
    }
}

impl TallyState {
    fn retire_if_idle(&mut self, job_id: &JobId) {
        if self
            .jobs
            .get(job_id)
            .is_some_and(|job| job.tasks == 0 && job.reserved == 0)
            && let Some(job) = self.jobs.remove(job_id)
        {
            self.ended.push(job.usage(job_id));
        }
    }
}

impl JobCount {
    fn usage(&self, job_id: &JobId) -> JobMemoryUsage {
        JobMemoryUsage {
            job_id: job_id.clone(),
            tenant: String::new(),
            reserved_bytes: self.reserved as u64,
            peak_bytes: self.peak as u64,
            quota_bytes: 0,
        }
    }
}

/// A shared pool seen by one job's task.
#[derive(Debug)]
struct TalliedPool {
    shared: Arc<dyn MemoryPool>,
    tally: Arc<JobTally>,
    job_id: JobId,
}

impl fmt::Display for TalliedPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.shared, f)
    }
}

impl MemoryPool for TalliedPool {
    fn name(&self) -> &str {
        self.shared.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.shared.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.shared.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.shared.grow(reservation, additional);
        self.tally.add(&self.job_id, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.shared.shrink(reservation, shrink);
        self.tally.sub(&self.job_id, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        self.shared.try_grow(reservation, additional)?;
        self.tally.add(&self.job_id, additional);
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.shared.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.shared.memory_limit()
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
        // The job's share is tallied, and kept once the job ends.
        let jobs = manager.job_usage();
        assert_eq!(jobs.len(), 1);
        assert_eq!((jobs[0].reserved_bytes, jobs[0].peak_bytes), (600, 600));
        reservation.shrink(600);
        drop(reservation);
        manager.task_finished(&task);
        let jobs = manager.job_usage();
        assert_eq!(jobs.len(), 1);
        assert_eq!((jobs[0].reserved_bytes, jobs[0].peak_bytes), (0, 600));
        assert_eq!(manager.usage().reserved_bytes, 0);
    }
}
