//! Which session settings a client may send, and to what values.
//!
//! A job carries its client's session settings to the scheduler and to every
//! executor. Some are sizes and counts that processes allocate or spawn
//! for (`batch_size` rows per batch, `target_partitions` tasks per stage),
//! some name places on the cluster's hosts (`datafusion.catalog.location`).
//! Each is checked when the job is submitted, before anything is planned or
//! allocated: a numeric setting must lie in its range (the sizes that matter
//! most are the operator's `[scheduler.limits]`), a setting that reaches the
//! hosts' files must keep its default, and anything else is refused with the
//! key, the value and what is allowed.

use std::collections::HashMap;

use datafusion::config::ConfigOptions;

use super::settings::SchedulerLimits;
use crate::error::{BallistaError, Result};

/// Largest value of a numeric setting that has no range of its own: sizes in
/// bytes and row counts that only bound what an operator does lazily.
const MAX_OTHER_NUMERIC: u64 = 1 << 30;

/// Largest write buffer, read-ahead and concurrency settings: these are
/// allocated or spawned up front, once per file or stream.
const MAX_BUFFER_BYTES: u64 = 64 << 20;
const MAX_CONCURRENCY: u64 = 256;

/// Settings that point at the hosts' files: they keep the value the
/// scheduler starts sessions with.
const HOST_SETTINGS: &[&str] = &[
    "datafusion.catalog.location",
    "datafusion.catalog.format",
    "datafusion.catalog.has_header",
];

/// Ballista's own settings whose values are text (names, priorities,
/// sizes with units, rules), checked by
/// [`validate_ballista_settings`](super::validate_ballista_settings): a
/// value that looks like a number (a priority of `-1`, a job named `2024`)
/// is not a size here.
const TEXT_SETTINGS: &[&str] = &[
    "ballista.job_name",
    super::TENANT_KEY,
    super::MEMORY_QUOTA_KEY,
    super::POOL_KEY,
    super::PRIORITY_KEY,
    crate::executor::failure_injection::INJECT_FAILURES_KEY,
];

/// The range of a numeric setting, and where its bound comes from.
struct Range {
    min: u64,
    max: u64,
    source: &'static str,
}

fn range_of(key: &str, limits: &SchedulerLimits) -> Range {
    let configured = |max: usize, source| Range {
        min: 1,
        max: max as u64,
        source,
    };
    let fixed = |min, max| Range {
        min,
        max,
        source: "",
    };
    match key {
        // 0 lets DataFusion pick the host's parallelism.
        "datafusion.execution.target_partitions" | "datafusion.execution.planning_concurrency" => {
            Range {
                min: 0,
                ..configured(
                    limits.max_partitions_per_stage,
                    "scheduler.limits.max_partitions_per_stage",
                )
            }
        }
        "datafusion.execution.batch_size" => {
            configured(limits.max_batch_size, "scheduler.limits.max_batch_size")
        }
        "datafusion.sql_parser.recursion_limit" => configured(
            limits.max_parser_recursion,
            "scheduler.limits.max_parser_recursion",
        ),
        "datafusion.execution.objectstore_writer_buffer_size"
        | "datafusion.execution.parquet.metadata_size_hint"
        | "datafusion.execution.parquet.data_pagesize_limit"
        | "datafusion.execution.parquet.dictionary_page_size_limit" => fixed(0, MAX_BUFFER_BYTES),
        "datafusion.execution.parquet.write_batch_size" => fixed(1, limits.max_batch_size as u64),
        "datafusion.execution.meta_fetch_concurrency"
        | "datafusion.execution.minimum_parallel_output_files"
        | "datafusion.execution.max_buffered_batches_per_output_file"
        | "datafusion.execution.parquet.maximum_parallel_row_group_writers"
        | "datafusion.execution.parquet.maximum_buffered_record_batches_per_stream" => {
            fixed(1, MAX_CONCURRENCY)
        }
        "datafusion.optimizer.max_passes" => fixed(0, 100),
        _ => fixed(0, MAX_OTHER_NUMERIC),
    }
}

