//! Placeholder for a shuffle read whose producer stage has not completed.

use std::fmt;
use std::sync::Arc;

use datafusion::error::Result as DFResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
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
    equivalence: EquivalenceProperties,
    properties: Arc<PlanProperties>,
}

impl UnresolvedShuffleExec {
    /// A read of `stage_id`'s output. `input_partitions` is the producer's
    /// number of map tasks; `output_partitioning` is what the consumer sees
    /// (a `Hash` partitioning for hash reads, otherwise unknown partitioning of
    /// the right count); `equivalence` is what is known of the rows read
    /// (see [`read_equivalence`]), over the schema of the rows read.
    pub fn new(
        stage_id: StageId,
        mode: ShuffleReadMode,
        input_partitions: usize,
        output_partitioning: Partitioning,
        equivalence: EquivalenceProperties,
    ) -> Self {
        let properties = read_properties(&output_partitioning, equivalence.clone());
        Self {
            stage_id,
            mode,
            input_partitions,
            output_partitioning,
            equivalence,
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
    /// What is known of the rows read: orderings, equal expressions, constants.
    pub fn equivalence(&self) -> &EquivalenceProperties {
        &self.equivalence
    }
}

/// What a read of `input`'s output in `mode` can still promise about its
/// rows. Equal expressions survive any shuffle; orderings only a read that
/// returns one map task's output as it was written; a constant of each
/// partition only a read that does not mix partitions.
pub fn read_equivalence(
    input: &Arc<dyn ExecutionPlan>,
    mode: ShuffleReadMode,
) -> EquivalenceProperties {
    let mut equivalence = input.equivalence_properties().clone();
    let single_map_task = input.output_partitioning().partition_count() == 1;
    let (keeps_order, mixes_partitions) = match mode {
        ShuffleReadMode::PerMapTask => (true, false),
        ShuffleReadMode::Coalesce => (single_map_task, !single_map_task),
        ShuffleReadMode::Hash => (false, true),
    };
    if !keeps_order {
        equivalence.clear_orderings();
    }
    if mixes_partitions {
        equivalence.clear_per_partition_constants();
    }
    equivalence
}

/// Plan properties of a shuffle read.
pub(crate) fn read_properties(
    partitioning: &Partitioning,
    equivalence: EquivalenceProperties,
) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        equivalence,
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
