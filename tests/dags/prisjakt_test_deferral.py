"""
Test DAG: a deferrable rate-limit sensor upstream of a deferrable export into a local folder.

``spend_budget`` first spends ``conf["spend"]`` requests of the client's budget, as another user
of the same client id would, so that the sensor meets a spent window. Everything run-specific
(pixel, window, output folder, budget to spend and to wait for) comes from the run's ``conf`` and
is rendered at run time, so parsing this file reads nothing and touches no connection. The tasks
reach the API through the ``prisjakt_default`` connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_prisjakt.exceptions import PrisjaktRateLimitError
from airflow_provider_prisjakt.export.sinks.object_store import LocalFolderSink
from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
from airflow_provider_prisjakt.sensors.prisjakt import PrisjaktRateLimitSensor
from airflow_provider_prisjakt.transfers.base import PrisjaktObjectStoreExportOperator

if TYPE_CHECKING:
    from airflow_provider_prisjakt.export.run import ExportRequest

DAG_ID = "prisjakt_test_deferral"


class LocalFolderExportOperator(PrisjaktObjectStoreExportOperator):
    """
    Export Prisjakt data to part files in a local folder (for tests only).

    :param root: the folder the parts and ``_manifest.json`` are written to. (templated)

    The other parameters are those of
    :class:`~airflow_provider_prisjakt.transfers.base.PrisjaktObjectStoreExportOperator`.
    """

    template_fields: Sequence[str] = (*PrisjaktObjectStoreExportOperator.template_fields, "root")

    def __init__(self, *, root: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root

    def build_sink(self, request: ExportRequest, extracted_at: datetime, spool_dir: str) -> LocalFolderSink:
        """Return a sink writing below ``root``."""
        return LocalFolderSink(root=self.root, prefix="export", **self.sink_options(request, extracted_at, spool_dir))


@task(task_id="spend_budget")
def spend_budget(count: int | str = 0) -> int:
    """Spend up to ``count`` requests of the client's budget; return how many were answered."""
    hook = PrisjaktHook(max_inline_wait=0, max_retries=1)
    spent = 0
    try:
        for _ in range(int(count)):
            hook.get_client()
            spent += 1
    except PrisjaktRateLimitError:
        pass
    finally:
        hook.close()
    return spent


with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["test", "prisjakt"],
) as dag:
    wait_for_budget = PrisjaktRateLimitSensor(
        task_id="wait_for_budget",
        min_remaining="{{ dag_run.conf.get('min_remaining', 1) }}",
        deferrable=True,
        max_inline_wait=0,  # the test's windows last seconds; it must still see a deferral
        poke_interval=1,
        timeout=300,
    )
    export_events = LocalFolderExportOperator(
        task_id="export_events",
        pixel_id="{{ dag_run.conf['pixel_id'] }}",
        start="{{ dag_run.conf['start'] }}",
        end="{{ dag_run.conf['end'] }}",
        root="{{ dag_run.conf['root'] }}",
        deferrable=True,
    )
    spend_budget("{{ dag_run.conf.get('spend', 0) }}") >> wait_for_budget >> export_events
