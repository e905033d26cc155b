//! Turning query results into the text the `.slt` files expect.
//!
//! DataFusion's suite writes its expected results with a few conventions,
//! which both engines' answers go through here so that they compare with
//! the files (and with each other) the same way:
//! - `NULL` for a null of any type, `(empty)` for an empty string, trailing
//!   newlines of strings dropped;
//! - floats rounded to 12 decimal places and written without exponent or
//!   trailing zeros (`NaN`, `Infinity`, `-Infinity` as such); decimals
//!   rounded to their scale the same way;
//! - dictionary values as their value, everything else as Arrow displays it;
//! - a value spanning several lines (an EXPLAIN plan) as one row per line.
//!
//! Column types use the suite's letters: `I` integer, `R` float or decimal,
//! `T` text, `B` boolean, `D` date or time, `P` timestamp, `?` anything else.

use std::str::FromStr;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type, DecimalType, Fields,
    Float16Type, Float32Type, Float64Type,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bigdecimal::BigDecimal;

/// The column type letters of the `.slt` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SltColumnType {
    /// `B`
    Boolean,
    /// `D`
    DateTime,
    /// `I`
    Integer,
    /// `R`
    Float,
    /// `T`
    Text,
    /// `P`
    Timestamp,
    /// `?`
    Other,
}

impl sqllogictest::ColumnType for SltColumnType {
    fn from_char(value: char) -> Option<Self> {
        Some(match value {
            'B' => Self::Boolean,
            'D' => Self::DateTime,
            'I' => Self::Integer,
            'R' => Self::Float,
            'T' => Self::Text,
            'P' => Self::Timestamp,
            _ => Self::Other,
        })
    }

    fn to_char(&self) -> char {
        match self {
            Self::Boolean => 'B',
            Self::DateTime => 'D',
            Self::Integer => 'I',
            Self::Float => 'R',
            Self::Text => 'T',
            Self::Timestamp => 'P',
            Self::Other => '?',
        }
    }
}

/// The type letter of each column.
pub fn column_types(fields: &Fields) -> Vec<SltColumnType> {
    fields.iter().map(|f| type_letter(f.data_type())).collect()
}

fn type_letter(data_type: &DataType) -> SltColumnType {
    use DataType::*;
    match data_type {
        Boolean => SltColumnType::Boolean,
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => SltColumnType::Integer,
        Float16 | Float32 | Float64 | Decimal32(..) | Decimal64(..) | Decimal128(..)
        | Decimal256(..) => SltColumnType::Float,
        Utf8 | LargeUtf8 | Utf8View => SltColumnType::Text,
        Date32 | Date64 | Time32(_) | Time64(_) => SltColumnType::DateTime,
        Timestamp(..) => SltColumnType::Timestamp,
        Dictionary(key, value)
            if key.is_integer() && matches!(value.as_ref(), Utf8 | LargeUtf8 | Utf8View) =>
        {
            SltColumnType::Text
        }
        _ => SltColumnType::Other,
    }
}

/// Every row of `batches` as cells of text.
pub fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, ArrowError> {
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cells = batch
                .columns()
                .iter()
                .map(|column| cell(column, row))
                .collect::<Result<Vec<_>, _>>()?;
            split_multiline(cells, &mut out);
        }
    }
    Ok(out)
}

/// A last cell of several lines becomes one extra row per line, numbered,
/// with its indentation written as dashes (the runner ignores whitespace).
fn split_multiline(mut cells: Vec<String>, out: &mut Vec<Vec<String>>) {
    let Some(last) = cells.last() else {
        out.push(cells);
        return;
    };
    if !last.contains('\n') {
        out.push(cells);
        return;
    }
    let last = cells.pop().unwrap_or_default();
    out.push(cells);
    for (index, line) in last.split('\n').enumerate() {
        let text = line.trim_start();
        let indent = "-".repeat(line.len() - text.len());
        out.push(vec![format!("{:02}){indent}{text}", index + 1)]);
    }
}

