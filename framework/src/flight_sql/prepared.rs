//! Prepared statements of Flight SQL clients (the JDBC driver prepares
//! every statement; ADBC prepares those with parameters): kept by the
//! scheduler per handle, for the user who created them, until closed.
//!
//! A statement is planned when prepared, to describe its result and its
//! parameters (`$1`, `$2`, …, in order), and planned again when executed,
//! with the bound values in place of the parameters, so that it sees the
//! tables as they are then.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use parking_lot::Mutex;

use crate::error::{BallistaError, Result};
use crate::plugin::auth::Identity;

/// Most statements kept prepared at once, over all users.
const MAX_PREPARED: usize = 10_000;

/// Most statements one user keeps prepared at once.
const MAX_PREPARED_PER_USER: usize = 1_000;

/// A statement unused for this long is closed (a client that crashed never
/// closes its statements).
const IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

/// Most rows of parameters one execution takes (each row of an update is
/// a job of its own).
const MAX_PARAMETER_ROWS: usize = 10_000;

/// Longest SQL text a statement may have.
pub(crate) const MAX_SQL_BYTES: usize = 1 << 20;

#[derive(Debug)]
struct Prepared {
    owner: String,
    sql: String,
    /// How many parameters the statement has (`$1` … `$n`).
    parameter_count: usize,
    /// The rows of values bound last.
    parameters: Option<Vec<Vec<ScalarValue>>>,
    last_used: std::time::Instant,
}

/// A prepared statement as it is run.
#[derive(Debug)]
pub(crate) struct Statement {
    pub sql: String,
    pub parameter_count: usize,
    /// Rows of values: one per execution (several for an update, as
    /// `executemany` sends them).
    pub parameters: Vec<Vec<ScalarValue>>,
}

/// The prepared statements of a scheduler.
#[derive(Debug, Default)]
pub(crate) struct PreparedStatements {
    statements: Mutex<HashMap<String, Prepared>>,
}

/// What a prepared statement gives back: its result's schema and its
/// parameters' (fields named `$1`, `$2`, … in order).
#[derive(Debug)]
pub(crate) struct Description {
    pub dataset: SchemaRef,
    pub parameters: SchemaRef,
}

fn unknown(handle: &[u8]) -> BallistaError {
    BallistaError::NotFound(format!(
        "no prepared statement {} (it was closed, or prepared by another user or before the scheduler restarted)",
        crate::util::loggable(&String::from_utf8_lossy(handle))
    ))
}

impl PreparedStatements {
    /// Keeps `sql`, described as `description`, for `owner`; its handle.
    pub(crate) fn create(
        &self,
        owner: &Identity,
        sql: &str,
        description: &Description,
    ) -> Result<String> {
        let mut statements = self.statements.lock();
        let now = std::time::Instant::now();
        statements.retain(|_, p| now.duration_since(p.last_used) < IDLE_FOR);
        let own = statements
            .values()
            .filter(|p| p.owner == owner.user)
            .count();
        if own >= MAX_PREPARED_PER_USER {
            return Err(BallistaError::ResourcesExhausted(format!(
                "user {} holds {MAX_PREPARED_PER_USER} prepared statements; close some first \
                 (statements unused for {} minutes are closed)",
                owner.user,
                IDLE_FOR.as_secs() / 60
            )));
        }
        if statements.len() >= MAX_PREPARED {
            return Err(BallistaError::ResourcesExhausted(format!(
                "the scheduler holds {MAX_PREPARED} prepared statements; close some first"
            )));
        }
        let handle = uuid::Uuid::new_v4().simple().to_string();
        statements.insert(
            handle.clone(),
            Prepared {
                owner: owner.user.clone(),
                sql: sql.to_string(),
                parameter_count: description.parameters.fields().len(),
                parameters: None,
                last_used: now,
            },
        );
        Ok(handle)
    }

