//! The catalog the scheduler keeps for its clients: tables, views and
//! schemas created with SQL (`CREATE EXTERNAL TABLE`, `CREATE VIEW`,
//! `CREATE SCHEMA`, `DROP TABLE|VIEW`) by any client of the Flight SQL
//! service, seen by every client next to the tables the configuration
//! declares, and kept across restarts in a file ([`store`]).
//!
//! An entry is kept as the statement that made it, with its owner: on
//! start-up the statements are run again, in order, to rebuild the tables
//! (reading their schemas) and views. A statement that no longer runs (its
//! files are gone) is logged and kept, so that nothing is lost while its
//! storage is away. After each change the views are made again over the
//! tables as they are then, and the tables that did not run are tried
//! again.
//!
//! Who may do what: creating a table needs a read grant on its location
//! (tables in the catalog are read under each reader's own grants, unlike
//! declared tables, which everyone may read); replacing or dropping an entry
//! is for its owner or an admin; declared tables cannot be replaced or
//! dropped.

mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::catalog::TableProvider;
use datafusion::catalog::memory::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;
use parking_lot::RwLock;

pub(crate) use store::CatalogStore;
use store::{EntryKind, StoredEntry};

use crate::error::{BallistaError, Result};
use crate::plugin::auth::Identity;

/// DataFusion's default catalog and schema, which names resolve against.
const CATALOG: &str = "datafusion";
const SCHEMA: &str = "public";

struct Entry {
    stored: StoredEntry,
    /// `None` while the statement does not run (its storage is away).
    provider: Option<Arc<dyn TableProvider>>,
}

/// The scheduler's shared catalog.
pub(crate) struct SharedCatalog {
    entries: RwLock<Vec<Entry>>,
    store: CatalogStore,
    /// Changes one at a time, each persisted before the next.
    changing: tokio::sync::Mutex<()>,
    /// What clients hold a copy of: starts anywhere (so that a restarted
    /// scheduler does not repeat an earlier one's number) and moves with
    /// every change.
    version: AtomicU64,
}

impl std::fmt::Debug for SharedCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCatalog")
            .field("store", &self.store)
            .field("entries", &self.entries.read().len())
            .finish()
    }
}

/// A statement the scheduler answered from its catalog, without a job.
#[derive(Debug)]
pub(crate) enum CatalogAnswer {
    /// A DDL statement changed the catalog.
    Changed(CatalogChange),
    /// A query of `information_schema` (`SHOW TABLES`, …): its rows.
    Rows {
        /// Their schema.
        schema: arrow::datatypes::SchemaRef,
        /// The rows.
        batches: Vec<arrow::array::RecordBatch>,
    },
}

/// Most plan nodes (views read by a view counted whole) of an entry handed
/// to clients.
const MAX_ENTRY_PLAN_NODES: usize = 20_000;

/// Most bytes of scans handed to a client at once.
const MAX_CATALOG_BYTES: usize = 64 << 20;

/// What the scheduler lends the catalog for a change.
pub(crate) struct CatalogRules<'a> {
    /// Whether a full name (`datafusion.public.t`) is a table the
    /// configuration declares.
    pub is_declared: &'a (dyn Fn(&str) -> bool + Send + Sync),
    /// Refuses a table location the user may not read.
    pub check_read: &'a (dyn Fn(&url::Url) -> Result<()> + Send + Sync),
    /// A session holding the declared tables only, in which the catalog's
    /// views are made again after a change.
    pub fresh_context: &'a (dyn Fn() -> Result<SessionContext> + Send + Sync),
}

/// What a catalog statement did, for its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CatalogChange {
    /// Such as `created table datafusion.public.t`.
    pub description: String,
}

fn full_name(name: &TableReference) -> Result<String> {
    let resolved = name.clone().resolve(CATALOG, SCHEMA);
    if resolved.catalog.as_ref() != CATALOG {
        return Err(BallistaError::NotSupported(format!(
            "{name}: the catalog holds tables in catalog '{CATALOG}' only"
        )));
    }
    // Quoted where needed, so that `TableReference::parse_str` gives back
    // the same parts (case and dots included).
    Ok(TableReference::full(resolved.catalog, resolved.schema, resolved.table).to_quoted_string())
}

fn schema_name(name: &str) -> Result<String> {
    match name.split_once('.') {
        None => Ok(name.to_string()),
        Some((catalog, schema)) if catalog == CATALOG => Ok(schema.to_string()),
        Some(_) => Err(BallistaError::NotSupported(format!(
            "schema {name}: the catalog holds schemas of catalog '{CATALOG}' only"
        ))),
    }
}

