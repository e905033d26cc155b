//! `ballista`: the command-line client (`sql` shell and `tpch` benchmark).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballista::client::{JobProgressListener, SessionContextExt};
use ballista::config::{BallistaSettings, MemoryAmount};
use ballista::proto::{JobState, JobStatus};
use ballista_bin::job_command::JobAction;
use ballista_bin::logging;
use ballista_bin::output::OutputFormat;
use ballista_bin::sql::{SqlRunOptions, run_sql};
use ballista_bin::tpch::{bench, datagen, processes, queries};
use clap::{ArgMatches, Args as ClapArgs, CommandFactory, FromArgMatches, Parser, Subcommand};
use datafusion::prelude::SessionContext;

/// Ballista command-line client.
#[derive(Debug, Parser)]
#[command(name = "ballista", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run SQL: an interactive shell, or statements from -c / -f.
    Sql(SqlArgs),
    /// Generate TPC-H data and run the 22 queries, optionally comparing with
    /// single-process DataFusion.
    Tpch(TpchArgs),
    /// Measure the scheduler at scale: simulated executors register over
    /// gRPC and answer tasks at once; reports task launches per second and
    /// scheduling latency.
    SchedulerBench(ballista_bin::scheduler_bench::SchedulerBenchArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// A running cluster's jobs: status, cancel.
    Job(JobArgs),
    /// Users of a cluster's users file.
    #[command(subcommand)]
    Users(UsersCommand),
    /// TLS certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Write a development CA and certificates for a scheduler and
    /// executors into DIR: ca.pem (tls.ca_file of every process and
    /// client), scheduler.pem/.key ([scheduler.tls]), executor.pem/.key
    /// ([executor.tls]), and the CA's key ca.key. The certificates name
    /// localhost, 127.0.0.1 and ::1, and each --host.
    Generate {
        /// Folder to write into (created if missing).
        dir: PathBuf,
        /// Another name or address clients use for the scheduler or an
        /// executor (may be repeated).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// Replace certificates already in DIR.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Read a password from stdin (one line) and print its argon2 hash, for
    /// `password_hash` in a users file.
    Hash,
}

#[derive(Debug, ClapArgs)]
struct JobArgs {
    #[command(subcommand)]
    action: JobSubcommand,
    /// Scheduler URL (default: client.scheduler_url of --config, then
    /// http://127.0.0.1:50050).
    #[arg(long, global = true, value_name = "URL")]
    scheduler: Option<String>,
    /// Configuration file to take client.scheduler_url from.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log in as this user; the password is read from BALLISTA_PASSWORD
    /// (default: client.user, else the cluster key of this machine).
    #[arg(long, global = true, value_name = "USER")]
    user: Option<String>,
    /// CA certificate (PEM) to trust for an https:// scheduler (default:
    /// tls.ca_file, else the system's roots).
    #[arg(long, global = true, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Send the password to a scheduler on another machine over http://
    /// (plain text) all the same.
    #[arg(long, global = true)]
    insecure: bool,
}

#[derive(Debug, Subcommand)]
enum JobSubcommand {
    /// Print a job's state, progress, failed attempts and re-run tasks.
    Status {
        /// The job id (shown by the progress line and in errors).
        job_id: String,
    },
    /// Cancel a job: its running tasks stop, their slots and memory are
    /// freed and its shuffle data is deleted.
    Cancel {
        /// The job id.
        job_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the configuration reference (Markdown) of the stock binaries:
    /// every key, its type, default and environment variable, and every
    /// registered plugin with its options.
    Reference,
    /// Check a configuration file (and BALLISTA_* variables) and print the
    /// settings it resolves to as TOML, secrets hidden.
    Check {
        /// TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, ClapArgs)]
struct ClusterArgs {
    /// Scheduler URL, e.g. http://localhost:50050 (default: client.scheduler_url
    /// of the configuration). Without either an embedded cluster (scheduler
    /// and executors in this process) is started.
    #[arg(long, value_name = "URL")]
    scheduler: Option<String>,
    /// Configuration file: [client], and for the embedded cluster its tables,
    /// executor settings and plugins. BALLISTA_* variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Executors of the embedded cluster.
    #[arg(long, default_value_t = 1)]
    executors: usize,
    /// Task slots per embedded executor (default: one per CPU core).
    #[arg(long)]
    slots: Option<usize>,
    /// Log in to --scheduler as this user; the password is read from
    /// BALLISTA_PASSWORD (default: client.user, else the cluster key of this
    /// machine, as the cluster administrator).
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// CA certificate (PEM) to trust for an https:// scheduler and its
    /// executors (default: tls.ca_file, else the system's roots).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Send the password or token to a scheduler on another machine over
    /// http:// (plain text) all the same.
    #[arg(long)]
    insecure: bool,
}

#[derive(Debug, ClapArgs)]
struct SqlArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// SQL to run (may hold several statements; may be repeated).
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    commands: Vec<String>,
    /// File of SQL statements to run (may be repeated).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Result format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Do not print timings to stderr.
    #[arg(short, long)]
    quiet: bool,
    /// Run the statements on the Arrow Flight SQL server at this URL
    /// (grpc://host:port or grpc+tls://host:port: this cluster's scheduler
    /// or any other engine's) as a thin client, instead of planning them
    /// here. --user logs in (password from BALLISTA_PASSWORD).
    #[arg(long, value_name = "URL", conflicts_with = "scheduler")]
    flight_sql: Option<String>,
}

/// SQL given on the command line, in the order it was given.
enum SqlSource {
    Command(String),
    File(PathBuf),
}

/// The `-c` and `-f` of `args`, interleaved as on the command line (clap
/// keeps each kind in its own list).
fn sql_sources(args: &SqlArgs, matches: Option<&ArgMatches>) -> Vec<SqlSource> {
    let positions = |id: &str, count: usize| -> Vec<usize> {
        matches
            .and_then(|m| m.indices_of(id))
            .map(|i| i.collect())
            .unwrap_or_else(|| (0..count).collect())
    };
    let mut sources: Vec<(usize, SqlSource)> = positions("commands", args.commands.len())
        .into_iter()
        .zip(args.commands.iter().cloned().map(SqlSource::Command))
        .chain(
            positions("files", args.files.len())
                .into_iter()
                .map(|i| i + usize::from(matches.is_none()) * args.commands.len())
                .zip(args.files.iter().cloned().map(SqlSource::File)),
        )
        .collect();
    sources.sort_by_key(|(position, _)| *position);
    sources.into_iter().map(|(_, source)| source).collect()
}

#[derive(Debug, ClapArgs)]
struct TpchArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Scale factor of generated data.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Data folder: used as is when it holds TPC-H tables, generated into
    /// otherwise (default ./tpch-data/sf<scale>).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Queries to run, e.g. 1,3,5-7 (default: all 22).
    #[arg(long, default_value = "")]
    queries: String,
    /// Runs per query (times are averaged).
    #[arg(long, default_value_t = 1)]
    iterations: usize,
    /// Also run on single-process DataFusion, compare values and times.
    #[arg(long)]
    compare_local: bool,
    /// Partitions per stage (datafusion.execution.target_partitions).
    #[arg(long)]
    partitions: Option<usize>,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Start the scheduler and --executors executors as separate processes,
    /// each executor with this memory limit (e.g. 512MiB, or 25% of the
    /// machine), and report every executor's peak resident memory, measured
    /// by the kernel, next to it. Their plugins come from --config (e.g.
    /// `[memory] kind = "quota"`).
    #[arg(long, value_name = "SIZE")]
    memory_limit: Option<MemoryAmount>,
}

/// The job whose failure or cancellation ended the current statement, so
/// that the error printed for it can name it (DataFusion's errors do not).
type EndedJob = Arc<std::sync::Mutex<Option<String>>>;

/// Records jobs that failed into `ended` and, when `show` and stderr is a
/// terminal, draws the progress line of the running job.
fn progress_listener(show: bool, ended: EndedJob) -> JobProgressListener {
    let show = show && std::io::stderr().is_terminal();
    JobProgressListener(Arc::new(move |status: &JobStatus| {
        let state = JobState::try_from(status.state);
        if matches!(state, Ok(JobState::Failed | JobState::Cancelled)) {
            *ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(status.job_id.clone());
        }
        if !show {
            return;
        }
        let done = matches!(
            state,
            Ok(JobState::Succeeded | JobState::Failed | JobState::Cancelled)
        );
        let mut err = std::io::stderr();
        if done {
            let _ = write!(err, "\r\x1b[2K");
        } else if status.state == JobState::Queued as i32 {
            let _ = write!(
                err,
                "\r\x1b[2K[job {}] queued, position {} in pool '{}': {}",
                status.job_id, status.queue_position, status.pool, status.queue_reason
            );
        } else if let Some(p) = &status.progress {
            let _ = write!(
                err,
                "\r\x1b[2K[job {}] stages {}/{} · tasks {}/{} ({} running){}",
                status.job_id,
                p.stages_completed,
                p.stages_total,
                p.tasks_completed,
                p.tasks_total,
                p.tasks_running,
                if p.map_tasks_recomputed > 0 {
                    format!(" · {} lost map task(s) re-run", p.map_tasks_recomputed)
                } else {
                    String::new()
                }
            );
        }
        let _ = err.flush();
    }))
}

async fn connect(
    args: &ClusterArgs,
    listener: Option<JobProgressListener>,
) -> Result<SessionContext, String> {
    let mut settings = BallistaSettings::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    if let Some(slots) = args.slots {
        settings.executor.slots = slots;
    }
    if let Some(user) = &args.user {
        settings.client.user = Some(user.clone());
    }
    apply_tls_flags(&mut settings, args.ca_file.clone(), args.insecure);
    let scheduler = args
        .scheduler
        .clone()
        .or_else(|| settings.client.scheduler_url.clone());
    let config = ballista_bin::server::stock_config(settings);
    let ctx = match scheduler {
        Some(url) => SessionContext::remote_with_config(&url, config)
            .await
            .map_err(describe)?,
        None => SessionContext::standalone_with_config(config, args.executors)
            .await
            .map_err(describe)?,
    };
    if let Some(listener) = listener {
        ctx.state_ref()
            .write()
            .config_mut()
            .set_extension(Arc::new(listener));
    }
    Ok(ctx)
}

/// A DataFusion error as the user should read it: Ballista's typed error
/// without DataFusion's "External error" wrapper.
fn describe(error: datafusion::error::DataFusionError) -> String {
    ballista::BallistaError::from_datafusion(error)
        .typed()
        .to_string()
}

fn error_exit(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("Error: {message}");
    ExitCode::from(1)
}

/// `--ca-file` and `--insecure` over the configuration's `[tls]`.
fn apply_tls_flags(settings: &mut BallistaSettings, ca_file: Option<PathBuf>, insecure: bool) {
    if let Some(ca_file) = ca_file {
        settings.tls.ca_file = Some(ca_file);
    }
    if insecure {
        settings.tls.allow_plain_text = true;
    }
}

/// The text of each `-c` and `-f`, in order.
fn read_scripts(sources: Vec<SqlSource>) -> Result<Vec<String>, String> {
    sources
        .into_iter()
        .map(|source| match source {
            SqlSource::Command(sql) => Ok(sql),
            SqlSource::File(file) => std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display())),
        })
        .collect()
}

