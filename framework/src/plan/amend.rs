//! What datafusion-proto 55 loses when it serializes some DataFusion nodes,
//! and how Ballista puts it back.
//!
//! A plan that changes meaning on its way to an executor gives silently wrong
//! answers, so these nodes travel as an [`AmendedNode`](crate::proto::AmendedNode):
//! datafusion-proto's own encoding of the node plus the missing facts, which
//! the decoder applies to the node datafusion-proto rebuilds.
//!
//! - Window expressions lose an aggregate's `FILTER (WHERE …)`, and a window
//!   function's `IGNORE NULLS` and its reversal (the planner evaluates
//!   `lag(x) OVER (ORDER BY x)` as a reversed function over `ORDER BY x DESC`
//!   when that saves a sort).
//! - An aggregate without grouping expressions loses how many grouping sets
//!   it has (`GROUP BY GROUPING SETS (())` must return a row even on empty
//!   input).

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::ReversedUDWF;
use datafusion::physical_expr::window::{
    PlainAggregateWindowExpr, SlidingAggregateWindowExpr, StandardWindowExpr,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, PhysicalGroupBy};
use datafusion::physical_plan::windows::{
    BoundedWindowAggExec, WindowAggExec, WindowUDFExpr, create_udwf_window_expr,
};
use datafusion::physical_plan::{PhysicalExpr, WindowExpr};

use arrow::csv::WriterBuilder;
use datafusion::common::file_options::csv_writer::CsvWriterOptions;
use datafusion::datasource::file_format::csv::CsvSink;
use datafusion::datasource::physical_plan::FileSink;
use datafusion::datasource::sink::DataSinkExec;