/// One value as text.
pub fn cell(column: &ArrayRef, row: usize) -> Result<String, ArrowError> {
    if column.is_null(row) {
        return Ok("NULL".to_string());
    }
    Ok(match column.data_type() {
        DataType::Null => "NULL".to_string(),
        DataType::Boolean => column.as_boolean().value(row).to_string(),
        DataType::Float16 => float_text(
            f64::from(column.as_primitive::<Float16Type>().value(row)),
            || column.as_primitive::<Float16Type>().value(row).to_string(),
        ),
        DataType::Float32 => float_text(
            f64::from(column.as_primitive::<Float32Type>().value(row)),
            || column.as_primitive::<Float32Type>().value(row).to_string(),
        ),
        DataType::Float64 => {
            let value = column.as_primitive::<Float64Type>().value(row);
            float_text(value, || value.to_string())
        }
        DataType::Decimal32(_, scale) => {
            decimal_text::<Decimal32Type>(column.as_primitive::<Decimal32Type>().value(row), *scale)
        }
        DataType::Decimal64(_, scale) => {
            decimal_text::<Decimal64Type>(column.as_primitive::<Decimal64Type>().value(row), *scale)
        }
        DataType::Decimal128(_, scale) => decimal_text::<Decimal128Type>(
            column.as_primitive::<Decimal128Type>().value(row),
            *scale,
        ),
        DataType::Decimal256(_, scale) => decimal_text::<Decimal256Type>(
            column.as_primitive::<Decimal256Type>().value(row),
            *scale,
        ),
        DataType::Utf8 => string_text(column.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => string_text(column.as_string::<i64>().value(row)),
        DataType::Utf8View => string_text(column.as_string_view().value(row)),
        DataType::Dictionary(..) => {
            let dictionary = column.as_any_dictionary();
            let key = dictionary.normalized_keys()[row];
            return cell(dictionary.values(), key);
        }
        _ => {
            let options = FormatOptions::default().with_null("NULL");
            ArrayFormatter::try_new(column.as_ref(), &options)?
                .value(row)
                .to_string()
        }
    })
}

fn string_text(value: &str) -> String {
    if value.is_empty() {
        "(empty)".to_string()
    } else {
        value.trim_end_matches('\n').replace('\u{0}', "\\0")
    }
}

/// `shortest` is the value's shortest round-tripping text in its own width
/// (so that an f32 0.1 reads 0.1, not 0.100000001490116).
fn float_text(value: f64, shortest: impl FnOnce() -> String) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "Infinity".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Infinity".to_string()
    } else {
        plain_decimal(&shortest(), 12)
    }
}

fn decimal_text<T: DecimalType>(value: T::Native, scale: i8) -> String {
    plain_decimal(&T::format_decimal(value, u8::MAX, scale), i64::from(scale))
}

/// `text` rounded to `digits` decimal places (half to even), without
/// exponent and without trailing zeros.
fn plain_decimal(text: &str, digits: i64) -> String {
    match BigDecimal::from_str(text) {
        Ok(value) => value.round(digits).normalized().to_plain_string(),
        Err(_) => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Float32Array, Float64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn floats_and_decimals_read_as_the_suite_writes_them() {
        let f: ArrayRef = Arc::new(Float64Array::from(vec![
            1.0,
            0.1 + 0.2,
            1e20,
            -2.5e-13,
            f64::NAN,
        ]));
        let text: Vec<String> = (0..5).map(|i| cell(&f, i).unwrap()).collect();
        assert_eq!(text, ["1", "0.3", "100000000000000000000", "0", "NaN"]);
        let f32s: ArrayRef = Arc::new(Float32Array::from(vec![0.1f32]));
        assert_eq!(cell(&f32s, 0).unwrap(), "0.1");
        let d: ArrayRef = Arc::new(
            Decimal128Array::from(vec![12340])
                .with_precision_and_scale(10, 3)
                .unwrap(),
        );
        assert_eq!(cell(&d, 0).unwrap(), "12.34");
    }

    #[test]
    fn strings_nulls_and_plans() {
        let s: ArrayRef = Arc::new(StringArray::from(vec![Some(""), None, Some("a\n")]));
        let text: Vec<String> = (0..3).map(|i| cell(&s, i).unwrap()).collect();
        assert_eq!(text, ["(empty)", "NULL", "a"]);
        let mut out = Vec::new();
        split_multiline(vec!["plan".into(), "A\n  B".into()], &mut out);
        assert_eq!(out, [vec!["plan"], vec!["01)A"], vec!["02)--B"]]);
    }
}
