//! How deeply the expressions of a plan from the network may nest.
//!
//! DataFusion walks, rewrites, clones and drops expressions recursively. A
//! plan of a few kilobytes can hold an expression nested many thousands of
//! levels deep (datafusion-proto writes a chain of binary operators as one
//! flat list of operands, and `1+1+…+1` is such a chain), and a walk that deep
//! overflows the stack of the thread doing it: the process aborts. So the
//! depth of every expression is measured when a plan arrives, without
//! recursion, and a plan over the limit is refused with
//! [`BallistaError::InvalidInput`] naming the limit. Even dropping such a
//! plan recurses: [`check_expression_depth`] takes it apart iteratively.
//!
//! Plan nodes themselves nest at most about 100 deep (the protobuf decoder's
//! own recursion limit), which DataFusion's recursion protection handles.

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};

use super::logical_nodes::ValuesNode;
use crate::error::{BallistaError, Result};

/// The deepest expression nesting a plan may hold unless the operator says
/// otherwise (`scheduler.limits.max_expression_depth`). Stage plans travel to
/// executors as protobuf messages nested about twice as deep as their
/// expressions, and the decoder stops at 100 levels: deeper expressions could
/// not run anyway.
pub const DEFAULT_MAX_EXPRESSION_DEPTH: usize = 40;

/// Checks that no expression of `plan` nests deeper than `limit`; a plan
/// that does is dropped without recursion and refused.
pub fn check_expression_depth(plan: LogicalPlan, limit: usize) -> Result<LogicalPlan> {
    let deepest = deepest_expression(&plan);
    if deepest <= limit {
        return Ok(plan);
    }
    dismantle_plan(plan);
    Err(BallistaError::InvalidInput(format!(
        "an expression of the query nests {deepest} levels deep; the limit is {limit} \
         (scheduler.limits.max_expression_depth): split it, e.g. sum a long list of terms \
         with a subquery or an array function"
    )))
}

/// The deepest expression nesting in `plan` and its subqueries. Plan nodes
/// are walked recursively (their depth is bounded), expressions iteratively.
fn deepest_expression(plan: &LogicalPlan) -> usize {
    let mut deepest = 0;
    let _ = plan.apply_with_subqueries(|node| {
        let mut measure = |expr: &Expr| {
            deepest = deepest.max(expression_depth(expr));
            Ok(TreeNodeRecursion::Continue)
        };
        match node {
            // `expressions()` of an extension node clones them: the nodes
            // that decode from the wire are ours, and only VALUES holds any.
            LogicalPlan::Extension(extension) => {
                if let Some(values) = extension.node.as_any().downcast_ref::<ValuesNode>() {
                    for expr in values.values.iter().flatten() {
                        measure(expr)?;
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            }
            other => other.apply_expressions(measure),
        }
    });
    deepest
}

/// The nesting depth of `expr` (1 for a leaf), computed with a heap stack.
pub fn expression_depth(expr: &Expr) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(expr, 1usize)];
    while let Some((expr, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        let _ = expr.apply_children(|child| {
            pending.push((child, depth + 1));
            Ok(TreeNodeRecursion::Continue)
        });
    }
    deepest
}

fn placeholder() -> Expr {
    Expr::Literal(ScalarValue::Null, None)
}

/// Drops `expr` one node at a time: each node gives up its children before
/// it is dropped, so no drop recurses.
fn dismantle_expr(expr: Expr) {
    let mut pending = vec![expr];
    while let Some(expr) = pending.pop() {
        let _ = expr.map_children(|child| {
            pending.push(child);
            Ok(Transformed::yes(placeholder()))
        });
    }
}

/// Drops `plan` after taking its expressions apart one node at a time.
/// Extension nodes keep theirs: the ones that decode from the wire are ours,
/// and the codec refuses deep expressions in them (see
/// [`MAX_DECODED_EXPRESSION_DEPTH`]).
fn dismantle_plan(plan: LogicalPlan) {
    let emptied = plan.transform_up_with_subqueries(|node| match node {
        LogicalPlan::Extension(_) => Ok(Transformed::no(node)),
        other => other.map_expressions(|expr| {
            dismantle_expr(expr);
            Ok(Transformed::yes(placeholder()))
        }),
    });
    drop(emptied);
}

/// The deepest expression the logical codec builds into one of its own
/// nodes, whatever the operator's limit: deeper ones are taken apart and
/// refused as they are decoded, as nothing could drop them safely later.
pub(super) const MAX_DECODED_EXPRESSION_DEPTH: usize = 1_000;

/// Refuses `exprs` (taking them apart) when one nests deeper than
/// [`MAX_DECODED_EXPRESSION_DEPTH`].
pub(super) fn check_decoded_expressions(exprs: Vec<Expr>) -> Result<Vec<Expr>> {
    let deepest = exprs.iter().map(expression_depth).max().unwrap_or(0);
    if deepest <= MAX_DECODED_EXPRESSION_DEPTH {
        return Ok(exprs);
    }
    exprs.into_iter().for_each(dismantle_expr);
    Err(BallistaError::InvalidInput(format!(
        "an expression of the query nests {deepest} levels deep; the limit is {MAX_DECODED_EXPRESSION_DEPTH}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{LogicalPlanBuilder, lit};

    /// `1 + 1 + … + 1` with `terms` terms: a left-deep chain.
    fn chain(terms: usize) -> Expr {
        (1..terms).fold(lit(1), |acc, _| acc + lit(1))
    }

    fn project(expr: Expr) -> LogicalPlan {
        LogicalPlanBuilder::empty(true)
            .project(vec![expr])
            .unwrap()
            .build()
            .unwrap()
    }

    #[test]
    fn depth_is_measured_without_recursion() {
        assert_eq!(expression_depth(&lit(1)), 1);
        assert_eq!(expression_depth(&chain(3)), 3);
    }

    #[test]
    fn a_plan_within_the_limit_is_kept() {
        let plan = project(chain(10));
        let kept = check_expression_depth(plan.clone(), 10).unwrap();
        assert_eq!(kept, plan);
    }

    /// Refused on a thread with a small stack: neither measuring nor dropping
    /// may recurse.
    #[test]
    fn a_deep_plan_is_refused_naming_the_limit_and_dropped_safely() {
        // VALUES builds without walking its expressions.
        let schema = datafusion::common::DFSchema::from_unqualified_fields(
            vec![arrow::datatypes::Field::new(
                "x",
                arrow::datatypes::DataType::Int64,
                false,
            )]
            .into(),
            Default::default(),
        )
        .unwrap();
        let plan = LogicalPlan::Values(datafusion::logical_expr::Values {
            schema: std::sync::Arc::new(schema),
            values: vec![vec![chain(200_000)]],
        });
        let error = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || check_expression_depth(plan, 40).unwrap_err())
            .unwrap()
            .join()
            .unwrap();
        let message = error.to_string();
        assert!(matches!(error, BallistaError::InvalidInput(_)), "{message}");
        assert!(message.contains("200000 levels"), "{message}");
        assert!(message.contains("max_expression_depth"), "{message}");
    }
}
