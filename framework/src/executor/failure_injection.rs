//! Failures injected into chosen task attempts, for tests of retries and
//! error handling on real processes.
//!
//! A job asks for them with `SET ballista.inject_failures =
//! 'stage:partition:attempt:kind,…'` (`*` matches any stage, partition or
//! attempt; kinds: `io`, `execution`, `panic`, and `delay=<ms>`, which holds
//! the task that long before it runs, so that a test knows what runs when it
//! kills a process). An executor honours
//! them only when started with `executor.failure_injection = true`; otherwise
//! a job asking for them fails with a permission error, so a client cannot
//! make a production cluster misbehave.

use crate::error::{BallistaError, Result};
use crate::ids::TaskId;

/// Session key of the injected failures.
pub const INJECT_FAILURES_KEY: &str = "ballista.inject_failures";

/// What an injected failure does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFailure {
    /// Fails with an I/O error (retryable).
    Io,
    /// Fails with an execution error (not retryable).
    Execution,
    /// Panics inside the task.
    Panic,
    /// Holds the task this many milliseconds, then runs it normally.
    Delay(u64),
}

/// One rule: which attempts fail, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRule {
    stage: Option<u32>,
    partition: Option<usize>,
    attempt: Option<u32>,
    failure: InjectedFailure,
}

fn field<T: std::str::FromStr>(text: &str, what: &str, rule: &str) -> Result<Option<T>> {
    if text == "*" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        BallistaError::InvalidInput(format!(
            "invalid session setting {INJECT_FAILURES_KEY}: {what} {text:?} in rule {rule:?} is not a number or *"
        ))
    })
}

/// Parses `stage:partition:attempt:kind` rules separated by commas; an empty
/// text means none.
pub fn parse_failure_rules(text: &str) -> Result<Vec<FailureRule>> {
    text.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|rule| {
            let parts: Vec<&str> = rule.split(':').map(str::trim).collect();
            let [stage, partition, attempt, kind] = parts[..] else {
                return Err(BallistaError::InvalidInput(format!(
                    "invalid session setting {INJECT_FAILURES_KEY}: rule {rule:?} is not stage:partition:attempt:kind"
                )));
            };
            let failure = match kind {
                "io" => InjectedFailure::Io,
                "execution" => InjectedFailure::Execution,
                "panic" => InjectedFailure::Panic,
                other => match other.strip_prefix("delay=").map(str::parse::<u64>) {
                    Some(Ok(ms)) => InjectedFailure::Delay(ms),
                    _ => {
                        return Err(BallistaError::InvalidInput(format!(
                            "invalid session setting {INJECT_FAILURES_KEY}: unknown kind {other:?} in rule {rule:?} (io, execution, panic or delay=<milliseconds>)"
                        )));
                    }
                },
            };
            Ok(FailureRule {
                stage: field(stage, "stage", rule)?,
                partition: field(partition, "partition", rule)?,
                attempt: field(attempt, "attempt", rule)?,
                failure,
            })
        })
        .collect()
}

/// The failure the rules ask of this task attempt, if any.
pub fn injected_failure(rules: &[FailureRule], task: &TaskId) -> Option<InjectedFailure> {
    rules
        .iter()
        .find(|r| {
            r.stage.is_none_or(|s| s == task.stage_id.0)
                && r.partition.is_none_or(|p| p == task.partition)
                && r.attempt.is_none_or(|a| a == task.attempt)
        })
        .map(|r| r.failure)
}

/// Fails (or panics) as `failure` asks, for `task`; a delay is no failure.
pub fn fail(failure: InjectedFailure, task: &TaskId) -> Option<BallistaError> {
    let message = format!("injected failure of task {task}");
    match failure {
        InjectedFailure::Io => Some(BallistaError::Io(message)),
        InjectedFailure::Execution => Some(BallistaError::Execution(message)),
        InjectedFailure::Panic => panic!("{message}"),
        InjectedFailure::Delay(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{JobId, StageId};

    fn task(stage: u32, partition: usize, attempt: u32) -> TaskId {
        TaskId {
            job_id: JobId::generate(),
            stage_id: StageId(stage),
            partition,
            attempt,
        }
    }

    #[test]
    fn rules_match_by_stage_partition_and_attempt() {
        let rules = parse_failure_rules("1:0:0:io, 2:*:*:panic").unwrap();
        assert_eq!(
            injected_failure(&rules, &task(1, 0, 0)),
            Some(InjectedFailure::Io)
        );
        assert_eq!(injected_failure(&rules, &task(1, 0, 1)), None);
        assert_eq!(injected_failure(&rules, &task(1, 1, 0)), None);
        assert_eq!(
            injected_failure(&rules, &task(2, 7, 3)),
            Some(InjectedFailure::Panic)
        );
        assert!(parse_failure_rules("").unwrap().is_empty());
        let rules = parse_failure_rules("2:*:0:delay=1500").unwrap();
        assert_eq!(
            injected_failure(&rules, &task(2, 3, 0)),
            Some(InjectedFailure::Delay(1500))
        );
        let err = parse_failure_rules("1:0:0:delay=soon")
            .unwrap_err()
            .to_string();
        assert!(err.contains("delay=<milliseconds>"), "{err}");
        let err = parse_failure_rules("1:0:io").unwrap_err().to_string();
        assert!(err.contains("not stage:partition:attempt:kind"), "{err}");
        let err = parse_failure_rules("1:x:0:io").unwrap_err().to_string();
        assert!(err.contains("partition \"x\""), "{err}");
        let err = parse_failure_rules("1:0:0:boom").unwrap_err().to_string();
        assert!(err.contains("unknown kind \"boom\""), "{err}");
    }
}
