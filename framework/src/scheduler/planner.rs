//! Turns a submitted query into a distributed plan: SQL text or a serialized
//! logical plan, planned with DataFusion under the job's session settings,
//! against the scheduler's configured tables and object stores.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::display::{PlanType, StringifiedPlan};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::{ListingTable, ListingTableUrl};
use datafusion::datasource::source_as_provider;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{Explain, LogicalPlan, LogicalPlanBuilder, TableSource, WriteOp};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::explain::ExplainExec;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use url::Url;

use crate::catalog::{
    CatalogAnswer, CatalogChange, CatalogRules, CatalogStore, SharedCatalog,
    reads_only_information_schema,
};
use crate::config::{
    BallistaConfig, CatalogSettings, SchedulerSettings, TableDefinition,
    adaptive_broadcast_bytes_of, check_client_settings, distributed_session_defaults,
    distributed_session_overrides, early_consumers_of, session_config_from_settings,
    task_input_bytes_of, validate_ballista_settings,
};
use crate::error::{BallistaError, Result};
use crate::ids::JobId;
use crate::plan::{
    DistributedPlan, ShippedTable, check_expression_depth, check_operand_lists, decode_client_plan,
    decode_stage_plan, encode_stage_plan, record_window_filters, split_into_stages,
};
use crate::plugin::auth::Identity;
use crate::plugin::storage::{BallistaObjectStoreRegistry, StorageAccess};
use crate::proto::{self, execute_query_request::Query};
use crate::tables::{listing_table, table_info};

struct DeclaredTable {
    definition: TableDefinition,
    table: Arc<ListingTable>,
    schema: SchemaRef,
}

/// Plans jobs for the scheduler.
pub struct JobPlanner {
    runtime: Arc<RuntimeEnv>,
    stores: Arc<BallistaObjectStoreRegistry>,
    /// Where an object-store shuffle keeps map outputs, when the settings
    /// select one: queries may neither read nor write there.
    shuffle_root: Option<String>,
    settings: SchedulerSettings,
    tables: Vec<DeclaredTable>,
    /// Locations of the declared tables, which every user may read.
    shared_tables: Vec<Url>,
    /// The options every session starts from, which client settings are
    /// checked against (built once: they depend on the settings alone).
    client_defaults: datafusion::config::ConfigOptions,
    /// Tables, views and schemas clients created with SQL.
    catalog: Option<Arc<SharedCatalog>>,
}

impl JobPlanner {
    /// Builds the planner and resolves the configured tables (their schemas
    /// are read now, so a wrong location stops the scheduler at start-up).
    pub async fn try_new(config: &BallistaConfig) -> Result<Self> {
        let stores = config.object_store_registry()?;
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(crate::util::cache_settings())
            .with_object_store_registry(Arc::clone(&stores) as _)
            .build_arc()?;
        let shuffle_root = object_store_shuffle_root(&config.settings);
        let mut planner = Self {
            runtime,
            stores,
            shuffle_root,
            settings: config.settings.scheduler.clone(),
            tables: Vec::new(),
            shared_tables: Vec::new(),
            client_defaults: Default::default(),
            catalog: None,
        };
        planner.client_defaults = session_config_from_settings(&planner.default_settings(0))?
            .options()
            .as_ref()
            .clone();
        let ctx = planner.context(&planner.default_settings(0))?;
        let state = ctx.state();
        for definition in &config.settings.scheduler.tables {
            if planner
                .tables
                .iter()
                .any(|t| t.definition.name == definition.name)
            {
                return Err(BallistaError::Configuration(format!(
                    "table '{}' is declared twice in scheduler.tables",
                    definition.name
                )));
            }
            let (table, schema) = listing_table(definition, &state).await?;
            tracing::info!("table '{}' at {}", definition.name, definition.location);
            planner.tables.push(DeclaredTable {
                definition: definition.clone(),
                table,
                schema,
            });
        }
        planner.shared_tables = planner
            .tables
            .iter()
            .flat_map(|t| t.table.table_paths().iter().map(|p| p.get_url().clone()))
            .collect();
        Ok(planner)
    }

    /// Session settings clients start from, on a cluster with `cluster_slots`
    /// task slots in total.
    pub fn default_settings(&self, cluster_slots: usize) -> HashMap<String, String> {
        let mut settings: HashMap<String, String> = distributed_session_defaults()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        settings.insert(
            "datafusion.execution.target_partitions".into(),
            self.target_partitions(cluster_slots).to_string(),
        );
        settings.extend(self.settings.session.0.clone());
        settings
    }

