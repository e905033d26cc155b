//! Authentication seam: who a client is, and what it is granted.
//!
//! The scheduler calls [`Authenticator::authenticate_password`] when a client
//! logs in with the Arrow Flight handshake (`authorization: Basic …`), and
//! answers with a bearer token the cluster signs. On every later call that
//! carries the token, it calls [`Authenticator::identity`] with the token's
//! user, so that a plugin whose source changes (a directory service) can
//! apply new grants at once and refuse a removed user (the users-file
//! plugin reads its file at start only). A
//! bearer token the cluster did not issue (say, a JWT from the company's
//! identity provider) goes to [`Authenticator::authenticate_token`].
//!
//! What the scheduler does with the [`Identity`]: jobs are owned by its
//! `user` (status, cancel, release and results are the owner's or an
//! admin's); a job's memory tenant and scheduling pool must be among its
//! `tenants` and `pools`.
//!
//! Cluster members (scheduler, executors) and the operator's clients that
//! hold the cluster key do not go through this seam: see [`crate::auth`].
//!
//! The framework default, [`UsersFileAuthenticator`] (TOML `kind =
//! "users-file"`), reads users, argon2 password hashes and grants from a
//! TOML file:
//!
//! ```toml
//! [users.alice]
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"   # ballista users hash
//! tenants = ["analytics"]
//! pools = ["etl"]
//! admin = false
//! ```

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{BallistaError, Result};

/// Who a client is and what it may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The user name; jobs it submits are owned by this name.
    pub user: String,
    /// May see, cancel and release every job, and choose any tenant and pool.
    pub admin: bool,
    /// Memory tenants its jobs may run under; the first is the default.
    /// Empty: its own user name is its only tenant.
    pub tenants: Vec<String>,
    /// Scheduling pools its jobs may be counted in; the first is the
    /// default. Empty: the policy's default pool only.
    pub pools: Vec<String>,
    /// Storage its queries may read: URL prefixes such as `file:///data/`
    /// or `s3://bucket/prefix/` (tables the scheduler's configuration
    /// declares are readable by everyone). An admin reads anything.
    pub read: Vec<String>,
    /// Storage its `COPY` and `INSERT` may write, likewise.
    pub write: Vec<String>,
}

impl Identity {
    /// The cluster's administrator: a client holding the cluster key, or the
    /// client of an embedded cluster.
    pub fn cluster_admin() -> Self {
        Identity {
            user: CLUSTER_ADMIN.into(),
            admin: true,
            tenants: Vec::new(),
            pools: Vec::new(),
            read: Vec::new(),
            write: Vec::new(),
        }
    }

    /// Whether it may `access` (`"read"` or `"write"`) `url`: an admin may
    /// anything; anyone else where a grant of that kind is a prefix of the
    /// URL (same scheme and bucket, and a path under the grant's, compared
    /// by whole segments). A refusal names the user, the URL and the grants.
    pub fn check_storage(&self, url: &url::Url, write: bool) -> Result<()> {
        if self.admin {
            return Ok(());
        }
        let grants = if write { &self.write } else { &self.read };
        if grants.iter().any(|grant| grant_covers(grant, url)) {
            return Ok(());
        }
        let kind = if write { "write" } else { "read" };
        Err(BallistaError::PermissionDenied(format!(
            "user {} may not {kind} {} (its {kind} grants: {})",
            self.user,
            crate::util::loggable(url.as_str()),
            if grants.is_empty() {
                "none".to_string()
            } else {
                grants.join(", ")
            }
        )))
    }

    /// The memory tenant a job runs under: `requested` when granted, else
    /// the first granted tenant; with no tenants granted, a user's own name
    /// (an admin's: none, the memory plugin's default). A tenant not granted
    /// is refused, naming the grants.
    pub fn tenant_for(&self, requested: Option<&str>) -> Result<Option<String>> {
        let own = [self.user.clone()];
        let granted: &[String] = if !self.tenants.is_empty() {
            &self.tenants
        } else if self.admin {
            &[]
        } else {
            &own
        };
        match requested {
            None => Ok(granted.first().cloned()),
            Some(t) if self.admin || granted.iter().any(|g| g == t) => Ok(Some(t.to_string())),
            Some(t) => Err(BallistaError::PermissionDenied(format!(
                "user {} may not run jobs under memory tenant \"{}\" (granted: {})",
                self.user,
                crate::util::loggable(t),
                granted.join(", ")
            ))),
        }
    }

