//! Loading settings: built-in defaults < TOML file < `BALLISTA_…` environment
//! variables (`__` separates nesting levels) < command-line flags (applied by
//! the binaries).

use std::path::Path;

use config::{Config, Environment, File, FileFormat};

use super::BallistaSettings;
use super::secret::{is_secret_key, scrub_values};
use crate::error::{BallistaError, Result};

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "BALLISTA";

/// The environment variable that sets a key path such as `executor.slots`
/// (`BALLISTA_EXECUTOR__SLOTS`).
pub fn env_var_for(key_path: &str) -> String {
    format!(
        "{ENV_PREFIX}_{}",
        key_path.replace('.', "__").to_ascii_uppercase()
    )
}

impl BallistaSettings {
    /// Loads settings from an optional TOML file and the process environment,
    /// then [validates](Self::validate) them.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`load`](Self::load) with an explicit environment (for tests).
    ///
    /// Errors are [`BallistaError::Configuration`] naming the key path, the
    /// offending value (unless it is a secret), what was expected and where
    /// the value came from.
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        // Every setting is nested (`BALLISTA_SCHEDULER__PORT`): a variable
        // without `__` is not one (BALLISTA_HOME, BALLISTA_PASSWORD,
        // BALLISTA_INSECURE are read by the processes themselves).
        let vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}_")) && k.contains("__"))
            .collect();
        let sources = Sources { file, vars: &vars };
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
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(vars.iter().cloned().collect())),
        );
        let merged = builder
            .build()
            .and_then(|c| c.try_deserialize::<serde_json::Value>())
            .map_err(|e| sources.error(e.to_string()))?;
        let settings: BallistaSettings = serde_path_to_error::deserialize(merged).map_err(|e| {
            let path = full_key_path(&e);
            let message = e.inner().to_string();
            sources.error(format!("{path}: {message}{}", sources.origin(&path)))
        })?;
        settings.validate().map_err(|invalid| {
            sources.error(format!("{invalid}{}", sources.origin(&invalid.key_path)))
        })?;
        Ok(settings)
    }
}

/// The key path of a deserialization error. For an unknown key serde stops
/// at the table holding it, so the key's own name is appended.
pub(crate) fn full_key_path(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let mut path = error.path().to_string();
    if path == "." {
        path.clear();
    }
    let message = error.inner().to_string();
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some(field) = rest.split('`').next()
        && !path.ends_with(field)
    {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(field);
    }
    if path.is_empty() {
        "(top level)".into()
    } else {
        path
    }
}

/// Where settings came from, to say where a bad value was set and to scrub
/// secret values from messages.
struct Sources<'a> {
    file: Option<&'a Path>,
    vars: &'a [(String, String)],
}

