//! Tests of the `store` module.

use super::*;
use ballista::BallistaError;
use ballista::proto::ErrorKind;

fn errors() -> BucketErrors {
    BucketErrors::new("s3://bucket", "us-east-1", Some("http://169.254.169.254"))
}

fn generic(message: &str) -> Error {
    Error::Generic {
        store: "S3",
        source: message.to_string().into(),
    }
}

#[test]
fn not_found_keeps_its_kind_and_names_the_bucket() {
    let wrapped = errors().wrap(
        Error::NotFound {
            path: "data/x.parquet".into(),
            source: "Server returned non-2xx status code: 404 Not Found".into(),
        },
        None,
    );
    assert!(
        matches!(&wrapped, Error::NotFound { path, .. } if path == "s3://bucket/data/x.parquet"),
        "{wrapped:?}"
    );
    assert!(wrapped.to_string().contains("404 Not Found"), "{wrapped}");
    assert_eq!(BallistaError::from(wrapped).kind(), ErrorKind::NotFound);
}

#[test]
fn refused_credentials_stay_permission_errors() {
    let prefix = Path::from("logs/2024");
    let wrapped = errors().wrap(
        generic(
            "Error performing list request: Error performing GET https://s3.amazonaws.com/bucket \
             in 10ms - Server returned non-2xx status code: 403 Forbidden: <Code>AccessDenied</Code>",
        ),
        Some(&prefix),
    );
    assert!(
        matches!(&wrapped, Error::PermissionDenied { path, .. } if path == "s3://bucket/logs/2024"),
        "{wrapped:?}"
    );
    assert!(wrapped.to_string().contains("AccessDenied"), "{wrapped}");
    assert_eq!(
        BallistaError::from(wrapped).kind(),
        ErrorKind::PermissionDenied
    );

    let wrapped = errors().wrap(
        generic("Server returned non-2xx status code: 401 Unauthorized: "),
        None,
    );
    assert!(
        matches!(&wrapped, Error::Unauthenticated { path, .. } if path == "s3://bucket"),
        "{wrapped:?}"
    );

    let kept = errors().wrap(
        Error::PermissionDenied {
            path: "k".into(),
            source: "403 Forbidden".into(),
        },
        None,
    );
    assert!(
        matches!(&kept, Error::PermissionDenied { path, .. } if path == "s3://bucket/k"),
        "{kept:?}"
    );
}

#[test]
fn other_errors_name_the_bucket_and_the_cause() {
    let key = Path::from("a/b.csv");
    let wrapped = errors().wrap(
        generic("Server returned non-2xx status code: 500 Internal Server Error: oops"),
        Some(&key),
    );
    let text = wrapped.to_string();
    assert!(matches!(wrapped, Error::Generic { .. }), "{wrapped:?}");
    assert!(text.contains("s3://bucket/a/b.csv: "), "{text}");
    assert!(text.contains("500 Internal Server Error"), "{text}");
    assert!(StdError::source(&wrapped).is_some());

    let wrapped = errors().wrap(
        generic(
            "Error performing PUT http://169.254.169.254/latest/api/token - error sending request",
        ),
        None,
    );
    assert!(wrapped.to_string().contains("access_key_id"), "{wrapped}");

    let wrapped = errors().wrap(
        generic(
            "Received redirect without LOCATION, this normally indicates an incorrectly configured region",
        ),
        None,
    );
    assert!(
        wrapped.to_string().contains("region us-east-1"),
        "{wrapped}"
    );
}

#[test]
fn status_codes_are_read_from_messages() {
    assert_eq!(
        http_status("x - Server returned non-2xx status code: 403 Forbidden: body"),
        Some(403)
    );
    assert_eq!(http_status("connection refused"), None);
    assert_eq!(http_status("status code: 4"), None);
}
