//! How a client's logical plan reaches the scheduler whole.
//!
//! datafusion-proto serializes file-backed tables itself. Every other table a
//! query reads (an in-memory table, a table function such as
//! `generate_series`, a custom provider) travels as the physical plan of a
//! full scan, encoded like a stage plan; when that plan cannot be serialized
//! (`information_schema`, a streaming provider), as the rows the scan returns.
//! Either way at most [`MAX_SHIPPED_TABLE_BYTES`] travel per query. The
//! scheduler plans against a [`ShippedTable`], which applies the query's
//! filters and projection to that scan.
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
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::DataType;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::common::file_options::file_type::FileType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DFSchemaRef, TableReference};
use datafusion::datasource::file_format::arrow::ArrowFormatFactory;
use datafusion::datasource::file_format::csv::CsvFormatFactory;
use datafusion::datasource::file_format::json::JsonFormatFactory;
use datafusion::datasource::file_format::parquet::ParquetFormatFactory;
use datafusion::datasource::file_format::{
    FileFormatFactory, file_type_to_format, format_as_file_type,
};
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType, provider_as_source, source_as_provider};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::expr_rewriter::{NamePreserver, normalize_col};
use datafusion::logical_expr::logical_plan::FetchType;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    EmptyRelation, Expr, Extension, Limit, LogicalPlan, RecursiveQuery,
    TableProviderFilterPushDown, UserDefinedLogicalNodeCore, Values, WriteOp,
};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion_proto::logical_plan::from_proto::parse_exprs;
use datafusion_proto::logical_plan::to_proto::serialize_exprs;
use datafusion_proto::logical_plan::{DefaultLogicalExtensionCodec, LogicalExtensionCodec};
use datafusion_proto::protobuf as dfproto;
use prost::Message;

use super::converter::{decode_physical_plan, encode_physical_plan};
use super::wire_types::{conform, wire_schema};
use crate::error::BallistaError;
use crate::proto::{self, ballista_logical_node::Node};

/// Most bytes of session tables (encoded) that travel with one query.
pub const MAX_SHIPPED_TABLE_BYTES: usize = 64 * 1024 * 1024;

fn malformed(what: &str, error: impl fmt::Display) -> DataFusionError {
    BallistaError::InvalidInput(format!("malformed logical plan: {what}: {error}")).into()
}

/// A client-side stand-in for a table whose scan travels with the query.
#[derive(Debug)]
struct ShippingTable {
    schema: SchemaRef,
    scan: Vec<u8>,
}

#[async_trait]
impl TableProvider for ShippingTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Err(BallistaError::Internal("a table on its way to the cluster was scanned".into()).into())
    }
}

/// A table that travelled with a query: the full scan the client made of it.
#[derive(Debug)]
pub struct ShippedTable {
    name: TableReference,
    schema: SchemaRef,
    scan: Arc<dyn ExecutionPlan>,
}

#[async_trait]
impl TableProvider for ShippedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        // Projected inside the scan where the scan can (an operator above it
        // may be merged with a projection, which DataFusion 55 does not do
        // correctly for lambda functions).
        let wire_types = self.scan.schema().fields() != self.schema.fields();
        let projected = match projection {
            Some(columns) if filters.is_empty() && !wire_types => {
                project_memory_scan(&self.scan, columns)?
            }
            _ => None,
        };
        let mut plan = projected.clone().unwrap_or_else(|| Arc::clone(&self.scan));
        if wire_types {
            plan = cast_to(plan, &self.schema)?;
        }
        // The client's table may have promised to apply these itself.
        if let Some(predicate) = conjunction(filters.iter().cloned()) {
            let schema =
                DFSchema::try_from_qualified_schema(self.name.clone(), self.schema.as_ref())?;
            let predicate = state.create_physical_expr(predicate, &schema)?;
            plan = Arc::new(FilterExec::try_new(predicate, plan)?);
        }
        if let (None, Some(columns)) = (&projected, projection) {
            let exprs = columns
                .iter()
                .map(|&i| {
                    let field = self.schema.field(i);
                    let column: Arc<dyn datafusion::physical_plan::PhysicalExpr> = Arc::new(
                        datafusion::physical_expr::expressions::Column::new(field.name(), i),
                    );
                    (column, field.name().to_string())
                })
                .collect::<Vec<_>>();
            plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
        }
        Ok(plan)
    }
}

/// `plan` with its columns cast to the types of `schema`.
fn cast_to(plan: Arc<dyn ExecutionPlan>, schema: &SchemaRef) -> DFResult<Arc<dyn ExecutionPlan>> {
    use datafusion::physical_expr::expressions::{CastExpr, Column};
    let exprs = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let column: Arc<dyn datafusion::physical_plan::PhysicalExpr> =
                Arc::new(Column::new(field.name(), i));
            let expr: Arc<dyn datafusion::physical_plan::PhysicalExpr> =
                if plan.schema().field(i).data_type() == field.data_type() {
                    column
                } else {
                    Arc::new(CastExpr::new(column, field.data_type().clone(), None))
                };
            (expr, field.name().to_string())
        })
        .collect::<Vec<_>>();
    Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
}

