"""
The README's complete DAG runs as written: extracted from README.md, dropped into the dags folder and run with
dag.test() against the sandbox (as ``serve`` starts it), moto_server as S3 and a throwaway PostgreSQL database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig
from scripts.readme_dag import dag_id_of, extract
from tests.conftest import DAGS_FOLDER, REPO_ROOT, register_secret
from tests.integration.conftest_services import S3Store, decode_part
from tests.integration.test_example_dags import dagbag, run_dag, state_of

pytestmark = [pytest.mark.integration, pytest.mark.airflow3_only]

README_DAG = extract((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
# `airflow dags test prisjakt_daily 2026-10-21`, as the README's "First run" says: the day 2026-10-20.
LOGICAL_DATE = datetime(2026, 10, 21, tzinfo=UTC)
WINDOW = (datetime(2026, 10, 20, tzinfo=UTC), LOGICAL_DATE)
MANIFEST = "_manifest.json"


def unavailable(reason: str) -> None:
    """Skip for want of a local service; under CI=true a missing service is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    print(reason)
    pytest.skip(reason)


@pytest.fixture
def readme_dag(airflow_db: Path) -> Iterator[Any]:
    """The README's DAG, written into the dags folder (dag.test() on Airflow 3 runs only files there), loaded."""
    path = DAGS_FOLDER / "readme_dag.py"
    path.write_text(README_DAG, encoding="utf-8")
    try:
        bag = dagbag()
        assert bag.import_errors == {}
        yield bag.get_dag(dag_id_of(README_DAG))
    finally:
        path.unlink()


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrisjaktSandbox]:
    """The sandbox with the data `serve` holds (its defaults), as ``prisjakt_default``."""
    with PrisjaktSandbox(SandboxConfig()) as running:
        register_secret(running.client_secret)
        monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_DEFAULT", running.connection_json())
        yield running


@pytest.fixture
def postgres_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A throwaway database on the local PostgreSQL, with its Airflow connection; dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    name = f"readme_dag_{uuid.uuid4().hex[:10]}"
    server = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "connect_timeout": 3}
    try:
        admin = psycopg.connect(dbname="test", autocommit=True, **server)
    except Exception as err:
        unavailable(f"PostgreSQL at 127.0.0.1:5432 (database test) is not reachable: {err}")
    admin.execute(f'CREATE DATABASE "{name}"')
    connection = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": name}
    try:
        with psycopg.connect(dbname=name, autocommit=True, **server) as db:
            yield db, connection
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def tasks_of(dag: Any, class_name: str) -> list[Any]:
    return [task for task in dag.tasks if type(task).__name__ == class_name]


def manifests_and_rows(store: S3Store, prefix: str = "") -> tuple[list[str], list[dict[str, Any]]]:
    """
    Every ``_manifest.json`` under ``prefix`` and the rows of the parts each one lists.

    Parts are named relative to their manifest's folder, so this holds for one manifest beside all parts
    and for one per ``pixel_id=<id>/`` folder alike.
    """
    manifests = [key for key in store.keys(prefix) if key.rsplit("/", 1)[-1] == MANIFEST]
    rows: list[dict[str, Any]] = []
    for key in manifests:
        folder = key[: -len(MANIFEST)]
        manifest = json.loads(store.read(key))
        parts = [decode_part(part["name"], store.read(folder + part["name"])) for part in manifest["parts"]]
        assert manifest["rows"] == sum(len(part) for part in parts), key
        rows.extend(row for part in parts for row in part)
    return manifests, rows


def test_the_readme_dag_runs_as_written_into_postgres_and_s3(
    readme_dag: Any,
    sandbox: PrisjaktSandbox,
    s3_store: S3Store,
    postgres_database: tuple[Any, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db, warehouse = postgres_database
    [to_s3] = tasks_of(readme_dag, "PrisjaktToS3Operator")
    to_sql = {task.resource: task for task in tasks_of(readme_dag, "PrisjaktToSqlOperator")}
    assert set(to_sql) == {"events", "purchase_summary"}
    assert tasks_of(readme_dag, "PrisjaktRateLimitSensor")
    # The connections as environment variables, as the README's "First run" sets them.
    for conn_id in {task.conn_id for task in to_sql.values()}:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(warehouse))
    monkeypatch.setenv(f"AIRFLOW_CONN_{to_s3.aws_conn_id.upper()}", os.environ["AIRFLOW_CONN_AWS_PRISJAKT_TEST"])
    lake = S3Store(to_s3.s3_bucket)  # the README's bucket, on moto_server
    # Every task spends the client id's budget in one pool, which the README has the user create.
    [pool] = {task.pool for task in readme_dag.tasks}
    subprocess.run(
        [sys.executable, "-m", "airflow", "pools", "set", pool, "4", "Prisjakt client id"],
        check=True,
        env=os.environ.copy(),
        capture_output=True,
    )

    run = run_dag(readme_dag.dag_id, LOGICAL_DATE, {})

    assert state_of(run) == "success"
    shop = int(to_s3.shop_id)
    expected = {
        (event["id"], pixel) for pixel in sandbox.pixel_ids(shop) for event in sandbox.expected_events(pixel, *WINDOW)
    }
    assert expected, "the run's day must hold sandbox data"
    events_table = to_sql["events"].table
    assert set(db.execute(f'SELECT event_id, pixel_id FROM "{events_table}"').fetchall()) == expected
    assert db.execute(f'SELECT COUNT(*) FROM "{events_table}"').fetchone()[0] == len(expected)
    summary_table = to_sql["purchase_summary"].table
    loaded_summary = {
        (pixel, str(day), currency): purchases
        for pixel, day, currency, purchases in db.execute(
            f'SELECT pixel_id, "day", currency, purchases FROM "{summary_table}"'
        ).fetchall()
    }
    expected_summary = {
        (pixel, "2026-10-20", entry["currency"]): entry["count"]
        for pixel in sandbox.pixel_ids(shop)
        for entry in sandbox.expected_purchase_summary(pixel, *WINDOW)["currencies"]
    }
    assert loaded_summary == expected_summary
    assert sum(loaded_summary.values()) == len(expected)

    manifests, rows = manifests_and_rows(lake)
    assert manifests, "the S3 export published no _manifest.json"
    assert all("2026-10-20" in key for key in manifests), manifests  # keys templated by data_interval_start
    assert Counter(row["event_id"] for row in rows) == Counter(event_id for event_id, _ in expected)
