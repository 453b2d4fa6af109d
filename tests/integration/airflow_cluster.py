"""
A real Airflow 3 deployment for tests: scheduler (LocalExecutor), DAG processor, triggerer and the
execution API, started once per test session on a fresh PostgreSQL metadata database.

Every scheduler test shares it (the :func:`airflow_cluster` fixture). Its DAGs folder holds the DAG
files named in :data:`DAG_IDS` (``tests/dags/<dag_id>.py``, each with ``schedule=None``, so nothing
runs unless a test triggers it); a
test sets the connections its run needs (read from a JSON file at every lookup, so they change
while the cluster runs), triggers a run with its own conf, and waits for it by polling the metadata
database. Skipped when PostgreSQL is not reachable at 127.0.0.1:5432 (user ``postgres``, trust auth).
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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
#: The DAGs the scheduler tests run; a new scheduler test adds its DAG file's name here.
DAG_IDS = ("prisjakt_test_deferral", "prisjakt_test_mapped", "prisjakt_test_task_retries")
#: Worker slots: enough for mapped tasks to run side by side, few enough for two cores.
PARALLELISM = 3
#: The pool every Prisjakt task of the test DAGs runs in (one client id), and its slots.
POOLS = {"prisjakt": PARALLELISM}
START_TIMEOUT_SECONDS = 120.0
RUN_TIMEOUT_SECONDS = 240.0
POLL_SECONDS = 0.2
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def psycopg_connect(dsn: str) -> Any:
    """A PostgreSQL connection in autocommit mode; skips the test when the server is not reachable."""
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as err:
        pytest.skip(f"PostgreSQL is not reachable: {err}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(repr=False)
class DagRunResult:
    """
    How a DAG run ended, and every state each task instance was seen in on the way.

    :param run_id: the run.
    :param state: the run's final state (``success`` or ``failed``).
    :param states: ``(task_id, map_index)`` to the states seen, in order, repeats dropped.
    :param times: ``(task_id, map_index)`` to the task instance's last start and end.
    :param logs: the ends of the component and task logs, for failure messages.
    """

    run_id: str
    state: str
    states: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    times: dict[tuple[str, int], tuple[datetime | None, datetime | None]] = field(default_factory=dict)
    logs: str = ""

    def states_of(self, task_id: str, map_index: int = -1) -> list[str]:
        """The states one task instance was seen in."""
        return self.states.get((task_id, map_index), [])

    def final_states(self, task_id: str) -> dict[int, str]:
        """The last state of each map index of a task (``-1`` for an unmapped one)."""
        return {index: seen[-1] for (task, index), seen in self.states.items() if task == task_id}

    def __repr__(self) -> str:
        # What a failed assertion shows: the states seen, then the ends of the logs.
        return f"run {self.run_id}: {self.state}; {self.states}\n{self.logs}"


class AirflowCluster:
    """
    Airflow's components as subprocesses of the test session.

    :param home: ``AIRFLOW_HOME`` (logs, DAGs folder, connections file).
    :param db_url: the SQLAlchemy URL of the metadata database.
    """

    def __init__(self, home: Path, db_url: str) -> None:
        self.home = home
        self.db_url = db_url
        self.api_port = free_port()
        self.connections_file = home / "connections.json"
        self.jwt_secret = secrets.token_hex(16)  # one for every component
        self.processes: list[subprocess.Popen[bytes]] = []
        self._db: Any = None

    @property
    def env(self) -> dict[str, str]:
        """The environment of every Airflow process: nothing inherited from the test session's Airflow."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.home / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
                "AIRFLOW__CORE__FERNET_KEY": "",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url,
                "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
                "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(self.connections_file)}),
            }
        )
        return env

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, dag_ids: tuple[str, ...]) -> None:
        """
        Prepare the metadata database and pools, start the components, and wait until the DAGs
        ``dag_ids`` (from ``tests/dags``) are parsed.
        """
        (self.home / "dags").mkdir(parents=True)
        for dag_id in dag_ids:
            shutil.copy(REPO_ROOT / "tests" / "dags" / f"{dag_id}.py", self.home / "dags" / f"{dag_id}.py")
        self.set_connections({})
        env = self.env
        self.cli(env, "db", "migrate")
        for pool, slots in POOLS.items():
            self.cli(env, "pools", "set", pool, str(slots), "Prisjakt client id")
        commands = {
            "api-server": ["api-server", "--apps", "execution", "--host", "127.0.0.1", "--port", str(self.api_port)],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer"],
        }
        for name in COMPONENTS:
            with (self.home / f"{name}.log").open("wb") as log:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "airflow", *commands[name]],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own process group, so its workers stop with it
                    )
                )
        self._db = psycopg_connect(self.db_url.replace("postgresql+psycopg2://", "postgresql://"))
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while self._parsed(dag_ids) != set(dag_ids):
            self._check_alive(deadline, f"the DAGs {dag_ids} were not all parsed")
            time.sleep(POLL_SECONDS)

    def stop(self) -> None:
        """Stop every component (and its task processes), then close the database connection."""
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if self._db is not None:
            self._db.close()

    @staticmethod
    def cli(env: Mapping[str, str], *args: str) -> str:
        """Run an ``airflow`` command and return its output; fail the test if it fails."""
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=dict(env), capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"airflow {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    # -- what tests use ----------------------------------------------------------------------------

    def set_connections(self, connections: Mapping[str, Mapping[str, Any] | str]) -> None:
        """
        Make ``connections`` (id to a JSON connection, as a dict or its text) the cluster's connections.

        The file is replaced whole, atomically, so a task reading it never sees half of it.
        """
        data = {
            conn_id: json.loads(value) if isinstance(value, str) else dict(value)
            for conn_id, value in connections.items()
        }
        staged = self.connections_file.with_suffix(".tmp")
        staged.write_text(json.dumps(data))
        os.replace(staged, self.connections_file)

    def run_dag(self, dag_id: str, conf: Mapping[str, Any], timeout: float = RUN_TIMEOUT_SECONDS) -> DagRunResult:
        """Trigger a run of ``dag_id`` with ``conf`` and wait until it succeeds or fails."""
        run_id = f"test__{secrets.token_hex(6)}"
        self.cli(self.env, "dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(conf))
        deadline = time.monotonic() + timeout
        result = DagRunResult(run_id=run_id, state="")
        while result.state not in ("success", "failed"):
            self._check_alive(deadline, f"the run {run_id} of {dag_id} did not finish: {result.states}")
            self._observe(dag_id, result)
            time.sleep(POLL_SECONDS)
        result.logs = self.logs_tail()
        return result

    def logs_tail(self, lines: int = 40) -> str:
        """The ends of the component and task logs, for a failure message."""
        parts = []
        for path in sorted(self.home.glob("*.log")) + sorted((self.home / "logs").rglob("*.log")):
            text = path.read_text(errors="replace").splitlines()
            parts.append(f"--- {path.relative_to(self.home)}\n" + "\n".join(line[:300] for line in text[-lines:]))
        return "\n".join(parts)

    # -- polling -----------------------------------------------------------------------------------

    def _parsed(self, dag_ids: tuple[str, ...]) -> set[str]:
        rows = self._db.execute("SELECT dag_id FROM dag WHERE dag_id = ANY(%s)", (list(dag_ids),)).fetchall()
        return {row[0] for row in rows}

    def _observe(self, dag_id: str, result: DagRunResult) -> None:
        for task_id, map_index, state, start, end in self._db.execute(
            "SELECT task_id, map_index, state, start_date, end_date FROM task_instance WHERE dag_id = %s AND run_id = %s",
            (dag_id, result.run_id),
        ).fetchall():
            if not state:
                continue  # not scheduled yet (or a mapped task before its expansion)
            seen = result.states.setdefault((task_id, map_index), [])
            if not seen or seen[-1] != state:
                seen.append(state)
            result.times[(task_id, map_index)] = (start, end)
        row = self._db.execute(
            "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, result.run_id)
        ).fetchone()
        result.state = row[0] if row else ""

    def _check_alive(self, deadline: float, what: str) -> None:
        assert time.monotonic() < deadline, f"{what}\n{self.logs_tail()}"
        assert all(process.poll() is None for process in self.processes), f"a component died\n{self.logs_tail()}"


@pytest.fixture(scope="session")
def airflow_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowCluster]:
    """The session's Airflow deployment, on a fresh PostgreSQL metadata database dropped afterwards."""
    name = f"prisjakt_cluster_{secrets.token_hex(4)}"
    with psycopg_connect(PG_DSN) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    cluster = AirflowCluster(
        tmp_path_factory.mktemp("airflow-cluster"), f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    )
    try:
        cluster.start(DAG_IDS)
        yield cluster
    finally:
        cluster.stop()
        with psycopg_connect(PG_DSN) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
