//! The `ballista` command-line client.

use std::process::Command;

use ballista_tests::cluster::{TestCluster, binary};
use ballista_tests::data::tpch_data;

fn script(data: &std::path::Path) -> String {
    format!(
        "CREATE EXTERNAL TABLE nation STORED AS PARQUET LOCATION '{}/nation/';\n\
         CREATE VIEW asia AS SELECT n_name FROM nation WHERE n_regionkey = 2;\n\
         SELECT n_nationkey, n_name FROM nation WHERE n_nationkey < 3 ORDER BY n_nationkey;\n\
         -- a comment between statements\n\
         SELECT count(*) AS asian_nations FROM asia;\n\
         DROP VIEW asia;\n",
        data.display()
    )
}

const EXPECTED_CSV: &str =
    "n_nationkey,n_name\n0,ALGERIA\n1,ARGENTINA\n2,BRAZIL\nasian_nations\n5\n";

fn run(args: &[&str]) -> std::process::Output {
    Command::new(binary("ballista"))
        .args(args)
        .output()
        .expect("run ballista")
}

#[test]
fn sql_file_runs_statements_in_order_in_one_session_as_csv() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("script.sql");
    std::fs::write(&file, script(&data)).unwrap();

    let output = run(&["sql", "-f", file.to_str().unwrap(), "--format", "csv"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // DDL prints nothing; each query prints one header and its rows; timings
    // go to stderr only.
    assert_eq!(String::from_utf8_lossy(&output.stdout), EXPECTED_CSV);
    assert!(stderr.contains("row(s) in"), "{stderr}");

    let output = run(&[
        "sql",
        "-f",
        file.to_str().unwrap(),
        "--format",
        "json",
        "--quiet",
    ]);
    assert!(output.status.success());
    let json = String::from_utf8_lossy(&output.stdout);
    assert!(
        json.contains(r#"{"n_nationkey":0,"n_name":"ALGERIA"}"#),
        "{json}"
    );
}

#[test]
fn commands_and_files_run_in_the_order_given() {
    let dir = tempfile::tempdir().unwrap();
    let setup = dir.path().join("setup.sql");
    std::fs::write(&setup, "CREATE TABLE t AS VALUES (1), (2), (3);\n").unwrap();
    let last = dir.path().join("last.sql");
    std::fs::write(&last, "SELECT 'from the last file' AS step;\n").unwrap();
    let output = run(&[
        "sql",
        "-c",
        "SELECT 'first' AS step",
        "-f",
        setup.to_str().unwrap(),
        "-c",
        "SELECT sum(column1) AS total FROM t",
        "--file",
        last.to_str().unwrap(),
        "--format",
        "csv",
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "step\nfirst\ntotal\n6\nstep\nfrom the last file\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_against_a_remote_scheduler_and_a_failing_statement() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let cluster = TestCluster::start(2, 1, None).await;
    let sql = script(&data);
    let output = run(&[
        "sql",
        "--scheduler",
        &cluster.scheduler_url,
        "-c",
        &sql,
        "--format",
        "csv",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), EXPECTED_CSV);

    // The scheduler can come from [client] in the configuration instead…
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("client.toml");
    std::fs::write(
        &file,
        format!("[client]\nscheduler_url = \"{}\"\n", cluster.scheduler_url),
    )
    .unwrap();
    let config_args = [
        "sql",
        "--config",
        file.to_str().unwrap(),
        "-c",
        &sql,
        "--format",
        "csv",
    ];
    let output = run(&config_args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), EXPECTED_CSV);
    // …and the environment overrides the file (here with a dead scheduler,
    // which proves the setting is what the client connects to).
    let output = std::process::Command::new(binary("ballista"))
        .args(config_args)
        .env("BALLISTA_CLIENT__SCHEDULER_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach the scheduler at http://127.0.0.1:9"),
        "{stderr}"
    );

    // A failing statement stops the run with a non-zero exit; earlier output stays.
    let sql = "SELECT 1 AS one; SELECT * FROM missing_table; SELECT 2 AS two;";
    let output = run(&[
        "sql",
        "--scheduler",
        &cluster.scheduler_url,
        "-c",
        sql,
        "--format",
        "csv",
    ]);
    assert!(!output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), "one\n1\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Error: planning failed") && stderr.contains("missing_table"),
        "{stderr}"
    );
    assert!(!stderr.contains("(job "), "no job ran: {stderr}");

    // A job that fails on the executors is named next to DataFusion's error.
    let output = run(&[
        "sql",
        "--scheduler",
        &cluster.scheduler_url,
        "-c",
        &format!(
            "CREATE EXTERNAL TABLE nation STORED AS PARQUET LOCATION '{}/nation/'; \
             SELECT n_nationkey / (n_nationkey - n_nationkey) FROM nation",
            data.display()
        ),
        "--quiet",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Error: execution failed: Divide by zero error"),
        "{stderr}"
    );
    let job = stderr
        .split("(job ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("the failed job is not named: {stderr}"));
    let status = run(&["job", "status", job, "--scheduler", &cluster.scheduler_url]);
    let printed = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{printed}");
    assert!(printed.contains("failed"), "{printed}");
}

#[test]
fn tpch_command_generates_data_compares_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let json = dir.path().join("results.json");
    let output = run(&[
        "tpch",
        "--scale",
        "0.01",
        "--data",
        data.to_str().unwrap(),
        "--queries",
        "1,3,6",
        "--compare-local",
        "--output",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("generated"), "progress is shown: {stderr}");
    assert!(
        stdout.contains("ratio (distributed / single-process)"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let queries = report["queries"].as_array().unwrap();
    assert_eq!(queries.len(), 3);
    for q in queries {
        assert_eq!(q["check"]["status"], "match", "{q}");
        assert!(q["distributed_ms"][0].as_f64().unwrap() > 0.0);
        assert!(q["local_ms"][0].as_f64().unwrap() > 0.0);
    }
    assert!(report["ratio"].as_f64().unwrap() > 0.0);
}

#[test]
fn tpch_with_a_memory_limit_runs_executor_processes_and_reports_their_peak_rss() {
    let dir = tempfile::tempdir().unwrap();
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let json = dir.path().join("results.json");
    let config = dir.path().join("quota.toml");
    std::fs::write(&config, "[memory]\nkind = \"quota\"\n").unwrap();
    let output = run(&[
        "tpch",
        "--data",
        data.to_str().unwrap(),
        "--scale",
        "0.1",
        "--queries",
        "1,18",
        "--compare-local",
        "--executors",
        "2",
        "--memory-limit",
        "256MiB",
        "--config",
        config.to_str().unwrap(),
        "--output",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr
            .contains("started a scheduler and 2 executor process(es) with a 256MiB memory limit"),
        "{stderr}"
    );
    assert!(stdout.contains("executor peak RSS MiB"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for q in report["queries"].as_array().unwrap() {
        assert_eq!(q["check"]["status"], "match", "{q}");
        assert!(q["executor_peak_rss_bytes"].as_u64().unwrap() > 0, "{q}");
    }
    let executors = report["executor_memory"].as_array().unwrap();
    assert_eq!(executors.len(), 2, "{executors:?}");
    for e in executors {
        assert_eq!(e["budget_bytes"].as_u64(), Some(256 << 20), "{e}");
        let rss = e["peak_rss_bytes"].as_u64().unwrap();
        assert!(rss > 10 << 20, "an executor's peak RSS is measured: {e}");
        assert!(
            stdout.contains(&format!("executor pid {} ", e["pid"])),
            "{stdout}"
        );
    }
    assert!(
        executors
            .iter()
            .any(|e| e["peak_reserved_bytes"].as_u64().unwrap() > 0),
        "the executors report what their tasks reserved: {executors:?}"
    );
    // The whole cluster's sampled peak is at least any executor's sample
    // (taken at the same instants), and the CLI's own (client and
    // single-process DataFusion) is measured too.
    let cluster_peak = report["cluster_peak_rss_bytes"].as_u64().unwrap();
    let largest_sample = report["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["executor_peak_rss_bytes"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(
        cluster_peak >= largest_sample,
        "sampled total {cluster_peak} against an executor's sample of {largest_sample}"
    );
    assert!(report["client_peak_rss_bytes"].as_u64().unwrap() > 10 << 20);
    assert!(
        stdout.contains("cluster peak RSS (scheduler + executors, sampled)"),
        "{stdout}"
    );
    eprintln!("{stdout}");

    // The processes are gone afterwards.
    for e in executors {
        let pid = e["pid"].as_u64().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        assert!(
            status.is_empty() || status.contains("State:\tZ"),
            "executor {pid} still runs"
        );
    }

    // It starts its own cluster: a scheduler URL as well is refused.
    let output = run(&[
        "tpch",
        "--data",
        data.to_str().unwrap(),
        "--memory-limit",
        "256MiB",
        "--scheduler",
        "http://127.0.0.1:9",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--memory-limit starts its own scheduler and executors"),
        "{stderr}"
    );
    let output = run(&["tpch", "--memory-limit", "lots"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid byte size \"lots\""), "{stderr}");
}

#[test]
fn scheduler_bench_runs_jobs_on_simulated_executors_and_reports_launch_rates() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("sched.json");
    let output = run(&[
        "scheduler-bench",
        "--executors",
        "50",
        "--slots",
        "2",
        "--jobs",
        "3",
        "--concurrency",
        "2",
        "--partitions",
        "40",
        "--output",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("50 executors registered"), "{stderr}");
    assert!(stdout.contains("launches/s"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // Three measured jobs of two stages of 40 tasks, each task launched once.
    assert_eq!(report["task_launches"], 240, "{report}");
    assert_eq!(report["jobs"], 3);
    assert!(report["launches_per_sec"].as_f64().unwrap() > 0.0);
    // The scheduler's own CPU time is measured apart (Linux shows it).
    let process_cpu = report["process_cpu_secs"].as_f64().expect("process CPU");
    let scheduler_cpu = report["scheduler_cpu_secs"]
        .as_f64()
        .expect("scheduler CPU");
    assert!(
        (0.0..=process_cpu).contains(&scheduler_cpu),
        "scheduler {scheduler_cpu}s of the process's {process_cpu}s"
    );
    assert_eq!(report["task_latency"]["count"], 240, "{report}");
    assert_eq!(report["stage_transition"]["count"], 3, "{report}");
    for job in report["job_list"].as_array().unwrap() {
        assert_eq!(job["tasks"], 80, "{job}");
    }

    // Nonsense is refused before anything starts.
    let output = run(&["scheduler-bench", "--executors", "5000"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--executors 5000 is over scheduler.limits.max_executors (1000)"),
        "{stderr}"
    );
    let output = run(&["scheduler-bench", "--jobs", "0"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--jobs 0: must be at least 1"), "{stderr}");
    let output = run(&["scheduler-bench", "--partitions", "0"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--partitions must be between 1 and"),
        "{stderr}"
    );
}

#[test]
fn interactive_shell_reads_statements_from_piped_input() {
    use std::io::Write;
    let mut child = Command::new(binary("ballista"))
        .args(["sql", "--format", "csv"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A statement over two lines, a failing one, and one after it.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT 1 AS a;\nSELECT\n  2 AS b;\nSELECT * FROM nowhere;\nSELECT 3 AS c;\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "a\n1\nb\n2\nc\n3\n"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nowhere"), "{stderr}");
    // Piped input behaves like a script: a failed statement fails the run.
    assert!(!output.status.success());
}

#[test]
fn explain_analyze_shows_the_metrics_of_every_stage() {
    // On the embedded cluster: a grouping has a map stage and a final one.
    let output = run(&[
        "sql",
        "--format",
        "csv",
        "-c",
        "EXPLAIN ANALYZE SELECT value % 3 AS k, count(*) FROM generate_series(1, 10000) GROUP BY k",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // DataFusion's own row for the final stage as it ran, then one row per
    // stage with its operators' figures summed over its tasks.
    assert!(stdout.contains("Plan with Metrics"), "{stdout}");
    let stage_rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("Stage ")).collect();
    assert!(stage_rows.len() >= 2, "{stdout}");
    assert!(stage_rows[0].starts_with("Stage 1 ("), "{stdout}");
    let last = stage_rows.last().unwrap();
    assert!(last.contains(" - final ("), "{stdout}");
    assert_eq!(
        stage_rows
            .iter()
            .filter(|r| r.contains(" - final ("))
            .count(),
        1,
        "{stdout}"
    );
    for stage in stdout.split("\nStage ").skip(1) {
        assert!(stage.contains("ShuffleWriterExec"), "{stage}");
        assert!(stage.contains("output_rows="), "{stage}");
    }
    // The map stage reads the series and aggregates it partially.
    let map_stage = stdout.split("\nStage ").nth(1).unwrap();
    assert!(
        map_stage.contains("LazyMemoryExec") && map_stage.contains("AggregateExec: mode=Partial"),
        "{map_stage}"
    );
}
