//! Scheduler and executor processes started from the stock binaries.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballista::client::{ClientAuth, SchedulerClient};
use ballista::tls::TlsTrust;
use parking_lot::Mutex;

/// Path of a binary of this workspace, built next to the test executables.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found: build the binaries first with `cargo build -p ballista-bin --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A child process whose output is captured line by line.
pub struct Process {
    name: String,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn capture(stream: impl std::io::Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(line) => lines.lock().push(line),
                Err(_) => return,
            }
        }
    });
}

/// The processes' log level: `info`, or `BALLISTA_TEST_RUST_LOG` to look
/// closer at a failing test (which then prints whole logs).
fn test_log_level() -> String {
    std::env::var("BALLISTA_TEST_RUST_LOG").unwrap_or_else(|_| "info".to_string())
}

impl Process {
    /// Starts `binary` with `args`.
    pub fn start(name: &str, binary: &str, args: &[String], env: &[(&str, &str)]) -> Process {
        let mut command = Command::new(self::binary(binary));
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", test_log_level())
            // Tests run side by side: each process's HTTP service takes a
            // free port (and prints it) unless the test sets one.
            .env("BALLISTA_SCHEDULER__HTTP__PORT", "0")
            .env("BALLISTA_EXECUTOR__HTTP__PORT", "0");
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        capture(child.stdout.take().expect("stdout"), Arc::clone(&stdout));
        capture(child.stderr.take().expect("stderr"), Arc::clone(&stderr));
        Process {
            name: name.to_string(),
            child,
            stdout,
            stderr,
        }
    }

    /// Waits for a stdout line containing `needle`.
    pub fn wait_for_stdout(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for(needle, timeout, true)
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for(needle, timeout, false)
    }

