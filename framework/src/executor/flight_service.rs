//! The executor's Arrow Flight service: `do_get` streams a partition file
//! named by a ticket, and nothing outside the work directory; or, for a
//! shuffle that keeps its data in object storage, a committed object of that
//! shuffle (clients fetch a job's results here without storage credentials).

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
use arrow::record_batch::RecordBatch;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::task_runner::PublishedObjects;
use crate::auth::{Caller, SessionKeySlot};
use crate::error::BallistaError;
use crate::flight::{
    ChunkReader, FlightClientPool, decode_ticket, ipc_file_flight_data, ipc_flight_data,
    resolve_ticket_path, verify_ticket,
};
use crate::ids::{JobId, StageId};
use crate::plugin::shuffle::memory_tier::ShuffleMemoryTier;
use crate::plugin::shuffle::{
    ExecutorAddress, PartitionStats, ShuffleLocation, ShuffleReadContext, ShuffleReader,
};
use datafusion::execution::object_store::ObjectStoreRegistry;

type BoxedStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub(crate) struct ExecutorFlightService {
    work_dir: PathBuf,
    executor: ExecutorAddress,
    shuffle_reader: Arc<dyn ShuffleReader>,
    object_stores: Arc<dyn ObjectStoreRegistry>,
    published: Arc<PublishedObjects>,
    /// Map outputs held in memory, served before files.
    memory_tier: Arc<ShuffleMemoryTier>,
    /// Checks the scheduler's signature on tickets.
    session_key: SessionKeySlot,
}

impl ExecutorFlightService {
    pub(crate) fn new(
        work_dir: PathBuf,
        executor: ExecutorAddress,
        shuffle_reader: Arc<dyn ShuffleReader>,
        object_stores: Arc<dyn ObjectStoreRegistry>,
        published: Arc<PublishedObjects>,
        memory_tier: Arc<ShuffleMemoryTier>,
        session_key: SessionKeySlot,
    ) -> Self {
        Self {
            work_dir,
            executor,
            shuffle_reader,
            object_stores,
            published,
            memory_tier,
            session_key,
        }
    }

    /// Serves a ticket naming a URL: a committed object of the executor's
    /// object-store shuffle. The shuffle reader refuses anything else.
    async fn serve_stored_object(
        &self,
        job_id: &str,
        path: &str,
    ) -> Result<BoxedStream<FlightData>, BallistaError> {
        let job_id = JobId::parse(job_id)?;
        if !self.published.contains(&job_id, path) {
            return Err(BallistaError::PermissionDenied(format!(
                "ticket path \"{}\" is not an object committed by this executor for job {job_id}",
                crate::util::loggable(path)
            )));
        }
        let location = ShuffleLocation {
            job_id,
            stage_id: StageId(0),
            map_partition: 0,
            output_partition: 0,
            attempt: 0,
            executor: self.executor.clone(),
            path: path.to_string(),
            stats: PartitionStats::default(),
            durable: true,
            ticket: Vec::new(),
        };
        let ctx = ShuffleReadContext {
            schema: Arc::new(arrow::datatypes::Schema::empty()),
            local_executor: Some(self.executor.id.clone()),
            work_dir: Some(self.work_dir.clone()),
            flight: FlightClientPool::default(),
            object_stores: Arc::clone(&self.object_stores),
            memory_tier: None,
        };
        let bytes = self
            .shuffle_reader
            .open_ipc_bytes(&location, &ctx)
            .await?
            .ok_or_else(|| {
                BallistaError::PermissionDenied(format!(
                    "ticket path \"{}\" is a URL, but the executor's shuffle ({}) keeps no data in object storage",
                    crate::util::loggable(path),
                    self.shuffle_reader.name()
                ))
            })?;
        Ok(Box::pin(
            ipc_flight_data(ChunkReader::new(bytes)).map_err(Status::from),
        ))
    }
}