/// `ballista sql --flight-sql URL`.
async fn flight_sql_command(url: &str, args: &SqlArgs, sources: Vec<SqlSource>) -> ExitCode {
    if sources.is_empty() {
        return error_exit(
            "--flight-sql runs the statements given with -c or -f; the interactive shell needs \
             --scheduler (or an embedded cluster)",
        );
    }
    let scripts = match read_scripts(sources) {
        Ok(scripts) => scripts,
        Err(e) => return error_exit(e),
    };
    let mut settings = match BallistaSettings::load(args.cluster.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("ballista: {e}");
            return ExitCode::from(2);
        }
    };
    apply_tls_flags(
        &mut settings,
        args.cluster.ca_file.clone(),
        args.cluster.insecure,
    );
    let trust = match ballista::tls::TlsTrust::from_settings(&settings.tls) {
        Ok(trust) => trust,
        Err(e) => return error_exit(e),
    };
    let user = args.cluster.user.clone().or(settings.client.user.clone());
    let login = match ballista_bin::sql::flight_sql_client::Login::from_env(user) {
        Ok(login) => login,
        Err(e) => return error_exit(e),
    };
    let options = SqlRunOptions {
        format: args.format,
        timings: !args.quiet,
    };
    let mut stdout = std::io::stdout();
    match ballista_bin::sql::flight_sql_client::run(
        url,
        &trust,
        login,
        &scripts,
        &mut stdout,
        &options,
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => error_exit(e),
    }
}

