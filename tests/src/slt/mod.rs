//! DataFusion's own sqllogictest suite, run on single-process DataFusion and
//! on a Ballista cluster, record by record.
//!
//! The `.slt` files come from the `datafusion-sqllogictest` crate of the
//! DataFusion version this workspace builds with (`scripts/fetch-slt.sh`
//! downloads and unpacks it). Each file runs twice, in a fresh session each
//! time: once on DataFusion in this process, once in a remote session on the
//! cluster. A record counts against the cluster when it passes on DataFusion
//! and fails on the cluster, unless the checked-in exclusion list names it,
//! with its reason. Records DataFusion itself fails (they read data files the
//! crate does not ship, or need set-up its own runner does in Rust) prove
//! nothing either way and are reported separately.

mod engine;
mod exclusions;
mod normalize;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::{FutureExt, StreamExt};
use sqllogictest::{Condition, Record};

pub use engine::{SessionEngine, SltError};
pub use exclusions::Exclusions;
pub use normalize::SltColumnType;

/// The DataFusion version whose suite is run.
pub const SUITE_CRATE: &str = "datafusion-sqllogictest-55.2.0";

/// The label records are run under (`onlyif` / `skipif` conditions).
const LABEL: &str = "Datafusion";

/// Settings both engines' sessions start with, as DataFusion's own runner
/// sets them (its expected plans assume four partitions).
pub const SESSION_SETTINGS: &[(&str, &str)] = &[
    ("datafusion.execution.target_partitions", "4"),
    ("datafusion.catalog.information_schema", "false"),
];

/// Settings the cluster's sessions add. A run of a stage's partitions
/// becomes one task only while the run holds at most one byte of input, so
/// only runs of empty partitions merge: stages run as fewer tasks than
/// planned but usually more than one, each reading a run of partitions of
/// both sides of its joins. With the default size, the suite's small tables
/// would run most stages as a single task, where any grouping is right.
pub const CLUSTER_SESSION_SETTINGS: &[(&str, &str)] = &[("ballista.task_input_bytes", "1")];

/// Where the unpacked suite is: `$BALLISTA_SLT_DIR`, else under the shared
/// target directory where `scripts/fetch-slt.sh` puts it.
pub fn suite_root() -> Result<PathBuf, String> {
    let root = match std::env::var_os("BALLISTA_SLT_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME")
                        .map(|h| PathBuf::from(h).join(".cache/ballista-target"))
                })
                .ok_or("neither BALLISTA_SLT_DIR, CARGO_TARGET_DIR nor HOME is set")?;
            target.join("sqllogictest").join(SUITE_CRATE)
        }
    };
    if !root.join("test_files").is_dir() {
        return Err(format!(
            "DataFusion's sqllogictest files are not at {}: run scripts/fetch-slt.sh \
             (scripts/test.sh does) or point BALLISTA_SLT_DIR at an unpacked {SUITE_CRATE}",
            root.display()
        ));
    }
    Ok(root)
}

/// Every `.slt` file under `root/test_files`, relative to it, sorted.
pub fn suite_files(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "scratch") {
                    walk(&path, base, out);
                }
            } else if path.extension().is_some_and(|e| e == "slt")
                && let Ok(relative) = path.strip_prefix(base)
            {
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    let base = root.join("test_files");
    let mut files = Vec::new();
    walk(&base, &base, &mut files);
    files.sort();
    files
}

/// What became of one record on one engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// As the file expects.
    Passed,
    /// Not as expected: the runner's explanation.
    Failed(String),
    /// Not run on this engine (an `onlyif` / `skipif` condition).
    Skipped,
}

impl Outcome {
    fn passed(&self) -> bool {
        matches!(self, Outcome::Passed)
    }
}

/// One statement or query of a file and how each engine did.
#[derive(Debug, Clone)]
pub struct RecordResult {
    /// `file.slt:line`, relative to `test_files/`.
    pub at: String,
    /// The statement.
    pub sql: String,
    /// On single-process DataFusion.
    pub local: Outcome,
    /// On the cluster.
    pub cluster: Outcome,
    /// Why it is excluded, if it is.
    pub excluded: Option<String>,
}

impl RecordResult {
    /// Passes on DataFusion, fails on the cluster, and is not excluded.
    pub fn counts_against_cluster(&self) -> bool {
        self.excluded.is_none() && self.local.passed() && !self.cluster.passed()
    }
}

