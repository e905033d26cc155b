"""The cluster through the ADBC Flight SQL driver, as a Python user meets it."""

import decimal
import math
import os
import threading
import time

import adbc_driver_manager
import pandas
import polars
import pyarrow
import pyarrow.ipc
import pytest

from conftest import connect

LONG_QUERY = "SELECT count(*) FROM generate_series(1, 50000000000) WHERE value % 7 = 3"


def _same_value(expected, actual):
    if isinstance(expected, float) and isinstance(actual, float):
        return math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-9) or (
            math.isnan(expected) and math.isnan(actual)
        )
    if isinstance(expected, decimal.Decimal) and isinstance(actual, decimal.Decimal):
        return expected == actual
    return expected == actual


def _assert_same_table(expected: pyarrow.Table, actual: pyarrow.Table, what: str):
    assert actual.column_names == expected.column_names, what
    # String columns may come as string or string_view: compare values.
    expected_rows = expected.to_pylist()
    actual_rows = actual.to_pylist()
    assert len(actual_rows) == len(expected_rows), f"{what}: row count"
    for i, (want, got) in enumerate(zip(expected_rows, actual_rows)):
        for column in expected.column_names:
            assert _same_value(want[column], got[column]), (
                f"{what}: row {i} column {column}: expected {want[column]!r}, got {got[column]!r}"
            )


@pytest.mark.parametrize("n", range(1, 23))
def test_tpch_query_equals_single_process_datafusion(conn, expected_dir, n):
    sql = (expected_dir / f"q{n}.sql").read_text()
    expected = pyarrow.ipc.open_file(expected_dir / f"q{n}.arrow").read_all()
    with conn.cursor() as cursor:
        cursor.execute(sql)
        actual = cursor.fetch_arrow_table()
    assert actual.num_rows > 0, f"q{n} returned no rows"
    _assert_same_table(expected, actual, f"q{n}")


def test_pandas_and_polars_frames(conn):
    sql = "SELECT n_nationkey, n_name FROM nation WHERE n_regionkey = 1 ORDER BY n_nationkey"
    with conn.cursor() as cursor:
        cursor.execute(sql)
        frame = cursor.fetch_df()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame["n_nationkey"]) == [1, 2, 3, 17, 24]
    assert list(frame["n_name"]) == ["ARGENTINA", "BRAZIL", "CANADA", "PERU", "UNITED STATES"]
    with conn.cursor() as cursor:
        cursor.execute(sql)
        frame = polars.from_arrow(cursor.fetch_arrow_table())
    assert isinstance(frame, polars.DataFrame)
    assert frame["n_name"].to_list()[-1] == "UNITED STATES"


def test_prepared_statement_with_parameters(conn):
    sql = "SELECT n_name FROM nation WHERE n_regionkey = $1 AND n_nationkey > $2 ORDER BY n_name"
    with conn.cursor() as cursor:
        cursor.execute(sql, parameters=(1, 2))
        assert [r[0] for r in cursor.fetchall()] == ["CANADA", "PERU", "UNITED STATES"]
        # The same statement again with other values.
        cursor.execute(sql, parameters=(3, 0))
        assert [r[0] for r in cursor.fetchall()] == [
            "FRANCE", "GERMANY", "ROMANIA", "RUSSIA", "UNITED KINGDOM",
        ]
    with conn.cursor() as cursor:
        # The error class comes from the gRPC status code (INVALID_ARGUMENT),
        # which the driver checks against the status details.
        with pytest.raises(adbc_driver_manager.ProgrammingError) as error:
            cursor.execute(sql, parameters=(1,))
        assert "2 parameter(s) and 1 value(s)" in str(error.value)
    with conn.cursor() as cursor:
        with pytest.raises(adbc_driver_manager.ProgrammingError) as error:
            cursor.execute(sql)
        assert "2 parameter(s) and 0 value(s) were bound" in str(error.value)


def test_get_objects_lists_catalogs_schemas_tables_and_columns(conn):
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    catalogs = {c["catalog_name"]: c for c in objects}
    assert "datafusion" in catalogs, catalogs.keys()
    schemas = {s["db_schema_name"]: s for s in catalogs["datafusion"]["catalog_db_schemas"]}
    tables = {t["table_name"]: t for t in schemas["public"]["db_schema_tables"]}
    assert {"lineitem", "orders", "nation", "region"} <= tables.keys()
    assert tables["nation"]["table_type"] == "TABLE"
    columns = [c["column_name"] for c in tables["nation"]["table_columns"]]
    assert columns == ["n_nationkey", "n_name", "n_regionkey", "n_comment"]
    schema = conn.adbc_get_table_schema("lineitem", catalog_filter="datafusion",
                                        db_schema_filter="public")
    assert schema.field("l_orderkey").type == pyarrow.int64()
    assert schema.field("l_quantity").type == pyarrow.decimal128(15, 2)
    assert schema.field("l_shipdate").type == pyarrow.date32()
    # Plain strings, not string views (the JDBC driver refuses those).
    assert schema.field("l_comment").type == pyarrow.string()
    with conn.cursor() as cursor:
        cursor.execute("SELECT l_comment FROM lineitem LIMIT 1")
        assert cursor.fetch_arrow_table().schema.field("l_comment").type == pyarrow.string()


