"""
Which errors Airflow retries, shown by real task runs (``dag.test()``) of an S3 export with ``retries=2``.

A configuration error, 400, 401, 403 or 404 can never succeed: the task fails at its first try. A
5xx stays retryable, so Airflow's retries get it (issue #12, item 8).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig
from tests.conftest import DAGS_FOLDER, register_secret
from tests.dags.prisjakt_test_task_retries import DAG_ID, TASK_ID

from .conftest import connect

pytest.register_assert_rewrite("tests.integration.conftest_services")

from .conftest_services import AWS_CONN_ID, moto_service  # noqa: E402, F401
from .conftest_services import s3_store as s3_store_fixture  # noqa: E402, F401

if TYPE_CHECKING:
    from .conftest_services import S3Store

START = datetime(2026, 10, 5, tzinfo=UTC)
END = datetime(2026, 10, 6, tzinfo=UTC)
MISSING_PIXEL = "180cd423-ee56-40ed-b712-2f075ec08d45"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrisjaktSandbox]:
    with PrisjaktSandbox(SandboxConfig(events_per_pixel=200)) as running:
        # One try per request: the retries under test are Airflow's, not the hook's.
        connect(monkeypatch, running, max_retries=1)
        yield running


def load_dag() -> Any:
    """Import the DAG from the dags folder copy, which is what dag.test() syncs from."""
    spec = importlib.util.spec_from_file_location(f"{DAG_ID}_dagfile", DAGS_FOLDER / f"{DAG_ID}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def run_export(store: S3Store, pixel_id: str, start: datetime = START, end: datetime = END) -> Any:
    """Run the DAG once; return its export task instance once the run is over, and check nothing was written."""
    conf = {
        "pixel_id": pixel_id,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "bucket": store.bucket,
        "aws_conn_id": AWS_CONN_ID,
    }
    run = load_dag().test(run_conf=conf)
    assert store.keys() == []
    return run.get_task_instance(TASK_ID)


def state_of(ti: Any) -> str:
    return str(getattr(ti.state, "value", ti.state))


def test_an_unknown_pixel_fails_the_task_at_its_first_try(
    airflow_db: Path, sandbox: PrisjaktSandbox, s3_store: S3Store
) -> None:
    ti = run_export(s3_store, MISSING_PIXEL)

    assert (state_of(ti), ti.try_number) == ("failed", 1)
    assert [r.status for r in sandbox.requests] == [404]


def test_a_wrong_client_secret_fails_the_task_at_its_first_try(
    airflow_db: Path, sandbox: PrisjaktSandbox, s3_store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = json.loads(sandbox.connection_json(max_retries=1))
    conn["password"] = register_secret("not-the-client-secret")
    monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_DEFAULT", json.dumps(conn))

    ti = run_export(s3_store, sandbox.pixel_ids(4242)[0])

    assert (state_of(ti), ti.try_number) == ("failed", 1)
    assert [r.status for r in sandbox.requests] == [401]


def test_a_reversed_window_fails_the_task_at_its_first_try_without_a_request(
    airflow_db: Path, sandbox: PrisjaktSandbox, s3_store: S3Store
) -> None:
    ti = run_export(s3_store, sandbox.pixel_ids(4242)[0], start=END, end=START)

    assert (state_of(ti), ti.try_number) == ("failed", 1)
    assert sandbox.requests == []


def test_a_server_error_is_left_to_airflow_s_retries(
    airflow_db: Path, sandbox: PrisjaktSandbox, s3_store: S3Store
) -> None:
    sandbox.fail_next("503", count=100)

    ti = run_export(s3_store, sandbox.pixel_ids(4242)[0])

    assert (state_of(ti), ti.try_number) == ("failed", 3)  # the first try and both retries
    assert [r.status for r in sandbox.requests] == [503] * 3