async fn sql_command(args: SqlArgs, matches: Option<&ArgMatches>) -> ExitCode {
    let sources = sql_sources(&args, matches);
    if let Some(url) = &args.flight_sql {
        return flight_sql_command(url, &args, sources).await;
    }
    let interactive = sources.is_empty();
    let ended_job = EndedJob::default();
    let listener = progress_listener(!args.quiet, Arc::clone(&ended_job));
    let ctx = match connect(&args.cluster, Some(listener)).await {
        Ok(ctx) => ctx,
        Err(e) => return error_exit(e),
    };
    let options = SqlRunOptions {
        format: args.format,
        timings: !args.quiet,
    };
    let mut stdout = std::io::stdout();
    if interactive {
        return ballista_bin::sql::shell::run(&ctx, &options).await;
    }
    let scripts = match read_scripts(sources) {
        Ok(scripts) => scripts,
        Err(e) => return error_exit(e),
    };
    for sql in scripts {
        if let Err(e) = run_sql(&ctx, &sql, &mut stdout, &options).await {
            let job = ended_job.lock().unwrap_or_else(|e| e.into_inner()).take();
            return match job {
                Some(job) => error_exit(format!(
                    "{}\n(job {job}: `ballista job status {job}` shows its state and any failed \
                     attempts)",
                    describe(e)
                )),
                None => error_exit(describe(e)),
            };
        }
    }
    ExitCode::SUCCESS
}

