//! `ballista sql --flight-sql URL`: the CLI as a thin client of any Arrow
//! Flight SQL server (this cluster's scheduler, or another engine's), over
//! the same protocol as ADBC and JDBC: statements are sent as text, results
//! are read from each endpoint (at its location, or at the server).

use std::io::Write;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_flight::FlightEndpoint;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use ballista::flight::{flight_data_batches, flight_endpoint};
use ballista::tls::TlsTrust;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use tonic::transport::Channel;

use super::{SqlRunOptions, next_statement};
use crate::output::write_result;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A Flight SQL URL (`grpc://`, `grpc+tcp://`, `grpc+tls://`, or
/// `http(s)://`) as the URL tonic connects to.
pub fn channel_url(url: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url}: expected grpc://host:port or grpc+tls://host:port"))?;
    match scheme {
        "grpc" | "grpc+tcp" | "http" => Ok(format!("http://{rest}")),
        "grpc+tls" | "https" => Ok(format!("https://{rest}")),
        other => Err(format!(
            "{url}: unknown scheme {other}:// (expected grpc://, grpc+tcp:// or grpc+tls://)"
        )),
    }
}

async fn connect(url: &str, trust: &TlsTrust) -> Result<Channel, String> {
    let target = channel_url(url)?;
    let endpoint = flight_endpoint(&target, trust)
        .map_err(|e| e.to_string())?
        .connect_timeout(CONNECT_TIMEOUT);
    endpoint.connect().await.map_err(|e| {
        let text = ballista::util::with_causes(e.to_string(), std::error::Error::source(&e));
        format!("cannot reach the Flight SQL server at {url}: {text}")
    })
}

/// Where a client logs in: user name and password.
pub struct Login {
    /// The user.
    pub user: String,
    /// The password.
    pub password: String,
}

impl Login {
    /// The login of `user` (none without one), its password from
    /// `BALLISTA_PASSWORD`.
    pub fn from_env(user: Option<String>) -> Result<Option<Self>, String> {
        let Some(user) = user else {
            return Ok(None);
        };
        let password = std::env::var(ballista::client::PASSWORD_ENV).map_err(|_| {
            format!(
                "logging in as {user} needs the password in {}",
                ballista::client::PASSWORD_ENV
            )
        })?;
        Ok(Some(Self { user, password }))
    }
}

/// Runs `scripts` (each may hold several statements) on the Flight SQL
/// server at `url`, printing results to `out`.
pub async fn run(
    url: &str,
    trust: &TlsTrust,
    login: Option<Login>,
    scripts: &[String],
    out: &mut dyn Write,
    options: &SqlRunOptions,
) -> Result<(), String> {
    let target = channel_url(url)?;
    if login.is_some()
        && target.starts_with("http://")
        && !ballista::tls::is_loopback_url(&target)
        && !trust.allows_plain_text()
    {
        return Err(format!(
            "refusing to send a password to {url} in plain text: use grpc+tls://, or --insecure"
        ));
    }
    let mut client = FlightSqlServiceClient::new(connect(url, trust).await?);
    if let Some(login) = &login {
        client
            .handshake(&login.user, &login.password)
            .await
            .map_err(|e| format!("logging in to {url} as {}: {}", login.user, e))?;
    }
    // Only to split scripts into statements as DataFusion's parser does.
    let parser = SessionContext::new();
    for script in scripts {
        let mut rest = script.as_str();
        while let Some((statement, after)) =
            next_statement(&parser, rest).map_err(|e| e.to_string())?
        {
            rest = after;
            let started = Instant::now();
            let sql = statement.to_string();
            let info = client.execute(sql.clone(), None).await.map_err(|e| {
                let error = flight_error(&e);
                match (&login, &e) {
                    (None, FlightError::Tonic(status))
                        if status.code() == tonic::Code::Unauthenticated =>
                    {
                        format!(
                            "{error} (give --user, with the password in {})",
                            ballista::client::PASSWORD_ENV
                        )
                    }
                    _ => error,
                }
            })?;
            let schema = info
                .clone()
                .try_decode_schema()
                .map_err(|e| format!("the server answered a schema that cannot be read: {e}"))?;
            let mut batches = Vec::new();
            for endpoint in &info.endpoint {
                batches.extend(read_endpoint(&mut client, endpoint, trust).await?);
            }
            let prints_rows = !schema.fields().is_empty();
            if prints_rows {
                write_result(out, options.format, &std::sync::Arc::new(schema), &batches)?;
                out.flush().map_err(|e| format!("writing results: {e}"))?;
            }
            if options.timings {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                if prints_rows {
                    eprintln!("{rows} row(s) in {:.3}s", started.elapsed().as_secs_f64());
                } else {
                    eprintln!("OK in {:.3}s", started.elapsed().as_secs_f64());
                }
            }
        }
    }
    Ok(())
}

fn flight_error(error: &FlightError) -> String {
    match error {
        FlightError::Tonic(status) => status.message().to_string(),
        other => other.to_string(),
    }
}

/// The batches of one endpoint: at the server when it names no location,
/// else at its first location, with the server's token.
async fn read_endpoint(
    client: &mut FlightSqlServiceClient<Channel>,
    endpoint: &FlightEndpoint,
    trust: &TlsTrust,
) -> Result<Vec<RecordBatch>, String> {
    let ticket = endpoint
        .ticket
        .clone()
        .ok_or("the server answered an endpoint without a ticket")?;
    let Some(location) = endpoint.location.first() else {
        let stream = client.do_get(ticket).await.map_err(|e| flight_error(&e))?;
        return stream.try_collect().await.map_err(|e| flight_error(&e));
    };
    let target = channel_url(&location.uri)?;
    let mut remote = FlightServiceClient::new(connect(&location.uri, trust).await?)
        .max_decoding_message_size(ballista::flight::MAX_MESSAGE_SIZE);
    let mut request = tonic::Request::new(ticket);
    if let Some(token) = client.token() {
        if target.starts_with("http://")
            && !ballista::tls::is_loopback_url(&target)
            && !trust.allows_plain_text()
        {
            return Err(format!(
                "refusing to send the login's token to {} in plain text: the server should name \
                 grpc+tls:// locations (or give --insecure)",
                location.uri
            ));
        }
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| "the token cannot be sent as a header".to_string())?;
        request.metadata_mut().insert("authorization", value);
    }
    let messages = remote
        .do_get(request)
        .await
        .map_err(|status| format!("reading results at {}: {}", location.uri, status.message()))?
        .into_inner()
        .map_err(FlightError::from);
    flight_data_batches(messages)
        .try_collect()
        .await
        .map_err(|e| format!("reading results at {}: {e}", location.uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flight_sql_urls_map_to_channel_urls() {
        assert_eq!(channel_url("grpc://h:1").unwrap(), "http://h:1");
        assert_eq!(channel_url("grpc+tcp://h:1").unwrap(), "http://h:1");
        assert_eq!(channel_url("grpc+tls://h:1").unwrap(), "https://h:1");
        assert!(
            channel_url("ftp://h:1")
                .unwrap_err()
                .contains("unknown scheme ftp://")
        );
        assert!(channel_url("h:1").unwrap_err().contains("expected grpc://"));
    }
}
