"""
The benchmark driver: serves the sandbox, runs every measured tool in its own process, writes RESULTS.md.

Run it with ``make bench`` (which builds ``bench/.venv``, ``bench/.venv-dlt`` and
``bench/.venv-dlt-airflow`` first), or ``bench/.venv/bin/python bench/run.py [--quick] [--only ...]``.
See ``bench/README.md``. The tables are written by ``report.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import report as rp  # noqa: E402
from replay import ReplayFront  # noqa: E402
from report import E2EResults, Pair, Report, Run  # noqa: E402
from sections import marked_sections  # noqa: E402

from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig  # noqa: E402

PYTHONS = {
    "ours": str(HERE / ".venv" / "bin" / "python"),
    "dlt": str(HERE / ".venv-dlt" / "bin" / "python"),
    "dlt_airflow": str(HERE / ".venv-dlt-airflow" / "bin" / "python"),
}
# The venv each tool runs in; every tool not named here runs in bench/.venv.
TOOL_VENVS = {"dlt": "dlt", "dlt_retry_after": "dlt", "dlt_airflow": "dlt_airflow"}
WORKER = str(HERE / "worker.py")
MIB = rp.MIB

PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 1, tzinfo=UTC)
ONE_DAY_END = PERIOD_START + timedelta(days=1)  # the one-day window: the first day of the period
LONG_PERIOD_END = datetime(2026, 11, 30, tzinfo=UTC)  # 60 days: the API's longest window
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
PG_DSN = "postgresql://postgres:postgres@127.0.0.1:5432/test"  # trust auth; dlt insists on a password
OURS_TABLE = "bench_events_ours"
DLT_DATASET = "prisjakt_dlt"
BUCKET = "prisjakt-bench"
SCENARIOS = ("extract", "e2e", "latency", "memory", "ratelimit", "longreset")

# Contention guard: wait for a quiet machine before each run, but never long enough to break the
# 30-minute budget of `make bench` (at most QUIET_MAX_WAIT per run, QUIET_TOTAL_WAIT in all).
QUIET_BUSY_CORES = 0.35
QUIET_MAX_WAIT = 20.0
QUIET_TOTAL_WAIT = 60.0


@dataclass(frozen=True)
class Plan:
    """What a run measures, at which sizes, how many times."""

    extract: dict[int, int]  # N -> repetitions of each extraction tool
    diagnostics_up_to: int  # the extraction diagnostics run at N up to this
    e2e: list[int]  # N of the end-to-end exports at 0 ms
    latency_events: int  # N of the end-to-end exports with latency
    memory: list[int]  # N of the memory scaling
    rate_pages: dict[int, tuple[str, ...]]  # pages -> tools of the rate-limit scenario


FULL = Plan(
    extract={100_000: 5, 1_000_000: 3},
    diagnostics_up_to=100_000,
    e2e=[100_000, 1_000_000],
    latency_events=200_000,
    memory=[100_000, 1_000_000, 5_000_000],
    rate_pages={20: ("ours", "dlt", "httpop_retry", "httpop"), 40: ("ours",)},
)
QUICK = Plan(
    extract={20_000: 3, 50_000: 2},
    diagnostics_up_to=20_000,
    e2e=[20_000, 50_000],
    latency_events=50_000,
    memory=[20_000, 100_000],
    rate_pages={12: ("ours", "dlt", "httpop_retry", "httpop")},
)


def busy_cores(interval: float) -> float:
    """Cores kept busy machine-wide during ``interval`` seconds, from /proc/stat."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(interval)
    total1, idle1 = sample()
    total = total1 - total0
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / total) if total else 0.0


