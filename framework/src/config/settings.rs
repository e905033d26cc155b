//! The typed settings of the stock binaries, as read from TOML and the
//! environment.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{MemoryAmount, PluginSpec, Secret, ServerLimits, ServerTlsSettings, TlsSettings};

/// All settings. The scheduler reads `[scheduler]`, the executor `[executor]`,
/// the `ballista` client `[client]`; the plugin tables (`[[storage]]`,
/// `[memory]`, `[scheduling]`, `[shuffle]`) choose an implementation for
/// each seam by its registered `kind`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BallistaSettings {
    /// Scheduler settings.
    pub scheduler: SchedulerSettings,
    /// Executor settings.
    pub executor: ExecutorSettings,
    /// Settings of the `ballista` command-line client.
    pub client: ClientSettings,
    /// Storage plugins, one table per plugin (`[[storage]]`), each serving
    /// the URL schemes it declares. Local files (`file://`) are always
    /// served; a plugin listed here for the same scheme replaces that.
    pub storage: Vec<PluginSpec>,
    /// Memory plugin of the executors.
    pub memory: PluginSpec,
    /// Scheduling plugin of the scheduler: admission and task placement.
    pub scheduling: PluginSpec,
    /// Shuffle plugin: how map outputs are written and read.
    pub shuffle: PluginSpec,
    /// The cluster key every member holds (scheduler, executors, and the
    /// operator's clients).
    pub cluster: ClusterSettings,
    /// Authentication plugin of the scheduler: users, passwords and grants.
    pub auth: PluginSpec,
    /// What connections over `https://` trust.
    pub tls: TlsSettings,
}

/// The cluster key (`[cluster]`): the secret that makes a process a member
/// of the cluster. Holding it also makes a client the cluster's
/// administrator. Set neither key: every process of one user on one machine
/// shares `~/.ballista/cluster.key` (`$BALLISTA_HOME/cluster.key`), created
/// on first use; copy that file to the other machines of a cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// The key itself, 64 hex digits (say from a Kubernetes secret through
    /// `BALLISTA_CLUSTER__KEY`). Wins over `key_file`.
    pub key: Option<Secret>,
    /// File holding the key (64 hex digits, readable by its owner only).
    pub key_file: Option<PathBuf>,
}

/// Settings of the `ballista` command-line client (`[client]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClientSettings {
    /// Scheduler to send queries to, e.g. `http://scheduler:50050`. Unset: the
    /// client starts an embedded cluster in its own process.
    pub scheduler_url: Option<String>,
    /// User to log in as (password from `password` or the
    /// `BALLISTA_PASSWORD` environment variable). Unset: a bearer `token` if
    /// set, else the cluster key when this machine holds it (as the cluster
    /// administrator).
    pub user: Option<String>,
    /// Password of `user`.
    pub password: Option<Secret>,
    /// A bearer token to send instead of logging in.
    pub token: Option<Secret>,
}

/// Scheduler settings (`[scheduler]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Address the gRPC service binds to. The stock binary refuses any but a
    /// loopback address unless `[scheduler.tls]` is set or `--insecure` is
    /// given.
    pub bind_host: String,
    /// Port of the gRPC service.
    pub port: u16,
    /// Partitions per stage (scan splits and shuffle partitions) for clients
    /// that do not choose their own `datafusion.execution.target_partitions`.
    /// 0: the total task slots of the executors registered when the client
    /// connects (at least 2), so that one wave of tasks fills the cluster.
    pub target_partitions: usize,
    /// Attempts per task before its job fails (for retryable errors; a retry
    /// goes to another executor when there is one). Failed fetches of map
    /// output do not count: the lost output is recomputed instead. A task
    /// lost with its executor counts, including one whose launch got no
    /// answer (it may have started there).
    pub task_max_attempts: u32,
    /// An executor silent for this long is considered lost: its running
    /// tasks run elsewhere and map output on its disk is recomputed. A job
    /// with no executor at all for this long fails.
    pub executor_timeout_secs: u64,
    /// How long a finished job's results stay available to be fetched.
    pub result_retention_secs: u64,
    /// Longest a job may run, from its admission (time queued does not
    /// count) to its end; a job over it fails with a timeout and its tasks
    /// are stopped. 0: no limit. A session can set a shorter one with
    /// `ballista.job_timeout_secs`.
    pub job_timeout_secs: u64,
    /// Extra session settings handed to clients as defaults, key by key over
    /// Ballista's distributed defaults (a client's own `SET` wins). Values
    /// are strings; each entry must be a known key with a value that parses
    /// and stays within `[scheduler.limits]`. See "Joins:
    /// broadcast or shuffle" in the README for the join thresholds.
    pub session: SessionDefaults,
    /// Tables every client can query without registering them.
    pub tables: Vec<TableDefinition>,
    /// What one request may ask of the cluster.
    pub limits: SchedulerLimits,
    /// Connections, streams and request sizes of the gRPC listener.
    pub server: ServerLimits,
    /// How long a bearer token from a login stays valid.
    pub token_ttl_secs: u64,
    /// How long a Flight ticket the scheduler signs for a map output (read
    /// by later stages, and by the client for the results) stays valid.
    pub ticket_ttl_secs: u64,
    /// TLS certificate of the gRPC listener.
    pub tls: ServerTlsSettings,
    /// The Arrow Flight SQL service (ADBC, JDBC) on the scheduler's port.
    pub flight_sql: FlightSqlSettings,
    /// The catalog of tables, views and schemas clients create with SQL.
    pub catalog: CatalogSettings,
    /// The HTTP service: web UI, REST API, Prometheus `/metrics`,
    /// `/healthz` and `/readyz` (default port 50080).
    pub http: HttpSettings,
}

