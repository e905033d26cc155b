//! An executor's HTTP routes: `/metrics`, `/healthz` (alive) and `/readyz`
//! (registered with its scheduler and not draining: a Kubernetes rollout
//! sends no traffic to, and waits for, an executor that is leaving).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::metrics::ExecutorMetrics;
use super::{healthz, metrics_response};

/// What an executor's routes ask of it.
pub(crate) trait ExecutorProbe: Send + Sync {
    /// Whether it has registered with its scheduler.
    fn registered(&self) -> bool;
    /// Whether it drains (takes no new tasks, about to leave).
    fn draining(&self) -> bool;
    /// Sets the gauges of `metrics` that mirror its state and encodes them,
    /// one scrape at a time.
    fn scrape(&self, metrics: &ExecutorMetrics) -> crate::error::Result<String>;
}

#[derive(Clone)]
struct ExecutorApi {
    probe: Arc<dyn ExecutorProbe>,
    metrics: Arc<ExecutorMetrics>,
}

/// An executor's router.
pub(crate) fn executor_router(
    probe: Arc<dyn ExecutorProbe>,
    metrics: Arc<ExecutorMetrics>,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_route))
        .with_state(ExecutorApi { probe, metrics })
}

async fn readyz(State(api): State<ExecutorApi>) -> Response {
    if api.probe.draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else if !api.probe.registered() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not registered with the scheduler yet\n",
        )
            .into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn metrics_route(State(api): State<ExecutorApi>) -> Response {
    metrics_response(api.probe.scrape(&api.metrics))
}
