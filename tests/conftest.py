"""Test set-up shared by unit and integration tests.

Airflow reads AIRFLOW_HOME and its database URL at first import, so they are set here, before any
test module imports airflow.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator

import pytest

_HOME = tempfile.mkdtemp(prefix="prisjakt-airflow-home-")
os.environ.setdefault("AIRFLOW_HOME", _HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{os.environ['AIRFLOW_HOME']}/airflow.db")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", os.path.join(os.path.dirname(__file__), "..", "example_dags"))

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
def no_secret_in_logs() -> Iterator[None]:
    """Capture every log record at DEBUG during each test and fail if a known secret shows up."""
    handler = _RecordEverything()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
    leaked = [secret for secret in KNOWN_SECRETS if any(secret in line for line in handler.lines)]
    assert not leaked, f"{len(leaked)} secret(s) appeared in log output"
