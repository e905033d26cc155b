//! Ballista's typed error, and how it keeps its kind across the wire.
//!
//! Every error that crosses a process boundary travels as a
//! [`proto::ErrorInfo`]: a kind plus a message (plus
//! the fetch-failure details when relevant). On the receiving side it is turned
//! back into the same [`BallistaError`] variant, so a fetch failure reported by
//! an executor reaches the scheduler as [`BallistaError::FetchFailed`], and a
//! cancelled job reaches the client as [`BallistaError::Cancelled`], never as
//! a bare string.
//!
//! A failure that is a DataFusion error (a division by zero on an executor)
//! reaches the client as that same `DataFusionError`, variant and text, as
//! single-process DataFusion would raise it; Ballista's own failures (a lost
//! executor, a cancelled job) reach it wrapped in `DataFusionError::External`.
//! [`BallistaError::from_datafusion`] gives the typed error of either.
//!
//! Messages leaving a process never name source files of the machine that
//! built it (see [`scrub_source_paths`]).

mod remote;
mod scrub;

use std::error::Error as StdError;

use datafusion::error::DataFusionError;
use prost::Message;

pub use scrub::scrub_source_paths;

use crate::proto;

/// Result type used throughout the framework.
pub type Result<T, E = BallistaError> = std::result::Result<T, E>;

/// What went wrong, by kind. Variants map one to one onto
/// [`proto::ErrorKind`].
#[derive(Debug, thiserror::Error)]
pub enum BallistaError {
    /// The request itself is wrong: SQL that does not parse, a malformed
    /// ticket, an invalid id.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The query could not be planned: unknown table or column, type errors.
    #[error("planning failed: {0}")]
    Plan(String),
    /// A task failed while executing its plan.
    #[error("execution failed: {0}")]
    Execution(String),
    /// Reading or writing data failed.
    #[error("I/O error: {0}")]
    Io(String),
    /// A consumer could not read a map task's output.
    #[error(
        "fetch failed for stage {map_stage_id} map partition {map_partition} on executor {executor_id}: {message}"
    )]
    FetchFailed {
        /// Executor that held (or was supposed to hold) the data.
        executor_id: String,
        /// Stage whose output could not be read.
        map_stage_id: u32,
        /// Map task whose output could not be read.
        map_partition: u32,
        /// What the reader saw.
        message: String,
    },
    /// An executor stopped responding or went away while it held work.
    #[error("executor {executor_id} lost: {message}")]
    ExecutorLost {
        /// The lost executor.
        executor_id: String,
        /// Why it is considered lost.
        message: String,
    },
    /// The job or task was cancelled.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// A memory (or other resource) limit was hit.
    #[error("resources exhausted: {0}")]
    ResourcesExhausted(String),
    /// A file, table, job or object does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Configuration is invalid.
    #[error("configuration error: {0}")]
    Configuration(String),
    /// The operation is not supported in distributed mode.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// An operation took longer than its bound.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A service (scheduler, executor, store) could not be reached.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Access was refused: the caller is known but may not do this (another
    /// user's job, a path outside the work directory).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The caller could not be identified: no credentials, a wrong
    /// password, an expired or forged token.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A bug or an unexpected state.
    #[error("internal error: {0}")]
    Internal(String),
    /// An error raised by DataFusion in this process; its kind is derived from
    /// its content when it is sent over the wire.
    #[error(transparent)]
    DataFusion(DataFusionError),
}

impl From<DataFusionError> for BallistaError {
    /// A Ballista error that travelled through DataFusion as `External`
    /// comes back out as itself rather than wrapped a second time.
    fn from(error: DataFusionError) -> Self {
        match error {
            DataFusionError::External(inner) if inner.is::<BallistaError>() => {
                match inner.downcast::<BallistaError>() {
                    Ok(ballista) => *ballista,
                    Err(other) => BallistaError::DataFusion(DataFusionError::External(other)),
                }
            }
            other => BallistaError::DataFusion(other),
        }
    }
}

