//! A corpus of SQL covering operators beyond TPC-H (windows, set operations,
//! grouping sets, distinct aggregates, outer and non-equi joins, correlated
//! subqueries, limits, functions), run on a two-executor embedded cluster and
//! compared value by value with single-process DataFusion.

use ballista::client::SessionContextExt;
use ballista::config::BallistaConfig;
use ballista_tests::bench;
use ballista_tests::data::tpch_data;
use datafusion::prelude::SessionContext;

const QUERIES: &[&str] = &[
    // Window functions.
    "SELECT n_regionkey, n_name, row_number() OVER (PARTITION BY n_regionkey ORDER BY n_name) AS rn FROM nation ORDER BY n_regionkey, rn",
    "SELECT o_custkey, o_orderkey, sum(o_totalprice) OVER (PARTITION BY o_custkey ORDER BY o_orderdate, o_orderkey ROWS UNBOUNDED PRECEDING) AS running FROM orders WHERE o_custkey < 60 ORDER BY o_custkey, o_orderdate, o_orderkey",
    "SELECT c_custkey, rank() OVER (ORDER BY c_acctbal DESC, c_custkey) AS r FROM customer ORDER BY r LIMIT 25",
    "SELECT l_orderkey, l_linenumber, lag(l_quantity) OVER (PARTITION BY l_orderkey ORDER BY l_linenumber) AS prev, avg(l_quantity) OVER (PARTITION BY l_orderkey) AS avg_q FROM lineitem WHERE l_orderkey < 400 ORDER BY 1, 2",
    "SELECT s_nationkey, s_suppkey, ntile(4) OVER (PARTITION BY s_nationkey ORDER BY s_acctbal, s_suppkey) AS q, first_value(s_name) OVER (PARTITION BY s_nationkey ORDER BY s_suppkey) AS first FROM supplier ORDER BY 1, 2",
    // Set operations.
    "SELECT n_name AS name FROM nation UNION ALL SELECT r_name FROM region ORDER BY name",
    "SELECT n_regionkey AS k FROM nation UNION SELECT r_regionkey FROM region ORDER BY k",
    "SELECT o_custkey FROM orders INTERSECT SELECT c_custkey FROM customer WHERE c_nationkey = 1 ORDER BY 1",
    "SELECT c_custkey FROM customer EXCEPT SELECT o_custkey FROM orders ORDER BY 1",
    // Distinct and aggregates.
    "SELECT DISTINCT l_returnflag, l_linestatus FROM lineitem ORDER BY 1, 2",
    "SELECT l_returnflag, count(DISTINCT l_suppkey) AS suppliers, count(DISTINCT l_partkey) AS parts FROM lineitem GROUP BY l_returnflag ORDER BY 1",
    "SELECT l_shipmode, min(l_shipdate), max(l_receiptdate), stddev(l_quantity), var_pop(l_discount), median(l_quantity), approx_distinct(l_orderkey) FROM lineitem GROUP BY l_shipmode ORDER BY 1",
    "SELECT o_orderpriority, count(*) FROM orders GROUP BY o_orderpriority HAVING count(*) > 29000 ORDER BY 1",
    "SELECT sum(l_extendedprice * (1 - l_discount)) AS revenue, avg(l_tax), count(*) FROM lineitem",
    // Grouping sets.
    "SELECT n_regionkey, count(*) AS n FROM nation GROUP BY ROLLUP(n_regionkey) ORDER BY n_regionkey NULLS FIRST",
    "SELECT l_returnflag, l_linestatus, sum(l_quantity) AS q FROM lineitem GROUP BY CUBE(l_returnflag, l_linestatus) ORDER BY 1 NULLS FIRST, 2 NULLS FIRST",
    "SELECT l_shipmode, l_returnflag, count(*) FROM lineitem GROUP BY GROUPING SETS ((l_shipmode), (l_returnflag), ()) ORDER BY 1 NULLS FIRST, 2 NULLS FIRST",
    // CTEs and subqueries.
    "WITH big AS (SELECT o_custkey, count(*) AS c FROM orders GROUP BY o_custkey HAVING count(*) > 25) SELECT c_name, c FROM big JOIN customer ON c_custkey = o_custkey ORDER BY c DESC, c_name",
    "SELECT c_custkey FROM customer c WHERE c_acctbal > (SELECT avg(c_acctbal) FROM customer c2 WHERE c2.c_nationkey = c.c_nationkey) AND c_custkey < 300 ORDER BY 1",
    "SELECT count(*) FROM orders WHERE o_custkey NOT IN (SELECT c_custkey FROM customer WHERE c_mktsegment = 'BUILDING')",
    // NOT IN with a NULL on the subquery side: no row qualifies.
    "SELECT count(*) FROM orders WHERE o_custkey NOT IN (SELECT CASE WHEN c_custkey = 7 THEN NULL ELSE c_custkey END FROM customer WHERE c_custkey < 5000)",
    "SELECT n_name FROM nation WHERE n_regionkey NOT IN (SELECT CASE WHEN o_orderkey = 3 THEN NULL ELSE o_custkey % 3 END FROM orders) ORDER BY 1",
    "SELECT count(*) FROM orders o WHERE EXISTS (SELECT 1 FROM lineitem l WHERE l.l_orderkey = o.o_orderkey AND l_quantity > 49)",
    "SELECT n_name, (SELECT count(*) FROM region) AS regions, (SELECT max(r_name) FROM region WHERE r_regionkey = n_regionkey) AS region FROM nation ORDER BY 1",
    "SELECT p_brand, count(*) FROM part WHERE p_size IN (SELECT DISTINCT ps_availqty % 50 FROM partsupp WHERE ps_suppkey = 7) GROUP BY p_brand ORDER BY 1",
    // Joins.
    "SELECT c_custkey, count(o_orderkey) AS orders FROM customer LEFT JOIN orders ON c_custkey = o_custkey WHERE c_custkey < 150 GROUP BY c_custkey ORDER BY 1",
    "SELECT n_nationkey, r_name FROM nation FULL OUTER JOIN region ON n_regionkey = r_regionkey AND r_name <> 'ASIA' ORDER BY 1 NULLS FIRST, 2 NULLS FIRST",
    "SELECT r_name, n_name FROM nation RIGHT JOIN region ON n_regionkey = r_regionkey AND n_nationkey < 5 ORDER BY 1, 2 NULLS FIRST",
    "SELECT count(*) FROM nation, region",
    "SELECT count(*) AS pairs FROM nation n1 JOIN nation n2 ON n1.n_nationkey < n2.n_nationkey",
    "SELECT n1.n_name, n2.n_name FROM nation n1 LEFT JOIN nation n2 ON n1.n_nationkey < n2.n_nationkey AND n2.n_regionkey = 0 WHERE n1.n_nationkey > 20 ORDER BY 1, 2 NULLS FIRST",
    "SELECT n_name, count(*) FROM supplier JOIN (SELECT n_nationkey AS s_nationkey, n_name FROM nation) AS n USING (s_nationkey) GROUP BY n_name ORDER BY 2 DESC, 1 LIMIT 5",
    "SELECT count(*) FROM partsupp LEFT ANTI JOIN lineitem ON ps_partkey = l_partkey AND ps_suppkey = l_suppkey",
    "SELECT count(*) FROM customer LEFT SEMI JOIN orders ON c_custkey = o_custkey",
    // Limits and ordering.
    "SELECT o_orderkey FROM orders ORDER BY o_orderkey LIMIT 10 OFFSET 100",
    "SELECT count(*) FROM (SELECT * FROM lineitem LIMIT 1000)",
    "SELECT o_orderkey, o_totalprice FROM orders ORDER BY o_totalprice DESC, o_orderkey LIMIT 7",
    "SELECT l_orderkey, l_linenumber, l_comment FROM lineitem WHERE l_orderkey < 30000 ORDER BY 1, 2",
    // Expressions and functions.
    "SELECT upper(substr(c_name, 1, 5)) AS u, length(c_address) AS len, CASE WHEN c_acctbal > 0 THEN 'pos' ELSE 'neg' END AS sign, round(c_acctbal * 1.1, 2) AS r FROM customer ORDER BY c_custkey LIMIT 60",
    "SELECT date_trunc('month', o_orderdate) AS m, count(*) FROM orders GROUP BY 1 ORDER BY 1",
    "SELECT extract(year FROM o_orderdate) AS y, o_orderstatus, count(*) FROM orders GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT count(*) FROM lineitem WHERE l_comment LIKE '%special%' OR l_shipinstruct = 'TAKE BACK RETURN'",
    "SELECT CASE WHEN n_regionkey = 0 THEN NULL ELSE n_regionkey END AS k, count(*) FROM nation GROUP BY 1 ORDER BY 1 NULLS FIRST",
    "SELECT cast(l_quantity AS INT) % 7 AS bucket, sum(cast(l_extendedprice AS DOUBLE)) AS price FROM lineitem GROUP BY 1 ORDER BY 1",
    "SELECT concat(n_name, '-', r_name) AS pair, coalesce(nullif(n_regionkey, 1), -1) AS k FROM nation JOIN region ON n_regionkey = r_regionkey ORDER BY 1",
    // Constants, values, empty results, nested types.
    "SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, NULL)) AS t(x, y) ORDER BY x",
    "SELECT * FROM nation WHERE n_nationkey < 0",
    "SELECT n_regionkey, count(*) FROM nation WHERE n_nationkey < 0 GROUP BY n_regionkey",
    "SELECT unnest(make_array(1, 2, 3)) AS v ORDER BY v",
    "SELECT r_regionkey, make_array(r_regionkey, r_regionkey * 2) AS arr, named_struct('name', r_name) AS s FROM region ORDER BY 1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_corpus_matches_datafusion_on_a_two_executor_cluster() {
    let data = tpch_data(env!("CARGO_TARGET_TMPDIR"), 0.1);
    let mut config = BallistaConfig::default();
    config.settings.executor.slots = 2;
    let cluster = SessionContext::standalone_with_config(config, 2)
        .await
        .expect("cluster");
    bench::register_tables(&cluster, &data).await.unwrap();
    let local = ballista_tests::local_tpch_session(&data).await;

    let failures = ballista_tests::sql_differences(&cluster, &local, QUERIES).await;
    assert!(
        failures.is_empty(),
        "{} of {} queries differ:\n{}",
        failures.len(),
        QUERIES.len(),
        failures.join("\n")
    );
}