def test_a_bad_query_fails_clearly_and_the_next_one_runs(conn):
    with conn.cursor() as cursor:
        with pytest.raises(adbc_driver_manager.ProgrammingError) as error:
            cursor.execute("SELECT no_such_column FROM nation")
        assert "no_such_column" in str(error.value)
        assert "INVALID_ARGUMENT" in str(error.value), error.value
        with pytest.raises(adbc_driver_manager.ProgrammingError) as error:
            cursor.execute("SELEC 1")
        assert "SELEC" in str(error.value)
        # A failure while the job runs (not while planning).
        with pytest.raises(adbc_driver_manager.Error) as error:
            cursor.execute("SELECT CAST(n_name AS INT) FROM nation")
        assert "ALGERIA" in str(error.value) or "Cast" in str(error.value), error.value
        assert "mismatch" not in str(error.value), error.value
        cursor.execute("SELECT count(*) FROM region")
        assert cursor.fetchone()[0] == 5


def test_a_cancelled_query_fails_clearly_and_the_next_one_runs(uri, conn):
    outcome = {}

    def run():
        with connect(uri) as own:
            with own.cursor() as cursor:
                outcome["cursor"] = cursor
                try:
                    cursor.execute(LONG_QUERY)
                    outcome["rows"] = cursor.fetchall()
                except adbc_driver_manager.Error as error:
                    outcome["error"] = error

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 30
    while "cursor" not in outcome and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)
    outcome["cursor"].adbc_cancel()
    worker.join(60)
    assert not worker.is_alive(), "the cancelled query did not return"
    assert "error" in outcome, f"the long query was not cancelled: {outcome}"
    assert "cancel" in str(outcome["error"]).lower(), outcome["error"]
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM nation")
        assert cursor.fetchone()[0] == 25


def test_a_view_created_by_one_connection_is_seen_by_another(uri, conn):
    with conn.cursor() as cursor:
        cursor.execute("CREATE VIEW py_europe AS SELECT n_name FROM nation WHERE n_regionkey = 3")
    try:
        with connect(uri) as other, other.cursor() as cursor:
            cursor.execute("SELECT n_name FROM py_europe ORDER BY n_name")
            assert [r[0] for r in cursor.fetchall()] == [
                "FRANCE", "GERMANY", "ROMANIA", "RUSSIA", "UNITED KINGDOM",
            ]
            objects = other.adbc_get_objects(depth="tables").read_all().to_pylist()
            tables = {
                t["table_name"]: t["table_type"]
                for c in objects
                for s in c["catalog_db_schemas"]
                for t in s["db_schema_tables"]
            }
            assert tables.get("py_europe") == "VIEW", tables
    finally:
        with conn.cursor() as cursor:
            cursor.execute("DROP VIEW py_europe")
    with conn.cursor() as cursor:
        with pytest.raises(adbc_driver_manager.Error) as error:
            cursor.execute("SELECT * FROM py_europe")
        assert "py_europe" in str(error.value)


def test_a_view_made_before_the_scheduler_restarted_is_still_there(conn):
    # tests/tests/python_clients.rs made py_kept with another connection,
    # then restarted the scheduler.
    with conn.cursor() as cursor:
        cursor.execute("SELECT r_name FROM py_kept ORDER BY r_name")
        assert [r[0] for r in cursor.fetchall()] == ["AFRICA", "AMERICA"]


def test_executemany_inserts_every_row(conn):
    folder = os.environ["BALLISTA_WRITABLE"]
    with conn.cursor() as cursor:
        cursor.execute(
            "CREATE EXTERNAL TABLE py_sink (id BIGINT, name VARCHAR) STORED AS CSV "
            f"LOCATION '{folder}/py_sink/' OPTIONS ('format.has_header' 'true')"
        )
        try:
            cursor.executemany(
                "INSERT INTO py_sink VALUES ($1, $2)", [(1, "a"), (2, "b"), (3, "c")]
            )
            cursor.execute("SELECT count(*), sum(id), min(name) FROM py_sink")
            assert cursor.fetchone() == (3, 6, "a")
        finally:
            cursor.execute("DROP TABLE py_sink")
