"""
Eight export tasks sharing one client id, as eight slots of one Airflow pool.

The sandbox gives the client 20 requests per 3-second window, far too few for eight tasks at once.
Each task is an operator's ``execute`` in its own thread (its own hook, its own connection pool),
which is what eight pool slots on workers amount to. Each hook sees the shared ``Remaining`` count
in the responses and paces itself, so every task finishes with exact data, and few requests meet a
429: only those sent in a race for the last requests of a window.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig
from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator

from .conftest import connect
from .test_faults import fingerprint

pytestmark = pytest.mark.integration

TASKS = 8
BUDGET = 20
WINDOW_SECONDS = 3.0
PAGES_PER_TASK = 5
START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
# The bound on 429s: in each window, at most one request per task can be in flight when the
# budget runs out (each task sees Remaining drop and waits for the reset before its next request).
WINDOWS_NEEDED = -(-TASKS * PAGES_PER_TASK // BUDGET)
MAX_429 = TASKS * WINDOWS_NEEDED


def allow_execute_in_this_thread() -> None:
    """
    Let ``execute`` run in a worker thread on Airflow 2.

    Each thread stands for a worker process. Airflow 2's guard against calling ``execute`` outside
    a task runner keeps its state in a thread-local that only the main thread has set up.
    """
    with contextlib.suppress(ImportError, AttributeError):
        from airflow.models.baseoperator import ExecutorSafeguard

        if not hasattr(ExecutorSafeguard._sentinel, "callers"):
            ExecutorSafeguard._sentinel.callers = {}


def test_eight_tasks_sharing_one_client_id_all_finish_with_few_429s(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = SandboxConfig(
        shops={4242: TASKS},
        events_per_pixel=PAGES_PER_TASK * 100 - 10,  # five pages of 100 per pixel
        page_size=100,
        rate_limit=BUDGET,
        rate_window=WINDOW_SECONDS,
    )
    with PrisjaktSandbox(config) as sandbox:
        # max_inline_wait: a 3-second reset is always waited for inline, as a pool slot would.
        connect(monkeypatch, sandbox, max_inline_wait=30)
        pixels = sandbox.pixel_ids(4242)
        for task in range(TASKS):
            connection = {"conn_type": "sqlite", "host": str(tmp_path / f"task-{task}.db")}
            monkeypatch.setenv(f"AIRFLOW_CONN_WAREHOUSE_{task}", json.dumps(connection))

        def run(task: int) -> dict[str, Any]:
            operator = PrisjaktToSqlOperator(
                task_id=f"export_{task}",
                conn_id=f"warehouse_{task}",
                table="events",
                pixel_id=pixels[task],
                start=START.isoformat(),
                end=END.isoformat(),
            )
            allow_execute_in_this_thread()
            return operator.execute({})

        with ThreadPoolExecutor(max_workers=TASKS) as pool:
            summaries = list(pool.map(run, range(TASKS)))  # re-raises the first task failure

        too_many = [r for r in sandbox.requests if r.status == 429]
        assert len(too_many) <= MAX_429, f"{len(too_many)} requests met a 429 (bound {MAX_429})"
        assert sum(s["rate_limited"] for s in summaries) == len(too_many)
        assert sum(s["requests"] for s in summaries) == len(sandbox.requests) >= TASKS * PAGES_PER_TASK
        for task, summary in enumerate(summaries):
            with sqlite3.connect(tmp_path / f"task-{task}.db") as conn:
                rows = conn.execute("SELECT event_id, amount, currency FROM events").fetchall()
            loaded = sorted((event_id, Decimal(str(amount)), currency) for event_id, amount, currency in rows)
            assert loaded == fingerprint(sandbox.expected_events(pixels[task], START, END))
            assert summary["rows"] == len(loaded) == PAGES_PER_TASK * 100 - 10
        print(f"{len(sandbox.requests)} requests, {len(too_many)} answered 429 (bound {MAX_429})")
