"""
Test DAG: one export to S3 with two retries, to show which errors Airflow's retries get, and, under a
real scheduler, that the retry of a killed task resumes from its checkpoint (Airflow 3.3+).

The pixel, window, bucket and connections come from the run's ``conf`` and are rendered at run
time, so parsing this file reads nothing and touches no connection. The task reaches the API
through the ``prisjakt_default`` connection.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_prisjakt.transfers.prisjakt_to_s3 import PrisjaktToS3Operator

DAG_ID = "prisjakt_test_task_retries"
TASK_ID = "export_events"

with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["test", "prisjakt"],
) as dag:
    PrisjaktToS3Operator(
        task_id=TASK_ID,
        pixel_id="{{ dag_run.conf['pixel_id'] }}",
        start="{{ dag_run.conf['start'] }}",
        end="{{ dag_run.conf['end'] }}",
        s3_bucket="{{ dag_run.conf['bucket'] }}",
        s3_key="prisjakt/events/",
        aws_conn_id="{{ dag_run.conf['aws_conn_id'] }}",
        retries=2,
        retry_delay=timedelta(seconds=1),
    )