    /// The statement `handle` with its bound parameters, if `caller`
    /// prepared it.
    pub(crate) fn get(&self, caller: &Identity, handle: &[u8]) -> Result<Statement> {
        let mut statements = self.statements.lock();
        let key = std::str::from_utf8(handle).map_err(|_| unknown(handle))?;
        match statements.get_mut(key) {
            Some(p) if p.owner == caller.user => Ok(Statement {
                sql: p.sql.clone(),
                parameter_count: p.parameter_count,
                parameters: {
                    p.last_used = std::time::Instant::now();
                    p.parameters.clone().unwrap_or_default()
                },
            }),
            _ => Err(unknown(handle)),
        }
    }

    /// Binds rows of `parameters` to `handle`.
    pub(crate) fn bind(
        &self,
        caller: &Identity,
        handle: &[u8],
        parameters: Vec<Vec<ScalarValue>>,
    ) -> Result<()> {
        let mut statements = self.statements.lock();
        let key = std::str::from_utf8(handle).map_err(|_| unknown(handle))?;
        match statements.get_mut(key) {
            Some(p) if p.owner == caller.user => {
                p.parameters = Some(parameters);
                Ok(())
            }
            _ => Err(unknown(handle)),
        }
    }

    /// Forgets `handle`.
    pub(crate) fn close(&self, caller: &Identity, handle: &[u8]) -> Result<()> {
        let mut statements = self.statements.lock();
        let key = std::str::from_utf8(handle).map_err(|_| unknown(handle))?;
        match statements.get(key) {
            Some(p) if p.owner == caller.user => {
                statements.remove(key);
                Ok(())
            }
            _ => Err(unknown(handle)),
        }
    }
}

/// Parameter names in order (`$1`, `$2`, …), refusing named ones.
fn ordered_parameters(plan: &LogicalPlan) -> Result<Vec<(usize, Option<DataType>)>> {
    let mut parameters = Vec::new();
    for (name, data_type) in plan.get_parameter_types()? {
        let position = name
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                BallistaError::NotSupported(format!(
                    "parameter {name}: Flight SQL binds parameters by position: use $1, $2, …"
                ))
            })?;
        parameters.push((position, data_type));
    }
    parameters.sort_by_key(|(position, _)| *position);
    if let Some(gap) = parameters
        .iter()
        .enumerate()
        .find(|(i, (position, _))| *position != i + 1)
    {
        return Err(BallistaError::InvalidInput(format!(
            "the statement uses parameter ${} but not ${}",
            gap.1.0,
            gap.0 + 1
        )));
    }
    Ok(parameters)
}

/// Plans `sql` against `ctx` to describe its result and parameters.
/// Statements that are not queries (DDL, `INSERT`, `COPY`) have an empty
/// result schema, which tells JDBC drivers to run them as updates.
pub(crate) async fn describe(ctx: &SessionContext, sql: &str) -> Result<Description> {
    let plan = ctx.state().create_logical_plan(sql).await?;
    let parameters = ordered_parameters(&plan)?
        .into_iter()
        .map(|(position, data_type)| {
            Field::new(
                format!("${position}"),
                data_type.unwrap_or(DataType::Utf8),
                true,
            )
        })
        .collect::<Vec<_>>();
    let dataset = match &plan {
        LogicalPlan::Ddl(_)
        | LogicalPlan::Statement(_)
        | LogicalPlan::Dml(_)
        | LogicalPlan::Copy(_) => Arc::new(Schema::empty()),
        _ => Arc::new(plan.schema().as_arrow().clone()),
    };
    Ok(Description {
        dataset,
        parameters: Arc::new(Schema::new(parameters)),
    })
}

