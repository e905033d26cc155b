//! Queries from Flight SQL clients, run as jobs of their caller, and the
//! `FlightInfo` that tells the client where to read each result partition.

use std::sync::{Arc, Weak};

use arrow::array::{Array, UInt64Array};
use arrow::datatypes::SchemaRef;
use arrow_flight::sql::{ProstMessageExt, TicketStatementQuery};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use prost::Message;

use crate::config::FlightSqlResults;
use crate::error::{BallistaError, Result};
use crate::flight::FlightClientPool;
use crate::ids::JobId;
use crate::plan::encode_client_plan;
use crate::plugin::auth::Identity;
use crate::plugin::shuffle::ShuffleLocation;
use crate::proto::execute_query_request::Query;
use crate::proto::{self, JobState};
use crate::scheduler::SchedulerInner;
use crate::tls::PeerTransport;

/// A query's job, ended with success: where its rows are.
#[derive(Debug)]
pub(crate) struct FinishedQuery {
    /// The job.
    pub job_id: JobId,
    /// Schema of its rows.
    pub schema: SchemaRef,
    /// Its non-empty result locations, in the order of the rows.
    pub locations: Vec<ShuffleLocation>,
}

/// Cancels a job when the call waiting for it goes away (the client hung up
/// or cancelled its request) before the job ended.
struct CancelOnDrop {
    inner: Weak<SchedulerInner>,
    job_id: Option<JobId>,
}

impl CancelOnDrop {
    fn disarm(&mut self) {
        self.job_id = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let (Some(job_id), Some(inner)) = (self.job_id.take(), self.inner.upgrade()) {
            tracing::info!("job {job_id}: its Flight SQL client went away; cancelling it");
            inner.cancel(&job_id, "was cancelled: its Flight SQL client went away");
        }
    }
}

/// The session a Flight SQL caller's jobs are counted in
/// (`scheduler.limits.max_jobs_per_session`): one per user.
fn session_id_of(user: &str) -> String {
    let mut id = String::from("flight-sql:");
    id.extend(
        user.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.:".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(100),
    );
    id
}

/// Runs `sql` as a job of `identity` and waits for it to end.
pub(crate) async fn run_query(
    inner: &Arc<SchedulerInner>,
    identity: Arc<Identity>,
    sql: &str,
) -> Result<FinishedQuery> {
    run_request(inner, identity, Query::Sql(sql.to_string()), false).await
}

/// Runs `plan` (planned against `ctx`, the scheduler's catalog, with its
/// parameters bound) as a job of `identity` and waits for it to end. It
/// travels optimized, as our Rust client sends plans: subqueries are joins
/// by then, which the plan encoding can carry.
pub(crate) async fn run_plan(
    inner: &Arc<SchedulerInner>,
    identity: Arc<Identity>,
    ctx: &SessionContext,
    plan: &LogicalPlan,
) -> Result<FinishedQuery> {
    let state = ctx.state();
    let optimized = state.optimize(plan)?;
    let bytes = encode_client_plan(&optimized, &state).await?;
    run_request(inner, identity, Query::LogicalPlan(bytes), true).await
}

async fn run_request(
    inner: &Arc<SchedulerInner>,
    identity: Arc<Identity>,
    query: Query,
    plan_is_optimized: bool,
) -> Result<FinishedQuery> {
    let request = proto::ExecuteQueryRequest {
        query: Some(query),
        session_id: session_id_of(&identity.user),
        plan_is_optimized,
        ..Default::default()
    };
    let (job_id, mut status) = inner.submit(request, identity)?;
    tracing::info!("job {job_id} submitted over Flight SQL");
    let mut guard = CancelOnDrop {
        inner: Arc::downgrade(inner),
        job_id: Some(job_id.clone()),
    };
    loop {
        let current = status.borrow_and_update().clone();
        match JobState::try_from(current.state) {
            Ok(JobState::Succeeded) => {
                guard.disarm();
                return finished(job_id, current);
            }
            Ok(JobState::Failed) | Ok(JobState::Cancelled) => {
                guard.disarm();
                let error = current.error.unwrap_or_else(|| proto::ErrorInfo {
                    kind: proto::ErrorKind::Internal as i32,
                    message: format!("job {job_id} ended without an error message"),
                    ..Default::default()
                });
                return Err(BallistaError::from_proto(&error));
            }
            _ => {}
        }
        if status.changed().await.is_err() {
            guard.disarm();
            return Err(BallistaError::Unavailable(format!(
                "the scheduler forgot job {job_id} before it ended"
            )));
        }
    }
}

fn finished(job_id: JobId, status: proto::JobStatus) -> Result<FinishedQuery> {
    let result = status.result.unwrap_or_default();
    let schema = proto::decode_schema(&result.schema)?;
    let locations = ShuffleLocation::partitions_from_proto(&result.partitions)?
        .into_iter()
        .flatten()
        .filter(|l| l.stats.num_rows > 0)
        .collect();
    Ok(FinishedQuery {
        job_id,
        schema,
        locations,
    })
}

