//! The checked-in list of what the cluster run of the suite leaves out, and
//! why (`tests/sqllogictest/exclusions.toml`).

use std::path::Path;

use serde::Deserialize;

/// Files, records and kinds of statement left out of the cluster run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusions {
    /// Whole files (or folders, with a trailing `/`), relative to `test_files/`.
    #[serde(default)]
    pub files: Vec<ExcludedFile>,
    /// Single records, as `file.slt:line`.
    #[serde(default)]
    pub records: Vec<ExcludedRecord>,
    /// Every record whose statement starts with a keyword.
    #[serde(default)]
    pub statements: Vec<ExcludedStatement>,
}

/// A file or folder left out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludedFile {
    /// Path relative to `test_files/`; a folder ends with `/`.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// One record left out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludedRecord {
    /// `file.slt:line`, the file relative to `test_files/`.
    pub at: String,
    /// Why.
    pub reason: String,
}

/// Records whose statement starts with `starts_with` (case-insensitive,
/// after leading comments and blanks).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludedStatement {
    /// The leading keyword, e.g. `EXPLAIN`.
    pub starts_with: String,
    /// Why.
    pub reason: String,
}

impl Exclusions {
    /// Reads and checks the list.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let list: Exclusions =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for (what, reason) in list
            .files
            .iter()
            .map(|f| (&f.path, &f.reason))
            .chain(list.records.iter().map(|r| (&r.at, &r.reason)))
            .chain(list.statements.iter().map(|s| (&s.starts_with, &s.reason)))
        {
            if reason.trim().is_empty() {
                return Err(format!(
                    "{}: '{what}' is excluded without a reason",
                    path.display()
                ));
            }
        }
        Ok(list)
    }

    /// Why the file is left out, if it is.
    pub fn file(&self, relative: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|f| {
                if f.path.ends_with('/') {
                    relative.starts_with(&f.path)
                } else {
                    relative == f.path
                }
            })
            .map(|f| f.reason.as_str())
    }

    /// Why the record at `at` (`file.slt:line`) with statement `sql` is left
    /// out, if it is.
    pub fn record(&self, at: &str, sql: &str) -> Option<&str> {
        if let Some(r) = self.records.iter().find(|r| r.at == at) {
            return Some(&r.reason);
        }
        let statement = strip_leading_comments(sql);
        self.statements
            .iter()
            .find(|s| {
                statement
                    .get(..s.starts_with.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(&s.starts_with))
            })
            .map(|s| s.reason.as_str())
    }

    /// Whether a record exclusion names exactly this record (not a rule).
    pub fn names_record(&self, at: &str) -> bool {
        self.records.iter().any(|r| r.at == at)
    }
}

fn strip_leading_comments(sql: &str) -> &str {
    let mut rest = sql.trim_start();
    while let Some(after) = rest.strip_prefix("--") {
        rest = after
            .split_once('\n')
            .map_or("", |(_, tail)| tail)
            .trim_start();
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_files_records_and_statements() {
        let list: Exclusions = toml::from_str(
            r#"
            [[files]]
            path = "spark/"
            reason = "r1"
            [[files]]
            path = "avro.slt"
            reason = "r2"
            [[records]]
            at = "window.slt:10"
            reason = "r3"
            [[statements]]
            starts_with = "explain"
            reason = "r4"
            "#,
        )
        .unwrap();
        assert_eq!(list.file("spark/math/abs.slt"), Some("r1"));
        assert_eq!(list.file("avro.slt"), Some("r2"));
        assert_eq!(list.file("avro2.slt"), None);
        assert_eq!(list.record("window.slt:10", "select 1"), Some("r3"));
        assert_eq!(
            list.record("a.slt:1", "-- c\n  EXPLAIN select 1"),
            Some("r4")
        );
        assert_eq!(list.record("a.slt:1", "select 'explain'"), None);
    }
}
