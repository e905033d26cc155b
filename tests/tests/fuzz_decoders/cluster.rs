//! The scheduler and executor the network methods are fuzzed against.

use super::*;

/// A scheduler and one executor in this process, on loopback.
pub(crate) struct Cluster {
    pub(crate) scheduler: SchedulerHandle,
    pub(crate) executor: ExecutorHandle,
    pub(crate) scheduler_url: String,
    pub(crate) client: SchedulerClient,
    pub(crate) scheduler_channel: Channel,
    pub(crate) executor_channel: Channel,
    pub(crate) cluster_key: SecretKey,
}

impl Cluster {
    pub(crate) async fn start() -> Self {
        let mut config = BallistaConfig::default();
        let cluster_key = SecretKey::random().expect("a random key");
        config.cluster_key = Some(cluster_key.clone());
        let scheduler_settings = &mut config.settings.scheduler;
        scheduler_settings.bind_host = "127.0.0.1".into();
        scheduler_settings.port = 0;
        scheduler_settings.http.port = Some(0);
        scheduler_settings.job_timeout_secs = JOB_TIMEOUT_SECS;
        let scheduler = start_scheduler(config.clone())
            .await
            .expect("the scheduler starts");
        let scheduler_url = scheduler.url();

        let executor_settings = &mut config.settings.executor;
        executor_settings.bind_host = "127.0.0.1".into();
        executor_settings.external_host = Some("127.0.0.1".into());
        executor_settings.port = 0;
        executor_settings.http.port = Some(0);
        executor_settings.scheduler_url = scheduler_url.clone();
        executor_settings.slots = EXECUTOR_SLOTS;
        executor_settings.heartbeat_interval_secs = 1;
        let executor = start_executor(config).await.expect("the executor starts");
        let executor_url = format!("http://127.0.0.1:{}", executor.local_addr().port());

        let cluster = Self {
            client: SchedulerClient::connect_with(
                &scheduler_url,
                ClientAuth::ClusterKey(cluster_key.clone()),
            )
            .await
            .expect("the scheduler answers"),
            cluster_key,
            scheduler_channel: connect(&scheduler_url).await,
            executor_channel: connect(&executor_url).await,
            scheduler,
            executor,
            scheduler_url,
        };
        cluster.wait_for_real_executor().await;
        cluster
    }

    pub(crate) fn executor_id(&self) -> &str {
        self.executor.address().id.as_str()
    }

    /// A channel to `target`'s service with the credentials its callers
    /// have: the executor's for the calls executors make, the scheduler's
    /// for the executor's control service, an admin's for the rest. The
    /// fuzzed bodies then reach the decoders behind the gate.
    pub(crate) fn channel(&self, target: &NetworkTarget) -> AuthChannel {
        let credentials = match target.method {
            "/ballista.SchedulerGrpc/RegisterExecutor" => CallCredentials::Register {
                cluster: self.cluster_key.clone(),
                id: JUNK_EXECUTORS[0].to_string(),
            },
            "/ballista.SchedulerGrpc/HeartBeat"
            | "/ballista.SchedulerGrpc/UpdateTaskStatus"
            | "/ballista.SchedulerGrpc/ReportTaskStatuses" => self
                .executor
                .executor_credentials()
                .expect("the executor has registered"),
            method if method.starts_with("/ballista.ExecutorControl/") => {
                self.scheduler_credentials()
            }
            _ => self.admin(),
        };
        let channel = match target.service {
            Service::Scheduler => self.scheduler_channel.clone(),
            Service::Executor => self.executor_channel.clone(),
        };
        credentials.wrap(channel)
    }

    pub(crate) fn admin(&self) -> CallCredentials {
        CallCredentials::Admin(self.cluster_key.clone())
    }

    /// What the scheduler calls the executor's control service with.
    pub(crate) fn scheduler_credentials(&self) -> CallCredentials {
        self.executor
            .scheduler_credentials()
            .expect("the executor has registered")
    }

    /// The ids of the executors the scheduler lists.
    pub(crate) async fn registered_executors(&self) -> Vec<String> {
        tokio::time::timeout(CALL_TIMEOUT, self.client.executors())
            .await
            .expect("GetExecutorsMetadata is answered in time")
            .expect("GetExecutorsMetadata succeeds")
            .into_iter()
            .filter_map(|executor| executor.metadata)
            .map(|metadata| metadata.id)
            .collect()
    }

