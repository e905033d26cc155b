//! Results in the Arrow types every Flight SQL client reads.
//!
//! DataFusion reads parquet strings as `Utf8View` (and binary as
//! `BinaryView`); the Arrow Flight SQL JDBC driver, up to 18.3 at least,
//! refuses a result with such a column before reading a row ("Unsupported
//! ArrowType Utf8View"), and so do tools built on it (DBeaver). So results
//! and schemas given to Flight SQL clients carry `Utf8` and `Binary`
//! instead, and dictionaries are given as their values, unless
//! `[scheduler.flight_sql] view_types = true` (ADBC reads either).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast};

use crate::error::Result;

/// `data_type` in the types every client reads; `None` when it is already.
pub(crate) fn plain_type(data_type: &DataType) -> Option<DataType> {
    let field = |f: &FieldRef| plain_field(f).map(Arc::new);
    match data_type {
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        DataType::Dictionary(_, values) => {
            Some(plain_type(values).unwrap_or_else(|| values.as_ref().clone()))
        }
        DataType::List(f) => field(f).map(DataType::List),
        DataType::LargeList(f) => field(f).map(DataType::LargeList),
        DataType::FixedSizeList(f, n) => field(f).map(|f| DataType::FixedSizeList(f, *n)),
        DataType::Map(f, sorted) => field(f).map(|f| DataType::Map(f, *sorted)),
        DataType::Struct(fields) => plain_fields(fields).map(DataType::Struct),
        _ => None,
    }
}

fn plain_field(field: &Field) -> Option<Field> {
    plain_type(field.data_type()).map(|t| field.clone().with_data_type(t))
}

fn plain_fields(fields: &Fields) -> Option<Fields> {
    let changed: Vec<Option<Field>> = fields.iter().map(|f| plain_field(f)).collect();
    if changed.iter().all(Option::is_none) {
        return None;
    }
    Some(
        fields
            .iter()
            .zip(changed)
            .map(|(f, c)| c.map(Arc::new).unwrap_or_else(|| Arc::clone(f)))
            .collect(),
    )
}

/// `schema` in the types every client reads.
pub(crate) fn plain_schema(schema: &SchemaRef) -> SchemaRef {
    match plain_fields(schema.fields()) {
        Some(fields) => Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        None => Arc::clone(schema),
    }
}

/// Whether a job of `plan` gives rows of a type some clients cannot read.
pub(crate) fn needs_plain_types(plan: &LogicalPlan) -> bool {
    crate::catalog::is_query_node(plan)
        && plan
            .schema()
            .fields()
            .iter()
            .any(|f| plain_type(f.data_type()).is_some())
}

/// `plan` with its result columns cast to the types every client reads
/// (names and qualifiers kept); `plan` itself when they are already.
pub(crate) fn with_plain_types(plan: LogicalPlan) -> Result<LogicalPlan> {
    if !needs_plain_types(&plan) {
        return Ok(plan);
    }
    let columns: Vec<Expr> = plan
        .schema()
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
            match plain_type(field.data_type()) {
                Some(plain) => {
                    cast(column, plain).alias_qualified(qualifier.cloned(), field.name())
                }
                None => column,
            }
        })
        .collect();
    Ok(LogicalPlanBuilder::from(plan).project(columns)?.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn view_and_dictionary_columns_become_plain_and_others_stay() {
        let ctx = SessionContext::new();
        let plan = ctx
            .state()
            .create_logical_plan(
                "SELECT arrow_cast('a', 'Utf8View') AS s, \
                 arrow_cast('b', 'Dictionary(Int32, Utf8)') AS d, \
                 [arrow_cast('c', 'Utf8View')] AS l, 1 AS n",
            )
            .await
            .unwrap();
        assert!(needs_plain_types(&plan));
        let plain = with_plain_types(plan).unwrap();
        let schema = plain.schema().as_arrow().clone();
        let types: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect();
        assert_eq!(types, ["s Utf8", "d Utf8", "l List(Utf8)", "n Int64"]);
        let batches = ctx
            .execute_logical_plan(plain)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(
            batches[0].schema().field(2).data_type().to_string(),
            "List(Utf8)"
        );
        assert!(!needs_plain_types(
            &ctx.state()
                .create_logical_plan("SELECT 'x' AS s")
                .await
                .unwrap()
        ));
    }
}