/// A process's HTTP service (`[scheduler.http]`, `[executor.http]`). It
/// listens on the address of the process's gRPC listener and serves TLS
/// exactly when that listener does, with the same certificate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Serve it. Off, the process has no web UI, REST API, metrics or
    /// health endpoints (probes must then use the gRPC port).
    pub enabled: bool,
    /// Its port (default: 50080 on the scheduler, 50081 on an executor;
    /// 0 picks a free port, printed at start-up).
    pub port: Option<u16>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            port: None,
        }
    }
}

impl HttpSettings {
    /// The port to listen on: the one set, else `default`.
    pub fn port_or(&self, default: u16) -> u16 {
        self.port.unwrap_or(default)
    }
}

/// The scheduler's HTTP port unless `[scheduler.http] port` says otherwise.
pub const DEFAULT_SCHEDULER_HTTP_PORT: u16 = 50080;
/// An executor's HTTP port unless `[executor.http] port` says otherwise.
pub const DEFAULT_EXECUTOR_HTTP_PORT: u16 = 50081;

/// Where the scheduler keeps the tables, views and schemas clients create
/// with SQL over Flight SQL (`[scheduler.catalog]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSettings {
    /// A JSON document, replaced atomically on each change and read at
    /// start-up: a local path (or `file://` URL), or an object such as
    /// `s3://bucket/ballista/catalog.json` of a store the `[[storage]]`
    /// plugins serve. `memory` keeps the catalog in memory only (lost on
    /// restart). Empty: `catalog.json` beside the cluster key
    /// (`$BALLISTA_HOME`, else `~/.ballista`), except for embedded clusters,
    /// which keep it in memory.
    pub location: String,
}

/// The Arrow Flight SQL service (`[scheduler.flight_sql]`), served on the
/// scheduler's port next to its own gRPC service.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FlightSqlSettings {
    /// Where a Flight SQL client reads a query's rows from: `executors`
    /// (each result partition straight from the executor holding it, which
    /// the client must be able to reach at the address the executor
    /// advertises) or `scheduler` (every row through the scheduler, for
    /// clients that can reach only the scheduler).
    pub results: FlightSqlResults,
    /// Whether results and schemas keep DataFusion's view types
    /// (`Utf8View`, `BinaryView`) and dictionaries. Off by default: they are
    /// given as `Utf8`, `Binary` and the dictionary's values, which every
    /// client reads (the Arrow Flight SQL JDBC driver up to 18.3 refuses
    /// view types); ADBC reads either.
    pub view_types: bool,
}

/// Where Flight SQL clients read query results from.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FlightSqlResults {
    /// From the executors holding the result partitions.
    #[default]
    Executors,
    /// Through the scheduler.
    Scheduler,
}

