//! The accounts of one executor's memory: every reservation of every task,
//! summed per job, per tenant and for the executor, and the rules that
//! decide whether a reservation may grow.
//!
//! All of it sits behind one lock: a decision reads the executor's, the
//! tenant's and the job's figures together, and they must not move under it.

use std::collections::{HashMap, HashSet};

use ballista::ids::{JobId, TaskId};
use ballista::plugin::memory::{JobMemoryUsage, MemoryUsage, RecentlyEndedJobs};
use parking_lot::Mutex;

/// How many consumers a refusal lists.
const TOP_CONSUMERS: usize = 5;

/// The limits one job runs under on this executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobLimits {
    /// Tenant the job counts against.
    pub tenant: String,
    /// Most the tenant's jobs may hold together.
    pub tenant_quota: usize,
    /// Most the job may hold.
    pub job_quota: usize,
}

/// One executor's memory accounts.
#[derive(Debug)]
pub(crate) struct Ledger {
    budget: usize,
    reserve: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    reserved: usize,
    peak: usize,
    jobs: HashMap<JobId, JobAccount>,
    tenants: HashMap<String, TenantAccount>,
    consumers: HashMap<usize, Consumer>,
    open_tasks: HashSet<TaskId>,
    refusals: HashMap<TaskId, String>,
    ended: RecentlyEndedJobs,
}

#[derive(Debug)]
struct JobAccount {
    limits: JobLimits,
    tasks: usize,
    consumers: usize,
    spillers: usize,
    reserved: usize,
    unspillable: usize,
    /// The largest reservation one of the job's operators that cannot
    /// spill has held here: spilling operators leave room for another
    /// such, so that a task of the job starting later can make its first
    /// reservation (a sort's merge reservation) rather than fail.
    largest_unspillable: usize,
    peak: usize,
}

#[derive(Debug, Default)]
struct TenantAccount {
    jobs: usize,
    reserved: usize,
}

#[derive(Debug)]
struct Consumer {
    name: String,
    task: TaskId,
    can_spill: bool,
    size: usize,
}

/// Which limit a refused reservation ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Job,
    Tenant,
    Executor,
}

impl Ledger {
    /// Accounts for an executor whose tasks may reserve `budget` bytes
    /// together, guaranteeing `reserve` bytes to each job running here.
    pub(crate) fn new(budget: usize, reserve: usize) -> Self {
        Self {
            budget,
            reserve,
            state: Mutex::new(State::default()),
        }
    }

    /// The executor's budget.
    pub(crate) fn budget(&self) -> usize {
        self.budget
    }

    /// A task of a job starts here. The job's limits are fixed by its first
    /// task on this executor.
    pub(crate) fn open_task(&self, task: &TaskId, limits: JobLimits) {
        let mut st = self.state.lock();
        if !st.open_tasks.insert(task.clone()) {
            return;
        }
        if !st.jobs.contains_key(&task.job_id) {
            // The job may have had tasks here before (an earlier stage): its
            // account reopens, keeping the peak it reached then.
            let peak = st.ended.reopen(&task.job_id) as usize;
            st.tenants.entry(limits.tenant.clone()).or_default().jobs += 1;
            st.jobs.insert(
                task.job_id.clone(),
                JobAccount {
                    limits,
                    tasks: 0,
                    consumers: 0,
                    spillers: 0,
                    reserved: 0,
                    unspillable: 0,
                    largest_unspillable: 0,
                    peak,
                },
            );
        }
        if let Some(job) = st.jobs.get_mut(&task.job_id) {
            job.tasks += 1;
        }
    }

    /// The task has ended.
    pub(crate) fn close_task(&self, task: &TaskId) {
        let mut st = self.state.lock();
        st.refusals.remove(task);
        if !st.open_tasks.remove(task) {
            return;
        }
        if let Some(job) = st.jobs.get_mut(&task.job_id) {
            job.tasks = job.tasks.saturating_sub(1);
        }
        st.retire_if_idle(&task.job_id);
    }

