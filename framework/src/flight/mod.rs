//! Arrow Flight plumbing shared by executors (serving and fetching shuffle
//! partitions) and clients (fetching results).
//!
//! Shuffle files are Arrow IPC streams. An IPC stream is a sequence of
//! messages, and each message is exactly one Flight `FlightData` (flatbuffer
//! header plus body), so the server forwards stored messages as they are,
//! compressed, with no decode and re-encode; any Flight client can read them.

mod client;
mod ipc_guard;
mod ipc_stream;
mod ticket;

pub use client::{FlightClientPool, flight_data_batches, flight_endpoint};
pub use ipc_guard::{
    MAX_DECOMPRESSED_BUFFER_BYTES, MAX_IPC_BATCH_ROWS, MAX_IPC_MESSAGE_BYTES, check_ipc_message,
    check_ipc_stream,
};
pub use ipc_stream::{
    ChunkReader, ipc_chunk_batches, ipc_file_batches, ipc_file_flight_data, ipc_flight_data,
};
pub use ticket::{decode_ticket, encode_ticket, resolve_ticket_path, sign_ticket, verify_ticket};

/// Largest gRPC message Ballista sends or accepts (plans and batches).
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

/// HTTP/2 windows large enough that one stream can move data at disk speed
/// (the 64 KiB protocol default throttles large transfers).
pub const STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
/// Connection-level HTTP/2 window.
pub const CONNECTION_WINDOW_BYTES: u32 = 32 * 1024 * 1024;
