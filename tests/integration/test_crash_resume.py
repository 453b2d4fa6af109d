"""
Crash-resume: a running export stores its checkpoint in the task state store every few pages, its
rows staged before the checkpoint that covers them, and a retry after a SIGKILL resumes from it.

Three levels: the export loop with a state store in this process (what each stored checkpoint
covers, and when it is forgotten); a worker process killed while a page is in flight and retried,
on any Airflow version, with the store handed in as Airflow 3.3 hands in ``task_state_store``; and
a real scheduler (Airflow 3.3+) retrying a task whose process was killed. Pages fetched twice are
counted by the sandbox; the published rows must equal an uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from airflow_provider_prisjakt.api.resources import EVENTS
from airflow_provider_prisjakt.exceptions import PrisjaktError, PrisjaktServerError
from airflow_provider_prisjakt.export import checkpoint as checkpoint_module
from airflow_provider_prisjakt.export.checkpoint import STATE_KEY, CheckpointStore, ExportPaused, parts_key
from airflow_provider_prisjakt.export.run import CHECKPOINT_EVERY_PAGES, ExportRequest, ExportRun
from airflow_provider_prisjakt.export.sinks.layout import STAGING_DIR
from airflow_provider_prisjakt.export.sinks.object_store import LocalFolderSink
from airflow_provider_prisjakt.testing import PrisjaktSandbox
from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator
from tests.conftest import REPO_ROOT, register_secret
from tests.dags.prisjakt_test_deferral import LocalFolderExportOperator
from tests.dags.prisjakt_test_task_retries import DAG_ID, TASK_ID

from .airflow_cluster import psycopg_connect
from .conftest import PERIOD_END, PERIOD_START, connect, rate_limited_config
from .local_folder import EXTRACTED_AT, folder_state, make_sink, pixel_folder, published_records
from .task_state import FileStateStore
from .test_prisjakt_to_sql import WAREHOUSE, Warehouse, warehouse  # noqa: F401

pytest.register_assert_rewrite("tests.integration.conftest_services")

from .conftest_services import AWS_CONN_ID, fingerprint, pages_fetched, published  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .airflow_cluster import AirflowCluster, DagRunResult
    from .conftest_services import S3Store

pytestmark = pytest.mark.integration

PAGE_SIZE = 100
PAGES = 20
WINDOW = (PERIOD_START, PERIOD_END)
ROWS_PER_PART = 1000  # more than a checkpoint's pages hold: checkpoints cut the parts
# Each response waits this long, so a kill as soon as a page is requested lands while it is in flight.
LATENCY_MS = 300
# Killed while page 8 is in flight: page 6 is the last stored checkpoint, so pages 7 and 8 are
# fetched again, the most CHECKPOINT_EVERY_PAGES allows.
KILL_AT_PAGE = 8
KILL_TIMEOUT_SECONDS = 60.0


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrisjaktSandbox]:
    """One pixel with 20 full pages of 100 events in the window, and budget to spare."""
    config = rate_limited_config(pages=PAGES, page_size=PAGE_SIZE, budget=10_000, window_seconds=3600)
    with PrisjaktSandbox(config) as server:
        connect(monkeypatch, server, page_size=PAGE_SIZE)
        yield server


def request_for(pixel: str, window: tuple[Any, Any] = WINDOW) -> ExportRequest:
    return ExportRequest(resource=EVENTS, start=window[0], end=window[1], pixel_id=pixel)


def refetched(sandbox: PrisjaktSandbox) -> int:
    """How many page fetches repeated a page already fetched."""
    return sum(count - 1 for count in pages_fetched(sandbox).values())


def kill_when_page_requested(sandbox: PrisjaktSandbox, page: int, pid_of: Callable[[], int | None]) -> None:
    """SIGKILL the process ``pid_of()`` names as soon as the sandbox receives the request for ``page``."""
    deadline = time.monotonic() + KILL_TIMEOUT_SECONDS
    while len(pages_fetched(sandbox)) < page:
        assert time.monotonic() < deadline, f"page {page} was not requested within {KILL_TIMEOUT_SECONDS:.0f} s"
        time.sleep(0.01)
    pid = pid_of()
    assert pid, "no process to kill"
    os.kill(pid, signal.SIGKILL)


# -- the loop with a store, in this process ---------------------------------------------------------


class CheckedStateStore(FileStateStore):
    """A state store that checks, at every checkpoint written, that the parts it lists are staged whole."""

    def __init__(self, path: Path, folder: Path) -> None:
        super().__init__(path)
        self.folder = folder
        self.checkpoints: list[dict[str, Any]] = []

    def set(self, key: str, value: Any) -> None:
        checkpoint = value["checkpoint"]
        for part in checkpoint["parts"]:
            data = (self.folder / STAGING_DIR / part["name"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == part["sha256"]
            assert len(data.splitlines()) == part["rows"]
        assert sum(part["rows"] for part in checkpoint["parts"]) == checkpoint["rows"]
        self.checkpoints.append(checkpoint)
        super().set(key, value)


def test_every_stored_checkpoint_covers_only_rows_already_staged_and_success_forgets_it(
    sandbox: PrisjaktSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pixel = sandbox.pixel_ids(4242)[0]
    root = tmp_path / "out"
    state = CheckedStateStore(tmp_path / "state.json", pixel_folder(root, pixel))
    request = request_for(pixel)
    sink = make_sink(root, tmp_path / "spool", rows_per_part=ROWS_PER_PART)
    store = CheckpointStore(state, request)

    hook = connect(monkeypatch, sandbox, page_size=PAGE_SIZE)
    manifest = ExportRun(hook, request, sink, extracted_at=EXTRACTED_AT, store=store).execute()

    assert [c["rows"] for c in state.checkpoints] == [
        PAGE_SIZE * pages for pages in range(CHECKPOINT_EVERY_PAGES, PAGES + 1, CHECKPOINT_EVERY_PAGES)
    ]
    assert all(c["destination"] == sink.describe() for c in state.checkpoints)
    assert state.values() == {}  # forgotten before publishing
    assert manifest["counters"]["checkpoints"] == PAGES // CHECKPOINT_EVERY_PAGES
    _, records = published_records(root, pixel)
    assert fingerprint(records) == fingerprint(list(sandbox.expected_events(pixel, *WINDOW)))
    assert manifest["rows"] == PAGES * PAGE_SIZE
    assert {part["rows"] for part in manifest["parts"]} == {CHECKPOINT_EVERY_PAGES * PAGE_SIZE}


def test_a_failed_export_forgets_its_checkpoint_and_removes_what_it_staged(
    sandbox: PrisjaktSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pixel = sandbox.pixel_ids(4242)[0]
    root = tmp_path / "out"
    state = FileStateStore(tmp_path / "state.json")
    request = request_for(pixel)

    stored: list[int] = []

    class FailAfterTwoCheckpoints(LocalFolderSink):
        def close_part(self) -> dict[str, Any]:
            entry = super().close_part()
            if entry["name"] == "part-00001.jsonl":
                stored.append(state.get(STATE_KEY)["checkpoint"]["rows"])  # the one before this part's
                sandbox.fail_next("500", count=100)
            return entry

    sink = make_sink(root, tmp_path / "spool", FailAfterTwoCheckpoints, rows_per_part=ROWS_PER_PART)
    with pytest.raises(PrisjaktServerError):
        ExportRun(
            connect(monkeypatch, sandbox, page_size=PAGE_SIZE, max_retries=1),
            request,
            sink,
            extracted_at=EXTRACTED_AT,
            store=CheckpointStore(state, request),
        ).execute()

    assert stored == [CHECKPOINT_EVERY_PAGES * PAGE_SIZE]
    assert state.values() == {}
    assert [name for name, data in folder_state(root).items() if data is not None] == []


def test_a_rate_limit_pause_stores_the_checkpoint_the_deferral_carries(
    sandbox: PrisjaktSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.configure(rate_limit=5, rate_window=600)
    hook = connect(monkeypatch, sandbox, page_size=PAGE_SIZE, max_inline_wait=1)
    pixel = sandbox.pixel_ids(4242)[0]
    state = FileStateStore(tmp_path / "state.json")
    request = request_for(pixel)
    sink = make_sink(tmp_path / "out", tmp_path / "spool", rows_per_part=ROWS_PER_PART)

    with pytest.raises(ExportPaused) as paused:
        ExportRun(hook, request, sink, extracted_at=EXTRACTED_AT, store=CheckpointStore(state, request)).execute(
            pause_on_rate_limit=True
        )

    stored = state.get(STATE_KEY)
    assert stored["checkpoint"] == paused.value.checkpoint.to_dict()
    assert (stored["start"], stored["end"]) == (request.start.isoformat(), request.end.isoformat())
    assert CheckpointStore(state, request).load() == paused.value.checkpoint


def test_a_stored_checkpoint_resumes_only_the_same_export_into_the_same_destination(
    sandbox: PrisjaktSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pixel = sandbox.pixel_ids(4242)[0]
    state = FileStateStore(tmp_path / "state.json")
    request = request_for(pixel)
    sink = make_sink(tmp_path / "out", tmp_path / "spool", rows_per_part=ROWS_PER_PART)
    hook = connect(monkeypatch, sandbox, page_size=PAGE_SIZE)
    run = ExportRun(hook, request, sink, extracted_at=EXTRACTED_AT, store=CheckpointStore(state, request))
    run.begin()
    for batch in run.reader.batches(run.state.targets, run.state.cursor):
        run.write_batch(batch)
        if state.values():
            break  # crashed here, with a checkpoint stored
    stored = CheckpointStore(state, request).load()
    assert stored is not None and stored.rows == CHECKPOINT_EVERY_PAGES * PAGE_SIZE

    assert CheckpointStore(state, replace(request, end=PERIOD_END.replace(day=2))).load() is None
    elsewhere = make_sink(tmp_path / "elsewhere", tmp_path / "spool", rows_per_part=ROWS_PER_PART)
    assert not ExportRun(hook, request, elsewhere, extracted_at=EXTRACTED_AT, checkpoint=stored).resuming
    assert ExportRun(hook, request, sink, extracted_at=EXTRACTED_AT, checkpoint=stored).resuming
    # Airflow before 3.3 (or a task run outside Airflow): no store, so nothing is kept and a retry starts over.
    assert CheckpointStore.from_context({}, request) is None


class CountingStateStore(FileStateStore):
    """A state store that counts the writes of each key."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes: Counter[str] = Counter()

    def set(self, key: str, value: Any) -> None:
        self.writes[key] += 1
        super().set(key, value)


