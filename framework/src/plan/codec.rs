//! Carries Ballista's plan nodes inside datafusion-proto physical plans.
//!
//! Encoding is driven by [`BallistaProtoConverter`](super::converter::BallistaProtoConverter),
//! which decides per node; this codec decodes what it wrote.

use std::sync::Arc;

use arrow::datatypes::Schema;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::equivalence::{AcrossPartitions, ConstExpr};
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, PhysicalExpr};
use datafusion::physical_plan::recursive_query::RecursiveQueryExec;
use datafusion::physical_plan::sorts::partial_sort::PartialSortExec;
use datafusion::physical_plan::work_table::WorkTableExec;
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

use super::arrow_sink::arrow_sink_exec;
use super::converter::{decode_physical_plan, encode_physical_plan};
use super::{ShuffleReadMode, ShuffleReaderExec, ShuffleWriterExec, UnresolvedShuffleExec};
use crate::error::{BallistaError, Result};
use crate::ids::{JobId, StageId};
use crate::plugin::shuffle::ShuffleLocation;
use crate::proto::{self, ballista_physical_plan_node::Node, decode_schema, encode_schema};
use datafusion::datasource::physical_plan::FileSinkConfig;

/// Decodes [`ShuffleWriterExec`], [`UnresolvedShuffleExec`],
/// [`ShuffleReaderExec`] and the DataFusion nodes Ballista encodes itself;
/// everything else is left to datafusion-proto.
#[derive(Debug, Default)]
pub struct BallistaPhysicalExtensionCodec;

/// Serializes a stage plan for shipping to executors.
pub fn encode_stage_plan(plan: &Arc<dyn ExecutionPlan>) -> Result<Vec<u8>> {
    Ok(encode_physical_plan(plan)?)
}

/// Deserializes a stage plan on an executor.
pub fn decode_stage_plan(bytes: &[u8], ctx: &TaskContext) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(crate::util::decode_guarded("stage plan", || {
        decode_physical_plan(bytes, ctx)
    })?)
}

fn internal(message: impl Into<String>) -> DataFusionError {
    BallistaError::Internal(message.into()).into()
}

fn malformed(what: &str, error: impl std::fmt::Display) -> DataFusionError {
    BallistaError::InvalidInput(format!("malformed plan: {what}: {error}")).into()
}

fn encode_partitioning(
    partitioning: &Partitioning,
    codec: &dyn PhysicalExtensionCodec,
    converter: &dyn PhysicalProtoConverterExtension,
) -> DFResult<Vec<u8>> {
    Ok(serialize_partitioning(partitioning, codec, converter)?.encode_to_vec())
}

fn decode_partitioning(
    bytes: &[u8],
    ctx: &TaskContext,
    schema: &Schema,
    codec: &dyn PhysicalExtensionCodec,
    converter: &dyn PhysicalProtoConverterExtension,
) -> DFResult<Option<Partitioning>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let pb = dfproto::Partitioning::decode(bytes).map_err(|e| malformed("partitioning", e))?;
    let decode_ctx = PhysicalPlanDecodeContext::new(ctx, codec);
    parse_protobuf_partitioning(Some(&pb), &decode_ctx, schema, converter)
}

/// A datafusion-proto `PhysicalSortExprNodeCollection`; empty for none.
pub(crate) fn encode_ordering(
    ordering: Option<&LexOrdering>,
    codec: &dyn PhysicalExtensionCodec,
    converter: &dyn PhysicalProtoConverterExtension,
) -> DFResult<Vec<u8>> {
    let Some(ordering) = ordering else {
        return Ok(Vec::new());
    };
    let nodes = serialize_physical_sort_exprs(ordering.iter().cloned(), codec, converter)?;
    Ok(dfproto::PhysicalSortExprNodeCollection {
        physical_sort_expr_nodes: nodes,
    }
    .encode_to_vec())
}

