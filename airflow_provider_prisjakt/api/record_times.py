"""
Records' times: one record's (:func:`record_time`), and the span of a page's (:func:`page_time_span`).

Every record of every page is placed by its time, so the usual page, whose records all carry an
ISO-8601 time with a UTC offset (the API's ``2019-08-24T14:15:22Z``), is read in one pass of C-level
parsing (:func:`page_time_span`); any other page is read record by record (:func:`record_time`),
with the same parser, so both readings agree.

Pure: no I/O, no Airflow.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from itertools import repeat
from typing import Any


def record_time(value: Any) -> datetime | None:
    """
    Read a record's time (an ISO-8601 string, or a datetime) as an aware datetime; ``None`` if unreadable.

    Cheaper than :func:`~airflow_provider_prisjakt.api.windows.to_utc`, since it runs once per
    record: aware results keep their offset, which compares correctly with UTC times; naive ones
    are taken as UTC.
    """
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    elif isinstance(value, datetime):
        moment = value
    else:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def page_time_span(records: Sequence[Any], field: str = "event_time") -> tuple[datetime, datetime] | None:
    """
    Return the oldest and the newest time ``field`` of ``records`` when every record is a JSON object
    whose time is an ISO-8601 string with a UTC offset; else ``None``.

    The times are those :func:`record_time` reads. ``None`` (an empty page; a record that is not a
    ``dict``, lacks the time, or holds one unreadable, naive or not a string) says only that the
    page must be read record by record.
    """
    values: Iterator[Any] = map(dict.get, records, repeat(field))  # a record not a dict raises TypeError
    try:
        times = list(map(datetime.fromisoformat, values))  # and so does a time not a str
        # Ordering a naive time against an aware one raises TypeError: the times are all of one kind.
        oldest, newest = min(times), max(times)
    except (TypeError, ValueError):
        return None
    return (oldest, newest) if oldest.tzinfo is not None else None


def record_times(records: Sequence[Any], field: str = "event_time") -> list[datetime]:
    """Return the readable times ``field`` of ``records``, in order."""
    times = (record_time(r.get(field)) for r in records if isinstance(r, Mapping))
    return [t for t in times if t is not None]


def time_span(records: Sequence[Any], field: str = "event_time") -> tuple[datetime, datetime] | None:
    """Return the oldest and the newest readable time ``field`` of ``records``; ``None`` when none is readable."""
    span = page_time_span(records, field)
    if span is not None:
        return span
    times = record_times(records, field)
    return (min(times), max(times)) if times else None