def test_the_parts_of_a_long_export_are_stored_in_groups_each_written_once(
    sandbox: PrisjaktSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint_module, "PARTS_PER_KEY", 3)
    pixel = sandbox.pixel_ids(4242)[0]
    state = CountingStateStore(tmp_path / "state.json")
    request = request_for(pixel)
    sink = make_sink(tmp_path / "out", tmp_path / "spool", rows_per_part=ROWS_PER_PART)
    run = ExportRun(
        connect(monkeypatch, sandbox, page_size=PAGE_SIZE),
        request,
        sink,
        extracted_at=EXTRACTED_AT,
        store=CheckpointStore(state, request),
    )
    run.begin()
    for batch in run.reader.batches(run.state.targets, run.state.cursor):
        run.write_batch(batch)
        if len(run.state.parts) == 8:
            break  # crashed here: eight parts staged, two full groups of three

    assert state.writes == {STATE_KEY: 8, parts_key(0): 1, parts_key(1): 1}
    assert len(state.get(STATE_KEY)["checkpoint"]["parts"]) == 2
    resumed = CheckpointStore(state, request).load()
    assert resumed is not None and resumed.parts == run.state.parts

    ExportRun(
        connect(monkeypatch, sandbox, page_size=PAGE_SIZE),
        request,
        sink,
        extracted_at=EXTRACTED_AT,
        checkpoint=resumed,
        store=CheckpointStore(state, request),
    ).execute()
    assert state.values() == {}


