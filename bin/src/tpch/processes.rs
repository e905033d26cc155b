//! A scheduler and executors started as child processes of `ballista tpch
//! --memory-limit`, so that each executor's resident memory can be measured
//! from outside it (the kernel's `/proc/<pid>/status`) and set next to its
//! configured budget.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

/// Each process listens on loopback, on free ports (gRPC and HTTP), so
/// that several benchmark clusters and tests can run side by side.
const LOOPBACK_ANY_PORTS: [&str; 6] = [
    "--bind-host",
    "127.0.0.1",
    "--port",
    "0",
    "--http-port",
    "0",
];

/// Scheduler and executor child processes; killed when dropped.
pub struct ProcessCluster {
    /// URL of the scheduler.
    pub scheduler_url: String,
    scheduler: Child,
    executors: Vec<Child>,
    executor_ports: Vec<u16>,
    /// Where the processes' logs are written (removed with the cluster
    /// unless [`keep_logs`](Self::keep_logs) is called).
    log_dir: Option<tempfile::TempDir>,
    _work_dirs: Vec<tempfile::TempDir>,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ProcessClusterSpec {
    /// Executors to start.
    pub executors: usize,
    /// Task slots per executor (`None`: the executor's default).
    pub slots: Option<usize>,
    /// `--memory-limit` of every executor, as written by the user.
    pub memory_limit: String,
    /// Configuration file passed to every process.
    pub config: Option<PathBuf>,
    /// Whether that configuration makes the scheduler serve TLS (its
    /// executors are then told an https:// URL).
    pub tls: bool,
}

/// A sibling binary of the running one (`ballista-scheduler` next to
/// `ballista`).
fn sibling(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this program: {e}"))?;
    let path = exe.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found next to {}: build the stock binaries with `cargo build --release -p ballista-bin`",
            path.display(),
            exe.display()
        ))
    }
}

/// Starts `command` and waits for its `… listening on HOST:PORT` line;
/// returns the child and the port.
fn start_listening(mut command: Command, name: &str, log: &Path) -> Result<(Child, u16), String> {
    let log_file =
        std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("listening on")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(line);
            }
        }
    });
    let failed = |mut child: Child, why: String| -> Result<(Child, u16), String> {
        let _ = child.kill();
        let _ = child.wait();
        let log_text = std::fs::read_to_string(log).unwrap_or_default();
        Err(format!(
            "{name} {why}; its log ({}):\n{}",
            log.display(),
            log_text.trim_end()
        ))
    };
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => match line
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse::<u16>().ok())
        {
            Some(port) => Ok((child, port)),
            None => failed(child, format!("printed no port: {line:?}")),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            let status = child
                .wait()
                .map_or("an unknown status".to_string(), |s| s.to_string());
            failed(child, format!("exited before it listened ({status})"))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            failed(child, "did not start within 60 s".to_string())
        }
    }
}

impl ProcessCluster {
    /// Starts the scheduler, then the executors, each listening on a free
    /// loopback port.
    pub fn start(spec: &ProcessClusterSpec) -> Result<Self, String> {
        let log_dir = tempfile::Builder::new()
            .prefix("ballista-tpch-logs-")
            .tempdir()
            .map_err(|e| format!("cannot create a log folder: {e}"))?;
        let config_args: Vec<String> = spec
            .config
            .iter()
            .flat_map(|c| ["--config".to_string(), c.display().to_string()])
            .collect();
        let mut scheduler = Command::new(sibling("ballista-scheduler")?);
        scheduler.args(LOOPBACK_ANY_PORTS).args(&config_args);
        let (scheduler, port) = start_listening(
            scheduler,
            "ballista-scheduler",
            &log_dir.path().join("scheduler.log"),
        )?;
        let scheme = if spec.tls { "https" } else { "http" };
        let scheduler_url = format!("{scheme}://127.0.0.1:{port}");
        let mut cluster = ProcessCluster {
            scheduler_url: scheduler_url.clone(),
            scheduler,
            executors: Vec::new(),
            executor_ports: Vec::new(),
            log_dir: Some(log_dir),
            _work_dirs: Vec::new(),
        };
        for i in 0..spec.executors.max(1) {
            let work = tempfile::Builder::new()
                .prefix("ballista-tpch-executor-")
                .tempdir()
                .map_err(|e| format!("cannot create a work folder: {e}"))?;
            let mut executor = Command::new(sibling("ballista-executor")?);
            executor
                .args(LOOPBACK_ANY_PORTS)
                .args(["--scheduler-url", &scheduler_url])
                .args(["--memory-limit", &spec.memory_limit])
                .arg("--work-dir")
                .arg(work.path())
                .args(&config_args);
            if let Some(slots) = spec.slots {
                executor.args(["--slots", &slots.to_string()]);
            }
            let log = cluster.log_path().join(format!("executor-{i}.log"));
            let (child, port) = start_listening(executor, "ballista-executor", &log)?;
            cluster.executors.push(child);
            cluster.executor_ports.push(port);
            cluster._work_dirs.push(work);
        }
        Ok(cluster)
    }