/// The in-memory scan `scan` reading only `columns`, when it is one.
fn project_memory_scan(
    scan: &Arc<dyn ExecutionPlan>,
    columns: &[usize],
) -> DFResult<Option<Arc<dyn ExecutionPlan>>> {
    let Some(memory) = scan
        .downcast_ref::<DataSourceExec>()
        .and_then(|exec| exec.data_source().downcast_ref::<MemorySourceConfig>())
    else {
        return Ok(None);
    };
    if memory.projection().is_some() {
        return Ok(None);
    }
    let projected = MemorySourceConfig::try_new(
        memory.partitions(),
        memory.original_schema(),
        Some(columns.to_vec()),
    )?
    .with_show_sizes(memory.show_sizes())
    .with_limit(scan.fetch());
    // Orderings over columns the projection keeps still hold.
    let orderings = memory
        .sort_information()
        .iter()
        .filter_map(|ordering| {
            let kept = ordering
                .iter()
                .map(|sort| {
                    let column = sort
                        .expr
                        .downcast_ref::<datafusion::physical_expr::expressions::Column>()?;
                    let position = columns.iter().position(|&c| c == column.index())?;
                    Some(datafusion::physical_expr::PhysicalSortExpr::new(
                        Arc::new(datafusion::physical_expr::expressions::Column::new(
                            column.name(),
                            position,
                        )),
                        sort.options,
                    ))
                })
                .map_while(|s| s)
                .collect::<Vec<_>>();
            datafusion::physical_expr::LexOrdering::new(kept)
        })
        .collect::<Vec<_>>();
    let projected = projected.try_with_sort_information(orderings)?;
    Ok(Some(DataSourceExec::from_data_source(projected)))
}

/// An empty relation with its schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EmptyRelationNode {
    produce_one_row: bool,
    schema: DFSchemaRef,
}

impl PartialOrd for EmptyRelationNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (self == other).then_some(Ordering::Equal)
    }
}

impl UserDefinedLogicalNodeCore for EmptyRelationNode {
    fn name(&self) -> &str {
        "EmptyRelation"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "EmptyRelation: rows={}", u8::from(self.produce_one_row))
    }
    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        _inputs: Vec<LogicalPlan>,
    ) -> DFResult<Self> {
        Ok(self.clone())
    }
}

/// The options of the COPY node below it, and whether its file format is
/// the session's default one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CopyOptionsNode {
    input: LogicalPlan,
    options: Vec<(String, String)>,
    default_format: String,
}

impl PartialOrd for CopyOptionsNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (self == other).then_some(Ordering::Equal)
    }
}

impl UserDefinedLogicalNodeCore for CopyOptionsNode {
    fn name(&self) -> &str {
        "CopyOptions"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }
    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CopyOptions: {:?}", self.options)
    }
    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> DFResult<Self> {
        let input = inputs
            .pop()
            .ok_or_else(|| malformed("CopyOptions", "no input"))?;
        Ok(Self {
            input,
            options: self.options.clone(),
            default_format: self.default_format.clone(),
        })
    }
}

/// A recursive query with the schema the client planned it with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RecursiveQueryNode {
    name: String,
    is_distinct: bool,
    static_term: LogicalPlan,
    recursive_term: LogicalPlan,
    schema: DFSchemaRef,
}

impl PartialOrd for RecursiveQueryNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (self == other).then_some(Ordering::Equal)
    }
}

impl UserDefinedLogicalNodeCore for RecursiveQueryNode {
    fn name(&self) -> &str {
        "RecursiveQuery"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.static_term, &self.recursive_term]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "RecursiveQuery: name={}, is_distinct={}",
            self.name, self.is_distinct
        )
    }
    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DFResult<Self> {
        let [static_term, recursive_term]: [LogicalPlan; 2] = inputs
            .try_into()
            .map_err(|_| malformed("RecursiveQuery", "needs two inputs"))?;
        Ok(Self {
            static_term,
            recursive_term,
            ..self.clone()
        })
    }
}

/// VALUES with the schema the client planned it with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ValuesNode {
    schema: DFSchemaRef,
    values: Vec<Vec<Expr>>,
}

impl PartialOrd for ValuesNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (self == other).then_some(Ordering::Equal)
    }
}

impl UserDefinedLogicalNodeCore for ValuesNode {
    fn name(&self) -> &str {
        "Values"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        self.values.iter().flatten().cloned().collect()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Values: {} row(s)", self.values.len())
    }
    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> DFResult<Self> {
        let columns = self.schema.fields().len().max(1);
        Ok(Self {
            schema: Arc::clone(&self.schema),
            values: exprs.chunks(columns).map(<[Expr]>::to_vec).collect(),
        })
    }
}

