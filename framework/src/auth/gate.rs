//! The gate in front of every listener: it establishes who is calling
//! ([`Caller`]) from the `authorization` header and refuses, before the
//! service sees the request, a caller the method is not for.
//!
//! | listener | method | who may call |
//! |---|---|---|
//! | scheduler | Flight `Handshake` | anyone (it is the login) |
//! | scheduler | `RegisterExecutor` | a member (cluster key) |
//! | scheduler | `HeartBeat`, `UpdateTaskStatus`, `ReportTaskStatuses`, `AwaitMapOutputs` | a registered executor (its session key) |
//! | scheduler | `DeregisterExecutor` | that executor, or an admin |
//! | scheduler | everything else | a client (bearer token, or the cluster key as admin) |
//! | executor | `ExecutorControl/*` | the scheduler (this executor's session key) |
//! | executor | Flight | a client or another member |
//!
//! Handlers read the [`Caller`] from the request's extensions and check what
//! is theirs to check: that an executor speaks for its own id, that a job is
//! the caller's.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::RwLock;
use tonic::body::Body;
use tonic::codegen::http;

use super::crypto::SecretKey;
use super::proof::{Proof, ProofRole};
use super::token::{TOKEN_KEY_PURPOSE, is_cluster_token, verify_token};
use crate::error::{BallistaError, Result};
use crate::plugin::auth::{Authenticator, Identity};

/// Who made a call, as the gate established it. Found in the extensions of
/// every request a service receives.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A client, with its identity.
    Client(Arc<Identity>),
    /// An executor proving the cluster key (registering, or reading another
    /// executor's shuffle data); the id is the one it claims.
    Member(String),
    /// A registered executor proving its own session key.
    Executor(String),
    /// The scheduler, on an executor's control service.
    Scheduler,
    /// Nobody yet: only the login (Flight handshake) lets one through.
    Anonymous,
}

impl Caller {
    /// The caller of `request`, as the gate established it. A request that
    /// did not come through a gate (a unit test calling a service directly)
    /// is [`Caller::Anonymous`].
    pub fn of<T>(request: &tonic::Request<T>) -> Caller {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anonymous)
    }

    /// The client identity, or a refusal naming `what` the call needs.
    pub fn client(&self, what: &str) -> Result<Arc<Identity>> {
        match self {
            Caller::Client(identity) => Ok(Arc::clone(identity)),
            _ => Err(BallistaError::PermissionDenied(format!(
                "{what} is for clients; this caller is {}",
                self.describe()
            ))),
        }
    }

    /// Who this is, for refusals.
    pub fn describe(&self) -> String {
        match self {
            Caller::Client(identity) => format!("user {}", identity.user),
            Caller::Member(id) => format!("cluster member {id}"),
            Caller::Executor(id) => format!("executor {id}"),
            Caller::Scheduler => "the scheduler".into(),
            Caller::Anonymous => "not authenticated".into(),
        }
    }
}

/// Session keys of registered executors, by executor id (scheduler side).
pub type ExecutorKeys = Arc<RwLock<HashMap<String, SecretKey>>>;

/// This executor's session key, once registered (executor side).
pub type SessionKeySlot = Arc<RwLock<Option<SecretKey>>>;

/// The Flight login method, open to anyone.
pub const HANDSHAKE_PATH: &str = "/arrow.flight.protocol.FlightService/Handshake";

const EXECUTOR_METHODS: &[&str] = &[
    "/ballista.SchedulerGrpc/HeartBeat",
    "/ballista.SchedulerGrpc/UpdateTaskStatus",
    "/ballista.SchedulerGrpc/ReportTaskStatuses",
    "/ballista.SchedulerGrpc/AwaitMapOutputs",
    DEREGISTER_PATH,
];
/// Executors leave with it; an admin may also remove one.
const DEREGISTER_PATH: &str = "/ballista.SchedulerGrpc/DeregisterExecutor";
const REGISTER_PATH: &str = "/ballista.SchedulerGrpc/RegisterExecutor";
const CONTROL_PREFIX: &str = "/ballista.ExecutorControl/";

