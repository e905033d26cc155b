//! Every caller is authenticated and may do only what is theirs, on real
//! scheduler and executor processes: anonymous, wrong-password and forged
//! callers are refused on every call of every process; a rogue member
//! cannot register under a live executor's id, speak for another executor,
//! report another's task or drive another's control service; a job is its
//! owner's. After each, the same cluster answers queries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{BasicAuth, HandshakeRequest, Ticket};
use ballista::BallistaError;
use ballista::auth::{CallCredentials, SecretKey, SessionKeySlot, unwrap_session_key};
use ballista::client::{ClientAuth, SchedulerClient, SessionContextExt};
use ballista::config::{BallistaConfig, Secret};
use ballista::flight::flight_endpoint;
use ballista::ids::JobId;
use ballista::plugin::auth::hash_password;
use ballista::proto::{self, JobState, executor_control_client::ExecutorControlClient};
use ballista_tests::auth::{admin, cluster_key, member, register, scheduler_grpc};
use ballista_tests::cluster::TestCluster;
use ballista_tests::probe::{assert_processes_up, single_i64};
use datafusion::prelude::SessionContext;
use prost::Message;
use tonic::Code;

/// Runs until cancelled (the tests cancel it).
const LONG_QUERY: &str = "SELECT count(*) FROM generate_series(1, 50000000000) WHERE value % 7 = 3";

/// A scheduler with users alice (tenant `ta`, pool `etl`) and bob, one
/// executor of two slots.
async fn cluster_with_users() -> (TestCluster, tempfile::TempDir) {
    cluster_with_users_and("").await
}

/// Like [`cluster_with_users`], with more scheduler settings.
async fn cluster_with_users_and(scheduler: &str) -> (TestCluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[users.alice]\npassword_hash = \"{}\"\ntenants = [\"ta\"]\npools = [\"etl\"]\n\n\
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
    (TestCluster::start(1, 2, Some(&toml)).await, dir)
}

