//! Logging to stderr, filtered by `RUST_LOG` (default: the given level).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the subscriber; `default_level` applies when `RUST_LOG` is unset.
pub fn init(default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{default_level},h2=warn,hyper=warn,tower=warn,datafusion=warn"
        ))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
