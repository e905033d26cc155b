//! A client of the scheduler service, with errors that say what happened.

use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;

use tonic::Streaming;

use crate::auth::{AuthChannel, CallCredentials, SecretKey};
use crate::config::{ClientSettings, Secret};
use crate::error::{BallistaError, Result};
use crate::flight::{MAX_MESSAGE_SIZE, flight_endpoint};
use crate::ids::JobId;
use crate::proto::{self, scheduler_grpc_client::SchedulerGrpcClient};
use crate::tls::{PeerTransport, TlsTrust, connection_hint, is_loopback_url};

/// How long connecting to the scheduler may take before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a client proves who it is to the cluster.
#[derive(Debug, Clone, Default)]
pub enum ClientAuth {
    /// The cluster key when this machine holds it (`BALLISTA_CLUSTER__KEY`,
    /// `BALLISTA_CLUSTER__KEY_FILE`, or the default key file): the client is
    /// the cluster administrator. Otherwise no credentials.
    #[default]
    Auto,
    /// Log in with a user name and password (Arrow Flight handshake).
    Password {
        /// User name.
        user: String,
        /// Password.
        password: Secret,
    },
    /// A bearer token obtained elsewhere.
    Token(Secret),
    /// The cluster key: act as the cluster administrator.
    ClusterKey(SecretKey),
    /// No credentials (every call but the login is refused).
    None,
}

impl ClientAuth {
    /// The credentials of the `[client]` settings: `user` (password from
    /// `password` or `BALLISTA_PASSWORD`), else `token`, else [`Auto`](Self::Auto).
    pub fn from_settings(settings: &ClientSettings) -> Result<Self> {
        if let Some(user) = settings.user.as_ref().filter(|u| !u.is_empty()) {
            let password = match &settings.password {
                Some(password) => password.clone(),
                None => Secret::new(std::env::var(PASSWORD_ENV).map_err(|_| {
                    BallistaError::Configuration(format!(
                        "no password is set for user {user}: set {PASSWORD_ENV} \
                         (or client.password)"
                    ))
                })?),
            };
            return Ok(ClientAuth::Password {
                user: user.clone(),
                password,
            });
        }
        if let Some(token) = settings.token.as_ref().filter(|t| !t.is_empty()) {
            return Ok(ClientAuth::Token(token.clone()));
        }
        Ok(ClientAuth::Auto)
    }

    /// [`from_settings`](Self::from_settings) of `settings.client`; when
    /// that names no user or token and `[cluster]` names a key (`key` or
    /// `key_file`), that key: the operator's CLI with the cluster's own
    /// configuration file is the administrator.
    pub fn from_all_settings(settings: &crate::config::BallistaSettings) -> Result<Self> {
        let auth = Self::from_settings(&settings.client)?;
        if !matches!(auth, ClientAuth::Auto) {
            return Ok(auth);
        }
        let cluster = &settings.cluster;
        if let Some(key) = cluster.key.as_ref().filter(|k| !k.is_empty()) {
            return SecretKey::from_hex(key.expose())
                .map(ClientAuth::ClusterKey)
                .map_err(|_| {
                    BallistaError::Configuration("cluster.key: expected 64 hex digits".into())
                });
        }
        if let Some(path) = &cluster.key_file {
            return crate::auth::read_key_file(path).map(ClientAuth::ClusterKey);
        }
        Ok(auth)
    }
}

/// Environment variable a client's password is read from.
pub const PASSWORD_ENV: &str = "BALLISTA_PASSWORD";

/// The cluster key this machine holds, if any, for [`ClientAuth::Auto`]:
/// never creates a key file.
fn key_on_this_machine() -> Option<SecretKey> {
    if let Ok(hex) = std::env::var("BALLISTA_CLUSTER__KEY") {
        return SecretKey::from_hex(&hex).ok();
    }
    let path = match std::env::var_os("BALLISTA_CLUSTER__KEY_FILE") {
        Some(path) => std::path::PathBuf::from(path),
        None => crate::auth::default_key_file().ok()?,
    };
    if !path.exists() {
        return None;
    }
    match crate::auth::read_key_file(&path) {
        Ok(key) => Some(key),
        Err(e) => {
            tracing::warn!("not using the cluster key: {e}");
            None
        }
    }
}

/// Connection to a scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerClient {
    url: String,
    client: SchedulerGrpcClient<AuthChannel>,
    credentials: CallCredentials,
    executors_over: PeerTransport,
}

fn unreachable(url: &str, error: &dyn std::error::Error, trust: &TlsTrust) -> BallistaError {
    let text = crate::util::with_causes(error.to_string(), error.source());
    let hint = connection_hint(url, &text, trust);
    BallistaError::Unavailable(format!("cannot reach the scheduler at {url}: {text}{hint}"))
}

/// How long before its token expires a password client logs in again (half
/// the token's life when that is shorter).
const RELOGIN_MARGIN_SECS: u64 = 300;

