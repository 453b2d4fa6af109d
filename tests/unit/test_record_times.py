"""Records' times: the one-pass reading of a usual page agrees with reading each record's time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_prisjakt.api.record_times import page_time_span, record_time, record_times, time_span

from .record_pages import pages

T0 = datetime(2026, 10, 1, tzinfo=UTC)
MOMENTS = st.integers(-3 * 86_400_000_000, 3 * 86_400_000_000).map(lambda us: T0 + timedelta(microseconds=us))


@settings(max_examples=300, deadline=None)
@given(pages(MOMENTS, usual=True))
def test_a_usual_page_is_spanned_by_the_times_each_record_holds(page: list[dict[str, Any]]) -> None:
    moments = [moment for record in page if (moment := record_time(record["event_time"])) is not None]
    assert len(moments) == len(page)
    assert page_time_span(page) == (min(moments), max(moments))


@settings(max_examples=500, deadline=None)
@given(pages(MOMENTS, usual=False))
def test_a_page_spanned_in_one_pass_holds_only_objects_with_a_readable_time_with_an_offset(page: list[Any]) -> None:
    values = [record.get("event_time") if isinstance(record, dict) else None for record in page]
    # record_time reads a naive time as UTC; only a time written with an offset is read in one pass.
    usual = [isinstance(v, str) and record_time(v) and datetime.fromisoformat(v).tzinfo for v in values]
    moments = [moment for value in values if (moment := record_time(value)) is not None]
    expected = (min(moments), max(moments)) if page and all(usual) else None
    assert page_time_span(page) == expected


@settings(max_examples=500, deadline=None)
@given(pages(MOMENTS, usual=False))
def test_time_span_agrees_with_the_times_read_one_by_one(page: list[Any]) -> None:
    moments = record_times(page)
    assert time_span(page) == ((min(moments), max(moments)) if moments else None)


def test_a_page_of_naive_times_is_read_record_by_record() -> None:
    page = [{"event_time": "2026-10-01T00:00:00"}, {"event_time": "2026-10-01T01:00:00"}]
    assert page_time_span(page) is None
    assert time_span(page) == (T0, T0 + timedelta(hours=1))  # naive times are taken as UTC


def test_times_with_other_offsets_are_compared_as_instants() -> None:
    page = [{"event_time": "2026-10-01T01:00:00+02:00"}, {"event_time": "2026-09-30T23:30:00Z"}]
    assert page_time_span(page) == (
        datetime(2026, 10, 1, 1, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 9, 30, 23, 30, tzinfo=UTC),
    )


def test_an_empty_page_has_no_span() -> None:
    assert page_time_span([]) is None
    assert time_span([]) is None
