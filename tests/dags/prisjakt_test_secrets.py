"""
Test DAG: one day of a shop's events into SQLite, over an OAuth2 connection, for the secret-leak check.

The test sets the connections ``prisjakt_test_secrets`` (the sandbox, with ``auth_type`` oauth2)
and ``prisjakt_test_secrets_warehouse`` (a SQLite file) as environment variables before running it,
then searches the metadata database, the task logs and the lineage for the secret and the tokens.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator

DAG_ID = "prisjakt_test_secrets"

with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2026, 10, 1),
    catchup=False,
    params={"shop_id": 4343, "start": "2026-10-05T00:00:00Z", "end": "2026-10-06T00:00:00Z"},
    tags=["test", "prisjakt"],
) as dag:
    PrisjaktToSqlOperator(
        task_id="events_to_sql",
        prisjakt_conn_id="prisjakt_test_secrets",
        shop_id="{{ params.shop_id }}",
        start="{{ params.start }}",
        end="{{ params.end }}",
        conn_id="prisjakt_test_secrets_warehouse",
        table="prisjakt_secret_events",
    )