def api_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Bench:
    def __init__(self, plan: Plan, mode: str, latency_ms: float) -> None:
        self.plan = plan
        self.latency_ms = latency_ms
        self.tmp = Path(tempfile.mkdtemp(prefix="prisjakt-bench-"))
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        self.env = self._base_env()
        self.runs: list[Run] = []
        self.report = Report(mode)
        self.moto: subprocess.Popen[bytes] | None = None
        self.s3_endpoint = ""
        self.started = time.monotonic()
        self._fronts: dict[int, tuple[PrisjaktSandbox, ReplayFront, dict[str, Any]]] = {}
        self.front: ReplayFront | None = None  # the front serving the runs now, if any
        self.live: PrisjaktSandbox | None = None  # the live sandbox serving the runs now, if any
        self.noisy_runs = 0
        self.quiet_budget = QUIET_TOTAL_WAIT  # seconds of waiting allowed over the whole run
        self.live_rates: dict[int, float] = {}
        self.e2e_results: dict[int, E2EResults] = {}
        self.latency_results: dict[int, E2EResults] = {}
        self._postgres = True

    # -- environment --------------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        home = self.tmp / "airflow-home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
                "RUNTIME__DLTHUB_TELEMETRY": "false",
                "DLT_DATA_DIR": str(self.tmp / "dlt-data"),
                "PYTHONHASHSEED": "0",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        )
        return env

    def start_services(self) -> None:
        port = free_port()
        moto_bin = str(HERE / ".venv" / "bin" / "moto_server")
        self.moto = subprocess.Popen(
            [moto_bin, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.s3_endpoint = f"http://127.0.0.1:{port}"
        for _ in range(100):
            with contextlib.suppress(requests.ConnectionError):
                requests.get(self.s3_endpoint, timeout=1)
                break
            time.sleep(0.1)
        s3 = self.s3()
        s3.create_bucket(Bucket=BUCKET)
        self.env["AIRFLOW_CONN_BENCH_AWS"] = json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": self.s3_endpoint, "region_name": "us-east-1"},
            }
        )
        self.env["AIRFLOW_CONN_BENCH_PG"] = json.dumps(
            {
                "conn_type": "postgres",
                "host": PG["host"],
                "port": PG["port"],
                "login": PG["user"],
                "schema": PG["dbname"],
            }
        )

    def stop_services(self) -> None:
        if self.moto is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.moto.pid, signal.SIGTERM)
            self.moto.wait(timeout=10)

    def s3(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def pg(self) -> Any:
        import psycopg2

        conn = psycopg2.connect(**PG, connect_timeout=3)
        conn.autocommit = True
        return conn

    def reset_pg(self) -> None:
        with contextlib.closing(self.pg()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP TABLE IF EXISTS "{OURS_TABLE}"')
            cur.execute(f'DROP SCHEMA IF EXISTS "{DLT_DATASET}" CASCADE')
            cur.execute(f'DROP SCHEMA IF EXISTS "{DLT_DATASET}_staging" CASCADE')

    def pg_bytes(self, tool: str) -> int:
        table = f'"{OURS_TABLE}"' if tool == "ours" else f'"{DLT_DATASET}"."events"'
        with contextlib.closing(self.pg()) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_total_relation_size(%s::regclass)", (table,))
            return int(cur.fetchone()[0])

    def s3_bytes(self, prefix: str) -> int:
        s3 = self.s3()
        total = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            total += sum(item["Size"] for item in page.get("Contents", []))
        return total

    def clear_s3(self) -> None:
        s3 = self.s3()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})

    # -- running one measured process ----------------------------------------------------------------

    def wait_for_quiet(self) -> float:
        """
        Wait (at most ``QUIET_MAX_WAIT`` s) until other processes use less than ``QUIET_BUSY_CORES``
        of a core, so that a measured run does not share the machine with, say, a test suite.
        Returns the busy cores seen last.
        """
        started = time.monotonic()
        deadline = started + min(QUIET_MAX_WAIT, self.quiet_budget)
        while True:
            busy = busy_cores(0.5)
            if busy < QUIET_BUSY_CORES or time.monotonic() > deadline:
                if busy >= QUIET_BUSY_CORES:
                    self.noisy_runs += 1
                self.quiet_budget -= time.monotonic() - started
                return busy
            time.sleep(1.0)

    def run(self, spec: dict[str, Any], *, timeout: float = 600, env: dict[str, str] | None = None) -> Run:
        """
        Run one worker and wait for it. Its wall time covers the whole process (start-up included):
        from just before ``Popen`` to ``wait4``'s return, with no polling in between.
        """
        python = PYTHONS[TOOL_VENVS.get(spec["tool"], "ours")]
        window = "-oneday" if spec.get("oneday") else ""
        name = (
            f"{len(self.runs):02d}-{spec['job']}-{spec['tool']}-{spec.get('destination', '')}-{spec.get('n', '')}"
            f"{window}"
        )
        work = self.tmp / "work" / name
        if work.exists():
            shutil.rmtree(work)
        (work / "out").mkdir(parents=True)
        spec = {"work_dir": str(work), "out_dir": str(work / "out"), **spec}
        run = Run(spec)
        waited = time.monotonic()
        run.busy_before = self.wait_for_quiet()
        waited = time.monotonic() - waited
        if waited > 2:
            log(f"waited {waited:.0f} s for other processes to quieten (busy cores {run.busy_before:.2f})")
        log_path = self.logs / f"{name}.log"
        served = self.served()
        started = time.monotonic()
        with open(log_path, "wb") as output:
            proc = subprocess.Popen(
                [python, WORKER, json.dumps(spec)],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env or self.env,
                cwd=work,
            )
            killer = threading.Timer(timeout, proc.kill)
            killer.start()
            _, status, usage = os.wait4(proc.pid, 0)
            run.elapsed_s = time.monotonic() - started
            killer.cancel()
            if run.elapsed_s >= timeout:
                run.error = f"timed out after {timeout:.0f} s"
            proc.returncode = os.waitstatus_to_exitcode(status)
        run.served = self.served() - served
        run.user_s, run.sys_s = usage.ru_utime, usage.ru_stime
        text = log_path.read_text(errors="replace")
        for line in reversed(text.splitlines()):
            if line.startswith("RESULT "):
                run.result = json.loads(line[len("RESULT ") :])
                run.maxrss = int(run.result.get("peak_rss") or 0)
                run.ok = True
                break
        else:
            run.error = run.error or f"exit {proc.returncode}: " + " | ".join(text.strip().splitlines()[-3:])[-300:]
        shutil.rmtree(work, ignore_errors=True)
        self.runs.append(run)
        summary = (
            f"{run.rows} rows, {run.rows_per_s:,.0f} rows/s, peak {run.peak_mib:.0f} MiB"
            if run.ok
            else f"FAILED {run.error}"
        )
        log(f"{name}: {summary} ({run.elapsed_s:.1f} s)")
        return run

    def served(self) -> int:
        """Responses the current replay front (or live sandbox) has sent so far."""
        if self.live is not None:
            return len(self.live.requests)
        return 0 if self.front is None else self.front.hits + self.front.misses

    # -- sandboxes -----------------------------------------------------------------------------------

    @staticmethod
    def sandbox(events: int, end: datetime = PERIOD_END, **config: Any) -> PrisjaktSandbox:
        settings = {
            "shops": {4242: 1},
            "events_per_pixel": events,
            "period_start": PERIOD_START,
            "period_end": end,
            "page_size": 1000,
            "max_page_size": 1000,
            "rate_limit": 10**9,
            "rate_window": 3600.0,
            **config,
        }
        return PrisjaktSandbox(SandboxConfig(**settings)).start()

    def point_at(self, base_url: str, sandbox: PrisjaktSandbox, page_size: int) -> dict[str, Any]:
        """Set the connections of both kinds of tools to ``base_url``; return the common spec."""
        self.env["AIRFLOW_CONN_PRISJAKT_DEFAULT"] = json.dumps(
            {
                "conn_type": "prisjakt",
                "host": base_url,
                "login": sandbox.client_id,
                "password": sandbox.client_secret,
                "extra": {"page_size": page_size},
            }
        )
        self.env["AIRFLOW_CONN_BENCH_HTTP"] = json.dumps({"conn_type": "http", "host": base_url})
        return {
            "base_url": base_url,
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "pixel_id": sandbox.pixel_ids()[0],
            "page_size": page_size,
        }

    def crawl(self, base: str, sandbox: PrisjaktSandbox, pixel_id: str, start: datetime, end: datetime) -> int:
        """Fetch every page of one window with a raw loop (to fill the replay cache); return the rows."""
        session = requests.Session()
        session.headers.update({"client-id": sandbox.client_id, "client-secret": sandbox.client_secret})
        url: str | None = f"{base}/pixels/{pixel_id}/events"
        params: dict[str, Any] | None = {"from": api_time(start), "to": api_time(end), "limit": 1000}
        rows = 0
        while url:
            response = session.get(url, params=params)
            response.raise_for_status()
            rows += len(response.json())
            link = response.headers.get("Link", "")
            url = next((part.split(">")[0].strip(" <") for part in link.split(",") if 'rel="next"' in part), None)
            params = None
        return rows

    def replay(self, events: int) -> tuple[PrisjaktSandbox, ReplayFront, dict[str, Any]]:
        """A sandbox with ``events`` events behind a replay front warmed with the full and the one-day window."""
        if events in self._fronts:
            return self._fronts[events]
        sandbox = self.sandbox(events)
        front = ReplayFront(sandbox.origin, sandbox.client_id, sandbox.client_secret).start()
        base = front.origin + "/click-conversion"
        spec = self.point_at(base, sandbox, 1000)
        spec.update({"from": api_time(PERIOD_START), "to": api_time(PERIOD_END)})
        started = time.monotonic()
        rows = self.crawl(base, sandbox, spec["pixel_id"], PERIOD_START, PERIOD_END)
        seconds = time.monotonic() - started
        day_rows = self.crawl(base, sandbox, spec["pixel_id"], PERIOD_START, ONE_DAY_END)
        # Ours asks ``from`` one second early (its window filter keeps the window exact): warm those too, so
        # that no measured run of ours pays for the live sandbox building its pages.
        early = PERIOD_START - timedelta(seconds=1)
        self.crawl(base, sandbox, spec["pixel_id"], early, PERIOD_END)
        self.crawl(base, sandbox, spec["pixel_id"], early, ONE_DAY_END)
        log(
            f"replay front for {events:,} events warmed: {rows:,} rows from the live sandbox in {seconds:.1f} s "
            f"({rows / seconds:,.0f} rows/s), one day {day_rows:,} rows, {front.cached_bytes() / MIB:.0f} MiB cached"
        )
        self.live_rates[events] = rows / seconds
        front.misses = front.hits = 0
        self._fronts[events] = (sandbox, front, spec)
        return sandbox, front, spec

    def use(self, events: int, latency_ms: float) -> dict[str, Any]:
        """Serve the next runs from the replay front of ``events``, with ``latency_ms``; return the spec."""
        sandbox, front, spec = self.replay(events)
        front.latency_ms = latency_ms
        self.front = front
        self.point_at(spec["base_url"], sandbox, 1000)
        return spec

    def drop_fronts(self, scenario: str) -> None:
        """Stop every replay front, noting any request that missed its cache during the measured runs."""
        for n, (sandbox, front, _) in self._fronts.items():
            if front.misses:
                self.report.notes.append(f"{scenario}, N={n:,}: {front.misses} request(s) missed the replay cache.")
            front.stop()
            sandbox.stop()
        self._fronts.clear()
        self.front = None

    @contextlib.contextmanager
    def scenario(self, name: str) -> Iterator[None]:
        """Time one scenario for the 'what ran, for how long' table."""
        log(f"-- {name}")
        started = time.monotonic()
        try:
            yield
        finally:
            self.report.durations.append((name, time.monotonic() - started))
            log(f"-- {name}: {time.monotonic() - started:.0f} s")

    # -- scenarios -----------------------------------------------------------------------------------

    def extraction(self) -> dict[int, dict[str, Run]]:
        results: dict[int, dict[str, Run]] = {}
        for n, repeats in self.plan.extract.items():
            spec = self.use(n, 0.0)
            tools = ["floor", "ours", "httpop", "dlt"]
            if n <= self.plan.diagnostics_up_to:
                tools += ["floor_airflow", "ours_nogc"]
            self.report.ran.append(
                ("1. extraction, 0 ms", f"N={n:,}", f"{repeats} runs of each of {len(tools)} tools, interleaved")
            )
            runs: dict[str, list[Run]] = {tool: [] for tool in tools}
            for _ in range(repeats):  # interleaved, so that drift hits every tool alike
                for tool in tools:
                    runs[tool].append(self.run({"job": "extract", "tool": tool, "n": n, **spec}))
            results[n] = {}
            for tool, done in runs.items():
                good = sorted((run for run in done if run.ok), key=lambda run: run.rows_per_s)
                if not good:
                    results[n][tool] = done[-1]
                    continue
                median = good[len(good) // 2]
                median.spread = (good[0].rows_per_s, good[-1].rows_per_s)
                results[n][tool] = median
        return results

    def export_run(self, spec: dict[str, Any], n: int, tool: str, destination: str, oneday: bool = False) -> Run:
        """One export (or, for the floor, one raw fetch) over the full window or its first day."""
        if destination == "postgres":
            self.reset_pg()
        if destination == "s3":
            self.clear_s3()
        window = {"from": api_time(PERIOD_START), "to": api_time(ONE_DAY_END), "oneday": True} if oneday else {}
        if tool == "floor":
            return self.run({**spec, "job": "extract", "tool": "floor", "n": n, **window})
        extra = {
            "job": "export",
            "tool": tool,
            "n": n,
            "destination": destination,
            "table": OURS_TABLE,
            "bucket": BUCKET,
            "s3_endpoint": self.s3_endpoint,
            "pg_dsn": PG_DSN,
            "dataset": DLT_DATASET,
        }
        run = self.run({**spec, **extra, **window})
        if run.ok and destination == "postgres":
            run.result["output_bytes"] = self.pg_bytes(tool)
        if run.ok and destination == "s3":
            run.result["output_bytes"] = self.s3_bytes("ours/" if tool == "ours" else "dlt/")
        return run

    def pairs(self, n: int, spec: dict[str, Any], entries: list[tuple[str, str]]) -> E2EResults:
        """Each (tool, destination) over the full window, then over one day."""
        results: E2EResults = {}
        for tool, destination in entries:
            if destination == "postgres" and not self.postgres:
                continue
            full = self.export_run(spec, n, tool, destination)
            results[(tool, destination)] = Pair(full, self.export_run(spec, n, tool, destination, oneday=True))
        return results

    def end_to_end(self) -> dict[int, E2EResults]:
        """At 0 ms: JSONL and PostgreSQL at every N (dlt in a PythonOperator too at the smallest), S3 once."""
        results: dict[int, E2EResults] = {}
        for n in self.plan.e2e:
            smallest = n == min(self.plan.e2e)
            spec = self.use(n, 0.0)
            entries = [("ours", "jsonl"), ("dlt", "jsonl"), ("ours", "postgres"), ("dlt", "postgres")]
            if smallest:
                entries.append(("dlt_airflow", "postgres"))
            results[n] = self.pairs(n, spec, entries)
            ran = f"one run per tool and destination ({', '.join(f'{t}/{d}' for t, d in entries)}), each also over one day"
            if smallest:
                for tool in ("ours", "dlt"):
                    results[n][(tool, "s3")] = Pair(self.export_run(spec, n, tool, "s3"))
                ran += "; S3 once per tool, full window only"
            self.report.ran.append(("2b. end to end, 0 ms", f"N={n:,}", ran))
        self.reset_pg()
        self.clear_s3()
        return results

    def latency(self) -> dict[int, E2EResults]:
        """With latency: the bare loop, ours and dlt into JSONL, PostgreSQL and Parquet, each also over one day."""
        n = self.plan.latency_events
        # The live sandbox, not the replay front: it builds each page (its own server time) and then waits
        # ``latency_ms``, so the server is the bottleneck, as the real API across the internet is.
        self.front = None
        self.live = self.sandbox(n, latency_ms=self.latency_ms)
        spec = self.point_at(self.live.base_url, self.live, 1000)
        spec.update({"from": api_time(PERIOD_START), "to": api_time(PERIOD_END)})
        entries = [
            ("floor", "none"),
            ("ours", "jsonl"),
            ("dlt", "jsonl"),
            ("ours", "postgres"),
            ("dlt", "postgres"),
            ("dlt_airflow", "postgres"),
            ("ours", "parquet"),
            ("dlt", "parquet"),
        ]
        try:
            results = {n: self.pairs(n, spec, entries)}
        finally:
            self.live.stop()
            self.live = None
        self.report.ran.append(
            (
                f"2. end to end, {self.latency_ms:g} ms",
                f"N={n:,}",
                f"one run per tool and destination ({len(entries)}), each also over one day",
            )
        )
        self.reset_pg()
        return results

    def memory(self) -> dict[int, Run]:
        results = {}
        for n in self.plan.memory:
            sandbox = self.sandbox(n, end=LONG_PERIOD_END)
            spec = self.point_at(sandbox.base_url, sandbox, 1000)
            spec.update({"from": api_time(PERIOD_START), "to": api_time(LONG_PERIOD_END)})
            results[n] = self.run({"job": "export", "tool": "ours", "n": n, "destination": "jsonl", **spec})
            sandbox.stop()
        self.report.ran.append(
            ("3c. memory scaling", ", ".join(f"N={n:,}" for n in self.plan.memory), "one run of ours per N")
        )
        return results

    def rate_limit(self) -> dict[tuple[int, str], dict[str, Any]]:
        results: dict[tuple[int, str], dict[str, Any]] = {}
        for pages, tools in self.plan.rate_pages.items():
            for tool in tools:
                sandbox = self.sandbox(pages * 100, page_size=100, max_page_size=1000, rate_limit=8, rate_window=10.0)
                spec = self.point_at(sandbox.base_url, sandbox, 100)
                spec.update({"from": api_time(PERIOD_START), "to": api_time(PERIOD_END)})
                run = self.run({"job": "ratelimit", "tool": tool, "n": pages * 100, **spec}, timeout=300)
                records = sandbox.requests
                sandbox.stop()
                api = [r for r in records if r.page_key or r.status == 429]
                statuses = Counter(r.status for r in records)
                span = api[-1].started_at - api[0].started_at if api else 0.0
                ideal = (math.ceil(pages / 8) - 1) * 10.0
                page_hits = Counter(r.page_key for r in records if r.page_key and r.status == 200)
                results[(pages, tool)] = {
                    "run": run,
                    "requests": len(records),
                    "status_429": statuses.get(429, 0),
                    "span_s": span,
                    "ideal_s": ideal,
                    "pages_done": len(page_hits),
                    "refetched": sum(c - 1 for c in page_hits.values()),
                }
            self.report.ran.append(("4. rate limit", f"{pages} pages", f"one run each: {', '.join(tools)}"))
        return results

    def long_reset(self, tools: list[str]) -> dict[str, Run]:
        results = {}
        for tool in tools:
            spec = {
                "job": "longreset",
                "tool": tool,
                "events": 2000,
                "page_size": 100,
                "rate_limit": 8,
                "rate_window": 300.0,
                "from": api_time(PERIOD_START),
                "to": api_time(PERIOD_END),
                "tries": 2,
                "retry_after": tool == "dlt_retry_after",
            }
            results[tool] = self.run(spec, timeout=300)
        self.report.ran.append(("5. long reset", "20 pages", f"one run each: {', '.join(tools)}"))
        return results

    def profile_extraction(self) -> None:
        """Profile ours' reading path at the smallest N when an extraction target is missed."""
        if not self.report.missed("Extraction"):
            return
        n = min(self.plan.extract)
        spec = self.use(n, 0.0)
        self.profile({"job": "extract", "tool": "ours", "n": n, **spec}, f"read_events (EventsReader), N={n:,}, 0 ms")

    def profile_exports(self, prefix: str, n: int, latency_ms: float) -> None:
        """Profile our export to each destination whose speed target (label starting ``prefix``) is missed."""
        missed = self.report.missed(prefix, f"{latency_ms:g} ms")
        spec = self.use(n, latency_ms)
        for destination in ("jsonl", "postgres"):
            if not any(rp.DEST_NAMES[destination] in target.label for target in missed):
                continue
            self.reset_pg()
            extra = {"job": "export", "tool": "ours", "n": n, "destination": destination, "table": OURS_TABLE}
            label = f"Our export to {rp.DEST_NAMES[destination]}, N={n:,}, {latency_ms:g} ms"
            self.profile({**spec, **extra}, label)
        self.reset_pg()

    def import_footprint(self) -> list[tuple[str, str, float]]:
        """RSS of a fresh interpreter after each import stage, in each venv: the memory profile of set-up."""
        rows = []
        for venv, label, statement in rp.FOOTPRINT_STAGES:
            code = f"{statement}\nprint([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS')][0])"
            try:
                out = subprocess.run(
                    [PYTHONS[venv], "-c", code], env=self.env, capture_output=True, text=True, timeout=120, check=True
                )
                rows.append((venv, label, int(out.stdout.strip().splitlines()[-1]) / 1024))
            except (subprocess.SubprocessError, OSError, ValueError, IndexError) as err:
                self.report.notes.append(f"Import footprint of '{label}' not measured: {type(err).__name__}")
        return rows

    def profile(self, spec: dict[str, Any], label: str) -> None:
        """Run one worker again under pyinstrument and keep the summary for RESULTS.md."""
        path = self.tmp / f"profile-{len(self.report.profiles)}.txt"
        env = {**self.env, "BENCH_PROFILE": str(path)}
        self.run(spec, env=env)
        if path.exists():
            text = "\n".join(path.read_text().strip().splitlines()[:90])
            self.report.profiles.append(f"#### {label}\n\n```text\n{text}\n```\n")

    @property
    def postgres(self) -> bool:
        return self._postgres

    def check_postgres(self) -> None:
        """PostgreSQL's rows run only when it answers; otherwise a note says they are missing."""
        try:
            self.reset_pg()
            self._postgres = True
        except Exception as err:
            self._postgres = False
            self.report.notes.append(
                f"PostgreSQL at 127.0.0.1:5432 was not reachable ({type(err).__name__}); its rows are missing."
            )

    def postgres_version(self) -> str:
        with contextlib.suppress(Exception), contextlib.closing(self.pg()) as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            return str(cur.fetchone()[0])
        return "unknown"


def run_scenarios(bench: Bench, only: set[str]) -> None:
    report = bench.report
    if "extract" in only:
        with bench.scenario("1. extraction, 0 ms"):
            extraction = bench.extraction()
            rp.report_extraction(report, extraction, bench.plan.extract, bench.live_rates)
            bench.profile_extraction()
    if "e2e" in only:
        with bench.scenario("2b. end to end, 0 ms"):
            bench.e2e_results = bench.end_to_end()
            rp.speed_targets(report, 0.0, bench.e2e_results)
            bench.profile_exports("End to end", min(bench.plan.e2e), 0.0)
    bench.drop_fronts("Extraction and end to end at 0 ms")
    if "latency" in only:
        with bench.scenario(f"2. end to end, {bench.latency_ms:g} ms"):
            bench.latency_results = bench.latency()
            rp.speed_targets(report, bench.latency_ms, bench.latency_results)
            rp.explain_latency(report, bench.latency_ms, bench.latency_results)
            bench.profile_exports("End to end", bench.plan.latency_events, bench.latency_ms)
        bench.drop_fronts(f"End to end at {bench.latency_ms:g} ms")
    for results, latency_ms, heading in (
        (
            bench.latency_results,
            bench.latency_ms,
            f"## 2. End to end, {bench.latency_ms:g} ms latency (the network decides)",
        ),
        (bench.e2e_results, 0.0, "## 2b. End to end, 0 ms latency (the client's CPU decides)"),
    ):
        if results:
            rp.report_e2e(report, heading, latency_ms, results)
            n = max(results)
            rp.memory_targets(report, f"{latency_ms:g} ms", n, results[n])
    memory_rows = [row for n, r in bench.latency_results.items() for row in rp.memory_rows(bench.latency_ms, n, r)]
    memory_rows += [row for n, r in bench.e2e_results.items() for row in rp.memory_rows(0.0, n, r)]
    if memory_rows:
        rp.report_memory_added(report, memory_rows)
        with bench.scenario("3b. set-up RSS by import stage"):
            rp.report_footprint(report, bench.import_footprint())
    if "memory" in only:
        with bench.scenario("3c. memory scaling"):
            rp.report_memory_scaling(report, bench.memory())
    if "ratelimit" in only:
        with bench.scenario("4. rate limit"):
            rp.report_rate_limit(report, bench.rate_limit())
    if "longreset" in only:
        with bench.scenario("5. long reset"):
            tools = ["ours", "dlt", "dlt_retry_after", "httpop", "httpop_retry"]
            rp.report_long_reset(report, bench.long_reset(tools))
    rp.summarize(report, bench.latency_ms, bench.latency_results, bench.e2e_results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for trying the harness out")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--only", default="", help=f"comma-separated scenarios: {','.join(SCENARIOS)}")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="latency of the 'latency' scenario")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(","))) or set(SCENARIOS)
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    mode = "quick mode" if args.quick else "full run"
    if only != set(SCENARIOS):
        mode += f", only {', '.join(s for s in SCENARIOS if s in only)}"
    bench = Bench(QUICK if args.quick else FULL, mode, args.latency_ms)
    unconstrained = HERE / ".venv-dlt-airflow" / ".unconstrained"
    if unconstrained.exists():
        bench.report.unconstrained = unconstrained.read_text().split()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below: stop moto
    bench.start_services()
    try:
        bench.check_postgres()
        run_scenarios(bench, only)
    finally:
        bench.drop_fronts("Interrupted")
        bench.stop_services()
    finish(bench, Path(args.out))


