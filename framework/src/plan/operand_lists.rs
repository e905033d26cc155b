//! A look at a serialized plan before DataFusion decodes it: the longest
//! list of operands of one binary operator.
//!
//! datafusion-proto writes a chain of one binary operator (`a + b + … + z`)
//! as one message holding the flat list of operands, and decoding rebuilds
//! the chain: a list of n operands becomes an expression n levels deep, and
//! building it costs time and memory growing with n² (100,000 operands in
//! 585 KiB take minutes and gigabytes). [`check_expression_depth`] measures
//! depth only after that. So the bytes are scanned first, with no schema:
//! every length-delimited field that parses as a protobuf message is
//! looked into, and a message with more than `limit + 1` length-delimited
//! field-1 entries next to a short alphabetic field 3 (a `BinaryExprNode`:
//! `repeated LogicalExprNode operands = 1; string op = 3;`) is refused
//! before decoding, as its chain would be refused after.
//!
//! [`check_expression_depth`]: super::check_expression_depth

use crate::error::{BallistaError, Result};

/// Nesting the scan follows (the protobuf decoder stops at 100 anyway).
const MAX_SCAN_DEPTH: usize = 100;

/// Refuses `bytes` when a binary operator in it lists more operands than a
/// chain `limit` levels deep holds.
pub fn check_operand_lists(bytes: &[u8], limit: usize) -> Result<()> {
    match longest_operand_list(bytes, limit.saturating_add(1), 0) {
        Some(operands) => Err(BallistaError::InvalidInput(format!(
            "an expression of the query chains {operands} operands of one operator, which nests \
             at least {} levels deep; the limit is {limit} (scheduler.limits.max_expression_depth): \
             split it, e.g. sum a long list of terms with a subquery or an array function",
            operands - 1
        ))),
        None => Ok(()),
    }
}

/// The fields of one message, or `None` when `bytes` is not a well-formed
/// protobuf message.
struct Fields<'a> {
    /// Length-delimited fields: (number, content).
    delimited: Vec<(u64, &'a [u8])>,
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn parse_fields(bytes: &[u8]) -> Option<Fields<'_>> {
    let mut at = 0;
    let mut delimited = Vec::new();
    while at < bytes.len() {
        let key = read_varint(bytes, &mut at)?;
        let (number, wire_type) = (key >> 3, key & 7);
        if number == 0 {
            return None;
        }
        match wire_type {
            0 => {
                read_varint(bytes, &mut at)?;
            }
            1 => at = at.checked_add(8).filter(|end| *end <= bytes.len())?,
            5 => at = at.checked_add(4).filter(|end| *end <= bytes.len())?,
            2 => {
                let len = usize::try_from(read_varint(bytes, &mut at)?).ok()?;
                let end = at.checked_add(len).filter(|end| *end <= bytes.len())?;
                delimited.push((number, &bytes[at..end]));
                at = end;
            }
            _ => return None,
        }
    }
    Some(Fields { delimited })
}

fn is_operator_name(bytes: &[u8]) -> bool {
    (1..=32).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_alphabetic)
}

/// The first operand list longer than `most` found in `bytes`, if any.
fn longest_operand_list(bytes: &[u8], most: usize, depth: usize) -> Option<usize> {
    let fields = parse_fields(bytes)?;
    let operands = fields.delimited.iter().filter(|(n, _)| *n == 1).count();
    if operands > most
        && fields
            .delimited
            .iter()
            .any(|(n, content)| *n == 3 && is_operator_name(content))
    {
        return Some(operands);
    }
    if depth >= MAX_SCAN_DEPTH {
        return None;
    }
    fields
        .delimited
        .iter()
        .find_map(|(_, content)| longest_operand_list(content, most, depth + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_proto::protobuf::{
        BinaryExprNode, LogicalExprNode, ProjectionNode, logical_expr_node::ExprType,
    };
    use prost::Message;

    /// An operand; its content does not matter to the scan.
    fn operand() -> LogicalExprNode {
        LogicalExprNode::default()
    }

    fn chain(operands: usize) -> Vec<u8> {
        let sum = LogicalExprNode {
            expr_type: Some(ExprType::BinaryExpr(BinaryExprNode {
                operands: (0..operands).map(|_| operand()).collect(),
                op: "Plus".into(),
            })),
        };
        ProjectionNode {
            input: None,
            expr: vec![operand(), sum],
            optional_alias: None,
        }
        .encode_to_vec()
    }

    #[test]
    fn a_long_operand_list_is_refused_before_decoding_and_a_short_one_passes() {
        assert!(check_operand_lists(&chain(41), 40).is_ok());
        let error = check_operand_lists(&chain(100_000), 40).unwrap_err();
        assert!(
            error.to_string().contains("chains 100000 operands")
                && error
                    .to_string()
                    .contains("scheduler.limits.max_expression_depth"),
            "{error}"
        );
        // Not messages at all: nothing to find.
        assert!(check_operand_lists(&[0xff; 64], 40).is_ok());
    }
}
