"""
Time windows: user-given times, requests that fit the API's 60-day limit and its reading of
``from``/``to``, whole-day widening, and the filter that keeps each record in the window holding it.

Pure: no I/O, no Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeAlias

from airflow_provider_prisjakt.api.choices import parse_choice
from airflow_provider_prisjakt.api.record_times import page_time_span, record_time

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
    """
    Format a datetime the way the API's ``from``/``to`` parameters take it: ``2026-10-01T00:00:00Z``.

    Fractions of a second are written as milliseconds when they are whole ones, else microseconds.
    """
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond % 1000:
        text += f".{utc.microsecond:06d}"
    elif utc.microsecond:
        text += f".{utc.microsecond // 1000:03d}"  # milliseconds, the API's own precision
    return text + "Z"


def _check_order(start: datetime, end: datetime) -> None:
    if start >= end:
        raise WindowError(f"start ({format_api_time(start)}) must be before end ({format_api_time(end)})")


def split_window(start: datetime, end: datetime, max_length: timedelta = MAX_WINDOW) -> list[tuple[datetime, datetime]]:
    """
    Split ``[start, end)`` into consecutive windows no longer than ``max_length``, newest first.

    Newest first matches the API's ordering, so records of a long window come out newest first too.

    :raises WindowError: when ``start`` is not before ``end``.
    """
    if max_length <= timedelta(0):
        raise WindowError(f"max_length must be positive, got {max_length}")
    _check_order(start, end)
    chunks: list[tuple[datetime, datetime]] = []
    chunk_end = end
    while chunk_end > start:
        chunk_start = max(start, chunk_end - max_length)
        chunks.append((chunk_start, chunk_end))
        chunk_end = chunk_start
    return chunks


class WindowBounds(StrEnum):
    """
    How the server reads ``from``/``to`` (the connection extra ``window_bounds``).

    ``half_open``: ``from <= t < to``. ``inclusive``: ``from <= t <= to``. ``dates``: only the
    dates count, both days included (``from`` day through ``to`` day, whole UTC days).
    """

    HALF_OPEN = "half_open"
    INCLUSIVE = "inclusive"
    DATES = "dates"


WINDOW_BOUNDS = tuple(bounds.value for bounds in WindowBounds)
#: ``from`` is sent this much early, so that a server reading it as exclusive keeps the first event.
FROM_MARGIN = timedelta(seconds=1)
#: The step below ``end`` sent as an inclusive ``to``: the API's times have millisecond precision.
INCLUSIVE_STEP = timedelta(milliseconds=1)
ONE_DAY = timedelta(days=1)


def window_bounds(value: str) -> WindowBounds:
    """
    Return the :class:`WindowBounds` named ``value``.

    :raises WindowError: for any other name.
    """
    return parse_choice(WindowBounds, value, "window_bounds", WindowError)


def floor_day(moment: datetime) -> datetime:
    """Return the UTC midnight at or before ``moment`` (a naive one is taken as UTC)."""
    utc = to_utc(moment)
    return datetime(utc.year, utc.month, utc.day, tzinfo=UTC)


def ceil_day(moment: datetime) -> datetime:
    """Return the UTC midnight at or after ``moment``."""
    midnight = floor_day(moment)
    return midnight if midnight == moment else midnight + ONE_DAY


def whole_days(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """Widen ``[start, end)`` to whole UTC days: start rounded down, end rounded up."""
    return floor_day(start), ceil_day(end)


def day_windows(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Split ``[start, end)`` at UTC midnights, oldest first: one window per calendar day touched."""
    windows = []
    cursor = start
    while cursor < end:
        midnight = floor_day(cursor) + ONE_DAY
        windows.append((cursor, min(midnight, end)))
        cursor = midnight
    return windows


def is_day_complete(day: date | datetime, now: datetime) -> bool:
    """Tell whether the UTC day ``day`` (a date, or any moment in it) is over at ``now``."""
    start = floor_day(day) if isinstance(day, datetime) else to_utc(day)
    return now >= start + ONE_DAY