    fn target_partitions(&self, cluster_slots: usize) -> usize {
        match self.settings.target_partitions {
            0 => cluster_slots
                .max(2)
                .min(self.settings.limits.max_partitions_per_stage),
            n => n,
        }
    }

    /// The defaults and tables handed to clients.
    pub fn session_defaults(&self, cluster_slots: usize) -> proto::GetSessionDefaultsResponse {
        // Secrets (keys, passwords, tokens) stay here: the scheduler adds
        // them to every job's settings itself, and a client never needs
        // to see them.
        let mut settings: Vec<(String, String)> = self
            .default_settings(cluster_slots)
            .into_iter()
            .filter(|(key, _)| !crate::config::is_secret_key(key.rsplit('.').next().unwrap_or(key)))
            .collect();
        settings.sort();
        proto::GetSessionDefaultsResponse {
            tables: self
                .tables
                .iter()
                .map(|t| table_info(&t.definition, &t.schema))
                .collect(),
            settings: proto::key_values(settings),
        }
    }

    /// Settings of a job: the defaults, overridden by what the client sent,
    /// overridden by what distributed execution requires.
    pub fn job_settings(
        &self,
        request: &proto::ExecuteQueryRequest,
        cluster_slots: usize,
    ) -> HashMap<String, String> {
        let mut settings = self.default_settings(cluster_slots);
        settings.extend(proto::key_values_to_map(&request.settings));
        for (key, value) in distributed_session_overrides() {
            settings.insert(key.to_string(), value.to_string());
        }
        settings
    }

    fn context(&self, settings: &HashMap<String, String>) -> Result<SessionContext> {
        let ctx = self.declared_context(settings)?;
        if let Some(catalog) = &self.catalog {
            catalog.register_into(&ctx)?;
        }
        Ok(ctx)
    }

    /// A session holding the declared tables only.
    fn declared_context(&self, settings: &HashMap<String, String>) -> Result<SessionContext> {
        validate_ballista_settings(settings)?;
        check_client_settings(settings, &self.settings.limits, &self.client_defaults)?;
        let state = SessionStateBuilder::new()
            .with_config(session_config_from_settings(settings)?)
            .with_runtime_env(Arc::clone(&self.runtime))
            .with_default_features()
            .build();
        let ctx = SessionContext::new_with_state(state);
        for t in &self.tables {
            ctx.register_table(t.definition.name.as_str(), t.table.clone())?;
        }
        Ok(ctx)
    }

    /// Opens the catalog of client-created tables kept where `settings`
    /// say, whose tables every later job sees.
    pub(crate) async fn open_catalog(&mut self, settings: &CatalogSettings) -> Result<()> {
        let store = self.catalog_store(settings)?;
        let catalog = SharedCatalog::open(store, &|| self.catalog_context(0)).await?;
        self.catalog = Some(Arc::new(catalog));
        Ok(())
    }

    /// Where `[scheduler.catalog] location` says to keep the catalog: in
    /// memory, a local file (a path or `file://` URL; empty: `catalog.json`
    /// beside the cluster key), or an object of a store the storage plugins
    /// serve.
    fn catalog_store(&self, settings: &CatalogSettings) -> Result<CatalogStore> {
        let location = settings.location.as_str();
        if location == "memory" {
            return Ok(CatalogStore::Memory);
        }
        if location.is_empty() {
            let key_file = crate::auth::default_key_file()?;
            return Ok(CatalogStore::File(key_file.with_file_name("catalog.json")));
        }
        if !location.contains("://") {
            return Ok(CatalogStore::File(location.into()));
        }
        let url = Url::parse(location).map_err(|e| {
            BallistaError::Configuration(format!(
                "scheduler.catalog.location: {location:?} is not a URL: {e}"
            ))
        })?;
        if url.scheme() == "file" {
            let path = url.to_file_path().map_err(|_| {
                BallistaError::Configuration(format!(
                    "scheduler.catalog.location: {location:?} is not a local file"
                ))
            })?;
            return Ok(CatalogStore::File(path));
        }
        if url.path().ends_with('/') || url.path().len() <= 1 {
            return Err(BallistaError::Configuration(format!(
                "scheduler.catalog.location: {location:?} names a folder; name the object, such \
                 as s3://bucket/ballista/catalog.json"
            )));
        }
        self.stores.check_access(&url, StorageAccess::Write)?;
        let store = datafusion::execution::object_store::ObjectStoreRegistry::get_store(
            self.stores.as_ref(),
            &url,
        )
        .map_err(|e| {
            BallistaError::Configuration(format!(
                "scheduler.catalog.location: no storage plugin serves {location}: {e}"
            ))
        })?;
        let path = object_store::path::Path::from_url_path(url.path()).map_err(|e| {
            BallistaError::Configuration(format!("scheduler.catalog.location: {location}: {e}"))
        })?;
        Ok(CatalogStore::Object {
            store,
            path,
            url: location.to_string(),
        })
    }

