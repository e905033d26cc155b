//! How the Flight SQL service's answers and requests travel: the caller,
//! `FlightInfo`s of metadata answers, batches as Flight streams, schemas as
//! IPC, and the batches a client sends with `DoPut`.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::ProstMessageExt;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::{
    FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket,
};
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status};

use super::prepared::MAX_SQL_BYTES;
use crate::auth::Caller;
use crate::error::BallistaError;

/// A stream of a call's answers.
pub(super) type BoxedStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The caller of a Flight SQL call, which must be a client.
pub(super) fn client_of<T>(
    request: &Request<T>,
    what: &str,
) -> Result<Arc<crate::plugin::auth::Identity>, Status> {
    Ok(Caller::of(request).client(what)?)
}

/// A `FlightInfo` whose one endpoint, at this scheduler, is `command`
/// itself: the answer of a metadata call.
pub(super) fn metadata_info(
    command: impl ProstMessageExt,
    schema: &arrow::datatypes::Schema,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = Ticket::new(command.as_any().encode_to_vec());
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("encoding a schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// One record batch as a Flight stream.
pub(super) fn batch_stream(batch: RecordBatch) -> Response<BoxedStream<FlightData>> {
    let schema = batch.schema();
    batches_stream(schema, vec![batch])
}

pub(super) fn batches_stream(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Response<BoxedStream<FlightData>> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

/// Refuses SQL texts too long to be one statement.
pub(crate) fn check_sql_length(sql: &str) -> Result<(), Status> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(BallistaError::InvalidInput(format!(
            "the statement is {} bytes long; the limit is {MAX_SQL_BYTES}",
            sql.len()
        ))
        .into());
    }
    Ok(())
}

/// A schema as the IPC message Flight SQL carries it in.
pub(super) fn ipc_schema(schema: &arrow::datatypes::Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &Default::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| {
            Status::internal(format!("encoding a schema: {e}"))
        })?;
    Ok(bytes)
}

/// The record batches a client sent with `DoPut` (checked before decoding).
pub(super) async fn put_batches(
    request: Request<PeekableFlightDataStream>,
) -> Result<Vec<RecordBatch>, Status> {
    // A message with no IPC header carries only the descriptor (an update
    // sent without parameters).
    let messages = request
        .into_inner()
        .try_filter(|data| std::future::ready(!data.data_header.is_empty()))
        .map_err(FlightError::from);
    let batches = crate::flight::flight_data_batches(messages);
    Ok(batches.try_collect().await?)
}
