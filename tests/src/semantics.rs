//! Small data sets and helpers for tests that a query means the same on the
//! cluster as in single-process DataFusion: each query runs in a remote
//! session and in a local one over the same files, and both answers are
//! compared (as text, row by row) with each other and with the known value.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use parquet::arrow::ArrowWriter;

use crate::cluster::TestCluster;

/// A cluster of a scheduler and two executors, and a session on it plus a
/// single-process DataFusion session, both with the same statements run.
pub struct TwoEngines {
    /// The processes; stopped when this is dropped.
    pub cluster: TestCluster,
    /// A session on the cluster.
    pub remote: SessionContext,
    /// Single-process DataFusion.
    pub local: SessionContext,
}

impl TwoEngines {
    /// Starts the cluster and runs `setup` in both sessions.
    pub async fn start(setup: &[String]) -> TwoEngines {
        use ballista::client::SessionContextExt;
        let cluster = TestCluster::start(2, 2, None).await;
        let remote = SessionContext::remote(&cluster.scheduler_url)
            .await
            .expect("connect to the cluster");
        // These queries guard what a stage of several tasks means: with the
        // default task input size, their small tables would run each stage
        // as one task.
        rows(&remote, "SET ballista.task_input_bytes = 0")
            .await
            .expect("the cluster takes ballista.task_input_bytes");
        // And partitioned joins stay partitioned: their small build sides
        // would otherwise be broadcast once they have run (the sqllogictest
        // run on the cluster covers that way).
        rows(&remote, "SET ballista.adaptive_broadcast_bytes = 0")
            .await
            .expect("the cluster takes ballista.adaptive_broadcast_bytes");
        let local = SessionContext::new();
        let engines = TwoEngines {
            cluster,
            remote,
            local,
        };
        for statement in setup {
            engines.run_both(statement).await;
        }
        engines
    }

    /// Runs a statement in both sessions, panicking with the message of
    /// whichever fails.
    pub async fn run_both(&self, sql: &str) {
        for (name, ctx) in [("cluster", &self.remote), ("DataFusion", &self.local)] {
            rows(ctx, sql)
                .await
                .unwrap_or_else(|e| panic!("{name} fails {sql}: {e}"));
        }
    }

    /// The rows of `sql` (cells joined by `|`), equal on both engines.
    pub async fn same(&self, sql: &str) -> Vec<String> {
        let local = rows(&self.local, sql)
            .await
            .unwrap_or_else(|e| panic!("DataFusion fails {sql}: {e}"));
        let remote = rows(&self.remote, sql)
            .await
            .unwrap_or_else(|e| panic!("the cluster fails {sql}: {e}"));
        assert_eq!(remote, local, "the cluster and DataFusion differ on {sql}");
        remote
    }

    /// Like [`same`](Self::same), and the rows must be `expected`.
    pub async fn expect(&self, sql: &str, expected: &[&str]) {
        let rows = self.same(sql).await;
        assert_eq!(rows, expected, "{sql}");
    }
}

/// Every row of `sql` as text, cells joined by `|` (`NULL` for nulls).
pub async fn rows(ctx: &SessionContext, sql: &str) -> datafusion::error::Result<Vec<String>> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in &batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    Ok(out)
}

/// A deterministic pseudo-random sequence (no dependency, same on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// `agg.csv` in `dir`: 100 rows of `c1` (a letter a–e), `c2` (1–5), `c3`
/// (an integer, empty in every third row) and `c9` (distinct integers);
/// returns the `CREATE EXTERNAL TABLE agg` statement.
pub fn write_agg_csv(dir: &Path) -> String {
    let mut random = Lcg(7);
    let mut text = String::from("c1,c2,c3,c9\n");
    for i in 0..100u64 {
        let c1 = ["a", "b", "c", "d", "e"][(random.next() % 5) as usize];
        let c2 = random.next() % 5 + 1;
        let c3 = if i % 3 == 0 {
            String::new()
        } else {
            (random.next() % 1000).to_string()
        };
        let c9 = i * 7919 % 100_003 + random.next() % 7;
        text.push_str(&format!("{c1},{c2},{c3},{c9}\n"));
    }
    let path = dir.join("agg.csv");
    std::fs::write(&path, text).expect("write agg.csv");
    format!(
        "CREATE EXTERNAL TABLE agg (c1 VARCHAR, c2 INT, c3 INT, c9 BIGINT) STORED AS CSV \
         LOCATION '{}' OPTIONS ('format.has_header' 'true')",
        path.display()
    )
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).expect("create parquet file");
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).expect("parquet writer");
    writer.write(batch).expect("write parquet");
    writer.close().expect("close parquet");
}

/// `build/` (ids 0–99 over four files) and `probe/` (each id 50 times over
/// four files) in `dir`; returns their `CREATE EXTERNAL TABLE` statements.
pub fn write_build_and_probe(dir: &Path) -> Vec<String> {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    for table in ["build", "probe"] {
        std::fs::create_dir_all(dir.join(table)).expect("table folder");
    }
    for file in 0..4i64 {
        let ids: Vec<i64> = (file * 25..file * 25 + 25).collect();
        let build = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(ids.clone())) as ArrayRef],
        )
        .expect("build batch");
        write_parquet(&dir.join(format!("build/part-{file}.parquet")), &build);
        let repeated: Vec<i64> = ids.iter().flat_map(|id| [*id; 50]).collect();
        let probe = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(repeated)) as ArrayRef],
        )
        .expect("probe batch");
        write_parquet(&dir.join(format!("probe/part-{file}.parquet")), &probe);
    }
    ["build", "probe"]
        .iter()
        .map(|t| {
            format!(
                "CREATE EXTERNAL TABLE {t} STORED AS PARQUET LOCATION '{}/'",
                dir.join(t).display()
            )
        })
        .collect()
}

/// `staff/` in `dir`: three parquet files of (staff_no, dept, salary);
/// returns its `CREATE EXTERNAL TABLE` statement.
pub fn write_staff(dir: &Path) -> String {
    let schema = Arc::new(Schema::new(vec![
        Field::new("staff_no", DataType::Int32, false),
        Field::new("dept", DataType::Utf8, false),
        Field::new("salary", DataType::Int32, false),
    ]));
    std::fs::create_dir_all(dir.join("staff")).expect("staff folder");
    let depts = ["sales", "ops", "sales", "dev"];
    for file in 0..3i32 {
        let numbers: Vec<i32> = (file * 8..file * 8 + 8).collect();
        let dept: Vec<&str> = numbers.iter().map(|n| depts[*n as usize % 4]).collect();
        let salary: Vec<i32> = numbers.iter().map(|n| 1000 + (n * 37) % 500).collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int32Array::from(numbers)) as ArrayRef,
                Arc::new(StringArray::from(dept)),
                Arc::new(Int32Array::from(salary)),
            ],
        )
        .expect("staff batch");
        write_parquet(&dir.join(format!("staff/part-{file}.parquet")), &batch);
    }
    format!(
        "CREATE EXTERNAL TABLE staff STORED AS PARQUET LOCATION '{}/'",
        dir.join("staff").display()
    )
}
