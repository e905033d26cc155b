//! The threads tasks run on: a runtime of their own, below the priority of
//! the executor's control plane.
//!
//! Tasks are CPU-bound; run on the runtime that also serves the control
//! service and sends heartbeats, a full set of busy tasks (or any other
//! program saturating the host) delays heartbeats until the scheduler
//! declares a live executor lost. On their own runtime, with threads at a
//! lower scheduling priority (`nice` +10 on Linux), tasks take whatever CPU
//! the control plane leaves and never the reverse.

use tokio::runtime::{Builder, Handle, Runtime};

use crate::error::{BallistaError, Result};

/// Niceness added to task threads: the kernel then gives a waiting
/// control-plane thread about nine times the CPU share of a task thread.
const TASK_THREAD_NICENESS: i32 = 10;

/// The runtime tasks run on. Dropping it stops its threads without waiting
/// (it may be dropped inside another runtime).
pub(crate) struct TaskThreads {
    runtime: Option<Runtime>,
}

impl TaskThreads {
    /// A runtime of `threads` worker threads (blocking threads it starts
    /// get the same lower priority).
    pub fn start(threads: usize) -> Result<Self> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("ballista-task")
            .enable_all()
            .on_thread_start(lower_priority)
            .build()
            .map_err(|e| BallistaError::Internal(format!("cannot start task threads: {e}")))?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Where to spawn tasks.
    pub fn handle(&self) -> Handle {
        self.runtime
            .as_ref()
            .expect("task threads are running until dropped")
            .handle()
            .clone()
    }
}

impl Drop for TaskThreads {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: gettid has no preconditions; setpriority on the calling
    // thread's own id only changes that thread's niceness.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, TASK_THREAD_NICENESS);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {
    let _ = TASK_THREAD_NICENESS;
}
