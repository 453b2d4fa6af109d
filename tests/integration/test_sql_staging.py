"""
Staging tables belong to one task instance, on PostgreSQL, MariaDB and SQLite.

A task instance here is what Airflow's context names (DAG, run, task, map index): the operator reads
it through ``prisjakt_to_sql.current_task_instance``, which these tests point at a stand-in so that
several task instances can be played in one process. DAG runs under ``dag.test()`` and a real
scheduler exercise the real context (``test_example_dags.py``, ``test_mapped_exports.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_prisjakt.exceptions import PrisjaktError
from airflow_provider_prisjakt.export.sinks.sql.cleanup import drop_stale_staging_tables
from airflow_provider_prisjakt.transfers import prisjakt_to_sql
from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator

from .conftest import connect

# The sandbox: about 70 events per pixel and window, over three pages of 25.
from .test_prisjakt_to_sql import WAREHOUSE, Warehouse, sandbox, warehouse  # noqa: F401

if TYPE_CHECKING:
    from airflow_provider_prisjakt.testing import PrisjaktSandbox

pytestmark = pytest.mark.integration

SHOP = 4242
WINDOW = (datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 10, 12, tzinfo=UTC))
LATER_WINDOW = (datetime(2026, 10, 12, tzinfo=UTC), datetime(2026, 10, 19, tzinfo=UTC))
PAGES_BEFORE_DEFERRAL = 2


@dataclass(frozen=True)
class TaskInstance:
    """The names of a task instance that the operator reads from Airflow's context."""

    run_id: str
    map_index: int = -1
    dag_id: str = "prisjakt_daily"
    task_id: str = "events_to_sql"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, sandbox: PrisjaktSandbox) -> PrisjaktSandbox:  # noqa: F811
    """The sandbox as ``prisjakt_default``; a spent budget defers at once instead of waiting."""
    connect(monkeypatch, sandbox, max_inline_wait=1)
    return sandbox


class Tasks:
    """Runs the operator as one task instance or another, to the end or until it defers."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, source: PrisjaktSandbox, table: str) -> None:
        self.monkeypatch = monkeypatch
        self.sandbox = source
        self.table = table

    def operator(self, task: TaskInstance, pixel: str, window: tuple[datetime, datetime]) -> PrisjaktToSqlOperator:
        self.monkeypatch.setattr(prisjakt_to_sql, "current_task_instance", lambda: task)
        return PrisjaktToSqlOperator(
            task_id=task.task_id,
            conn_id=WAREHOUSE,
            table=self.table,
            pixel_id=pixel,
            start=window[0],
            end=window[1],
            write_disposition="replace_window",
            deferrable=True,
        )

    def run(self, task: TaskInstance, pixel: str, window: tuple[datetime, datetime] = WINDOW) -> dict[str, Any]:
        return self.operator(task, pixel, window).execute({})

    def defer(self, task: TaskInstance, pixel: str, window: tuple[datetime, datetime] = WINDOW) -> dict[str, Any]:
        """Run until the budget is spent after two pages; return the deferral's resume state."""
        from airflow.providers.common.compat.sdk import TaskDeferred

        self.sandbox.reset_rate_limit()
        self.sandbox.configure(rate_limit=PAGES_BEFORE_DEFERRAL)
        try:
            with pytest.raises(TaskDeferred) as deferred:
                self.run(task, pixel, window)
        finally:
            self.sandbox.configure(rate_limit=10_000)
            self.sandbox.reset_rate_limit()
        return deferred.value.kwargs["resume"]

    def resume(self, task: TaskInstance, pixel: str, state: dict[str, Any]) -> dict[str, Any]:
        window = (datetime.fromisoformat(state["start"]), datetime.fromisoformat(state["end"]))
        event = {"status": "success", "resume": state}
        return self.operator(task, pixel, window).execute_complete({}, event=event)


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch, api: PrisjaktSandbox, warehouse: Warehouse) -> Tasks:  # noqa: F811
    return Tasks(monkeypatch, api, warehouse.table_name())


def event_ids(source: PrisjaktSandbox, pixels: list[str], window: tuple[datetime, datetime] = WINDOW) -> list[str]:
    return sorted(e["id"] for pixel in pixels for e in source.expected_events(pixel, *window))


def loaded_ids(db: Warehouse, table: str) -> list[str]:
    return sorted(row[0] for row in db.query(f"SELECT event_id FROM {db.quote(table)}"))


