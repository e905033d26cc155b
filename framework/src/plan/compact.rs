//! Compaction of view arrays before they are written to a shuffle.
//!
//! A `Utf8View`/`BinaryView` array produced by `take` or `filter` still
//! references the full data buffers of its source; Arrow IPC writes those
//! buffers whole. Re-packing sparse arrays keeps shuffle files proportional to
//! the rows they hold.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use crate::error::Result;

/// Re-packs view columns whose buffers are mostly unreferenced.
pub fn compact_view_columns(batch: RecordBatch) -> Result<RecordBatch> {
    let needs_work = batch.columns().iter().any(|c| is_sparse_view(c.as_ref()));
    if !needs_work {
        return Ok(batch);
    }
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| {
            if !is_sparse_view(c.as_ref()) {
                return Arc::clone(c);
            }
            match c.data_type() {
                DataType::Utf8View => Arc::new(c.as_string_view().gc()) as ArrayRef,
                DataType::BinaryView => Arc::new(c.as_binary_view().gc()) as ArrayRef,
                _ => Arc::clone(c),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

fn is_sparse_view(array: &dyn Array) -> bool {
    let (buffers_len, used): (usize, usize) = match array.data_type() {
        DataType::Utf8View => {
            let a = array.as_string_view();
            (
                a.data_buffers().iter().map(|b| b.len()).sum(),
                a.total_buffer_bytes_used(),
            )
        }
        DataType::BinaryView => {
            let a = array.as_binary_view();
            (
                a.data_buffers().iter().map(|b| b.len()).sum(),
                a.total_buffer_bytes_used(),
            )
        }
        _ => return false,
    };
    buffers_len > 64 * 1024 && buffers_len > used * 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringViewArray, UInt32Array};
    use arrow::compute::take;
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn sparse_view_columns_are_repacked() {
        let long: StringViewArray =
            StringViewArray::from_iter_values((0..10_000).map(|i| format!("{i:0>40}")));
        let picked = take(&long, &UInt32Array::from(vec![1, 5000]), None).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "s",
            DataType::Utf8View,
            false,
        )]));
        let batch = RecordBatch::try_new(schema, vec![picked]).unwrap();
        let before = batch.get_array_memory_size();
        let compacted = compact_view_columns(batch.clone()).unwrap();
        assert_eq!(
            compacted.column(0).as_string_view().value(1),
            long.value(5000)
        );
        assert!(compacted.get_array_memory_size() * 10 < before);
    }
}