fn decode_ordering(
    bytes: &[u8],
    ctx: &TaskContext,
    schema: &Schema,
    codec: &dyn PhysicalExtensionCodec,
    converter: &dyn PhysicalProtoConverterExtension,
) -> DFResult<Option<LexOrdering>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let pb = dfproto::PhysicalSortExprNodeCollection::decode(bytes)
        .map_err(|e| malformed("ordering", e))?;
    let decode_ctx = PhysicalPlanDecodeContext::new(ctx, codec);
    let exprs =
        parse_physical_sort_exprs(&pb.physical_sort_expr_nodes, &decode_ctx, schema, converter)?;
    Ok(LexOrdering::new(exprs))
}

fn encode_expr(
    expr: &Arc<dyn PhysicalExpr>,
    codec: &dyn PhysicalExtensionCodec,
    converter: &dyn PhysicalProtoConverterExtension,
) -> DFResult<Vec<u8>> {
    Ok(converter
        .physical_expr_to_proto(expr, codec)?
        .encode_to_vec())
}

fn decode_expr(
    bytes: &[u8],
    ctx: &TaskContext,
    schema: &Schema,
    codec: &dyn PhysicalExtensionCodec,
    converter: &dyn PhysicalProtoConverterExtension,
) -> DFResult<Arc<dyn PhysicalExpr>> {
    let node = dfproto::PhysicalExprNode::decode(bytes).map_err(|e| malformed("expression", e))?;
    let decode_ctx = PhysicalPlanDecodeContext::new(ctx, codec);
    converter.proto_to_physical_expr(&node, schema, &decode_ctx)
}

fn encode_equivalence(
    equivalence: &EquivalenceProperties,
    codec: &dyn PhysicalExtensionCodec,
    converter: &dyn PhysicalProtoConverterExtension,
) -> DFResult<proto::ReadEquivalence> {
    let orderings = equivalence
        .oeq_class()
        .iter()
        .map(|ordering| encode_ordering(Some(ordering), codec, converter))
        .collect::<DFResult<Vec<_>>>()?;
    let classes = equivalence
        .eq_group()
        .iter()
        .filter(|class| class.len() > 1)
        .map(|class| {
            Ok(proto::EquivalentExprs {
                exprs: class
                    .iter()
                    .map(|e| encode_expr(e, codec, converter))
                    .collect::<DFResult<_>>()?,
            })
        })
        .collect::<DFResult<Vec<_>>>()?;
    let constants = equivalence
        .constants()
        .into_iter()
        .map(|constant| {
            let (uniform, value) = match &constant.across_partitions {
                AcrossPartitions::Heterogeneous => (false, Vec::new()),
                AcrossPartitions::Uniform(None) => (true, Vec::new()),
                AcrossPartitions::Uniform(Some(value)) => (
                    true,
                    dfproto::ScalarValue::try_from(value)
                        .map_err(|e| internal(format!("constant {value}: {e}")))?
                        .encode_to_vec(),
                ),
            };
            Ok(proto::ConstantExpr {
                expr: encode_expr(&constant.expr, codec, converter)?,
                uniform,
                value,
            })
        })
        .collect::<DFResult<Vec<_>>>()?;
    Ok(proto::ReadEquivalence {
        orderings,
        classes,
        constants,
    })
}

