//! DataFusion's sqllogictest suite on a cluster of a scheduler and two
//! executors (the stock binaries, separate processes), compared record by
//! record with single-process DataFusion on the same files.
//!
//! Fails when a record that passes on DataFusion fails on the cluster and
//! the exclusion list (`tests/sqllogictest/exclusions.toml`) does not name it,
//! when a record the list names now passes (the list only shrinks), or when a
//! file cannot be run at all. Prints one line per file and a summary, and
//! writes every record's outcome to `$CARGO_TARGET_DIR/sqllogictest/report.json`.
//!
//! `cargo test -p ballista-tests --test sqllogictest -- window aggregate`
//! runs only the files whose path contains one of the words;
//! `BALLISTA_SLT_VERBOSE=1` prints each failure in full.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ballista_tests::cluster::TestCluster;
use ballista_tests::slt::{Exclusions, FileResult, Outcome, SuiteRun, suite_root};

#[tokio::main]
async fn main() {
    let started = Instant::now();
    let root = suite_root().unwrap_or_else(|e| fail(&e));
    let list_path = ballista_tests::tests_dir().join("sqllogictest/exclusions.toml");
    let exclusions = Exclusions::load(&list_path).unwrap_or_else(|e| fail(&e));
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let verbose = std::env::var_os("BALLISTA_SLT_VERBOSE").is_some();

    // The files read and write paths relative to the suite's folder; the
    // cluster's processes start there too, so every side resolves them alike.
    std::env::set_current_dir(&root)
        .unwrap_or_else(|e| fail(&format!("cannot enter {}: {e}", root.display())));
    let cluster = TestCluster::start(2, 2, None).await;
    println!(
        "sqllogictest: DataFusion's suite ({}) on a scheduler and 2 executors at {}",
        ballista_tests::slt::SUITE_CRATE,
        cluster.scheduler_url
    );

    let run = SuiteRun {
        root: root.clone(),
        exclusions,
        scheduler_url: cluster.scheduler_url.clone(),
        filters: filters.clone(),
        parallel_files: 3,
        statement_timeout: Duration::from_secs(120),
    };
    let results = run.run(|file| print_file(file, verbose)).await;

    let summary = Summary::of(&results, &run.exclusions);
    write_report(&results);
    summary.print(started.elapsed());
    drop(cluster);
    if !summary.ok(filters.is_empty()) {
        std::process::exit(1);
    }
}

fn fail(message: &str) -> ! {
    eprintln!("sqllogictest: {message}");
    std::process::exit(2);
}

fn print_file(file: &FileResult, verbose: bool) {
    if let Some(reason) = &file.excluded {
        println!("  {:<50} excluded: {reason}", file.file);
        return;
    }
    if let Some(error) = &file.error {
        println!("  {:<50} ERROR {error}", file.file);
        return;
    }
    let run: Vec<_> = file
        .records
        .iter()
        .filter(|r| r.local != Outcome::Skipped)
        .collect();
    let local_passed = run.iter().filter(|r| r.local == Outcome::Passed).count();
    let against: Vec<_> = run.iter().filter(|r| r.counts_against_cluster()).collect();
    println!(
        "  {:<50} {:>5} records, {:>5} pass on DataFusion, {:>3} fail on the cluster only  ({:.1}s)",
        file.file,
        run.len(),
        local_passed,
        against.len(),
        file.elapsed.as_secs_f64()
    );
    for record in against {
        let message = match &record.cluster {
            Outcome::Failed(m) => m.as_str(),
            _ => "",
        };
        let message = if verbose {
            message.to_string()
        } else {
            first_lines(message, 6)
        };
        println!(
            "      FAIL {} {}\n        {}",
            record.at,
            first_lines(&record.sql, 1),
            message.replace('\n', "\n        ")
        );
    }
}

fn first_lines(text: &str, n: usize) -> String {
    let mut lines: Vec<&str> = text.lines().take(n + 1).collect();
    if lines.len() > n {
        lines.truncate(n);
        lines.push("…");
    }
    lines.join("\n")
}

