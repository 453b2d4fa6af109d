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
    """Runs the operator as one task instance or another, to the end or until it defers, into one table of ``db``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, source: PrisjaktSandbox, db: Warehouse) -> None:
        self.monkeypatch = monkeypatch
        self.sandbox = source
        self.db = db
        self.table = db.table_name()

    @property
    def pixels(self) -> list[str]:
        return self.sandbox.pixel_ids(SHOP)

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

    def staging_tables(self, table: str | None = None) -> set[str]:
        """The staging tables of ``table`` (default: this table)."""
        return self.db.staging_tables(table or self.table)

    def loaded_ids(self) -> list[str]:
        return sorted(row[0] for row in self.db.query(f"SELECT event_id FROM {self.db.quote(self.table)}"))

    def event_ids(self, pixels: list[str], window: tuple[datetime, datetime] = WINDOW) -> list[str]:
        """The ids of the pixels' events in ``window``: the sandbox's truth."""
        return sorted(e["id"] for pixel in pixels for e in self.sandbox.expected_events(pixel, *window))


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch, api: PrisjaktSandbox, warehouse: Warehouse) -> Tasks:  # noqa: F811
    return Tasks(monkeypatch, api, warehouse)


def test_a_deferred_task_keeps_its_staging_while_other_map_indexes_load_the_table_then_resumes(tasks: Tasks) -> None:
    first, second = tasks.pixels[:2]
    state = tasks.defer(TaskInstance("run_1", map_index=0), first)
    (staging,) = tasks.staging_tables()
    staged = tasks.db.count(staging)

    tasks.run(TaskInstance("run_1", map_index=1), second)

    assert tasks.staging_tables() == {staging}
    assert tasks.db.count(staging) == staged == PAGES_BEFORE_DEFERRAL * tasks.sandbox.config.page_size
    assert tasks.loaded_ids() == tasks.event_ids([second])

    summary = tasks.resume(TaskInstance("run_1", map_index=0), first, state)

    assert summary["deferrals"] == 1
    assert tasks.loaded_ids() == tasks.event_ids([first, second])
    assert tasks.staging_tables() == set()


def test_a_retry_of_a_task_instance_adopts_its_staging_table(tasks: Tasks) -> None:
    pixel = tasks.pixels[0]
    task = TaskInstance("run_1", map_index=2)
    tasks.defer(task, pixel)  # the first try stops here for good (say, its worker died)
    (staging,) = tasks.staging_tables()

    tasks.run(task, pixel)  # the retry starts over, in the same staging table

    assert tasks.loaded_ids() == tasks.event_ids([pixel])
    assert tasks.staging_tables() == set()


def test_a_success_drops_what_earlier_runs_of_the_same_task_left_for_that_window_and_nothing_else(
    tasks: Tasks,
) -> None:
    pixel, other = tasks.pixels[:2]
    tasks.defer(TaskInstance("run_1", map_index=0), pixel)
    same_task_same_window = tasks.staging_tables()
    tasks.defer(TaskInstance("run_3", map_index=0), pixel, LATER_WINDOW)
    tasks.defer(TaskInstance("run_1", map_index=1), other)
    assert len(tasks.staging_tables()) == 3

    tasks.run(TaskInstance("run_2", map_index=0), pixel)

    kept = tasks.staging_tables()
    assert len(kept) == 2
    assert not kept & same_task_same_window
    assert tasks.loaded_ids() == tasks.event_ids([pixel])


def test_stale_staging_is_dropped_by_age_and_a_resume_without_its_staging_fails_clearly(tasks: Tasks) -> None:
    pixel = tasks.pixels[0]
    task = TaskInstance("run_1", map_index=0)
    state = tasks.defer(task, pixel)
    staging = tasks.staging_tables()

    assert drop_stale_staging_tables(WAREHOUSE, older_than=timedelta(hours=1), table=tasks.table) == []
    assert tasks.staging_tables() == staging

    dropped = drop_stale_staging_tables(WAREHOUSE, older_than=timedelta(0), table=tasks.table)

    assert set(dropped) == staging
    assert tasks.staging_tables() == set()
    with pytest.raises(PrisjaktError, match=r"The staging table _pj_stage_\w+ of this export is gone.*is unchanged"):
        tasks.resume(task, pixel, state)
    assert tasks.db.count(tasks.table) == 0


def test_a_table_name_of_63_characters_gets_a_staging_table_within_the_identifier_limit(tasks: Tasks) -> None:
    tasks.table = tasks.db.table_name() + "_" + "x" * (63 - len(tasks.db.created[-1]) - 1)
    tasks.db.created.append(tasks.table)
    pixel = tasks.pixels[0]
    task = TaskInstance("scheduled__2026-10-12T00:00:00+00:00", map_index=1234)
    state = tasks.defer(task, pixel)

    (staging,) = tasks.staging_tables(tasks.table[:31])
    assert len(tasks.table) == 63
    assert len(staging) <= 63
    assert tasks.db.count(staging) == PAGES_BEFORE_DEFERRAL * tasks.sandbox.config.page_size

    tasks.resume(task, pixel, state)

    assert tasks.loaded_ids() == tasks.event_ids([pixel])
    assert tasks.staging_tables(tasks.table[:31]) == set()
