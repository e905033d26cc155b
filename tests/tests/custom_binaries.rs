//! The custom scheduler and executor of `examples/` run as real processes,
//! select the third-party `mount` storage plugin from TOML, and show their
//! own components at work.

use std::path::Path;
use std::time::Duration;

use ballista::BallistaError;
use ballista::client::SessionContextExt;
use ballista::config::{BallistaConfig, BallistaSettings};
use ballista::plugin::registry::PluginRegistry;
use ballista_tests::cluster::{Process, listening_port, run_to_exit};
use ballista_tests::data::tpch_data;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

const QUERY: &str = "SELECT n_regionkey, count(*) AS nations, min(n_name) AS first \
                     FROM nation GROUP BY n_regionkey ORDER BY n_regionkey";

fn storage_toml(root: &Path) -> String {
    format!(
        "[[storage]]\nkind = \"mount\"\nscheme = \"warehouse\"\nroot = \"{}\"\n",
        root.display()
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_binaries_run_a_query_through_the_third_party_plugin_chosen_in_toml() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let dir = tempfile::tempdir().unwrap();
    // The table lives only under the mount: warehouse://tpch/nation/ is
    // <root>/tpch/nation/, a path no built-in storage would map it to.
    let root = dir.path().join("mounted");
    copy_dir(&data.join("nation"), &root.join("tpch/nation"));

    let scheduler_toml = format!(
        "[scheduler]\nbind_host = \"127.0.0.1\"\nport = 0\n\n[[scheduler.tables]]\nname = \"nation\"\nlocation = \"warehouse://tpch/nation/\"\nformat = \"parquet\"\n\n{}",
        storage_toml(&root)
    );
    let scheduler_file = dir.path().join("scheduler.toml");
    std::fs::write(&scheduler_file, &scheduler_toml).unwrap();

    // The stock scheduler does not link the plugin, and says so.
    let stock = run_to_exit(
        "ballista-scheduler",
        &["--config", scheduler_file.to_str().unwrap()],
        &[],
        60,
    );
    assert_eq!(stock.code, Some(2), "{stock:?}");
    assert!(
        stock.stderr.contains("storage[0].kind = \"mount\""),
        "{}",
        stock.stderr
    );

    let mut scheduler = Process::start(
        "custom-scheduler",
        "custom-scheduler",
        &["--config".into(), scheduler_file.display().to_string()],
        &[],
    );
    let line = scheduler.wait_for_stdout("listening on", Duration::from_secs(60));
    let scheduler_url = format!("http://127.0.0.1:{}", listening_port(&line));

    let executor_file = dir.path().join("executor.toml");
    std::fs::write(
        &executor_file,
        format!(
            "[executor]\nbind_host = \"127.0.0.1\"\nport = 0\nslots = 2\nscheduler_url = \"{scheduler_url}\"\n\n{}",
            storage_toml(&root)
        ),
    )
    .unwrap();
    let mut executor = Process::start(
        "custom-executor",
        "custom-executor",
        &["--config".into(), executor_file.display().to_string()],
        &[],
    );
    executor.wait_for_stdout("listening on", Duration::from_secs(60));

    // A client resolving the same URLs: the same TOML, the same registry.
    let client_settings =
        BallistaSettings::load_with_env(Some(&scheduler_file), Vec::new()).unwrap();
    let mut registry = PluginRegistry::with_builtins();
    ballista_storage_mount::register(&mut registry);
    let config = BallistaConfig::builder()
        .settings(client_settings)
        .registry(registry)
        .build();
    let ctx = SessionContext::remote_with_config(&scheduler_url, config)
        .await
        .expect("connect to the custom scheduler");

    // The custom scheduler's own admission rule: unnamed jobs are refused.
    let refused = ctx.sql(QUERY).await.unwrap().collect().await.unwrap_err();
    let refused = BallistaError::from_datafusion(refused).typed();
    assert!(
        matches!(refused, BallistaError::ResourcesExhausted(ref m) if m.contains("named jobs only")),
        "{refused:?}"
    );

    // Named, the query runs on the custom executor through the mount.
    ctx.sql("SET ballista.job_name = 'nation-report'")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let distributed = ctx.sql(QUERY).await.unwrap().collect().await.unwrap();

    let local = SessionContext::new();
    local
        .register_parquet(
            "nation",
            data.join("nation").to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    let expected = local.sql(QUERY).await.unwrap().collect().await.unwrap();
    let show = |b: &[datafusion::arrow::array::RecordBatch]| {
        datafusion::arrow::util::pretty::pretty_format_batches(b)
            .unwrap()
            .to_string()
    };
    assert_eq!(show(&distributed), show(&expected));
    assert_eq!(
        distributed.iter().map(|b| b.num_rows()).sum::<usize>(),
        5,
        "five regions"
    );

    // The custom executor's own memory accounting saw the tasks.
    executor.wait_for_stderr("accounting: task", Duration::from_secs(10));
    assert!(scheduler.is_running() && executor.is_running());
}
