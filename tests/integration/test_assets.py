"""
Airflow 3 assets: each mapped export of ``example_prisjakt_assets`` records the table it wrote,
through its alias, with the run's figures, and the consumers scheduled on the alias and on the
day's asset are queued; S3 and GCS exports attach their bucket and prefix.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_prisjakt.version_compat import AIRFLOW_V_3_0_PLUS
from tests.integration.conftest_services import window_context
from tests.integration.test_example_dags import run_dag, state_of

if TYPE_CHECKING:
    from airflow_provider_prisjakt.testing import PrisjaktSandbox
    from tests.integration.conftest import HookFactory

pytestmark = pytest.mark.integration

SHOP = 4242
PRODUCER = "example_prisjakt_assets"
ALIAS = f"prisjakt/{PRODUCER}/events_to_warehouse"
CONSUMERS = ("example_prisjakt_assets_each_pixel", "example_prisjakt_assets_daily_report")
# The run at 01:00 on 21 October exports the data interval of the day before.
LOGICAL_DATE = datetime(2026, 10, 21, 1, tzinfo=UTC)
WINDOW = (datetime(2026, 10, 20, 1, tzinfo=UTC), datetime(2026, 10, 21, 1, tzinfo=UTC))


WINDOW_EXTRA = {"start": "2026-10-20T01:00:00Z", "end": "2026-10-21T01:00:00Z"}
EVENTS_PER_PIXEL = 900


@pytest.fixture
def sandbox(sandbox_hook: HookFactory) -> PrisjaktSandbox:
    """A sandbox behind ``prisjakt_default``."""
    return sandbox_hook(events_per_pixel=EVENTS_PER_PIXEL, page_size=200)[0]


@pytest.fixture
def produced(
    airflow_db: Path, sandbox: PrisjaktSandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[Any, Path]:
    """Run the producer DAG with both consumers unpaused; return the run and its SQLite warehouse."""
    warehouse = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(warehouse)}))
    unpause(*CONSUMERS)
    run = run_dag(PRODUCER, LOGICAL_DATE, {})
    assert state_of(run) == "success"
    return run, warehouse


def unpause(*dag_ids: str) -> None:
    """Put the DAGs into the metadata database and unpause them, as a user does for consumers."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    subprocess.run([sys.executable, "-m", "airflow", "dags", "reserialize"], check=True, env=os.environ.copy())
    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id.in_(dag_ids)).values(is_paused=False))


def asset_events(run_id: str) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(select(AssetEvent).where(AssetEvent.source_run_id == run_id)).all()
        return [
            {
                "uri": event.asset.uri,
                "task_id": event.source_task_id,
                "map_index": event.source_map_index,
                "aliases": sorted(alias.name for alias in event.source_aliases),
                "extra": event.extra,
            }
            for event in events
        ]


def queued_consumers() -> dict[str, str]:
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return {queued.target_dag_id: queued.asset.uri for queued in session.scalars(select(AssetDagRunQueue))}


@pytest.mark.airflow3_only
def test_each_mapped_export_records_the_table_it_wrote_and_queues_the_consumers(
    produced: tuple[Any, Path], sandbox: PrisjaktSandbox
) -> None:
    run, warehouse = produced
    table = f"sqlite://{warehouse}/main/prisjakt_events"
    pixels = sandbox.pixel_ids(SHOP)
    events = asset_events(run.run_id)
    exports = sorted((e for e in events if e["task_id"] == "events_to_warehouse"), key=lambda e: e["map_index"])
    # One event per mapped task, each for the table, through the task's alias, with its own pixel's figures.
    assert len(exports) == len(pixels)
    with sqlite3.connect(warehouse) as db:
        rows = dict(db.execute("SELECT pixel_id, COUNT(*) FROM prisjakt_events GROUP BY pixel_id").fetchall())
    for event in exports:
        # Airflow stores sqlite:///<path> as sqlite:/<path>: one asset either way.
        assert event["uri"] in (table, table.replace("sqlite:///", "sqlite:/"))
        assert event["aliases"] == [ALIAS]
        extra = event["extra"]
        assert extra["window"] == WINDOW_EXTRA
        assert (
            extra["rows"] == rows[extra["pixel_id"]] == len(list(sandbox.expected_events(extra["pixel_id"], *WINDOW)))
        )
        assert extra["requests"] >= 1
        assert extra["resource"] == "events"
    assert sorted(e["extra"]["pixel_id"] for e in exports) == sorted(pixels)
    # The day's asset, once every pixel is loaded, with the totals.
    (loaded,) = [e for e in events if e["task_id"] == "all_pixels_loaded"]
    assert loaded["uri"] == "prisjakt_events_loaded"
    assert loaded["extra"] == {"window": WINDOW_EXTRA, "pixels": len(pixels), "rows": sum(rows.values())}
    # Both consumers are queued: one on the alias (the table), one on the day's asset.
    queued = queued_consumers()
    assert queued[CONSUMERS[1]] == "prisjakt_events_loaded"
    assert queued[CONSUMERS[0]] == exports[0]["uri"]


@pytest.mark.airflow3_only
@pytest.mark.parametrize("store_fixture", ["s3_store", "gcs_store"])
def test_an_object_store_export_attaches_its_bucket_and_prefix_with_the_run_figures(
    store_fixture: str, sandbox: PrisjaktSandbox, request: pytest.FixtureRequest
) -> None:
    from airflow.providers.common.compat.sdk import DAG, AssetAlias
    from airflow.sdk.execution_time.context import OutletEventAccessors

    store = request.getfixturevalue(store_fixture)
    prefix = "prisjakt/events/date=2026-10-20/"
    with DAG(dag_id="lake", schedule=None, start_date=datetime(2026, 10, 1)):
        export = store.operator(prefix, shop_id=SHOP)
    outlet_events = OutletEventAccessors()

    summary = export.execute({**window_context(*WINDOW), "outlet_events": outlet_events})

    assert export.outlets == [AssetAlias(name=f"prisjakt/lake/{export.task_id}")]
    (event,) = outlet_events[export.outlets[0]].asset_alias_events
    assert (
        event.dest_asset_key.uri
        == store.uri(prefix)
        == f"{store.scheme}://{store.bucket}/prisjakt/events/date=2026-10-20"
    )
    assert event.extra == {"shop_id": SHOP, **summary}
    assert summary["rows"] > 0


@pytest.mark.skipif(AIRFLOW_V_3_0_PLUS, reason="Airflow 2 only")
def test_on_airflow_2_the_exports_record_nothing_and_the_days_dataset_still_gets_its_event(
    produced: tuple[Any, Path], sandbox: PrisjaktSandbox
) -> None:
    from airflow.models.dataset import DatasetDagRunQueue, DatasetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    run, warehouse = produced
    with create_session() as session:
        events = session.scalars(select(DatasetEvent).where(DatasetEvent.source_run_id == run.run_id)).all()
        recorded = [(event.source_task_id, event.dataset.uri, event.extra) for event in events]
        queued = {queued.target_dag_id for queued in session.scalars(select(DatasetDagRunQueue))}
    with sqlite3.connect(warehouse) as db:
        (rows,) = db.execute("SELECT COUNT(*) FROM prisjakt_events").fetchone()
    pixels = len(sandbox.pixel_ids(SHOP))
    assert rows > 0
    assert recorded == [
        ("all_pixels_loaded", "prisjakt_events_loaded", {"window": WINDOW_EXTRA, "pixels": pixels, "rows": rows})
    ]
    assert queued == {"example_prisjakt_assets_daily_report"}