    /// A consumer of `task` registered with the task's pool.
    ///
    /// A consumer whose job has no account (registered after the job's last
    /// task here ended) is still counted against the executor's budget.
    pub(crate) fn register(&self, id: usize, name: &str, task: &TaskId, can_spill: bool) {
        let mut st = self.state.lock();
        if let Some(job) = st.jobs.get_mut(&task.job_id) {
            job.consumers += 1;
            if can_spill {
                job.spillers += 1;
            }
        }
        st.consumers.insert(
            id,
            Consumer {
                name: name.to_string(),
                task: task.clone(),
                can_spill,
                size: 0,
            },
        );
    }

    /// A consumer's reservation was dropped (its memory already shrunk).
    pub(crate) fn unregister(&self, id: usize) {
        let mut st = self.state.lock();
        let Some(consumer) = st.consumers.remove(&id) else {
            return;
        };
        if consumer.size > 0 {
            st.release(&consumer, consumer.size);
        }
        if let Some(job) = st.jobs.get_mut(&consumer.task.job_id) {
            job.consumers = job.consumers.saturating_sub(1);
            if consumer.can_spill {
                job.spillers = job.spillers.saturating_sub(1);
            }
        }
        st.retire_if_idle(&consumer.task.job_id);
    }

    /// Grows a reservation unconditionally (DataFusion's `grow`: memory
    /// already in use that must be accounted).
    pub(crate) fn grow(&self, id: usize, additional: usize) {
        let mut st = self.state.lock();
        st.take(id, additional);
    }

    /// Shrinks a reservation.
    pub(crate) fn shrink(&self, id: usize, amount: usize) {
        let mut st = self.state.lock();
        let Some(consumer) = st.consumers.get_mut(&id) else {
            return;
        };
        let amount = amount.min(consumer.size);
        consumer.size -= amount;
        let (task, can_spill) = (consumer.task.clone(), consumer.can_spill);
        st.release_of(&task.job_id, can_spill, amount);
    }

    /// Grows a reservation if every limit allows it; otherwise returns why
    /// not, naming the limit, its size and the largest consumers, and
    /// remembers that message for the consumer's task.
    pub(crate) fn try_grow(&self, id: usize, additional: usize) -> Result<(), String> {
        let mut st = self.state.lock();
        match self.refusal_for(&st, id, additional) {
            None => {
                st.take(id, additional);
                Ok(())
            }
            Some(message) => {
                if let Some(consumer) = st.consumers.get(&id) {
                    let task = consumer.task.clone();
                    st.refusals.insert(task, message.clone());
                }
                Err(message)
            }
        }
    }

    /// The last refusal of a task's reservations.
    pub(crate) fn refusal(&self, task: &TaskId) -> Option<String> {
        self.state.lock().refusals.get(task).cloned()
    }

    /// Bytes held by one task's consumers.
    pub(crate) fn task_reserved(&self, task: &TaskId) -> usize {
        let st = self.state.lock();
        st.consumers
            .values()
            .filter(|c| &c.task == task)
            .map(|c| c.size)
            .sum()
    }

    /// The executor's figures.
    pub(crate) fn usage(&self) -> MemoryUsage {
        let st = self.state.lock();
        let held_for_jobs = st.unclaimed_guarantees(self.reserve, None);
        MemoryUsage {
            budget_bytes: self.budget as u64,
            reserved_bytes: st.reserved as u64,
            peak_bytes: st.peak as u64,
            available_bytes: self.budget.saturating_sub(st.reserved + held_for_jobs) as u64,
            task_min_bytes: self.reserve as u64,
        }
    }

    /// Figures of the jobs here now and of those that ended recently.
    pub(crate) fn job_usage(&self) -> Vec<JobMemoryUsage> {
        let st = &mut *self.state.lock();
        let mut out: Vec<JobMemoryUsage> = st.ended.current().cloned().collect();
        out.extend(st.jobs.iter().map(|(id, job)| job.usage(id)));
        out.sort_by(|a, b| a.job_id.cmp(&b.job_id));
        out
    }

