//! Python test suites run against a test cluster: the interpreter of the
//! virtual environment `scripts/test.sh` prepares, and pytest.

use std::path::PathBuf;
use std::process::Command;

/// The virtual environment's interpreter (`BALLISTA_TEST_PYTHON`); panics,
/// saying how to get one, when it is not set.
pub fn python() -> PathBuf {
    let python = std::env::var_os("BALLISTA_TEST_PYTHON").unwrap_or_else(|| {
        panic!(
            "BALLISTA_TEST_PYTHON is not set: run the tests with scripts/test.sh, which \
             installs python/requirements.txt and python/ui_tests/requirements.txt into a \
             virtual environment and sets it"
        )
    });
    PathBuf::from(python)
}

/// Runs the pytest suite `suite` (a folder of this repository, such as
/// `python/tests`) with `env`, and fails unless every test passed and none
/// skipped itself; what it printed.
pub async fn run_pytest(suite: &str, env: Vec<(&'static str, String)>) -> String {
    let python = python();
    let suite = crate::repo_root().join(suite);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA"])
            .arg(&suite)
            .envs(env)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", python.display()))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "the Python suite failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        !stdout.contains("skipped"),
        "no Python test may skip itself:\n{stdout}"
    );
    stdout
}
