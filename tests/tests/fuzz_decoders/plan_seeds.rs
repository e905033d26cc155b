//! Plans as the client and the scheduler encode them: the seeds of the plan decoders.

use super::*;

/// The queries whose plans are seeds, and whether a task of theirs ends in
/// bounded time whatever numbers a mutation puts into its plan (their rows
/// travel in the plan: no `generate_series` bound or recursion limit to
/// raise), so that the executor may run mutated ones.
pub(crate) const SEED_QUERIES: &[(&str, bool)] = &[
    (
        "SELECT k, name, score FROM (VALUES (1, 'one'), (2, 'two'), (3, 'three')) AS t(k, name) \
         JOIN (VALUES (1, 1.5), (3, 2.5)) AS u(j, score) ON k = j",
        true,
    ),
    (
        "SELECT region, sum(amount) AS total, count(*) AS n FROM sales \
         GROUP BY region HAVING sum(amount) > 10 ORDER BY total DESC",
        true,
    ),
    (
        "SELECT DISTINCT s, length(s) AS len FROM (VALUES ('a'), ('bb'), (NULL), ('a')) AS t(s) \
         WHERE s IS NOT NULL ORDER BY s LIMIT 10",
        true,
    ),
    (
        "SELECT region, amount, row_number() OVER (PARTITION BY region ORDER BY amount DESC) AS r, \
         sum(amount) OVER (ORDER BY amount ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS w \
         FROM sales",
        true,
    ),
    ("SELECT 1 AS one, 'x' AS s, CAST(NULL AS DOUBLE) AS d", true),
    (
        "SELECT v % 7 AS k, count(*) AS n, sum(v) AS s \
         FROM (SELECT value AS v FROM generate_series(1, 1000)) GROUP BY v % 7 ORDER BY k",
        false,
    ),
    (
        "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 10) \
         SELECT sum(n) AS total FROM r",
        false,
    ),
    (
        "SELECT id, upper(name) AS name FROM people WHERE id > 1",
        false,
    ),
];

/// A stage plan as the scheduler ships it.
pub(crate) struct EncodedStage {
    pub(crate) stage_id: StageId,
    pub(crate) plan: Vec<u8>,
}

pub(crate) struct SeedQuery {
    /// What the client sends.
    pub(crate) request: proto::ExecuteQueryRequest,
    /// The job's settings on the scheduler (sorted).
    pub(crate) settings: Vec<(String, String)>,
    /// Its stages, shuffle reads resolved, as executors receive them.
    pub(crate) stages: Vec<EncodedStage>,
    /// Its stages as the planner checks that they travel.
    pub(crate) unresolved_stages: Vec<Vec<u8>>,
    pub(crate) bounded: bool,
}

/// The seed queries planned by a client session and by the scheduler's
/// planner, as job [`fuzz_job_id`].
pub(crate) struct PlanFixtures {
    pub(crate) planner: Arc<JobPlanner>,
    pub(crate) job_id: JobId,
    pub(crate) queries: Vec<SeedQuery>,
    pub(crate) _data_dir: tempfile::TempDir,
}

impl PlanFixtures {
    /// Shuffle reads resolve to locations on `executor`.
    pub(crate) async fn build(executor: &ExecutorAddress) -> Self {
        let job_id = fuzz_job_id();
        let planner = JobPlanner::try_new(&BallistaConfig::default())
            .await
            .expect("a job planner");
        let data_dir = tempfile::tempdir().expect("a temporary directory");
        let client = client_session(&planner, data_dir.path()).await;
        let mut queries = Vec::new();
        for &(sql, bounded) in SEED_QUERIES {
            let request = client_request(&client, sql).await;
            let job_settings = planner.job_settings(&request, EXECUTOR_SLOTS);
            let plan = planner
                .plan(&job_id, &request, &job_settings, &Identity::cluster_admin())
                .await
                .unwrap_or_else(|e| panic!("the scheduler cannot plan {sql}: {e}"));
            let mut settings: Vec<(String, String)> = job_settings.into_iter().collect();
            settings.sort();
            queries.push(SeedQuery {
                stages: encode_resolved_stages(&plan, executor),
                unresolved_stages: encode_unresolved_stages(&plan),
                request,
                settings,
                bounded,
            });
        }
        Self {
            planner: Arc::new(planner),
            job_id,
            queries,
            _data_dir: data_dir,
        }
    }