    /// The folder of the processes' logs.
    pub fn log_path(&self) -> PathBuf {
        self.log_dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default()
    }

    /// Stops the processes and keeps their logs; returns where they are.
    pub fn keep_logs(mut self) -> PathBuf {
        match self.log_dir.take() {
            Some(dir) => dir.keep(),
            None => PathBuf::new(),
        }
    }

    /// Process id of the scheduler.
    pub fn scheduler_pid(&self) -> u32 {
        self.scheduler.id()
    }

    /// Process ids of the executors.
    pub fn executor_pids(&self) -> Vec<u32> {
        self.executors.iter().map(Child::id).collect()
    }

    /// (process id, port) of each executor.
    pub fn executor_processes(&self) -> Vec<(u32, u16)> {
        self.executors
            .iter()
            .map(Child::id)
            .zip(self.executor_ports.iter().copied())
            .collect()
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for child in self.executors.iter_mut().chain([&mut self.scheduler]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A field of `/proc/<pid>/status` in bytes (`VmRSS`, `VmHWM`).
pub fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Samples the resident memory of processes every few milliseconds and
/// keeps, per watched process, the highest figure since the last
/// [`take_window`](Self::take_window), and the highest sum over all sampled
/// processes (the whole cluster).
pub struct RssMonitor {
    window_peaks: Arc<Mutex<HashMap<u32, u64>>>,
    total_peak: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssMonitor {
    /// Starts sampling `watched` (each one's peak per window) and `others`
    /// (counted in the total only) every `interval`.
    pub fn start(watched: Vec<u32>, others: Vec<u32>, interval: Duration) -> Self {
        let window_peaks: Arc<Mutex<HashMap<u32, u64>>> = Arc::default();
        let total_peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let peaks = Arc::clone(&window_peaks);
            let total_peak = Arc::clone(&total_peak);
            let stop = Arc::clone(&stop);
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut total = 0;
                    for pid in &watched {
                        if let Some(rss) = proc_status_bytes(*pid, "VmRSS") {
                            total += rss;
                            let mut peaks = peaks.lock();
                            let peak = peaks.entry(*pid).or_default();
                            *peak = (*peak).max(rss);
                        }
                    }
                    for pid in &others {
                        total += proc_status_bytes(*pid, "VmRSS").unwrap_or(0);
                    }
                    total_peak.fetch_max(total, Ordering::Relaxed);
                    std::thread::sleep(interval);
                }
            }
        });
        Self {
            window_peaks,
            total_peak,
            stop,
            thread: Some(thread),
        }
    }

    /// The highest sum of the resident sizes of all sampled processes.
    pub fn total_peak(&self) -> u64 {
        self.total_peak.load(Ordering::Relaxed)
    }

    /// The highest resident size any process had since the last call.
    pub fn take_window(&self) -> u64 {
        let mut peaks = self.window_peaks.lock();
        let max = peaks.values().copied().max().unwrap_or(0);
        peaks.clear();
        max
    }
}

impl Drop for RssMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One executor's memory over a benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutorMemoryReport {
    /// Its process id.
    pub pid: u32,
    /// The port it listened on.
    pub port: u16,
    /// The budget it was given (bytes).
    pub budget_bytes: u64,
    /// Highest resident set size of the process, as the kernel recorded it
    /// (`VmHWM`).
    pub peak_rss_bytes: u64,
    /// Highest memory its tasks reserved through the memory manager.
    pub peak_reserved_bytes: u64,
}

impl ExecutorMemoryReport {
    /// Peak RSS over budget.
    pub fn rss_ratio(&self) -> f64 {
        if self.budget_bytes == 0 {
            0.0
        } else {
            self.peak_rss_bytes as f64 / self.budget_bytes as f64
        }
    }
}
