//! The typed settings of the stock binaries, as read from TOML and the
//! environment.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ByteSize;

/// All settings. The scheduler reads `[scheduler]`, the executor `[executor]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BallistaSettings {
    /// Scheduler settings.
    pub scheduler: SchedulerSettings,
    /// Executor settings.
    pub executor: ExecutorSettings,
}

/// Scheduler settings (`[scheduler]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Address the gRPC service binds to.
    pub bind_host: String,
    /// Port of the gRPC service.
    pub port: u16,
    /// Partitions per stage (scan splits and shuffle partitions) for clients
    /// that do not choose their own `datafusion.execution.target_partitions`.
    /// 0: the total task slots of the executors registered when the client
    /// connects (at least 2), so that one wave of tasks fills the cluster.
    pub target_partitions: usize,
    /// Attempts per task before its job fails (for retryable errors).
    pub task_max_attempts: u32,
    /// An executor silent for this long is considered lost.
    pub executor_timeout_secs: u64,
    /// How long a finished job's results stay available to be fetched.
    pub result_retention_secs: u64,
    /// Extra session settings handed to clients as defaults.
    pub session: BTreeMap<String, String>,
    /// Tables every client can query without registering them.
    pub tables: Vec<TableDefinition>,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            bind_host: "0.0.0.0".into(),
            port: 50050,
            target_partitions: 0,
            task_max_attempts: 3,
            executor_timeout_secs: 30,
            result_retention_secs: 600,
            session: BTreeMap::new(),
            tables: Vec::new(),
        }
    }
}

/// File format of a declared table.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// Apache Parquet.
    Parquet,
    /// Comma (or other delimiter) separated values.
    Csv,
    /// Newline-delimited JSON.
    Json,
    /// Arrow IPC files.
    Arrow,
}

impl TableFormat {
    /// Lower-case name, as written in TOML.
    pub fn as_str(self) -> &'static str {
        match self {
            TableFormat::Parquet => "parquet",
            TableFormat::Csv => "csv",
            TableFormat::Json => "json",
            TableFormat::Arrow => "arrow",
        }
    }
}

/// A table declared in the scheduler's configuration (`[[scheduler.tables]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableDefinition {
    /// Table name used in SQL.
    pub name: String,
    /// A file or a folder, as a path or URL (`/data/t/`, `file:///data/t/`, `s3://b/t/`).
    pub location: String,
    /// File format.
    pub format: TableFormat,
    /// CSV: whether the first line is a header (default true).
    #[serde(default)]
    pub has_header: Option<bool>,
    /// CSV: field delimiter (default `,`).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// Only files with this extension are read (default: the format's usual one).
    #[serde(default)]
    pub file_extension: Option<String>,
}

/// Executor settings (`[executor]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorSettings {
    /// Address the Flight + control service binds to.
    pub bind_host: String,
    /// Host name other processes use to reach this executor (default: the
    /// bind address, or 127.0.0.1 when binding to all interfaces).
    pub external_host: Option<String>,
    /// Port of the Flight + control service.
    pub port: u16,
    /// URL of the scheduler.
    pub scheduler_url: String,
    /// Tasks run at the same time (0: one per CPU core).
    pub slots: usize,
    /// Where shuffle files and spills are written (default: a fresh
    /// temporary folder, removed on exit).
    pub work_dir: Option<PathBuf>,
    /// Memory all tasks of this executor may reserve together (default: 70%
    /// of the host's or cgroup's memory).
    pub memory_limit: Option<ByteSize>,
    /// Interval between heartbeats.
    pub heartbeat_interval_secs: u64,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        Self {
            bind_host: "0.0.0.0".into(),
            external_host: None,
            port: 50051,
            scheduler_url: "http://127.0.0.1:50050".into(),
            slots: 0,
            work_dir: None,
            memory_limit: None,
            heartbeat_interval_secs: 2,
        }
    }
}

impl ExecutorSettings {
    /// The host other processes should use to reach this executor.
    pub fn advertised_host(&self) -> String {
        match &self.external_host {
            Some(host) if !host.is_empty() => host.clone(),
            _ if self.bind_host == "0.0.0.0" || self.bind_host == "::" => "127.0.0.1".into(),
            _ => self.bind_host.clone(),
        }
    }

    /// Effective number of task slots.
    pub fn effective_slots(&self) -> usize {
        if self.slots > 0 {
            self.slots
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }
}
