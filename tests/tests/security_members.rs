//! A rogue cluster member cannot register under a live executor's id,
//! speak for another executor, report another's task or drive another's
//! control service, on real scheduler and executor processes.

use std::time::{Duration, Instant};

use ballista::BallistaError;
use ballista::auth::{CallCredentials, SecretKey, SessionKeySlot, unwrap_session_key};
use ballista::client::SchedulerClient;
use ballista::proto::{self, JobState, executor_control_client::ExecutorControlClient};
use ballista_tests::auth::{admin, cluster_key, member, register, scheduler_grpc};
use ballista_tests::secured::{
    LONG_QUERY, assert_serves, assert_status, channel, cluster_with_users, executor_url, log_in,
    sql_request, submit,
};
use tonic::Code;

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
        cleanups_in_launches: false,
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
            takes_removals: false,
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
            ..Default::default()
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
    let status = ExecutorControlClient::new(fake_scheduler.wrap(executor.clone()))
        .release_stage_outputs(proto::ReleaseStageOutputsRequest {
            job_id: job.to_string(),
            stage_ids: vec![1],
        })
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::Unauthenticated,
        "not valid for this cluster",
        "stage release as fake scheduler",
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
            takes_removals: false,
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
