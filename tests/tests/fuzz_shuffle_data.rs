//! Deterministic, bounded fuzzing of the Arrow IPC data a process decodes
//! from its peers: shuffle partitions (read from an executor's disk, from
//! object storage, or from another executor over Flight) and job results
//! (which clients fetch from executors over Flight).
//!
//! Seeds are IPC streams as the local shuffle writes them (LZ4-compressed
//! bodies), zstd-compressed and uncompressed, of batches with the common
//! column types (integers, nullable strings and floats, lists, dictionaries).
//! They are mutated as in `fuzz_decoders.rs` (3,000 inputs per decoder,
//! `BALLISTA_FUZZ_INPUTS` × 10; `BALLISTA_FUZZ_SEED` for other inputs) and
//! decoded two ways:
//!
//! * `ipc_chunk_batches`, the reader of local and object-store shuffle
//!   files, with the stream cut into three chunks;
//! * `ipc_flight_data` (the framing the Flight service serves files with)
//!   into `FlightRecordBatchStream`, as clients and remote shuffle reads
//!   decode what an executor sends.
//!
//! The assertions are those of `fuzz_decoders.rs`: no panic, unchanged seeds
//! decode, at most 1 GiB held and no single allocation over 512 MiB. A
//! compressed buffer's 8-byte length prefix is what the decoder allocates
//! for, so a prefix claiming more than 4 GiB stops the process with
//! "memory allocation of N bytes failed" (the counting allocator refuses
//! such requests rather than let the machine run out of memory, and the last
//! `fuzzing <decoder>` line on stderr names the decoder); that is a finding
//! too. These decoders live in a test binary of their own, so that such a
//! stop cannot hide the results of `fuzz_decoders.rs`.

mod fuzz_support;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, DictionaryArray, Float64Array, Int64Array, ListArray, StringArray};
use arrow::datatypes::Int32Type;
use arrow::ipc::CompressionType;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::record_batch::RecordBatch;
use arrow_flight::error::FlightError;
use ballista::BallistaError;
use ballista::flight::{ChunkReader, flight_data_batches, ipc_chunk_batches, ipc_flight_data};
use futures::TryStreamExt;
use fuzz_support::{Campaign, DecoderSeed, Verdict, fuzz_in_process, runtime};
use prost::bytes::Bytes;

/// A batch with the column types shuffles commonly carry.
fn shuffle_batch(rows: usize) -> RecordBatch {
    let keys = Int64Array::from_iter_values(0..rows as i64);
    let names: StringArray = (0..rows)
        .map(|i| (!i.is_multiple_of(7)).then(|| format!("name-{}", i % 10)))
        .collect();
    let scores: Float64Array = (0..rows)
        .map(|i| (!i.is_multiple_of(5)).then_some(i as f64 / 4.0))
        .collect();
    let tags = ListArray::from_iter_primitive::<Int32Type, _, _>(
        (0..rows).map(|i| (!i.is_multiple_of(3)).then(|| vec![Some(i as i32), None, Some(7)])),
    );
    let cities: DictionaryArray<Int32Type> = (0..rows)
        .map(|i| ["north", "south", "east", "west"][i % 4])
        .collect();
    RecordBatch::try_from_iter([
        ("k", Arc::new(keys) as ArrayRef),
        ("name", Arc::new(names) as ArrayRef),
        ("score", Arc::new(scores) as ArrayRef),
        ("tags", Arc::new(tags) as ArrayRef),
        ("city", Arc::new(cities) as ArrayRef),
    ])
    .expect("a valid batch")
}

/// `batches` as one IPC stream, bodies compressed with `compression`.
fn ipc_stream(batches: &[RecordBatch], compression: Option<CompressionType>) -> Vec<u8> {
    let options = IpcWriteOptions::default()
        .try_with_compression(compression)
        .expect("a supported compression");
    let schema = batches[0].schema();
    let mut writer = StreamWriter::try_new_with_options(Vec::new(), &schema, options)
        .expect("an IPC stream writer");
    for batch in batches {
        writer.write(batch).expect("write a batch");
    }
    writer.into_inner().expect("finish the stream")
}

fn shuffle_files() -> Vec<DecoderSeed> {
    let large = [shuffle_batch(1000)];
    let two = [shuffle_batch(500), shuffle_batch(3)];
    let small = [shuffle_batch(50)];
    vec![
        DecoderSeed::valid(ipc_stream(&large, Some(CompressionType::LZ4_FRAME))),
        DecoderSeed::valid(ipc_stream(&two, Some(CompressionType::LZ4_FRAME))),
        DecoderSeed::valid(ipc_stream(&small, Some(CompressionType::ZSTD))),
        DecoderSeed::valid(ipc_stream(&small, None)),
    ]
}

/// Whether `bytes` start with a framed IPC message whose flatbuffer header
/// verifies.
fn starts_with_ipc_message(bytes: &[u8]) -> bool {
    let Some(rest) = bytes.strip_prefix(&[0xff_u8; 4]) else {
        return false;
    };
    let Some((len, rest)) = rest.split_first_chunk::<4>() else {
        return false;
    };
    let len = u32::from_le_bytes(*len) as usize;
    rest.get(..len)
        .is_some_and(|header| arrow::ipc::root_as_message(header).is_ok())
}

/// `bytes` as up to three chunks, as they arrive from a file or a store.
fn chunks(bytes: Vec<u8>) -> Vec<ballista::Result<Bytes>> {
    let bytes = Bytes::from(bytes);
    let third = bytes.len() / 3;
    [
        bytes.slice(..third),
        bytes.slice(third..2 * third),
        bytes.slice(2 * third..),
    ]
    .into_iter()
    .filter(|chunk| !chunk.is_empty())
    .map(Ok)
    .collect()
}

async fn read_shuffle_file(bytes: Vec<u8>) -> Verdict {
    let batches: Result<Vec<RecordBatch>, BallistaError> =
        ipc_chunk_batches(futures::stream::iter(chunks(bytes)))
            .try_collect()
            .await;
    Verdict::of(batches)
}

async fn read_over_flight(bytes: Vec<u8>) -> Verdict {
    let reader = ChunkReader::new(futures::stream::iter(chunks(bytes)));
    let messages = ipc_flight_data(reader).map_err(|e| FlightError::ExternalError(Box::new(e)));
    let batches: Result<Vec<RecordBatch>, BallistaError> =
        flight_data_batches(messages).try_collect().await;
    Verdict::of(batches)
}

#[test]
fn shuffle_data_survives_mutation() {
    let mut campaign = Campaign::start("shuffle data");
    let runtime = runtime();
    runtime.block_on(async {
        fuzz_in_process(
            &mut campaign,
            "ipc_chunk_batches (shuffle files, object storage)",
            shuffle_files(),
            starts_with_ipc_message,
            read_shuffle_file,
        )
        .await;
        fuzz_in_process(
            &mut campaign,
            "ipc_flight_data + FlightRecordBatchStream (results, remote reads)",
            shuffle_files(),
            starts_with_ipc_message,
            read_over_flight,
        )
        .await;
    });
    runtime.shutdown_timeout(Duration::from_secs(10));
    campaign.finish();
}