async fn tpch_command(args: TpchArgs) -> ExitCode {
    let query_list = match queries::parse_query_list(&args.queries) {
        Ok(q) => q,
        Err(e) => return error_exit(e),
    };
    let data_dir = args
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("tpch-data/sf{}", args.scale)));
    if datagen::has_data(&data_dir, args.scale)
        || (args.data.is_some() && datagen::has_tables(&data_dir))
    {
        eprintln!("using TPC-H data in {}", data_dir.display());
    } else {
        eprintln!(
            "generating TPC-H data at scale factor {} in {}",
            args.scale,
            data_dir.display()
        );
        let started = Instant::now();
        let scale = args.scale;
        let dir = data_dir.clone();
        let result = tokio::task::spawn_blocking(move || {
            datagen::generate(&dir, scale, &|line: &str| eprintln!("  {line}"))
        })
        .await;
        match result {
            Ok(Ok(bytes)) => eprintln!(
                "generated {:.1} MB in {:.1}s",
                bytes as f64 / 1e6,
                started.elapsed().as_secs_f64()
            ),
            Ok(Err(e)) => return error_exit(e),
            Err(e) => return error_exit(format!("data generation failed: {e}")),
        }
    }

    let mut cluster_args = args.cluster.clone();
    if cluster_args.scheduler.is_none() && cluster_args.executors == 0 {
        cluster_args.executors = 1;
    }
    let processes = match &args.memory_limit {
        None => None,
        Some(_) if args.cluster.scheduler.is_some() => {
            return error_exit(
                "--memory-limit starts its own scheduler and executors and cannot be used with --scheduler; \
                 set the memory limit of a running cluster's executors on the executors",
            );
        }
        Some(limit) => {
            let tls = match BallistaSettings::load(cluster_args.config.as_deref()) {
                Ok(settings) => settings.scheduler.tls.enabled(),
                Err(e) => return error_exit(e),
            };
            let spec = processes::ProcessClusterSpec {
                executors: cluster_args.executors,
                slots: cluster_args.slots,
                memory_limit: limit.to_string(),
                config: cluster_args.config.clone(),
                tls,
            };
            match processes::ProcessCluster::start(&spec) {
                Ok(cluster) => {
                    eprintln!(
                        "started a scheduler and {} executor process(es) with a {limit} memory limit each (logs in {})",
                        spec.executors,
                        cluster.log_path().display()
                    );
                    cluster_args.scheduler = Some(cluster.scheduler_url.clone());
                    Some(cluster)
                }
                Err(e) => return error_exit(e),
            }
        }
    };
    let ctx = match connect(&cluster_args, None).await {
        Ok(ctx) => ctx,
        Err(e) => return error_exit(e),
    };
    if let Some(p) = args.partitions
        && let Err(e) = ctx
            .sql(&format!("SET datafusion.execution.target_partitions = {p}"))
            .await
    {
        return error_exit(describe(e));
    }
    if let Err(e) = bench::register_tables(&ctx, &data_dir).await {
        return error_exit(format!(
            "registering tables from {}: {}",
            data_dir.display(),
            describe(e)
        ));
    }
    let local = if args.compare_local {
        let local = SessionContext::new();
        if let Err(e) = bench::register_tables(&local, &data_dir).await {
            return error_exit(describe(e));
        }
        Some(local)
    } else {
        None
    };
    let cluster = match (&args.cluster.scheduler, &args.memory_limit) {
        (Some(url), _) => format!("scheduler {url}"),
        (None, Some(limit)) => format!(
            "scheduler and {} executor process(es), memory limit {limit} each",
            cluster_args.executors
        ),
        (None, None) => format!("embedded cluster, {} executor(s)", cluster_args.executors),
    };
    eprintln!("running {} queries on {cluster}", query_list.len());
    let monitor = processes.as_ref().map(|p| {
        processes::RssMonitor::start(
            p.executor_pids(),
            vec![p.scheduler_pid()],
            Duration::from_millis(20),
        )
    });
    let query_rss = std::sync::Mutex::new(Vec::new());
    let mut reports = bench::run(&ctx, local.as_ref(), &query_list, args.iterations, &|q| {
        let rss = monitor.as_ref().map(|m| m.take_window());
        if let Some(rss) = rss {
            query_rss.lock().expect("not poisoned").push((q.query, rss));
        }
        let rss = rss.map_or(String::new(), |b| {
            format!(
                ", executor peak RSS {:.1} MiB",
                b as f64 / (1u64 << 20) as f64
            )
        });
        let d = q
            .distributed_mean()
            .map_or("-".into(), |v| format!("{v:.1} ms"));
        let l = q
            .local_mean()
            .map_or(String::new(), |v| format!(", single-process {v:.1} ms"));
        let status = match &q.check {
            bench::Check::Match => " (same values)",
            bench::Check::Mismatch(_) => " (MISMATCH)",
            bench::Check::Failed(_) => " (FAILED)",
            bench::Check::NotChecked => "",
        };
        eprintln!("  q{:<2} {d}{l}{status}{rss}", q.query);
    })
    .await;
    for (query, rss) in query_rss.into_inner().expect("not poisoned") {
        if let Some(report) = reports.iter_mut().find(|r| r.query == query) {
            report.executor_peak_rss_bytes = Some(rss);
        }
    }
    let cluster_peak_rss = monitor.as_ref().map(processes::RssMonitor::total_peak);
    drop(monitor);
    let executor_memory = match &processes {
        Some(p) => executor_memory(p, &cluster_args).await,
        None => Vec::new(),
    };
    let failed = reports
        .iter()
        .any(|q| matches!(q.check, bench::Check::Failed(_)));
    let processes_were_used = processes.is_some();
    if let Some(processes) = processes {
        if failed {
            let logs = processes.keep_logs();
            eprintln!(
                "a query failed: the scheduler's and executors' logs are kept in {}",
                logs.display()
            );
        } else {
            drop(processes);
        }
    }
    let mut report = bench::summarize(args.scale, &data_dir, args.iterations, cluster, reports);
    report.executor_memory = executor_memory;
    report.cluster_peak_rss_bytes = cluster_peak_rss;
    if processes_were_used {
        // This process ran the client and single-process DataFusion only.
        report.client_peak_rss_bytes = processes::proc_status_bytes(std::process::id(), "VmHWM");
    }
    print!("{}", bench::render_table(&report));
    if let Some(path) = &args.output {
        let json = serde_json::to_string_pretty(&report).expect("report serializes");
        if let Err(e) = std::fs::write(path, json) {
            return error_exit(format!("cannot write {}: {e}", path.display()));
        }
        eprintln!("wrote {}", path.display());
    }
    let all_good = report
        .queries
        .iter()
        .all(|q| matches!(q.check, bench::Check::Match | bench::Check::NotChecked));
    if all_good {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Each executor process's peak resident memory (the kernel's `VmHWM`), its
