//! Carries Ballista's plan nodes inside datafusion-proto physical plans.

use std::sync::Arc;

use arrow::datatypes::Schema;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::LexOrdering;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use datafusion_proto::physical_plan::from_proto::{
    parse_physical_sort_exprs, parse_protobuf_partitioning,
};
use datafusion_proto::physical_plan::to_proto::{
    serialize_partitioning, serialize_physical_sort_exprs,
};
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf as dfproto;
use prost::Message;

use super::{ShuffleReadMode, ShuffleReaderExec, ShuffleWriterExec, UnresolvedShuffleExec};
use crate::error::{BallistaError, Result};
use crate::ids::{JobId, StageId};
use crate::plugin::shuffle::ShuffleLocation;
use crate::proto::{self, ballista_physical_plan_node::Node, decode_schema, encode_schema};

/// Encodes and decodes [`ShuffleWriterExec`], [`UnresolvedShuffleExec`] and
/// [`ShuffleReaderExec`]; everything else is left to datafusion-proto.
#[derive(Debug, Default)]
pub struct BallistaPhysicalExtensionCodec;

/// Serializes a stage plan for shipping to executors.
pub fn encode_stage_plan(plan: &Arc<dyn ExecutionPlan>) -> Result<Vec<u8>> {
    let bytes = datafusion_proto::bytes::physical_plan_to_bytes_with_extension_codec(
        Arc::clone(plan),
        &BallistaPhysicalExtensionCodec,
    )?;
    Ok(bytes.to_vec())
}

/// Deserializes a stage plan on an executor.
pub fn decode_stage_plan(bytes: &[u8], ctx: &TaskContext) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(
        datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(
            bytes,
            ctx,
            &BallistaPhysicalExtensionCodec,
        )?,
    )
}

fn internal(message: impl Into<String>) -> DataFusionError {
    BallistaError::Internal(message.into()).into()
}

