"""
A destination that fails in the middle of an export: the storage service goes away, or the
database drops the loading connection. The task fails with a clear message, the destination is left
as it was, and a retry succeeds.

No mocks: a moto_server of this test's own is frozen with SIGSTOP mid-export (so S3 stops
answering; the AWS connection gives up after one second) and thawed afterwards, and PostgreSQL's
loading backend is ended with ``pg_terminate_backend`` from another connection. To make the failure
land mid-export for sure, the sandbox stalls the next page for a moment while the service goes.

GCS is not covered here: with the emulator gone, google-cloud-storage retries the listing and
deletes of the clean-up for its default 120-second deadline, so one such test takes minutes.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig
from airflow_provider_prisjakt.transfers.sinks import STAGING_DIR
from tests.integration.services import Service, start_moto_server

from .conftest import connect

pytest.register_assert_rewrite("tests.integration.conftest_services")

from .conftest_services import AWS_CONN_ID, ObjectStore, S3Store, published  # noqa: E402
from .test_faults import PostgresDestination, postgres_warehouse_fixture  # noqa: E402, F401

if TYPE_CHECKING:
    from .test_prisjakt_to_sql import Warehouse

pytestmark = pytest.mark.integration

PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 1, tzinfo=UTC)
EVENTS_PER_PIXEL = 20_000
PAGE_SIZE = 1000
MAX_ROWS_PER_FILE = 2000
PREFIX = "prisjakt/events/"
STALL_SECONDS = 1.5


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrisjaktSandbox]:
    with PrisjaktSandbox(SandboxConfig(events_per_pixel=EVENTS_PER_PIXEL)) as server:
        connect(monkeypatch, server, page_size=PAGE_SIZE)
        yield server


def clean_pages(sandbox: PrisjaktSandbox) -> int:
    return sum(1 for r in sandbox.requests if r.page_key and r.status == 200 and r.fault is None)


class Saboteur(threading.Thread):
    """Once ``ready()`` holds, stall the sandbox's next answer and break the destination with ``act()``."""

    def __init__(self, sandbox: PrisjaktSandbox, ready: Callable[[], bool], act: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.sandbox, self.ready, self.act = sandbox, ready, act
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 60
            while not self.ready():
                if time.monotonic() > deadline:
                    raise TimeoutError("the export never reached the point of failure")
                time.sleep(0.005)
            self.sandbox.fail_next("stall", seconds=STALL_SECONDS)  # the export waits here, mid-window
            self.act()
        except BaseException as err:
            self.error = err
        finally:
            self.done.set()

    def check(self) -> None:
        self.join(timeout=30)
        assert self.done.is_set() and self.error is None, f"sabotage failed: {self.error!r}"


def run_export(store: ObjectStore, pixel: str, start: datetime = PERIOD_START, end: datetime = PERIOD_END) -> Any:
    operator = store.operator(
        PREFIX, pixel_id=pixel, start=start.isoformat(), end=end.isoformat(), max_rows_per_file=MAX_ROWS_PER_FILE
    )
    return operator.execute({})


def published_output(store: ObjectStore) -> dict[str, bytes]:
    """The published objects under the prefix: everything but the staging area."""
    return {key: data for key, data in store.snapshot(PREFIX).items() if f"/{STAGING_DIR}/" not in key}


# -- S3: moto_server stops answering mid-export -----------------------------------------------------


@pytest.fixture
def frozen_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Service, S3Store]]:
    """A moto_server of this test's own, with an AWS connection that gives up after one second."""
    service = start_moto_server()
    extra = {
        "endpoint_url": service.url,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "us-east-1",
        "config_kwargs": {"connect_timeout": 1, "read_timeout": 1, "retries": {"max_attempts": 1}},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}", json.dumps({"conn_type": "aws", "extra": extra}))
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield service, S3Store("prisjakt-s3-failure")
    finally:
        if service.process.poll() is None:
            os.kill(service.process.pid, signal.SIGCONT)
        service.stop()


def test_s3_that_stops_answering_mid_export_fails_clearly_leaves_the_bucket_as_it_was_and_a_retry_succeeds(
    sandbox: PrisjaktSandbox, frozen_s3: tuple[Service, S3Store]
) -> None:
    service, store = frozen_s3
    pixel = sandbox.pixel_ids(4242)[0]
    run_export(store, pixel, end=datetime(2026, 10, 20, tzinfo=UTC))
    before = published_output(store)
    sandbox.clear_requests()
    saboteur = Saboteur(
        sandbox, lambda: clean_pages(sandbox) >= 3, lambda: os.kill(service.process.pid, signal.SIGSTOP)
    )
    saboteur.start()

    with pytest.raises(Exception) as raised:
        run_export(store, pixel)

    saboteur.check()
    message = str(raised.value)
    assert "timeout" in message.lower() and service.url in message, message
    assert f"{PREFIX}{STAGING_DIR}/part-" in message, message
    os.kill(service.process.pid, signal.SIGCONT)
    time.sleep(0.5)  # requests queued while frozen are answered now
    assert published_output(store) == before

    run_export(store, pixel)  # the retry

    manifest, _, _ = published(store, PREFIX)
    assert manifest["rows"] == EVENTS_PER_PIXEL
    assert store.keys(f"{PREFIX}{STAGING_DIR}") == []


# -- PostgreSQL: the loading connection is terminated ------------------------------------------------


def loading_backend(warehouse: Warehouse, table: str) -> int | None:
    """The backend holding a write lock on the table's staging table, once rows are being loaded."""
    rows = warehouse.query(
        "SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE c.relname LIKE %s AND l.mode = 'RowExclusiveLock' AND l.pid <> pg_backend_pid()",
        (f"_pj_stage_{table}%",),
    )
    return int(rows[0][0]) if rows else None


def test_postgres_dropping_the_loading_connection_fails_clearly_leaves_the_table_and_a_retry_succeeds(
    sandbox: PrisjaktSandbox, postgres_warehouse: Warehouse
) -> None:
    pixel = sandbox.pixel_ids(4242)[0]
    destination = PostgresDestination(postgres_warehouse)
    destination.export(pixel, PERIOD_START, datetime(2026, 10, 20, tzinfo=UTC))
    before = destination.snapshot()
    terminated: list[int] = []

    def terminate() -> None:
        pid = loading_backend(postgres_warehouse, destination.table)
        assert pid is not None
        postgres_warehouse.query("SELECT pg_terminate_backend(%s)", (pid,))
        terminated.append(pid)

    saboteur = Saboteur(sandbox, lambda: loading_backend(postgres_warehouse, destination.table) is not None, terminate)
    saboteur.start()

    with pytest.raises(Exception) as raised:
        destination.export(pixel, PERIOD_START, PERIOD_END)

    saboteur.check()
    assert terminated
    message = str(raised.value)
    assert "Staging rows for" in message, message
    assert "the table is unchanged" in message
    # The driver's own words follow (they differ between psycopg versions: "terminating connection"
    # or "server closed the connection unexpectedly").
    assert "connection" in message
    assert destination.snapshot() == before  # the same rows, and no staging table left

    destination.export(pixel, PERIOD_START, PERIOD_END)  # the retry

    assert len(destination.events()) == EVENTS_PER_PIXEL
    assert postgres_warehouse.staging_tables(destination.table) == set()
