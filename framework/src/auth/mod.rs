//! Who may call what: cluster members, clients, and the keys behind them.
//!
//! A cluster has one secret, the **cluster key** ([`cluster_key`]). Holding
//! it makes a process a member: the scheduler and executors prove it to one
//! another, and the operator's own clients prove it to act as the cluster
//! administrator. Proofs are signatures over the role, the executor id and
//! the time; the key itself never travels ([`proof`]).
//!
//! Why a cluster key rather than mutual TLS with a certificate per member:
//! executors come and go (pods of a Kubernetes Deployment, with ids made at
//! start), and a key in one secret is all each needs, where certificates
//! would need a CA that signs for every new pod. Two further keys keep
//! members apart from one another:
//!
//! - at registration the scheduler gives each executor a **session key** of
//!   its own (wrapped under the cluster key on the way, [`session_key`]). Heartbeats, task statuses and deregistration are signed with
//!   it, so no other member can speak for that executor; the scheduler signs
//!   its calls to the executor's control service with it, so no other
//!   member can launch, cancel or delete that executor's tasks;
//! - a second registration under an id that is registered and alive is
//!   refused: an id cannot be taken over.
//!
//! Clients log in with a user name and password through the Arrow Flight
//! handshake on the scheduler's port ([`login`]), as Flight SQL, ADBC and
//! JDBC clients do, and send the bearer token it returns
//! ([`token`]) on every call. Users, password hashes and grants come from
//! the [`Authenticator`](crate::plugin::auth::Authenticator) plugin.
//!
//! Every listener checks each call in its [`gate`] before the service sees
//! it. Confidentiality on the wire is TLS's job: without TLS, a proof or
//! token seen on the network can be replayed for its short lifetime.

pub mod cluster_key;
pub mod credentials;
pub mod crypto;
pub mod gate;
pub mod login;
pub mod proof;
pub mod session_key;
pub mod token;

pub use cluster_key::{default_key_file, read_key_file, read_or_create_key_file};
pub use credentials::{AuthChannel, CallCredentials};
pub use crypto::SecretKey;
pub use gate::{Caller, ExecutorKeys, Gate, GateLayer, SessionKeySlot};
pub(crate) use login::Login;
pub use login::log_in;
pub use session_key::{unwrap_session_key, wrap_session_key};
