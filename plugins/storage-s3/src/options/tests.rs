//! Tests of the `options` module.

use super::*;
use ballista::BallistaError;
use ballista::config::BallistaSettings;
use ballista::serde_json::{self, Value, json};

fn parse(value: Value) -> std::result::Result<S3StorageOptions, String> {
    serde_json::from_value(value).map_err(|e| e.to_string())
}

fn check(value: Value) -> std::result::Result<S3StorageOptions, String> {
    let options = parse(value)?;
    let settings = BallistaSettings::default();
    let context = PluginContext {
        settings: &settings,
        key_path: "storage[0]".into(),
    };
    match options.validate(&context) {
        Ok(()) => Ok(options),
        Err(BallistaError::Configuration(message)) => Err(message),
        Err(other) => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn defaults_and_bucket_overrides_merge() {
    let options = check(json!({
        "region": "us-east-1",
        "endpoint": "http://127.0.0.1:9000",
        "allow_http": true,
        "access_key_id": "AKIADEFAULT",
        "secret_access_key": "default-secret-value",
        "session_token": "default-token-value",
        "max_retries": 5,
        "buckets": {
            "logs": { "region": "eu-west-1", "request_timeout_secs": 120 },
            "other": {
                "endpoint": "https://s3.example.com",
                "access_key_id": "AKIAOTHER",
                "secret_access_key": "other-secret-value"
            }
        }
    }))
    .unwrap();
    let logs = options.settings_for("logs");
    assert_eq!(logs.region.as_deref(), Some("eu-west-1"));
    assert_eq!(logs.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(logs.request_timeout_secs, Some(120));
    assert_eq!(
        logs.connect_timeout_secs,
        Some(DEFAULT_CONNECT_TIMEOUT_SECS)
    );
    assert_eq!(logs.max_retries, Some(5));
    assert_eq!(logs.retry_timeout_secs, Some(DEFAULT_RETRY_TIMEOUT_SECS));
    assert_eq!(logs.access_key_id.unwrap().expose(), "AKIADEFAULT");
    assert_eq!(logs.session_token.unwrap().expose(), "default-token-value");

    // Credentials are overridden as a unit: no default token with other keys.
    let other = options.settings_for("other");
    assert_eq!(other.access_key_id.unwrap().expose(), "AKIAOTHER");
    assert!(other.session_token.is_none());
    assert_eq!(other.endpoint.as_deref(), Some("https://s3.example.com"));
    assert_eq!(other.region.as_deref(), Some("us-east-1"));

    assert_eq!(options.settings_for("unlisted"), options.defaults());
}

#[test]
fn empty_table_takes_the_documented_defaults() {
    let options = check(json!({})).unwrap();
    let s = options.defaults();
    assert_eq!(s.connect_timeout_secs, Some(5));
    assert_eq!(s.request_timeout_secs, Some(60));
    assert_eq!(s.max_retries, Some(3));
    assert_eq!(s.retry_timeout_secs, Some(30));
    assert!(s.region.is_none() && s.endpoint.is_none() && s.access_key_id.is_none());
}

#[test]
fn half_given_static_keys_are_refused_by_name() {
    let err = check(json!({ "access_key_id": "AKIAONLY" })).unwrap_err();
    assert!(err.starts_with("storage[0].secret_access_key"), "{err}");
    assert!(!err.contains("AKIAONLY"), "{err}");

    let err = check(json!({ "secret_access_key": "only-the-secret" })).unwrap_err();
    assert!(err.starts_with("storage[0].access_key_id"), "{err}");
    assert!(!err.contains("only-the-secret"), "{err}");

    let err = check(json!({
        "buckets": { "b1": { "secret_access_key": "bucket-secret-value" } }
    }))
    .unwrap_err();
    assert!(
        err.starts_with("storage[0].buckets.b1.access_key_id"),
        "{err}"
    );
    assert!(!err.contains("bucket-secret-value"), "{err}");

    let err = check(json!({ "session_token": "lonely-token" })).unwrap_err();
    assert!(err.starts_with("storage[0].session_token"), "{err}");
    assert!(!err.contains("lonely-token"), "{err}");
}

#[test]
fn http_endpoint_needs_allow_http() {
    let err = check(json!({ "endpoint": "http://127.0.0.1:9000" })).unwrap_err();
    assert!(err.starts_with("storage[0].endpoint"), "{err}");
    assert!(err.contains("allow_http = true"), "{err}");
    check(json!({ "endpoint": "http://127.0.0.1:9000", "allow_http": true })).unwrap();

    let err = check(json!({
        "buckets": { "local": { "endpoint": "http://minio:9000" } }
    }))
    .unwrap_err();
    assert!(
        err.starts_with("storage[0].buckets.local.endpoint"),
        "{err}"
    );

    let err = check(json!({ "endpoint": "ftp://example.com" })).unwrap_err();
    assert!(err.contains("http:// or https://"), "{err}");
    let err = check(json!({ "endpoint": "not a url" })).unwrap_err();
    assert!(err.starts_with("storage[0].endpoint"), "{err}");
    let err = check(json!({ "endpoint": "https://user:hunter22@s3.example.com" })).unwrap_err();
    assert!(!err.contains("hunter22"), "{err}");
}

#[test]
fn virtual_hosted_endpoint_for_any_bucket_needs_the_placeholder() {
    let err = check(json!({
        "endpoint": "https://s3.example.com",
        "virtual_hosted_style": true
    }))
    .unwrap_err();
    assert!(err.contains("{bucket}"), "{err}");
    check(json!({
        "endpoint": "https://{bucket}.s3.example.com",
        "virtual_hosted_style": true,
        "buckets": { "mine": { "endpoint": "https://mine.s3.example.com" } }
    }))
    .unwrap();
}

#[test]
fn zero_timeouts_bad_bucket_names_and_unknown_options_are_refused() {
    let err = check(json!({ "request_timeout_secs": 0 })).unwrap_err();
    assert!(
        err.starts_with("storage[0].request_timeout_secs = 0"),
        "{err}"
    );
    let err = check(json!({ "buckets": { "b": { "retry_timeout_secs": 0 } } })).unwrap_err();
    assert!(
        err.starts_with("storage[0].buckets.b.retry_timeout_secs"),
        "{err}"
    );
    check(json!({ "max_retries": 0 })).unwrap();

    let err = check(json!({ "buckets": { "a/b": {} } })).unwrap_err();
    assert!(err.starts_with("storage[0].buckets.a/b"), "{err}");
    let err = check(json!({ "buckets": { "": {} } })).unwrap_err();
    assert!(err.contains("bucket name"), "{err}");

    let err = parse(json!({ "regoin": "eu-west-1" })).unwrap_err();
    assert!(err.contains("unknown field `regoin`"), "{err}");
    let err = parse(json!({ "buckets": { "b": { "buckets": {} } } })).unwrap_err();
    assert!(err.contains("unknown field `buckets`"), "{err}");
}

#[test]
fn secrets_never_show_in_debug() {
    let options = parse(json!({
        "access_key_id": "AKIAVISIBLE0",
        "secret_access_key": "very-secret-value",
        "session_token": "very-secret-token",
        "buckets": { "b": {
            "access_key_id": "AKIAVISIBLE1",
            "secret_access_key": "bucket-secret-value"
        } }
    }))
    .unwrap();
    let shown = format!("{options:?} {:?}", options.settings_for("b"));
    for secret in [
        "AKIAVISIBLE0",
        "very-secret-value",
        "very-secret-token",
        "AKIAVISIBLE1",
        "bucket-secret-value",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}