# -- a worker process killed mid-page, then retried (any Airflow version) --------------------------------

# The worker: one export task as a fresh process, with the task instance's state store in a file.
WORKER = r"""
import importlib, json, sys
from tests.integration.task_state import FileStateStore
args = json.loads(sys.argv[1])
module, _, name = args["operator"].partition(":")
operator = getattr(importlib.import_module(module), name)(task_id="export_events", **args["arguments"])
operator.execute({"task_state_store": FileStateStore(args["state"])})
"""
LOCAL_OPERATOR = "tests.dags.prisjakt_test_deferral:LocalFolderExportOperator"
SQL_OPERATOR = "airflow_provider_prisjakt.transfers.prisjakt_to_sql:PrisjaktToSqlOperator"


def kill_worker_at_page(
    sandbox: PrisjaktSandbox, operator: str, arguments: dict[str, Any], state: FileStateStore, log_path: Path
) -> int:
    """
    Run the export ``operator`` (``module:Class``) with ``arguments`` in a worker process, SIGKILL it
    while page :data:`KILL_AT_PAGE` is in flight, and return how many pages it requested.
    """
    sandbox.clear_requests()
    sandbox.configure(latency_ms=LATENCY_MS)
    payload = json.dumps({"operator": operator, "arguments": arguments, "state": str(state.path)})
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, payload], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        kill_when_page_requested(sandbox, KILL_AT_PAGE, lambda: worker.pid if worker.poll() is None else None)
    finally:
        worker.kill()
        worker.wait(timeout=10)
        sandbox.configure(latency_ms=0)
    assert worker.returncode == -signal.SIGKILL, log_path.read_text()[-3000:]
    return len(pages_fetched(sandbox))


