"""Window bounds: requests built for the server's reading of from/to, and the filter that keeps each record in its window."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_prisjakt.api.record_times import record_time
from airflow_provider_prisjakt.api.windows import (
    FROM_MARGIN,
    MAX_WINDOW,
    WINDOW_BOUNDS,
    RecordPlace,
    RequestChunk,
    WindowBounds,
    WindowError,
    WindowFilter,
    ceil_day,
    day_windows,
    exact_request,
    floor_day,
    format_api_time,
    is_day_complete,
    request_chunks,
    summary_requests,
    whole_days,
    window_bounds,
)

from .record_pages import pages

T0 = datetime(2026, 10, 1, tzinfo=UTC)
DAY = timedelta(days=1)
KEPT = (RecordPlace.INSIDE, RecordPlace.UNDATED)


def _event(moment: datetime | str | None, key: str = "e") -> dict[str, object]:
    text = format_api_time(moment) if isinstance(moment, datetime) else moment
    return {"id": key, "event_time": text}


# -- WindowBounds --------------------------------------------------------------------------------


def test_window_bounds_are_a_closed_set_half_open_first() -> None:
    assert WINDOW_BOUNDS == ("half_open", "inclusive", "dates")
    assert window_bounds("dates") is WindowBounds.DATES
    with pytest.raises(WindowError, match="window_bounds must be one of half_open, inclusive, dates"):
        window_bounds("exclusive")


# -- request_chunks ------------------------------------------------------------------------------


def test_half_open_requests_from_one_second_early() -> None:
    [chunk] = request_chunks(T0, T0 + DAY)
    assert chunk.params == {"from": "2026-09-30T23:59:59Z", "to": "2026-10-02T00:00:00Z"}
    assert (chunk.start, chunk.end) == (T0, T0 + DAY)


def test_inclusive_requests_end_minus_one_millisecond() -> None:
    [chunk] = request_chunks(T0, T0 + DAY, "inclusive")
    assert chunk.params == {"from": "2026-09-30T23:59:59Z", "to": "2026-10-01T23:59:59.999Z"}


def test_dates_request_whole_days_both_included() -> None:
    [chunk] = request_chunks(T0, T0 + DAY, WindowBounds.DATES)
    assert chunk.params == {"from": "2026-10-01", "to": "2026-10-01"}
    [chunk] = request_chunks(T0 + timedelta(hours=2), T0 + DAY + timedelta(hours=2), WindowBounds.DATES)
    assert chunk.params == {"from": "2026-10-01", "to": "2026-10-02"}
    assert (chunk.start, chunk.end) == (T0 + timedelta(hours=2), T0 + DAY + timedelta(hours=2))


def test_a_sixty_day_window_is_widened_before_it_is_split() -> None:
    chunks = request_chunks(T0, T0 + MAX_WINDOW)
    assert len(chunks) == 2
    assert all(chunk.request_to - chunk.request_from <= MAX_WINDOW for chunk in chunks)
    assert chunks[0].request_to - chunks[0].request_from == MAX_WINDOW
    assert chunks[-1].request_from == T0 - FROM_MARGIN


def test_long_dates_windows_are_split_on_midnights_into_at_most_sixty_days() -> None:
    chunks = request_chunks(T0 + timedelta(hours=5), T0 + timedelta(days=130, hours=1), "dates")
    assert [chunk.params for chunk in chunks] == [
        {"from": "2026-12-11", "to": "2027-02-08"},
        {"from": "2026-10-12", "to": "2026-12-10"},
        {"from": "2026-10-01", "to": "2026-10-11"},
    ]
    assert chunks[-1].start == T0 + timedelta(hours=5)


@pytest.mark.parametrize("bounds", list(WindowBounds))
def test_start_not_before_end_is_a_window_error(bounds: WindowBounds) -> None:
    with pytest.raises(WindowError, match="must be before end"):
        request_chunks(T0, T0, bounds)


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
    st.timedeltas(min_value=timedelta(milliseconds=1), max_value=timedelta(days=400)),
    st.sampled_from(list(WindowBounds)),
)
def test_chunks_partition_the_window_and_each_request_covers_its_share_within_sixty_days(
    start: datetime, length: timedelta, bounds: WindowBounds
) -> None:
    end = start + length
    chunks = request_chunks(start, end, bounds)
    # Newest first; the shares tile [start, end) exactly.
    assert chunks[0].end == end
    assert chunks[-1].start == start
    for newer, older in zip(chunks, chunks[1:], strict=False):
        assert older.end == newer.start
    for chunk in chunks:
        assert chunk.start < chunk.end
        if bounds is WindowBounds.DATES:
            first, last = (date.fromisoformat(chunk.params[name]) for name in ("from", "to"))
            assert last - first < MAX_WINDOW
            assert first <= chunk.start.date()
            assert (chunk.end - timedelta(microseconds=1)).date() <= last
        else:
            assert chunk.request_to - chunk.request_from <= MAX_WINDOW
            assert chunk.request_from == chunk.start - FROM_MARGIN
            step = timedelta(milliseconds=1) if bounds is WindowBounds.INCLUSIVE else timedelta(0)
            assert chunk.request_to == chunk.end - step


# -- exact requests and summary days ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "params"),
    [
        ("half_open", {"from": "2026-10-01T00:00:00Z", "to": "2026-10-02T00:00:00Z"}),
        ("inclusive", {"from": "2026-10-01T00:00:00Z", "to": "2026-10-01T23:59:59.999Z"}),
        ("dates", {"from": "2026-10-01", "to": "2026-10-01"}),
    ],
)
def test_exact_request_has_no_margin(bounds: str, params: dict[str, str]) -> None:
    assert exact_request(T0, T0 + DAY, bounds).params == params


def test_summary_requests_cover_whole_utc_days_one_at_a_time() -> None:
    # A 0 2 * * * schedule: the window 02:00 to 02:00 becomes the two whole days it touches.
    requests = summary_requests(T0 + timedelta(hours=2), T0 + DAY + timedelta(hours=2))
    assert [(request.start, request.end) for request in requests] == [(T0, T0 + DAY), (T0 + DAY, T0 + 2 * DAY)]
    assert [request.params["from"] for request in requests] == ["2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z"]
    assert [request.params["to"] for request in summary_requests(T0, T0 + 2 * DAY, "dates")] == [
        "2026-10-01",
        "2026-10-02",
    ]


# -- whole days ----------------------------------------------------------------------------------


def test_whole_days_round_start_down_and_end_up() -> None:
    assert whole_days(T0 + timedelta(hours=2), T0 + DAY + timedelta(hours=2)) == (T0, T0 + 2 * DAY)
    assert whole_days(T0, T0 + DAY) == (T0, T0 + DAY)
    assert floor_day(datetime(2026, 10, 1, 1, tzinfo=timezone(timedelta(hours=2)))) == T0 - DAY
    assert ceil_day(T0 + timedelta(microseconds=1)) == T0 + DAY


def test_day_windows_split_at_utc_midnights() -> None:
    start, end = T0 + timedelta(hours=20), T0 + DAY + timedelta(hours=3)
    assert day_windows(start, end) == [(start, T0 + DAY), (T0 + DAY, end)]
    assert day_windows(*whole_days(start, end)) == [(T0, T0 + DAY), (T0 + DAY, T0 + 2 * DAY)]
    assert day_windows(T0, T0) == []


def test_a_day_is_complete_once_its_midnight_has_passed() -> None:
    assert not is_day_complete(T0, T0 + timedelta(hours=23, minutes=59))
    assert is_day_complete(T0, T0 + DAY)
    assert is_day_complete(date(2026, 10, 1), T0 + DAY)
    assert not is_day_complete(T0 + timedelta(hours=5), T0 + timedelta(hours=6))


# -- record_time ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-10-01T00:00:00Z", T0),
        ("2026-10-01T02:00:00+02:00", T0),
        ("2026-10-01T00:00:00", T0),
        ("2026-10-01T00:00:00.250Z", T0 + timedelta(milliseconds=250)),
        (T0, T0),
        (None, None),
        ("", None),
        ("yesterday", None),
        (1790000000, None),
    ],
)
def test_record_time_reads_iso_strings_and_gives_none_otherwise(value: object, expected: datetime | None) -> None:
    assert record_time(value) == expected


# -- WindowFilter --------------------------------------------------------------------------------


def test_records_inside_the_window_are_kept_as_the_same_list() -> None:
    records = [_event(T0), _event(T0 + DAY - timedelta(milliseconds=1))]
    window = WindowFilter(T0, T0 + DAY)
    assert window.keep(records) is records
    assert window.counts() == {"rows_outside_window": 0, "rows_without_time": 0}


def test_an_event_at_exactly_end_is_dropped_and_counted() -> None:
    window = WindowFilter(T0, T0 + DAY)
    assert window.keep([_event(T0 + DAY, "late"), _event(T0, "first")]) == [_event(T0, "first")]
    assert window.rows_outside_window == 1


def test_records_without_a_readable_time_are_kept_and_counted() -> None:
    window = WindowFilter(T0, T0 + DAY)
    records = [_event(None, "a"), _event("soon", "b"), {"id": "c"}, "not an object"]
    assert window.keep(records) == records
    assert window.counts() == {"rows_outside_window": 0, "rows_without_time": 4}


def test_the_early_second_is_fetched_but_not_kept() -> None:
    [chunk] = request_chunks(T0, T0 + DAY)
    window = WindowFilter(T0, T0 + DAY)
    assert window.place(_event(T0 - timedelta(milliseconds=500)), chunk) is RecordPlace.OUTSIDE
    assert window.take_hint() is None


def test_a_record_in_another_chunks_share_is_dropped_silently() -> None:
    start, end = T0, T0 + 100 * DAY
    newer, older = request_chunks(start, end)
    window = WindowFilter(start, end)
    boundary_event = _event(newer.start - timedelta(milliseconds=200))  # in newer's early second
    assert window.place(boundary_event, newer) is RecordPlace.ELSEWHERE
    assert window.place(boundary_event, older) is RecordPlace.INSIDE
    assert window.counts() == {"rows_outside_window": 0, "rows_without_time": 0}


@pytest.mark.parametrize("bounds", list(WindowBounds))
def test_each_event_is_kept_by_exactly_one_chunk_whatever_the_chunks_return(bounds: WindowBounds) -> None:
    start, end = T0 + timedelta(hours=7), T0 + 130 * DAY
    chunks = request_chunks(start, end, bounds)
    times = {f"e{h}": start + timedelta(hours=h) for h in range(-30, 130 * 24, 5)}
    events = [_event(moment, key) for key, moment in times.items()]
    window = WindowFilter(start, end)
    # A server that ignores from/to altogether returns everything to every request.
    kept = [str(record["id"]) for chunk in chunks for record in window.keep(events, chunk)]
    assert sorted(kept) == sorted(key for key, moment in times.items() if start <= moment < end)
    assert len(kept) == len(set(kept))


def test_an_inclusive_server_is_noticed_once() -> None:
    [chunk] = request_chunks(T0, T0 + DAY)
    window = WindowFilter(T0, T0 + DAY)
    window.keep([_event(T0 + DAY, "a")], chunk)
    hint = window.take_hint()
    assert hint is not None
    assert "window_bounds=inclusive" in hint
    assert "2026-10-02T00:00:00Z" in hint
    window.keep([_event(T0 + DAY, "b")], chunk)
    assert window.take_hint() is None
    assert window.suggested_bounds is WindowBounds.INCLUSIVE


def test_a_dates_only_server_is_noticed_and_wins_over_inclusive() -> None:
    [chunk] = request_chunks(T0, T0 + DAY)
    window = WindowFilter(T0, T0 + DAY)
    window.keep([_event(T0 + DAY)], chunk)
    assert window.take_hint() is not None
    window.keep([_event(T0 - timedelta(hours=12)), _event(T0 + DAY)], chunk)
    hint = window.take_hint()
    assert hint is not None
    assert "window_bounds=dates" in hint
    assert window.suggested_bounds is WindowBounds.DATES
    assert window.rows_outside_window == 3


def test_records_a_dates_request_brings_are_expected_and_give_no_hint() -> None:
    [chunk] = request_chunks(T0 + timedelta(hours=2), T0 + DAY + timedelta(hours=2), "dates")
    window = WindowFilter(T0 + timedelta(hours=2), T0 + DAY + timedelta(hours=2))
    kept = window.keep([_event(T0, "early"), _event(T0 + timedelta(hours=3), "in")], chunk)
    assert [record["id"] for record in kept] == ["in"]
    assert window.take_hint() is None
    assert window.rows_outside_window == 1


def test_request_chunk_suggests_nothing_for_records_it_asked_for() -> None:
    chunk = RequestChunk(T0, T0 + DAY, T0 - FROM_MARGIN, T0 + DAY - timedelta(milliseconds=1), WindowBounds.INCLUSIVE)
    assert chunk.suggests(T0 - FROM_MARGIN) is None
    assert chunk.suggests(T0 + DAY - timedelta(milliseconds=1)) is None
    assert chunk.suggests(T0 + DAY) is WindowBounds.DATES


@st.composite
def _windows_and_pages(draw: st.DrawFn) -> tuple[datetime, datetime, RequestChunk | None, list[Any]]:
    start = T0 + timedelta(milliseconds=draw(st.integers(0, 86_400_000)))
    end = start + timedelta(milliseconds=draw(st.integers(1, 3 * 86_400_000)))
    chunks = request_chunks(start, end, draw(st.sampled_from(list(WindowBounds))), MAX_WINDOW)
    chunk = draw(st.sampled_from([None, *chunks]))
    edges = [start, end, *((chunk.request_from, chunk.request_to) if chunk else ())]
    near_edge = st.builds(
        lambda edge, step: edge + step,
        st.sampled_from(edges),
        st.sampled_from([timedelta(0), timedelta(microseconds=1), timedelta(milliseconds=1), timedelta(seconds=1)])
        | st.sampled_from([-timedelta(microseconds=1), -timedelta(milliseconds=1), -timedelta(seconds=1)]),
    )
    anywhere = st.integers(-2 * 86_400_000, 5 * 86_400_000).map(lambda ms: start + timedelta(milliseconds=ms))
    inside = st.integers(0, (end - start) // timedelta(microseconds=1) - 1).map(
        lambda us: start + timedelta(microseconds=us)
    )
    page = draw(pages(near_edge | anywhere | inside | inside, usual=draw(st.booleans())))
    return start, end, chunk, page


@settings(max_examples=1000, deadline=None)
@given(_windows_and_pages())
def test_keep_agrees_with_placing_each_record_by_its_parsed_time(
    case: tuple[datetime, datetime, RequestChunk | None, list[Any]],
) -> None:
    start, end, chunk, page = case
    window, reference = WindowFilter(start, end), WindowFilter(start, end)
    places = [reference.place(record, chunk) for record in page]
    expected = [record for record, place in zip(page, places, strict=True) if place in KEPT]
    kept = window.keep(page, chunk)
    assert kept == expected
    assert (kept is page) is all(place is RecordPlace.INSIDE for place in places)
    assert window.counts() == reference.counts()
    assert (window.suggested_bounds, window.take_hint()) == (reference.suggested_bounds, reference.take_hint())
