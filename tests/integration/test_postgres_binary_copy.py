"""
PostgreSQL's binary COPY (psycopg 3): staging rows arrive as the text COPY loaded them.

The rows are what ``typed_rows`` gives a staging table: text, integers, decimals, UTC times, days and
``raw`` as JSON text. Each value is checked as PostgreSQL holds it, against the same rows loaded by a
plain ``INSERT`` with parameters.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from airflow_provider_prisjakt.api.columns import Column, ColumnKind
from airflow_provider_prisjakt.api.encoding import raw_json
from airflow_provider_prisjakt.api.resources import EVENTS
from airflow_provider_prisjakt.export.formats import typed_rows
from airflow_provider_prisjakt.export.sinks.sql.dialects import PostgresDialect

pytestmark = pytest.mark.integration

psycopg = pytest.importorskip("psycopg")

COLUMNS = [
    Column("s", ColumnKind.STRING),
    Column("i", ColumnKind.INTEGER),
    Column("d", ColumnKind.DECIMAL),
    Column("ts", ColumnKind.TIMESTAMP),
    Column("day", ColumnKind.DATE),
    Column("j", ColumnKind.JSON),
]
RECORD = {"id": "ev-1", "data": {"amount": 1.5, "note": 'say "hi",\n\tbye \\ ÅÄÖ €'}, "list": [1, None, True]}
ROWS: list[tuple[Any, ...]] = [
    ("plain", 1, Decimal("12.345"), datetime(2026, 10, 5, 12, 30, 1, 123456, tzinfo=UTC), date(2026, 10, 5), "{}"),
    (
        'say "hi",\n\tbye \\ ÅÄÖ €',
        -(2**63),
        Decimal("0.1234567891"),
        datetime(1, 1, 1, tzinfo=UTC),
        None,
        raw_json(RECORD),
    ),
    ("", 2**63 - 1, Decimal("NaN"), None, date(9999, 12, 31), '"text"'),
    (None, None, None, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), None, None),
    ("n", 0, Decimal("-99999999999999999999999999999.999999999"), datetime(2026, 3, 29, 1, tzinfo=UTC), None, "[]"),
]


@pytest.fixture
def connection() -> Iterator[Any]:
    try:
        conn = psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3)
    except psycopg.OperationalError as err:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 (database test) is not reachable: {err}")
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


def create(conn: Any, columns: list[Column]) -> str:
    table = f'"pj_test_{uuid.uuid4().hex[:10]}"'
    dialect = PostgresDialect()
    typed = ", ".join(f"{dialect.quote(c.name)} {dialect.column_type(c, is_key=False)}" for c in columns)
    conn.execute(f"CREATE TABLE {table} ({typed})")
    return table


def loaded(conn: Any, table: str, columns: list[Column]) -> list[tuple[Any, ...]]:
    names = ", ".join(f'"{column.name}"' for column in columns)
    return conn.execute(f"SELECT {names} FROM {table} ORDER BY 1 NULLS LAST, 2 NULLS LAST").fetchall()


def test_binary_copy_loads_each_kind_as_an_insert_with_parameters_does(connection: Any) -> None:
    copied, inserted = create(connection, COLUMNS), create(connection, COLUMNS)

    PostgresDialect().bulk_insert(connection.cursor(), copied, COLUMNS, ROWS)
    marks = ", ".join(["%s"] * len(COLUMNS))
    connection.cursor().executemany(f"INSERT INTO {inserted} VALUES ({marks})", ROWS)

    rows = loaded(connection, copied, COLUMNS)
    assert repr(rows) == repr(loaded(connection, inserted, COLUMNS))  # repr: NaN equals nothing
    assert len(rows) == len(ROWS)
    by_text = {row[0]: row for row in rows}
    assert by_text['say "hi",\n\tbye \\ ÅÄÖ €'][2] == Decimal("0.123456789")  # rounded to the column's scale
    assert by_text['say "hi",\n\tbye \\ ÅÄÖ €'][5] == RECORD  # raw arrives as the JSON it holds
    assert by_text[""][5] == "text" and by_text["plain"][5] == {}


def test_binary_copy_loads_a_page_of_events_as_typed_rows(connection: Any) -> None:
    extracted_at = datetime(2026, 11, 2, 3, 4, 5, tzinfo=UTC)
    records = [
        {"id": "ev-1", "event_time": "2026-10-05T10:11:12Z", "data": {"amount": 1299.5, "currency": "SEK"}},
        {"id": "ev-2", "event_time": "2026-10-05T09:00:00.5+02:00", "data": {"amount": 1e16, "number_of_items": 3}},
        {"id": "ev-3", "data": {}},
    ]
    columns = list(EVENTS.all_columns)
    table = create(connection, columns)

    PostgresDialect().bulk_insert(connection.cursor(), table, columns, typed_rows(EVENTS, records, extracted_at, "px"))

    rows = loaded(connection, table, columns)
    assert [row[0] for row in rows] == ["ev-1", "ev-2", "ev-3"]
    assert [row[1] for row in rows] == ["px"] * 3
    assert rows[0][5] == datetime(2026, 10, 5, 10, 11, 12, tzinfo=UTC)
    assert rows[1][5] == datetime(2026, 10, 5, 7, 0, 0, 500000, tzinfo=UTC)
    assert [row[6] for row in rows] == [Decimal("1299.5"), Decimal("1e16"), None]
    assert rows[1][8] == 3 and rows[0][8] is None
    assert [row[9] for row in rows] == records
    assert {row[10] for row in rows} == {extracted_at}