def stored_pages(state: FileStateStore) -> int:
    """The pages the stored checkpoint covers, checked to be a whole number of checkpoint intervals."""
    pages = state.get(STATE_KEY)["checkpoint"]["rows"] // PAGE_SIZE
    assert pages % CHECKPOINT_EVERY_PAGES == 0 and pages >= KILL_AT_PAGE - CHECKPOINT_EVERY_PAGES
    return int(pages)


def window_arguments(pixel: str) -> dict[str, Any]:
    return {"pixel_id": pixel, "start": WINDOW[0].isoformat(), "end": WINDOW[1].isoformat()}


def test_a_worker_killed_mid_page_is_retried_from_its_checkpoint_fetching_at_most_two_pages_again(
    sandbox: PrisjaktSandbox, tmp_path: Path
) -> None:
    pixel = sandbox.pixel_ids(4242)[0]
    arguments = {**window_arguments(pixel), "max_rows_per_file": ROWS_PER_PART}
    LocalFolderExportOperator(task_id="reference", root=str(tmp_path / "reference"), **arguments).execute({})
    reference_manifest, reference_records = published_records(tmp_path / "reference", pixel, "export")
    state = FileStateStore(tmp_path / "state.json")
    arguments["root"] = str(tmp_path / "out")

    requested = kill_worker_at_page(sandbox, LOCAL_OPERATOR, arguments, state, tmp_path / "worker.log")
    covered = stored_pages(state)

    # The retry: a fresh operator in another process, with the task instance's state store.
    summary = LocalFolderExportOperator(task_id="export_events", **arguments).execute({"task_state_store": state})

    # Fetched again: the pages after the stored checkpoint, up to the one in flight.
    assert 1 <= refetched(sandbox) == requested - covered <= CHECKPOINT_EVERY_PAGES
    assert len(pages_fetched(sandbox)) == PAGES
    manifest, records = published_records(tmp_path / "out", pixel, "export")
    assert fingerprint(records) == fingerprint(reference_records)
    assert manifest["rows"] == reference_manifest["rows"] == summary["rows"] == PAGES * PAGE_SIZE
    assert state.values() == {}
    assert not (pixel_folder(tmp_path / "out", pixel, "export") / STAGING_DIR).exists()