/// Checks the session settings a client sent with a job against `limits`.
/// `defaults` are the settings the scheduler starts every session with.
pub fn check_client_settings(
    settings: &HashMap<String, String>,
    limits: &SchedulerLimits,
    defaults: &ConfigOptions,
) -> Result<()> {
    let default_values = default_values(defaults);
    let mut keys: Vec<&String> = settings.keys().collect();
    keys.sort();
    for key in keys {
        let value = &settings[key];
        let default = default_values.get(key.as_str()).cloned().flatten();
        if HOST_SETTINGS.contains(&key.as_str()) {
            if default.as_deref().unwrap_or("") != value.as_str() {
                return Err(BallistaError::InvalidInput(format!(
                    "session setting {key} = {value:?} is not allowed: it names files on the \
                     cluster's hosts, which only the operator configures"
                )));
            }
            continue;
        }
        // DataFusion's own defaults (and the operator's) are always fine.
        if TEXT_SETTINGS.contains(&key.as_str())
            || !is_numeric(default.as_deref(), value)
            || default.as_deref() == Some(value.as_str())
        {
            continue;
        }
        check_range(key, value, &range_of(key, limits))?;
    }
    Ok(())
}

/// Checks one `[scheduler.session]` entry of the operator's. It is held
/// only to the ranges the operator also sets (`[scheduler.limits]`), which
/// it must not contradict; the fixed ranges and the host settings bound
/// what clients send, not what the operator chooses.
pub(crate) fn check_operator_setting(
    key: &str,
    value: &str,
    limits: &SchedulerLimits,
    defaults: &ConfigOptions,
) -> Result<()> {
    if HOST_SETTINGS.contains(&key) || TEXT_SETTINGS.contains(&key) {
        return Ok(());
    }
    let default = default_values(defaults).remove(key).flatten();
    if !is_numeric(default.as_deref(), value) {
        return Ok(());
    }
    let range = range_of(key, limits);
    if range.source.is_empty() {
        return Ok(());
    }
    check_range(key, value, &range)
}

/// Every setting's default value, Ballista's under their full names
/// (DataFusion lists a config extension's entries without its prefix).
fn default_values(defaults: &ConfigOptions) -> HashMap<String, Option<String>> {
    defaults
        .entries()
        .into_iter()
        .map(|entry| {
            let key = if entry.key.starts_with("datafusion.") {
                entry.key
            } else {
                format!("ballista.{}", entry.key)
            };
            (key, entry.value)
        })
        .collect()
}

fn check_range(key: &str, value: &str, range: &Range) -> Result<()> {
    let number = value.trim().parse::<u64>().ok();
    if number.is_none_or(|n| n < range.min || n > range.max) {
        let source = if range.source.is_empty() {
            String::new()
        } else {
            format!(" ({})", range.source)
        };
        return Err(BallistaError::InvalidInput(format!(
            "session setting {key} = {value} is outside the range this cluster allows: \
             {} to {}{source}",
            range.min, range.max
        )));
    }
    Ok(())
}