fn decode_equivalence(
    pb: Option<&proto::ReadEquivalence>,
    schema: Arc<Schema>,
    ctx: &TaskContext,
    codec: &dyn PhysicalExtensionCodec,
    converter: &dyn PhysicalProtoConverterExtension,
) -> DFResult<EquivalenceProperties> {
    let mut equivalence = EquivalenceProperties::new(Arc::clone(&schema));
    let Some(pb) = pb else {
        return Ok(equivalence);
    };
    for class in &pb.classes {
        let exprs = class
            .exprs
            .iter()
            .map(|e| decode_expr(e, ctx, &schema, codec, converter))
            .collect::<DFResult<Vec<_>>>()?;
        if let Some((first, rest)) = exprs.split_first() {
            for other in rest {
                equivalence.add_equal_conditions(Arc::clone(first), Arc::clone(other))?;
            }
        }
    }
    let constants = pb
        .constants
        .iter()
        .map(|c| {
            let expr = decode_expr(&c.expr, ctx, &schema, codec, converter)?;
            let across = match (c.uniform, c.value.is_empty()) {
                (false, _) => AcrossPartitions::Heterogeneous,
                (true, true) => AcrossPartitions::Uniform(None),
                (true, false) => {
                    let value = dfproto::ScalarValue::decode(c.value.as_slice())
                        .map_err(|e| malformed("constant", e))?;
                    let value =
                        ScalarValue::try_from(&value).map_err(|e| malformed("constant", e))?;
                    AcrossPartitions::Uniform(Some(value))
                }
            };
            Ok(ConstExpr::new(expr, across))
        })
        .collect::<DFResult<Vec<_>>>()?;
    equivalence.add_constants(constants)?;
    let orderings = pb
        .orderings
        .iter()
        .map(|o| decode_ordering(o, ctx, &schema, codec, converter))
        .collect::<DFResult<Vec<_>>>()?;
    equivalence.add_orderings(orderings.into_iter().flatten());
    Ok(equivalence)
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
        _ => Err(malformed("shuffle read mode", mode)),
    }
}