@dataclass(frozen=True)
class RequestChunk:
    """
    One request of a window: the share of the window it answers for, and the ``from``/``to`` it sends.

    :param start: the start of the share (included).
    :param end: the end of the share (excluded). The shares of a window's chunks partition it.
    :param request_from: the moment sent as ``from`` (for ``dates``, the midnight starting the first day).
    :param request_to: the moment sent as ``to`` (for ``dates``, the midnight ending the last day).
    :param bounds: how the server reads them.
    """

    start: datetime
    end: datetime
    request_from: datetime
    request_to: datetime
    bounds: WindowBounds = WindowBounds.HALF_OPEN

    @property
    def params(self) -> dict[str, str]:
        """The ``from``/``to`` query parameters: ISO-8601 UTC, or the first and last day for ``dates``."""
        if self.bounds is WindowBounds.DATES:
            last_day = (self.request_to - ONE_DAY).date()
            return {"from": self.request_from.date().isoformat(), "to": last_day.isoformat()}
        return {"from": format_api_time(self.request_from), "to": format_api_time(self.request_to)}

    def holds(self, moment: datetime) -> bool:
        """Tell whether ``moment`` lies in this chunk's share ``[start, end)``."""
        return self.start <= moment < self.end

    def suggests(self, moment: datetime) -> WindowBounds | None:
        """
        Return the bounds a record at ``moment`` reveals, when this request's bounds are wrong.

        A record at exactly ``to`` of a half-open request comes from an inclusive server; one outside
        ``[from, to]`` altogether, from a server that reads only the dates.
        """
        if self.bounds is WindowBounds.DATES:
            return None
        if not self.request_from <= moment <= self.request_to:
            return WindowBounds.DATES
        if moment == self.request_to and self.bounds is WindowBounds.HALF_OPEN:
            return WindowBounds.INCLUSIVE
        return None


def request_chunks(
    start: datetime,
    end: datetime,
    bounds: WindowBounds | str = WindowBounds.HALF_OPEN,
    max_length: timedelta = MAX_WINDOW,
) -> list[RequestChunk]:
    """
    Return the requests that read ``[start, end)`` from a server reading ``from``/``to`` as ``bounds``.

    Newest first, like :func:`split_window`. Each request covers its share under ``bounds`` and a
    little more: ``from`` is sent :data:`FROM_MARGIN` early; ``to`` is ``end`` (``inclusive``: ``end``
    minus :data:`INCLUSIVE_STEP`). For ``dates`` the request is widened to whole days instead (start
    rounded down, end rounded up): ``from`` is the first day and ``to`` the last, both included. The
    widening comes before the split, so no request spans more than ``max_length``. Records outside a
    chunk's share are dropped by :class:`WindowFilter`, so the shares, not the requests, decide
    where a record lands.

    :param bounds: a :class:`WindowBounds` or its name.
    :param max_length: the longest span the API accepts.
    :raises WindowError: when ``start`` is not before ``end`` or ``max_length`` is too short.
    """
    bounds = window_bounds(bounds)
    if bounds is WindowBounds.DATES:
        days = max_length // ONE_DAY * ONE_DAY
        if days <= timedelta(0):
            raise WindowError(f"max_length must be at least one day for window_bounds=dates, got {max_length}")
        _check_order(start, end)
        return [
            RequestChunk(max(start, day_from), min(end, day_to), day_from, day_to, bounds)
            for day_from, day_to in split_window(*whole_days(start, end), days)
        ]
    if max_length <= FROM_MARGIN:
        raise WindowError(f"max_length must be longer than {FROM_MARGIN}, got {max_length}")
    step = INCLUSIVE_STEP if bounds is WindowBounds.INCLUSIVE else timedelta(0)
    return [
        RequestChunk(share_start, share_end, share_start - FROM_MARGIN, share_end - step, bounds)
        for share_start, share_end in split_window(start, end, max_length - FROM_MARGIN)
    ]


def exact_request(start: datetime, end: datetime, bounds: WindowBounds | str = WindowBounds.HALF_OPEN) -> RequestChunk:
    """
    Return the one request that reads exactly ``[start, end)`` under ``bounds``, with no margin.

    For what cannot be filtered after reading, such as purchase summaries; with ``dates`` the window
    should be whole days (it is widened to them). The span is not checked against the 60-day limit.

    :raises WindowError: when ``start`` is not before ``end``.
    """
    bounds = window_bounds(bounds)
    _check_order(start, end)
    if bounds is WindowBounds.DATES:
        return RequestChunk(start, end, *whole_days(start, end), bounds)
    step = INCLUSIVE_STEP if bounds is WindowBounds.INCLUSIVE else timedelta(0)
    return RequestChunk(start, end, start, end - step, bounds)


def summary_requests(
    start: datetime, end: datetime, bounds: WindowBounds | str = WindowBounds.HALF_OPEN
) -> list[RequestChunk]:
    """
    Return the requests of a purchase summary export: one per whole UTC day touched, oldest first.

    The window is widened to whole days (start rounded down, end rounded up), so that no schedule
    writes a partial day; each day is read exactly, as ``bounds`` prescribes.
    """
    return [exact_request(day_start, day_end, bounds) for day_start, day_end in day_windows(*whole_days(start, end))]


