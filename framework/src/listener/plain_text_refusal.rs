//! The answer a TLS listener gives a caller speaking plain text: its calls
//! fail with a status that says to use `https://`, instead of a closed
//! connection the caller would report as a vague transport error.

use std::convert::Infallible;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// Longest a plain-text caller is answered for; its connection is then
/// closed.
const ANSWER_FOR: Duration = Duration::from_secs(10);

/// Serves `stream` (whose first byte is not a TLS handshake) over plain
/// HTTP/2, failing every call with `FAILED_PRECONDITION`, for at most
/// `ANSWER_FOR` (or `handshake_timeout` when longer); the connection keeps
/// its slot under the listener's cap meanwhile. Logged at debug level only:
/// anyone who can reach the port could otherwise flood the log.
pub(super) async fn answer(stream: TcpStream, name: &'static str, handshake_timeout: Duration) {
    let message = format!(
        "the {name} serves TLS on this port: connect with an https:// URL (grpc+tls:// for \
         Flight SQL clients such as ADBC and JDBC's useEncryption=true), trusting the \
         cluster's CA (tls.ca_file)"
    );
    let service = hyper::service::service_fn(move |_request| {
        let status = tonic::Status::failed_precondition(message.clone());
        async move { Ok::<_, Infallible>(status.into_http::<tonic::body::Body>()) }
    });
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(4);
    let connection = http2.serve_connection(TokioIo::new(stream), service);
    let limit = ANSWER_FOR.max(handshake_timeout);
    match tokio::time::timeout(limit, connection).await {
        Ok(Ok(())) | Err(_) => {}
        Ok(Err(e)) => tracing::debug!("{name}: plain-text caller on the TLS port: {e}"),
    }
    tracing::debug!("{name}: refused a plain-text connection on its TLS port");
}
