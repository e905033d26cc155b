//! The scheduler's shared catalog: tables, views and schemas created with
//! SQL by one client (Flight SQL, the CLI, a Rust session's `shared_sql`)
//! are seen by the others, read under each reader's grants, owned by their
//! creator, and kept across a restart of the scheduler. Stock scheduler and
//! executor processes.

use arrow_flight::sql::CommandGetTables;
use ballista::client::SessionContextExt;
use ballista::config::{BallistaConfig, Secret};
use ballista::error::BallistaError;
use ballista::plugin::auth::hash_password;
use ballista_tests::cluster::{TestCluster, binary};
use ballista_tests::data::tpch_data;
use ballista_tests::flight_sql::{Client, logged_in, metadata, query, sorted_lines, strings};
use ballista_tests::probe::single_i64;
use ballista_tests::secured::assert_error;
use ballista_tests::secured::assert_serves;
use datafusion::prelude::SessionContext;

/// A scheduler whose catalog is kept in `catalog`, with users carol and
/// dave (who may read `data`) and bob (who may read nothing).
async fn cluster(
    data: &std::path::Path,
    catalog: &std::path::Path,
    users: &std::path::Path,
) -> TestCluster {
    let grant = format!("read = [\"file://{}/\"]\n", data.display());
    std::fs::write(
        users,
        format!(
            "[users.carol]\npassword_hash = \"{}\"\n{grant}\n[users.dave]\npassword_hash = \"{}\"\n{grant}\n\
             [users.bob]\npassword_hash = \"{}\"\n",
            hash_password("carol-pw").unwrap(),
            hash_password("dave-pw").unwrap(),
            hash_password("bob-pw").unwrap(),
        ),
    )
    .unwrap();
    let toml = format!(
        "[scheduler.catalog]\nlocation = \"{}\"\n\n[auth]\nusers_file = \"{}\"\n",
        catalog.display(),
        users.display()
    );
    TestCluster::start(1, 2, Some(&toml)).await
}

async fn run(client: &mut Client, url: &str, sql: &str) -> Vec<String> {
    sorted_lines(&query(client, url, sql).await.1)
}

async fn error_of(client: &mut Client, sql: &str) -> String {
    match client.execute(sql.to_string(), None).await {
        Ok(info) => panic!("{sql} should fail, answered {info:?}"),
        Err(e) => e.to_string(),
    }
}

