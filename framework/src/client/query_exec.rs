//! The plan node a client executes: submits the job, follows its status and
//! streams the result partitions back from the executors over Flight.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

use super::SchedulerClient;
use crate::error::{BallistaError, Result};
use crate::flight::FlightClientPool;
use crate::ids::JobId;
use crate::plan::{conform, conform_strict};
use crate::plugin::shuffle::ShuffleLocation;
use crate::proto::{self, JobState};

/// Called with every status update of a job a session runs; register one as
/// a session config extension to show progress.
#[derive(Clone)]
pub struct JobProgressListener(pub Arc<dyn Fn(&proto::JobStatus) + Send + Sync>);

impl fmt::Debug for JobProgressListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JobProgressListener")
    }
}

/// The text a session's next job is shown with in the REST API and web
/// UI (its SQL); register it as a session config extension. Without it a
/// job shows its logical plan.
#[derive(Debug, Clone)]
pub struct QueryText(pub String);

/// Runs a logical plan as a job on the cluster.
#[derive(Debug)]
pub struct DistributedQueryExec {
    query_text: String,
    scheduler: SchedulerClient,
    flight: FlightClientPool,
    plan: Vec<u8>,
    settings: Vec<(String, String)>,
    session_id: String,
    schema: SchemaRef,
    listener: Option<JobProgressListener>,
    properties: Arc<PlanProperties>,
    strict_nullability: bool,
}

impl DistributedQueryExec {
    /// This job, shown as `text` in the REST API and web UI.
    pub fn with_query_text(mut self, text: String) -> Self {
        self.query_text = text;
        self
    }

    /// A job for the serialized (optimized) logical `plan`.
    pub fn new(
        scheduler: SchedulerClient,
        flight: FlightClientPool,
        plan: Vec<u8>,
        settings: Vec<(String, String)>,
        session_id: String,
        schema: SchemaRef,
        listener: Option<JobProgressListener>,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            query_text: String::new(),
            scheduler,
            flight,
            plan,
            settings,
            session_id,
            schema,
            listener,
            properties,
            strict_nullability: false,
        }
    }

    /// Fails on a NULL in a column the plan declares non-nullable (the rows
    /// are about to be written into a table that requires it).
    pub fn with_strict_nullability(mut self, strict: bool) -> Self {
        self.strict_nullability = strict;
        self
    }
}

impl DisplayAs for DistributedQueryExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "DistributedQueryExec: scheduler={}",
            self.scheduler.url()
        )
    }
}

impl ExecutionPlan for DistributedQueryExec {
    fn name(&self) -> &str {
        "DistributedQueryExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    crate::plan::leaf_node_methods!();

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(BallistaError::Internal(format!(
                "DistributedQueryExec has no partition {partition}"
            ))
            .into());
        }
        let request = proto::ExecuteQueryRequest {
            query: Some(proto::execute_query_request::Query::LogicalPlan(
                self.plan.clone(),
            )),
            settings: proto::key_values(self.settings.clone()),
            plan_is_optimized: true,
            session_id: self.session_id.clone(),
            query_text: self.query_text.clone(),
        };
        let job = run_job(
            self.scheduler.clone(),
            self.flight.clone(),
            request,
            Arc::clone(&self.schema),
            self.listener.clone(),
        );
        // Rows come back exactly as the plan declared them: types that
        // crossed the wire in another form, and the nullability the client
        // planned (a NULL where the plan promised none fails here, as it
        // would single-process).
        let schema = Arc::clone(&self.schema);
        let strict = self.strict_nullability;
        let batches = futures::stream::once(job)
            .try_flatten()
            .and_then(move |batch| {
                let conformed = if strict {
                    conform_strict(batch, &schema)
                } else {
                    conform(batch, &schema)
                };
                futures::future::ready(conformed.map_err(DataFusionError::from))
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        )))
    }
}

/// Submits the job, waits for it to end, then streams its result partitions
/// in order. Reading to the end releases the job's data on the cluster;
/// dropping the stream before the job ends cancels it.
pub async fn run_job(
    scheduler: SchedulerClient,
    flight: FlightClientPool,
    request: proto::ExecuteQueryRequest,
    schema: SchemaRef,
    listener: Option<JobProgressListener>,
) -> DFResult<impl futures::Stream<Item = DFResult<arrow::record_batch::RecordBatch>> + Send> {
    let outcome = wait_for_job(&scheduler, request, listener.as_ref()).await;
    let (job_id, partitions) = outcome.map_err(DataFusionError::from)?;
    let locations: Vec<ShuffleLocation> = partitions
        .into_iter()
        .flatten()
        .filter(|l| l.stats.num_rows > 0)
        .collect();
    let fetch_job = job_id.clone();
    let batches = futures::stream::iter(locations)
        .map(move |location| {
            let flight = flight.clone();
            let schema = Arc::clone(&schema);
            let job_id = fetch_job.clone();
            async move {
                flight
                    .fetch(
                        &location.executor.host,
                        location.executor.port,
                        &job_id,
                        &location.path,
                        &location.ticket,
                        schema,
                    )
                    .await
                    .map_err(DataFusionError::from)
            }
        })
        .buffered(2)
        .try_flatten();
    let release = futures::stream::once(async move {
        if let Err(e) = scheduler.release(&job_id).await {
            tracing::debug!("releasing job {job_id}: {e}");
        }
        None
    })
    .filter_map(futures::future::ready);
    Ok(batches.chain(release))
}

async fn wait_for_job(
    scheduler: &SchedulerClient,
    request: proto::ExecuteQueryRequest,
    listener: Option<&JobProgressListener>,
) -> Result<(JobId, Vec<Vec<ShuffleLocation>>)> {
    let mut updates = scheduler.execute(request).await?;
    while let Some(status) = updates.message().await.map_err(BallistaError::from)? {
        if let Some(listener) = listener {
            (listener.0)(&status);
        }
        match JobState::try_from(status.state) {
            Ok(JobState::Succeeded) => {
                let job_id = JobId::parse(&status.job_id)?;
                let result = status.result.unwrap_or_default();
                let partitions = ShuffleLocation::partitions_from_proto(&result.partitions)?;
                return Ok((job_id, partitions));
            }
            Ok(JobState::Failed) | Ok(JobState::Cancelled) => {
                let error = status.error.unwrap_or_else(|| proto::ErrorInfo {
                    kind: proto::ErrorKind::Internal as i32,
                    message: format!("job {} ended without an error message", status.job_id),
                    ..Default::default()
                });
                return Err(BallistaError::from_proto(&error));
            }
            _ => {}
        }
    }
    Err(BallistaError::Unavailable(format!(
        "the scheduler at {} closed the job's status stream before the job ended",
        scheduler.url()
    )))
}