class RecordPlace(StrEnum):
    """Where a record's time puts it, relative to the window and to the chunk that returned it."""

    INSIDE = "inside"
    """In the chunk's share of the window: kept."""
    ELSEWHERE = "elsewhere"
    """In the window but in another chunk's share, which returns it too: dropped, not counted."""
    OUTSIDE = "outside"
    """Outside the window: dropped and counted as ``rows_outside_window``."""
    UNDATED = "undated"
    """No readable time: kept and counted as ``rows_without_time``."""


class WindowFilter:
    """
    Keeps the records whose time lies in the window ``[start, end)``, and counts the others.

    One filter serves a whole export (all its targets and chunks), so its counts are the export's.
    It also notices records that only a server reading ``from``/``to`` differently would send, and
    says once (:meth:`take_hint`) which ``window_bounds`` to set.

    :param start: the window's start (included); an export with ``lookback`` passes ``start - lookback``.
    :param end: the window's end (excluded).
    :param time_field: the record member holding its time.
    """

    def __init__(self, start: datetime, end: datetime, time_field: str = "event_time") -> None:
        self.start = start
        self.end = end
        self.time_field = time_field
        self.rows_outside_window = 0
        self.rows_without_time = 0
        self.suggested_bounds: WindowBounds | None = None
        self._evidence: datetime | None = None
        self._told: WindowBounds | None = None

    def place(self, record: Any, chunk: RequestChunk | None = None) -> RecordPlace:
        """
        Place one record and count it; see :class:`RecordPlace`.

        :param record: an API record (a non-object has no time).
        :param chunk: the request that returned it; ``None`` when the window was read in one piece.
        """
        moment = record_time(record.get(self.time_field)) if isinstance(record, Mapping) else None
        if moment is None:
            self.rows_without_time += 1
            return RecordPlace.UNDATED
        if self._holds(moment, chunk):
            return RecordPlace.INSIDE
        if chunk is not None:
            self._note(chunk.suggests(moment), moment)
        if self.start <= moment < self.end:
            return RecordPlace.ELSEWHERE
        self.rows_outside_window += 1
        return RecordPlace.OUTSIDE

    def keep(self, records: list[Any], chunk: RequestChunk | None = None) -> list[Any]:
        """Return the records to write (inside, or without a time), in order; ``records`` itself when all are."""
        # The usual page, every record inside: place() would count and notice nothing either.
        span = page_time_span(records, self.time_field)
        if span is not None and self._holds(span[0], chunk) and self._holds(span[1], chunk):
            return records
        places = [self.place(record, chunk) for record in records]
        if all(place is RecordPlace.INSIDE for place in places):
            return records
        dropped = (RecordPlace.ELSEWHERE, RecordPlace.OUTSIDE)
        return [record for record, place in zip(records, places, strict=True) if place not in dropped]

    def _holds(self, moment: datetime, chunk: RequestChunk | None) -> bool:
        """Tell whether ``moment`` lies in ``chunk``'s share, or in the window when there is no chunk."""
        return chunk.holds(moment) if chunk is not None else self.start <= moment < self.end

    def _note(self, bounds: WindowBounds | None, moment: datetime) -> None:
        # Dates explain everything an inclusive server sends too, so a suggestion only grows.
        if bounds is None or bounds is self.suggested_bounds or self.suggested_bounds is WindowBounds.DATES:
            return
        self.suggested_bounds, self._evidence = bounds, moment

    def take_hint(self) -> str | None:
        """Return the advice on ``window_bounds`` the first time there is some (or it changes), else ``None``."""
        if self.suggested_bounds is None or self.suggested_bounds is self._told or self._evidence is None:
            return None
        self._told = self.suggested_bounds
        return (
            f"The API returned a record at {format_api_time(self._evidence)}, which a server reading from/to "
            f"as requested would not send; it seems to read them as window_bounds={self.suggested_bounds}. "
            f"Set the connection extra window_bounds={self.suggested_bounds} so that requests fit it "
            "(records outside the window are dropped either way)"
        )

    def counts(self) -> dict[str, int]:
        """Return ``rows_outside_window`` and ``rows_without_time``, for the export's summary."""
        return {"rows_outside_window": self.rows_outside_window, "rows_without_time": self.rows_without_time}
