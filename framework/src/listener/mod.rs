//! How the scheduler's and executors' gRPC and Flight listeners serve
//! peers they cannot trust: each listener keeps to its [`ServerLimits`].
//!
//! - **Connections** are capped ([`guarded_connections`]); one that does
//!   not finish its TLS handshake (when the listener serves TLS) and start
//!   HTTP/2, each within the handshake timeout, is closed. A plain-text
//!   caller of a TLS listener gets calls that fail saying so.
//! - **Streams** per connection are capped by HTTP/2
//!   `SETTINGS_MAX_CONCURRENT_STREAMS`, and idle connections are pinged;
//!   a peer that stops answering is disconnected.
//! - **Calls** ([`CallLimitsLayer`]) have a size limit by method, a budget
//!   of request bytes held at once over the listener, and a deadline.

mod connections;
mod plain_text_refusal;
mod request_limits;

use std::time::Duration;

use tonic::transport::Server;
use tower::layer::util::{Identity, Stack};

pub use connections::{GuardedConnection, guarded_connections};
pub use request_limits::{CallLimits, CallLimitsLayer, CallLimitsService};

use crate::config::ServerLimits;
use crate::flight::{CONNECTION_WINDOW_BYTES, STREAM_WINDOW_BYTES};

/// Largest HTTP/2 header block a peer may send (gRPC metadata).
const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// Which methods of a listener (full gRPC paths, such as
/// `/ballista.SchedulerGrpc/ExecuteQuery`) are limited unlike a control
/// call: see [`grpc_server`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MethodLimits {
    /// Calls that carry a plan: allowed `max_plan_message_bytes`.
    pub plan: &'static [&'static str],
    /// Calls answered when a job has run.
    pub job: &'static [&'static str],
    /// Long-lived streams of messages.
    pub stream: &'static [&'static str],
}

/// A gRPC server that keeps to `limits` (read from the TOML section
/// `section`, named in refusals). `methods.plan` are the full gRPC paths
/// allowed `max_plan_message_bytes`; `methods.job` are answered when a job
/// has run, so `request_timeout_secs` bounds only the arrival of their
/// request; `methods.stream` take a stream of messages for as long as the
/// peer lives, each message within the size limit. Serve it with
/// [`guarded_connections`] of the same limits.
pub fn grpc_server(
    limits: &ServerLimits,
    methods: MethodLimits,
    section: &'static str,
) -> Server<Stack<CallLimitsLayer, Identity>> {
    let keepalive = Duration::from_secs(limits.keepalive_interval_secs);
    Server::builder()
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_concurrent_streams(limits.max_streams_per_connection)
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(keepalive))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .layer(CallLimitsLayer::new(
            CallLimits::new(limits, methods.plan, section)
                .answering_after_jobs(methods.job)
                .streaming(methods.stream),
        ))
}

/// Largest message tonic itself decodes for a service under `limits`; the
/// per-method limits of [`CallLimitsLayer`] are the ones that bite.
pub fn max_decoding_message_size(limits: &ServerLimits) -> usize {
    let largest = limits
        .max_plan_message_bytes
        .0
        .max(limits.max_control_message_bytes.0);
    usize::try_from(largest).unwrap_or(usize::MAX)
}

/// The connections accepted on `listener` under `limits`, over TLS when
/// `tls` is set; `name` (such as `scheduler`) prefixes what is logged.
pub fn connections(
    listener: tokio::net::TcpListener,
    limits: &ServerLimits,
    tls: Option<std::sync::Arc<crate::tls::ServerTls>>,
    name: &'static str,
) -> impl futures::Stream<Item = std::io::Result<GuardedConnection>> + Send + 'static {
    guarded_connections(
        listener,
        limits.max_connections,
        Duration::from_secs(limits.handshake_timeout_secs),
        tls,
        name,
    )
}
