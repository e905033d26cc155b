//! A client session on a test cluster that records the job each query ran
//! as, so that a test can look at the job's status afterwards.

use std::path::Path;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use ballista::BallistaError;
use ballista::client::{JobProgressListener, SessionContextExt};
use ballista::ids::JobId;
use ballista::proto;
use datafusion::prelude::SessionContext;
use parking_lot::Mutex;

use crate::bench;

/// A remote session with the TPC-H SF 0.1 tables registered.
pub struct TrackedSession {
    /// The DataFusion session.
    pub ctx: SessionContext,
    jobs: Arc<Mutex<Vec<JobId>>>,
}

impl TrackedSession {
    /// Connects to `scheduler_url`, registers the TPC-H tables of `data`
    /// and applies `settings` with `SET`.
    pub async fn new(
        scheduler_url: &str,
        data: &Path,
        settings: &[(&str, &str)],
    ) -> TrackedSession {
        let ctx = SessionContext::remote(scheduler_url)
            .await
            .expect("connect");
        bench::register_tables(&ctx, data)
            .await
            .expect("register tables");
        for (key, value) in settings {
            ctx.sql(&format!("SET {key} = '{value}'"))
                .await
                .unwrap_or_else(|e| panic!("SET {key}: {e}"));
        }
        let jobs: Arc<Mutex<Vec<JobId>>> = Arc::default();
        let seen = Arc::clone(&jobs);
        ctx.state_ref()
            .write()
            .config_mut()
            .set_extension(Arc::new(JobProgressListener(Arc::new(
                move |status: &proto::JobStatus| {
                    if let Ok(id) = JobId::parse(&status.job_id) {
                        let mut jobs = seen.lock();
                        if !jobs.contains(&id) {
                            jobs.push(id);
                        }
                    }
                },
            ))));
        TrackedSession { ctx, jobs }
    }

    /// The jobs this session ran so far (also while one still runs), oldest
    /// first.
    pub fn jobs(&self) -> Arc<Mutex<Vec<JobId>>> {
        Arc::clone(&self.jobs)
    }

    /// Runs `sql`; returns its rows (or the typed error) and its job.
    pub async fn run(&self, sql: &str) -> (Result<Vec<RecordBatch>, BallistaError>, JobId) {
        let before = self.jobs.lock().len();
        let result = match self.ctx.sql(sql).await {
            Ok(df) => df.collect().await,
            Err(e) => Err(e),
        };
        let result = result.map_err(|e| BallistaError::from_datafusion(e).typed());
        let jobs = self.jobs.lock();
        assert_eq!(jobs.len(), before + 1, "one job per query");
        (result, jobs[before].clone())
    }
}

/// What single-process DataFusion answers on the TPC-H tables of `data`.
pub async fn expected(data: &Path, sql: &str) -> Vec<RecordBatch> {
    let local = crate::local_tpch_session(data).await;
    local.sql(sql).await.unwrap().collect().await.unwrap()
}