/// Logs `user` in again shortly before each token expires, so that a long
/// session (a shell left open, a long job's status polls) keeps working;
/// stops when the client is dropped. A failed attempt is retried every 30 s
/// until the token runs out, and then each call says the token expired.
fn keep_logged_in(
    channel: tonic::transport::Channel,
    user: String,
    password: Secret,
    token: Weak<RwLock<String>>,
) {
    tokio::spawn(async move {
        loop {
            let Some(current) = token.upgrade() else {
                return;
            };
            let expires = crate::auth::token::token_expiry(&current.read());
            drop(current);
            let Some(expires) = expires else { return };
            // Half-way through a short-lived token, else five minutes
            // before the end; never sooner than a second from now.
            let left = expires.saturating_sub(crate::util::now_ms() / 1000);
            let wait = left
                .saturating_sub(RELOGIN_MARGIN_SECS.min(left / 2))
                .max(1);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            loop {
                if token.strong_count() == 0 {
                    return;
                }
                match crate::auth::log_in(channel.clone(), &user, password.expose()).await {
                    Ok(fresh) => {
                        let Some(current) = token.upgrade() else {
                            return;
                        };
                        *current.write() = fresh;
                        tracing::debug!("logged {user} in again before the token expired");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("logging {user} in again failed (retrying in 30 s): {e}");
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                }
            }
        }
    });
}

/// A password or token goes to another machine over plain text only when
/// the operator allowed it: the check runs before anything is sent.
fn refuse_plain_text_secrets(url: &str, auth: &ClientAuth, trust: &TlsTrust) -> Result<()> {
    let secret = match auth {
        ClientAuth::Password { user, .. } => format!("{user}'s password"),
        ClientAuth::Token(_) => "a bearer token".to_string(),
        _ => return Ok(()),
    };
    if url.starts_with("https://") || is_loopback_url(url) || trust.allows_plain_text() {
        return Ok(());
    }
    Err(BallistaError::Configuration(format!(
        "refusing to send {secret} to {url} in plain text, where anyone on the network can read \
         it: use an https:// URL (a cluster with [scheduler.tls]), or allow plain text on a \
         network you trust (--insecure, tls.allow_plain_text, BALLISTA_TLS__ALLOW_PLAIN_TEXT=true)"
    )))
}

impl SchedulerClient {
    /// Connects with [`ClientAuth::Auto`], failing within
    /// [`CONNECT_TIMEOUT`] when nothing answers.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, ClientAuth::Auto).await
    }

    /// Connects and authenticates with `auth` (a password is checked now:
    /// a wrong one fails here). An `https://` scheduler is trusted when the
    /// CA in `BALLISTA_TLS__CA_FILE`, or else a system root, signed its
    /// certificate.
    pub async fn connect_with(url: &str, auth: ClientAuth) -> Result<Self> {
        Self::connect_trusting(url, auth, &TlsTrust::from_env()?).await
    }

    /// Like [`connect_with`](Self::connect_with), checking an `https://`
    /// scheduler, and the executors results come from, against `trust`.
    pub async fn connect_trusting(url: &str, auth: ClientAuth, trust: &TlsTrust) -> Result<Self> {
        let url = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        // tonic would take any scheme as plain-text gRPC: a typo such as
        // ftp:// or grpcs:// must not quietly drop TLS.
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(BallistaError::InvalidInput(format!(
                "invalid scheduler URL \"{}\": expected http://HOST:PORT, or https://HOST:PORT \
                 for a cluster with TLS",
                crate::util::loggable(&url)
            )));
        }
        refuse_plain_text_secrets(&url, &auth, trust)?;
        let endpoint = flight_endpoint(&url, trust)?.connect_timeout(CONNECT_TIMEOUT);
        let channel = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect())
            .await
            .map_err(|_| {
                BallistaError::Unavailable(format!(
                    "cannot reach the scheduler at {url}: timed out"
                ))
            })?
            .map_err(|e| unreachable(&url, &e, trust))?;
        let credentials = match auth {
            ClientAuth::Auto => match key_on_this_machine() {
                Some(key) => CallCredentials::Admin(key),
                None => CallCredentials::None,
            },
            ClientAuth::Password { user, password } => {
                let token = crate::auth::log_in(channel.clone(), &user, password.expose()).await?;
                let credentials = CallCredentials::bearer(token);
                if let CallCredentials::Bearer(slot) = &credentials {
                    keep_logged_in(channel.clone(), user, password, Arc::downgrade(slot));
                }
                credentials
            }
            ClientAuth::Token(token) => CallCredentials::bearer(token.expose()),
            ClientAuth::ClusterKey(key) => CallCredentials::Admin(key),
            ClientAuth::None => CallCredentials::None,
        };
        let client = SchedulerGrpcClient::new(credentials.wrap(channel))
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        Ok(Self {
            executors_over: PeerTransport::like(&url, trust),
            url,
            client,
            credentials,
        })
    }

    /// How executors are reached for results: over TLS when the scheduler
    /// is.
    pub fn executors_over(&self) -> &PeerTransport {
        &self.executors_over
    }

    /// What this client sends on each call; the same credentials open the
    /// executors' Flight services for fetching results.
    pub fn credentials(&self) -> &CallCredentials {
        &self.credentials
    }

    /// The scheduler's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn map_status(&self, status: tonic::Status) -> BallistaError {
        if status.code() == tonic::Code::Unavailable && status.details().is_empty() {
            return BallistaError::Unavailable(format!(
                "cannot reach the scheduler at {}: {}",
                self.url,
                status.message()
            ));
        }
        match BallistaError::from(status) {
            BallistaError::Unauthenticated(message)
                if matches!(self.credentials, CallCredentials::None) =>
            {
                BallistaError::Unauthenticated(format!(
                    "{message} (this client has no credentials: give a user name, with the \
                     password in {PASSWORD_ENV}, or a token; or run it where the cluster key \
                     is, such as {})",
                    crate::auth::default_key_file()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|_| "~/.ballista/cluster.key".into())
                ))
            }
            other => other,
        }
    }

    /// Tables and session defaults.
    pub async fn session_defaults(&self) -> Result<proto::GetSessionDefaultsResponse> {
        let mut client = self.client.clone();
        Ok(client
            .get_session_defaults(proto::GetSessionDefaultsRequest {})
            .await
            .map_err(|s| self.map_status(s))?
            .into_inner())
    }

    /// The scheduler's shared catalog, unless it is still at
    /// `known_version` (0: the client holds none).
    pub async fn catalog(&self, known_version: u64) -> Result<proto::GetCatalogResponse> {
        let mut client = self.client.clone();
        Ok(client
            .get_catalog(proto::GetCatalogRequest { known_version })
            .await
            .map_err(|s| self.map_status(s))?
            .into_inner())
    }

    /// Carries out `sql`, a statement the shared catalog keeps (`CREATE
    /// EXTERNAL TABLE`, `CREATE VIEW`, `CREATE SCHEMA`, `DROP TABLE|VIEW`);
    /// what it did (`created table datafusion.public.t`).
    pub async fn change_catalog(&self, sql: &str) -> Result<String> {
        let mut client = self.client.clone();
        Ok(client
            .change_catalog(proto::ChangeCatalogRequest {
                sql: sql.to_string(),
            })
            .await
            .map_err(|s| self.map_status(s))?
            .into_inner()
            .description)
    }

    /// Submits a query; the job's status streams back.
    pub async fn execute(
        &self,
        request: proto::ExecuteQueryRequest,
    ) -> Result<Streaming<proto::JobStatus>> {
        let mut client = self.client.clone();
        Ok(client
            .execute_query(request)
            .await
            .map_err(|s| self.map_status(s))?
            .into_inner())
    }

    /// A job's current status.
    pub async fn job_status(&self, job_id: &JobId) -> Result<proto::JobStatus> {
        let mut client = self.client.clone();
        Ok(client
            .get_job_status(proto::GetJobStatusRequest {
                job_id: job_id.to_string(),
            })
            .await
            .map_err(|s| self.map_status(s))?
            .into_inner())
    }

    /// Cancels a job; false when it had already ended.
    pub async fn cancel(&self, job_id: &JobId) -> Result<bool> {
        let mut client = self.client.clone();
        Ok(client
            .cancel_job(proto::CancelJobRequest {
                job_id: job_id.to_string(),
            })
            .await
            .map_err(|s| self.map_status(s))?
            .into_inner()
            .cancelled)
    }

    /// Tells the scheduler the job's results have been read.
    pub async fn release(&self, job_id: &JobId) -> Result<()> {
        let mut client = self.client.clone();
        client
            .release_job(proto::ReleaseJobRequest {
                job_id: job_id.to_string(),
            })
            .await
            .map_err(|s| self.map_status(s))?;
        Ok(())
    }

    /// The registered executors.
    pub async fn executors(&self) -> Result<Vec<proto::ExecutorInfo>> {
        let mut client = self.client.clone();
        Ok(client
            .get_executors_metadata(proto::GetExecutorsMetadataRequest {})
            .await
            .map_err(|s| self.map_status(s))?
            .into_inner()
            .executors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_scheduler_url_of_another_scheme_is_refused_before_connecting() {
        for url in ["ftp://127.0.0.1:50050", "grpcs://127.0.0.1:50050"] {
            let Err(error) = SchedulerClient::connect_with(url, ClientAuth::None).await else {
                panic!("{url} was taken");
            };
            assert_eq!(error.kind(), proto::ErrorKind::InvalidInput, "{error}");
            assert!(
                error
                    .to_string()
                    .contains(&format!("invalid scheduler URL \"{url}\"")),
                "{error}"
            );
        }
    }
}
