//! The `authorization` header values of Ballista's processes and clients.
//!
//! - `Bearer <token>`: a client, with a token from the scheduler's Flight
//!   handshake ([`super::token`]) or, for a custom [`Authenticator`], any
//!   token that plugin accepts.
//! - `Ballista <role> <subject> <issued> <signature>`: a proof of holding a
//!   key, fresh for [`PROOF_VALIDITY_SECS`] either side of `issued`. The key
//!   itself never travels. Roles:
//!   - `register`: an executor (named by `subject`) proving the cluster key
//!     to register with the scheduler;
//!   - `member`: an executor proving the cluster key to fetch another
//!     executor's shuffle data;
//!   - `executor`: a registered executor proving the session key the
//!     scheduler gave it at registration (heartbeats, task statuses,
//!     deregistration): another member cannot speak for it;
//!   - `scheduler`: the scheduler calling an executor's control service,
//!     signed with that executor's session key: another executor cannot;
//!   - `admin`: a client holding the cluster key (the operator, on a machine
//!     of the cluster), acting as the cluster administrator.
//!
//! [`Authenticator`]: crate::plugin::auth::Authenticator

use std::fmt;

use super::crypto::{SecretKey, from_hex, now_secs, to_hex};

/// How far the clocks of two machines may disagree either way; a captured
/// proof can be replayed (to the same kind of call) within this much of the
/// time it was made.
pub const PROOF_VALIDITY_SECS: u64 = 300;

/// The scheme word of proofs in the `authorization` header.
pub const PROOF_SCHEME: &str = "Ballista";

/// What a proof claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofRole {
    /// A cluster member (cluster key), on another executor's Flight service.
    Member,
    /// An executor registering (cluster key): only ever sent to the
    /// scheduler's `RegisterExecutor`, so a member proof captured on an
    /// executor-to-executor fetch cannot be replayed to register.
    Register,
    /// A registered executor (its session key).
    Executor,
    /// The scheduler, calling one executor (that executor's session key).
    Scheduler,
    /// The cluster administrator (cluster key).
    Admin,
}

impl ProofRole {
    fn word(self) -> &'static str {
        match self {
            ProofRole::Member => "member",
            ProofRole::Register => "register",
            ProofRole::Executor => "executor",
            ProofRole::Scheduler => "scheduler",
            ProofRole::Admin => "admin",
        }
    }

    fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "member" => ProofRole::Member,
            "register" => ProofRole::Register,
            "executor" => ProofRole::Executor,
            "scheduler" => ProofRole::Scheduler,
            "admin" => ProofRole::Admin,
            _ => return None,
        })
    }
}

impl fmt::Display for ProofRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// A parsed, not yet verified, proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The role claimed.
    pub role: ProofRole,
    /// The executor the proof is about (`admin`: the word `cluster`).
    pub subject: String,
    issued: u64,
    signature: Vec<u8>,
}

fn signed_parts<'a>(role: ProofRole, subject: &'a str, issued: &'a [u8; 8]) -> [&'a [u8]; 4] {
    [
        b"ballista proof v1",
        role.word().as_bytes(),
        subject.as_bytes(),
        issued,
    ]
}

/// The header value proving `key` in `role` about `subject`, issued now.
pub fn make_proof(key: &SecretKey, role: ProofRole, subject: &str) -> String {
    let issued = now_secs();
    let signature = key.sign(&signed_parts(role, subject, &issued.to_be_bytes()));
    format!(
        "{PROOF_SCHEME} {role} {subject} {issued} {}",
        to_hex(&signature)
    )
}

impl Proof {
    /// Parses a header value; `None` when it is not a proof at all.
    pub fn parse(header: &str) -> Option<Proof> {
        let rest = header.strip_prefix(PROOF_SCHEME)?.strip_prefix(' ')?;
        let mut words = rest.split(' ');
        let role = ProofRole::from_word(words.next()?)?;
        let subject = words.next()?.to_string();
        let issued = words.next()?.parse().ok()?;
        let signature = from_hex(words.next()?)?;
        if words.next().is_some() || subject.is_empty() || subject.len() > 128 {
            return None;
        }
        Some(Proof {
            role,
            subject,
            issued,
            signature,
        })
    }

    /// Whether the proof was made with `key` and is fresh.
    pub fn verify(&self, key: &SecretKey) -> bool {
        let now = now_secs();
        now.abs_diff(self.issued) <= PROOF_VALIDITY_SECS
            && key.verify(
                &signed_parts(self.role, &self.subject, &self.issued.to_be_bytes()),
                &self.signature,
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_verifies_with_its_key_only_and_binds_role_and_subject() {
        let key = SecretKey::random().unwrap();
        let header = make_proof(&key, ProofRole::Executor, "exec-1");
        let proof = Proof::parse(&header).unwrap();
        assert_eq!(proof.role, ProofRole::Executor);
        assert_eq!(proof.subject, "exec-1");
        assert!(proof.verify(&key));
        assert!(!proof.verify(&SecretKey::random().unwrap()));
        let forged = header.replacen("exec-1", "exec-2", 1);
        assert!(!Proof::parse(&forged).unwrap().verify(&key));
        let promoted = header.replacen("executor", "scheduler", 1);
        assert!(!Proof::parse(&promoted).unwrap().verify(&key));
        assert!(Proof::parse("Bearer x").is_none());
        assert!(Proof::parse("Ballista member a 1").is_none());
        assert!(Proof::parse("Ballista member a 1 zz").is_none());
    }

    #[test]
    fn a_stale_proof_is_refused() {
        let key = SecretKey::random().unwrap();
        let issued = now_secs() - PROOF_VALIDITY_SECS - 10;
        let signature = key.sign(&signed_parts(
            ProofRole::Member,
            "exec-1",
            &issued.to_be_bytes(),
        ));
        let header = format!("Ballista member exec-1 {issued} {}", to_hex(&signature));
        assert!(!Proof::parse(&header).unwrap().verify(&key));
    }
}
