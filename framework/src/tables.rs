//! Tables declared in the scheduler's configuration: turned into DataFusion
//! listing tables on the scheduler, described to clients, and registered in
//! client sessions from that description (schema included, so a client never
//! has to read the files itself).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::arrow::ArrowFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};

use crate::config::{TableDefinition, TableFormat};
use crate::error::{BallistaError, Result};
use crate::proto;

fn listing_options(def: &TableDefinition) -> ListingOptions {
    let format: Arc<dyn FileFormat> = match def.format {
        TableFormat::Parquet => Arc::new(ParquetFormat::default()),
        TableFormat::Csv => {
            let mut csv = CsvFormat::default().with_has_header(def.has_header.unwrap_or(true));
            if let Some(d) = def.delimiter {
                csv = csv.with_delimiter(d as u8);
            }
            Arc::new(csv)
        }
        TableFormat::Json => Arc::new(JsonFormat::default()),
        TableFormat::Arrow => Arc::new(ArrowFormat),
    };
    let options = ListingOptions::new(format);
    match &def.file_extension {
        Some(ext) => options.with_file_extension(ext.clone()),
        None => options,
    }
}

fn table_url(def: &TableDefinition) -> Result<ListingTableUrl> {
    ListingTableUrl::parse(&def.location).map_err(|e| {
        BallistaError::Configuration(format!(
            "table '{}': invalid location {:?}: {e}",
            def.name, def.location
        ))
    })
}

/// Builds the table, inferring its schema from the files.
pub async fn listing_table(
    def: &TableDefinition,
    session: &dyn Session,
) -> Result<(Arc<ListingTable>, SchemaRef)> {
    validate(def)?;
    let url = table_url(def)?;
    let options = listing_options(def);
    let schema = options.infer_schema(session, &url).await.map_err(|e| {
        BallistaError::Configuration(format!(
            "table '{}': cannot read the schema of {}: {}",
            def.name,
            def.location,
            BallistaError::from_datafusion(e)
        ))
    })?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(Arc::clone(&schema));
    Ok((Arc::new(ListingTable::try_new(config)?), schema))
}

fn validate(def: &TableDefinition) -> Result<()> {
    let valid_name = !def.name.is_empty()
        && def
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(BallistaError::Configuration(format!(
            "table name {:?} is invalid: use letters, digits and '_'",
            def.name
        )));
    }
    if def.delimiter.is_some_and(|d| !d.is_ascii()) {
        return Err(BallistaError::Configuration(format!(
            "table '{}': the CSV delimiter must be a single ASCII character",
            def.name
        )));
    }
    Ok(())
}

/// Describes a table for clients.
pub fn table_info(def: &TableDefinition, schema: &SchemaRef) -> proto::TableInfo {
    let mut options = Vec::new();
    if let Some(h) = def.has_header {
        options.push(("has_header".to_string(), h.to_string()));
    }
    if let Some(d) = def.delimiter {
        options.push(("delimiter".to_string(), d.to_string()));
    }
    proto::TableInfo {
        name: def.name.clone(),
        location: def.location.clone(),
        format: def.format.as_str().to_string(),
        schema: proto::encode_schema(schema),
        options: proto::key_values(options),
        file_extension: def.file_extension.clone().unwrap_or_default(),
    }
}

/// Rebuilds a table from its description, without touching the files.
pub fn listing_table_from_info(info: &proto::TableInfo) -> Result<(String, Arc<ListingTable>)> {
    let format = match info.format.as_str() {
        "parquet" => TableFormat::Parquet,
        "csv" => TableFormat::Csv,
        "json" => TableFormat::Json,
        "arrow" => TableFormat::Arrow,
        other => {
            return Err(BallistaError::InvalidInput(format!(
                "table '{}' has unknown format {other:?}",
                info.name
            )));
        }
    };
    let options = proto::key_values_to_map(&info.options);
    let def = TableDefinition {
        name: info.name.clone(),
        location: info.location.clone(),
        format,
        has_header: options.get("has_header").and_then(|v| v.parse().ok()),
        delimiter: options.get("delimiter").and_then(|v| v.chars().next()),
        file_extension: (!info.file_extension.is_empty()).then(|| info.file_extension.clone()),
    };
    let schema = proto::decode_schema(&info.schema)?;
    let config = ListingTableConfig::new(table_url(&def)?)
        .with_listing_options(listing_options(&def))
        .with_schema(schema);
    Ok((def.name, Arc::new(ListingTable::try_new(config)?)))
}
