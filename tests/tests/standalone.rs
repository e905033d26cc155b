//! The same 22 TPC-H queries through `SessionContext::standalone()`, and
//! three of them built with the DataFrame API.

use std::sync::Arc;

use ballista::client::SessionContextExt;
use ballista_tests::data::tpch_data;
use ballista_tests::{bench, compare};
use datafusion::arrow::datatypes::DataType;
use datafusion::functions_aggregate::expr_fn::{avg, count, sum};
use datafusion::logical_expr::{JoinType, cast};
use datafusion::prelude::*;
use datafusion::scalar::ScalarValue;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_22_tpch_queries_on_standalone_match_datafusion() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let standalone = SessionContext::standalone()
        .await
        .expect("standalone cluster");
    bench::register_tables(&standalone, &data)
        .await
        .expect("register");
    let local = ballista_tests::local_tpch_session(&data).await;

    let failures = ballista_tests::tpch_differences(&standalone, &local, 1..=22).await;
    assert!(
        failures.is_empty(),
        "{} queries differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn date(value: &str) -> Expr {
    cast(lit(value), DataType::Date32)
}

/// A decimal(15, 2) literal, the type of TPC-H's money and rate columns.
fn dec(hundredths: i128) -> Expr {
    lit(ScalarValue::Decimal128(Some(hundredths), 15, 2))
}

async fn q1(ctx: &SessionContext) -> datafusion::error::Result<DataFrame> {
    let disc_price = col("l_extendedprice") * (dec(100) - col("l_discount"));
    ctx.table("lineitem")
        .await?
        .filter(col("l_shipdate").lt_eq(date("1998-09-02")))?
        .aggregate(
            vec![col("l_returnflag"), col("l_linestatus")],
            vec![
                sum(col("l_quantity")).alias("sum_qty"),
                sum(col("l_extendedprice")).alias("sum_base_price"),
                sum(disc_price.clone()).alias("sum_disc_price"),
                sum(disc_price * (dec(100) + col("l_tax"))).alias("sum_charge"),
                avg(col("l_quantity")).alias("avg_qty"),
                avg(col("l_extendedprice")).alias("avg_price"),
                avg(col("l_discount")).alias("avg_disc"),
                count(lit(1)).alias("count_order"),
            ],
        )?
        .sort(vec![
            col("l_returnflag").sort(true, false),
            col("l_linestatus").sort(true, false),
        ])
}

async fn q3(ctx: &SessionContext) -> datafusion::error::Result<DataFrame> {
    let customer = ctx
        .table("customer")
        .await?
        .filter(col("c_mktsegment").eq(lit("BUILDING")))?;
    let orders = ctx
        .table("orders")
        .await?
        .filter(col("o_orderdate").lt(date("1995-03-15")))?;
    let lineitem = ctx
        .table("lineitem")
        .await?
        .filter(col("l_shipdate").gt(date("1995-03-15")))?;
    customer
        .join(
            orders,
            JoinType::Inner,
            &["c_custkey"],
            &["o_custkey"],
            None,
        )?
        .join(
            lineitem,
            JoinType::Inner,
            &["o_orderkey"],
            &["l_orderkey"],
            None,
        )?
        .aggregate(
            vec![col("l_orderkey"), col("o_orderdate"), col("o_shippriority")],
            vec![sum(col("l_extendedprice") * (dec(100) - col("l_discount"))).alias("revenue")],
        )?
        .select(vec![
            col("l_orderkey"),
            col("revenue"),
            col("o_orderdate"),
            col("o_shippriority"),
        ])?
        .sort(vec![
            col("revenue").sort(false, true),
            col("o_orderdate").sort(true, false),
        ])?
        .limit(0, Some(10))
}