impl BallistaError {
    /// The kind of this error, as sent over the wire.
    pub fn kind(&self) -> proto::ErrorKind {
        use proto::ErrorKind as K;
        match self {
            BallistaError::InvalidInput(_) => K::InvalidInput,
            BallistaError::Plan(_) => K::Plan,
            BallistaError::Execution(_) => K::Execution,
            BallistaError::Io(_) => K::Io,
            BallistaError::FetchFailed { .. } => K::FetchFailed,
            BallistaError::ExecutorLost { .. } => K::ExecutorLost,
            BallistaError::Cancelled(_) => K::Cancelled,
            BallistaError::ResourcesExhausted(_) => K::ResourcesExhausted,
            BallistaError::NotFound(_) => K::NotFound,
            BallistaError::Configuration(_) => K::Configuration,
            BallistaError::NotSupported(_) => K::NotSupported,
            BallistaError::Timeout(_) => K::Timeout,
            BallistaError::Unavailable(_) => K::Unavailable,
            BallistaError::PermissionDenied(_) => K::PermissionDenied,
            BallistaError::Unauthenticated(_) => K::Unauthenticated,
            BallistaError::Internal(_) => K::Internal,
            BallistaError::DataFusion(e) => classify_datafusion(e),
        }
    }

    /// The message without the kind prefix.
    pub fn message(&self) -> String {
        match self {
            BallistaError::InvalidInput(m)
            | BallistaError::Plan(m)
            | BallistaError::Execution(m)
            | BallistaError::Io(m)
            | BallistaError::Cancelled(m)
            | BallistaError::ResourcesExhausted(m)
            | BallistaError::NotFound(m)
            | BallistaError::Configuration(m)
            | BallistaError::NotSupported(m)
            | BallistaError::Timeout(m)
            | BallistaError::Unavailable(m)
            | BallistaError::PermissionDenied(m)
            | BallistaError::Unauthenticated(m)
            | BallistaError::Internal(m) => m.clone(),
            BallistaError::FetchFailed { message, .. }
            | BallistaError::ExecutorLost { message, .. } => message.clone(),
            BallistaError::DataFusion(e) => match e {
                // These carry their meaning in the chain: keep all of it.
                DataFusionError::Context(..)
                | DataFusionError::External(_)
                | DataFusionError::Shared(_)
                | DataFusionError::Diagnostic(..)
                | DataFusionError::Collection(_) => e.strip_backtrace(),
                // sqlparser's own text ("sql parser error: Expected: …"):
                // DataFusion shows the Rust form (`ParserError("…")`).
                DataFusionError::SQL(parse, _) => parse.to_string(),
                // The kind travels separately; drop DataFusion's own prefix
                // ("Error during planning: ") so it is not said twice.
                other => other.message().into_owned(),
            },
        }
    }

    /// Whether running the same task again may succeed. Deterministic failures
    /// (bad SQL, a missing file, a memory quota) are not retried.
    pub fn is_retryable(&self) -> bool {
        use proto::ErrorKind as K;
        matches!(
            self.kind(),
            K::Io | K::FetchFailed | K::ExecutorLost | K::Unavailable | K::Timeout
        )
    }

    /// Encodes the error for the wire.
    pub fn to_proto(&self) -> proto::ErrorInfo {
        let datafusion = match self {
            BallistaError::DataFusion(e) if find_ballista_error(e).is_none() => remote::to_wire(e),
            _ => None,
        };
        let mut info = proto::ErrorInfo {
            kind: self.kind() as i32,
            message: scrub_source_paths(&self.message()).into_owned(),
            fetch_failure: None,
            executor_id: String::new(),
            datafusion,
        };
        match self {
            BallistaError::FetchFailed {
                executor_id,
                map_stage_id,
                map_partition,
                ..
            } => {
                info.fetch_failure = Some(proto::FetchFailure {
                    executor_id: executor_id.clone(),
                    map_stage_id: *map_stage_id,
                    map_partition: *map_partition,
                });
            }
            BallistaError::ExecutorLost { executor_id, .. } => {
                info.executor_id = executor_id.clone();
            }
            _ => {}
        }
        info
    }

    /// Decodes an error received from the wire: the DataFusion error it
    /// started as when it was one, otherwise the matching typed variant.
    pub fn from_proto(info: &proto::ErrorInfo) -> Self {
        if let Some(datafusion) = &info.datafusion {
            let io_kind = match proto::ErrorKind::try_from(info.kind) {
                Ok(proto::ErrorKind::NotFound) => std::io::ErrorKind::NotFound,
                Ok(proto::ErrorKind::PermissionDenied) => std::io::ErrorKind::PermissionDenied,
                _ => std::io::ErrorKind::Other,
            };
            if let Some(error) = remote::from_wire(datafusion, io_kind) {
                let rebuilt = BallistaError::DataFusion(error);
                // The kind decides retries: keep the sender's.
                if rebuilt.kind() as i32 == info.kind {
                    return rebuilt;
                }
            }
        }
        Self::typed_from_proto(info)
    }

