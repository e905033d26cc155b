//! `ballista-scheduling`: strict priority with aging, weighted-fair pools
//! and admission control per pool.
//!
//! Two kinds, configured the same way:
//!
//! ```toml
//! [scheduling]
//! kind = "fair"              # or "priority"
//! aging_per_second = 0.1     # priority points a waiting job gains per second
//!
//! [scheduling.pools.etl]
//! weight = 2                 # fair: twice the slots of a weight-1 pool
//! min_share = 4              # fair: slots it gets first, when it has work
//! mode = "priority"          # fair: order inside the pool (fifo | priority)
//! default_priority = 0       # for jobs that set none
//! max_running_jobs = 4       # later jobs are queued
//! max_queued_jobs = 20       # beyond this a submission is refused
//! ```
//!
//! - `priority`: one queue for the cluster; runnable tasks of the job with
//!   the highest priority go first, then submission order. A job gains
//!   `aging_per_second` points per second since its submission, so with a
//!   positive rate none is starved.
//! - `fair`: Spark FAIR semantics across pools: a pool below its
//!   `min_share` goes first, otherwise the pool with the fewest running
//!   tasks per unit of `weight`; inside a pool, `fifo` or `priority`.
//!
//! A job chooses its pool and priority with session settings
//! (`SET ballista.pool = 'etl'`, `SET ballista.priority = 10`); without a
//! pool it goes to `default`, which always exists (weight 1, no limits,
//! unless configured). Both kinds apply the pools' `max_running_jobs` and
//! `max_queued_jobs` at admission: a queued job's status says why it waits
//! and its place in the pool's queue; a job beyond the queue limit is
//! refused with the pool's figures. An unknown pool is refused by name.

#![warn(missing_docs)]

mod options;
mod policy;

use std::sync::Arc;

use ballista::plugin::registry::PluginRegistry;
use ballista::plugin::scheduling::TaskSchedulingPolicy;

pub use options::{DEFAULT_POOL, PoolMode, PoolOptions, PoolSchedulingOptions};
pub use policy::{PoolPolicy, Strategy};

