"""
Test DAG: a manually triggered run, as a newcomer starts one, with and without the templates the
empty-window error suggests.

``data_interval_window`` exports the run's data interval (there is none without a logical date, and
it has no length with ``schedule=None``); ``suggested_window`` passes the ``start``/``end`` that the
error message suggests, exactly as it prints them. Both write the SQLite connection
``prisjakt_test_warehouse``. Parsing touches no connection.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator
from airflow_provider_prisjakt.transfers.window import DAY_BEFORE_THE_RUN

with DAG(
    dag_id="prisjakt_test_manual_window",
    schedule=None,
    start_date=datetime(2026, 10, 1),
    catchup=False,
    tags=["test", "prisjakt"],
) as dag:
    common = {"shop_id": 4242, "conn_id": "prisjakt_test_warehouse", "asset_alias": None}
    PrisjaktToSqlOperator(task_id="data_interval_window", table="events_by_interval", **common)
    PrisjaktToSqlOperator(
        task_id="suggested_window",
        table="events_by_suggestion",
        start=DAY_BEFORE_THE_RUN[0],
        end=DAY_BEFORE_THE_RUN[1],
        **common,
    )
