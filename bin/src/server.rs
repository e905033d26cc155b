//! What the two server binaries share: loading settings, and serving until
//! the server stops or the process is asked to stop.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use ballista::config::BallistaSettings;

/// Settings from the file and the environment; on error, says why on stderr
/// and returns the exit code for a configuration error.
pub fn load_settings(binary: &str, config: Option<&Path>) -> Result<BallistaSettings, ExitCode> {
    BallistaSettings::load(config).map_err(|e| {
        eprintln!("{binary}: {e}");
        ExitCode::from(2)
    })
}

/// Waits for `server` to end or for Ctrl-C / SIGTERM.
pub async fn serve_until_shutdown(
    binary: &str,
    server: impl Future<Output = ballista::Result<()>>,
) -> ExitCode {
    tokio::select! {
        result = server => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{binary}: {e}");
                ExitCode::from(1)
            }
        },
        _ = crate::shutdown_signal() => {
            tracing::info!("shutting down");
            ExitCode::SUCCESS
        }
    }
}