    /// The typed variant of `info`'s kind, whatever error it started as.
    fn typed_from_proto(info: &proto::ErrorInfo) -> Self {
        use proto::ErrorKind as K;
        let message = info.message.clone();
        match proto::ErrorKind::try_from(info.kind).unwrap_or(K::Unspecified) {
            K::InvalidInput => BallistaError::InvalidInput(message),
            K::Plan => BallistaError::Plan(message),
            K::Execution => BallistaError::Execution(message),
            K::Io => BallistaError::Io(message),
            K::FetchFailed => {
                let failure = info.fetch_failure.clone().unwrap_or_default();
                BallistaError::FetchFailed {
                    executor_id: failure.executor_id,
                    map_stage_id: failure.map_stage_id,
                    map_partition: failure.map_partition,
                    message,
                }
            }
            K::ExecutorLost => BallistaError::ExecutorLost {
                executor_id: info.executor_id.clone(),
                message,
            },
            K::Cancelled => BallistaError::Cancelled(message),
            K::ResourcesExhausted => BallistaError::ResourcesExhausted(message),
            K::NotFound => BallistaError::NotFound(message),
            K::Configuration => BallistaError::Configuration(message),
            K::NotSupported => BallistaError::NotSupported(message),
            K::Timeout => BallistaError::Timeout(message),
            K::Unavailable => BallistaError::Unavailable(message),
            K::PermissionDenied => BallistaError::PermissionDenied(message),
            K::Unauthenticated => BallistaError::Unauthenticated(message),
            K::Internal | K::Unspecified => BallistaError::Internal(message),
        }
    }

    /// Re-types a DataFusion error: a `BallistaError` travelling inside a
    /// `DataFusionError` (as `External`, possibly under context) comes back
    /// out with its kind; anything else is classified by content.
    pub fn from_datafusion(error: DataFusionError) -> Self {
        if let Some(inner) = find_ballista_error(&error) {
            // Rebuild the typed variant; the original is borrowed from the chain.
            return BallistaError::typed_from_proto(&inner.to_proto());
        }
        BallistaError::DataFusion(error)
    }

    /// Normalises the error so that its variant is its kind: a wrapped
    /// DataFusion error becomes the typed variant it classifies as.
    pub fn typed(self) -> Self {
        match self {
            BallistaError::DataFusion(e) => {
                let typed = BallistaError::from_datafusion(e);
                BallistaError::typed_from_proto(&typed.to_proto())
            }
            other => other,
        }
    }
}

fn find_ballista_error(error: &DataFusionError) -> Option<&BallistaError> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(b) = e.downcast_ref::<BallistaError>() {
            return match b {
                BallistaError::DataFusion(inner) => find_ballista_error(inner),
                other => Some(other),
            };
        }
        current = e.source();
    }
    None
}

/// Classifies a DataFusion error by walking its source chain.
fn classify_datafusion(error: &DataFusionError) -> proto::ErrorKind {
    use proto::ErrorKind as K;
    if let Some(b) = find_ballista_error(error) {
        return b.kind();
    }
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    let mut kind = K::Execution;
    while let Some(e) = current {
        if let Some(df) = e.downcast_ref::<DataFusionError>() {
            kind = match df {
                DataFusionError::SQL(..) => return K::InvalidInput,
                DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => K::Plan,
                DataFusionError::NotImplemented(_) => K::NotSupported,
                DataFusionError::ResourcesExhausted(_) => return K::ResourcesExhausted,
                DataFusionError::Configuration(_) => K::Configuration,
                DataFusionError::Internal(_) => K::Internal,
                DataFusionError::IoError(_) | DataFusionError::ParquetError(_) => K::Io,
                DataFusionError::Collection(errors) => {
                    return errors.first().map_or(K::Execution, classify_datafusion);
                }
                _ => kind,
            };
        } else if let Some(os) = e.downcast_ref::<object_store::Error>() {
            return match os {
                object_store::Error::NotFound { .. } => K::NotFound,
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. } => K::PermissionDenied,
                _ => K::Io,
            };
        } else if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::NotFound => K::NotFound,
                std::io::ErrorKind::PermissionDenied => K::PermissionDenied,
                _ => K::Io,
            };
        }
        current = e.source();
    }
    kind
}

