//! How a physical plan is turned into protobuf and back: datafusion-proto for
//! DataFusion's nodes, Ballista's own encoding for Ballista's nodes and for
//! DataFusion nodes datafusion-proto cannot carry whole (see [`super::amend`]).
//!
//! datafusion-proto hands every node, at every depth, to this converter, so
//! the choice is made per node. A node nobody can serialize fails with an error
//! naming it (datafusion-proto's own error would print the whole plan).

use std::cell::RefCell;
use std::sync::Arc;

use arrow::datatypes::DataType;
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::functions_table::generate_series::GenericSeriesState;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{CastExpr, Literal};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::memory::LazyMemoryExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::recursive_query::RecursiveQueryExec;
use datafusion::physical_plan::sorts::partial_sort::PartialSortExec;
use datafusion::physical_plan::work_table::WorkTableExec;
use datafusion_proto::physical_plan::from_proto::parse_physical_expr_with_converter;
use datafusion_proto::physical_plan::to_proto::serialize_physical_expr_with_converter;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalPlanNodeExt,
    PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf as dfproto;
use datafusion_proto::protobuf::physical_plan_node::PhysicalPlanType;
use prost::Message;

use super::amend::{self, Amendment, WindowFacts};
use super::arrow_sink::ArrowSinkSpec;
use super::codec::{BallistaPhysicalExtensionCodec, ballista_node, encode_ordering};
use super::{ShuffleReaderExec, ShuffleWriterExec, UnresolvedShuffleExec};
use crate::error::BallistaError;
use crate::proto::{self, ballista_physical_plan_node::Node, encode_schema};
use datafusion::datasource::sink::DataSinkExec;

/// Serializes and deserializes plans node by node (see the module docs).
#[derive(Default)]
pub struct BallistaProtoConverter {
    /// Schemas of the recursive queries being encoded, innermost last: a work
    /// table scan below one needs its query's schema (its own may be projected).
    recursive_schemas: RefCell<Vec<(String, SchemaRef)>>,
}

impl BallistaProtoConverter {
    fn extension(
        &self,
        node: Node,
        children: &[&Arc<dyn ExecutionPlan>],
        codec: &dyn PhysicalExtensionCodec,
    ) -> DFResult<dfproto::PhysicalPlanNode> {
        let inputs = children
            .iter()
            .map(|child| self.execution_plan_to_proto(child, codec))
            .collect::<DFResult<Vec<_>>>()?;
        Ok(extension_node(node, inputs))
    }

