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
