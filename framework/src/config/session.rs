//! Session settings that travel with every job: DataFusion's own
//! (`datafusion.*`) plus Ballista's (`ballista.*`).

use std::collections::HashMap;

use datafusion::common::config::{ConfigExtension, ExtensionOptions};
use datafusion::common::extensions_options;
use datafusion::prelude::SessionConfig;

use super::ByteSize;
use crate::error::{BallistaError, Result};

extensions_options! {
    /// Ballista's per-session options, set with `SET ballista.<name> = ...`.
    pub struct BallistaSessionOptions {
        /// A name for the job, shown in status and logs.
        pub job_name: String, default = String::new()
        /// Tenant (user or team) the job's memory is counted against: the
        /// quota memory plugin caps the sum of a tenant's jobs on each
        /// executor. Empty: the `default` tenant.
        pub tenant: String, default = String::new()
        /// This job's memory quota on each executor, e.g. `256MiB`. It can
        /// only lower the quota the executors' memory plugin allows.
        pub memory_quota: String, default = String::new()
        /// Whether operators may spill to disk when their memory is refused
        /// (sort, aggregate); when false they fail instead.
        pub spill_to_disk: bool, default = true
        /// Scheduling pool of the job (see `[scheduling] kind = "fair"` or
        /// `"priority"`). Empty: the policy's default pool.
        pub pool: String, default = String::new()
        /// Priority of the job, an integer; higher runs first under
        /// `[scheduling] kind = "priority"` (and inside priority pools).
        /// Empty: the pool's default.
        pub priority: String, default = String::new()
        /// Failures to inject into the job's tasks, for tests:
        /// `stage:partition:attempt:kind` rules separated by commas (`*`
        /// matches any; kinds `io`, `execution`, `panic`). Honoured only by
        /// executors started with `executor.failure_injection = true`.
        pub inject_failures: String, default = String::new()
        /// Longest the job may run, in seconds from its admission (0: the
        /// scheduler's `job_timeout_secs` only). It can only shorten the
        /// scheduler's limit.
        pub job_timeout_secs: u64, default = 0
        /// Adaptive task counts: once the stages a stage reads by hash
        /// have run, it runs as few tasks as give each about this much of
        /// their output, e.g. `8MiB` (a stage over a small input runs as
        /// one task), never more than planned. `0` keeps every stage's
        /// planned count.
        pub task_input_bytes: String, default = DEFAULT_TASK_INPUT_BYTES.to_string()
        /// Adaptive broadcast joins: a join planned to shuffle both sides
        /// whose build side's stage turns out to have written at most this
        /// much, e.g. `64MiB`, broadcasts it instead, and its probe side is
        /// joined where it is read, not shuffled (the probe side's tasks
        /// wait while the build side looks that small). `0` keeps every
        /// join as planned.
        pub adaptive_broadcast_bytes: String, default = DEFAULT_ADAPTIVE_BROADCAST_BYTES.to_string()
        /// Early consumers: when every task of a stage has been launched
        /// and slots are idle, the stages reading it start on them,
        /// reading the outputs committed so far and the rest as its last
        /// tasks commit. `false`: a stage starts once its inputs completed.
        pub early_consumers: String, default = DEFAULT_EARLY_CONSUMERS.to_string()
    }
}

/// Default of [`BallistaSessionOptions::early_consumers`].
pub const DEFAULT_EARLY_CONSUMERS: &str = "true";
/// Session key of [`BallistaSessionOptions::early_consumers`].
pub const EARLY_CONSUMERS_KEY: &str = "ballista.early_consumers";

/// Whether a job's consumer stages may start before their inputs complete.
pub fn early_consumers_of(settings: &HashMap<String, String>) -> Result<bool> {
    let text = set_value(settings, EARLY_CONSUMERS_KEY).unwrap_or(DEFAULT_EARLY_CONSUMERS);
    match text.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(BallistaError::InvalidInput(format!(
            "invalid session setting {EARLY_CONSUMERS_KEY} = \"{}\": expected true or false (an empty value means the default, true)",
            crate::util::loggable(text)
        ))),
    }
}

/// Default of [`BallistaSessionOptions::task_input_bytes`].
pub const DEFAULT_TASK_INPUT_BYTES: &str = "8MiB";
/// Session key of [`BallistaSessionOptions::task_input_bytes`].
pub const TASK_INPUT_BYTES_KEY: &str = "ballista.task_input_bytes";

/// The input a task of a stage reading shuffled data should get, in bytes,
/// from a job's settings (0: stages keep their planned task count).
pub fn task_input_bytes_of(settings: &HashMap<String, String>) -> Result<u64> {
    size_setting(
        settings,
        TASK_INPUT_BYTES_KEY,
        DEFAULT_TASK_INPUT_BYTES,
        "0 keeps every stage's planned task count",
    )
}

