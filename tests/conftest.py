"""Test set-up shared by unit and integration tests.

Airflow reads AIRFLOW_HOME and its database URL at first import, so they are set here, before any
test module imports airflow.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
_HOME = Path(tempfile.mkdtemp(prefix="prisjakt-airflow-home-"))
# dag.test() on Airflow 3 syncs DAGs from the dags folder, so every DAG a test runs must be a file
# there: the example DAGs and the test DAGs are copied into one throwaway folder.
DAGS_FOLDER = _HOME / "dags"
DAGS_FOLDER.mkdir()
for source in [
    *sorted((REPO_ROOT / "example_dags").glob("*.py")),
    *sorted((REPO_ROOT / "tests" / "dags").glob("*.py")),
]:
    shutil.copy(source, DAGS_FOLDER / source.name)

os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_FOLDER)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
AIRFLOW_3 = int(importlib.metadata.version("apache-airflow").split(".")[0]) >= 3
if not AIRFLOW_3:
    # Airflow 2's unit-test configuration picks the LocalExecutor, which refuses SQLite.
    os.environ["AIRFLOW__CORE__EXECUTOR"] = "SequentialExecutor"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Create the throwaway Airflow metadata database once per session (needed by dag.test())."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, env=os.environ.copy(), capture_output=True
    )
    return _HOME / "airflow.db"


# Every secret a test hands to the provider is added here; no log record may ever contain one.
KNOWN_SECRETS: set[str] = set()


def register_secret(value: str) -> str:
    """Remember a secret so the leak check looks for it; returns it unchanged."""
    if value:
        KNOWN_SECRETS.add(value)
    return value


class _RecordEverything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(record.getMessage())
        except Exception:  # a broken record must not hide a leak elsewhere
            self.lines.append(str(record.msg))
        if record.exc_info and record.exc_info[1] is not None:
            self.lines.append(str(record.exc_info[1]))


@pytest.fixture(autouse=True)
def no_secret_in_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """
    Fail a test whose log output contains a known secret.

    Records are captured at DEBUG from the standard logging tree, and the test's stdout and stderr
    are read too: on Airflow 3, task and hook loggers write through structlog to stdout.
    """
    handler = _RecordEverything()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    uses_own_capture = bool({"capsys", "capfd", "capsysbinary", "capfdbinary"} & set(request.fixturenames))
    capture = None if uses_own_capture else request.getfixturevalue("capsys")
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        if capture is not None:
            out, err = capture.readouterr()
            handler.lines.extend((out, err))
            # Hand the output back to pytest, so a failing test still shows it.
            sys.stdout.write(out)
            sys.stderr.write(err)
    leaked = [secret for secret in KNOWN_SECRETS if any(secret in line for line in handler.lines)]
    assert not leaked, f"{len(leaked)} secret(s) appeared in log output"