/// What one process checks calls against.
#[derive(Debug)]
pub enum Gate {
    /// The scheduler's listener.
    Scheduler {
        /// The cluster key.
        cluster: SecretKey,
        /// Key of client bearer tokens.
        tokens: SecretKey,
        /// Session keys of registered executors.
        executors: ExecutorKeys,
        /// Turns a user's token into its identity and grants.
        authenticator: Arc<dyn Authenticator>,
    },
    /// An executor's listener.
    Executor {
        /// The cluster key.
        cluster: SecretKey,
        /// Key of client bearer tokens.
        tokens: SecretKey,
        /// This executor's id.
        own_id: String,
        /// Its session key, once registered.
        session: SessionKeySlot,
    },
}

fn unauthenticated(message: impl Into<String>) -> BallistaError {
    BallistaError::Unauthenticated(message.into())
}

const NEEDS_CREDENTIALS: &str = "this call needs credentials: log in with a user name and password \
     (Arrow Flight handshake) and send the token as `authorization: Bearer <token>`";

impl Gate {
    /// The scheduler's gate.
    pub fn scheduler(
        cluster: SecretKey,
        executors: ExecutorKeys,
        authenticator: Arc<dyn Authenticator>,
    ) -> Self {
        Gate::Scheduler {
            tokens: cluster.derive(TOKEN_KEY_PURPOSE),
            cluster,
            executors,
            authenticator,
        }
    }

    /// An executor's gate.
    pub fn executor(cluster: SecretKey, own_id: String, session: SessionKeySlot) -> Self {
        Gate::Executor {
            tokens: cluster.derive(TOKEN_KEY_PURPOSE),
            cluster,
            own_id,
            session,
        }
    }

