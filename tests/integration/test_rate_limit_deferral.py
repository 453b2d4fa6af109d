"""
Exports that outlive an exhausted rate-limit budget, against the sandbox with short windows.

An export with ``deferrable=True`` defers when the budget is spent and the reset is further away
than ``max_inline_wait``, and resumes from its checkpoint on both resume paths: the real
triggerer's (the event merged into the stored defer kwargs) and Airflow 3's ``dag.test()``'s (the
event replaces them). Each resume is a fresh operator instance, as on a worker.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException, TaskDeferred

from airflow_provider_prisjakt.exceptions import PrisjaktRateLimitError
from airflow_provider_prisjakt.export.sinks.object_store import LocalFolderSink
from airflow_provider_prisjakt.testing import PrisjaktSandbox
from airflow_provider_prisjakt.triggers.prisjakt import PrisjaktRateLimitTrigger
from tests.conftest import DAGS_FOLDER
from tests.dags.prisjakt_test_deferral import DAG_ID, LocalFolderExportOperator

from .conftest import PERIOD_END, PERIOD_START, connect, rate_limited_config
from .local_folder import export_operator

PAGE_SIZE = 100
PAGES = 30
BUDGET = 10
WINDOW_SECONDS = 2.0
# Resets of a 2 s window are too far to sleep through inline, so the export defers.
EXTRA = {"max_inline_wait": 0.5}


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrisjaktSandbox]:
    """A sandbox with 30 pages of events for one pixel and a budget of 10 requests per 2 s window."""
    server = PrisjaktSandbox(
        rate_limited_config(pages=PAGES, page_size=PAGE_SIZE, budget=BUDGET, window_seconds=WINDOW_SECONDS)
    ).start()
    connect(monkeypatch, server, **EXTRA)
    yield server
    server.stop()


@pytest.fixture
def opened_parts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every part number any sink opens, across all operator instances of a test."""
    opened: list[int] = []
    original = LocalFolderSink.open_part

    def record(self: LocalFolderSink, number: int) -> None:
        opened.append(number)
        original(self, number)

    monkeypatch.setattr(LocalFolderSink, "open_part", record)
    return opened


def import_string(classpath: str) -> Any:
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)


def json_round_trip(value: Any) -> Any:
    return json.loads(json.dumps(value))


def fire(deferred: TaskDeferred) -> dict[str, Any]:
    """Rebuild the trigger from its serialized form, as the triggerer does, and return its first event."""
    classpath, kwargs = deferred.trigger.serialize()
    trigger = import_string(classpath)(**json_round_trip(kwargs))

    async def first() -> dict[str, Any]:
        return (await trigger.run().asend(None)).payload

    return json_round_trip(asyncio.run(first()))


def run_with_deferrals(
    make_operator: Callable[[], LocalFolderExportOperator], resume_path: str
) -> tuple[dict[str, Any], list[TaskDeferred]]:
    """Execute, then fire each deferral's trigger and resume a fresh operator, until the task returns."""
    deferrals: list[TaskDeferred] = []
    try:
        return make_operator().execute({}), deferrals
    except TaskDeferred as deferred:
        deferrals.append(deferred)
    while True:
        deferred = deferrals[-1]
        payload = fire(deferred)
        if resume_path == "dag.test":
            next_kwargs = {"event": payload}  # Airflow 3.3's dag.test() replaces the kwargs
        else:
            next_kwargs = {**json_round_trip(deferred.kwargs), "event": payload}  # the triggerer merges
        try:
            assert deferred.method_name is not None
            return make_operator().resume_execution(deferred.method_name, next_kwargs, {}), deferrals
        except TaskDeferred as again:
            deferrals.append(again)


def pixel_folder(root: Path, pixel: str) -> Path:
    """The folder of one pixel's output below the test operator's prefix ``export``."""
    return root / "export" / f"pixel_id={pixel}"


def written_ids(root: Path, pixel: str) -> list[str]:
    folder = pixel_folder(root, pixel)
    manifest = json.loads((folder / "_manifest.json").read_text())
    ids = []
    for part in manifest["parts"]:
        for line in (folder / part["name"]).read_text().splitlines():
            ids.append(json.loads(line)["id"])
    return ids


def expected_ids(sandbox: PrisjaktSandbox) -> list[str]:
    return [event["id"] for event in sandbox.expected_events(sandbox.pixel_ids(4242)[0], PERIOD_START, PERIOD_END)]


@pytest.mark.parametrize("resume_path", ["triggerer", "dag.test"])
def test_export_defers_on_a_spent_budget_and_resumes_without_refetching(
    sandbox: PrisjaktSandbox, tmp_path: Path, opened_parts: list[int], resume_path: str
) -> None:
    summary, deferrals = run_with_deferrals(lambda: export_operator(tmp_path, sandbox), resume_path)

    assert len(deferrals) >= 2
    assert summary["rows"] == PAGES * PAGE_SIZE
    pixel = sandbox.pixel_ids(4242)[0]
    assert sorted(written_ids(tmp_path, pixel)) == sorted(expected_ids(sandbox))
    # Counters add up across resumes, although each resume is a fresh operator with a fresh hook.
    assert summary["requests"] == PAGES
    assert summary["deferrals"] == len(deferrals)
    assert summary["rate_limited"] == 0
    # Each page was fetched once; the only other requests are the triggers' budget checks.
    pages = Counter(r.page_key for r in sandbox.requests if r.page_key)
    assert len(pages) == PAGES
    assert set(pages.values()) == {1}
    checks = [r for r in sandbox.requests if not r.page_key]
    assert len(checks) == len(deferrals)
    assert all(r.path.endswith(f"/clients/{sandbox.client_id}") for r in checks)
    assert 429 not in [r.status for r in sandbox.requests]
    # Finished parts were never reopened or rewritten; nothing is left staged.
    assert opened_parts == list(range(len(opened_parts)))
    assert summary["files"] == len(opened_parts)
    assert not list((pixel_folder(tmp_path, pixel) / "_staging").glob("*"))


