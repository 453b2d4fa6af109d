"""
A destination that fails in the middle of an export: the storage service goes away, or the
database drops the loading connection. The task fails with a clear message, the destination is left
as it was, and a retry succeeds.

No mocks: a moto_server or gcp-storage-emulator of the test's own is frozen with SIGSTOP mid-export
(so the store stops answering; the AWS connection gives up after one second, the GCS operator after
its ``request_timeout``) and thawed afterwards, and PostgreSQL's loading backend is ended with
``pg_terminate_backend`` from another connection. To make the failure land mid-export for sure, the
sandbox stalls the next page for a moment while the service goes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pytest

from airflow_provider_prisjakt.export.sinks.layout import STAGING_DIR
from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig
from tests.integration.services import Service, start_gcs_emulator, start_moto_server

from .conftest import connect

pytest.register_assert_rewrite("tests.integration.conftest_services")

from .conftest_services import (  # noqa: E402
    AWS_CONN_ID,
    GCSStore,
    ObjectStore,
    S3Store,
    connect_gcs,
    pixel_prefix,
    published,
)
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


def run_export(
    store: ObjectStore, pixel: str, start: datetime = PERIOD_START, end: datetime = PERIOD_END, **options: Any
) -> Any:
    operator = store.operator(
        PREFIX,
        pixel_id=pixel,
        start=start.isoformat(),
        end=end.isoformat(),
        max_rows_per_file=MAX_ROWS_PER_FILE,
        **options,
    )
    return operator.execute({})


def published_output(store: ObjectStore) -> dict[str, bytes]:
    """The published objects under the prefix: everything but the staging area."""
    return {key: data for key, data in store.snapshot(PREFIX).items() if f"/{STAGING_DIR}/" not in key}


# -- object stores that stop answering mid-export -----------------------------------------------------


@contextlib.contextmanager
def stopped_at_exit(service: Service) -> Iterator[Service]:
    """Yield ``service``; at exit thaw it if it is frozen, then stop it."""
    try:
        yield service
    finally:
        if service.process.poll() is None:
            os.kill(service.process.pid, signal.SIGCONT)
        service.stop()


@dataclass
class FrozenStore:
    """
    An object store of the test's own that can be frozen, with what a failure against it must say.

    :param service: the store's server process.
    :param store: a bucket on it.
    :param options: operator arguments that make the export give up on it within seconds.
    :param location: text the failure names besides the staged part (the endpoint or the bucket).
    """

    service: Service
    store: ObjectStore
    options: dict[str, Any]
    location: str


def start_frozen_s3(monkeypatch: pytest.MonkeyPatch, service: Service) -> FrozenStore:
    """A bucket on ``service`` (moto_server), with an AWS connection that gives up after one second."""
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
    return FrozenStore(service, S3Store("prisjakt-s3-failure"), {}, service.url)


def start_frozen_gcs(monkeypatch: pytest.MonkeyPatch, service: Service) -> FrozenStore:
    """A bucket on ``service`` (gcp-storage-emulator); the operator's requests time out after one second."""
    connect_gcs(monkeypatch, service)
    store = GCSStore("prisjakt-gcs-failure")
    return FrozenStore(service, store, {"request_timeout": 1}, f"gs://{store.bucket}/")


FROZEN_STORES = {
    "s3": (start_moto_server, start_frozen_s3),
    "gcs": (start_gcs_emulator, start_frozen_gcs),
}


@pytest.fixture(params=sorted(FROZEN_STORES))
def frozen_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[FrozenStore]:
    """An S3 or GCS server of this test's own, stopped (and thawed first if frozen) at the end."""
    start_service, connect = FROZEN_STORES[request.param]
    with stopped_at_exit(start_service()) as service:
        yield connect(monkeypatch, service)


def test_a_store_that_stops_answering_mid_export_fails_clearly_leaves_the_bucket_and_a_retry_succeeds(
    sandbox: PrisjaktSandbox, frozen_store: FrozenStore
) -> None:
    service, store = frozen_store.service, frozen_store.store
    pixel = sandbox.pixel_ids(4242)[0]
    folder = pixel_prefix(PREFIX, pixel)

    def export(end: datetime) -> Any:
        return run_export(store, pixel, end=end, **frozen_store.options)

    export(datetime(2026, 10, 20, tzinfo=UTC))
    before = published_output(store)
    sandbox.clear_requests()
    saboteur = Saboteur(
        sandbox, lambda: clean_pages(sandbox) >= 3, lambda: os.kill(service.process.pid, signal.SIGSTOP)
    )
    saboteur.start()
    started = time.monotonic()
    with pytest.raises(Exception) as raised:
        export(PERIOD_END)
    failed_after = time.monotonic() - started

    saboteur.check()
    message = str(raised.value)
    assert "timeout" in message.lower() or "timed out" in message.lower(), message
    assert frozen_store.location in message, message
    # botocore names the object in its endpoint URL, where the folder's '=' is percent-encoded.
    assert f"{folder}{STAGING_DIR}/part-" in unquote(message), message
    # The store's calls give up after a few one-second timeouts, not the clients' default minutes.
    assert failed_after < 30, failed_after
    os.kill(service.process.pid, signal.SIGCONT)
    time.sleep(0.5)  # requests queued while frozen are answered now
    assert published_output(store) == before

    export(PERIOD_END)  # the retry

    manifest, _, _ = published(store, folder)
    assert manifest["rows"] == EVENTS_PER_PIXEL
    assert store.keys(f"{folder}{STAGING_DIR}") == []


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
