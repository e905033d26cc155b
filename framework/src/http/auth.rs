//! Who is calling the REST API, and errors as HTTP answers.
//!
//! The API takes the credentials the gRPC services take: a bearer token
//! from a login (`POST /api/v1/login`, or the Arrow Flight handshake), a
//! token the authentication plugin accepts, the cluster key's admin
//! signature (the `ballista` CLI's), or `authorization: Basic …` on each
//! call (slow on purpose: every call checks the password hash). Cluster
//! members' credentials are refused: executors have no business here.

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::{Caller, Gate, Login};
use crate::error::BallistaError;
use crate::plugin::auth::Identity;

/// The gate path REST calls are admitted under (a client path, not a
/// member's).
const HTTP_PATH: &str = "/ballista.Http/Api";

/// Checks the credentials of REST calls.
#[derive(Debug)]
pub(crate) struct HttpAuth {
    gate: Arc<Gate>,
    login: Login,
}

impl HttpAuth {
    /// Checking credentials with `gate`, logging users in with `login`.
    pub(crate) fn new(gate: Arc<Gate>, login: Login) -> Self {
        Self { gate, login }
    }

    /// The caller of a request with `headers`.
    pub(crate) async fn identity(&self, headers: &HeaderMap) -> Result<Arc<Identity>, ApiError> {
        let header = headers
            .get(header::AUTHORIZATION)
            .map(|v| {
                v.to_str().map_err(|_| {
                    BallistaError::Unauthenticated("the authorization header is not text".into())
                })
            })
            .transpose()?;
        if let Some(basic) = header.filter(|h| h.starts_with("Basic ") || h.starts_with("basic ")) {
            let (_, identity) = self.login.log_in_basic(basic).await?;
            return Ok(Arc::new(identity));
        }
        if header.is_none() {
            return Err(BallistaError::Unauthenticated(
                "this call needs credentials: log in with POST /api/v1/login and \
                 `authorization: Basic base64(user:password)`, then send the token it answers as \
                 `authorization: Bearer <token>`"
                    .into(),
            )
            .into());
        }
        match self.gate.admit(HTTP_PATH, header).await? {
            Caller::Client(identity) => Ok(identity),
            _ => Err(BallistaError::PermissionDenied(
                "the REST API is for users; cluster members' credentials are not accepted".into(),
            )
            .into()),
        }
    }

    /// A login from `authorization: Basic …`: a token and who it is for.
    pub(crate) async fn log_in(
        &self,
        headers: &HeaderMap,
    ) -> Result<(String, Identity, u64), ApiError> {
        let header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                BallistaError::Unauthenticated(
                    "the login expects `authorization: Basic base64(user:password)`".into(),
                )
            })?;
        let (token, identity) = self.login.log_in_basic(header).await?;
        Ok((token, identity, self.login.token_ttl_secs()))
    }
}

/// A refused or failed REST call: `{"error": {"kind": …, "message": …}}`
/// with the status its kind calls for.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) BallistaError);

impl From<BallistaError> for ApiError {
    fn from(error: BallistaError) -> Self {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = self.0.typed();
        let info = error.to_proto();
        let status = match &error {
            BallistaError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            BallistaError::NotFound(_) => StatusCode::NOT_FOUND,
            BallistaError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            BallistaError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            BallistaError::ResourcesExhausted(_) => StatusCode::TOO_MANY_REQUESTS,
            BallistaError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = json!({
            "error": {
                "kind": super::metrics::error_kind_label(&info),
                "message": info.message,
            }
        });
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // Bearer, not Basic: a browser must not pop up its own password
            // dialog over the web UI's login form.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ballista\""),
            );
        }
        response
    }
}