    /// The pool a job is counted in: `requested` when granted, else the
    /// first granted pool (`None`: the policy's default).
    pub fn pool_for(&self, requested: Option<&str>) -> Result<Option<String>> {
        match requested {
            None => Ok(self.pools.first().cloned()),
            Some(p) if self.admin || self.pools.iter().any(|g| g == p) => Ok(Some(p.to_string())),
            Some(p) => Err(BallistaError::PermissionDenied(format!(
                "user {} may not use scheduling pool \"{}\" (granted: {})",
                self.user,
                crate::util::loggable(p),
                if self.pools.is_empty() {
                    "the default pool only".to_string()
                } else {
                    self.pools.join(", ")
                }
            ))),
        }
    }
}

/// Whether the grant URL prefix `grant` covers `url`.
fn grant_covers(grant: &str, url: &url::Url) -> bool {
    let Ok(grant) = url::Url::parse(grant) else {
        return false;
    };
    if grant.scheme() != url.scheme()
        || grant.host_str() != url.host_str()
        || grant.port() != url.port()
    {
        return false;
    }
    let root = grant.path().trim_end_matches('/');
    let path = url.path();
    root.is_empty() || path == root || path.starts_with(&format!("{root}/"))
}

/// The user name of [`Identity::cluster_admin`]; no users-file user may
/// take it.
pub const CLUSTER_ADMIN: &str = "cluster-admin";

/// Decides who a client is. See the [module docs](self) for when each
/// method is called.
#[async_trait]
pub trait Authenticator: Send + Sync + Debug {
    /// The name TOML selects this plugin by, for logs.
    fn name(&self) -> &str;

    /// What the startup log says of this plugin: by default its name. An
    /// operator reads from it whom the cluster will let in.
    fn summary(&self) -> String {
        self.name().to_string()
    }

    /// Checks a user name and password. A wrong password and an unknown
    /// user must give the same [`BallistaError::Unauthenticated`] (no hint
    /// which users exist).
    async fn authenticate_password(&self, user: &str, password: &str) -> Result<Identity>;

    /// The identity of `user`, to whom the cluster issued a token earlier;
    /// [`BallistaError::Unauthenticated`] when the user no longer exists.
    async fn identity(&self, user: &str) -> Result<Identity>;

    /// A bearer token the cluster did not issue. By default every such
    /// token is refused.
    async fn authenticate_token(&self, _token: &str) -> Result<Identity> {
        Err(BallistaError::Unauthenticated(
            "the bearer token was not issued by this cluster; log in with a user name and \
             password (Flight handshake) to get one"
                .into(),
        ))
    }

    /// Reads the plugin's users again (the stock scheduler calls it on
    /// SIGHUP). On an error the users in use must stay. By default there
    /// is nothing to read again.
    fn reload(&self) -> Result<()> {
        Ok(())
    }
}

/// Options of the `users-file` authenticator (`[auth]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsersFileOptions {
    /// TOML file of users (`[users.NAME]` with `password_hash`, `tenants`,
    /// `pools`, `admin`). Unset: no user can log in with a password; only
    /// clients holding the cluster key are served.
    pub users_file: Option<PathBuf>,
}

/// One user of a users file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    password_hash: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    tenants: Vec<String>,
    #[serde(default)]
    pools: Vec<String>,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: BTreeMap<String, UserEntry>,
}

/// Users, argon2 password hashes and grants read from a TOML file at start.
#[derive(Debug)]
pub struct UsersFileAuthenticator {
    users: parking_lot::RwLock<BTreeMap<String, (String, Identity)>>,
    /// The file the users came from, read again by [`Authenticator::reload`].
    path: Option<std::path::PathBuf>,
    /// Logins hash at most this many passwords at once: argon2 is made to be
    /// expensive, and a flood of guesses must not starve the scheduler.
    hashing: Arc<tokio::sync::Semaphore>,
}

impl Default for UsersFileAuthenticator {
    /// No users: only clients holding the cluster key are served.
    fn default() -> Self {
        Self {
            users: parking_lot::RwLock::default(),
            path: None,
            hashing: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_PASSWORD_CHECKS)),
        }
    }
}

/// Longest a login waits for a password check to start.
const LOGIN_QUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Most password checks run at once.
const CONCURRENT_PASSWORD_CHECKS: usize = 2;

/// Whether `name` may be a user name: 1 to 64 letters, digits, `_`, `-`,
/// `.` or `@`.
pub fn is_valid_user_name(name: &str) -> bool {
    crate::ids::is_plain_ascii(name, 64, b"_-.@")
}

