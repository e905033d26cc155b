//! The scheduler's Arrow Flight SQL service, as a Flight SQL client sees
//! it on stock processes: the login, queries whose rows stream from the
//! executors (or through the scheduler), and the metadata calls.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetTables, ProstMessageExt, SqlInfo,
};
use arrow_flight::{
    CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor, FlightInfo,
    HandshakeRequest, Ticket,
};
use ballista_tests::cluster::run_to_exit;
use ballista_tests::data::tpch_data;
use ballista_tests::flight_sql::{
    alice, metadata, query, read_endpoint, refused, sorted_lines, strings, tpch_tables_toml,
};
use ballista_tests::local_tpch_session;
use ballista_tests::secured::{assert_serves, channel, cluster_of_users, cluster_with_users};
use prost::Message;
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
async fn prepared_statements_describe_bind_run_and_close_as_jdbc_uses_them() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let (mut cluster, _dir) = cluster_of_users(1, &tpch_tables_toml(&data)).await;
    let url = cluster.scheduler_url.clone();
    let mut client = alice(&url).await;

    // Described when prepared: the result's schema and the parameters'.
    let sql = "SELECT n_name FROM nation WHERE n_nationkey = $1";
    let mut statement = client.prepare(sql.into(), None).await.expect("prepare");
    let dataset = statement.dataset_schema().unwrap().clone();
    assert_eq!(dataset.field(0).name(), "n_name");
    let parameters = statement.parameter_schema().unwrap().clone();
    assert_eq!(parameters.fields().len(), 1);
    assert_eq!(parameters.field(0).name(), "$1");
    assert_eq!(
        parameters.field(0).data_type(),
        &arrow::datatypes::DataType::Int64
    );

    // Bound and run (an Int32 value is cast to the Int64 expected).
    let values = RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("0", arrow::datatypes::DataType::Int32, false),
        ])),
        vec![Arc::new(arrow::array::Int32Array::from(vec![7]))],
    )
    .unwrap();
    statement.set_parameters(values).unwrap();
    let info = statement.execute().await.expect("execute");
    let token = client.token().cloned().unwrap();
    let mut rows = Vec::new();
    for endpoint in &info.endpoint {
        rows.extend(read_endpoint(endpoint, &token, &url).await.1);
    }
    assert_eq!(strings(&rows, "n_name"), vec!["GERMANY"]);

    // A statement that is not a query describes an empty result (JDBC
    // then runs it as an update).
    let copy = client
        .prepare("COPY (SELECT 1) TO '/tmp/never-written.csv'".into(), None)
        .await
        .expect("prepare a COPY");
    assert!(copy.dataset_schema().unwrap().fields().is_empty());
    copy.close().await.expect("close");

    // Bob cannot run or close alice's statement, even knowing its handle.
    let mut bob = FlightSqlServiceClient::new(channel(&url).await);
    bob.handshake("bob", "bob-pw").await.unwrap();
    let bob_token = bob.token().cloned().unwrap();
    let handle = info
        .flight_descriptor
        .as_ref()
        .map(|d| d.cmd.clone())
        .expect("the descriptor of the prepared statement");
    let status = bob
        .inner_mut()
        .get_flight_info({
            let mut request = tonic::Request::new(FlightDescriptor::new_cmd(handle.to_vec()));
            request.metadata_mut().insert(
                "authorization",
                MetadataValue::try_from(format!("Bearer {bob_token}")).unwrap(),
            );
            request
        })
        .await
        .expect_err("bob runs alice's statement");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status.message().contains("no prepared statement"),
        "{status:?}"
    );

    // Closed, it is gone.
    statement.close().await.expect("close");
    let status = client
        .inner_mut()
        .get_flight_info({
            let mut request = tonic::Request::new(FlightDescriptor::new_cmd(handle.to_vec()));
            request.metadata_mut().insert(
                "authorization",
                MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
            );
            request
        })
        .await
        .expect_err("a closed statement");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // Bad SQL fails when prepared, naming the problem.
    let error = refused(
        client.prepare("SELECT nope FROM nation".into(), None).await,
        "an unknown column",
    );
    assert!(error.to_string().contains("nope"), "{error}");
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_answer_the_rows_they_wrote_and_stay_within_the_callers_grants() {
    let out = tempfile::tempdir().unwrap();
    let users_dir = tempfile::tempdir().unwrap();
    let users = users_dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[users.carol]\npassword_hash = \"{}\"\nwrite = [\"file://{}/\"]\n",
            ballista::plugin::auth::hash_password("carol-pw").unwrap(),
            out.path().display()
        ),
    )
    .unwrap();
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let toml = format!(
        "[scheduler]\n{}\n[auth]\nusers_file = \"{}\"\n",
        tpch_tables_toml(&data),
        users.display()
    );
    let mut cluster = ballista_tests::cluster::TestCluster::start(1, 2, Some(&toml)).await;
    let url = cluster.scheduler_url.clone();
    let mut carol = FlightSqlServiceClient::new(channel(&url).await);
    carol.handshake("carol", "carol-pw").await.expect("login");

    let target = out.path().join("nation.csv");
    let copy = format!(
        "COPY (SELECT * FROM nation) TO '{}' STORED AS CSV",
        target.display()
    );
    let written = carol.execute_update(copy, None).await.expect("COPY");
    assert_eq!(written, 25);
    let text = std::fs::read_to_string(&target).expect("the file is written");
    assert_eq!(text.lines().count(), 26, "a header and 25 rows");

    // As a prepared update too.
    let target = out.path().join("region.csv");
    let statement = carol
        .prepare(
            format!(
                "COPY (SELECT * FROM region) TO '{}' STORED AS CSV",
                target.display()
            ),
            None,
        )
        .await
        .expect("prepare");
    let mut statement = statement;
    assert_eq!(statement.execute_update().await.expect("prepared COPY"), 5);

    // Outside the write grant: refused, nothing written.
    let outside = tempfile::tempdir().unwrap();
    let error = carol
        .execute_update(
            format!(
                "COPY (SELECT * FROM nation) TO '{}/x.csv' STORED AS CSV",
                outside.path().display()
            ),
            None,
        )
        .await
        .expect_err("a COPY outside the grant");
    assert!(
        error
            .to_string()
            .contains("permission denied: user carol may not write"),
        "{error}"
    );
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_flight_info_drops_a_querys_results_for_its_owner_only() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let (mut cluster, _dir) = cluster_of_users(1, &tpch_tables_toml(&data)).await;
    let url = cluster.scheduler_url.clone();
    let mut client = alice(&url).await;
    let info = client
        .execute("SELECT n_name FROM nation".into(), None)
        .await
        .expect("a query");
    assert!(!info.endpoint.is_empty());

    let cancel = |token: String, info: FlightInfo| {
        let url = url.clone();
        async move {
            let mut raw = FlightServiceClient::new(channel(&url).await);
            let mut request = tonic::Request::new(arrow_flight::Action::new(
                "CancelFlightInfo",
                CancelFlightInfoRequest::new(info).encode_to_vec(),
            ));
            request.metadata_mut().insert(
                "authorization",
                MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
            );
            let mut answers = raw.do_action(request).await?.into_inner();
            let answer = answers.message().await?.expect("an answer");
            Ok::<_, tonic::Status>(CancelFlightInfoResult::decode(answer.body).unwrap())
        }
    };
    // Bob may not cancel alice's query.
    let mut bob = FlightSqlServiceClient::new(channel(&url).await);
    bob.handshake("bob", "bob-pw").await.unwrap();
    let status = cancel(bob.token().cloned().unwrap(), info.clone())
        .await
        .expect_err("bob cancels alice's query");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let token = client.token().cloned().unwrap();
    let result = cancel(token.clone(), info.clone()).await.expect("cancel");
    assert_eq!(result.status, CancelStatus::Cancelled as i32);
    // The results are gone (the executor deletes them once the scheduler
    // tells it, just after answering): reading them fails, saying why.
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let location = info.endpoint[0].location[0]
        .uri
        .replace("grpc+tcp://", "http://");
    let mut executor = FlightServiceClient::new(channel(&location).await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        let mut request = tonic::Request::new(ticket.clone());
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
        );
        let outcome = match executor.do_get(request).await {
            Err(status) => Err(status),
            Ok(stream) => stream.into_inner().message().await.map(|_| ()),
        };
        match outcome {
            Err(status) => break status,
            Ok(()) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Ok(()) => panic!("the results of a cancelled query are still served"),
        }
    };
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // An answer with no rows has nothing to cancel.
    let empty = client
        .execute("SELECT 1 WHERE false".into(), None)
        .await
        .unwrap();
    let result = cancel(token, empty).await.expect("cancel");
    assert_eq!(result.status, CancelStatus::NotCancellable as i32);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_is_a_thin_flight_sql_client() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let (mut cluster, _dir) = cluster_of_users(2, &tpch_tables_toml(&data)).await;
    let uri = cluster.scheduler_url.replace("http://", "grpc://");
    let password = [("BALLISTA_PASSWORD", "alice-pw")];
    let cli = |args: Vec<&str>, env: &[(&str, &str)]| {
        let args: Vec<String> = args.into_iter().map(str::to_string).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                run_to_exit("ballista", &args, &env, 120)
            })
            .await
            .unwrap()
        }
    };

    // Rows read from both executors, a catalog query, and the CSV format.
    let run = cli(
        vec![
            "sql",
            "--flight-sql",
            &uri,
            "--user",
            "alice",
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS n FROM lineitem WHERE l_quantity >= 49; SHOW TABLES",
        ],
        &password,
    )
    .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let expected = local_tpch_session(&data)
        .await
        .sql("SELECT count(*) FROM lineitem WHERE l_quantity >= 49")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let count = arrow::util::pretty::pretty_format_batches(&expected)
        .unwrap()
        .to_string();
    let count = count.lines().nth(3).unwrap().trim_matches(['|', ' ']);
    assert!(
        run.stdout.starts_with(&format!("n\n{count}\n")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("lineitem"), "{}", run.stdout);

    // Errors: the server's reason, a wrong password, no password, no
    // statements.
    let run = cli(
        vec![
            "sql",
            "--flight-sql",
            &uri,
            "--user",
            "alice",
            "-c",
            "SELECT nope FROM nation",
        ],
        &password,
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("nope"), "{}", run.stderr);
    let run = cli(
        vec![
            "sql",
            "--flight-sql",
            &uri,
            "--user",
            "alice",
            "-c",
            "SELECT 1",
        ],
        &[("BALLISTA_PASSWORD", "wrong")],
    )
    .await;
    assert!(
        run.stderr.contains("wrong user name or password"),
        "{}",
        run.stderr
    );
    let run = cli(
        vec![
            "sql",
            "--flight-sql",
            &uri,
            "--user",
            "alice",
            "-c",
            "SELECT 1",
        ],
        &[],
    )
    .await;
    assert!(
        run.stderr
            .contains("needs the password in BALLISTA_PASSWORD"),
        "{}",
        run.stderr
    );
    let run = cli(vec!["sql", "--flight-sql", &uri], &password).await;
    assert!(
        run.stderr
            .contains("runs the statements given with -c or -f"),
        "{}",
        run.stderr
    );
    assert_serves(&mut cluster).await;
}
