"""
Export every pixel's conversion events to S3 as Parquet, one mapped task per pixel.

The shop's pixels are looked up at run time, and each pixel gets its own export task (dynamic
task mapping). All tasks write below one prefix per day, each into its own pixel's folder,
``prisjakt/events/date=<day>/pixel_id=<id>/`` (Hive-style, so lake engines read ``date`` and
``pixel_id`` as partition columns), and none touches another pixel's folder. All exports share
the Airflow pool ``prisjakt``, so one client id's budget of 10,000 requests an hour is shared by
a bounded number of tasks. The deferrable rate-limit sensor upstream waits, without holding a
worker, until the budget has room; the exports themselves defer and resume from a checkpoint if
the budget runs out mid-way.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, Param, task
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
from airflow_provider_prisjakt.sensors.prisjakt import PrisjaktRateLimitSensor
from airflow_provider_prisjakt.transfers.prisjakt_to_s3 import PrisjaktToS3Operator

POOL = "prisjakt"

with DAG(
    dag_id="example_prisjakt_events_to_s3",
    description="Daily Prisjakt conversion events per pixel to S3 as Parquet",
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    start_date=datetime(2026, 10, 1),
    catchup=True,
    max_active_runs=2,
    params={
        "shop_id": Param(4242, type="integer", description="The Prisjakt shop whose pixels are exported"),
        "bucket": Param("prisjakt-lake", type="string", description="The S3 bucket"),
    },
    tags=["example", "prisjakt"],
) as dag:
    budget = PrisjaktRateLimitSensor(
        task_id="wait_for_rate_limit_budget",
        min_remaining=50,
        deferrable=True,
        pool=POOL,
        timeout=2 * 60 * 60,
    )

    @task(pool=POOL)
    def list_pixels(shop_id: int) -> list[str]:
        """Return the ids of the shop's pixels (small: a handful of ids, never event data)."""
        return [str(pixel["id"]) for pixel in PrisjaktHook().get_pixels(shop_id)]

    pixels = list_pixels(shop_id="{{ params.shop_id }}")  # type: ignore[arg-type]

    export = PrisjaktToS3Operator.partial(
        task_id="events_to_s3",
        resource="events",
        s3_bucket="{{ params.bucket }}",
        s3_key="prisjakt/events/date={{ data_interval_start | ds }}/",
        file_format="parquet",
        aws_conn_id="aws_default",
        deferrable=True,
        pool=POOL,
        map_index_template="{{ task.pixel_id }}",
    ).expand(pixel_id=pixels)

    budget >> pixels >> export