    fn wait_for(&mut self, needle: &str, timeout: Duration, stdout: bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = if stdout { &self.stdout } else { &self.stderr };
            if let Some(line) = lines.lock().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status} before printing {needle:?}:\n{}",
                    self.name,
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not print {needle:?} within {timeout:?}:\n{}",
                    self.name,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stderr lines so far containing `needle`.
    pub fn stderr_lines_containing(&self, needle: &str) -> Vec<String> {
        self.stderr
            .lock()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Captured output, for failure messages.
    pub fn logs(&self) -> String {
        let out = self.stdout.lock().join("\n");
        let err = self.stderr.lock();
        let tail: Vec<&String> = err
            .iter()
            .rev()
            .take(if std::env::var_os("BALLISTA_TEST_RUST_LOG").is_some() {
                usize::MAX
            } else {
                80
            })
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!(
            "--- {} stdout ---\n{out}\n--- {} stderr (last {} lines) ---\n{}",
            self.name,
            self.name,
            tail.len(),
            tail.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// Asks the process to stop (SIGTERM), as a supervisor does.
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM {} failed", self.name);
    }

    /// Sends `signal` (such as `libc::SIGHUP`) to the process.
    pub fn signal(&mut self, signal: i32) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// Waits up to `timeout` for the process to exit; its exit code (`None`
    /// when a signal ended it), or `Err` when it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                return Err(format!("{} still runs after {timeout:?}", self.name));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.kill();
    }
}

/// A scheduler and executors, each a separate OS process.
pub struct TestCluster {
    /// The scheduler process.
    pub scheduler: Process,
    /// The executor processes.
    pub executors: Vec<Process>,
    /// The id each executor process registered with, in the same order.
    pub executor_ids: Vec<String>,
    /// URL of the scheduler.
    pub scheduler_url: String,
    /// What the test's clients trust when the cluster serves TLS.
    pub trust: TlsTrust,
    slots: usize,
    executor_config: Option<String>,
    _dirs: Vec<tempfile::TempDir>,
}

/// Starts one executor process and waits until it listens; returns it with
/// its executor id.
fn start_executor_process(
    index: usize,
    scheduler_url: &str,
    slots: usize,
    work_dir: &std::path::Path,
    config: Option<&str>,
) -> (Process, String) {
    let mut args = vec![
        "--bind-host".to_string(),
        "127.0.0.1".into(),
        "--port".into(),
        "0".into(),
        "--scheduler-url".into(),
        scheduler_url.to_string(),
        "--slots".into(),
        slots.to_string(),
        "--work-dir".into(),
        work_dir.display().to_string(),
    ];
    if let Some(path) = config {
        args.push("--config".into());
        args.push(path.to_string());
    }
    let mut executor = Process::start(
        &format!("executor-{index}"),
        "ballista-executor",
        &args,
        &[],
    );
    // `ballista-executor <id> listening on <address>`
    let line = executor.wait_for_stdout("listening on", Duration::from_secs(60));
    let id = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no executor id in {line:?}"))
        .to_string();
    (executor, id)
}

/// What a process that ran to its end printed.
#[derive(Debug)]
pub struct Finished {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// Runs `binary` to its end, killing it after `timeout_secs` (a process that
/// should have stopped but serves instead then fails the test, not hangs it).
pub fn run_to_exit(
    binary: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout_secs: u32,
) -> Finished {
    let mut command = Command::new("timeout");
    command
        .arg("--signal=KILL")
        .arg(timeout_secs.to_string())
        .arg(self::binary(binary))
        .args(args)
        .stdin(Stdio::null())
        .env("RUST_LOG", "info");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {binary}: {e}"));
    Finished {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The port in a `… listening on HOST:PORT` line.
pub fn listening_port(line: &str) -> u16 {
    line.rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

impl TestCluster {
    /// Starts a scheduler (with an optional TOML configuration) and
    /// `executors` executors with `slots` slots each, and waits until all
    /// executors have registered.
    pub async fn start(
        executors: usize,
        slots: usize,
        scheduler_toml: Option<&str>,
    ) -> TestCluster {
        Self::start_with(executors, slots, scheduler_toml, None).await
    }

    /// Like [`start`](Self::start), with a TOML configuration for every
    /// executor as well.
    pub async fn start_with(
        executors: usize,
        slots: usize,
        scheduler_toml: Option<&str>,
        executor_toml: Option<&str>,
    ) -> TestCluster {
        Self::start_serving(executors, slots, scheduler_toml, executor_toml, None).await
    }

    /// Like [`start_with`](Self::start_with); with `tls`, the
    /// configurations make every listener serve TLS, and the executors and
    /// the test's clients reach the scheduler over `https://` trusting it.
    pub async fn start_serving(
        executors: usize,
        slots: usize,
        scheduler_toml: Option<&str>,
        executor_toml: Option<&str>,
        tls: Option<TlsTrust>,
    ) -> TestCluster {
        let config_dir = tempfile::tempdir().expect("temp dir");
        let executor_config = executor_toml.map(|toml| {
            let path = config_dir.path().join("executor.toml");
            std::fs::write(&path, toml).expect("write executor config");
            path.display().to_string()
        });
        let mut args = vec![
            "--bind-host".to_string(),
            "127.0.0.1".into(),
            "--port".into(),
            "0".into(),
        ];
        if let Some(toml) = scheduler_toml {
            let path = config_dir.path().join("scheduler.toml");
            std::fs::write(&path, toml).expect("write scheduler config");
            args.push("--config".into());
            args.push(path.display().to_string());
        }
        // Each cluster keeps its catalog of client-created tables to itself
        // (the default file is shared by every process of this machine),
        // unless the test chooses where.
        let catalog = config_dir.path().join("catalog.json").display().to_string();
        let catalog_env: Vec<(&str, &str)> = match scheduler_toml {
            Some(toml) if toml.contains("[scheduler.catalog]") => Vec::new(),
            _ => vec![("BALLISTA_SCHEDULER__CATALOG__LOCATION", catalog.as_str())],
        };
        let mut scheduler = Process::start("scheduler", "ballista-scheduler", &args, &catalog_env);
        let line = scheduler.wait_for_stdout("listening on", Duration::from_secs(60));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let scheduler_url = format!("{scheme}://127.0.0.1:{}", listening_port(&line));

        let mut dirs = vec![config_dir];
        let mut processes = Vec::new();
        let mut executor_ids = Vec::new();
        for i in 0..executors {
            let work = tempfile::tempdir().expect("temp dir");
            let (process, id) = start_executor_process(
                i,
                &scheduler_url,
                slots,
                work.path(),
                executor_config.as_deref(),
            );
            processes.push(process);
            executor_ids.push(id);
            dirs.push(work);
        }
        let cluster = TestCluster {
            scheduler,
            executors: processes,
            executor_ids,
            scheduler_url,
            trust: tls.unwrap_or_default(),
            slots,
            executor_config,
            _dirs: dirs,
        };
        cluster.wait_for_executors(executors).await;
        cluster
    }

    /// Waits until `n` executors are registered.
    pub async fn wait_for_executors(&self, n: usize) {
        let client =
            SchedulerClient::connect_trusting(&self.scheduler_url, ClientAuth::Auto, &self.trust)
                .await
                .expect("scheduler reachable");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let registered = client.executors().await.expect("list executors").len();
            if registered >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {registered} of {n} executors registered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills executor `index` (SIGKILL) and starts it again on the same
    /// work directory and configuration, as a supervisor would after a
    /// crash; returns once the new process listens.
    pub fn restart_executor(&mut self, index: usize) {
        self.executors[index].kill();
        let work = self._dirs[index + 1].path().to_path_buf();
        let (process, id) = start_executor_process(
            index,
            &self.scheduler_url,
            self.slots,
            &work,
            self.executor_config.as_deref(),
        );
        self.executors[index] = process;
        self.executor_ids[index] = id;
    }

    /// Work directories of the executors.
    pub fn executor_work_dirs(&self) -> Vec<PathBuf> {
        self._dirs[1..]
            .iter()
            .map(|d| d.path().to_path_buf())
            .collect()
    }
}
