//! Reading Arrow IPC stream files, either as record batches (local reads) or
//! as the raw messages Flight sends (serving reads).

use std::path::PathBuf;

use arrow::buffer::Buffer;
use arrow::ipc::reader::StreamDecoder;
use arrow::record_batch::RecordBatch;
use arrow_flight::FlightData;
use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

use crate::error::{BallistaError, Result};

const READ_CHUNK_BYTES: usize = 1024 * 1024;
const CONTINUATION_MARKER: u32 = 0xFFFF_FFFF;

/// Batches of the IPC stream file at `path`, decoded as they are read.
pub fn ipc_file_batches(path: PathBuf) -> impl Stream<Item = Result<RecordBatch>> + Send {
    struct State {
        file: Option<tokio::fs::File>,
        path: PathBuf,
        decoder: StreamDecoder,
        pending: Buffer,
        done: bool,
    }
    let state = State {
        file: None,
        path,
        decoder: StreamDecoder::new(),
        pending: Buffer::from(Vec::<u8>::new()),
        done: false,
    };
    futures::stream::try_unfold(state, |mut s| async move {
        loop {
            if !s.pending.is_empty() {
                if let Some(batch) = s.decoder.decode(&mut s.pending)? {
                    return Ok(Some((batch, s)));
                }
                continue;
            }
            if s.done {
                s.decoder.finish()?;
                return Ok(None);
            }
            if s.file.is_none() {
                s.file = Some(tokio::fs::File::open(&s.path).await?);
            }
            let file = s.file.as_mut().expect("opened above");
            let mut chunk = vec![0u8; READ_CHUNK_BYTES];
            let n = file.read(&mut chunk).await?;
            if n == 0 {
                s.done = true;
            } else {
                chunk.truncate(n);
                s.pending = Buffer::from(chunk);
            }
        }
    })
}

/// The messages of the IPC stream file at `path`, one `FlightData` each,
/// without decoding the batches.
pub fn ipc_file_flight_data(path: PathBuf) -> impl Stream<Item = Result<FlightData>> + Send {
    futures::stream::try_unfold(None, move |reader: Option<BufReader<tokio::fs::File>>| {
        let path = path.clone();
        async move {
            let mut reader = match reader {
                Some(r) => r,
                None => {
                    BufReader::with_capacity(READ_CHUNK_BYTES, tokio::fs::File::open(&path).await?)
                }
            };
            match next_message(&mut reader).await? {
                Some(data) => Ok(Some((data, Some(reader)))),
                None => Ok(None),
            }
        }
    })
}

async fn next_message<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<FlightData>> {
    let mut word = [0u8; 4];
    if !read_exact_or_eof(reader, &mut word).await? {
        return Ok(None);
    }
    let mut length = u32::from_le_bytes(word);
    if length == CONTINUATION_MARKER {
        if !read_exact_or_eof(reader, &mut word).await? {
            return Err(truncated());
        }
        length = u32::from_le_bytes(word);
    }
    if length == 0 {
        // End-of-stream marker.
        return Ok(None);
    }
    let mut header = vec![0u8; length as usize];
    reader.read_exact(&mut header).await?;
    let message = arrow::ipc::root_as_message(&header).map_err(|e| {
        BallistaError::Io(format!("corrupt Arrow IPC message in shuffle file: {e}"))
    })?;
    let body_length = usize::try_from(message.bodyLength())
        .map_err(|_| BallistaError::Io("negative IPC body length in shuffle file".into()))?;
    let mut body = vec![0u8; body_length];
    reader.read_exact(&mut body).await?;
    Ok(Some(FlightData {
        data_header: Bytes::from(header),
        data_body: Bytes::from(body),
        ..Default::default()
    }))
}

async fn read_exact_or_eof<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            return if filled == 0 {
                Ok(false)
            } else {
                Err(truncated())
            };
        }
        filled += n;
    }
    Ok(true)
}

fn truncated() -> BallistaError {
    BallistaError::Io("truncated Arrow IPC stream in shuffle file".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringViewArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::ipc::CompressionType;
    use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
    use arrow_flight::decode::FlightRecordBatchStream;
    use futures::{StreamExt, TryStreamExt};
    use std::sync::Arc;

    fn write_file(path: &std::path::Path) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("s", DataType::Utf8View, true),
        ]));
        let batches: Vec<RecordBatch> = (0..3)
            .map(|i| {
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from_iter_values(i * 100..i * 100 + 100)),
                        Arc::new(StringViewArray::from_iter_values(
                            (0..100).map(|j| format!("a fairly long string value {i}-{j}")),
                        )),
                    ],
                )
                .unwrap()
            })
            .collect();
        let options = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::LZ4_FRAME))
            .unwrap();
        let file = std::fs::File::create(path).unwrap();
        let mut writer = StreamWriter::try_new_with_options(file, &schema, options).unwrap();
        for b in &batches {
            writer.write(b).unwrap();
        }
        writer.finish().unwrap();
        batches
    }

    #[tokio::test]
    async fn local_read_and_flight_framing_return_the_written_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.arrow");
        let written = write_file(&path);

        let read: Vec<RecordBatch> = ipc_file_batches(path.clone()).try_collect().await.unwrap();
        assert_eq!(read, written);

        let frames = ipc_file_flight_data(path)
            .map_err(|e| arrow_flight::error::FlightError::ExternalError(Box::new(e)));
        let decoded: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(frames)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(decoded, written);
    }

    #[tokio::test]
    async fn truncated_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.arrow");
        write_file(&path);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let results: Vec<Result<FlightData>> = ipc_file_flight_data(path).collect().await;
        let err = results.into_iter().find_map(|r| r.err()).expect("an error");
        assert!(matches!(err, BallistaError::Io(_)), "{err:?}");
    }
}
