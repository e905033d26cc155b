//! Seeds of the scheduler's methods: queries, registrations, heartbeats and task reports.

use super::*;

/// What the network seeds refer to.
pub(crate) struct NetworkFixtures {
    pub(crate) plans: PlanFixtures,
    /// A job that has ended.
    pub(crate) finished_job: JobId,
    /// A job whose results are kept (and served over Flight) to the end.
    pub(crate) result_job: JobId,
    pub(crate) result_path: String,
    pub(crate) executor: ExecutorAddress,
    /// The executor's session key, which the scheduler signs its tickets with.
    pub(crate) ticket_key: SecretKey,
}

impl NetworkFixtures {
    pub(crate) async fn prepare(cluster: &Cluster) -> Self {
        let sql = "SELECT v, v * v AS square FROM (SELECT value AS v FROM generate_series(1, 100))";
        let finished = run_sql_to_end(&cluster.client, sql).await;
        let results = run_sql_to_end(&cluster.client, sql).await;
        let executor = cluster.executor.address().clone();
        let Some(CallCredentials::Scheduler {
            key: ticket_key, ..
        }) = cluster.executor.scheduler_credentials()
        else {
            panic!("the executor has registered");
        };
        Self {
            ticket_key,
            plans: PlanFixtures::build(&executor).await,
            finished_job: JobId::parse(&finished.job_id).expect("a job id"),
            result_job: JobId::parse(&results.job_id).expect("a job id"),
            result_path: result_path(&results),
            executor,
        }
    }
}

/// Seeds of a method taking a job id: a job that has ended, a job the
/// scheduler never saw and an invalid id, with the answers they must get.
pub(crate) fn job_id_seeds<M: Message>(
    fixtures: &NetworkFixtures,
    request: impl Fn(String) -> M,
    answers: [Code; 3],
) -> Vec<Seed> {
    let job_ids = [
        fixtures.finished_job.to_string(),
        "fuzzjob-never-seen".to_string(),
        INVALID_JOB_ID.to_string(),
    ];
    job_ids
        .into_iter()
        .zip(answers)
        .map(|(job_id, answer)| seed(&request(job_id), answer))
        .collect()
}

pub(crate) fn scheduler_query_targets(fixtures: &NetworkFixtures) -> Vec<NetworkTarget> {
    vec![
        NetworkTarget::new::<proto::GetExecutorsMetadataRequest>(
            Service::Scheduler,
            "/ballista.SchedulerGrpc/GetExecutorsMetadata",
            CallShape::Unary,
            vec![seed(&proto::GetExecutorsMetadataRequest {}, Code::Ok)],
        ),
        NetworkTarget::new::<proto::GetSessionDefaultsRequest>(
            Service::Scheduler,
            "/ballista.SchedulerGrpc/GetSessionDefaults",
            CallShape::Unary,
            vec![seed(&proto::GetSessionDefaultsRequest {}, Code::Ok)],
        ),
        NetworkTarget::new::<proto::GetJobStatusRequest>(
            Service::Scheduler,
            "/ballista.SchedulerGrpc/GetJobStatus",
            CallShape::Unary,
            job_id_seeds(
                fixtures,
                |job_id| proto::GetJobStatusRequest { job_id },
                [Code::Ok, Code::NotFound, Code::InvalidArgument],
            ),
        ),
        NetworkTarget::new::<proto::CancelJobRequest>(
            Service::Scheduler,
            "/ballista.SchedulerGrpc/CancelJob",
            CallShape::Unary,
            job_id_seeds(
                fixtures,
                |job_id| proto::CancelJobRequest { job_id },
                [Code::Ok, Code::NotFound, Code::InvalidArgument],
            ),
        ),
        NetworkTarget::new::<proto::ReleaseJobRequest>(
            Service::Scheduler,
            "/ballista.SchedulerGrpc/ReleaseJob",
            CallShape::Unary,
            job_id_seeds(
                fixtures,
                |job_id| proto::ReleaseJobRequest { job_id },
                [Code::Ok, Code::Ok, Code::InvalidArgument],
            ),
        ),
    ]
}