/// Adds `[scheduling] kind = "priority"` and `kind = "fair"` to a registry.
pub fn register(registry: &mut PluginRegistry) {
    registry.register_scheduling(
        "priority",
        "Highest-priority job first (ballista.priority, aged while waiting so none starves), then submission order; per-pool admission limits.",
        |options: PoolSchedulingOptions, context| {
            let options = options.validated(context)?;
            Ok(Arc::new(PoolPolicy::new(Strategy::Priority, options))
                as Arc<dyn TaskSchedulingPolicy>)
        },
    );
    registry.register_scheduling(
        "fair",
        "Weighted-fair pools (ballista.pool) with Spark FAIR semantics (weight, min_share), fifo or priority inside a pool; per-pool admission limits.",
        |options: PoolSchedulingOptions, context| {
            let options = options.validated(context)?;
            Ok(Arc::new(PoolPolicy::new(Strategy::Fair, options))
                as Arc<dyn TaskSchedulingPolicy>)
        },
    );
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ballista::BallistaError;
    use ballista::config::BallistaSettings;
    use ballista::ids::{ExecutorId, JobId, StageId};
    use ballista::plugin::scheduling::{
        Admission, ExecutorSlots, ExistingJob, JobSubmission, PendingTask, SchedulableJob,
    };
    use ballista::util::now_ms;

    use super::*;

    fn policy(toml_text: &str) -> ballista::Result<Arc<dyn TaskSchedulingPolicy>> {
        let settings: BallistaSettings = toml::from_str(toml_text).expect("valid TOML");
        let mut registry = PluginRegistry::with_builtins();
        register(&mut registry);
        registry.scheduling_policy(&settings)
    }

    fn settings(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tasks(n: usize) -> Vec<PendingTask> {
        (0..n)
            .map(|partition| PendingTask {
                stage_id: StageId(1),
                partition,
            })
            .collect()
    }

    fn slots(n: usize) -> Vec<ExecutorSlots> {
        vec![ExecutorSlots {
            executor_id: ExecutorId::new("e1"),
            free_slots: n,
        }]
    }

    #[test]
    fn priority_serves_the_highest_first_and_aging_lifts_a_waiting_job() {
        let policy = policy("[scheduling]\nkind = \"priority\"\naging_per_second = 1.0\n").unwrap();
        let (low, high) = (JobId::generate(), JobId::generate());
        let (low_s, high_s) = (
            settings(&[("ballista.priority", "0")]),
            settings(&[("ballista.priority", "10")]),
        );
        let (low_t, high_t) = (tasks(3), tasks(3));
        let now = now_ms();
        let jobs = |low_submitted: u64| {
            vec![
                SchedulableJob {
                    job_id: &low,
                    submission_seq: 1,
                    submitted_at_ms: low_submitted,
                    settings: &low_s,
                    running_tasks: 2,
                    pending_tasks: &low_t,
                    planning: false,
                },
                SchedulableJob {
                    job_id: &high,
                    submission_seq: 2,
                    submitted_at_ms: now,
                    settings: &high_s,
                    running_tasks: 0,
                    pending_tasks: &high_t,
                    planning: false,
                },
            ]
        };
        let order: Vec<JobId> = policy
            .assign(&jobs(now), &slots(4))
            .into_iter()
            .map(|a| a.job_id)
            .collect();
        assert_eq!(
            order,
            vec![high.clone(), high.clone(), high.clone(), low.clone()]
        );
        // Waiting 11 s at one point a second puts the low job above 10.
        let order: Vec<JobId> = policy
            .assign(&jobs(now - 11_000), &slots(4))
            .into_iter()
            .map(|a| a.job_id)
            .collect();
        assert_eq!(order, vec![low.clone(), low.clone(), low, high]);
    }

    #[test]
    fn fair_pools_share_slots_by_weight_after_min_shares() {
        let policy = policy(
            "[scheduling]\nkind = \"fair\"\n[scheduling.pools.a]\nweight = 2\n[scheduling.pools.b]\nweight = 1\n[scheduling.pools.c]\nmin_share = 2\nweight = 0.1\n",
        )
        .unwrap();
        let (a, b, c) = (JobId::generate(), JobId::generate(), JobId::generate());
        let (sa, sb, sc) = (
            settings(&[("ballista.pool", "a")]),
            settings(&[("ballista.pool", "b")]),
            settings(&[("ballista.pool", "c")]),
        );
        let (ta, tb, tc) = (tasks(20), tasks(20), tasks(20));
        let job = |id, s, t| SchedulableJob {
            job_id: id,
            submission_seq: 0,
            submitted_at_ms: 0,
            settings: s,
            running_tasks: 0,
            pending_tasks: t,
            planning: false,
        };
        let jobs = vec![job(&a, &sa, &ta), job(&b, &sb, &tb), job(&c, &sc, &tc)];
        let out = policy.assign(&jobs, &slots(11));
        let count = |id: &JobId| out.iter().filter(|x| &x.job_id == id).count();
        // c gets its min share of 2 first; the other 9 go 2:1 (c, weight 0.1,
        // running 2, is then far above a and b per unit of weight).
        assert_eq!((count(&a), count(&b), count(&c)), (6, 3, 2));
    }

    #[test]
    fn admission_queues_then_refuses_beyond_the_pool_limits() {
        let policy = policy(
            "[scheduling]\nkind = \"fair\"\n[scheduling.pools.etl]\nmax_running_jobs = 1\nmax_queued_jobs = 1\n",
        )
        .unwrap();
        let etl = settings(&[("ballista.pool", "etl")]);
        let (running, queued, new) = (JobId::generate(), JobId::generate(), JobId::generate());
        let admit = |job_id: &JobId, seq: u64, others: &[ExistingJob<'_>]| {
            policy.admit(&JobSubmission {
                job_id,
                settings: &etl,
                submission_seq: seq,
                running_jobs: others.iter().filter(|j| !j.queued).count(),
                others,
            })
        };
        assert_eq!(admit(&running, 1, &[]), Admission::Run);
        let first = [ExistingJob {
            job_id: &running,
            settings: &etl,
            submission_seq: 1,
            queued: false,
        }];
        match admit(&queued, 2, &first) {
            Admission::Queue { reason } => assert!(
                reason.contains("scheduling pool 'etl' runs its limit of 1 job(s)"),
                "{reason}"
            ),
            other => panic!("expected a queue, got {other:?}"),
        }
        let both = [
            first[0].clone(),
            ExistingJob {
                job_id: &queued,
                settings: &etl,
                submission_seq: 2,
                queued: true,
            },
        ];
        match admit(&new, 3, &both) {
            Admission::Reject { reason } => assert!(
                reason.contains("scheduling pool 'etl' is full")
                    && reason.contains("max_queued_jobs = 1"),
                "{reason}"
            ),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // An unknown pool and a bad priority are refused by name.
        let unknown = settings(&[("ballista.pool", "nope")]);
        match policy.admit(&JobSubmission {
            job_id: &new,
            settings: &unknown,
            submission_seq: 4,
            running_jobs: 0,
            others: &[],
        }) {
            Admission::Reject { reason } => {
                assert!(
                    reason.contains("unknown scheduling pool 'nope'"),
                    "{reason}"
                );
                assert!(reason.contains("default, etl"), "{reason}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn bad_options_are_refused_naming_the_key() {
        let error_of = |toml_text: &str| match policy(toml_text) {
            Err(BallistaError::Configuration(m)) => m,
            other => panic!("expected a configuration error, got {other:?}"),
        };
        let err = error_of("[scheduling]\nkind = \"fair\"\n[scheduling.pools.a]\nweight = 0\n");
        assert!(err.starts_with("scheduling.pools.a.weight = 0.0"), "{err}");
        let err =
            error_of("[scheduling]\nkind = \"fair\"\n[scheduling.pools.a]\nmode = \"lifo\"\n");
        assert!(err.contains("unknown variant `lifo`"), "{err}");
        let err = error_of("[scheduling]\nkind = \"priority\"\naging_per_second = -1\n");
        assert!(err.starts_with("scheduling.aging_per_second"), "{err}");
        let err =
            error_of("[scheduling]\nkind = \"fair\"\n[scheduling.pools.a]\nmax_running_jobs = 0\n");
        assert!(err.contains("max_running_jobs = 0"), "{err}");
    }
}
