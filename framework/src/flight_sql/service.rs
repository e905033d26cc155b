//! The Flight SQL service of the scheduler: arrow-flight's
//! [`FlightSqlService`], dispatching each call to the login, the statement
//! runner or the metadata answers.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightData,
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use super::local_results::{HANDLE_PREFIX, LocalResults};
use super::metadata::{self, SQL_INFO, TABLE_TYPES, XDBC_TYPES};
use super::plain_types::{needs_plain_types, plain_schema, with_plain_types};
use super::prepared::{self, PreparedStatements};
use super::statements::{self, parse_result_handle};
use super::wire::{
    BoxedStream, batch_stream, batches_stream, check_sql_length, client_of, ipc_schema,
    metadata_info, put_batches,
};
use crate::auth::{CallCredentials, Login};
use crate::catalog::CatalogAnswer;
use crate::config::FlightSqlResults;
use crate::error::BallistaError;
use crate::flight::FlightClientPool;
use crate::scheduler::SchedulerInner;
use crate::tls::PeerTransport;

/// The Flight action that cancels a query by its `FlightInfo`.
const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";

/// The scheduler's Flight SQL service.
pub(crate) struct FlightSqlFrontDoor {
    login: Login,
    inner: Arc<SchedulerInner>,
    results: FlightSqlResults,
    /// Whether results keep view types (see `plain_types`).
    view_types: bool,
    executors_over: PeerTransport,
    /// Reads results from executors for clients served through the
    /// scheduler, as the cluster administrator (the tickets are signed).
    proxy: FlightClientPool,
    prepared: PreparedStatements,
    local: LocalResults,
}

impl std::fmt::Debug for FlightSqlFrontDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightSqlFrontDoor")
            .field("results", &self.results)
            .finish_non_exhaustive()
    }
}

impl FlightSqlFrontDoor {
    /// The service of the scheduler `inner`, logging in with `login`,
    /// serving results as `results` says, reaching executors over
    /// `executors_over` with the cluster key `cluster`.
    pub(crate) fn new(
        login: Login,
        inner: Arc<SchedulerInner>,
        results: FlightSqlResults,
        view_types: bool,
        executors_over: PeerTransport,
        cluster: crate::auth::SecretKey,
    ) -> Self {
        let proxy = FlightClientPool::with_credentials(CallCredentials::Admin(cluster))
            .over(executors_over.clone());
        Self {
            login,
            inner,
            results,
            view_types,
            executors_over,
            proxy,
            prepared: PreparedStatements::default(),
            local: LocalResults::default(),
        }
    }
}

/// What running a statement did.
enum Ran {
    /// It ran as a job, which has ended.
    Job(statements::FinishedQuery),
    /// The scheduler answered it from its catalog.
    Catalog(CatalogAnswer),
}

impl FlightSqlFrontDoor {
    /// The `FlightInfo` of a statement the scheduler answered itself: a
    /// DDL statement has no columns and no rows; the rows of a catalog
    /// query are held here for the caller, read at the scheduler.
    fn catalog_info(
        &self,
        answer: CatalogAnswer,
        identity: &crate::plugin::auth::Identity,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let encoding =
            |e: arrow::error::ArrowError| Status::internal(format!("encoding a schema: {e}"));
        match answer {
            CatalogAnswer::Changed(change) => {
                tracing::debug!("Flight SQL: {}", change.description);
                Ok(FlightInfo::new()
                    .try_with_schema(&arrow::datatypes::Schema::empty())
                    .map_err(encoding)?
                    .with_descriptor(descriptor)
                    .with_total_records(0))
            }
            CatalogAnswer::Rows { schema, batches } => {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                let handle = self.local.hold(identity, Arc::clone(&schema), batches)?;
                let ticket = TicketStatementQuery {
                    statement_handle: handle.into_bytes().into(),
                };
                Ok(FlightInfo::new()
                    .try_with_schema(&schema)
                    .map_err(encoding)?
                    .with_endpoint(
                        FlightEndpoint::new()
                            .with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
                    )
                    .with_descriptor(descriptor)
                    .with_ordered(true)
                    .with_total_records(rows as i64))
            }
        }
    }

    /// The rows an update's job changed; its results are dropped then, as
    /// nobody reads them.
    async fn counted(
        &self,
        identity: &crate::plugin::auth::Identity,
        finished: &statements::FinishedQuery,
    ) -> Result<i64, Status> {
        let count = statements::update_count(finished, &self.proxy).await;
        if let Err(e) = self.inner.cancel_for(identity, &finished.job_id) {
            tracing::debug!("dropping the results of job {}: {e}", finished.job_id);
        }
        Ok(count?)
    }

