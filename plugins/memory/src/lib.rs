//! `ballista-memory`: quota-based memory pools per executor, job and tenant.
//!
//! Selected with `[memory] kind = "quota"`. Every task runs under a
//! DataFusion [`MemoryPool`](ballista::datafusion::execution::memory_pool::MemoryPool)
//! that draws on its executor's budget (`executor.memory_limit`, a size or a
//! percentage of the host's or cgroup's memory) under three limits:
//!
//! ```toml
//! [executor]
//! memory_limit = "8GiB"
//!
//! [memory]
//! kind = "quota"
//! job_quota = "50%"      # most one job may hold on an executor
//! job_reserve = "10%"    # guaranteed to each running job
//! tenant_quota = "75%"   # most one tenant's jobs may hold together
//!
//! [memory.tenants.etl]
//! quota = "25%"
//! job_quota = "1GiB"
//! ```
//!
//! A job's tenant is its session setting `ballista.tenant`; a session can
//! lower its own job quota with `ballista.memory_quota` and forbid spilling
//! with `ballista.spill_to_disk = false`.
//!
//! It is DataFusion's own accounting: operators reserve through
//! `MemoryReservation`s, and those that can spill (sort, aggregate) spill
//! when a reservation is refused. Spilling operators get fair shares, so one
//! of them cannot starve another into failing. A refusal names the quota that
//! was hit, e.g.
//!
//! ```text
//! memory quota of job 5f0c… hit: the job holds 60.0 MiB of its 64.0 MiB quota on this
//! executor; HashJoinInput[0] of task 5f0c…/3/1#0 holds 60.0 MiB and asked for 8.0 MiB more;
//! largest consumers: HashJoinInput[0] of task 5f0c…/3/1#0 60.0 MiB
//! ```
//!
//! Executors report budget, reserved, peak and per-job figures in their
//! heartbeats; the scheduler shows them in job status and does not place a
//! task of a job new to an executor where less than `job_reserve` is free.
//!
//! Custom binaries can skip the TOML and build the manager in code:
//!
//! ```
//! use std::sync::Arc;
//! use ballista::config::BallistaConfig;
//! use ballista_memory::{QuotaLimits, QuotaMemoryManager};
//!
//! let mut limits = QuotaLimits::new(4 << 30);
//! limits.job_quota = 1 << 30;
//! limits.job_reserve = 256 << 20;
//! let manager = QuotaMemoryManager::new(limits).expect("limits fit together");
//! let config = BallistaConfig::builder().memory_manager(Arc::new(manager)).build();
//! # let _ = config;
//! ```

#![warn(missing_docs)]

mod ledger;
mod manager;
mod options;
mod pool;

use std::sync::Arc;

use ballista::plugin::registry::PluginRegistry;

pub use manager::QuotaMemoryManager;
pub use options::{DEFAULT_TENANT, QuotaLimits, QuotaOptions, TenantLimits, TenantOptions};

/// The name TOML selects this plugin by.
pub const KIND: &str = "quota";

