"""
Export conversion events and purchase summaries to GCS as gzip JSON Lines, re-reading 30 days.

Prisjakt attributes a purchase to a click up to 30 days after the click, so conversions for a day
keep arriving for a month. Each run therefore re-exports its day plus a ``lookback`` of 30 days;
because a re-run of a window replaces its files, the lake always holds the latest view. Every pixel
of the shop gets its own folder below the day's prefix, e.g.
``prisjakt/events/date=<day>/pixel_id=<id>/part-00000.jsonl.gz`` with its ``_manifest.json``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG, Param
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_prisjakt.transfers.prisjakt_to_gcs import PrisjaktToGCSOperator

LOOKBACK = timedelta(days=30)

with DAG(
    dag_id="example_prisjakt_to_gcs",
    description="Daily Prisjakt events and purchase summaries to GCS with a 30-day lookback",
    schedule=CronDataIntervalTimetable("0 3 * * *", timezone="UTC"),
    start_date=datetime(2026, 10, 1),
    catchup=False,
    params={
        "shop_id": Param(4242, type="integer", description="The Prisjakt shop whose pixels are exported"),
        "bucket": Param("prisjakt-lake", type="string", description="The GCS bucket"),
    },
    tags=["example", "prisjakt"],
) as dag:
    common = {
        "shop_id": "{{ params.shop_id }}",
        "bucket": "{{ params.bucket }}",
        "file_format": "jsonl",
        "compression": "gzip",
        "lookback": LOOKBACK,
        "gcp_conn_id": "google_cloud_default",
        "deferrable": True,
    }
    PrisjaktToGCSOperator(
        task_id="events_to_gcs",
        resource="events",
        object_name="prisjakt/events/date={{ data_interval_start | ds }}/",
        **common,
    )
    PrisjaktToGCSOperator(
        task_id="purchase_summary_to_gcs",
        resource="purchase_summary",
        object_name="prisjakt/purchase_summary/date={{ data_interval_start | ds }}/",
        **common,
    )