    /// Runs prepared statement `handle` of `identity` with its bound
    /// parameters.
    async fn run_prepared(
        &self,
        identity: Arc<crate::plugin::auth::Identity>,
        handle: &[u8],
    ) -> Result<Ran, Status> {
        let statement = self.prepared.get(&identity, handle)?;
        let values = prepared::query_parameters(statement.parameters.clone())?;
        self.run_statement(identity, &statement, values).await
    }

    /// Runs prepared `statement` of `identity` with one row of `values`.
    async fn run_statement(
        &self,
        identity: Arc<crate::plugin::auth::Identity>,
        statement: &prepared::Statement,
        values: Vec<datafusion::common::ScalarValue>,
    ) -> Result<Ran, Status> {
        if statement.parameter_count == 0
            && let Some(answer) = self
                .inner
                .catalog_statement(&statement.sql, &identity)
                .await?
        {
            return Ok(Ran::Catalog(answer));
        }
        prepared::check_parameter_count(statement.parameter_count, values.len())?;
        if statement.parameter_count == 0 {
            // Without parameters the statement is its text (ADBC prepares
            // every statement it runs).
            return Ok(Ran::Job(self.run_sql(identity, &statement.sql).await?));
        }
        let ctx = self.catalog()?;
        let plan = prepared::bound_plan(&ctx, &statement.sql, values).await?;
        let plan = match self.view_types {
            true => plan,
            false => with_plain_types(plan)?,
        };
        Ok(Ran::Job(
            statements::run_plan(&self.inner, identity, &ctx, &plan).await?,
        ))
    }

    /// Runs `sql` as a job of `identity`, its result in the types every
    /// client reads unless `view_types` (see `plain_types`): a query
    /// giving other types is planned here and sent as a plan with casts on
    /// top; anything else goes as its text, for the job to plan (and report
    /// on) as usual.
    async fn run_sql(
        &self,
        identity: Arc<crate::plugin::auth::Identity>,
        sql: &str,
    ) -> Result<statements::FinishedQuery, Status> {
        if !self.view_types {
            let ctx = self.catalog()?;
            if let Ok(plan) = ctx.state().create_logical_plan(sql).await
                && needs_plain_types(&plan)
            {
                let plan = with_plain_types(plan)?;
                return Ok(statements::run_plan(&self.inner, identity, &ctx, &plan).await?);
            }
        }
        Ok(statements::run_query(&self.inner, identity, sql).await?)
    }

