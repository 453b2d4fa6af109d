"""
Test DAG: one day of a shop's conversion events into a SQL table, for a ``dag.test()`` run.

By default it reads ``prisjakt_default`` (the sandbox) and writes ``prisjakt_test_warehouse`` (a
SQLite file); a test sets both as environment variables before running it, and may name others in
the run's conf. Parsing touches no connection.
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
    params={
        "shop_id": 4343,
        "start": "2026-10-05T00:00:00Z",
        "end": "2026-10-06T00:00:00Z",
        "prisjakt_conn_id": "prisjakt_default",
        "warehouse": "prisjakt_test_warehouse",
        "table": "prisjakt_test_events",
    },
    tags=["test", "prisjakt"],
) as dag:
    PrisjaktToSqlOperator(
        task_id="events_to_sql",
        resource="events",
        shop_id="{{ params.shop_id }}",
        start="{{ params.start }}",
        end="{{ params.end }}",
        prisjakt_conn_id="{{ params.prisjakt_conn_id }}",
        conn_id="{{ params.warehouse }}",
        table="{{ params.table }}",
        write_disposition="merge",
    )
