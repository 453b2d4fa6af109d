"""
A real deferral: Airflow's scheduler, triggerer, DAG processor and execution API run the test DAG.

The export task meets a spent rate-limit budget, defers, is resumed by the real triggerer (which
merges the event into the stored defer kwargs) and finishes on a LocalExecutor worker. The
metadata database is a fresh PostgreSQL database, dropped afterwards. Skipped when PostgreSQL is
not reachable at 127.0.0.1:5432 (user ``postgres``, trust auth).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_prisjakt.testing import PrisjaktSandbox
from tests.conftest import REPO_ROOT, register_secret
from tests.integration.conftest import PERIOD_END, PERIOD_START, rate_limited_config

pytestmark = [pytest.mark.integration, pytest.mark.airflow3_only]

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
DAG_ID = "prisjakt_test_deferral"
DAG_FILE = REPO_ROOT / "tests" / "dags" / f"{DAG_ID}.py"
PAGE_SIZE = 100
PAGES = 15
BUDGET = 10
# Long enough that the scheduler drains the worker's stale "success" of the deferring attempt while
# the task is still deferred. A trigger that fires within a few seconds of the deferral can lose
# that race in Airflow 3.2/3.3 and the resumed task is failed as "state changed externally"
# (apache/airflow#66374, #67287, #72716); the provider defers only past max_inline_wait (60 s by
# default), so real deployments stay clear of it.
WINDOW_SECONDS = 12.0
RUN_TIMEOUT_SECONDS = 240.0


def psycopg_connect(dsn: str) -> Any:
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as err:
        pytest.skip(f"PostgreSQL is not reachable: {err}")


@pytest.fixture
def metadata_db() -> Iterator[str]:
    """A fresh PostgreSQL database for Airflow's metadata; yields its SQLAlchemy URL."""
    name = f"prisjakt_deferral_{secrets.token_hex(4)}"
    with psycopg_connect(PG_DSN) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg_connect(PG_DSN) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_env(home: Path, db_url: str, api_port: int, sandbox: PrisjaktSandbox) -> dict[str, str]:
    """The environment of every Airflow process: nothing inherited from the test session's Airflow."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_PRISJAKT_DEFAULT": sandbox.connection_json(max_inline_wait=0.5),
        }
    )
    return env


@contextmanager
def airflow_components(home: Path, env: dict[str, str], api_port: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start the execution API, scheduler, DAG processor and triggerer; stop them (and their children) at exit."""
    commands = {
        "api-server": ["api-server", "--apps", "execution", "--host", "127.0.0.1", "--port", str(api_port)],
        "scheduler": ["scheduler"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer"],
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, args in commands.items():
            log = (home / f"{name}.log").open("wb")
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "airflow", *args],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, so its workers stop with it
                )
            )
            log.close()
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def airflow_cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"airflow {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def logs_tail(home: Path, lines: int = 40) -> str:
    """The ends of the component and task logs, for a failure message."""
    parts = []
    for path in sorted(home.glob("*.log")) + sorted((home / "logs").rglob("*.log")):
        text = path.read_text(errors="replace").splitlines()
        parts.append(f"--- {path.relative_to(home)}\n" + "\n".join(line[:300] for line in text[-lines:]))
    return "\n".join(parts)


def test_real_triggerer_resumes_the_deferred_export(metadata_db: str, tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    shutil.copy(DAG_FILE, home / "dags" / DAG_FILE.name)
    output = tmp_path / "output"
    api_port = free_port()
    states: dict[str, list[str]] = {}

    with PrisjaktSandbox(
        rate_limited_config(pages=PAGES, page_size=PAGE_SIZE, budget=BUDGET, window_seconds=WINDOW_SECONDS)
    ) as sandbox:
        register_secret(sandbox.client_secret)
        env = airflow_env(home, metadata_db, api_port, sandbox)
        airflow_cli(env, "db", "migrate")
        with airflow_components(home, env, api_port) as processes:
            db = psycopg_connect(metadata_db.replace("postgresql+psycopg2://", "postgresql://"))
            with db:
                deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
                while not db.execute("SELECT 1 FROM dag WHERE dag_id = %s", (DAG_ID,)).fetchone():
                    assert time.monotonic() < deadline, "the DAG was never parsed\n" + logs_tail(home)
                    assert all(p.poll() is None for p in processes), "a component died\n" + logs_tail(home)
                    time.sleep(0.5)
                conf = {
                    "pixel_id": sandbox.pixel_ids(4242)[0],
                    "start": PERIOD_START.isoformat(),
                    "end": PERIOD_END.isoformat(),
                    "root": str(output),
                }
                airflow_cli(env, "dags", "unpause", DAG_ID)
                airflow_cli(env, "dags", "trigger", DAG_ID, "--conf", json.dumps(conf))

                run_state = None
                while run_state not in ("success", "failed"):
                    assert time.monotonic() < deadline, f"the run did not finish: {states}\n" + logs_tail(home)
                    assert all(p.poll() is None for p in processes), "a component died\n" + logs_tail(home)
                    for task_id, state in db.execute(
                        "SELECT task_id, state FROM task_instance WHERE dag_id = %s", (DAG_ID,)
                    ).fetchall():
                        seen = states.setdefault(task_id, [])
                        if state and (not seen or seen[-1] != state):
                            seen.append(state)
                    row = db.execute("SELECT state FROM dag_run WHERE dag_id = %s", (DAG_ID,)).fetchone()
                    run_state = row[0] if row else None
                    time.sleep(0.2)

        assert run_state == "success", f"{states}\n" + logs_tail(home)
        export_states = states["export_events"]
        assert "deferred" in export_states, export_states
        assert export_states[-1] == "success"
        assert export_states.index("deferred") < export_states.index("success")
        manifest = json.loads((output / "export" / f"pixel_id={conf['pixel_id']}" / "_manifest.json").read_text())
        assert manifest["rows"] == PAGES * PAGE_SIZE
        assert manifest["counters"]["deferrals"] >= 1
        pages = [r.page_key for r in sandbox.requests if r.page_key]
        assert len(pages) == len(set(pages)) == PAGES
