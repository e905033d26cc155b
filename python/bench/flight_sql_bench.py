"""Flight SQL from Python, timed: the fixed cost of a small query, and the 22
TPC-H queries, through the ADBC driver against a running cluster whose
scheduler declares the TPC-H tables.

    python python/bench/flight_sql_bench.py --uri grpc://localhost:50050 \
        --user alice --password change-me [--small 100] [--iterations 1] [--output out.json]

Run `ballista tpch --scheduler http://localhost:50050 --data DIR` against the
same cluster for the CLI's times next to these.
"""

import argparse
import json
import pathlib
import statistics
import time

import adbc_driver_flightsql.dbapi as flight_sql

QUERIES = pathlib.Path(__file__).resolve().parents[2] / "bin" / "tpch" / "queries"


def single_statement(n: int) -> str:
    """TPC-H query n as one statement: q15's view becomes a CTE."""
    parts = [p.strip() for p in (QUERIES / f"q{n}.sql").read_text().split(";") if p.strip()]
    if len(parts) == 1:
        return parts[0]
    view = parts[0].removeprefix("create view ")
    name, body = view.split(" as", 1)
    return f"with {name} as ({body}) {parts[1]}"


def timed(cursor, sql: str) -> tuple[float, int]:
    start = time.perf_counter()
    cursor.execute(sql)
    rows = cursor.fetch_arrow_table().num_rows
    return time.perf_counter() - start, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--small", type=int, default=100, help="runs of the small query")
    parser.add_argument("--iterations", type=int, default=1, help="runs per TPC-H query")
    parser.add_argument("--output", help="write the figures as JSON here")
    args = parser.parse_args()

    report = {}
    with flight_sql.connect(
        args.uri, db_kwargs={"username": args.user, "password": args.password}
    ) as conn, conn.cursor() as cur:
        timed(cur, "SELECT 1")  # warm-up: connections to scheduler and executors
        small = sorted(timed(cur, "SELECT 1")[0] * 1000 for _ in range(args.small))
        report["small_query_ms"] = {
            "median": statistics.median(small),
            "p95": small[int(len(small) * 0.95) - 1],
            "runs": len(small),
        }
        print(f"small query (SELECT 1), {len(small)} runs: median "
              f"{report['small_query_ms']['median']:.1f} ms, p95 {report['small_query_ms']['p95']:.1f} ms")
        total = 0.0
        report["tpch_ms"] = {}
        for n in range(1, 23):
            times = []
            for _ in range(args.iterations):
                seconds, rows = timed(cur, single_statement(n))
                times.append(seconds)
            mean = sum(times) / len(times)
            total += mean
            report["tpch_ms"][f"q{n}"] = mean * 1000
            print(f"q{n:<3} {mean * 1000:9.1f} ms  {rows} rows")
        report["tpch_total_ms"] = total * 1000
        print(f"total {total * 1000:9.1f} ms")
    if args.output:
        pathlib.Path(args.output).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