    fn refusal_for(&self, st: &State, id: usize, additional: usize) -> Option<String> {
        let Some(consumer) = st.consumers.get(&id) else {
            // Not registered with a pool of this ledger: nothing to account
            // it against, so refuse rather than let memory go uncounted.
            return Some(format!(
                "memory budget of this executor hit: a reservation of {} came from a consumer its memory pool never registered",
                human(additional)
            ));
        };
        let asked = Asked {
            consumer,
            additional,
        };
        let job_id = &consumer.task.job_id;
        let Some(job) = st.jobs.get(job_id) else {
            let free = self.budget.saturating_sub(st.reserved);
            return (additional > free).then(|| {
                st.describe(
                    Scope::Executor,
                    &asked,
                    format!(
                        "memory budget of this executor hit: {} of its {} budget is reserved",
                        human(st.reserved),
                        human(self.budget)
                    ),
                )
            });
        };
        let limits = &job.limits;
        let tenant_jobs = st.tenants.get(&limits.tenant).map_or(1, |t| t.jobs);
        let tenant_reserved = st.tenants.get(&limits.tenant).map_or(0, |t| t.reserved);

        // A quota as large as the budget never binds before the budget does:
        // such a refusal is reported as the executor's.
        if limits.job_quota < self.budget && job.reserved + additional > limits.job_quota {
            return Some(st.describe(
                Scope::Job,
                &asked,
                format!(
                    "memory quota of job {job_id} hit: the job holds {} of its {} quota on this executor",
                    human(job.reserved),
                    human(limits.job_quota)
                ),
            ));
        }
        if limits.tenant_quota < self.budget && tenant_reserved + additional > limits.tenant_quota {
            return Some(st.describe(
                Scope::Tenant,
                &asked,
                format!(
                    "memory quota of tenant '{}' hit: its {} job(s) hold {} of its {} quota on this executor",
                    limits.tenant,
                    tenant_jobs,
                    human(tenant_reserved),
                    human(limits.tenant_quota)
                ),
            ));
        }
        if consumer.can_spill {
            // Spilling operators share what their job may hold, as
            // DataFusion's fair pool shares a whole pool, and jobs share
            // their tenant's quota and the budget: none may take so much
            // that others would have to fail rather than spill.
            // A quota of the whole budget is no limit of its own; on a tie
            // the executor's share is named, being the one that applies.
            let binding = |quota: usize, value: usize| {
                if quota < self.budget {
                    value
                } else {
                    usize::MAX
                }
            };
            let tenant_share = binding(
                limits.tenant_quota,
                limits.tenant_quota / tenant_jobs.max(1),
            );
            let job_limit = binding(limits.job_quota, limits.job_quota);
            let executor_share =
                (self.budget / st.jobs.len().max(1)).max(self.reserve.min(limits.job_quota));
            let (limit, scope, what) = [
                (
                    executor_share,
                    Scope::Executor,
                    format!(
                        "a {} share of this executor's {} budget among {} job(s)",
                        human(executor_share),
                        human(self.budget),
                        st.jobs.len()
                    ),
                ),
                (
                    job_limit,
                    Scope::Job,
                    format!("the {} quota of job {job_id}", human(limits.job_quota)),
                ),
                (
                    tenant_share,
                    Scope::Tenant,
                    format!(
                        "a {} share of the {} quota of tenant '{}' among its {} job(s)",
                        human(tenant_share),
                        human(limits.tenant_quota),
                        limits.tenant,
                        tenant_jobs
                    ),
                ),
            ]
            .into_iter()
            .min_by_key(|(limit, ..)| *limit)
            .expect("three limits");
            let limit = limit.min(self.budget);
            // Spilling operators can always give memory back; one that
            // cannot spill, starting after them, could not wait for it and
            // would fail. So the spillers leave room for one more
            // reservation of the size the job's non-spilling operators have
            // made, up to a quarter of the limit so they keep most of it.
            let kept = job.largest_unspillable.min(limit / 4);
            let share = limit.saturating_sub(job.unspillable + kept) / job.spillers.max(1);
            if consumer.size + additional > share {
                let hit = match scope {
                    Scope::Job => format!("memory quota of job {job_id} hit"),
                    Scope::Tenant => format!("memory quota of tenant '{}' hit", limits.tenant),
                    Scope::Executor => "memory budget of this executor hit".to_string(),
                };
                return Some(st.describe(
                    scope,
                    &asked,
                    format!(
                        "{hit}: a spilling operator may hold {} ({what}, less {} held by operators that cannot spill and {} kept for one more of them, over {} spilling operator(s) of the job)",
                        human(share),
                        human(job.unspillable),
                        human(kept),
                        job.spillers.max(1)
                    ),
                ));
            }
        }
        let held_for_others = st.unclaimed_guarantees(self.reserve, Some(job_id));
        let free = self.budget.saturating_sub(st.reserved + held_for_others);
        if additional > free {
            return Some(st.describe(
                Scope::Executor,
                &asked,
                format!(
                    "memory budget of this executor hit: {} of its {} budget is reserved and {} more is guaranteed to {} other job(s)",
                    human(st.reserved),
                    human(self.budget),
                    human(held_for_others),
                    st.jobs_short_of_guarantee(self.reserve, job_id)
                ),
            ));
        }
        let guaranteed = self.reserve.min(limits.job_quota);
        if self.reserve > 0
            && job.reserved + additional > guaranteed
            && free - additional < self.reserve
        {
            return Some(st.describe(
                Scope::Executor,
                &asked,
                format!(
                    "memory budget of this executor hit: the job holds {} (more than the {} guaranteed to each job), and the last {} of the {} budget is kept for a job that starts later",
                    human(job.reserved),
                    human(guaranteed),
                    human(self.reserve),
                    human(self.budget)
                ),
            ));
        }
        None
    }
}