fn encode_df_schema(schema: &DFSchemaRef) -> DFResult<Vec<u8>> {
    Ok(dfproto::DfSchema::try_from(schema)
        .map_err(|e| malformed("schema", e))?
        .encode_to_vec())
}

fn decode_df_schema(bytes: &[u8]) -> DFResult<DFSchemaRef> {
    dfproto::DfSchema::decode(bytes)
        .map_err(|e| malformed("schema", e))?
        .try_into()
        .map_err(|e| malformed("schema", e))
}

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
                let columns = (n.columns as usize).max(1);
                Arc::new(ValuesNode {
                    schema: decode_df_schema(&n.schema)?,
                    values: exprs.chunks(columns).map(<[Expr]>::to_vec).collect(),
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
        let scan = decode_physical_plan(buf, ctx)?;
        if scan.schema().fields() != wire_schema(&schema).fields() {
            return Err(malformed(
                "table",
                format!("the scan of {table_ref} does not return the table's columns"),
            ));
        }
        Ok(Arc::new(ShippedTable {
            name: table_ref.clone(),
            schema,
            scan,
        }))
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

/// Whether the table is read by the cluster as it is (files, or nothing to read).
fn travels_by_itself(provider: &Arc<dyn TableProvider>) -> bool {
    provider.is::<ListingTable>()
        || provider.is::<datafusion::datasource::cte_worktable::CteWorkTable>()
        || provider.is::<datafusion::datasource::empty::EmptyTable>()
        || provider.is::<datafusion::datasource::ViewTable>()
}

/// How a table the cluster cannot read by itself travels: its full scan, or
/// the rows of that scan.
async fn ship(
    name: &TableReference,
    provider: &Arc<dyn TableProvider>,
    session: &dyn Session,
) -> DFResult<ShippingTable> {
    let schema = provider.schema();
    let scan = with_table_schema(provider.scan(session, None, &[], None).await?)?;
    // Columns of a type Arrow IPC cannot write travel as their wire type.
    let wire = wire_schema(&schema);
    let encoded = if Arc::ptr_eq(&wire, &schema) {
        encode_physical_plan(&scan).ok()
    } else {
        None
    };
    let bytes = match encoded {
        Some(bytes) => bytes,
        None => {
            let rows = collect(scan, session.task_ctx())
                .await?
                .into_iter()
                .map(|batch| conform(batch, &wire).map_err(DataFusionError::from))
                .collect::<DFResult<Vec<_>>>()?;
            let size: usize = rows.iter().map(|b| b.get_array_memory_size()).sum();
            too_big(name, size)?;
            let exec: Arc<dyn ExecutionPlan> =
                MemorySourceConfig::try_new_exec(&[rows], wire, None)?;
            encode_physical_plan(&exec)?
        }
    };
    too_big(name, bytes.len())?;
    Ok(ShippingTable {
        schema,
        scan: bytes,
    })
}

/// An in-memory table keeps each batch as it was inserted, with that batch's
/// own nullability; they are written in one stream under the table's schema,
/// which the receiver checks every batch against.
fn with_table_schema(scan: Arc<dyn ExecutionPlan>) -> DFResult<Arc<dyn ExecutionPlan>> {
    let Some(memory) = scan
        .downcast_ref::<DataSourceExec>()
        .and_then(|exec| exec.data_source().downcast_ref::<MemorySourceConfig>())
    else {
        return Ok(scan);
    };
    let schema = memory.original_schema();
    let partitions = memory
        .partitions()
        .iter()
        .map(|batches| {
            batches
                .iter()
                .map(|batch| {
                    RecordBatch::try_new(Arc::clone(&schema), batch.columns().to_vec())
                        .map_err(DataFusionError::from)
                })
                .collect::<DFResult<Vec<_>>>()
        })
        .collect::<DFResult<Vec<_>>>()?;
    let rebuilt = MemorySourceConfig::try_new(&partitions, schema, memory.projection().clone())?
        .try_with_sort_information(memory.sort_information().to_vec())?
        .with_show_sizes(memory.show_sizes())
        .with_limit(scan.fetch());
    Ok(DataSourceExec::from_data_source(rebuilt))
}

fn too_big(name: &TableReference, bytes: usize) -> DFResult<()> {
    if bytes <= MAX_SHIPPED_TABLE_BYTES {
        return Ok(());
    }
    Err(BallistaError::ResourcesExhausted(format!(
        "table {name} exists only in this session and holds {:.1} MiB; at most {} MiB of such \
         tables travel with a query to the cluster: write it to files (COPY {name} TO '…') \
         and query those instead",
        bytes as f64 / (1024.0 * 1024.0),
        MAX_SHIPPED_TABLE_BYTES / (1024 * 1024)
    ))
    .into())
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

/// Deserializes what [`encode_client_plan`] wrote, restoring the nodes it
/// turned into extensions.
pub fn decode_client_plan(bytes: &[u8], ctx: &TaskContext) -> DFResult<LogicalPlan> {
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
