//! Answers to the Flight SQL metadata calls, which JDBC drivers and BI
//! tools make on connecting and while browsing: the catalog's tables (from
//! the scheduler's own DataFusion catalog, so every table a query can name
//! is listed), what the server supports, its SQL types, and keys (none).

use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetTables, Nullable, Searchable, SqlInfo, SqlNullOrdering,
    SqlSupportedCaseSensitivity, SqlSupportedTransaction, XdbcDataType, XdbcDatetimeSubcode,
};
use datafusion::datasource::TableType;
use datafusion::prelude::SessionContext;

use crate::error::{BallistaError, Result};

/// The table types tables are listed under.
pub(crate) const TABLE_TYPES: [&str; 3] = ["TABLE", "VIEW", "LOCAL TEMPORARY"];

fn table_type_name(table_type: TableType) -> &'static str {
    match table_type {
        TableType::Base => TABLE_TYPES[0],
        TableType::View => TABLE_TYPES[1],
        TableType::Temporary => TABLE_TYPES[2],
    }
}

fn arrow_error<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> BallistaError + '_ {
    move |e| BallistaError::Internal(format!("building the answer to {what}: {e}"))
}

/// The schemas of `ctx`'s catalogs, for `GetDbSchemas`.
pub(crate) fn db_schemas(ctx: &SessionContext, query: CommandGetDbSchemas) -> Result<RecordBatch> {
    let mut builder = query.into_builder();
    for catalog_name in ctx.catalog_names() {
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        for schema_name in catalog.schema_names() {
            builder.append(&catalog_name, schema_name);
        }
    }
    builder.build().map_err(arrow_error("GetDbSchemas"))
}

/// The catalogs of `ctx`, for `GetCatalogs`.
pub(crate) fn catalogs(ctx: &SessionContext) -> Result<RecordBatch> {
    let mut builder = arrow_flight::sql::CommandGetCatalogs {}.into_builder();
    for name in ctx.catalog_names() {
        builder.append(name);
    }
    builder.build().map_err(arrow_error("GetCatalogs"))
}

/// The tables of `ctx`, with their Arrow schemas when asked (in the types
/// every client reads unless `view_types`), for `GetTables`.
pub(crate) async fn tables(
    ctx: &SessionContext,
    query: CommandGetTables,
    view_types: bool,
) -> Result<RecordBatch> {
    let mut builder = query.into_builder();
    for catalog_name in ctx.catalog_names() {
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        for schema_name in catalog.schema_names() {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let mut names = schema.table_names();
            names.sort();
            for table_name in names {
                let Some(table) = schema.table(&table_name).await? else {
                    continue;
                };
                let table_schema = match view_types {
                    true => table.schema(),
                    false => super::plain_types::plain_schema(&table.schema()),
                };
                builder
                    .append(
                        &catalog_name,
                        &schema_name,
                        &table_name,
                        table_type_name(table.table_type()),
                        table_schema.as_ref(),
                    )
                    .map_err(arrow_error("GetTables"))?;
            }
        }
    }
    builder.build().map_err(arrow_error("GetTables"))
}

/// What the server supports, for `GetSqlInfo`: read once by JDBC drivers
/// on connecting, which take an id not answered as "not supported".
pub(crate) static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Ballista");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    // CREATE SCHEMA and CREATE EXTERNAL TABLE go to the shared catalog.
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    // DataFusion folds unquoted identifiers to lower case and keeps quoted
    // ones as written.
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    // Ascending puts nulls last and descending first: nulls sort high.
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlKeywords, KEYWORDS);
    b.append(SqlInfo::SqlNumericFunctions, NUMERIC_FUNCTIONS);
    b.append(SqlInfo::SqlStringFunctions, STRING_FUNCTIONS);
    b.append(SqlInfo::SqlSystemFunctions, &[][..] as &[&str]);
    b.append(SqlInfo::SqlDatetimeFunctions, DATETIME_FUNCTIONS);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, true);
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    for limit in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlDbSchemaNameLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxCatalogNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatementLength,
        SqlInfo::SqlMaxStatements,
        SqlInfo::SqlMaxTableNameLength,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        // 0: no limit, or none known.
        b.append(limit, 0i64);
    }
    b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, false);
    b.append(SqlInfo::SqlDefaultTransactionIsolation, 0i32);
    b.build().expect("the SQL information is well-formed")
});

