//! Every caller is authenticated and may do only what is theirs, on real
//! scheduler and executor processes: anonymous, wrong-password and forged
//! callers are refused on every call of every process; a job is its
//! owner's and runs under the owner's grants; the CLI logs in; the stock
//! binaries listen beyond loopback only when told to. After each, the same
//! cluster answers queries. Members: `security_members.rs`; data:
//! `security_storage.rs`.

use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{BasicAuth, HandshakeRequest, Ticket};
use ballista::auth::{CallCredentials, SecretKey};
use ballista::client::{ClientAuth, SchedulerClient, SessionContextExt};
use ballista::config::{BallistaConfig, Secret};
use ballista::ids::JobId;
use ballista::proto::{self, JobState, executor_control_client::ExecutorControlClient};
use ballista_tests::auth::scheduler_grpc;
use ballista_tests::probe::single_i64;
use ballista_tests::secured::{
    LONG_QUERY, assert_error, assert_serves, assert_status, channel, cluster_with_users,
    executor_url, log_in, sql_request, submit,
};
use datafusion::prelude::SessionContext;
use prost::Message;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_every_process_needs_valid_credentials() {
    let (mut cluster, _dir) = cluster_with_users().await;
    let url = cluster.scheduler_url.clone();
    let job = JobId::generate().to_string();
    let executor_id = cluster.executor_ids[0].clone();

    // No credentials at all: every scheduler method is refused before it
    // reads the request.
    let anonymous = CallCredentials::None;
    let mut s = scheduler_grpc(&url, &anonymous).await;
    let refusals: Vec<(&str, tonic::Status)> = vec![
        (
            "ExecuteQuery",
            s.execute_query(sql_request("SELECT 1", &[]))
                .await
                .unwrap_err(),
        ),
        (
            "GetJobStatus",
            s.get_job_status(proto::GetJobStatusRequest {
                job_id: job.clone(),
            })
            .await
            .unwrap_err(),
        ),
        (
            "CancelJob",
            s.cancel_job(proto::CancelJobRequest {
                job_id: job.clone(),
            })
            .await
            .unwrap_err(),
        ),
        (
            "ReleaseJob",
            s.release_job(proto::ReleaseJobRequest {
                job_id: job.clone(),
            })
            .await
            .unwrap_err(),
        ),
        (
            "GetExecutorsMetadata",
            s.get_executors_metadata(proto::GetExecutorsMetadataRequest {})
                .await
                .unwrap_err(),
        ),
        (
            "GetSessionDefaults",
            s.get_session_defaults(proto::GetSessionDefaultsRequest {})
                .await
                .unwrap_err(),
        ),
        (
            "RegisterExecutor",
            s.register_executor(proto::RegisterExecutorRequest::default())
                .await
                .unwrap_err(),
        ),
        (
            "HeartBeat",
            s.heart_beat(proto::HeartBeatRequest {
                executor_id: executor_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
        ),
        (
            "UpdateTaskStatus",
            s.update_task_status(proto::UpdateTaskStatusRequest {
                executor_id: executor_id.clone(),
                statuses: vec![],
                ..Default::default()
            })
            .await
            .unwrap_err(),
        ),
        (
            "ReportTaskStatuses",
            s.report_task_statuses(futures::stream::iter([proto::UpdateTaskStatusRequest {
                executor_id: executor_id.clone(),
                report_seq: 1,
                ..Default::default()
            }]))
            .await
            .unwrap_err(),
        ),
        (
            "DeregisterExecutor",
            s.deregister_executor(proto::DeregisterExecutorRequest {
                executor_id: executor_id.clone(),
                reason: "forged".into(),
                takes_removals: false,
            })
            .await
            .unwrap_err(),
        ),
    ];
    // ...and every executor method.
    let executor = channel(&executor_url(&cluster).await).await;
    let mut control = ExecutorControlClient::new(executor.clone());
    let mut flight = FlightServiceClient::new(executor.clone());
    let ticket = proto::FetchPartitionTicket {
        job_id: job.clone(),
        path: format!("{job}/s1/m0-a0-p0.arrow"),
        ..Default::default()
    };
    let executor_refusals: Vec<(&str, tonic::Status)> = vec![
        (
            "LaunchTasks",
            control
                .launch_tasks(proto::LaunchTasksRequest::default())
                .await
                .unwrap_err(),
        ),
        (
            "CancelTasks",
            control
                .cancel_tasks(proto::CancelTasksRequest {
                    job_id: job.clone(),
                })
                .await
                .unwrap_err(),
        ),
        (
            "RemoveJobData",
            control
                .remove_job_data(proto::RemoveJobDataRequest {
                    job_id: job.clone(),
                })
                .await
                .unwrap_err(),
        ),
        (
            "ReleaseStageOutputs",
            control
                .release_stage_outputs(proto::ReleaseStageOutputsRequest {
                    job_id: job.clone(),
                    stage_ids: vec![1],
                })
                .await
                .unwrap_err(),
        ),
        (
            "DoGet",
            flight
                .do_get(Ticket::new(ticket.encode_to_vec()))
                .await
                .unwrap_err(),
        ),
        (
            "Handshake (executor)",
            flight
                .handshake(futures::stream::iter([HandshakeRequest::default()]))
                .await
                .unwrap_err(),
        ),
    ];
    for (method, status) in refusals.iter().chain(&executor_refusals) {
        assert_status(
            status,
            Code::Unauthenticated,
            "this call needs credentials",
            method,
        );
    }

    // Wrong passwords and unknown users: one answer, no hint which.
    for (user, password) in [("alice", "bob-pw"), ("mallory", "alice-pw")] {
        let error = SchedulerClient::connect_with(
            &url,
            ClientAuth::Password {
                user: user.into(),
                password: Secret::new(password),
            },
        )
        .await
        .unwrap_err();
        assert_error(
            &error,
            "unauthenticated: ",
            "wrong user name or password",
            user,
        );
    }
    // Forged and foreign credentials.
    let other_cluster = SecretKey::random().unwrap();
    let forged = format!("bt1.alice.{}.{}", u32::MAX, "0".repeat(64));
    let foreign = ballista::auth::token::mint_token(
        &other_cluster.derive(ballista::auth::token::TOKEN_KEY_PURPOSE),
        "alice",
        600,
    );
    for (what, auth) in [
        ("a forged token", ClientAuth::Token(Secret::new(&forged))),
        (
            "another cluster's token",
            ClientAuth::Token(Secret::new(&foreign)),
        ),
        (
            "another cluster's key",
            ClientAuth::ClusterKey(other_cluster.clone()),
        ),
    ] {
        let client = SchedulerClient::connect_with(&url, auth).await.unwrap();
        let error = client.session_defaults().await.unwrap_err();
        assert_error(
            &error,
            "unauthenticated: ",
            "not valid for this cluster",
            what,
        );
    }
    let mut executor_with_foreign_key =
        FlightServiceClient::new(CallCredentials::Admin(other_cluster).wrap(executor.clone()));
    let status = executor_with_foreign_key
        .do_get(Ticket::new(ticket.encode_to_vec()))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::Unauthenticated,
        "not valid for this cluster",
        "executor, foreign key",
    );
    // A password is for the login only.
    let mut request = tonic::Request::new(proto::GetSessionDefaultsRequest {});
    request.metadata_mut().insert(
        "authorization",
        "Basic YWxpY2U6YWxpY2UtcHc=".parse().unwrap(),
    );
    let status = scheduler_grpc(&url, &anonymous)
        .await
        .get_session_defaults(request)
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::Unauthenticated,
        "only accepted by the login",
        "Basic on a call",
    );

    // The Flight handshake with a BasicAuth payload (as older Flight
    // clients send it) answers a bearer token that opens the scheduler.
    let mut login = FlightServiceClient::new(channel(&url).await);
    let payload = BasicAuth {
        username: "bob".into(),
        password: "bob-pw".into(),
    }
    .encode_to_vec();
    let response = login
        .handshake(futures::stream::iter([HandshakeRequest {
            protocol_version: 0,
            payload: payload.into(),
        }]))
        .await
        .expect("bob logs in");
    let header = response
        .metadata()
        .get("authorization")
        .expect("a bearer header")
        .to_str()
        .unwrap()
        .to_string();
    let token = header
        .strip_prefix("Bearer ")
        .expect("Bearer …")
        .to_string();
    let bob = SchedulerClient::connect_with(&url, ClientAuth::Token(Secret::new(&token)))
        .await
        .unwrap();
    bob.session_defaults()
        .await
        .expect("bob's token is accepted");

    // The right password runs queries, results fetched from the executor
    // with the same token.
    let mut config = BallistaConfig::default();
    config.settings.client.user = Some("alice".into());
    config.settings.client.password = Some(Secret::new("alice-pw"));
    let alice = SessionContext::remote_with_config(&url, config)
        .await
        .unwrap();
    assert_eq!(
        single_i64(&alice, "SELECT sum(value) FROM generate_series(1, 100)").await,
        5050
    );
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_its_owners_and_runs_under_the_owners_grants() {
    let (mut cluster, _dir) = cluster_with_users().await;
    let alice = log_in(&cluster, "alice", "alice-pw").await;
    let bob = log_in(&cluster, "bob", "bob-pw").await;
    let admin = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();

    let job = submit(&alice, sql_request(LONG_QUERY, &[])).await;
    let status = alice.job_status(&job).await.expect("alice sees her job");
    assert_eq!(status.owner, "alice");
    for (what, error) in [
        ("status", bob.job_status(&job).await.unwrap_err()),
        ("cancel", bob.cancel(&job).await.unwrap_err()),
        ("release", bob.release(&job).await.unwrap_err()),
    ] {
        assert_error(
            &error,
            "permission denied: ",
            "belongs to another user",
            what,
        );
    }
    assert_eq!(
        alice.job_status(&job).await.unwrap().state,
        JobState::Running as i32,
        "bob's attempts left the job running"
    );
    let seen = admin
        .job_status(&job)
        .await
        .expect("an admin sees every job");
    assert_eq!(seen.owner, "alice");
    assert!(alice.cancel(&job).await.expect("alice cancels her job"));

    // Tenants and pools come from the grants.
    let error = alice
        .execute(sql_request("SELECT 1", &[("ballista.tenant", "tb")]))
        .await
        .unwrap_err();
    assert_error(
        &error,
        "permission denied: ",
        "may not run jobs under memory tenant \"tb\" (granted: ta)",
        "alice, tenant tb",
    );
    let error = bob
        .execute(sql_request("SELECT 1", &[("ballista.pool", "etl")]))
        .await
        .unwrap_err();
    assert_error(
        &error,
        "permission denied: ",
        "may not use scheduling pool \"etl\"",
        "bob, pool etl",
    );
    assert_serves(&mut cluster).await;
}

#[test]
fn stock_binaries_listen_beyond_loopback_only_when_told_to() {
    use ballista_tests::cluster::{Process, run_to_exit};
    for binary in ["ballista-scheduler", "ballista-executor"] {
        let finished = run_to_exit(binary, &["--bind-host", "0.0.0.0", "--port", "0"], &[], 30);
        assert_eq!(finished.code, Some(2), "{binary}: {finished:?}");
        assert!(
            finished.stderr.contains(&format!(
                "{binary}: refusing to listen on 0.0.0.0 without TLS"
            )) && finished.stderr.contains("--insecure"),
            "{binary}: {}",
            finished.stderr
        );
    }
    let args = |list: &[&str]| list.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    // Told to, it serves, and warns.
    let mut exposed = Process::start(
        "scheduler",
        "ballista-scheduler",
        &args(&["--bind-host", "0.0.0.0", "--port", "0", "--insecure"]),
        &[],
    );
    let line = exposed.wait_for_stdout("listening on", Duration::from_secs(60));
    assert!(line.contains("listening on 0.0.0.0:"), "{line}");
    exposed.wait_for_stderr("without TLS (--insecure)", Duration::from_secs(5));
    exposed.kill();
    // By default it listens on loopback only.
    let mut default = Process::start(
        "scheduler",
        "ballista-scheduler",
        &args(&["--port", "0"]),
        &[],
    );
    let line = default.wait_for_stdout("listening on", Duration::from_secs(60));
    assert!(line.contains("listening on 127.0.0.1:"), "{line}");
    default.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_logs_in_with_the_password_from_the_environment() {
    use ballista_tests::cluster::run_to_exit;
    let (mut cluster, _dir) = cluster_with_users().await;
    let url = cluster.scheduler_url.clone();
    let args = [
        "sql",
        "--scheduler",
        &url,
        "--user",
        "alice",
        "-c",
        "SELECT 41 + 1 AS x",
        "--format",
        "csv",
    ];
    let ok = run_to_exit("ballista", &args, &[("BALLISTA_PASSWORD", "alice-pw")], 60);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(ok.stdout.contains("42"), "{}", ok.stdout);
    let wrong = run_to_exit("ballista", &args, &[("BALLISTA_PASSWORD", "nope")], 60);
    assert_eq!(wrong.code, Some(1), "{wrong:?}");
    assert!(
        wrong
            .stderr
            .contains("unauthenticated: wrong user name or password"),
        "{}",
        wrong.stderr
    );
    let missing = run_to_exit("ballista", &args, &[], 60);
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("no password is set for user alice: set BALLISTA_PASSWORD"),
        "{}",
        missing.stderr
    );
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_session_outlives_its_first_token() {
    // Tokens live 4 s here: the session logs in again before each expires.
    let (mut cluster, _dir) =
        ballista_tests::secured::cluster_with_users_and("token_ttl_secs = 4").await;
    let mut config = BallistaConfig::default();
    config.settings.client.user = Some("alice".into());
    config.settings.client.password = Some(Secret::new("alice-pw"));
    let alice = SessionContext::remote_with_config(&cluster.scheduler_url, config)
        .await
        .unwrap();
    let sum = "SELECT sum(value) FROM generate_series(1, 10)";
    assert_eq!(single_i64(&alice, sum).await, 55);
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(
        single_i64(&alice, sum).await,
        55,
        "after two token lifetimes"
    );
    // A token taken once and never renewed does expire, saying so.
    let once = log_in(&cluster, "bob", "bob-pw").await;
    let token = match once.credentials() {
        CallCredentials::Bearer(token) => token.read().clone(),
        other => panic!("a password client holds a bearer token: {other:?}"),
    };
    let fixed = SchedulerClient::connect_with(
        &cluster.scheduler_url,
        ClientAuth::Token(Secret::new(&token)),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let error = fixed.session_defaults().await.unwrap_err();
    assert_error(
        &error,
        "unauthenticated: ",
        "the bearer token of user bob expired",
        "expired token",
    );
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_file_is_read_again_on_sighup() {
    let (mut cluster, dir) = cluster_with_users().await;
    let url = cluster.scheduler_url.clone();
    let password = |user: &str, password: &str| ClientAuth::Password {
        user: user.into(),
        password: Secret::new(password),
    };
    let bob = log_in(&cluster, "bob", "bob-pw").await;
    let refused = SchedulerClient::connect_with(&url, password("carol", "carol-pw"))
        .await
        .expect_err("carol is not a user yet");
    assert_error(
        &refused,
        "unauthenticated: ",
        "wrong user name or password",
        "carol",
    );

    // Carol added, bob removed.
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[users.alice]\npassword_hash = \"{}\"\n\n[users.carol]\npassword_hash = \"{}\"\n",
            ballista::plugin::auth::hash_password("alice-pw").unwrap(),
            ballista::plugin::auth::hash_password("carol-pw").unwrap()
        ),
    )
    .unwrap();
    cluster.scheduler.signal(libc::SIGHUP);
    cluster
        .scheduler
        .wait_for_stderr("reloaded the users of users-file", Duration::from_secs(10));
    SchedulerClient::connect_with(&url, password("carol", "carol-pw"))
        .await
        .expect("carol logs in");
    let refused = SchedulerClient::connect_with(&url, password("bob", "bob-pw"))
        .await
        .expect_err("bob is gone");
    assert_error(
        &refused,
        "unauthenticated: ",
        "wrong user name or password",
        "bob",
    );
    let error = bob.session_defaults().await.unwrap_err();
    assert_error(
        &error,
        "unauthenticated: ",
        "user bob is no longer known to this cluster",
        "bob's token",
    );

    // A broken file keeps the users in use.
    std::fs::write(&users, "[users.carol]\npassword_hash = \"not a hash\"\n").unwrap();
    cluster.scheduler.signal(libc::SIGHUP);
    cluster
        .scheduler
        .wait_for_stderr("kept the users in use", Duration::from_secs(10));
    SchedulerClient::connect_with(&url, password("carol", "carol-pw"))
        .await
        .expect("carol still logs in");
    assert_serves(&mut cluster).await;
}