impl Sources<'_> {
    /// ` (set by BALLISTA_X)` or ` (in FILE)` for a key path.
    fn origin(&self, key_path: &str) -> String {
        let var = env_var_for(key_path);
        if self.vars.iter().any(|(k, _)| k.eq_ignore_ascii_case(&var)) {
            format!(" (set by environment variable {var})")
        } else if let Some(file) = self.file {
            format!(" (in {})", file.display())
        } else {
            String::new()
        }
    }

    /// A configuration error whose message holds no secret value: the
    /// values of secret-looking keys in the file and the environment are
    /// replaced wherever they appear (a TOML syntax error quotes its line).
    fn error(&self, message: String) -> BallistaError {
        let mut secrets: Vec<String> = self
            .vars
            .iter()
            .filter(|(k, _)| is_secret_key(k))
            .map(|(_, v)| v.clone())
            .collect();
        if let Some(text) = self.file.and_then(|f| std::fs::read_to_string(f).ok()) {
            for line in text.lines() {
                if let Some((key, value)) = line.split_once('=')
                    && is_secret_key(key.trim())
                {
                    secrets.push(value.trim().trim_matches(['"', '\'']).to_string());
                }
            }
        }
        let message = scrub_values(message, secrets.iter().map(String::as_str));
        BallistaError::Configuration(message)
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
        // Variables without `__` are the processes' own, not settings.
        let env = vec![
            ("BALLISTA_EXECUTOR__SLOTS".to_string(), "8".to_string()),
            ("BALLISTA_PASSWORD".to_string(), "s3cret".to_string()),
            ("BALLISTA_HOME".to_string(), "/tmp/b".to_string()),
            ("BALLISTA_INSECURE".to_string(), "true".to_string()),
        ];
        let s = BallistaSettings::load_with_env(Some(&path), env).unwrap();
        assert_eq!(s.scheduler.port, 6000);
        assert_eq!(s.scheduler.tables[0].format, TableFormat::Parquet);
        assert_eq!(s.executor.slots, 8);
        assert_eq!(s.executor.memory_limit.unwrap().of(0), 1 << 30);
        assert_eq!(s.executor.port, 50051);
    }

    fn load_error(toml: &str, env: Vec<(&str, &str)>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        let env = env.into_iter().map(|(k, v)| (k.to_string(), v.to_string()));
        match BallistaSettings::load_with_env(Some(&path), env) {
            Err(BallistaError::Configuration(message)) => message,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_key_path_the_value_and_the_source() {
        let err = load_error("[executor]\nslotz = 3\n", vec![]);
        assert!(
            err.starts_with("executor.slotz: unknown field `slotz`"),
            "{err}"
        );
        assert!(err.contains("c.toml"), "{err}");
        let err = load_error("[bogus]\nx = 1\n", vec![]);
        assert!(err.starts_with("bogus: unknown field `bogus`"), "{err}");
        let err = load_error("[executor]\nmemory_limit = \"lots\"\n", vec![]);
        assert!(
            err.starts_with("executor.memory_limit: invalid byte size \"lots\""),
            "{err}"
        );
        let err = load_error("[executor]\nmemory_limit = true\n", vec![]);
        assert!(err.contains("expected a byte size"), "{err}");
        let err = load_error(
            "[[scheduler.tables]]\nname = \"t\"\nlocation = \"/t\"\nformat = \"xls\"\n",
            vec![],
        );
        assert!(
            err.starts_with("scheduler.tables[0].format: unknown variant `xls`"),
            "{err}"
        );
        let err = load_error("", vec![("BALLISTA_EXECUTOR__PORT", "high")]);
        assert!(
            err.starts_with("executor.port: invalid type: string \"high\""),
            "{err}"
        );
        assert!(
            err.contains("environment variable BALLISTA_EXECUTOR__PORT"),
            "{err}"
        );
        let err = load_error("[scheduler]\ntask_max_attempts = 0\n", vec![]);
        assert!(
            err.starts_with("scheduler.task_max_attempts = 0: expected at least 1"),
            "{err}"
        );
        let err = load_error(
            "[[scheduler.tables]]\nname = \"t\"\nlocation = \"/t\"\nformat = \"csv\"\n[[scheduler.tables]]\nname = \"T\"\nlocation = \"/u\"\nformat = \"csv\"\n",
            vec![],
        );
        assert!(err.contains("scheduler.tables[1].name = \"T\""), "{err}");
        let missing =
            BallistaSettings::load_with_env(Some(Path::new("/nonexistent/x.toml")), vec![])
                .unwrap_err()
                .to_string();
        assert!(missing.contains("does not exist"), "{missing}");
    }

    #[test]
    fn secret_values_are_scrubbed_from_errors() {
        let err = load_error(
            "[shuffle]\nsecret_access_key = \"AKIAVALUE\nx = 1\n",
            vec![],
        );
        assert!(!err.contains("AKIAVALUE"), "{err}");
        let err = load_error(
            "",
            vec![
                ("BALLISTA_SCHEDULER__PORT", "hunter22"),
                ("BALLISTA_SCHEDULER__AUTH_TOKEN", "hunter22"),
            ],
        );
        assert!(!err.contains("hunter22"), "{err}");
    }
}
