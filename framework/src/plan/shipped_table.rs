//! Session tables that travel with a query.
//!
//! datafusion-proto serializes file-backed tables itself. Every other table a
//! query reads (an in-memory table, a table function such as
//! `generate_series`, a custom provider) travels as the physical plan of a
//! full scan, encoded like a stage plan; when that plan cannot be serialized
//! (`information_schema`, a streaming provider), as the rows the scan returns.
//! Either way at most [`MAX_SHIPPED_TABLE_BYTES`] travel per query. The
//! scheduler plans against a [`ShippedTable`], which applies the query's
//! filters and projection to that scan.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, TableReference};
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, collect};

use super::converter::{decode_physical_plan, encode_physical_plan};
use super::logical_nodes::malformed;
use super::wire_types::{conform, wire_schema};
use crate::error::BallistaError;

/// Most bytes of session tables (encoded) that travel with one query.
pub const MAX_SHIPPED_TABLE_BYTES: usize = 64 * 1024 * 1024;

/// A client-side stand-in for a table whose scan travels with the query.
#[derive(Debug)]
pub(super) struct ShippingTable {
    schema: SchemaRef,
    /// The encoded scan.
    pub(super) scan: Vec<u8>,
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

impl ShippedTable {
    /// The table `table_ref` of `schema` whose scan a client encoded into `buf`.
    pub(super) fn decode(
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> DFResult<Self> {
        let scan = decode_physical_plan(buf, ctx)?;
        if scan.schema().fields() != wire_schema(&schema).fields() {
            return Err(malformed(
                "table",
                format!("the scan of {table_ref} does not return the table's columns"),
            ));
        }
        Ok(Self {
            name: table_ref.clone(),
            schema,
            scan,
        })
    }
}

impl ShippedTable {
    /// Every storage location the shipped scan would touch, as URLs, so
    /// that the scheduler can check them against the submitter's grants
    /// before planning: the files of each file scan in it. A scan that
    /// writes, or reads files of a source this cannot list, is refused.
    pub fn storage_reads(&self) -> crate::error::Result<Vec<url::Url>> {
        use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
        use datafusion::datasource::physical_plan::FileScanConfig;
        use datafusion::datasource::sink::DataSinkExec;
        let mut urls = Vec::new();
        let mut refusal = None;
        self.scan.apply(|node| {
            if node.downcast_ref::<DataSinkExec>().is_some() {
                refusal = Some(format!(
                    "the shipped scan of table {} writes data",
                    self.name
                ));
                return Ok(TreeNodeRecursion::Stop);
            }
            if let Some(source) = node.downcast_ref::<DataSourceExec>() {
                let data = source.data_source();
                if let Some(files) = data.downcast_ref::<FileScanConfig>() {
                    let base: &url::Url = files.object_store_url.as_ref();
                    for file in files.file_groups.iter().flat_map(|g| g.files()) {
                        match base.join(file.object_meta.location.as_ref()) {
                            Ok(url) => urls.push(url),
                            Err(e) => {
                                refusal = Some(format!(
                                    "the shipped scan of table {} reads {}: {e}",
                                    self.name, file.object_meta.location
                                ));
                                return Ok(TreeNodeRecursion::Stop);
                            }
                        }
                    }
                } else if data.downcast_ref::<MemorySourceConfig>().is_none() {
                    refusal = Some(format!(
                        "the shipped scan of table {} reads a source the cluster cannot check \
                         against storage grants",
                        self.name
                    ));
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        match refusal {
            Some(message) => Err(BallistaError::PermissionDenied(message)),
            None => Ok(urls),
        }
    }
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

/// Whether the table is read by the cluster as it is (files, or nothing to read).
pub(super) fn travels_by_itself(provider: &Arc<dyn TableProvider>) -> bool {
    provider.is::<ListingTable>()
        || provider.is::<datafusion::datasource::cte_worktable::CteWorkTable>()
        || provider.is::<datafusion::datasource::empty::EmptyTable>()
        || provider.is::<datafusion::datasource::ViewTable>()
}

/// How a table the cluster cannot read by itself travels: its full scan, or
/// the rows of that scan.
pub(super) async fn ship(
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

pub(super) fn too_big(name: &TableReference, bytes: usize) -> DFResult<()> {
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
