"""
Exports of different pixels of one window into one table at the same time, as mapped tasks run:
every export succeeds and the table holds every row of every pixel once, on PostgreSQL, MariaDB
and SQLite.

Each export runs in its own worker process (spawned, started together at a barrier once imported),
as the mapped tasks of a LocalExecutor do, and the mapped example DAG runs under ``dag.test()``:
both on Airflow 2 and 3. On Airflow 3 a real scheduler also runs a mapped DAG (pixels listed at run
time, one mapped task per pixel) into PostgreSQL, SQLite and S3 (moto) at once.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_prisjakt.testing.workers import Job, WorkerPool
from tests.conftest import register_secret

from .conftest_services import AWS_CONN_ID, published
from .test_example_dags import run_dag, state_of

# The sandbox (about 70 events per pixel in the window, three pages of 25: several batches per export).
from .test_prisjakt_to_sql import WAREHOUSE, Warehouse, _postgres, api, sandbox, warehouse  # noqa: F401

if TYPE_CHECKING:
    from airflow_provider_prisjakt.testing import PrisjaktSandbox

    from .airflow_cluster import AirflowCluster
    from .conftest_services import S3Store

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


def api_rows_by_pixel(
    source: PrisjaktSandbox, pixels: list[str], window: tuple[datetime, datetime] = WINDOW
) -> dict[str, list[str]]:
    return {pixel: sorted(e["id"] for e in source.expected_events(pixel, *window)) for pixel in pixels}


@pytest.mark.parametrize("write_disposition", ["replace_window", "merge"])
def test_concurrent_exports_of_different_pixels_into_one_table_keep_every_row_once(
    workers: WorkerPool,
    api: PrisjaktSandbox,  # noqa: F811
    warehouse: Warehouse,  # noqa: F811
    write_disposition: str,
) -> None:
    pixels = api.pixel_ids(SHOP)
    assert len(pixels) == WORKERS
    table = warehouse.table_name()  # not there yet: the exports race to create it, too
    expected = api_rows_by_pixel(api, pixels)

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


# -- the example DAG, under dag.test() -----------------------------------------------------------


def test_the_mapped_example_loads_every_pixel_of_the_day_once(
    airflow_db: Path,
    api: PrisjaktSandbox,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    path = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))

    run = run_dag("example_prisjakt_mapped", datetime(2026, 10, 6, 1, tzinfo=UTC), {})

    assert state_of(run) == "success"
    day = (datetime(2026, 10, 5, 1, tzinfo=UTC), datetime(2026, 10, 6, 1, tzinfo=UTC))
    expected = api_rows_by_pixel(api, api.pixel_ids(SHOP), day)
    assert all(expected.values())
    db = Warehouse("sqlite", sqlite3.connect(path), {})
    try:
        assert rows_by_pixel(db, "prisjakt_events") == expected
        assert db.staging_tables("prisjakt_events") == set()
    finally:
        db.conn.close()


# -- under a real scheduler -----------------------------------------------------------------------


def overlapping(times: dict[tuple[str, int], tuple[datetime | None, datetime | None]]) -> bool:
    """Whether any two of the task instances ran at the same time."""
    spans = sorted((start, end) for start, end in times.values() if start and end)
    return any(later_start < end for (_, end), (later_start, _) in zip(spans, spans[1:], strict=False))


@pytest.mark.airflow3_only
def test_mapped_exports_of_pixels_found_at_run_time_under_a_real_scheduler_write_every_row_once(
    airflow_cluster: AirflowCluster,
    sandbox: PrisjaktSandbox,  # noqa: F811
    s3_store: S3Store,
    tmp_path: Path,
) -> None:
    postgres, postgres_connection = _postgres()
    sqlite_path = tmp_path / "warehouse.db"
    sqlite_connection = {"conn_type": "sqlite", "host": str(sqlite_path)}
    warehouses = [
        Warehouse("postgres", postgres, postgres_connection),
        Warehouse("sqlite", sqlite3.connect(sqlite_path, isolation_level=None), sqlite_connection),
    ]
    table = warehouses[0].table_name()
    warehouses[1].created.append(table)
    register_secret(sandbox.client_secret)
    airflow_cluster.set_connections(
        {
            "prisjakt_default": sandbox.connection_json(),
            "prisjakt_test_postgres": postgres_connection,
            "prisjakt_test_sqlite": sqlite_connection,
            "prisjakt_test_aws": os.environ[f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}"],
        }
    )
    prefix = "prisjakt/events/date=2026-10-05"
    conf = {
        "shop_id": SHOP,
        "start": WINDOW[0].isoformat(),
        "end": WINDOW[1].isoformat(),
        "table": table,
        "bucket": s3_store.bucket,
        "prefix": prefix,
    }
    try:
        run = airflow_cluster.run_dag("prisjakt_test_mapped", conf)

        assert run.state == "success", run
        pixels = sandbox.pixel_ids(SHOP)
        expected = api_rows_by_pixel(sandbox, pixels)
        for db in warehouses:
            assert run.final_states(f"events_to_{db.dialect}") == dict.fromkeys(range(len(pixels)), "success"), run
            assert rows_by_pixel(db, table) == expected, db.dialect
            assert db.staging_tables(table) == set()
        assert run.final_states("events_to_s3") == dict.fromkeys(range(len(pixels)), "success"), run
        for pixel in pixels:
            _, _, parts = published(s3_store, f"{prefix}/pixel_id={pixel}")
            assert sorted(record["id"] for rows in parts.values() for record in rows) == expected[pixel]
        assert {key.split("/")[3] for key in s3_store.keys(prefix)} == {f"pixel_id={pixel}" for pixel in pixels}
        exports = {key: span for key, span in run.times.items() if key[0].startswith("events_to_")}
        assert overlapping(exports), f"the mapped exports ran one after the other: {exports}"
    finally:
        for db in warehouses:
            db.drop_created()
            db.conn.close()
