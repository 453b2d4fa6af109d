"""
Export every pixel of a shop into one SQL table, one mapped task per pixel.

The shop's pixels are looked up at run time, so a pixel added to the shop is exported from the next
run on, and each pixel's events of the day get their own task (dynamic task mapping). All of them
write the same table at once: each stages its rows in a staging table of its own, and with
``replace_window`` each deletes and reloads only its own pixel's rows of the window, so the table
ends with every row of every pixel once.

Every Prisjakt task runs in the Airflow pool ``prisjakt``, which stands for the client id: create it
once with ``airflow pools set prisjakt 4 "Prisjakt client id"``, and at most four tasks spend the
client id's request budget at once. The last task runs once every export has finished.

Connections: ``prisjakt_default`` (the Prisjakt API) and ``prisjakt_warehouse`` (PostgreSQL,
MySQL/MariaDB or SQLite).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Param, task
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator

POOL = "prisjakt"
WAREHOUSE = "prisjakt_warehouse"

with DAG(
    dag_id="example_prisjakt_mapped",
    description="Daily Prisjakt events of every pixel of a shop into one SQL table, one mapped task per pixel",
    schedule=CronDataIntervalTimetable("0 1 * * *", timezone="UTC"),
    start_date=datetime(2026, 10, 1),
    catchup=False,
    max_active_runs=1,
    params={
        "shop_id": Param(4242, type="integer", description="The Prisjakt shop whose pixels are exported"),
        "table": Param("prisjakt_events", type="string", description="The table every pixel's rows go to"),
    },
    tags=["example", "prisjakt"],
) as dag:

    @task(pool=POOL)
    def list_pixels(shop_id: int) -> list[str]:
        """Return the ids of the shop's pixels (a handful of ids, never event data)."""
        return [str(pixel["id"]) for pixel in PrisjaktHook().get_pixels(shop_id)]

    exports = PrisjaktToSqlOperator.partial(
        task_id="events_to_sql",
        conn_id=WAREHOUSE,
        table="{{ params.table }}",
        write_disposition="replace_window",
        deferrable=True,
        pool=POOL,
        map_index_template="{{ task.pixel_id }}",
    ).expand(pixel_id=list_pixels(shop_id="{{ params.shop_id }}"))  # type: ignore[arg-type]

    @task
    def rows_loaded(summaries: Sequence[dict[str, Any]]) -> int:
        """Run once every pixel's export has finished; return the rows they loaded together."""
        return sum(summary["rows"] for summary in summaries)

    rows_loaded(exports.output)
