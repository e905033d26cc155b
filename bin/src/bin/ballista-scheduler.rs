//! `ballista-scheduler`: plans queries and places their tasks on executors.

use std::path::PathBuf;
use std::process::ExitCode;

use ballista::scheduler::start_scheduler;
use ballista_bin::{logging, server};
use clap::Parser;

/// Ballista scheduler: accepts queries, plans them into stages and assigns
/// tasks to executors.
#[derive(Debug, Parser)]
#[command(name = "ballista-scheduler", version)]
struct Args {
    /// TOML configuration file (its [scheduler] table). Environment variables
    /// BALLISTA_SCHEDULER__<KEY> override it; flags override both.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1; any other address needs
    /// TLS, [scheduler.tls], or --insecure).
    #[arg(long, value_name = "HOST")]
    bind_host: Option<String>,
    /// Listen on a non-loopback address without TLS (plain text on the
    /// network).
    #[arg(long, env = "BALLISTA_INSECURE")]
    insecure: bool,
    /// Port to listen on (default 50050; 0 picks a free port).
    #[arg(long, short = 'p')]
    port: Option<u16>,
    /// Port of the web UI, REST API, /metrics and health checks (default
    /// 50080; 0 picks a free port).
    #[arg(long, value_name = "PORT")]
    http_port: Option<u16>,
    /// Check the configuration, print the settings it resolves to as TOML
    /// (secrets hidden) and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    logging::init("info");
    let args = Args::parse();
    let mut settings = match server::load_settings("ballista-scheduler", args.config.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Some(host) = args.bind_host {
        settings.scheduler.bind_host = host;
    }
    if let Some(port) = args.port {
        settings.scheduler.port = port;
    }
    if let Some(port) = args.http_port {
        settings.scheduler.http.port = Some(port);
    }
    if !args.print_config
        && let Err(code) = server::check_exposure(
            "ballista-scheduler",
            &settings.scheduler.bind_host,
            settings.scheduler.tls.enabled(),
            "scheduler.tls",
            args.insecure,
        )
    {
        return code;
    }
    let config = match server::configure("ballista-scheduler", settings, args.print_config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let handle = match start_scheduler(config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("ballista-scheduler: {e}");
            return server::exit_code_of(&e);
        }
    };
    // A machine-readable line for scripts that started us with port 0.
    println!("ballista-scheduler listening on {}", handle.local_addr());
    if let Some(url) = handle.http_url() {
        println!("ballista-scheduler web UI, REST API and metrics at {url}/");
    }
    server::serve_until_shutdown("ballista-scheduler", handle.wait()).await
}
