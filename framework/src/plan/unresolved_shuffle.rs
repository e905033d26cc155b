//! Placeholder for a shuffle read whose producer stage has not completed.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::Result as DFResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};

use crate::error::BallistaError;
use crate::ids::StageId;

/// How a consumer's partitions map onto a producer's map outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShuffleReadMode {
    /// Consumer partition `p` reads output partition `p` of every map task.
    Hash,
    /// Consumer partition `m` reads map task `m`'s single output, so each
    /// partition keeps its order (feeds a sort-preserving merge).
    PerMapTask,
    /// One consumer partition reads every map task's single output.
    Coalesce,
}

/// Stands for the output of `stage_id` until that stage completes.
#[derive(Debug)]
pub struct UnresolvedShuffleExec {
    stage_id: StageId,
    mode: ShuffleReadMode,
    input_partitions: usize,
    output_partitioning: Partitioning,
    output_ordering: Option<LexOrdering>,
    properties: Arc<PlanProperties>,
}

impl UnresolvedShuffleExec {
    /// A read of `stage_id`'s output. `input_partitions` is the producer's
    /// number of map tasks; `output_partitioning` is what the consumer sees
    /// (a `Hash` partitioning for hash reads, otherwise unknown partitioning of
    /// the right count); `output_ordering` is kept for per-map-task reads.
    pub fn new(
        stage_id: StageId,
        schema: SchemaRef,
        mode: ShuffleReadMode,
        input_partitions: usize,
        output_partitioning: Partitioning,
        output_ordering: Option<LexOrdering>,
    ) -> Self {
        let properties = read_properties(&schema, &output_partitioning, output_ordering.clone());
        Self {
            stage_id,
            mode,
            input_partitions,
            output_partitioning,
            output_ordering,
            properties,
        }
    }

    /// The producer stage.
    pub fn stage_id(&self) -> StageId {
        self.stage_id
    }
    /// How partitions map onto map outputs.
    pub fn mode(&self) -> ShuffleReadMode {
        self.mode
    }
    /// Number of map tasks of the producer.
    pub fn input_partitions(&self) -> usize {
        self.input_partitions
    }
    /// The partitioning consumers see.
    pub fn output_partitioning(&self) -> &Partitioning {
        &self.output_partitioning
    }
    /// Ordering of each partition, for per-map-task reads of sorted data.
    pub fn output_ordering(&self) -> Option<&LexOrdering> {
        self.output_ordering.as_ref()
    }
}

/// Plan properties of a shuffle read.
pub(crate) fn read_properties(
    schema: &SchemaRef,
    partitioning: &Partitioning,
    ordering: Option<LexOrdering>,
) -> Arc<PlanProperties> {
    let eq = match ordering {
        Some(ordering) => EquivalenceProperties::new_with_orderings(Arc::clone(schema), [ordering]),
        None => EquivalenceProperties::new(Arc::clone(schema)),
    };
    Arc::new(PlanProperties::new(
        eq,
        partitioning.clone(),
        EmissionType::Incremental,
        Boundedness::Bounded,
    ))
}

impl DisplayAs for UnresolvedShuffleExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "UnresolvedShuffleExec: stage={}, mode={:?}, partitions={}",
            self.stage_id,
            self.mode,
            self.output_partitioning.partition_count()
        )
    }
}

impl ExecutionPlan for UnresolvedShuffleExec {
    fn name(&self) -> &str {
        "UnresolvedShuffleExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    crate::plan::leaf_node_methods!();

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        Err(BallistaError::Internal(format!(
            "the shuffle read of stage {} was not resolved before execution",
            self.stage_id
        ))
        .into())
    }
}
