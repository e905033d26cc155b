//! Decides where a client's query runs. Queries go to the cluster as a
//! serialized logical plan, with the tables only this session has (in-memory
//! tables, table functions) travelling along; session metadata
//! (`information_schema`, `DESCRIBE`) is answered here; writes into a
//! session's own table are computed by the cluster and stored here.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::catalog::information_schema::INFORMATION_SCHEMA;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::source_as_provider;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};

use super::SchedulerClient;
use super::query_exec::{DistributedQueryExec, JobProgressListener, QueryText};
use super::standalone::EmbeddedCluster;
use crate::config::settings_from_session_config;
use crate::error::{BallistaError, scrub_source_paths};
use crate::flight::FlightClientPool;
use crate::plan::encode_client_plan;
use crate::scheduler::QUERY_TEXT_LIMIT;

/// Sends queries to the scheduler.
#[derive(Debug)]
pub struct DistributedQueryPlanner {
    scheduler: SchedulerClient,
    /// Connections to executors for fetching results, shared by the session's jobs.
    flight: FlightClientPool,
    /// Keeps an embedded cluster alive as long as its session.
    _cluster: Option<Arc<EmbeddedCluster>>,
}

impl DistributedQueryPlanner {
    /// A planner for the scheduler behind `scheduler`.
    pub fn new(scheduler: SchedulerClient, cluster: Option<Arc<EmbeddedCluster>>) -> Self {
        Self {
            flight: FlightClientPool::with_credentials(scheduler.credentials().clone())
                .over(scheduler.executors_over().clone()),
            scheduler,
            _cluster: cluster,
        }
    }
}

enum Placement {
    /// The cluster runs it (session-only tables travel with the plan).
    Cluster,
    /// Session metadata (`information_schema`, `DESCRIBE`): answered here.
    Local,
    /// Writes into a table that exists only in this session: the cluster
    /// computes the rows, the session stores them.
    InsertLocally,
    /// Changes a table that exists only in this session (DELETE, UPDATE, …).
    ChangeLocally,
}

fn is_file_table(source: &Arc<dyn datafusion::logical_expr::TableSource>) -> bool {
    source_as_provider(source)
        .map(|p| p.is::<ListingTable>())
        .unwrap_or(false)
}

/// Where `plan` runs (see [`Placement`]).
fn placement(plan: &LogicalPlan) -> DFResult<Placement> {
    match plan {
        LogicalPlan::DescribeTable(_) => return Ok(Placement::Local),
        LogicalPlan::Dml(dml) if !is_file_table(&dml.target) => {
            return Ok(match dml.op {
                WriteOp::Insert(_) => Placement::InsertLocally,
                _ => Placement::ChangeLocally,
            });
        }
        _ => {}
    }
    let mut scans = 0;
    let mut metadata = 0;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            scans += 1;
            if scan.table_name.schema() == Some(INFORMATION_SCHEMA) {
                metadata += 1;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(if scans > 0 && scans == metadata {
        Placement::Local
    } else {
        Placement::Cluster
    })
}

impl DistributedQueryPlanner {
    /// The error for a plan that cannot be serialized. A plan DataFusion
    /// itself cannot execute (an outer reference where none is allowed, a
    /// LIMIT by subquery) gets DataFusion's own error, as it would have
    /// single-process; otherwise the reason it cannot travel.
    async fn cannot_send(
        &self,
        error: DataFusionError,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> DataFusionError {
        let error = match BallistaError::from_datafusion(error) {
            BallistaError::DataFusion(e) => e,
            typed => return typed.into(),
        };
        if let Err(planning) = DefaultPhysicalPlanner::default()
            .create_physical_plan(logical_plan, session)
            .await
        {
            return planning;
        }
        BallistaError::NotSupported(format!(
            "this query cannot be sent to the cluster: {}",
            scrub_source_paths(&error.strip_backtrace())
        ))
        .into()
    }

    async fn on_cluster(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> DFResult<DistributedQueryExec> {
        let bytes = match encode_client_plan(logical_plan, session).await {
            Ok(bytes) => bytes,
            Err(e) => return Err(self.cannot_send(e, logical_plan, session).await),
        };
        let listener = session
            .config()
            .get_extension::<JobProgressListener>()
            .map(|l| l.as_ref().clone());
        let query_text = match session.config().get_extension::<QueryText>() {
            Some(text) => text.0.clone(),
            None => logical_plan.display_indent().to_string(),
        };
        let query_text = crate::util::cut_at_char(&query_text, QUERY_TEXT_LIMIT);
        Ok(DistributedQueryExec::new(
            self.scheduler.clone(),
            self.flight.clone(),
            bytes,
            settings_from_session_config(session.config()),
            session.session_id().to_string(),
            Arc::new(logical_plan.schema().as_arrow().clone()),
            listener,
        )
        .with_query_text(query_text))
    }
}

#[async_trait]
impl QueryPlanner for DistributedQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        match placement(logical_plan)? {
            Placement::Local | Placement::ChangeLocally => {
                DefaultPhysicalPlanner::default()
                    .create_physical_plan(logical_plan, session)
                    .await
            }
            Placement::Cluster => Ok(Arc::new(self.on_cluster(logical_plan, session).await?)),
            Placement::InsertLocally => {
                let LogicalPlan::Dml(dml) = logical_plan else {
                    return Err(
                        BallistaError::Internal("an insert without its statement".into()).into(),
                    );
                };
                let WriteOp::Insert(op) = dml.op else {
                    return Err(BallistaError::Internal("an insert without its mode".into()).into());
                };
                let rows = Arc::new(
                    self.on_cluster(&dml.input, session)
                        .await?
                        .with_strict_nullability(true),
                );
                let target = source_as_provider(&dml.target)?;
                target.insert_into(session, rows, op).await
            }
        }
    }
}