class KilledLoad(NamedTuple):
    """
    A load killed at :data:`KILL_AT_PAGE`: the sandbox it read and the database it loaded, its operator's
    arguments, its task state store and the pages it requested.
    """

    sandbox: PrisjaktSandbox
    db: Warehouse
    arguments: dict[str, Any]
    state: FileStateStore
    requested: int


@pytest.fixture
def killed_sql_load(
    sandbox: PrisjaktSandbox,
    warehouse: Warehouse,  # noqa: F811
    tmp_path: Path,
) -> KilledLoad:
    """A load of the pixel's window into a new table of ``warehouse``, killed in a worker process mid-page."""
    pixel = sandbox.pixel_ids(4242)[0]
    arguments = {"conn_id": WAREHOUSE, "table": warehouse.table_name(), **window_arguments(pixel)}
    state = FileStateStore(tmp_path / "state.json")
    requested = kill_worker_at_page(sandbox, SQL_OPERATOR, arguments, state, tmp_path / "worker.log")
    return KilledLoad(sandbox, warehouse, arguments, state, requested)


@pytest.mark.parametrize("warehouse", ["postgres", "sqlite"], indirect=True)
def test_a_sql_load_killed_mid_page_is_retried_into_the_same_rows(killed_sql_load: KilledLoad) -> None:
    sandbox, db, arguments, state, requested = killed_sql_load
    table = arguments["table"]
    if db.dialect == "sqlite":
        # SQLite's staging commits every batch, so it may hold rows after the last checkpoint: no
        # checkpoint is kept, and the retry starts over.
        assert state.values() == {}
        covered = 0
    else:
        covered = stored_pages(state)  # the staging table's rows up to it are committed, the rest rolled back

    summary = PrisjaktToSqlOperator(task_id="export_events", **arguments).execute({"task_state_store": state})

    assert refetched(sandbox) == requested - covered
    assert len(pages_fetched(sandbox)) == PAGES
    loaded = sorted(row[0] for row in db.query(f"SELECT event_id FROM {db.quote(table)}"))
    assert loaded == sorted(event["id"] for event in sandbox.expected_events(arguments["pixel_id"], *WINDOW))
    assert summary["rows"] == PAGES * PAGE_SIZE
    assert db.staging_tables(table) == set()
    assert state.values() == {}


@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
def test_a_retry_that_cannot_adopt_the_staging_forgets_the_checkpoint_and_the_next_starts_over(
    killed_sql_load: KilledLoad,
) -> None:
    sandbox, db, arguments, state, _ = killed_sql_load
    stored_pages(state)
    for staging in db.staging_tables(arguments["table"]):  # e.g. dropped by a cleanup between the tries
        db.execute(f"DROP TABLE {db.quote(staging)}")

    with pytest.raises(PrisjaktError, match="staging table .* is gone"):
        PrisjaktToSqlOperator(task_id="export_events", **arguments).execute({"task_state_store": state})
    assert state.values() == {}

    sandbox.clear_requests()
    summary = PrisjaktToSqlOperator(task_id="export_events", **arguments).execute({"task_state_store": state})
    assert summary["rows"] == PAGES * PAGE_SIZE
    assert len(pages_fetched(sandbox)) == PAGES and refetched(sandbox) == 0  # started over, from page 1


# -- a real scheduler retries a killed task (Airflow 3.3+) -----------------------------------------------

# Its export writes below ``prisjakt/events/`` of the run's bucket, with two retries a second apart.
PREFIX = "prisjakt/events"


def metadata_database(cluster: AirflowCluster) -> Any:
    """A connection to the cluster's metadata database, for what the test reads of task instances."""
    return psycopg_connect(cluster.db_url.replace("postgresql+psycopg2://", "postgresql://"))


