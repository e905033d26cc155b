//! Builds the `AmazonS3` client of one bucket from its merged settings.
//!
//! The builder starts from the standard `AWS_*` environment variables
//! ([`AmazonS3Builder::from_env`]); every option the configuration sets is
//! applied on top, so the configuration wins over the environment. Building
//! performs no network I/O: credentials are fetched on the first request.

use std::sync::Arc;
use std::time::Duration;

use ballista::url::Url;
use ballista::{BallistaError, Result};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsCredential};
use object_store::{ClientConfigKey, RetryConfig, StaticCredentialProvider};

use crate::options::{
    BUCKET_PLACEHOLDER, DEFAULT_CONNECT_TIMEOUT_SECS, DEFAULT_MAX_RETRIES,
    DEFAULT_REQUEST_TIMEOUT_SECS, DEFAULT_RETRY_TIMEOUT_SECS, S3Settings,
};

/// Where the EC2 instance metadata service is, unless
/// `AWS_METADATA_ENDPOINT` says otherwise.
const DEFAULT_METADATA_ENDPOINT: &str = "http://169.254.169.254";

/// A bucket's client, and what it was built with (for logs and errors;
/// never a credential).
pub(crate) struct BucketClient {
    /// The S3 client, bound to the bucket.
    pub store: AmazonS3,
    /// The effective region.
    pub region: String,
    /// The effective endpoint, without any user info; `None` for AWS.
    pub endpoint: Option<String>,
    /// Where credentials come from, in words.
    pub credentials: &'static str,
    /// The instance metadata endpoint, when credentials come from it.
    pub metadata_endpoint: Option<String>,
}

/// Builds the client of `bucket` from its merged `settings`.
pub(crate) fn build(bucket: &str, settings: &S3Settings) -> Result<BucketClient> {
    let s = settings;
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(region) = &s.region {
        builder = builder.with_region(region.clone());
    }
    if let Some(endpoint) = &s.endpoint {
        let endpoint = endpoint.replace(BUCKET_PLACEHOLDER, bucket);
        // `AWS_ENDPOINT_URL_S3` from the environment would take precedence
        // over `with_endpoint`: set both so that the configuration wins.
        builder = builder
            .with_endpoint(endpoint.clone())
            .with_config(AmazonS3ConfigKey::S3Endpoint, endpoint);
    }
    if let Some(allow_http) = s.allow_http {
        builder = builder.with_allow_http(allow_http);
    }
    if let Some(virtual_hosted) = s.virtual_hosted_style {
        builder = builder.with_virtual_hosted_style_request(virtual_hosted);
    }
    if let Some(skip_signature) = s.skip_signature {
        builder = builder.with_skip_signature(skip_signature);
    }
    let static_keys = match (&s.access_key_id, &s.secret_access_key) {
        (Some(key_id), Some(secret_key)) => {
            // An explicit provider, rather than `with_access_key_id`, so that
            // a stray AWS_SESSION_TOKEN in the environment is never paired
            // with the configured keys.
            let credential = AwsCredential {
                key_id: key_id.expose().to_string(),
                secret_key: secret_key.expose().to_string(),
                token: s.session_token.as_ref().map(|t| t.expose().to_string()),
            };
            builder = builder.with_credentials(Arc::new(StaticCredentialProvider::new(credential)));
            true
        }
        _ => false,
    };
    // Through `with_config`, not `with_client_options`, which would drop the
    // client options read from the environment (proxy, AWS_ALLOW_HTTP, …).
    let seconds = |value: Option<u64>, default: u64| format!("{}s", value.unwrap_or(default));
    builder = builder
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            seconds(s.connect_timeout_secs, DEFAULT_CONNECT_TIMEOUT_SECS),
        )
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
            seconds(s.request_timeout_secs, DEFAULT_REQUEST_TIMEOUT_SECS),
        );
    let retry = RetryConfig {
        max_retries: s.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
        retry_timeout: Duration::from_secs(
            s.retry_timeout_secs.unwrap_or(DEFAULT_RETRY_TIMEOUT_SECS),
        ),
        ..RetryConfig::default()
    };
    builder = builder.with_retry(retry);

    let region = builder
        .get_config_value(&AmazonS3ConfigKey::Region)
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".to_string());
    let endpoint = builder
        .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
        .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint))
        .map(|e| without_user_info(&e));
    let credentials = credential_source(&builder, static_keys);
    let metadata_endpoint = (credentials == INSTANCE_METADATA).then(|| {
        builder
            .get_config_value(&AmazonS3ConfigKey::MetadataEndpoint)
            .unwrap_or_else(|| DEFAULT_METADATA_ENDPOINT.to_string())
    });

    let store = builder.build().map_err(|e| {
        BallistaError::Configuration(format!(
            "s3://{bucket}: cannot create the S3 client (region {region}, endpoint {}): {e}",
            endpoint.as_deref().unwrap_or("AWS")
        ))
    })?;
    tracing::debug!(
        bucket,
        region = %region,
        endpoint = endpoint.as_deref().unwrap_or("AWS"),
        credentials,
        "created S3 client"
    );
    Ok(BucketClient {
        store,
        region,
        endpoint,
        credentials,
        metadata_endpoint,
    })
}

const INSTANCE_METADATA: &str = "EC2 instance metadata";

/// Which link of the credential chain the built client will use, following
/// the order of `AmazonS3Builder::build`.
fn credential_source(builder: &AmazonS3Builder, static_keys: bool) -> &'static str {
    let set = |key: AmazonS3ConfigKey| {
        builder
            .get_config_value(&key)
            .is_some_and(|v| !v.is_empty())
    };
    let skip_signature = builder
        .get_config_value(&AmazonS3ConfigKey::SkipSignature)
        .is_some_and(|v| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "1" | "true" | "on" | "yes" | "y"
            )
        });
    if skip_signature {
        "none (unsigned requests, skip_signature)"
    } else if static_keys {
        "static keys from the configuration"
    } else if set(AmazonS3ConfigKey::AccessKeyId) || set(AmazonS3ConfigKey::SecretAccessKey) {
        "static keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
    } else if set(AmazonS3ConfigKey::WebIdentityTokenFile) && set(AmazonS3ConfigKey::RoleArn) {
        "web identity (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)"
    } else if set(AmazonS3ConfigKey::ContainerCredentialsRelativeUri) {
        "ECS container credentials"
    } else if set(AmazonS3ConfigKey::ContainerCredentialsFullUri)
        && set(AmazonS3ConfigKey::ContainerAuthorizationTokenFile)
    {
        "EKS pod identity"
    } else {
        INSTANCE_METADATA
    }
}

/// `endpoint` without a user name or password, for logs and errors.
fn without_user_info(endpoint: &str) -> String {
    match Url::parse(endpoint) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Ok(_) => endpoint.to_string(),
        Err(_) if endpoint.contains('@') => "(unparseable endpoint)".to_string(),
        Err(_) => endpoint.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_removed_from_shown_endpoints() {
        assert_eq!(
            without_user_info("https://user:hunter22@s3.example.com/"),
            "https://s3.example.com/"
        );
        assert_eq!(
            without_user_info("http://127.0.0.1:9000"),
            "http://127.0.0.1:9000"
        );
    }
}