/// A reservation asking to grow.
struct Asked<'a> {
    consumer: &'a Consumer,
    additional: usize,
}

impl State {
    fn take(&mut self, id: usize, additional: usize) {
        let Some(consumer) = self.consumers.get_mut(&id) else {
            return;
        };
        consumer.size += additional;
        let (job_id, can_spill) = (consumer.task.job_id.clone(), consumer.can_spill);
        self.reserved += additional;
        self.peak = self.peak.max(self.reserved);
        if let Some(job) = self.jobs.get_mut(&job_id) {
            job.reserved += additional;
            job.peak = job.peak.max(job.reserved);
            if !can_spill {
                job.unspillable += additional;
                job.largest_unspillable = job.largest_unspillable.max(consumer.size);
            }
            if let Some(tenant) = self.tenants.get_mut(&job.limits.tenant) {
                tenant.reserved += additional;
            }
        }
    }

    fn release(&mut self, consumer: &Consumer, amount: usize) {
        self.release_of(&consumer.task.job_id, consumer.can_spill, amount);
    }

    fn release_of(&mut self, job_id: &JobId, can_spill: bool, amount: usize) {
        self.reserved = self.reserved.saturating_sub(amount);
        if let Some(job) = self.jobs.get_mut(job_id) {
            job.reserved = job.reserved.saturating_sub(amount);
            if !can_spill {
                job.unspillable = job.unspillable.saturating_sub(amount);
            }
            if let Some(tenant) = self.tenants.get_mut(&job.limits.tenant) {
                tenant.reserved = tenant.reserved.saturating_sub(amount);
            }
        }
    }

    /// Memory guaranteed to running jobs (other than `except`) that they
    /// have not reserved yet.
    fn unclaimed_guarantees(&self, reserve: usize, except: Option<&JobId>) -> usize {
        self.jobs
            .iter()
            .filter(|(id, _)| Some(*id) != except)
            .map(|(_, job)| {
                reserve
                    .min(job.limits.job_quota)
                    .saturating_sub(job.reserved)
            })
            .sum()
    }