/// The rows a statement changed, for an update's answer: the sum of the
/// `count` its job returns (`INSERT`, `COPY`), else the rows of its result.
pub(crate) async fn update_count(
    query: &FinishedQuery,
    executors: &FlightClientPool,
) -> Result<i64> {
    let counted = query.schema.fields().len() == 1
        && query.schema.field(0).name() == "count"
        && query.schema.field(0).data_type() == &arrow::datatypes::DataType::UInt64;
    let mut total = 0u64;
    for location in &query.locations {
        if !counted {
            total = total.saturating_add(location.stats.num_rows);
            continue;
        }
        let mut batches = executors
            .fetch(
                &location.executor.host,
                location.executor.port,
                &query.job_id,
                &location.path,
                &location.ticket,
                Arc::clone(&query.schema),
            )
            .await?;
        while let Some(batch) = batches.try_next().await? {
            if let Some(counts) = batch.column(0).as_any().downcast_ref::<UInt64Array>() {
                total = total.saturating_add(counts.iter().flatten().sum::<u64>());
            }
        }
    }
    Ok(i64::try_from(total).unwrap_or(i64::MAX))
}

/// The statement handle of a result location served through the
/// scheduler: `job id/index`.
fn result_handle(job_id: &JobId, index: usize) -> Vec<u8> {
    format!("{job_id}/{index}").into_bytes()
}

/// The job and location index a statement handle names.
pub(crate) fn parse_result_handle(handle: &[u8]) -> Result<(JobId, usize)> {
    let invalid = || {
        BallistaError::InvalidInput(
            "the statement ticket is not one this scheduler issued (expected job id/index)".into(),
        )
    };
    let text = std::str::from_utf8(handle).map_err(|_| invalid())?;
    let (job, index) = text.split_once('/').ok_or_else(invalid)?;
    let job_id = JobId::parse(job).map_err(|_| invalid())?;
    let index = index.parse().map_err(|_| invalid())?;
    Ok((job_id, index))
}

/// The job whose results a ticket of one of our `FlightInfo`s reads: a
/// statement handle served by the scheduler, or an executor's signed
/// ticket (the job id in it is checked against its owner by the caller).
pub(crate) fn job_of_ticket(ticket: &[u8]) -> Result<Option<JobId>> {
    if let Ok(any) = arrow_flight::sql::Any::decode(ticket)
        && let Ok(Some(statement)) = any.unpack::<TicketStatementQuery>()
    {
        if statement
            .statement_handle
            .starts_with(super::local_results::HANDLE_PREFIX.as_bytes())
        {
            // An answer the scheduler computed itself: no job.
            return Ok(None);
        }
        return Ok(Some(parse_result_handle(&statement.statement_handle)?.0));
    }
    let fetch = crate::flight::decode_ticket(ticket).map_err(|_| {
        BallistaError::InvalidInput(
            "a ticket of the FlightInfo is not one this cluster issued".into(),
        )
    })?;
    JobId::parse(&fetch.job_id).map(Some)
}

/// The Flight location URI of an executor.
fn executor_location(location: &ShuffleLocation, transport: &PeerTransport) -> String {
    let scheme = if transport.is_tls() {
        "grpc+tls"
    } else {
        "grpc+tcp"
    };
    let host = &location.executor.host;
    if host.contains(':') && !host.starts_with('[') {
        format!("{scheme}://[{host}]:{}", location.executor.port)
    } else {
        format!("{scheme}://{host}:{}", location.executor.port)
    }
}

/// The answer to a query: its schema and one endpoint per non-empty result
/// location, in order.
pub(crate) fn flight_info(
    query: &FinishedQuery,
    results: FlightSqlResults,
    transport: &PeerTransport,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo> {
    let mut info = FlightInfo::new()
        .try_with_schema(&query.schema)
        .map_err(|e| BallistaError::Internal(format!("encoding the result schema: {e}")))?
        .with_descriptor(descriptor)
        .with_ordered(true);
    let (mut rows, mut bytes) = (0u64, 0u64);
    for (index, location) in query.locations.iter().enumerate() {
        rows = rows.saturating_add(location.stats.num_rows);
        bytes = bytes.saturating_add(location.stats.num_bytes);
        let endpoint = match results {
            FlightSqlResults::Executors => FlightEndpoint::new()
                .with_ticket(Ticket::new(location.ticket.clone()))
                .with_location(executor_location(location, transport)),
            FlightSqlResults::Scheduler => {
                let ticket = TicketStatementQuery {
                    statement_handle: result_handle(&query.job_id, index).into(),
                };
                FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()))
            }
        };
        info = info.with_endpoint(endpoint);
    }
    Ok(info
        .with_total_records(i64::try_from(rows).unwrap_or(i64::MAX))
        .with_total_bytes(i64::try_from(bytes).unwrap_or(i64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_handles_round_trip_and_junk_is_refused() {
        let job = JobId::generate();
        assert_eq!(
            parse_result_handle(&result_handle(&job, 7)).unwrap(),
            (job.clone(), 7)
        );
        for junk in [&b"x"[..], b"/1", b"\xff", b"abc/-1"] {
            let err = parse_result_handle(junk).unwrap_err().to_string();
            assert!(err.contains("not one this scheduler issued"), "{err}");
        }
    }

    #[test]
    fn session_ids_of_any_user_are_valid() {
        assert_eq!(session_id_of("ana"), "flight-sql:ana");
        assert_eq!(session_id_of("a b/é"), "flight-sql:a_b__");
    }
}
