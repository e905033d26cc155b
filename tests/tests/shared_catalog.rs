//! The scheduler's shared catalog: tables, views and schemas created with
//! SQL by one Flight SQL client are seen by others, read under each
//! reader's grants, owned by their creator, and kept across a restart of
//! the scheduler. Stock scheduler and executor processes.

use arrow_flight::sql::CommandGetTables;
use ballista::plugin::auth::hash_password;
use ballista_tests::cluster::TestCluster;
use ballista_tests::data::tpch_data;
use ballista_tests::flight_sql::{Client, logged_in, metadata, query, sorted_lines, strings};
use ballista_tests::secured::assert_serves;

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
        "CREATE EXTERNAL TABLE nat STORED AS PARQUET LOCATION '{}/nation/'",
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
