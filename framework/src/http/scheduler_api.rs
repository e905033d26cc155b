//! The scheduler's HTTP routes: the REST API (`/api/v1/…`), the web UI
//! (`/ui/`), `/metrics`, `/healthz` and `/readyz`.
//!
//! Everything under `/api/` needs credentials ([`super::auth`]); a user
//! sees and cancels their own jobs, an admin every job. The health and
//! metrics routes answer anyone: they hold counts and states, no queries,
//! data or user names.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::auth::{ApiError, HttpAuth};
use super::{healthz, metrics_response};
use crate::error::BallistaError;
use crate::ids::{JobId, StageId};
use crate::scheduler::SchedulerInner;

/// What the scheduler's routes share.
#[derive(Clone)]
pub(crate) struct SchedulerApi {
    pub(crate) inner: Arc<SchedulerInner>,
    pub(crate) auth: Arc<HttpAuth>,
    /// Set while the gRPC service accepts calls.
    pub(crate) serving: Arc<AtomicBool>,
}

/// Every state a job can be in, as the API names them.
const STATES: &[&str] = &[
    "queued",
    "planning",
    "running",
    "succeeded",
    "failed",
    "cancelled",
];

/// The states of jobs that have ended.
const TERMINAL: &[&str] = &["succeeded", "failed", "cancelled"];

/// Most jobs one list answers.
const MAX_JOBS_LISTED: usize = 10_000;

/// The scheduler's router.
pub(crate) fn scheduler_router(api: SchedulerApi) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/login", post(login))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/executors", get(executors))
        .route("/api/v1/jobs", get(jobs))
        .route("/api/v1/jobs/{job_id}", get(job))
        .route("/api/v1/jobs/{job_id}/stages/{stage_id}/tasks", get(tasks))
        .route("/api/v1/jobs/{job_id}/cancel", post(cancel))
        .merge(super::ui::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(16 * 1024))
        .with_state(api)
}

async fn readyz(State(api): State<SchedulerApi>) -> Response {
    if api.serving.load(Ordering::SeqCst) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not serving\n").into_response()
    }
}

async fn metrics(State(api): State<SchedulerApi>) -> Response {
    // Encoded under the lock: a concurrent scrape must not see the gauges
    // half set.
    let text = {
        let state = api.inner.state().lock();
        state.refresh_gauges();
        state.metrics().encode()
    };
    metrics_response(text)
}

async fn not_found() -> ApiError {
    ApiError(BallistaError::NotFound(
        "no such route (the REST API is under /api/v1/, the web UI under /ui/)".into(),
    ))
}

async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> Response {
    let body = serde_json::json!({
        "error": {
            "kind": "invalid_input",
            "message": format!(
                "{method} is not served at {} (see the README's REST API table)",
                crate::util::loggable(uri.path())
            ),
        }
    });
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

/// A state-changing call from a web page of another origin is refused: a
/// browser attaches cached credentials to such calls on its own.
fn check_same_origin(uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    // HTTP/2 names the host in the request's authority, HTTP/1.1 in `Host`.
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()))
        .unwrap_or_default();
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    if origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(BallistaError::PermissionDenied(format!(
            "a call from the web page of {} may not change this cluster",
            crate::util::loggable(origin)
        ))
        .into())
    }
}

async fn login(
    State(api): State<SchedulerApi>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_same_origin(&uri, &headers)?;
    let (token, identity, ttl) = api.auth.log_in(&headers).await?;
    Ok(Json(json!({
        "token": token,
        "user": identity.user,
        "admin": identity.admin,
        "expires_in_secs": ttl,
    }))
    .into_response())
}

async fn whoami(State(api): State<SchedulerApi>, headers: HeaderMap) -> Result<Response, ApiError> {
    let identity = api.auth.identity(&headers).await?;
    Ok(Json(json!({"user": identity.user, "admin": identity.admin})).into_response())
}

