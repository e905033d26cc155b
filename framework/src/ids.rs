//! Identifier newtypes, so a job id can never be passed where an executor id
//! is expected.

use std::fmt;
use std::sync::Arc;

use crate::error::{BallistaError, Result};

/// Whether `value` is at most `max_len` ASCII letters, digits and bytes of
/// `extra`: the shape of every id and name the network may send.
pub fn is_plain_ascii(value: &str, max_len: usize, extra: &[u8]) -> bool {
    value.len() <= max_len
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// Identifies a submitted query (a job) across the cluster.
///
/// Job ids appear in paths on executors' disks, so only ASCII letters, digits,
/// `-` and `_` are accepted: a job id can never name a parent directory.
/// Cloning is a reference count: the scheduler copies ids into every
/// placement round and task record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(Arc<str>);

impl JobId {
    /// A fresh, random job id.
    pub fn generate() -> Self {
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        Self(Arc::from(&uuid[..16]))
    }

    /// Parses a job id received from the network, refusing anything that could
    /// escape a directory when used as a path component.
    pub fn parse(value: &str) -> Result<Self> {
        let valid = !value.is_empty() && is_plain_ascii(value, 128, b"-_");
        if valid {
            Ok(Self(Arc::from(value)))
        } else {
            Err(BallistaError::InvalidInput(format!(
                "invalid job id \"{}\": expected 1-128 ASCII letters, digits, '-' or '_'",
                crate::util::loggable(value)
            )))
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies a stage within a job. Stage ids are dense, starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageId(pub u32);

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies an executor process for the lifetime of its registration.
/// Cloning is a reference count, as for [`JobId`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExecutorId(Arc<str>);

impl ExecutorId {
    /// A fresh, random executor id.
    pub fn generate() -> Self {
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        Self(Arc::from(format!("exec-{}", &uuid[..12])))
    }

    /// Wraps an id this process made or was configured with.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::from(value.into()))
    }

    /// Parses an executor id received from the network: 1-128 ASCII
    /// letters, digits, `-`, `_`, `.` or `:`. Ids are logged and shown to
    /// every client, so nothing else (no newline that forges a log line,
    /// no megabytes of text) gets past the door.
    pub fn parse(value: &str) -> Result<Self> {
        let valid = !value.is_empty() && is_plain_ascii(value, 128, b"-_.:");
        if valid {
            Ok(Self(Arc::from(value)))
        } else {
            Err(BallistaError::InvalidInput(format!(
                "invalid executor id \"{}\": expected 1-128 ASCII letters, digits, '-', '_', '.' or ':'",
                crate::util::loggable(value)
            )))
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExecutorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One attempt at running one partition of one stage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskId {
    /// The job the task belongs to.
    pub job_id: JobId,
    /// The stage the task runs.
    pub stage_id: StageId,
    /// The partition of the stage's plan the task executes.
    pub partition: usize,
    /// Attempt number, starting at 0.
    pub attempt: u32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}#{}",
            self.job_id, self.stage_id, self.partition, self.attempt
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_refuses_path_like_values() {
        for bad in ["", "..", "../x", "a/b", "/abs", "a b", "a\\b", "a.b"] {
            let err = JobId::parse(bad).unwrap_err();
            assert!(
                matches!(err, BallistaError::InvalidInput(_)),
                "{bad:?} gave {err:?}"
            );
        }
        assert_eq!(JobId::parse("abc-123_X").unwrap().as_str(), "abc-123_X");
        let generated = JobId::generate();
        assert_eq!(JobId::parse(generated.as_str()).unwrap(), generated);
    }
}