const KEYWORDS: &[&str] = &[
    "ANALYZE",
    "COPY",
    "DESCRIBE",
    "EXPLAIN",
    "EXTERNAL",
    "FORMAT",
    "LOCATION",
    "OPTIONS",
    "PARTITIONED",
    "QUALIFY",
    "SHOW",
    "STORED",
    "UNNEST",
];
const NUMERIC_FUNCTIONS: &[&str] = &[
    "abs", "acos", "asin", "atan", "atan2", "cbrt", "ceil", "cos", "degrees", "exp", "floor", "ln",
    "log", "log10", "log2", "mod", "pi", "power", "radians", "random", "round", "signum", "sin",
    "sqrt", "tan", "trunc",
];
const STRING_FUNCTIONS: &[&str] = &[
    "ascii",
    "btrim",
    "char_length",
    "chr",
    "concat",
    "concat_ws",
    "initcap",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "octet_length",
    "position",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "substring",
    "translate",
    "trim",
    "upper",
];
const DATETIME_FUNCTIONS: &[&str] = &[
    "current_date",
    "current_time",
    "date_bin",
    "date_part",
    "date_trunc",
    "extract",
    "now",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_unixtime",
];

/// A type row of `GetXdbcTypeInfo`.
fn xdbc(
    name: &str,
    data_type: XdbcDataType,
    column_size: Option<i32>,
    literal: Option<(&str, &str)>,
    numeric: bool,
    datetime_subcode: Option<XdbcDatetimeSubcode>,
) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.into(),
        data_type,
        column_size,
        literal_prefix: literal.map(|(p, _)| p.into()),
        literal_suffix: literal.map(|(_, s)| s.into()),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: literal.is_some() && data_type == XdbcDataType::XdbcVarchar,
        searchable: Searchable::Full,
        unsigned_attribute: numeric.then_some(false),
        fixed_prec_scale: data_type == XdbcDataType::XdbcDecimal,
        auto_increment: numeric.then_some(false),
        local_type_name: Some(name.into()),
        minimum_scale: (data_type == XdbcDataType::XdbcDecimal).then_some(0),
        maximum_scale: (data_type == XdbcDataType::XdbcDecimal).then_some(38),
        sql_data_type: data_type,
        datetime_subcode,
        num_prec_radix: numeric.then_some(10),
        interval_precision: None,
    }
}

/// The SQL types of DataFusion, for `GetXdbcTypeInfo`.
pub(crate) static XDBC_TYPES: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    use XdbcDataType as T;
    let mut b = XdbcTypeInfoDataBuilder::new();
    let quoted = Some(("'", "'"));
    for info in [
        xdbc("BOOLEAN", T::XdbcBit, Some(1), None, false, None),
        xdbc("TINYINT", T::XdbcTinyint, Some(3), None, true, None),
        xdbc("SMALLINT", T::XdbcSmallint, Some(5), None, true, None),
        xdbc("INTEGER", T::XdbcInteger, Some(10), None, true, None),
        xdbc("BIGINT", T::XdbcBigint, Some(19), None, true, None),
        xdbc("REAL", T::XdbcReal, Some(7), None, true, None),
        xdbc("DOUBLE", T::XdbcDouble, Some(15), None, true, None),
        xdbc("DECIMAL", T::XdbcDecimal, Some(38), None, true, None),
        xdbc("VARCHAR", T::XdbcVarchar, None, quoted, false, None),
        xdbc("BYTEA", T::XdbcVarbinary, None, None, false, None),
        xdbc(
            "DATE",
            T::XdbcDate,
            Some(10),
            Some(("DATE '", "'")),
            false,
            Some(XdbcDatetimeSubcode::XdbcSubcodeUnknown),
        ),
        xdbc(
            "TIME",
            T::XdbcTime,
            Some(18),
            Some(("TIME '", "'")),
            false,
            Some(XdbcDatetimeSubcode::XdbcSubcodeUnknown),
        ),
        xdbc(
            "TIMESTAMP",
            T::XdbcTimestamp,
            Some(29),
            Some(("TIMESTAMP '", "'")),
            false,
            Some(XdbcDatetimeSubcode::XdbcSubcodeUnknown),
        ),
    ] {
        b.append(info);
    }
    b.build().expect("the type information is well-formed")
});

/// Schema of `GetPrimaryKeys` answers.
pub(crate) fn primary_keys_schema() -> SchemaRef {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("catalog_name", true),
        text("db_schema_name", true),
        text("table_name", false),
        text("column_name", false),
        text("key_name", true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// Schema of `GetImportedKeys`, `GetExportedKeys` and `GetCrossReference`
/// answers.
pub(crate) fn foreign_keys_schema() -> SchemaRef {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("pk_catalog_name", true),
        text("pk_db_schema_name", true),
        text("pk_table_name", false),
        text("pk_column_name", false),
        text("fk_catalog_name", true),
        text("fk_db_schema_name", true),
        text("fk_table_name", false),
        text("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        text("fk_key_name", true),
        text("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}