def run_killed_at_page(
    cluster: AirflowCluster, sandbox: PrisjaktSandbox, conf: dict[str, Any], page: int
) -> DagRunResult:
    """
    Run the retries DAG with ``conf``, SIGKILL its task process while ``page`` is in flight (counting
    from the sandbox's last :meth:`~PrisjaktSandbox.clear_requests`), and return the run once
    Airflow's retry has ended it.
    """
    with metadata_database(cluster) as metadata:

        def task_pid() -> int | None:
            row = metadata.execute(
                "SELECT pid FROM task_instance WHERE dag_id = %s AND task_id = %s AND state = 'running'",
                (DAG_ID, TASK_ID),
            ).fetchone()
            return row[0] if row else None

        sandbox.configure(latency_ms=LATENCY_MS)
        with ThreadPoolExecutor(max_workers=1) as runner:
            running = runner.submit(cluster.run_dag, DAG_ID, conf)
            try:
                kill_when_page_requested(sandbox, page, task_pid)
            finally:
                sandbox.configure(latency_ms=0)
            return running.result()


def stored_keys(cluster: AirflowCluster, run_id: str) -> list[str]:
    """The task state store keys the retries DAG's run ``run_id`` still holds."""
    with metadata_database(cluster) as metadata:
        rows = metadata.execute(
            "SELECT key FROM task_state_store WHERE dag_id = %s AND run_id = %s", (DAG_ID, run_id)
        ).fetchall()
    return [row[0] for row in rows]


def use_cluster(cluster: AirflowCluster, sandbox: PrisjaktSandbox, aws_connection: str, aws_conn_id: str) -> None:
    """Give the cluster's tasks ``sandbox`` as ``prisjakt_default``, and ``aws_connection`` (JSON) as ``aws_conn_id``."""
    register_secret(sandbox.client_secret)
    cluster.set_connections(
        {"prisjakt_default": sandbox.connection_json(page_size=PAGE_SIZE), aws_conn_id: aws_connection}
    )


@pytest.mark.airflow3_only
def test_a_task_killed_mid_export_is_retried_by_the_scheduler_from_its_checkpoint(
    airflow_cluster: AirflowCluster, sandbox: PrisjaktSandbox, s3_store: S3Store
) -> None:
    pixel = sandbox.pixel_ids(4242)[0]
    start, end = (moment.isoformat() for moment in WINDOW)
    s3_store.operator("reference", pixel_id=pixel, start=start, end=end).execute({})
    reference_manifest, _, reference_parts = published(s3_store, f"reference/pixel_id={pixel}")
    sandbox.clear_requests()
    use_cluster(airflow_cluster, sandbox, os.environ[f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}"], AWS_CONN_ID)
    conf = {"pixel_id": pixel, "start": start, "end": end, "bucket": s3_store.bucket, "aws_conn_id": AWS_CONN_ID}

    run = run_killed_at_page(airflow_cluster, sandbox, conf, KILL_AT_PAGE)

    assert run.state == "success", run
    states = run.states_of(TASK_ID)
    assert "up_for_retry" in states and states[-1] == "success", run
    assert 1 <= refetched(sandbox) <= CHECKPOINT_EVERY_PAGES, pages_fetched(sandbox)
    assert len(pages_fetched(sandbox)) == PAGES
    manifest, _, parts = published(s3_store, f"{PREFIX}/pixel_id={pixel}")
    records = [record for rows in parts.values() for record in rows]
    assert fingerprint(records) == fingerprint([record for rows in reference_parts.values() for record in rows])
    assert manifest["rows"] == reference_manifest["rows"] == PAGES * PAGE_SIZE
    # Every checkpoint but the killed try's last one, which was stored before it could count itself.
    assert manifest["counters"]["checkpoints"] == PAGES // CHECKPOINT_EVERY_PAGES - 1
    assert s3_store.keys(f"{PREFIX}/pixel_id={pixel}/{STAGING_DIR}/") == []
    assert stored_keys(airflow_cluster, run.run_id) == []  # forgotten once the export succeeded