impl From<BallistaError> for DataFusionError {
    fn from(error: BallistaError) -> Self {
        match error {
            BallistaError::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

impl From<arrow::error::ArrowError> for BallistaError {
    fn from(error: arrow::error::ArrowError) -> Self {
        BallistaError::DataFusion(DataFusionError::from(error))
    }
}

impl From<std::io::Error> for BallistaError {
    fn from(error: std::io::Error) -> Self {
        match error.kind() {
            std::io::ErrorKind::NotFound => BallistaError::NotFound(error.to_string()),
            std::io::ErrorKind::PermissionDenied => {
                BallistaError::PermissionDenied(error.to_string())
            }
            _ => BallistaError::Io(error.to_string()),
        }
    }
}

impl From<object_store::Error> for BallistaError {
    fn from(error: object_store::Error) -> Self {
        BallistaError::DataFusion(DataFusionError::ObjectStore(Box::new(error)))
    }
}

impl From<prost::DecodeError> for BallistaError {
    fn from(error: prost::DecodeError) -> Self {
        BallistaError::InvalidInput(format!("malformed protobuf message: {error}"))
    }
}

/// gRPC status code matching each error kind.
fn status_code(kind: proto::ErrorKind) -> tonic::Code {
    use proto::ErrorKind as K;
    use tonic::Code;
    match kind {
        K::InvalidInput | K::Plan => Code::InvalidArgument,
        K::NotFound => Code::NotFound,
        K::Cancelled => Code::Cancelled,
        K::ResourcesExhausted => Code::ResourceExhausted,
        K::NotSupported => Code::Unimplemented,
        K::Timeout => Code::DeadlineExceeded,
        K::Unavailable | K::ExecutorLost => Code::Unavailable,
        K::PermissionDenied => Code::PermissionDenied,
        K::Unauthenticated => Code::Unauthenticated,
        K::Configuration => Code::FailedPrecondition,
        K::FetchFailed | K::Io | K::Execution => Code::Aborted,
        K::Internal | K::Unspecified => Code::Internal,
    }
}

/// `google.rpc.Status`: what gRPC's `grpc-status-details-bin` trailer
/// holds. Other gRPC clients (Go's, under the ADBC drivers) read it and
/// check its code against the call's, so our `ErrorInfo` travels inside it
/// as a detail rather than in its place.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<RpcAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// Type URL of our `ErrorInfo` among a status's details.
const ERROR_INFO_TYPE_URL: &str = "type.googleapis.com/ballista.ErrorInfo";

/// The `grpc-status-details-bin` bytes of a status of `code` and
/// `message` carrying `info`. The message is repeated there because clients
/// that decode the details (Go's) show its message, not the status's.
pub fn status_details(code: tonic::Code, message: &str, info: &proto::ErrorInfo) -> Vec<u8> {
    RpcStatus {
        code: code as i32,
        message: message.to_string(),
        details: vec![RpcAny {
            type_url: ERROR_INFO_TYPE_URL.to_string(),
            value: info.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

/// The `ErrorInfo` a status's details carry, if they are a
/// `google.rpc.Status` holding one.
pub fn error_info_of_details(details: &[u8]) -> Option<proto::ErrorInfo> {
    let status = RpcStatus::decode(details).ok()?;
    let detail = status
        .details
        .iter()
        .find(|d| d.type_url == ERROR_INFO_TYPE_URL)?;
    proto::ErrorInfo::decode(detail.value.as_slice()).ok()
}

impl From<BallistaError> for tonic::Status {
    fn from(error: BallistaError) -> Self {
        let info = error.to_proto();
        let code = status_code(error.kind());
        let message = scrub_source_paths(&error.to_string()).into_owned();
        let details = status_details(code, &message, &info);
        tonic::Status::with_details(code, message, details.into())
    }
}

impl From<tonic::Status> for BallistaError {
    /// A status produced by a Ballista service carries its `ErrorInfo` in the
    /// details and keeps its kind; any other status is classified by code.
    fn from(status: tonic::Status) -> Self {
        if let Some(info) = error_info_of_details(status.details())
            && info.kind != proto::ErrorKind::Unspecified as i32
        {
            return BallistaError::from_proto(&info);
        }
        let message = status.message().to_string();
        if answered_in_plain_http(&message) {
            return BallistaError::InvalidInput(format!(
                "the server does not speak gRPC (it answered with a plain HTTP response: \
                 {message}); is the URL the HTTP port of a scheduler or executor (web UI, REST, \
                 metrics; scheduler default 50080) instead of its gRPC port (scheduler default \
                 50050)?"
            ));
        }
        use tonic::Code;
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange => BallistaError::InvalidInput(message),
            Code::NotFound => BallistaError::NotFound(message),
            Code::Cancelled => BallistaError::Cancelled(message),
            Code::ResourceExhausted => BallistaError::ResourcesExhausted(message),
            Code::Unimplemented => BallistaError::NotSupported(message),
            Code::DeadlineExceeded => BallistaError::Timeout(message),
            Code::Unavailable => BallistaError::Unavailable(message),
            Code::PermissionDenied => BallistaError::PermissionDenied(message),
            Code::Unauthenticated => BallistaError::Unauthenticated(message),
            Code::FailedPrecondition => BallistaError::Configuration(message),
            Code::Aborted => BallistaError::Execution(message),
            _ => BallistaError::Internal(format!("{}: {message}", status.code())),
        }
    }
}

/// Whether a status is tonic's reading of a plain HTTP answer (a web
/// page, a REST error) where a gRPC response was expected: the first body
/// byte (`{`, `<`) is taken for a gRPC frame's compression flag.
fn answered_in_plain_http(message: &str) -> bool {
    message.contains("invalid compression flag")
        && message.contains("while receiving response with status")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_http_answer_names_the_grpc_port() {
        let status = tonic::Status::internal(
            "protocol error: received message with invalid compression flag: 123 (valid flags \
             are 0 and 1) while receiving response with status: 404 Not Found",
        );
        let error = BallistaError::from(status);
        assert!(matches!(error, BallistaError::InvalidInput(_)), "{error:?}");
        let text = error.to_string();
        assert!(
            text.contains("does not speak gRPC")
                && text.contains("gRPC port (scheduler default 50050)"),
            "{text}"
        );
        let other = BallistaError::from(tonic::Status::internal("protocol error: stream reset"));
        assert!(matches!(other, BallistaError::Internal(_)), "{other:?}");
    }

    #[test]
    fn fetch_failure_round_trips_with_its_kind() {
        let original = BallistaError::FetchFailed {
            executor_id: "exec-1".into(),
            map_stage_id: 3,
            map_partition: 7,
            message: "connection refused".into(),
        };
        let wire = original.to_proto().encode_to_vec();
        let back = BallistaError::from_proto(&proto::ErrorInfo::decode(&wire[..]).unwrap());
        match back {
            BallistaError::FetchFailed {
                executor_id,
                map_stage_id,
                map_partition,
                message,
            } => {
                assert_eq!(executor_id, "exec-1");
                assert_eq!((map_stage_id, map_partition), (3, 7));
                assert_eq!(message, "connection refused");
            }
            other => panic!("expected FetchFailed, got {other:?}"),
        }
    }

    #[test]
    fn kind_survives_a_grpc_status() {
        let status: tonic::Status = BallistaError::Cancelled("job abc".into()).into();
        assert_eq!(status.code(), tonic::Code::Cancelled);
        let back = BallistaError::from(status);
        assert!(matches!(back, BallistaError::Cancelled(m) if m == "job abc"));
    }

    #[test]
    fn ballista_error_inside_datafusion_error_keeps_its_kind() {
        let inner = BallistaError::ExecutorLost {
            executor_id: "e".into(),
            message: "heartbeat timeout".into(),
        };
        let wrapped = DataFusionError::from(inner).context("while reading");
        let typed = BallistaError::from_datafusion(wrapped);
        assert!(
            matches!(typed, BallistaError::ExecutorLost { .. }),
            "{typed:?}"
        );
    }

    #[test]
    fn datafusion_errors_are_classified() {
        let parse = DataFusionError::SQL(
            Box::new(datafusion::sql::sqlparser::parser::ParserError::ParserError("bad".into())),
            None,
        );
        let parse = BallistaError::from(parse);
        assert_eq!(parse.kind(), proto::ErrorKind::InvalidInput);
        assert_eq!(
            parse.typed().to_string(),
            "invalid input: sql parser error: bad"
        );
        let plan = DataFusionError::Plan("table 'x' not found".into());
        assert_eq!(BallistaError::from(plan).kind(), proto::ErrorKind::Plan);
        let missing = DataFusionError::ObjectStore(Box::new(object_store::Error::NotFound {
            path: "/x".into(),
            source: "gone".into(),
        }));
        assert_eq!(
            BallistaError::from(missing).kind(),
            proto::ErrorKind::NotFound
        );
        assert!(!BallistaError::Plan("x".into()).is_retryable());
        assert!(BallistaError::Io("x".into()).is_retryable());
    }
}