/// Default of [`BallistaSessionOptions::adaptive_broadcast_bytes`]: the
/// cluster's threshold for broadcasting a side estimated small
/// (`BROADCAST_JOIN_MAX_BYTES`), applied to the real size.
pub const DEFAULT_ADAPTIVE_BROADCAST_BYTES: &str = "64MiB";
/// Session key of [`BallistaSessionOptions::adaptive_broadcast_bytes`].
pub const ADAPTIVE_BROADCAST_BYTES_KEY: &str = "ballista.adaptive_broadcast_bytes";

/// The largest build side, in bytes written by its stage, that a join
/// planned as partitioned broadcasts once it has run (0: none).
pub fn adaptive_broadcast_bytes_of(settings: &HashMap<String, String>) -> Result<u64> {
    size_setting(
        settings,
        ADAPTIVE_BROADCAST_BYTES_KEY,
        DEFAULT_ADAPTIVE_BROADCAST_BYTES,
        "0 keeps every join as planned",
    )
}

/// A size setting (`8MiB`, `0`, …), its default when unset or empty.
fn size_setting(
    settings: &HashMap<String, String>,
    key: &str,
    default: &str,
    zero_means: &str,
) -> Result<u64> {
    let text = set_value(settings, key).unwrap_or(default);
    text.parse::<ByteSize>()
        .map(|size| size.bytes())
        .map_err(|e| {
            BallistaError::InvalidInput(format!(
                "invalid session setting {key}: {e} ({zero_means})"
            ))
        })
}

/// Session key of [`BallistaSessionOptions::job_timeout_secs`].
pub const JOB_TIMEOUT_KEY: &str = "ballista.job_timeout_secs";

/// Session key of [`BallistaSessionOptions::pool`].
pub const POOL_KEY: &str = "ballista.pool";
/// Session key of [`BallistaSessionOptions::priority`].
pub const PRIORITY_KEY: &str = "ballista.priority";

/// A setting's value, trimmed; `None` when unset or empty (Ballista's
/// string options default to empty, meaning "not set").
fn set_value<'a>(settings: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    settings
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

/// The pool a job's settings name (`None` when unset or empty).
pub fn pool_of(settings: &HashMap<String, String>) -> Option<&str> {
    set_value(settings, POOL_KEY)
}

/// The priority a job's settings ask for (`None` when unset or empty).
pub fn priority_of(settings: &HashMap<String, String>) -> Result<Option<i64>> {
    match set_value(settings, PRIORITY_KEY) {
        None => Ok(None),
        Some(text) => text.parse::<i64>().map(Some).map_err(|_| {
            BallistaError::InvalidInput(format!(
                "invalid session setting {PRIORITY_KEY} = {text:?}: expected an integer such as 10"
            ))
        }),
    }
}

/// Session key of [`BallistaSessionOptions::tenant`].
pub const TENANT_KEY: &str = "ballista.tenant";
/// Session key of [`BallistaSessionOptions::memory_quota`].
pub const MEMORY_QUOTA_KEY: &str = "ballista.memory_quota";
/// Session key of [`BallistaSessionOptions::spill_to_disk`].
pub const SPILL_TO_DISK_KEY: &str = "ballista.spill_to_disk";

/// The tenant a job's settings name (`None` when unset or empty).
pub fn tenant_of(settings: &HashMap<String, String>) -> Option<&str> {
    set_value(settings, TENANT_KEY)
}

/// The memory quota a job's settings ask for (`None` when unset or empty).
pub fn memory_quota_of(settings: &HashMap<String, String>) -> Result<Option<ByteSize>> {
    match set_value(settings, MEMORY_QUOTA_KEY) {
        None => Ok(None),
        Some(text) => match text.parse::<ByteSize>() {
            Ok(size) if size.bytes() > 0 => Ok(Some(size)),
            Ok(_) => Err(BallistaError::InvalidInput(format!(
                "invalid session setting {MEMORY_QUOTA_KEY} = {text:?}: expected a positive size such as 256MiB"
            ))),
            Err(e) => Err(BallistaError::InvalidInput(format!(
                "invalid session setting {MEMORY_QUOTA_KEY}: {e}"
            ))),
        },
    }
}

