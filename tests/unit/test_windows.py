"""Parsing user-given times and splitting windows to the API's 60-day limit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_prisjakt.api.windows import MAX_WINDOW, WindowError, format_api_time, split_window, to_utc

T0 = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def stockholm_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run with a local time zone that is not UTC, so naive-as-local mistakes show."""
    monkeypatch.setenv("TZ", "Europe/Stockholm")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# -- to_utc --------------------------------------------------------------------------------------


def test_aware_datetime_is_converted_to_utc() -> None:
    value = datetime(2026, 10, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    result = to_utc(value)
    assert result == T0
    assert result.tzinfo is UTC


def test_naive_datetime_is_taken_as_utc(stockholm_local_time: None) -> None:
    result = to_utc(datetime(2026, 10, 1, 0, 0))
    assert result == T0
    assert result.utcoffset() == timedelta(0)


def test_date_is_midnight_utc() -> None:
    assert to_utc(date(2026, 10, 1)) == T0


@pytest.mark.parametrize(
    "text",
    [
        "2026-10-01T00:00:00Z",
        "2026-10-01T00:00:00z",
        "2026-10-01T00:00:00+00:00",
        "2026-10-01T02:00:00+02:00",
        "2026-09-30T19:00:00-05:00",
        "2026-10-01T00:00:00",
        "2026-10-01",
        "  2026-10-01T00:00:00.000Z ",
        "2026-10-01 00:00:00Z",
    ],
)
def test_iso_strings_are_parsed_to_utc(text: str) -> None:
    result = to_utc(text)
    assert result == T0
    assert result.utcoffset() == timedelta(0)


def test_fractional_seconds_are_kept() -> None:
    assert to_utc("2026-10-01T00:00:00.250Z") == T0 + timedelta(milliseconds=250)


@pytest.mark.parametrize("junk", ["", "yesterday", "2026-13-01", "2026-10-01T25:00:00Z", "1696118400", "Z"])
def test_junk_string_is_a_window_error_naming_the_parameter(junk: str) -> None:
    with pytest.raises(WindowError, match=r"^start must be an ISO-8601"):
        to_utc(junk, "start")


@pytest.mark.parametrize("junk", [None, 1696118400, 1.5, ["2026-10-01"], object()])
def test_junk_type_is_a_window_error_naming_the_parameter(junk: object) -> None:
    with pytest.raises(WindowError, match=r"^end must be a datetime, a date or an ISO-8601 string"):
        to_utc(junk, "end")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_time_outside_the_utc_range_is_a_window_error(text: str) -> None:
    with pytest.raises(WindowError, match="start"):
        to_utc(text, "start")


def test_window_error_is_a_value_error() -> None:
    assert issubclass(WindowError, ValueError)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_parses_or_raises_window_error(text: str) -> None:
    try:
        result = to_utc(text, "start")
    except WindowError as err:
        message = str(err)
    else:
        assert result.utcoffset() == timedelta(0)
        return
    assert message.startswith("start ")


@settings(max_examples=200, deadline=None)
@given(st.datetimes(timezones=st.timezones()))
def test_to_utc_keeps_the_instant(value: datetime) -> None:
    try:
        result = to_utc(value)
    except WindowError:
        return  # only times whose UTC form falls outside datetime's range
    assert result.utcoffset() == timedelta(0)
    # Compared as wall times: PEP 495 makes times in a DST gap or fold unequal across zones.
    offset = value.utcoffset()
    assert offset is not None
    assert result.replace(tzinfo=None) == value.replace(tzinfo=None) - offset
    assert to_utc(result.isoformat()) == result


# -- format_api_time -----------------------------------------------------------------------------


def test_api_time_is_utc_with_z() -> None:
    assert format_api_time(T0) == "2026-10-01T00:00:00Z"
    assert format_api_time(datetime(2026, 10, 1, 2, 30, tzinfo=timezone(timedelta(hours=2)))) == (
        "2026-10-01T00:30:00Z"
    )


def test_api_time_keeps_microseconds() -> None:
    assert format_api_time(T0 + timedelta(microseconds=1500)) == "2026-10-01T00:00:00.001500Z"


def test_naive_api_time_is_taken_as_utc(stockholm_local_time: None) -> None:
    assert format_api_time(datetime(2026, 10, 1, 0, 0)) == "2026-10-01T00:00:00Z"


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)))
def test_api_time_round_trips_through_to_utc(value: datetime) -> None:
    text = format_api_time(value)
    assert text.endswith("Z")
    assert to_utc(text) == value


# -- split_window --------------------------------------------------------------------------------


def test_short_window_is_one_chunk() -> None:
    assert split_window(T0, T0 + timedelta(days=1)) == [(T0, T0 + timedelta(days=1))]


def test_exactly_sixty_days_is_one_chunk() -> None:
    assert split_window(T0, T0 + timedelta(days=60)) == [(T0, T0 + timedelta(days=60))]


def test_long_window_is_split_newest_first() -> None:
    end = T0 + timedelta(days=150)
    assert split_window(T0, end) == [
        (T0 + timedelta(days=90), end),
        (T0 + timedelta(days=30), T0 + timedelta(days=90)),
        (T0, T0 + timedelta(days=30)),
    ]


def test_custom_max_length_is_honoured() -> None:
    chunks = split_window(T0, T0 + timedelta(hours=5), max_length=timedelta(hours=2))
    assert [end - start for start, end in chunks] == [timedelta(hours=2), timedelta(hours=2), timedelta(hours=1)]


@pytest.mark.parametrize("end", [T0, T0 - timedelta(seconds=1)])
def test_start_not_before_end_is_a_window_error(end: datetime) -> None:
    with pytest.raises(WindowError, match=r"start \(2026-10-01T00:00:00Z\) must be before end"):
        split_window(T0, end)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("max_length", [timedelta(0), timedelta(days=-1)])
def test_non_positive_max_length_is_a_window_error(max_length: timedelta) -> None:
    with pytest.raises(WindowError, match="max_length"):
        split_window(T0, T0 + timedelta(days=1), max_length=max_length)


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
    st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=1000)),
    st.sampled_from([MAX_WINDOW, timedelta(days=1), timedelta(days=7), timedelta(hours=13), timedelta(days=31)]),
)
def test_split_window_covers_exactly_contiguous_newest_first(
    start: datetime, length: timedelta, max_length: timedelta
) -> None:
    end = start + length
    chunks = split_window(start, end, max_length)
    assert chunks[0][1] == end
    assert chunks[-1][0] == start
    for chunk_start, chunk_end in chunks:
        assert chunk_start < chunk_end
        assert chunk_end - chunk_start <= max_length
    for newer, older in zip(chunks, chunks[1:], strict=False):
        assert older[1] == newer[0]
    # Only the oldest chunk may be short, so no more chunks than needed.
    assert all(chunk_end - chunk_start == max_length for chunk_start, chunk_end in chunks[:-1])
    assert len(chunks) == -(-length // max_length)


def test_pendulum_times_become_plain_utc_datetimes_that_survive_arithmetic() -> None:
    import pendulum

    start = to_utc(pendulum.datetime(2026, 10, 20, tz="Europe/Stockholm"))

    assert type(start) is datetime
    assert (start - timedelta(days=1)).tzinfo is not None
    assert start == datetime(2026, 10, 19, 22, tzinfo=UTC)
