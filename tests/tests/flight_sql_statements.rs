//! Statements over Flight SQL on stock processes, beyond plain queries:
//! prepared statements, updates, `CancelFlightInfo`, and the CLI as a thin
//! Flight SQL client. (Login, queries and metadata: `flight_sql.rs`.)

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{
    CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor, FlightInfo,
};
use ballista_tests::cluster::run_to_exit;
use ballista_tests::data::tpch_data;
use ballista_tests::flight_sql::{alice, read_endpoint, refused, strings, tpch_tables_toml};
use ballista_tests::local_tpch_session;
use ballista_tests::secured::{assert_serves, channel, cluster_of_users};
use prost::Message;
use tonic::Code;
use tonic::metadata::MetadataValue;

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
    // A parquet string (Utf8View in DataFusion) is given as Utf8, which the
    // JDBC driver reads.
    assert_eq!(
        dataset.field(0).data_type(),
        &arrow::datatypes::DataType::Utf8
    );
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
    assert_eq!(
        rows[0].schema().field(0).data_type(),
        &arrow::datatypes::DataType::Utf8
    );
    let info_schema = info.clone().try_decode_schema().unwrap();
    assert_eq!(
        info_schema.field(0).data_type(),
        &arrow::datatypes::DataType::Utf8
    );

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
            "[users.carol]\npassword_hash = \"{}\"\nwrite = [\"file://{1}/\"]\nread = [\"file://{1}/\"]\n",
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

    // Rows of parameters for an update (JDBC's executeBatch, ADBC's
    // executemany): each row runs, the counts add up.
    carol
        .execute_update(
            format!(
                "CREATE EXTERNAL TABLE sink (id BIGINT, name VARCHAR) STORED AS CSV \
                 LOCATION '{}/sink/' OPTIONS ('format.has_header' 'true')",
                out.path().display()
            ),
            None,
        )
        .await
        .expect("CREATE EXTERNAL TABLE sink");
    let mut insert = carol
        .prepare("INSERT INTO sink VALUES ($1, $2)".into(), None)
        .await
        .expect("prepare INSERT");
    let rows = RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("0", arrow::datatypes::DataType::Int64, false),
            arrow::datatypes::Field::new("1", arrow::datatypes::DataType::Utf8, false),
        ])),
        vec![
            Arc::new(arrow::array::Int64Array::from(vec![1, 2, 3])),
            Arc::new(arrow::array::StringArray::from(vec!["a", "b", "c"])),
        ],
    )
    .unwrap();
    insert.set_parameters(rows.clone()).unwrap();
    assert_eq!(insert.execute_update().await.expect("three rows"), 3);
    let info = carol
        .execute("SELECT count(*) AS n, sum(id) AS s FROM sink".into(), None)
        .await
        .expect("read the sink");
    let token = carol.token().cloned().unwrap();
    let mut read = Vec::new();
    for endpoint in &info.endpoint {
        read.extend(read_endpoint(endpoint, &token, &url).await.1);
    }
    assert_eq!(strings(&read, "n"), vec!["3"]);
    assert_eq!(strings(&read, "s"), vec!["6"]);
    // A query runs with one row of values: several are refused, saying so.
    let mut select = carol
        .prepare("SELECT $1 + 1 AS next".into(), None)
        .await
        .expect("prepare SELECT");
    select.set_parameters(rows.project(&[0]).unwrap()).unwrap();
    let error = select.execute().await.expect_err("three rows for a query");
    assert!(
        error.to_string().contains("3 rows of parameters"),
        "{error}"
    );

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
