//! What a user's queries may read and write: result tickets are signed,
//! expiring and open one partition each; storage grants bound every scan
//! and destination (including scans a client ships), and no request leaves
//! for a bucket outside them. On real scheduler and executor processes.

use std::sync::Arc;
use std::time::Duration;

use ballista::BallistaError;
use ballista::client::SessionContextExt;
use ballista::config::{BallistaConfig, Secret};
use ballista::ids::JobId;
use ballista::plugin::auth::hash_password;
use ballista::proto::{self, JobState};
use ballista_tests::cluster::TestCluster;
use ballista_tests::probe::single_i64;
use ballista_tests::secured::{
    assert_error, assert_serves, cluster_with_users_and, log_in, sql_request,
};
use datafusion::prelude::SessionContext;
use prost::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_tickets_are_signed_expiring_and_open_one_partition_each() {
    let ttl = 5;
    let (mut cluster, _dir) = cluster_with_users_and(&format!("ticket_ttl_secs = {ttl}")).await;
    let alice = log_in(&cluster, "alice", "alice-pw").await;
    let request = sql_request(
        "SELECT value % 10 AS k, count(*) AS n FROM generate_series(1, 1000) GROUP BY value % 10",
        // Two result partitions, however small: both are fetched below.
        &[
            ("datafusion.execution.target_partitions", "2"),
            ("ballista.task_input_bytes", "0"),
        ],
    );
    let status = ballista_tests::probe::final_status(&alice, request).await;
    assert_eq!(
        status.state,
        JobState::Succeeded as i32,
        "{:?}",
        status.error
    );
    let job = JobId::parse(&status.job_id).unwrap();
    let locations: Vec<proto::ShuffleLocation> = status
        .result
        .expect("a result")
        .partitions
        .into_iter()
        .flat_map(|p| p.locations)
        .collect();
    assert!(locations.len() >= 2, "{locations:?}");
    let (first, second) = (&locations[0], &locations[1]);
    assert_ne!(first.path, second.path);
    let pool = ballista::flight::FlightClientPool::with_credentials(alice.credentials().clone());
    let fetch = |location: &proto::ShuffleLocation, ticket: Vec<u8>| {
        let pool = pool.clone();
        let (host, port, path) = (
            location.host.clone(),
            location.port as u16,
            location.path.clone(),
        );
        let job = job.clone();
        async move {
            let stream = pool
                .fetch(
                    &host,
                    port,
                    &job,
                    &path,
                    &ticket,
                    Arc::new(arrow::datatypes::Schema::empty()),
                )
                .await?;
            let batches: Vec<_> = futures::TryStreamExt::try_collect(stream)
                .await
                .map_err(BallistaError::from_datafusion)?;
            Ok::<usize, BallistaError>(batches.iter().map(|b| b.num_rows()).sum())
        }
    };
    // The signed ticket opens its partition.
    let rows = fetch(first, first.ticket.clone())
        .await
        .expect("the ticket opens its partition");
    assert!(rows > 0);
    // The same ticket, its path changed to the other partition's: refused.
    let mut altered = ballista::flight::decode_ticket(&first.ticket).unwrap();
    altered.path = second.path.clone();
    let error = fetch(second, altered.encode_to_vec()).await.unwrap_err();
    assert_error(
        &error,
        "permission denied: ",
        "signature does not match",
        "altered ticket",
    );
    // A job id and a path alone: refused.
    let error = fetch(second, Vec::new()).await.unwrap_err();
    assert_error(
        &error,
        "permission denied: ",
        "not signed by the scheduler",
        "unsigned ticket",
    );
    // Once expired, the ticket opens nothing.
    tokio::time::sleep(Duration::from_secs(ttl + 1)).await;
    let error = fetch(first, first.ticket.clone()).await.unwrap_err();
    assert_error(&error, "permission denied: ", "expired", "expired ticket");
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_reads_and_writes_only_the_storage_granted() {
    use datafusion::prelude::CsvReadOptions;
    let data = tempfile::tempdir().unwrap();
    let root = data.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("in")).unwrap();
    std::fs::create_dir_all(root.join("out")).unwrap();
    std::fs::write(root.join("in/t.csv"), "a,b\n1,2\n3,4\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[users.alice]\npassword_hash = \"{}\"\nread = [\"file://{root}/in/\"]\n\
             write = [\"file://{root}/out/\"]\n\n[users.bob]\npassword_hash = \"{}\"\n",
            hash_password("alice-pw").unwrap(),
            hash_password("bob-pw").unwrap(),
            root = root.display(),
        ),
    )
    .unwrap();
    // A table the operator declares is everyone's to read; a folder next
    // to it whose name starts the same is not.
    std::fs::create_dir_all(root.join("shared")).unwrap();
    std::fs::create_dir_all(root.join("shared2")).unwrap();
    std::fs::write(root.join("shared/s.csv"), "a,b\n5,6\n").unwrap();
    std::fs::write(root.join("shared2/s.csv"), "a,b\n7,8\n").unwrap();
    let toml = format!(
        "[[scheduler.tables]]\nname = \"shared\"\nlocation = \"{}/shared/\"\nformat = \"csv\"\n\n\
         [auth]\nusers_file = \"{}\"\n",
        root.display(),
        users.display()
    );
    let mut cluster = TestCluster::start(1, 2, Some(&toml)).await;
    let session = |user: &str, password: &str| {
        let mut config = BallistaConfig::default();
        config.settings.client.user = Some(user.into());
        config.settings.client.password = Some(Secret::new(password));
        SessionContext::remote_with_config(&cluster.scheduler_url, config)
    };
    let refusal = |result: datafusion::error::Result<Vec<arrow::array::RecordBatch>>| {
        BallistaError::from_datafusion(result.expect_err("refused")).to_string()
    };
    let alice = session("alice", "alice-pw").await.unwrap();
    let table = root.join("in/t.csv").display().to_string();
    alice
        .register_csv("t", &table, CsvReadOptions::new())
        .await
        .unwrap();
    assert_eq!(single_i64(&alice, "SELECT sum(a) FROM t").await, 4);

    // Outside her grants: refused by the scheduler before any task runs.
    alice
        .register_csv(
            "p",
            "/etc/passwd",
            CsvReadOptions::new()
                .has_header(false)
                .delimiter(b':')
                .file_extension(""),
        )
        .await
        .unwrap();
    let error = refusal(alice.sql("SELECT * FROM p").await.unwrap().collect().await);
    assert!(
        error.starts_with("permission denied: user alice may not read file:///etc/passwd")
            && error.contains(&format!("its read grants: file://{}/in/", root.display())),
        "{error}"
    );
    // Nor through a table of her own kind, which the client ships as its
    // scan: the files that scan reads are checked the same way.
    let listing = alice.table_provider("p").await.unwrap();
    alice
        .register_table("wrapped", Arc::new(Wrapped(listing)))
        .unwrap();
    let error = refusal(
        alice
            .sql("SELECT * FROM wrapped")
            .await
            .unwrap()
            .collect()
            .await,
    );
    assert!(
        error.starts_with("permission denied: user alice may not read file:///etc/passwd"),
        "{error}"
    );
    // Writing: only under her write grant.
    let granted = root.join("out/r.csv").display().to_string();
    alice
        .sql(&format!(
            "COPY (SELECT 1 AS x) TO '{granted}' STORED AS CSV"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .expect("a COPY under the write grant");
    assert!(root.join("out/r.csv").exists());
    let outside = root.join("in/evil.csv").display().to_string();
    let error = refusal(
        alice
            .sql(&format!(
                "COPY (SELECT 1 AS x) TO '{outside}' STORED AS CSV"
            ))
            .await
            .unwrap()
            .collect()
            .await,
    );
    assert!(
        error.starts_with("permission denied: user alice may not write"),
        "{error}"
    );
    assert!(!root.join("in/evil.csv").exists());
    // Bob has no grants: not even alice's table.
    let bob = session("bob", "bob-pw").await.unwrap();
    bob.register_csv("t", &table, CsvReadOptions::new())
        .await
        .unwrap();
    let error = refusal(
        bob.sql("SELECT sum(a) FROM t")
            .await
            .unwrap()
            .collect()
            .await,
    );
    assert!(
        error.starts_with("permission denied: user bob may not read")
            && error.contains("its read grants: none"),
        "{error}"
    );
    assert_eq!(single_i64(&bob, "SELECT sum(a) FROM shared").await, 5);
    let neighbour = root.join("shared2/s.csv").display().to_string();
    bob.register_csv("n", &neighbour, CsvReadOptions::new())
        .await
        .unwrap();
    let error = refusal(
        bob.sql("SELECT sum(a) FROM n")
            .await
            .unwrap()
            .collect()
            .await,
    );
    assert!(
        error.starts_with("permission denied: user bob may not read"),
        "{error}"
    );
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_leaves_for_a_bucket_outside_the_grants() {
    use ballista_tests::s3;
    let granted = s3::unique_bucket("granted");
    // Never created: a request for it would be logged (and answered 404).
    let forbidden = format!("forbidden-{}", JobId::generate());
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[users.alice]\npassword_hash = \"{}\"\nread = [\"s3://{granted}/\"]\n\
             write = [\"s3://{granted}/\"]\n",
            hash_password("alice-pw").unwrap(),
        ),
    )
    .unwrap();
    let storage = s3::storage_toml();
    let scheduler = format!("{storage}\n[auth]\nusers_file = \"{}\"\n", users.display());
    let mut cluster = TestCluster::start_with(1, 2, Some(&scheduler), Some(&storage)).await;
    let alice = log_in(&cluster, "alice", "alice-pw").await;
    let copy = |bucket: &str| {
        sql_request(
            &format!("COPY (SELECT 1 AS x) TO 's3://{bucket}/out/r.csv' STORED AS CSV"),
            &[],
        )
    };
    let status = ballista_tests::probe::final_status(&alice, copy(&granted)).await;
    assert_eq!(
        status.state,
        JobState::Succeeded as i32,
        "{:?}",
        status.error
    );
    let status = ballista_tests::probe::final_status(&alice, copy(&forbidden)).await;
    assert_eq!(status.state, JobState::Failed as i32);
    let error = BallistaError::from_proto(&status.error.expect("an error"));
    assert_error(
        &error,
        "permission denied: ",
        &format!("user alice may not write s3://{forbidden}/out/r.csv"),
        "COPY outside the grants",
    );
    let log = s3::request_log();
    assert!(
        log.contains(&format!("/{granted}/")),
        "the granted COPY is not in the log"
    );
    assert!(
        !log.contains(&forbidden),
        "a request for {forbidden} reached the S3 server:\n{}",
        log.lines()
            .filter(|l| l.contains(&forbidden))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_serves(&mut cluster).await;
}

/// A table provider the cluster does not know: the client ships its scan.
#[derive(Debug)]
struct Wrapped(Arc<dyn datafusion::datasource::TableProvider>);

#[async_trait::async_trait]
impl datafusion::datasource::TableProvider for Wrapped {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        self.0.table_type()
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::prelude::Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }
}