/// The Flight messages of record batches held in memory: the schema, then
/// each batch after the dictionaries it uses, encoded one batch at a time as
/// the client reads (the same IPC encoding as the shuffle files, without
/// compression: a fast network gains little from it, and the CPU is better
/// spent on the query).
fn batches_flight_data(batches: Arc<[RecordBatch]>) -> BoxedStream<FlightData> {
    let options = IpcWriteOptions::default();
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .unwrap_or_else(|| Arc::new(arrow::datatypes::Schema::empty()));
    // The schema is encoded with the tracker the batches use: it assigns
    // the dictionary ids their dictionaries are sent under.
    let mut tracker = DictionaryTracker::new(false);
    let schema_message = FlightData::from(
        IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
            &schema,
            &mut tracker,
            &options,
        ),
    );
    let state = (tracker, IpcWriteContext::default());
    let encoded = futures::stream::iter(0..batches.len())
        .scan(state, move |(tracker, context), i| {
            let messages = IpcDataGenerator::default()
                .encode(&batches[i], tracker, &options, context)
                .map(|(dictionaries, batch)| {
                    dictionaries
                        .into_iter()
                        .chain(std::iter::once(batch))
                        .map(|data| Ok(FlightData::from(data)))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_else(|e| {
                    vec![Err(Status::internal(format!(
                        "encoding a shuffle partition: {e}"
                    )))]
                });
            futures::future::ready(Some(futures::stream::iter(messages)))
        })
        .flatten();
    Box::pin(futures::stream::once(futures::future::ready(Ok(schema_message))).chain(encoded))
}

fn unsupported<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "{what} is not supported by Ballista executors"
    )))
}

#[tonic::async_trait]
impl FlightService for ExecutorFlightService {
    type HandshakeStream = BoxedStream<HandshakeResponse>;
    type ListFlightsStream = BoxedStream<FlightInfo>;
    type DoGetStream = BoxedStream<FlightData>;
    type DoPutStream = BoxedStream<PutResult>;
    type DoActionStream = BoxedStream<arrow_flight::Result>;
    type ListActionsStream = BoxedStream<ActionType>;
    type DoExchangeStream = BoxedStream<FlightData>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "an unknown peer".to_string(), |a| a.to_string());
        let ticket = decode_ticket(&request.into_inner().ticket)?;
        let key = self.session_key.read().clone();
        verify_ticket(key.as_ref(), self.executor.id.as_str(), &ticket).inspect_err(|e| {
            tracing::warn!("refused Flight ticket from {peer}: {e}");
        })?;
        if ticket.path.contains("://") {
            let stream = self
                .serve_stored_object(&ticket.job_id, &ticket.path)
                .await
                .inspect_err(|e| {
                    if matches!(e, BallistaError::PermissionDenied(_)) {
                        tracing::warn!("refused Flight ticket from {peer}: {e}");
                    }
                })?;
            return Ok(Response::new(stream));
        }
        // A map output held in memory is encoded as it is sent (without
        // compression: a fast network gains little from it, and the CPU is
        // better spent on the query).
        if let Ok(job_id) = JobId::parse(&ticket.job_id)
            && let Some(batches) = self.memory_tier.partition(&job_id, &ticket.path)
        {
            return Ok(Response::new(batches_flight_data(batches)));
        }
        let path = resolve_ticket_path(&self.work_dir, &ticket).inspect_err(|e| {
            if matches!(
                e,
                BallistaError::PermissionDenied(_) | BallistaError::InvalidInput(_)
            ) {
                tracing::warn!("refused Flight ticket from {peer}: {e}");
            }
        })?;
        let stream = ipc_file_flight_data(path).map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }

    /// A client that reads results from executors directly (the JDBC
    /// driver) hand-shakes with the token the scheduler gave it: the gate
    /// has checked it, and it is answered back. Logging in happens at the
    /// scheduler only.
    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        match (request.extensions().get::<Caller>(), token) {
            (Some(Caller::Client(_)), Some(token)) => crate::auth::login::token_answer(token),
            _ => Err(Status::unimplemented(
                "an executor's hand-shake only answers a client's bearer token back: log in at \
                 the scheduler",
            )),
        }
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        unsupported("list_flights")
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        unsupported("get_flight_info")
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unsupported("poll_flight_info")
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        unsupported("get_schema")
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        unsupported("do_put")
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unsupported("do_exchange")
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        unsupported("do_action")
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        unsupported("list_actions")
    }
}
