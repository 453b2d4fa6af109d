"""
Test DAG: one day of a shop's conversion events into a SQL table, for a ``dag.test()`` run.

The test sets the connections ``prisjakt_default`` (the sandbox) and ``prisjakt_test_warehouse``
(a SQLite file) as environment variables before running it; parsing touches neither.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator

with DAG(
    dag_id="prisjakt_test_sql",
    schedule=None,
    start_date=datetime(2026, 10, 1),
    catchup=False,
    params={"shop_id": 4343, "start": "2026-10-05T00:00:00Z", "end": "2026-10-06T00:00:00Z"},
    tags=["test", "prisjakt"],
) as dag:
    PrisjaktToSqlOperator(
        task_id="events_to_sql",
        resource="events",
        shop_id="{{ params.shop_id }}",
        start="{{ params.start }}",
        end="{{ params.end }}",
        conn_id="prisjakt_test_warehouse",
        table="prisjakt_test_events",
        write_disposition="merge",
    )
