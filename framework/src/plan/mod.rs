//! Distributed planning: splitting a DataFusion physical plan into stages at
//! exchange boundaries, the plan nodes that write and read shuffles, and the
//! codec that carries them inside datafusion-proto plans.
//!
//! A stage is a plan rooted at a [`ShuffleWriterExec`]; each partition of its
//! input is one task. Where a consumer needs a producer's output, the
//! consumer's plan holds an [`UnresolvedShuffleExec`] until the producer
//! stage completes; the scheduler then replaces it with a
//! [`ShuffleReaderExec`] listing the committed [`ShuffleLocation`](crate::plugin::shuffle::ShuffleLocation)s.

/// The `ExecutionPlan` methods of a node with no children and no
/// expressions; used inside `impl ExecutionPlan for ...` blocks.
macro_rules! leaf_node_methods {
    () => {
        fn children(&self) -> Vec<&std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            vec![]
        }

        fn apply_expressions(
            &self,
            _f: &mut dyn FnMut(
                &std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>,
            ) -> datafusion::error::Result<
                datafusion::common::tree_node::TreeNodeRecursion,
            >,
        ) -> datafusion::error::Result<datafusion::common::tree_node::TreeNodeRecursion> {
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        }

        fn with_new_children(
            self: std::sync::Arc<Self>,
            children: Vec<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
        ) -> datafusion::error::Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>
        {
            if children.is_empty() {
                Ok(self)
            } else {
                Err($crate::error::BallistaError::Internal(format!(
                    "{} has no children",
                    self.name()
                ))
                .into())
            }
        }
    };
}
pub(crate) use leaf_node_methods;

mod amend;
mod arrow_sink;
mod cancellation;
mod coalesce;
mod codec;
mod collected_joins;
mod compact;
mod converter;
mod depth;
mod late_broadcast;
mod logical_codec;
mod logical_nodes;
mod operand_lists;
mod operator_metrics;
mod shipped_table;
mod shuffle_reader;
mod shuffle_writer;
mod stages;
mod task_env;
mod task_reads;
#[cfg(test)]
pub(crate) mod test_plans;
mod unresolved_shuffle;
mod window_filters;
mod wire_types;

pub use arrow_sink::{ArrowSinkSpec, ArrowWriteFormat, ArrowWriteFormatFactory};
pub use cancellation::{CancelFlag, CancellableExec, with_cancellation};
pub use coalesce::{PartitionGroups, may_coalesce};
pub use codec::{BallistaPhysicalExtensionCodec, decode_stage_plan, encode_stage_plan};
pub use collected_joins::distribute_collected_joins;
pub use converter::{BallistaProtoConverter, decode_physical_plan, encode_physical_plan};
pub use depth::{DEFAULT_MAX_EXPRESSION_DEPTH, check_expression_depth, expression_depth};
pub use late_broadcast::{LateBroadcast, broadcast_build_side, late_broadcast_candidate};
pub use logical_codec::{BallistaLogicalCodec, decode_client_plan, encode_client_plan};
pub(crate) use logical_codec::{decode_table_scan, encode_table_scan};
pub use operand_lists::check_operand_lists;
pub use operator_metrics::{
    add_operator_metrics, bound_operator_metrics, collect_operator_metrics, describe_operators,
    format_metric, render_operator_metrics,
};
pub use shipped_table::{MAX_SHIPPED_TABLE_BYTES, ShippedTable};
pub use shuffle_reader::{
    LOCAL_READ_BYTES, LOCAL_READS, MapOutputSource, REMOTE_FETCH_BYTES, REMOTE_FETCHES,
    ShuffleReadTotals, ShuffleReaderExec, shuffle_read_counts, spill_totals,
};
pub use shuffle_writer::ShuffleWriterExec;
#[cfg(test)]
pub(crate) use stages::two_stage_test_plan;
pub use stages::{DistributedPlan, StagePlan, resolve_shuffle_reads, split_into_stages};
pub use task_env::TaskEnv;
pub use task_reads::{PerTaskPlans, fill_task_reads};
pub use unresolved_shuffle::{ShuffleReadMode, UnresolvedShuffleExec, read_equivalence};
pub use window_filters::record_window_filters;
pub use wire_types::{conform, conform_strict, wire_schema};