    /// Carries out `sql` when it is a statement the catalog keeps (`CREATE
    /// EXTERNAL TABLE`, `CREATE VIEW`, `CREATE SCHEMA`, `DROP TABLE|VIEW`),
    /// for `identity`; `None` for any other statement.
    pub(crate) async fn catalog_statement(
        &self,
        sql: &str,
        identity: &Identity,
        cluster_slots: usize,
    ) -> Result<Option<CatalogAnswer>> {
        let ctx = self.catalog_context(cluster_slots)?;
        let plan = match ctx.state().create_logical_plan(sql).await {
            Ok(plan) => plan,
            // Not planned here: the job's planning reports it.
            Err(_) => return Ok(None),
        };
        if reads_only_information_schema(&plan) {
            let frame = ctx.execute_logical_plan(plan).await?;
            let schema = Arc::new(frame.schema().as_arrow().clone());
            let batches = answer_within_limits(frame.execute_stream().await?).await?;
            return Ok(Some(CatalogAnswer::Rows { schema, batches }));
        }
        let LogicalPlan::Ddl(_) = &plan else {
            return Ok(None);
        };
        Ok(Some(CatalogAnswer::Changed(
            self.apply_to_catalog(&ctx, &plan, sql, identity).await?,
        )))
    }

    /// Carries out `sql`, which must be a statement the catalog keeps, for
    /// `identity` (a client session's `CREATE EXTERNAL TABLE`, say).
    pub(crate) async fn catalog_change(
        &self,
        sql: &str,
        identity: &Identity,
        cluster_slots: usize,
    ) -> Result<CatalogChange> {
        let ctx = self.catalog_context(cluster_slots)?;
        let plan = ctx.state().create_logical_plan(sql).await?;
        self.apply_to_catalog(&ctx, &plan, sql, identity).await
    }

    /// The catalog as clients get it, unless they hold `known_version`.
    pub(crate) fn catalog_for_clients(&self, known_version: u64) -> proto::GetCatalogResponse {
        let Some(catalog) = &self.catalog else {
            return proto::GetCatalogResponse::default();
        };
        let version = catalog.version();
        if version == known_version {
            return proto::GetCatalogResponse {
                version,
                unchanged: true,
                entries: Vec::new(),
            };
        }
        proto::GetCatalogResponse {
            version,
            unchanged: false,
            entries: catalog.entries_for_clients(),
        }
    }

    async fn apply_to_catalog(
        &self,
        ctx: &SessionContext,
        plan: &LogicalPlan,
        sql: &str,
        identity: &Identity,
    ) -> Result<CatalogChange> {
        let Some(catalog) = &self.catalog else {
            return Err(BallistaError::NotSupported(
                "this scheduler keeps no catalog for tables created with SQL".into(),
            ));
        };
        let ctx_settings = self.default_settings(0);
        let declared = |name: &str| {
            self.tables
                .iter()
                .any(|t| format!("datafusion.public.{}", t.definition.name) == name)
        };
        let check_read = |url: &Url| {
            if let Some(root) = self.shuffle_root.as_deref()
                && url.as_str().starts_with(root)
            {
                return Err(BallistaError::PermissionDenied(format!(
                    "{url} is inside the shuffle storage ({root})"
                )));
            }
            identity.check_storage(url, false)?;
            self.stores.check_access(url, StorageAccess::Read)
        };
        catalog
            .apply(
                ctx,
                plan,
                sql,
                identity,
                CatalogRules {
                    is_declared: &declared,
                    check_read: &check_read,
                    fresh_context: &|| self.declared_context(&ctx_settings),
                },
            )
            .await?
            .ok_or_else(|| {
                BallistaError::InvalidInput(
                    "not a statement the shared catalog keeps (it keeps CREATE EXTERNAL TABLE, \
                     CREATE VIEW, CREATE SCHEMA and DROP TABLE|VIEW)"
                        .into(),
                )
            })
    }

