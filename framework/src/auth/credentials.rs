//! What a process or client sends on each outgoing call: a tonic
//! interceptor adding the `authorization` header (see [`super::proof`]).

use std::sync::Arc;

use parking_lot::RwLock;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::crypto::SecretKey;
use super::gate::SessionKeySlot;
use super::proof::{ProofRole, make_proof};

/// A channel whose calls carry [`CallCredentials`].
pub type AuthChannel = InterceptedService<Channel, CallCredentials>;

/// The credentials a caller presents; made fresh for every call.
#[derive(Clone, Default)]
pub enum CallCredentials {
    /// None: every call but the login is refused.
    #[default]
    None,
    /// A client's bearer token (from the login). Shared, so that a new
    /// login reaches every clone.
    Bearer(Arc<RwLock<String>>),
    /// A client holding the cluster key: the cluster administrator.
    Admin(SecretKey),
    /// An executor registering as `id`, proving the cluster key.
    Register {
        /// The cluster key.
        cluster: SecretKey,
        /// The executor's id.
        id: String,
    },
    /// A cluster member (the executor `id`) proving the cluster key, on
    /// another executor's Flight service.
    Member {
        /// The cluster key.
        cluster: SecretKey,
        /// The executor's id.
        id: String,
    },
    /// A registered executor proving its session key (until it has one, it
    /// proves the cluster key, which the scheduler refuses for anything but
    /// registration).
    Executor {
        /// The cluster key.
        cluster: SecretKey,
        /// The executor's id.
        id: String,
        /// Its session key, once registered.
        session: SessionKeySlot,
    },
    /// The scheduler calling executor `executor_id`, with its session key.
    Scheduler {
        /// The executor called.
        executor_id: String,
        /// That executor's session key.
        key: SecretKey,
    },
}

impl std::fmt::Debug for CallCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            CallCredentials::None => "None",
            CallCredentials::Bearer(_) => "Bearer",
            CallCredentials::Admin(_) => "Admin",
            CallCredentials::Register { .. } => "Register",
            CallCredentials::Member { .. } => "Member",
            CallCredentials::Executor { .. } => "Executor",
            CallCredentials::Scheduler { .. } => "Scheduler",
        };
        write!(f, "CallCredentials::{kind}")
    }
}

impl CallCredentials {
    /// A bearer token.
    pub fn bearer(token: impl Into<String>) -> Self {
        CallCredentials::Bearer(Arc::new(RwLock::new(token.into())))
    }

    /// The `authorization` header value for the next call.
    pub fn header(&self) -> Option<String> {
        Some(match self {
            CallCredentials::None => return None,
            CallCredentials::Bearer(token) => format!("Bearer {}", token.read()),
            CallCredentials::Admin(key) => make_proof(key, ProofRole::Admin, "cluster"),
            CallCredentials::Register { cluster, id } => {
                make_proof(cluster, ProofRole::Register, id)
            }
            CallCredentials::Member { cluster, id } => make_proof(cluster, ProofRole::Member, id),
            CallCredentials::Executor {
                cluster,
                id,
                session,
            } => match session.read().as_ref() {
                Some(key) => make_proof(key, ProofRole::Executor, id),
                None => make_proof(cluster, ProofRole::Member, id),
            },
            CallCredentials::Scheduler { executor_id, key } => {
                make_proof(key, ProofRole::Scheduler, executor_id)
            }
        })
    }

    /// `channel` with these credentials on every call.
    pub fn wrap(&self, channel: Channel) -> AuthChannel {
        InterceptedService::new(channel, self.clone())
    }
}

impl Interceptor for CallCredentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = self.header() {
            let value = MetadataValue::try_from(header).map_err(|_| {
                tonic::Status::invalid_argument("the credentials cannot be sent as a header")
            })?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}
