//! `ballista`: the command-line client (`sql` shell and `tpch` benchmark).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ballista::config::BallistaSettings;
use ballista_bin::cli::{
    ClusterArgs, EndedJob, apply_tls_flags, connect, describe, error_exit, progress_listener,
};
use ballista_bin::job_command::JobAction;
use ballista_bin::logging;
use ballista_bin::output::OutputFormat;
use ballista_bin::sql::{SqlRunOptions, run_sql};
use ballista_bin::tpch::command::TpchArgs;
use clap::{ArgMatches, Args as ClapArgs, CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// Print a job's state, progress, stages (tasks, when they ran), failed attempts and re-run tasks.
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

#[tokio::main]
async fn main() -> ExitCode {
    logging::init("error");
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Sql(args) => sql_command(args, matches.subcommand_matches("sql")).await,
        Command::Tpch(args) => ballista_bin::tpch::command::command(args).await,
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