impl UsersFileAuthenticator {
    /// Reads `path`; every problem names the file and the user.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            BallistaError::Configuration(format!(
                "auth.users_file: cannot read {}: {e}",
                path.display()
            ))
        })?;
        let mut authenticator = Self::from_toml(&text).map_err(|e| {
            BallistaError::Configuration(format!(
                "auth.users_file {}: {}",
                path.display(),
                e.message()
            ))
        })?;
        authenticator.path = Some(path.to_path_buf());
        Ok(authenticator)
    }

    /// Parses users-file text.
    pub fn from_toml(text: &str) -> Result<Self> {
        let file: UsersFile = toml::from_str(text)
            .map_err(|e| BallistaError::Configuration(e.message().to_string()))?;
        let mut users = BTreeMap::new();
        for (name, entry) in file.users {
            if !is_valid_user_name(&name) || name == CLUSTER_ADMIN {
                return Err(BallistaError::Configuration(format!(
                    "user \"{}\": a user name is 1 to 64 letters, digits, '_', '-', '.' or '@' \
                     (and not {CLUSTER_ADMIN})",
                    crate::util::loggable(&name)
                )));
            }
            PasswordHash::new(&entry.password_hash).map_err(|e| {
                BallistaError::Configuration(format!(
                    "user {name}: password_hash is not an argon2 hash ({e}); make one with \
                     `ballista users hash`"
                ))
            })?;
            for grant in entry.read.iter().chain(&entry.write) {
                url::Url::parse(grant).map_err(|e| {
                    BallistaError::Configuration(format!(
                        "user {name}: storage grant \"{}\" is not a URL such as file:///data/ or \
                         s3://bucket/prefix/ ({e})",
                        crate::util::loggable(grant)
                    ))
                })?;
            }
            let identity = Identity {
                user: name.clone(),
                admin: entry.admin,
                tenants: entry.tenants,
                pools: entry.pools,
                read: entry.read,
                write: entry.write,
            };
            users.insert(name, (entry.password_hash, identity));
        }
        Ok(Self {
            users: parking_lot::RwLock::new(users),
            path: None,
            hashing: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_PASSWORD_CHECKS)),
        })
    }

    /// How many users the file holds.
    pub fn user_count(&self) -> usize {
        self.users.read().len()
    }
}

fn wrong_credentials() -> BallistaError {
    BallistaError::Unauthenticated("wrong user name or password".into())
}

#[async_trait]
impl Authenticator for UsersFileAuthenticator {
    fn name(&self) -> &str {
        "users-file"
    }

    fn summary(&self) -> String {
        match &self.path {
            Some(path) => format!(
                "users-file, {} user(s) from {}",
                self.user_count(),
                path.display()
            ),
            None if self.user_count() > 0 => format!("users-file, {} user(s)", self.user_count()),
            None => "users-file without a users file: only holders of the cluster key are served"
                .to_string(),
        }
    }

