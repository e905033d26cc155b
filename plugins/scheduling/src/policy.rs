//! [`PoolPolicy`]: strict priority with aging, or weighted-fair pools, with
//! admission limits per pool.

use std::collections::{BTreeMap, HashMap, VecDeque};

use ballista::config::{pool_of, priority_of};
use ballista::ids::JobId;
use ballista::plugin::scheduling::{
    Admission, ExecutorSlots, JobLabels, JobSubmission, PendingTask, SchedulableJob,
    TaskAssignment, TaskSchedulingPolicy, fill_slots,
};
use ballista::util::now_ms;

use crate::options::{DEFAULT_POOL, PoolMode, PoolOptions, PoolSchedulingOptions};

/// How slots are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// One queue for the whole cluster: the highest (aged) priority first,
    /// then submission order.
    Priority,
    /// Spark FAIR pools: a pool under its `min_share` first, otherwise the
    /// pool with the fewest running tasks per unit of weight; inside a pool
    /// its `mode`.
    Fair,
}

/// Priority or fair scheduling over configured pools, with per-pool
/// admission limits.
#[derive(Debug)]
pub struct PoolPolicy {
    strategy: Strategy,
    options: PoolSchedulingOptions,
}

impl PoolPolicy {
    /// A policy over validated options (see
    /// [`PoolSchedulingOptions::validated`]).
    pub fn new(strategy: Strategy, options: PoolSchedulingOptions) -> Self {
        let mut options = options;
        options.pools.entry(DEFAULT_POOL.to_string()).or_default();
        Self { strategy, options }
    }

    fn pool_name<'a>(&self, settings: &'a HashMap<String, String>) -> &'a str {
        pool_of(settings).unwrap_or(DEFAULT_POOL)
    }

    fn pool(&self, settings: &HashMap<String, String>) -> Option<(&str, &PoolOptions)> {
        let name = self.pool_name(settings);
        self.options
            .pools
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The job's own priority (session, else its pool's default).
    fn base_priority(&self, settings: &HashMap<String, String>) -> i64 {
        match priority_of(settings) {
            Ok(Some(p)) => p,
            _ => self.pool(settings).map_or(0, |(_, p)| p.default_priority),
        }
    }

    /// Priority plus what the job gained by waiting.
    fn aged_priority(&self, job: &SchedulableJob<'_>, now: u64) -> f64 {
        let waited = now.saturating_sub(job.submitted_at_ms) as f64 / 1000.0;
        self.base_priority(job.settings) as f64 + self.options.aging_per_second * waited
    }

    /// Jobs in the order they get slots under priority: highest aged
    /// priority, then submission order.
    fn by_priority<'j, 'a>(
        &self,
        jobs: impl IntoIterator<Item = &'j SchedulableJob<'a>>,
        now: u64,
    ) -> Vec<&'j SchedulableJob<'a>>
    where
        'a: 'j,
    {
        let mut ordered: Vec<(f64, &SchedulableJob<'_>)> = jobs
            .into_iter()
            .map(|j| (self.aged_priority(j, now), j))
            .collect();
        ordered.sort_by(|(pa, a), (pb, b)| {
            pb.total_cmp(pa)
                .then(a.submission_seq.cmp(&b.submission_seq))
        });
        ordered.into_iter().map(|(_, j)| j).collect()
    }

    /// Spark FAIR: the order in which `slots` tasks go to pools.
    fn fair_order<'a>(
        &self,
        jobs: &'a [SchedulableJob<'a>],
        slots: usize,
        now: u64,
    ) -> Vec<(&'a JobId, PendingTask)> {
        struct PoolQueue<'a> {
            weight: f64,
            min_share: usize,
            running: usize,
            tasks: VecDeque<(&'a JobId, PendingTask)>,
        }
        let mut pools: BTreeMap<&str, PoolQueue<'a>> = BTreeMap::new();
        let mut members: BTreeMap<&str, Vec<&'a SchedulableJob<'a>>> = BTreeMap::new();
        for job in jobs {
            let (name, options) = match self.pool(job.settings) {
                Some(found) => found,
                // Admission refuses unknown pools; a job from before a
                // configuration change runs in the default pool.
                None => (
                    DEFAULT_POOL,
                    self.options
                        .pools
                        .get(DEFAULT_POOL)
                        .expect("the default pool always exists"),
                ),
            };
            let pool = pools.entry(name).or_insert_with(|| PoolQueue {
                weight: options.weight,
                min_share: options.min_share,
                running: 0,
                tasks: VecDeque::new(),
            });
            pool.running += job.running_tasks;
            members.entry(name).or_default().push(job);
        }
        for (name, jobs) in members {
            let mode = self
                .options
                .pools
                .get(name)
                .map_or(PoolMode::Fifo, |p| p.mode);
            let ordered = match mode {
                PoolMode::Priority => self.by_priority(jobs, now),
                PoolMode::Fifo => {
                    let mut jobs = jobs;
                    jobs.sort_by_key(|j| j.submission_seq);
                    // Submission order: a job still being planned holds back
                    // the pool's later jobs.
                    let held = jobs
                        .iter()
                        .position(|j| j.holds_back_later_jobs(now))
                        .unwrap_or(jobs.len());
                    jobs.truncate(held);
                    jobs
                }
            };
            let pool = pools.get_mut(name).expect("created above");
            pool.tasks = ordered
                .into_iter()
                .flat_map(|j| j.pending_tasks.iter().map(move |t| (j.job_id, *t)))
                .collect();
        }
        let mut order = Vec::with_capacity(slots);
        while order.len() < slots {
            let next = pools
                .iter_mut()
                .filter(|(_, p)| !p.tasks.is_empty())
                .min_by(|(na, a), (nb, b)| {
                    let needy_a = a.running < a.min_share;
                    let needy_b = b.running < b.min_share;
                    // Needy pools first; among them the furthest below
                    // their min share, otherwise the fewest running tasks
                    // per unit of weight; then by name.
                    let key = |p: &PoolQueue<'_>, needy: bool| {
                        if needy {
                            p.running as f64 / p.min_share as f64
                        } else {
                            p.running as f64 / p.weight
                        }
                    };
                    needy_b
                        .cmp(&needy_a)
                        .then(key(a, needy_a).total_cmp(&key(b, needy_b)))
                        .then(na.cmp(nb))
                })
                .map(|(_, p)| p);
            let Some(pool) = next else {
                break;
            };
            let task = pool.tasks.pop_front().expect("not empty");
            pool.running += 1;
            order.push(task);
        }
        order
    }
}

