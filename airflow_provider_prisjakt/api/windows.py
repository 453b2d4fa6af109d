"""
Time windows: parsing user-given times and splitting windows to the API's 60-day limit.

Pure: no I/O, no Airflow.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TypeAlias

TimeLike: TypeAlias = "datetime | date | str"
MAX_WINDOW = timedelta(days=60)


class WindowError(ValueError):
    """A time or window given by the user cannot be used."""


def to_utc(value: TimeLike, name: str = "time") -> datetime:
    """
    Return ``value`` as a timezone-aware UTC datetime.

    Accepts datetimes (naive ones are taken as UTC), dates (midnight UTC) and ISO-8601 strings,
    which is what templates such as ``{{ data_interval_start }}`` render to.

    :param name: the parameter's name, for the error message.
    :raises WindowError: for anything else.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed: datetime | date = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise WindowError(
                f"{name} must be an ISO-8601 date or date-time such as 2026-10-01T00:00:00Z, got {value!r}"
            ) from None
        value = parsed
    if isinstance(value, datetime):
        if value.tzinfo is None:
            utc = value.replace(tzinfo=UTC)
        else:
            try:
                utc = value.astimezone(UTC)
            except OverflowError:
                raise WindowError(f"{name} is outside the range of UTC times, got {value.isoformat()}") from None
        # A plain datetime: pendulum's subclass drops tzinfo=UTC in arithmetic with a timedelta.
        return datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise WindowError(f"{name} must be a datetime, a date or an ISO-8601 string, got {type(value).__name__}")


def format_api_time(value: datetime) -> str:
    """Format a datetime the way the API's ``from``/``to`` parameters take it: ``2026-10-01T00:00:00Z``."""
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"


def split_window(start: datetime, end: datetime, max_length: timedelta = MAX_WINDOW) -> list[tuple[datetime, datetime]]:
    """
    Split ``[start, end)`` into consecutive windows no longer than ``max_length``, newest first.

    Newest first matches the API's ordering, so records of a long window come out newest first too.

    :raises WindowError: when ``start`` is not before ``end``.
    """
    if max_length <= timedelta(0):
        raise WindowError(f"max_length must be positive, got {max_length}")
    if start >= end:
        raise WindowError(f"start ({format_api_time(start)}) must be before end ({format_api_time(end)})")
    chunks: list[tuple[datetime, datetime]] = []
    chunk_end = end
    while chunk_end > start:
        chunk_start = max(start, chunk_end - max_length)
        chunks.append((chunk_start, chunk_end))
        chunk_end = chunk_start
    return chunks