impl SharedCatalog {
    /// The catalog kept in `store`, its statements run again in contexts
    /// from `context` (which holds the declared tables).
    pub(crate) async fn open(
        store: CatalogStore,
        context: &(dyn Fn() -> Result<SessionContext> + Send + Sync),
    ) -> Result<Self> {
        let stored = store.load().await?;
        let catalog = Self {
            entries: RwLock::new(Vec::new()),
            store,
            changing: tokio::sync::Mutex::new(()),
            version: AtomicU64::new((uuid::Uuid::new_v4().as_u128() as u64).max(1)),
        };
        for entry in stored {
            let ctx = context()?;
            catalog.register_into(&ctx)?;
            let provider = match replay(&ctx, &entry).await {
                Ok(provider) => provider,
                Err(e) => {
                    tracing::warn!(
                        "catalog: {} {} (owner {}) does not run now, kept for later: {e}",
                        entry.kind.name(),
                        entry.name,
                        entry.owner
                    );
                    None
                }
            };
            catalog.entries.write().push(Entry {
                stored: entry,
                provider,
            });
        }
        // A view kept before a table it reads (dropped and made again
        // since) runs once every table is there.
        catalog.make_views_again(context).await;
        let count = catalog.entries.read().len();
        tracing::info!("catalog: {count} entr(ies) from {}", catalog.store);
        Ok(catalog)
    }

    /// Registers the catalog's schemas, tables and views in `ctx`.
    pub(crate) fn register_into(&self, ctx: &SessionContext) -> Result<()> {
        let Some(catalog) = ctx.catalog(CATALOG) else {
            return Ok(());
        };
        for entry in self.entries.read().iter() {
            match (&entry.stored.kind, &entry.provider) {
                (EntryKind::Schema, _) => {
                    if catalog.schema(&entry.stored.name).is_none() {
                        catalog.register_schema(
                            &entry.stored.name,
                            Arc::new(MemorySchemaProvider::new()),
                        )?;
                    }
                }
                (_, Some(provider)) => {
                    let name = TableReference::parse_str(&entry.stored.name);
                    if ctx.table_exist(name.clone())? {
                        continue;
                    }
                    ctx.register_table(name, Arc::clone(provider))?;
                }
                (_, None) => {}
            }
        }
        Ok(())
    }

    /// Makes every view again, in order, over the tables as they are now (a
    /// view keeps the tables it read when made: one over a replaced table
    /// would read the old one, one over a dropped table a table that is
    /// gone), and tries again the tables that did not run (their storage
    /// was away). A view that does not run now is kept, without a table,
    /// until it runs again.
    async fn make_views_again(
        &self,
        fresh_context: &(dyn Fn() -> Result<SessionContext> + Send + Sync),
    ) {
        let ctx = match fresh_context() {
            Ok(ctx) => ctx,
            Err(e) => {
                tracing::warn!("catalog: views not made again: {e}");
                return;
            }
        };
        let entries = self.snapshot();
        // Schemas, then tables, then views (in their order, as a view may
        // read one made before it): a table dropped and made again comes
        // after the views over it.
        let (views, others): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .partition(|(e, _)| e.kind == EntryKind::View);
        let (schemas, tables): (Vec<_>, Vec<_>) = others
            .into_iter()
            .partition(|(e, _)| e.kind == EntryKind::Schema);
        let mut made = Vec::with_capacity(views.len() + tables.len());
        for (stored, provider) in schemas.into_iter().chain(tables) {
            let provider = match (stored.kind, provider) {
                (EntryKind::Schema, _) => {
                    if let Err(e) = replay(&ctx, &stored).await {
                        tracing::warn!("catalog: schema {} not made again: {e}", stored.name);
                    }
                    None
                }
                (EntryKind::Table, Some(provider)) => {
                    let name = TableReference::parse_str(&stored.name);
                    if let Err(e) = ctx.register_table(name, Arc::clone(&provider)) {
                        tracing::warn!("catalog: table {}: {e}", stored.name);
                    }
                    Some(provider)
                }
                (EntryKind::Table, None) | (EntryKind::View, _) => {
                    match replay(&ctx, &stored).await {
                        Ok(provider) => provider,
                        Err(e) => {
                            tracing::info!(
                                "catalog: {} {} does not run now, kept for later: {e}",
                                stored.kind.name(),
                                stored.name
                            );
                            None
                        }
                    }
                }
            };
            made.push((stored, provider));
        }
        // A replaced view keeps its place but may now read a view made
        // after it: views are tried again while any of them gets made.
        let mut pending: Vec<StoredEntry> = views.into_iter().map(|(stored, _)| stored).collect();
        loop {
            let mut left = Vec::new();
            let before = pending.len();
            for stored in pending {
                match replay(&ctx, &stored).await {
                    Ok(provider) => made.push((stored, provider)),
                    Err(e) => left.push((stored, e)),
                }
            }
            if left.is_empty() || left.len() == before {
                for (stored, e) in left {
                    tracing::info!(
                        "catalog: view {} does not run now, kept for later: {e}",
                        stored.name
                    );
                    made.push((stored, None));
                }
                break;
            }
            pending = left.into_iter().map(|(stored, _)| stored).collect();
        }
        let mut entries = self.entries.write();
        for (stored, provider) in made {
            if stored.kind == EntryKind::Schema {
                continue;
            }
            if let Some(entry) = entries.iter_mut().find(|e| e.stored == stored) {
                entry.provider = provider;
            }
        }
    }

