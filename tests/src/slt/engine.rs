//! The `sqllogictest` database adapter over a DataFusion [`SessionContext`]:
//! single-process DataFusion, or a Ballista session whose queries run on a
//! cluster. Both go through the same code, so whatever differs in their
//! answers comes from the engine.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use datafusion::error::DataFusionError;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use sqllogictest::DBOutput;

use super::normalize::{SltColumnType, column_types, rows};

/// A failed statement, displayed as the suite's error patterns expect
/// (`DataFusion error: Error during planning: …`).
#[derive(Debug)]
pub enum SltError {
    /// The engine refused the statement.
    DataFusion(DataFusionError),
    /// The answer could not be turned into text.
    Arrow(arrow::error::ArrowError),
    /// The statement ran longer than the harness allows.
    Timeout(Duration),
}

impl fmt::Display for SltError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SltError::DataFusion(e) => write!(f, "DataFusion error: {}", e.strip_backtrace()),
            SltError::Arrow(e) => write!(f, "Arrow error: {e}"),
            SltError::Timeout(limit) => write!(f, "timed out after {}s", limit.as_secs()),
        }
    }
}

impl std::error::Error for SltError {}

impl From<DataFusionError> for SltError {
    fn from(error: DataFusionError) -> Self {
        SltError::DataFusion(error)
    }
}

/// One session running the statements of one `.slt` file.
pub struct SessionEngine {
    ctx: SessionContext,
    name: &'static str,
    statement_timeout: Duration,
}

impl SessionEngine {
    /// An adapter over `ctx`; `name` is the engine's name in reports.
    pub fn new(ctx: SessionContext, name: &'static str, statement_timeout: Duration) -> Self {
        Self {
            ctx,
            name,
            statement_timeout,
        }
    }

    async fn run_statement(&self, sql: &str) -> Result<DBOutput<SltColumnType>, SltError> {
        let frame = self.ctx.sql(sql).await?;
        let task_ctx = Arc::new(frame.task_ctx());
        let plan = frame.create_physical_plan().await?;
        let stream = execute_stream(Arc::clone(&plan), task_ctx)?;
        let types = column_types(stream.schema().fields());
        let batches: Vec<_> = stream.try_collect().await?;
        let rows = rows(&batches).map_err(SltError::Arrow)?;
        if rows.is_empty() && types.is_empty() {
            Ok(DBOutput::StatementComplete(0))
        } else {
            Ok(DBOutput::Rows { types, rows })
        }
    }
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for SessionEngine {
    type Error = SltError;
    type ColumnType = SltColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<SltColumnType>, SltError> {
        match tokio::time::timeout(self.statement_timeout, self.run_statement(sql)).await {
            Ok(result) => result,
            Err(_) => Err(SltError::Timeout(self.statement_timeout)),
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        self.name
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}
