//! An executor binary of your own, assembled with `BallistaConfig::builder()`.
//!
//! It reads the same TOML as the stock executor (`custom-executor --config
//! FILE`), can select the third-party `mount` storage plugin from it, and
//! injects a component of its own: a memory manager that wraps the one the
//! TOML selects and logs every task's memory figures when it ends, which is
//! what a platform team would feed into its own accounting.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use ballista::BallistaError;
use ballista::config::{BallistaConfig, BallistaSettings};
use ballista::datafusion::execution::memory_pool::MemoryPool;
use ballista::executor::{limit_malloc_arenas, start_executor};
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    match load_settings().and_then(|settings| {
        // Before the runtime starts its threads, as `ballista-executor`
        // does: one allocator heap per task slot.
        limit_malloc_arenas(settings.executor.effective_slots());
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(run(settings))
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom-executor: {e}");
            ExitCode::from(if matches!(e, BallistaError::Configuration(_)) {
                2
            } else {
                1
            })
        }
    }
}

/// `custom-executor [--config FILE]`; BALLISTA_* variables apply as usual.
fn load_settings() -> ballista::Result<BallistaSettings> {
    let file = std::env::args().skip_while(|a| a != "--config").nth(1);
    BallistaSettings::load(file.as_deref().map(Path::new))
}

async fn run(settings: BallistaSettings) -> ballista::Result<()> {
    let mut registry = PluginRegistry::with_builtins();
    ballista_storage_mount::register(&mut registry);
    // Wrap whatever [memory] selects.
    let memory = AccountedMemory(registry.memory_manager(&settings)?);
    let config = BallistaConfig::builder()
        .settings(settings)
        .registry(registry)
        .memory_manager(Arc::new(memory))
        .build();

    let executor = start_executor(config).await?;
    let id = &executor.address().id;
    println!(
        "custom-executor {id} listening on {}",
        executor.local_addr()
    );
    executor.wait().await
}