def finish(bench: Bench, out: Path) -> None:
    """Write RESULTS.md (keeping the sections other scripts own) and the README summary; print the totals."""
    report = bench.report
    started = os.environ.get("BENCH_STARTED")  # epoch seconds, set by `make bench` before the venv builds
    runs_s = time.monotonic() - bench.started
    total_s, builds_s = runs_s, None
    if started:
        total_s = time.time() - float(started)
        builds_s = max(0.0, total_s - runs_s)
    report.notes.append(
        f"Contention guard: before each measured run the driver waited (up to {QUIET_MAX_WAIT:.0f} s per run, "
        f"{QUIET_TOTAL_WAIT:.0f} s in all) until other processes used less than {QUIET_BUSY_CORES} of a core. "
        f"{bench.noisy_runs} of {len(bench.runs)} runs started without that quiet; it waited "
        f"{QUIET_TOTAL_WAIT - bench.quiet_budget:.0f} s in all."
    )
    existing = out if out.exists() else HERE / "RESULTS.md"
    carried = marked_sections(existing.read_text()) if existing.exists() else []
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rp.write_results(report, out, PYTHONS, bench.postgres_version(), total_s, builds_s, when, carried)
    log(f"wrote {out} (kept {len(carried)} section(s) other scripts own)")
    summary = rp.summary_text(report, total_s, when)
    (HERE / ".last-summary.md").write_text(summary)
    print("\n" + summary)
    for name, seconds in report.durations:
        log(f"{name}: {seconds / 60:.1f} min")
    if builds_s is not None:
        log(f"venv builds: {builds_s / 60:.1f} min")
    log(f"total: {total_s / 60:.1f} min; logs of every run: {bench.logs}")


if __name__ == "__main__":
    main()
