"""
A real deferral: Airflow's scheduler, triggerer, DAG processor and execution API run the test DAG.

The export task meets a spent rate-limit budget, defers, is resumed by the real triggerer (which
merges the event into the stored defer kwargs) and finishes on a LocalExecutor worker, of the
session's shared deployment (see ``airflow_cluster.py``; skipped without PostgreSQL).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from airflow_provider_prisjakt.testing import PrisjaktSandbox
from tests.conftest import register_secret
from tests.integration.conftest import PERIOD_END, PERIOD_START, rate_limited_config

if TYPE_CHECKING:
    from pathlib import Path

    from tests.integration.airflow_cluster import AirflowCluster

pytestmark = [pytest.mark.integration, pytest.mark.airflow3_only]

DAG_ID = "prisjakt_test_deferral"
PAGE_SIZE = 100
PAGES = 15
BUDGET = 10
# Long enough that the scheduler drains the worker's stale "success" of the deferring attempt while
# the task is still deferred. A trigger that fires within a few seconds of the deferral can lose
# that race in Airflow 3.2/3.3 and the resumed task is failed as "state changed externally"
# (apache/airflow#66374, #67287, #72716); the provider defers only past max_inline_wait (60 s by
# default), so real deployments stay clear of it.
WINDOW_SECONDS = 12.0
RUN_TIMEOUT_SECONDS = 240.0


def test_real_triggerer_resumes_the_deferred_export(airflow_cluster: AirflowCluster, tmp_path: Path) -> None:
    output = tmp_path / "output"

    with PrisjaktSandbox(
        rate_limited_config(pages=PAGES, page_size=PAGE_SIZE, budget=BUDGET, window_seconds=WINDOW_SECONDS)
    ) as sandbox:
        register_secret(sandbox.client_secret)
        airflow_cluster.set_connections({"prisjakt_default": sandbox.connection_json(max_inline_wait=0.5)})
        conf = {
            "pixel_id": sandbox.pixel_ids(4242)[0],
            "start": PERIOD_START.isoformat(),
            "end": PERIOD_END.isoformat(),
            "root": str(output),
        }
        run = airflow_cluster.run_dag(DAG_ID, conf, timeout=RUN_TIMEOUT_SECONDS)

        assert run.state == "success", run
        export_states = run.states_of("export_events")
        assert "deferred" in export_states, export_states
        assert export_states[-1] == "success"
        assert export_states.index("deferred") < export_states.index("success")
        manifest = json.loads((output / "export" / f"pixel_id={conf['pixel_id']}" / "_manifest.json").read_text())
        assert manifest["rows"] == PAGES * PAGE_SIZE
        assert manifest["counters"]["deferrals"] >= 1
        pages = [r.page_key for r in sandbox.requests if r.page_key]
        assert len(pages) == len(set(pages)) == PAGES
