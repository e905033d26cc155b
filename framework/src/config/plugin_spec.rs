//! The TOML table that selects a plugin: `kind` plus that plugin's options.

use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::secret::{REDACTED, is_secret_key};

/// Which implementation of a plugin seam to use, and its options, e.g.
///
/// ```toml
/// [memory]
/// kind = "quota"
/// job_quota = "2GiB"
/// ```
///
/// The options are kept untyped here; the plugin registered under `kind`
/// parses and validates them when the scheduler or executor is built (see
/// [`PluginRegistry`](crate::plugin::registry::PluginRegistry)). Values of
/// options whose names look secret ([`is_secret_key`]) are redacted in
/// `Debug` and when serialized.
#[derive(Clone, PartialEq, Default)]
pub struct PluginSpec {
    /// Registered name of the plugin; `None` selects the seam's default.
    pub kind: Option<String>,
    /// Every other key of the table.
    pub options: Map<String, Value>,
}

impl PluginSpec {
    /// Selects the plugin registered as `kind`, with no options.
    pub fn kind(kind: impl Into<String>) -> Self {
        Self {
            kind: Some(kind.into()),
            options: Map::new(),
        }
    }

    /// Adds an option.
    pub fn with_option(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    /// The options with secret-looking values replaced, for display.
    fn redacted_options(&self) -> Map<String, Value> {
        redact_map(&self.options)
    }
}

/// Secret-looking keys hidden at every depth: plugins nest tables (per-bucket
/// settings, for one) that carry credentials of their own.
fn redact_map(options: &Map<String, Value>) -> Map<String, Value> {
    options
        .iter()
        .map(|(k, v)| {
            let shown = if is_secret_key(k) {
                Value::String(REDACTED.into())
            } else {
                redact_value(v)
            };
            (k.clone(), shown)
        })
        .collect()
}

fn redact_value(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(redact_map(map)),
        Value::Array(items) => Value::Array(items.iter().map(redact_value).collect()),
        other => other.clone(),
    }
}

impl fmt::Debug for PluginSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginSpec")
            .field("kind", &self.kind)
            .field("options", &self.redacted_options())
            .finish()
    }
}

impl Serialize for PluginSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut table = Map::new();
        if let Some(kind) = &self.kind {
            table.insert("kind".into(), Value::String(kind.clone()));
        }
        table.extend(self.redacted_options());
        table.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PluginSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let Value::Object(mut options) = value else {
            return Err(D::Error::custom(
                "expected a table with a `kind` key and that plugin's options",
            ));
        };
        let kind = match options.remove("kind") {
            None => None,
            Some(Value::String(kind)) if !kind.trim().is_empty() => Some(kind),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`kind` must be the non-empty name of a registered plugin, found {other}"
                )));
            }
        };
        Ok(Self { kind, options })
    }
}

impl JsonSchema for PluginSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PluginSpec".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "properties": { "kind": { "type": "string" } },
            "additionalProperties": true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_is_split_from_options_and_secrets_are_hidden() {
        let spec: PluginSpec = toml::from_str(
            "kind = \"s3\"\nregion = \"eu\"\nsecret_access_key = \"AKIAxyz\"\n\
             [buckets.b]\nregion = \"us\"\nsecret_access_key = \"NESTEDxyz\"\n",
        )
        .unwrap();
        assert_eq!(spec.kind.as_deref(), Some("s3"));
        assert_eq!(spec.options["region"], "eu");
        let shown = format!("{spec:?} {}", toml::to_string(&spec).unwrap());
        assert!(!shown.contains("AKIAxyz"), "{shown}");
        assert!(!shown.contains("NESTEDxyz"), "{shown}");
        assert!(shown.contains("us"), "{shown}");
        assert!(shown.contains("region"), "{shown}");
        let err = toml::from_str::<PluginSpec>("kind = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`kind` must be"), "{err}");
    }
}
