//! Flight SQL clients for tests: arrow-flight's `FlightSqlServiceClient`
//! logged in, endpoints read the way ADBC and JDBC read them, and answers
//! decoded and checked (each stream's schema against the `FlightInfo`'s).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{FlightEndpoint, FlightInfo};
use futures::TryStreamExt;
use tonic::metadata::MetadataValue;

use crate::secured::channel;

/// A Flight SQL client of the scheduler at `url`.
pub type Client = FlightSqlServiceClient<tonic::transport::Channel>;

/// `user`'s Flight SQL client of the scheduler at `url`, logged in.
pub async fn logged_in(url: &str, user: &str, password: &str) -> Client {
    let mut client = FlightSqlServiceClient::new(channel(url).await);
    client
        .handshake(user, password)
        .await
        .unwrap_or_else(|e| panic!("{user} logs in: {e}"));
    client
}

/// The eight TPC-H tables of `data`, declared for the scheduler.
pub fn tpch_tables_toml(data: &std::path::Path) -> String {
    let mut toml = String::new();
    for table in ballista_bin::tpch::datagen::TABLES {
        toml.push_str(&format!(
            "[[scheduler.tables]]\nname = \"{table}\"\nlocation = \"{}/{table}/\"\nformat = \"parquet\"\n",
            data.display()
        ));
    }
    toml
}

/// Alice's Flight SQL client of the scheduler at `url`, logged in.
pub async fn alice(url: &str) -> Client {
    logged_in(url, "alice", "alice-pw").await
}

/// Reads one endpoint the way a Flight SQL client does: at its location
/// (an executor) with the bearer token, or at the scheduler when it names
/// none. The stream's schema and its batches.
pub async fn read_endpoint(
    endpoint: &FlightEndpoint,
    token: &str,
    scheduler_url: &str,
) -> (SchemaRef, Vec<RecordBatch>) {
    let url = match endpoint.location.first() {
        Some(location) => location
            .uri
            .strip_prefix("grpc+tcp://")
            .map(|rest| format!("http://{rest}"))
            .unwrap_or_else(|| panic!("an unexpected location {}", location.uri)),
        None => scheduler_url.to_string(),
    };
    let mut client = FlightServiceClient::new(channel(&url).await);
    let mut request = tonic::Request::new(endpoint.ticket.clone().expect("a ticket"));
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    let stream = client
        .do_get(request)
        .await
        .unwrap_or_else(|e| panic!("reading an endpoint at {url}: {e}"))
        .into_inner();
    let mut batches =
        FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from));
    let mut out = Vec::new();
    while let Some(batch) = batches.try_next().await.expect("a batch") {
        out.push(batch);
    }
    let schema = batches
        .schema()
        .cloned()
        .expect("the stream carries a schema");
    (schema, out)
}

/// Runs `sql` over Flight SQL; the answer and every endpoint's rows, each
/// endpoint's stream schema checked against the answer's.
pub async fn query(
    client: &mut Client,
    scheduler_url: &str,
    sql: &str,
) -> (FlightInfo, Vec<RecordBatch>) {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let schema = Arc::new(info.clone().try_decode_schema().expect("a schema"));
    let token = client.token().cloned().expect("logged in");
    let mut rows = Vec::new();
    for endpoint in &info.endpoint {
        let (stream_schema, batches) = read_endpoint(endpoint, &token, scheduler_url).await;
        assert_eq!(
            stream_schema, schema,
            "{sql}: an endpoint's stream schema differs from the FlightInfo's"
        );
        rows.extend(batches);
    }
    (info, rows)
}

/// The error of a call that must fail (its success value has no `Debug`).
pub fn refused<T>(result: Result<T, FlightError>, what: &str) -> FlightError {
    match result {
        Ok(_) => panic!("{what}: expected a refusal"),
        Err(error) => error,
    }
}

/// Rows as sorted text lines, for results whose order is not defined.
pub fn sorted_lines(batches: &[RecordBatch]) -> Vec<String> {
    let text = arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("| "))
        .skip(1)
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// Decodes a metadata answer: the FlightInfo's schema must be the stream's.
pub async fn metadata(client: &mut Client, info: FlightInfo) -> (SchemaRef, Vec<RecordBatch>) {
    let schema = Arc::new(info.clone().try_decode_schema().expect("a schema"));
    assert_eq!(info.endpoint.len(), 1, "{info:?}");
    let mut stream = client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .expect("do_get");
    let mut batches = Vec::new();
    while let Some(batch) = stream.try_next().await.expect("a batch") {
        batches.push(batch);
    }
    let streamed = stream.schema().cloned().expect("a schema message");
    assert_eq!(streamed, schema, "FlightInfo and stream schemas differ");
    for batch in &batches {
        assert_eq!(batch.schema(), schema);
    }
    (schema, batches)
}

pub fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        let array = batch.column_by_name(column).expect(column);
        let array = arrow::compute::cast(array, &arrow::datatypes::DataType::Utf8).unwrap();
        let array = array
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        out.extend(array.iter().map(|v| v.unwrap_or("NULL").to_string()));
    }
    out
}
