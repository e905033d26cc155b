//! CSV tables reach the cluster the three ways a user can declare them:
//! `register_csv`, `CREATE EXTERNAL TABLE ... STORED AS CSV`, and the
//! scheduler's configuration.

use std::fmt::Write as _;

use ballista::client::SessionContextExt;
use ballista_tests::cluster::TestCluster;
use ballista_tests::compare;
use datafusion::prelude::{CsvReadOptions, SessionContext};

const QUERY: &str = "SELECT grp, count(*) AS n, sum(val) AS total, min(name) AS first_name \
                     FROM readings GROUP BY grp ORDER BY grp";

/// Two CSV files with a header, 5000 rows in 7 groups.
fn write_csv(dir: &std::path::Path) {
    for part in 0..2 {
        let mut text = String::from("id,grp,val,name\n");
        for i in 0..2500 {
            let id = part * 2500 + i;
            writeln!(
                text,
                "{id},g{},{}.{},name-{:05}",
                id % 7,
                id * 3,
                id % 10,
                (id * 7919) % 10000
            )
            .unwrap();
        }
        std::fs::write(dir.join(format!("part-{part}.csv")), text).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_tables_registered_every_way_give_datafusion_results() {
    let dir = tempfile::tempdir().unwrap();
    write_csv(dir.path());
    let location = format!("{}/", dir.path().display());

    let local = SessionContext::new();
    local
        .register_csv("readings", &location, CsvReadOptions::new())
        .await
        .unwrap();
    let expected = local.sql(QUERY).await.unwrap().collect().await.unwrap();
    assert_eq!(expected.iter().map(|b| b.num_rows()).sum::<usize>(), 7);

    let toml = format!(
        "[[scheduler.tables]]\nname = \"readings\"\nlocation = \"{location}\"\nformat = \"csv\"\nhas_header = true\n"
    );
    let cluster = TestCluster::start(2, 1, Some(&toml)).await;

    // Declared by the scheduler: nothing to register.
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();
    let actual = ctx.sql(QUERY).await.unwrap().collect().await.unwrap();
    compare::compare(&expected, &actual).unwrap();

    // register_csv in the client session.
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();
    ctx.deregister_table("readings").unwrap();
    ctx.register_csv("readings", &location, CsvReadOptions::new())
        .await
        .unwrap();
    let actual = ctx.sql(QUERY).await.unwrap().collect().await.unwrap();
    compare::compare(&expected, &actual).unwrap();

    // CREATE EXTERNAL TABLE.
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();
    ctx.deregister_table("readings").unwrap();
    ctx.sql(&format!(
        "CREATE EXTERNAL TABLE readings STORED AS CSV LOCATION '{location}' OPTIONS ('format.has_header' 'true')"
    ))
    .await
    .unwrap();
    let actual = ctx.sql(QUERY).await.unwrap().collect().await.unwrap();
    compare::compare(&expected, &actual).unwrap();
}
