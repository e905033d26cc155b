//! Options of `[[storage]] kind = "s3"`: defaults for every bucket, plus
//! per-bucket overrides under `[storage.buckets.<name>]`.

use std::collections::BTreeMap;
use std::fmt;

use ballista::Result;
use ballista::config::Secret;
use ballista::plugin::registry::PluginContext;
use ballista::schemars::JsonSchema;
use ballista::serde::Deserialize;
use ballista::url::Url;

/// Default of [`S3StorageOptions::connect_timeout_secs`].
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 5;
/// Default of [`S3StorageOptions::request_timeout_secs`].
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 60;
/// Default of [`S3StorageOptions::max_retries`].
pub const DEFAULT_MAX_RETRIES: usize = 3;
/// Default of [`S3StorageOptions::retry_timeout_secs`].
pub const DEFAULT_RETRY_TIMEOUT_SECS: u64 = 30;

/// Written in an `endpoint`, replaced by the bucket's name (for
/// virtual-hosted-style servers: `https://{bucket}.s3.example.com`).
pub const BUCKET_PLACEHOLDER: &str = "{bucket}";

/// Options of `[[storage]] kind = "s3"`.
///
/// Every option applies to all buckets; `[storage.buckets.<name>]` overrides
/// any of them for one bucket. Options left out fall back to the standard
/// `AWS_*` environment variables (see the crate documentation for the
/// credential chain), then to the defaults shown.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(crate = "ballista::serde", default, deny_unknown_fields)]
#[schemars(crate = "ballista::schemars")]
pub struct S3StorageOptions {
    /// AWS region of the buckets, e.g. `eu-west-1`. Left out: `AWS_REGION`
    /// or `AWS_DEFAULT_REGION` from the environment, else `us-east-1`.
    /// S3-compatible servers usually accept any value.
    pub region: Option<String>,
    /// URL of an S3-compatible server (MinIO, Ceph, moto, …), e.g.
    /// `http://127.0.0.1:9000`. Left out: `AWS_ENDPOINT_URL_S3` /
    /// `AWS_ENDPOINT_URL` from the environment, else AWS itself. With
    /// `virtual_hosted_style = true` the bucket is part of the host: write
    /// `{bucket}` where it goes, e.g. `https://{bucket}.s3.example.com`.
    pub endpoint: Option<String>,
    /// Allows plain `http://` (unencrypted) endpoints. Must be `true` for an
    /// `http://` endpoint; leave it out or `false` for HTTPS.
    pub allow_http: Option<bool>,
    /// Addresses buckets as `https://<bucket>.<host>/<key>` instead of
    /// `https://<host>/<bucket>/<key>`. Left out: path-style requests (the
    /// S3 client's default, which MinIO and most S3-compatible servers
    /// expect), unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` says otherwise.
    pub virtual_hosted_style: Option<bool>,
    /// Static access key id. Set together with `secret_access_key`, or leave
    /// both out to use the environment's credentials (`AWS_ACCESS_KEY_ID`,
    /// web identity, ECS/EKS container credentials, EC2 instance metadata,
    /// in that order). Never printed; prefer the standard `AWS_…` variables
    /// or an IAM role over keys written into a file (`BALLISTA_…` variables
    /// cannot reach entries of the `[[storage]]` list).
    pub access_key_id: Option<Secret>,
    /// Static secret access key, paired with `access_key_id`. Never printed.
    pub secret_access_key: Option<Secret>,
    /// Session token of temporary static keys (from STS), used only with
    /// `access_key_id` and `secret_access_key`. Never printed.
    pub session_token: Option<Secret>,
    /// Sends unsigned (anonymous) requests, for public buckets. No
    /// credentials are looked up.
    pub skip_signature: Option<bool>,
    /// Seconds allowed to open a connection to the server.
    pub connect_timeout_secs: u64,
    /// Seconds allowed for one request, from connecting until the whole
    /// response body is received. Raise it when large objects are read in
    /// one request over a slow link (Parquet is read in ranges and rarely
    /// needs it).
    pub request_timeout_secs: u64,
    /// Retries of a failed request (server errors, dropped connections,
    /// timeouts) before the query fails. 0 disables retries.
    pub max_retries: usize,
    /// Seconds after a request's first attempt past which it is not retried
    /// any more, so that a query waiting on an unreachable server fails
    /// instead of hanging.
    pub retry_timeout_secs: u64,
    /// Per-bucket overrides, keyed by bucket name:
    /// `[storage.buckets.my-bucket]` takes any option above. The three
    /// credential options are overridden together: a bucket that sets any of
    /// them uses none of the top-level ones.
    pub buckets: BTreeMap<String, S3Settings>,
}