    /// Each entry with its table or view, as they are now.
    fn snapshot(&self) -> Vec<(StoredEntry, Option<Arc<dyn TableProvider>>)> {
        self.entries
            .read()
            .iter()
            .map(|e| (e.stored.clone(), e.provider.clone()))
            .collect()
    }

    /// The catalog's version: changes with every change.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    fn changed(&self) {
        let next = self.version.load(Ordering::SeqCst).wrapping_add(1).max(1);
        self.version.store(next, Ordering::SeqCst);
    }

    /// The entries as clients get them: each table and view as a scan
    /// they can plan against without reading its storage. A view whose
    /// plan is too large to hand out (views of views multiply), or entries
    /// past the total a client may be sent, go without their scan, logged.
    pub(crate) fn entries_for_clients(&self) -> Vec<crate::proto::CatalogEntry> {
        let mut total = 0usize;
        self.snapshot()
            .into_iter()
            .map(|(stored, provider)| {
                let scan = match provider {
                    Some(provider) => {
                        let name = TableReference::parse_str(&stored.name);
                        let encoded =
                            crate::plan::encode_table_scan(&name, provider, MAX_ENTRY_PLAN_NODES)
                                .map_err(|e| e.to_string())
                                .and_then(|bytes| {
                                    if total + bytes.len() > MAX_CATALOG_BYTES {
                                        Err(format!(
                                            "the catalog handed to clients would pass \
                                     {MAX_CATALOG_BYTES} bytes"
                                        ))
                                    } else {
                                        Ok(bytes)
                                    }
                                });
                        match encoded {
                            Ok(bytes) => {
                                total += bytes.len();
                                bytes
                            }
                            Err(e) => {
                                tracing::warn!(
                                    "catalog: {} {} is not handed to clients: {e}",
                                    stored.kind.name(),
                                    stored.name
                                );
                                Vec::new()
                            }
                        }
                    }
                    None => Vec::new(),
                };
                crate::proto::CatalogEntry {
                    kind: stored.kind.name().to_string(),
                    definition: match stored.kind {
                        EntryKind::View => stored.sql,
                        _ => String::new(),
                    },
                    name: stored.name,
                    scan,
                }
            })
            .collect()
    }

    fn position(&self, kind: EntryKind, name: &str) -> Option<usize> {
        self.entries
            .read()
            .iter()
            .position(|e| e.stored.kind == kind && e.stored.name == name)
    }

    fn check_owner(&self, index: usize, identity: &Identity, what: &str) -> Result<()> {
        let entries = self.entries.read();
        let entry = &entries[index].stored;
        if identity.admin || entry.owner == identity.user {
            return Ok(());
        }
        Err(BallistaError::PermissionDenied(format!(
            "{} {} belongs to {}; only its owner or an admin may {what} it",
            entry.kind.name(),
            entry.name,
            entry.owner
        )))
    }

    /// Carries out `plan`, a DDL statement written as `sql`, for
    /// `identity`, under `rules`: `ctx` holds every table as it is now.
    /// `None` when `plan` is not a statement the catalog keeps.
    pub(crate) async fn apply(
        &self,
        ctx: &SessionContext,
        plan: &LogicalPlan,
        sql: &str,
        identity: &Identity,
        rules: CatalogRules<'_>,
    ) -> Result<Option<CatalogChange>> {
        let CatalogRules {
            is_declared,
            check_read,
            fresh_context,
        } = rules;
        let LogicalPlan::Ddl(ddl) = plan else {
            return Ok(None);
        };
        let _one_at_a_time = self.changing.lock().await;
        let refuse_temporary = |what: &str| {
            BallistaError::NotSupported(format!(
                "CREATE TEMPORARY {what}: a Flight SQL connection has no session to keep it in; \
                 create it without TEMPORARY (it is then kept by the scheduler for every client), \
                 or in a client session (`ballista sql`, the Rust SessionContext)"
            ))
        };
        let (kind, name, replace, if_missing) = match ddl {
            DdlStatement::CreateExternalTable(create) => {
                if create.temporary {
                    return Err(refuse_temporary("TABLE"));
                }
                for location in &create.locations {
                    let url = ListingTableUrl::parse(location).map_err(|e| {
                        BallistaError::InvalidInput(format!("invalid location {location}: {e}"))
                    })?;
                    check_read(url.get_url())?;
                }
                (
                    EntryKind::Table,
                    full_name(&create.name)?,
                    create.or_replace,
                    create.if_not_exists,
                )
            }
            DdlStatement::CreateView(view) => {
                if view.temporary {
                    return Err(refuse_temporary("VIEW"));
                }
                if reads_information_schema(&view.input) {
                    return Err(BallistaError::NotSupported(
                        "a view of information_schema: the catalog's own tables are queried \
                         directly (SHOW TABLES, SELECT … FROM information_schema.tables)"
                            .into(),
                    ));
                }
                (
                    EntryKind::View,
                    full_name(&view.name)?,
                    view.or_replace,
                    false,
                )
            }
            DdlStatement::CreateCatalogSchema(schema) => (
                EntryKind::Schema,
                schema_name(&schema.schema_name)?,
                false,
                schema.if_not_exists,
            ),
            DdlStatement::DropTable(drop) => {
                return self
                    .drop_entry(
                        EntryKind::Table,
                        &drop.name,
                        drop.if_exists,
                        identity,
                        is_declared,
                        fresh_context,
                    )
                    .await;
            }
            DdlStatement::DropView(drop) => {
                return self
                    .drop_entry(
                        EntryKind::View,
                        &drop.name,
                        drop.if_exists,
                        identity,
                        is_declared,
                        fresh_context,
                    )
                    .await;
            }
            other => {
                return Err(BallistaError::NotSupported(format!(
                    "{} is not kept by the scheduler's catalog (it keeps CREATE EXTERNAL TABLE, \
                     CREATE VIEW, CREATE SCHEMA and DROP TABLE|VIEW)",
                    other.name()
                )));
            }
        };
        if kind != EntryKind::Schema && is_declared(&name) {
            return Err(BallistaError::PermissionDenied(format!(
                "{name} is declared in the scheduler's configuration (scheduler.tables) and \
                 cannot be replaced"
            )));
        }
        let existing = self
            .position(EntryKind::Table, &name)
            .or_else(|| self.position(EntryKind::View, &name))
            .or_else(|| {
                self.position(EntryKind::Schema, &name)
                    .filter(|_| kind == EntryKind::Schema)
            });
        if let Some(index) = existing {
            if if_missing {
                return Ok(Some(CatalogChange {
                    description: format!("{} {name} exists already", kind.name()),
                }));
            }
            if !replace {
                // Running the same script again is not an error: the entry
                // is what its owner asks for already.
                let same = {
                    let entries = self.entries.read();
                    let kept = &entries[index].stored;
                    kept.kind == kind
                        && kept.owner == identity.user
                        && same_statement(&kept.sql, sql)
                };
                if same {
                    return Ok(Some(CatalogChange {
                        description: format!(
                            "{} {name} exists already, as made by this statement",
                            kind.name()
                        ),
                    }));
                }
                return Err(BallistaError::InvalidInput(format!(
                    "{name} exists already (CREATE OR REPLACE replaces it)"
                )));
            }
            self.check_owner(index, identity, "replace")?;
        }
        let entry = StoredEntry {
            kind,
            name: name.clone(),
            owner: identity.user.clone(),
            sql: sql.trim().to_string(),
        };
        // Run against a context without the entry being replaced.
        let scratch = ctx;
        if let Some(index) = existing
            && kind != EntryKind::Schema
        {
            let old = TableReference::parse_str(&self.entries.read()[index].stored.name);
            scratch.deregister_table(old)?;
        }
        let provider = replay(scratch, &entry).await?;
        // A replaced entry keeps its place, so that entries made after it
        // on top of it (a view of a view) replay after it at start-up.
        let mut next: Vec<StoredEntry> = self
            .entries
            .read()
            .iter()
            .map(|e| e.stored.clone())
            .collect();
        match existing {
            Some(index) => next[index] = entry.clone(),
            None => next.push(entry.clone()),
        }
        self.store.save(&next).await?;
        {
            let mut entries = self.entries.write();
            let made = Entry {
                stored: entry,
                provider,
            };
            match existing {
                Some(index) => entries[index] = made,
                None => entries.push(made),
            }
        }
        let verb = if existing.is_some() {
            "replaced"
        } else {
            "created"
        };
        self.make_views_again(fresh_context).await;
        self.changed();
        tracing::info!("catalog: {} {verb} {} {name}", identity.user, kind.name());
        Ok(Some(CatalogChange {
            description: format!("{verb} {} {name}", kind.name()),
        }))
    }

    async fn drop_entry(
        &self,
        kind: EntryKind,
        name: &TableReference,
        if_exists: bool,
        identity: &Identity,
        is_declared: &(dyn Fn(&str) -> bool + Send + Sync),
        fresh_context: &(dyn Fn() -> Result<SessionContext> + Send + Sync),
    ) -> Result<Option<CatalogChange>> {
        let name = full_name(name)?;
        if is_declared(&name) {
            return Err(BallistaError::PermissionDenied(format!(
                "{name} is declared in the scheduler's configuration (scheduler.tables) and \
                 cannot be dropped"
            )));
        }
        let Some(index) = self.position(kind, &name) else {
            if if_exists {
                return Ok(Some(CatalogChange {
                    description: format!("no {} {name} to drop", kind.name()),
                }));
            }
            return Err(BallistaError::NotFound(format!(
                "{} {name} does not exist",
                kind.name()
            )));
        };
        self.check_owner(index, identity, "drop")?;
        let next: Vec<StoredEntry> = self
            .entries
            .read()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, e)| e.stored.clone())
            .collect();
        self.store.save(&next).await?;
        self.entries.write().remove(index);
        self.make_views_again(fresh_context).await;
        self.changed();
        tracing::info!("catalog: {} dropped {} {name}", identity.user, kind.name());
        Ok(Some(CatalogChange {
            description: format!("dropped {} {name}", kind.name()),
        }))
    }
}

