//! Small checks the limit, liveness and fault tests share: a one-value
//! query, a job's last status, and whether every process is still up.

use ballista::client::SchedulerClient;
use ballista::proto;
use datafusion::arrow::array::Int64Array;
use datafusion::prelude::SessionContext;

use crate::cluster::TestCluster;

/// The Int64 in the first column of the first row `sql` returns.
pub async fn single_i64(ctx: &SessionContext, sql: &str) -> i64 {
    let batches = ctx
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("the query succeeds");
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("an Int64 value")
        .value(0)
}

/// Submits `request` and follows its status stream to the last status.
pub async fn final_status(
    scheduler: &SchedulerClient,
    request: proto::ExecuteQueryRequest,
) -> proto::JobStatus {
    let mut updates = scheduler.execute(request).await.expect("submit");
    let mut last = None;
    while let Some(status) = updates.message().await.expect("status stream") {
        last = Some(status);
    }
    last.expect("final status")
}

/// Fails, with its log, when the scheduler or an executor has exited.
pub fn assert_processes_up(cluster: &mut TestCluster) {
    assert!(
        cluster.scheduler.is_running(),
        "{}",
        cluster.scheduler.logs()
    );
    for executor in &mut cluster.executors {
        assert!(executor.is_running(), "{}", executor.logs());
    }
}
