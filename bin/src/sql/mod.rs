//! Running SQL text: several statements, in order, in one session.

use std::io::Write;
use std::time::Instant;

use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::sqlparser::dialect::GenericDialect;

use crate::output::{OutputFormat, write_result};

/// How statements are reported.
pub struct SqlRunOptions {
    /// Format of results on stdout.
    pub format: OutputFormat,
    /// Print timings and row counts to stderr.
    pub timings: bool,
}

/// Splits SQL text into statements (a syntax error anywhere fails the whole text).
pub fn split_statements(
    sql: &str,
) -> Result<Vec<datafusion::sql::parser::Statement>, DataFusionError> {
    let dialect = GenericDialect {};
    let mut parser = DFParserBuilder::new(sql).with_dialect(&dialect).build()?;
    Ok(parser.parse_statements()?.into_iter().collect())
}

/// Runs every statement of `sql` in order, printing each result that has
/// rows to `out`. Stops at the first failing statement.
pub async fn run_sql(
    ctx: &SessionContext,
    sql: &str,
    out: &mut dyn Write,
    options: &SqlRunOptions,
) -> Result<(), DataFusionError> {
    for statement in split_statements(sql)? {
        let started = Instant::now();
        let state = ctx.state();
        let plan = state.statement_to_plan(statement).await?;
        let prints_rows = !matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Statement(_));
        let df = ctx.execute_logical_plan(plan).await?;
        let schema = df.schema().inner().clone();
        let batches = df.collect().await?;
        if prints_rows {
            write_result(out, options.format, &schema, &batches)
                .map_err(DataFusionError::Execution)?;
            out.flush()
                .map_err(|e| DataFusionError::Execution(format!("writing results: {e}")))?;
        }
        if options.timings {
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            if prints_rows {
                eprintln!("{rows} row(s) in {:.3}s", started.elapsed().as_secs_f64());
            } else {
                eprintln!("OK in {:.3}s", started.elapsed().as_secs_f64());
            }
        }
    }
    Ok(())
}

pub mod shell;
