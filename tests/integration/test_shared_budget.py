"""
Tasks on separate worker processes sharing one client id: none of them meets a 429.

Each task runs in its own spawned process (:mod:`airflow_provider_prisjakt.testing.workers`), imports the
provider first and waits at a barrier with the others, so they start sending together, as tasks
that a scheduler releases at once. The sandbox gives the client a small fixed window (10 s), far too
few requests for all the tasks at once.

- Without any shared store, four export tasks each infer the others from the drop in
  ``X-RateLimit-Remaining``, pace so that all of them together fit the window, and stop early enough
  for the requests the others may have under way: every export is exact and not one request meets
  a 429.
- With the ``budget_backend`` extra on a ``redis-server`` of the test's own, sixteen tasks claim
  each request in one shared count: not one 429, and each window's budget used up while work remains.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_prisjakt.testing import PrisjaktSandbox
from airflow_provider_prisjakt.testing.shared_budget import (
    END,
    SHOP,
    START,
    RedisServer,
    Window,
    redis_server_or_skip,
    shared_client_config,
    window_usage,
)
from airflow_provider_prisjakt.testing.workers import Job, WorkerPool
from tests.conftest import register_secret

from .test_faults import fingerprint

if TYPE_CHECKING:
    from airflow_provider_prisjakt.testing.config import RecordedRequest

pytestmark = pytest.mark.integration

WINDOW_SECONDS = 10.0
OPERATOR = "airflow_provider_prisjakt.transfers.prisjakt_to_sql:PrisjaktToSqlOperator"
READ_PIXEL = "airflow_provider_prisjakt.testing.shared_budget:ReadPixel"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = redis_server_or_skip()
    yield server
    server.stop()


def sandbox_for(tasks: int, *, pages: int, page_size: int, budget: int, latency_ms: float = 0.0) -> PrisjaktSandbox:
    """A sandbox of ``tasks`` pixels of ``pages`` pages each (the last one half full), ``budget`` requests per window."""
    events = pages * page_size - page_size // 2
    config = shared_client_config(
        tasks, events=events, page_size=page_size, limit=budget, window=WINDOW_SECONDS, latency_ms=latency_ms
    )
    sandbox = PrisjaktSandbox(config)
    register_secret(sandbox.client_secret)
    return sandbox


def run_together(modules: tuple[str, ...], jobs: list[Job]) -> list[Any]:
    """Run the jobs in as many fresh worker processes, started together; return their results."""
    pool = WorkerPool(len(jobs), modules=modules)
    try:
        return pool.run_together(jobs)
    finally:
        pool.close()


def windows_without_a_429(recorded: list[RecordedRequest], budget: int) -> list[Window]:
    """Split the requests into the sandbox's windows, and check that none of them met a 429."""
    windows = window_usage(recorded, WINDOW_SECONDS)
    print(f"{len(recorded)} requests; per window {[w.allowed for w in windows]} of {budget}")
    assert [w.refused for w in windows] == [0] * len(windows)
    return windows


def test_four_export_tasks_in_separate_processes_share_a_client_id_without_a_single_429(tmp_path: Path) -> None:
    tasks, pages, budget = 4, 15, 30  # 60 requests: two windows and a bit
    # Answers take 50 ms, as a real API's do. An export sets up its destination before its first
    # request, so the tasks' first requests come up to ~70 ms apart: instant answers would let the
    # first tasks spend a whole window before the last one has sent anything, and nobody can pace
    # for a task that has not shown itself yet.
    with sandbox_for(tasks, pages=pages, page_size=20, budget=budget, latency_ms=50) as sandbox:
        # max_inline_wait: a 10-second reset is waited for on the worker, as a pool slot would.
        env = {"AIRFLOW_CONN_PRISJAKT_DEFAULT": sandbox.connection_json(max_inline_wait=30)}
        pixels = sandbox.pixel_ids(SHOP)
        jobs = []
        for task, pixel in enumerate(pixels):
            warehouse = json.dumps({"conn_type": "sqlite", "host": str(tmp_path / f"task-{task}.db")})
            arguments = {
                "task_id": f"export_{task}",
                "conn_id": f"warehouse_{task}",
                "table": "events",
                "pixel_id": pixel,
                "start": START.isoformat(),
                "end": END.isoformat(),
            }
            jobs.append(Job(OPERATOR, arguments, {**env, f"AIRFLOW_CONN_WAREHOUSE_{task}": warehouse}))
        summaries = run_together((OPERATOR.partition(":")[0],), jobs)
        recorded = sandbox.requests
        expected = {pixel: fingerprint(sandbox.expected_events(pixel, START, END)) for pixel in pixels}

    windows_without_a_429(recorded, budget)
    assert sum(s["rate_limited"] for s in summaries) == 0
    assert sum(s["requests"] for s in summaries) == len(recorded) >= tasks * pages
    for task, (pixel, summary) in enumerate(zip(pixels, summaries, strict=True)):
        with sqlite3.connect(tmp_path / f"task-{task}.db") as conn:
            rows = conn.execute("SELECT event_id, amount, currency FROM events").fetchall()
        loaded = sorted((event_id, Decimal(str(amount)), currency) for event_id, amount, currency in rows)
        assert loaded == expected[pixel]
        assert summary["rows"] == len(loaded) == pages * 20 - 10


def test_sixteen_tasks_counting_in_redis_meet_no_429_and_use_each_window_up(redis_server: RedisServer) -> None:
    tasks, pages, page_size, budget = 16, 4, 10, 40  # 64 requests: a full window and most of another
    with sandbox_for(tasks, pages=pages, page_size=page_size, budget=budget) as sandbox:
        connection = sandbox.connection_json(max_inline_wait=30, budget_backend=redis_server.url)
        env = {"AIRFLOW_CONN_PRISJAKT_SHARED": connection}
        arguments: dict[str, Any] = {
            "start": START.isoformat(),
            "end": END.isoformat(),
            "prisjakt_conn_id": "prisjakt_shared",
        }
        jobs = [
            Job(READ_PIXEL, {"task_id": f"read_{task}", "pixel_id": pixel, **arguments}, env)
            for task, pixel in enumerate(sandbox.pixel_ids(SHOP))
        ]
        results = run_together(("airflow_provider_prisjakt.testing.shared_budget",), jobs)
        recorded = sandbox.requests

    windows = windows_without_a_429(recorded, budget)
    assert len(recorded) == tasks * pages
    assert all(r["rows"] == pages * page_size - page_size // 2 and r["rate_limited"] == 0 for r in results)
    # Every window but the last (where the work ran out) is used up: the count is exact.
    assert all(w.allowed >= 0.9 * budget for w in windows[:-1]), windows