    /// Jobs other than `except` that have not reserved all their guarantee.
    fn jobs_short_of_guarantee(&self, reserve: usize, except: &JobId) -> usize {
        self.jobs
            .iter()
            .filter(|(id, job)| *id != except && job.reserved < reserve.min(job.limits.job_quota))
            .count()
    }

    /// A job with no task and no consumer left is closed; its figures stay
    /// listed for a while.
    fn retire_if_idle(&mut self, job_id: &JobId) {
        let idle = self
            .jobs
            .get(job_id)
            .is_some_and(|job| job.tasks == 0 && job.consumers == 0);
        if !idle {
            return;
        }
        let Some(job) = self.jobs.remove(job_id) else {
            return;
        };
        let tenant_name = job.limits.tenant.clone();
        if let Some(tenant) = self.tenants.get_mut(&tenant_name) {
            tenant.jobs = tenant.jobs.saturating_sub(1);
            if tenant.jobs == 0 {
                self.tenants.remove(&tenant_name);
            }
        }
        self.ended.push(job.usage(job_id));
    }

    /// The full refusal: what hit which limit, who asked, and the largest
    /// consumers within that limit.
    fn describe(&self, scope: Scope, asked: &Asked<'_>, limit: String) -> String {
        let job_id = &asked.consumer.task.job_id;
        let tenant = self
            .jobs
            .get(job_id)
            .map(|j| j.limits.tenant.as_str())
            .unwrap_or_default();
        let in_scope = |c: &&Consumer| match scope {
            Scope::Job => &c.task.job_id == job_id,
            Scope::Tenant => self
                .jobs
                .get(&c.task.job_id)
                .is_some_and(|j| j.limits.tenant == tenant),
            Scope::Executor => true,
        };
        let mut top: Vec<&Consumer> = self
            .consumers
            .values()
            .filter(in_scope)
            .filter(|c| c.size > 0)
            .collect();
        top.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
        let listed: Vec<String> = top
            .iter()
            .take(TOP_CONSUMERS)
            .map(|c| format!("{} of task {} {}", c.name, c.task, human(c.size)))
            .collect();
        let largest = if listed.is_empty() {
            "none hold memory".to_string()
        } else {
            listed.join(", ")
        };
        format!(
            "{limit}; {} of task {} holds {} and asked for {} more; largest consumers: {largest}",
            asked.consumer.name,
            asked.consumer.task,
            human(asked.consumer.size),
            human(asked.additional)
        )
    }
}

impl JobAccount {
    fn usage(&self, job_id: &JobId) -> JobMemoryUsage {
        JobMemoryUsage {
            job_id: job_id.clone(),
            tenant: self.limits.tenant.clone(),
            reserved_bytes: self.reserved as u64,
            peak_bytes: self.peak as u64,
            quota_bytes: self.limits.job_quota as u64,
        }
    }
}

