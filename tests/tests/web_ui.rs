//! The web UI in a real browser: `python/ui_tests` drives Debian's
//! Chromium with Playwright against stock scheduler and executor
//! processes, while a job runs. `scripts/test.sh` installs both and names
//! the virtual environment's interpreter in `BALLISTA_TEST_PYTHON`; without
//! them this test fails, saying so. Screenshots go to
//! `<target dir>/artifacts/`.

use std::path::{Path, PathBuf};

use ballista_tests::data::{tpch_data, tpch_tables_toml};
use ballista_tests::http::http_url;
use ballista_tests::probe::final_status;
use ballista_tests::python::run_pytest;
use ballista_tests::queries::statements;
use ballista_tests::secured::{LONG_QUERY, cluster_of_users_granting, log_in, sql_request, submit};

/// Where CI keeps files worth looking at after a run.
fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_follows_a_running_job_from_the_jobs_page_to_its_stages_and_executors() {
    ballista_tests::python::python();
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "Chromium is not installed: scripts/test.sh installs Debian's chromium package"
    );
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let tables = tpch_tables_toml(&data);
    let (mut cluster, _users) = cluster_of_users_granting(2, &tables, "").await;
    let base = http_url(&mut cluster.scheduler);
    let alice = log_in(&cluster, "alice", "alice-pw").await;
    let finished = final_status(&alice, sql_request(statements(9)[0], &[])).await;
    assert_eq!(
        finished.state,
        ballista::proto::JobState::Succeeded as i32,
        "{finished:?}"
    );
    let running = submit(&alice, sql_request(LONG_QUERY, &[])).await;

    let screenshots = artifacts_dir();
    run_pytest(
        "python/ui_tests",
        vec![
            ("BALLISTA_UI_URL", base),
            ("BALLISTA_UI_USER", "alice".into()),
            ("BALLISTA_UI_PASSWORD", "alice-pw".into()),
            ("BALLISTA_UI_RUNNING_JOB", running.to_string()),
            ("BALLISTA_UI_FINISHED_JOB", finished.job_id.clone()),
            ("BALLISTA_UI_EXECUTORS", cluster.executor_ids.join(",")),
            ("BALLISTA_UI_SCREENSHOTS", screenshots.display().to_string()),
        ],
    )
    .await;
    for shot in [
        "web-ui-job.png",
        "web-ui-running-job.png",
        "web-ui-executors.png",
    ] {
        let path = screenshots.join(shot);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} is missing or empty", path.display());
        eprintln!("screenshot: {}", path.display());
    }
    // The UI's cancel stopped the job.
    let status = alice.job_status(&running).await.unwrap();
    assert_eq!(status.state, ballista::proto::JobState::Cancelled as i32);
    ballista_tests::probe::assert_processes_up(&mut cluster);
}
