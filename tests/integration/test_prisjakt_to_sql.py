"""PrisjaktToSqlOperator against the sandbox and real PostgreSQL, MariaDB and SQLite databases."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_prisjakt.api.columns import Column, ColumnKind
from airflow_provider_prisjakt.api.resources import EVENTS, Resource, get_resource
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError, PrisjaktError
from airflow_provider_prisjakt.export.sinks.sql.dialects import PostgresDialect, dialect_for
from airflow_provider_prisjakt.export.sinks.sql.dispositions import (
    Load,
    LoadCounts,
    Tally,
    WriteDisposition,
    strategy_for,
)
from airflow_provider_prisjakt.export.sinks.sql.sink import SqlSink
from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig
from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator
from tests.conftest import register_secret

from .conftest import connect

START = datetime(2026, 10, 5, tzinfo=UTC)
END = datetime(2026, 10, 12, tzinfo=UTC)
SHOP = 4242
WAREHOUSE = "warehouse"
# Operators run directly, with the only context keys the export reads.
RUN_CONTEXT: Any = {"data_interval_start": START, "data_interval_end": END}
NO_CONTEXT: Any = {}
PG_PASSWORD = register_secret("pg-password-never-shown")  # trust auth ignores it; it must not leak

# Column types of test-made tables (no primary key), per dialect.
TYPES = {
    "postgres": {
        "string": "TEXT",
        "integer": "BIGINT",
        "decimal": "NUMERIC(38, 9)",
        "timestamp": "TIMESTAMPTZ",
        "date": "DATE",
        "json": "JSONB",
    },
    "mysql": {
        "string": "VARCHAR(255)",
        "integer": "BIGINT",
        "decimal": "DECIMAL(38, 9)",
        "timestamp": "DATETIME(6)",
        "date": "DATE",
        "json": "LONGTEXT",
    },
    "sqlite": {
        "string": "TEXT",
        "integer": "BIGINT",
        "decimal": "NUMERIC",
        "timestamp": "TEXT",
        "date": "DATE",
        "json": "TEXT",
    },
}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    print(reason)
    pytest.skip(reason)


class Warehouse:
    """A test database: the Airflow connection the operator uses, and a direct connection to check it."""

    def __init__(self, dialect: str, conn: Any, airflow_conn: dict[str, Any]) -> None:
        self.dialect = dialect
        self.conn = conn
        self.airflow_conn = airflow_conn
        self.placeholder = "?" if dialect == "sqlite" else "%s"
        self.created: list[str] = []

    def table_name(self) -> str:
        name = f"pj_test_{uuid.uuid4().hex[:10]}"
        self.created.append(name)
        return name

    def quote(self, name: str) -> str:
        return f"`{name}`" if self.dialect == "mysql" else f'"{name}"'

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        cursor = self.conn.cursor()
        cursor.execute(sql, params)
        cursor.close()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cursor = self.conn.cursor()
        cursor.execute(sql, params)
        rows = [tuple(row) for row in cursor.fetchall()]
        cursor.close()
        return rows

    def tables(self) -> set[str]:
        if self.dialect == "postgres":
            sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        elif self.dialect == "mysql":
            sql = "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
        return {row[0] for row in self.query(sql)}

    def staging_tables(self, table: str) -> set[str]:
        return {name for name in self.tables() if name.startswith(f"_pj_stage_{table}")}

    def primary_key(self, table: str) -> set[str]:
        if self.dialect == "postgres":
            sql = (
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary"
            )
            return {row[0] for row in self.query(sql, (table,))}
        if self.dialect == "mysql":
            sql = (
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY'"
            )
            return {row[0] for row in self.query(sql, (table,))}
        return {row[1] for row in self.query(f"PRAGMA table_info({self.quote(table)})") if row[5]}

    def contents(self, table: str) -> list[tuple[Any, ...]]:
        """Every row and column, in a stable order: what 'unchanged' is checked against."""
        return self.query(f"SELECT * FROM {self.quote(table)} ORDER BY event_id, _extracted_at")

    def count(self, table: str) -> int:
        return int(self.query(f"SELECT COUNT(*) FROM {self.quote(table)}")[0][0])

    def value(self, value: Any) -> Any:
        """A Python value as this database's driver stores it in the operator's column types."""
        if isinstance(value, datetime):
            if self.dialect == "mysql":
                return value.astimezone(UTC).replace(tzinfo=None)
            if self.dialect == "sqlite":
                return value.astimezone(UTC).isoformat(timespec="microseconds")
        if isinstance(value, Decimal) and self.dialect == "sqlite":
            return str(value)
        return value

    def instant(self, value: Any) -> datetime:
        if isinstance(value, str):
            return datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def insert_event(self, table: str, event_id: str, pixel_id: str, event_time: datetime) -> None:
        row = {
            "event_id": event_id,
            "pixel_id": pixel_id,
            "event_time": event_time,
            "amount": Decimal("1.5"),
            "currency": "SEK",
            "raw": "{}",
            "_extracted_at": START,
        }
        names = ", ".join(self.quote(name) for name in row)
        marks = ", ".join([self.placeholder] * len(row))
        self.execute(
            f"INSERT INTO {self.quote(table)} ({names}) VALUES ({marks})", tuple(self.value(v) for v in row.values())
        )

    def create_events_table(self, table: str, constraint: str = "") -> None:
        """An events table the operator did not make: no primary key, and optionally a constraint."""
        columns = [f"{self.quote(c.name)} {TYPES[self.dialect][c.kind]}" for c in EVENTS.all_columns]
        if constraint:
            columns.append(constraint)
        self.execute(f"CREATE TABLE {self.quote(table)} ({', '.join(columns)})")

    def events(self, table: str) -> list[tuple[str, Decimal, str]]:
        rows = self.query(f"SELECT event_id, amount, currency FROM {self.quote(table)}")
        return sorted((event_id, Decimal(str(amount)), currency) for event_id, amount, currency in rows)

    def drop_created(self) -> None:
        for table in self.created:
            for name in {table, *self.staging_tables(table)}:
                self.execute(f"DROP TABLE IF EXISTS {self.quote(name)}")


def _postgres() -> tuple[Any, dict[str, Any]]:
    try:
        import psycopg

        conn = psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=3)
    except Exception as err:
        _unavailable(f"PostgreSQL at 127.0.0.1:5432 (database test) is not reachable: {err}")
    conn.autocommit = True
    airflow_conn = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "login": "postgres",
        "password": PG_PASSWORD,
        "schema": "test",
    }
    return conn, airflow_conn


def _mariadb() -> tuple[Any, dict[str, Any]]:
    try:
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", port=3306, user="root", database="test", connect_timeout=3)
    except Exception as err:
        _unavailable(f"MariaDB at 127.0.0.1:3306 (database test) is not reachable: {err}")
    conn.autocommit(True)
    airflow_conn = {"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": "root", "schema": "test"}
    return conn, airflow_conn


@pytest.fixture(scope="module")
def sandbox() -> Iterator[PrisjaktSandbox]:
    # About 70 events per pixel in [START, END), over three pages of 25.
    with PrisjaktSandbox(SandboxConfig(events_per_pixel=300, page_size=25)) as started:
        yield started


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, sandbox: PrisjaktSandbox) -> PrisjaktSandbox:
    """The sandbox, as connection ``prisjakt_default``."""
    connect(monkeypatch, sandbox)
    return sandbox


@pytest.fixture(params=["postgres", "mysql", "sqlite"])
def warehouse(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Warehouse]:
    """A database as connection ``warehouse``; tables a test creates are dropped afterwards."""
    if request.param == "postgres":
        conn, airflow_conn = _postgres()
    elif request.param == "mysql":
        conn, airflow_conn = _mariadb()
    else:
        path = str(tmp_path / "warehouse.db")
        conn = sqlite3.connect(path, isolation_level=None)
        airflow_conn = {"conn_type": "sqlite", "host": path}
    monkeypatch.setenv(f"AIRFLOW_CONN_{WAREHOUSE.upper()}", json.dumps(airflow_conn))
    db = Warehouse(request.param, conn, airflow_conn)
    try:
        yield db
    finally:
        db.drop_created()
        conn.close()


def load(table: str, **kwargs: Any) -> dict[str, Any]:
    """Run the operator directly over [START, END) and return its summary."""
    arguments: dict[str, Any] = {"conn_id": WAREHOUSE, "start": START, "end": END, **kwargs}
    operator = PrisjaktToSqlOperator(task_id="load", table=table, **arguments)
    return operator.execute(NO_CONTEXT)


def expected_events(sandbox: PrisjaktSandbox, pixel: str) -> list[tuple[str, Decimal, str]]:
    return sorted(
        (e["id"], Decimal(str(e["data"]["amount"])), e["data"]["currency"])
        for e in sandbox.expected_events(pixel, START, END)
    )


# -- every disposition, on every database ---------------------------------------------------------


def test_merge_loads_exactly_the_api_events_as_typed_columns_and_a_rerun_adds_nothing(
    api: PrisjaktSandbox, warehouse: Warehouse
) -> None:
    pixel = api.pixel_ids(SHOP)[0]
    table = warehouse.table_name()
    expected = expected_events(api, pixel)
    operator = PrisjaktToSqlOperator(task_id="load", conn_id=WAREHOUSE, table=table, pixel_id=pixel)

    summary = operator.execute(RUN_CONTEXT)

    assert len(expected) > api.config.page_size  # several pages
    assert warehouse.events(table) == expected
    assert summary["rows"] == len(expected)
    scheme = {"postgres": "postgres://", "mysql": "mysql://", "sqlite": "sqlite://"}[warehouse.dialect]
    assert summary["destination"].startswith(scheme)
    assert summary["destination"].endswith(f".{table}")
    assert PG_PASSWORD not in json.dumps(summary)
    assert warehouse.primary_key(table) == {"event_id"}
    assert not warehouse.staging_tables(table)
    # Typed columns: the instant of event_time and the exact amount survive the round trip, and
    # pixel_id is the pixel read, although the sandbox's events (as documented) do not name it.
    assert not any("pixel_id" in event for event in api.expected_events(pixel, START, END))
    api_events = {e["id"]: e for e in api.expected_events(pixel, START, END)}
    for event_id, event_time, amount, pixel_id in warehouse.query(
        f"SELECT event_id, event_time, amount, pixel_id FROM {warehouse.quote(table)}"
    ):
        assert warehouse.instant(event_time) == datetime.fromisoformat(api_events[event_id]["event_time"])
        assert Decimal(str(amount)) == Decimal(str(api_events[event_id]["data"]["amount"]))
        assert pixel_id == pixel

    before = warehouse.count(table)
    load(table, pixel_id=pixel)

    assert warehouse.count(table) == before == len(expected)
    assert warehouse.events(table) == expected


def test_replace_window_removes_rows_the_api_no_longer_returns_and_keeps_other_pixels(
    api: PrisjaktSandbox, warehouse: Warehouse
) -> None:
    pixel, other_pixel = api.pixel_ids(SHOP)[:2]
    table = warehouse.table_name()
    expected = expected_events(api, pixel)
    load(table, pixel_id=pixel, write_disposition="replace_window")
    assert warehouse.events(table) == expected
    warehouse.insert_event(table, "gone-from-the-api", pixel, START + timedelta(days=1))
    warehouse.insert_event(table, "other-pixel-same-window", other_pixel, START + timedelta(days=1))
    warehouse.insert_event(table, "same-pixel-earlier-window", pixel, START - timedelta(seconds=1))

    load(table, pixel_id=pixel, write_disposition="replace_window")

    ids = {row[0] for row in warehouse.events(table)}
    assert "gone-from-the-api" not in ids
    assert {"other-pixel-same-window", "same-pixel-earlier-window"} <= ids
    assert warehouse.count(table) == len(expected) + 2

    load(table, pixel_id=pixel, write_disposition="replace_window")

    assert warehouse.count(table) == len(expected) + 2
    assert [row for row in warehouse.events(table) if row[0] in {e[0] for e in expected}] == expected
    assert not warehouse.staging_tables(table)


def test_append_into_a_keyed_table_refuses_a_rerun_and_leaves_the_table_unchanged(
    api: PrisjaktSandbox, warehouse: Warehouse
) -> None:
    pixel = api.pixel_ids(SHOP)[0]
    table = warehouse.table_name()
    load(table, pixel_id=pixel, write_disposition="append")
    assert warehouse.events(table) == expected_events(api, pixel)
    before = warehouse.contents(table)

    with pytest.raises(PrisjaktError, match=r"rolled back.*write_disposition='merge'"):
        load(table, pixel_id=pixel, write_disposition="append")

    assert warehouse.contents(table) == before
    assert not warehouse.staging_tables(table)


def test_append_into_a_table_without_primary_key_adds_the_window_again(
    api: PrisjaktSandbox, warehouse: Warehouse
) -> None:
    pixel = api.pixel_ids(SHOP)[0]
    table = warehouse.table_name()
    warehouse.create_events_table(table)
    expected = expected_events(api, pixel)

    load(table, pixel_id=pixel, write_disposition="append", create_table=False)
    load(table, pixel_id=pixel, write_disposition="append", create_table=False)

    assert warehouse.count(table) == 2 * len(expected)
    assert set(Counter(row[0] for row in warehouse.events(table)).values()) == {2}
    assert sorted(set(warehouse.events(table))) == expected
    # merge needs the key to upsert on, and says so before loading anything.
    with pytest.raises(PrisjaktConfigError, match=r"merge.*primary key or unique index on \(event_id\)"):
        load(table, pixel_id=pixel, write_disposition="merge", create_table=False)
    assert warehouse.count(table) == 2 * len(expected)


def test_a_failure_mid_export_leaves_the_table_as_it_was_and_no_staging_table(
    monkeypatch: pytest.MonkeyPatch, sandbox: PrisjaktSandbox, warehouse: Warehouse
) -> None:
    connect(monkeypatch, sandbox, max_retries=1)
    pixel = sandbox.pixel_ids(SHOP)[0]
    table = warehouse.table_name()
    load(table, pixel_id=pixel)
    warehouse.insert_event(table, "gone-from-the-api", pixel, START + timedelta(days=2))
    before = warehouse.contents(table)
    staged_before_failure: list[int] = []
    write_rows = SqlSink.write_rows

    def fail_after_the_first_page(sink: SqlSink, records: Any, scope: str | None) -> None:
        write_rows(sink, records, scope)
        if not staged_before_failure:
            staged_before_failure.append(len(records))
            sandbox.fail_next("500")  # the next page's only try (max_retries=1)

    monkeypatch.setattr(SqlSink, "write_rows", fail_after_the_first_page)

    with pytest.raises(PrisjaktError):
        load(table, pixel_id=pixel, write_disposition="replace_window")

    assert staged_before_failure == [sandbox.config.page_size]
    assert warehouse.contents(table) == before
    assert not warehouse.staging_tables(table)
    monkeypatch.setattr(SqlSink, "write_rows", write_rows)
    load(table, pixel_id=pixel, write_disposition="replace_window")
    assert warehouse.events(table) == expected_events(sandbox, pixel)


def test_a_failure_in_the_final_transaction_rolls_back_the_window_delete(
    api: PrisjaktSandbox, warehouse: Warehouse
) -> None:
    pixel = api.pixel_ids(SHOP)[0]
    assert any(amount >= 1000 for _, amount, _ in expected_events(api, pixel))
    table = warehouse.table_name()
    warehouse.create_events_table(table, constraint=f"CHECK ({warehouse.quote('amount')} < 1000)")
    warehouse.insert_event(table, "in-the-window", pixel, START + timedelta(days=1))
    before = warehouse.contents(table)

    with pytest.raises(PrisjaktError, match="rolled back, so the table is unchanged"):
        load(table, pixel_id=pixel, write_disposition="replace_window", create_table=False)

    assert warehouse.contents(table) == before
    assert not warehouse.staging_tables(table)


def test_a_deferral_keeps_the_staged_rows_and_the_resumed_run_loads_the_whole_window(
    monkeypatch: pytest.MonkeyPatch, sandbox: PrisjaktSandbox, warehouse: Warehouse
) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    connect(monkeypatch, sandbox, max_inline_wait=1)
    pixel = sandbox.pixel_ids(SHOP)[0]
    table = warehouse.table_name()
    operator = PrisjaktToSqlOperator(
        task_id="load", conn_id=WAREHOUSE, table=table, pixel_id=pixel, start=START, end=END, deferrable=True
    )
    sandbox.reset_rate_limit()
    sandbox.configure(rate_limit=2)  # two pages, then the budget is spent for an hour
    try:
        with pytest.raises(TaskDeferred) as deferred:
            operator.execute(NO_CONTEXT)
    finally:
        sandbox.configure(rate_limit=10000)
        sandbox.reset_rate_limit()

    (staging,) = warehouse.staging_tables(table)
    assert warehouse.count(staging) == 2 * sandbox.config.page_size
    assert warehouse.count(table) == 0  # nothing published while deferred
    resumed = PrisjaktToSqlOperator(
        task_id="load", conn_id=WAREHOUSE, table=table, pixel_id=pixel, start=START, end=END, deferrable=True
    )
    event = {"status": "success", "resume": deferred.value.kwargs["resume"]}

    summary = resumed.execute_complete(NO_CONTEXT, event=event)

    assert warehouse.events(table) == expected_events(sandbox, pixel)
    assert summary["rows"] == len(expected_events(sandbox, pixel))
    assert summary["deferrals"] == 1
    assert not warehouse.staging_tables(table)


@pytest.mark.parametrize(
    ("resource", "write_disposition"),
    [("purchase_summary", "replace_window"), ("clicks", "merge"), ("pixels", "merge")],
)
def test_other_resources_load_with_their_primary_keys(
    api: PrisjaktSandbox, warehouse: Warehouse, resource: str, write_disposition: str
) -> None:
    pixel = api.pixel_ids(SHOP)[1]
    table = warehouse.table_name()
    target = {"shop_id": SHOP} if resource == "pixels" else {"pixel_id": pixel}

    load(table, resource=resource, write_disposition=write_disposition, **target)
    load(table, resource=resource, write_disposition=write_disposition, **target)

    assert warehouse.primary_key(table) == set(get_resource(resource).primary_key)
    q = warehouse.quote(table)
    if resource == "purchase_summary":
        rows = warehouse.query(f"SELECT pixel_id, day, currency, purchases, total_amount FROM {q}")
        loaded = sorted((p, str(d)[:10], c, n, Decimal(str(t))) for p, d, c, n, t in rows)
        expected = []
        day = START
        while day < END:
            summary = api.expected_purchase_summary(pixel, day, day + timedelta(days=1))
            expected += [
                (pixel, day.date().isoformat(), e["currency"], e["count"], Decimal(str(e["total_amount"])))
                for e in summary["currencies"]
            ]
            day += timedelta(days=1)
        assert loaded == sorted(expected)
        assert {date.fromisoformat(row[1]) for row in loaded} == {START.date() + timedelta(days=n) for n in range(7)}
    elif resource == "clicks":
        clicks = sorted(row[0] for row in warehouse.query(f"SELECT click_id FROM {q}"))
        assert clicks == sorted({e["click_id"] for e in api.expected_events(pixel, START, END)})
    else:
        pixels = sorted(row[0] for row in warehouse.query(f"SELECT pixel_id FROM {q}"))
        assert pixels == sorted(api.pixel_ids(SHOP))


def test_postgres_copy_through_psycopg2_keeps_nulls_empty_strings_and_quotes() -> None:
    # Airflow 2 with SQLAlchemy 1.4 gives PostgresHook psycopg2, whose bulk path is a CSV COPY.
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=3)
    except Exception as err:
        _unavailable(f"PostgreSQL at 127.0.0.1:5432 (database test) is not reachable: {err}")
    table = f"pj_test_{uuid.uuid4().hex[:10]}"
    rows = [
        ("a", None, Decimal("12.345"), START, '{"k": "v, \\"q\\""}'),
        ("", 'say "hi",\nbye', None, None, None),
    ]
    try:
        cursor = conn.cursor()
        cursor.execute(f'CREATE TABLE "{table}" (s TEXT, t TEXT, d NUMERIC(38, 9), ts TIMESTAMPTZ, j JSONB)')
        assert not hasattr(cursor, "copy")
        kinds = [ColumnKind.STRING, ColumnKind.STRING, ColumnKind.DECIMAL, ColumnKind.TIMESTAMP, ColumnKind.JSON]
        columns = [Column(name, kind) for name, kind in zip(["s", "t", "d", "ts", "j"], kinds, strict=True)]
        PostgresDialect().bulk_insert(cursor, f'"{table}"', columns, rows)
        cursor.execute(f'SELECT s, t, d, ts, j FROM "{table}" ORDER BY s DESC')
        loaded = cursor.fetchall()
    finally:
        conn.rollback()
        conn.close()
    assert loaded == [
        ("a", None, Decimal("12.345"), START, {"k": 'v, "q"'}),
        ("", 'say "hi",\nbye', None, None, None),
    ]


# -- arguments refused before any request ---------------------------------------------------------


def test_a_table_name_carrying_sql_is_refused_at_construction() -> None:
    with pytest.raises(PrisjaktConfigError, match=r"^table must be a plain SQL identifier"):
        PrisjaktToSqlOperator(task_id="load", conn_id=WAREHOUSE, table="events; DROP TABLE x", pixel_id="p")
    with pytest.raises(PrisjaktConfigError, match=r"^schema must be a plain SQL identifier"):
        PrisjaktToSqlOperator(task_id="load", conn_id=WAREHOUSE, table="events", schema="a.b", pixel_id="p")


def test_an_unknown_write_disposition_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"write_disposition must be one of merge, replace_window, append"):
        PrisjaktToSqlOperator(task_id="load", conn_id=WAREHOUSE, table="events", write_disposition="upsert")


@pytest.mark.parametrize("file_argument", [{"file_format": "csv"}, {"compression": "gzip"}, {"max_rows_per_file": 10}])
def test_file_parameters_mean_nothing_to_a_table_and_are_refused_at_construction(
    file_argument: dict[str, Any],
) -> None:
    from airflow.providers.common.compat.sdk import AirflowException

    # Airflow 3 raises TypeError for an unknown keyword, Airflow 2 AirflowException.
    with pytest.raises((TypeError, AirflowException), match="Invalid arguments were passed"):
        PrisjaktToSqlOperator(task_id="load", conn_id=WAREHOUSE, table="events", pixel_id="p", **file_argument)


@pytest.mark.parametrize("resource", ["clicks", "pixels"])
def test_replace_window_is_refused_for_resources_without_a_window(resource: str) -> None:
    with pytest.raises(PrisjaktConfigError, match=r"use write_disposition='merge'"):
        PrisjaktToSqlOperator(
            task_id="load", conn_id=WAREHOUSE, table="t", resource=resource, write_disposition="replace_window"
        )


def test_a_templated_table_is_checked_once_rendered_before_any_request(api: PrisjaktSandbox) -> None:
    operator = PrisjaktToSqlOperator(task_id="load", conn_id=WAREHOUSE, table="{{ params.table }}", pixel_id="p")
    operator.table = "events; DROP TABLE x"  # as rendered
    requests = len(api.requests)

    with pytest.raises(PrisjaktConfigError, match=r"^table must be a plain SQL identifier"):
        operator.execute(RUN_CONTEXT)

    assert len(api.requests) == requests


def test_a_connection_that_is_not_a_supported_database_is_refused(
    api: PrisjaktSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_NOT_A_DATABASE", json.dumps({"conn_type": "http", "host": "example.com"}))
    requests = len(api.requests)

    with pytest.raises(PrisjaktConfigError, match=r"postgres, mysql or sqlite connection"):
        load("events", conn_id="not_a_database", pixel_id=api.pixel_ids(SHOP)[0])

    assert len(api.requests) == requests


KEYED = Resource(
    name="keyed",
    columns=(Column("event_id", ColumnKind.STRING, nullable=False), Column("note", ColumnKind.STRING)),
    primary_key=("event_id",),
    window_column=None,
)


def test_a_key_staged_more_than_once_loads_once_with_its_last_extracted_row(warehouse: Warehouse) -> None:
    # The export's de-duplication memory is bounded, so staging may hold a key more than once; the
    # load keeps the row extracted last (DISTINCT ON in PostgreSQL, ROW_NUMBER elsewhere).
    target, staging = warehouse.table_name(), warehouse.table_name()
    columns = "event_id VARCHAR(64) {key}, note VARCHAR(64), raw VARCHAR(64), _extracted_at VARCHAR(32)"
    warehouse.execute(f"CREATE TABLE {warehouse.quote(target)} ({columns.format(key='PRIMARY KEY')})")
    warehouse.execute(f"CREATE TABLE {warehouse.quote(staging)} ({columns.format(key='')})")
    insert = f"INSERT INTO {{}} VALUES ({', '.join([warehouse.placeholder] * 4)})"
    warehouse.execute(insert.format(warehouse.quote(target)), ("b", "held before", "{}", "2026-10-01T00:00:00"))
    staged = [
        ("a", "first", "{}", "2026-10-02T00:00:00"),
        ("b", "reloaded", "{}", "2026-10-03T00:00:00"),
        ("a", "last", "{}", "2026-10-04T00:00:00"),
        ("a", "between", "{}", "2026-10-03T00:00:00"),
    ]
    for row in staged:
        warehouse.execute(insert.format(warehouse.quote(staging)), row)
    dialect = dialect_for(warehouse.airflow_conn["conn_type"])
    move = Load(dialect, KEYED, dialect.quote(target), dialect.quote(staging), True, (START, END), ())
    counts = LoadCounts()
    cursor = warehouse.conn.cursor()
    dialect.start_transaction(cursor)
    for statement in strategy_for(WriteDisposition.MERGE).statements(move):
        cursor.execute(statement.sql, statement.parameters)
        counts.record(
            statement.tally, cursor.rowcount, cursor.fetchone() if statement.tally is Tally.HELD_KEYS else None
        )
    warehouse.conn.commit()
    cursor.close()

    loaded = warehouse.query(f"SELECT event_id, note FROM {warehouse.quote(target)} ORDER BY event_id")
    assert loaded == [("a", "last"), ("b", "reloaded")]
    assert (counts.inserted, counts.updated) == (1, 1)


# -- in a DAG -------------------------------------------------------------------------------------


def test_dag_test_loads_a_day_of_events_into_sqlite(
    airflow_db: Path, api: PrisjaktSandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "dag-warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_TEST_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    dag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).get_dag("prisjakt_test_sql")
    assert dag is not None

    run = dag.test()

    assert run.state == "success"
    (pixel,) = api.pixel_ids(4343)
    day = (datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 10, 6, tzinfo=UTC))
    expected = sorted(e["id"] for e in api.expected_events(pixel, *day))
    with sqlite3.connect(path) as conn:
        loaded = sorted(row[0] for row in conn.execute("SELECT event_id FROM prisjakt_test_events"))
    assert expected
    assert loaded == expected
