//! Python clients of a cluster: the pytest suite under `python/tests`,
//! run with the ADBC Flight SQL driver from PyPI against stock scheduler
//! and executor processes. `scripts/test.sh` installs the driver into a
//! virtual environment and names its interpreter in
//! `BALLISTA_TEST_PYTHON`; without it this test fails, saying so.

use std::path::Path;
use std::process::Command;

use arrow::ipc::writer::FileWriter;
use ballista_tests::cluster::TestCluster;
use ballista_tests::data::{tpch_data, tpch_tables_toml};
use ballista_tests::local_tpch_session;
use ballista_tests::python::{python, run_pytest};
use ballista_tests::queries::statements;
use ballista_tests::secured::cluster_of_users_granting;

/// TPC-H query `n` as one statement: q15's view becomes a common table
/// expression (statements other than queries are not served over Flight
/// SQL yet).
fn single_statement(n: usize) -> String {
    let parts = statements(n);
    if parts.len() == 1 {
        return parts[0].to_string();
    }
    let view = parts[0]
        .strip_prefix("create view ")
        .expect("q15 starts with its view");
    let (name, body) = view.split_once(" as").expect("the view's query");
    format!("with {name} as ({body}) {}", parts[1])
}

/// Writes each query's text and single-process DataFusion's answer (Arrow
/// IPC) under `dir`, for the Python tests to compare with.
async fn write_expected(data: &Path, dir: &Path) {
    let local = local_tpch_session(data).await;
    for n in 1..=22 {
        let sql = single_statement(n);
        std::fs::write(dir.join(format!("q{n}.sql")), &sql).unwrap();
        let df = local
            .sql(&sql)
            .await
            .unwrap_or_else(|e| panic!("q{n}: {e}"));
        let schema = df.schema().as_arrow().clone();
        let batches = df.collect().await.unwrap_or_else(|e| panic!("q{n}: {e}"));
        let file = std::fs::File::create(dir.join(format!("q{n}.arrow"))).unwrap();
        let mut writer = FileWriter::try_new(file, &schema).unwrap();
        for batch in &batches {
            writer.write(batch).unwrap();
        }
        writer.finish().unwrap();
    }
}

/// Made by one connection before the scheduler restarts; the suite's
/// `test_a_view_made_before_the_scheduler_restarted_is_still_there` reads
/// it after.
const MAKE_KEPT_VIEW: &str = "
import sys
import adbc_driver_flightsql.dbapi as flight_sql
kwargs = {'username': 'alice', 'password': 'alice-pw'}
with flight_sql.connect(sys.argv[1], db_kwargs=kwargs) as conn, conn.cursor() as cursor:
    cursor.execute('CREATE VIEW py_kept AS SELECT r_name FROM region WHERE r_regionkey < 2')
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_adbc_suite_passes_against_stock_processes() {
    python();
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let expected = tempfile::tempdir().unwrap();
    write_expected(&data, expected.path()).await;
    let mut tables = tpch_tables_toml(&data);
    // The catalog is kept in a file, so that a view made before the
    // scheduler restarts is found after it.
    let kept = tempfile::tempdir().unwrap();
    tables.push_str(&format!(
        "[scheduler.catalog]\nlocation = \"{}\"\n",
        kept.path().join("catalog.json").display()
    ));
    // Alice may write here (executemany's INSERTs).
    let writable = tempfile::tempdir().unwrap();
    let grants = format!(
        "read = [\"file://{0}/\"]\nwrite = [\"file://{0}/\"]",
        writable.path().display()
    );
    let (cluster, _users) = cluster_of_users_granting(2, &tables, &grants).await;
    let uri = cluster.scheduler_url.replace("http://", "grpc://");
    let made = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg("-c")
            .arg(MAKE_KEPT_VIEW)
            .arg(&uri)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        made.status.success(),
        "creating py_kept: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    drop::<TestCluster>(cluster);
    let (mut cluster, _users) = cluster_of_users_granting(2, &tables, &grants).await;
    let uri = cluster.scheduler_url.replace("http://", "grpc://");
    run_pytest(
        "python/tests",
        vec![
            ("BALLISTA_FLIGHT_SQL_URI", uri),
            ("BALLISTA_USER", "alice".into()),
            ("BALLISTA_PASSWORD", "alice-pw".into()),
            ("BALLISTA_EXPECTED", expected.path().display().to_string()),
            ("BALLISTA_WRITABLE", writable.path().display().to_string()),
        ],
    )
    .await;

    // The guide's example runs as written.
    let example = ballista_tests::repo_root().join("python/examples/quickstart.py");
    let uri = cluster.scheduler_url.replace("http://", "grpc://");
    let python = python();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&example)
            .args([uri.as_str(), "alice", "alice-pw"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("datafusion.public.lineitem"),
        "quickstart.py: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    ballista_tests::probe::assert_processes_up(&mut cluster);
    drop::<TestCluster>(cluster);
}
