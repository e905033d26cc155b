//! `ballista-storage-s3`: `s3://bucket/…` (and `s3a://`) object stores
//! through `object_store`'s S3 client, on AWS or any S3-compatible server
//! (MinIO, Ceph, moto, …).
//!
//! A binary links it with [`register`]; TOML selects it with
//! `[[storage]] kind = "s3"`. Every option is optional:
//!
//! ```toml
//! [[storage]]
//! kind = "s3"
//! region = "us-east-1"                # default: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1
//! endpoint = "http://127.0.0.1:9000"  # an S3-compatible server; default: AWS
//! allow_http = true                   # required for an http:// endpoint
//! virtual_hosted_style = false        # default: path-style requests
//! access_key_id = "…"                 # static keys: both or neither
//! secret_access_key = "…"
//! session_token = "…"                 # with temporary static keys only
//! skip_signature = false              # true: anonymous access to public buckets
//! connect_timeout_secs = 5
//! request_timeout_secs = 60
//! max_retries = 3
//! retry_timeout_secs = 30
//!
//! [storage.buckets.my-other-bucket]   # overrides for one bucket: any option above
//! region = "eu-west-1"
//! endpoint = "https://s3.eu-west-1.amazonaws.com"
//! ```
//!
//! One client is created per bucket, on first use, with the bucket's
//! overrides merged over the top-level options; creating it does no network
//! I/O. Options left out fall back to the standard `AWS_*` environment
//! variables (`AWS_REGION`, `AWS_ENDPOINT_URL_S3`, `AWS_ALLOW_HTTP`, …):
//! the configuration wins over the environment. Timeouts and retries are
//! bounded by default (5 s to connect, 60 s per request, 3 retries within
//! 30 s) so that a query against an unreachable server fails instead of
//! hanging.
//!
//! # Credentials
//!
//! The first of these that is available is used:
//!
//! 1. static keys from the configuration: `access_key_id` and
//!    `secret_access_key` (both or neither), with `session_token` for
//!    temporary keys;
//! 2. static keys from the environment: `AWS_ACCESS_KEY_ID`,
//!    `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`;
//! 3. web identity (EKS IRSA and similar): `AWS_WEB_IDENTITY_TOKEN_FILE`
//!    with `AWS_ROLE_ARN` (`AWS_ROLE_SESSION_NAME`, `AWS_ENDPOINT_URL_STS`
//!    optional);
//! 4. ECS container credentials: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`;
//! 5. EKS pod identity: `AWS_CONTAINER_CREDENTIALS_FULL_URI` with
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`;
//! 6. the EC2 instance metadata service (an instance profile).
//!
//! With `skip_signature = true` requests are sent unsigned and no
//! credentials are looked up. Named profiles and SSO from `~/.aws/config`
//! and `~/.aws/credentials` are **not** supported: reading them needs the
//! AWS SDK, which a future optional cargo feature may bring. Export the
//! profile's keys (`aws configure export-credentials --format env`) instead.
//!
//! Credentials are typed [`Secret`](ballista::config::Secret): they never
//! appear in logs, in `--print-config` or in error messages.
//!
//! # Errors
//!
//! Every error of a store names `s3://<bucket>/<key>` and keeps its kind: a
//! missing object is "not found", refused credentials (HTTP 403/401) are
//! "permission denied", other failures carry the server's status and
//! message.

#![warn(missing_docs)]

mod client;
mod options;
mod store;

use std::sync::Arc;

use ballista::plugin::registry::{PluginContext, PluginRegistry};
use ballista::plugin::storage::ObjectStoreProvider;
use ballista::url::Url;
use ballista::{BallistaError, Result};
use object_store::ObjectStore;

pub use options::{
    BUCKET_PLACEHOLDER, DEFAULT_CONNECT_TIMEOUT_SECS, DEFAULT_MAX_RETRIES,
    DEFAULT_REQUEST_TIMEOUT_SECS, DEFAULT_RETRY_TIMEOUT_SECS, S3Settings, S3StorageOptions,
};

use crate::store::BucketStore;

/// The name TOML selects this plugin by.
pub const KIND: &str = "s3";

/// Serves `s3://<bucket>/…` and `s3a://<bucket>/…` through one S3 client
/// per bucket.
#[derive(Debug)]
pub struct S3Provider {
    options: S3StorageOptions,
}

impl S3Provider {
    /// Checks the options up front (endpoint URLs, paired static keys,
    /// positive timeouts, bucket names); errors name the option's key path
    /// and never contain a credential.
    pub fn new(options: S3StorageOptions, context: &PluginContext<'_>) -> Result<Self> {
        options.validate(context)?;
        Ok(Self { options })
    }

    /// The options the provider was created with.
    pub fn options(&self) -> &S3StorageOptions {
        &self.options
    }
}

impl ObjectStoreProvider for S3Provider {
    fn schemes(&self) -> Vec<String> {
        vec!["s3".to_string(), "s3a".to_string()]
    }

    fn create_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let bucket = bucket_of(url)?;
        let settings = self.options.settings_for(bucket);
        let client = client::build(bucket, &settings)?;
        Ok(Arc::new(BucketStore::new(url.scheme(), bucket, client)))
    }
}