async fn q6(ctx: &SessionContext) -> datafusion::error::Result<DataFrame> {
    ctx.table("lineitem")
        .await?
        .filter(
            col("l_shipdate")
                .gt_eq(date("1994-01-01"))
                .and(col("l_shipdate").lt(date("1995-01-01")))
                .and(col("l_discount").between(dec(5), dec(7)))
                .and(col("l_quantity").lt(dec(2400))),
        )?
        .aggregate(
            vec![],
            vec![sum(col("l_extendedprice") * col("l_discount")).alias("revenue")],
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_queries_built_with_the_dataframe_api_match_sql_on_datafusion() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let standalone = Arc::new(
        SessionContext::standalone()
            .await
            .expect("standalone cluster"),
    );
    bench::register_tables(&standalone, &data)
        .await
        .expect("register");
    let local = ballista_tests::local_tpch_session(&data).await;

    let built = [
        (1, q1(&standalone).await.expect("q1 plan")),
        (3, q3(&standalone).await.expect("q3 plan")),
        (6, q6(&standalone).await.expect("q6 plan")),
    ];
    for (q, df) in built {
        let actual = df
            .collect()
            .await
            .unwrap_or_else(|e| panic!("q{q} via DataFrame API: {e}"));
        let expected = bench::run_query(&local, q)
            .await
            .expect("single-process SQL");
        assert!(!expected.is_empty(), "q{q} has rows");
        compare::compare(&expected, &actual)
            .unwrap_or_else(|e| panic!("q{q} via DataFrame API: {e}"));
    }
}

/// A standalone cluster with the SF 0.1 TPC-H tables registered.
async fn standalone_with_tpch() -> SessionContext {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let ctx = SessionContext::standalone()
        .await
        .expect("standalone cluster");
    bench::register_tables(&ctx, &data).await.expect("register");
    ctx
}

/// What `statement` (an `EXPLAIN`) prints.
async fn explain_text(ctx: &SessionContext, statement: &str) -> String {
    let batches = ctx.sql(statement).await.unwrap().collect().await.unwrap();
    datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_stages_the_cluster_runs() {
    let ctx = standalone_with_tpch().await;
    let text = explain_text(
        &ctx,
        "EXPLAIN SELECT n_regionkey, count(*) FROM nation GROUP BY n_regionkey ORDER BY 1",
    )
    .await;
    assert!(text.contains("logical_plan"), "{text}");
    for expected in [
        "=== stage 1",
        "ShuffleWriterExec: stage=1, partitioning=Hash",
        "final) ===",
        "SortPreservingMergeExec",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

/// A join whose one side is small (by its statistics) broadcasts that side
/// to every task of the probe side's stage instead of shuffling both sides
/// by the join keys; a session can lower the threshold and get the
/// partitioned join back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_with_a_small_side_broadcasts_it_unless_the_session_says_otherwise() {
    let ctx = standalone_with_tpch().await;
    // At SF 0.1 the orders side (150,000 exact o_orderkey values, 1.2 MB)
    // is below the cluster's threshold and above DataFusion's 1 MiB.
    let query = "EXPLAIN SELECT count(*) FROM orders JOIN lineitem ON o_orderkey = l_orderkey";
    let text = explain_text(&ctx, query).await;
    assert!(text.contains("mode=CollectLeft"), "{text}");
    assert!(!text.contains("mode=Partitioned"), "{text}");
    assert!(
        !text.contains("partitioning=Hash([l_orderkey"),
        "lineitem is not shuffled:\n{text}"
    );

    // DataFusion's own thresholds, then none at all: both partition.
    for (bytes, rows) in [(1048576, 131072), (0, 0)] {
        for setting in [
            format!("SET datafusion.optimizer.hash_join_single_partition_threshold = {bytes}"),
            format!("SET datafusion.optimizer.hash_join_single_partition_threshold_rows = {rows}"),
        ] {
            ctx.sql(&setting).await.unwrap().collect().await.unwrap();
        }
        let text = explain_text(&ctx, query).await;
        assert!(text.contains("mode=Partitioned"), "{bytes}: {text}");
        assert!(
            text.contains("partitioning=Hash([l_orderkey"),
            "{bytes}: {text}"
        );
    }
}