    /// Ballista's encoding of `plan`, when Ballista encodes this kind of node.
    fn own_node(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        codec: &dyn PhysicalExtensionCodec,
    ) -> DFResult<Option<dfproto::PhysicalPlanNode>> {
        if let Some(unprojected) = unprojected_lazy_memory(plan)? {
            return self.execution_plan_to_proto(&unprojected, codec).map(Some);
        }
        if plan.is::<ShuffleWriterExec>()
            || plan.is::<UnresolvedShuffleExec>()
            || plan.is::<ShuffleReaderExec>()
        {
            let node = ballista_node(plan, codec, self)?;
            return self.extension(node, &plan.children(), codec).map(Some);
        }
        if let Some(sink) = plan.downcast_ref::<DataSinkExec>()
            && let Some(arrow) = sink.sink().downcast_ref::<ArrowSinkSpec>()
        {
            let config = dfproto::FileSinkConfig::try_from(arrow.config())?;
            let node = Node::ArrowSink(proto::ArrowSinkExecNode {
                config: config.encode_to_vec(),
            });
            return self.extension(node, &plan.children(), codec).map(Some);
        }
        if let Some(sort) = plan.downcast_ref::<PartialSortExec>() {
            let node = Node::PartialSort(proto::PartialSortExecNode {
                ordering: encode_ordering(Some(sort.expr()), codec, self)?,
                common_prefix_length: sort.common_prefix_length() as u32,
                preserve_partitioning: sort.preserve_partitioning(),
                fetch: sort.fetch().map(|f| f as u64),
            });
            return self.extension(node, &plan.children(), codec).map(Some);
        }
        if let Some(recursive) = plan.downcast_ref::<RecursiveQueryExec>() {
            let node = Node::RecursiveQuery(proto::RecursiveQueryExecNode {
                name: recursive.name().to_string(),
                schema: encode_schema(&plan.schema()),
                is_distinct: recursive.is_distinct(),
            });
            self.recursive_schemas
                .borrow_mut()
                .push((recursive.name().to_string(), plan.schema()));
            let encoded = self.extension(node, &plan.children(), codec);
            self.recursive_schemas.borrow_mut().pop();
            return encoded.map(Some);
        }
        if let Some(work_table) = plan.downcast_ref::<WorkTableExec>() {
            let schema = self
                .recursive_schemas
                .borrow()
                .iter()
                .rev()
                .find(|(name, _)| name == work_table.name())
                .map(|(_, schema)| Arc::clone(schema))
                .unwrap_or_else(|| work_table.schema());
            let projection = work_table_projection(work_table)?;
            let node = Node::WorkTable(proto::WorkTableExecNode {
                name: work_table.name().to_string(),
                schema: encode_schema(&schema),
                projected: projection.is_some(),
                projection: projection
                    .unwrap_or_default()
                    .into_iter()
                    .map(|i| i as u32)
                    .collect(),
            });
            return self.extension(node, &[], codec).map(Some);
        }
        if let Some(amendment) = amend::amendment_for(plan)? {
            let datafusion = dfproto::PhysicalPlanNode::try_from_physical_plan_with_converter(
                Arc::clone(plan),
                codec,
                self,
            )?;
            let amendment = match amendment {
                Amendment::Window(facts) => {
                    proto::amended_node::Amendment::Window(proto::WindowAmendment {
                        exprs: facts
                            .into_iter()
                            .map(|f| {
                                Ok(proto::WindowExprAmendment {
                                    filter: match &f.filter {
                                        Some(e) => {
                                            self.physical_expr_to_proto(e, codec)?.encode_to_vec()
                                        }
                                        None => Vec::new(),
                                    },
                                    ignore_nulls: f.ignore_nulls,
                                    reversed: f.reversed,
                                })
                            })
                            .collect::<DFResult<_>>()?,
                    })
                }
                Amendment::Aggregate(a) => proto::amended_node::Amendment::Aggregate(a),
                Amendment::CsvSink(c) => proto::amended_node::Amendment::CsvSink(c),
                Amendment::FileScan(f) => proto::amended_node::Amendment::FileScan(f),
            };
            let node = Node::Amended(proto::AmendedNode {
                datafusion: datafusion.encode_to_vec(),
                amendment: Some(amendment),
            });
            return Ok(Some(extension_node(node, Vec::new())));
        }
        Ok(None)
    }

    /// Decodes an amended node with the surrounding decode context (scalar
    /// subquery results reach into its subtree).
    fn decode_amended(
        &self,
        amended: &proto::AmendedNode,
        ctx: &PhysicalPlanDecodeContext<'_>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let inner = dfproto::PhysicalPlanNode::decode(amended.datafusion.as_slice())
            .map_err(|e| malformed(format!("amended node: {e}")))?;
        let plan = self.proto_to_execution_plan(&inner, ctx)?;
        match &amended.amendment {
            Some(proto::amended_node::Amendment::Window(window)) => {
                let input_schema = plan
                    .children()
                    .first()
                    .map(|c| c.schema())
                    .ok_or_else(|| malformed("a window node without input"))?;
                let facts = window
                    .exprs
                    .iter()
                    .map(|e| {
                        let filter = if e.filter.is_empty() {
                            None
                        } else {
                            let node = dfproto::PhysicalExprNode::decode(e.filter.as_slice())
                                .map_err(|err| malformed(format!("window filter: {err}")))?;
                            Some(self.proto_to_physical_expr(&node, &input_schema, ctx)?)
                        };
                        Ok(WindowFacts {
                            filter,
                            ignore_nulls: e.ignore_nulls,
                            reversed: e.reversed,
                        })
                    })
                    .collect::<DFResult<Vec<_>>>()?;
                amend::amend_window(plan, facts)
            }
            Some(proto::amended_node::Amendment::Aggregate(a)) => amend::amend_aggregate(plan, a),
            Some(proto::amended_node::Amendment::CsvSink(c)) => amend::amend_csv_sink(plan, c),
            Some(proto::amended_node::Amendment::FileScan(f)) => amend::amend_file_scan(plan, f),
            None => Ok(plan),
        }
    }
}

