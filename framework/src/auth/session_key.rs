//! The session key the scheduler gives an executor at registration travels
//! wrapped under the cluster key, so that whoever sees a registration on the
//! network (without TLS) learns nothing that lets them speak for the
//! executor: the key is XORed with an HMAC keystream of the cluster key over
//! the executor id and a fresh nonce.

use super::crypto::SecretKey;
use crate::error::{BallistaError, Result};

const PURPOSE: &str = "executor session key wrapping v1";

/// `session` wrapped for executor `executor_id`: the wrapped bytes and the
/// nonce, both to send.
pub fn wrap_session_key(
    cluster: &SecretKey,
    executor_id: &str,
    session: &SecretKey,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let nonce = SecretKey::random()?.as_bytes().to_vec();
    let pad = cluster
        .derive(PURPOSE)
        .sign(&[executor_id.as_bytes(), &nonce]);
    let wrapped = session
        .as_bytes()
        .iter()
        .zip(pad)
        .map(|(k, p)| k ^ p)
        .collect();
    Ok((wrapped, nonce))
}

/// The session key [`wrap_session_key`] wrapped for `executor_id`.
pub fn unwrap_session_key(
    cluster: &SecretKey,
    executor_id: &str,
    wrapped: &[u8],
    nonce: &[u8],
) -> Result<SecretKey> {
    if wrapped.len() != 32 || nonce.len() != 32 {
        return Err(BallistaError::InvalidInput(
            "the registration answer holds no wrapped session key".into(),
        ));
    }
    let pad = cluster
        .derive(PURPOSE)
        .sign(&[executor_id.as_bytes(), nonce]);
    let key: Vec<u8> = wrapped.iter().zip(pad).map(|(w, p)| w ^ p).collect();
    SecretKey::from_bytes(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_cluster_key_and_the_same_id_unwrap_it() {
        let cluster = SecretKey::random().unwrap();
        let session = SecretKey::random().unwrap();
        let (wrapped, nonce) = wrap_session_key(&cluster, "e1", &session).unwrap();
        assert_ne!(wrapped, session.as_bytes().to_vec());
        assert_eq!(
            unwrap_session_key(&cluster, "e1", &wrapped, &nonce).unwrap(),
            session
        );
        assert_ne!(
            unwrap_session_key(&cluster, "e2", &wrapped, &nonce).unwrap(),
            session
        );
        let other = SecretKey::random().unwrap();
        assert_ne!(
            unwrap_session_key(&other, "e1", &wrapped, &nonce).unwrap(),
            session
        );
    }
}
