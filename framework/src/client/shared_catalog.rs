//! The scheduler's shared catalog as a client session sees it.
//!
//! The scheduler keeps the tables, views and schemas clients create with
//! SQL (see the `catalog` module of the scheduler side). A session gets a
//! copy when it connects, and a fresh one when the catalog has changed and
//! the session runs a statement through [`execute_shared`] (which the CLI
//! does for every statement) or calls
//! [`refresh_catalog`](super::SessionContextExt::refresh_catalog). Each table
//! or view arrives as a scan the session plans against without reading its
//! storage; the cluster reads it under the user's own grants.
//!
//! The session's own tables (`register_parquet`, `CREATE TEMPORARY …`) are
//! never sent, and win over a catalog entry of the same name in this
//! session.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::catalog::memory::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::dataframe::DataFrame;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::SessionContext;

use super::SchedulerClient;
use crate::error::{BallistaError, Result};
use crate::plan::decode_table_scan;

/// DataFusion's default catalog and schema, which names resolve against.
const CATALOG: &str = "datafusion";
const SCHEMA: &str = "public";

/// A session's link to its scheduler's shared catalog, kept in the
/// session's configuration (an extension), so that every clone of the
/// session's state finds it.
#[derive(Debug)]
pub(crate) struct CatalogLink {
    scheduler: SchedulerClient,
    held: tokio::sync::Mutex<HeldCatalog>,
    /// Full names of the tables the scheduler's configuration declares.
    declared: Vec<String>,
}

/// What the session holds of the catalog.
#[derive(Debug, Default)]
struct HeldCatalog {
    /// The catalog's version this copy is of (0: none yet).
    version: u64,
    /// Tables and views registered from the catalog, by full name.
    tables: Vec<(String, Arc<dyn TableProvider>)>,
}

fn full_name(name: &TableReference) -> String {
    let resolved = name.clone().resolve(CATALOG, SCHEMA);
    TableReference::full(resolved.catalog, resolved.schema, resolved.table).to_string()
}

impl CatalogLink {
    /// A link through `scheduler`, whose configuration declares the
    /// tables named `declared`.
    pub(crate) fn new(scheduler: SchedulerClient, declared: &[String]) -> Self {
        Self {
            scheduler,
            held: tokio::sync::Mutex::new(HeldCatalog::default()),
            declared: declared
                .iter()
                .map(|name| full_name(&TableReference::bare(name.as_str())))
                .collect(),
        }
    }