def test_deferral_carries_a_json_safe_checkpoint_in_kwargs_and_trigger(
    sandbox: PrisjaktSandbox, tmp_path: Path
) -> None:
    with pytest.raises(TaskDeferred) as raised:
        export_operator(tmp_path, sandbox).execute({})

    deferred = raised.value
    trigger = deferred.trigger
    assert isinstance(trigger, PrisjaktRateLimitTrigger)
    assert deferred.method_name == "execute_complete"
    assert trigger.min_remaining == 1
    assert trigger.reset_at is not None
    assert 0 < (datetime.fromisoformat(trigger.reset_at) - datetime.now(UTC)).total_seconds() <= WINDOW_SECONDS
    resume = deferred.kwargs["resume"]
    assert trigger.resume == resume == json_round_trip(resume)
    assert resume["start"] == PERIOD_START.isoformat()
    assert resume["end"] == PERIOD_END.isoformat()
    checkpoint = resume["checkpoint"]
    assert checkpoint["rows"] == BUDGET * PAGE_SIZE
    assert checkpoint["next_part"] == 1
    assert checkpoint["cursor"]["page_url"].startswith(sandbox.base_url)
    assert checkpoint["counters"]["requests"] == BUDGET
    assert checkpoint["counters"]["deferrals"] == 1


def test_resume_path_without_the_echo_uses_the_defer_kwargs(sandbox: PrisjaktSandbox, tmp_path: Path) -> None:
    with pytest.raises(TaskDeferred) as raised:
        export_operator(tmp_path, sandbox).execute({})
    payload = fire(raised.value)
    payload.pop("resume")

    with pytest.raises(TaskDeferred) as again:
        export_operator(tmp_path, sandbox).resume_execution(
            "execute_complete", {**raised.value.kwargs, "event": payload}, {}
        )

    assert again.value.kwargs["resume"]["checkpoint"]["rows"] > BUDGET * PAGE_SIZE


def test_without_deferrable_the_export_fails_naming_the_reset_and_publishes_nothing(
    sandbox: PrisjaktSandbox, tmp_path: Path
) -> None:
    with pytest.raises(PrisjaktRateLimitError, match=r"resets at \d{4}-\d\d-\d\dT") as raised:
        export_operator(tmp_path, sandbox, deferrable=False).execute({})

    assert raised.value.reset_at is not None
    assert raised.value.reset_at.isoformat() in str(raised.value)
    assert not list(tmp_path.rglob("_manifest.json"))
    assert not list(tmp_path.rglob("part-*"))
    assert not list(tmp_path.rglob("_staging"))


def test_an_error_event_fails_the_export(sandbox: PrisjaktSandbox, tmp_path: Path) -> None:
    with pytest.raises(AirflowException, match="rate limit failed: 401"):
        export_operator(tmp_path, sandbox).resume_execution(
            "execute_complete", {"event": {"status": "error", "message": "401 Unauthorized"}}, {}
        )


# -- end to end with dag.test() ----------------------------------------------------------------------


def load_test_dag() -> Any:
    """Import the test DAG from the dags folder copy, which is what dag.test() syncs from."""
    spec = importlib.util.spec_from_file_location("prisjakt_test_deferral_dagfile", DAGS_FOLDER / f"{DAG_ID}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def test_dag_with_deferrable_sensor_and_export_completes_through_deferrals(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with PrisjaktSandbox(
        rate_limited_config(pages=20, page_size=PAGE_SIZE, budget=BUDGET, window_seconds=WINDOW_SECONDS)
    ) as server:
        connect(monkeypatch, server, **EXTRA)
        pixel = server.pixel_ids(4242)[0]

        run = load_test_dag().test(
            run_conf={
                "spend": BUDGET,  # spend the window first, so the sensor has to wait for its reset
                "min_remaining": BUDGET // 2,
                "pixel_id": pixel,
                "start": PERIOD_START.isoformat(),
                "end": PERIOD_END.isoformat(),
                "root": str(tmp_path),
            }
        )

        assert run.state == "success"
        # The sensor met the spent window (429) and deferred; its trigger checked again after the reset.
        checks = [r.status for r in server.requests if not r.page_key]
        assert checks[: BUDGET + 2] == [200] * BUDGET + [429, 200]
        manifest = json.loads((pixel_folder(tmp_path, pixel) / "_manifest.json").read_text())
        assert manifest["counters"]["deferrals"] >= 1
        assert manifest["rows"] == 20 * PAGE_SIZE
        assert sorted(written_ids(tmp_path, pixel)) == sorted(
            event["id"] for event in server.expected_events(pixel, PERIOD_START, PERIOD_END)
        )
        pages = Counter(r.page_key for r in server.requests if r.page_key)
        assert len(pages) == 20
        assert set(pages.values()) == {1}
