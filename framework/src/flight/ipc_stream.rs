//! Reading Arrow IPC stream files, either as record batches (local reads) or
//! as the raw messages Flight sends (serving reads).

use std::collections::VecDeque;
use std::path::PathBuf;

use arrow::buffer::Buffer;
use arrow::ipc::reader::StreamDecoder;
use arrow::record_batch::RecordBatch;
use arrow_flight::FlightData;
use bytes::Bytes;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadBuf};

use super::ipc_guard::{MAX_IPC_MESSAGE_BYTES, check_ipc_message};
use crate::error::{BallistaError, Result};

const READ_CHUNK_BYTES: usize = 1024 * 1024;
const CONTINUATION_MARKER: u32 = 0xFFFF_FFFF;

/// Batches of the IPC stream file at `path`, decoded as they are read.
pub fn ipc_file_batches(path: PathBuf) -> impl Stream<Item = Result<RecordBatch>> + Send {
    let chunks = futures::stream::try_unfold(None, move |file: Option<tokio::fs::File>| {
        let path = path.clone();
        async move {
            let mut file = match file {
                Some(file) => file,
                None => tokio::fs::File::open(&path).await?,
            };
            let mut chunk = vec![0u8; READ_CHUNK_BYTES];
            let n = file.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            chunk.truncate(n);
            Ok(Some((Bytes::from(chunk), Some(file))))
        }
    });
    ipc_chunk_batches(Box::pin(chunks))
}

/// Batches of an IPC stream arriving as byte chunks of any size (for example
/// the body of an object-store GET), decoded as the chunks arrive. Each
/// message is framed and checked ([`check_ipc_message`]) before arrow sees
/// it.
pub fn ipc_chunk_batches<S>(chunks: S) -> impl Stream<Item = Result<RecordBatch>> + Send
where
    S: Stream<Item = Result<Bytes>> + Send + Unpin,
{
    struct State<M> {
        messages: M,
        decoder: StreamDecoder,
        pending: VecDeque<Buffer>,
        ended: bool,
    }
    let state = State {
        messages: Box::pin(ipc_flight_data(ChunkReader::new(chunks))),
        decoder: StreamDecoder::new(),
        pending: VecDeque::new(),
        ended: false,
    };
    futures::stream::try_unfold(state, |mut s| async move {
        loop {
            if let Some(buffer) = s.pending.front_mut() {
                if buffer.is_empty() {
                    s.pending.pop_front();
                } else if let Some(batch) = crate::util::decode_guarded("Arrow IPC stream", || {
                    s.decoder.decode(buffer).map_err(BallistaError::from)
                })? {
                    return Ok(Some((batch, s)));
                }
                continue;
            }
            match s.messages.next().await {
                Some(message) => {
                    let message = message?;
                    let mut prefix = CONTINUATION_MARKER.to_le_bytes().to_vec();
                    prefix.extend_from_slice(&(message.data_header.len() as u32).to_le_bytes());
                    s.pending.push_back(Buffer::from(prefix));
                    s.pending.push_back(Buffer::from(message.data_header));
                    s.pending.push_back(Buffer::from(message.data_body));
                }
                // The decoder completes a message with an empty body only
                // when it sees the bytes after it: the end-of-stream marker.
                None if !s.ended => {
                    s.ended = true;
                    let mut marker = CONTINUATION_MARKER.to_le_bytes().to_vec();
                    marker.extend_from_slice(&0u32.to_le_bytes());
                    s.pending.push_back(Buffer::from(marker));
                }
                None => {
                    s.decoder.finish()?;
                    return Ok(None);
                }
            }
        }
    })
}

/// The messages of the IPC stream file at `path`, one `FlightData` each,
/// without decoding the batches.
pub fn ipc_file_flight_data(path: PathBuf) -> impl Stream<Item = Result<FlightData>> + Send {
    let opened = futures::stream::once(async move {
        let file = tokio::fs::File::open(&path).await?;
        Ok::<_, BallistaError>(ipc_flight_data(BufReader::with_capacity(
            READ_CHUNK_BYTES,
            file,
        )))
    });
    opened.try_flatten()
}

