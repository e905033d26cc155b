//! Cancelling a running job through the API stops its tasks on the executors
//! and leaves the cluster free for the next job.

use std::time::{Duration, Instant};

use ballista::client::{SchedulerClient, SessionContextExt};
use ballista::ids::JobId;
use ballista::proto::{self, ErrorKind, JobState};
use ballista_tests::cluster::TestCluster;
use ballista_tests::data::tpch_data;
use datafusion::prelude::SessionContext;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_job_stops_its_tasks_and_frees_the_cluster() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let toml = format!(
        "[[scheduler.tables]]\nname = \"lineitem\"\nlocation = \"{}/lineitem/\"\nformat = \"parquet\"\n",
        data.display()
    );
    let cluster = TestCluster::start(2, 1, Some(&toml)).await;
    let scheduler = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();

    // Hundreds of millions of joined rows: runs far longer than this test waits.
    let heavy = "SELECT count(*) FROM lineitem a JOIN lineitem b ON a.l_suppkey = b.l_suppkey";
    let request = proto::ExecuteQueryRequest {
        query: Some(proto::execute_query_request::Query::Sql(heavy.into())),
        ..Default::default()
    };
    let mut updates = scheduler.execute(request).await.unwrap();
    let job_id = loop {
        let status = updates.message().await.unwrap().expect("status");
        let running = status
            .progress
            .as_ref()
            .is_some_and(|p| p.tasks_running > 0);
        if running {
            break JobId::parse(&status.job_id).unwrap();
        }
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        scheduler.cancel(&job_id).await.unwrap(),
        "a running job can be cancelled"
    );

    let mut last = None;
    while let Some(status) = updates.message().await.unwrap() {
        last = Some(status);
    }
    let status = last.unwrap();
    assert_eq!(status.state, JobState::Cancelled as i32);
    assert_eq!(status.error.unwrap().kind, ErrorKind::Cancelled as i32);
    assert!(
        !scheduler.cancel(&job_id).await.unwrap(),
        "a finished job is not cancelled again"
    );

    // The executors stopped the tasks (each logs it) ...
    let deadline = Instant::now() + Duration::from_secs(5);
    while cluster
        .executors
        .iter()
        .all(|e| e.stderr_lines_containing("cancelling task").is_empty())
    {
        assert!(Instant::now() < deadline, "no executor cancelled a task");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and the slots serve the next job.
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();
    let started = Instant::now();
    let batches = ctx
        .sql("SELECT count(*) FROM lineitem WHERE l_quantity > 49")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(batches[0].num_rows(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "slots were not freed: {:?}",
        started.elapsed()
    );
}