impl Default for S3StorageOptions {
    fn default() -> Self {
        Self {
            region: None,
            endpoint: None,
            allow_http: None,
            virtual_hosted_style: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            skip_signature: None,
            connect_timeout_secs: DEFAULT_CONNECT_TIMEOUT_SECS,
            request_timeout_secs: DEFAULT_REQUEST_TIMEOUT_SECS,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_timeout_secs: DEFAULT_RETRY_TIMEOUT_SECS,
            buckets: BTreeMap::new(),
        }
    }
}

/// Options of one bucket (`[storage.buckets.<name>]`): each one left out
/// takes the top-level option of the same name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(crate = "ballista::serde", default, deny_unknown_fields)]
#[schemars(crate = "ballista::schemars")]
pub struct S3Settings {
    /// AWS region of this bucket, e.g. `eu-west-1`.
    pub region: Option<String>,
    /// URL of the S3-compatible server holding this bucket; `{bucket}` is
    /// replaced by the bucket's name.
    pub endpoint: Option<String>,
    /// Allows a plain `http://` endpoint for this bucket.
    pub allow_http: Option<bool>,
    /// Virtual-hosted-style (`true`) or path-style (`false`) requests.
    pub virtual_hosted_style: Option<bool>,
    /// Static access key id for this bucket, with `secret_access_key`.
    /// Never printed.
    pub access_key_id: Option<Secret>,
    /// Static secret access key for this bucket. Never printed.
    pub secret_access_key: Option<Secret>,
    /// Session token of this bucket's temporary static keys. Never printed.
    pub session_token: Option<Secret>,
    /// Anonymous (unsigned) requests to this public bucket.
    pub skip_signature: Option<bool>,
    /// Seconds allowed to open a connection.
    pub connect_timeout_secs: Option<u64>,
    /// Seconds allowed for one request, response body included.
    pub request_timeout_secs: Option<u64>,
    /// Retries of a failed request; 0 disables retries.
    pub max_retries: Option<usize>,
    /// Seconds after a request's first attempt past which it is not retried.
    pub retry_timeout_secs: Option<u64>,
}

impl S3Settings {
    /// These settings, with every option left out taken from `fallback`.
    /// The credential options (`access_key_id`, `secret_access_key`,
    /// `session_token`) are taken as a unit: from `self` if it sets any of
    /// them, else from `fallback`, so that one bucket's keys are never
    /// paired with another's token.
    pub fn or(self, fallback: S3Settings) -> S3Settings {
        let own_credentials = self.access_key_id.is_some()
            || self.secret_access_key.is_some()
            || self.session_token.is_some();
        let (access_key_id, secret_access_key, session_token) = if own_credentials {
            (
                self.access_key_id,
                self.secret_access_key,
                self.session_token,
            )
        } else {
            (
                fallback.access_key_id,
                fallback.secret_access_key,
                fallback.session_token,
            )
        };
        S3Settings {
            region: self.region.or(fallback.region),
            endpoint: self.endpoint.or(fallback.endpoint),
            allow_http: self.allow_http.or(fallback.allow_http),
            virtual_hosted_style: self.virtual_hosted_style.or(fallback.virtual_hosted_style),
            access_key_id,
            secret_access_key,
            session_token,
            skip_signature: self.skip_signature.or(fallback.skip_signature),
            connect_timeout_secs: self.connect_timeout_secs.or(fallback.connect_timeout_secs),
            request_timeout_secs: self.request_timeout_secs.or(fallback.request_timeout_secs),
            max_retries: self.max_retries.or(fallback.max_retries),
            retry_timeout_secs: self.retry_timeout_secs.or(fallback.retry_timeout_secs),
        }
    }
}

impl S3StorageOptions {
    /// The top-level options as settings: what a bucket without an entry in
    /// `buckets` uses. The numeric options are always set.
    pub fn defaults(&self) -> S3Settings {
        S3Settings {
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            allow_http: self.allow_http,
            virtual_hosted_style: self.virtual_hosted_style,
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            session_token: self.session_token.clone(),
            skip_signature: self.skip_signature,
            connect_timeout_secs: Some(self.connect_timeout_secs),
            request_timeout_secs: Some(self.request_timeout_secs),
            max_retries: Some(self.max_retries),
            retry_timeout_secs: Some(self.retry_timeout_secs),
        }
    }

    /// The settings of `bucket`: its overrides from `buckets` over the
    /// top-level options (see [`S3Settings::or`]).
    pub fn settings_for(&self, bucket: &str) -> S3Settings {
        match self.buckets.get(bucket) {
            Some(overrides) => overrides.clone().or(self.defaults()),
            None => self.defaults(),
        }
    }

    /// Checks every option, top-level and per bucket; errors name the
    /// option's key path (`storage[0].buckets.logs.endpoint`) and never
    /// contain a credential.
    pub fn validate(&self, context: &PluginContext<'_>) -> Result<()> {
        check_settings(&self.defaults(), "", false, context)?;
        for name in self.buckets.keys() {
            let key = format!("buckets.{name}");
            if !is_bucket_name(name) {
                return Err(context.invalid_option(
                    &key,
                    Some(name),
                    "expected a bucket name, as in s3://<bucket>/<path>: not empty, \
                     without '/', ':', '@', '?', '#' or whitespace",
                ));
            }
            check_settings(&self.settings_for(name), &format!("{key}."), true, context)?;
        }
        Ok(())
    }
}

