//! The few primitives the rest of `auth` is built from: 256-bit secret keys,
//! HMAC-SHA256 signatures compared in constant time, and hex text.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{BallistaError, Result};

/// A 256-bit secret: the cluster key, a key derived from it, or the session
/// key the scheduler gives one executor. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn random() -> Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| {
            BallistaError::Internal(format!("the system's random source failed: {e}"))
        })?;
        Ok(Self(bytes))
    }

    /// A key from exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| {
            BallistaError::InvalidInput(format!("a secret key is 32 bytes, not {}", bytes.len()))
        })?;
        Ok(Self(array))
    }

    /// The key as 64 hex digits (what key files hold).
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// A key from 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self> {
        let bytes = from_hex(text.trim())
            .ok_or_else(|| BallistaError::InvalidInput("a secret key is 64 hex digits".into()))?;
        Self::from_bytes(&bytes)
    }

    /// The raw bytes (for handing a session key to an executor).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key for one purpose, derived so that knowing it reveals neither
    /// this key nor the keys of other purposes.
    pub fn derive(&self, purpose: &str) -> SecretKey {
        SecretKey(self.sign(&[b"ballista key derivation", purpose.as_bytes()]))
    }

    /// HMAC-SHA256 over `parts`, each prefixed with its length so that no
    /// two different lists of parts sign the same bytes.
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.mac(parts).finalize().into_bytes().into()
    }

    /// Whether `signature` is [`sign`](Self::sign) of `parts`, compared in
    /// constant time.
    pub fn verify(&self, parts: &[&[u8]], signature: &[u8]) -> bool {
        self.mac(parts).verify_slice(signature).is_ok()
    }

    fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key size");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    text
}

/// The bytes of hex `text` (either case); `None` when it is not hex.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let high = (pair[0] as char).to_digit(16)?;
            let low = (pair[1] as char).to_digit(16)?;
            Some((high * 16 + low) as u8)
        })
        .collect()
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_part_and_its_boundaries() {
        let key = SecretKey::random().unwrap();
        let signature = key.sign(&[b"ab", b"c"]);
        assert!(key.verify(&[b"ab", b"c"], &signature));
        assert!(!key.verify(&[b"a", b"bc"], &signature));
        assert!(!key.verify(&[b"ab", b"d"], &signature));
        let other = SecretKey::random().unwrap();
        assert!(!other.verify(&[b"ab", b"c"], &signature));
        assert!(!key.verify(&[b"ab", b"c"], &signature[..31]));
    }

    #[test]
    fn hex_round_trips_and_refuses_non_hex() {
        let key = SecretKey::random().unwrap();
        assert_eq!(SecretKey::from_hex(&key.to_hex()).unwrap(), key);
        assert!(from_hex("0g").is_none());
        assert!(from_hex("abc").is_none());
        assert!(SecretKey::from_hex("00").is_err());
        assert_ne!(key.derive("a"), key.derive("b"));
        assert!(!format!("{key:?}").contains(&key.to_hex()));
    }
}