struct Summary {
    files_run: usize,
    files_excluded: usize,
    file_errors: Vec<String>,
    records: usize,
    skipped: usize,
    local_failed: usize,
    excluded: usize,
    passed_both: usize,
    against: usize,
    stale: Vec<String>,
}

impl Summary {
    fn of(results: &[FileResult], exclusions: &Exclusions) -> Self {
        let mut s = Summary {
            files_run: 0,
            files_excluded: 0,
            file_errors: Vec::new(),
            records: 0,
            skipped: 0,
            local_failed: 0,
            excluded: 0,
            passed_both: 0,
            against: 0,
            stale: Vec::new(),
        };
        for file in results {
            if file.excluded.is_some() {
                s.files_excluded += 1;
                continue;
            }
            if let Some(e) = &file.error {
                s.file_errors.push(format!("{}: {e}", file.file));
                continue;
            }
            s.files_run += 1;
            for r in &file.records {
                if r.local == Outcome::Skipped {
                    s.skipped += 1;
                    continue;
                }
                s.records += 1;
                if r.local != Outcome::Passed {
                    s.local_failed += 1;
                } else if r.excluded.is_some() {
                    s.excluded += 1;
                    if r.cluster == Outcome::Passed && exclusions.names_record(&r.at) {
                        s.stale.push(r.at.clone());
                    }
                } else if r.cluster == Outcome::Passed {
                    s.passed_both += 1;
                } else {
                    s.against += 1;
                }
            }
        }
        s
    }

    fn ok(&self, whole_suite: bool) -> bool {
        self.against == 0 && self.file_errors.is_empty() && (self.stale.is_empty() || !whole_suite)
    }

    fn print(&self, elapsed: Duration) {
        let counted = self.records - self.local_failed - self.excluded;
        println!();
        println!(
            "sqllogictest: {} files run, {} excluded; {} records run ({} skipped by their conditions)",
            self.files_run, self.files_excluded, self.records, self.skipped
        );
        println!(
            "  {} fail on single-process DataFusion too (not counted), {} excluded by the list",
            self.local_failed, self.excluded
        );
        println!(
            "  of the {counted} that pass on DataFusion: {} pass on the cluster, {} fail ({:.2}%)",
            self.passed_both,
            self.against,
            if counted == 0 {
                100.0
            } else {
                100.0 * self.passed_both as f64 / counted as f64
            }
        );
        for e in &self.file_errors {
            println!("  file not run: {e}");
        }
        for at in &self.stale {
            println!("  excluded record now passes, remove it from the list: {at}");
        }
        println!("  took {:.0}s", elapsed.as_secs_f64());
    }
}

fn write_report(results: &[FileResult]) {
    let Ok(dir) = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|_| {
            std::env::var("HOME").map(|h| PathBuf::from(h).join(".cache/ballista-target"))
        })
    else {
        return;
    };
    let outcome = |o: &Outcome| match o {
        Outcome::Passed => serde_json::json!("passed"),
        Outcome::Skipped => serde_json::json!("skipped"),
        Outcome::Failed(m) => serde_json::json!({ "failed": m }),
    };
    let files: Vec<_> = results
        .iter()
        .map(|f| {
            serde_json::json!({
                "file": f.file,
                "excluded": f.excluded,
                "error": f.error,
                "seconds": f.elapsed.as_secs_f64(),
                "records": f.records.iter().map(|r| serde_json::json!({
                    "at": r.at,
                    "sql": r.sql,
                    "datafusion": outcome(&r.local),
                    "cluster": outcome(&r.cluster),
                    "excluded": r.excluded,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let path = dir.join("sqllogictest").join("report.json");
    let _ = std::fs::create_dir_all(path.parent().expect("a parent"));
    if let Ok(text) = serde_json::to_string_pretty(&files) {
        let _ = std::fs::write(&path, text);
        println!(
            "sqllogictest: every record's outcome is in {}",
            path.display()
        );
    }
}