/// Limits on what one client request may ask of the cluster
/// (`[scheduler.limits]`). A request over a limit is refused with an error
/// that names it; none is silently lowered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerLimits {
    /// Deepest nesting of one expression in a query (`1+1+…+1` of n terms
    /// nests n deep). Deeper expressions could not travel to executors, and
    /// walking them would overflow a thread's stack.
    pub max_expression_depth: usize,
    /// Largest `datafusion.execution.target_partitions` (and
    /// `planning_concurrency`) a session may set: the tasks of one stage.
    pub max_partitions_per_stage: usize,
    /// Most tasks one job may have, over all its stages.
    pub max_tasks_per_job: usize,
    /// Largest `datafusion.execution.batch_size` a session may set (rows per
    /// batch; operators allocate for a whole batch up front).
    pub max_batch_size: usize,
    /// Largest `datafusion.sql_parser.recursion_limit` a session may set.
    pub max_parser_recursion: usize,
    /// Jobs queued or running at once, over all clients.
    pub max_jobs: usize,
    /// Jobs queued or running at once for one client session.
    pub max_jobs_per_session: usize,
    /// Executors registered at once.
    pub max_executors: usize,
    /// Finished jobs kept for status queries; the oldest are forgotten
    /// first (their results, if not yet released, stay until
    /// `result_retention_secs`).
    pub max_finished_jobs: usize,
    /// Seconds a finished job stays listed for status queries.
    pub finished_job_retention_secs: u64,
}

impl Default for SchedulerLimits {
    fn default() -> Self {
        Self {
            max_expression_depth: crate::plan::DEFAULT_MAX_EXPRESSION_DEPTH,
            max_partitions_per_stage: 1024,
            max_tasks_per_job: 100_000,
            max_batch_size: 1 << 20,
            max_parser_recursion: 500,
            max_jobs: 1000,
            max_jobs_per_session: 100,
            max_executors: 1000,
            max_finished_jobs: 1000,
            finished_job_retention_secs: 3600,
        }
    }
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            bind_host: "127.0.0.1".into(),
            port: 50050,
            target_partitions: 0,
            task_max_attempts: 3,
            executor_timeout_secs: 30,
            result_retention_secs: 600,
            job_timeout_secs: 0,
            session: SessionDefaults::default(),
            tables: Vec::new(),
            limits: SchedulerLimits::default(),
            server: ServerLimits::default(),
            token_ttl_secs: 12 * 3600,
            ticket_ttl_secs: 24 * 3600,
            tls: ServerTlsSettings::default(),
            flight_sql: FlightSqlSettings::default(),
            catalog: CatalogSettings::default(),
            http: HttpSettings::default(),
        }
    }
}

/// Session settings the scheduler hands to clients (`[scheduler.session]`).
/// Values of secret-looking keys are hidden in `Debug` and when printed.
#[derive(Clone, Default, Deserialize, PartialEq, JsonSchema)]
#[serde(transparent)]
pub struct SessionDefaults(pub BTreeMap<String, String>);

impl SessionDefaults {
    fn shown(&self) -> BTreeMap<&str, &str> {
        self.0
            .iter()
            .map(|(k, v)| {
                let key = k.rsplit('.').next().unwrap_or(k);
                let value = if super::is_secret_key(key) {
                    super::REDACTED
                } else {
                    v.as_str()
                };
                (k.as_str(), value)
            })
            .collect()
    }

    /// Checks each entry as the scheduler will use it: a key DataFusion or
    /// Ballista knows, a value it parses, and no contradiction of
    /// `limits`. A bad entry would otherwise stop the scheduler at
    /// start-up, or be handed to every client.
    pub(crate) fn validate(&self, limits: &SchedulerLimits) -> Result<(), InvalidSetting> {
        let defaults = super::new_session_config();
        for (key, value) in &self.0 {
            let key_path = format!("scheduler.session.\"{key}\"");
            // Errors below quote the value; a secret's stays hidden.
            let secret = super::is_secret_key(key.rsplit('.').next().unwrap_or(key));
            let hidden = |problem: String| {
                if secret {
                    format!(
                        " = {}: refused (an unknown key or a bad value; the details are \
                         hidden because the key looks secret)",
                        super::REDACTED
                    )
                } else {
                    problem
                }
            };
            let mut config = super::new_session_config();
            if let Err(e) = config.options_mut().set(key, value) {
                return Err(InvalidSetting::new(
                    key_path,
                    hidden(format!(" = {value:?}: {}", one_line(&e.to_string()))),
                ));
            }
            // DataFusion parses this URL when a session starts, and panics
            // on one it cannot parse.
            if key == "datafusion.catalog.location"
                && !value.is_empty()
                && let Err(e) = url::Url::parse(value)
            {
                return Err(InvalidSetting::new(
                    key_path,
                    format!(" = {value:?}: {e}: expected a URL such as \"file:///data/tables/\""),
                ));
            }
            let entry = std::collections::HashMap::from([(key.clone(), value.clone())]);
            let checked = super::validate_ballista_settings(&entry).and_then(|()| {
                super::client_settings::check_operator_setting(
                    key,
                    value,
                    limits,
                    defaults.options(),
                )
            });
            if let Err(e) = checked {
                let reason = match e {
                    crate::error::BallistaError::InvalidInput(reason) => reason,
                    other => other.to_string(),
                };
                return Err(InvalidSetting::new(key_path, hidden(format!(": {reason}"))));
            }
        }
        Ok(())
    }
}

