//! Loading settings: built-in defaults < TOML file < `BALLISTA_…` environment
//! variables (`__` separates nesting levels) < command-line flags (applied by
//! the binaries).

use std::path::Path;

use config::{Config, Environment, File, FileFormat};

use super::BallistaSettings;
use crate::error::{BallistaError, Result};

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "BALLISTA";

impl BallistaSettings {
    /// Loads settings from an optional TOML file and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`load`](Self::load) with an explicit environment (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut builder = Config::builder();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(BallistaError::Configuration(format!(
                    "configuration file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        let vars: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}_")))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(vars)),
        );
        let merged = builder
            .build()
            .map_err(|e| BallistaError::Configuration(e.to_string()))?;
        merged
            .try_deserialize::<BallistaSettings>()
            .map_err(|e| BallistaError::Configuration(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TableFormat;

    #[test]
    fn toml_then_env_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
[scheduler]
port = 6000
[[scheduler.tables]]
name = "t"
location = "/data/t"
format = "parquet"
[executor]
slots = 3
memory_limit = "1GiB"
"#,
        )
        .unwrap();
        let env = vec![("BALLISTA_EXECUTOR__SLOTS".to_string(), "8".to_string())];
        let s = BallistaSettings::load_with_env(Some(&path), env).unwrap();
        assert_eq!(s.scheduler.port, 6000);
        assert_eq!(s.scheduler.tables[0].format, TableFormat::Parquet);
        assert_eq!(s.executor.slots, 8);
        assert_eq!(s.executor.memory_limit.unwrap().bytes(), 1 << 30);
        assert_eq!(s.executor.port, 50051);
    }

    #[test]
    fn unknown_key_and_bad_value_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[executor]\nslotz = 3\n").unwrap();
        let err = BallistaSettings::load_with_env(Some(&path), vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("slotz"), "{err}");
        std::fs::write(&path, "[executor]\nmemory_limit = \"lots\"\n").unwrap();
        let err = BallistaSettings::load_with_env(Some(&path), vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("lots"), "{err}");
        let err = BallistaSettings::load_with_env(Some(&dir.path().join("missing.toml")), vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