    /// The client plans, as the scheduler receives them.
    pub(crate) fn logical_plans(&self) -> Vec<Vec<u8>> {
        self.queries
            .iter()
            .filter_map(|query| match &query.request.query {
                Some(Query::LogicalPlan(bytes)) => Some(bytes.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every stage plan, resolved and unresolved.
    pub(crate) fn stage_plans(&self) -> Vec<Vec<u8>> {
        self.queries
            .iter()
            .flat_map(|query| {
                let resolved = query.stages.iter().map(|stage| stage.plan.clone());
                resolved.chain(query.unresolved_stages.iter().cloned())
            })
            .collect()
    }

    /// A task context like the one an executor decodes a task's plan with.
    pub(crate) fn task_context(&self) -> Arc<TaskContext> {
        let settings: HashMap<String, String> = self.queries[0].settings.iter().cloned().collect();
        let config = session_config_from_settings(&settings).expect("the job's settings are valid");
        SessionContext::new_with_config(config).task_ctx()
    }
}

/// A session like a client's: the scheduler's session defaults, a table in
/// memory (which travels with the query) and a CSV file.
pub(crate) async fn client_session(planner: &JobPlanner, data_dir: &Path) -> SessionContext {
    let defaults = planner.default_settings(EXECUTOR_SLOTS);
    let config = session_config_from_settings(&defaults)
        .expect("the scheduler's session defaults are valid");
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    let client = SessionContext::new_with_state(state);
    client
        .register_batch("sales", sales())
        .expect("register the sales table");
    let people = data_dir.join("people.csv");
    std::fs::write(&people, "id,name\n1,ada\n2,grace\n3,linus\n").expect("write people.csv");
    client
        .register_csv(
            "people",
            people.to_str().expect("a UTF-8 path"),
            CsvReadOptions::new(),
        )
        .await
        .expect("register the people table");
    client
}

pub(crate) fn sales() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("region", DataType::Utf8, true),
        Field::new("amount", DataType::Int64, false),
    ]));
    let regions = StringArray::from(vec![
        Some("north"),
        Some("south"),
        None,
        Some("north"),
        Some("east"),
    ]);
    let amounts = Int64Array::from(vec![12, 7, 3, 25, 9]);
    RecordBatch::try_new(
        schema,
        vec![Arc::new(regions) as ArrayRef, Arc::new(amounts) as ArrayRef],
    )
    .expect("a valid batch")
}

/// The request a client sends for `sql`: its optimized plan, encoded as the
/// client encodes it, with the session's settings.
pub(crate) async fn client_request(
    client: &SessionContext,
    sql: &str,
) -> proto::ExecuteQueryRequest {
    let plan = client
        .sql(sql)
        .await
        .and_then(|frame| frame.into_optimized_plan())
        .unwrap_or_else(|e| panic!("the client cannot plan {sql}: {e}"));
    let state = client.state();
    let bytes = encode_client_plan(&plan, &state)
        .await
        .unwrap_or_else(|e| panic!("the client cannot encode {sql}: {e}"));
    proto::ExecuteQueryRequest {
        query: Some(Query::LogicalPlan(bytes)),
        settings: proto::key_values(settings_from_session_config(state.config())),
        plan_is_optimized: true,
        session_id: state.session_id().to_string(),
        ..Default::default()
    }
}

/// What every task of `stage` would commit, on `executor`.
pub(crate) fn committed_outputs(
    stage: &StagePlan,
    executor: &ExecutorAddress,
) -> Vec<ShuffleLocation> {
    let job_id = stage.plan.job_id();
    let mut locations = Vec::new();
    for map_partition in 0..stage.plan.input_partition_count() {
        for output_partition in 0..stage.plan.output_partition_count() {
            locations.push(ShuffleLocation {
                job_id: job_id.clone(),
                stage_id: stage.stage_id,
                map_partition,
                output_partition,
                attempt: 0,
                executor: executor.clone(),
                path: format!(
                    "{job_id}/s{}/m{map_partition}-a0-p{output_partition}.arrow",
                    stage.stage_id
                ),
                stats: PartitionStats {
                    num_rows: 100,
                    num_batches: 1,
                    num_bytes: 4096,
                },
                durable: false,
                ticket: Vec::new(),
            });
        }
    }
    locations
}

/// Every stage of `plan` as the scheduler ships it to an executor: its
/// shuffle reads resolved to locations on `executor`.
pub(crate) fn encode_resolved_stages(
    plan: &DistributedPlan,
    executor: &ExecutorAddress,
) -> Vec<EncodedStage> {
    let outputs: HashMap<StageId, Vec<ShuffleLocation>> = plan
        .stages
        .iter()
        .map(|stage| (stage.stage_id, committed_outputs(stage, executor)))
        .collect();
    plan.stages
        .iter()
        .map(|stage| {
            let unresolved: Arc<dyn ExecutionPlan> = stage.plan.clone();
            let resolved =
                resolve_shuffle_reads(unresolved, &outputs).expect("the stage's reads resolve");
            EncodedStage {
                stage_id: stage.stage_id,
                plan: encode_stage_plan(&resolved).expect("a resolved stage plan encodes"),
            }
        })
        .collect()
}

pub(crate) fn encode_unresolved_stages(plan: &DistributedPlan) -> Vec<Vec<u8>> {
    plan.stages
        .iter()
        .map(|stage| {
            let unresolved: Arc<dyn ExecutionPlan> = stage.plan.clone();
            encode_stage_plan(&unresolved).expect("a stage plan encodes")
        })
        .collect()
}

// ---------------------------------------------------------------------------