    /// Waits until the scheduler lists the real executor (one the scheduler
    /// forgot registers again at its next heartbeat).
    pub(crate) async fn wait_for_real_executor(&self) {
        let deadline = Instant::now() + CLEAN_UP_TIMEOUT;
        loop {
            let registered = self.registered_executors().await;
            if registered.iter().any(|id| id == self.executor_id()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the scheduler no longer lists executor {}: {registered:?}",
                self.executor_id()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Both services still answer real requests.
    pub(crate) async fn assert_serving(&self) {
        self.wait_for_real_executor().await;
        let mut control = ExecutorControlClient::new(
            self.scheduler_credentials()
                .wrap(self.executor_channel.clone()),
        );
        let request = proto::CancelTasksRequest {
            job_id: JobId::generate().to_string(),
        };
        let reply = tokio::time::timeout(CALL_TIMEOUT, control.cancel_tasks(request))
            .await
            .expect("the executor answers in time")
            .expect("the executor serves CancelTasks");
        assert_eq!(reply.into_inner().cancelled, 0);
    }

    /// Deregisters every executor but the real one; returns how many.
    pub(crate) async fn remove_junk_executors(&self) -> usize {
        let mut scheduler =
            SchedulerGrpcClient::new(self.admin().wrap(self.scheduler_channel.clone()));
        let junk: Vec<String> = self
            .registered_executors()
            .await
            .into_iter()
            .filter(|id| id != self.executor_id())
            .collect();
        for executor_id in &junk {
            let request = proto::DeregisterExecutorRequest {
                executor_id: executor_id.clone(),
                reason: "fuzz clean-up".into(),
                takes_removals: false,
            };
            tokio::time::timeout(CALL_TIMEOUT, scheduler.deregister_executor(request))
                .await
                .expect("DeregisterExecutor is answered in time")
                .expect("DeregisterExecutor succeeds");
        }
        junk.len()
    }

    /// Stops what the executor runs of `job_id` and deletes its data.
    pub(crate) async fn forget_job_on_executor(&self, job_id: &JobId) {
        let mut control = ExecutorControlClient::new(
            self.scheduler_credentials()
                .wrap(self.executor_channel.clone()),
        );
        let cancel = proto::CancelTasksRequest {
            job_id: job_id.to_string(),
        };
        tokio::time::timeout(CLEAN_UP_TIMEOUT, control.cancel_tasks(cancel))
            .await
            .expect("CancelTasks is answered in time")
            .expect("CancelTasks succeeds");
        let remove = proto::RemoveJobDataRequest {
            job_id: job_id.to_string(),
        };
        tokio::time::timeout(CLEAN_UP_TIMEOUT, control.remove_job_data(remove))
            .await
            .expect("RemoveJobData is answered in time")
            .expect("RemoveJobData succeeds");
    }

    pub(crate) async fn shutdown(self) {
        self.executor.shutdown().await;
        self.scheduler.shutdown().await;
    }
}

/// Runs SQL text on the cluster to its end; its final status.
pub(crate) async fn run_sql_to_end(client: &SchedulerClient, sql: &str) -> proto::JobStatus {
    let request = proto::ExecuteQueryRequest {
        query: Some(Query::Sql(sql.to_string())),
        ..Default::default()
    };
    let finished = tokio::time::timeout(QUERY_TIMEOUT, async {
        let mut updates = client
            .execute(request)
            .await
            .expect("the query is accepted");
        let mut last = None;
        while let Some(status) = updates.message().await.expect("the status stream") {
            last = Some(status);
        }
        last.expect("a final status")
    })
    .await
    .unwrap_or_else(|_| panic!("{sql} did not end within {QUERY_TIMEOUT:?}"));
    assert_eq!(
        finished.state,
        proto::JobState::Succeeded as i32,
        "{sql}: {finished:?}"
    );
    finished
}

/// The path of a result partition that holds rows.
pub(crate) fn result_path(status: &proto::JobStatus) -> String {
    status
        .result
        .iter()
        .flat_map(|result| &result.partitions)
        .flat_map(|partition| &partition.locations)
        .find(|location| location.stats.as_ref().is_some_and(|s| s.num_rows > 0))
        .map(|location| location.path.clone())
        .unwrap_or_else(|| panic!("no result location holds rows: {status:?}"))
}

pub(crate) async fn collect_sql(
    ctx: &SessionContext,
    sql: &str,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    ctx.sql(sql).await?.collect().await
}

/// A query through the framework's client returns the right rows.
pub(crate) async fn assert_cluster_answers_queries(cluster: &Cluster) {
    let config = BallistaConfig::builder()
        .cluster_key(cluster.cluster_key.clone())
        .build();
    let ctx = SessionContext::remote_with_config(&cluster.scheduler_url, config)
        .await
        .expect("a client connects");
    let sql = "SELECT v % 7 AS k, count(*) AS n \
               FROM (SELECT value AS v FROM generate_series(1, 1000)) GROUP BY v % 7";
    let batches = tokio::time::timeout(QUERY_TIMEOUT, collect_sql(&ctx, sql))
        .await
        .expect("the query ends in time")
        .expect("the query succeeds");
    let mut counts = Vec::new();
    for batch in &batches {
        let column = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("an Int64 column")
                .clone()
        };
        let (k, n) = (column(0), column(1));
        counts.extend((0..batch.num_rows()).map(|row| (k.value(row), n.value(row))));
    }
    counts.sort_unstable();
    let expected: Vec<(i64, i64)> = (0..7)
        .map(|k| (k, if k == 0 { 142 } else { 143 }))
        .collect();
    assert_eq!(counts, expected, "{sql}");
}
