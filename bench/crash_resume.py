"""
Crash-resume on Airflow 3.3+ (#14): what keeping checkpoints in the task state store costs, and how
many pages a task killed mid-export fetches twice once Airflow retries it.

    .venv/bin/python bench/crash_resume.py            # about 3 minutes; writes its section of RESULTS.md

It needs PostgreSQL at 127.0.0.1:5432 (user ``postgres``, trust auth) for the scheduler's metadata
database, and starts everything else itself: a real Airflow deployment (scheduler, DAG processor,
triggerer, execution API; ``tests/integration/airflow_cluster.py``), the sandbox and moto_server.
Not part of ``make bench``; it replaces only its own section of RESULTS.md (between its markers).

- **Cost.** One uninterrupted scheduled run of ``COST_PAGES`` pages into S3. Its manifest counts the
  state-store writes (``checkpoints``) and the time spent in them (``checkpoint_seconds``, each one a
  round trip task -> supervisor -> execution API -> metadata database). Staging a part at each
  checkpoint costs uploads too: the same export run in this process with an in-memory store and
  without any store shows that share.
- **Crash.** A 20-page window; the task process is SIGKILLed while page N is in flight, for several
  N; the sandbox counts the pages fetched twice.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(REPO_ROOT))

from airflow_provider_prisjakt.export.checkpoint import PARTS_PER_KEY  # noqa: E402
from airflow_provider_prisjakt.export.run import CHECKPOINT_EVERY_PAGES  # noqa: E402
from airflow_provider_prisjakt.testing import PrisjaktSandbox  # noqa: E402
from bench.sections import write_section  # noqa: E402
from tests.integration.airflow_cluster import DAG_IDS, PG_DSN, AirflowCluster, psycopg_connect  # noqa: E402
from tests.integration.conftest import PERIOD_END, PERIOD_START, rate_limited_config  # noqa: E402
from tests.integration.services import start_moto_server  # noqa: E402
from tests.integration.task_state import FileStateStore  # noqa: E402
from tests.integration.test_crash_resume import (  # noqa: E402
    DAG_ID,
    LATENCY_MS,
    PAGE_SIZE,
    PAGES,
    PREFIX,
    TASK_ID,
    refetched,
    run_killed_at_page,
    use_cluster,
)

COST_PAGES = 1000
KILL_PAGES = (5, 6, 7, 8, 9, 10)
AWS_CONN_ID = "prisjakt_bench_aws"
#: The API's documented budget, for what the cost means when the budget paces the pages.
REQUESTS_PER_HOUR = 10_000
START_MARK = "<!-- crash:start -->"
END_MARK = "<!-- crash:end -->"


def aws_connection(url: str) -> str:
    extra = {
        "endpoint_url": url,
        "aws_access_key_id": "bench",
        "aws_secret_access_key": "bench",
        "region_name": "us-east-1",
    }
    return json.dumps({"conn_type": "aws", "extra": extra})


def manifest_of(s3: Any, bucket: str, pixel: str) -> dict[str, Any]:
    body = s3.get_object(Bucket=bucket, Key=f"{PREFIX}/pixel_id={pixel}/_manifest.json")["Body"].read()
    return json.loads(body)


def run_conf(s3: Any, bucket: str, pixel: str) -> dict[str, Any]:
    """The conf of one run of the DAG: the window, and a fresh bucket to export into."""
    s3.create_bucket(Bucket=bucket)
    return {
        "pixel_id": pixel,
        "start": PERIOD_START.isoformat(),
        "end": PERIOD_END.isoformat(),
        "bucket": bucket,
        "aws_conn_id": AWS_CONN_ID,
    }


def in_process_seconds(sandbox: PrisjaktSandbox, pixel: str, prefix: str, with_store: bool, tmp: Path) -> float:
    """Wall time of the same export run in this process, with a store in a local file or without one."""
    from airflow_provider_prisjakt.transfers.prisjakt_to_s3 import PrisjaktToS3Operator

    operator = PrisjaktToS3Operator(
        task_id="export_events",
        pixel_id=pixel,
        start=PERIOD_START.isoformat(),
        end=PERIOD_END.isoformat(),
        s3_bucket="in-process",
        s3_key=prefix,
        aws_conn_id=AWS_CONN_ID,
    )
    context = {"task_state_store": FileStateStore(tmp / f"{prefix}.json")} if with_store else {}
    began = time.perf_counter()
    operator.execute(context)  # type: ignore[arg-type]
    return time.perf_counter() - began


def main() -> None:
    import boto3

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="prisjakt-bench-crash-"))
    moto = start_moto_server()
    os.environ[f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}"] = aws_connection(moto.url)
    s3 = boto3.client(
        "s3", endpoint_url=moto.url, aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
    )
    s3.create_bucket(Bucket="in-process")
    name = f"prisjakt_bench_{secrets.token_hex(4)}"
    with psycopg_connect(PG_DSN) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    cluster = AirflowCluster(tmp / "airflow", f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}")
    began = time.monotonic()
    try:
        cluster.start(DAG_IDS)
        cost_lines = cost(cluster, s3, moto.url, tmp)
        crash_lines = crashes(cluster, s3, moto.url)
    finally:
        cluster.stop()
        moto.stop()
        with psycopg_connect(PG_DSN) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    command = "python bench/crash_resume.py" + ("" if args.out == str(HERE / "RESULTS.md") else f" --out {args.out}")
    section = [
        START_MARK,
        "## 8. Crash-resume (Airflow 3.3+)",
        "",
        f"`{command}` (project venv) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {time.monotonic() - began:.0f} s, "
        "against a real Airflow 3.3 deployment (scheduler with LocalExecutor, DAG processor, triggerer, "
        "execution API; PostgreSQL metadata database), the sandbox and moto_server. The export task "
        "(`PrisjaktToS3Operator` of the test DAG `prisjakt_test_task_retries`) stages its open part and stores its "
        f"checkpoint in the task instance's `task_state_store` every `CHECKPOINT_EVERY_PAGES` = {CHECKPOINT_EVERY_PAGES} "
        "pages; the stored checkpoint lists at most "
        f"{PARTS_PER_KEY - 1} parts, full groups of {PARTS_PER_KEY} go once each to keys of their own.",
        "",
        *cost_lines,
        "",
        *crash_lines,
        END_MARK,
    ]
    write_section(Path(args.out), "\n".join(section), START_MARK, END_MARK)
    print("\n".join(section))


def cost(cluster: AirflowCluster, s3: Any, moto_url: str, tmp: Path) -> list[str]:
    config = rate_limited_config(pages=COST_PAGES, page_size=PAGE_SIZE, budget=1_000_000, window_seconds=3600)
    with PrisjaktSandbox(config) as sandbox:
        pixel = sandbox.pixel_ids(4242)[0]
        use_cluster(cluster, sandbox, aws_connection(moto_url), AWS_CONN_ID)
        run = cluster.run_dag(DAG_ID, run_conf(s3, "cost", pixel))
        assert run.state == "success", run
        started, ended = run.times[(TASK_ID, -1)]
        assert started is not None
        assert ended is not None
        manifest = manifest_of(s3, "cost", pixel)
        counters, groups = manifest["counters"], len(manifest["parts"]) // PARTS_PER_KEY
        os.environ["AIRFLOW_CONN_PRISJAKT_DEFAULT"] = sandbox.connection_json(page_size=PAGE_SIZE)
        plain = min(in_process_seconds(sandbox, pixel, f"plain{n}", False, tmp) for n in range(3))
        staged = min(in_process_seconds(sandbox, pixel, f"staged{n}", True, tmp) for n in range(3))
    writes, seconds = counters["checkpoints"], counters["checkpoint_seconds"]
    task_seconds = (ended - started).total_seconds()
    per_write, per_part = seconds / writes, (staged - plain) / writes
    paced = CHECKPOINT_EVERY_PAGES * 3600 / REQUESTS_PER_HOUR
    return [
        f"**Cost**: {COST_PAGES:,} pages of {PAGE_SIZE} events into S3 on moto, one scheduled task, no crash.",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| checkpoints stored per 1,000 pages (one write each) | {writes * 1000 / COST_PAGES:.0f} |",
        f"| other state-store calls per 1,000 pages | {groups * 1000 / COST_PAGES:.0f} writes of a group of "
        f"{PARTS_PER_KEY} parts; {(groups + 1) * 1000 / COST_PAGES:.0f} deletes at the end |",
        f"| time per checkpoint stored (task → supervisor → execution API → PostgreSQL), mean | {per_write * 1000:.1f} ms |",
        f"| all of them, of the task's {task_seconds:.1f} s | {seconds:.2f} s ({seconds / task_seconds:.0%}) |",
        f"| the same export in one process without a store (parts of 1,000,000 rows) | {plain:.1f} s |",
        f"| the same with a part staged at each checkpoint (a file as the store) | {staged:.1f} s, "
        f"{per_part * 1000:.0f} ms per extra part |",
        "",
        f"The sandbox answers a page in a few milliseconds, so here checkpoints are a large share of the task. When "
        f"the budget paces the export ({REQUESTS_PER_HOUR:,} requests an hour: a checkpoint every {paced:.2f} s at "
        f"most), a checkpoint's {per_write * 1000:.0f} ms write plus its {per_part * 1000:.0f} ms extra part take "
        f"{(per_write + per_part) / paced:.1%} of the time. The price in output: on Airflow 3.3+ a part file holds at "
        f"most {CHECKPOINT_EVERY_PAGES} pages' rows (here {COST_PAGES // CHECKPOINT_EVERY_PAGES} parts instead of 1).",
    ]


def crashes(cluster: AirflowCluster, s3: Any, moto_url: str) -> list[str]:
    config = rate_limited_config(pages=PAGES, page_size=PAGE_SIZE, budget=1_000_000, window_seconds=3600)
    rows = [
        f"**Crash**: {PAGES} pages of {PAGE_SIZE}; the task's process is SIGKILLed while page N is in flight "
        f"(the sandbox answers each page after {LATENCY_MS} ms); Airflow retries it a second later.",
        "",
        "| killed at page | run | pages fetched twice | page requests | retry resumed after page |",
        "|---:|---|---:|---:|---:|",
    ]
    worst = 0
    for page in KILL_PAGES:
        with PrisjaktSandbox(config) as sandbox:
            pixel = sandbox.pixel_ids(4242)[0]
            use_cluster(cluster, sandbox, aws_connection(moto_url), AWS_CONN_ID)
            run = run_killed_at_page(cluster, sandbox, run_conf(s3, f"crash-{page}", pixel), page)
            twice = refetched(sandbox)
            requests = sum(1 for r in sandbox.requests if r.page_key and r.status == 200)
            rows.append(f"| {page} | {run.state} | {twice} | {requests} | {page - twice} |")
            worst = max(worst, twice)
    met = "**met**" if worst <= CHECKPOINT_EVERY_PAGES else "**missed**"
    return [*rows, "", f"Target: at most 2 pages fetched twice after a SIGKILL and retry: {worst} at most, {met}."]


if __name__ == "__main__":
    main()
