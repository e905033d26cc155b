//! The login: the Arrow Flight handshake on the scheduler's port, which
//! Flight SQL, ADBC and JDBC clients (and our own) make. The client sends
//! `authorization: Basic base64(user:password)` (or a `BasicAuth` message
//! as the handshake payload); the answer carries a bearer token in the
//! `authorization` response header and as the payload. A client that
//! already holds a token (the JDBC driver's `token=` option) may hand-shake
//! with `authorization: Bearer …`: a valid token is answered back.

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::{BasicAuth, HandshakeRequest, HandshakeResponse};
use base64::Engine;
use futures::{Stream, StreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::crypto::SecretKey;
use super::token::{TOKEN_KEY_PURPOSE, mint_token, verify_token};
use crate::error::BallistaError;
use crate::plugin::auth::Authenticator;

type BoxedStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Longest user name or password a login accepts.
const MAX_CREDENTIAL_BYTES: usize = 1024;

/// Issues bearer tokens to users the authenticator accepts.
#[derive(Debug)]
pub(crate) struct Login {
    tokens: SecretKey,
    authenticator: Arc<dyn Authenticator>,
    token_ttl_secs: u64,
}

impl Login {
    /// A login issuing tokens valid `token_ttl_secs`, for users
    /// `authenticator` accepts.
    pub(crate) fn new(
        cluster: &SecretKey,
        authenticator: Arc<dyn Authenticator>,
        token_ttl_secs: u64,
    ) -> Self {
        Self {
            tokens: cluster.derive(TOKEN_KEY_PURPOSE),
            authenticator,
            token_ttl_secs,
        }
    }
}

/// User and password from `authorization: Basic …`.
fn basic_credentials(header: &str) -> Result<(String, String), BallistaError> {
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))
        .ok_or_else(|| {
            BallistaError::Unauthenticated(
                "the login expects `authorization: Basic base64(user:password)`".into(),
            )
        })?;
    let malformed = || {
        BallistaError::Unauthenticated(
            "the Basic credentials are not base64 of user:password".into(),
        )
    };
    // Go's Flight client (under the ADBC drivers) leaves the padding out.
    let padding_optional = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = padding_optional
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (user, password) = text.split_once(':').ok_or_else(malformed)?;
    Ok((user.to_string(), password.to_string()))
}

impl Login {
    /// A hand-shake with `authorization: Bearer …`: the token answered back
    /// when it is this cluster's, unexpired, and its user still exists.
    async fn renew_handshake(&self, token: &str) -> Result<String, Status> {
        let user = verify_token(&self.tokens, token.trim())?;
        self.authenticator.identity(&user).await?;
        Ok(token.trim().to_string())
    }
}

/// A hand-shake answer carrying `token` in the payload and the
/// `authorization` header.
pub(crate) fn token_answer(
    token: String,
) -> Result<Response<BoxedStream<HandshakeResponse>>, Status> {
    let bearer = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| BallistaError::Internal("the token is not a valid header".into()))?;
    let answer = HandshakeResponse {
        protocol_version: 0,
        payload: token.into_bytes().into(),
    };
    let mut response = Response::new(
        Box::pin(futures::stream::iter([Ok(answer)])) as BoxedStream<HandshakeResponse>
    );
    response.metadata_mut().insert("authorization", bearer);
    Ok(response)
}

impl Login {
    /// Answers a Flight hand-shake: a token for a user name and password,
    /// or a valid bearer token answered back.
    pub(crate) async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<BoxedStream<HandshakeResponse>>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let Some(token) = header.as_deref().and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        }) {
            return token_answer(self.renew_handshake(token).await?);
        }
        let (user, password) = match header {
            Some(header) => basic_credentials(&header)?,
            None => {
                let mut messages = request.into_inner();
                let first = messages.next().await.transpose()?.ok_or_else(|| {
                    BallistaError::Unauthenticated("the login sent no credentials".into())
                })?;
                let auth = BasicAuth::decode(first.payload.as_ref()).map_err(|_| {
                    BallistaError::Unauthenticated(
                        "the login expects `authorization: Basic …` or a BasicAuth payload".into(),
                    )
                })?;
                (auth.username, auth.password)
            }
        };
        let (token, _) = self.log_in(&user, &password).await?;
        token_answer(token)
    }

    /// Checks a user name and password; a token for the user, and who
    /// they are.
    pub(crate) async fn log_in(
        &self,
        user: &str,
        password: &str,
    ) -> Result<(String, crate::plugin::auth::Identity), BallistaError> {
        if user.is_empty()
            || user.len() > MAX_CREDENTIAL_BYTES
            || password.len() > MAX_CREDENTIAL_BYTES
        {
            return Err(BallistaError::Unauthenticated(
                "wrong user name or password".into(),
            ));
        }
        let identity = self
            .authenticator
            .authenticate_password(user, password)
            .await
            .inspect_err(|_| {
                tracing::info!("login refused for user {}", crate::util::loggable(user));
            })?;
        let token = mint_token(&self.tokens, &identity.user, self.token_ttl_secs);
        tracing::info!("user {} logged in", identity.user);
        Ok((token, identity))
    }

    /// Like [`log_in`](Self::log_in), from `authorization: Basic …`.
    pub(crate) async fn log_in_basic(
        &self,
        header: &str,
    ) -> Result<(String, crate::plugin::auth::Identity), BallistaError> {
        let (user, password) = basic_credentials(header)?;
        self.log_in(&user, &password).await
    }

    /// How long the tokens it issues stay valid.
    pub(crate) fn token_ttl_secs(&self) -> u64 {
        self.token_ttl_secs
    }
}

/// Logs in to the scheduler at `url` with a user name and password; the
/// bearer token it issues.
pub async fn log_in(
    channel: tonic::transport::Channel,
    user: &str,
    password: &str,
) -> crate::error::Result<String> {
    let mut client = arrow_flight::flight_service_client::FlightServiceClient::new(channel);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut request = Request::new(futures::stream::iter([HandshakeRequest::default()]));
    let header = MetadataValue::try_from(format!("Basic {basic}")).map_err(|_| {
        BallistaError::InvalidInput("the user name or password cannot be sent as a header".into())
    })?;
    request.metadata_mut().insert("authorization", header);
    let response = client
        .handshake(request)
        .await
        .map_err(BallistaError::from)?;
    let from_header = response
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    if let Some(token) = from_header {
        return Ok(token);
    }
    let mut answers = response.into_inner();
    let answer = answers
        .next()
        .await
        .transpose()
        .map_err(BallistaError::from)?
        .ok_or_else(|| BallistaError::Unauthenticated("the login answered no token".into()))?;
    String::from_utf8(answer.payload.to_vec()).map_err(|_| {
        BallistaError::Unauthenticated("the login answered a token that is not text".into())
    })
}