/// Whether two statements are the same but for blanks and a final `;`.
fn same_statement(a: &str, b: &str) -> bool {
    let words = |s: &str| {
        s.trim()
            .trim_end_matches(';')
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    words(a) == words(b)
}

/// Whether `plan` reads only the catalog's `information_schema`.
pub(crate) fn reads_only_information_schema(plan: &LogicalPlan) -> bool {
    let mut scans = 0;
    let mut others = 0;
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) => {
                if scan.table_name.schema() == Some("information_schema") {
                    scans += 1;
                } else {
                    others += 1;
                }
            }
            // Only a query is answered here: anything that writes, changes
            // the catalog or the session goes its own way (a COPY of
            // information_schema rows still needs its write grant).
            node if !is_query_node(node) || matches!(node, LogicalPlan::Extension(_)) => {
                others += 1
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    scans > 0 && others == 0
}

/// Whether `node` is part of a query, rather than a statement that writes
/// (`INSERT`, `COPY`), changes the catalog or the session, or describes
/// (`EXPLAIN`, `DESCRIBE`).
pub(crate) fn is_query_node(node: &LogicalPlan) -> bool {
    !matches!(
        node,
        LogicalPlan::Dml(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::DescribeTable(_)
    )
}

/// Whether `plan` reads `information_schema` anywhere.
fn reads_information_schema(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan.table_name.schema() == Some("information_schema")
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Runs `entry`'s statement in `ctx`; the table or view it made.
async fn replay(
    ctx: &SessionContext,
    entry: &StoredEntry,
) -> Result<Option<Arc<dyn TableProvider>>> {
    match entry.kind {
        EntryKind::Schema => {
            ctx.sql(&entry.sql).await?;
            Ok(None)
        }
        EntryKind::Table | EntryKind::View => {
            ctx.sql(&entry.sql).await?;
            let provider = ctx
                .table_provider(TableReference::parse_str(&entry.name))
                .await?;
            Ok(Some(provider))
        }
    }
}
