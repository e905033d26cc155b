//! The HTTP service of the scheduler and of each executor, on a port of its
//! own (`[scheduler.http]`, `[executor.http]`):
//!
//! - the scheduler serves the REST API (`/api/v1/…`, below), the web UI
//!   (`/ui/`, its assets compiled into the binary, so it works with no
//!   network beyond the scheduler), Prometheus `/metrics`, `/healthz` and
//!   `/readyz`;
//! - an executor serves `/metrics`, `/healthz` and `/readyz`.
//!
//! The scheduler's routes:
//!
//! | route | answers |
//! |---|---|
//! | `GET /healthz` | `200 ok` while the process runs |
//! | `GET /readyz` | `200 ready` while the gRPC service serves, else `503` |
//! | `GET /metrics` | Prometheus text format |
//! | `POST /api/v1/login` | `{token, user, admin, expires_in_secs}` for `authorization: Basic …` |
//! | `GET /api/v1/whoami` | `{user, admin}` |
//! | `GET /api/v1/cluster` | [`ClusterSummary`](model::ClusterSummary) |
//! | `GET /api/v1/executors` | [`ExecutorView`](model::ExecutorView)s |
//! | `GET /api/v1/jobs?state=&limit=` | [`JobSummary`](model::JobSummary)s, newest first |
//! | `GET /api/v1/jobs/{id}` | [`JobDetail`](model::JobDetail) |
//! | `GET /api/v1/jobs/{id}/stages/{stage}/tasks` | [`TaskView`](model::TaskView)s |
//! | `POST /api/v1/jobs/{id}/cancel` | `{job_id, state}` |
//!
//! The service listens on the address of the process's gRPC listener and
//! serves TLS with its certificate when that listener does.

mod auth;
mod executor_api;
mod metrics;
pub mod model;
mod scheduler_api;
mod server;
mod ui;

pub(crate) use auth::{ApiError, HttpAuth};
pub(crate) use executor_api::{ExecutorProbe, executor_router};
pub(crate) use metrics::error_kind_label;
pub use metrics::{CountFlightCalls, CountedCalls, ExecutorMetrics, SchedulerMetrics};
pub(crate) use scheduler_api::{SchedulerApi, scheduler_router};
pub use server::{HttpHandle, HttpListener};
pub(crate) use server::{bind_if_enabled, serve};

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// `/healthz`: the process runs.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// A `/metrics` answer with the text format's content type.
pub(crate) fn metrics_response(text: crate::error::Result<String>) -> Response {
    match text {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

/// A byte count as a gauge's value.
pub(crate) fn as_gauge(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}
