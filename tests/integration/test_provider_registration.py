"""Airflow's own CLI finds the provider and its connection type (subprocesses, about 7 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_prisjakt import __version__

pytestmark = pytest.mark.integration

AIRFLOW = Path(sys.executable).parent / "airflow"


def _airflow(*args: str) -> subprocess.CompletedProcess[str]:
    # os.environ carries AIRFLOW_HOME and the database URL that tests/conftest.py set.
    return subprocess.run(
        [str(AIRFLOW), *args], env=dict(os.environ), capture_output=True, text=True, timeout=120, check=False
    )


def _json_output(stdout: str) -> list[dict[str, str]]:
    # Airflow may log a line or two to stdout before the table (e.g. in unit-test mode).
    lines = [line for line in stdout.splitlines() if line.startswith("[")]
    assert lines, stdout[-2000:]
    return json.loads(lines[-1])


def test_airflow_providers_get_lists_the_package() -> None:
    result = _airflow("providers", "get", "airflow-provider-prisjakt", "--output", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert _json_output(result.stdout) == [{"Provider": "airflow-provider-prisjakt", "Version": __version__}]


def test_airflow_providers_hooks_lists_the_prisjakt_connection_type() -> None:
    result = _airflow("providers", "hooks", "--output", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _json_output(result.stdout)
    prisjakt = [row for row in rows if row.get("connection_type") == "prisjakt"]
    assert len(prisjakt) == 1, [row.get("connection_type") for row in rows]
    assert prisjakt[0]["class"] == "airflow_provider_prisjakt.hooks.prisjakt.PrisjaktHook"
    assert prisjakt[0]["package_name"] == "airflow-provider-prisjakt"
    assert prisjakt[0]["conn_id_attribute_name"] == "prisjakt_conn_id"


def test_the_connection_form_carries_every_extra_field_on_this_airflow_version() -> None:
    """Airflow 3.2+ reads ``conn-fields``; older versions call the hook's legacy widget methods."""
    from airflow_provider_prisjakt.hooks.connection import CONNECTION_EXTRA_FIELDS

    result = _airflow("providers", "widgets", "--output", "json")

    assert result.returncode == 0, result.stderr[-2000:]
    rows = _json_output(result.stdout)
    ours = {w["connection_parameter_name"] for w in rows if w.get("package_name") == "airflow-provider-prisjakt"}
    assert ours == {f"extra__prisjakt__{field.name}" for field in CONNECTION_EXTRA_FIELDS}