/// Tables listed by `GetTables`: `schema.table (TYPE)`.
async fn listed(client: &mut Client) -> Vec<String> {
    let info = client
        .get_tables(CommandGetTables::default())
        .await
        .unwrap();
    let (_, batches) = metadata(client, info).await;
    let schemas = strings(&batches, "db_schema_name");
    let names = strings(&batches, "table_name");
    let types = strings(&batches, "table_type");
    let mut out: Vec<String> = schemas
        .iter()
        .zip(&names)
        .zip(&types)
        .map(|((s, n), t)| format!("{s}.{n} ({t})"))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_created_by_one_client_are_seen_by_others_and_survive_a_restart() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("state/catalog.json");
    let users = dir.path().join("users.toml");
    let cluster = cluster(&data, &catalog, &users).await;
    let url = cluster.scheduler_url.clone();
    let mut carol = logged_in(&url, "carol", "carol-pw").await;

    // Created as updates (JDBC's executeUpdate) and as queries (ADBC).
    let created = carol
        .execute_update(
            format!(
                "CREATE EXTERNAL TABLE nat STORED AS PARQUET LOCATION '{}/nation/'",
                data.display()
            ),
            None,
        )
        .await
        .expect("CREATE EXTERNAL TABLE");
    assert_eq!(created, 0);
    let (info, rows) = query(
        &mut carol,
        &url,
        "CREATE VIEW asia AS SELECT n_name FROM nat WHERE n_regionkey = 2",
    )
    .await;
    assert!(info.endpoint.is_empty() && rows.is_empty(), "{info:?}");
    query(&mut carol, &url, "CREATE SCHEMA sales").await;
    query(
        &mut carol,
        &url,
        &format!(
            "CREATE EXTERNAL TABLE sales.reg STORED AS PARQUET LOCATION '{}/region/'",
            data.display()
        ),
    )
    .await;

    // Names keep their case.
    query(
        &mut carol,
        &url,
        "CREATE VIEW \"Mixed\" AS SELECT 7 AS seven",
    )
    .await;
    assert_eq!(
        run(&mut carol, &url, "SELECT seven FROM \"Mixed\"").await,
        vec!["| 7     |"]
    );
    query(&mut carol, &url, "DROP VIEW \"Mixed\"").await;

    // Refusals, each naming why; nothing changes.
    let again = format!(
        "CREATE EXTERNAL TABLE nat STORED AS PARQUET LOCATION '{}/region/'",
        data.display()
    );
    let error = error_of(&mut carol, &again).await;
    assert!(
        error.contains("datafusion.public.nat exists already"),
        "{error}"
    );
    let error = error_of(
        &mut carol,
        "CREATE EXTERNAL TABLE pw STORED AS CSV LOCATION '/etc/passwd'",
    )
    .await;
    assert!(
        error.contains("permission denied: user carol may not read file:///etc/passwd"),
        "{error}"
    );
    let error = error_of(&mut carol, "CREATE TEMPORARY VIEW t AS SELECT 1").await;
    assert!(error.contains("has no session to keep it in"), "{error}");

    // Another user sees and queries them, under her own grants.
    let mut dave = logged_in(&url, "dave", "dave-pw").await;
    assert_eq!(
        listed(&mut dave).await,
        vec![
            "public.asia (VIEW)",
            "public.nat (TABLE)",
            "sales.reg (TABLE)"
        ]
    );
    assert_eq!(
        run(&mut dave, &url, "SELECT count(*) AS n FROM nat").await,
        vec!["| 25 |"]
    );
    assert_eq!(
        run(&mut dave, &url, "SELECT n_name FROM asia").await.len(),
        5
    );
    assert_eq!(
        run(&mut dave, &url, "SELECT count(*) AS n FROM sales.reg").await,
        vec!["| 5 |"]
    );

    // Bob sees the names but may not read the files, nor drop carol's table.
    let mut bob = logged_in(&url, "bob", "bob-pw").await;
    let error = error_of(&mut bob, "SELECT count(*) FROM nat").await;
    assert!(
        error.contains("permission denied: user bob may not read"),
        "{error}"
    );
    // Nor read it through a view of his own: views are read under the
    // reader's grants too.
    query(&mut bob, &url, "CREATE VIEW bobs AS SELECT * FROM nat").await;
    let error = error_of(&mut bob, "SELECT count(*) FROM bobs").await;
    assert!(
        error.contains("permission denied: user bob may not read"),
        "{error}"
    );
    query(&mut bob, &url, "DROP VIEW bobs").await;
    let error = error_of(&mut bob, "DROP TABLE nat").await;
    assert!(
        error.contains("table datafusion.public.nat belongs to carol"),
        "{error}"
    );

    // The catalog survives the scheduler: a new one reads it back.
    let kept = std::fs::read_to_string(&catalog).expect("the catalog file");
    assert!(kept.contains("\"owner\": \"carol\""), "{kept}");
    drop(carol);
    drop(dave);
    drop(bob);
    drop(cluster);
    let mut cluster = self::cluster(&data, &catalog, &users).await;
    let url = cluster.scheduler_url.clone();
    let mut dave = logged_in(&url, "dave", "dave-pw").await;
    assert_eq!(
        listed(&mut dave).await,
        vec![
            "public.asia (VIEW)",
            "public.nat (TABLE)",
            "sales.reg (TABLE)"
        ]
    );
    assert_eq!(
        run(&mut dave, &url, "SELECT n_name FROM asia").await.len(),
        5
    );

    // Dropped by its owner, it is gone for everyone, and stays gone.
    let mut carol = logged_in(&url, "carol", "carol-pw").await;
    query(&mut carol, &url, "DROP VIEW asia").await;
    let error = error_of(&mut dave, "SELECT * FROM asia").await;
    assert!(error.contains("asia"), "{error}");
    query(&mut carol, &url, "DROP VIEW IF EXISTS asia").await;
    let error = error_of(&mut carol, "DROP VIEW asia").await;
    assert!(
        error.contains("view datafusion.public.asia does not exist"),
        "{error}"
    );
    assert!(
        !std::fs::read_to_string(&catalog)
            .unwrap()
            .contains("asia AS")
    );
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_can_live_in_an_object_store() {
    let bucket = ballista_tests::s3::unique_bucket("catalog");
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[users.carol]\npassword_hash = \"{}\"\n",
            hash_password("carol-pw").unwrap()
        ),
    )
    .unwrap();
    let toml = format!(
        "[scheduler.catalog]\nlocation = \"s3://{bucket}/ballista/catalog.json\"\n\n\
         [auth]\nusers_file = \"{}\"\n\n{}",
        users.display(),
        ballista_tests::s3::storage_toml()
    );
    let cluster = TestCluster::start(1, 1, Some(&toml)).await;
    let url = cluster.scheduler_url.clone();
    let mut carol = logged_in(&url, "carol", "carol-pw").await;
    query(&mut carol, &url, "CREATE VIEW answer AS SELECT 42 AS a").await;
    assert_eq!(
        ballista_tests::s3::list(&bucket, "ballista").await,
        vec!["ballista/catalog.json"]
    );
    drop(carol);
    drop(cluster);

    let mut cluster = TestCluster::start(1, 1, Some(&toml)).await;
    let url = cluster.scheduler_url.clone();
    let mut carol = logged_in(&url, "carol", "carol-pw").await;
    assert_eq!(
        run(&mut carol, &url, "SELECT a FROM answer").await,
        vec!["| 42 |"]
    );

    // A location naming a folder is refused at start-up, saying what to
    // give instead.
    let bad = toml.replace("ballista/catalog.json", "ballista/");
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, &bad).unwrap();
    let run = ballista_tests::cluster::run_to_exit(
        "ballista-scheduler",
        &["--config", config.to_str().unwrap(), "--port", "0"],
        &[],
        60,
    );
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("names a folder; name the object"),
        "{}",
        run.stderr
    );
    assert_serves(&mut cluster).await;
}