async fn cluster(
    State(api): State<SchedulerApi>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.auth.identity(&headers).await?;
    let summary = api.inner.state().lock().cluster_summary();
    Ok(Json(summary).into_response())
}

async fn executors(
    State(api): State<SchedulerApi>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.auth.identity(&headers).await?;
    let executors = api.inner.state().lock().executor_views();
    Ok(Json(executors).into_response())
}

async fn jobs(
    State(api): State<SchedulerApi>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let identity = api.auth.identity(&headers).await?;
    let limit = match query.get("limit") {
        Some(text) => text.parse::<usize>().map_err(|_| {
            BallistaError::InvalidInput(format!(
                "limit={}: expected a number of jobs",
                crate::util::loggable(text)
            ))
        })?,
        None => MAX_JOBS_LISTED,
    };
    let state = query.get("state").map(String::as_str);
    if let Some(state) = state
        && !STATES.contains(&state)
    {
        return Err(BallistaError::InvalidInput(format!(
            "state={}: expected one of {}",
            crate::util::loggable(state),
            STATES.join(", ")
        ))
        .into());
    }
    let list = api
        .inner
        .state()
        .lock()
        .job_summaries(&identity, state, limit.min(MAX_JOBS_LISTED));
    Ok(Json(list).into_response())
}

/// The job named in a path, when `identity` may see it.
fn visible_job(
    api: &SchedulerApi,
    identity: &crate::plugin::auth::Identity,
    job_id: &str,
) -> Result<JobId, ApiError> {
    let job_id = JobId::parse(job_id)?;
    api.inner.check_owner(identity, &job_id, "see it")?;
    Ok(job_id)
}

async fn job(
    State(api): State<SchedulerApi>,
    headers: HeaderMap,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let identity = api.auth.identity(&headers).await?;
    let job_id = visible_job(&api, &identity, &job_id)?;
    let detail = api.inner.state().lock().job_detail(&job_id);
    let detail = detail.ok_or_else(|| {
        BallistaError::NotFound(format!("job {job_id} is not known to this scheduler"))
    })?;
    Ok(Json(detail).into_response())
}

async fn tasks(
    State(api): State<SchedulerApi>,
    headers: HeaderMap,
    Path((job_id, stage_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let identity = api.auth.identity(&headers).await?;
    let job_id = visible_job(&api, &identity, &job_id)?;
    let stage = stage_id.parse::<u32>().map(StageId).map_err(|_| {
        BallistaError::InvalidInput(format!(
            "stage {}: expected a stage number",
            crate::util::loggable(&stage_id)
        ))
    })?;
    let tasks = api.inner.state().lock().stage_tasks(&job_id, stage);
    let tasks = tasks
        .ok_or_else(|| BallistaError::NotFound(format!("job {job_id} has no stage {}", stage.0)))?;
    Ok(Json(tasks).into_response())
}

async fn cancel(
    State(api): State<SchedulerApi>,
    uri: Uri,
    headers: HeaderMap,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    check_same_origin(&uri, &headers)?;
    let identity = api.auth.identity(&headers).await?;
    let job_id = JobId::parse(&job_id)?;
    api.inner.check_owner(&identity, &job_id, "cancel it")?;
    // A job that has ended keeps its results (cancelling over gRPC also
    // releases them; here the answer says it is too late).
    let ended = api
        .inner
        .state()
        .lock()
        .job_summaries_of(&job_id)
        .filter(|job| TERMINAL.contains(&job.state.as_str()));
    if let Some(job) = ended {
        return Err(BallistaError::InvalidInput(format!(
            "job {job_id} has already ended ({}): there is nothing to cancel",
            job.state
        ))
        .into());
    }
    api.inner.cancel_for(&identity, &job_id)?;
    tracing::info!("job {job_id}: cancel asked by {} over HTTP", identity.user);
    let state = api
        .inner
        .state()
        .lock()
        .job_summaries_of(&job_id)
        .map(|job| job.state);
    Ok(Json(json!({"job_id": job_id.to_string(), "state": state})).into_response())
}