/// One file's results.
#[derive(Debug)]
pub struct FileResult {
    /// Relative to `test_files/`.
    pub file: String,
    /// Every statement and query, in order (empty for an excluded file).
    pub records: Vec<RecordResult>,
    /// Why the whole file is excluded, if it is.
    pub excluded: Option<String>,
    /// A failure to run the file at all (parse error, lost session).
    pub error: Option<String>,
    /// Time both runs took.
    pub elapsed: Duration,
}

/// How to run the suite.
pub struct SuiteRun {
    /// The unpacked suite.
    pub root: PathBuf,
    /// The exclusion list.
    pub exclusions: Exclusions,
    /// Scheduler of the cluster the remote sessions use.
    pub scheduler_url: String,
    /// Only files whose path contains one of these (all when empty).
    pub filters: Vec<String>,
    /// Files run at the same time.
    pub parallel_files: usize,
    /// Longest one statement may take on either engine.
    pub statement_timeout: Duration,
}

impl SuiteRun {
    /// Runs the selected files; the process's working directory must be
    /// `root` (the files use paths relative to it).
    pub async fn run(&self, progress: impl Fn(&FileResult)) -> Vec<FileResult> {
        let files: Vec<String> = suite_files(&self.root)
            .into_iter()
            .filter(|f| self.filters.is_empty() || self.filters.iter().any(|x| f.contains(x)))
            .collect();
        let mut results = Vec::new();
        let mut running = futures::stream::iter(files)
            .map(|file| self.run_file(file))
            .buffer_unordered(self.parallel_files.max(1));
        while let Some(result) = running.next().await {
            progress(&result);
            results.push(result);
        }
        results.sort_by(|a, b| a.file.cmp(&b.file));
        results
    }

    async fn run_file(&self, file: String) -> FileResult {
        let started = Instant::now();
        if let Some(reason) = self.exclusions.file(&file) {
            return FileResult {
                file,
                records: Vec::new(),
                excluded: Some(reason.to_string()),
                error: None,
                elapsed: started.elapsed(),
            };
        }
        let path = self.root.join("test_files").join(&file);
        let records = match sqllogictest::parse_file::<SltColumnType>(&path) {
            Ok(records) => records,
            Err(e) => {
                return FileResult {
                    file,
                    records: Vec::new(),
                    excluded: None,
                    error: Some(format!("cannot parse: {e}")),
                    elapsed: started.elapsed(),
                };
            }
        };
        let base = self.root.join("test_files");
        let local = run_records(
            &records,
            &file,
            local_session(),
            "DataFusion",
            self.statement_timeout,
            &base,
        )
        .await;
        let cluster_ctx = match remote_session(&self.scheduler_url).await {
            Ok(ctx) => ctx,
            Err(e) => {
                return FileResult {
                    file,
                    records: Vec::new(),
                    excluded: None,
                    error: Some(format!("cannot open a session on the cluster: {e}")),
                    elapsed: started.elapsed(),
                };
            }
        };
        let cluster = run_records(
            &records,
            &file,
            cluster_ctx,
            "Ballista",
            self.statement_timeout,
            &base,
        )
        .await;
        let mut by_location: BTreeMap<String, (String, Outcome)> = BTreeMap::new();
        for (at, sql, outcome) in cluster {
            by_location.insert(at, (sql, outcome));
        }
        let records = local
            .into_iter()
            .map(|(at, sql, local)| {
                let cluster = by_location
                    .remove(&at)
                    .map(|(_, o)| o)
                    .unwrap_or_else(|| Outcome::Failed("not run".into()));
                let excluded = self.exclusions.record(&at, &sql).map(str::to_string);
                RecordResult {
                    at,
                    sql,
                    local,
                    cluster,
                    excluded,
                }
            })
            .collect();
        FileResult {
            file,
            records,
            excluded: None,
            error: None,
            elapsed: started.elapsed(),
        }
    }
}

/// A session of single-process DataFusion configured as DataFusion's runner does.
pub fn local_session() -> SessionContext {
    let mut config = SessionConfig::new();
    for (key, value) in SESSION_SETTINGS {
        config
            .options_mut()
            .set(key, value)
            .expect("a valid DataFusion setting");
    }
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(std::sync::Arc::new(RuntimeEnv::default()))
        .with_default_features()
        .build();
    SessionContext::new_with_state(state)
}