/// `WorkTableExec` keeps its projection private; its derived `Debug` shows it
/// after the schema as `projection: None` or `projection: Some([0, 2])`.
fn work_table_projection(work_table: &WorkTableExec) -> DFResult<Option<Vec<usize>>> {
    let text = format!("{work_table:?}");
    let tail = text
        .rsplit_once("projection: ")
        .map(|(_, tail)| tail)
        .ok_or_else(|| malformed("cannot read a work table's projection"))?;
    if tail.starts_with("None") {
        return Ok(None);
    }
    let list = tail
        .strip_prefix("Some([")
        .and_then(|rest| rest.split_once("])"))
        .map(|(list, _)| list)
        .ok_or_else(|| malformed("cannot read a work table's projection"))?;
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| malformed("cannot read a work table's projection"))
        })
        .collect::<DFResult<Vec<_>>>()
        .map(Some)
}

/// A `generate_series` scan projected to no columns (as `count(*)` leaves
/// it) as the full scan under an empty `ProjectionExec`. datafusion-proto
/// writes such a scan with its projected schema but no projection, and the
/// rebuilt generator then yields a column the schema lacks. Only integer
/// series are rewritten: their one column is `value: Int64`; nothing is
/// generated to find out.
fn unprojected_lazy_memory(
    plan: &Arc<dyn ExecutionPlan>,
) -> DFResult<Option<Arc<dyn ExecutionPlan>>> {
    let Some(lazy) = plan.downcast_ref::<LazyMemoryExec>() else {
        return Ok(None);
    };
    let [generator] = lazy.generators().as_slice() else {
        return Ok(None);
    };
    let integers = generator
        .read()
        .as_any()
        .downcast_ref::<GenericSeriesState<i64>>()
        .is_some();
    if !integers || !lazy.schema().fields().is_empty() {
        return Ok(None);
    }
    let full_schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("value", DataType::Int64, false),
    ]));
    let full: Arc<dyn ExecutionPlan> = Arc::new(LazyMemoryExec::try_new(
        full_schema,
        vec![generator.read().reset_state()],
    )?);
    let no_columns: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::new();
    Ok(Some(Arc::new(ProjectionExec::try_new(no_columns, full)?)))
}

fn malformed(message: impl Into<String>) -> DataFusionError {
    BallistaError::InvalidInput(format!("malformed plan: {}", message.into())).into()
}

fn extension_node(node: Node, inputs: Vec<dfproto::PhysicalPlanNode>) -> dfproto::PhysicalPlanNode {
    dfproto::PhysicalPlanNode {
        physical_plan_type: Some(PhysicalPlanType::Extension(
            dfproto::PhysicalExtensionNode {
                node: proto::BallistaPhysicalPlanNode { node: Some(node) }.encode_to_vec(),
                inputs,
            },
        )),
    }
}

/// The error for a node that cannot be serialized: its name, not a dump of
/// the plan. An error Ballista already raised (for a node deeper down) passes on.
fn unsupported(plan: &Arc<dyn ExecutionPlan>, error: DataFusionError) -> DataFusionError {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = current {
        if e.is::<BallistaError>() {
            return error;
        }
        current = e.source();
    }
    tracing::debug!("cannot serialize {}: {error}", plan.name());
    BallistaError::NotSupported(format!(
        "the plan node {} cannot be sent to executors (DataFusion cannot serialize it)",
        plan.name()
    ))
    .into()
}

impl PhysicalProtoConverterExtension for BallistaProtoConverter {
    fn proto_to_execution_plan(
        &self,
        proto: &dfproto::PhysicalPlanNode,
        ctx: &PhysicalPlanDecodeContext<'_>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if let Some(PhysicalPlanType::Extension(extension)) = &proto.physical_plan_type
            && let Ok(node) = proto::BallistaPhysicalPlanNode::decode(extension.node.as_slice())
            && let Some(Node::Amended(amended)) = &node.node
        {
            return self.decode_amended(amended, ctx);
        }
        // Rows travelling in the plan are Arrow IPC that arrow would
        // allocate for as declared: checked first.
        if let Some(PhysicalPlanType::MemoryScan(scan)) = &proto.physical_plan_type {
            for partition in &scan.partitions {
                crate::flight::check_ipc_stream(partition).map_err(DataFusionError::from)?;
            }
        }
        proto.try_into_physical_plan_with_context(ctx, self)
    }

    fn execution_plan_to_proto(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        codec: &dyn PhysicalExtensionCodec,
    ) -> DFResult<dfproto::PhysicalPlanNode> {
        if let Some(node) = self.own_node(plan, codec)? {
            return Ok(node);
        }
        dfproto::PhysicalPlanNode::try_from_physical_plan_with_converter(
            Arc::clone(plan),
            codec,
            self,
        )
        .map_err(|e| unsupported(plan, e))
    }