impl TaskSchedulingPolicy for PoolPolicy {
    fn name(&self) -> &str {
        match self.strategy {
            Strategy::Priority => "priority",
            Strategy::Fair => "fair",
        }
    }

    fn admit(&self, job: &JobSubmission<'_>) -> Admission {
        let name = self.pool_name(job.settings);
        let Some((name, pool)) = self.pool(job.settings) else {
            let known: Vec<&str> = self.options.pools.keys().map(String::as_str).collect();
            return Admission::Reject {
                reason: format!(
                    "unknown scheduling pool '{name}' (ballista.pool); the pools are: {}",
                    known.join(", ")
                ),
            };
        };
        if let Err(e) = priority_of(job.settings) {
            return Admission::Reject {
                reason: e.message(),
            };
        }
        let in_pool = |settings: &HashMap<String, String>| self.pool_name(settings) == name;
        let running = job
            .others
            .iter()
            .filter(|j| !j.queued && in_pool(j.settings))
            .count();
        let queued_ahead = job
            .others
            .iter()
            .filter(|j| j.queued && in_pool(j.settings) && j.submission_seq < job.submission_seq)
            .count();
        let room = pool.max_running_jobs.is_none_or(|max| running < max);
        if room && queued_ahead == 0 {
            return Admission::Run;
        }
        // Jobs ahead that the pool has room to start (they are only waiting
        // for the queue to be re-examined) do not fill the queue.
        let free_room = pool
            .max_running_jobs
            .map_or(usize::MAX, |max| max.saturating_sub(running));
        let waiting_ahead = queued_ahead.saturating_sub(free_room);
        if let Some(max_queued) = pool.max_queued_jobs
            && waiting_ahead >= max_queued
        {
            return Admission::Reject {
                reason: format!(
                    "scheduling pool '{name}' is full: {running} job(s) running (max_running_jobs = {}) and {waiting_ahead} queued (max_queued_jobs = {max_queued}); try again later",
                    pool.max_running_jobs
                        .map_or("unlimited".to_string(), |m| m.to_string())
                ),
            };
        }
        let reason = match pool.max_running_jobs {
            Some(max) if running >= max => format!(
                "scheduling pool '{name}' runs its limit of {max} job(s) (max_running_jobs); {queued_ahead} queued ahead of it"
            ),
            _ => format!("scheduling pool '{name}' has {queued_ahead} job(s) queued ahead of it"),
        };
        Admission::Queue { reason }
    }

    fn job_labels(&self, settings: &HashMap<String, String>) -> JobLabels {
        JobLabels {
            pool: self.pool_name(settings).to_string(),
            priority: self.base_priority(settings),
        }
    }

    fn assign(
        &self,
        jobs: &[SchedulableJob<'_>],
        executors: &[ExecutorSlots],
    ) -> Vec<TaskAssignment> {
        let now = now_ms();
        let slots: usize = executors.iter().map(|e| e.free_slots).sum();
        match self.strategy {
            Strategy::Priority => {
                let ordered = self.by_priority(jobs, now);
                let queue = ordered
                    .into_iter()
                    .flat_map(|j| j.pending_tasks.iter().map(move |t| (j.job_id, *t)));
                fill_slots(queue, executors)
            }
            Strategy::Fair => fill_slots(self.fair_order(jobs, slots, now), executors),
        }
    }
}
