"""
A worker killed with SIGKILL in the middle of an export, then the task retried.

The export runs in a child process (a worker) against the sandbox running in this process. The
test kills it at a known point: while paging (the sandbox's budget makes the worker wait inline
after a few pages, with parts staged) or, for S3, while publishing (after the old manifest is gone
and some parts are copied). The retry runs in this process. The destination must then be identical
to an uninterrupted run: no stale parts, no staging left, no duplicate rows, and never a manifest
that does not describe complete output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_prisjakt.export.sinks.layout import MANIFEST_NAME, STAGING_DIR
from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig
from tests.conftest import KNOWN_SECRETS, REPO_ROOT

from .conftest import connect

pytest.register_assert_rewrite("tests.integration.conftest_services")

from .conftest_services import AWS_CONN_ID, S3Store, moto_service, pixel_prefix, published  # noqa: E402, F401
from .conftest_services import s3_store as s3_store_fixture  # noqa: E402, F401
from .test_faults import PostgresDestination, postgres_warehouse_fixture  # noqa: E402, F401
from .test_prisjakt_to_sql import WAREHOUSE, Warehouse  # noqa: E402

pytestmark = pytest.mark.integration

PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 1, tzinfo=UTC)
WINDOW = (PERIOD_START, PERIOD_START + timedelta(days=20))  # about 19,400 events: 20 pages
EVENTS_PER_PIXEL = 30_000
PAGE_SIZE = 1000
MAX_ROWS_PER_FILE = 2000  # a part every two pages
PAGES_BEFORE_KILL = 8  # the sandbox's budget while the worker runs: it then waits inline for the reset
CHILD_TIMEOUT = 60.0

# The worker: one export task, as a fresh process reading its connections from the environment.
WORKER = r"""
import json, sys, time
args = json.loads(sys.argv[1])
if args["kind"] == "s3":
    from airflow_provider_prisjakt.export.sinks.object_store import S3Sink
    from airflow_provider_prisjakt.transfers.prisjakt_to_s3 import PrisjaktToS3Operator
    if args.get("slow_publish"):
        copy = S3Sink.copy_object
        def slow_copy(self, source, dest):
            time.sleep(0.3)
            copy(self, source, dest)
        S3Sink.copy_object = slow_copy
    operator = PrisjaktToS3Operator(task_id="export", **args["operator"])
else:
    from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator
    operator = PrisjaktToSqlOperator(task_id="export", **args["operator"])
operator.execute({})
print("worker finished")
"""


class Worker:
    """The export task running in a child process, killed with SIGKILL when the test says so."""

    def __init__(self, kind: str, operator: dict[str, Any], log_path: Path, **options: Any) -> None:
        self.log_path = log_path
        arguments = json.dumps({"kind": kind, "operator": operator, **options})
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", WORKER, arguments],
                cwd=REPO_ROOT,
                env=os.environ.copy(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def kill_when(self, condition: Callable[[], bool], what: str) -> None:
        """SIGKILL the worker as soon as ``condition()`` holds; fail if it ends or never gets there."""
        deadline = time.monotonic() + CHILD_TIMEOUT
        try:
            while not condition():
                if self.process.poll() is not None:
                    pytest.fail(f"the worker ended (code {self.process.returncode}) before {what}:\n{self.output()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"the worker did not reach {what} within {CHILD_TIMEOUT:.0f} s:\n{self.output()}")
                time.sleep(0.01)
        finally:
            if self.process.poll() is None:
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        assert self.process.returncode == -signal.SIGKILL

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def throttle(sandbox: PrisjaktSandbox, budget: int) -> None:
    """Give the client ``budget`` requests for the next five minutes: the worker then waits inline."""
    sandbox.clear_requests()
    sandbox.reset_rate_limit()
    sandbox.configure(rate_limit=budget, rate_window=300)


def unthrottle(sandbox: PrisjaktSandbox) -> None:
    sandbox.configure(rate_limit=10_000, rate_window=3600)
    sandbox.reset_rate_limit()


def clean_pages(sandbox: PrisjaktSandbox) -> int:
    return sum(1 for r in sandbox.requests if r.page_key and r.status == 200 and r.fault is None)


def assert_no_secret_in(text: str) -> None:
    assert not [secret for secret in KNOWN_SECRETS if secret in text], "a secret appeared in the worker's output"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Any:
    with PrisjaktSandbox(SandboxConfig(events_per_pixel=EVENTS_PER_PIXEL)) as server:
        # max_inline_wait: the throttled worker sleeps through the reset instead of failing.
        connect(monkeypatch, server, page_size=PAGE_SIZE, max_inline_wait=600)
        yield server


# -- S3 ---------------------------------------------------------------------------------------------


def s3_operator(store: S3Store, prefix: str, pixel: str, start: datetime, end: datetime) -> dict[str, Any]:
    return {
        "s3_bucket": store.bucket,
        "s3_key": prefix,
        "aws_conn_id": AWS_CONN_ID,
        "pixel_id": pixel,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "max_rows_per_file": MAX_ROWS_PER_FILE,
    }


def run_s3(store: S3Store, prefix: str, pixel: str, start: datetime, end: datetime) -> dict[str, Any]:
    """The export run in this process: the uninterrupted reference, yesterday's run, or the retry."""
    operator = store.operator(
        prefix, pixel_id=pixel, start=start.isoformat(), end=end.isoformat(), max_rows_per_file=MAX_ROWS_PER_FILE
    )
    return operator.execute({})


