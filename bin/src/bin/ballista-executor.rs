//! `ballista-executor`: runs tasks and serves shuffle data over Arrow Flight.

use std::path::PathBuf;
use std::process::ExitCode;

use ballista::config::{BallistaSettings, MemoryAmount};
use ballista::executor::{limit_malloc_arenas, start_executor};
use ballista_bin::{logging, server};
use clap::Parser;

/// Ballista executor: registers with the scheduler, runs tasks in its slots
/// and serves their output over Arrow Flight.
#[derive(Debug, Parser)]
#[command(name = "ballista-executor", version)]
struct Args {
    /// TOML configuration file (its [executor] table). Environment variables
    /// BALLISTA_EXECUTOR__<KEY> override it; flags override both.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1; any other address needs
    /// TLS, [executor.tls], or --insecure).
    #[arg(long, value_name = "HOST")]
    bind_host: Option<String>,
    /// Listen on a non-loopback address without TLS (plain text on the
    /// network).
    #[arg(long, env = "BALLISTA_INSECURE")]
    insecure: bool,
    /// Host name the scheduler, other executors and clients use to reach this
    /// executor (default: the bind address, or 127.0.0.1).
    #[arg(long, value_name = "HOST")]
    external_host: Option<String>,
    /// Port for Flight and control (default 50051; 0 picks a free port).
    #[arg(long, short = 'p')]
    port: Option<u16>,
    /// Port of /metrics and the health checks (default 50081; 0 picks a
    /// free port).
    #[arg(long, value_name = "PORT")]
    http_port: Option<u16>,
    /// Scheduler URL (default http://127.0.0.1:50050).
    #[arg(long, alias = "scheduler", value_name = "URL")]
    scheduler_url: Option<String>,
    /// Concurrent task slots (default, or 0: one per CPU core, as
    /// `executor.slots = 0`; at most 1024).
    #[arg(long)]
    slots: Option<usize>,
    /// Folder for shuffle files and spills (default: a temporary folder).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Memory all tasks may reserve together, e.g. 4GiB, or a percentage of
    /// the machine's (or cgroup's) memory such as 60% (default: 70%).
    #[arg(long, value_name = "SIZE")]
    memory_limit: Option<MemoryAmount>,
    /// Check the configuration, print the settings it resolves to as TOML
    /// (secrets hidden) and exit.
    #[arg(long)]
    print_config: bool,
}

/// Most task slots an executor may have (`executor.slots`' own bound).
const MAX_SLOTS: usize = 1024;

fn main() -> ExitCode {
    logging::init("info");
    let args = Args::parse();
    let mut settings = match server::load_settings("ballista-executor", args.config.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let executor = &mut settings.executor;
    if let Some(v) = args.bind_host {
        executor.bind_host = v;
    }
    if let Some(v) = args.external_host {
        executor.external_host = Some(v);
    }
    if let Some(v) = args.port {
        executor.port = v;
    }
    if let Some(v) = args.http_port {
        executor.http.port = Some(v);
    }
    if let Some(v) = args.scheduler_url {
        executor.scheduler_url = v;
    }
    // 0 means one per core, as in the config file.
    if let Some(v) = args.slots {
        if v > MAX_SLOTS {
            eprintln!(
                "ballista-executor: --slots {v}: expected at most {MAX_SLOTS} (0: one per CPU core)"
            );
            return ExitCode::from(2);
        }
        executor.slots = v;
    }
    if let Some(v) = args.work_dir {
        executor.work_dir = Some(v);
    }
    if let Some(v) = args.memory_limit {
        executor.memory_limit = Some(v);
    }
    if !args.print_config
        && let Err(code) = server::check_exposure(
            "ballista-executor",
            &executor.bind_host,
            executor.tls.enabled(),
            "executor.tls",
            args.insecure,
        )
    {
        return code;
    }
    // Before the runtime starts its threads: see `limit_malloc_arenas`.
    let arenas = limit_malloc_arenas(executor.effective_slots());
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(serve(settings, args.print_config, arenas)),
        Err(e) => {
            eprintln!("ballista-executor: cannot start its runtime: {e}");
            ExitCode::from(1)
        }
    }
}

/// Starts the executor and serves until Ctrl-C or SIGTERM.
async fn serve(settings: BallistaSettings, print_config: bool, arenas: Option<usize>) -> ExitCode {
    let config = match server::configure("ballista-executor", settings, print_config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Some(arenas) = arenas {
        tracing::info!(
            "allocator limited to {arenas} heap(s), one per task slot (MALLOC_ARENA_MAX overrides)"
        );
    }
    let handle = match start_executor(config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("ballista-executor: {e}");
            return server::exit_code_of(&e);
        }
    };
    println!(
        "ballista-executor {} listening on {}",
        handle.address().id,
        handle.local_addr()
    );
    if let Some(url) = handle.http_url() {
        println!(
            "ballista-executor {} metrics and health checks at {url}/",
            handle.address().id
        );
    }
    // SIGTERM or Ctrl-C drains: running tasks finish (for up to
    // executor.drain_timeout_secs), then the executor deregisters.
    match handle.serve_until(ballista_bin::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ballista-executor: {e}");
            ExitCode::from(1)
        }
    }
}