    async fn authenticate_password(&self, user: &str, password: &str) -> Result<Identity> {
        let _permit = tokio::time::timeout(LOGIN_QUEUE_TIMEOUT, self.hashing.acquire())
            .await
            .map_err(|_| {
                BallistaError::Unavailable(
                    "too many logins at once (each password check is slow on purpose); try again"
                        .into(),
                )
            })?
            .map_err(|_| BallistaError::Internal("password checks are shut down".into()))?;
        let entry = self.users.read().get(user).cloned();
        let password = password.as_bytes().to_vec();
        // An unknown user costs as much as a known one: no timing hint.
        let hash = entry
            .as_ref()
            .map(|(hash, _)| hash.clone())
            .unwrap_or_else(|| DECOY_HASH.to_string());
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(&password, &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .map_err(|e| BallistaError::Internal(format!("password check failed: {e}")))?;
        match entry {
            Some((_, identity)) if matches => Ok(identity),
            _ => Err(wrong_credentials()),
        }
    }

    async fn identity(&self, user: &str) -> Result<Identity> {
        self.users
            .read()
            .get(user)
            .map(|(_, identity)| identity.clone())
            .ok_or_else(|| {
                BallistaError::Unauthenticated(format!(
                    "user {} is no longer known to this cluster",
                    crate::util::loggable(user)
                ))
            })
    }

    fn reload(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let fresh = Self::from_file(path)?;
        let users = std::mem::take(&mut *fresh.users.write());
        *self.users.write() = users;
        Ok(())
    }
}

/// The hash an unknown user's password is checked against (of a password
/// nobody knows), so that a login for an unknown user takes as long.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0Mh6nMGLrIGA1g9yXc0Hcx3m+8ZGk6yJd3QXcA2cI4o";

/// An argon2id hash of `password` with a fresh salt, in the PHC string form
/// a users file holds.
pub fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| BallistaError::Internal(format!("hashing the password failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn users_log_in_with_their_password_only() {
        let hash = hash_password("s3cret").unwrap();
        let file = format!(
            "[users.alice]\npassword_hash = \"{hash}\"\ntenants = [\"a\", \"b\"]\npools = [\"etl\"]\n"
        );
        let auth = UsersFileAuthenticator::from_toml(&file).unwrap();
        let alice = auth.authenticate_password("alice", "s3cret").await.unwrap();
        assert_eq!(alice.user, "alice");
        assert_eq!(alice.tenants, vec!["a", "b"]);
        for (user, password) in [("alice", "wrong"), ("bob", "s3cret")] {
            let err = auth
                .authenticate_password(user, password)
                .await
                .unwrap_err();
            assert!(
                matches!(&err, BallistaError::Unauthenticated(m) if m == "wrong user name or password"),
                "{err:?}"
            );
        }
        assert!(matches!(
            auth.identity("bob").await,
            Err(BallistaError::Unauthenticated(_))
        ));
        assert_eq!(alice.tenant_for(None).unwrap().as_deref(), Some("a"));
        assert_eq!(alice.tenant_for(Some("b")).unwrap().as_deref(), Some("b"));
        assert_eq!(Identity::cluster_admin().tenant_for(None).unwrap(), None);
        let err = alice.tenant_for(Some("c")).unwrap_err().to_string();
        assert!(
            err.contains("tenant \"c\"") && err.contains("granted: a, b"),
            "{err}"
        );
        assert_eq!(alice.pool_for(None).unwrap().as_deref(), Some("etl"));
        assert!(alice.pool_for(Some("adhoc")).is_err());
    }

    #[test]
    fn the_startup_summary_says_whom_the_cluster_lets_in() {
        let nobody = UsersFileAuthenticator::default().summary();
        assert_eq!(
            nobody,
            "users-file without a users file: only holders of the cluster key are served"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let hash = hash_password("s3cret").unwrap();
        std::fs::write(
            &path,
            format!("[users.alice]\npassword_hash = \"{hash}\"\n"),
        )
        .unwrap();
        let summary = UsersFileAuthenticator::from_file(&path).unwrap().summary();
        assert_eq!(
            summary,
            format!("users-file, 1 user(s) from {}", path.display())
        );
    }

    #[test]
    fn storage_grants_cover_their_prefix_by_whole_segments() {
        let user = Identity {
            user: "u".into(),
            read: vec!["file:///data/".into(), "s3://bucket/team".into()],
            write: vec!["file:///data/out".into()],
            ..Identity::default()
        };
        let url = |s: &str| url::Url::parse(s).unwrap();
        user.check_storage(&url("file:///data/t/a.csv"), false)
            .unwrap();
        user.check_storage(&url("s3://bucket/team/x.parquet"), false)
            .unwrap();
        user.check_storage(&url("file:///data/out/r.csv"), true)
            .unwrap();
        for (u, write) in [
            ("file:///etc/passwd", false),
            ("file:///database/x", false),
            ("file:///data/../etc/passwd", false),
            ("s3://bucket/teamx/y", false),
            ("s3://other/team/x", false),
            ("file:///data/t/a.csv", true),
        ] {
            let err = user.check_storage(&url(u), write).unwrap_err().to_string();
            assert!(
                err.starts_with("permission denied: user u may not"),
                "{u}: {err}"
            );
        }
        Identity::cluster_admin()
            .check_storage(&url("file:///etc/passwd"), true)
            .unwrap();
    }

    #[test]
    fn bad_users_files_name_the_user_and_the_problem() {
        let err = UsersFileAuthenticator::from_toml("[users.\"a b\"]\npassword_hash = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("user \"a b\""), "{err}");
        let err = UsersFileAuthenticator::from_toml("[users.bob]\npassword_hash = \"plain\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("user bob: password_hash is not an argon2 hash"),
            "{err}"
        );
        assert!(PasswordHash::new(DECOY_HASH).is_ok());
    }
}