/// DataFusion's error text on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl std::fmt::Debug for SessionDefaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shown().fmt(f)
    }
}

impl Serialize for SessionDefaults {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shown().serialize(serializer)
    }
}

/// File format of a declared table.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorSettings {
    /// Address the Flight + control service binds to. The stock binary
    /// refuses any but a loopback address unless `[executor.tls]` is set or
    /// `--insecure` is given.
    pub bind_host: String,
    /// Host name other processes use to reach this executor (default: the
    /// bind address, or 127.0.0.1 when binding to all interfaces).
    pub external_host: Option<String>,
    /// Port of the Flight + control service.
    pub port: u16,
    /// URL of the scheduler.
    pub scheduler_url: String,
    /// Tasks run at the same time (0: one per CPU core; at most 1024).
    pub slots: usize,
    /// Where shuffle files and spills are written (default: a fresh
    /// temporary folder, removed on exit).
    pub work_dir: Option<PathBuf>,
    /// Memory all tasks of this executor may reserve together: a size such
    /// as `8GiB`, or a percentage of the host's or cgroup's memory such as
    /// `60%` (default: 70%).
    pub memory_limit: Option<MemoryAmount>,
    /// Interval between heartbeats.
    pub heartbeat_interval_secs: u64,
    /// Honour failures a job asks to inject into its tasks
    /// (`ballista.inject_failures`), for tests of retries and error
    /// handling. Never enable it where untrusted clients can submit jobs:
    /// when false, such a job fails with a permission error.
    pub failure_injection: bool,
    /// On SIGTERM (or Ctrl-C) the executor takes no new tasks and lets its
    /// running tasks finish for up to this long, then deregisters and exits;
    /// tasks still running are cancelled and run again elsewhere. Delivering
    /// results and deregistering add up to 12 s when the scheduler does not
    /// answer: keep it that much below the grace period of whatever stops
    /// the process (Kubernetes: 30 s by default).
    pub drain_timeout_secs: u64,
    /// Connections, streams and request sizes of the Flight and control
    /// listener.
    pub server: ServerLimits,
    /// TLS certificate of the Flight and control listener. Set it on every
    /// executor exactly when `executor.scheduler_url` is `https://`: a
    /// cluster serves TLS on all its listeners or on none.
    pub tls: ServerTlsSettings,
    /// The HTTP service: Prometheus `/metrics`, `/healthz` and `/readyz`
    /// (default port 50081).
    pub http: HttpSettings,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        Self {
            bind_host: "127.0.0.1".into(),
            external_host: None,
            port: 50051,
            scheduler_url: "http://127.0.0.1:50050".into(),
            slots: 0,
            work_dir: None,
            memory_limit: None,
            heartbeat_interval_secs: 2,
            failure_injection: false,
            drain_timeout_secs: 15,
            server: ServerLimits::default(),
            tls: ServerTlsSettings::default(),
            http: HttpSettings::default(),
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

impl ExecutorSettings {
    /// Bytes all tasks of this executor may reserve together:
    /// `memory_limit`, or 70% of the host's or cgroup's memory. When the
    /// machine's memory cannot be read the default is 4 GiB and a percentage
    /// is taken of 4 GiB.
    pub fn memory_budget_bytes(&self) -> u64 {
        let machine = crate::plugin::memory::available_memory_bytes();
        match (self.memory_limit, machine) {
            (Some(limit), Some(machine)) => limit.of(machine),
            (Some(limit), None) => limit.of(4 << 30),
            (None, Some(machine)) => {
                MemoryAmount::Fraction(crate::executor::DEFAULT_MEMORY_FRACTION).of(machine)
            }
            (None, None) => 4 << 30,
        }
    }
}

/// A setting whose value its type allows but the process cannot run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSetting {
    /// Where the setting is, e.g. `scheduler.tables[1].name`.
    pub key_path: String,
    /// The value and what is expected, e.g. ` = 0: expected at least 1`.
    pub problem: String,
}

