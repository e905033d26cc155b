//! Column types Arrow IPC cannot write, and how they cross a shuffle.
//!
//! Arrow IPC refuses a dictionary whose values are themselves a dictionary
//! (`Dictionary(Int32, Dictionary(UInt32, Utf8))`), a type DataFusion can
//! produce with `arrow_cast`. Such a column is written with its inner
//! dictionary type (the same values) and cast back to the declared type when
//! it is read, so that the type a query returns does not depend on whether its
//! rows crossed a process.

use std::sync::Arc;

use arrow::array::RecordBatchOptions;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::error::{BallistaError, Result};

fn wire_type(data_type: &DataType) -> Option<DataType> {
    match data_type {
        DataType::Dictionary(_, value) if matches!(value.as_ref(), DataType::Dictionary(..)) => {
            Some(wire_type(value).unwrap_or_else(|| value.as_ref().clone()))
        }
        _ => None,
    }
}

/// The schema a batch of `schema` is written with (`schema` itself when it
/// holds no type IPC refuses).
pub fn wire_schema(schema: &SchemaRef) -> SchemaRef {
    if !schema
        .fields()
        .iter()
        .any(|f| wire_type(f.data_type()).is_some())
    {
        return Arc::clone(schema);
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match wire_type(f.data_type()) {
            Some(t) => f.as_ref().clone().with_data_type(t),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` with the column types of `schema`, casting columns whose type
/// differs (both ways across a shuffle: declared to wire, wire to declared).
/// The batch takes `schema` itself when its values fit it; a column holding
/// nulls that `schema` declares non-nullable keeps its own nullability
/// (DataFusion's operators do not check that either; see [`conform_strict`]).
pub fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let cast = conform_types(batch, schema)?;
    if cast.schema_ref() == schema {
        return Ok(cast);
    }
    let fits = cast
        .columns()
        .iter()
        .zip(schema.fields())
        .all(|(column, field)| field.is_nullable() || column.null_count() == 0);
    if fits {
        let options = RecordBatchOptions::new().with_row_count(Some(cast.num_rows()));
        if let Ok(declared) =
            RecordBatch::try_new_with_options(Arc::clone(schema), cast.columns().to_vec(), &options)
        {
            return Ok(declared);
        }
    }
    Ok(cast)
}

/// Like [`conform`], but a null in a column `schema` declares non-nullable
/// is an error, as DataFusion raises it when a value is written into such a
/// column (`INSERT INTO t VALUES (NULL)` with `t.a NOT NULL`).
pub fn conform_strict(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let cast = conform_types(batch, schema)?;
    if cast.schema_ref() == schema {
        return Ok(cast);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(cast.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        cast.columns().to_vec(),
        &options,
    )?)
}

fn conform_types(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema_ref() == schema {
        return Ok(batch);
    }
    if batch.num_columns() != schema.fields().len() {
        return Err(BallistaError::Internal(format!(
            "a batch of {} columns arrived where {} were expected",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if columns
        .iter()
        .zip(batch.columns())
        .all(|(new, old)| Arc::ptr_eq(new, old))
    {
        return Ok(batch);
    }
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .zip(&columns)
        .map(|(field, column)| {
            field
                .as_ref()
                .clone()
                .with_data_type(column.data_type().clone())
        })
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new_with_metadata(
            fields,
            batch.schema().metadata().clone(),
        )),
        columns,
        &options,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, DictionaryArray, StringArray};
    use arrow::datatypes::{Int32Type, UInt32Type};

    #[test]
    fn nested_dictionaries_cross_as_their_inner_type() {
        let inner: DictionaryArray<UInt32Type> = vec!["a", "b", "a"].into_iter().collect();
        let nested_type = DataType::Dictionary(
            Box::new(DataType::Int32),
            Box::new(inner.data_type().clone()),
        );
        let nested = cast(&inner, &nested_type).unwrap();
        let declared = Arc::new(Schema::new(vec![Field::new(
            "s",
            nested_type.clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(Arc::clone(&declared), vec![nested]).unwrap();
        let wire = wire_schema(&declared);
        assert_eq!(wire.field(0).data_type(), inner.data_type());
        let sent = conform(batch.clone(), &wire).unwrap();
        let back = conform(sent, &declared).unwrap();
        assert_eq!(back.column(0).data_type(), &nested_type);
        let values = cast(back.column(0), &DataType::Utf8).unwrap();
        let values = values.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(values.iter().flatten().collect::<Vec<_>>(), ["a", "b", "a"]);
        let _ = DictionaryArray::<Int32Type>::from_iter(["x"]);
    }

    #[test]
    fn a_null_in_a_non_nullable_column_is_refused() {
        let loose = Arc::new(Schema::new(vec![Field::new("a", DataType::Utf8, true)]));
        let strict = Arc::new(Schema::new(vec![Field::new("a", DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(
            loose,
            vec![Arc::new(StringArray::from(vec![Some("x"), None]))],
        )
        .unwrap();
        let err = conform_strict(batch.clone(), &strict)
            .unwrap_err()
            .to_string();
        assert!(err.contains("non-nullable"), "{err}");
        let lenient = conform(batch, &strict).unwrap();
        assert!(lenient.schema().field(0).is_nullable());
    }
}
