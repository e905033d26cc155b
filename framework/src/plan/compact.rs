//! Compaction of batches before they are written to a shuffle.
//!
//! A `Utf8View`/`BinaryView` array produced by `take` or `filter` still
//! references the full data buffers of its source; Arrow IPC writes those
//! buffers whole. Re-packing sparse arrays keeps shuffle files proportional to
//! the rows they hold.
//!
//! The last batch a coalescer hands out for an output partition keeps the
//! capacity of a full batch (8192 rows of every column) however few rows it
//! holds. Written to a file that costs nothing, but the in-memory tier keeps
//! the batch itself: a five-row partial aggregate held some 300 KiB, per
//! output partition of every map task.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use arrow::compute::take_record_batch;
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

/// Copies `batch` into buffers of its own size when it holds more than twice
/// the memory its rows need (and at least 64 KiB more): a coalescer's last,
/// partly filled batch.
pub fn shrink_over_allocated(batch: RecordBatch) -> Result<RecordBatch> {
    let held = batch.get_array_memory_size();
    let needed = batch.columns().iter().try_fold(0usize, |sum, c| {
        c.to_data()
            .get_slice_memory_size()
            .map(|size| sum.saturating_add(size))
    });
    let Ok(needed) = needed else {
        return Ok(batch);
    };
    if held <= needed.saturating_mul(2).saturating_add(64 * 1024) {
        return Ok(batch);
    }
    let rows = u32::try_from(batch.num_rows()).unwrap_or(u32::MAX);
    let all = UInt32Array::from_iter_values(0..rows);
    Ok(take_record_batch(&batch, &all)?)
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
    use arrow::array::{Int64Array, StringViewArray};
    use arrow::compute::{BatchCoalescer, take};
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

    #[test]
    fn a_coalescers_short_last_batch_is_shrunk_to_its_rows() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8View, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])),
                Arc::new(StringViewArray::from_iter_values([
                    "1-URGENT",
                    "2-HIGH",
                    "3-MEDIUM",
                    "4-NOT SPECIFIED",
                    "5-LOW",
                ])),
            ],
        )
        .unwrap();
        let mut coalescer = BatchCoalescer::new(Arc::clone(&schema), 8192)
            .with_biggest_coalesce_batch_size(Some(4096));
        coalescer.push_batch(batch.clone()).unwrap();
        coalescer.finish_buffered_batch().unwrap();
        let tail = coalescer.next_completed_batch().unwrap();
        let before = tail.get_array_memory_size();
        let shrunk = shrink_over_allocated(tail).unwrap();
        assert_eq!(shrunk, batch);
        assert!(
            shrunk.get_array_memory_size() * 10 < before,
            "{} bytes, {before} before",
            shrunk.get_array_memory_size()
        );
        // A batch that uses its memory is passed on as it is.
        let kept = shrink_over_allocated(shrunk.clone()).unwrap();
        assert!(Arc::ptr_eq(kept.column(0), shrunk.column(0)));
    }
}
