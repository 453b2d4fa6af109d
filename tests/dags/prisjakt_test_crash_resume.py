"""
Test DAG: one export to S3 with one retry a second after a failure, for killing its task process
mid-export and watching the retry resume from the checkpoint in the task state store (Airflow 3.3+).

The pixel, window, bucket and prefix come from the run's ``conf`` and are rendered at run time, so
parsing this file reads nothing and touches no connection. The connections are ``prisjakt_default``
and ``prisjakt_test_aws``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_prisjakt.transfers.prisjakt_to_s3 import PrisjaktToS3Operator

DAG_ID = "prisjakt_test_crash_resume"
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
        s3_key="{{ dag_run.conf['prefix'] }}",
        aws_conn_id="prisjakt_test_aws",
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