/// A session on the cluster behind `scheduler_url`, with the same settings.
pub async fn remote_session(scheduler_url: &str) -> datafusion::error::Result<SessionContext> {
    use ballista::client::SessionContextExt;
    let ctx = SessionContext::remote(scheduler_url).await?;
    for (key, value) in SESSION_SETTINGS.iter().chain(CLUSTER_SESSION_SETTINGS) {
        ctx.sql(&format!("SET {key} = '{value}'")).await?;
    }
    Ok(ctx)
}

/// Where DataFusion's runner puts a file's scratch output: emptied before
/// each run so that both engines start from the same state.
fn reset_scratch(test_files: &Path, file: &str) {
    let stem = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = test_files.join("scratch").join(stem);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
}

/// Runs `records` in order in one session; returns each statement's and
/// query's location, text and outcome.
async fn run_records(
    records: &[Record<SltColumnType>],
    file: &str,
    ctx: SessionContext,
    engine: &'static str,
    statement_timeout: Duration,
    test_files: &Path,
) -> Vec<(String, String, Outcome)> {
    reset_scratch(test_files, file);
    let mut runner = sqllogictest::Runner::new(move || {
        let ctx = ctx.clone();
        async move { Ok::<_, SltError>(SessionEngine::new(ctx, engine, statement_timeout)) }
    });
    runner.add_label(LABEL);
    runner.with_column_validator(sqllogictest::strict_column_validator);
    runner.with_normalizer(|s| s.trim_end().to_string());
    runner.with_validator(value_validator);
    let mut out = Vec::new();
    for record in records {
        if let Record::Halt { .. } = record {
            break;
        }
        let identity = match record {
            Record::Statement {
                loc,
                sql,
                conditions,
                ..
            }
            | Record::Query {
                loc,
                sql,
                conditions,
                ..
            } => Some((location(loc, test_files), sql.clone(), skipped(conditions))),
            _ => None,
        };
        let result = AssertUnwindSafe(runner.run_async(record.clone()))
            .catch_unwind()
            .await;
        let Some((at, sql, skipped)) = identity else {
            continue;
        };
        let outcome = if skipped {
            Outcome::Skipped
        } else {
            match result {
                Ok(Ok(_)) => Outcome::Passed,
                Ok(Err(e)) => Outcome::Failed(e.to_string()),
                Err(panic) => Outcome::Failed(format!("panicked: {}", panic_message(&panic))),
            }
        };
        out.push((at, sql, outcome));
    }
    out
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

fn skipped(conditions: &[Condition]) -> bool {
    conditions.iter().any(|c| match c {
        Condition::OnlyIf { label } => label != LABEL,
        Condition::SkipIf { label } => label == LABEL,
    })
}

/// `file.slt:line` relative to `test_files/`.
fn location(loc: &sqllogictest::Location, test_files: &Path) -> String {
    let file = Path::new(loc.file());
    let relative = file
        .strip_prefix(test_files)
        .map(Path::to_path_buf)
        .ok()
        .or_else(|| {
            let file = file.canonicalize().ok()?;
            let base = test_files.canonicalize().ok()?;
            file.strip_prefix(base).ok().map(Path::to_path_buf)
        })
        .map_or_else(
            || loc.file().to_string(),
            |p| p.to_string_lossy().into_owned(),
        );
    format!("{relative}:{}", loc.line())
}

/// Rows compare as the suite's own runner compares them: cells joined by a
/// space, trailing blanks ignored, and `<slt:ignore>` in an expected line
/// matching anything.
fn value_validator(
    normalizer: sqllogictest::Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    const IGNORE: &str = "<slt:ignore>";
    let expected: Vec<String> = expected.iter().map(normalizer).collect();
    let actual: Vec<String> = actual
        .iter()
        .map(|cells| cells.join(" ").trim_end().to_string())
        .collect();
    if !expected.iter().any(|line| line.contains(IGNORE)) {
        return actual == expected;
    }
    let expected = expected.join("\n");
    let actual = actual.join("\n");
    let mut position = 0;
    for (index, fragment) in expected.split(IGNORE).enumerate() {
        if fragment.is_empty() {
            continue;
        }
        match actual[position..].find(fragment) {
            Some(offset) if index > 0 || offset == 0 => position += offset + fragment.len(),
            _ => return false,
        }
    }
    true
}
