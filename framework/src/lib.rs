//! # Ballista
//!
//! A distributed SQL and DataFrame engine on Apache Arrow and DataFusion,
//! built as a framework of pluggable components.
//!
//! A cluster is one [scheduler] and any number of
//! [executors](executor). Clients use a DataFusion `SessionContext` created
//! with [`SessionContextExt`](client::SessionContextExt); the scheduler plans
//! each query, splits it into [stages](plan) at exchange boundaries, and
//! places tasks on executors, which exchange data through the shuffle plugin
//! over Arrow Flight.
//!
//! The [plugin seams](plugin) (storage, memory, scheduling policy, shuffle)
//! are assembled with [`BallistaConfig::builder()`](config::BallistaConfig::builder);
//! the stock binaries do the same from a TOML file.

#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod error;
pub mod executor;
pub mod flight;
pub mod ids;
pub mod plan;
pub mod plugin;
pub mod proto;
pub mod scheduler;
pub mod tables;
pub mod util;

pub use error::{BallistaError, Result};
