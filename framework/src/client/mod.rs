//! Client side: a DataFusion [`SessionContext`] whose queries run on a
//! Ballista cluster.
//!
//! ```no_run
//! use ballista::client::SessionContextExt;
//! use datafusion::prelude::*;
//!
//! # async fn example() -> datafusion::error::Result<()> {
//! let ctx = SessionContext::remote("http://localhost:50050").await?;
//! ctx.register_parquet("t", "/data/t/", ParquetReadOptions::default()).await?;
//! ctx.sql("SELECT count(*) FROM t").await?.show().await?;
//! # Ok(())
//! # }
//! ```
//!
//! SQL, the DataFrame API, `CREATE EXTERNAL TABLE`, `register_parquet` and
//! `register_csv` work as in DataFusion: the session plans locally and ships
//! the optimized logical plan to the scheduler. Tables declared in the
//! scheduler's configuration, and those of its shared catalog, are
//! registered in the session automatically.
//!
//! `ctx.sql` keeps DataFusion's meaning: a `CREATE EXTERNAL TABLE` lives in
//! this session only. [`SessionContextExt::shared_sql`] sends catalog
//! statements to the scheduler instead, for every client to see:
//!
//! ```no_run
//! use ballista::client::SessionContextExt;
//! use datafusion::prelude::*;
//!
//! # async fn example() -> datafusion::error::Result<()> {
//! let ctx = SessionContext::remote("http://localhost:50050").await?;
//! ctx.shared_sql("CREATE EXTERNAL TABLE trips STORED AS PARQUET LOCATION 's3://taxi/trips/'")
//!     .await?;
//! // Another session, or a Flight SQL client, sees `trips` from now on.
//! # Ok(())
//! # }
//! ```

mod planner;
mod query_exec;
mod scheduler_client;
mod shared_catalog;
mod standalone;

use std::future::Future;
use std::sync::Arc;

use datafusion::dataframe::DataFrame;
use datafusion::error::Result as DFResult;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::SessionContext;

pub use planner::DistributedQueryPlanner;
pub use query_exec::{DistributedQueryExec, JobProgressListener, QueryText, run_job};
pub use scheduler_client::{CONNECT_TIMEOUT, ClientAuth, PASSWORD_ENV, SchedulerClient};
pub use shared_catalog::execute_shared;
pub use standalone::EmbeddedCluster;

use crate::config::{BallistaConfig, new_session_config};
use crate::error::BallistaError;
use crate::tables::listing_table_from_info;
use crate::tls::TlsTrust;

/// Ballista constructors for DataFusion's [`SessionContext`].
pub trait SessionContextExt: Sized {
    /// A session whose queries run on the cluster behind the scheduler at
    /// `url` (e.g. `http://localhost:50050`), as the cluster administrator
    /// when this machine holds the cluster key ([`ClientAuth::Auto`]). Fails
    /// at once, with the reason, when the scheduler cannot be reached.
    fn remote(url: &str) -> impl Future<Output = DFResult<Self>> + Send;

    /// Like [`remote`](Self::remote), with the client's storage plugins taken
    /// from `config` (the client lists files and reads schemas itself), and
    /// its credentials from `config.settings.client` (see
    /// [`ClientAuth::from_settings`]) or `config.cluster_key`.
    fn remote_with_config(
        url: &str,
        config: BallistaConfig,
    ) -> impl Future<Output = DFResult<Self>> + Send;

    /// A session on an embedded cluster (a scheduler and one executor in
    /// this process, over real gRPC and Flight on loopback). The cluster
    /// stops when the session is dropped.
    fn standalone() -> impl Future<Output = DFResult<Self>> + Send;

    /// An embedded cluster built from `config` with `executors` executors.
    fn standalone_with_config(
        config: BallistaConfig,
        executors: usize,
    ) -> impl Future<Output = DFResult<Self>> + Send;

