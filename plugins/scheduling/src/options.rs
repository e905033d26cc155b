//! `[scheduling] kind = "priority" | "fair"` options: the pools, their
//! weights and limits, and the aging rate.

use std::collections::BTreeMap;

use ballista::plugin::registry::PluginContext;
use ballista::schemars::JsonSchema;
use ballista::serde::Deserialize;
use ballista::{BallistaError, Result};

/// The pool of a job whose session names none. It exists even when not
/// configured (weight 1, no limits).
pub const DEFAULT_POOL: &str = "default";

/// Options shared by the `priority` and `fair` kinds.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(crate = "ballista::serde", default, deny_unknown_fields)]
#[schemars(crate = "ballista::schemars")]
pub struct PoolSchedulingOptions {
    /// Priority points a job gains per second since its submission (waiting
    /// or running), so that a low-priority job is never starved: a job of
    /// priority 0 overtakes jobs of priority 10 submitted more than
    /// 10 / rate seconds after it. 0 disables aging (and starvation
    /// becomes possible).
    pub aging_per_second: f64,
    /// Pools: `[scheduling.pools.<name>]` with `weight` (fair; default 1),
    /// `min_share` (fair; slots, default 0), `mode` (fair; `fifo` or
    /// `priority` inside the pool), `default_priority` (0),
    /// `max_running_jobs` and `max_queued_jobs` (unset: no limit). A job
    /// names its pool with `SET ballista.pool = '<name>'`; without it the job
    /// goes to `default`, which exists even when not configured.
    pub pools: BTreeMap<String, PoolOptions>,
}

impl Default for PoolSchedulingOptions {
    fn default() -> Self {
        Self {
            aging_per_second: 0.1,
            pools: BTreeMap::new(),
        }
    }
}

/// One pool.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(crate = "ballista::serde", default, deny_unknown_fields)]
#[schemars(crate = "ballista::schemars")]
pub struct PoolOptions {
    /// `fair`: the pool's share of the slots relative to the other pools
    /// (a pool of weight 2 gets twice the slots of a pool of weight 1 when
    /// both have work).
    pub weight: f64,
    /// `fair`: slots the pool gets before weights are considered, when it
    /// has work.
    pub min_share: usize,
    /// `fair`: order of the jobs inside the pool: `fifo` (submission order)
    /// or `priority` (highest first, with aging).
    pub mode: PoolMode,
    /// Priority of the pool's jobs whose session sets none
    /// (`SET ballista.priority = 10`).
    pub default_priority: i64,
    /// Jobs of the pool that may run at once; later ones are queued.
    /// Unset: no limit.
    pub max_running_jobs: Option<usize>,
    /// Jobs of the pool that may wait in its queue; a job beyond it is
    /// refused at submission. Unset: no limit.
    pub max_queued_jobs: Option<usize>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            weight: 1.0,
            min_share: 0,
            mode: PoolMode::Fifo,
            default_priority: 0,
            max_running_jobs: None,
            max_queued_jobs: None,
        }
    }
}

/// Order of the jobs inside a pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(crate = "ballista::serde", rename_all = "lowercase")]
#[schemars(crate = "ballista::schemars")]
pub enum PoolMode {
    /// Submission order.
    #[default]
    Fifo,
    /// Highest (aged) priority first, then submission order.
    Priority,
}

impl PoolSchedulingOptions {
    /// Checks the options; a bad value is a configuration error naming its
    /// key. The `default` pool is added when not configured.
    pub fn validated(mut self, context: &PluginContext<'_>) -> Result<Self> {
        if !self.aging_per_second.is_finite() || self.aging_per_second < 0.0 {
            return Err(context.invalid_option(
                "aging_per_second",
                Some(&self.aging_per_second),
                "expected a number of priority points per second, 0 or more",
            ));
        }
        for (name, pool) in &self.pools {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(context.invalid_option(
                    "pools",
                    Some(name),
                    "a pool name must be letters, digits, '-', '_' or '.'",
                ));
            }
            if !pool.weight.is_finite() || pool.weight <= 0.0 {
                return Err(context.invalid_option(
                    &format!("pools.{name}.weight"),
                    Some(&pool.weight),
                    "expected a positive number",
                ));
            }
            if pool.max_running_jobs == Some(0) {
                return Err(BallistaError::Configuration(format!(
                    "{}.pools.{name}.max_running_jobs = 0: expected at least 1 (leave it unset for no limit)",
                    context.key_path
                )));
            }
        }
        self.pools.entry(DEFAULT_POOL.to_string()).or_default();
        Ok(self)
    }
}
