"""
Test DAG: the mapped pattern under a real scheduler. The shop's pixels are listed at run time, and
each pixel's events are exported into one PostgreSQL table, one SQLite table and one S3 prefix by
one mapped task per pixel and destination, every Prisjakt task in the pool ``prisjakt`` (one
client id).

The shop, window, table, bucket and prefix come from the run's conf; the connections are
``prisjakt_default``, ``prisjakt_test_postgres``, ``prisjakt_test_sqlite`` and ``prisjakt_test_aws``.
Parsing touches no connection.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
from airflow_provider_prisjakt.transfers.prisjakt_to_s3 import PrisjaktToS3Operator
from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator

POOL = "prisjakt"
#: Each destination's mapped export task (``events_to_<name>``) and the connection it writes to.
SQL_DESTINATIONS = {"postgres": "prisjakt_test_postgres", "sqlite": "prisjakt_test_sqlite"}

with DAG(
    dag_id="prisjakt_test_mapped",
    schedule=None,
    start_date=datetime(2026, 10, 1),
    catchup=False,
    tags=["test", "prisjakt"],
) as dag:

    @task(pool=POOL)
    def list_pixels(shop_id: int | str) -> list[str]:
        """Return the ids of the shop's pixels."""
        return [str(pixel["id"]) for pixel in PrisjaktHook().get_pixels(shop_id)]

    pixels = list_pixels("{{ dag_run.conf['shop_id'] }}")
    # What every mapped export shares: the window, the pool, and a map index named after the pixel.
    common = {
        "start": "{{ dag_run.conf['start'] }}",
        "end": "{{ dag_run.conf['end'] }}",
        "pool": POOL,
        "map_index_template": "{{ task.pixel_id }}",
    }

    for name, conn_id in SQL_DESTINATIONS.items():
        PrisjaktToSqlOperator.partial(
            task_id=f"events_to_{name}",
            conn_id=conn_id,
            table="{{ dag_run.conf['table'] }}",
            write_disposition="replace_window",
            **common,
        ).expand(pixel_id=pixels)

    PrisjaktToS3Operator.partial(
        task_id="events_to_s3",
        s3_bucket="{{ dag_run.conf['bucket'] }}",
        s3_key="{{ dag_run.conf['prefix'] }}",
        aws_conn_id="prisjakt_test_aws",
        **common,
    ).expand(pixel_id=pixels)
