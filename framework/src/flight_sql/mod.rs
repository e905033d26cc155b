//! The Arrow Flight SQL front door: how ADBC drivers (Python, Go, C, R),
//! the Flight SQL JDBC driver and `pyarrow.flight` use a cluster.
//!
//! It is served on the scheduler's port, next to the scheduler's own gRPC
//! service, behind the same gate: every call but the login (the Flight
//! hand-shake, [`crate::auth::login`]) needs a bearer token or the cluster
//! key, and runs as its caller, under the caller's grants.
//!
//! - **Queries** (`CommandStatementQuery`) run as jobs of the caller,
//!   planned by the scheduler against the tables it declares. The
//!   `FlightInfo` answer comes when the job has ended; its endpoints are the
//!   job's result partitions, in order. By default each names the executor
//!   holding it and carries the ticket the scheduler signed for it, so rows
//!   stream from the executors straight to the client;
//!   `scheduler.flight_sql.results = "scheduler"` serves them through the
//!   scheduler instead ([`statements`]). A client that goes away while its
//!   query runs cancels the job. Updates (`INSERT`, `COPY`) answer the
//!   rows they wrote.
//! - **Prepared statements** ([`prepared`]) are described when prepared
//!   and planned with their bound parameters when executed.
//! - **Catalog statements** (`CREATE EXTERNAL TABLE`, `CREATE VIEW`,
//!   `CREATE SCHEMA`, `DROP TABLE|VIEW`) change the scheduler's shared
//!   catalog ([`crate::catalog`]) instead of running as jobs; queries of
//!   its `information_schema` (`SHOW TABLES`, `SHOW COLUMNS`) are answered
//!   by the scheduler itself ([`local_results`]).
//! - **Metadata** (`GetCatalogs`, `GetDbSchemas`, `GetTables`,
//!   `GetTableTypes`, `GetSqlInfo`, `GetXdbcTypeInfo`, and the key calls,
//!   which answer no keys) is answered from the scheduler's catalog
//!   ([`metadata`]).

mod local_results;
mod metadata;
mod plain_types;
mod prepared;
mod service;
mod statements;
mod wire;

pub(crate) use service::FlightSqlFrontDoor;
pub(crate) use wire::check_sql_length;