impl InvalidSetting {
    pub(crate) fn new(key_path: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key_path: key_path.into(),
            problem: problem.into(),
        }
    }
}

impl std::fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.key_path, self.problem)
    }
}

impl std::error::Error for InvalidSetting {}

impl BallistaSettings {
    /// Checks what types alone cannot: ranges, URLs, duplicate names. The
    /// error names the key path, the value and what is expected.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let s = &self.scheduler;
        if s.task_max_attempts == 0 {
            return Err(InvalidSetting::new(
                "scheduler.task_max_attempts",
                " = 0: expected at least 1",
            ));
        }
        for (key, value) in [
            ("token_ttl_secs", s.token_ttl_secs),
            ("ticket_ttl_secs", s.ticket_ttl_secs),
        ] {
            if value == 0 {
                return Err(InvalidSetting::new(
                    format!("scheduler.{key}"),
                    " = 0: expected at least 1",
                ));
            }
        }
        if s.executor_timeout_secs == 0 {
            return Err(InvalidSetting::new(
                "scheduler.executor_timeout_secs",
                " = 0: expected at least 1",
            ));
        }
        let l = &s.limits;
        for (key, value) in [
            ("max_expression_depth", l.max_expression_depth),
            ("max_partitions_per_stage", l.max_partitions_per_stage),
            ("max_tasks_per_job", l.max_tasks_per_job),
            ("max_batch_size", l.max_batch_size),
            ("max_parser_recursion", l.max_parser_recursion),
            ("max_jobs", l.max_jobs),
            ("max_jobs_per_session", l.max_jobs_per_session),
            ("max_executors", l.max_executors),
            ("max_finished_jobs", l.max_finished_jobs),
        ] {
            if value == 0 {
                return Err(InvalidSetting::new(
                    format!("scheduler.limits.{key}"),
                    " = 0: expected at least 1",
                ));
            }
        }
        if s.target_partitions > l.max_partitions_per_stage {
            return Err(InvalidSetting::new(
                "scheduler.target_partitions",
                format!(
                    " = {}: expected at most scheduler.limits.max_partitions_per_stage ({})",
                    s.target_partitions, l.max_partitions_per_stage
                ),
            ));
        }
        s.server.validate("scheduler.server")?;
        s.tls.validate("scheduler.tls")?;
        s.session.validate(&s.limits)?;
        let mut names = std::collections::HashSet::new();
        for (i, table) in s.tables.iter().enumerate() {
            let key = |field: &str| format!("scheduler.tables[{i}].{field}");
            if table.name.trim().is_empty() {
                return Err(InvalidSetting::new(
                    key("name"),
                    " is empty: expected a table name",
                ));
            }
            if !names.insert(table.name.to_ascii_lowercase()) {
                return Err(InvalidSetting::new(
                    key("name"),
                    format!(
                        " = {:?}: a table of that name is already declared",
                        table.name
                    ),
                ));
            }
            if let Some(d) = table.delimiter
                && !d.is_ascii()
            {
                return Err(InvalidSetting::new(
                    key("delimiter"),
                    format!(" = {d:?}: expected a single ASCII character"),
                ));
            }
        }
        let e = &self.executor;
        if e.slots > 1024 {
            return Err(InvalidSetting::new(
                "executor.slots",
                format!(" = {}: expected at most 1024", e.slots),
            ));
        }
        if e.heartbeat_interval_secs == 0 {
            return Err(InvalidSetting::new(
                "executor.heartbeat_interval_secs",
                " = 0: expected at least 1",
            ));
        }
        if e.memory_limit.is_some_and(MemoryAmount::is_zero) {
            return Err(InvalidSetting::new(
                "executor.memory_limit",
                " = 0: expected a positive size such as 4GiB",
            ));
        }
        e.server.validate("executor.server")?;
        e.tls.validate("executor.tls")?;
        check_url("executor.scheduler_url", &e.scheduler_url)?;
        if let Some(url) = &self.client.scheduler_url {
            check_url("client.scheduler_url", url)?;
        }
        Ok(())
    }
}

fn check_url(key: &str, value: &str) -> Result<(), InvalidSetting> {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => Ok(()),
        _ => Err(InvalidSetting::new(
            key,
            format!(
                " = {value:?}: expected an http:// or https:// URL such as http://scheduler:50050"
            ),
        )),
    }
}
