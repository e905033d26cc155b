//! Pooled Flight connections to executors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_flight::FlightData;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{Stream, StreamExt, TryStreamExt};
use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

use super::{CONNECTION_WINDOW_BYTES, MAX_MESSAGE_SIZE, STREAM_WINDOW_BYTES, encode_ticket};
use crate::auth::{AuthChannel, CallCredentials};
use crate::error::{BallistaError, Result};
use crate::ids::JobId;
use crate::tls::{PeerTransport, TlsTrust};

/// A gRPC endpoint configured the way Ballista talks to its peers: bounded
/// connect time, no Nagle delay, large HTTP/2 windows; over TLS, checking
/// the server against `trust`, when `url` is `https://`.
pub fn flight_endpoint(url: &str, trust: &TlsTrust) -> Result<Endpoint> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| BallistaError::InvalidInput(format!("invalid URL {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES);
    if url.starts_with("https://") {
        endpoint
            .tls_config(trust.client_config())
            .map_err(|e| BallistaError::Configuration(format!("TLS for {url}: {e}")))
    } else {
        Ok(endpoint)
    }
}

/// One lazily-connected channel per executor address, shared by all tasks of
/// a process (HTTP/2 multiplexes concurrent fetches over it).
#[derive(Debug, Clone, Default)]
pub struct FlightClientPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    credentials: CallCredentials,
    transport: PeerTransport,
}

impl FlightClientPool {
    /// A pool whose calls carry `credentials` (an executor's cluster
    /// membership, a client's token).
    pub fn with_credentials(credentials: CallCredentials) -> Self {
        Self {
            channels: Arc::default(),
            credentials,
            transport: PeerTransport::plain(),
        }
    }

    /// This pool, reaching executors over `transport` (TLS when the
    /// cluster serves it).
    pub fn over(mut self, transport: PeerTransport) -> Self {
        self.transport = transport;
        self
    }

    /// A client for the executor at `host:port`.
    pub fn client(&self, host: &str, port: u16) -> Result<FlightServiceClient<AuthChannel>> {
        let url = self.transport.url(host, port);
        let channel = {
            let mut channels = self.channels.lock();
            match channels.get(&url) {
                Some(channel) => channel.clone(),
                None => {
                    let channel = flight_endpoint(&url, &self.transport.trust())?.connect_lazy();
                    channels.insert(url, channel.clone());
                    channel
                }
            }
        };
        Ok(FlightServiceClient::new(self.credentials.wrap(channel))
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE))
    }

    /// Streams the partition file `path` of `job_id` from the executor at
    /// `host:port`, presenting `ticket` (the signed one the scheduler
    /// issued; when empty, an unsigned one naming the path, which executors
    /// refuse).
    pub async fn fetch(
        &self,
        host: &str,
        port: u16,
        job_id: &JobId,
        path: &str,
        ticket: &[u8],
        schema: SchemaRef,
    ) -> Result<SendableRecordBatchStream> {
        let mut client = self.client(host, port)?;
        let ticket = if ticket.is_empty() {
            encode_ticket(job_id, path)
        } else {
            arrow_flight::Ticket::new(ticket.to_vec())
        };
        let response = client
            .do_get(ticket)
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Unavailable | tonic::Code::Unknown => {
                    BallistaError::Unavailable(format!(
                        "cannot reach executor at {host}:{port}: {}",
                        status.message()
                    ))
                }
                _ => BallistaError::from(status),
            })?;
        let batches = flight_data_batches(
            response
                .into_inner()
                .map_err(arrow_flight::error::FlightError::from),
        )
        .map_err(DataFusionError::from);
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}

/// The record batches of a Flight stream from another process: each
/// message checked ([`check_ipc_message`](super::check_ipc_message)) before
/// arrow decodes it, and a panic in arrow's decoder turned into an error.
pub fn flight_data_batches<S>(messages: S) -> impl Stream<Item = Result<RecordBatch>> + Send
where
    S: Stream<Item = std::result::Result<FlightData, FlightError>> + Send + 'static,
{
    let checked = messages.map(|data| {
        let data = data?;
        if !data.data_header.is_empty() {
            super::check_ipc_message(&data.data_header, &data.data_body)
                .map_err(|e| FlightError::ExternalError(Box::new(e)))?;
        }
        Ok(data)
    });
    let batches = FlightRecordBatchStream::new_from_flight_data(checked).map_err(|e| match e {
        FlightError::Tonic(status) => BallistaError::from(*status),
        FlightError::ExternalError(external) => match external.downcast::<BallistaError>() {
            Ok(error) => *error,
            Err(other) => BallistaError::Io(format!("reading Flight stream: {other}")),
        },
        other => BallistaError::Io(format!("reading Flight stream: {other}")),
    });
    crate::util::DecodeGuardedStream::new(Box::pin(batches), "Flight stream")
}