    /// The caller of a call to `path` with `authorization` header `header`,
    /// or why it is refused.
    pub async fn admit(&self, path: &str, header: Option<&str>) -> Result<Caller> {
        if path == HANDSHAKE_PATH && matches!(self, Gate::Scheduler { .. }) {
            return Ok(Caller::Anonymous);
        }
        let header = header.ok_or_else(|| unauthenticated(NEEDS_CREDENTIALS))?;
        if let Some(proof) = Proof::parse(header) {
            return self.admit_proof(path, &proof);
        }
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                if header.starts_with("Basic ") || header.starts_with("basic ") {
                    unauthenticated(
                        "a password is only accepted by the login (Arrow Flight handshake); \
                         send the token it returns as `authorization: Bearer <token>`",
                    )
                } else {
                    unauthenticated(NEEDS_CREDENTIALS)
                }
            })?;
        let caller = self.admit_token(token).await?;
        if let Some(refusal) = self.refuse_client(path) {
            return Err(refusal);
        }
        Ok(caller)
    }

    /// A client may call everything but the members' methods (an admin may
    /// also deregister an executor: the handler checks it is one).
    fn refuse_client(&self, path: &str) -> Option<BallistaError> {
        let members_only = match self {
            Gate::Scheduler { .. } => {
                path == REGISTER_PATH
                    || (EXECUTOR_METHODS.contains(&path) && path != DEREGISTER_PATH)
            }
            Gate::Executor { .. } => path.starts_with(CONTROL_PREFIX),
        };
        members_only.then(|| {
            BallistaError::PermissionDenied(format!(
                "{} is for cluster members only",
                crate::util::loggable(path)
            ))
        })
    }

    async fn admit_token(&self, token: &str) -> Result<Caller> {
        match self {
            Gate::Scheduler {
                tokens,
                authenticator,
                ..
            } => {
                let identity = if is_cluster_token(token) {
                    let user = verify_token(tokens, token)?;
                    authenticator.identity(&user).await?
                } else {
                    authenticator.authenticate_token(token).await?
                };
                Ok(Caller::Client(Arc::new(identity)))
            }
            Gate::Executor { tokens, .. } => {
                // Executors serve clients only tickets the scheduler signed:
                // the token shows the caller is somebody, the ticket what
                // it may read.
                let user = verify_token(tokens, token)?;
                Ok(Caller::Client(Arc::new(Identity {
                    user,
                    ..Identity::default()
                })))
            }
        }
    }

    fn admit_proof(&self, path: &str, proof: &Proof) -> Result<Caller> {
        let bad_proof = || {
            unauthenticated(format!(
                "the {} credentials of {} are not valid for this cluster (wrong cluster key, \
                 altered, or the clocks differ by more than {} s)",
                proof.role,
                crate::util::loggable(&proof.subject),
                super::proof::PROOF_VALIDITY_SECS
            ))
        };
        match (self, proof.role) {
            (
                Gate::Scheduler { cluster, .. } | Gate::Executor { cluster, .. },
                ProofRole::Admin,
            ) => {
                if !proof.verify(cluster) {
                    return Err(bad_proof());
                }
                if let Some(refusal) = self.refuse_client(path) {
                    return Err(refusal);
                }
                Ok(Caller::Client(Arc::new(Identity::cluster_admin())))
            }
            (Gate::Scheduler { cluster, .. }, ProofRole::Register) => {
                if !proof.verify(cluster) {
                    return Err(bad_proof());
                }
                if path != REGISTER_PATH {
                    return Err(BallistaError::PermissionDenied(format!(
                        "{} needs the credentials the scheduler gave executor {} at registration",
                        crate::util::loggable(path),
                        crate::util::loggable(&proof.subject)
                    )));
                }
                Ok(Caller::Member(proof.subject.clone()))
            }
            (Gate::Scheduler { executors, .. }, ProofRole::Executor) => {
                let key = executors.read().get(&proof.subject).cloned();
                // An unknown id and a wrong key get one answer: no caller
                // learns which ids are registered.
                if !key.is_some_and(|key| proof.verify(&key)) {
                    return Err(unauthenticated(format!(
                        "the executor credentials of {} are not valid (not registered with this \
                         scheduler, or a wrong session key); register again",
                        crate::util::loggable(&proof.subject)
                    )));
                }
                if path != REGISTER_PATH && !EXECUTOR_METHODS.contains(&path) {
                    return Err(BallistaError::PermissionDenied(format!(
                        "{} is not a call executors make",
                        crate::util::loggable(path)
                    )));
                }
                Ok(Caller::Executor(proof.subject.clone()))
            }
            (Gate::Executor { cluster, .. }, ProofRole::Member) => {
                if !proof.verify(cluster) {
                    return Err(bad_proof());
                }
                if path.starts_with(CONTROL_PREFIX) {
                    return Err(BallistaError::PermissionDenied(format!(
                        "only the scheduler may call the executor control service ({} is \
                         executor {})",
                        crate::util::loggable(path),
                        crate::util::loggable(&proof.subject)
                    )));
                }
                Ok(Caller::Member(proof.subject.clone()))
            }
            (
                Gate::Executor {
                    own_id, session, ..
                },
                ProofRole::Scheduler,
            ) => {
                if &proof.subject != own_id {
                    return Err(BallistaError::PermissionDenied(format!(
                        "scheduler credentials for executor {} were sent to executor {own_id}",
                        crate::util::loggable(&proof.subject)
                    )));
                }
                let key = session.read().clone();
                let Some(key) = key else {
                    return Err(unauthenticated(
                        "this executor has not registered with its scheduler yet",
                    ));
                };
                if !proof.verify(&key) {
                    return Err(bad_proof());
                }
                Ok(Caller::Scheduler)
            }
            (_, role) => Err(BallistaError::PermissionDenied(format!(
                "{role} credentials are not accepted by this process"
            ))),
        }
    }
}

/// Wraps a listener's services behind a [`Gate`].
#[derive(Debug, Clone)]
pub struct GateLayer {
    gate: Arc<Gate>,
}

impl GateLayer {
    /// A layer admitting calls through `gate`.
    pub fn new(gate: Arc<Gate>) -> Self {
        Self { gate }
    }
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = GateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService {
            inner,
            gate: Arc::clone(&self.gate),
        }
    }
}

/// The service [`GateLayer`] produces.
#[derive(Debug, Clone)]
pub struct GateService<S> {
    inner: S,
    gate: Arc<Gate>,
}

type BoxedResponse<E> =
    Pin<Box<dyn Future<Output = std::result::Result<http::Response<Body>, E>> + Send + 'static>>;

impl<S> tower::Service<http::Request<Body>> for GateService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxedResponse<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The clone that was made ready serves this call (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = Arc::clone(&self.gate);
        Box::pin(async move {
            let path = request.uri().path().to_string();
            let header = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match gate.admit(&path, header.as_deref()).await {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(refusal) => {
                    tracing::debug!(
                        "refused a call to {}: {}",
                        crate::util::loggable(&path),
                        refusal
                    );
                    Ok(tonic::Status::from(refusal).into_http())
                }
            }
        })
    }
}
