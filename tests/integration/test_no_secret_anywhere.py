"""
The client secret and the OAuth tokens appear nowhere a DAG run leaves a trace.

``tests/conftest.py``'s autouse fixture already fails any test, across the whole suite, whose log
lines (at every level, stdlib and structlog alike) contain a registered secret. This module runs an
export DAG with ``dag.test()`` over an OAuth2 connection and then searches everything else the run
left behind: the XCom values and rendered template fields in the Airflow metadata database (and,
to be sure, every byte of that database), the task log files, the operator's OpenLineage facets,
the summary it returned and the sandbox's request log.

Elsewhere: error texts never echo the secret (``test_secrets.py``, ``test_hook.py``), the secret is
never put in a URL (``test_secrets.py``), and a redirect to another origin drops the credentials
(``test_hook.py::test_redirect_to_another_origin_drops_the_credentials``).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig
from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator
from tests.conftest import DAGS_FOLDER, register_secret

from .conftest import connect

pytestmark = pytest.mark.integration

DAG_ID = "prisjakt_test_sql"  # the SQL test DAG, pointed at this test's connections by the run conf
TASK_ID = "events_to_sql"


def rows_of(db: Path, table: str, columns: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT {columns} FROM {table} WHERE dag_id = ?", (DAG_ID,)).fetchall()


def test_secret_and_tokens_reach_no_xcom_rendered_field_log_file_lineage_or_request_log(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    with PrisjaktSandbox(SandboxConfig(auth_mode="oauth2")) as sandbox:
        connect(monkeypatch, sandbox, "prisjakt_test_secrets", auth_type="oauth2", token_url=sandbox.token_url)
        warehouse = {"conn_type": "sqlite", "host": str(tmp_path / "warehouse.db")}
        monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_TEST_SECRETS_WAREHOUSE", json.dumps(warehouse))
        dag = DagBag(str(DAGS_FOLDER)).get_dag(DAG_ID)
        assert dag is not None

        run = dag.test(
            run_conf={
                "prisjakt_conn_id": "prisjakt_test_secrets",
                "warehouse": "prisjakt_test_secrets_warehouse",
                "table": "prisjakt_secret_events",
            }
        )

        assert run.state == "success"
        tokens = [register_secret(token) for token in sandbox.issued_tokens()]
        assert tokens, "the run should have fetched an OAuth token"
        secrets = [sandbox.client_secret, *tokens]

        # The metadata database: the XCom and rendered fields exist, and no byte of the file holds a secret.
        xcoms = rows_of(airflow_db, "xcom", "value")
        rendered = rows_of(airflow_db, "rendered_task_instance_fields", "rendered_fields")
        assert xcoms and rendered
        rendered_text = " ".join(str(row[0]) for row in rendered)
        assert "2026-10-05T00:00:00Z" in rendered_text and "prisjakt_test_secrets" in rendered_text
        for text in [*(str(row[0]) for row in xcoms), rendered_text]:
            assert not [secret for secret in secrets if secret in text]
        stores = [airflow_db, *airflow_db.parent.glob(airflow_db.name + "-*")]  # with -wal / -journal
        logs = [path for path in (airflow_db.parent / "logs").rglob("*") if path.is_file()]
        for path in [*stores, *logs]:
            data = path.read_bytes()
            assert not [secret for secret in secrets if secret.encode() in data], f"a secret is in {path}"

        # The OpenLineage facets and the returned summary of the same export.
        pytest.importorskip("airflow.providers.openlineage", reason="the openlineage provider is not installed")
        import attrs

        operator = PrisjaktToSqlOperator(
            task_id=TASK_ID,
            prisjakt_conn_id="prisjakt_test_secrets",
            shop_id=4343,
            start="2026-10-05T00:00:00Z",
            end="2026-10-06T00:00:00Z",
            conn_id="prisjakt_test_secrets_warehouse",
            table="prisjakt_secret_events",
        )
        summary = operator.execute({})
        tokens = [register_secret(token) for token in sandbox.issued_tokens()]
        secrets = [sandbox.client_secret, *tokens]
        lineage = operator.get_openlineage_facets_on_complete(None)
        texts = {
            "lineage": json.dumps(attrs.asdict(lineage), default=str),
            "summary": json.dumps(summary),
            "request log": "\n".join(repr(record) for record in sandbox.requests),
        }
        assert lineage.inputs and lineage.outputs
        for where, text in texts.items():
            assert not [secret for secret in secrets if secret in text], f"a secret is in the {where}"
