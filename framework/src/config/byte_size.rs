//! Byte sizes written the way people write them: `512MiB`, `2GB`, `1073741824`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes, parsed from an integer or a string with a unit
/// (`B`, `KB`/`KiB`, `MB`/`MiB`, `GB`/`GiB`, `TB`/`TiB`; decimal units are
/// powers of 1000, binary units powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number_text, unit) = text.split_at(split);
        let number: f64 = number_text.parse().map_err(|_| {
            format!(
                "invalid byte size {s:?}: expected a number with an optional unit such as 512MiB"
            )
        })?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1000,
            "kib" => 1 << 10,
            "mb" | "m" => 1000 * 1000,
            "mib" => 1 << 20,
            "gb" | "g" => 1000 * 1000 * 1000,
            "gib" => 1 << 30,
            "tb" | "t" => 1000u64.pow(4),
            "tib" => 1 << 40,
            other => {
                return Err(format!(
                    "invalid byte size {s:?}: unknown unit {other:?} (use B, KB, KiB, MB, MiB, GB, GiB, TB or TiB)"
                ));
            }
        };
        let too_large = || {
            format!(
                "invalid byte size {s:?}: too large (at most {} bytes, about 16 EiB)",
                u64::MAX
            )
        };
        if let Ok(whole) = number_text.parse::<u64>() {
            // Exact for whole numbers, which f64 would round above 2^53.
            return whole
                .checked_mul(multiplier)
                .map(ByteSize)
                .ok_or_else(too_large);
        }
        let bytes = (number * multiplier as f64).round();
        // `u64::MAX as f64` is 2^64: a cast would clamp anything from there.
        if bytes >= u64::MAX as f64 {
            return Err(too_large());
        }
        Ok(ByteSize(bytes as u64))
    }
}

/// A size that arrived as a float: an environment variable holding a whole
/// number past `u64` is read as one. Whole non-negative floats are parsed as
/// that many bytes, so a size too large is refused as too large rather than
/// as a float; `None` for any other float.
pub(crate) fn bytes_of_whole_float(v: f64) -> Option<Result<ByteSize, String>> {
    (v.is_finite() && v >= 0.0 && v.fract() == 0.0).then(|| format!("{v:.0}").parse())
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (unit, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ByteSizeVisitor;
        impl serde::de::Visitor<'_> for ByteSizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte size such as \"512MiB\" or \"4GiB\", or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ByteSize, E> {
                match bytes_of_whole_float(v) {
                    Some(size) => size.map_err(E::custom),
                    None => Err(E::invalid_value(serde::de::Unexpected::Float(v), &self)),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

impl schemars::JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "integer"],
            "description": "A byte size such as \"512MiB\" or \"4GiB\", or a number of bytes."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_refuses_garbage() {
        assert_eq!("512MiB".parse::<ByteSize>().unwrap().bytes(), 512 << 20);
        assert_eq!("2GB".parse::<ByteSize>().unwrap().bytes(), 2_000_000_000);
        assert_eq!("1.5 GiB".parse::<ByteSize>().unwrap().bytes(), 3 << 29);
        assert_eq!("1024".parse::<ByteSize>().unwrap().bytes(), 1024);
        assert!(
            "12 parsecs"
                .parse::<ByteSize>()
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!("lots".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(512 << 20).to_string(), "512MiB");
        // Sizes past 2^64 bytes are refused, not clamped.
        assert_eq!(
            "18446744073709551615".parse::<ByteSize>().unwrap().bytes(),
            u64::MAX
        );
        for huge in [
            "18446744073709551616",
            "99999999999999999999",
            "20000000TiB",
            "1e30",
        ] {
            let error = huge.parse::<ByteSize>().unwrap_err();
            assert!(
                error.contains(huge) && (error.contains("too large") || error.contains("unit")),
                "{huge}: {error}"
            );
        }
        assert!(
            "17000000TiB"
                .parse::<ByteSize>()
                .unwrap_err()
                .contains("too large (at most 18446744073709551615 bytes")
        );
        assert!(
            "16777216.5TiB"
                .parse::<ByteSize>()
                .unwrap_err()
                .contains("too large")
        );
    }
}
