"""The arithmetic of an estimate: page counts from Link headers and from the time reach, budget hours, progress."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_prisjakt.api.estimate import (
    Estimate,
    PagingProgress,
    budget_hours,
    eta_seconds,
    format_duration,
    pages_from_links,
    pages_from_reach,
    paging_position,
    plan,
)
from airflow_provider_prisjakt.api.ratelimit import RateLimitStatus
from airflow_provider_prisjakt.api.windows import request_chunks

API = "https://api.example/click-conversion/pixels/p1/events"
START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 10, 31, tzinfo=UTC)


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@dataclass(frozen=True)
class FakePage:
    records: list[Any]
    url: str
    next_url: str | None
    number: int
    last_url: str | None = None


def events(newest: datetime, oldest: datetime, count: int) -> list[dict[str, Any]]:
    """``count`` events spread evenly from ``newest`` back to ``oldest``, newest first."""
    step = (newest - oldest) / max(count - 1, 1)
    return [
        {"id": f"e{i}", "click_id": f"c{i}", "event_time": (newest - i * step).isoformat().replace("+00:00", "Z")}
        for i in range(count)
    ]


# -- reading a position ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "position"),
    [
        ("40", 40),
        (b64("o:1900"), 1900),
        (b64("offset=300"), 300),
        (b64('{"id":"x1","t":5}'), None),  # two numbers: not a position
        (b64("no digits here"), None),
        ("٣", None),  # a digit, but not ASCII
        ("abc!", None),
        ("", None),
        (None, None),
    ],
)
def test_a_paging_parameter_is_read_as_a_number_plainly_or_inside_an_opaque_cursor(
    value: str | None, position: int | None
) -> None:
    assert paging_position(value) == position


# -- pages from links ------------------------------------------------------------------------------


def test_a_page_without_next_is_the_last() -> None:
    assert pages_from_links(3, f"{API}?page=3", None, f"{API}?page=1", 10) == 3


def test_a_last_link_equal_to_the_next_makes_one_page_more() -> None:
    assert pages_from_links(1, API, f"{API}?cursor=zz", f"{API}?cursor=zz", 100) == 2


@pytest.mark.parametrize(
    ("number", "url", "next_query", "last_query", "records", "pages"),
    [
        (1, API, "page=2", "page=7", 50, 7),  # page numbers, the first page names none
        (3, f"{API}?page=3", "page=4", "page=7", 50, 7),
        (1, f"{API}?from=a&limit=100", "from=a&limit=100&offset=100", "from=a&limit=100&offset=1900", 100, 20),
        (2, f"{API}?offset=100", "offset=200", "offset=1900", 100, 20),
        (1, API, f"cursor={b64('o:100')}", f"cursor={b64('o:1900')}", 100, 20),  # the sandbox's cursors
        (1, API, f"cursor={b64('o:2')}", f"cursor={b64('o:10')}", 2, 6),  # offset 2 on a page of 2 records
    ],
)
def test_the_page_count_is_read_from_the_parameter_in_which_next_and_last_differ(
    number: int, url: str, next_query: str, last_query: str, records: int, pages: int
) -> None:
    assert pages_from_links(number, url, f"{API}?{next_query}", f"{API}?{last_query}", records) == pages


@pytest.mark.parametrize(
    ("next_query", "last_query", "records"),
    [
        ("cursor=8f14e45fceea167a", "cursor=c9f0f895fb98ab91", 100),  # opaque keyset cursors
        (f"cursor={b64(json.dumps({'id': 'a', 't': 1}))}", f"cursor={b64(json.dumps({'id': 'b', 't': 9}))}", 100),
        ("page=2&sort=a", "page=7&sort=b", 100),  # two parameters differ
        ("offset=100", "offset=1950", 100),  # does not step evenly to the last
        ("offset=37", "offset=1900", 100),  # the next page does not start a page further
        ("offset=1900", "offset=100", 100),  # the last before the next
    ],
)
def test_links_that_do_not_tell_the_count_give_none(next_query: str, last_query: str, records: int) -> None:
    assert pages_from_links(1, API, f"{API}?{next_query}", f"{API}?{last_query}", records) is None


def test_no_last_link_or_one_to_another_path_gives_none() -> None:
    assert pages_from_links(1, API, f"{API}?page=2", None, 10) is None
    assert pages_from_links(1, API, f"{API}?page=2", "https://api.example/other?page=9", 10) is None


# -- pages from the time reach ---------------------------------------------------------------------


def test_the_time_reach_scales_the_pages_read_to_the_whole_window() -> None:
    top, bottom = END, START
    reached = top - (top - bottom) * 0.05  # one page spans a twentieth of the window
    assert pages_from_reach(1, top, reached, bottom) == 20
    assert pages_from_reach(4, top, top - (top - bottom) * 0.2, bottom) == 20


def test_the_time_reach_counts_at_least_one_page_more_and_needs_a_span() -> None:
    assert pages_from_reach(3, END, START - timedelta(days=1), START) == 4  # reached past the bottom: one more
    assert pages_from_reach(1, END, END, START) is None  # every record at the top: no span to scale


# -- budget and time -------------------------------------------------------------------------------


def test_the_estimate_says_the_plan_in_one_sentence() -> None:
    planned = Estimate("events", 365.0, {f"p{i}": 150 for i in range(50)}, other_requests=1, limit=10_000)

    assert planned.requests == 7501
    assert planned.hours == pytest.approx(0.7501)
    assert str(planned) == "365 days × 50 pixels ≈ 7,501 requests ≈ 0.75 hours at 10,000/h"


def test_the_estimate_reads_an_unknown_limit_as_the_documented_one_and_names_other_windows() -> None:
    assert str(Estimate("events", 1.0, {"p": 40})) == "1 day × 1 pixel ≈ 40 requests ≈ 0.00 hours at 10,000/h"
    assert budget_hours(200, 100, 10.0) == pytest.approx(20 / 3600)
    assert str(Estimate("events", 0.5, {"p": 200}, limit=100, window_seconds=10.0)).endswith("at 100 per 10 s")


def test_the_eta_waits_for_the_reset_when_the_budget_is_short() -> None:
    now = datetime(2026, 11, 2, 12, tzinfo=UTC)
    status = RateLimitStatus(limit=10_000, remaining=100, reset_at=now + timedelta(minutes=20), observed_at=now)

    assert eta_seconds(50, 10.0, status, now) == pytest.approx(5.0)  # within the budget: the pace decides
    assert eta_seconds(5_000, 10.0, status, now) == pytest.approx(1200.0)  # the reset, then the new budget
    assert eta_seconds(25_000, 10.0, status, now) == pytest.approx(1200.0 + 2 * 3600)
    assert eta_seconds(10, 0.0, None, now) == float("inf")


@pytest.mark.parametrize(
    ("seconds", "text"), [(12.4, "12s"), (250, "4m10s"), (3900, "1h05m"), (float("inf"), "unknown")]
)
def test_durations_read_as_people_write_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# -- progress --------------------------------------------------------------------------------------


def listing(
    pages: int, per_page: int, start: datetime = START, end: datetime = END, last: bool = True
) -> list[FakePage]:
    """A newest-first listing of ``pages`` full pages over ``[start, end)``, with offset links."""
    records = events(end - timedelta(seconds=1), start, pages * per_page)

    def url(n: int) -> str:
        return API if n == 1 else f"{API}?offset={(n - 1) * per_page}"

    return [
        FakePage(
            records[(n - 1) * per_page : n * per_page],
            url(n),
            url(n + 1) if n < pages else None,
            n,
            url(pages) if last else None,
        )
        for n in range(1, pages + 1)
    ]


def test_progress_counts_pages_of_each_pixel_and_those_left() -> None:
    chunks = request_chunks(START, END)
    progress = PagingProgress()
    first, second = listing(5, 10), listing(3, 10)

    progress.page_read(0, 3, chunks, 0, first[0], resumed=False)

    assert progress.describe() == "pixel 1 of 3, page 1 of 5"
    assert progress.exact
    assert progress.pages_left() == 4 + 2 * 5  # the pixels not seen count as the first
    for page in first[1:]:
        progress.page_read(0, 3, chunks, 0, page, resumed=False)
    progress.page_read(1, 3, chunks, 0, second[0], resumed=False)
    assert progress.describe() == "pixel 2 of 3, page 1 of 3"
    assert progress.pages_left() == 2 + 4  # the last pixel counts as the mean of 5 and 3
    assert progress.pages_read == 6


def test_without_a_last_link_the_count_comes_from_the_time_reach() -> None:
    chunks = request_chunks(START, END)
    progress = PagingProgress()

    progress.page_read(0, 1, chunks, 0, listing(20, 50, last=False)[0], resumed=False)

    assert not progress.exact
    assert progress.listing_pages == 20
    assert progress.describe() == "pixel 1 of 1, page 1 of ~20"


def test_later_chunks_of_a_pixel_are_scaled_by_their_length() -> None:
    start = END - timedelta(days=120)
    chunks = request_chunks(start, END)  # 60 days, 60 days (less the margin), a second
    progress = PagingProgress()

    progress.page_read(0, 1, chunks, 0, listing(10, 10, chunks[0].start, END)[0], resumed=False)

    assert len(chunks) == 3
    assert progress.target_pages(0) == 10 + 10 + 1  # a chunk costs a request however short
    assert not progress.estimate("events", ["p"], 120.0).exact


def test_follow_ups_count_the_distinct_values_not_known_in_the_window() -> None:
    chunks = request_chunks(START, END)
    page = listing(2, 4)[0]
    records = [
        *page.records,
        {**page.records[0], "id": "again"},
        {"id": "outside", "click_id": "x", "event_time": "2027-01-01T00:00:00Z"},
    ]
    progress = PagingProgress(follows="click_id")

    progress.page_read(
        0, 1, chunks, 0, FakePage(records, page.url, page.next_url, 1, page.last_url), resumed=False, known={"c1"}
    )

    assert progress.follow_ups == 3  # c0, c2, c3: c0 twice, c1 known, x outside the window
    assert progress.requests_left() == round(1 * (1 + 3))
    assert progress.estimate("clicks", ["p"], 30.0).requests == 2 + 6


def test_the_first_page_calls_back_once() -> None:
    chunks = request_chunks(START, END)
    calls: list[int] = []
    progress = PagingProgress()
    progress.on_first_page = lambda: calls.append(progress.pages_read)

    for page in listing(3, 10):
        progress.page_read(0, 1, chunks, 0, page, resumed=False)

    assert calls == [1]


def test_a_resumed_listing_measures_its_reach_from_its_first_page() -> None:
    chunks = request_chunks(START, END)
    pages = listing(20, 50, last=False)
    progress = PagingProgress()

    progress.page_read(0, 1, chunks, 0, FakePage(pages[10].records, pages[10].url, pages[10].next_url, 1), resumed=True)

    assert progress.listing_pages == 10  # the pages from the resume point on
    assert progress.estimate("events", ["p"], 30.0).pages == {"p": 10}


def test_after_a_resume_the_targets_before_it_are_left_out() -> None:
    chunks = request_chunks(START, END)
    progress = PagingProgress()

    progress.page_read(2, 4, chunks, 0, listing(4, 10)[0], resumed=False)

    assert progress.estimate("events", ["a", "b", "c", "d"], 30.0).pages == {"c": 4, "d": 4}
    assert progress.pages_left() == 3 + 4


def test_plan_probes_one_page_per_pixel_and_no_page_for_summaries() -> None:
    chunks = request_chunks(START, END)
    asked: list[str] = []

    def pages(path: str, query: Mapping[str, str]) -> Iterator[FakePage]:
        asked.append(path)
        yield from listing(7, 10)

    planned = plan("events", ["a", "b"], chunks, pages, lambda pixel: f"pixels/{pixel}/events")
    summaries = plan("purchase_summary", ["a", "b"], chunks, None, lambda pixel: pixel)

    assert asked == ["pixels/a/events", "pixels/b/events"]
    assert planned.pages == {"a": 7, "b": 7} and planned.exact
    assert summaries.pages == {"a": 30, "b": 30}  # a request per pixel and day
