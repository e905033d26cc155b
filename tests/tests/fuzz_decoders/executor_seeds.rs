//! Seeds of the executor's methods: task launches, its control service and Arrow Flight.

use super::*;

/// The first task of `stage`, as the scheduler launches it.
pub(crate) fn launch(
    job_id: &str,
    query: &SeedQuery,
    stage: &EncodedStage,
) -> proto::LaunchTasksRequest {
    proto::LaunchTasksRequest {
        tasks: vec![proto::TaskDefinition {
            task: Some(proto::TaskId {
                job_id: job_id.to_string(),
                stage_id: stage.stage_id.0,
                partition: 0,
                attempt: 0,
            }),
            plan: stage.plan.clone().into(),
            settings: proto::key_values(query.settings.clone()),
            session_id: query.request.session_id.clone(),
            own_reads: None,
        }],
        // A cleanup of another job rides along, as the scheduler sends
        // them: seeds the executor's reading of those too.
        cleanups: vec![proto::JobCleanup {
            job_id: "fuzz-other-job".into(),
            remove_job: false,
            release_stages: vec![1, 2],
        }],
    }
}

/// `launch` with the stage's plan sent hollow, beside reads of both kinds
/// (a shuffle reader's locations and a scan's files), as the scheduler sends
/// stages of many tasks: seeds the executor's filling of a task's reads.
pub(crate) fn launch_with_own_reads(
    job_id: &str,
    query: &SeedQuery,
    stage: &EncodedStage,
) -> proto::LaunchTasksRequest {
    let mut request = launch(job_id, query, stage);
    let files = datafusion_proto::protobuf::FileGroup {
        files: vec![datafusion_proto::protobuf::PartitionedFile {
            path: "data/part-0.csv".into(),
            size: 10,
            ..Default::default()
        }],
    };
    for task in &mut request.tasks {
        task.own_reads = Some(proto::TaskReads {
            hollow_plan: std::mem::take(&mut task.plan),
            partitions: 2,
            reads: vec![
                proto::TaskRead {
                    read: Some(proto::task_read::Read::Shuffle(
                        proto::ShuffleReadPartition::default(),
                    )),
                },
                proto::TaskRead {
                    read: Some(proto::task_read::Read::Files(
                        prost::Message::encode_to_vec(&files),
                    )),
                },
            ],
        });
    }
    request
}

pub(crate) fn executor_control_targets(fixtures: &NetworkFixtures) -> Vec<NetworkTarget> {
    let plans = &fixtures.plans;
    let job_id = plans.job_id.to_string();
    let mut launches: Vec<_> = plans
        .queries
        .iter()
        .filter(|query| query.bounded)
        .flat_map(|query| {
            let job_id = job_id.as_str();
            query
                .stages
                .iter()
                .map(move |stage| seed(&launch(job_id, query, stage), Code::Ok))
        })
        .collect();
    if let Some(query) = plans.queries.iter().find(|query| query.bounded) {
        launches.extend(
            query
                .stages
                .iter()
                .map(|stage| seed(&launch_with_own_reads(&job_id, query, stage), Code::Ok)),
        );
    }
    let cancels = vec![
        seed(
            &proto::CancelTasksRequest {
                job_id: job_id.clone(),
            },
            Code::Ok,
        ),
        seed(
            &proto::CancelTasksRequest {
                job_id: INVALID_JOB_ID.into(),
            },
            Code::InvalidArgument,
        ),
    ];
    let removals = vec![
        seed(
            &proto::RemoveJobDataRequest {
                job_id: job_id.clone(),
            },
            Code::Ok,
        ),
        seed(
            &proto::RemoveJobDataRequest {
                job_id: INVALID_JOB_ID.into(),
            },
            Code::InvalidArgument,
        ),
    ];
    let releases = vec![
        seed(
            &proto::ReleaseStageOutputsRequest {
                job_id: job_id.clone(),
                stage_ids: vec![1, 2, u32::MAX],
            },
            Code::Ok,
        ),
        seed(
            &proto::ReleaseStageOutputsRequest {
                job_id: INVALID_JOB_ID.into(),
                stage_ids: vec![1],
            },
            Code::InvalidArgument,
        ),
    ];
    vec![
        NetworkTarget::new::<proto::LaunchTasksRequest>(
            Service::Executor,
            "/ballista.ExecutorControl/LaunchTasks",
            CallShape::Unary,
            launches,
        ),
        NetworkTarget::new::<proto::CancelTasksRequest>(
            Service::Executor,
            "/ballista.ExecutorControl/CancelTasks",
            CallShape::Unary,
            cancels,
        ),
        NetworkTarget::new::<proto::RemoveJobDataRequest>(
            Service::Executor,
            "/ballista.ExecutorControl/RemoveJobData",
            CallShape::Unary,
            removals,
        ),
        NetworkTarget::new::<proto::ReleaseStageOutputsRequest>(
            Service::Executor,
            "/ballista.ExecutorControl/ReleaseStageOutputs",
            CallShape::Unary,
            releases,
        ),
    ]
}

