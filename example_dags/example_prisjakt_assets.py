"""
Schedule downstream work on what the Prisjakt exports wrote, with Airflow 3 assets.

``example_prisjakt_assets`` loads each pixel's events of the day into the warehouse table
``prisjakt_events``, one mapped task per pixel. Each export declares the asset alias
``prisjakt/example_prisjakt_assets/events_to_warehouse`` (named from its DAG and task) and, when it
succeeds, attaches to it the table it wrote, e.g. ``postgres://db.example.com:5432/warehouse/public/prisjakt_events``,
with the run's figures as the event's extra: the pixel, rows, window, requests. That is one asset
event per mapped task.

Two consumers show the two ways to follow it:

* ``example_prisjakt_assets_each_pixel`` is scheduled on the alias, so it runs as soon as any
  pixel's export has landed (events that arrive close together are taken by one run). Here it
  logs each event's figures.
* ``example_prisjakt_assets_daily_report`` waits for the whole day: it is scheduled on the asset
  ``prisjakt_events_loaded``, which the producer's last task updates once every mapped export has
  succeeded, with the day's totals as its extra. This is the place for dbt or a report.

On Airflow 2 the exports record no asset events, so the first consumer is not scheduled there; the
last task's asset works there too, as a dataset. Connections: ``prisjakt_default`` and ``prisjakt_warehouse``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import DAG, Asset, AssetAlias, task
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator
from airflow_provider_prisjakt.version_compat import AIRFLOW_V_3_0_PLUS

log = logging.getLogger(__name__)

SHOP_ID = 4242
#: The alias the mapped export declares by default: ``prisjakt/<dag_id>/<task_id>``.
EACH_PIXEL = AssetAlias(name="prisjakt/example_prisjakt_assets/events_to_warehouse")
#: Updated once per run, after every pixel's export has succeeded.
EVENTS_LOADED = Asset("prisjakt_events_loaded")

with DAG(
    dag_id="example_prisjakt_assets",
    description="Prisjakt events per pixel into the warehouse, announced as Airflow assets",
    schedule=CronDataIntervalTimetable("0 1 * * *", timezone="UTC"),
    start_date=datetime(2026, 10, 1),
    catchup=False,
    max_active_runs=1,
    tags=["example", "prisjakt"],
) as dag:

    @task
    def list_pixels(shop_id: int) -> list[str]:
        """Return the ids of the shop's pixels."""
        return [str(pixel["id"]) for pixel in PrisjaktHook().get_pixels(shop_id)]

    exports = PrisjaktToSqlOperator.partial(
        task_id="events_to_warehouse",
        resource="events",
        conn_id="prisjakt_warehouse",
        table="prisjakt_events",
        write_disposition="merge",
        map_index_template="{{ task.pixel_id }}",
    ).expand(pixel_id=list_pixels(SHOP_ID))

    @task(outlets=[EVENTS_LOADED])
    def all_pixels_loaded(summaries: list[dict[str, Any]], outlet_events: Any = None) -> None:
        """Announce the day as loaded (runs only when every mapped export succeeded), with its totals."""
        loaded = summaries[:]  # the mapped tasks' summaries, fetched at once
        outlet_events[EVENTS_LOADED].extra = {
            "window": loaded[0]["window"] if loaded else None,
            "pixels": len(loaded),
            "rows": sum(summary["rows"] for summary in loaded),
        }

    all_pixels_loaded(exports.output)


with DAG(
    dag_id="example_prisjakt_assets_each_pixel",
    description="Runs whenever a pixel's Prisjakt events have landed in the warehouse",
    # Airflow 2 resolves an alias in a schedule from its database as it parses the file, and its
    # exports record no events: there this DAG runs only when triggered.
    schedule=[EACH_PIXEL] if AIRFLOW_V_3_0_PLUS else None,
    start_date=datetime(2026, 10, 1),
    catchup=False,
    tags=["example", "prisjakt"],
):

    @task
    def log_landed_pixels(triggering_asset_events: Any = None) -> None:
        """Log what each triggering export wrote: the table, the pixel, its rows and window."""
        for asset, events in (triggering_asset_events or {}).items():
            for event in events:
                log.info("%s: pixel %s, %s rows", asset.uri, event.extra.get("pixel_id"), event.extra.get("rows"))

    log_landed_pixels()


with DAG(
    dag_id="example_prisjakt_assets_daily_report",
    description="Runs once a day's Prisjakt events of every pixel are in the warehouse",
    schedule=[EVENTS_LOADED],
    start_date=datetime(2026, 10, 1),
    catchup=False,
    tags=["example", "prisjakt"],
):

    @task
    def daily_report(triggering_asset_events: Any = None) -> None:
        """Stand-in for dbt or a report: the day's totals, from the triggering event."""
        for events in (triggering_asset_events or {}).values():
            for event in events:
                log.info("Loaded %s rows of %s pixels", event.extra.get("rows"), event.extra.get("pixels"))

    daily_report()
