//! The S3-compatible test server (`moto_server`, started by
//! `scripts/test.sh`): where it is, buckets, and a client for checking what
//! the cluster wrote.
//!
//! S3 tests never skip: without the server they fail and say how to start it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Keys every test uses; the permissive server accepts any.
pub const ACCESS_KEY: &str = "ballista-test-key";
/// See [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "ballista-test-secret";

const HOW_TO_START: &str = "S3 tests need the test S3 server: run scripts/test.sh, which installs \
and starts moto_server, or start `moto_server -H 127.0.0.1 -p 5000` yourself and set \
TEST_S3_ENDPOINT=http://127.0.0.1:5000 (and, for the wrong-credentials test, a second \
server started with INITIAL_NO_AUTH_ACTION_COUNT=0 in TEST_S3_STRICT_ENDPOINT)";

/// Endpoint of the permissive test server (accepts any signed request).
pub fn endpoint() -> String {
    std::env::var("TEST_S3_ENDPOINT").unwrap_or_else(|_| panic!("{HOW_TO_START}"))
}

/// Endpoint of the server that checks credentials (knows no keys at all, so
/// every request is refused as unauthenticated).
pub fn strict_endpoint() -> String {
    std::env::var("TEST_S3_STRICT_ENDPOINT").unwrap_or_else(|_| panic!("{HOW_TO_START}"))
}

/// Creates `bucket` on the permissive server (an unsigned PUT, which moto
/// accepts for buckets). Existing buckets are fine.
pub fn create_bucket(bucket: &str) {
    let endpoint = endpoint();
    let host = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut stream = TcpStream::connect(&host).unwrap_or_else(|e| {
        panic!("cannot reach the test S3 server at {endpoint}: {e}. {HOW_TO_START}")
    });
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send bucket creation");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response.lines().next().unwrap_or_default().to_string();
    assert!(
        status.contains(" 200") || status.contains("409"),
        "creating bucket {bucket}: {status}"
    );
}

/// A client of `bucket` on the permissive server.
pub fn store(bucket: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .expect("S3 client"),
    )
}

/// Copies every file under `dir` to `bucket` under `prefix`, keeping the
/// relative paths.
pub async fn upload_dir(dir: &Path, bucket: &str, prefix: &str) {
    let store = store(bucket);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path.strip_prefix(dir).expect("under dir");
            let key = format!("{prefix}/{}", relative.display());
            let bytes = std::fs::read(&path).expect("read file");
            store
                .put(&ObjectPath::from(key.as_str()), PutPayload::from(bytes))
                .await
                .unwrap_or_else(|e| panic!("uploading {key}: {e}"));
        }
    }
}

/// Keys under `prefix` in `bucket`, sorted.
pub async fn list(bucket: &str, prefix: &str) -> Vec<String> {
    let store = store(bucket);
    let prefix = ObjectPath::from(prefix);
    let mut keys: Vec<String> = store
        .list(Some(&prefix))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("listing {prefix}: {e}"));
    keys.sort();
    keys
}

/// What the permissive server has logged so far: one line per request
/// (`"PUT /bucket/key HTTP/1.1" 200`). Its path comes from `TEST_S3_LOG`,
/// which the test script sets; a test that needs it fails without it.
pub fn request_log() -> String {
    let path = std::env::var("TEST_S3_LOG").expect(
        "TEST_S3_LOG is not set: run the tests with scripts/test.sh, which starts the S3 test \
         server and names its log",
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading the S3 server log {path}: {e}"))
}

/// The `[[storage]]` table for the permissive server, as TOML.
pub fn storage_toml() -> String {
    format!(
        "[[storage]]\nkind = \"s3\"\nendpoint = \"{}\"\nallow_http = true\nregion = \"us-east-1\"\n\
         access_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n\
         connect_timeout_secs = 2\nrequest_timeout_secs = 30\nmax_retries = 2\nretry_timeout_secs = 10\n",
        endpoint()
    )
}

/// A bucket name no earlier run on the same server has used (the server
/// keeps its state between test runs).
pub fn unique_bucket(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let bucket = format!("{name}-{nanos:x}");
    create_bucket(&bucket);
    bucket
}
