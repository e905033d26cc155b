//! Helpers for integration tests: real scheduler and executor processes
//! started from the stock binaries, and shared TPC-H test data.

pub mod cluster;
pub mod data;

pub use ballista_bin::tpch::{bench, compare, queries};