/// Adds `[memory] kind = "quota"` to a registry.
pub fn register(registry: &mut PluginRegistry) {
    registry.register_memory(
        KIND,
        "Per-executor budget (executor.memory_limit) shared under job and tenant quotas, with a memory guarantee per running job and fair shares for spilling operators.",
        |options: QuotaOptions, context| {
            let budget = context.settings.executor.memory_budget_bytes();
            let limits = options.resolve(budget, context)?;
            let manager = QuotaMemoryManager::new(limits)
                .map_err(|e| ballista::BallistaError::Configuration(format!("{}: {e}", context.key_path)))?;
            Ok(Arc::new(manager) as Arc<dyn ballista::plugin::memory::MemoryManager>)
        },
    );
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ballista::BallistaError;
    use ballista::config::BallistaSettings;
    use ballista::datafusion::execution::memory_pool::MemoryConsumer;
    use ballista::ids::{JobId, StageId, TaskId};
    use ballista::plugin::memory::{MemoryManager, TaskMemoryRequest};

    use super::*;

    const MIB: u64 = 1 << 20;

    fn registry() -> PluginRegistry {
        let mut registry = PluginRegistry::with_builtins();
        register(&mut registry);
        registry
    }

    fn manager(toml_text: &str) -> ballista::Result<Arc<dyn MemoryManager>> {
        let settings: BallistaSettings = toml::from_str(toml_text).expect("valid TOML");
        registry().memory_manager(&settings)
    }

    fn error_of(toml_text: &str) -> String {
        match manager(toml_text) {
            Ok(_) => panic!("expected {toml_text:?} to be refused"),
            Err(BallistaError::Configuration(message)) => message,
            Err(other) => panic!("expected a configuration error, got {other:?}"),
        }
    }

    fn task() -> TaskId {
        TaskId {
            job_id: JobId::generate(),
            stage_id: StageId(1),
            partition: 0,
            attempt: 0,
        }
    }

    /// Grows a fresh unspillable consumer of a new task by `bytes`.
    fn reserve(
        manager: &Arc<dyn MemoryManager>,
        settings: &[(&str, &str)],
        bytes: u64,
    ) -> (TaskId, Result<(), String>) {
        let task = task();
        let settings: HashMap<String, String> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let pool = manager
            .task_pool(&TaskMemoryRequest {
                task: &task,
                settings: &settings,
            })
            .expect("pool");
        let reservation = MemoryConsumer::new("HashJoinInput[0]").register(&pool);
        let result = reservation
            .try_grow(bytes as usize)
            .map_err(|e| e.strip_backtrace());
        std::mem::forget(reservation);
        (task, result)
    }

    const BASE: &str = "[executor]\nmemory_limit = \"1GiB\"\n[memory]\nkind = \"quota\"\n";

    #[test]
    fn options_resolve_against_the_executor_budget() {
        let manager = manager(&format!(
            "{BASE}job_quota = \"25%\"\njob_reserve = \"64MiB\"\n[memory.tenants.etl]\nquota = \"50%\"\njob_quota = \"100MiB\"\n"
        ))
        .unwrap();
        let usage = manager.usage();
        assert_eq!(usage.budget_bytes, 1 << 30);
        assert_eq!(usage.task_min_bytes, 64 * MIB);
        let (_, refused) = reserve(&manager, &[], 300 * MIB);
        let err = refused.unwrap_err();
        assert!(err.contains("of its 256.0 MiB quota"), "{err}");
        let (_, refused) = reserve(&manager, &[("ballista.tenant", "etl")], 120 * MIB);
        let err = refused.unwrap_err();
        assert!(err.contains("of its 100.0 MiB quota"), "{err}");
    }

    #[test]
    fn a_session_can_lower_its_job_quota_but_not_raise_it() {
        let manager = manager(&format!("{BASE}job_quota = \"256MiB\"\n")).unwrap();
        let (_, refused) = reserve(&manager, &[("ballista.memory_quota", "1MiB")], 2 * MIB);
        let err = refused.unwrap_err();
        assert!(err.contains("of its 1.0 MiB quota"), "{err}");
        let (granted_task, granted) =
            reserve(&manager, &[("ballista.memory_quota", "100GiB")], 2 * MIB);
        granted.unwrap();
        let job = manager
            .job_usage()
            .into_iter()
            .find(|j| j.job_id == granted_task.job_id)
            .unwrap();
        assert_eq!(job.quota_bytes, 256 * MIB);
        assert_eq!(job.tenant, DEFAULT_TENANT);
        let settings = HashMap::from([("ballista.memory_quota".to_string(), "lots".to_string())]);
        let bad = manager.task_pool(&TaskMemoryRequest {
            task: &task(),
            settings: &settings,
        });
        let err = bad.unwrap_err().to_string();
        assert!(err.contains("ballista.memory_quota"), "{err}");
    }

    #[test]
    fn bad_options_are_refused_naming_the_key() {
        let err = error_of(&format!("{BASE}job_reserve = \"60%\"\n"));
        assert!(
            err.starts_with("memory.job_reserve = \"60%\": is more than half"),
            "{err}"
        );
        let err = error_of(&format!("{BASE}job_quota = \"lots\"\n"));
        assert!(err.starts_with("memory.job_quota"), "{err}");
        assert!(err.contains("invalid byte size \"lots\""), "{err}");
        let err = error_of(&format!("{BASE}job_quota = \"0\"\n"));
        assert!(
            err.starts_with("memory.job_quota = \"0B\": must be positive"),
            "{err}"
        );
        let err = error_of(&format!(
            "{BASE}[memory.tenants.\"a b\"]\nquota = \"1GiB\"\n"
        ));
        assert!(err.starts_with("memory.tenants = \"a b\""), "{err}");
        let err = error_of(&format!("{BASE}[memory.tenants.etl]\nquotaa = \"1GiB\"\n"));
        assert!(err.contains("unknown field `quotaa`"), "{err}");
    }
}
