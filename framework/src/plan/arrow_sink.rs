//! Writing Arrow IPC files (`COPY … STORED AS ARROW`, `INSERT INTO` an Arrow
//! table) on executors.
//!
//! DataFusion 55 plans such writes with a sink it keeps private and that
//! datafusion-proto cannot serialize. The scheduler therefore plans them with
//! [`ArrowWriteFormat`], which behaves as DataFusion's Arrow format except that
//! its sink, [`ArrowSinkSpec`], is only a description of the write (where, in
//! which layout, with which schema). That description travels; the executor
//! turns it back into DataFusion's own Arrow sink, which does the writing.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{GetExt, Result as DFResult, Statistics};
use datafusion::datasource::file_format::arrow::{ArrowFormat, ArrowFormatFactory};
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::{FileFormat, FileFormatFactory};
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::physical_plan::{FileScanConfig, FileSinkConfig, FileSource};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::LexRequirement;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use object_store::{ObjectMeta, ObjectStore};

use crate::error::BallistaError;

/// The Arrow file format, planning writes the cluster can ship.
#[derive(Debug, Default)]
pub struct ArrowWriteFormat;

/// The factory of [`ArrowWriteFormat`], for `COPY … STORED AS ARROW`.
#[derive(Debug, Default)]
pub struct ArrowWriteFormatFactory;

impl GetExt for ArrowWriteFormatFactory {
    fn get_ext(&self) -> String {
        ArrowFormatFactory::new().get_ext()
    }
}

impl FileFormatFactory for ArrowWriteFormatFactory {
    fn create(
        &self,
        _state: &dyn Session,
        _format_options: &HashMap<String, String>,
    ) -> DFResult<Arc<dyn FileFormat>> {
        Ok(Arc::new(ArrowWriteFormat))
    }

    fn default(&self) -> Arc<dyn FileFormat> {
        Arc::new(ArrowWriteFormat)
    }
}

#[async_trait]
impl FileFormat for ArrowWriteFormat {
    fn get_ext(&self) -> String {
        ArrowFormat.get_ext()
    }

    fn get_ext_with_compression(&self, compression: &FileCompressionType) -> DFResult<String> {
        ArrowFormat.get_ext_with_compression(compression)
    }

    fn compression_type(&self) -> Option<FileCompressionType> {
        ArrowFormat.compression_type()
    }

    async fn infer_schema(
        &self,
        state: &dyn Session,
        store: &Arc<dyn ObjectStore>,
        objects: &[ObjectMeta],
    ) -> DFResult<SchemaRef> {
        ArrowFormat.infer_schema(state, store, objects).await
    }

    async fn infer_stats(
        &self,
        state: &dyn Session,
        store: &Arc<dyn ObjectStore>,
        table_schema: SchemaRef,
        object: &ObjectMeta,
    ) -> DFResult<Statistics> {
        ArrowFormat
            .infer_stats(state, store, table_schema, object)
            .await
    }

    async fn create_physical_plan(
        &self,
        state: &dyn Session,
        conf: FileScanConfig,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        ArrowFormat.create_physical_plan(state, conf).await
    }

    async fn create_writer_physical_plan(
        &self,
        input: Arc<dyn ExecutionPlan>,
        _state: &dyn Session,
        conf: FileSinkConfig,
        order_requirements: Option<LexRequirement>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let sink = Arc::new(ArrowSinkSpec { config: conf });
        Ok(Arc::new(DataSinkExec::new(input, sink, order_requirements)))
    }

    fn file_source(&self, table_schema: TableSchema) -> Arc<dyn FileSource> {
        ArrowFormat.file_source(table_schema)
    }
}

/// A write of Arrow IPC files, described; executors run it with
/// DataFusion's own Arrow sink.
#[derive(Debug)]
pub struct ArrowSinkSpec {
    config: FileSinkConfig,
}

impl ArrowSinkSpec {
    /// Where and how the files are written.
    pub fn config(&self) -> &FileSinkConfig {
        &self.config
    }
}

impl DisplayAs for ArrowSinkSpec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ArrowFileSink(url={})", self.config.original_url)
    }
}

#[async_trait]
impl DataSink for ArrowSinkSpec {
    fn schema(&self) -> &SchemaRef {
        &self.config.output_schema
    }

    async fn write_all(
        &self,
        _data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> DFResult<u64> {
        Err(BallistaError::Internal(
            "an Arrow write ran before it was turned into DataFusion's Arrow sink".into(),
        )
        .into())
    }
}

/// DataFusion's Arrow write of `input` as `config` describes it.
pub fn arrow_sink_exec(
    input: Arc<dyn ExecutionPlan>,
    config: FileSinkConfig,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    // DataFusion's Arrow format needs a session only to satisfy its
    // signature; its writer plan is built without waiting on anything.
    let state = SessionStateBuilder::new().build();
    futures::executor::block_on(
        ArrowFormat.create_writer_physical_plan(input, &state, config, None),
    )
}

/// `table` with its writes planned by [`ArrowWriteFormat`], when it is an
/// Arrow table (`INSERT INTO` one).
pub fn with_shippable_arrow_writes(table: &ListingTable) -> DFResult<Option<ListingTable>> {
    if !table.options().format.is::<ArrowFormat>() {
        return Ok(None);
    }
    use datafusion::datasource::listing::ListingTableConfig;
    let partitions = table.options().table_partition_cols.len();
    let table_schema = datafusion::datasource::TableProvider::schema(table);
    let file_fields = table_schema.fields()[..table_schema.fields().len() - partitions].to_vec();
    let file_schema = Arc::new(arrow::datatypes::Schema::new_with_metadata(
        file_fields,
        table_schema.metadata().clone(),
    ));
    let mut options = table.options().clone();
    options.format = Arc::new(ArrowWriteFormat);
    let config = ListingTableConfig::new_with_multi_paths(table.table_paths().clone())
        .with_listing_options(options)
        .with_schema(file_schema);
    let mut rebuilt = ListingTable::try_new(config)?;
    if let Some(constraints) = datafusion::datasource::TableProvider::constraints(table) {
        rebuilt = rebuilt.with_constraints(constraints.clone());
    }
    Ok(Some(rebuilt))
}