impl BallistaPhysicalExtensionCodec {
    fn encode_partitioning(
        &self,
        partitioning: &Partitioning,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> DFResult<Vec<u8>> {
        Ok(serialize_partitioning(partitioning, self, converter)?.encode_to_vec())
    }

    fn decode_partitioning(
        &self,
        bytes: &[u8],
        ctx: &TaskContext,
        schema: &Schema,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> DFResult<Option<Partitioning>> {
        if bytes.is_empty() {
            return Ok(None);
        }
        let pb = dfproto::Partitioning::decode(bytes)
            .map_err(|e| internal(format!("partitioning: {e}")))?;
        let decode_ctx = PhysicalPlanDecodeContext::new(ctx, self);
        parse_protobuf_partitioning(Some(&pb), &decode_ctx, schema, converter)
    }

    fn encode_ordering(
        &self,
        ordering: Option<&LexOrdering>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> DFResult<Vec<u8>> {
        let Some(ordering) = ordering else {
            return Ok(Vec::new());
        };
        let nodes = serialize_physical_sort_exprs(ordering.iter().cloned(), self, converter)?;
        Ok(dfproto::PhysicalSortExprNodeCollection {
            physical_sort_expr_nodes: nodes,
        }
        .encode_to_vec())
    }

    fn decode_ordering(
        &self,
        bytes: &[u8],
        ctx: &TaskContext,
        schema: &Schema,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> DFResult<Option<LexOrdering>> {
        if bytes.is_empty() {
            return Ok(None);
        }
        let pb = dfproto::PhysicalSortExprNodeCollection::decode(bytes)
            .map_err(|e| internal(format!("ordering: {e}")))?;
        let decode_ctx = PhysicalPlanDecodeContext::new(ctx, self);
        let exprs = parse_physical_sort_exprs(
            &pb.physical_sort_expr_nodes,
            &decode_ctx,
            schema,
            converter,
        )?;
        Ok(LexOrdering::new(exprs))
    }
}

fn read_mode_to_proto(mode: ShuffleReadMode) -> proto::ShuffleReadMode {
    match mode {
        ShuffleReadMode::Hash => proto::ShuffleReadMode::Hash,
        ShuffleReadMode::PerMapTask => proto::ShuffleReadMode::PerMapTask,
        ShuffleReadMode::Coalesce => proto::ShuffleReadMode::Coalesce,
    }
}

fn read_mode_from_proto(mode: i32) -> DFResult<ShuffleReadMode> {
    match proto::ShuffleReadMode::try_from(mode) {
        Ok(proto::ShuffleReadMode::Hash) => Ok(ShuffleReadMode::Hash),
        Ok(proto::ShuffleReadMode::PerMapTask) => Ok(ShuffleReadMode::PerMapTask),
        Ok(proto::ShuffleReadMode::Coalesce) => Ok(ShuffleReadMode::Coalesce),
        _ => Err(internal(format!("unknown shuffle read mode {mode}"))),
    }
}

impl PhysicalExtensionCodec for BallistaPhysicalExtensionCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let node = proto::BallistaPhysicalPlanNode::decode(buf)
            .map_err(|e| internal(format!("malformed Ballista plan node: {e}")))?;
        match node.node {
            Some(Node::ShuffleWriter(n)) => {
                let [input] = inputs else {
                    return Err(internal("ShuffleWriterExec needs exactly one input"));
                };
                let partitioning = self.decode_partitioning(
                    &n.output_partitioning,
                    ctx,
                    &input.schema(),
                    converter,
                )?;
                Ok(Arc::new(ShuffleWriterExec::try_new(
                    JobId::parse(&n.job_id)?,
                    StageId(n.stage_id),
                    Arc::clone(input),
                    partitioning,
                )?))
            }
            Some(Node::UnresolvedShuffle(n)) => {
                let schema = decode_schema(&n.schema)?;
                let partitioning = self
                    .decode_partitioning(&n.output_partitioning, ctx, &schema, converter)?
                    .unwrap_or(Partitioning::UnknownPartitioning(
                        n.output_partitions as usize,
                    ));
                let ordering = self.decode_ordering(&n.output_ordering, ctx, &schema, converter)?;
                Ok(Arc::new(UnresolvedShuffleExec::new(
                    StageId(n.stage_id),
                    schema,
                    read_mode_from_proto(n.mode)?,
                    n.input_partitions as usize,
                    partitioning,
                    ordering,
                )))
            }
            Some(Node::ShuffleReader(n)) => {
                let schema = decode_schema(&n.schema)?;
                let partitions = ShuffleLocation::partitions_from_proto(&n.partitions)?;
                let partitioning = self
                    .decode_partitioning(&n.output_partitioning, ctx, &schema, converter)?
                    .unwrap_or(Partitioning::UnknownPartitioning(partitions.len()));
                let ordering = self.decode_ordering(&n.output_ordering, ctx, &schema, converter)?;
                Ok(Arc::new(ShuffleReaderExec::try_new(
                    StageId(n.stage_id),
                    schema,
                    partitions,
                    partitioning,
                    ordering,
                )?))
            }
            None => Err(internal("empty Ballista plan node")),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> DFResult<()> {
        let encoded = if let Some(w) = node.downcast_ref::<ShuffleWriterExec>() {
            Node::ShuffleWriter(proto::ShuffleWriterExecNode {
                job_id: w.job_id().to_string(),
                stage_id: w.stage_id().0,
                output_partitioning: match w.shuffle_partitioning() {
                    Some(p) => self.encode_partitioning(p, converter)?,
                    None => Vec::new(),
                },
            })
        } else if let Some(u) = node.downcast_ref::<UnresolvedShuffleExec>() {
            Node::UnresolvedShuffle(proto::UnresolvedShuffleExecNode {
                stage_id: u.stage_id().0,
                schema: encode_schema(&u.schema()),
                mode: read_mode_to_proto(u.mode()) as i32,
                output_partitions: u.output_partitioning().partition_count() as u32,
                input_partitions: u.input_partitions() as u32,
                output_ordering: self.encode_ordering(u.output_ordering(), converter)?,
                output_partitioning: match u.output_partitioning() {
                    p @ Partitioning::Hash(..) => self.encode_partitioning(p, converter)?,
                    _ => Vec::new(),
                },
            })
        } else if let Some(r) = node.downcast_ref::<ShuffleReaderExec>() {
            Node::ShuffleReader(proto::ShuffleReaderExecNode {
                stage_id: r.stage_id().0,
                schema: encode_schema(&r.schema()),
                partitions: ShuffleLocation::partitions_to_proto(r.partitions()),
                output_ordering: self.encode_ordering(r.output_ordering(), converter)?,
                output_partitioning: match r.output_partitioning() {
                    p @ Partitioning::Hash(..) => self.encode_partitioning(p, converter)?,
                    _ => Vec::new(),
                },
            })
        } else {
            return Err(DataFusionError::NotImplemented(format!(
                "Ballista cannot serialize the plan node {}",
                node.name()
            )));
        };
        proto::BallistaPhysicalPlanNode {
            node: Some(encoded),
        }
        .encode(buf)
        .map_err(|e| internal(e.to_string()))
    }
}
