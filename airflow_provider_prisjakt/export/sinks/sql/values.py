"""
Typed values as the SQL drivers take them: naive UTC times (MySQL), ISO-8601 text (SQLite), JSON
text (PostgreSQL's binary ``COPY``) and CSV fields (psycopg2's ``COPY``). Pure: no I/O.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from airflow_provider_prisjakt.api.encoding import raw_json


def naive_utc(value: datetime | None) -> datetime | None:
    """A time as a naive UTC datetime, for drivers without time zones."""
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def iso_utc(value: datetime | None) -> str | None:
    """A time as ISO-8601 UTC text of fixed width, so text comparisons order like the instants."""
    return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")


def iso_date(value: date | None) -> str | None:
    """A day as ISO-8601 text."""
    return None if value is None else value.isoformat()


def as_text(value: Any) -> str | None:
    """Any value as its text (a Decimal as written), ``None`` as ``None``."""
    return None if value is None else str(value)


def unchanged(value: Any) -> Any:
    """A value the driver takes as it is."""
    return value


def json_text(value: Any) -> str:
    """A JSON column's value as JSON text: ``raw`` is already JSON text; anything else is encoded as ``raw`` is."""
    return value if isinstance(value, str) else raw_json(value)


def csv_field(value: Any) -> str:
    """A value as a field of PostgreSQL's CSV ``COPY``: an unquoted empty field is NULL, a quoted one is empty text."""
    if value is None:
        return ""
    return '"' + str(value).replace('"', '""') + '"'
