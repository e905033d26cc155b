//! An amount of memory given either in bytes (`512MiB`) or as a share of a
//! whole (`60%`): of the machine's (or cgroup's) memory for an executor's
//! limit, of the executor's budget for a quota.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ByteSize;

/// Bytes, or a percentage of a whole the setting documents.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryAmount {
    /// An absolute size.
    Bytes(ByteSize),
    /// A share of the whole, between 0 and 1 (written `60%`).
    Fraction(f64),
}

impl MemoryAmount {
    /// The amount in bytes, `whole` being what a percentage is taken of.
    pub fn of(self, whole: u64) -> u64 {
        match self {
            MemoryAmount::Bytes(b) => b.bytes(),
            MemoryAmount::Fraction(f) => (whole as f64 * f).round() as u64,
        }
    }

    /// Whether the amount is zero.
    pub fn is_zero(self) -> bool {
        match self {
            MemoryAmount::Bytes(b) => b.bytes() == 0,
            MemoryAmount::Fraction(f) => f == 0.0,
        }
    }
}

impl FromStr for MemoryAmount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        match text.strip_suffix('%') {
            Some(number) => {
                let percent: f64 = number.trim().parse().map_err(|_| {
                    format!(
                        "invalid percentage {s:?}: expected a number followed by %, such as 60%"
                    )
                })?;
                if !(0.0..=100.0).contains(&percent) {
                    return Err(format!(
                        "invalid percentage {s:?}: expected a value from 0% to 100%"
                    ));
                }
                Ok(MemoryAmount::Fraction(percent / 100.0))
            }
            None => text
                .parse::<ByteSize>()
                .map(MemoryAmount::Bytes)
                .map_err(|e| format!("{e}, or a percentage such as 60%")),
        }
    }
}

impl fmt::Display for MemoryAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryAmount::Bytes(b) => b.fmt(f),
            MemoryAmount::Fraction(x) => {
                let percent = x * 100.0;
                if (percent - percent.round()).abs() < 1e-9 {
                    write!(f, "{}%", percent.round() as u64)
                } else {
                    write!(f, "{percent}%")
                }
            }
        }
    }
}

impl From<ByteSize> for MemoryAmount {
    fn from(b: ByteSize) -> Self {
        MemoryAmount::Bytes(b)
    }
}

impl Serialize for MemoryAmount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for MemoryAmount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AmountVisitor;
        impl serde::de::Visitor<'_> for AmountVisitor {
            type Value = MemoryAmount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte size such as \"512MiB\", a number of bytes, or a percentage such as \"60%\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MemoryAmount, E> {
                Ok(MemoryAmount::Bytes(ByteSize(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MemoryAmount, E> {
                u64::try_from(v)
                    .map(|v| MemoryAmount::Bytes(ByteSize(v)))
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<MemoryAmount, E> {
                match super::byte_size::bytes_of_whole_float(v) {
                    Some(size) => size.map(MemoryAmount::Bytes).map_err(E::custom),
                    None => Err(E::invalid_value(serde::de::Unexpected::Float(v), &self)),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MemoryAmount, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(AmountVisitor)
    }
}

impl schemars::JsonSchema for MemoryAmount {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MemoryAmount".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "integer"],
            "description": "A byte size such as \"512MiB\", a number of bytes, or a percentage such as \"60%\"."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_percentages() {
        assert_eq!("512MiB".parse::<MemoryAmount>().unwrap().of(0), 512 << 20);
        let sixty: MemoryAmount = "60%".parse().unwrap();
        assert_eq!(sixty.of(1000), 600);
        assert_eq!(sixty.to_string(), "60%");
        assert_eq!("12.5%".parse::<MemoryAmount>().unwrap().of(800), 100);
        let err = "150%".parse::<MemoryAmount>().unwrap_err();
        assert!(err.contains("from 0% to 100%"), "{err}");
        let err = "lots".parse::<MemoryAmount>().unwrap_err();
        assert!(err.contains("invalid byte size \"lots\""), "{err}");
        assert!(err.contains("percentage"), "{err}");
    }
}
