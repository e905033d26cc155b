//! How a client's logical plan reaches the scheduler whole.
//!
//! Tables that exist only in the client's session travel with the plan (see
//! `shipped_table`).
//!
//! Some nodes would lose meaning in datafusion-proto 55 and travel as
//! extension nodes that the scheduler turns back into them:
//! - an empty relation keeps its schema (`SELECT max(a) FROM (SELECT 1 AS a
//!   WHERE 1 = 0)` has a column `a` even when the optimizer removed its rows);
//! - `COPY … OPTIONS (…)` keeps its options;
//!
//! and a LIMIT without a row count, which datafusion-proto writes as
//! `i64::MAX`, comes back without one (an OFFSET alone must not turn into a
//! huge LIMIT, which later serializations truncate).

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::DataType;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::common::TableReference;
use datafusion::common::file_options::file_type::FileType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::file_format::arrow::ArrowFormatFactory;
use datafusion::datasource::file_format::csv::CsvFormatFactory;
use datafusion::datasource::file_format::json::JsonFormatFactory;
use datafusion::datasource::file_format::parquet::ParquetFormatFactory;
use datafusion::datasource::file_format::{
    FileFormatFactory, file_type_to_format, format_as_file_type,
};
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::{TableProvider, provider_as_source, source_as_provider};
use datafusion::error::Result as DFResult;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::expr_rewriter::{NamePreserver, normalize_col};
use datafusion::logical_expr::logical_plan::FetchType;
use datafusion::logical_expr::{
    EmptyRelation, Expr, Extension, Limit, LogicalPlan, RecursiveQuery, TableScanBuilder, Values,
    WriteOp,
};
use datafusion_proto::logical_plan::from_proto::parse_exprs;
use datafusion_proto::logical_plan::to_proto::serialize_exprs;
use datafusion_proto::logical_plan::{DefaultLogicalExtensionCodec, LogicalExtensionCodec};
use datafusion_proto::protobuf as dfproto;
use prost::Message;

use super::logical_nodes::{
    CopyOptionsNode, EmptyRelationNode, RecursiveQueryNode, ScanProjectionNode, ValuesNode,
    decode_df_schema, encode_df_schema, malformed, projected_scan,
};
use super::shipped_table::{ShippedTable, ShippingTable, ship, too_big, travels_by_itself};
use crate::error::BallistaError;
use crate::proto::{self, ballista_logical_node::Node};

/// Encodes and decodes what [`encode_client_plan`] adds to a logical plan.
#[derive(Debug, Default)]
pub struct BallistaLogicalCodec;

