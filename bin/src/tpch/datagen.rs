//! Generates TPC-H data as parquet with the `tpchgen` generators: one folder
//! per table, several files for the large tables so scans can be split.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow,
    RecordBatchIterator, RegionArrow, SupplierArrow,
};

/// The eight TPC-H tables.
pub const TABLES: [&str; 8] = [
    "customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier",
];

const MARKER: &str = ".ballista-tpch";
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Number of files a table is written as at `scale`.
fn parts(table: &str, scale: f64) -> usize {
    let per_scale = match table {
        "lineitem" => 4.0,
        "orders" | "partsupp" => 2.0,
        _ => 0.0,
    };
    ((scale * per_scale).ceil() as usize).max(1)
}

fn batches(table: &str, scale: f64, part: i32, count: i32) -> Box<dyn RecordBatchIterator> {
    match table {
        "customer" => Box::new(CustomerArrow::new(CustomerGenerator::new(
            scale, part, count,
        ))),
        "lineitem" => Box::new(LineItemArrow::new(LineItemGenerator::new(
            scale, part, count,
        ))),
        "nation" => Box::new(NationArrow::new(NationGenerator::new(scale, part, count))),
        "orders" => Box::new(OrderArrow::new(OrderGenerator::new(scale, part, count))),
        "part" => Box::new(PartArrow::new(PartGenerator::new(scale, part, count))),
        "partsupp" => Box::new(PartSuppArrow::new(PartSuppGenerator::new(
            scale, part, count,
        ))),
        "region" => Box::new(RegionArrow::new(RegionGenerator::new(scale, part, count))),
        "supplier" => Box::new(SupplierArrow::new(SupplierGenerator::new(
            scale, part, count,
        ))),
        other => panic!("unknown TPC-H table {other}"),
    }
}

/// Whether `dir` already holds data generated at `scale`.
pub fn has_data(dir: &Path, scale: f64) -> bool {
    std::fs::read_to_string(dir.join(MARKER))
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .is_some_and(|s| (s - scale).abs() < 1e-12)
        && TABLES.iter().all(|t| dir.join(t).is_dir())
}

/// Whether `dir` looks like a TPC-H data folder (one folder per table).
pub fn has_tables(dir: &Path) -> bool {
    TABLES.iter().all(|t| dir.join(t).is_dir())
}

/// Generates all tables into `dir` (replacing earlier data), reporting
/// progress through `progress`. Returns the bytes written.
pub fn generate(dir: &Path, scale: f64, progress: &(dyn Fn(&str) + Sync)) -> Result<u64, String> {
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(format!(
            "invalid scale factor {scale}: expected a positive number"
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(dir.join(MARKER));
    let mut work: Vec<(&str, usize, usize)> = Vec::new();
    for table in TABLES {
        let table_dir = dir.join(table);
        if table_dir.exists() {
            std::fs::remove_dir_all(&table_dir)
                .map_err(|e| format!("cannot clear {}: {e}", table_dir.display()))?;
        }
        std::fs::create_dir_all(&table_dir)
            .map_err(|e| format!("cannot create {}: {e}", table_dir.display()))?;
        let n = parts(table, scale);
        work.extend((1..=n).map(|p| (table, p, n)));
    }
    // Largest first keeps both cores busy until the end.
    work.sort_by_key(|(t, _, _)| match *t {
        "lineitem" => 0,
        "orders" => 1,
        "partsupp" => 2,
        _ => 3,
    });
    let total = work.len();
    let queue = Mutex::new(work.into_iter());
    let done = Mutex::new((0usize, 0u64));
    let error: Mutex<Option<String>> = Mutex::new(None);
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().expect("queue lock").next();
                    let Some((table, part, count)) = next else {
                        return;
                    };
                    if error.lock().expect("error lock").is_some() {
                        return;
                    }
                    let path = dir.join(table).join(format!("part-{part}.parquet"));
                    match write_part(&path, batches(table, scale, part as i32, count as i32)) {
                        Ok(bytes) => {
                            let mut d = done.lock().expect("progress lock");
                            d.0 += 1;
                            d.1 += bytes;
                            progress(&format!(
                                "generated {table} part {part}/{count} ({}/{total} files, {:.1}s)",
                                d.0,
                                started.elapsed().as_secs_f64()
                            ));
                        }
                        Err(e) => *error.lock().expect("error lock") = Some(e),
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().expect("error lock") {
        return Err(e);
    }
    std::fs::write(dir.join(MARKER), scale.to_string())
        .map_err(|e| format!("cannot write marker: {e}"))?;
    Ok(done.into_inner().expect("progress lock").1)
}

fn write_part(path: &PathBuf, batches: Box<dyn RecordBatchIterator>) -> Result<u64, String> {
    let temp = path.with_extension("parquet.tmp");
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let file = File::create(&temp).map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
    let schema = batches.schema().clone();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props))
        .map_err(|e| format!("parquet writer: {e}"))?;
    for batch in batches {
        let batch: RecordBatch = batch;
        writer
            .write(&batch)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    writer
        .close()
        .map_err(|e| format!("finishing {}: {e}", path.display()))?;
    std::fs::rename(&temp, path).map_err(|e| format!("cannot rename {}: {e}", temp.display()))?;
    Ok(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
}