def comparable(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest without what differs between two runs of the same window: counters and the run time."""
    return {k: v for k, v in manifest.items() if k not in {"counters", "extracted_at"}}


def manifest_is_whole(store: S3Store, folder: str, allowed: list[dict[str, Any]]) -> None:
    """Either no manifest in ``folder``, or one of the complete manifests ``allowed`` (never a partial one)."""
    key = f"{folder}{MANIFEST_NAME}"
    if key in store.keys(folder):
        assert json.loads(store.read(key)) in allowed


@pytest.mark.parametrize("kill_point", ["paging", "publishing"])
def test_a_killed_s3_export_retried_ends_identical_to_an_uninterrupted_run(
    sandbox: PrisjaktSandbox, s3_store: S3Store, tmp_path: Path, kill_point: str
) -> None:
    pixel = sandbox.pixel_ids(4242)[0]
    reference, target = "reference/", "events/"
    # The folder of the pixel's output below the target prefix, where parts, staging and manifest lie.
    folder = pixel_prefix(target, pixel)
    run_s3(s3_store, reference, pixel, *WINDOW)
    reference_manifest, reference_parts, _ = published(s3_store, pixel_prefix(reference, pixel))
    # Yesterday's run of the target covered a longer window: more parts, which must not survive.
    run_s3(s3_store, target, pixel, PERIOD_START, PERIOD_END)
    earlier_manifest, earlier_parts, _ = published(s3_store, folder)
    assert len(earlier_parts) > len(reference_parts)
    earlier = s3_store.snapshot(target)

    operator = s3_operator(s3_store, target, pixel, *WINDOW)
    if kill_point == "paging":
        throttle(sandbox, PAGES_BEFORE_KILL)
        worker = Worker("s3", operator, tmp_path / "worker.log")
        staged = f"{folder}{STAGING_DIR}/"
        worker.kill_when(lambda: len(s3_store.keys(staged)) == PAGES_BEFORE_KILL // 2, "staging four parts")
        unthrottle(sandbox)
        after_kill = s3_store.snapshot(target)
        assert {
            k: v for k, v in after_kill.items() if not k.startswith(staged)
        } == earlier  # published output untouched
    else:
        worker = Worker("s3", operator, tmp_path / "worker.log", slow_publish=True)
        manifest_key = f"{folder}{MANIFEST_NAME}"
        first_part = f"{folder}part-00000.jsonl"

        def publishing() -> bool:
            # The old manifest is gone and the first new part is copied over yesterday's.
            return (
                manifest_key not in s3_store.keys(folder)
                and s3_store.read(first_part) == reference_parts["part-00000.jsonl"]
            )

        worker.kill_when(publishing, "publishing")
        assert s3_store.keys(f"{folder}{STAGING_DIR}/")  # killed mid-publish: staging not yet cleaned up
        assert manifest_key not in s3_store.keys(folder)
    assert_no_secret_in(worker.output())
    manifest_is_whole(s3_store, folder, [earlier_manifest])

    run_s3(s3_store, target, pixel, *WINDOW)  # the retry

    manifest, parts, _ = published(s3_store, folder)  # also checks nothing but the manifest's parts is there
    assert parts == reference_parts
    assert comparable(manifest) == comparable(reference_manifest)
    assert s3_store.keys(f"{folder}{STAGING_DIR}") == []
    assert s3_store.keys(target) == s3_store.keys(folder)
    assert earlier_manifest != manifest


# -- PostgreSQL -------------------------------------------------------------------------------------


def postgres_operator(table: str, pixel: str) -> dict[str, Any]:
    return {
        "conn_id": WAREHOUSE,
        "table": table,
        "pixel_id": pixel,
        "start": WINDOW[0].isoformat(),
        "end": WINDOW[1].isoformat(),
    }


def test_a_killed_postgres_load_retried_ends_identical_to_an_uninterrupted_run(
    sandbox: PrisjaktSandbox, postgres_warehouse: Warehouse, tmp_path: Path
) -> None:
    pixel = sandbox.pixel_ids(4242)[0]
    reference = PostgresDestination(postgres_warehouse)
    reference.export(pixel, *WINDOW)
    target = PostgresDestination(postgres_warehouse)
    target.export(pixel, *WINDOW)  # yesterday's run of the same window
    before = target.snapshot()
    assert before == reference.snapshot()

    throttle(sandbox, PAGES_BEFORE_KILL)
    worker = Worker("postgres", postgres_operator(target.table, pixel), tmp_path / "worker.log")
    worker.kill_when(
        lambda: clean_pages(sandbox) >= PAGES_BEFORE_KILL and rows_being_staged(postgres_warehouse, target.table),
        "staging rows",
    )
    unthrottle(sandbox)
    assert_no_secret_in(worker.output())
    rows, staging = target.snapshot()
    assert rows == before[0]  # the table is as it was; only an empty staging table may be left behind

    target.export(pixel, *WINDOW)  # the retry

    assert target.snapshot() == reference.snapshot()
    table = postgres_warehouse.quote(target.table)
    [(total, distinct)] = postgres_warehouse.query(f"SELECT COUNT(*), COUNT(DISTINCT event_id) FROM {table}")
    assert total == distinct == len(list(sandbox.expected_events(pixel, *WINDOW)))
    assert postgres_warehouse.staging_tables(target.table) == set()


def rows_being_staged(warehouse: Warehouse, table: str) -> bool:
    """Whether another backend holds a write lock on the table's staging table: rows are being loaded."""
    found = warehouse.query(
        "SELECT COUNT(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE c.relname LIKE %s AND l.mode = 'RowExclusiveLock' AND l.pid <> pg_backend_pid()",
        (f"_pj_stage_{table}%",),
    )
    return bool(found[0][0])
