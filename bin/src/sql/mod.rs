//! Running SQL text: several statements, in order, in one session.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use datafusion::common::config::Dialect;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::sqlparser::dialect::dialect_from_str;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::output::{OutputFormat, write_result};

/// How statements are reported.
pub struct SqlRunOptions {
    /// Format of results on stdout.
    pub format: OutputFormat,
    /// Print timings and row counts to stderr.
    pub timings: bool,
}

/// The next statement of `sql` and the text after it, parsed with the SQL
/// dialect the session uses now (a `SET datafusion.sql_parser.dialect`
/// earlier in the same text applies to what follows it). `None` when only
/// blanks, comments and semicolons are left.
pub fn next_statement<'a>(
    ctx: &SessionContext,
    sql: &'a str,
) -> Result<Option<(datafusion::sql::parser::Statement, &'a str)>, DataFusionError> {
    let state = ctx.state();
    let options = &state.config().options().sql_parser;
    let dialect = dialect_from_str(options.dialect).ok_or_else(|| {
        DataFusionError::Plan(format!(
            "Unsupported SQL dialect: {}. Available dialects: {}.",
            options.dialect,
            Dialect::available()
        ))
    })?;
    let mut parser = DFParserBuilder::new(sql)
        .with_dialect(dialect.as_ref())
        .with_recursion_limit(options.recursion_limit.get())
        .build()?;
    while parser.parser.consume_token(&Token::SemiColon) {}
    if parser.parser.peek_token().token == Token::EOF {
        return Ok(None);
    }
    let statement = parser.parse_statement()?;
    let next = parser.parser.peek_token();
    match next.token {
        Token::EOF => Ok(Some((statement, ""))),
        Token::SemiColon => {
            let offset = byte_offset(sql, next.span.start.line, next.span.start.column);
            Ok(Some((statement, &sql[(offset + 1).min(sql.len())..])))
        }
        other => Err(DataFusionError::SQL(
            Box::new(ParserError::ParserError(format!(
                "Expected: end of statement, found: {other} at {}",
                next.span.start
            ))),
            None,
        )),
    }
}

/// The byte offset of 1-based `line` and `column` (in characters) in `text`.
fn byte_offset(text: &str, line: u64, column: u64) -> usize {
    let mut offset = 0;
    for (index, content) in text.split_inclusive('\n').enumerate() {
        if index as u64 + 1 == line {
            return offset
                + content
                    .char_indices()
                    .nth(column.saturating_sub(1) as usize)
                    .map_or(content.len(), |(i, _)| i);
        }
        offset += content.len();
    }
    text.len()
}

/// Runs every statement of `sql` in order, printing each result that has
/// rows to `out`. Catalog statements (`CREATE EXTERNAL TABLE`, `CREATE
/// VIEW`, …) go to the cluster's shared catalog; `CREATE TEMPORARY …` stays
/// in the session (see [`ballista::client::execute_shared`]). Stops at the first failing statement (a statement that
/// does not parse fails when its turn comes).
pub async fn run_sql(
    ctx: &SessionContext,
    sql: &str,
    out: &mut dyn Write,
    options: &SqlRunOptions,
) -> Result<(), DataFusionError> {
    let mut rest = sql;
    while let Some((statement, after)) = next_statement(ctx, rest)? {
        let text = rest[..rest.len() - after.len()]
            .trim()
            .trim_end_matches(';');
        rest = after;
        let started = Instant::now();
        let state = ctx.state();
        let plan = state.statement_to_plan(statement).await?;
        let prints_rows = !matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Statement(_));
        let analyze = matches!(plan, LogicalPlan::Analyze(_));
        // The web UI and REST API show the job with the statement's text.
        ctx.state_ref()
            .write()
            .config_mut()
            .set_extension(Arc::new(ballista::client::QueryText(text.to_string())));
        let final_status = analyze.then(|| stage_metrics::FinalStatus::listen(ctx));
        // Catalog statements go to the cluster's shared catalog.
        let ran = async {
            let df = ballista::client::execute_shared(ctx, plan, text).await?;
            let schema = df.schema().inner().clone();
            let batches = df.collect().await?;
            Ok::<_, DataFusionError>((schema, batches))
        }
        .await;
        let status = final_status.and_then(|listening| listening.finish(ctx));
        let (schema, mut batches) = ran?;
        if let Some(status) = status
            && let Some(stages) = stage_metrics::stage_rows(&schema, &status)?
        {
            batches.push(stages);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_where_they_end() {
        let ctx = SessionContext::new();
        let text = "SELECT 1;\n-- a comment; with a semicolon\nSELECT 'a;b' ;;\n  SELECT\n 3";
        let mut rest = text;
        let mut found = Vec::new();
        while let Some((statement, after)) = next_statement(&ctx, rest).unwrap() {
            found.push(statement.to_string());
            rest = after;
        }
        assert_eq!(found, ["SELECT 1", "SELECT 'a;b'", "SELECT 3"]);
    }

    #[test]
    fn a_dialect_set_earlier_applies_to_what_follows() {
        let ctx = SessionContext::new();
        let rest = "select 2 ^ 3";
        let (generic, _) = next_statement(&ctx, rest).unwrap().unwrap();
        ctx.state_ref()
            .write()
            .config_mut()
            .options_mut()
            .set("datafusion.sql_parser.dialect", "PostgreSQL")
            .unwrap();
        let (postgres, _) = next_statement(&ctx, rest).unwrap().unwrap();
        assert_ne!(format!("{generic:?}"), format!("{postgres:?}"));
    }
}

pub mod flight_sql_client;
pub mod shell;
mod stage_metrics;
