//! The scheduler's Arrow Flight service, for now only its login: the Flight
//! handshake that Flight SQL, ADBC and JDBC clients make. The client sends
//! `authorization: Basic base64(user:password)` (or a `BasicAuth` message as
//! the handshake payload); the answer carries a bearer token in the
//! `authorization` response header and as the payload.

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, BasicAuth, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use base64::Engine;
use futures::{Stream, StreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::crypto::SecretKey;
use super::token::{TOKEN_KEY_PURPOSE, mint_token};
use crate::error::BallistaError;
use crate::plugin::auth::Authenticator;

type BoxedStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Longest user name or password a login accepts.
const MAX_CREDENTIAL_BYTES: usize = 1024;

/// The scheduler's Flight service.
#[derive(Debug)]
pub struct SchedulerFlightService {
    tokens: SecretKey,
    authenticator: Arc<dyn Authenticator>,
    token_ttl_secs: u64,
}

impl SchedulerFlightService {
    /// A login issuing tokens valid `token_ttl_secs`, for users
    /// `authenticator` accepts.
    pub fn new(
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
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (user, password) = text.split_once(':').ok_or_else(malformed)?;
    Ok((user.to_string(), password.to_string()))
}

fn unsupported<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "{what} is not served by the Ballista scheduler (only the Flight handshake, to log in)"
    )))
}

#[tonic::async_trait]
impl FlightService for SchedulerFlightService {
    type HandshakeStream = BoxedStream<HandshakeResponse>;
    type ListFlightsStream = BoxedStream<FlightInfo>;
    type DoGetStream = BoxedStream<FlightData>;
    type DoPutStream = BoxedStream<PutResult>;
    type DoActionStream = BoxedStream<arrow_flight::Result>;
    type ListActionsStream = BoxedStream<ActionType>;
    type DoExchangeStream = BoxedStream<FlightData>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
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
        if user.is_empty()
            || user.len() > MAX_CREDENTIAL_BYTES
            || password.len() > MAX_CREDENTIAL_BYTES
        {
            return Err(
                BallistaError::Unauthenticated("wrong user name or password".into()).into(),
            );
        }
        let identity = self
            .authenticator
            .authenticate_password(&user, &password)
            .await
            .inspect_err(|_| {
                tracing::info!("login refused for user {}", crate::util::loggable(&user));
            })?;
        let token = mint_token(&self.tokens, &identity.user, self.token_ttl_secs);
        tracing::info!("user {} logged in", identity.user);
        let bearer = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| BallistaError::Internal("the token is not a valid header".into()))?;
        let answer = HandshakeResponse {
            protocol_version: 0,
            payload: token.into_bytes().into(),
        };
        let mut response =
            Response::new(Box::pin(futures::stream::iter([Ok(answer)])) as Self::HandshakeStream);
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        unsupported("list_flights")
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        unsupported("get_flight_info")
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unsupported("poll_flight_info")
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        unsupported("get_schema")
    }

    async fn do_get(
        &self,
        _request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        unsupported("do_get")
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        unsupported("do_put")
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unsupported("do_exchange")
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        unsupported("do_action")
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        unsupported("list_actions")
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