    fn catalog(&self) -> Result<datafusion::prelude::SessionContext, Status> {
        Ok(self.inner.catalog_context()?)
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlFrontDoor {
    type FlightService = FlightSqlFrontDoor;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<BoxedStream<HandshakeResponse>>, Status> {
        self.login.handshake(request).await
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let identity = client_of(&request, "running a query")?;
        check_sql_length(&query.query)?;
        if let Some(answer) = self
            .inner
            .catalog_statement(&query.query, &identity)
            .await?
        {
            return Ok(Response::new(self.catalog_info(
                answer,
                &identity,
                request.into_inner(),
            )?));
        }
        let finished = self.run_sql(identity, &query.query).await?;
        let info = statements::flight_info(
            &finished,
            self.results,
            &self.executors_over,
            request.into_inner(),
        )?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<BoxedStream<FlightData>>, Status> {
        let identity = client_of(&request, "reading results")?;
        if let Some(handle) = std::str::from_utf8(&ticket.statement_handle)
            .ok()
            .filter(|h| h.starts_with(HANDLE_PREFIX))
        {
            let (schema, batches) = self.local.take(&identity, handle)?;
            return Ok(batches_stream(schema, batches));
        }
        let (job_id, index) = parse_result_handle(&ticket.statement_handle)?;
        let location = self.inner.result_location(&identity, &job_id, index)?;
        let mut client = self
            .proxy
            .client(&location.executor.host, location.executor.port)?;
        let stream = client
            .do_get(Ticket::new(location.ticket.clone()))
            .await
            .map_err(|status| {
                BallistaError::Unavailable(format!(
                    "cannot read result partition {index} of job {job_id} from executor {} at {}:{}: {}",
                    location.executor.id,
                    location.executor.host,
                    location.executor.port,
                    status.message()
                ))
            })?
            .into_inner();
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let identity = client_of(&request, "running a prepared statement")?;
        let finished = match self
            .run_prepared(identity, &query.prepared_statement_handle)
            .await?
        {
            Ran::Job(finished) => finished,
            Ran::Catalog(answer) => {
                let identity = client_of(&request, "running a prepared statement")?;
                return Ok(Response::new(self.catalog_info(
                    answer,
                    &identity,
                    request.into_inner(),
                )?));
            }
        };
        let info = statements::flight_info(
            &finished,
            self.results,
            &self.executors_over,
            request.into_inner(),
        )?;
        Ok(Response::new(info))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let identity = client_of(&request, "running a statement")?;
        check_sql_length(&command.query)?;
        if self
            .inner
            .catalog_statement(&command.query, &identity)
            .await?
            .is_some()
        {
            return Ok(0);
        }
        let finished = self.run_sql(Arc::clone(&identity), &command.query).await?;
        self.counted(&identity, &finished).await
    }

    async fn do_put_prepared_statement_update(
        &self,
        command: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let identity = client_of(&request, "running a prepared statement")?;
        let statement = self
            .prepared
            .get(&identity, &command.prepared_statement_handle)?;
        // The values come with the update (as ADBC sends them), or were
        // bound before (as arrow-rs's client binds them); each row runs
        // once, as `executemany` asks, and the counts add up.
        let sent = prepared::parameter_rows(&put_batches(request).await?)?;
        let rows = match sent.is_empty() {
            true => statement.parameters.clone(),
            false => sent,
        };
        let rows = match rows.is_empty() {
            true => vec![Vec::new()],
            false => rows,
        };
        let mut total = 0i64;
        for values in rows {
            match self
                .run_statement(Arc::clone(&identity), &statement, values)
                .await?
            {
                Ran::Job(finished) => {
                    total = total.saturating_add(self.counted(&identity, &finished).await?)
                }
                Ran::Catalog(_) => {}
            }
        }
        Ok(total)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let identity = client_of(&request, "preparing a statement")?;
        check_sql_length(&query.query)?;
        let mut description = prepared::describe(&self.catalog()?, &query.query).await?;
        if !self.view_types {
            description.dataset = plain_schema(&description.dataset);
            // Values are cast to the types the statement expects anyway.
            description.parameters = plain_schema(&description.parameters);
        }
        let handle = self
            .prepared
            .create(&identity, &query.query, &description)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into_bytes().into(),
            dataset_schema: ipc_schema(&description.dataset)?,
            parameter_schema: ipc_schema(&description.parameters)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let identity = client_of(&request, "binding parameters")?;
        let handle = query.prepared_statement_handle;
        // The statement must exist (and be the caller's) before its
        // parameters are read.
        self.prepared.get(&identity, &handle)?;
        let rows = prepared::parameter_rows(&put_batches(request).await?)?;
        self.prepared.bind(&identity, &handle, rows)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let identity = client_of(&request, "closing a prepared statement")?;
        Ok(self
            .prepared
            .close(&identity, &query.prepared_statement_handle)?)
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        client_of(&request, "listing catalogs")?;
        let schema = query.into_builder().schema();
        metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        _query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<BoxedStream<FlightData>>, Status> {
        client_of(&request, "listing catalogs")?;
        Ok(batch_stream(metadata::catalogs(&self.catalog()?)?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        client_of(&request, "listing schemas")?;
        let schema = query.clone().into_builder().schema();
        metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<BoxedStream<FlightData>>, Status> {
        client_of(&request, "listing schemas")?;
        Ok(batch_stream(metadata::db_schemas(&self.catalog()?, query)?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        client_of(&request, "listing tables")?;
        let schema = query.clone().into_builder().schema();
        metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<BoxedStream<FlightData>>, Status> {
        client_of(&request, "listing tables")?;
        Ok(batch_stream(
            metadata::tables(&self.catalog()?, query, self.view_types).await?,
        ))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        client_of(&request, "listing table types")?;
        let schema = query.into_builder().schema();
        metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<BoxedStream<FlightData>>, Status> {
        client_of(&request, "listing table types")?;
        let mut builder = query.into_builder();
        for table_type in TABLE_TYPES {
            builder.append(table_type);
        }
        let batch = builder
            .build()
            .map_err(|e| Status::internal(format!("building the table types: {e}")))?;
        Ok(batch_stream(batch))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        client_of(&request, "reading the server's SQL information")?;
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<BoxedStream<FlightData>>, Status> {
        client_of(&request, "reading the server's SQL information")?;
        let batch = query
            .into_builder(&SQL_INFO)
            .build()
            .map_err(|e| Status::internal(format!("building the SQL information: {e}")))?;
        Ok(batch_stream(batch))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        client_of(&request, "reading the server's SQL types")?;
        let schema = query.into_builder(&XDBC_TYPES).schema();
        metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<BoxedStream<FlightData>>, Status> {
        client_of(&request, "reading the server's SQL types")?;
        let batch = query
            .into_builder(&XDBC_TYPES)
            .build()
            .map_err(|e| Status::internal(format!("building the SQL types: {e}")))?;
        Ok(batch_stream(batch))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        client_of(&request, "listing keys")?;
        metadata_info(
            query,
            &metadata::primary_keys_schema(),
            request.into_inner(),
        )
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<BoxedStream<FlightData>>, Status> {
        client_of(&request, "listing keys")?;
        Ok(batches_stream(metadata::primary_keys_schema(), Vec::new()))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        client_of(&request, "listing keys")?;
        metadata_info(
            query,
            &metadata::foreign_keys_schema(),
            request.into_inner(),
        )
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<BoxedStream<FlightData>>, Status> {
        client_of(&request, "listing keys")?;
        Ok(batches_stream(metadata::foreign_keys_schema(), Vec::new()))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        client_of(&request, "listing keys")?;
        metadata_info(
            query,
            &metadata::foreign_keys_schema(),
            request.into_inner(),
        )
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<BoxedStream<FlightData>>, Status> {
        client_of(&request, "listing keys")?;
        Ok(batches_stream(metadata::foreign_keys_schema(), Vec::new()))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        client_of(&request, "listing keys")?;
        metadata_info(
            query,
            &metadata::foreign_keys_schema(),
            request.into_inner(),
        )
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<BoxedStream<FlightData>>, Status> {
        client_of(&request, "listing keys")?;
        Ok(batches_stream(metadata::foreign_keys_schema(), Vec::new()))
    }

    /// `CancelFlightInfo`. A query's `FlightInfo` comes when its job has
    /// ended, so cancelling it drops its results (their shuffle data is
    /// deleted) rather than stopping work; a client that wants to stop a
    /// running query drops its `GetFlightInfo` call. Any other action is
    /// refused, naming it.
    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<BoxedStream<arrow_flight::Result>>, Status> {
        if request.get_ref().r#type != CANCEL_FLIGHT_INFO {
            return Err(BallistaError::NotSupported(format!(
                "unknown action {:?}: the actions served are those of Flight SQL and {CANCEL_FLIGHT_INFO}",
                crate::util::loggable(&request.get_ref().r#type)
            ))
            .into());
        }
        let identity = client_of(&request, "cancelling a query")?;
        let cancel =
            CancelFlightInfoRequest::decode(request.get_ref().body.as_ref()).map_err(|e| {
                BallistaError::InvalidInput(format!(
                    "the CancelFlightInfo request cannot be decoded: {e}"
                ))
            })?;
        let info = cancel.info.ok_or_else(|| {
            BallistaError::InvalidInput("the CancelFlightInfo request holds no FlightInfo".into())
        })?;
        let mut jobs = Vec::new();
        for endpoint in &info.endpoint {
            let Some(ticket) = &endpoint.ticket else {
                continue;
            };
            if let Some(job_id) = statements::job_of_ticket(&ticket.ticket)?
                && !jobs.contains(&job_id)
            {
                jobs.push(job_id);
            }
        }
        // Every job must be the caller's before any is touched.
        for job_id in &jobs {
            self.inner.check_owner(&identity, job_id, "cancel it")?;
        }
        let status = if jobs.is_empty() {
            // No job behind it: nothing to cancel.
            CancelStatus::NotCancellable
        } else {
            for job_id in &jobs {
                self.inner.cancel_for(&identity, job_id)?;
            }
            CancelStatus::Cancelled
        };
        let answer = arrow_flight::Result {
            body: CancelFlightInfoResult::new(status).encode_to_vec().into(),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(answer)]))))
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        Some(vec![Ok(ActionType {
            r#type: CANCEL_FLIGHT_INFO.into(),
            description: "Cancel a query: drops the results of the query the FlightInfo describes"
                .into(),
        })])
    }

    /// The SQL information is fixed ([`SQL_INFO`]).
    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