/// A Rust session of `user`.
async fn session(url: &str, user: &str, password: &str) -> SessionContext {
    let mut config = BallistaConfig::default();
    config.settings.client.user = Some(user.into());
    config.settings.client.password = Some(Secret::new(password));
    SessionContext::remote_with_config(url, config)
        .await
        .unwrap_or_else(|e| panic!("{user}'s session: {e}"))
}

/// `ballista sql --scheduler url --user carol -c sql`, run in `folder`.
async fn cli_as_carol(url: &str, folder: &std::path::Path, sql: &str) -> (bool, String, String) {
    let (url, folder, sql) = (url.to_string(), folder.to_path_buf(), sql.to_string());
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(binary("ballista"))
            .args([
                "sql",
                "--scheduler",
                &url,
                "--user",
                "carol",
                "--format",
                "csv",
                "-c",
                &sql,
            ])
            .env("BALLISTA_PASSWORD", "carol-pw")
            .current_dir(folder)
            .output()
            .expect("run ballista");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_rust_sessions_share_the_catalog_with_flight_sql_clients() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.json");
    let users = dir.path().join("users.toml");
    let cluster = cluster(&data, &catalog, &users).await;
    let url = cluster.scheduler_url.clone();

    // Made over Flight SQL, seen by a Rust session from its start.
    let mut carol = logged_in(&url, "carol", "carol-pw").await;
    query(
        &mut carol,
        &url,
        &format!(
            "CREATE EXTERNAL TABLE nat STORED AS PARQUET LOCATION '{}/nation/'",
            data.display()
        ),
    )
    .await;
    let dave = session(&url, "dave", "dave-pw").await;
    assert_eq!(single_i64(&dave, "SELECT count(*) FROM nat").await, 25);

    // Made by the Rust session with shared_sql, seen over Flight SQL at once.
    dave.shared_sql("CREATE VIEW europe AS SELECT n_name FROM nat WHERE n_regionkey = 3")
        .await
        .expect("CREATE VIEW through shared_sql");
    assert_eq!(
        run(&mut carol, &url, "SELECT count(*) AS n FROM europe").await,
        vec!["| 5 |"]
    );
    // `sql` and CREATE TEMPORARY stay in the session.
    dave.sql("CREATE VIEW own AS SELECT 1 AS one")
        .await
        .unwrap();
    dave.shared_sql("CREATE TEMPORARY VIEW scratch AS SELECT 2 AS two")
        .await
        .expect("CREATE TEMPORARY VIEW stays in the session");
    assert_eq!(single_i64(&dave, "SELECT two FROM scratch").await, 2);
    // A view over a table of the session only stays in the session too.
    dave.shared_sql("CREATE VIEW over_scratch AS SELECT two + 1 AS three FROM scratch")
        .await
        .expect("a view over a session's own view");
    assert_eq!(single_i64(&dave, "SELECT three FROM over_scratch").await, 3);
    assert_eq!(
        listed(&mut carol).await,
        vec!["public.europe (VIEW)", "public.nat (TABLE)"]
    );

    // The CLI sends its catalog statements too: a relative location is the
    // CLI's folder, not the scheduler's. Running the same script again is
    // not an error.
    let script = "CREATE EXTERNAL TABLE reg STORED AS PARQUET LOCATION 'region/';\n\
                  SELECT count(*) AS regions FROM reg;\n\
                  SELECT count(*) AS european FROM europe;";
    for run in 0..2 {
        let (ok, stdout, stderr) = cli_as_carol(&url, &data, script).await;
        assert!(ok, "run {run}: {stderr}");
        assert_eq!(stdout, "regions\n5\neuropean\n5\n", "run {run}: {stderr}");
    }
    let kept = std::fs::read_to_string(&catalog).unwrap();
    assert!(
        kept.contains(&format!("LOCATION '{}/region/'", data.display())),
        "{kept}"
    );
    // …but another table under the same name is.
    let (ok, _, stderr) = cli_as_carol(
        &url,
        &data,
        "CREATE EXTERNAL TABLE reg STORED AS PARQUET LOCATION 'nation/'",
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("datafusion.public.reg exists already (CREATE OR REPLACE replaces it)"),
        "{stderr}"
    );

    // The Rust session takes the catalog again when asked, or on its next
    // shared_sql.
    dave.refresh_catalog().await.unwrap();
    assert_eq!(single_i64(&dave, "SELECT count(*) FROM reg").await, 5);
    assert_eq!(single_i64(&dave, "SELECT count(*) FROM own").await, 1);

    // The catalog's rules hold for sessions, and their errors keep their kind.
    let bob = session(&url, "bob", "bob-pw").await;
    let error = BallistaError::from_datafusion(bob.shared_sql("DROP TABLE reg").await.unwrap_err());
    assert_error(
        &error,
        "permission denied",
        "table datafusion.public.reg belongs to carol",
        "bob drops carol's table",
    );
    let error = BallistaError::from_datafusion(
        bob.shared_sql("CREATE EXTERNAL TABLE pw STORED AS CSV LOCATION '/etc/passwd'")
            .await
            .unwrap_err(),
    );
    assert_error(
        &error,
        "permission denied",
        "user bob may not read file:///etc/passwd",
        "bob's table over a file he may not read",
    );

    // Dropped through a session: gone for everyone; the session's own
    // view is dropped in the session.
    dave.shared_sql("DROP VIEW europe").await.unwrap();
    let error = error_of(&mut carol, "SELECT * FROM europe").await;
    assert!(error.contains("europe"), "{error}");
    dave.shared_sql("DROP VIEW scratch").await.unwrap();
    assert!(dave.sql("SELECT * FROM scratch").await.is_err());
    assert_eq!(
        listed(&mut carol).await,
        vec!["public.nat (TABLE)", "public.reg (TABLE)"]
    );

    // What the CLI made outlives the scheduler.
    drop((carol, dave, bob));
    drop(cluster);
    let mut cluster = self::cluster(&data, &catalog, &users).await;
    let dave = session(&cluster.scheduler_url, "dave", "dave-pw").await;
    assert_eq!(single_i64(&dave, "SELECT count(*) FROM reg").await, 5);
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_follow_the_tables_they_read_when_those_are_replaced_or_dropped() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.json");
    let users = dir.path().join("users.toml");
    let cluster = cluster(&data, &catalog, &users).await;
    let url = cluster.scheduler_url.clone();
    let mut carol = logged_in(&url, "carol", "carol-pw").await;
    let table_over = |folder: &str| {
        format!(
            "CREATE OR REPLACE EXTERNAL TABLE t STORED AS PARQUET LOCATION '{}/{folder}/'",
            data.display()
        )
    };
    query(&mut carol, &url, &table_over("nation")).await;
    query(
        &mut carol,
        &url,
        "CREATE VIEW v AS SELECT count(*) AS n FROM t",
    )
    .await;
    assert_eq!(
        run(&mut carol, &url, "SELECT n FROM v").await,
        vec!["| 25 |"]
    );

    // The view reads the table that replaced the one it was made over, for
    // Flight SQL clients and Rust sessions alike.
    query(&mut carol, &url, &table_over("supplier")).await;
    assert_eq!(
        run(&mut carol, &url, "SELECT n FROM v").await,
        vec!["| 1000 |"]
    );
    let dave = session(&url, "dave", "dave-pw").await;
    assert_eq!(single_i64(&dave, "SELECT n FROM v").await, 1000);

    // Over a dropped table the view does not run, and is kept: it runs
    // again once the table is back.
    query(&mut carol, &url, "DROP TABLE t").await;
    let error = error_of(&mut carol, "SELECT n FROM v").await;
    assert!(
        error.contains("table 'datafusion.public.v' not found"),
        "{error}"
    );
    assert_eq!(listed(&mut carol).await, Vec::<String>::new());
    query(&mut carol, &url, &table_over("nation")).await;
    assert_eq!(
        run(&mut carol, &url, "SELECT n FROM v").await,
        vec!["| 25 |"]
    );
    dave.refresh_catalog().await.unwrap();
    assert_eq!(single_i64(&dave, "SELECT n FROM v").await, 25);

    // A view replaced by one reading a view made after it stays.
    query(&mut carol, &url, "CREATE VIEW a AS SELECT 1 AS x").await;
    query(&mut carol, &url, "CREATE VIEW b AS SELECT 2 AS x").await;
    query(
        &mut carol,
        &url,
        "CREATE OR REPLACE VIEW a AS SELECT x + 10 AS x FROM b",
    )
    .await;
    assert_eq!(
        run(&mut carol, &url, "SELECT x FROM a").await,
        vec!["| 12 |"]
    );

    // The view is now kept before the table it reads (and `a` before
    // `b`): a new scheduler makes them all the same.
    drop((carol, dave));
    drop(cluster);
    let mut cluster = self::cluster(&data, &catalog, &users).await;
    let url = cluster.scheduler_url.clone();
    let mut carol = logged_in(&url, "carol", "carol-pw").await;
    assert_eq!(
        run(&mut carol, &url, "SELECT n FROM v").await,
        vec!["| 25 |"]
    );
    assert_eq!(
        run(&mut carol, &url, "SELECT x FROM a").await,
        vec!["| 12 |"]
    );
    assert_serves(&mut cluster).await;
}