/// budget and peak reservation as it reported them to the scheduler.
async fn executor_memory(
    cluster: &processes::ProcessCluster,
    args: &ClusterArgs,
) -> Vec<processes::ExecutorMemoryReport> {
    // The executors' last figures reach the scheduler with their next
    // heartbeat.
    let heartbeat = BallistaSettings::load(args.config.as_deref())
        .map_or(2, |s| s.executor.heartbeat_interval_secs.max(1));
    tokio::time::sleep(Duration::from_millis(heartbeat * 1000 + 500)).await;
    let reported = match &args.scheduler {
        Some(url) => match ballista::client::SchedulerClient::connect(url).await {
            Ok(client) => client.executors().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        },
        None => Vec::new(),
    };
    cluster
        .executor_processes()
        .into_iter()
        .map(|(pid, port)| {
            let memory = reported
                .iter()
                .find(|e| e.metadata.as_ref().is_some_and(|m| m.port == port as u32))
                .and_then(|e| e.memory.clone())
                .unwrap_or_default();
            processes::ExecutorMemoryReport {
                pid,
                port,
                budget_bytes: memory.budget_bytes,
                peak_rss_bytes: processes::proc_status_bytes(pid, "VmHWM").unwrap_or(0),
                peak_reserved_bytes: memory.peak_bytes,
            }
        })
        .collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    logging::init("error");
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Sql(args) => sql_command(args, matches.subcommand_matches("sql")).await,
        Command::Tpch(args) => tpch_command(args).await,
        Command::SchedulerBench(args) => ballista_bin::scheduler_bench::command(args).await,
        Command::Config(command) => config_command(command),
        Command::Job(args) => job_command(args).await,
        Command::Users(UsersCommand::Hash) => users_hash_command(),
        Command::Certs(CertsCommand::Generate { dir, hosts, force }) => {
            certs_generate_command(&dir, &hosts, force)
        }
    }
}

