"""
Soak test: repeated daily exports against the Prisjakt sandbox with faults on, watching for leaks.

Each round exports one day of one pixel's events twice, as two daily tasks would: into a local
folder through the export loop, and into a SQLite table through ``PrisjaktToSqlOperator``. Every
task gets a fresh hook, as on a worker. The sandbox injects 5xx answers (JSON and HTML), dropped
connections, truncated bodies, stalls longer than the read timeout and 429 bursts. Every export is
checked against the seeded events.

The script samples this process's resident memory (RSS) and open file descriptors after every
round (after a garbage collection) and prints a table. It exits non-zero when an export is wrong, or when RSS or the descriptor
count grows: the median of the last third of the run is compared with the median of the first
third after a warm-up.

    python soak/soak.py --minutes 10      # what ``make soak`` runs
    python soak/soak.py --minutes 1       # a quick check of the script itself
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Airflow reads its home and database at first import: a throwaway home, before anything imports it.
_HOME = tempfile.mkdtemp(prefix="prisjakt-soak-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_HOME}/airflow.db")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")

PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 31
EVENTS_PER_PIXEL = 62_000  # about 2,000 events a day: two pages of 1,000
PAGE_SIZE = 1000
WARM_UP_SHARE = 0.2


def rss_mb() -> float:
    """Resident set size of this process, in MiB (Linux ``/proc``)."""
    with open("/proc/self/statm") as handle:
        resident_pages = int(handle.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_fds() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def serve(config: object, ready: object) -> None:
    """Run the sandbox in a child process, so this process's descriptors and memory are the client's alone."""
    import signal

    from airflow_provider_prisjakt.testing import PrisjaktSandbox

    sandbox = PrisjaktSandbox(config).start()  # type: ignore[arg-type]
    ready.set()  # type: ignore[attr-defined]
    signal.sigwait({signal.SIGTERM})
    sandbox.stop()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    parser.add_argument("--rss-tolerance-mb", type=float, default=20.0, help="allowed RSS growth (default 20 MiB)")
    parser.add_argument("--fd-tolerance", type=int, default=3, help="allowed growth in open descriptors (default 3)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the injected faults")
    return parser.parse_args(argv)


def grew(samples: list[float], tolerance: float) -> tuple[float, float, bool]:
    """Median of the first and last thirds after the warm-up, and whether the growth exceeds ``tolerance``."""
    steady = samples[int(len(samples) * WARM_UP_SHARE) :]
    third = max(1, len(steady) // 3)
    first, last = statistics.median(steady[:third]), statistics.median(steady[-third:])
    return first, last, last - first > tolerance


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from airflow_provider_prisjakt.api.resources import EVENTS
    from airflow_provider_prisjakt.export.formats import Compression, FileFormat
    from airflow_provider_prisjakt.export.run import ExportRequest, ExportRun
    from airflow_provider_prisjakt.export.sinks.object_store import LocalFolderSink
    from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
    from airflow_provider_prisjakt.testing import FaultConfig, PrisjaktSandbox, SandboxConfig
    from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator

    faults = FaultConfig(
        seed=args.seed,
        error_rate=0.03,
        html_error_rate=0.02,
        drop_rate=0.01,
        truncate_rate=0.01,
        stall_rate=0.005,
        stall_seconds=2.0,
        burst_429_rate=0.01,
        burst_length=3,
        burst_reset_ms=200,
    )
    work = Path(_HOME) / "work"
    work.mkdir()
    database = work / "warehouse.db"
    os.environ["AIRFLOW_CONN_SOAK_WAREHOUSE"] = json.dumps({"conn_type": "sqlite", "host": str(database)})
    import multiprocessing
    import signal
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = SandboxConfig(port=port, events_per_pixel=EVENTS_PER_PIXEL, faults=faults)
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # the child waits for it with sigwait
    server = context.Process(target=serve, args=(config, ready), daemon=True)
    server.start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if not ready.wait(30):
        print("FAIL: the sandbox did not start", file=sys.stderr)
        return 2
    sandbox = PrisjaktSandbox(config)  # not started here: the seed truth, and the connection
    deadline = time.monotonic() + args.minutes * 60
    started = time.monotonic()
    samples: list[tuple[float, int, float, int, int]] = []  # (seconds, round, rss, fds, faults)
    failures: list[str] = []
    fault_count = 0
    print(f"{'elapsed':>8} {'round':>6} {'rows':>7} {'retried':>7} {'rss MiB':>8} {'open fds':>8}")
    try:
        os.environ["AIRFLOW_CONN_PRISJAKT_DEFAULT"] = json.dumps(
            {
                "conn_type": "prisjakt",
                "host": f"http://127.0.0.1:{port}/click-conversion",
                "login": sandbox.client_id,
                "password": sandbox.client_secret,
                "extra": {"page_size": PAGE_SIZE, "timeout": 1, "max_retries": 10},
            }
        )
        pixel = sandbox.pixel_ids(4242)[0]
        round_number = 0
        last_print = 0.0
        while time.monotonic() < deadline:
            day_start = PERIOD_START + timedelta(days=round_number % DAYS)
            day_end = day_start + timedelta(days=1)
            expected = sorted(event["id"] for event in sandbox.expected_events(pixel, day_start, day_end))

            # A daily task into a local folder, through the export loop.
            hook = PrisjaktHook()
            with tempfile.TemporaryDirectory(dir=work) as spool:
                sink = LocalFolderSink(
                    root=str(work / "lake"),
                    prefix=f"events/{day_start.date().isoformat()}",
                    resource=EVENTS,
                    file_format=FileFormat.JSONL,
                    compression=Compression.GZIP,
                    extracted_at=datetime.now(UTC),
                    spool_dir=spool,
                )
                request = ExportRequest(resource=EVENTS, start=day_start, end=day_end, pixel_id=pixel)
                manifest = ExportRun(hook, request, sink, extracted_at=datetime.now(UTC)).execute()
            hook.close()
            fault_count += hook.stats.retries + hook.stats.rate_limited
            if manifest["rows"] != len(expected):
                failures.append(f"round {round_number}: the folder got {manifest['rows']} rows, not {len(expected)}")

            # The same day into SQLite, through the operator.
            operator = PrisjaktToSqlOperator(
                task_id="soak",
                conn_id="soak_warehouse",
                table="events",
                pixel_id=pixel,
                start=day_start.isoformat(),
                end=day_end.isoformat(),
                write_disposition="replace_window",
            )
            summary = operator.execute({})
            fault_count += summary["retries"] + summary["rate_limited"]
            import sqlite3

            with sqlite3.connect(database) as conn:
                loaded = sorted(
                    row[0]
                    for row in conn.execute(
                        "SELECT event_id FROM events WHERE event_time >= ? AND event_time < ?",
                        (day_start.isoformat(timespec="microseconds"), day_end.isoformat(timespec="microseconds")),
                    )
                )
            conn.close()
            if loaded != expected:
                failures.append(f"round {round_number}: the table holds {len(loaded)} rows, not {len(expected)}")

            round_number += 1
            elapsed = time.monotonic() - started
            # Sockets of a hook nobody closed (the operators leave theirs to the garbage collector) close
            # only when a collection runs; collect first, so the count shows what really stays open.
            gc.collect()
            samples.append((elapsed, round_number, rss_mb(), open_fds(), fault_count))
            if elapsed - last_print >= max(5.0, args.minutes * 6) or time.monotonic() >= deadline:
                last_print = elapsed
                print(
                    f"{elapsed:8.0f} {round_number:6d} {len(expected):7d} {fault_count:7d} "
                    f"{samples[-1][2]:8.1f} {samples[-1][3]:8d}",
                    flush=True,
                )
    finally:
        server.terminate()
        server.join(10)

    if len(samples) < 6:
        print(f"FAIL: only {len(samples)} rounds ran; run longer", file=sys.stderr)
        return 2
    rss_first, rss_last, rss_grew = grew([s[2] for s in samples], args.rss_tolerance_mb)
    fd_first, fd_last, fd_grew = grew([float(s[3]) for s in samples], args.fd_tolerance)
    print(
        f"\n{len(samples)} rounds, {fault_count} requests retried or answered 429. "
        f"RSS {rss_first:.1f} -> {rss_last:.1f} MiB (tolerance {args.rss_tolerance_mb:g}); "
        f"open fds {fd_first:.0f} -> {fd_last:.0f} (tolerance {args.fd_tolerance})"
    )
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    if rss_grew:
        print("FAIL: resident memory grew", file=sys.stderr)
    if fd_grew:
        print("FAIL: open file descriptors grew", file=sys.stderr)
    if failures or rss_grew or fd_grew:
        return 1
    print("OK: every export exact; neither RSS nor open file descriptors grew")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
