//! What the two server binaries share: loading settings, and serving until
//! the server stops or the process is asked to stop.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use ballista::config::{BallistaConfig, BallistaSettings};
use ballista::plugin::registry::PluginRegistry;

/// Settings from the file and the environment; on error, says why on stderr
/// and returns the exit code for a configuration error.
pub fn load_settings(binary: &str, config: Option<&Path>) -> Result<BallistaSettings, ExitCode> {
    BallistaSettings::load(config).map_err(|e| {
        eprintln!("{binary}: {e}");
        ExitCode::from(2)
    })
}

/// `--print-config`: checks every plugin the settings select, then prints
/// the effective settings as TOML (secrets replaced by `********`).
pub fn print_config(binary: &str, config: &BallistaConfig) -> ExitCode {
    if let Err(e) = config.validate_plugins() {
        eprintln!("{binary}: {e}");
        return ExitCode::from(2);
    }
    match render_settings(&config.settings) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{binary}: cannot print the configuration: {e}");
            ExitCode::from(1)
        }
    }
}

/// The settings as TOML, with every plugin's default `kind` filled in.
pub fn render_settings(settings: &BallistaSettings) -> Result<String, String> {
    toml::to_string(&PluginRegistry::with_default_kinds(settings)).map_err(|e| e.to_string())
}

/// The config of a stock binary: `settings` with the stock plugins.
pub fn stock_config(settings: BallistaSettings) -> BallistaConfig {
    BallistaConfig::builder()
        .settings(settings)
        .registry(crate::plugins::stock_registry())
        .build()
}

/// The stock config for settings adjusted by flags: checks them again and
/// builds every plugin table (also those of the other process kind, so one
/// shared file fails the same way everywhere). With `print`, prints the
/// settings instead (`--print-config`). `Err` is the exit code to stop with.
pub fn configure(
    binary: &str,
    settings: BallistaSettings,
    print: bool,
) -> Result<BallistaConfig, ExitCode> {
    if let Err(e) = settings.validate() {
        eprintln!("{binary}: {e}");
        return Err(ExitCode::from(2));
    }
    let config = stock_config(settings);
    if print {
        return Err(print_config(binary, &config));
    }
    if let Err(e) = config.validate_plugins() {
        eprintln!("{binary}: {e}");
        return Err(ExitCode::from(2));
    }
    Ok(config)
}

/// A stock binary listens beyond this machine only with TLS (`section`,
/// such as `scheduler.tls`, names a certificate), or when told to with
/// `--insecure`: otherwise what other machines send (tokens, signed calls,
/// query data) would cross the network in plain text. Prints why it
/// refuses. Authentication is always on, so TLS is what is missing.
pub fn check_exposure(
    binary: &str,
    host: &str,
    tls: bool,
    section: &str,
    insecure: bool,
) -> Result<(), ExitCode> {
    if ballista::tls::is_loopback_host(host) || tls {
        return Ok(());
    }
    if insecure {
        tracing::warn!(
            "{binary} listens on {host} without TLS (--insecure): bearer tokens, signed calls and \
             query data cross the network in plain text"
        );
        return Ok(());
    }
    eprintln!(
        "{binary}: refusing to listen on {host} without TLS: other machines' calls, with their \
         bearer tokens and query data, would cross the network in plain text. Set \
         {section}.cert_file and {section}.key_file (`ballista certs generate DIR` writes a \
         development CA and certificates), listen on 127.0.0.1 (the default), or pass \
         --insecure (BALLISTA_INSECURE=true) on a network you trust."
    );
    Err(ExitCode::from(2))
}

/// Exit code for a start-up failure: 2 for a configuration error (the
/// process should not be restarted unchanged), 1 otherwise.
pub fn exit_code_of(error: &ballista::BallistaError) -> ExitCode {
    match error {
        ballista::BallistaError::Configuration(_) => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
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