pub(crate) fn execute_query_target(fixtures: &NetworkFixtures) -> NetworkTarget {
    let sql = proto::ExecuteQueryRequest {
        query: Some(Query::Sql(
            "SELECT v % 7 AS k, count(*) AS n \
             FROM (SELECT value AS v FROM generate_series(1, 1000)) GROUP BY v % 7"
                .into(),
        )),
        settings: proto::key_values([
            ("datafusion.execution.batch_size", "1024"),
            (JOB_TIMEOUT_KEY, "30"),
        ]),
        plan_is_optimized: false,
        session_id: "fuzz-session".into(),
        query_text: String::new(),
    };
    let mut seeds = vec![seed(&sql, Code::Ok)];
    seeds.extend(
        fixtures
            .plans
            .queries
            .iter()
            .map(|query| seed(&query.request, Code::Ok)),
    );
    NetworkTarget::new::<proto::ExecuteQueryRequest>(
        Service::Scheduler,
        "/ballista.SchedulerGrpc/ExecuteQuery",
        CallShape::ServerStreaming,
        seeds,
    )
}

pub(crate) fn memory_report(job_id: &JobId) -> proto::MemoryReport {
    proto::MemoryReport {
        budget_bytes: 8 << 30,
        reserved_bytes: 64 << 20,
        peak_bytes: 256 << 20,
        available_bytes: 4 << 30,
        task_min_bytes: 16 << 20,
        jobs: vec![proto::JobMemory {
            job_id: job_id.to_string(),
            executor_id: String::new(),
            tenant: "default".into(),
            reserved_bytes: 32 << 20,
            peak_bytes: 64 << 20,
            quota_bytes: 1 << 30,
        }],
    }
}

pub(crate) fn registration(
    id: &str,
    port: u32,
    slots: u32,
    job_id: &JobId,
) -> proto::RegisterExecutorRequest {
    proto::RegisterExecutorRequest {
        metadata: Some(proto::ExecutorMetadata {
            id: id.into(),
            host: "127.0.0.1".into(),
            port,
            slots,
            version: "0.1.0".into(),
        }),
        memory: Some(memory_report(job_id)),
        cleanups_in_launches: false,
    }
}

pub(crate) fn register_executor_target(fixtures: &NetworkFixtures) -> NetworkTarget {
    let job = &fixtures.finished_job;
    let [first, second] = JUNK_EXECUTORS;
    NetworkTarget::new::<proto::RegisterExecutorRequest>(
        Service::Scheduler,
        "/ballista.SchedulerGrpc/RegisterExecutor",
        CallShape::Unary,
        vec![
            seed(&registration(first, JUNK_EXECUTOR_PORT, 2, job), Code::Ok),
            // Its credentials are the first junk executor's: the second's
            // id is not theirs to register.
            seed(
                &registration(second, JUNK_EXECUTOR_PORT, 8, job),
                Code::PermissionDenied,
            ),
            seed(
                &registration("fuzz-executor-3", JUNK_EXECUTOR_PORT, 0, job),
                Code::InvalidArgument,
            ),
            seed(
                &registration("fuzz-executor-4", 0, 2, job),
                Code::InvalidArgument,
            ),
            seed(
                &proto::RegisterExecutorRequest::default(),
                Code::InvalidArgument,
            ),
        ],
    )
}

pub(crate) fn heart_beat_target(fixtures: &NetworkFixtures) -> NetworkTarget {
    let beat = |executor_id: &str, draining| proto::HeartBeatRequest {
        executor_id: executor_id.into(),
        running_tasks: 1,
        memory: Some(memory_report(&fixtures.finished_job)),
        draining,
    };
    NetworkTarget::new::<proto::HeartBeatRequest>(
        Service::Scheduler,
        "/ballista.SchedulerGrpc/HeartBeat",
        CallShape::Unary,
        vec![
            // Sent with the real executor's credentials: only its own id
            // is accepted.
            seed(&beat(fixtures.executor.id.as_str(), false), Code::Ok),
            seed(&beat(JUNK_EXECUTORS[0], false), Code::PermissionDenied),
            seed(&beat("fuzz-executor-9", false), Code::PermissionDenied),
        ],
    )
}