/// A batch and its Flight messages, for `DoPut` and `DoExchange`.
pub(crate) fn flight_data(descriptor: &FlightDescriptor) -> Vec<FlightData> {
    let batch = sales();
    let mut messages =
        batches_to_flight_data(&batch.schema(), vec![batch]).expect("a batch as Flight data");
    if let Some(first) = messages.first_mut() {
        first.flight_descriptor = Some(descriptor.clone());
    }
    messages
}

pub(crate) fn flight_targets(fixtures: &NetworkFixtures) -> Vec<NetworkTarget> {
    let job = &fixtures.result_job;
    // Signed as the scheduler signs them, so that mutations of them reach
    // the path checks behind the signature check.
    let signed = |path: &str| {
        Ticket::new(sign_ticket(
            &fixtures.ticket_key,
            job,
            path,
            fixtures.executor.id.as_str(),
            3600,
        ))
    };
    let tickets = vec![
        seed(&signed(&fixtures.result_path), Code::Ok),
        seed(
            &signed(&format!("{job}/s1/m0-a0-p99.arrow")),
            Code::NotFound,
        ),
        seed(&signed("../../etc/passwd"), Code::PermissionDenied),
        seed(
            &signed("s3://bucket/shuffle/m0-a0-p0.arrow"),
            Code::PermissionDenied,
        ),
        // A job id and a path, unsigned, open nothing.
        seed(
            &encode_ticket(job, &fixtures.result_path),
            Code::PermissionDenied,
        ),
    ];
    let by_path = FlightDescriptor::new_path(vec![job.to_string(), "s1".into()]);
    let descriptors = vec![
        seed(&by_path, Code::Unimplemented),
        seed(&FlightDescriptor::new_cmd("SELECT 1"), Code::Unimplemented),
    ];
    let data: Vec<Seed> = flight_data(&by_path)
        .iter()
        .map(|message| seed(message, Code::Unimplemented))
        .collect();
    let handshake = HandshakeRequest {
        protocol_version: 0,
        payload: Bytes::from_static(b"fuzz:secret"),
    };
    let criteria = Criteria {
        expression: Bytes::from_static(b"job"),
    };
    let action = Action::new("remove_job", Bytes::from(job.to_string()));
    vec![
        NetworkTarget::new::<Ticket>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/DoGet",
            CallShape::ServerStreaming,
            tickets,
        ),
        NetworkTarget::new::<HandshakeRequest>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/Handshake",
            CallShape::BidiStreaming,
            vec![seed(&handshake, Code::Unimplemented)],
        ),
        NetworkTarget::new::<Criteria>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/ListFlights",
            CallShape::ServerStreaming,
            vec![seed(&criteria, Code::Unimplemented)],
        ),
        NetworkTarget::new::<FlightDescriptor>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/GetFlightInfo",
            CallShape::Unary,
            descriptors.clone(),
        ),
        NetworkTarget::new::<FlightDescriptor>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/PollFlightInfo",
            CallShape::Unary,
            descriptors.clone(),
        ),
        NetworkTarget::new::<FlightDescriptor>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/GetSchema",
            CallShape::Unary,
            descriptors,
        ),
        NetworkTarget::new::<FlightData>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/DoPut",
            CallShape::BidiStreaming,
            data.clone(),
        ),
        NetworkTarget::new::<FlightData>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/DoExchange",
            CallShape::BidiStreaming,
            data,
        ),
        NetworkTarget::new::<Action>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/DoAction",
            CallShape::ServerStreaming,
            vec![seed(&action, Code::Unimplemented)],
        ),
        NetworkTarget::new::<Empty>(
            Service::Executor,
            "/arrow.flight.protocol.FlightService/ListActions",
            CallShape::ServerStreaming,
            vec![seed(&Empty {}, Code::Unimplemented)],
        ),
    ]
}

// ---------------------------------------------------------------------------