    /// A session holding the tables queries can name, under the default
    /// settings, for listing them.
    pub fn catalog_context(&self, cluster_slots: usize) -> Result<SessionContext> {
        let mut settings = self.default_settings(cluster_slots);
        // The catalog's own tables, which the scheduler answers itself.
        settings.insert(
            "datafusion.catalog.information_schema".into(),
            "true".into(),
        );
        self.context(&settings)
    }

    /// Plans a job.
    pub async fn plan(
        &self,
        job_id: &JobId,
        request: &proto::ExecuteQueryRequest,
        settings: &HashMap<String, String>,
        identity: &Identity,
    ) -> Result<DistributedPlan> {
        let ctx = self.context(settings)?;
        let state = ctx.state();
        let depth_limit = self.settings.limits.max_expression_depth;
        let logical = match &request.query {
            Some(Query::Sql(sql)) => {
                let plan = state.create_logical_plan(sql).await?;
                let plan = check_expression_depth(plan, depth_limit)?;
                refuse_statements(&plan)?;
                state.optimize(&plan)?
            }
            Some(Query::LogicalPlan(bytes)) => {
                check_operand_lists(bytes, depth_limit)?;
                let plan = decode_client_plan(bytes, &ctx.task_ctx()).map_err(|e| {
                    match BallistaError::from_datafusion(e) {
                        BallistaError::DataFusion(e) => BallistaError::InvalidInput(format!(
                            "cannot decode the logical plan: {e}"
                        )),
                        typed => typed,
                    }
                })?;
                let plan = check_expression_depth(plan, depth_limit)?;
                refuse_statements(&plan)?;
                if request.plan_is_optimized {
                    plan
                } else {
                    state.optimize(&plan)?
                }
            }
            None => {
                return Err(BallistaError::InvalidInput(
                    "the request holds no query".into(),
                ));
            }
        };
        check_storage_access(
            &logical,
            &self.stores,
            self.shuffle_root.as_deref(),
            identity,
            &self.shared_tables,
        )?;
        if let LogicalPlan::Explain(explain) = &logical {
            check_table_locations(&logical, &state).await?;
            return self.plan_explain(job_id, explain, &state).await;
        }
        // Planning first: a query DataFusion refuses fails with DataFusion's
        // reason, whatever its tables hold.
        let physical = DefaultPhysicalPlanner::default()
            .create_physical_plan(&logical, &state)
            .await?;
        check_table_locations(&logical, &state).await?;
        record_window_filters(&logical, &physical, state.execution_props())?;
        let mut plan = split_into_stages(job_id, physical)?;
        plan.task_input_bytes = task_input_bytes_of(settings)?;
        plan.broadcast_output_bytes = adaptive_broadcast_bytes_of(settings)?;
        plan.early_consumers = early_consumers_of(settings)?;
        self.check_task_count(&plan)?;
        check_stages_travel(&plan, &state)?;
        Ok(plan)
    }

    /// Refuses a job of more tasks than `scheduler.limits.max_tasks_per_job`
    /// before anything is allocated per task.
    fn check_task_count(&self, plan: &DistributedPlan) -> Result<()> {
        let tasks: usize = plan
            .stages
            .iter()
            .map(|stage| stage.plan.input_partition_count())
            .fold(0, usize::saturating_add);
        let limit = self.settings.limits.max_tasks_per_job;
        if tasks > limit {
            return Err(BallistaError::ResourcesExhausted(format!(
                "the job would run {tasks} tasks in {} stages; the limit is {limit} \
                 (scheduler.limits.max_tasks_per_job): lower datafusion.execution.target_partitions",
                plan.stages.len()
            )));
        }
        Ok(())
    }

