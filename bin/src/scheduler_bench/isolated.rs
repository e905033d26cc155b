//! The benchmark's scheduler on threads of its own.
//!
//! The simulated executors and the clients share the process (and its
//! cores) with the scheduler, and every call costs CPU on both ends. On a
//! runtime of its own, the scheduler's threads carry a name, and the kernel's
//! per-thread accounting tells its CPU time from theirs: launches per second
//! measure the whole process, launches per scheduler CPU-second measure the
//! scheduler alone.

use std::time::Duration;

use ballista::config::BallistaConfig;
use ballista::error::{BallistaError, Result};
use ballista::scheduler::start_scheduler;
use tokio::sync::oneshot;

/// Name of every thread of the scheduler's runtime (at most 15 bytes: the
/// kernel keeps no more of a thread's name).
const THREAD_NAME: &str = "bench-scheduler";

/// A scheduler running on its own runtime and threads.
pub struct IsolatedScheduler {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    stopped: Option<oneshot::Receiver<()>>,
}

impl IsolatedScheduler {
    /// Starts the scheduler of `config` on a runtime of `workers` threads.
    pub async fn start(config: BallistaConfig, workers: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()?;
        let (started_tx, started_rx) = oneshot::channel::<Result<String>>();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (stopped_tx, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                runtime.block_on(async move {
                    let handle = match start_scheduler(config).await {
                        Ok(handle) => handle,
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = started_tx.send(Ok(handle.url()));
                    // The benchmark's end, or the benchmark dropped this.
                    let _ = stop_rx.await;
                    handle.shutdown().await;
                });
                // Tasks still running (a launch to an executor that is
                // gone) are not waited for.
                runtime.shutdown_timeout(Duration::from_secs(1));
                let _ = stopped_tx.send(());
            })?;
        let url = started_rx.await.map_err(|_| {
            BallistaError::Internal("the benchmark's scheduler thread ended while starting".into())
        })??;
        Ok(Self {
            url,
            stop: Some(stop),
            stopped: Some(stopped),
        })
    }

    /// The scheduler's gRPC address.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops the scheduler and waits for its runtime to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
    }
}

impl Drop for IsolatedScheduler {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// CPU time (user and system) of this process's threads: all of them, and
/// the scheduler's. `None` where the kernel does not show it (not Linux).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    /// Every thread of the process.
    pub process: Duration,
    /// The scheduler's threads.
    pub scheduler: Duration,
}

impl CpuTimes {
    /// The times now, from `/proc/self`.
    pub fn now() -> Option<Self> {
        let ticks_per_sec = clock_ticks_per_sec()?;
        let to_duration = |ticks: u64| Duration::from_secs_f64(ticks as f64 / ticks_per_sec);
        let process = std::fs::read_to_string("/proc/self/stat").ok()?;
        let (_, process_ticks) = parse_stat(&process)?;
        let mut scheduler_ticks = 0;
        for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            // A thread may end between the listing and the read.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((name, ticks)) = parse_stat(&stat)
                && name == THREAD_NAME
            {
                scheduler_ticks += ticks;
            }
        }
        Some(Self {
            process: to_duration(process_ticks),
            scheduler: to_duration(scheduler_ticks),
        })
    }

    /// The time spent since `earlier`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            process: self.process.saturating_sub(earlier.process),
            scheduler: self.scheduler.saturating_sub(earlier.scheduler),
        }
    }
}

fn clock_ticks_per_sec() -> Option<f64> {
    // SAFETY: sysconf reads a constant of the system; it has no
    // preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as f64)
}

/// A thread's or process's name and user plus system time in clock ticks,
/// from its `stat` line: `pid (name) state ...`, utime and stime being the
/// 14th and 15th fields. The name may hold spaces and parentheses, so the
/// fields are counted after its last `)`.
fn parse_stat(line: &str) -> Option<(&str, u64)> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let name = line.get(open + 1..close)?;
    let fields: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    // fields[0] is the 3rd field (state): utime is the 14th.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_its_name_and_cpu_ticks() {
        let line = "4242 (bench-scheduler) S 1 4242 4242 0 -1 4194368 900 0 0 0 \
                    1234 56 0 0 20 0 3 0 100 1000 200 18446744073709551615";
        assert_eq!(parse_stat(line), Some(("bench-scheduler", 1290)));
        // A name with a space and a parenthesis of its own.
        let odd = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 10 5 0 0 20 0 1 0 1 1 1 1";
        assert_eq!(parse_stat(odd), Some(("a (b) c", 15)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_shows_its_cpu_time() {
        let before = CpuTimes::now().expect("/proc/self/stat on Linux");
        // Spins until the kernel shows 50 ms more (however busy the
        // machine is), within a bound far above that.
        let spin = std::time::Instant::now();
        let spent = loop {
            let spent = CpuTimes::now().unwrap().since(&before);
            if spent.process >= Duration::from_millis(50) {
                break spent;
            }
            assert!(
                spin.elapsed() < Duration::from_secs(60),
                "a minute of spinning showed as {:?} of CPU time",
                spent.process
            );
            std::hint::black_box((0..10_000u64).sum::<u64>());
        };
        assert!(spent.scheduler <= spent.process);
    }
}
