//! `[memory] kind = "quota"` options, and the byte figures they resolve to
//! against one executor's budget.

use std::collections::BTreeMap;

use ballista::config::MemoryAmount;
use ballista::plugin::registry::PluginContext;
use ballista::schemars::JsonSchema;
use ballista::serde::Deserialize;
use ballista::{BallistaError, Result};

/// The tenant of a job whose session names none.
pub const DEFAULT_TENANT: &str = "default";

/// Options of `[memory] kind = "quota"`. Sizes are bytes (`"512MiB"`) or a
/// percentage of the executor's budget (`"25%"`); the budget itself is
/// `executor.memory_limit`. Every quota applies per executor.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(crate = "ballista::serde", default, deny_unknown_fields)]
#[schemars(crate = "ballista::schemars")]
pub struct QuotaOptions {
    /// Most one job's tasks may hold together on an executor. A session can
    /// lower it for its own jobs with `SET ballista.memory_quota`.
    pub job_quota: MemoryAmount,
    /// Memory guaranteed to each job running on an executor: other jobs
    /// cannot take it, and while a job holds more than this, the executor
    /// keeps that much free for a job that starts later. The scheduler
    /// places a task of a job new to an executor only where that much is
    /// free. At most 50% of the budget; `0` guarantees nothing.
    pub job_reserve: MemoryAmount,
    /// Most all jobs of one tenant may hold together on an executor, for
    /// tenants without an entry in `tenants`. A job's tenant is its session
    /// setting `ballista.tenant` (`default` when unset).
    pub tenant_quota: MemoryAmount,
    /// Quotas of named tenants: `[memory.tenants.<name>]` with `quota` and
    /// `job_quota`, each defaulting to the values above.
    pub tenants: BTreeMap<String, TenantOptions>,
}

impl Default for QuotaOptions {
    fn default() -> Self {
        Self {
            job_quota: MemoryAmount::Fraction(1.0),
            job_reserve: MemoryAmount::Fraction(0.1),
            tenant_quota: MemoryAmount::Fraction(1.0),
            tenants: BTreeMap::new(),
        }
    }
}

/// Quotas of one named tenant.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(crate = "ballista::serde", default, deny_unknown_fields)]
#[schemars(crate = "ballista::schemars")]
pub struct TenantOptions {
    /// Most the tenant's jobs may hold together on an executor (default:
    /// `tenant_quota`).
    pub quota: Option<MemoryAmount>,
    /// Most one of the tenant's jobs may hold on an executor (default:
    /// `job_quota`).
    pub job_quota: Option<MemoryAmount>,
}

/// Quotas in bytes for one executor; what [`QuotaMemoryManager`]
/// (crate::QuotaMemoryManager) is built from, in code or from options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaLimits {
    /// What the executor's tasks may reserve together.
    pub budget: usize,
    /// Most one job may hold.
    pub job_quota: usize,
    /// Guaranteed to each running job.
    pub job_reserve: usize,
    /// Most one tenant's jobs may hold together.
    pub tenant_quota: usize,
    /// Named tenants: (tenant quota, job quota).
    pub tenants: BTreeMap<String, TenantLimits>,
}

/// Quotas of one named tenant, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantLimits {
    /// Most its jobs may hold together.
    pub quota: usize,
    /// Most one of its jobs may hold.
    pub job_quota: usize,
}

impl QuotaLimits {
    /// Limits with one quota for every job and tenant and no guarantee.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            job_quota: budget,
            job_reserve: 0,
            tenant_quota: budget,
            tenants: BTreeMap::new(),
        }
    }

    /// The tenant quota and job quota a job of `tenant` runs under.
    pub fn for_tenant(&self, tenant: &str) -> TenantLimits {
        self.tenants.get(tenant).copied().unwrap_or(TenantLimits {
            quota: self.tenant_quota,
            job_quota: self.job_quota,
        })
    }

    /// Checks that the figures make sense together; `key` names the option
    /// at fault.
    pub fn check(&self) -> std::result::Result<(), (String, String)> {
        if self.budget == 0 {
            return Err(("budget".into(), "must be positive".into()));
        }
        if self.job_reserve > self.budget / 2 {
            return Err((
                "job_reserve".into(),
                format!(
                    "is more than half of the executor's budget ({} bytes): a job alone could not use its own guarantee",
                    self.budget
                ),
            ));
        }
        if self.job_quota == 0 {
            return Err(("job_quota".into(), "must be positive".into()));
        }
        if self.tenant_quota == 0 {
            return Err(("tenant_quota".into(), "must be positive".into()));
        }
        for (name, tenant) in &self.tenants {
            if tenant.quota == 0 {
                return Err((format!("tenants.{name}.quota"), "must be positive".into()));
            }
            if tenant.job_quota == 0 {
                return Err((
                    format!("tenants.{name}.job_quota"),
                    "must be positive".into(),
                ));
            }
        }
        Ok(())
    }
}

impl QuotaOptions {
    /// The options in bytes for an executor whose budget is `budget`; a bad
    /// value is a configuration error naming its key.
    pub fn resolve(&self, budget: u64, context: &PluginContext<'_>) -> Result<QuotaLimits> {
        let of = |amount: MemoryAmount| amount.of(budget).min(budget) as usize;
        let mut tenants = BTreeMap::new();
        for (name, options) in &self.tenants {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
            {
                return Err(context.invalid_option(
                    "tenants",
                    Some(name),
                    "a tenant name must be letters, digits, '-', '_', '.' or '@'",
                ));
            }
            tenants.insert(
                name.clone(),
                TenantLimits {
                    quota: of(options.quota.unwrap_or(self.tenant_quota)),
                    job_quota: of(options.job_quota.unwrap_or(self.job_quota)),
                },
            );
        }
        let limits = QuotaLimits {
            budget: budget as usize,
            job_quota: of(self.job_quota),
            job_reserve: of(self.job_reserve),
            tenant_quota: of(self.tenant_quota),
            tenants,
        };
        limits.check().map_err(|(key, problem)| {
            let value = self.value_of(&key);
            match value {
                Some(v) => context.invalid_option(&key, Some(&v), problem),
                None => BallistaError::Configuration(format!(
                    "{}.{key}: {problem} (executor.memory_limit gives a budget of {budget} bytes)",
                    context.key_path
                )),
            }
        })?;
        Ok(limits)
    }

    fn value_of(&self, key: &str) -> Option<String> {
        let amount = match key {
            "job_quota" => Some(self.job_quota),
            "job_reserve" => Some(self.job_reserve),
            "tenant_quota" => Some(self.tenant_quota),
            _ => {
                let rest = key.strip_prefix("tenants.")?;
                let (name, field) = rest.rsplit_once('.')?;
                let tenant = self.tenants.get(name)?;
                match field {
                    "quota" => tenant.quota,
                    "job_quota" => tenant.job_quota,
                    _ => None,
                }
            }
        };
        amount.map(|a| a.to_string())
    }
}