/// The messages of the IPC stream `reader` yields, one `FlightData` each,
/// checked ([`check_ipc_message`]) but not decoded.
pub fn ipc_flight_data<R>(reader: R) -> impl Stream<Item = Result<FlightData>> + Send
where
    R: AsyncRead + Unpin + Send,
{
    futures::stream::try_unfold(reader, |mut reader| async move {
        match next_message(&mut reader).await? {
            Some(data) => Ok(Some((data, reader))),
            None => Ok(None),
        }
    })
}

/// Reads a stream of byte chunks as an [`AsyncRead`], so the IPC framing
/// above can serve data that is not a local file.
pub struct ChunkReader<S> {
    chunks: S,
    current: Bytes,
}

impl<S> ChunkReader<S> {
    /// Reads `chunks` in order.
    pub fn new(chunks: S) -> Self {
        Self {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl<S> AsyncRead for ChunkReader<S>
where
    S: Stream<Item = Result<Bytes>> + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.current.is_empty() {
                let n = buf.remaining().min(self.current.len());
                let chunk = self.current.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match std::task::ready!(self.chunks.poll_next_unpin(cx)) {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
    }
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
    if u64::from(length) > MAX_IPC_MESSAGE_BYTES {
        return Err(BallistaError::InvalidInput(format!(
            "refused Arrow IPC message: a header of {length} bytes (at most {MAX_IPC_MESSAGE_BYTES})"
        )));
    }
    let mut header = vec![0u8; length as usize];
    reader.read_exact(&mut header).await?;
    let message = arrow::ipc::root_as_message(&header).map_err(|e| {
        BallistaError::Io(format!("corrupt Arrow IPC message in shuffle file: {e}"))
    })?;
    let body_length = u64::try_from(message.bodyLength())
        .ok()
        .filter(|n| *n <= MAX_IPC_MESSAGE_BYTES)
        .ok_or_else(|| {
            BallistaError::InvalidInput(format!(
                "refused Arrow IPC message: a body of {} bytes (at most {MAX_IPC_MESSAGE_BYTES})",
                message.bodyLength()
            ))
        })?;
    let mut body = vec![0u8; body_length as usize];
    reader.read_exact(&mut body).await?;
    check_ipc_message(&header, &body)?;
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

    /// Batches of no columns have messages with empty bodies, which the
    /// decoder completes only on the bytes that follow (at the end, the
    /// end-of-stream marker).
    #[tokio::test]
    async fn batches_without_columns_are_read_to_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.arrow");
        let schema = Arc::new(Schema::empty());
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(3));
        let batch = RecordBatch::try_new_with_options(schema.clone(), vec![], &options).unwrap();
        let file = std::fs::File::create(&path).unwrap();
        let mut writer = StreamWriter::try_new(file, &schema).unwrap();
        writer.write(&batch).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();

        let read: Vec<RecordBatch> = ipc_file_batches(path).try_collect().await.unwrap();
        assert_eq!(
            read.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            vec![3, 3]
        );
    }

    /// A shuffle file of one zero-column batch, as the shuffle writer wrote
    /// it for `dense_rank() OVER ()` over two constant rows.
    #[tokio::test]
    async fn a_written_zero_column_shuffle_file_reads_back() {
        const ZERO_COLUMN_FILE: [u8; 200] = [
            255, 255, 255, 255, 56, 0, 0, 0, 16, 0, 0, 0, 0, 0, 10, 0, 12, 0, 10, 0, 9, 0, 4, 0,
            10, 0, 0, 0, 16, 0, 0, 0, 0, 1, 4, 0, 8, 0, 8, 0, 0, 0, 4, 0, 8, 0, 0, 0, 4, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 120, 0, 0, 0, 16, 0, 0, 0, 0,
            0, 10, 0, 12, 0, 10, 0, 9, 0, 4, 0, 10, 0, 0, 0, 20, 0, 0, 0, 0, 3, 4, 0, 12, 0, 28, 0,
            16, 0, 12, 0, 8, 0, 4, 0, 12, 0, 0, 0, 40, 0, 0, 0, 28, 0, 0, 0, 16, 0, 0, 0, 1, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 4, 0, 4, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 0,
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.arrow");
        std::fs::write(&path, ZERO_COLUMN_FILE).unwrap();
        let read: Vec<RecordBatch> = ipc_file_batches(path).try_collect().await.unwrap();
        assert_eq!(
            read.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            vec![1]
        );
    }
}
