//! Comparing query results by value: row by row, in order, with a relative
//! tolerance for floating-point and decimal columns.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// One value, normalised for comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// Any integer type.
    Int(i128),
    /// Floats and decimals.
    Float(f64),
    /// Everything else, as displayed by Arrow.
    Text(String),
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Null => f.write_str("NULL"),
            Cell::Int(v) => write!(f, "{v}"),
            Cell::Float(v) => write!(f, "{v}"),
            Cell::Text(v) => write!(f, "{v:?}"),
        }
    }
}

/// Relative tolerance for floating-point values.
pub const FLOAT_TOLERANCE: f64 = 1e-9;

fn cells(array: &dyn Array) -> Result<Vec<Cell>, String> {
    let n = array.len();
    let ints = |f: &dyn Fn(usize) -> i128| {
        (0..n)
            .map(|i| {
                if array.is_null(i) {
                    Cell::Null
                } else {
                    Cell::Int(f(i))
                }
            })
            .collect()
    };
    let floats = |f: &dyn Fn(usize) -> f64| {
        (0..n)
            .map(|i| {
                if array.is_null(i) {
                    Cell::Null
                } else {
                    Cell::Float(f(i))
                }
            })
            .collect()
    };
    Ok(match array.data_type() {
        DataType::Int8 => ints(&|i| array.as_primitive::<Int8Type>().value(i) as i128),
        DataType::Int16 => ints(&|i| array.as_primitive::<Int16Type>().value(i) as i128),
        DataType::Int32 => ints(&|i| array.as_primitive::<Int32Type>().value(i) as i128),
        DataType::Int64 => ints(&|i| array.as_primitive::<Int64Type>().value(i) as i128),
        DataType::UInt8 => ints(&|i| array.as_primitive::<UInt8Type>().value(i) as i128),
        DataType::UInt16 => ints(&|i| array.as_primitive::<UInt16Type>().value(i) as i128),
        DataType::UInt32 => ints(&|i| array.as_primitive::<UInt32Type>().value(i) as i128),
        DataType::UInt64 => ints(&|i| array.as_primitive::<UInt64Type>().value(i) as i128),
        DataType::Float32 => floats(&|i| array.as_primitive::<Float32Type>().value(i) as f64),
        DataType::Float64 => floats(&|i| array.as_primitive::<Float64Type>().value(i)),
        DataType::Decimal128(_, scale) => {
            let scale = *scale as i32;
            floats(&|i| array.as_primitive::<Decimal128Type>().value(i) as f64 / 10f64.powi(scale))
        }
        _ => {
            let formatter = ArrayFormatter::try_new(array, &FormatOptions::default())
                .map_err(|e| e.to_string())?;
            (0..n)
                .map(|i| {
                    if array.is_null(i) {
                        Cell::Null
                    } else {
                        Cell::Text(formatter.value(i).to_string())
                    }
                })
                .collect()
        }
    })
}

/// All rows of `batches`, each as a vector of cells.
pub fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<Cell>>, String> {
    let mut out = Vec::new();
    for batch in batches {
        let columns: Vec<Vec<Cell>> = batch
            .columns()
            .iter()
            .map(|c| cells(c.as_ref()))
            .collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            out.push(columns.iter().map(|c| c[row].clone()).collect());
        }
    }
    Ok(out)
}

fn same(a: &Cell, b: &Cell) -> bool {
    match (a, b) {
        (Cell::Float(x), Cell::Float(y)) => {
            (x.is_nan() && y.is_nan())
                || (x - y).abs() <= FLOAT_TOLERANCE * x.abs().max(y.abs()).max(1.0)
        }
        (Cell::Int(x), Cell::Float(y)) | (Cell::Float(y), Cell::Int(x)) => {
            (*x as f64 - y).abs() <= FLOAT_TOLERANCE * y.abs().max(1.0)
        }
        _ => a == b,
    }
}

/// Compares `actual` with `expected` value by value, in order. The error
/// names the first difference.
pub fn compare(expected: &[RecordBatch], actual: &[RecordBatch]) -> Result<(), String> {
    let expected = rows(expected)?;
    let actual = rows(actual)?;
    if expected.len() != actual.len() {
        return Err(format!(
            "expected {} rows, got {}",
            expected.len(),
            actual.len()
        ));
    }
    for (i, (e, a)) in expected.iter().zip(&actual).enumerate() {
        if e.len() != a.len() {
            return Err(format!(
                "row {i}: expected {} columns, got {}",
                e.len(),
                a.len()
            ));
        }
        if let Some(col) = e.iter().zip(a).position(|(x, y)| !same(x, y)) {
            let show = |r: &Vec<Cell>| {
                r.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(format!(
                "row {i} column {col} differs:\n  expected: {}\n  actual:   {}",
                show(e),
                show(a)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Float64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn batch(values: Vec<f64>, names: Vec<&str>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Float64, false),
            Field::new("n", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(values)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn tolerates_float_noise_but_not_real_differences() {
        let a = batch(vec![1.0, 2.5e9], vec!["x", "y"]);
        let expected = std::slice::from_ref(&a);
        compare(
            expected,
            &[batch(vec![1.0 + 1e-12, 2.5e9 + 1e-3], vec!["x", "y"])],
        )
        .unwrap();
        let err = compare(expected, &[batch(vec![1.0, 2.6e9], vec!["x", "y"])]).unwrap_err();
        assert!(err.contains("row 1 column 0"), "{err}");
        let err = compare(expected, &[batch(vec![1.0, 2.5e9], vec!["x", "z"])]).unwrap_err();
        assert!(err.contains("column 1"), "{err}");
        let err = compare(expected, &[batch(vec![1.0], vec!["x"])]).unwrap_err();
        assert!(err.contains("expected 2 rows, got 1"), "{err}");
    }

    #[test]
    fn decimals_compare_by_value() {
        let d = Decimal128Array::from(vec![12345])
            .with_precision_and_scale(15, 2)
            .unwrap();
        let cells = cells(&d).unwrap();
        assert_eq!(cells, vec![Cell::Float(123.45)]);
    }
}
