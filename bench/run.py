"""
The benchmark driver: serves the sandbox, runs every measured tool in its own process, writes RESULTS.md.

Run it with ``make bench`` (which builds ``bench/.venv`` and ``bench/.venv-dlt`` first), or
``bench/.venv/bin/python bench/run.py [--quick]``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from replay import ReplayFront  # noqa: E402

from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig  # noqa: E402

AIRFLOW_PY = str(HERE / ".venv" / "bin" / "python")
DLT_PY = str(HERE / ".venv-dlt" / "bin" / "python")
WORKER = str(HERE / "worker.py")
MIB = 1024 * 1024

PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 1, tzinfo=UTC)
LONG_PERIOD_END = datetime(2026, 11, 30, tzinfo=UTC)  # 60 days: the API's longest window
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
PG_DSN = "postgresql://postgres:postgres@127.0.0.1:5432/test"  # trust auth; dlt insists on a password
OURS_TABLE = "bench_events_ours"
DLT_DATASET = "prisjakt_dlt"
BUCKET = "prisjakt-bench"

TARGET_EXTRACTION = 0.8
TARGET_E2E_SPEED = 2.0
TARGET_E2E_RSS = 0.5
TARGET_FLAT_MIB = 25.0
TARGET_RATE_SLACK = 0.05


QUIET_BUSY_CORES = 0.35
QUIET_MAX_WAIT = 90.0
QUIET_TOTAL_WAIT = 180.0


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


@dataclass
class Run:
    """One measured process: what the worker reported plus what wait4 saw."""

    spec: dict[str, Any]
    result: dict[str, Any] = field(default_factory=dict)
    maxrss: int = 0
    user_s: float = 0.0
    sys_s: float = 0.0
    elapsed_s: float = 0.0
    ok: bool = False
    error: str | None = None
    spread: tuple[float, float] | None = None  # min and max rows/s over repetitions
    busy_before: float = 0.0  # cores other processes kept busy just before the run

    @property
    def rows(self) -> int:
        return int(self.result.get("rows") or 0)

    @property
    def rows_per_s(self) -> float:
        wall = self.result.get("wall_s") or 0
        return self.rows / wall if wall else 0.0

    @property
    def peak_mib(self) -> float:
        return self.maxrss / MIB

    @property
    def setup_mib(self) -> float:
        return (self.result.get("rss_before_work") or 0) / MIB


class Bench:
    def __init__(self, quick: bool, out: Path) -> None:
        self.quick = quick
        self.out = out
        self.tmp = Path(tempfile.mkdtemp(prefix="prisjakt-bench-"))
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        self.env = self._base_env()
        self.runs: list[Run] = []
        self.sections: list[str] = []
        self.targets: list[tuple[str, str, str]] = []
        self.profiles: list[str] = []
        self.notes: list[str] = []
        self.moto: subprocess.Popen[bytes] | None = None
        self.s3_endpoint = ""
        self.started = time.monotonic()
        self._fronts: dict[int, tuple[PrisjaktSandbox, ReplayFront, dict[str, Any]]] = {}
        self.live_rate = 0.0
        self.repeats = 5
        self.noisy_runs = 0
        self.quiet_budget = QUIET_TOTAL_WAIT  # seconds of waiting allowed over the whole run
        self.extraction_results: dict[int, dict[str, Run]] | None = None
        self.e2e_results: dict[tuple[int, str], dict[str, Run]] | None = None
        self.live_rates: dict[int, float] = {}
        self.footprint: list[tuple[str, str, float]] = []

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

    def run(self, spec: dict[str, Any], *, timeout: float = 900, env: dict[str, str] | None = None) -> Run:
        python = DLT_PY if spec["tool"].startswith("dlt") else AIRFLOW_PY
        name = f"{len(self.runs):02d}-{spec['job']}-{spec['tool']}-{spec.get('destination', '')}-{spec.get('n', '')}"
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
        started = time.monotonic()
        with open(log_path, "wb") as output:
            proc = subprocess.Popen(
                [python, WORKER, json.dumps(spec)],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env or self.env,
                cwd=work,
            )
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() - started > timeout:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    run.error = f"timed out after {timeout:.0f} s"
                    break
                time.sleep(0.05)
            proc.returncode = os.waitstatus_to_exitcode(status)
        run.elapsed_s = time.monotonic() - started
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

    def replay(self, events: int) -> tuple[PrisjaktSandbox, ReplayFront, dict[str, Any]]:
        """A sandbox with ``events`` events behind a warmed replay front."""
        sandbox = self.sandbox(events)
        front = ReplayFront(sandbox.origin, sandbox.client_id, sandbox.client_secret).start()
        base = front.origin + "/click-conversion"
        spec = self.point_at(base, sandbox, 1000)
        spec.update({"from": api_time(PERIOD_START), "to": api_time(PERIOD_END)})
        started = time.monotonic()
        session = requests.Session()
        session.headers.update({"client-id": sandbox.client_id, "client-secret": sandbox.client_secret})
        url: str | None = f"{base}/pixels/{spec['pixel_id']}/events"
        params: dict[str, Any] | None = {"from": spec["from"], "to": spec["to"], "limit": 1000}
        rows = 0
        while url:
            response = session.get(url, params=params)
            response.raise_for_status()
            rows += len(response.json())
            link = response.headers.get("Link", "")
            url = next((part.split(">")[0].strip(" <") for part in link.split(",") if 'rel="next"' in part), None)
            params = None
        seconds = time.monotonic() - started
        log(
            f"replay front for {events:,} events warmed: {rows:,} rows from the live sandbox in {seconds:.1f} s "
            f"({rows / seconds:,.0f} rows/s), {front.cached_bytes() / MIB:.0f} MiB cached"
        )
        self.live_rate = rows / seconds
        front.misses = front.hits = 0
        return sandbox, front, spec

    # -- scenarios -----------------------------------------------------------------------------------

    def extraction(self, sizes: list[int]) -> dict[int, dict[str, Run]]:
        results: dict[int, dict[str, Run]] = {}
        live_rates = {}
        for n in sizes:
            sandbox, front, spec = self.replay(n)
            live_rates[n] = self.live_rate
            tools = ("floor", "ours", "httpop", "dlt", "floor_airflow", "ours_nogc")
            repeats: dict[str, list[Run]] = {tool: [] for tool in tools}
            for _ in range(self.repeats):  # interleaved, so that drift hits every tool alike
                for tool in tools:
                    repeats[tool].append(self.run({"job": "extract", "tool": tool, "n": n, **spec}))
            results[n] = {}
            for tool, runs in repeats.items():
                good = sorted((run for run in runs if run.ok), key=lambda run: run.rows_per_s)
                if not good:
                    results[n][tool] = runs[-1]
                    continue
                median = good[len(good) // 2]
                median.spread = (good[0].rows_per_s, good[-1].rows_per_s)
                results[n][tool] = median
            if front.misses:
                self.notes.append(f"Extraction at N={n:,}: {front.misses} request(s) missed the replay cache.")
            # End-to-end runs reuse the same warmed front.
            self._fronts[n] = (sandbox, front, spec)
        self.live_rates = live_rates
        return results

    def end_to_end(self, sizes: list[int], destinations: list[str]) -> dict[tuple[int, str], dict[str, Run]]:
        results: dict[tuple[int, str], dict[str, Run]] = {}
        for n in sizes:
            sandbox, front, spec = self._fronts[n]
            self.point_at(spec["base_url"], sandbox, 1000)
            for destination in destinations:
                results[(n, destination)] = {}
                for tool in ("ours", "dlt"):
                    if destination == "postgres":
                        self.reset_pg()
                    if destination == "s3":
                        self.clear_s3()
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
                    run = self.run({**spec, **extra})
                    if run.ok and destination == "postgres":
                        run.result["output_bytes"] = self.pg_bytes(tool)
                    if run.ok and destination == "s3":
                        run.result["output_bytes"] = self.s3_bytes("ours/" if tool == "ours" else "dlt/")
                    results[(n, destination)][tool] = run
            if front.misses:
                self.notes.append(f"End-to-end at N={n:,}: {front.misses} request(s) missed the replay cache.")
        self.reset_pg()
        self.clear_s3()
        return results

    def memory(self, sizes: list[int]) -> dict[int, Run]:
        results = {}
        for n in sizes:
            sandbox = self.sandbox(n, end=LONG_PERIOD_END)
            spec = self.point_at(sandbox.base_url, sandbox, 1000)
            spec.update({"from": api_time(PERIOD_START), "to": api_time(LONG_PERIOD_END)})
            results[n] = self.run(
                {"job": "export", "tool": "ours", "n": n, "destination": "jsonl", **spec}, timeout=1500
            )
            sandbox.stop()
        return results

    def rate_limit(self, page_counts: list[int], tools: list[str]) -> dict[tuple[int, str], dict[str, Any]]:
        results: dict[tuple[int, str], dict[str, Any]] = {}
        for pages in page_counts:
            for tool in tools:
                sandbox = self.sandbox(pages * 100, page_size=100, max_page_size=1000, rate_limit=8, rate_window=10.0)
                spec = self.point_at(sandbox.base_url, sandbox, 100)
                spec.update({"from": api_time(PERIOD_START), "to": api_time(PERIOD_END)})
                run = self.run({"job": "ratelimit", "tool": tool, "n": pages * 100, **spec}, timeout=600)
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
            results[tool] = self.run(spec, timeout=600)
        return results

    def profile_missed(self) -> None:
        """Profile our side of every missed extraction or end-to-end target, at the smallest N."""
        n = min(self._fronts)
        sandbox, front, spec = self._fronts[n]
        self.point_at(spec["base_url"], sandbox, 1000)
        missed = [label for label, _, status in self.targets if status == mark(False)]
        if any(label.startswith("Extraction") for label in missed):
            self.profile({"job": "extract", "tool": "ours", "n": n, **spec}, f"read_events (EventsReader), N={n:,}")
        for destination in ("jsonl", "postgres"):
            # Only a missed speed criterion is worth a CPU profile; the RSS one is explained above.
            slow = [v for label, v, st in self.targets if DEST_NAMES[destination] in label and "rows/s (missed)" in v]
            if slow:
                self.reset_pg()
                extra = {"job": "export", "tool": "ours", "n": n, "destination": destination, "table": OURS_TABLE}
                self.profile({**spec, **extra}, f"Our export to {DEST_NAMES[destination]}, N={n:,}")
        self.reset_pg()

    def import_footprint(self) -> list[tuple[str, str, float]]:
        """RSS of a fresh interpreter after each import stage of ours and of dlt: the memory profile of set-up."""
        rows = []
        for venv, label, statement in FOOTPRINT_STAGES:
            python = DLT_PY if venv == "dlt" else AIRFLOW_PY
            code = f"{statement}\nprint([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS')][0])"
            try:
                out = subprocess.run(
                    [python, "-c", code], env=self.env, capture_output=True, text=True, timeout=120, check=True
                )
                rows.append((venv, label, int(out.stdout.strip().splitlines()[-1]) / 1024))
            except (subprocess.SubprocessError, ValueError, IndexError) as err:
                self.notes.append(f"Import footprint of '{label}' not measured: {type(err).__name__}")
        return rows

    def profile(self, spec: dict[str, Any], label: str) -> None:
        """Run one worker again under pyinstrument and keep the summary for RESULTS.md."""
        path = self.tmp / f"profile-{len(self.profiles)}.txt"
        env = {**self.env, "BENCH_PROFILE": str(path)}
        self.run(spec, env=env)
        if path.exists():
            text = "\n".join(path.read_text().strip().splitlines()[:90])
            self.profiles.append(f"#### {label}\n\n```text\n{text}\n```\n")


# -- reporting ---------------------------------------------------------------------------------------


def mib(value: float) -> str:
    return f"{value:,.0f}"


def fmt_rate(run: Run) -> str:
    return f"{run.rows_per_s:,.0f}" if run.ok else "failed"


def versions(python: str, packages: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {'python': sys.version.split()[0]}\n"
        f"for p in {packages!r}:\n"
        "    try: out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    try:
        return json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)
    except Exception:
        return {}


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    return {"cores": str(os.cpu_count()), "cpu": cpu, "memory": memory, "os": platform.platform()}


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "n/a"


def mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


TOOL_NAMES = {
    "floor": "raw requests loop (floor)",
    "ours": "read_events (the operators' EventsReader, behind PrisjaktHook.iter_events)",
    "httpop": "HttpOperator + pagination_function",
    "httpop_retry": "HttpOperator + pagination_function + retry_args",
    "dlt": "dlt rest_api (header_link paginator)",
    "dlt_retry_after": "dlt rest_api, API sends Retry-After",
    "floor_airflow": "*diagnostic:* floor loop in a process with ours' imports",
    "ours_nogc": "*diagnostic:* read_events, cyclic GC off",
}
DEST_NAMES = {
    "jsonl": "local gzip JSONL",
    "parquet": "local Parquet",
    "postgres": "PostgreSQL",
    "s3": "S3 (moto server), gzip JSONL",
}


# What each worker imports before its clock starts, stage by stage (see Bench.import_footprint).
FOOTPRINT_STAGES = [
    ("ours", "the interpreter alone", "pass"),
    ("ours", "+ requests", "import requests"),
    ("ours", "+ Airflow (`import airflow.sdk`)", "import requests, airflow.sdk"),
    (
        "ours",
        "+ this provider's hook and operators",
        "import requests, airflow.sdk\n"
        "import airflow_provider_prisjakt.transfers.prisjakt_to_sql, airflow_provider_prisjakt.export.sinks.object_store",
    ),
    ("dlt", "the interpreter alone", "pass"),
    ("dlt", "+ dlt and its rest_api source", "import dlt\nfrom dlt.sources.rest_api import rest_api_source"),
]


def report_footprint(bench: Bench, rows: list[tuple[str, str, float]]) -> None:
    lines = [
        "## 2b. Where the set-up RSS comes from",
        "",
        "RSS of a fresh interpreter after each stage of imports, in each venv; each row adds to the one "
        "above it. This is the memory profile behind the peak-RSS ratios of section 2: the peak of an "
        "export is its set-up plus what the work adds (*peak − set-up*).",
        "",
        "| venv | stage | RSS MiB | added MiB |",
        "|---|---|---:|---:|",
    ]
    previous: dict[str, float] = {}
    for venv, label, rss in rows:
        added = rss - previous[venv] if venv in previous else None
        previous[venv] = rss
        name = "`bench/.venv` (ours)" if venv == "ours" else "`bench/.venv-dlt`"
        lines.append(f"| {name} | {label} | {rss:.0f} | {'' if added is None else f'{added:+.0f}'} |")
    lines.append("")
    bench.sections.append("\n".join(lines))
    bench.footprint = rows


def report_extraction(bench: Bench, results: dict[int, dict[str, Run]]) -> None:
    lines = [
        "## 1. Extraction",
        "",
        "Fetch every event of one pixel, page size 1,000, no rate limit. Served by the replay front "
        "(the sandbox's own responses, recorded once; see README), so the client is the bottleneck. "
        "rows/s is over the fetch only (imports and set-up excluded); CPU is the client process's CPU "
        "time during the fetch. Peak RSS is the process's high-water mark (VmHWM); *set-up RSS* is the "
        "RSS after imports, before the first request (Airflow's import alone is most of ours and "
        "HttpOperator's). Every worker runs one full garbage collection after its imports and before "
        "the clock starts, so the garbage its imports left behind is not collected inside the timed "
        "section.",
        "",
        f"Each tool ran {bench.repeats} times per N, interleaved; the table shows the run with the median "
        "rows/s and the min–max range of all runs.",
        "",
        "| N | tool | rows | rows/s (median) | min–max rows/s | × floor | CPU µs/row | peak RSS MiB | set-up RSS MiB | peak − set-up MiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, runs in results.items():
        floor = runs["floor"].rows_per_s
        for tool, run in runs.items():
            if not run.ok:
                lines.append(f"| {n:,} | {TOOL_NAMES[tool]} | failed: {run.error} | | | | | | | |")
                continue
            cpu_us = run.result["cpu_s"] / max(run.rows, 1) * 1e6
            spread = f"{run.spread[0]:,.0f}–{run.spread[1]:,.0f}" if run.spread else ""
            lines.append(
                f"| {n:,} | {TOOL_NAMES[tool]} | {run.rows:,} | {run.rows_per_s:,.0f} | {spread} | {ratio(run.rows_per_s, floor)} | "
                f"{cpu_us:.1f} | {mib(run.peak_mib)} | {mib(run.setup_mib)} | {mib(run.peak_mib - run.setup_mib)} |"
            )
    live = ", ".join(f"N={n:,}: {rate:,.0f} rows/s" for n, rate in bench.live_rates.items())
    lines += [
        "",
        "The two *diagnostic* rows are not tools. The floor loop run after importing what ours "
        "imports shows the cost of living in an Airflow-sized heap alone; ours with the cyclic garbage "
        "collector off shows what collections cost ours. Ours decodes pages with `msgspec` (a "
        "dependency of Airflow itself) where the floor uses the standard library's `json`, and drops "
        "repeated records a page at a time with set operations.",
        "",
        f"For scale: the live sandbox itself serves {live} (measured while warming the replay front, "
        "raw requests loop). Against the live sandbox every tool would measure that same number.",
        "",
    ]
    bench.sections.append("\n".join(lines))
    for n, runs in results.items():
        if runs["ours"].ok and runs["floor"].ok:
            value = runs["ours"].rows_per_s / runs["floor"].rows_per_s
            cpu = (runs["floor"].result["cpu_s"] / runs["floor"].rows) / (
                runs["ours"].result["cpu_s"] / runs["ours"].rows
            )
            bench.targets.append(
                (
                    f"Extraction ≥ {TARGET_EXTRACTION}× floor rows/s (N={n:,})",
                    f"{value:.2f}× rows/s (by CPU time per row: {cpu:.2f}×)",
                    mark(value >= TARGET_EXTRACTION),
                )
            )


def report_e2e(bench: Bench, results: dict[tuple[int, str], dict[str, Run]]) -> None:
    lines = [
        "## 2. End-to-end export",
        "",
        "Export every event of the pixel into the destination, from the replay front. Ours: the "
        "operator's `execute()` outside a DAG (local folders through the package's `LocalFolderSink`; "
        "`PrisjaktToS3Operator`; `PrisjaktToSqlOperator` with `write_disposition='merge'`). dlt: "
        "`pipeline.run(rest_api_source)` into `filesystem` (local `file://` or `s3://` on moto; "
        "`jsonl` is gzip-compressed by dlt's default) or `postgres` (`write_disposition='merge'`, "
        "primary key `id`). Output bytes: files written (dlt: the `events` table folder), "
        "`pg_total_relation_size` of the table, or the objects under the prefix.",
        "",
        "| N | destination | tool | rows | rows/s | peak RSS MiB | peak − set-up MiB | output bytes | ours/dlt rows/s | ours/dlt peak RSS |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (n, destination), runs in results.items():
        ours, dlt = runs.get("ours"), runs.get("dlt")
        both = ours is not None and dlt is not None and ours.ok and dlt.ok
        for tool, run in runs.items():
            if not run.ok:
                lines.append(f"| {n:,} | {DEST_NAMES[destination]} | {tool} | failed: {run.error} | | | | | | |")
                continue
            out = run.result.get("output_bytes")
            speed = ratio(ours.rows_per_s, dlt.rows_per_s) if both and tool == "ours" else ""
            rss = ratio(ours.peak_mib, dlt.peak_mib) if both and tool == "ours" else ""
            lines.append(
                f"| {n:,} | {DEST_NAMES[destination]} | {tool} | {run.rows:,} | {run.rows_per_s:,.0f} | "
                f"{mib(run.peak_mib)} | {mib(run.peak_mib - run.setup_mib)} | "
                f"{out:,} | {speed} | {rss} |".replace("| None |", "| – |")
                if out is not None
                else f"| {n:,} | {DEST_NAMES[destination]} | {tool} | {run.rows:,} | {run.rows_per_s:,.0f} | "
                f"{mib(run.peak_mib)} | {mib(run.peak_mib - run.setup_mib)} | – | {speed} | {rss} |"
            )
        if destination in ("jsonl", "postgres"):
            label = f"End-to-end {DEST_NAMES[destination]} ≥ {TARGET_E2E_SPEED}× dlt rows/s at ≤ half its peak RSS (N={n:,})"
            if both:
                speed_ok = ours.rows_per_s >= TARGET_E2E_SPEED * dlt.rows_per_s
                rss_ok = ours.peak_mib <= TARGET_E2E_RSS * dlt.peak_mib
                work_ok = (ours.peak_mib - ours.setup_mib) <= TARGET_E2E_RSS * (dlt.peak_mib - dlt.setup_mib)
                value = (
                    f"{ours.rows_per_s / dlt.rows_per_s:.2f}× rows/s ({'met' if speed_ok else 'missed'}); "
                    f"peak RSS {ours.peak_mib / dlt.peak_mib:.2f}× ({'met' if rss_ok else 'missed'}); "
                    f"peak above set-up {(ours.peak_mib - ours.setup_mib) / max(dlt.peak_mib - dlt.setup_mib, 1e-9):.2f}× "
                    f"({'met' if work_ok else 'missed'})"
                )
                bench.targets.append((label, value, mark(speed_ok and rss_ok)))
            else:
                missing = "ours" if ours is None or not ours.ok else "dlt"
                bench.targets.append(
                    (
                        label,
                        f"{missing} did not run: {(ours if missing == 'ours' else dlt).error if (ours if missing == 'ours' else dlt) else 'pending'}",
                        "not measured",
                    )
                )
    lines.append("")
    bench.sections.append("\n".join(lines))


def report_memory(bench: Bench, results: dict[int, Run]) -> None:
    lines = [
        "## 3. Memory scaling",
        "",
        "Our export (local gzip JSONL, default `max_rows_per_file` = 1,000,000) of one pixel over a "
        "60-day window, served by the live sandbox (no replay: nothing held in the driver).",
        "",
        "| N | rows | rows/s | peak RSS MiB | Δ peak vs smallest N, MiB |",
        "|---:|---:|---:|---:|---:|",
    ]
    base = None
    for n, run in results.items():
        if not run.ok:
            lines.append(f"| {n:,} | failed: {run.error} | | | |")
            continue
        base = run.peak_mib if base is None else base
        lines.append(
            f"| {n:,} | {run.rows:,} | {run.rows_per_s:,.0f} | {run.peak_mib:,.1f} | {run.peak_mib - base:+.1f} |"
        )
    lines.append("")
    bench.sections.append("\n".join(lines))
    sizes = [n for n, run in results.items() if run.ok]
    if len(sizes) >= 2:
        delta = results[sizes[-1]].peak_mib - results[sizes[0]].peak_mib
        bench.targets.append(
            (
                f"Peak RSS at {sizes[-1]:,} within {TARGET_FLAT_MIB:.0f} MiB of {sizes[0]:,}",
                f"{delta:+.1f} MiB",
                mark(delta <= TARGET_FLAT_MIB),
            )
        )


def report_rate_limit(bench: Bench, results: dict[tuple[int, str], dict[str, Any]]) -> None:
    lines = [
        "## 4. Rate-limit scenario",
        "",
        "The sandbox allows 8 requests per fixed 10-second window (the window starts at the first "
        "request); page size 100. *Elapsed* is the time from the first to the last request as the "
        "sandbox saw them; *ideal* is the least the limit allows: (⌈pages/8⌉ − 1) × 10 s. Ours and dlt "
        "write gzip JSONL to a local folder; HttpOperator collects the pages. The API sends no "
        "`Retry-After` (the sandbox default), only `X-RateLimit-*`.",
        "",
        "| pages | tool | outcome | elapsed s | ideal s | elapsed / ideal | 429s | requests sent | pages fetched | client wall s |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (pages, tool), data in results.items():
        run: Run = data["run"]
        error = run.result.get("error") or run.error
        outcome = "completed" if run.ok and not error and run.rows else f"failed ({error})"
        ratio_text = f"{data['span_s'] / data['ideal_s']:.3f}" if data["ideal_s"] and not error else "–"
        lines.append(
            f"| {pages} | {TOOL_NAMES[tool]} | {outcome} | {data['span_s']:.2f} | {data['ideal_s']:.0f} | {ratio_text} | "
            f"{data['status_429']} | {data['requests']} | {data['pages_done']} | {run.result.get('wall_s', 0):.2f} |"
        )
        if tool == "ours":
            ok = (
                not error
                and data["status_429"] == 0
                and data["ideal_s"] > 0
                and data["span_s"] <= (1 + TARGET_RATE_SLACK) * data["ideal_s"]
            )
            bench.targets.append(
                (
                    f"Rate limit, {pages} pages: zero 429s and within {TARGET_RATE_SLACK:.0%} of ideal",
                    f"{data['status_429']} × 429; {data['span_s']:.2f} s vs {data['ideal_s']:.0f} s",
                    mark(ok),
                )
            )
    lines.append("")
    bench.sections.append("\n".join(lines))


def report_long_reset(bench: Bench, results: dict[str, Run]) -> None:
    lines = [
        "## 5. Long reset (300 s) mid-export",
        "",
        "20 pages of 100 events; the sandbox allows 8 requests per 300-second window, so every tool "
        "meets a 300 s reset after page 8 and again after page 16. Nobody waits 300 s for real: the "
        "sandbox runs inside the measured process and `time.sleep` is replaced by a virtual clock "
        "that records each sleep, skips it, and resets the sandbox's window once the skipped time "
        "passes the window's end (exactly what real waiting would do).",
        "",
        "- **Ours** (`deferrable=True`): `execute()` runs until `TaskDeferred`. *Held* is the time from "
        "the response that spent the budget (`X-RateLimit-Remaining: 0`) until `TaskDeferred` is "
        "raised (the worker is free from then on). The triggerer's wait is skipped on the virtual "
        "clock; then a fresh operator resumes with `resume_execution(...)` from the event the "
        "trigger would send (its `resume` checkpoint), until the export completes.",
        "- **Peers**: *held* is the time from the response that spent the budget to the end of the "
        "attempt (real time plus the sleeps they asked for). A failed attempt is retried once after "
        "Airflow's default `retry_delay` (300 s, skipped, not held) and starts again from page 1.",
        "",
        "| tool | outcome | attempts / deferrals | worker held after the budget ran out, s | sleeps asked for, s | pages fetched twice | distinct pages | 429s | requests |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for tool, run in results.items():
        if not run.ok:
            lines.append(f"| {TOOL_NAMES[tool]} | failed: {run.error} | | | | | | | |")
            continue
        r = run.result
        attempts = r["attempts"]
        kinds = Counter(a["result"] for a in attempts)
        summary = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
        slept = sum(a.get("slept_s", 0) for a in attempts)
        errors = {a.get("error") for a in attempts if a.get("error")}
        outcome = r["outcome"] + (f" ({'; '.join(sorted(e for e in errors if e))[:90]})" if errors else "")
        lines.append(
            f"| {TOOL_NAMES[tool]} | {outcome} | {summary} | {r['held_s']:.2f} | {slept:.0f} | {r['pages_refetched']} | "
            f"{r['distinct_pages']} of 20 | {r['status_429']} | {r['requests']} |"
        )
        if tool == "ours":
            ok = r["outcome"] == "completed" and r["pages_refetched"] == 0 and r["held_s"] < 1.0
            bench.targets.append(
                (
                    "Long reset: ~0 s held, no page fetched twice",
                    f"{r['held_s']:.2f} s held; {r['pages_refetched']} pages twice",
                    mark(ok),
                )
            )
    lines += [
        "",
        "Per attempt (held s / sleeps s / pages answered / 429s):",
        "",
    ]
    for tool, run in results.items():
        if run.ok:
            parts = [
                f"{a['result']} {a['held_s']:.2f}/{a.get('slept_s', 0):.0f}/{a.get('pages_ok', a.get('rows', '–'))}/{a.get('status_429', 0)}"
                for a in run.result["attempts"]
            ]
            lines.append(f"- {TOOL_NAMES[tool]}: " + "; ".join(parts))
    lines.append("")
    bench.sections.append("\n".join(lines))


def analysis(
    extraction: dict[int, dict[str, Run]] | None,
    e2e: dict[tuple[int, str], dict[str, Run]] | None,
    footprint: list[tuple[str, str, float]],
) -> list[str]:
    """Explain the missed throughput and memory targets from the measured runs themselves."""
    lines: list[str] = []
    stages = {(venv, label): rss for venv, label, rss in footprint}
    with_airflow = stages.get(("ours", FOOTPRINT_STAGES[2][1]))
    before_airflow = stages.get(("ours", FOOTPRINT_STAGES[1][1]))
    airflow_share = (
        f" Section 2b shows where it comes from: importing Airflow adds {with_airflow - before_airflow:.0f} MiB "
        f"to an interpreter that already has requests ({before_airflow:.0f} MiB)."
        if with_airflow and before_airflow
        else ""
    )
    if extraction:
        for n, runs in extraction.items():
            needed = ("floor", "ours", "floor_airflow", "ours_nogc")
            if not all(runs.get(tool) is not None and runs[tool].ok for tool in needed):
                continue
            floor, ours = runs["floor"].rows_per_s, runs["ours"].rows_per_s
            heap, nogc = runs["floor_airflow"].rows_per_s, runs["ours_nogc"].rows_per_s
            if ours >= TARGET_EXTRACTION * floor:
                continue
            lines.append(
                f"- **Extraction, N={n:,}: ours at {ours / floor:.2f}× the floor.** The floor loop run in a "
                f"process with ours' imports reaches {heap / floor:.2f}× the floor, and ours with the cyclic "
                f"garbage collector off reaches {nogc / floor:.2f}× ({nogc / ours:.2f}× itself). With "
                "Airflow imported, each full collection walks some 160k objects. The rest of the gap is "
                "the record-level API: `read_events` yields records one by one through a generator, where "
                "the floor, dlt and HttpOperator hand over whole pages. The profile below shows where the "
                "time goes."
            )
    if e2e:
        for (n, destination), runs in e2e.items():
            ours, dlt = runs.get("ours"), runs.get("dlt")
            if destination not in ("jsonl", "postgres") or not (ours and dlt and ours.ok and dlt.ok):
                continue
            if ours.peak_mib <= TARGET_E2E_RSS * dlt.peak_mib:
                continue
            lines.append(
                f"- **{DEST_NAMES[destination]}, N={n:,}: peak RSS {ours.peak_mib:.0f} MiB against dlt's "
                f"{dlt.peak_mib:.0f} MiB.** {ours.setup_mib:.0f} MiB of ours is there before the first "
                f"request: the interpreter with Airflow and the provider imported.{airflow_share} dlt's venv "
                f"has no Airflow ({dlt.setup_mib:.0f} MiB at the same point). The export itself adds "
                f"{ours.peak_mib - ours.setup_mib:.0f} MiB to ours and {dlt.peak_mib - dlt.setup_mib:.0f} MiB "
                "to dlt. Inside an Airflow worker both would pay the Airflow import, so *peak − set-up* is the "
                "comparable figure. No change in our code can meet the target as written: ours needs Airflow "
                "to run at all."
            )
    return lines


def write_results(bench: Bench, path: Path, mode: str) -> None:
    airflow_side = versions(
        AIRFLOW_PY,
        [
            "airflow-provider-prisjakt",
            "apache-airflow",
            "apache-airflow-task-sdk",
            "apache-airflow-providers-http",
            "apache-airflow-providers-amazon",
            "apache-airflow-providers-common-sql",
            "apache-airflow-providers-postgres",
            "requests",
            "urllib3",
            "pyarrow",
            "psycopg2-binary",
            "boto3",
            "moto",
            "tenacity",
            "pyinstrument",
        ],
    )
    dlt_side = versions(DLT_PY, ["dlt", "requests", "pyarrow", "psycopg2-binary", "s3fs", "tenacity", "orjson"])
    postgres = "unknown"
    with contextlib.suppress(Exception), contextlib.closing(bench.pg()) as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        postgres = cur.fetchone()[0]
    host = machine()
    total = time.monotonic() - bench.started
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `make bench` ({mode}) on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; the whole run took "
        f"{total / 60:.1f} min. Every figure below comes from this one run on this machine, against the "
        "same sandbox data (seed 42, one pixel). Each measured tool ran in its own process, one at a time.",
        "",
        f"- Machine: {host['cores']} cores ({host['cpu']}), {host['memory']} RAM, {host['os']}",
        f"- Python {airflow_side.get('python', '?')} in both benchmark venvs; PostgreSQL {postgres}",
        "- `bench/.venv` (ours, the floor, HttpOperator): "
        + ", ".join(f"{k} {v}" for k, v in airflow_side.items() if k != "python"),
        "- `bench/.venv-dlt` (dlt): " + ", ".join(f"{k} {v}" for k, v in dlt_side.items() if k != "python"),
        "",
        "How to read this: see `bench/README.md`. Ratios are the figures to compare; absolute rows/s "
        "depend on this machine.",
        "",
        "## Targets",
        "",
        "| target | measured | status |",
        "|---|---|---|",
    ]
    lines += [f"| {label} | {value} | {status} |" for label, value, status in bench.targets]
    lines.append("")
    lines += bench.sections
    explained = analysis(bench.extraction_results, bench.e2e_results, bench.footprint)
    if explained:
        lines += ["## Why the missed targets are missed", "", *explained, ""]
    if bench.profiles:
        lines += ["## Profiles of missed targets", ""] + bench.profiles
    bench.notes.append(
        f"Contention guard: before each measured run the driver waited (up to {QUIET_MAX_WAIT:.0f} s per run, "
        f"{QUIET_TOTAL_WAIT:.0f} s in all) until "
        f"other processes used less than {QUIET_BUSY_CORES} of a core. {bench.noisy_runs} of {len(bench.runs)} "
        "runs started without that quiet (the machine is shared with other engineers' test runs); the "
        "interleaved repetitions and the CPU-time columns are the figures least affected by it."
    )
    if bench.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in bench.notes] + [""]
    path.write_text("\n".join(lines).rstrip() + "\n")
    log(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for trying the harness out")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--only", default="", help="comma-separated scenarios: extract,e2e,memory,ratelimit,longreset")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(","))) or {"extract", "e2e", "memory", "ratelimit", "longreset"}
    if args.quick:
        sizes, memory_sizes, pages = [20_000, 50_000], [20_000, 100_000], [12]
    else:
        sizes, memory_sizes, pages = [100_000, 1_000_000], [100_000, 1_000_000, 5_000_000], [20, 40]
    bench = Bench(args.quick, Path(args.out))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below: stop moto
    bench.start_services()
    try:
        destinations = ["jsonl", "parquet", "postgres", "s3"]
        try:
            bench.reset_pg()
        except Exception as err:
            destinations.remove("postgres")
            bench.reset_pg = lambda: None  # type: ignore[method-assign]
            bench.notes.append(
                f"PostgreSQL at 127.0.0.1:5432 was not reachable ({type(err).__name__}); its rows are missing."
            )
        if "extract" in only or "e2e" in only:
            extraction = bench.extraction(sizes) if "extract" in only else None
            if extraction is None:
                for n in sizes:
                    bench._fronts[n] = bench.replay(n)
                    bench.live_rates[n] = bench.live_rate
            if extraction is not None:
                report_extraction(bench, extraction)
                bench.extraction_results = extraction
            if "e2e" in only:
                bench.e2e_results = bench.end_to_end(sizes, destinations)
                report_e2e(bench, bench.e2e_results)
                report_footprint(bench, bench.import_footprint())
            bench.profile_missed()
            for sandbox, front, _ in bench._fronts.values():
                front.stop()
                sandbox.stop()
            bench._fronts.clear()
        if "memory" in only:
            report_memory(bench, bench.memory(memory_sizes))
        if "ratelimit" in only:
            report_rate_limit(bench, bench.rate_limit(pages, ["ours", "dlt", "httpop_retry", "httpop"]))
        if "longreset" in only:
            report_long_reset(bench, bench.long_reset(["ours", "dlt", "dlt_retry_after", "httpop", "httpop_retry"]))
    finally:
        bench.stop_services()
    write_results(bench, Path(args.out), "quick mode" if args.quick else "full run")
    log(f"logs of every run: {bench.logs}")


if __name__ == "__main__":
    main()
