"""A manual run without a data interval: the error says how to fix it, and the fix it suggests works in that very run."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_prisjakt.transfers.window import DAY_BEFORE_THE_RUN
from airflow_provider_prisjakt.version_compat import AIRFLOW_V_3_0_PLUS
from tests.integration.test_example_dags import dagbag

if TYPE_CHECKING:
    from airflow_provider_prisjakt.testing import PrisjaktSandbox
    from tests.integration.conftest import HookFactory

pytestmark = pytest.mark.integration

SHOP = 4242
RUN_AFTER = datetime(2026, 10, 21, 5, 30, tzinfo=UTC)
DAY_BEFORE = (datetime(2026, 10, 20, tzinfo=UTC), datetime(2026, 10, 21, tzinfo=UTC))
EVENTS_PER_PIXEL = 600


@pytest.fixture
def sandbox(sandbox_hook: HookFactory) -> PrisjaktSandbox:
    """A sandbox behind ``prisjakt_default``."""
    return sandbox_hook(events_per_pixel=EVENTS_PER_PIXEL, page_size=200)[0]


def run_manually(dag_id: str) -> Any:
    """Run the DAG as a manual trigger does: on Airflow 3 without a logical date; on Airflow 2 every run has one."""
    dag = dagbag().get_dag(dag_id)
    if AIRFLOW_V_3_0_PLUS:
        return dag.test(logical_date=None, run_after=RUN_AFTER)
    return dag.test(execution_date=RUN_AFTER)


def test_the_suggested_templates_export_the_day_before_a_run_without_a_data_interval(
    airflow_db: Path,
    sandbox: PrisjaktSandbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    warehouse = tmp_path / "warehouse.db"
    monkeypatch.setenv(
        "AIRFLOW_CONN_PRISJAKT_TEST_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(warehouse)})
    )

    run = run_manually("prisjakt_test_manual_window")

    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in run.get_task_instances()}
    assert states == {"data_interval_window": "failed", "suggested_window": "success"}
    output = capsys.readouterr().out
    assert "The export window is empty" in output
    # The failing task names exactly the templates the other task used.
    assert f"start='{DAY_BEFORE_THE_RUN[0]}' and end='{DAY_BEFORE_THE_RUN[1]}'" in output
    if AIRFLOW_V_3_0_PLUS:
        assert "triggered without a logical date" in output
    expected = sorted(e["id"] for pixel in sandbox.pixel_ids(SHOP) for e in sandbox.expected_events(pixel, *DAY_BEFORE))
    with sqlite3.connect(warehouse) as db:
        loaded = sorted(row[0] for row in db.execute("SELECT event_id FROM events_by_suggestion"))
    assert expected and loaded == expected
