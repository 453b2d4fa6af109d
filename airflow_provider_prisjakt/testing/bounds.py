"""How the sandbox reads ``from``/``to``: the four window semantics a real server might have (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

#: Largest allowed ``to - from`` interval.
MAX_INTERVAL = timedelta(days=60)


@dataclass(frozen=True)
class ServedWindow:
    """
    The stretch of time a server selects for one ``from``/``to`` pair.

    :param start: Start, epoch seconds.
    :param end: End, epoch seconds.
    :param start_open: An event exactly at ``start`` is left out.
    :param end_closed: An event exactly at ``end`` is taken in.
    """

    start: float
    end: float
    start_open: bool = False
    end_closed: bool = False


def _midnight(day: date) -> float:
    return datetime.combine(day, time(0), UTC).timestamp()


def served_window(bounds: str, start: datetime, end: datetime) -> ServedWindow:
    """
    Say which events a server with the given semantics selects.

    :param bounds: A :data:`~airflow_provider_prisjakt.testing.config.WindowBounds`.
    :param start: Parsed ``from`` (aware).
    :param end: Parsed ``to`` (aware).
    :return: The served window.
    """
    if bounds == "inclusive":
        return ServedWindow(start.timestamp(), end.timestamp(), end_closed=True)
    if bounds == "left_open":
        return ServedWindow(start.timestamp(), end.timestamp(), start_open=True, end_closed=True)
    if bounds == "date_only":
        # Only the date as written counts, whatever the time and offset after it.
        return ServedWindow(_midnight(start.date()), _midnight(end.date() + timedelta(days=1)))
    return ServedWindow(start.timestamp(), end.timestamp())


def window_error(bounds: str, start: datetime, end: datetime) -> tuple[str, str] | None:
    """
    Check a ``from``/``to`` pair as a server with the given semantics would.

    :param bounds: A :data:`~airflow_provider_prisjakt.testing.config.WindowBounds`.
    :param start: Parsed ``from`` (aware).
    :param end: Parsed ``to`` (aware).
    :return: ``None`` when valid, else ``(field message, detail)`` of the 400 on ``to``.
    """
    if bounds == "date_only":
        span = end.date() - start.date()
        empty = span < timedelta(0)
    else:
        span = end - start
        # A point [t, t] still selects events at t; the other modes would select nothing.
        empty = span < timedelta(0) if bounds == "inclusive" else span <= timedelta(0)
    if empty:
        return "must be after from", "from must be before to"
    if span > MAX_INTERVAL:
        return "interval longer than 60 days", "The interval between from and to may be at most 60 days"
    return None