/// Checks the values of Ballista's own session settings that DataFusion
/// stores as plain strings, so a bad value is refused when the job is
/// submitted rather than when its first task starts.
pub fn validate_ballista_settings(settings: &HashMap<String, String>) -> Result<()> {
    memory_quota_of(settings)?;
    priority_of(settings)?;
    task_input_bytes_of(settings)?;
    adaptive_broadcast_bytes_of(settings)?;
    early_consumers_of(settings)?;
    if let Some(rules) = settings.get(crate::executor::failure_injection::INJECT_FAILURES_KEY) {
        crate::executor::failure_injection::parse_failure_rules(rules)?;
    }
    if let Some(tenant) = tenant_of(settings)
        && !tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return Err(BallistaError::InvalidInput(format!(
            "invalid session setting {TENANT_KEY} = {tenant:?}: expected letters, digits, '-', '_', '.' or '@'"
        )));
    }
    Ok(())
}

impl ConfigExtension for BallistaSessionOptions {
    const PREFIX: &'static str = "ballista";
}

/// Below this estimated size in bytes (or, when the size is unknown, row
/// count: `BROADCAST_JOIN_MAX_ROWS`) DataFusion may build a hash join's
/// table from one whole side ("collect left"). On a cluster that side is
/// then broadcast: every task of the join reads all of it, and neither side
/// is shuffled by the join keys.
///
/// DataFusion's own thresholds (1 MiB, 128Ki rows) weigh a partitioned
/// join's in-memory repartition against one table per process. On a
/// cluster the partitioned join costs a shuffle of *both* sides through the
/// network and Arrow IPC, usually of the far larger probe side too, while a
/// broadcast costs one copy of the small side per task, held in memory that
/// cannot spill. At TPC-H SF1 between processes 16 MiB took the total from
/// 1.28x to 1.10x single-process DataFusion; at SF10, 64 MiB took it from
/// 1.13-1.18x to 0.95x (q3 and q5 broadcast the ~25 MB of orders that met
/// their customers instead of shuffling lineitem), with the cluster's peak
/// memory unchanged (README, Performance). Left, full, semi and anti joins whose collected side is the
/// one they preserve are partitioned all the same (see
/// `plan::collected_joins`).
pub(crate) const BROADCAST_JOIN_MAX_BYTES: &str = "67108864";
/// The row count threshold used when a side's size in bytes is unknown.
pub(crate) const BROADCAST_JOIN_MAX_ROWS: &str = "8000000";

/// Defaults that suit distributed execution better than DataFusion's
/// single-process ones (`[scheduler.session]` and a client's settings
/// override them key by key):
/// - a round-robin repartition would cost a whole extra shuffle stage, so
///   scans are split by file ranges instead;
/// - a join with a side estimated below 64 MiB broadcasts it rather than
///   shuffling both sides.
pub fn distributed_session_defaults() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "datafusion.optimizer.enable_round_robin_repartition",
            "false",
        ),
        (
            "datafusion.optimizer.hash_join_single_partition_threshold",
            BROADCAST_JOIN_MAX_BYTES,
        ),
        (
            "datafusion.optimizer.hash_join_single_partition_threshold_rows",
            BROADCAST_JOIN_MAX_ROWS,
        ),
    ]
}

/// Settings every distributed job runs with, whatever the client asked for.
///
/// Two operators DataFusion can plan have no serialized form, so plans avoid
/// them (results are the same; they are faster single-process variants):
/// - `enable_window_topn` plans a per-partition top-k (`PartitionedTopKExec`)
///   for `ROW_NUMBER() … WHERE rn <= k`;
/// - `enable_piecewise_merge_join` plans `PiecewiseMergeJoinExec` for
///   single-range-predicate joins.
///
/// The DataFusion features below assume that every partition of a plan runs
/// in the same process, while a distributed task runs exactly one:
/// - the hash-join dynamic filter makes each output partition of a join wait
///   until every partition has built its side; the others never arrive, so
///   the task would wait forever;
/// - file-stream work stealing lets one partition of a scan take files
///   grouped under its siblings; a lone task would read every file, and each
///   of the stage's tasks would return all rows.
pub fn distributed_session_overrides() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "datafusion.optimizer.enable_join_dynamic_filter_pushdown",
            "false",
        ),
        (
            "datafusion.execution.enable_file_stream_work_stealing",
            "false",
        ),
        ("datafusion.optimizer.enable_window_topn", "false"),
        ("datafusion.optimizer.enable_piecewise_merge_join", "false"),
    ]
}

/// A fresh session config that knows Ballista's options.
pub fn new_session_config() -> SessionConfig {
    SessionConfig::new()
        .with_information_schema(true)
        .with_option_extension(BallistaSessionOptions::default())
}

/// Rebuilds a session config from settings received with a job.
pub fn session_config_from_settings(settings: &HashMap<String, String>) -> Result<SessionConfig> {
    let mut config = new_session_config();
    // Sort so that errors are deterministic.
    let mut pairs: Vec<(&String, &String)> = settings.iter().collect();
    pairs.sort();
    for (key, value) in pairs {
        config.options_mut().set(key, value).map_err(|e| {
            BallistaError::InvalidInput(format!("invalid session setting {key} = {value:?}: {e}"))
        })?;
    }
    Ok(config)
}

