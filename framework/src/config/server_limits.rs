//! Limits of one gRPC and Flight listener (`[scheduler.server]`,
//! `[executor.server]`): what a connection, a stream and a request may hold.
//!
//! A listener is reached over a network, so each limit bounds what one
//! peer can pin before it is authenticated or has done anything useful:
//! sockets, HTTP/2 streams, buffered request bytes and handler time.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ByteSize;
use super::settings::InvalidSetting;

/// Limits of one listener. Over a limit, a connection is closed, a stream
/// waits for the client's turn (HTTP/2 flow control) or a call is refused
/// with `RESOURCE_EXHAUSTED` / `DEADLINE_EXCEEDED` naming the limit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServerLimits {
    /// Connections open at once. A connection over the limit is closed as
    /// soon as it is accepted.
    pub max_connections: usize,
    /// Calls open at once on one connection (HTTP/2
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`); a well-behaved client queues the
    /// rest, a misbehaving one has them reset.
    pub max_streams_per_connection: u32,
    /// A new connection must send the HTTP/2 preface within this many
    /// seconds, or it is closed.
    pub handshake_timeout_secs: u64,
    /// A call must be received in full and answered (its first response,
    /// for a stream of responses) within this many seconds. An executor's
    /// report stream (`ReportTaskStatuses`) has no deadline: it lives as
    /// long as the executor, and keepalive pings watch its connection.
    pub request_timeout_secs: u64,
    /// Seconds between HTTP/2 pings; a peer that does not answer one within
    /// as long again is disconnected, which frees its streams.
    pub keepalive_interval_secs: u64,
    /// Largest request carrying a plan: a query submitted to the scheduler,
    /// a task launched on an executor. Session tables travel in the plan,
    /// at most 64 MiB of rows per query.
    pub max_plan_message_bytes: ByteSize,
    /// Largest other request: heartbeats, status reports (each report, on
    /// an executor's report stream), registrations, job ids, Flight tickets.
    pub max_control_message_bytes: ByteSize,
    /// Bytes of requests still arriving that the listener holds at once,
    /// over all connections; a request that would go over is refused.
    pub max_pending_request_bytes: ByteSize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_streams_per_connection: 256,
            handshake_timeout_secs: 10,
            request_timeout_secs: 60,
            keepalive_interval_secs: 30,
            max_plan_message_bytes: ByteSize(256 << 20),
            max_control_message_bytes: ByteSize(16 << 20),
            max_pending_request_bytes: ByteSize(1 << 30),
        }
    }
}

impl ServerLimits {
    /// Checks every limit is usable; `section` is where they were read
    /// (`scheduler.server`), named in the error.
    pub fn validate(&self, section: &str) -> Result<(), InvalidSetting> {
        let positive = [
            ("max_connections", self.max_connections as u64),
            (
                "max_streams_per_connection",
                u64::from(self.max_streams_per_connection),
            ),
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            ("keepalive_interval_secs", self.keepalive_interval_secs),
            ("max_plan_message_bytes", self.max_plan_message_bytes.0),
            (
                "max_control_message_bytes",
                self.max_control_message_bytes.0,
            ),
            (
                "max_pending_request_bytes",
                self.max_pending_request_bytes.0,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(InvalidSetting::new(
                    format!("{section}.{key}"),
                    " = 0: expected at least 1",
                ));
            }
        }
        const MESSAGE_CEILING: u64 = 2 << 30;
        for (key, value) in [
            ("max_plan_message_bytes", self.max_plan_message_bytes),
            ("max_control_message_bytes", self.max_control_message_bytes),
        ] {
            if value.0 > MESSAGE_CEILING {
                return Err(InvalidSetting::new(
                    format!("{section}.{key}"),
                    format!(" = {value}: expected at most 2GiB (gRPC's message ceiling)"),
                ));
            }
        }
        if self.max_control_message_bytes > self.max_plan_message_bytes {
            return Err(InvalidSetting::new(
                format!("{section}.max_control_message_bytes"),
                format!(
                    " = {}: expected at most {section}.max_plan_message_bytes ({})",
                    self.max_control_message_bytes, self.max_plan_message_bytes
                ),
            ));
        }
        Ok(())
    }
}
