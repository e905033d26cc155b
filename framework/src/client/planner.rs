//! Decides where a client's query runs: file-backed queries go to the
//! cluster as a serialized logical plan; queries over session-local tables
//! (in-memory tables, `information_schema`) run in the client.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::source_as_provider;
use datafusion::error::Result as DFResult;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion_proto::bytes::logical_plan_to_bytes;

use super::SchedulerClient;
use super::query_exec::{DistributedQueryExec, JobProgressListener};
use super::standalone::EmbeddedCluster;
use crate::config::settings_from_session_config;
use crate::error::BallistaError;
use crate::flight::FlightClientPool;

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
            scheduler,
            flight: FlightClientPool::default(),
            _cluster: cluster,
        }
    }
}

enum Placement {
    Cluster,
    Local,
}

/// Cluster unless every table the plan reads is local to this session.
fn placement(plan: &LogicalPlan) -> DFResult<Placement> {
    let mut distributed = Vec::new();
    let mut local = Vec::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let is_file_table = source_as_provider(&scan.source)
                .map(|p| p.is::<ListingTable>())
                .unwrap_or(false);
            if is_file_table {
                distributed.push(scan.table_name.to_string());
            } else {
                local.push(scan.table_name.to_string());
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    match (distributed.is_empty(), local.is_empty()) {
        (_, true) => Ok(Placement::Cluster),
        (true, false) => Ok(Placement::Local),
        (false, false) => Err(BallistaError::NotSupported(format!(
            "the query joins file-backed tables ({}) with tables that exist only in this session ({}); \
             only tables backed by files or object storage can be read by the cluster",
            distributed.join(", "),
            local.join(", ")
        ))
        .into()),
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
            Placement::Local => {
                DefaultPhysicalPlanner::default()
                    .create_physical_plan(logical_plan, session)
                    .await
            }
            Placement::Cluster => {
                let bytes = logical_plan_to_bytes(logical_plan).map_err(|e| {
                    BallistaError::NotSupported(format!(
                        "this query cannot be sent to the cluster: {e}"
                    ))
                })?;
                let listener = session
                    .config()
                    .get_extension::<JobProgressListener>()
                    .map(|l| l.as_ref().clone());
                Ok(Arc::new(DistributedQueryExec::new(
                    self.scheduler.clone(),
                    self.flight.clone(),
                    bytes.to_vec(),
                    settings_from_session_config(session.config()),
                    session.session_id().to_string(),
                    Arc::new(logical_plan.schema().as_arrow().clone()),
                    listener,
                )))
            }
        }
    }
}