/// The bucket `url` addresses: its host.
fn bucket_of(url: &Url) -> Result<&str> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(BallistaError::InvalidInput(format!(
            "{}: credentials in {}:// URLs are not supported; configure them in the \
             [[storage]] table of kind \"{KIND}\"",
            without_user_info(url),
            url.scheme()
        )));
    }
    let bucket = url.host_str().unwrap_or_default();
    if bucket.is_empty() {
        return Err(BallistaError::InvalidInput(format!(
            "{url}: no bucket name: expected {}://<bucket>/<path>",
            url.scheme()
        )));
    }
    if url.port().is_some() {
        return Err(BallistaError::InvalidInput(format!(
            "{url}: a bucket name has no port: expected {}://<bucket>/<path> (the server \
             is set with the storage option `endpoint`)",
            url.scheme()
        )));
    }
    Ok(bucket)
}

fn without_user_info(url: &Url) -> Url {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown
}

/// Registers the plugin as `kind = "s3"`.
pub fn register(registry: &mut PluginRegistry) {
    registry.register_storage(
        KIND,
        "s3:// (and s3a://) buckets through object_store's S3 client, on AWS or any \
         S3-compatible server (MinIO, Ceph, …).",
        |options: S3StorageOptions, context| Ok(Arc::new(S3Provider::new(options, context)?)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballista::config::{BallistaSettings, PluginSpec};
    use ballista::serde_json::json;

    fn providers(spec: PluginSpec) -> Result<Vec<Arc<dyn ObjectStoreProvider>>> {
        let mut registry = PluginRegistry::empty();
        register(&mut registry);
        let settings = BallistaSettings {
            storage: vec![spec],
            ..BallistaSettings::default()
        };
        registry.storage_providers(&settings)
    }

    fn provider(spec: PluginSpec) -> Arc<dyn ObjectStoreProvider> {
        providers(spec).unwrap().remove(0)
    }

    fn configuration_error<T>(result: Result<T>) -> String {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(BallistaError::Configuration(message)) => message,
            Err(other) => panic!("expected a configuration error, got {other:?}"),
        }
    }

    fn local_server() -> PluginSpec {
        PluginSpec::kind(KIND)
            .with_option("endpoint", "http://127.0.0.1:9")
            .with_option("allow_http", true)
            .with_option("access_key_id", "AKIATESTKEY")
            .with_option("secret_access_key", "test-secret-value")
            .with_option(
                "buckets",
                json!({ "eu": { "region": "eu-west-1", "max_retries": 0 } }),
            )
    }

    #[test]
    fn selected_from_toml_and_serves_s3_schemes() {
        let provider = provider(local_server());
        assert_eq!(provider.schemes(), vec!["s3", "s3a"]);
        let shown = format!("{provider:?}");
        assert!(!shown.contains("test-secret-value"), "{shown}");
        assert!(!shown.contains("AKIATESTKEY"), "{shown}");
    }

    #[test]
    fn configuration_errors_name_the_key() {
        let err = configuration_error(providers(
            PluginSpec::kind(KIND).with_option("regoin", "eu-west-1"),
        ));
        assert!(err.starts_with("storage[0].regoin: unknown field"), "{err}");

        let err = configuration_error(providers(
            PluginSpec::kind(KIND).with_option("access_key_id", "AKIAHALFKEY"),
        ));
        assert!(err.starts_with("storage[0].secret_access_key"), "{err}");
        assert!(!err.contains("AKIAHALFKEY"), "{err}");

        let err = configuration_error(providers(
            PluginSpec::kind(KIND).with_option("endpoint", "http://127.0.0.1:9000"),
        ));
        assert!(err.starts_with("storage[0].endpoint"), "{err}");
        assert!(err.contains("allow_http = true"), "{err}");

        let err = configuration_error(providers(PluginSpec::kind(KIND).with_option(
            "buckets",
            json!({ "b": { "secret_access_key": "bucket-secret-value", "colour": 1 } }),
        )));
        assert!(err.starts_with("storage[0].buckets.b.colour"), "{err}");
        assert!(!err.contains("bucket-secret-value"), "{err}");
    }

    #[test]
    fn urls_without_a_bucket_are_refused() {
        let provider = provider(local_server());
        for url in ["s3:///data/x.parquet", "s3:/data/x.parquet", "s3a://"] {
            let url = Url::parse(url).unwrap();
            match provider.create_store(&url) {
                Err(BallistaError::InvalidInput(message)) => {
                    assert!(message.contains("no bucket name"), "{message}")
                }
                other => panic!("{url}: expected invalid input, got {other:?}"),
            }
        }
        let url = Url::parse("s3://user:url-password@bucket/x").unwrap();
        match provider.create_store(&url) {
            Err(BallistaError::InvalidInput(message)) => {
                assert!(!message.contains("url-password"), "{message}")
            }
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn stores_are_created_per_bucket_without_network() {
        let provider = provider(local_server());
        let store = provider
            .create_store(&Url::parse("s3://my-bucket/data/").unwrap())
            .unwrap();
        assert_eq!(store.to_string(), "S3(my-bucket)");
        let shown = format!("{store:?}");
        assert!(shown.contains("my-bucket"), "{shown}");
        assert!(!shown.contains("AKIATESTKEY"), "{shown}");
        assert!(!shown.contains("test-secret-value"), "{shown}");

        let store = provider
            .create_store(&Url::parse("s3a://eu/").unwrap())
            .unwrap();
        assert!(format!("{store:?}").contains("eu-west-1"), "{store:?}");
    }
}