/// The rows of parameters sent by a client, each by position.
pub(crate) fn parameter_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<ScalarValue>>> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows > MAX_PARAMETER_ROWS {
        return Err(BallistaError::InvalidInput(format!(
            "{rows} rows of parameters were sent; the limit is {MAX_PARAMETER_ROWS} per execution"
        )));
    }
    let mut out = Vec::with_capacity(rows);
    for batch in batches {
        for row in 0..batch.num_rows() {
            out.push(
                batch
                    .columns()
                    .iter()
                    .map(|column| Ok(ScalarValue::try_from_array(column, row)?))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
    }
    Ok(out)
}

/// The one row of values a query runs with (none for a statement without
/// parameters).
pub(crate) fn query_parameters(rows: Vec<Vec<ScalarValue>>) -> Result<Vec<ScalarValue>> {
    let count = rows.len();
    let mut rows = rows.into_iter();
    match (rows.next(), count) {
        (None, _) => Ok(Vec::new()),
        (Some(row), 1) => Ok(row),
        _ => Err(BallistaError::NotSupported(format!(
            "{count} rows of parameters were bound: a query runs with one row of parameters \
             (several rows are for updates, such as an INSERT run with executemany)"
        ))),
    }
}

/// Refuses to run a statement of `expected` parameters with `bound` values.
pub(crate) fn check_parameter_count(expected: usize, bound: usize) -> Result<()> {
    if expected != bound {
        return Err(BallistaError::InvalidInput(format!(
            "the statement has {expected} parameter(s) and {bound} value(s) were bound{}",
            if bound == 0 {
                " (bind one row of values before executing it)"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// `sql` planned against `ctx` with `values` in place of its parameters,
/// each cast to the type the statement expects there.
pub(crate) async fn bound_plan(
    ctx: &SessionContext,
    sql: &str,
    values: Vec<ScalarValue>,
) -> Result<LogicalPlan> {
    let plan = ctx.state().create_logical_plan(sql).await?;
    let parameters = ordered_parameters(&plan)?;
    check_parameter_count(parameters.len(), values.len())?;
    if parameters.is_empty() {
        return Ok(plan);
    }
    let values = parameters
        .iter()
        .zip(values)
        .map(|((position, data_type), value)| match data_type {
            Some(data_type) if value.data_type() != *data_type => {
                value.cast_to(data_type).map_err(|e| {
                    BallistaError::InvalidInput(format!(
                        "parameter ${position}: cannot use {} as {data_type}: {e}",
                        value.data_type()
                    ))
                })
            }
            _ => Ok(value),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(plan.with_param_values(values)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    #[tokio::test]
    async fn parameters_are_described_in_order_and_bound_with_casts() {
        let ctx = SessionContext::new();
        let sql = "SELECT $2 + 1 AS a, $1 AS b";
        let description = describe(&ctx, sql).await.unwrap();
        let names: Vec<&str> = description
            .parameters
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["$1", "$2"]);
        let err = bound_plan(&ctx, sql, vec![ScalarValue::Int64(Some(1))])
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("2 parameter(s) and 1 value(s)"),
            "{err}"
        );
        let err = describe(&ctx, "SELECT $1, $3").await.unwrap_err();
        assert!(
            err.to_string().contains("uses parameter $3 but not $2"),
            "{err}"
        );
        let err = describe(&ctx, "SELECT $name").await.unwrap_err();
        assert!(err.to_string().contains("use $1, $2"), "{err}");
    }

    #[test]
    fn one_row_of_parameters_at_a_time() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("0", DataType::Int64, true),
            Field::new("1", DataType::Utf8, true),
        ]));
        let one = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![7])),
                Arc::new(StringArray::from(vec!["x"])),
            ],
        )
        .unwrap();
        let row = vec![
            ScalarValue::Int64(Some(7)),
            ScalarValue::Utf8(Some("x".into())),
        ];
        let rows = parameter_rows(std::slice::from_ref(&one)).unwrap();
        assert_eq!(rows, vec![row.clone()]);
        assert_eq!(query_parameters(rows).unwrap(), row);
        let rows = parameter_rows(&[one.clone(), one]).unwrap();
        assert_eq!(rows.len(), 2);
        let err = query_parameters(rows).unwrap_err();
        assert!(err.to_string().contains("2 rows of parameters"), "{err}");
    }
}
