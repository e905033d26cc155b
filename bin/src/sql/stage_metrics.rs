//! `EXPLAIN ANALYZE` on a cluster shows every stage: DataFusion's answer
//! covers only the final stage (the part of the plan that ran where
//! `AnalyzeExec` did), so the metrics the executors reported for each
//! stage's operators, summed over its tasks, follow it as one row per
//! stage.

use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use ballista::client::JobProgressListener;
use ballista::proto::{self, JobState};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;

/// Keeps the final status of the job a statement runs, while passing every
/// status on to the session's own listener.
pub struct FinalStatus {
    captured: Arc<Mutex<Option<proto::JobStatus>>>,
    previous: Option<Arc<JobProgressListener>>,
}

impl FinalStatus {
    /// Starts listening on `ctx`'s jobs.
    pub fn listen(ctx: &SessionContext) -> Self {
        let previous = ctx.state().config().get_extension::<JobProgressListener>();
        let captured: Arc<Mutex<Option<proto::JobStatus>>> = Arc::default();
        let keep = Arc::clone(&captured);
        let forward = previous.clone();
        let listener = JobProgressListener(Arc::new(move |status: &proto::JobStatus| {
            if let Some(previous) = &forward {
                (previous.0)(status);
            }
            if status.state == JobState::Succeeded as i32 {
                *keep.lock().unwrap_or_else(|e| e.into_inner()) = Some(status.clone());
            }
        }));
        ctx.state_ref()
            .write()
            .config_mut()
            .set_extension(Arc::new(listener));
        FinalStatus { captured, previous }
    }

    /// Puts the session's own listener back; the final status seen.
    pub fn finish(self, ctx: &SessionContext) -> Option<proto::JobStatus> {
        let previous = self
            .previous
            .unwrap_or_else(|| Arc::new(JobProgressListener(Arc::new(|_: &proto::JobStatus| {}))));
        ctx.state_ref().write().config_mut().set_extension(previous);
        self.captured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// One row per stage of `status` (`Stage 2 - final (4 tasks)`, its operators with
/// their metrics), in the two text columns of `schema`, EXPLAIN ANALYZE's.
pub fn stage_rows(
    schema: &SchemaRef,
    status: &proto::JobStatus,
) -> Result<Option<RecordBatch>, DataFusionError> {
    if schema.fields().len() != 2 || status.stages.is_empty() {
        return Ok(None);
    }
    let mut kinds = Vec::new();
    let mut plans = Vec::new();
    for stage in &status.stages {
        kinds.push(format!(
            "Stage {}{} ({} task{})",
            stage.stage_id,
            if stage.is_final { " - final" } else { "" },
            stage.tasks.len(),
            if stage.tasks.len() == 1 { "" } else { "s" },
        ));
        plans.push(ballista::plan::render_operator_metrics(&stage.operators));
    }
    let columns: Vec<ArrayRef> = [kinds, plans]
        .into_iter()
        .zip(schema.fields())
        .map(|(values, field)| {
            let array: ArrayRef = Arc::new(StringArray::from(values));
            arrow::compute::cast(&array, field.data_type())
                .map_err(|e| DataFusionError::ArrowError(Box::new(e), None))
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(RecordBatch::try_new(Arc::clone(schema), columns)?))
}
