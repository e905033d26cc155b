//! The `FILTER (WHERE …)` of window aggregates, for the plan encoder.
//!
//! DataFusion 55 keeps a window aggregate's filter private (the trait that
//! exposes it is not exported), and datafusion-proto drops it, so a plan
//! shipped as is would count every row. The scheduler plans the query itself,
//! so it knows each filter from the logical plan: after physical planning it
//! records the physical filter of every filtered window aggregate here, keyed
//! by the expression object, and the encoder reads it back (see
//! [`super::amend`]). An expression that has a filter but no record fails to
//! encode rather than run without its filter.

use std::sync::{Arc, LazyLock, Weak};

use datafusion::common::DFSchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::Result as DFResult;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_expr::window::{PlainAggregateWindowExpr, SlidingAggregateWindowExpr};
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr, WindowExpr};
use parking_lot::Mutex;

use crate::error::BallistaError;

type Record = (Weak<dyn WindowExpr>, Arc<dyn PhysicalExpr>);

static FILTERS: LazyLock<Mutex<Vec<Record>>> = LazyLock::new(Mutex::default);

/// Whether `expr` is a window aggregate with a FILTER clause.
pub(crate) fn has_filter(expr: &Arc<dyn WindowExpr>) -> bool {
    let any = expr.as_any();
    if !(any.is::<PlainAggregateWindowExpr>() || any.is::<SlidingAggregateWindowExpr>()) {
        return false;
    }
    // The filter is the last field of both types' derived `Debug`.
    !format!("{expr:?}").trim_end().ends_with("filter: None }")
}

/// The recorded filter of `expr`.
pub(crate) fn filter_of(expr: &Arc<dyn WindowExpr>) -> Option<Arc<dyn PhysicalExpr>> {
    FILTERS
        .lock()
        .iter()
        .find(|(weak, _)| {
            weak.upgrade()
                .is_some_and(|live| std::ptr::addr_eq(Arc::as_ptr(&live), Arc::as_ptr(expr)))
        })
        .map(|(_, filter)| Arc::clone(filter))
}

/// Records the filter of every filtered window aggregate of `physical`, the
/// plan DataFusion made of `logical`.
pub fn record_window_filters(
    logical: &LogicalPlan,
    physical: &Arc<dyn ExecutionPlan>,
    props: &ExecutionProps,
) -> DFResult<()> {
    let mut logical_filters: Vec<(String, Expr, DFSchemaRef)> = Vec::new();
    logical.apply_with_subqueries(|node| {
        if let LogicalPlan::Window(window) = node {
            for expr in &window.window_expr {
                let (name, inner) = match expr {
                    Expr::Alias(alias) => (alias.name.clone(), alias.expr.as_ref()),
                    other => (other.schema_name().to_string(), other),
                };
                if let Expr::WindowFunction(function) = inner
                    && let Some(filter) = &function.params.filter
                {
                    logical_filters.push((
                        name,
                        filter.as_ref().clone(),
                        Arc::clone(window.input.schema()),
                    ));
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let mut found: Vec<Record> = Vec::new();
    physical.apply(|node| {
        let exprs = if let Some(w) = node.downcast_ref::<BoundedWindowAggExec>() {
            w.window_expr()
        } else if let Some(w) = node.downcast_ref::<WindowAggExec>() {
            w.window_expr()
        } else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let input_fields = node.children()[0].schema().fields().len();
        for expr in exprs.iter().filter(|e| has_filter(e)) {
            let filter = logical_filters
                .iter()
                .filter(|(name, _, schema)| {
                    name == expr.name() && schema.fields().len() == input_fields
                })
                .map(|(_, filter, schema)| {
                    create_physical_expr(filter, schema, props, &PhysicalPlanningContext::default())
                })
                .next()
                .transpose()?
                .ok_or_else(|| {
                    BallistaError::NotSupported(format!(
                        "the window aggregate {} has a FILTER the cluster cannot carry",
                        expr.name()
                    ))
                })?;
            found.push((Arc::downgrade(expr), filter));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if found.is_empty() {
        return Ok(());
    }
    let mut records = FILTERS.lock();
    records.retain(|(weak, _)| weak.strong_count() > 0);
    records.extend(found);
    Ok(())
}
