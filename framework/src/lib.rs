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
//! The [plugin seams](plugin) (storage, memory, scheduling policy, shuffle,
//! authentication)
//! are assembled with [`BallistaConfig::builder()`](config::BallistaConfig::builder);
//! the stock binaries do the same from a TOML file.

#![warn(missing_docs)]

pub mod auth;
pub(crate) mod catalog;
pub mod client;
pub mod config;
pub mod error;
pub mod executor;
pub mod flight;
pub(crate) mod flight_sql;
pub mod http;
pub mod ids;
pub mod listener;
pub mod plan;
pub mod plugin;
pub mod proto;
pub mod scheduler;
pub mod tables;
pub mod tls;
pub mod util;

pub use error::{BallistaError, Result};

// The libraries that appear in the framework's public API, re-exported so a
// plugin crate can depend on `ballista-framework` alone and always compile
// against exactly the versions the framework was built with. Derives in such
// crates name them with `#[serde(crate = "ballista::serde")]` and
// `#[schemars(crate = "ballista::schemars")]`.
pub use arrow;
pub use async_trait;
pub use datafusion;
pub use object_store;
pub use schemars;
pub use serde;
pub use serde_json;
pub use url;