    /// `EXPLAIN` shows the stages the cluster would run in place of
    /// DataFusion's single-process physical plan. The explain node is rebuilt
    /// here: what the client's optimizer recorded in it does not travel.
    async fn plan_explain(
        &self,
        job_id: &JobId,
        explain: &Explain,
        state: &SessionState,
    ) -> Result<DistributedPlan> {
        let rebuilt = LogicalPlanBuilder::from(explain.plan.as_ref().clone())
            .explain(explain.verbose, false)?
            .build()?;
        let optimized = state.optimize(&rebuilt)?;
        let physical = DefaultPhysicalPlanner::default()
            .create_physical_plan(&optimized, state)
            .await?;
        let Some(exec) = physical.downcast_ref::<ExplainExec>() else {
            return split_into_stages(job_id, physical);
        };
        let inner = DefaultPhysicalPlanner::default()
            .create_physical_plan(&state.optimize(explain.plan.as_ref())?, state)
            .await?;
        let stages = split_into_stages(job_id, inner)?.display();
        let plans = exec
            .stringified_plans()
            .iter()
            .map(|p| match p.plan_type {
                PlanType::FinalPhysicalPlan => {
                    StringifiedPlan::new(PlanType::FinalPhysicalPlan, stages.clone())
                }
                _ => p.clone(),
            })
            .collect();
        let explained: Arc<dyn ExecutionPlan> =
            Arc::new(ExplainExec::new(exec.schema(), plans, exec.verbose()));
        split_into_stages(job_id, explained)
    }
}

/// Largest answer the scheduler computes itself from its catalog.
const LOCAL_ANSWER_BYTES: usize = 16 << 20;

/// Longest the scheduler spends computing such an answer.
const LOCAL_ANSWER_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// The rows of a query of the catalog's `information_schema`, which the
/// scheduler runs itself: stopped, with the reason, past
/// [`LOCAL_ANSWER_BYTES`] or [`LOCAL_ANSWER_TIME`], so that no client can
/// make the scheduler hold or compute without bound.
async fn answer_within_limits(
    mut stream: datafusion::execution::SendableRecordBatchStream,
) -> Result<Vec<arrow::array::RecordBatch>> {
    use futures::TryStreamExt;
    let collect = async {
        let mut batches = Vec::new();
        let mut bytes = 0usize;
        while let Some(batch) = stream.try_next().await? {
            bytes = bytes.saturating_add(batch.get_array_memory_size());
            if bytes > LOCAL_ANSWER_BYTES {
                return Err(BallistaError::ResourcesExhausted(format!(
                    "the answer from information_schema is larger than {LOCAL_ANSWER_BYTES} bytes; \
                     narrow the query"
                )));
            }
            batches.push(batch);
        }
        Ok(batches)
    };
    tokio::time::timeout(LOCAL_ANSWER_TIME, collect)
        .await
        .map_err(|_| {
            BallistaError::Timeout(format!(
                "the query of information_schema took longer than {}s",
                LOCAL_ANSWER_TIME.as_secs()
            ))
        })?
}

/// Every stage plan is encoded and decoded once while planning, so that a
/// plan that cannot travel to executors (or would not rebuild there) fails
/// the query before any task runs, with the reason.
fn check_stages_travel(plan: &DistributedPlan, state: &SessionState) -> Result<()> {
    let ctx = state.task_ctx();
    for stage in &plan.stages {
        let stage_plan: Arc<dyn ExecutionPlan> = stage.plan.clone();
        let bytes = encode_stage_plan(&stage_plan)?;
        decode_stage_plan(&bytes, &ctx)?;
    }
    Ok(())
}

/// DDL and session statements change a session, and a job has none to
/// change: clients run them locally.
fn refuse_statements(plan: &LogicalPlan) -> Result<()> {
    match plan {
        LogicalPlan::Ddl(ddl) => Err(BallistaError::NotSupported(format!(
            "{} cannot run as a job: declare tables in the scheduler configuration or run it in a client session",
            ddl.name()
        ))),
        LogicalPlan::Statement(statement) => Err(BallistaError::NotSupported(format!(
            "{} cannot run as a job: run it in a client session",
            statement.name()
        ))),
        _ => Ok(()),
    }
}

