//! Printing query results as a table, CSV or JSON lines.

use std::io::Write;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use clap::ValueEnum;

/// Output format of `ballista sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// A header line, then one line per row.
    Csv,
    /// One JSON object per row.
    Json,
}

/// Writes one statement's result.
pub fn write_result(
    out: &mut dyn Write,
    format: OutputFormat,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<(), String> {
    match format {
        OutputFormat::Table => {
            let table = if batches.iter().all(|b| b.num_rows() == 0) {
                arrow::util::pretty::pretty_format_batches(&[RecordBatch::new_empty(
                    schema.clone(),
                )])
            } else {
                arrow::util::pretty::pretty_format_batches(batches)
            }
            .map_err(|e| e.to_string())?;
            writeln!(out, "{table}").map_err(|e| e.to_string())
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            // An empty result still prints its header line.
            writer
                .write(&RecordBatch::new_empty(schema.clone()))
                .map_err(|e| e.to_string())?;
            for batch in batches {
                writer.write(batch).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(|e| e.to_string())?;
            }
            writer.finish().map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn csv_has_one_header_even_when_empty() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("x"), None])),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        write_result(
            &mut out,
            OutputFormat::Csv,
            &schema,
            &[batch.clone(), batch],
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a,b\n1,x\n2,\n1,x\n2,\n");
        let mut out = Vec::new();
        write_result(&mut out, OutputFormat::Csv, &schema, &[]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a,b\n");
    }
}