/// Whether a setting is numeric: its default is a number, or it has no
/// default and a number was sent (an optional size such as
/// `max_predicate_cache_size`). Floating-point settings are ratios and
/// thresholds, never sizes.
fn is_numeric(default: Option<&str>, value: &str) -> bool {
    let integer = |s: &str| {
        let s = s.trim();
        !s.is_empty()
            && s.trim_start_matches('-')
                .chars()
                .all(|c| c.is_ascii_digit())
    };
    match default {
        Some(d) if !d.is_empty() => integer(d),
        _ => integer(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &str, value: &str) -> Result<()> {
        let settings = HashMap::from([(key.to_string(), value.to_string())]);
        check_client_settings(
            &settings,
            &SchedulerLimits::default(),
            &ConfigOptions::default(),
        )
    }

    #[test]
    fn ballista_text_settings_that_look_like_numbers_are_not_sizes() {
        let defaults = crate::config::new_session_config();
        for (key, value) in [
            ("ballista.priority", "-1"),
            ("ballista.job_name", "99999999999999"),
            ("ballista.pool", "2024"),
        ] {
            let settings = HashMap::from([(key.to_string(), value.to_string())]);
            check_client_settings(&settings, &SchedulerLimits::default(), defaults.options())
                .unwrap_or_else(|e| panic!("{key} = {value}: {e}"));
        }
        // Ballista's numeric setting is still a number.
        let settings = HashMap::from([(
            "ballista.job_timeout_secs".to_string(),
            "99999999999".to_string(),
        )]);
        let err = check_client_settings(&settings, &SchedulerLimits::default(), defaults.options())
            .unwrap_err();
        assert!(err.to_string().contains("outside the range"), "{err}");
    }

    #[test]
    fn the_operator_is_held_to_its_own_limits_only() {
        let defaults = crate::config::new_session_config();
        let limits = SchedulerLimits::default();
        let check = |key: &str, value: &str| {
            check_operator_setting(key, value, &limits, defaults.options())
        };
        // Client-only bounds: host settings and fixed ranges.
        check("datafusion.catalog.location", "/data/tables").unwrap();
        check(
            "datafusion.execution.objectstore_writer_buffer_size",
            &(128u64 << 20).to_string(),
        )
        .unwrap();
        check("ballista.priority", "-1").unwrap();
        // A contradiction of [scheduler.limits].
        let err = check(
            "datafusion.execution.batch_size",
            &(limits.max_batch_size + 1).to_string(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("scheduler.limits.max_batch_size"),
            "{err}"
        );
    }

    #[test]
    fn sizes_in_range_pass_and_others_are_refused_naming_key_value_and_range() {
        assert!(check("datafusion.execution.batch_size", "8192").is_ok());
        assert!(check("datafusion.execution.target_partitions", "16").is_ok());
        assert!(check("datafusion.optimizer.prefer_hash_join", "false").is_ok());
        for (key, value, range) in [
            (
                "datafusion.execution.batch_size",
                "35184372088832",
                "1 to 1048576 (scheduler.limits.max_batch_size)",
            ),
            (
                "datafusion.execution.target_partitions",
                "1099511627776",
                "0 to 1024 (scheduler.limits.max_partitions_per_stage)",
            ),
            (
                "datafusion.sql_parser.recursion_limit",
                "100000",
                "1 to 500 (scheduler.limits.max_parser_recursion)",
            ),
            (
                "datafusion.execution.objectstore_writer_buffer_size",
                "1099511627776",
                "0 to 67108864",
            ),
            ("datafusion.execution.batch_size", "-1", "1 to 1048576"),
        ] {
            let error = check(key, value).unwrap_err();
            let message = error.to_string();
            assert!(matches!(error, BallistaError::InvalidInput(_)), "{message}");
            assert!(
                message.contains(key) && message.contains(value) && message.contains(range),
                "{message}"
            );
        }
    }

    #[test]
    fn every_default_a_client_sends_passes() {
        let config = crate::config::new_session_config();
        let settings: HashMap<String, String> =
            crate::config::settings_from_session_config(&config)
                .into_iter()
                .collect();
        let tight = SchedulerLimits {
            max_batch_size: 1,
            max_partitions_per_stage: 1,
            max_parser_recursion: 1,
            ..SchedulerLimits::default()
        };
        check_client_settings(&settings, &tight, &ConfigOptions::default()).unwrap();
    }

    #[test]
    fn settings_naming_host_files_keep_their_defaults() {
        assert!(check("datafusion.catalog.location", "").is_ok());
        let message = check("datafusion.catalog.location", "/etc")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("datafusion.catalog.location") && message.contains("/etc"),
            "{message}"
        );
    }
}
