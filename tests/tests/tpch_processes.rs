//! All 22 TPC-H queries on a scheduler and two executors, each a separate OS
//! process started from the stock binaries, compared value by value with
//! single-process DataFusion over the same files.

use ballista::client::SessionContextExt;
use ballista_tests::bench;
use ballista_tests::cluster::TestCluster;
use ballista_tests::data::tpch_data;
use datafusion::prelude::SessionContext;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_22_tpch_queries_on_separate_processes_match_datafusion() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let cluster = TestCluster::start(2, 2, None).await;

    let distributed = SessionContext::remote(&cluster.scheduler_url)
        .await
        .expect("connect");
    bench::register_tables(&distributed, &data)
        .await
        .expect("register tables");
    let local = ballista_tests::local_tpch_session(&data).await;

    let failures = ballista_tests::tpch_differences(&distributed, &local, 1..=22).await;
    assert!(
        failures.is_empty(),
        "{} queries differ:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // No executor hit a panic along the way.
    for executor in &cluster.executors {
        assert!(
            executor.stderr_lines_containing("panicked").is_empty(),
            "{}",
            executor.logs()
        );
    }
}
