//! Conversions between wire messages and Arrow / framework types.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions};

use crate::error::{BallistaError, Result};

use super::KeyValue;

/// Encodes a schema as an Arrow IPC schema message.
pub fn encode_schema(schema: &Schema) -> Vec<u8> {
    let generator = IpcDataGenerator::default();
    let mut tracker = DictionaryTracker::new(false);
    generator
        .schema_to_bytes_with_dictionary_tracker(schema, &mut tracker, &IpcWriteOptions::default())
        .ipc_message
}

/// Decodes a schema written by [`encode_schema`].
pub fn decode_schema(bytes: &[u8]) -> Result<SchemaRef> {
    crate::util::decode_guarded("Arrow IPC schema", || decode_schema_unguarded(bytes))
}

fn decode_schema_unguarded(bytes: &[u8]) -> Result<SchemaRef> {
    let message = arrow::ipc::root_as_message(bytes).map_err(|e| {
        BallistaError::InvalidInput(format!("malformed Arrow IPC schema message: {e}"))
    })?;
    let ipc_schema = message.header_as_schema().ok_or_else(|| {
        BallistaError::InvalidInput("Arrow IPC message does not hold a schema".into())
    })?;
    Ok(Arc::new(arrow::ipc::convert::fb_to_schema(ipc_schema)))
}

/// Converts string pairs into wire key/values.
pub fn key_values<K: Into<String>, V: Into<String>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Vec<KeyValue> {
    pairs
        .into_iter()
        .map(|(k, v)| KeyValue {
            key: k.into(),
            value: v.into(),
        })
        .collect()
}

/// Converts wire key/values into a map.
pub fn key_values_to_map(pairs: &[KeyValue]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field};

    #[test]
    fn schema_round_trips_including_view_types() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("s", DataType::Utf8View, true),
            Field::new("d", DataType::Decimal128(15, 2), true),
        ]);
        let back = decode_schema(&encode_schema(&schema)).unwrap();
        assert_eq!(back.as_ref(), &schema);
    }

    #[test]
    fn garbage_is_an_invalid_input_error() {
        let err = decode_schema(b"not a schema").unwrap_err();
        assert!(matches!(err, BallistaError::InvalidInput(_)), "{err:?}");
    }
}

impl super::MemoryReport {
    /// An executor's memory figures as sent over the wire (without per-job
    /// figures).
    pub fn from_usage(usage: &crate::plugin::memory::MemoryUsage) -> Self {
        Self {
            budget_bytes: usage.budget_bytes,
            reserved_bytes: usage.reserved_bytes,
            peak_bytes: usage.peak_bytes,
            available_bytes: usage.available_bytes,
            task_min_bytes: usage.task_min_bytes,
            jobs: Vec::new(),
        }
    }

    /// The executor-wide figures.
    pub fn usage(&self) -> crate::plugin::memory::MemoryUsage {
        crate::plugin::memory::MemoryUsage {
            budget_bytes: self.budget_bytes,
            reserved_bytes: self.reserved_bytes,
            peak_bytes: self.peak_bytes,
            available_bytes: self.available_bytes,
            task_min_bytes: self.task_min_bytes,
        }
    }
}
