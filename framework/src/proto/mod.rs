//! Ballista's protobuf messages and gRPC services, generated at build time from
//! `proto/ballista.proto`, plus small conversions used on both ends.

#![allow(missing_docs)]
#![allow(clippy::all)]

tonic::include_proto!("ballista");

mod convert;

pub use convert::{decode_schema, encode_schema, key_values, key_values_to_map};
