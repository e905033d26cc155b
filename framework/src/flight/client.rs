//! Pooled Flight connections to executors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::flight_service_client::FlightServiceClient;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::TryStreamExt;
use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

use super::{CONNECTION_WINDOW_BYTES, MAX_MESSAGE_SIZE, STREAM_WINDOW_BYTES, encode_ticket};
use crate::error::{BallistaError, Result};
use crate::ids::JobId;

/// A gRPC endpoint configured the way Ballista talks to its peers: bounded
/// connect time, no Nagle delay, large HTTP/2 windows.
pub fn flight_endpoint(url: &str) -> Result<Endpoint> {
    Ok(Endpoint::from_shared(url.to_string())
        .map_err(|e| BallistaError::InvalidInput(format!("invalid URL {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES))
}

/// One lazily-connected channel per executor address, shared by all tasks of
/// a process (HTTP/2 multiplexes concurrent fetches over it).
#[derive(Debug, Clone, Default)]
pub struct FlightClientPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl FlightClientPool {
    /// A client for the executor at `host:port`.
    pub fn client(&self, host: &str, port: u16) -> Result<FlightServiceClient<Channel>> {
        let url = format!("http://{host}:{port}");
        let channel = {
            let mut channels = self.channels.lock();
            match channels.get(&url) {
                Some(channel) => channel.clone(),
                None => {
                    let channel = flight_endpoint(&url)?.connect_lazy();
                    channels.insert(url, channel.clone());
                    channel
                }
            }
        };
        Ok(FlightServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE))
    }

    /// Streams the partition file `path` of `job_id` from the executor at
    /// `host:port`.
    pub async fn fetch(
        &self,
        host: &str,
        port: u16,
        job_id: &JobId,
        path: &str,
        schema: SchemaRef,
    ) -> Result<SendableRecordBatchStream> {
        let mut client = self.client(host, port)?;
        let response = client
            .do_get(encode_ticket(job_id, path))
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
        let batches = FlightRecordBatchStream::new_from_flight_data(
            response
                .into_inner()
                .map_err(arrow_flight::error::FlightError::from),
        )
        .map_err(|e| {
            DataFusionError::from(match e {
                arrow_flight::error::FlightError::Tonic(status) => BallistaError::from(*status),
                other => BallistaError::Io(format!("reading Flight stream: {other}")),
            })
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}