    /// Runs one SQL statement as the cluster's clients do (the CLI runs
    /// every statement so): `CREATE EXTERNAL TABLE`, `CREATE VIEW`, `CREATE
    /// SCHEMA` and `DROP TABLE|VIEW` go to the scheduler's shared catalog,
    /// seen by every client and kept across restarts (under the rules the
    /// scheduler applies: a read grant on a table's location; replacing or
    /// dropping an entry is for its owner or an admin). `CREATE EXTERNAL
    /// TEMPORARY TABLE`, `CREATE TEMPORARY VIEW`, and dropping one of the
    /// session's own tables, stay in this session. Any other statement runs as with `sql`. Relative
    /// local locations are made absolute here first.
    fn shared_sql(&self, sql: &str) -> impl Future<Output = DFResult<DataFrame>> + Send;

    /// Takes the scheduler's shared catalog again when it has changed
    /// (another client created or dropped an entry), so that `sql` sees
    /// it. [`shared_sql`](Self::shared_sql) does this by itself.
    fn refresh_catalog(&self) -> impl Future<Output = DFResult<()>> + Send;
}

async fn connect(
    url: &str,
    config: BallistaConfig,
    cluster: Option<Arc<EmbeddedCluster>>,
) -> DFResult<SessionContext> {
    let auth = match (&cluster, &config.cluster_key) {
        (Some(cluster), _) => cluster.client_auth(),
        (None, Some(key)) => ClientAuth::ClusterKey(key.clone()),
        (None, None) => ClientAuth::from_all_settings(&config.settings)?,
    };
    let trust = TlsTrust::from_settings_or_env(&config.settings.tls)?;
    let scheduler = SchedulerClient::connect_trusting(url, auth, &trust).await?;
    let defaults = scheduler.session_defaults().await?;
    let mut session_config = new_session_config();
    for kv in &defaults.settings {
        session_config
            .options_mut()
            .set(&kv.key, &kv.value)
            .map_err(|e| {
                BallistaError::Configuration(format!(
                    "the scheduler's session default {} = {:?} is not accepted by this client: {e}",
                    kv.key, kv.value
                ))
            })?;
    }
    let declared: Vec<String> = defaults.tables.iter().map(|t| t.name.clone()).collect();
    let link = Arc::new(shared_catalog::CatalogLink::new(
        scheduler.clone(),
        &declared,
    ));
    let session_config = session_config.with_extension(Arc::clone(&link));
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(crate::util::cache_settings())
        .with_object_store_registry(config.object_store_registry()?)
        .build_arc()?;
    let state = SessionStateBuilder::new()
        .with_config(session_config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_query_planner(Arc::new(DistributedQueryPlanner::new(scheduler, cluster)))
        .build();
    let ctx = SessionContext::new_with_state(state);
    for table in &defaults.tables {
        let (name, provider) = listing_table_from_info(table)?;
        ctx.register_table(name.as_str(), provider)?;
    }
    // The session works without the catalog's entries (declared tables,
    // its own tables): a catalog it cannot take is logged, not fatal.
    if let Err(e) = link.refresh(&ctx).await {
        tracing::warn!("the scheduler's shared catalog is left out of this session: {e}");
    }
    Ok(ctx)
}

impl SessionContextExt for SessionContext {
    async fn remote(url: &str) -> DFResult<Self> {
        connect(url, BallistaConfig::default(), None).await
    }

    async fn remote_with_config(url: &str, config: BallistaConfig) -> DFResult<Self> {
        connect(url, config, None).await
    }

    async fn standalone() -> DFResult<Self> {
        Self::standalone_with_config(BallistaConfig::default(), 1).await
    }

    async fn standalone_with_config(config: BallistaConfig, executors: usize) -> DFResult<Self> {
        let cluster = Arc::new(EmbeddedCluster::start(config.clone(), executors).await?);
        let url = cluster.scheduler_url().to_string();
        connect(&url, config, Some(cluster)).await
    }

    async fn shared_sql(&self, sql: &str) -> DFResult<DataFrame> {
        let plan = self.state().create_logical_plan(sql).await?;
        execute_shared(self, plan, sql).await
    }

    async fn refresh_catalog(&self) -> DFResult<()> {
        match shared_catalog::link_of(self) {
            Some(link) => Ok(link.refresh(self).await?),
            None => Err(BallistaError::NotSupported(
                "this session is not a cluster's (made by SessionContext::remote or standalone): \
                 it has no shared catalog"
                    .into(),
            )
            .into()),
        }
    }
}