async fn log_in(cluster: &TestCluster, user: &str, password: &str) -> SchedulerClient {
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

fn sql_request(sql: &str, settings: &[(&str, &str)]) -> proto::ExecuteQueryRequest {
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
async fn submit(client: &SchedulerClient, request: proto::ExecuteQueryRequest) -> JobId {
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

fn assert_status(status: &tonic::Status, code: Code, needle: &str, what: &str) {
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert!(status.message().contains(needle), "{what}: {status:?}");
}

fn assert_error(error: &BallistaError, kind: &str, needle: &str, what: &str) {
    let text = error.to_string();
    assert!(
        text.starts_with(kind) && text.contains(needle),
        "{what}: {error:?}"
    );
}

/// The first executor's address.
async fn executor_url(cluster: &TestCluster) -> String {
    let admin = SchedulerClient::connect(&cluster.scheduler_url)
        .await
        .unwrap();
    let metadata = admin.executors().await.unwrap()[0]
        .metadata
        .clone()
        .unwrap();
    format!("http://{}:{}", metadata.host, metadata.port)
}

async fn channel(url: &str) -> tonic::transport::Channel {
    flight_endpoint(url).unwrap().connect().await.unwrap()
}

/// The processes are up and answer a query as the administrator.
async fn assert_serves(cluster: &mut TestCluster) {
    assert_processes_up(cluster);
    let ctx = SessionContext::remote(&cluster.scheduler_url)
        .await
        .unwrap();
    assert_eq!(
        single_i64(&ctx, "SELECT sum(value) FROM generate_series(1, 100)").await,
        5050
    );
}

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
            })
            .await
            .unwrap_err(),
        ),
        (
            "DeregisterExecutor",
            s.deregister_executor(proto::DeregisterExecutorRequest {
                executor_id: executor_id.clone(),
                reason: "forged".into(),
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
                .launch_tasks(proto::LaunchTasksRequest { tasks: vec![] })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_member_cannot_take_over_or_speak_for_another_executor() {
    let (mut cluster, _dir) = cluster_with_users().await;
    let url = cluster.scheduler_url.clone();
    let real = cluster.executor_ids[0].clone();
    let registration = |id: &str| proto::RegisterExecutorRequest {
        metadata: Some(proto::ExecutorMetadata {
            id: id.into(),
            host: "127.0.0.1".into(),
            port: 1,
            slots: 1,
            version: "rogue".into(),
        }),
        memory: None,
    };

    // Without the cluster key, no registration.
    let outsider = CallCredentials::Register {
        cluster: SecretKey::random().unwrap(),
        id: "rogue".into(),
    };
    let status = scheduler_grpc(&url, &outsider)
        .await
        .register_executor(registration("rogue"))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::Unauthenticated,
        "not valid for this cluster",
        "outsider registers",
    );

    // With it, not under a live executor's id...
    let status = scheduler_grpc(&url, &register(&real))
        .await
        .register_executor(registration(&real))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::PermissionDenied,
        "registered and alive",
        "takeover",
    );
    // ...nor under an id its proof is not for.
    let status = scheduler_grpc(&url, &register("rogue"))
        .await
        .register_executor(registration("other"))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::PermissionDenied,
        "may not register for executor other",
        "other id",
    );

    // A long job, whose first task runs on the real executor.
    let alice = log_in(&cluster, "alice", "alice-pw").await;
    let job = submit(&alice, sql_request(LONG_QUERY, &[])).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (stage_id, task) = loop {
        let status = alice.job_status(&job).await.unwrap();
        let running = status.stages.iter().find_map(|stage| {
            stage
                .tasks
                .iter()
                .find(|t| t.state == "running")
                .map(|t| (stage.stage_id, t.clone()))
        });
        if let Some(found) = running {
            break found;
        }
        assert!(Instant::now() < deadline, "no task started: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(task.executor_id, real);

    // A registered rogue executor...
    let answer = scheduler_grpc(&url, &register("rogue"))
        .await
        .register_executor(registration("rogue"))
        .await
        .expect("a member registers under its own id")
        .into_inner();
    let rogue_key = unwrap_session_key(
        &cluster_key(),
        "rogue",
        &answer.session_key,
        &answer.key_nonce,
    )
    .unwrap();
    // Without the cluster key, the answer is no key at all.
    assert_ne!(answer.session_key, rogue_key.as_bytes().to_vec());
    let rogue = CallCredentials::Executor {
        cluster: cluster_key(),
        id: "rogue".into(),
        session: SessionKeySlot::new(parking_lot::RwLock::new(Some(rogue_key.clone()))),
    };
    let mut as_rogue = scheduler_grpc(&url, &rogue).await;
    // ...cannot heartbeat or deregister for the real one,
    let status = as_rogue
        .heart_beat(proto::HeartBeatRequest {
            executor_id: real.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::PermissionDenied,
        &format!("may not send heartbeats for executor {real}"),
        "heartbeat",
    );
    let status = as_rogue
        .deregister_executor(proto::DeregisterExecutorRequest {
            executor_id: real.clone(),
            reason: "forged".into(),
        })
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::PermissionDenied,
        &format!("may not deregister for executor {real}"),
        "deregister",
    );
    // ...nor sign as it with its own key,
    let impostor = CallCredentials::Executor {
        cluster: cluster_key(),
        id: real.clone(),
        session: SessionKeySlot::new(parking_lot::RwLock::new(Some(rogue_key.clone()))),
    };
    let status = scheduler_grpc(&url, &impostor)
        .await
        .heart_beat(proto::HeartBeatRequest {
            executor_id: real.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::Unauthenticated,
        &format!("executor credentials of {real} are not valid"),
        "impostor heartbeat",
    );
    // ...nor report the real executor's task: the report is ignored.
    let forged = proto::TaskStatus {
        task: Some(proto::TaskId {
            job_id: job.to_string(),
            stage_id,
            partition: task.partition,
            attempt: task.attempt,
        }),
        executor_id: "rogue".into(),
        result: Some(proto::task_status::Result::Failed(
            BallistaError::Execution("forged failure".into()).to_proto(),
        )),
        started_at_ms: 0,
        ended_at_ms: 0,
    };
    as_rogue
        .update_task_status(proto::UpdateTaskStatusRequest {
            executor_id: "rogue".into(),
            statuses: vec![forged],
        })
        .await
        .expect("the report is answered");
    cluster.scheduler.wait_for_stderr(
        &format!(
            "ignoring task status from rogue: permission denied: task {stage_id}/{} attempt {} of job {job} runs on executor {real}",
            task.partition, task.attempt
        ),
        Duration::from_secs(5),
    );
    assert_eq!(
        alice.job_status(&job).await.unwrap().state,
        JobState::Running as i32,
        "the forged failure ended the job"
    );

    // ...nor call the real executor's control service, as a member or as
    // the scheduler with its own key.
    let executor = channel(&executor_url(&cluster).await).await;
    let status = ExecutorControlClient::new(member("rogue").wrap(executor.clone()))
        .cancel_tasks(proto::CancelTasksRequest {
            job_id: job.to_string(),
        })
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::PermissionDenied,
        "only the scheduler may call the executor control service",
        "control as member",
    );
    let fake_scheduler = CallCredentials::Scheduler {
        executor_id: real.clone(),
        key: rogue_key,
    };
    let status = ExecutorControlClient::new(fake_scheduler.wrap(executor.clone()))
        .remove_job_data(proto::RemoveJobDataRequest {
            job_id: job.to_string(),
        })
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::Unauthenticated,
        "not valid for this cluster",
        "control as fake scheduler",
    );

    // The job still runs where it ran; an admin removes the rogue.
    let after = alice.job_status(&job).await.unwrap();
    assert_eq!(after.state, JobState::Running as i32);
    assert!(alice.cancel(&job).await.unwrap());
    scheduler_grpc(&url, &admin())
        .await
        .deregister_executor(proto::DeregisterExecutorRequest {
            executor_id: "rogue".into(),
            reason: "removed by the operator".into(),
        })
        .await
        .expect("an admin deregisters an executor");
    let listed = SchedulerClient::connect(&url)
        .await
        .unwrap()
        .executors()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_serves(&mut cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_tickets_are_signed_expiring_and_open_one_partition_each() {
    let ttl = 5;
    let (mut cluster, _dir) = cluster_with_users_and(&format!("ticket_ttl_secs = {ttl}")).await;
    let alice = log_in(&cluster, "alice", "alice-pw").await;
    let request = sql_request(
        "SELECT value % 10 AS k, count(*) AS n FROM generate_series(1, 1000) GROUP BY value % 10",
        &[("datafusion.execution.target_partitions", "2")],
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
            .contains("no password is set: set BALLISTA_PASSWORD"),
        "{}",
        missing.stderr
    );
    assert_serves(&mut cluster).await;
}