/// Whether `name` can be the host part of `s3://<name>/…`. Deliberately
/// loose: S3-compatible servers accept more than AWS does.
fn is_bucket_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/\\:@?#".contains(c))
}

/// Checks one bucket's effective settings. `prefix` is prepended to every
/// key an error names; `per_bucket` tells whether they belong to a single
/// named bucket (rather than to any bucket).
fn check_settings(
    s: &S3Settings,
    prefix: &str,
    per_bucket: bool,
    context: &PluginContext<'_>,
) -> Result<()> {
    let key = |name: &str| format!("{prefix}{name}");
    if let Some(region) = &s.region
        && region.trim().is_empty()
    {
        return Err(context.invalid_option(
            &key("region"),
            Some(region),
            "expected an AWS region such as us-east-1, or leave the option out",
        ));
    }
    if let Some(endpoint) = &s.endpoint {
        check_endpoint(endpoint, s, &key("endpoint"), per_bucket, context)?;
    }

    // Static keys come in pairs. Values are never passed to the error.
    match (&s.access_key_id, &s.secret_access_key) {
        (Some(_), None) => {
            return Err(context.invalid_option(
                &key("secret_access_key"),
                None,
                "missing: access_key_id is set, so secret_access_key must be too \
                 (give both static keys, or neither to use the environment's credentials)",
            ));
        }
        (None, Some(_)) => {
            return Err(context.invalid_option(
                &key("access_key_id"),
                None,
                "missing: secret_access_key is set, so access_key_id must be too \
                 (give both static keys, or neither to use the environment's credentials)",
            ));
        }
        _ => {}
    }
    for (name, value) in [
        ("access_key_id", &s.access_key_id),
        ("secret_access_key", &s.secret_access_key),
        ("session_token", &s.session_token),
    ] {
        if value.as_ref().is_some_and(Secret::is_empty) {
            return Err(context.invalid_option(
                &key(name),
                None,
                "is empty: give the value, or leave the option out",
            ));
        }
    }
    if s.session_token.is_some() && s.access_key_id.is_none() {
        return Err(context.invalid_option(
            &key("session_token"),
            None,
            "is only used with static keys: set access_key_id and secret_access_key too, \
             or leave it out (AWS_SESSION_TOKEN is read from the environment along with \
             AWS_ACCESS_KEY_ID)",
        ));
    }

    for (name, value) in [
        ("connect_timeout_secs", s.connect_timeout_secs),
        ("request_timeout_secs", s.request_timeout_secs),
        ("retry_timeout_secs", s.retry_timeout_secs),
    ] {
        if value == Some(0) {
            return Err(context.invalid_option(
                &key(name),
                Some(&0u64),
                "expected a positive number of seconds: without a bound, a query \
                 waiting on an unresponsive server would hang",
            ));
        }
    }
    Ok(())
}

fn check_endpoint(
    endpoint: &str,
    s: &S3Settings,
    key: &str,
    per_bucket: bool,
    context: &PluginContext<'_>,
) -> Result<()> {
    // An endpoint with user info may carry a password: never echo it.
    let shown: Option<&dyn fmt::Debug> = if endpoint.contains('@') {
        None
    } else {
        Some(&endpoint)
    };
    let url = Url::parse(&endpoint.replace(BUCKET_PLACEHOLDER, "bucket")).map_err(|e| {
        context.invalid_option(
            key,
            shown,
            format!("expected an http(s) URL such as https://s3.example.com ({e})"),
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(context.invalid_option(
            key,
            None,
            "credentials in the endpoint URL are not supported: \
             set access_key_id and secret_access_key instead",
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if s.allow_http == Some(true) => {}
        "http" => {
            return Err(context.invalid_option(
                key,
                shown,
                "an http:// endpoint sends data and signatures unencrypted: \
                 set allow_http = true to allow it, or use https://",
            ));
        }
        _ => {
            return Err(context.invalid_option(
                key,
                shown,
                "expected an http:// or https:// URL such as https://s3.example.com",
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(context.invalid_option(key, shown, "expected a URL with a host name"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(context.invalid_option(
            key,
            shown,
            "expected a URL without '?query' or '#fragment'",
        ));
    }
    if s.virtual_hosted_style == Some(true) && !per_bucket && !endpoint.contains(BUCKET_PLACEHOLDER)
    {
        return Err(context.invalid_option(
            key,
            shown,
            "with virtual_hosted_style = true the endpoint is the bucket's own address: \
             write {bucket} where the bucket name goes (https://{bucket}.s3.example.com), \
             or give each bucket its endpoint under [storage.buckets.<name>]",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