use datafusion::common::parsers::CompressionTypeVariant;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::physical_plan::{CsvSource, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;

use super::window_filters;
use crate::error::BallistaError;
use crate::proto;

fn internal(message: impl Into<String>) -> DataFusionError {
    BallistaError::Internal(message.into()).into()
}

/// Whether `plan` needs an amendment to travel, and which.
pub(crate) enum Amendment {
    /// A window node: per window expression, its filter (to be encoded by the
    /// caller) and flags.
    Window(Vec<WindowFacts>),
    /// An aggregate with grouping sets but no grouping expression.
    Aggregate(proto::AggregateAmendment),
    /// A CSV writer's date and time formats.
    CsvSink(proto::CsvSinkAmendment),
    /// A file scan's compression and CSV terminator.
    FileScan(proto::FileScanAmendment),
}

/// What datafusion-proto drops from one window expression.
pub(crate) struct WindowFacts {
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub ignore_nulls: bool,
    pub reversed: bool,
}

impl WindowFacts {
    fn is_lossless(&self) -> bool {
        self.filter.is_none() && !self.ignore_nulls && !self.reversed
    }
}

/// The amendment `plan` needs, if any.
pub(crate) fn amendment_for(plan: &Arc<dyn ExecutionPlan>) -> DFResult<Option<Amendment>> {
    let window_exprs = if let Some(w) = plan.downcast_ref::<BoundedWindowAggExec>() {
        Some(w.window_expr())
    } else {
        plan.downcast_ref::<WindowAggExec>()
            .map(|w| w.window_expr())
    };
    if let Some(exprs) = window_exprs {
        let facts = exprs
            .iter()
            .map(window_facts)
            .collect::<DFResult<Vec<_>>>()?;
        if facts.iter().all(WindowFacts::is_lossless) {
            return Ok(None);
        }
        return Ok(Some(Amendment::Window(facts)));
    }
    if let Some(scan) = plan.downcast_ref::<DataSourceExec>()
        && let Some(config) = scan.data_source().downcast_ref::<FileScanConfig>()
    {
        if !config
            .file_source()
            .table_schema()
            .virtual_columns()
            .is_empty()
        {
            return Err(BallistaError::NotSupported(
                "file_row_index() cannot run on the cluster: DataFusion 55 cannot send a \
                 scan's virtual columns to executors"
                    .into(),
            )
            .into());
        }
        let csv = config.file_source().downcast_ref::<CsvSource>();
        if let Some(csv) = csv
            && format!("{csv:?}").contains("null_regex: Some(")
        {
            return Err(BallistaError::NotSupported(
                "a CSV table with format.null_regex cannot be read on the cluster: \
                 DataFusion 55 cannot send that option to executors"
                    .into(),
            )
            .into());
        }
        let compression = match config.file_compression_type.get_variant() {
            CompressionTypeVariant::UNCOMPRESSED => "",
            CompressionTypeVariant::GZIP => "gzip",
            CompressionTypeVariant::BZIP2 => "bzip2",
            CompressionTypeVariant::XZ => "xz",
            CompressionTypeVariant::ZSTD => "zstd",
        };
        let csv_terminator = csv.and_then(CsvSource::terminator).map(u32::from);
        if compression.is_empty() && csv_terminator.is_none() {
            return Ok(None);
        }
        return Ok(Some(Amendment::FileScan(proto::FileScanAmendment {
            compression: compression.to_string(),
            csv_terminator,
        })));
    }
    if let Some(sink) = plan.downcast_ref::<DataSinkExec>()
        && let Some(csv) = sink.sink().downcast_ref::<CsvSink>()
    {
        let writer = &csv.writer_options().writer_options;
        return Ok(Some(Amendment::CsvSink(proto::CsvSinkAmendment {
            date_format: writer.date_format().map(str::to_string),
            datetime_format: writer.datetime_format().map(str::to_string),
            timestamp_format: writer.timestamp_format().map(str::to_string),
            timestamp_tz_format: writer.timestamp_tz_format().map(str::to_string),
            time_format: writer.time_format().map(str::to_string),
        })));
    }
    if let Some(aggregate) = plan.downcast_ref::<AggregateExec>() {
        let group_by = aggregate.group_expr();
        if group_by.expr().is_empty() && group_by.groups().len() > 1
            || group_by.expr().is_empty() && group_by.has_grouping_set()
        {
            return Ok(Some(Amendment::Aggregate(proto::AggregateAmendment {
                groups: group_by.groups().len() as u32,
                has_grouping_set: group_by.has_grouping_set(),
            })));
        }
    }
    Ok(None)
}

fn window_facts(expr: &Arc<dyn WindowExpr>) -> DFResult<WindowFacts> {
    let any = expr.as_any();
    if window_filters::has_filter(expr) {
        let filter = window_filters::filter_of(expr).ok_or_else(|| {
            DataFusionError::from(BallistaError::NotSupported(format!(
                "the window aggregate {} has a FILTER the cluster cannot carry",
                expr.name()
            )))
        })?;
        return Ok(WindowFacts {
            filter: Some(filter),
            ignore_nulls: false,
            reversed: false,
        });
    }
    if let Some(standard) = any.downcast_ref::<StandardWindowExpr>()
        && let Some(udwf) = standard
            .get_standard_func_expr()
            .as_any()
            .downcast_ref::<WindowUDFExpr>()
    {
        let (reversed, ignore_nulls) = udwf_flags(udwf)?;
        return Ok(WindowFacts {
            filter: None,
            ignore_nulls,
            reversed,
        });
    }
    Ok(WindowFacts {
        filter: None,
        ignore_nulls: false,
        reversed: false,
    })
}

/// `(is_reversed, ignore_nulls)` of a window function expression.
///
/// DataFusion 55 keeps both private; its derived `Debug` ends with them, in
/// this order, after every other field (so nothing inside the arguments or
/// names can be mistaken for them). A unit test pins the layout: a
/// DataFusion upgrade that changes it fails that test, not a query.
fn udwf_flags(expr: &WindowUDFExpr) -> DFResult<(bool, bool)> {
    let text = format!("{expr:?}");
    let tail = text
        .rsplit_once("is_reversed: ")
        .map(|(_, tail)| tail.trim_end())
        .ok_or_else(|| internal("cannot read a window function's direction"))?;
    match tail {
        "false, ignore_nulls: false }" => Ok((false, false)),
        "false, ignore_nulls: true }" => Ok((false, true)),
        "true, ignore_nulls: false }" => Ok((true, false)),
        "true, ignore_nulls: true }" => Ok((true, true)),
        _ => Err(internal(
            "cannot read a window function's direction and IGNORE NULLS",
        )),
    }
}

/// Applies window facts to the node datafusion-proto rebuilt.
pub(crate) fn amend_window(
    plan: Arc<dyn ExecutionPlan>,
    facts: Vec<WindowFacts>,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    if let Some(w) = plan.downcast_ref::<BoundedWindowAggExec>() {
        let exprs = amend_window_exprs(w.window_expr(), facts, w.input())?;
        let can_repartition = !w.partition_keys().is_empty();
        return Ok(Arc::new(BoundedWindowAggExec::try_new(
            exprs,
            Arc::clone(w.input()),
            w.input_order_mode.clone(),
            can_repartition,
        )?));
    }
    if let Some(w) = plan.downcast_ref::<WindowAggExec>() {
        let exprs = amend_window_exprs(w.window_expr(), facts, w.input())?;
        let can_repartition = !w.partition_keys().is_empty();
        return Ok(Arc::new(WindowAggExec::try_new(
            exprs,
            Arc::clone(w.input()),
            can_repartition,
        )?));
    }
    Err(internal(format!(
        "a window amendment arrived for a {} node",
        plan.name()
    )))
}

fn amend_window_exprs(
    exprs: &[Arc<dyn WindowExpr>],
    facts: Vec<WindowFacts>,
    input: &Arc<dyn ExecutionPlan>,
) -> DFResult<Vec<Arc<dyn WindowExpr>>> {
    if exprs.len() != facts.len() {
        return Err(internal(format!(
            "a window node has {} expressions but its amendment {}",
            exprs.len(),
            facts.len()
        )));
    }
    exprs
        .iter()
        .zip(facts)
        .map(|(expr, facts)| {
            if facts.is_lossless() {
                return Ok(Arc::clone(expr));
            }
            amend_window_expr(expr, facts, input)
        })
        .collect()
}

fn amend_window_expr(
    expr: &Arc<dyn WindowExpr>,
    facts: WindowFacts,
    input: &Arc<dyn ExecutionPlan>,
) -> DFResult<Arc<dyn WindowExpr>> {
    let any = expr.as_any();
    let frame = Arc::clone(expr.get_window_frame());
    if let Some(plain) = any.downcast_ref::<PlainAggregateWindowExpr>() {
        return Ok(Arc::new(PlainAggregateWindowExpr::new(
            Arc::new(plain.get_aggregate_expr().clone()),
            expr.partition_by(),
            expr.order_by(),
            frame,
            facts.filter,
        )));
    }
    if let Some(sliding) = any.downcast_ref::<SlidingAggregateWindowExpr>() {
        return Ok(Arc::new(SlidingAggregateWindowExpr::new(
            Arc::new(sliding.get_aggregate_expr().clone()),
            expr.partition_by(),
            expr.order_by(),
            frame,
            facts.filter,
        )));
    }
    let udwf = any
        .downcast_ref::<StandardWindowExpr>()
        .and_then(|s| {
            s.get_standard_func_expr()
                .as_any()
                .downcast_ref::<WindowUDFExpr>()
                .cloned()
        })
        .ok_or_else(|| internal("a window amendment does not fit its expression"))?;
    // A reversed expression holds the reversed function with the flag set;
    // building the forward function and reversing it yields exactly that.
    let fun = if facts.reversed {
        match udwf.fun().reverse_expr() {
            ReversedUDWF::Reversed(forward) => forward,
            ReversedUDWF::Identical => Arc::clone(udwf.fun()),
            ReversedUDWF::NotSupported => {
                return Err(internal(format!(
                    "window function {} arrived reversed but cannot be reversed",
                    udwf.fun().name()
                )));
            }
        }
    } else {
        Arc::clone(udwf.fun())
    };
    let mut function = create_udwf_window_expr(
        &fun,
        udwf.args(),
        &input.schema(),
        expr.name().to_string(),
        facts.ignore_nulls,
    )?;
    if facts.reversed {
        function = function.reverse_expr().ok_or_else(|| {
            internal(format!(
                "window function {} cannot be reversed",
                udwf.fun().name()
            ))
        })?;
    }
    Ok(Arc::new(StandardWindowExpr::new(
        function,
        expr.partition_by(),
        expr.order_by(),
        frame,
    )))
}

/// Applies a file scan's compression and CSV terminator to the node
/// datafusion-proto rebuilt.
pub(crate) fn amend_file_scan(
    plan: Arc<dyn ExecutionPlan>,
    facts: &proto::FileScanAmendment,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    let config = plan
        .downcast_ref::<DataSourceExec>()
        .and_then(|scan| scan.data_source().downcast_ref::<FileScanConfig>())
        .ok_or_else(|| internal("a file scan amendment arrived for another node"))?;
    let compression = match facts.compression.as_str() {
        "" => CompressionTypeVariant::UNCOMPRESSED,
        "gzip" => CompressionTypeVariant::GZIP,
        "bzip2" => CompressionTypeVariant::BZIP2,
        "xz" => CompressionTypeVariant::XZ,
        "zstd" => CompressionTypeVariant::ZSTD,
        other => return Err(internal(format!("unknown file compression {other}"))),
    };
    let mut builder = FileScanConfigBuilder::from(config.clone())
        .with_file_compression_type(FileCompressionType::from(compression));
    if let Some(terminator) = facts.csv_terminator {
        let csv = config
            .file_source()
            .downcast_ref::<CsvSource>()
            .ok_or_else(|| internal("a CSV terminator arrived for another file format"))?;
        let terminator = u8::try_from(terminator)
            .map_err(|_| internal(format!("CSV terminator {terminator} is not a byte")))?;
        builder = builder.with_source(Arc::new(csv.with_terminator(Some(terminator))));
    }
    Ok(DataSourceExec::from_data_source(builder.build()))
}

/// Applies a CSV writer's formats to the node datafusion-proto rebuilt.
pub(crate) fn amend_csv_sink(
    plan: Arc<dyn ExecutionPlan>,
    formats: &proto::CsvSinkAmendment,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    let exec = plan
        .downcast_ref::<DataSinkExec>()
        .ok_or_else(|| internal("a CSV writer amendment arrived for another node"))?;
    let sink = exec
        .sink()
        .downcast_ref::<CsvSink>()
        .ok_or_else(|| internal("a CSV writer amendment arrived for another sink"))?;
    let decoded = &sink.writer_options().writer_options;
    let mut writer = WriterBuilder::new()
        .with_header(decoded.header())
        .with_delimiter(decoded.delimiter())
        .with_quote(decoded.quote())
        .with_escape(decoded.escape())
        .with_double_quote(decoded.double_quote())
        .with_null(decoded.null().to_string())
        .with_ignore_leading_whitespace(decoded.ignore_leading_whitespace())
        .with_ignore_trailing_whitespace(decoded.ignore_trailing_whitespace())
        .with_quote_style(decoded.quote_style())
        .with_line_terminator(decoded.line_terminator().clone());
    if let Some(f) = &formats.date_format {
        writer = writer.with_date_format(f.clone());
    }
    if let Some(f) = &formats.datetime_format {
        writer = writer.with_datetime_format(f.clone());
    }
    if let Some(f) = &formats.timestamp_format {
        writer = writer.with_timestamp_format(f.clone());
    }
    if let Some(f) = &formats.timestamp_tz_format {
        writer = writer.with_timestamp_tz_format(f.clone());
    }
    if let Some(f) = &formats.time_format {
        writer = writer.with_time_format(f.clone());
    }
    let options = CsvWriterOptions {
        writer_options: writer,
        ..sink.writer_options().clone()
    };
    let sink = CsvSink::new(sink.config().clone(), options);
    Ok(Arc::new(DataSinkExec::new(
        Arc::clone(exec.input()),
        Arc::new(sink),
        exec.sort_order().clone(),
    )))
}

/// Applies an aggregate amendment to the node datafusion-proto rebuilt.
pub(crate) fn amend_aggregate(
    plan: Arc<dyn ExecutionPlan>,
    amendment: &proto::AggregateAmendment,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    let aggregate = plan
        .downcast_ref::<AggregateExec>()
        .ok_or_else(|| internal("an aggregate amendment arrived for another node"))?;
    let group_by = aggregate.group_expr();
    let groups = vec![vec![false; group_by.expr().len()]; amendment.groups as usize];
    let group_by = PhysicalGroupBy::new(
        group_by.expr().to_vec(),
        group_by.null_expr().to_vec(),
        groups,
        amendment.has_grouping_set,
    );
    let rebuilt = AggregateExec::try_new(
        *aggregate.mode(),
        group_by,
        aggregate.aggr_expr().to_vec(),
        aggregate.filter_expr().to_vec(),
        Arc::clone(aggregate.input()),
        aggregate.input_schema(),
    )?
    .with_limit_options(aggregate.limit_options());
    Ok(Arc::new(rebuilt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::col;
    use datafusion::physical_plan::windows::create_udwf_window_expr;

    /// Pins the `Debug` layout [`udwf_flags`] reads (see its comment).
    #[test]
    fn window_function_flags_are_read_back() {
        let schema = Schema::new(vec![Field::new("is_reversed: true", DataType::Int64, true)]);
        let arg = col("is_reversed: true", &schema).unwrap();
        let lag = datafusion::functions_window::lead_lag::lag_udwf();
        for ignore_nulls in [false, true] {
            let forward = create_udwf_window_expr(
                &lag,
                std::slice::from_ref(&arg),
                &schema,
                "is_reversed: true, ignore_nulls: true }".into(),
                ignore_nulls,
            )
            .unwrap();
            let udwf = forward.as_any().downcast_ref::<WindowUDFExpr>().unwrap();
            assert_eq!(udwf_flags(udwf).unwrap(), (false, ignore_nulls));
            let reversed = forward.reverse_expr().unwrap();
            let udwf = reversed.as_any().downcast_ref::<WindowUDFExpr>().unwrap();
            assert_eq!(udwf_flags(udwf).unwrap(), (true, ignore_nulls));
        }
    }
}
