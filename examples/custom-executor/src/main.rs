//! An executor binary of your own, assembled with `BallistaConfig::builder()`.
//!
//! It reads the same TOML as the stock executor (`custom-executor --config
//! FILE`), can select the third-party `mount` storage plugin from it, and
//! injects a component of its own: a memory manager that wraps the one the
//! TOML selects and logs every task's memory figures when it ends, which is
//! what a platform team would feed into its own accounting.

use std::process::ExitCode;
use std::sync::Arc;

use ballista::config::{BallistaConfig, BallistaSettings};
use ballista::datafusion::execution::memory_pool::MemoryPool;
use ballista::executor::start_executor;
use ballista::ids::TaskId;
use ballista::plugin::memory::{MemoryManager, MemoryUsage, TaskMemoryRequest};
use ballista::plugin::registry::PluginRegistry;

/// The configured memory manager, plus a log line per finished task.
#[derive(Debug)]
struct AccountedMemory(Arc<dyn MemoryManager>);

impl MemoryManager for AccountedMemory {
    fn task_pool(&self, request: &TaskMemoryRequest<'_>) -> ballista::Result<Arc<dyn MemoryPool>> {
        self.0.task_pool(request)
    }

    fn task_finished(&self, task: &TaskId) {
        self.0.task_finished(task);
        let usage = self.0.usage();
        tracing::info!(
            "accounting: task {task} finished; executor peak {} of {} bytes",
            usage.peak_bytes,
            usage.budget_bytes
        );
    }

    fn usage(&self) -> MemoryUsage {
        self.0.usage()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let file = match args.as_slice() {
        [_, flag, path] if flag == "--config" => Some(std::path::Path::new(path)),
        [_] => None,
        _ => {
            eprintln!("usage: custom-executor [--config FILE]");
            return ExitCode::from(2);
        }
    };
    let settings = match BallistaSettings::load(file) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("custom-executor: {e}");
            return ExitCode::from(2);
        }
    };

    let mut registry = PluginRegistry::with_builtins();
    ballista_storage_mount::register(&mut registry);
    let memory = match registry.memory_manager(&settings) {
        Ok(memory) => memory,
        Err(e) => {
            eprintln!("custom-executor: {e}");
            return ExitCode::from(2);
        }
    };
    let config = BallistaConfig::builder()
        .settings(settings)
        .registry(registry)
        .memory_manager(Arc::new(AccountedMemory(memory)))
        .build();

    let executor = match start_executor(config).await {
        Ok(executor) => executor,
        Err(e) => {
            eprintln!("custom-executor: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "custom-executor {} listening on {}",
        executor.address().id,
        executor.local_addr()
    );
    match executor.wait().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom-executor: {e}");
            ExitCode::from(1)
        }
    }
}
