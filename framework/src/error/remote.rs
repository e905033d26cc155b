//! A DataFusion error carried across the wire whole: same variant, same text.
//!
//! An error raised by DataFusion on an executor (a division by zero, a failed
//! cast) reaches the client as the `DataFusionError` single-process DataFusion
//! would have raised for the same query, so that messages, and programs that
//! match on them, do not depend on where the query ran. Variants whose
//! contents cannot be rebuilt from text (schema errors, object store errors,
//! join errors) travel as Ballista's typed errors instead, with their kind.

use std::error::Error as StdError;

use arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::parquet::errors::ParquetError;

use super::scrub::scrub_source_paths;
use crate::proto::{self, DataFusionErrorVariant as V};

/// A standalone error whose text is exactly `message` (for DataFusion's and
/// Arrow's `External` variants).
#[derive(Debug)]
struct TextError(String);

impl std::fmt::Display for TextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for TextError {}

fn info(variant: V, message: impl Into<String>) -> proto::DataFusionErrorInfo {
    proto::DataFusionErrorInfo {
        variant: variant as i32,
        message: scrub_source_paths(&message.into()).into_owned(),
        inner: None,
    }
}

/// The wire form of `error`, when the client can rebuild it exactly.
pub(crate) fn to_wire(error: &DataFusionError) -> Option<proto::DataFusionErrorInfo> {
    let wire = encode(error)?;
    // Only what comes back the same is sent this way.
    let rebuilt = from_wire(&wire, std::io::ErrorKind::Other)?;
    (rebuilt.to_string() == scrub_source_paths(&error.strip_backtrace())).then_some(wire)
}

fn encode(error: &DataFusionError) -> Option<proto::DataFusionErrorInfo> {
    Some(match error {
        DataFusionError::Diagnostic(_, inner) => return encode(inner),
        DataFusionError::Shared(inner) => return encode(inner),
        DataFusionError::Collection(errors) => return encode(errors.first()?),
        DataFusionError::Context(description, inner) => proto::DataFusionErrorInfo {
            inner: Some(Box::new(encode(inner)?)),
            ..info(V::Context, description.clone())
        },
        DataFusionError::ArrowError(e, _) => info(V::Arrow, e.to_string()),
        DataFusionError::ParquetError(e) => info(V::Parquet, e.to_string()),
        DataFusionError::IoError(e) => info(V::Io, e.to_string()),
        DataFusionError::NotImplemented(m) => info(V::NotImplemented, m.clone()),
        DataFusionError::Internal(m) => info(V::Internal, m.clone()),
        DataFusionError::Plan(m) => info(V::Plan, m.clone()),
        DataFusionError::Configuration(m) => info(V::Configuration, m.clone()),
        DataFusionError::Execution(m) => info(V::Execution, m.clone()),
        DataFusionError::ResourcesExhausted(m) => info(V::ResourcesExhausted, m.clone()),
        DataFusionError::External(e) => info(V::External, e.to_string()),
        DataFusionError::Substrait(m) => info(V::Substrait, m.clone()),
        DataFusionError::Ffi(m) => info(V::Ffi, m.clone()),
        _ => return None,
    })
}

/// Rebuilds the error [`to_wire`] described; `io_kind` is the kind of an I/O
/// error (its text does not say).
pub(crate) fn from_wire(
    info: &proto::DataFusionErrorInfo,
    io_kind: std::io::ErrorKind,
) -> Option<DataFusionError> {
    let message = info.message.clone();
    Some(match V::try_from(info.variant).ok()? {
        V::Unspecified => return None,
        V::Arrow => DataFusionError::ArrowError(Box::new(arrow_error(&message)), None),
        V::Parquet => DataFusionError::ParquetError(Box::new(parquet_error(&message)?)),
        V::Io => DataFusionError::IoError(std::io::Error::new(io_kind, message)),
        V::NotImplemented => DataFusionError::NotImplemented(message),
        V::Internal => {
            // DataFusion appends its bug-report note when displaying.
            let note = DataFusionError::Internal(String::new())
                .message()
                .into_owned();
            let description = message.strip_suffix(&note).unwrap_or(&message).to_string();
            DataFusionError::Internal(description)
        }
        V::Plan => DataFusionError::Plan(message),
        V::Configuration => DataFusionError::Configuration(message),
        V::Execution => DataFusionError::Execution(message),
        V::ResourcesExhausted => DataFusionError::ResourcesExhausted(message),
        V::External => DataFusionError::External(Box::new(TextError(message))),
        V::Context => {
            let inner = from_wire(info.inner.as_deref()?, io_kind)?;
            DataFusionError::Context(message, Box::new(inner))
        }
        V::Substrait => DataFusionError::Substrait(message),
        V::Ffi => DataFusionError::Ffi(message),
    })
}