pub(crate) fn deregister_executor_target() -> NetworkTarget {
    let leave = |executor_id: &str, reason: &str| proto::DeregisterExecutorRequest {
        takes_removals: false,
        executor_id: executor_id.into(),
        reason: reason.into(),
    };
    NetworkTarget::new::<proto::DeregisterExecutorRequest>(
        Service::Scheduler,
        "/ballista.SchedulerGrpc/DeregisterExecutor",
        CallShape::Unary,
        vec![
            seed(&leave(JUNK_EXECUTORS[0], "drained"), Code::Ok),
            seed(&leave(JUNK_EXECUTORS[1], ""), Code::Ok),
        ],
    )
}

/// A job that runs until it is cancelled, and one of its running tasks.
pub(crate) struct RunningJob {
    pub(crate) job_id: JobId,
    pub(crate) stage_id: u32,
    pub(crate) task: proto::TaskInfo,
    /// The stage reading its output, and that stage's task count.
    pub(crate) consumer: Option<(u32, usize)>,
    /// Dropping the status stream would cancel the job.
    pub(crate) _updates: Streaming<proto::JobStatus>,
}

impl RunningJob {
    pub(crate) async fn start(cluster: &Cluster) -> Self {
        let request = proto::ExecuteQueryRequest {
            query: Some(Query::Sql(
                "SELECT v % 4 AS k, count(*) AS n \
                 FROM (SELECT value AS v FROM generate_series(1, 1000000000000)) GROUP BY v % 4"
                    .into(),
            )),
            ..Default::default()
        };
        let mut updates = cluster
            .client
            .execute(request)
            .await
            .expect("the endless query is accepted");
        let first = updates
            .message()
            .await
            .expect("the status stream")
            .expect("a first status");
        let job_id = JobId::parse(&first.job_id).expect("a job id");
        let deadline = Instant::now() + CLEAN_UP_TIMEOUT;
        loop {
            let status = cluster
                .client
                .job_status(&job_id)
                .await
                .expect("the endless job's status");
            if let Some((stage_id, task)) = running_task(&status, cluster.executor_id()) {
                let consumer = status
                    .stages
                    .iter()
                    .find(|stage| stage.inputs.contains(&stage_id))
                    .map(|stage| (stage.stage_id, stage.tasks.len()));
                return Self {
                    job_id,
                    stage_id,
                    task,
                    consumer,
                    _updates: updates,
                };
            }
            assert!(
                Instant::now() < deadline,
                "no task of the endless job runs: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn cancel(self, cluster: &Cluster) {
        tokio::time::timeout(CALL_TIMEOUT, cluster.client.cancel(&self.job_id))
            .await
            .expect("CancelJob is answered in time")
            .expect("CancelJob succeeds");
    }

    /// Reports as the executor running the task would send them.
    pub(crate) fn reports(
        &self,
        executor: &ExecutorAddress,
    ) -> Vec<proto::UpdateTaskStatusRequest> {
        let reporter = self.task.executor_id.as_str();
        let outputs = self.consumer.map_or(1, |(_, tasks)| tasks);
        let locations = (0..outputs)
            .map(|output_partition| {
                ShuffleLocation {
                    job_id: self.job_id.clone(),
                    stage_id: StageId(self.stage_id),
                    map_partition: self.task.partition as usize,
                    output_partition,
                    attempt: self.task.attempt,
                    executor: executor.clone(),
                    path: format!(
                        "{}/s{}/m{}-a{}-p{output_partition}.arrow",
                        self.job_id, self.stage_id, self.task.partition, self.task.attempt
                    ),
                    stats: PartitionStats {
                        num_rows: 250,
                        num_batches: 1,
                        num_bytes: 8192,
                    },
                    durable: false,
                    ticket: Vec::new(),
                }
                .to_proto()
            })
            .collect();
        let now = now_ms();
        let succeeded = proto::TaskStatus {
            task: Some(proto::TaskId {
                job_id: self.job_id.to_string(),
                stage_id: self.stage_id,
                partition: self.task.partition,
                attempt: self.task.attempt,
            }),
            executor_id: reporter.into(),
            result: Some(TaskResult::Succeeded(proto::TaskSuccess {
                locations,
                metrics: Some(task_metrics(now)),
            })),
            started_at_ms: now - 1_000,
            ended_at_ms: now,
        };
        let io_failed = proto::TaskStatus {
            result: Some(TaskResult::Failed(
                BallistaError::Io("the disk went away".into()).to_proto(),
            )),
            ..succeeded.clone()
        };
        let mut reports = vec![report(reporter, vec![io_failed])];
        if let Some((consumer_stage, _)) = self.consumer {
            let fetch_failed = proto::TaskStatus {
                task: Some(proto::TaskId {
                    job_id: self.job_id.to_string(),
                    stage_id: consumer_stage,
                    partition: 0,
                    attempt: 0,
                }),
                result: Some(TaskResult::Failed(
                    BallistaError::FetchFailed {
                        executor_id: reporter.into(),
                        map_stage_id: self.stage_id,
                        map_partition: self.task.partition,
                        message: "connection reset by peer".into(),
                    }
                    .to_proto(),
                )),
                ..succeeded.clone()
            };
            reports.push(report(reporter, vec![fetch_failed]));
        }
        reports.push(report(reporter, vec![succeeded]));
        reports
    }
}

/// A task of the job running on `executor_id`, with its stage.
pub(crate) fn running_task(
    status: &proto::JobStatus,
    executor_id: &str,
) -> Option<(u32, proto::TaskInfo)> {
    status.stages.iter().find_map(|stage| {
        stage
            .tasks
            .iter()
            .find(|task| task.state == "running" && task.executor_id == executor_id)
            .map(|task| (stage.stage_id, task.clone()))
    })
}

pub(crate) fn task_metrics(now: u64) -> proto::TaskMetrics {
    proto::TaskMetrics {
        output_rows: 1000,
        output_bytes: 32 << 10,
        remote_fetches: 0,
        local_reads: 1,
        spill_count: 0,
        spilled_bytes: 0,
        started_at_ms: now - 1_000,
        ended_at_ms: now,
        ..Default::default()
    }
}

pub(crate) fn report(
    executor_id: &str,
    statuses: Vec<proto::TaskStatus>,
) -> proto::UpdateTaskStatusRequest {
    proto::UpdateTaskStatusRequest {
        executor_id: executor_id.into(),
        statuses,
        ..Default::default()
    }
}

/// Reports from `reporter` about a job that has ended.
pub(crate) fn finished_job_reports(
    job_id: &JobId,
    reporter: &str,
) -> Vec<proto::UpdateTaskStatusRequest> {
    let now = now_ms();
    let failed = proto::TaskStatus {
        task: Some(proto::TaskId {
            job_id: job_id.to_string(),
            stage_id: 1,
            partition: 0,
            attempt: 0,
        }),
        executor_id: reporter.into(),
        result: Some(TaskResult::Failed(
            BallistaError::DataFusion(DataFusionError::Context(
                "while reading partition 0".into(),
                Box::new(DataFusionError::Execution("Divide by zero error".into())),
            ))
            .to_proto(),
        )),
        started_at_ms: now - 500,
        ended_at_ms: now,
    };
    let lost = proto::TaskStatus {
        result: Some(TaskResult::Failed(
            BallistaError::ExecutorLost {
                executor_id: JUNK_EXECUTORS[0].into(),
                message: "no heartbeat for 30s".into(),
            }
            .to_proto(),
        )),
        ..failed.clone()
    };
    vec![report(reporter, vec![failed, lost])]
}

pub(crate) fn update_task_status_target(
    fixtures: &NetworkFixtures,
    running: &RunningJob,
) -> NetworkTarget {
    let reports = running
        .reports(&fixtures.executor)
        .into_iter()
        .chain(finished_job_reports(
            &fixtures.finished_job,
            fixtures.executor.id.as_str(),
        ));
    NetworkTarget::new::<proto::UpdateTaskStatusRequest>(
        Service::Scheduler,
        "/ballista.SchedulerGrpc/UpdateTaskStatus",
        CallShape::Unary,
        reports.map(|request| seed(&request, Code::Ok)).collect(),
    )
}

/// The same reports on the report stream. Unnumbered, each ends its stream
/// with a refusal; mutations that number them reach the stream's answers.
pub(crate) fn report_stream_target(
    fixtures: &NetworkFixtures,
    running: &RunningJob,
) -> NetworkTarget {
    let unary = update_task_status_target(fixtures, running);
    NetworkTarget {
        method: "/ballista.SchedulerGrpc/ReportTaskStatuses",
        shape: CallShape::BidiStreaming,
        seeds: unary
            .seeds
            .into_iter()
            .map(|seed| Seed {
                answer: Code::InvalidArgument,
                ..seed
            })
            .collect(),
        ..unary
    }
}