def test_a_deferred_task_keeps_its_staging_while_other_map_indexes_load_the_table_then_resumes(
    tasks: Tasks,
    api: PrisjaktSandbox,
    warehouse: Warehouse,  # noqa: F811
) -> None:
    first, second = api.pixel_ids(SHOP)[:2]
    state = tasks.defer(TaskInstance("run_1", map_index=0), first)
    (staging,) = warehouse.staging_tables(tasks.table)
    staged = warehouse.count(staging)

    tasks.run(TaskInstance("run_1", map_index=1), second)

    assert warehouse.staging_tables(tasks.table) == {staging}
    assert warehouse.count(staging) == staged == PAGES_BEFORE_DEFERRAL * api.config.page_size
    assert loaded_ids(warehouse, tasks.table) == event_ids(api, [second])

    summary = tasks.resume(TaskInstance("run_1", map_index=0), first, state)

    assert summary["deferrals"] == 1
    assert loaded_ids(warehouse, tasks.table) == event_ids(api, [first, second])
    assert warehouse.staging_tables(tasks.table) == set()


def test_a_retry_of_a_task_instance_adopts_its_staging_table(
    tasks: Tasks,
    api: PrisjaktSandbox,
    warehouse: Warehouse,  # noqa: F811
) -> None:
    pixel = api.pixel_ids(SHOP)[0]
    task = TaskInstance("run_1", map_index=2)
    tasks.defer(task, pixel)  # the first try stops here for good (say, its worker died)
    (staging,) = warehouse.staging_tables(tasks.table)

    tasks.run(task, pixel)  # the retry starts over, in the same staging table

    assert loaded_ids(warehouse, tasks.table) == event_ids(api, [pixel])
    assert warehouse.staging_tables(tasks.table) == set()


def test_a_success_drops_what_earlier_runs_of_the_same_task_left_for_that_window_and_nothing_else(
    tasks: Tasks,
    api: PrisjaktSandbox,
    warehouse: Warehouse,  # noqa: F811
) -> None:
    pixel, other = api.pixel_ids(SHOP)[:2]
    tasks.defer(TaskInstance("run_1", map_index=0), pixel)
    same_task_same_window = warehouse.staging_tables(tasks.table)
    tasks.defer(TaskInstance("run_3", map_index=0), pixel, LATER_WINDOW)
    tasks.defer(TaskInstance("run_1", map_index=1), other)
    assert len(warehouse.staging_tables(tasks.table)) == 3

    tasks.run(TaskInstance("run_2", map_index=0), pixel)

    kept = warehouse.staging_tables(tasks.table)
    assert len(kept) == 2
    assert not kept & same_task_same_window
    assert loaded_ids(warehouse, tasks.table) == event_ids(api, [pixel])


def test_stale_staging_is_dropped_by_age_and_a_resume_without_its_staging_fails_clearly(
    tasks: Tasks,
    api: PrisjaktSandbox,
    warehouse: Warehouse,  # noqa: F811
) -> None:
    pixel = api.pixel_ids(SHOP)[0]
    task = TaskInstance("run_1", map_index=0)
    state = tasks.defer(task, pixel)
    staging = warehouse.staging_tables(tasks.table)

    assert drop_stale_staging_tables(WAREHOUSE, older_than=timedelta(hours=1), table=tasks.table) == []
    assert warehouse.staging_tables(tasks.table) == staging

    dropped = drop_stale_staging_tables(WAREHOUSE, older_than=timedelta(0), table=tasks.table)

    assert set(dropped) == staging
    assert warehouse.staging_tables(tasks.table) == set()
    with pytest.raises(PrisjaktError, match=r"The staging table _pj_stage_\w+ of this export is gone.*is unchanged"):
        tasks.resume(task, pixel, state)
    assert warehouse.count(tasks.table) == 0


def test_a_table_name_of_63_characters_gets_a_staging_table_within_the_identifier_limit(
    tasks: Tasks,
    api: PrisjaktSandbox,
    warehouse: Warehouse,  # noqa: F811
) -> None:
    tasks.table = warehouse.table_name() + "_" + "x" * (63 - len(warehouse.created[-1]) - 1)
    warehouse.created.append(tasks.table)
    pixel = api.pixel_ids(SHOP)[0]
    task = TaskInstance("scheduled__2026-10-12T00:00:00+00:00", map_index=1234)
    state = tasks.defer(task, pixel)

    (staging,) = warehouse.staging_tables(tasks.table[:31])
    assert len(tasks.table) == 63
    assert len(staging) <= 63
    assert warehouse.count(staging) == PAGES_BEFORE_DEFERRAL * api.config.page_size

    tasks.resume(task, pixel, state)

    assert loaded_ids(warehouse, tasks.table) == event_ids(api, [pixel])
    assert warehouse.staging_tables(tasks.table[:31]) == set()
