"""
What tests and the benchmark of a shared request budget need: a sandbox, a task's job, a Redis server, and the sandbox's windows.

:class:`ReadPixel` is one task's work for :class:`~airflow_provider_prisjakt.testing.workers.WorkerPool`: read a
pixel's event pages through :class:`~airflow_provider_prisjakt.hooks.prisjakt.PrisjaktHook`, the
way an export does. :class:`RedisServer` runs the Debian ``redis-server`` on a free port, never the
machine's own. :func:`window_usage` splits the requests the sandbox recorded into its rate-limit
windows, to tell how much of each window's budget was used.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_prisjakt.testing import SandboxConfig
    from airflow_provider_prisjakt.testing.config import RecordedRequest

HOST = "127.0.0.1"
REDIS_START_SECONDS = 10.0
SHOP = 4242
START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)


def shared_client_config(
    tasks: int, *, events: int, page_size: int, limit: int, window: float, latency_ms: float = 0.0
) -> SandboxConfig:
    """
    A sandbox for tasks on one client id: a pixel each in shop :data:`SHOP`, under one small window.

    :param tasks: pixels (one per task).
    :param events: events per pixel, in October 2026 (:data:`START` to :data:`END`).
    :param page_size: events per page.
    :param limit: requests per window, for the client id.
    :param window: the window's length in seconds.
    :param latency_ms: how long each answer takes after the request was counted.
    """
    from airflow_provider_prisjakt.testing import SandboxConfig

    return SandboxConfig(
        shops={SHOP: tasks},
        events_per_pixel=events,
        page_size=page_size,
        period_start=START,
        period_end=END,
        rate_limit=limit,
        rate_window=window,
        latency_ms=latency_ms,
    )


class ReadPixel:
    """
    A task's job: read every event page of one pixel in ``[start, end)`` and report its traffic.

    :param task_id: the task's name, for messages.
    :param pixel_id: the pixel to read.
    :param start: ISO-8601 start of the window.
    :param end: ISO-8601 end of the window.
    :param prisjakt_conn_id: the connection (set in the worker's environment).
    """

    def __init__(self, *, task_id: str, pixel_id: str, start: str, end: str, prisjakt_conn_id: str) -> None:
        from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook

        self.task_id = task_id
        self.pixel_id = pixel_id
        self.window = (datetime.fromisoformat(start), datetime.fromisoformat(end))
        self.hook = PrisjaktHook(prisjakt_conn_id)

    def execute(self, context: dict[str, Any]) -> dict[str, Any]:
        """Read the pages; return the rows, the hook's counters and what its budget inferred."""
        hook = self.hook
        pages = hook.iter_pages(hook.events_path(self.pixel_id), hook.window_params(*self.window))
        rows = sum(len(page.records) for page in pages)
        return {"rows": rows, **hook.stats.to_dict(), "spenders": round(hook.budget.spend.spenders, 2)}


@dataclass
class RedisServer:
    """
    A ``redis-server`` of its own, on a free port, keeping nothing on disk.

    :param port: the TCP port on 127.0.0.1.
    :param process: the server process.
    """

    port: int
    process: subprocess.Popen[bytes]
    password: str | None = None

    @property
    def url(self) -> str:
        """The ``budget_backend`` URL of the server (with its password, if it has one)."""
        credentials = f":{self.password}@" if self.password else ""
        return f"redis://{credentials}{HOST}:{self.port}/0"

    @classmethod
    def start(cls, password: str | None = None) -> RedisServer:
        """
        Start ``redis-server`` and return once it answers ``PING``.

        :param password: a password the server requires (``--requirepass``), if any.

        :raises FileNotFoundError: when ``redis-server`` is not installed.
        :raises RuntimeError: when it exits or does not answer in time.
        """
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise FileNotFoundError("redis-server is not installed (Debian package redis-server)")
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = int(probe.getsockname()[1])
        workdir = tempfile.mkdtemp(prefix="redis-")
        argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no", "--dir", workdir]
        if password:
            argv += ["--requirepass", password]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        server = cls(port, process, password)
        give_up = time.monotonic() + REDIS_START_SECONDS
        while time.monotonic() < give_up:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {process.returncode} on port {port}")
            if server.ping():
                return server
            time.sleep(0.05)
        server.stop()
        raise RuntimeError(f"redis-server did not answer on port {port} within {REDIS_START_SECONDS:.0f} s")

    def ping(self) -> bool:
        """Tell whether the server answers ``PING`` (in the protocol's inline form: no client library needed)."""
        login = f"AUTH {self.password}\r\n".encode() if self.password else b""
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as conn:
                conn.sendall(login + b"PING\r\n")
                answer = b""
                while b"PONG" not in answer and b"-" not in answer:
                    chunk = conn.recv(64)
                    if not chunk:
                        break
                    answer += chunk
                return b"+PONG" in answer
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def redis_server_or_skip(password: str | None = None) -> RedisServer:
    """Start a :class:`RedisServer`; without ``redis-server``, skip (printing why), but fail under ``CI=true``."""
    import pytest

    try:
        return RedisServer.start(password)
    except FileNotFoundError as err:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(err))
        print(f"skipped: {err}")
        pytest.skip(str(err))


@dataclass(frozen=True)
class Window:
    """
    One rate-limit window of the sandbox, rebuilt from the requests it recorded.

    :param start: :func:`time.monotonic` of its first request.
    :param allowed: requests answered within the budget.
    :param refused: requests answered 429.
    """

    start: float
    allowed: int
    refused: int


def window_usage(requests: list[RecordedRequest], window_seconds: float) -> list[Window]:
    """
    Split recorded requests into the sandbox's fixed windows: each starts at the first request after the last one ended.

    :param requests: the sandbox's requests, in arrival order.
    :param window_seconds: the sandbox's ``rate_window``.
    """
    windows: list[Window] = []
    for request in requests:
        if not windows or request.started_at - windows[-1].start >= window_seconds:
            windows.append(Window(request.started_at, 0, 0))
        last = windows[-1]
        refused = request.status == 429
        windows[-1] = Window(last.start, last.allowed + (not refused), last.refused + refused)
    return windows


def ideal_seconds(requests: int, limit: int, window_seconds: float) -> float:
    """The least time ``requests`` take under ``limit`` per window, first request to last: whole windows before the last."""
    return (math.ceil(requests / limit) - 1) * window_seconds
