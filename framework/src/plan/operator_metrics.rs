//! Operator metrics of a stage, as `EXPLAIN ANALYZE` shows them: each task
//! reports the metrics of its plan's operators, the scheduler adds them up
//! per stage, and clients (the CLI, the REST API) print them under the
//! stage's plan.

use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::physical_plan::metrics::MetricValue;

use crate::proto::{self, MetricKind};

/// Most operators one task reports (deeper plans are cut there).
const MAX_OPERATORS: usize = 512;
/// Most metrics one operator reports.
const MAX_METRICS: usize = 64;
/// Longest description of one operator kept in a stage's figures (a scan
/// of many files lists them all).
const MAX_DESCRIPTION: usize = 400;

/// Wrappers the executor puts around operators to stop them on cancel:
/// not part of the stage's plan as the scheduler made it.
const WRAPPERS: &[&str] = &["CancellableExec"];

/// The metrics of every operator of an executed `plan`, in pre-order.
pub fn collect_operator_metrics(plan: &Arc<dyn ExecutionPlan>) -> Vec<proto::OperatorMetrics> {
    let mut out = Vec::new();
    let mut stack = vec![(Arc::clone(plan), 0u32)];
    while let Some((node, depth)) = stack.pop() {
        if out.len() >= MAX_OPERATORS {
            break;
        }
        let wrapper = WRAPPERS.contains(&node.name());
        if !wrapper {
            out.push(proto::OperatorMetrics {
                name: node.name().to_string(),
                depth,
                metrics: node
                    .metrics()
                    .map(|set| {
                        set.aggregate_by_name()
                            .iter()
                            .filter_map(|m| metric_of(m.value()))
                            .take(MAX_METRICS)
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        let child_depth = if wrapper { depth } else { depth + 1 };
        for child in node.children().into_iter().rev() {
            stack.push((Arc::clone(child), child_depth));
        }
    }
    out
}

/// Longest metric name kept.
const MAX_METRIC_NAME: usize = 64;

/// Cuts a task's report to what an executor sends at most, and to a shape
/// a plan can have (the first operator at depth 0, each next at most one
/// deeper), so that a faulty report costs the scheduler no more than a
/// correct one.
pub fn bound_operator_metrics(operators: &mut Vec<proto::OperatorMetrics>) {
    operators.truncate(MAX_OPERATORS);
    let mut deepest_allowed = 0;
    for operator in operators {
        operator.depth = operator.depth.min(deepest_allowed);
        deepest_allowed = operator.depth + 1;
        operator.metrics.truncate(MAX_METRICS);
        operator.metrics.retain(|m| m.name.len() <= MAX_METRIC_NAME);
        if operator.name.len() > MAX_DESCRIPTION {
            operator.name = String::from("(name too long)");
        }
    }
}

fn metric_of(value: &MetricValue) -> Option<proto::OperatorMetric> {
    let kind = match value {
        MetricValue::StartTimestamp(_)
        | MetricValue::EndTimestamp(_)
        | MetricValue::PruningMetrics { .. }
        | MetricValue::Ratio { .. }
        | MetricValue::Custom { .. } => return None,
        MetricValue::ElapsedCompute(_) | MetricValue::Time { .. } => MetricKind::TimeNs,
        MetricValue::CurrentMemoryUsage(_) | MetricValue::PeakMemoryUsage { .. } => {
            MetricKind::PeakBytes
        }
        MetricValue::Gauge { name, .. } if name.contains("mem") || name.ends_with("bytes") => {
            MetricKind::PeakBytes
        }
        MetricValue::SpilledBytes(_) | MetricValue::OutputBytes(_) => MetricKind::Bytes,
        _ if value.name().ends_with("bytes") => MetricKind::Bytes,
        _ => MetricKind::Count,
    };
    Some(proto::OperatorMetric {
        name: value.name().to_string(),
        value: value.as_usize() as u64,
        kind: kind as i32,
    })
}

/// Adds one task's operator figures to a stage's running totals. A task
/// whose plan has another shape (it should not happen) is left out rather
/// than mixed into the wrong operators.
pub fn add_operator_metrics(
    totals: &mut Vec<proto::OperatorMetrics>,
    task: &[proto::OperatorMetrics],
) {
    if totals.is_empty() {
        totals.extend_from_slice(task);
        return;
    }
    if totals.len() != task.len() || totals.iter().zip(task).any(|(a, b)| a.depth != b.depth) {
        return;
    }
    for (total, operator) in totals.iter_mut().zip(task) {
        for metric in &operator.metrics {
            let known = total.metrics.iter().position(|m| m.name == metric.name);
            match known {
                Some(i) if metric.kind == MetricKind::PeakBytes as i32 => {
                    total.metrics[i].value = total.metrics[i].value.max(metric.value)
                }
                Some(i) => {
                    total.metrics[i].value = total.metrics[i].value.saturating_add(metric.value)
                }
                None if total.metrics.len() < MAX_METRICS => total.metrics.push(metric.clone()),
                None => {}
            }
        }
    }
}

/// Names each operator of a stage's totals by its one-line description in
/// `plan`, the stage's plan as the scheduler made it (the executors name
/// only the operator's kind), when the shapes agree.
pub fn describe_operators(plan: &Arc<dyn ExecutionPlan>, totals: &mut [proto::OperatorMetrics]) {
    let mut descriptions = Vec::new();
    let mut stack = vec![Arc::clone(plan)];
    while let Some(node) = stack.pop() {
        if descriptions.len() > totals.len() {
            return;
        }
        let line = DisplayableExecutionPlan::new(node.as_ref())
            .one_line()
            .to_string();
        descriptions.push(crate::util::cut_at_char(line.trim_end(), MAX_DESCRIPTION));
        for child in node.children().into_iter().rev() {
            stack.push(Arc::clone(child));
        }
    }
    if descriptions.len() == totals.len() {
        for (total, description) in totals.iter_mut().zip(descriptions) {
            total.name = description;
        }
    }
}

/// A metric's value as EXPLAIN ANALYZE prints it: `1.25s`, `3.2 MB`, `42`.
pub fn format_metric(metric: &proto::OperatorMetric) -> String {
    let v = metric.value;
    match MetricKind::try_from(metric.kind).unwrap_or(MetricKind::Count) {
        MetricKind::Count => v.to_string(),
        MetricKind::TimeNs => {
            let ns = v as f64;
            if ns >= 1e9 {
                format!("{:.2}s", ns / 1e9)
            } else if ns >= 1e6 {
                format!("{:.2}ms", ns / 1e6)
            } else if ns >= 1e3 {
                format!("{:.2}µs", ns / 1e3)
            } else {
                format!("{v}ns")
            }
        }
        MetricKind::Bytes | MetricKind::PeakBytes => {
            let b = v as f64;
            if b >= 1e9 {
                format!("{:.1} GB", b / 1e9)
            } else if b >= 1e6 {
                format!("{:.1} MB", b / 1e6)
            } else if b >= 1e3 {
                format!("{:.1} KB", b / 1e3)
            } else {
                format!("{v} B")
            }
        }
    }
}

/// A stage's operators as indented lines, each with its metrics, as in
/// DataFusion's `EXPLAIN ANALYZE`.
pub fn render_operator_metrics(operators: &[proto::OperatorMetrics]) -> String {
    let mut out = String::new();
    for operator in operators {
        let metrics: Vec<String> = operator
            .metrics
            .iter()
            .map(|m| format!("{}={}", m.name, format_metric(m)))
            .collect();
        out.push_str(&"  ".repeat(operator.depth as usize));
        out.push_str(&operator.name);
        out.push_str(&format!(", metrics=[{}]\n", metrics.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, depth: u32, metrics: &[(&str, u64, MetricKind)]) -> proto::OperatorMetrics {
        proto::OperatorMetrics {
            name: name.into(),
            depth,
            metrics: metrics
                .iter()
                .map(|(n, v, k)| proto::OperatorMetric {
                    name: (*n).into(),
                    value: *v,
                    kind: *k as i32,
                })
                .collect(),
        }
    }

    #[test]
    fn tasks_add_up_counts_and_times_and_keep_the_highest_memory() {
        let mut totals = Vec::new();
        let a = [
            op(
                "ProjectionExec",
                0,
                &[("output_rows", 3, MetricKind::Count)],
            ),
            op(
                "SortExec",
                1,
                &[
                    ("peak_mem_used", 100, MetricKind::PeakBytes),
                    ("elapsed_compute", 2_000_000, MetricKind::TimeNs),
                ],
            ),
        ];
        let b = [
            op(
                "ProjectionExec",
                0,
                &[("output_rows", 4, MetricKind::Count)],
            ),
            op(
                "SortExec",
                1,
                &[
                    ("peak_mem_used", 70, MetricKind::PeakBytes),
                    ("elapsed_compute", 1_000_000, MetricKind::TimeNs),
                ],
            ),
        ];
        add_operator_metrics(&mut totals, &a);
        add_operator_metrics(&mut totals, &b);
        // Another shape is not mixed in.
        add_operator_metrics(&mut totals, &a[..1]);
        let text = render_operator_metrics(&totals);
        assert_eq!(
            text,
            "ProjectionExec, metrics=[output_rows=7]\n  SortExec, metrics=[peak_mem_used=100 B, elapsed_compute=3.00ms]\n"
        );
    }
}
