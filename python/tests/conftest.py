"""Connection settings for the suite, from the environment the Rust test
(tests/tests/python_clients.rs) sets after starting a cluster."""

import os
import pathlib

import adbc_driver_flightsql.dbapi as flight_sql
import pytest


def _setting(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: this suite is run by tests/tests/python_clients.rs "
            "(cargo test, or scripts/test.sh), which starts a cluster first"
        )
    return value


@pytest.fixture(scope="session")
def uri():
    return _setting("BALLISTA_FLIGHT_SQL_URI")


@pytest.fixture(scope="session")
def expected_dir():
    return pathlib.Path(_setting("BALLISTA_EXPECTED"))


def connect(uri):
    return flight_sql.connect(
        uri,
        db_kwargs={
            "username": _setting("BALLISTA_USER"),
            "password": _setting("BALLISTA_PASSWORD"),
        },
    )


@pytest.fixture
def conn(uri):
    with connect(uri) as connection:
        yield connection
