//! A small HTTP/1.1 client for tests of the processes' HTTP services, and
//! the URLs those services print at start-up.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cluster::Process;

/// An answer: status, headers (names in lower case) and body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl HttpAnswer {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics naming the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends `method path` to `base` (`http://host:port`) with `headers` and
/// `body`; `Err` when the connection fails.
pub async fn request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<HttpAnswer> {
    let host = base
        .strip_prefix("http://")
        .expect("an http:// URL")
        .trim_end_matches('/');
    let mut stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(host))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))??;
    let mut text = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    stream.write_all(text.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::other("answer timed out"))??;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {raw:?}")))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(HttpAnswer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// `GET path` from `base`, panicking when the connection fails.
pub async fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> HttpAnswer {
    request(base, "GET", path, headers, "")
        .await
        .unwrap_or_else(|e| panic!("GET {base}{path}: {e}"))
}

/// `POST path` to `base`, panicking when the connection fails.
pub async fn post(base: &str, path: &str, headers: &[(&str, &str)]) -> HttpAnswer {
    request(base, "POST", path, headers, "")
        .await
        .unwrap_or_else(|e| panic!("POST {base}{path}: {e}"))
}

/// The base URL of the HTTP service `process` printed at start-up (`… at
/// http://host:port/`).
pub fn http_url(process: &mut Process) -> String {
    let line = process.wait_for_stdout(" at http", Duration::from_secs(30));
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    url.trim_end_matches('/').to_string()
}

/// The `authorization` header of the cluster administrator (the holder of
/// this machine's cluster key, as the stock processes of tests use).
pub fn admin_authorization() -> String {
    let key = ballista::auth::read_or_create_key_file(
        &ballista::auth::default_key_file().expect("the default key file"),
    )
    .expect("the cluster key");
    ballista::auth::CallCredentials::Admin(key)
        .header()
        .expect("an admin header")
}

/// `Basic …` for `user` and `password`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The value of sample `name` (with its labels, such as
/// `ballista_flight_requests_total{method="DoGet"}`) in a `/metrics` text,
/// 0 when absent.
pub fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            (series == name).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}
