"""
Exports of different pixels of one window into one table at the same time, as mapped tasks run:
every export succeeds and the table holds every row of every pixel once, on PostgreSQL, MariaDB
and SQLite.

Each export runs in its own worker process (spawned, started together at a barrier once imported),
as the mapped tasks of a LocalExecutor do. On Airflow 3 a real scheduler runs the mapped DAG too.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig

from .conftest import connect
from .processes import Job, WorkerPool
from .test_prisjakt_to_sql import WAREHOUSE, Warehouse, warehouse  # noqa: F401

pytestmark = pytest.mark.integration

SHOP = 4242
WINDOW = (datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 10, 12, tzinfo=UTC))
OPERATOR = "airflow_provider_prisjakt.transfers.prisjakt_to_sql:PrisjaktToSqlOperator"
WORKERS = 3  # one per pixel of the shop


@pytest.fixture(scope="module")
def workers() -> Iterator[WorkerPool]:
    pool = WorkerPool(WORKERS, modules=(OPERATOR.partition(":")[0],))
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def module_sandbox() -> Iterator[PrisjaktSandbox]:
    # About 70 events per pixel in the window, over three pages of 25: each export stages several batches.
    with PrisjaktSandbox(SandboxConfig(events_per_pixel=300, page_size=25)) as started:
        yield started


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch, module_sandbox: PrisjaktSandbox) -> PrisjaktSandbox:
    connect(monkeypatch, module_sandbox)
    return module_sandbox


def export_jobs(table: str, pixels: list[str], write_disposition: str) -> list[Job]:
    """One export per pixel of the window into ``table``, reading its connections from the test's environment."""
    env = {name: os.environ[name] for name in ("AIRFLOW_CONN_PRISJAKT_DEFAULT", f"AIRFLOW_CONN_{WAREHOUSE.upper()}")}
    arguments: dict[str, Any] = {
        "conn_id": WAREHOUSE,
        "table": table,
        "start": WINDOW[0].isoformat(),
        "end": WINDOW[1].isoformat(),
        "write_disposition": write_disposition,
    }
    return [Job(OPERATOR, {"task_id": "events_to_sql", "pixel_id": pixel, **arguments}, env) for pixel in pixels]


def rows_by_pixel(db: Warehouse, table: str) -> dict[str, list[str]]:
    """The event ids of each pixel in the table, repeats kept."""
    rows: dict[str, list[str]] = defaultdict(list)
    for pixel, event_id in db.query(f"SELECT pixel_id, event_id FROM {db.quote(table)}"):
        rows[pixel].append(event_id)
    return {pixel: sorted(ids) for pixel, ids in rows.items()}


def api_rows_by_pixel(sandbox: PrisjaktSandbox, pixels: list[str]) -> dict[str, list[str]]:
    return {pixel: sorted(e["id"] for e in sandbox.expected_events(pixel, *WINDOW)) for pixel in pixels}


@pytest.mark.parametrize("write_disposition", ["replace_window", "merge"])
def test_concurrent_exports_of_different_pixels_into_one_table_keep_every_row_once(
    workers: WorkerPool,
    sandbox: PrisjaktSandbox,
    warehouse: Warehouse,  # noqa: F811
    write_disposition: str,
) -> None:
    pixels = sandbox.pixel_ids(SHOP)
    assert len(pixels) == WORKERS
    table = warehouse.table_name()  # not there yet: the exports race to create it, too
    expected = api_rows_by_pixel(sandbox, pixels)

    summaries = workers.run_together(export_jobs(table, pixels, write_disposition))

    assert [summary["rows"] for summary in summaries] == [len(expected[pixel]) for pixel in pixels]
    assert rows_by_pixel(warehouse, table) == expected
    assert warehouse.staging_tables(table) == set()

    warehouse.insert_event(table, "gone-from-the-api", pixels[0], WINDOW[0] + timedelta(days=1))
    warehouse.insert_event(table, "pixel-not-exported", "another-pixel", WINDOW[0] + timedelta(days=1))

    workers.run_together(export_jobs(table, pixels, write_disposition))  # the re-run, all at once again

    expected["another-pixel"] = ["pixel-not-exported"]
    if write_disposition == "merge":  # merge deletes nothing; replace_window deletes each export's own pixel
        expected[pixels[0]] = sorted([*expected[pixels[0]], "gone-from-the-api"])
    assert rows_by_pixel(warehouse, table) == expected
    assert warehouse.staging_tables(table) == set()
