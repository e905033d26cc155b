//! Bearer tokens the scheduler issues to clients after a Flight handshake:
//! `bt1.<user>.<expires>.<signature>`, signed with a key derived from the
//! cluster key, so that the scheduler and every executor can check one
//! without asking anybody, and nobody outside the cluster can make one.

use super::crypto::{SecretKey, from_hex, now_secs, to_hex};
use crate::error::{BallistaError, Result};

const PREFIX: &str = "bt1.";

/// What the scheduler's and executors' token key is derived with.
pub const TOKEN_KEY_PURPOSE: &str = "client bearer tokens v1";

/// A token for `user` valid for `ttl_secs` from now.
pub fn mint_token(key: &SecretKey, user: &str, ttl_secs: u64) -> String {
    let expires = now_secs().saturating_add(ttl_secs);
    let signature = key.sign(&[PREFIX.as_bytes(), user.as_bytes(), &expires.to_be_bytes()]);
    format!("{PREFIX}{user}.{expires}.{}", to_hex(&signature))
}

/// Whether `token` has the shape of one of ours (others may belong to a
/// custom authenticator).
pub fn is_cluster_token(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// When a token of ours expires (seconds since the epoch), read without
/// checking its signature: for a client deciding when to log in again.
pub fn token_expiry(token: &str) -> Option<u64> {
    let body = token.strip_prefix(PREFIX)?;
    body.rsplit('.').nth(1)?.parse().ok()
}

/// The user a token was issued to, when it is ours, unaltered and unexpired.
pub fn verify_token(key: &SecretKey, token: &str) -> Result<String> {
    let invalid = || {
        BallistaError::Unauthenticated(
            "the bearer token is not valid for this cluster (altered, or issued by another \
             cluster); log in again"
                .into(),
        )
    };
    let body = token.strip_prefix(PREFIX).ok_or_else(invalid)?;
    // The user name may hold dots: the last two fields are fixed.
    let mut fields = body.rsplitn(3, '.');
    let signature = fields.next().and_then(from_hex).ok_or_else(invalid)?;
    let expires: u64 = fields
        .next()
        .and_then(|e| e.parse().ok())
        .ok_or_else(invalid)?;
    let user = fields
        .next()
        .filter(|u| !u.is_empty())
        .ok_or_else(invalid)?;
    if !key.verify(
        &[PREFIX.as_bytes(), user.as_bytes(), &expires.to_be_bytes()],
        &signature,
    ) {
        return Err(invalid());
    }
    let now = now_secs();
    if expires <= now {
        return Err(BallistaError::Unauthenticated(format!(
            "the bearer token of user {user} expired {} s ago; log in again",
            now - expires
        )));
    }
    Ok(user.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_until_they_expire_and_not_once_altered() {
        let key = SecretKey::random().unwrap();
        let token = mint_token(&key, "alice.b", 60);
        assert_eq!(verify_token(&key, &token).unwrap(), "alice.b");
        let other = SecretKey::random().unwrap();
        assert!(matches!(
            verify_token(&other, &token),
            Err(BallistaError::Unauthenticated(_))
        ));
        let altered = token.replacen("alice.b", "admin", 1);
        assert!(verify_token(&key, &altered).is_err());
        let expired = mint_token(&key, "alice", 0);
        let err = verify_token(&key, &expired).unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
        for junk in ["", "bt1.", "bt1.a.b.c", "bt1..1.00", "xyz"] {
            assert!(verify_token(&key, junk).is_err(), "{junk}");
        }
    }
}
