//! Shared code of the stock binaries (`ballista-scheduler`,
//! `ballista-executor`, `ballista`): logging, the SQL shell, output formats
//! and the benchmarks (TPC-H, the scheduler at scale).

pub mod cli;
pub mod job_command;
pub mod logging;
pub mod output;
pub mod plugins;
pub mod scheduler_bench;
pub mod server;
pub mod sql;
pub mod tpch;

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