    /// A table of this session only that `plan` reads, if any: the
    /// scheduler, which keeps a shared view, does not have it.
    async fn session_table_read_by(
        &self,
        ctx: &SessionContext,
        plan: &LogicalPlan,
    ) -> Option<TableReference> {
        let mut scanned = Vec::new();
        let _ = plan.apply_with_subqueries(|node| {
            match node {
                LogicalPlan::TableScan(scan) => scanned.push(scan.table_name.clone()),
                // A view read by the plan is in it already, under its name.
                LogicalPlan::SubqueryAlias(alias) => scanned.push(alias.alias.clone()),
                _ => {}
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        });
        for name in scanned {
            // Table functions and the like are not tables of the session.
            if name.schema() == Some("information_schema")
                || !ctx.table_exist(name.clone()).unwrap_or(false)
                || self.declared.contains(&full_name(&name))
                || self.holds(ctx, &name).await
            {
                continue;
            }
            return Some(name);
        }
        None
    }

    /// Brings `ctx`'s copy of the catalog up to date.
    pub(crate) async fn refresh(&self, ctx: &SessionContext) -> Result<()> {
        let mut held = self.held.lock().await;
        let answer = self.scheduler.catalog(held.version).await?;
        if answer.unchanged {
            return Ok(());
        }
        // What came from the older copy goes, unless the session has put a
        // table of its own under that name since.
        for (name, provider) in std::mem::take(&mut held.tables) {
            let reference = TableReference::parse_str(&name);
            if let Ok(current) = ctx.table_provider(reference.clone()).await
                && Arc::ptr_eq(&current, &provider)
            {
                ctx.deregister_table(reference)?;
            }
        }
        for entry in answer.entries {
            match entry.kind.as_str() {
                "schema" => {
                    if let Some(catalog) = ctx.catalog(CATALOG)
                        && catalog.schema(&entry.name).is_none()
                    {
                        catalog
                            .register_schema(&entry.name, Arc::new(MemorySchemaProvider::new()))?;
                    }
                }
                "table" | "view" => {
                    // An entry whose storage is away now has no scan.
                    if entry.scan.is_empty() {
                        continue;
                    }
                    let reference = TableReference::parse_str(&entry.name);
                    if ctx.table_exist(reference.clone()).unwrap_or(false) {
                        tracing::debug!(
                            "catalog: this session's own {} hides the catalog's",
                            entry.name
                        );
                        continue;
                    }
                    let definition = Some(entry.definition).filter(|d| !d.is_empty());
                    let registered = decode_table_scan(&entry.scan, definition, &ctx.task_ctx())
                        .and_then(|provider| {
                            ctx.register_table(reference, Arc::clone(&provider))?;
                            Ok(provider)
                        });
                    match registered {
                        Ok(provider) => held
                            .tables
                            .push((full_name(&TableReference::parse_str(&entry.name)), provider)),
                        Err(e) => tracing::warn!(
                            "catalog: {} {} is left out of this session: {e}",
                            entry.kind,
                            entry.name
                        ),
                    }
                }
                other => tracing::warn!(
                    "catalog: entry {} of unknown kind {other:?} left out",
                    entry.name
                ),
            }
        }
        held.version = answer.version;
        Ok(())
    }

    /// Whether `name` is a table or view this session has from the
    /// catalog (rather than one of its own).
    async fn holds(&self, ctx: &SessionContext, name: &TableReference) -> bool {
        let full = full_name(name);
        let held = self.held.lock().await;
        let Some((_, provider)) = held.tables.iter().find(|(n, _)| *n == full) else {
            return false;
        };
        ctx.table_provider(name.clone())
            .await
            .is_ok_and(|current| Arc::ptr_eq(&current, provider))
    }
}

/// The link of `ctx`, when it is a session of a cluster.
pub(crate) fn link_of(ctx: &SessionContext) -> Option<Arc<CatalogLink>> {
    ctx.state().config().get_extension::<CatalogLink>()
}

/// Where a statement goes.
enum Route {
    /// To the scheduler's shared catalog.
    Catalog,
    /// Into this session only.
    Session(LogicalPlan),
}

async fn route(ctx: &SessionContext, link: &CatalogLink, plan: LogicalPlan) -> Route {
    let LogicalPlan::Ddl(ddl) = plan else {
        return Route::Session(plan);
    };
    match ddl {
        // DataFusion keeps no temporary tables apart from the others; here
        // TEMPORARY means "this session only".
        DdlStatement::CreateExternalTable(mut create) if create.temporary => {
            create.temporary = false;
            Route::Session(LogicalPlan::Ddl(DdlStatement::CreateExternalTable(create)))
        }
        DdlStatement::CreateView(mut view) if view.temporary => {
            view.temporary = false;
            Route::Session(LogicalPlan::Ddl(DdlStatement::CreateView(view)))
        }
        // A view over a table of the session only (`CREATE TABLE … AS`, a
        // temporary table) cannot be shared: it stays in the session, as
        // in DataFusion.
        DdlStatement::CreateView(view) => {
            match link.session_table_read_by(ctx, &view.input).await {
                Some(own) => {
                    tracing::warn!(
                        "view {} reads {own}, a table of this session only: the view is kept \
                         in this session, not in the cluster's shared catalog",
                        view.name
                    );
                    Route::Session(LogicalPlan::Ddl(DdlStatement::CreateView(view)))
                }
                None => Route::Catalog,
            }
        }
        DdlStatement::CreateExternalTable(_) | DdlStatement::CreateCatalogSchema(_) => {
            Route::Catalog
        }
        DdlStatement::DropTable(drop) => {
            drop_route(ctx, link, LogicalPlan::Ddl(DdlStatement::DropTable(drop))).await
        }
        DdlStatement::DropView(drop) => {
            drop_route(ctx, link, LogicalPlan::Ddl(DdlStatement::DropView(drop))).await
        }
        other => Route::Session(LogicalPlan::Ddl(other)),
    }
}

/// A table or view of the session's own is dropped here; any other name
/// is the catalog's business (which says when it has no such entry).
async fn drop_route(ctx: &SessionContext, link: &CatalogLink, plan: LogicalPlan) -> Route {
    let name = match &plan {
        LogicalPlan::Ddl(DdlStatement::DropTable(drop)) => drop.name.clone(),
        LogicalPlan::Ddl(DdlStatement::DropView(drop)) => drop.name.clone(),
        _ => return Route::Session(plan),
    };
    let exists_here = ctx.table_exist(name.clone()).unwrap_or(false);
    if exists_here && !link.holds(ctx, &name).await {
        Route::Session(plan)
    } else {
        Route::Catalog
    }
}

/// Runs `plan`, written as `sql`, in `ctx`, as the cluster's clients do:
/// `CREATE EXTERNAL TABLE`, `CREATE VIEW`, `CREATE SCHEMA` and `DROP
/// TABLE|VIEW` go to the scheduler's shared catalog (seen by every client,
/// kept across restarts); `CREATE EXTERNAL TEMPORARY TABLE`, `CREATE
/// TEMPORARY VIEW`, and dropping a
/// table of the session's own, stay in this session; anything else runs
/// as [`SessionContext::execute_logical_plan`] runs it. A session that is
/// not a cluster's runs everything itself.
pub async fn execute_shared(
    ctx: &SessionContext,
    plan: LogicalPlan,
    sql: &str,
) -> DFResult<DataFrame> {
    let Some(link) = link_of(ctx) else {
        return ctx.execute_logical_plan(plan).await;
    };
    link.refresh(ctx).await?;
    let relative = relative_locations(&plan);
    match route(ctx, &link, plan).await {
        Route::Session(plan) => ctx.execute_logical_plan(plan).await,
        Route::Catalog => {
            let sql = with_absolute_locations(sql, &relative)?;
            let description = link.scheduler.change_catalog(&sql).await?;
            tracing::debug!("catalog: {description}");
            link.refresh(ctx).await?;
            Ok(DataFrame::new(
                ctx.state(),
                LogicalPlanBuilder::empty(false).build()?,
            ))
        }
    }
}

/// The local paths of a `CREATE EXTERNAL TABLE` that are relative: the
/// scheduler, which reads them, may run in another folder than this
/// client, so they are made absolute here, where the user wrote them.
fn relative_locations(plan: &LogicalPlan) -> Vec<String> {
    let LogicalPlan::Ddl(DdlStatement::CreateExternalTable(create)) = plan else {
        return Vec::new();
    };
    create
        .locations
        .iter()
        .filter(|l| !l.contains("://") && !std::path::Path::new(l.as_str()).is_absolute())
        .cloned()
        .collect()
}

/// `sql` with each of `relative` (locations as written) made absolute
/// against this process's folder, as DataFusion would resolve them here.
fn with_absolute_locations(sql: &str, relative: &[String]) -> Result<String> {
    let mut sql = sql.to_string();
    for location in relative {
        // The text itself, so that a glob (`data/2024-*.csv`) stays whole.
        let absolute = std::path::absolute(location)
            .map_err(|e| BallistaError::InvalidInput(format!("invalid location {location}: {e}")))?
            .display()
            .to_string();
        let absolute = if location.ends_with('/') && !absolute.ends_with('/') {
            format!("{absolute}/")
        } else {
            absolute
        };
        let written = format!("'{}'", location.replace('\'', "''"));
        let after_keyword = sql.to_ascii_uppercase().find("LOCATION").unwrap_or(0);
        let Some(at) = sql[after_keyword..]
            .find(&written)
            .map(|i| i + after_keyword)
        else {
            return Err(BallistaError::InvalidInput(format!(
                "location {location}: write it as an absolute path (the scheduler reads it, \
                 maybe from another folder)"
            )));
        };
        sql.replace_range(
            at..at + written.len(),
            &format!("'{}'", absolute.replace('\'', "''")),
        );
    }
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_locations_become_absolute_where_written() {
        let cwd = std::env::current_dir().unwrap().display().to_string();
        let sql = "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION 'data/t.csv' OPTIONS ('x' 'data/t.csv')";
        let out = with_absolute_locations(sql, &["data/t.csv".to_string()]).unwrap();
        assert_eq!(
            out,
            format!(
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{cwd}/data/t.csv' OPTIONS ('x' 'data/t.csv')"
            )
        );
        let out = with_absolute_locations(
            "create external table t stored as parquet location 'd/'",
            &["d/".to_string()],
        )
        .unwrap();
        assert!(out.ends_with(&format!("location '{cwd}/d/'")), "{out}");
        // A glob stays whole.
        let out = with_absolute_locations(
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION 'data/2024-*.csv'",
            &["data/2024-*.csv".to_string()],
        )
        .unwrap();
        assert!(out.ends_with(&format!("'{cwd}/data/2024-*.csv'")), "{out}");
    }

    #[tokio::test]
    async fn a_view_too_large_to_hand_out_is_refused_quickly() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE VIEW v0 AS SELECT 1 AS a").await.unwrap();
        for n in 1..=16 {
            let p = n - 1;
            ctx.sql(&format!(
                "CREATE VIEW v{n} AS SELECT * FROM v{p} UNION ALL SELECT * FROM v{p}"
            ))
            .await
            .unwrap();
        }
        let small = ctx.table_provider("v3").await.unwrap();
        assert!(crate::plan::encode_table_scan(&"v3".into(), small, 20_000).is_ok());
        // 2^16 copies of v0 once written out: refused after counting 20,000.
        let bomb = ctx.table_provider("v16").await.unwrap();
        let error = crate::plan::encode_table_scan(&"v16".into(), bomb, 20_000).unwrap_err();
        assert!(
            error.to_string().contains("more than 20000 nodes"),
            "{error}"
        );
    }
}
