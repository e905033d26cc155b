//! Checks on Arrow IPC messages that come from another process, made
//! before arrow decodes them.
//!
//! Arrow's reader trusts the sizes a message declares: a compressed
//! buffer's 8-byte uncompressed length is allocated as written (a few bytes
//! can ask for petabytes, and a failed allocation aborts the whole
//! process), and row counts size null buffers. Every IPC message read
//! from a shuffle file, an object store, a Flight stream or a plan passes
//! [`check_ipc_message`] first; an oversized one is refused with an error
//! naming the limit.

use arrow::ipc::{MessageHeader, RecordBatch as IpcRecordBatch, root_as_message};

use crate::error::{BallistaError, Result};

/// Largest header or body of one IPC message accepted from another process
/// (the largest gRPC message Ballista sends).
pub const MAX_IPC_MESSAGE_BYTES: u64 = super::MAX_MESSAGE_SIZE as u64;

/// Largest uncompressed size one compressed buffer may declare.
pub const MAX_DECOMPRESSED_BUFFER_BYTES: i64 = 256 << 20;

/// Most rows one IPC record batch may declare.
pub const MAX_IPC_BATCH_ROWS: i64 = 1 << 27;

fn refused(what: String) -> BallistaError {
    BallistaError::InvalidInput(format!("refused Arrow IPC message: {what}"))
}

/// Checks the header of one IPC message (flatbuffer bytes, as in a
/// `FlightData` header) against `body`: lengths within the limits above,
/// buffers inside the body.
pub fn check_ipc_message(header: &[u8], body: &[u8]) -> Result<()> {
    let message = root_as_message(header).map_err(|e| refused(format!("malformed header: {e}")))?;
    let body_length = message.bodyLength();
    if body_length < 0 || body_length as u64 > MAX_IPC_MESSAGE_BYTES {
        return Err(refused(format!(
            "a body of {body_length} bytes (at most {MAX_IPC_MESSAGE_BYTES})"
        )));
    }
    let batch = match message.header_type() {
        MessageHeader::RecordBatch => message.header_as_record_batch(),
        MessageHeader::DictionaryBatch => message
            .header_as_dictionary_batch()
            .and_then(|dictionary| dictionary.data()),
        _ => None,
    };
    match batch {
        Some(batch) => check_batch(&batch, body),
        None => Ok(()),
    }
}

fn check_batch(batch: &IpcRecordBatch<'_>, body: &[u8]) -> Result<()> {
    if !(0..=MAX_IPC_BATCH_ROWS).contains(&batch.length()) {
        return Err(refused(format!(
            "a batch of {} rows (at most {MAX_IPC_BATCH_ROWS})",
            batch.length()
        )));
    }
    if let Some(nodes) = batch.nodes() {
        for node in nodes.iter() {
            if !(0..=MAX_IPC_BATCH_ROWS).contains(&node.length())
                || !(0..=node.length()).contains(&node.null_count())
            {
                return Err(refused(format!(
                    "a column of {} rows with {} nulls",
                    node.length(),
                    node.null_count()
                )));
            }
        }
    }
    let compressed = batch.compression().is_some();
    let Some(buffers) = batch.buffers() else {
        return Ok(());
    };
    for buffer in buffers.iter() {
        let (offset, length) = (buffer.offset(), buffer.length());
        let end = offset.checked_add(length);
        let inside =
            offset >= 0 && length >= 0 && end.is_some_and(|end| end as u64 <= body.len() as u64);
        if !inside {
            return Err(refused(format!(
                "a buffer at offset {offset} of {length} bytes outside a body of {} bytes",
                body.len()
            )));
        }
        if compressed && length >= 8 {
            let start = offset as usize;
            let prefix: [u8; 8] = body[start..start + 8].try_into().expect("8 bytes");
            let declared = i64::from_le_bytes(prefix);
            if declared > MAX_DECOMPRESSED_BUFFER_BYTES {
                return Err(refused(format!(
                    "a compressed buffer that declares {declared} bytes uncompressed \
                     (at most {MAX_DECOMPRESSED_BUFFER_BYTES})"
                )));
            }
        }
    }
    Ok(())
}

/// Checks every message of an IPC stream held whole in `bytes` (as a plan
/// carries in-memory rows). A length that points past the end is refused
/// too: arrow sizes its buffers from it before finding the bytes missing.
pub fn check_ipc_stream(bytes: &[u8]) -> Result<()> {
    let mut rest = bytes;
    loop {
        if rest.len() < 4 {
            return Ok(());
        }
        let mut length = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
        let mut prefix = 4;
        if length == 0xFFFF_FFFF {
            if rest.len() < 8 {
                return Ok(());
            }
            length = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
            prefix = 8;
        }
        if length == 0 {
            return Ok(());
        }
        let header_end = prefix + length as usize;
        let Some(header) = rest.get(prefix..header_end) else {
            return Err(refused(format!(
                "a header of {length} bytes where {} remain",
                rest.len() - prefix
            )));
        };
        let message =
            root_as_message(header).map_err(|e| refused(format!("malformed header: {e}")))?;
        let body_length = usize::try_from(message.bodyLength())
            .map_err(|_| refused(format!("a body of {} bytes", message.bodyLength())))?;
        let body_end = header_end.saturating_add(body_length);
        let Some(body) = rest.get(header_end..body_end) else {
            return Err(refused(format!(
                "a body of {body_length} bytes where {} remain",
                rest.len() - header_end
            )));
        };
        check_ipc_message(header, body)?;
        rest = &rest[body_end..];
    }
}
