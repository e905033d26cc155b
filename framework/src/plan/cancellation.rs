//! Stopping a running task promptly.
//!
//! Aborting a task's tokio task takes effect only when the task next yields
//! (`Poll::Pending`). An operator that can compute for a long time without
//! yielding (an aggregate consuming an exploding join, whose every poll
//! returns a ready batch) would run on for minutes after its job was
//! cancelled, holding its slot and its memory. So the executor puts a
//! [`CancellableExec`] on every edge of the task's plan: each batch that
//! crosses an edge checks the task's [`CancelFlag`], and once it is raised
//! the consumer receives a cancellation error and stops, within one batch.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, replace_children_if_necessary,
};
use futures::Stream;

use crate::error::BallistaError;

/// Raised when a running task must stop; shared by every
/// [`CancellableExec`] of the task.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A flag not raised yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the task to stop at its next batch.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the task was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Puts a [`CancellableExec`] above every child of every node of `plan`
/// (the root itself stays what it is). The wrappers declare their child's
/// properties unchanged, so rebuilding each node keeps its plan valid.
pub fn with_cancellation(
    plan: Arc<dyn ExecutionPlan>,
    flag: &CancelFlag,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    let children = plan.children();
    if children.is_empty() {
        return Ok(plan);
    }
    let wrapped = children
        .into_iter()
        .map(|child| {
            let inner = with_cancellation(Arc::clone(child), flag)?;
            Ok(Arc::new(CancellableExec::new(inner, flag.clone())) as Arc<dyn ExecutionPlan>)
        })
        .collect::<DFResult<Vec<_>>>()?;
    replace_children_if_necessary(plan, wrapped)
}

/// Passes its input through unchanged, until its [`CancelFlag`] is raised;
/// then every poll returns a [`BallistaError::Cancelled`] error. Only ever
/// built on an executor (it is never serialized).
#[derive(Debug)]
pub struct CancellableExec {
    input: Arc<dyn ExecutionPlan>,
    flag: CancelFlag,
}

impl CancellableExec {
    /// Wraps `input`.
    pub fn new(input: Arc<dyn ExecutionPlan>, flag: CancelFlag) -> Self {
        Self { input, flag }
    }
}

impl DisplayAs for CancellableExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CancellableExec")
    }
}

impl ExecutionPlan for CancellableExec {
    fn name(&self) -> &str {
        "CancellableExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(BallistaError::Internal("CancellableExec takes one child".into()).into());
        }
        Ok(Arc::new(Self::new(children.remove(0), self.flag.clone())))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        Ok(Box::pin(CancellableStream {
            inner: self.input.execute(partition, context)?,
            flag: self.flag.clone(),
        }))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        None
    }
}

struct CancellableStream {
    inner: SendableRecordBatchStream,
    flag: CancelFlag,
}

impl Stream for CancellableStream {
    type Item = DFResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.flag.is_cancelled() {
            return Poll::Ready(Some(Err(DataFusionError::External(Box::new(
                BallistaError::Cancelled("the task was cancelled".into()),
            )))));
        }
        self.inner.as_mut().poll_next(cx)
    }
}

impl RecordBatchStream for CancellableStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::SessionContext;

    fn plan() -> Arc<dyn ExecutionPlan> {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )
        .unwrap();
        let source =
            MemorySourceConfig::try_new_exec(&[vec![batch.clone()], vec![batch]], schema, None)
                .unwrap();
        Arc::new(CoalescePartitionsExec::new(source))
    }

    #[tokio::test]
    async fn a_wrapped_plan_runs_unchanged_until_the_flag_is_raised() {
        let ctx = SessionContext::new().task_ctx();
        let flag = CancelFlag::new();
        let wrapped = with_cancellation(plan(), &flag).unwrap();
        assert_eq!(wrapped.name(), "CoalescePartitionsExec", "the root stays");
        assert_eq!(wrapped.children()[0].name(), "CancellableExec");
        let rows: usize = collect(Arc::clone(&wrapped), Arc::clone(&ctx))
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, 6);

        flag.cancel();
        let error = collect(wrapped, ctx).await.unwrap_err();
        let error = BallistaError::from_datafusion(error);
        assert!(
            matches!(error, BallistaError::Cancelled(_)),
            "expected Cancelled, got {error:?}"
        );
    }
}
