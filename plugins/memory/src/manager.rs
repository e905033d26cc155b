//! [`QuotaMemoryManager`]: the executor side of the plugin.

use std::sync::Arc;

use ballista::Result;
use ballista::config::{memory_quota_of, tenant_of};
use ballista::datafusion::execution::memory_pool::MemoryPool;
use ballista::ids::TaskId;
use ballista::plugin::memory::{JobMemoryUsage, MemoryManager, MemoryUsage, TaskMemoryRequest};

use crate::ledger::{JobLimits, Ledger};
use crate::options::{DEFAULT_TENANT, QuotaLimits};
use crate::pool::TaskPool;

/// Gives each task a pool that draws on the executor's budget under its
/// job's and its tenant's quotas.
///
/// - A job may hold at most its job quota (lowered per session with
///   `ballista.memory_quota`), and all jobs of one tenant (`ballista.tenant`)
///   at most the tenant quota, on this executor.
/// - Each running job is guaranteed `job_reserve`: no other job can take it,
///   and a job holding more than that leaves `job_reserve` free for a job
///   that starts later. Memory above the guarantees goes to whoever asks,
///   except that operators able to spill get at most a fair share (of the
///   job's quota among its spilling operators, of the tenant's quota among
///   its running jobs, and of the budget among the running jobs) so that
///   they spill before anyone has to fail.
/// - A refused reservation names the quota that was hit, its size, and the
///   largest consumers within it.
#[derive(Debug)]
pub struct QuotaMemoryManager {
    limits: QuotaLimits,
    ledger: Arc<Ledger>,
}

impl QuotaMemoryManager {
    /// A manager for one executor. Fails when the limits do not fit
    /// together (see [`QuotaLimits::check`]).
    pub fn new(limits: QuotaLimits) -> std::result::Result<Self, String> {
        limits
            .check()
            .map_err(|(key, problem)| format!("{key} {problem}"))?;
        Ok(Self {
            ledger: Arc::new(Ledger::new(limits.budget, limits.job_reserve)),
            limits,
        })
    }

    /// The limits it enforces.
    pub fn limits(&self) -> &QuotaLimits {
        &self.limits
    }
}

impl MemoryManager for QuotaMemoryManager {
    fn task_pool(&self, request: &TaskMemoryRequest<'_>) -> Result<Arc<dyn MemoryPool>> {
        let tenant = tenant_of(request.settings).unwrap_or(DEFAULT_TENANT);
        let tenant_limits = self.limits.for_tenant(tenant);
        let job_quota = match memory_quota_of(request.settings)? {
            Some(asked) => tenant_limits.job_quota.min(asked.bytes() as usize),
            None => tenant_limits.job_quota,
        };
        self.ledger.open_task(
            request.task,
            JobLimits {
                tenant: tenant.to_string(),
                tenant_quota: tenant_limits.quota,
                job_quota,
            },
        );
        Ok(Arc::new(TaskPool {
            ledger: Arc::clone(&self.ledger),
            task: request.task.clone(),
            limit: job_quota.min(self.ledger.budget()),
        }))
    }

    fn task_finished(&self, task: &TaskId) {
        self.ledger.close_task(task);
    }

    fn usage(&self) -> MemoryUsage {
        self.ledger.usage()
    }

    fn job_usage(&self) -> Vec<JobMemoryUsage> {
        self.ledger.job_usage()
    }

    fn refusal(&self, task: &TaskId) -> Option<String> {
        self.ledger.refusal(task)
    }
}