/// The payload of one of Ballista's own nodes (its children travel as the
/// extension's inputs).
pub(crate) fn ballista_node(
    node: &Arc<dyn ExecutionPlan>,
    codec: &dyn PhysicalExtensionCodec,
    converter: &dyn PhysicalProtoConverterExtension,
) -> DFResult<Node> {
    let hash_partitioning = |p: &Partitioning| match p {
        Partitioning::Hash(..) => encode_partitioning(p, codec, converter),
        _ => Ok(Vec::new()),
    };
    if let Some(w) = node.downcast_ref::<ShuffleWriterExec>() {
        return Ok(Node::ShuffleWriter(proto::ShuffleWriterExecNode {
            job_id: w.job_id().to_string(),
            stage_id: w.stage_id().0,
            output_partitioning: match w.shuffle_partitioning() {
                Some(p) => encode_partitioning(p, codec, converter)?,
                None => Vec::new(),
            },
        }));
    }
    if let Some(u) = node.downcast_ref::<UnresolvedShuffleExec>() {
        return Ok(Node::UnresolvedShuffle(proto::UnresolvedShuffleExecNode {
            stage_id: u.stage_id().0,
            schema: encode_schema(&u.schema()),
            mode: read_mode_to_proto(u.mode()) as i32,
            output_partitions: u.output_partitioning().partition_count() as u32,
            input_partitions: u.input_partitions() as u32,
            output_partitioning: hash_partitioning(u.output_partitioning())?,
            equivalence: Some(encode_equivalence(u.equivalence(), codec, converter)?),
        }));
    }
    if let Some(r) = node.downcast_ref::<ShuffleReaderExec>() {
        return Ok(Node::ShuffleReader(proto::ShuffleReaderExecNode {
            stage_id: r.stage_id().0,
            schema: encode_schema(&r.schema()),
            partitions: ShuffleLocation::partitions_to_proto(r.partitions()),
            output_partitioning: hash_partitioning(r.output_partitioning())?,
            equivalence: Some(encode_equivalence(r.equivalence(), codec, converter)?),
            pending_map_tasks: r.pending_map_tasks().to_vec(),
        }));
    }
    Err(internal(format!("{} is not a Ballista node", node.name())))
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
            .map_err(|e| malformed("Ballista plan node", e))?;
        match node.node {
            Some(Node::ShuffleWriter(n)) => {
                let [input] = inputs else {
                    return Err(malformed("ShuffleWriterExec", "needs exactly one input"));
                };
                let partitioning = decode_partitioning(
                    &n.output_partitioning,
                    ctx,
                    &input.schema(),
                    self,
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
                let partitioning =
                    decode_partitioning(&n.output_partitioning, ctx, &schema, self, converter)?
                        .unwrap_or(Partitioning::UnknownPartitioning(
                            n.output_partitions as usize,
                        ));
                let equivalence =
                    decode_equivalence(n.equivalence.as_ref(), schema, ctx, self, converter)?;
                Ok(Arc::new(UnresolvedShuffleExec::new(
                    StageId(n.stage_id),
                    read_mode_from_proto(n.mode)?,
                    n.input_partitions as usize,
                    partitioning,
                    equivalence,
                )))
            }
            Some(Node::ShuffleReader(n)) => {
                let schema = decode_schema(&n.schema)?;
                let partitions = ShuffleLocation::partitions_from_proto(&n.partitions)?;
                let partitioning =
                    decode_partitioning(&n.output_partitioning, ctx, &schema, self, converter)?
                        .unwrap_or(Partitioning::UnknownPartitioning(partitions.len()));
                let equivalence = decode_equivalence(
                    n.equivalence.as_ref(),
                    Arc::clone(&schema),
                    ctx,
                    self,
                    converter,
                )?;
                Ok(Arc::new(
                    ShuffleReaderExec::try_new(
                        StageId(n.stage_id),
                        schema,
                        partitions,
                        partitioning,
                        equivalence,
                    )?
                    .with_pending_map_tasks(n.pending_map_tasks.clone()),
                ))
            }
            Some(Node::PartialSort(n)) => {
                let [input] = inputs else {
                    return Err(malformed("PartialSortExec", "needs exactly one input"));
                };
                let ordering = decode_ordering(&n.ordering, ctx, &input.schema(), self, converter)?
                    .ok_or_else(|| malformed("PartialSortExec", "no ordering"))?;
                let sort = PartialSortExec::new(
                    ordering,
                    Arc::clone(input),
                    n.common_prefix_length as usize,
                )
                .with_preserve_partitioning(n.preserve_partitioning)
                .with_fetch(n.fetch.map(|f| f as usize));
                Ok(Arc::new(sort))
            }
            Some(Node::RecursiveQuery(n)) => {
                let [static_term, recursive_term] = inputs else {
                    return Err(malformed("RecursiveQueryExec", "needs exactly two inputs"));
                };
                Ok(Arc::new(RecursiveQueryExec::try_new(
                    n.name,
                    decode_schema(&n.schema)?,
                    Arc::clone(static_term),
                    Arc::clone(recursive_term),
                    n.is_distinct,
                )?))
            }
            Some(Node::WorkTable(n)) => {
                let projection = n
                    .projected
                    .then(|| n.projection.iter().map(|i| *i as usize).collect());
                Ok(Arc::new(WorkTableExec::new(
                    n.name,
                    decode_schema(&n.schema)?,
                    projection,
                )?))
            }
            Some(Node::ArrowSink(n)) => {
                let [input] = inputs else {
                    return Err(malformed("ArrowSinkExec", "needs exactly one input"));
                };
                let config = dfproto::FileSinkConfig::decode(n.config.as_slice())
                    .map_err(|e| malformed("Arrow sink", e))?;
                let config = FileSinkConfig::try_from(&config)?;
                arrow_sink_exec(Arc::clone(input), config)
            }
            // Decoded by the converter, which has the surrounding context.
            Some(Node::Amended(_)) => Err(internal("an amended node reached the codec")),
            None => Err(malformed("Ballista plan node", "empty")),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        _buf: &mut Vec<u8>,
        _converter: &dyn PhysicalProtoConverterExtension,
    ) -> DFResult<()> {
        Err(BallistaError::NotSupported(format!(
            "the plan node {} cannot be sent to executors",
            node.name()
        ))
        .into())
    }
}
