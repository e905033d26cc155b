//! Secret values (keys, tokens, passwords) that must never be printed.
//!
//! A [`Secret`] shows as `********` in `Debug`, `Display` and when settings are
//! serialized (as `--print-config` does). Its deserializer accepts any scalar
//! and never echoes the value in an error, so a malformed secret cannot leak
//! through a configuration error either. Plugin authors should type every
//! sensitive option as `Secret` and give it a name [`is_secret_key`] matches,
//! so that it is also hidden where options are still untyped.

use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What is shown in place of a secret.
pub const REDACTED: &str = "********";

/// Name fragments that mark a configuration key as secret. Values of such
/// keys are redacted wherever settings are printed, even before a plugin has
/// parsed them.
const SECRET_KEY_FRAGMENTS: [&str; 8] = [
    "secret",
    "password",
    "passwd",
    "token",
    "credential",
    "private_key",
    "access_key",
    "api_key",
];

/// Whether a configuration key (a plain name like `secret_access_key`, not a
/// path) holds a secret by its name.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_FRAGMENTS.iter().any(|f| key.contains(f))
}

/// `message` with every occurrence of the given secret values replaced by
/// [`REDACTED`]. Values shorter than four characters are left alone: they
/// would mangle ordinary words and leak next to nothing.
pub(crate) fn scrub_values<'a>(
    message: String,
    secrets: impl IntoIterator<Item = &'a str>,
) -> String {
    secrets
        .into_iter()
        .filter(|s| s.len() >= 4)
        .fold(message, |m, secret| m.replace(secret, REDACTED))
}

/// A string that is never printed: S3 keys, tokens, passwords.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for handing to the client library that needs it.
    /// Never log or format the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;
        // Environment variables arrive type-guessed (a numeric token becomes
        // an integer), so every scalar is accepted as its text; the value is
        // never part of an error message.
        impl<'v> Visitor<'v> for SecretVisitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom(
                    "expected a secret string; quote the value in TOML",
                ))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom(
                    "expected a secret string; quote the value in TOML",
                ))
            }
            fn visit_map<A: de::MapAccess<'v>>(self, _: A) -> Result<Secret, A::Error> {
                Err(de::Error::custom("expected a secret string, found a table"))
            }
            fn visit_seq<A: de::SeqAccess<'v>>(self, _: A) -> Result<Secret, A::Error> {
                Err(de::Error::custom("expected a secret string, found a list"))
            }
        }
        deserializer.deserialize_any(SecretVisitor)
    }
}

impl JsonSchema for Secret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // `writeOnly`: the value is accepted but never shown back.
        json_schema!({ "type": "string", "writeOnly": true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_errors_do_not_echo_them() {
        let secret = Secret::new("hunter2");
        assert_eq!(
            format!("{secret:?} {secret}"),
            format!("{REDACTED} {REDACTED}")
        );
        assert_eq!(
            serde_json::to_string(&secret).unwrap(),
            format!("\"{REDACTED}\"")
        );
        let numeric: Secret = serde_json::from_str("12345").unwrap();
        assert_eq!(numeric.expose(), "12345");
        let err = serde_json::from_str::<Secret>("1.5")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("1.5"), "{err}");
        assert!(is_secret_key("secret_access_key") && is_secret_key("AUTH_TOKEN"));
        assert!(!is_secret_key("region"));
    }
}