/// Every location the plan reads or writes is put to the storage plugin that
/// serves it before anything touches it (a sandboxed local store refuses
/// folders outside its roots), so a forbidden path fails the query up front
/// with the plugin's reason.
fn check_storage_access(
    plan: &LogicalPlan,
    stores: &BallistaObjectStoreRegistry,
    shuffle_root: Option<&str>,
    identity: &Identity,
    shared_tables: &[Url],
) -> Result<()> {
    let mut locations: Vec<(Url, StorageAccess)> = Vec::new();
    let listing_paths = |source: &Arc<dyn TableSource>| -> Vec<Url> {
        source_as_provider(source)
            .ok()
            .and_then(|provider| {
                provider.downcast_ref::<ListingTable>().map(|t| {
                    t.table_paths()
                        .iter()
                        .map(|u| u.get_url().clone())
                        .collect()
                })
            })
            .unwrap_or_default()
    };
    let mut bad_destination = None;
    let mut shipped_refusal = None;
    plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) => {
                locations.extend(
                    listing_paths(&scan.source)
                        .into_iter()
                        .map(|url| (url, StorageAccess::Read)),
                );
                // A table the client shipped as its own scan: the files
                // that scan reads.
                if let Some(shipped) = source_as_provider(&scan.source)
                    .ok()
                    .and_then(|p| p.downcast_ref::<ShippedTable>().map(|t| t.storage_reads()))
                {
                    match shipped {
                        Ok(urls) => {
                            locations.extend(urls.into_iter().map(|url| (url, StorageAccess::Read)))
                        }
                        Err(e) => shipped_refusal = Some(e),
                    }
                }
            }
            LogicalPlan::Copy(copy) => match ListingTableUrl::parse(&copy.output_url) {
                Ok(url) => locations.push((url.get_url().clone(), StorageAccess::Write)),
                Err(e) => bad_destination = Some(format!("{}: {e}", copy.output_url)),
            },
            LogicalPlan::Dml(dml) if matches!(dml.op, WriteOp::Insert(_)) => locations.extend(
                listing_paths(&dml.target)
                    .into_iter()
                    .map(|url| (url, StorageAccess::Write)),
            ),
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if let Some(refusal) = shipped_refusal {
        return Err(refusal);
    }
    if let Some(message) = bad_destination {
        return Err(BallistaError::InvalidInput(format!(
            "invalid COPY destination {message}"
        )));
    }
    for (url, access) in locations {
        if let Some(root) = shuffle_root
            && url.as_str().starts_with(root)
        {
            return Err(BallistaError::PermissionDenied(format!(
                "{url} is inside the shuffle storage ({root}); queries cannot {access} there"
            )));
        }
        // Tables the operator declares are everyone's to read; anything
        // else needs the user's grant, before any request leaves.
        let write = matches!(access, StorageAccess::Write);
        let shared = !write && shared_tables.contains(&url);
        if !shared {
            identity.check_storage(&url, write)?;
        }
        stores.check_access(&url, access)?;
    }
    Ok(())
}

/// The folder URL (ending in `/`) of an `object-store` shuffle selected in
/// the settings.
fn object_store_shuffle_root(settings: &crate::config::BallistaSettings) -> Option<String> {
    if settings.shuffle.kind.as_deref() != Some("object-store") {
        return None;
    }
    let url = settings.shuffle.options.get("url")?.as_str()?;
    let mut url = Url::parse(url).ok()?;
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Some(url.to_string())
}

/// DataFusion reads a table whose location does not exist as an empty table.
/// A user asking for a file that is not there wants to hear about it, so a
/// missing file is an error naming the table. A folder location (ending in
/// `/`) is an empty table while it does not exist, as in DataFusion: `CREATE
/// EXTERNAL TABLE … LOCATION 'dir/'` followed by `INSERT` creates it.
async fn check_table_locations(plan: &LogicalPlan, state: &SessionState) -> Result<()> {
    let mut tables: Vec<(String, Vec<ListingTableUrl>)> = Vec::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
            && let Some(table) = provider.downcast_ref::<ListingTable>()
        {
            tables.push((scan.table_name.to_string(), table.table_paths().clone()));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    for (name, urls) in tables {
        for url in urls {
            if !location_exists(&url, state).await? {
                return Err(BallistaError::NotFound(format!(
                    "table '{name}': location {} does not exist",
                    url.as_str()
                )));
            }
        }
    }
    Ok(())
}

async fn location_exists(url: &ListingTableUrl, state: &SessionState) -> Result<bool> {
    // A folder (a location ending in `/`) may not exist yet: it is an empty
    // table until something is written there, as in DataFusion.
    if url.is_collection() {
        return Ok(true);
    }
    if url.scheme() == "file" {
        let path = std::path::Path::new("/").join(url.prefix().as_ref());
        return Ok(path.exists());
    }
    let store = state.runtime_env().object_store(url.object_store())?;
    match store.head(url.prefix()).await {
        Ok(_) => Ok(true),
        // Not an object: maybe a prefix written without its trailing slash.
        Err(object_store::Error::NotFound { .. }) => {
            let mut listing = store.list(Some(url.prefix()));
            Ok(listing.next().await.transpose()?.is_some())
        }
        Err(e) => Err(e.into()),
    }
}
