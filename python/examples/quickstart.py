"""Queries a Ballista cluster through the ADBC Flight SQL driver.

    python python/examples/quickstart.py grpc://localhost:50050 alice change-me
"""

import sys

import adbc_driver_flightsql.dbapi as flight_sql


def main(uri: str, user: str, password: str) -> None:
    with flight_sql.connect(uri, db_kwargs={"username": user, "password": password}) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 + 1 AS two")
            print(cur.fetch_arrow_table())
        tables = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        for catalog in tables:
            for schema in catalog["catalog_db_schemas"]:
                for table in schema["db_schema_tables"]:
                    print(f'{catalog["catalog_name"]}.{schema["db_schema_name"]}.{table["table_name"]}')


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