impl LogicalExtensionCodec for BallistaLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> DFResult<Extension> {
        let node = proto::BallistaLogicalNode::decode(buf)
            .map_err(|e| malformed("Ballista logical node", e))?;
        let node: Arc<dyn datafusion::logical_expr::UserDefinedLogicalNode> = match node.node {
            Some(Node::EmptyRelation(n)) => Arc::new(EmptyRelationNode {
                produce_one_row: n.produce_one_row,
                schema: decode_df_schema(&n.schema)?,
            }),
            Some(Node::Values(n)) => {
                let exprs = dfproto::LogicalExprNodeCollection::decode(n.values.as_slice())
                    .map_err(|e| malformed("VALUES", e))?;
                let exprs = parse_exprs(&exprs.logical_expr_nodes, ctx, self)
                    .map_err(|e| malformed("VALUES", e))?;
                let exprs = super::depth::check_decoded_expressions(exprs)?;
                let columns = (n.columns as usize).max(1);
                Arc::new(ValuesNode {
                    schema: decode_df_schema(&n.schema)?,
                    values: exprs.chunks(columns).map(<[Expr]>::to_vec).collect(),
                })
            }
            Some(Node::ScanProjection(n)) => {
                let [input] = inputs else {
                    return Err(malformed("ScanProjection", "needs one input"));
                };
                let columns: Vec<usize> = n.columns.iter().map(|c| *c as usize).collect();
                let schema = Arc::clone(projected_scan(input, &columns)?.schema());
                Arc::new(ScanProjectionNode {
                    input: input.clone(),
                    columns,
                    schema,
                })
            }
            Some(Node::RecursiveQuery(n)) => {
                let [static_term, recursive_term] = inputs else {
                    return Err(malformed("RecursiveQuery", "needs two inputs"));
                };
                Arc::new(RecursiveQueryNode {
                    name: n.name,
                    is_distinct: n.is_distinct,
                    static_term: static_term.clone(),
                    recursive_term: recursive_term.clone(),
                    schema: decode_df_schema(&n.schema)?,
                })
            }
            Some(Node::CopyOptions(n)) => {
                let [input] = inputs else {
                    return Err(malformed("CopyOptions", "needs one input"));
                };
                Arc::new(CopyOptionsNode {
                    input: input.clone(),
                    options: n.options.into_iter().map(|kv| (kv.key, kv.value)).collect(),
                    default_format: n.default_format,
                })
            }
            None => return Err(malformed("Ballista logical node", "empty")),
        };
        Ok(Extension { node })
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DFResult<()> {
        let any = node.node.as_any();
        let encoded = if let Some(n) = any.downcast_ref::<EmptyRelationNode>() {
            Node::EmptyRelation(proto::EmptyRelationNode {
                produce_one_row: n.produce_one_row,
                schema: encode_df_schema(&n.schema)?,
            })
        } else if let Some(n) = any.downcast_ref::<ScanProjectionNode>() {
            Node::ScanProjection(proto::ScanProjectionNode {
                columns: n.columns.iter().map(|c| *c as u32).collect(),
            })
        } else if let Some(n) = any.downcast_ref::<ValuesNode>() {
            let exprs: Vec<Expr> = n.values.iter().flatten().cloned().collect();
            let nodes = serialize_exprs(&exprs, self).map_err(|e| malformed("VALUES", e))?;
            Node::Values(proto::ValuesNode {
                schema: encode_df_schema(&n.schema)?,
                values: dfproto::LogicalExprNodeCollection {
                    logical_expr_nodes: nodes,
                }
                .encode_to_vec(),
                columns: n.schema.fields().len() as u32,
            })
        } else if let Some(n) = any.downcast_ref::<RecursiveQueryNode>() {
            Node::RecursiveQuery(proto::RecursiveQueryNode {
                name: n.name.clone(),
                is_distinct: n.is_distinct,
                schema: encode_df_schema(&n.schema)?,
            })
        } else if let Some(n) = any.downcast_ref::<CopyOptionsNode>() {
            Node::CopyOptions(proto::CopyOptionsNode {
                options: proto::key_values(n.options.clone()),
                default_format: n.default_format.clone(),
            })
        } else {
            return Err(BallistaError::NotSupported(format!(
                "the plan node {} cannot be sent to the cluster",
                node.node.name()
            ))
            .into());
        };
        proto::BallistaLogicalNode {
            node: Some(encoded),
        }
        .encode(buf)
        .map_err(|e| malformed("Ballista logical node", e))
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> DFResult<Arc<dyn TableProvider>> {
        Ok(Arc::new(ShippedTable::decode(buf, table_ref, schema, ctx)?))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DFResult<()> {
        match node.downcast_ref::<ShippingTable>() {
            Some(table) => {
                buf.extend_from_slice(&table.scan);
                Ok(())
            }
            None => Err(BallistaError::NotSupported(format!(
                "table {table_ref} cannot be sent to the cluster"
            ))
            .into()),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> DFResult<Arc<dyn FileFormatFactory>> {
        DefaultLogicalExtensionCodec {}.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> DFResult<()> {
        DefaultLogicalExtensionCodec {}.try_encode_file_format(buf, node)
    }
}

/// The name of a COPY's file format when it carries no options of its own.
fn default_format_name(file_type: &Arc<dyn FileType>) -> DFResult<Option<&'static str>> {
    let format = file_type_to_format(file_type)?;
    Ok(
        if let Some(csv) = format.downcast_ref::<CsvFormatFactory>() {
            csv.options.is_none().then_some("csv")
        } else if let Some(json) = format.downcast_ref::<JsonFormatFactory>() {
            json.options.is_none().then_some("json")
        } else if let Some(parquet) = format.downcast_ref::<ParquetFormatFactory>() {
            parquet.options.is_none().then_some("parquet")
        } else if format.is::<ArrowFormatFactory>() {
            Some("arrow")
        } else {
            None
        },
    )
}

/// A file format without options of its own, by name.
fn default_format(name: &str) -> DFResult<Option<Arc<dyn FileFormatFactory>>> {
    Ok(Some(match name {
        "" => return Ok(None),
        "csv" => Arc::new(CsvFormatFactory::new()),
        "json" => Arc::new(JsonFormatFactory::new()),
        "parquet" => Arc::new(ParquetFormatFactory::new()),
        // Arrow writes are planned so that they can travel (see `arrow_sink`).
        "arrow" => Arc::new(super::arrow_sink::ArrowWriteFormatFactory),
        other => return Err(malformed("COPY", format!("unknown file format {other}"))),
    }))
}

/// Rewrites a node's expressions so that they decode to the same plan:
/// - datafusion-proto writes a Float16 literal as a Float32 one, which changes
///   the type of everything computed from it: the literal travels as a cast
///   of the (exactly equal) Float32 value instead;
/// - the decoder rebuilds projections, aggregates and windows through
///   DataFusion's plan builder, which qualifies bare column names (`a` becomes
///   `t.a`) and so renames the columns they compute: the optimizer leaves bare
///   names behind (`sum(CASE WHEN __datafusion_extracted_1 …)`), so they are
///   qualified here, before encoding.
///
/// Output columns keep their names (an alias where the text changed).
fn portable_expressions(plan: LogicalPlan) -> DFResult<Transformed<LogicalPlan>> {
    let qualify = matches!(
        plan,
        LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_) | LogicalPlan::Window(_)
    );
    let input = match (&plan, qualify) {
        (LogicalPlan::Projection(p), true) => Some(Arc::clone(&p.input)),
        (LogicalPlan::Aggregate(a), true) => Some(Arc::clone(&a.input)),
        (LogicalPlan::Window(w), true) => Some(Arc::clone(&w.input)),
        _ => None,
    };
    let names = NamePreserver::new(&plan);
    plan.map_expressions(|expr| {
        let name = names.save(&expr);
        let mut rewritten = expr.transform_up(|e| match e {
            Expr::Literal(ScalarValue::Float16(value), metadata) => {
                let as_f32 = Expr::Literal(ScalarValue::Float32(value.map(f32::from)), metadata);
                Ok(Transformed::yes(Expr::Cast(Cast::new(
                    Box::new(as_f32),
                    DataType::Float16,
                ))))
            }
            other => Ok(Transformed::no(other)),
        })?;
        if let Some(input) = &input {
            let before = rewritten.data.clone();
            let qualified = normalize_col(rewritten.data, input)?;
            rewritten = if qualified != before {
                Transformed::yes(qualified)
            } else {
                Transformed::new(qualified, rewritten.transformed, rewritten.tnr)
            };
        }
        Ok(rewritten.update_data(|e| name.restore(e)))
    })
}

/// Serializes a client's (optimized) logical plan for the scheduler, with
/// the tables only this session has (see the module documentation).
pub async fn encode_client_plan(plan: &LogicalPlan, session: &dyn Session) -> DFResult<Vec<u8>> {
    let mut to_ship: Vec<(TableReference, Arc<dyn TableProvider>)> = Vec::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && !travels_by_itself(&provider)
            && !to_ship.iter().any(|(_, p)| Arc::ptr_eq(p, &provider))
        {
            to_ship.push((scan.table_name.clone(), provider));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let mut shipped: Vec<(Arc<dyn TableProvider>, Arc<dyn TableProvider>)> = Vec::new();
    let mut total = 0;
    for (name, provider) in to_ship {
        let table = ship(&name, &provider, session).await?;
        total += table.scan.len();
        too_big(&name, total)?;
        shipped.push((provider, Arc::new(table)));
    }
    let prepared = plan
        .clone()
        .transform_up_with_subqueries(portable_expressions)?
        .data
        .transform_up_with_subqueries(|node| match node {
            LogicalPlan::TableScan(scan)
                if scan.projection.is_some()
                    && source_as_provider(&scan.source).is_ok_and(|p| {
                        p.is::<datafusion::datasource::cte_worktable::CteWorkTable>()
                    }) =>
            {
                let columns = scan.projection.clone().unwrap_or_default();
                let schema = Arc::clone(&scan.projected_schema);
                let full = TableScanBuilder::new(scan.table_name.clone(), Arc::clone(&scan.source))
                    .with_filters(scan.filters.clone())
                    .with_fetch(scan.fetch)
                    .build()?;
                Ok(Transformed::yes(LogicalPlan::Extension(Extension {
                    node: Arc::new(ScanProjectionNode {
                        input: LogicalPlan::TableScan(full),
                        columns,
                        schema,
                    }),
                })))
            }
            LogicalPlan::TableScan(mut scan) => {
                let Ok(provider) = source_as_provider(&scan.source) else {
                    return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
                };
                match shipped.iter().find(|(p, _)| Arc::ptr_eq(p, &provider)) {
                    Some((_, table)) => {
                        scan.source = provider_as_source(Arc::clone(table));
                        Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
                    }
                    None => Ok(Transformed::no(LogicalPlan::TableScan(scan))),
                }
            }
            LogicalPlan::EmptyRelation(empty) => {
                Ok(Transformed::yes(LogicalPlan::Extension(Extension {
                    node: Arc::new(EmptyRelationNode {
                        produce_one_row: empty.produce_one_row,
                        schema: empty.schema,
                    }),
                })))
            }
            LogicalPlan::Values(values) => {
                Ok(Transformed::yes(LogicalPlan::Extension(Extension {
                    node: Arc::new(ValuesNode {
                        schema: values.schema,
                        values: values.values,
                    }),
                })))
            }
            LogicalPlan::RecursiveQuery(query) => {
                Ok(Transformed::yes(LogicalPlan::Extension(Extension {
                    node: Arc::new(RecursiveQueryNode {
                        name: query.name,
                        is_distinct: query.is_distinct,
                        static_term: Arc::unwrap_or_clone(query.static_term),
                        recursive_term: Arc::unwrap_or_clone(query.recursive_term),
                        schema: query.schema,
                    }),
                })))
            }
            LogicalPlan::Copy(copy) => {
                let mut options: Vec<(String, String)> = copy
                    .options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                options.sort();
                let default_format = default_format_name(&copy.file_type)?.unwrap_or_default();
                Ok(Transformed::yes(LogicalPlan::Extension(Extension {
                    node: Arc::new(CopyOptionsNode {
                        input: LogicalPlan::Copy(copy),
                        options,
                        default_format: default_format.to_string(),
                    }),
                })))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data;
    let bytes = datafusion_proto::bytes::logical_plan_to_bytes_with_extension_codec(
        &prepared,
        &BallistaLogicalCodec,
    )?;
    Ok(bytes.to_vec())
}

/// Whether `plan` has at most `limit` nodes, counting the plans of the
/// views it reads whole (as encoding writes them), and `count` more.
/// Stops counting at the limit, so that views of views doubling at each
/// level cost no more than the limit to look at.
fn within_nodes(plan: &LogicalPlan, limit: usize, count: &mut usize) -> bool {
    let mut within = true;
    let _ = plan.apply_with_subqueries(|node| {
        *count += 1;
        if *count > limit {
            within = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(view) = provider.downcast_ref::<datafusion::datasource::ViewTable>()
            && !within_nodes(view.logical_plan(), limit, count)
        {
            within = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    within
}

/// Serializes a scan of `provider` named `name`: how the scheduler hands a
/// table or view of its shared catalog to clients, which read it back with
/// [`decode_table_scan`] (no storage is touched either way). Refused when
/// the scan's plan, views included, has more than `max_nodes` nodes.
pub(crate) fn encode_table_scan(
    name: &TableReference,
    provider: Arc<dyn TableProvider>,
    max_nodes: usize,
) -> DFResult<Vec<u8>> {
    let plan = datafusion::logical_expr::LogicalPlanBuilder::scan(
        name.clone(),
        provider_as_source(provider),
        None,
    )?
    .build()?;
    if !within_nodes(&plan, max_nodes, &mut 0) {
        return Err(BallistaError::ResourcesExhausted(format!(
            "its plan, with the views it reads, has more than {max_nodes} nodes"
        ))
        .into());
    }
    let bytes = datafusion_proto::bytes::logical_plan_to_bytes_with_extension_codec(
        &plan,
        &BallistaLogicalCodec,
    )?;
    Ok(bytes.to_vec())
}

/// The table or view [`encode_table_scan`] wrote; a view shows
/// `definition` as its statement.
pub(crate) fn decode_table_scan(
    bytes: &[u8],
    definition: Option<String>,
    ctx: &TaskContext,
) -> DFResult<Arc<dyn TableProvider>> {
    match decode_client_plan(bytes, ctx)? {
        LogicalPlan::TableScan(scan) => source_as_provider(&scan.source),
        // A view's scan is its plan under the view's name (the plan
        // builder puts a view's plan in place of its scan).
        LogicalPlan::SubqueryAlias(view) => Ok(Arc::new(datafusion::datasource::ViewTable::new(
            Arc::unwrap_or_clone(view.input),
            definition,
        ))),
        other => Err(BallistaError::InvalidInput(format!(
            "a catalog entry should be a table scan, not {}",
            other.display()
        ))
        .into()),
    }
}

/// Deserializes what [`encode_client_plan`] wrote, restoring the nodes it
/// turned into extensions.
pub fn decode_client_plan(bytes: &[u8], ctx: &TaskContext) -> DFResult<LogicalPlan> {
    crate::util::decode_guarded("client plan", || decode_client_plan_unguarded(bytes, ctx))
}

fn decode_client_plan_unguarded(bytes: &[u8], ctx: &TaskContext) -> DFResult<LogicalPlan> {
    let plan = datafusion_proto::bytes::logical_plan_from_bytes_with_extension_codec(
        bytes,
        ctx,
        &BallistaLogicalCodec,
    )?;
    let restored = plan.transform_up_with_subqueries(|node| match node {
        LogicalPlan::Extension(extension) => {
            let any: &dyn Any = extension.node.as_any();
            if let Some(empty) = any.downcast_ref::<EmptyRelationNode>() {
                return Ok(Transformed::yes(LogicalPlan::EmptyRelation(EmptyRelation {
                    produce_one_row: empty.produce_one_row,
                    schema: Arc::clone(&empty.schema),
                })));
            }
            if let Some(projection) = any.downcast_ref::<ScanProjectionNode>() {
                return Ok(Transformed::yes(projected_scan(
                    &projection.input,
                    &projection.columns,
                )?));
            }
            if let Some(values) = any.downcast_ref::<ValuesNode>() {
                return Ok(Transformed::yes(LogicalPlan::Values(Values {
                    schema: Arc::clone(&values.schema),
                    values: values.values.clone(),
                })));
            }
            if let Some(query) = any.downcast_ref::<RecursiveQueryNode>() {
                return Ok(Transformed::yes(LogicalPlan::RecursiveQuery(RecursiveQuery {
                    name: query.name.clone(),
                    static_term: Arc::new(query.static_term.clone()),
                    recursive_term: Arc::new(query.recursive_term.clone()),
                    is_distinct: query.is_distinct,
                    schema: Arc::clone(&query.schema),
                })));
            }
            if let Some(copy) = any.downcast_ref::<CopyOptionsNode>()
                && let LogicalPlan::Copy(inner) = &copy.input
            {
                let mut inner = inner.clone();
                inner.options = copy.options.iter().cloned().collect::<HashMap<_, _>>();
                if let Some(format) = default_format(&copy.default_format)? {
                    inner.file_type = format_as_file_type(format);
                }
                return Ok(Transformed::yes(LogicalPlan::Copy(inner)));
            }
            Ok(Transformed::no(LogicalPlan::Extension(extension)))
        }
        LogicalPlan::Dml(mut dml) if matches!(dml.op, WriteOp::Insert(_)) => {
            let rebuilt = source_as_provider(&dml.target)
                .ok()
                .and_then(|p| p.downcast_ref::<ListingTable>().cloned())
                .map(|table| super::arrow_sink::with_shippable_arrow_writes(&table))
                .transpose()?
                .flatten();
            match rebuilt {
                Some(table) => {
                    dml.target = provider_as_source(Arc::new(table));
                    Ok(Transformed::yes(LogicalPlan::Dml(dml)))
                }
                None => Ok(Transformed::no(LogicalPlan::Dml(dml))),
            }
        }
        LogicalPlan::Limit(limit)
            if matches!(limit.get_fetch_type(), Ok(FetchType::Literal(Some(n))) if n >= i64::MAX as usize) =>
        {
            Ok(Transformed::yes(LogicalPlan::Limit(Limit {
                skip: limit.skip,
                fetch: None,
                input: limit.input,
            })))
        }
        other => Ok(Transformed::no(other)),
    })?;
    Ok(restored.data)
}
