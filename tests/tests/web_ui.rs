//! The web UI in a real browser: `python/ui_tests` drives Debian's
//! Chromium with Playwright against stock scheduler and executor
//! processes, while a job runs. `scripts/test.sh` installs both and names
//! the virtual environment's interpreter in `BALLISTA_TEST_PYTHON`; without
//! them this test fails, saying so. Screenshots go to
//! `<target dir>/artifacts/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ballista_tests::data::tpch_data;
use ballista_tests::http::http_url;
use ballista_tests::probe::final_status;
use ballista_tests::queries::statements;
use ballista_tests::secured::{LONG_QUERY, cluster_of_users_granting, log_in, sql_request, submit};

fn python() -> PathBuf {
    let python = std::env::var_os("BALLISTA_TEST_PYTHON").unwrap_or_else(|| {
        panic!(
            "BALLISTA_TEST_PYTHON is not set: run the tests with scripts/test.sh, which \
             installs Playwright into a virtual environment and sets it"
        )
    });
    PathBuf::from(python)
}

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
    let python = python();
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "Chromium is not installed: scripts/test.sh installs Debian's chromium package"
    );
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let mut tables = String::new();
    for table in ballista_bin::tpch::datagen::TABLES {
        tables.push_str(&format!(
            "[[scheduler.tables]]\nname = \"{table}\"\nlocation = \"{}/{table}/\"\nformat = \"parquet\"\n",
            data.display()
        ));
    }
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

    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/ui_tests");
    let screenshots = artifacts_dir();
    let executors = cluster.executor_ids.join(",");
    let running_id = running.to_string();
    let finished_id = finished.job_id.clone();
    let shots = screenshots.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA"])
            .arg(&suite)
            .env("BALLISTA_UI_URL", &base)
            .env("BALLISTA_UI_USER", "alice")
            .env("BALLISTA_UI_PASSWORD", "alice-pw")
            .env("BALLISTA_UI_RUNNING_JOB", &running_id)
            .env("BALLISTA_UI_FINISHED_JOB", &finished_id)
            .env("BALLISTA_UI_EXECUTORS", &executors)
            .env("BALLISTA_UI_SCREENSHOTS", &shots)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", python.display()))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        !stdout.contains("skipped"),
        "no test may skip itself:\n{stdout}"
    );
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