/// Bytes for people: `64.0 MiB`.
pub(crate) fn human(bytes: usize) -> String {
    const UNITS: [(&str, f64); 4] = [
        ("TiB", (1u64 << 40) as f64),
        ("GiB", (1u64 << 30) as f64),
        ("MiB", (1u64 << 20) as f64),
        ("KiB", 1024.0),
    ];
    let b = bytes as f64;
    for (unit, size) in UNITS {
        if b >= size {
            return format!("{:.1} {unit}", b / size);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballista::ids::StageId;

    const MIB: usize = 1 << 20;

    fn task(job: &JobId, partition: usize) -> TaskId {
        TaskId {
            job_id: job.clone(),
            stage_id: StageId(1),
            partition,
            attempt: 0,
        }
    }

    fn limits(tenant: &str, tenant_quota: usize, job_quota: usize) -> JobLimits {
        JobLimits {
            tenant: tenant.into(),
            tenant_quota,
            job_quota,
        }
    }

    #[test]
    fn job_quota_refusal_names_the_job_its_quota_and_the_largest_consumers() {
        let ledger = Ledger::new(100 * MIB, 0);
        let job = JobId::generate();
        let t = task(&job, 0);
        ledger.open_task(&t, limits("default", 100 * MIB, 10 * MIB));
        ledger.register(1, "HashJoinInput[0]", &t, false);
        ledger.try_grow(1, 8 * MIB).unwrap();
        let err = ledger.try_grow(1, 4 * MIB).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "memory quota of job {job} hit: the job holds 8.0 MiB of its 10.0 MiB quota"
            )),
            "{err}"
        );
        assert!(err.contains("HashJoinInput[0] of task"), "{err}");
        assert!(err.contains("asked for 4.0 MiB more"), "{err}");
        assert_eq!(ledger.refusal(&t).as_deref(), Some(err.as_str()));
        assert_eq!(ledger.usage().reserved_bytes, (8 * MIB) as u64);
    }

    #[test]
    fn spilling_consumers_of_a_job_share_its_quota_fairly() {
        let ledger = Ledger::new(100 * MIB, 0);
        let job = JobId::generate();
        let (a, b) = (task(&job, 0), task(&job, 1));
        ledger.open_task(&a, limits("default", 100 * MIB, 40 * MIB));
        ledger.open_task(&b, limits("default", 100 * MIB, 40 * MIB));
        ledger.register(1, "ExternalSorter[0]", &a, true);
        ledger.register(2, "ExternalSorter[1]", &b, true);
        ledger.try_grow(1, 20 * MIB).unwrap();
        let err = ledger.try_grow(1, MIB).unwrap_err();
        assert!(
            err.contains("a spilling operator may hold 20.0 MiB"),
            "{err}"
        );
        assert!(err.contains("quota of job"), "{err}");
        ledger.try_grow(2, 20 * MIB).unwrap();
        // Once the first spills (shrinks), its share is free again.
        ledger.shrink(1, 20 * MIB);
        ledger.try_grow(1, 10 * MIB).unwrap();
    }

    #[test]
    fn a_late_task_of_a_job_gets_its_merge_reservation_while_another_sorts() {
        // Task a sorts alone and spills within its share; task b of the same
        // job starts later and must get the same unspillable merge
        // reservation a got, without waiting for a to spill.
        let ledger = Ledger::new(512 * MIB, 0);
        let job = JobId::generate();
        let (a, b) = (task(&job, 0), task(&job, 1));
        let quota = limits("default", 512 * MIB, 48 * MIB);
        ledger.open_task(&a, quota.clone());
        ledger.register(1, "ExternalSorterMerge[0]", &a, false);
        ledger.register(2, "ExternalSorter[0]", &a, true);
        ledger.try_grow(1, 8 * MIB).unwrap();
        // The merge reservation is handed back before a spill's merge.
        ledger.shrink(1, 8 * MIB);
        let mut held = 0;
        while ledger.try_grow(2, MIB).is_ok() {
            held += MIB;
        }
        assert_eq!(held, 40 * MIB, "the sorter leaves room for one merge");
        ledger.open_task(&b, quota);
        ledger.register(3, "ExternalSorterMerge[1]", &b, false);
        ledger.register(4, "ExternalSorter[1]", &b, true);
        ledger.try_grow(3, 8 * MIB).unwrap();
        // a's next growth is refused, so it spills; its share is now half of
        // what is left after both merges and the room kept for one more.
        ledger.try_grow(2, MIB).unwrap_err();
        ledger.shrink(2, 40 * MIB);
        ledger.try_grow(2, 16 * MIB).unwrap();
        let err = ledger.try_grow(2, MIB).unwrap_err();
        assert!(
            err.contains("a spilling operator may hold 16.0 MiB")
                && err.contains("less 8.0 MiB held by operators that cannot spill and 8.0 MiB kept for one more of them, over 2 spilling operator(s)"),
            "{err}"
        );
    }

    #[test]
    fn a_tenant_quota_caps_the_sum_of_its_jobs() {
        let ledger = Ledger::new(100 * MIB, 0);
        let (j1, j2, j3) = (JobId::generate(), JobId::generate(), JobId::generate());
        let (t1, t2, t3) = (task(&j1, 0), task(&j2, 0), task(&j3, 0));
        ledger.open_task(&t1, limits("ana", 30 * MIB, 25 * MIB));
        ledger.open_task(&t2, limits("ana", 30 * MIB, 25 * MIB));
        ledger.open_task(&t3, limits("bob", 100 * MIB, 25 * MIB));
        ledger.register(1, "HashJoinInput[0]", &t1, false);
        ledger.register(2, "HashJoinInput[0]", &t2, false);
        ledger.register(3, "HashJoinInput[0]", &t3, false);
        ledger.try_grow(1, 20 * MIB).unwrap();
        let err = ledger.try_grow(2, 20 * MIB).unwrap_err();
        assert!(
            err.starts_with(
                "memory quota of tenant 'ana' hit: its 2 job(s) hold 20.0 MiB of its 30.0 MiB quota"
            ),
            "{err}"
        );
        ledger.try_grow(2, 10 * MIB).unwrap();
        // Another tenant is not affected.
        ledger.try_grow(3, 20 * MIB).unwrap();
    }

    #[test]
    fn a_job_cannot_take_memory_guaranteed_to_another() {
        let ledger = Ledger::new(100 * MIB, 20 * MIB);
        let (heavy, light) = (JobId::generate(), JobId::generate());
        let h = task(&heavy, 0);
        ledger.open_task(&h, limits("default", 100 * MIB, 100 * MIB));
        ledger.register(1, "HashJoinInput[0]", &h, false);
        // Alone, the heavy job may use all but one job's guarantee.
        ledger.try_grow(1, 80 * MIB).unwrap();
        let err = ledger.try_grow(1, MIB).unwrap_err();
        assert!(err.contains("kept for a job that starts later"), "{err}");
        assert_eq!(ledger.usage().available_bytes, (20 * MIB) as u64);
        // The light job arrives and gets its guarantee at once.
        let l = task(&light, 0);
        ledger.open_task(&l, limits("default", 100 * MIB, 100 * MIB));
        ledger.register(2, "GroupedHashAggregateStream[0]", &l, false);
        ledger.try_grow(2, 20 * MIB).unwrap();
        let err = ledger.try_grow(2, MIB).unwrap_err();
        assert!(
            err.starts_with("memory budget of this executor hit"),
            "{err}"
        );
        assert_eq!(ledger.usage().available_bytes, 0);
        // The heavy job frees some; it may not take back what the light job
        // is guaranteed, and the light one may grow beyond its guarantee
        // only while a newcomer's share stays free.
        ledger.shrink(1, 40 * MIB);
        ledger.try_grow(2, 10 * MIB).unwrap();
        assert!(ledger.try_grow(2, 11 * MIB).is_err());
    }

    #[test]
    fn figures_follow_tasks_and_an_ended_job_keeps_its_peak() {
        let ledger = Ledger::new(100 * MIB, 10 * MIB);
        let job = JobId::generate();
        let t = task(&job, 0);
        ledger.open_task(&t, limits("ana", 100 * MIB, 50 * MIB));
        assert_eq!(ledger.usage().available_bytes, (90 * MIB) as u64);
        ledger.register(1, "ExternalSorter[0]", &t, true);
        ledger.try_grow(1, 30 * MIB).unwrap();
        ledger.shrink(1, 30 * MIB);
        ledger.unregister(1);
        ledger.close_task(&t);
        ledger.close_task(&t);
        let usage = ledger.usage();
        assert_eq!(usage.reserved_bytes, 0);
        assert_eq!(usage.peak_bytes, (30 * MIB) as u64);
        assert_eq!(usage.available_bytes, (100 * MIB) as u64);
        let jobs = ledger.job_usage();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].peak_bytes, (30 * MIB) as u64);
        assert_eq!(jobs[0].tenant, "ana");
        assert_eq!(jobs[0].quota_bytes, (50 * MIB) as u64);
        assert_eq!(ledger.refusal(&t), None);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 * MIB / 2), "1.5 MiB");
    }
}