fn certs_generate_command(dir: &std::path::Path, hosts: &[String], force: bool) -> ExitCode {
    match ballista::tls::write_dev_certificates(dir, hosts, force) {
        Ok(files) => {
            let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
            names.extend(hosts.iter().cloned());
            println!(
                "wrote a development CA and certificates for {} into {}:\n  \
                 {}  CA certificate: tls.ca_file of every process and client\n  \
                 {}  CA key: signs more certificates; keep it private, or delete it\n  \
                 {} + {}  [scheduler.tls] cert_file, key_file\n  \
                 {} + {}  [executor.tls] cert_file, key_file",
                names.join(", "),
                dir.display(),
                files.ca_cert.display(),
                files.ca_key.display(),
                files.scheduler_cert.display(),
                files.scheduler_key.display(),
                files.executor_cert.display(),
                files.executor_key.display(),
            );
            ExitCode::SUCCESS
        }
        Err(e) => error_exit(e),
    }
}

fn users_hash_command() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        return error_exit(format!("cannot read the password from stdin: {e}"));
    }
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return error_exit("no password on stdin (give it as one line)");
    }
    match ballista::plugin::auth::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => error_exit(e),
    }
}

async fn job_command(args: JobArgs) -> ExitCode {
    let mut settings = match BallistaSettings::load(args.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("ballista: {e}");
            return ExitCode::from(2);
        }
    };
    let url = args.scheduler.unwrap_or_else(|| {
        settings
            .client
            .scheduler_url
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:50050".to_string())
    });
    if let Some(user) = args.user {
        settings.client.user = Some(user);
    }
    apply_tls_flags(&mut settings, args.ca_file, args.insecure);
    let auth = match ballista::client::ClientAuth::from_all_settings(&settings) {
        Ok(auth) => auth,
        Err(e) => return error_exit(e),
    };
    let trust = match ballista::tls::TlsTrust::from_settings(&settings.tls) {
        Ok(trust) => trust,
        Err(e) => return error_exit(e),
    };
    let (job_id, action) = match args.action {
        JobSubcommand::Status { job_id } => (job_id, JobAction::Status),
        JobSubcommand::Cancel { job_id } => (job_id, JobAction::Cancel),
    };
    ballista_bin::job_command::run(&url, &job_id, action, auth, &trust).await
}

fn config_command(command: ConfigCommand) -> ExitCode {
    match command {
        ConfigCommand::Reference => {
            print!("{}", ballista_bin::plugins::configuration_reference());
            ExitCode::SUCCESS
        }
        ConfigCommand::Check { config } => match BallistaSettings::load(config.as_deref()) {
            Ok(settings) => ballista_bin::server::print_config(
                "ballista",
                &ballista_bin::server::stock_config(settings),
            ),
            Err(e) => {
                eprintln!("ballista: {e}");
                ExitCode::from(2)
            }
        },
    }
}