/// The Arrow error whose text is `text`.
fn arrow_error(text: &str) -> ArrowError {
    let with = |prefix: &str| text.strip_prefix(prefix).map(str::to_string);
    if let Some(m) = with("Not yet implemented: ") {
        ArrowError::NotYetImplemented(m)
    } else if let Some(m) = with("External error: ") {
        ArrowError::ExternalError(Box::new(TextError(m)))
    } else if let Some(m) = with("Cast error: ") {
        ArrowError::CastError(m)
    } else if let Some(m) = with("Memory error: ") {
        ArrowError::MemoryError(m)
    } else if let Some(m) = with("Parser error: ") {
        ArrowError::ParseError(m)
    } else if let Some(m) = with("Schema error: ") {
        ArrowError::SchemaError(m)
    } else if let Some(m) = with("Compute error: ") {
        ArrowError::ComputeError(m)
    } else if let Some(m) = with("Arithmetic overflow: ") {
        ArrowError::ArithmeticOverflow(m)
    } else if text == "Divide by zero error" {
        ArrowError::DivideByZero
    } else if let Some(m) = with("Avro error: ") {
        ArrowError::AvroError(m)
    } else if let Some(m) = with("Csv error: ") {
        ArrowError::CsvError(m)
    } else if let Some(m) = with("Json error: ") {
        ArrowError::JsonError(m)
    } else if let Some(m) = with("Io error: ") {
        ArrowError::IoError(m.clone(), std::io::Error::other(m))
    } else if let Some(m) = with("Ipc error: ") {
        ArrowError::IpcError(m)
    } else if let Some(m) = with("Invalid argument error: ") {
        ArrowError::InvalidArgumentError(m)
    } else if let Some(m) = with("Parquet argument error: ") {
        ArrowError::ParquetError(m)
    } else if let Some(m) = with("C Data interface error: ") {
        ArrowError::CDataInterface(m)
    } else if text == "Dictionary key bigger than the key type" {
        ArrowError::DictionaryKeyOverflowError
    } else if text == "Run end encoded array index overflow error" {
        ArrowError::RunEndIndexOverflowError
    } else if let Some(offset) =
        with("Offset overflow error: ").and_then(|m| m.parse::<usize>().ok())
    {
        ArrowError::OffsetOverflowError(offset)
    } else {
        // Not one of Arrow's texts: keep the text as it is.
        ArrowError::ExternalError(Box::new(TextError(text.to_string())))
    }
}

/// The Parquet error whose text is `text`, for the variants that are text.
fn parquet_error(text: &str) -> Option<ParquetError> {
    let with = |prefix: &str| text.strip_prefix(prefix).map(str::to_string);
    if let Some(m) = with("Parquet error: ") {
        Some(ParquetError::General(m))
    } else if let Some(m) = with("NYI: ") {
        Some(ParquetError::NYI(m))
    } else if let Some(m) = with("EOF: ") {
        Some(ParquetError::EOF(m))
    } else if let Some(m) = with("Arrow: ") {
        Some(ParquetError::ArrowError(m))
    } else {
        with("External: ").map(|m| ParquetError::External(Box::new(TextError(m))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(error: DataFusionError) {
        let wire = to_wire(&error).unwrap_or_else(|| panic!("{error} does not travel"));
        let back = from_wire(&wire, std::io::ErrorKind::Other).unwrap();
        assert_eq!(back.to_string(), error.strip_backtrace());
        assert_eq!(
            std::mem::discriminant(&back),
            std::mem::discriminant(&error),
            "{error}"
        );
    }

    #[test]
    fn datafusion_errors_come_back_the_same() {
        round_trip(DataFusionError::Execution("map key cannot be null".into()));
        round_trip(DataFusionError::Plan("no such column".into()));
        round_trip(DataFusionError::Internal("state".into()));
        round_trip(DataFusionError::NotImplemented("this".into()));
        round_trip(DataFusionError::ResourcesExhausted("memory".into()));
        round_trip(DataFusionError::Configuration("key".into()));
        round_trip(DataFusionError::from(ArrowError::DivideByZero));
        round_trip(DataFusionError::from(ArrowError::ComputeError(
            "Date arithmetic overflow".into(),
        )));
        round_trip(DataFusionError::from(ArrowError::CastError(
            "Cannot cast string 'a' to value of Int32 type".into(),
        )));
        round_trip(DataFusionError::from(ArrowError::OffsetOverflowError(7)));
        round_trip(DataFusionError::ParquetError(Box::new(
            ParquetError::General("bad page".into()),
        )));
        round_trip(DataFusionError::IoError(std::io::Error::other("disk")));
        round_trip(DataFusionError::Execution("inner".into()).context("while doing something"));
    }

    #[test]
    fn variants_that_cannot_be_rebuilt_do_not_travel_this_way() {
        let object_store = DataFusionError::ObjectStore(Box::new(object_store::Error::NotFound {
            path: "x".into(),
            source: "gone".into(),
        }));
        assert!(to_wire(&object_store).is_none());
    }
}
