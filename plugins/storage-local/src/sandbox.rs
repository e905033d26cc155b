//! The rule every local path is held to, in one place: the provider's
//! `check_access` and every request of the store both call [`Sandbox::check`].

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

use ballista::url::Url;

/// Dangling links followed by hand before giving up; the kernel's own limit
/// on links in one lookup is 40, so a longer chain would fail anyway.
const MAX_LINKS: u8 = 40;

/// The folders (or single files) requests must stay under.
#[derive(Debug)]
pub(crate) struct Sandbox {
    /// The roots with every symbolic link resolved: where the data really is.
    /// Resolved request paths are compared with these.
    roots: Vec<PathBuf>,
    /// The roots as configured, made absolute: a root reached through a link
    /// (`/data` -> `/mnt/disk1/data`) is requested by that name, which must
    /// pass the lexical check too.
    named_roots: Vec<PathBuf>,
}

/// A configured root that cannot be used.
#[derive(Debug)]
pub(crate) struct InvalidRoot {
    /// The option's key: `roots[i]`, or `roots` for the implicit current directory.
    pub(crate) key: String,
    /// The root as configured.
    pub(crate) path: PathBuf,
    /// What is wrong with it.
    pub(crate) reason: String,
}

/// A request for a path outside every root. Its message is the whole
/// explanation, so that it survives being wrapped by `object_store` and
/// DataFusion errors.
#[derive(Debug)]
pub(crate) struct Refusal(String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

impl Sandbox {
    /// Resolves the configured roots, which must exist. An empty list means
    /// the current directory, so that leaving the option out never opens
    /// the whole file system.
    pub(crate) fn new(configured: &[PathBuf]) -> Result<Self, InvalidRoot> {
        let implicit = configured.is_empty();
        let configured = if implicit {
            vec![PathBuf::from(".")]
        } else {
            configured.to_vec()
        };
        let mut roots = Vec::with_capacity(configured.len());
        let mut named_roots = Vec::with_capacity(configured.len());
        for (i, root) in configured.iter().enumerate() {
            let invalid = |e: io::Error| InvalidRoot {
                key: if implicit {
                    "roots".to_string()
                } else {
                    format!("roots[{i}]")
                },
                path: root.clone(),
                reason: if implicit {
                    format!(
                        "an empty list means the current directory, which cannot be resolved ({e})"
                    )
                } else {
                    format!("expected an existing folder or file ({e})")
                },
            };
            roots.push(root.canonicalize().map_err(&invalid)?);
            named_roots.push(normalize(&std::path::absolute(root).map_err(&invalid)?));
        }
        Ok(Self { roots, named_roots })
    }

    /// The roots, symbolic links resolved.
    pub(crate) fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The roots as one comma-separated line, for messages.
    pub(crate) fn roots_list(&self) -> String {
        self.roots
            .iter()
            .map(|root| root.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Refuses `path` (absolute) unless both its lexical form and the path
    /// it resolves to through symbolic links lie under a root. `requested`
    /// is how the refusal names the request (defaults to `path`'s URL).
    ///
    /// Only ancestors of `path` (and `path` itself) are stat-ed and links
    /// read; nothing is opened, listed or written.
    pub(crate) fn check(&self, path: &Path, requested: Option<&str>) -> Result<(), Refusal> {
        let lexical = normalize(path);
        let named_inside = path.is_absolute()
            && self
                .named_roots
                .iter()
                .chain(&self.roots)
                .any(|root| lexical.starts_with(root));
        if !named_inside {
            return Err(self.refusal(path, requested, None));
        }
        // The lexical form alone is not enough: a link inside a root may
        // lead anywhere, and `..` after a link climbs from the link's target.
        let resolved = resolve(path, 0);
        if !self.roots.iter().any(|root| resolved.starts_with(root)) {
            return Err(self.refusal(path, requested, Some(&resolved)));
        }
        Ok(())
    }

    fn refusal(&self, path: &Path, requested: Option<&str>, resolved: Option<&Path>) -> Refusal {
        let shown = requested.map_or_else(|| file_url(path), str::to_string);
        let through = resolved
            .map(|r| format!(" (which resolves to {})", r.display()))
            .unwrap_or_default();
        Refusal(format!(
            "{shown}{through} is outside the allowed local folders ({}); \
             add its folder to the roots of [[storage]] kind = \"local\"",
            self.roots_list()
        ))
    }
}

/// `path` as a `file://` URL, the form users wrote it in.
fn file_url(path: &Path) -> String {
    Url::from_file_path(path)
        .map(|url| url.to_string())
        .unwrap_or_else(|()| path.display().to_string())
}

/// `path` with `.` dropped and each `..` popping the component before it,
/// without looking at the file system; `..` above the root stays at the root,
/// as the kernel does.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => normal.push(component),
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            Component::Normal(name) => normal.push(name),
        }
    }
    normal
}