/// The settings of `config` that have a value, to send along with a job.
pub fn settings_from_session_config(config: &SessionConfig) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = config
        .options()
        .entries()
        .into_iter()
        // Extension entries come back without their prefix; they are added
        // below under their full names.
        .filter(|entry| entry.key.starts_with("datafusion."))
        .filter_map(|entry| entry.value.map(|v| (entry.key, v)))
        .collect();
    if let Some(ballista) = config.options().extensions.get::<BallistaSessionOptions>() {
        for entry in ballista.entries() {
            if let Some(v) = entry.value {
                out.push((
                    format!("{}.{}", BallistaSessionOptions::PREFIX, entry.key),
                    v,
                ));
            }
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_including_ballista_options() {
        let mut config = new_session_config();
        config
            .options_mut()
            .set("datafusion.execution.target_partitions", "5")
            .unwrap();
        config
            .options_mut()
            .set("ballista.job_name", "nightly")
            .unwrap();
        let settings: HashMap<String, String> =
            settings_from_session_config(&config).into_iter().collect();
        assert_eq!(settings["ballista.job_name"], "nightly");
        let back = session_config_from_settings(&settings).unwrap();
        assert_eq!(back.target_partitions(), 5);
        let opts = back
            .options()
            .extensions
            .get::<BallistaSessionOptions>()
            .unwrap();
        assert_eq!(opts.job_name, "nightly");
    }

    #[test]
    fn ballista_settings_are_checked() {
        let of = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        assert!(validate_ballista_settings(&of(MEMORY_QUOTA_KEY, "256MiB")).is_ok());
        assert!(validate_ballista_settings(&of(MEMORY_QUOTA_KEY, "")).is_ok());
        let err = validate_ballista_settings(&of(MEMORY_QUOTA_KEY, "lots"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ballista.memory_quota") && err.contains("\"lots\""),
            "{err}"
        );
        let err = validate_ballista_settings(&of(MEMORY_QUOTA_KEY, "0"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("positive size"), "{err}");
        let err = validate_ballista_settings(&of(TENANT_KEY, "a b"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ballista.tenant"), "{err}");
        assert_eq!(tenant_of(&of(TENANT_KEY, " ana ")), Some("ana"));
        assert_eq!(tenant_of(&of(TENANT_KEY, "")), None);
        assert_eq!(task_input_bytes_of(&HashMap::new()).unwrap(), 8 << 20);
        assert_eq!(
            task_input_bytes_of(&of(TASK_INPUT_BYTES_KEY, "")).unwrap(),
            8 << 20
        );
        assert_eq!(
            task_input_bytes_of(&of(TASK_INPUT_BYTES_KEY, "0")).unwrap(),
            0
        );
        assert_eq!(
            task_input_bytes_of(&of(TASK_INPUT_BYTES_KEY, "64KiB")).unwrap(),
            64 << 10
        );
        let err = validate_ballista_settings(&of(TASK_INPUT_BYTES_KEY, "abc"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ballista.task_input_bytes")
                && err.contains("\"abc\"")
                && err.contains("0 keeps"),
            "{err}"
        );
        assert_eq!(
            adaptive_broadcast_bytes_of(&HashMap::new()).unwrap(),
            64 << 20
        );
        assert_eq!(
            adaptive_broadcast_bytes_of(&of(ADAPTIVE_BROADCAST_BYTES_KEY, "0")).unwrap(),
            0
        );
        let err = validate_ballista_settings(&of(ADAPTIVE_BROADCAST_BYTES_KEY, "lots"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ballista.adaptive_broadcast_bytes")
                && err.contains("\"lots\"")
                && err.contains("0 keeps every join as planned"),
            "{err}"
        );
        assert!(
            early_consumers_of(&HashMap::new()).unwrap(),
            "on by default"
        );
        assert!(!early_consumers_of(&of(EARLY_CONSUMERS_KEY, "FALSE")).unwrap());
        let err = validate_ballista_settings(&of(EARLY_CONSUMERS_KEY, "sometimes"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ballista.early_consumers")
                && err.contains("= \"sometimes\": expected true or false"),
            "{err}"
        );
        assert_eq!(tenant_of(&of(TENANT_KEY, "")), None);
    }

    #[test]
    fn unknown_setting_is_named() {
        let settings =
            HashMap::from([("datafusion.execution.nonsense".to_string(), "1".to_string())]);
        let err = session_config_from_settings(&settings)
            .unwrap_err()
            .to_string();
        assert!(err.contains("datafusion.execution.nonsense"), "{err}");
    }
}
