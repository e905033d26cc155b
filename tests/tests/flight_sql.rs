//! The scheduler's Arrow Flight SQL service, as a Flight SQL client sees
//! it on stock processes: the login, queries whose rows stream from the
//! executors (or through the scheduler), and the metadata calls.

use arrow::array::RecordBatch;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetTables, ProstMessageExt, SqlInfo,
};
use arrow_flight::{FlightDescriptor, HandshakeRequest, Ticket};
use ballista_tests::data::tpch_data;
use ballista_tests::flight_sql::{
    alice, metadata, query, refused, sorted_lines, strings, tpch_tables_toml,
};
use ballista_tests::local_tpch_session;
use ballista_tests::secured::{assert_serves, channel, cluster_of_users, cluster_with_users};
use prost::Message;
use std::collections::HashSet;
use tonic::Code;
use tonic::metadata::MetadataValue;

/// A hand-shake presenting `authorization: <header>`; the token answered
/// in the response header, or the refusal.
async fn handshake_with(url: &str, header: &str) -> Result<String, tonic::Status> {
    let mut client = FlightServiceClient::new(channel(url).await);
    let mut request = tonic::Request::new(futures::stream::iter([HandshakeRequest::default()]));
    request
        .metadata_mut()
        .insert("authorization", MetadataValue::try_from(header).unwrap());
    let response = client.handshake(request).await?;
    let token = response
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .expect("a bearer token in the response header");
    Ok(token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flight_sql_client_logs_in_and_renews_with_its_token() {
    let (mut cluster, _dir) = cluster_with_users().await;
    let url = cluster.scheduler_url.clone();

    // arrow-flight's own Flight SQL client: Basic in, Bearer out.
    let mut client = FlightSqlServiceClient::new(channel(&url).await);
    let payload = client.handshake("alice", "alice-pw").await.expect("login");
    let token = client.token().cloned().expect("the client keeps the token");
    assert!(token.starts_with("bt1.alice."), "{token}");
    assert_eq!(payload, token.as_bytes(), "the payload carries it too");

    // The JDBC driver's `token=` mode hand-shakes with the token: answered
    // back as it is.
    let renewed = handshake_with(&url, &format!("Bearer {token}"))
        .await
        .expect("a valid token hand-shakes");
    assert_eq!(renewed, token);

    // Refusals: a wrong password, a forged token, another user's name in a
    // token signed for alice.
    let mut wrong = FlightSqlServiceClient::new(channel(&url).await);
    let error = wrong
        .handshake("alice", "nope")
        .await
        .expect_err("wrong password");
    assert!(
        error.to_string().contains("wrong user name or password"),
        "{error}"
    );
    for forged in [
        "Bearer bt1.alice.99999999999.00".to_string(),
        format!("Bearer {}", token.replacen("alice", "bob", 1)),
        "Bearer not-a-token".to_string(),
    ] {
        let status = handshake_with(&url, &forged)
            .await
            .expect_err("a forged token");
        assert_eq!(status.code(), Code::Unauthenticated, "{forged}: {status:?}");
        assert!(
            status.message().contains("not valid for this cluster"),
            "{forged}: {status:?}"
        );
    }

    // An executor answers the token back too (clients that read results
    // from executors hand-shake there first), and refuses anyone else.
    let executor = ballista_tests::secured::executor_url(&cluster).await;
    let echoed = handshake_with(&executor, &format!("Bearer {token}"))
        .await
        .expect("the executor takes the scheduler's token");
    assert_eq!(echoed, token);
    let status = handshake_with(&executor, "Bearer not-a-token")
        .await
        .expect_err("a forged token at the executor");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Flight SQL calls other than the hand-shake need the token.
    let mut anonymous = FlightServiceClient::new(channel(&url).await);
    let status = anonymous
        .get_flight_info(FlightDescriptor::new_cmd(b"SELECT 1".to_vec()))
        .await
        .expect_err("no credentials");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_flight_sql_stream_from_every_executor_and_equal_datafusion() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let (mut cluster, _dir) = cluster_of_users(2, &tpch_tables_toml(&data)).await;
    let url = cluster.scheduler_url.clone();
    let local = local_tpch_session(&data).await;
    let mut client = alice(&url).await;

    // An unordered scan: one result partition per scan task, spread over
    // both executors, each read from the executor holding it.
    let sql = "SELECT l_orderkey, l_linenumber, l_quantity FROM lineitem WHERE l_quantity >= 49";
    let (info, rows) = query(&mut client, &url, sql).await;
    let executors: HashSet<String> = info
        .endpoint
        .iter()
        .map(|e| {
            e.location
                .first()
                .expect("an executor's location")
                .uri
                .clone()
        })
        .collect();
    assert!(
        executors.len() == 2,
        "the result partitions should come from both executors: {executors:?}"
    );
    let expected = local.sql(sql).await.unwrap().collect().await.unwrap();
    let want = sorted_lines(&expected);
    assert!(
        want.len() > 1000,
        "too few rows to prove much: {}",
        want.len()
    );
    assert_eq!(sorted_lines(&rows), want);
    let expected_rows: usize = expected.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(info.total_records, expected_rows as i64);

    // TPC-H queries (q15 creates a view: statements other than queries
    // are not served yet) equal single-process DataFusion, in order.
    for q in [1, 3, 5, 6, 10, 13, 18, 22] {
        let sql = ballista_tests::queries::QUERIES[q - 1];
        let (_, rows) = query(&mut client, &url, sql).await;
        let expected = ballista_tests::bench::run_query(&local, q).await.unwrap();
        ballista_tests::compare::compare(&expected, &rows)
            .unwrap_or_else(|e| panic!("q{q} over Flight SQL: {e}"));
    }

    // A query with no rows answers its schema and no endpoint.
    let (info, rows) = query(
        &mut client,
        &url,
        "SELECT n_name FROM nation WHERE n_nationkey < 0",
    )
    .await;
    assert!(info.endpoint.is_empty() && rows.is_empty(), "{info:?}");
    assert_eq!(info.try_decode_schema().unwrap().field(0).name(), "n_name");

    // Bad SQL: DataFusion's reason, and the cluster serves the next query.
    let error = client
        .execute("SELECT no_such_column FROM nation".into(), None)
        .await
        .expect_err("an unknown column");
    assert!(
        error.to_string().contains("no_such_column"),
        "the error names the column: {error}"
    );
    let error = client
        .execute("SELEC 1".into(), None)
        .await
        .expect_err("a syntax error");
    assert!(error.to_string().contains("SELEC"), "{error}");
    let (_, rows) = query(&mut client, &url, "SELECT count(*) FROM nation").await;
    assert_eq!(sorted_lines(&rows), vec!["| 25       |".to_string()]);
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_can_be_served_through_the_scheduler_and_a_client_that_goes_away_cancels_its_query()
{
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let toml = format!(
        "flight_sql.results = \"scheduler\"\n{}",
        tpch_tables_toml(&data)
    );
    let (mut cluster, _dir) = cluster_of_users(1, &toml).await;
    let url = cluster.scheduler_url.clone();
    let local = local_tpch_session(&data).await;
    let mut client = alice(&url).await;

    let sql = "SELECT o_orderkey, o_orderstatus FROM orders WHERE o_totalprice > 400000";
    let (info, rows) = query(&mut client, &url, sql).await;
    assert!(!info.endpoint.is_empty());
    assert!(
        info.endpoint.iter().all(|e| e.location.is_empty()),
        "endpoints name no location: read them at the scheduler"
    );
    let expected = local.sql(sql).await.unwrap().collect().await.unwrap();
    assert_eq!(sorted_lines(&rows), sorted_lines(&expected));

    // Bob may not read alice's results, even with the ticket.
    let mut bob = FlightSqlServiceClient::new(channel(&url).await);
    bob.handshake("bob", "bob-pw").await.expect("bob logs in");
    let error = refused(
        bob.do_get(info.endpoint[0].ticket.clone().unwrap()).await,
        "bob reads alice's results",
    );
    assert!(
        error.to_string().contains("belongs to another user"),
        "{error}"
    );
    // A forged handle is refused saying so.
    let forged = arrow_flight::sql::TicketStatementQuery {
        statement_handle: b"not-a-handle".to_vec().into(),
    };
    let error = refused(
        client
            .do_get(Ticket::new(forged.as_any().encode_to_vec()))
            .await,
        "a forged handle",
    );
    assert!(
        error.to_string().contains("not one this scheduler issued"),
        "{error}"
    );

    // A client that hangs up while its query runs cancels the job.
    let mut quitter = alice(&url).await;
    let asked = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        quitter.execute(ballista_tests::secured::LONG_QUERY.into(), None),
    )
    .await;
    assert!(asked.is_err(), "the long query cannot have ended");
    drop(quitter);
    cluster.scheduler.wait_for_stderr(
        "its Flight SQL client went away; cancelling it",
        std::time::Duration::from_secs(30),
    );
    let (_, rows) = query(&mut client, &url, "SELECT count(*) FROM region").await;
    assert_eq!(sorted_lines(&rows), vec!["| 5        |".to_string()]);
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_calls_of_jdbc_and_bi_tools_are_answered_with_their_schemas() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let (mut cluster, _dir) = cluster_of_users(1, &tpch_tables_toml(&data)).await;
    let url = cluster.scheduler_url.clone();
    let mut client = alice(&url).await;

    let info = client.get_catalogs().await.unwrap();
    let (_, batches) = metadata(&mut client, info).await;
    assert_eq!(strings(&batches, "catalog_name"), vec!["datafusion"]);

    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: Some("pub%".into()),
        })
        .await
        .unwrap();
    let (_, batches) = metadata(&mut client, info).await;
    assert_eq!(strings(&batches, "db_schema_name"), vec!["public"]);

    // GetTables with the tables' Arrow schemas, as DBeaver asks.
    let info = client
        .get_tables(CommandGetTables {
            catalog: Some("datafusion".into()),
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("%item".into()),
            table_types: vec!["TABLE".into()],
            include_schema: true,
        })
        .await
        .unwrap();
    let (_, batches) = metadata(&mut client, info).await;
    assert_eq!(strings(&batches, "table_name"), vec!["lineitem"]);
    assert_eq!(strings(&batches, "table_type"), vec!["TABLE"]);
    let encoded = batches[0]
        .column_by_name("table_schema")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::BinaryArray>()
        .unwrap()
        .value(0)
        .to_vec();
    let table_schema = arrow::ipc::convert::try_schema_from_ipc_buffer(&encoded).unwrap();
    let names: Vec<&str> = table_schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names.len(), 16, "{names:?}");
    assert_eq!(names[0], "l_orderkey");
    // Parquet strings, which DataFusion reads as Utf8View, are given as
    // Utf8: the JDBC driver refuses view types.
    assert_eq!(
        table_schema
            .field_with_name("l_comment")
            .unwrap()
            .data_type(),
        &arrow::datatypes::DataType::Utf8
    );
    let info = client
        .get_tables(CommandGetTables {
            include_schema: false,
            ..Default::default()
        })
        .await
        .unwrap();
    let (schema, batches) = metadata(&mut client, info).await;
    assert!(schema.column_with_name("table_schema").is_none());
    assert_eq!(strings(&batches, "table_name").len(), 8);

    let info = client.get_table_types().await.unwrap();
    let (_, batches) = metadata(&mut client, info).await;
    assert_eq!(
        strings(&batches, "table_type"),
        vec!["LOCAL TEMPORARY", "TABLE", "VIEW"]
    );

    // GetSqlInfo: all ids (as the JDBC driver asks on connect), and some.
    let info = client.get_sql_info(Vec::new()).await.unwrap();
    let (_, batches) = metadata(&mut client, info).await;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert!(rows > 50, "only {rows} SQL information rows");
    let info = client
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::SqlIdentifierQuoteChar,
        ])
        .await
        .unwrap();
    let (_, batches) = metadata(&mut client, info).await;
    assert_eq!(strings(&batches, "info_name"), vec!["0", "504"]);
    let values = batches[0]
        .column_by_name("value")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::UnionArray>()
        .unwrap();
    let text = |row: usize| {
        let value = values.value(row);
        value
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap()
            .value(0)
            .to_string()
    };
    assert_eq!(
        (text(0), text(1)),
        ("Ballista".to_string(), "\"".to_string())
    );

    let info = client
        .get_xdbc_type_info(arrow_flight::sql::CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    let (_, batches) = metadata(&mut client, info).await;
    let types = strings(&batches, "type_name");
    for t in [
        "BIGINT",
        "VARCHAR",
        "DOUBLE",
        "DECIMAL",
        "DATE",
        "TIMESTAMP",
        "BOOLEAN",
    ] {
        assert!(types.contains(&t.to_string()), "{t} missing from {types:?}");
    }

    // Keys: none, with the schemas of the specification.
    let info = client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "lineitem".into(),
        })
        .await
        .unwrap();
    let (schema, batches) = metadata(&mut client, info).await;
    assert_eq!(schema.field(5).name(), "key_sequence");
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    let info = client
        .get_imported_keys(CommandGetImportedKeys {
            catalog: None,
            db_schema: None,
            table: "lineitem".into(),
        })
        .await
        .unwrap();
    let (schema, _) = metadata(&mut client, info).await;
    assert_eq!(schema.fields().len(), 13);
    assert_eq!(schema.field(12).name(), "delete_rule");
    let info = client
        .get_exported_keys(CommandGetExportedKeys {
            catalog: None,
            db_schema: None,
            table: "orders".into(),
        })
        .await
        .unwrap();
    metadata(&mut client, info).await;
    let info = client
        .get_cross_reference(CommandGetCrossReference {
            pk_catalog: None,
            pk_db_schema: None,
            pk_table: "orders".into(),
            fk_catalog: None,
            fk_db_schema: None,
            fk_table: "lineitem".into(),
        })
        .await
        .unwrap();
    metadata(&mut client, info).await;
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_tables_and_information_schema_are_answered_by_the_scheduler() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let (mut cluster, _dir) = cluster_of_users(1, &tpch_tables_toml(&data)).await;
    let url = cluster.scheduler_url.clone();
    let mut client = alice(&url).await;
    let (info, rows) = query(&mut client, &url, "SHOW TABLES").await;
    assert_eq!(info.endpoint.len(), 1);
    assert!(
        info.endpoint[0].location.is_empty(),
        "read at the scheduler"
    );
    let names = strings(&rows, "table_name");
    for table in ["lineitem", "nation", "tables", "columns"] {
        assert!(names.contains(&table.to_string()), "{table} in {names:?}");
    }
    let (_, rows) = query(
        &mut client,
        &url,
        "SELECT column_name, data_type FROM information_schema.columns \
         WHERE table_name = 'nation' ORDER BY ordinal_position",
    )
    .await;
    assert_eq!(
        strings(&rows, "column_name"),
        vec!["n_nationkey", "n_name", "n_regionkey", "n_comment"]
    );
    // The answer is read once, by the user who asked.
    let (info, _) = query(&mut client, &url, "SHOW TABLES").await;
    let mut bob = FlightSqlServiceClient::new(channel(&url).await);
    bob.handshake("bob", "bob-pw").await.unwrap();
    let error = refused(
        bob.do_get(info.endpoint[0].ticket.clone().unwrap()).await,
        "bob reads alice's answer",
    );
    assert!(
        error.to_string().contains("no such catalog answer"),
        "{error}"
    );
    // Only queries are answered at the scheduler: a COPY of catalog rows is
    // not, and writes nothing; a view of them is refused.
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("tables.csv");
    let copy = format!(
        "COPY (SELECT table_name FROM information_schema.tables) TO '{}' STORED AS CSV",
        target.display()
    );
    let error = refused(client.execute(copy, None).await, "a COPY of catalog rows");
    assert!(!target.exists(), "{error}");
    let error = refused(
        client
            .execute(
                "CREATE VIEW t AS SELECT * FROM information_schema.tables".into(),
                None,
            )
            .await,
        "a view of information_schema",
    );
    assert!(
        error.to_string().contains("a view of information_schema"),
        "{error}"
    );
    assert_serves(&mut cluster).await;
}