/// Where a request for `path` would really land: the longest ancestor that
/// exists, with its links resolved, followed by the part that does not exist
/// yet (which a write may create, and which cannot hide a link).
fn resolve(path: &Path, links_followed: u8) -> PathBuf {
    for existing in path.ancestors() {
        let rest = path.strip_prefix(existing).unwrap_or(Path::new(""));
        // Any failure (missing, unreadable, a loop) just means: resolve less.
        if let Ok(real) = existing.canonicalize() {
            return normalize(&real.join(rest));
        }
        // A dangling link cannot be canonicalized, but a write through it
        // (or a later one creating its target) lands where it points.
        if links_followed < MAX_LINKS
            && let Ok(target) = std::fs::read_link(existing)
        {
            let base = existing.parent().unwrap_or(existing);
            return resolve(&base.join(target).join(rest), links_followed + 1);
        }
    }
    normalize(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    struct Fixture {
        _dir: tempfile::TempDir,
        base: PathBuf,
        root: PathBuf,
        outside: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        Fixture {
            _dir: dir,
            base,
            root,
            outside,
        }
    }

    #[test]
    fn normalize_drops_dots_and_pops_parents_but_not_past_the_root() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/../../x")), PathBuf::from("/x"));
        assert_eq!(normalize(Path::new("/a/b/")), PathBuf::from("/a/b"));
    }

    #[test]
    fn parent_components_cannot_escape_a_root() {
        let f = fixture();
        let sandbox = Sandbox::new(std::slice::from_ref(&f.root)).unwrap();
        sandbox.check(&f.root.join("sub/new.txt"), None).unwrap();
        sandbox.check(&f.root, None).unwrap();
        let err = sandbox
            .check(&f.root.join("../outside/x"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside the allowed local folders"), "{err}");
        assert!(err.contains(&f.root.display().to_string()), "{err}");
        assert!(err.contains("[[storage]] kind = \"local\""), "{err}");
        // A detour that comes back is fine.
        sandbox.check(&f.root.join("../root/x"), None).unwrap();
        assert!(sandbox.check(&f.base, None).is_err());
        assert!(sandbox.check(&f.outside.join("x"), None).is_err());
        assert!(sandbox.check(Path::new("relative/x"), None).is_err());
    }

    #[test]
    fn a_single_file_root_admits_only_that_file() {
        let f = fixture();
        let file = f.root.join("one.csv");
        fs::write(&file, "a\n1\n").unwrap();
        let sandbox = Sandbox::new(std::slice::from_ref(&file)).unwrap();
        sandbox.check(&file, None).unwrap();
        assert!(sandbox.check(&f.root.join("two.csv"), None).is_err());
    }

    #[test]
    fn a_missing_root_is_named_by_its_index() {
        let f = fixture();
        let err = Sandbox::new(&[f.root.clone(), f.base.join("missing")]).unwrap_err();
        assert_eq!(err.key, "roots[1]");
        assert_eq!(err.path, f.base.join("missing"));
        assert!(
            err.reason.starts_with("expected an existing folder"),
            "{}",
            err.reason
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_root_named_through_a_link_is_reachable_by_both_names() {
        let f = fixture();
        let alias = f.base.join("alias");
        std::os::unix::fs::symlink(&f.root, &alias).unwrap();
        let sandbox = Sandbox::new(std::slice::from_ref(&alias)).unwrap();
        assert_eq!(sandbox.roots(), std::slice::from_ref(&f.root));
        sandbox.check(&alias.join("x.csv"), None).unwrap();
        sandbox.check(&f.root.join("x.csv"), None).unwrap();
        assert!(sandbox.check(&f.outside.join("x.csv"), None).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn links_are_judged_by_where_they_point() {
        let f = fixture();
        let sandbox = Sandbox::new(std::slice::from_ref(&f.root)).unwrap();
        fs::write(f.outside.join("secret.txt"), "s").unwrap();
        std::os::unix::fs::symlink(f.outside.join("secret.txt"), f.root.join("file")).unwrap();
        std::os::unix::fs::symlink(&f.outside, f.root.join("folder")).unwrap();
        std::os::unix::fs::symlink(f.outside.join("not-yet"), f.root.join("dangling")).unwrap();
        for escape in [
            "file",
            "folder",
            "folder/new.txt",
            "dangling",
            "dangling/new.txt",
        ] {
            let err = sandbox
                .check(&f.root.join(escape), None)
                .expect_err(escape)
                .to_string();
            assert!(err.contains("which resolves to"), "{escape}: {err}");
        }
        // `..` after a link climbs from the link's target, as the kernel does.
        fs::create_dir_all(f.outside.join("deeper")).unwrap();
        std::os::unix::fs::symlink(f.outside.join("deeper"), f.root.join("deep")).unwrap();
        assert!(
            sandbox
                .check(&f.root.join("deep/../secret.txt"), None)
                .is_err()
        );
        // Links that stay inside are fine.
        fs::write(f.root.join("real.txt"), "r").unwrap();
        std::os::unix::fs::symlink(f.root.join("real.txt"), f.root.join("alias.txt")).unwrap();
        sandbox.check(&f.root.join("alias.txt"), None).unwrap();
    }
}