    fn proto_to_physical_expr(
        &self,
        proto: &dfproto::PhysicalExprNode,
        input_schema: &arrow::datatypes::Schema,
        ctx: &PhysicalPlanDecodeContext<'_>,
    ) -> DFResult<Arc<dyn PhysicalExpr>> {
        parse_physical_expr_with_converter(proto, input_schema, ctx, self)
    }

    fn physical_expr_to_proto(
        &self,
        expr: &Arc<dyn PhysicalExpr>,
        codec: &dyn PhysicalExtensionCodec,
    ) -> DFResult<dfproto::PhysicalExprNode> {
        // datafusion-proto writes a Float16 literal as a Float32 one: send a
        // cast of the (exactly equal) Float32 value instead.
        if let Some(literal) = expr.downcast_ref::<Literal>()
            && let ScalarValue::Float16(value) = literal.value()
        {
            let as_f32: Arc<dyn PhysicalExpr> =
                Arc::new(Literal::new(ScalarValue::Float32(value.map(f32::from))));
            let cast: Arc<dyn PhysicalExpr> =
                Arc::new(CastExpr::new(as_f32, DataType::Float16, None));
            return serialize_physical_expr_with_converter(&cast, codec, self);
        }
        serialize_physical_expr_with_converter(expr, codec, self)
    }
}

/// Serializes a physical plan (a stage plan, or a table's scan travelling
/// with a query).
pub fn encode_physical_plan(plan: &Arc<dyn ExecutionPlan>) -> DFResult<Vec<u8>> {
    let converter = BallistaProtoConverter::default();
    let node = converter.execution_plan_to_proto(plan, &BallistaPhysicalExtensionCodec)?;
    Ok(node.encode_to_vec())
}

/// Deserializes what [`encode_physical_plan`] wrote.
pub fn decode_physical_plan(
    bytes: &[u8],
    ctx: &datafusion::execution::TaskContext,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    let node = dfproto::PhysicalPlanNode::decode(bytes)
        .map_err(|e| malformed(format!("physical plan: {e}")))?;
    let converter = BallistaProtoConverter::default();
    let codec = BallistaPhysicalExtensionCodec;
    let decode_ctx = PhysicalPlanDecodeContext::new(ctx, &codec);
    converter.proto_to_execution_plan(&node, &decode_ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};
    use datafusion::physical_plan::filter::FilterExec;
    use datafusion::physical_plan::streaming::StreamingTableExec;

    /// A node datafusion-proto cannot serialize, under one it can: the
    /// error names the node and holds no dump of the plan.
    #[test]
    fn a_node_that_cannot_travel_is_named_not_dumped() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Boolean, true)]));
        let stream: Arc<dyn ExecutionPlan> = Arc::new(
            StreamingTableExec::try_new(Arc::clone(&schema), vec![], None, vec![], false, None)
                .unwrap(),
        );
        let predicate = datafusion::physical_expr::expressions::col("a", &schema).unwrap();
        let plan: Arc<dyn ExecutionPlan> =
            Arc::new(FilterExec::try_new(predicate, stream).unwrap());
        let message = encode_physical_plan(&plan).unwrap_err().to_string();
        assert!(message.contains("StreamingTableExec"), "{message}");
        assert!(message.contains("cannot be sent to executors"), "{message}");
        assert!(
            !message.contains('{') && !message.contains(".rs:"),
            "{message}"
        );
    }

    /// Float16 literals keep their type (datafusion-proto writes them as
    /// Float32).
    #[test]
    fn float16_literals_keep_their_type() {
        use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;
        use datafusion::physical_plan::projection::ProjectionExec;
        let input: Arc<dyn ExecutionPlan> =
            Arc::new(PlaceholderRowExec::new(Arc::new(Schema::empty())));
        let half = ScalarValue::Float32(Some(1.5))
            .cast_to(&DataType::Float16)
            .unwrap();
        let literal: Arc<dyn PhysicalExpr> = Arc::new(Literal::new(half));
        let plan: Arc<dyn ExecutionPlan> =
            Arc::new(ProjectionExec::try_new(vec![(literal, "x".to_string())], input).unwrap());
        let bytes = encode_physical_plan(&plan).unwrap();
        let ctx = datafusion::execution::TaskContext::default();
        let back = decode_physical_plan(&bytes, &ctx).unwrap();
        assert_eq!(back.schema().field(0).data_type(), &DataType::Float16);
    }
}
