//! A cluster with password users, and the checks the security tests share:
//! logging in, submitting, and asserting a refusal's kind and message.

use ballista::BallistaError;
use ballista::client::{ClientAuth, SchedulerClient, SessionContextExt};
use ballista::config::Secret;
use ballista::flight::flight_endpoint;
use ballista::ids::JobId;
use ballista::plugin::auth::hash_password;
use ballista::proto;
use datafusion::prelude::SessionContext;
use tonic::Code;

use crate::cluster::TestCluster;
use crate::probe::{assert_processes_up, single_i64};

/// Runs until cancelled (the tests cancel it).
pub const LONG_QUERY: &str =
    "SELECT count(*) FROM generate_series(1, 50000000000) WHERE value % 7 = 3";

/// A scheduler with users alice (tenant `ta`, pool `etl`) and bob, one
/// executor of two slots.
pub async fn cluster_with_users() -> (TestCluster, tempfile::TempDir) {
    cluster_with_users_and("").await
}

/// Like [`cluster_with_users`], with more scheduler settings.
pub async fn cluster_with_users_and(scheduler: &str) -> (TestCluster, tempfile::TempDir) {
    cluster_of_users(1, scheduler).await
}

/// Like [`cluster_with_users_and`], with `executors` executors of two
/// slots each.
pub async fn cluster_of_users(
    executors: usize,
    scheduler: &str,
) -> (TestCluster, tempfile::TempDir) {
    cluster_of_users_granting(executors, scheduler, "").await
}

/// [`cluster_of_users`] with `alice_grants` (TOML lines such as
/// `write = ["file:///tmp/x/"]`) added to alice's entry.
pub async fn cluster_of_users_granting(
    executors: usize,
    scheduler: &str,
    alice_grants: &str,
) -> (TestCluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[users.alice]\npassword_hash = \"{}\"\ntenants = [\"ta\"]\npools = [\"etl\"]\n{alice_grants}\n\n\
             [users.bob]\npassword_hash = \"{}\"\n",
            hash_password("alice-pw").unwrap(),
            hash_password("bob-pw").unwrap()
        ),
    )
    .unwrap();
    let toml = format!(
        "[scheduler]\n{scheduler}\n[auth]\nusers_file = \"{}\"\n",
        users.display()
    );
    (TestCluster::start(executors, 2, Some(&toml)).await, dir)
}

/// Logs `user` in with `password`.
pub async fn log_in(cluster: &TestCluster, user: &str, password: &str) -> SchedulerClient {
    SchedulerClient::connect_with(
        &cluster.scheduler_url,
        ClientAuth::Password {
            user: user.into(),
            password: Secret::new(password),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{user} logs in: {e}"))
}

/// A request running `sql` with session `settings`.
pub fn sql_request(sql: &str, settings: &[(&str, &str)]) -> proto::ExecuteQueryRequest {
    proto::ExecuteQueryRequest {
        query: Some(proto::execute_query_request::Query::Sql(sql.into())),
        settings: proto::key_values(
            settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        ),
        ..Default::default()
    }
}

/// Submits `request`; the job's id.
pub async fn submit(client: &SchedulerClient, request: proto::ExecuteQueryRequest) -> JobId {
    let mut updates = client.execute(request).await.expect("submitted");
    let first = updates
        .message()
        .await
        .expect("a status")
        .expect("a first status");
    // Keep following it in the background: the stream ending would
    // cancel the job.
    tokio::spawn(async move { while let Ok(Some(_)) = updates.message().await {} });
    JobId::parse(&first.job_id).unwrap()
}

/// `status` has `code` and a message containing `needle`.
pub fn assert_status(status: &tonic::Status, code: Code, needle: &str, what: &str) {
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert!(status.message().contains(needle), "{what}: {status:?}");
}

/// `error` reads `kind…` and contains `needle`.
pub fn assert_error(error: &BallistaError, kind: &str, needle: &str, what: &str) {
    let text = error.to_string();
    assert!(
        text.starts_with(kind) && text.contains(needle),
        "{what}: {error:?}"
    );
}

/// The first executor's address.
pub async fn executor_url(cluster: &TestCluster) -> String {
    let admin = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let metadata = admin.executors().await.unwrap()[0]
        .metadata
        .clone()
        .unwrap();
    format!("http://{}:{}", metadata.host, metadata.port)
}

/// A connected channel to `url`, with no credentials.
pub async fn channel(url: &str) -> tonic::transport::Channel {
    flight_endpoint(url, &Default::default())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The processes are up and answer a query as the administrator.
pub async fn assert_serves(cluster: &mut TestCluster) {
    assert_processes_up(cluster);
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();
    assert_eq!(
        single_i64(&ctx, "SELECT sum(value) FROM generate_series(1, 100)").await,
        5050
    );
}
