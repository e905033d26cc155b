//! Logical plan nodes that datafusion-proto 55 would not carry whole.
//!
//! Each one stands in, on the wire, for a DataFusion node whose schema or
//! options the default encoding loses; the scheduler turns it back into that
//! node after decoding (see `logical_codec`).

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use datafusion::common::DFSchemaRef;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::{Expr, LogicalPlan, TableScanBuilder, UserDefinedLogicalNodeCore};
use datafusion_proto::protobuf as dfproto;
use prost::Message;

use crate::error::BallistaError;

pub(super) fn malformed(what: &str, error: impl fmt::Display) -> DataFusionError {
    BallistaError::InvalidInput(format!("malformed logical plan: {what}: {error}")).into()
}

/// Plan nodes need `PartialOrd`; these only know whether two are equal.
macro_rules! ordered_by_equality {
    ($($node:ty),*) => {$(
        impl PartialOrd for $node {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                (self == other).then_some(Ordering::Equal)
            }
        }
    )*};
}

ordered_by_equality!(
    EmptyRelationNode,
    CopyOptionsNode,
    RecursiveQueryNode,
    ValuesNode,
    ScanProjectionNode
);

/// An empty relation with its schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct EmptyRelationNode {
    pub(super) produce_one_row: bool,
    pub(super) schema: DFSchemaRef,
}

impl UserDefinedLogicalNodeCore for EmptyRelationNode {
    fn name(&self) -> &str {
        "EmptyRelation"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "EmptyRelation: rows={}", u8::from(self.produce_one_row))
    }
    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        _inputs: Vec<LogicalPlan>,
    ) -> DFResult<Self> {
        Ok(self.clone())
    }
}

/// The options of the COPY node below it, and whether its file format is
/// the session's default one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct CopyOptionsNode {
    pub(super) input: LogicalPlan,
    pub(super) options: Vec<(String, String)>,
    pub(super) default_format: String,
}

impl UserDefinedLogicalNodeCore for CopyOptionsNode {
    fn name(&self) -> &str {
        "CopyOptions"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }
    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CopyOptions: {:?}", self.options)
    }
    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> DFResult<Self> {
        let input = inputs
            .pop()
            .ok_or_else(|| malformed("CopyOptions", "no input"))?;
        Ok(Self {
            input,
            options: self.options.clone(),
            default_format: self.default_format.clone(),
        })
    }
}

/// A recursive query with the schema the client planned it with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct RecursiveQueryNode {
    pub(super) name: String,
    pub(super) is_distinct: bool,
    pub(super) static_term: LogicalPlan,
    pub(super) recursive_term: LogicalPlan,
    pub(super) schema: DFSchemaRef,
}

impl UserDefinedLogicalNodeCore for RecursiveQueryNode {
    fn name(&self) -> &str {
        "RecursiveQuery"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.static_term, &self.recursive_term]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "RecursiveQuery: name={}, is_distinct={}",
            self.name, self.is_distinct
        )
    }
    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DFResult<Self> {
        let [static_term, recursive_term]: [LogicalPlan; 2] = inputs
            .try_into()
            .map_err(|_| malformed("RecursiveQuery", "needs two inputs"))?;
        Ok(Self {
            static_term,
            recursive_term,
            ..self.clone()
        })
    }
}

/// VALUES with the schema the client planned it with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ValuesNode {
    pub(super) schema: DFSchemaRef,
    pub(super) values: Vec<Vec<Expr>>,
}

impl UserDefinedLogicalNodeCore for ValuesNode {
    fn name(&self) -> &str {
        "Values"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        self.values.iter().flatten().cloned().collect()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Values: {} row(s)", self.values.len())
    }
    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> DFResult<Self> {
        let columns = self.schema.fields().len().max(1);
        Ok(Self {
            schema: Arc::clone(&self.schema),
            values: exprs.chunks(columns).map(<[Expr]>::to_vec).collect(),
        })
    }
}

/// The projection of the work-table scan below it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ScanProjectionNode {
    pub(super) input: LogicalPlan,
    pub(super) columns: Vec<usize>,
    pub(super) schema: DFSchemaRef,
}

impl UserDefinedLogicalNodeCore for ScanProjectionNode {
    fn name(&self) -> &str {
        "ScanProjection"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ScanProjection: {:?}", self.columns)
    }
    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> DFResult<Self> {
        let input = inputs
            .pop()
            .ok_or_else(|| malformed("ScanProjection", "no input"))?;
        Ok(Self {
            input,
            ..self.clone()
        })
    }
}

/// The work-table scan `scan` reading only `columns`.
pub(super) fn projected_scan(scan: &LogicalPlan, columns: &[usize]) -> DFResult<LogicalPlan> {
    let LogicalPlan::TableScan(scan) = scan else {
        return Err(malformed("ScanProjection", "its input is not a table scan"));
    };
    Ok(LogicalPlan::TableScan(
        TableScanBuilder::new(scan.table_name.clone(), Arc::clone(&scan.source))
            .with_projection(Some(columns.to_vec()))
            .with_filters(scan.filters.clone())
            .with_fetch(scan.fetch)
            .build()?,
    ))
}

pub(super) fn encode_df_schema(schema: &DFSchemaRef) -> DFResult<Vec<u8>> {
    Ok(dfproto::DfSchema::try_from(schema)
        .map_err(|e| malformed("schema", e))?
        .encode_to_vec())
}

pub(super) fn decode_df_schema(bytes: &[u8]) -> DFResult<DFSchemaRef> {
    dfproto::DfSchema::decode(bytes)
        .map_err(|e| malformed("schema", e))?
        .try_into()
        .map_err(|e| malformed("schema", e))
}
