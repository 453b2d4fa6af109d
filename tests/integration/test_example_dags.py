"""The example DAGs import cleanly and run end to end with dag.test() against the sandbox and local services."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig
from tests.conftest import REPO_ROOT, register_secret
from tests.integration.conftest_services import GCSStore, S3Store, decode_part

EXAMPLES = sorted((REPO_ROOT / "example_dags").glob("example_*.py"))
SHOP = 4242
# A daily run whose data interval is 2026-10-20 (the timetables run at 00:00, 02:00 and 03:00 UTC).
DAY_START = datetime(2026, 10, 20, tzinfo=UTC)


def dagbag() -> Any:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag
    return (
        DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"], include_examples=False)
        if _takes_examples(DagBag)
        else DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    )


def _takes_examples(cls: type) -> bool:
    import inspect

    return "include_examples" in inspect.signature(cls).parameters


def run_dag(dag_id: str, logical_date: datetime, conf: dict[str, Any]) -> Any:
    dag = dagbag().get_dag(dag_id)
    assert dag is not None, f"{dag_id} did not load"
    try:
        return dag.test(logical_date=logical_date, run_conf=conf)
    except TypeError:  # Airflow 2 calls it execution_date
        return dag.test(execution_date=logical_date, run_conf=conf)


def state_of(run: Any) -> str:
    return str(getattr(run.state, "value", run.state))


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrisjaktSandbox]:
    with PrisjaktSandbox(SandboxConfig(events_per_pixel=3100, page_size=200)) as running:
        register_secret(running.client_secret)
        monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_DEFAULT", running.connection_json())
        yield running


def day_events(sandbox: PrisjaktSandbox, pixel: str, start: datetime, end: datetime) -> list[tuple[str, float]]:
    return sorted((e["id"], e["data"]["amount"]) for e in sandbox.expected_events(pixel, start, end))


def test_every_example_imports_without_errors_or_deprecation_warnings() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = dagbag()

    assert bag.import_errors == {}
    ids = {Path(dag.fileloc).name for dag in bag.dags.values()}
    assert {path.name for path in EXAMPLES} <= ids
    ours = [
        w
        for w in caught
        if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning))
        and ("example_dags" in w.filename or "airflow_provider_prisjakt" in w.filename or "prisjakt" in w.filename)
    ]
    assert ours == [], [str(w.message) for w in ours]


def test_sql_example_loads_three_tables_and_computes_cost_of_sales(
    airflow_db: Path, sandbox: PrisjaktSandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    warehouse = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(warehouse)}))

    run = run_dag("example_prisjakt_to_sql", datetime(2026, 10, 21, tzinfo=UTC), {})

    assert state_of(run) == "success"
    end = datetime(2026, 10, 21, tzinfo=UTC)
    expected = sorted(e for pixel in sandbox.pixel_ids(SHOP) for e in day_events(sandbox, pixel, DAY_START, end))
    with sqlite3.connect(warehouse) as db:
        loaded = sorted((i, float(a)) for i, a in db.execute("SELECT event_id, amount FROM prisjakt_events"))
        clicks = db.execute("SELECT COUNT(*) FROM prisjakt_clicks").fetchone()[0]
        summary = db.execute("SELECT SUM(purchases) FROM prisjakt_purchase_summary").fetchone()[0]
        report = db.execute("SELECT SUM(purchases), COUNT(*) FROM prisjakt_cost_of_sales").fetchone()
    assert loaded == expected
    assert clicks == len(expected)  # one distinct click per seeded event
    assert summary == len(expected)
    assert report[0] == len(expected)
    assert report[1] >= 1


def test_s3_example_maps_one_parquet_export_per_pixel(
    airflow_db: Path,
    sandbox: PrisjaktSandbox,
    s3_store: S3Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", os.environ["AIRFLOW_CONN_AWS_PRISJAKT_TEST"])
    subprocess.run(
        [sys.executable, "-m", "airflow", "pools", "set", "prisjakt", "4", "Prisjakt client id"],
        check=True,
        env=os.environ.copy(),
        capture_output=True,
    )

    run = run_dag("example_prisjakt_events_to_s3", datetime(2026, 10, 21, 2, tzinfo=UTC), {"bucket": s3_store.bucket})

    assert state_of(run) == "success"
    start, end = datetime(2026, 10, 20, 2, tzinfo=UTC), datetime(2026, 10, 21, 2, tzinfo=UTC)
    for pixel in sandbox.pixel_ids(SHOP):
        prefix = f"prisjakt/events/date=2026-10-20/pixel_id={pixel}/"
        manifest = json.loads(s3_store.read(prefix + "_manifest.json"))
        rows = [
            row for part in manifest["parts"] for row in decode_part(part["name"], s3_store.read(prefix + part["name"]))
        ]
        assert manifest["parts"][0]["name"].endswith(".parquet")
        assert sorted((r["event_id"], float(r["amount"])) for r in rows) == day_events(sandbox, pixel, start, end)


def test_gcs_example_exports_events_and_summaries_with_a_30_day_lookback(
    airflow_db: Path,
    sandbox: PrisjaktSandbox,
    gcs_store: GCSStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", os.environ["AIRFLOW_CONN_GOOGLE_CLOUD_PRISJAKT_TEST"])

    run = run_dag("example_prisjakt_to_gcs", datetime(2026, 10, 31, 3, tzinfo=UTC), {"bucket": gcs_store.bucket})

    assert state_of(run) == "success"
    start, end = datetime(2026, 9, 30, 3, tzinfo=UTC), datetime(2026, 10, 31, 3, tzinfo=UTC)
    summary_rows = 0
    for pixel in sandbox.pixel_ids(SHOP):  # the shop-wide export writes one folder per pixel
        events_prefix = f"prisjakt/events/date=2026-10-30/pixel_id={pixel}/"
        manifest = json.loads(gcs_store.read(events_prefix + "_manifest.json"))
        # The lookback stretches the window back 30 days, to the start of the seeded period.
        assert manifest["window"] == {"start": "2026-09-30T03:00:00Z", "end": "2026-10-31T03:00:00Z"}
        names = [part["name"] for part in manifest["parts"]]
        assert names and all(name.endswith(".jsonl.gz") for name in names)
        rows = [row for name in names for row in decode_part(name, gcs_store.read(events_prefix + name))]
        assert sorted((r["id"], r["data"]["amount"]) for r in rows) == day_events(sandbox, pixel, start, end)
        summary_prefix = f"prisjakt/purchase_summary/date=2026-10-30/pixel_id={pixel}/"
        summary_rows += json.loads(gcs_store.read(summary_prefix + "_manifest.json"))["rows"]
    assert summary_rows > 0
