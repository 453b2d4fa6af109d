"""The readers' window rules against an in-memory API that reads ``from``/``to`` in each plausible way."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from airflow_provider_prisjakt.api.resources import EVENTS
from airflow_provider_prisjakt.api.windows import RequestChunk, request_chunks
from airflow_provider_prisjakt.client.budget import RequestBudget
from airflow_provider_prisjakt.client.transport import Page
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError, PrisjaktError
from airflow_provider_prisjakt.export.checkpoint import Cursor
from airflow_provider_prisjakt.export.readers import ClicksReader, EventsReader, PurchaseSummaryReader, reader_for
from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
from airflow_provider_prisjakt.testing.bounds import served_window

T0 = datetime(2026, 10, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
READER_LOG = "airflow_provider_prisjakt.export.readers"


def event(n: int, moment: datetime | None) -> dict[str, Any]:
    """Event ``n`` at ``moment`` (no ``event_time`` when ``None``), with click ``c<n>``."""
    record: dict[str, Any] = {"id": f"e{n}", "click_id": f"c{n}"}
    if moment is not None:
        record["event_time"] = moment.isoformat().replace("+00:00", "Z")
    return record


def parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class FakeApi:
    """
    The hook's reading surface over a list of events: a server that reads ``from``/``to`` as
    ``server_bounds`` (the sandbox's semantics) and serves ``page_size`` events a page, newest first.
    """

    def __init__(
        self,
        events: list[dict[str, Any]],
        *,
        server_bounds: str = "exclusive",
        window_bounds: str = "half_open",
        page_size: int = 2,
        chunk_length: timedelta = timedelta(days=60),
        summary: Any = None,
    ) -> None:
        self.events = sorted(events, key=lambda e: e.get("event_time", ""), reverse=True)
        self.server_bounds = server_bounds
        self.settings = SimpleNamespace(window_bounds=window_bounds)
        self.page_size = page_size
        self.chunk_length = chunk_length
        self.summary = summary
        self.requests: list[str] = []
        self.budget = RequestBudget()  # no rate-limit headers: every page is fetched ahead

    def request_chunks(self, start: datetime, end: datetime) -> list[RequestChunk]:
        return request_chunks(start, end, self.settings.window_bounds, self.chunk_length)

    events_path = staticmethod(PrisjaktHook.events_path)
    purchase_summary_path = staticmethod(PrisjaktHook.purchase_summary_path)

    def iter_pages(
        self, path: str, params: Mapping[str, Any] | None = None, *, start_url: str | None = None
    ) -> Iterator[Page]:
        url = start_url or f"{path}?{urlencode({**(params or {}), 'page': 0})}"
        while url:
            self.requests.append(url)
            query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
            served = served_window(self.server_bounds, parse(query["from"]), parse(query["to"]))
            selected = [e for e in self.events if self._serves(served, e)]
            number = int(query["page"])
            records = selected[number * self.page_size : (number + 1) * self.page_size]
            more = (number + 1) * self.page_size < len(selected)
            next_url = f"{path}?{urlencode({**query, 'page': number + 1})}" if more else None
            yield Page(records=records, url=url, next_url=next_url, number=number + 1)
            url = next_url

    @staticmethod
    def _serves(served: Any, record: dict[str, Any]) -> bool:
        try:
            moment = parse(record["event_time"]).timestamp()
        except (KeyError, ValueError):
            return True  # the server has its own idea of the record's time; it is sent
        after_start = moment > served.start if served.start_open else moment >= served.start
        before_end = moment <= served.end if served.end_closed else moment < served.end
        return after_start and before_end

    def get_click(self, click_id: str) -> dict[str, Any]:
        self.requests.append(f"clicks/{click_id}")
        return {"id": click_id}

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        self.requests.append(f"{path}?{urlencode(dict(params or {}))}")
        return self.summary


def read(reader: EventsReader | ClicksReader, cursor: Cursor | None = None) -> list[dict[str, Any]]:
    return [record for batch in reader.batches(["p1"], cursor or Cursor()) for record in batch.records]


# -- events ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("server_bounds", ["exclusive", "inclusive", "left_open", "date_only"])
def test_events_are_kept_by_the_window_holding_them_whatever_the_server_sends(server_bounds: str) -> None:
    # One event an hour for three days; read the middle day (the default extra, half_open).
    events = [event(n, T0 + n * HOUR) for n in range(72)]
    api = FakeApi(events, server_bounds=server_bounds, page_size=10)
    reader = EventsReader(api, T0 + 24 * HOUR, T0 + 48 * HOUR)

    got = read(reader)

    assert sorted(e["id"] for e in got) == sorted(f"e{n}" for n in range(24, 48))
    assert reader.counters()["rows_without_time"] == 0


def test_a_record_another_chunk_holds_is_not_remembered_as_seen_by_the_chunk_that_drops_it() -> None:
    # Chunks of six hours, newest first. Each request starts a second early, and an inclusive server
    # also sends the event at its end: the event a second before a chunk edge comes first with the
    # newer chunk (which drops it), then with its own; the event on the edge, the other way round.
    edge = timedelta(hours=6)
    events = [event(n, T0 + n * HOUR) for n in range(25)]
    events += [event(100 + k, T0 + k * edge - timedelta(seconds=1)) for k in (1, 2, 3)]
    api = FakeApi(events, server_bounds="inclusive", page_size=3, chunk_length=edge + timedelta(seconds=1))
    reader = EventsReader(api, T0, T0 + 24 * HOUR)

    got = read(reader)

    assert len(api.request_chunks(T0, T0 + 24 * HOUR)) == 4
    assert sorted(e["id"] for e in got) == sorted([f"e{n}" for n in range(24)] + ["e101", "e102", "e103"])
    assert reader.counters() == {"rows_outside_window": 1, "rows_without_time": 0}  # e24, at the window's end


def test_records_without_a_readable_time_are_kept_and_counted() -> None:
    events = [event(1, T0 + HOUR), event(2, None), {**event(3, None), "event_time": "yesterday"}]
    reader = EventsReader(FakeApi(events), T0, T0 + 2 * HOUR)

    assert sorted(e["id"] for e in read(reader)) == ["e1", "e2", "e3"]
    assert reader.counters() == {"rows_outside_window": 0, "rows_without_time": 2}


def test_the_window_bounds_hint_is_logged_once_and_the_counts_once_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    events = [event(n, T0 + n * HOUR) for n in range(72)]
    reader = EventsReader(FakeApi(events, server_bounds="date_only"), T0 + 30 * HOUR, T0 + 40 * HOUR)
    caplog.set_level(logging.INFO, logger=READER_LOG)

    got = read(reader)

    assert len(got) == 10
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "window_bounds=dates" in warnings[0]
    counts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Dropped")]
    assert counts == [
        "Dropped 14 record(s) outside the window 2026-10-02T06:00:00Z to 2026-10-02T16:00:00Z; "
        "kept 0 without a readable event_time"
    ]


def test_a_server_that_keeps_to_the_window_logs_nothing_about_it(caplog: pytest.LogCaptureFixture) -> None:
    events = [event(n, T0 + n * HOUR) for n in range(5)]
    reader = EventsReader(FakeApi(events), T0, T0 + 5 * HOUR)
    caplog.set_level(logging.INFO, logger=READER_LOG)

    assert len(read(reader)) == 5
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]


# -- clicks ----------------------------------------------------------------------------------------


def test_clicks_are_fetched_only_for_the_events_the_window_keeps() -> None:
    events = [event(n, T0 + n * HOUR) for n in range(6)]
    api = FakeApi(events, server_bounds="inclusive", page_size=10)
    reader = ClicksReader(api, T0 + HOUR, T0 + 4 * HOUR)

    clicks = read(reader)

    assert [c["id"] for c in clicks] == ["c3", "c2", "c1"]
    assert [url for url in api.requests if url.startswith("clicks/")] == ["clicks/c3", "clicks/c2", "clicks/c1"]
    assert reader.counters()["rows_outside_window"] == 1  # e4, sent for the inclusive to


def test_a_clicks_resume_inside_a_page_counts_no_dropped_event_twice() -> None:
    # Page one: e5 (outside, the inclusive server's extra), e4, e3; the run stopped after e4's click.
    events = [event(n, T0 + n * HOUR) for n in range(6)]
    api = FakeApi(events, server_bounds="inclusive", page_size=3)
    first_page = next(api.iter_pages("pixels/p1/events", api.request_chunks(T0, T0 + 5 * HOUR)[0].params))
    reader = ClicksReader(api, T0, T0 + 5 * HOUR)

    clicks = read(reader, Cursor(0, 0, first_page.url, 2))

    assert [c["id"] for c in clicks] == ["c3", "c2", "c1", "c0"]
    assert reader.counters()["rows_outside_window"] == 0  # e5 was counted by the run before


def test_clicks_the_destination_holds_are_not_fetched_and_are_counted_as_saved() -> None:
    events = [event(n, T0 + n * HOUR) for n in range(6)]
    api = FakeApi(events, page_size=2)
    reader = ClicksReader(api, T0, T0 + 6 * HOUR)
    reader.known_keys = frozenset({"c1", "c4"})

    clicks = read(reader)

    assert [c["id"] for c in clicks] == ["c5", "c3", "c2", "c0"]
    assert [url for url in api.requests if url.startswith("clicks/")] == [
        "clicks/c5",
        "clicks/c3",
        "clicks/c2",
        "clicks/c0",
    ]
    assert reader.counters()["requests_saved"] == 2


def test_events_of_one_click_pages_apart_cost_one_click_request() -> None:
    # Ten pages of two events; the newest and the oldest event share a click, far beyond the page memory.
    events = [event(n, T0 + n * HOUR) for n in range(20)]
    events[0]["click_id"] = "c19"
    api = FakeApi(events, page_size=2)
    reader = ClicksReader(api, T0, T0 + 20 * HOUR)

    clicks = read(reader)

    assert [url for url in api.requests if url.startswith("clicks/")].count("clicks/c19") == 1
    assert sorted(c["id"] for c in clicks) == sorted(f"c{n}" for n in range(1, 20))
    assert reader.counters()["requests_saved"] == 0  # not the destination's doing


# -- purchase summaries ---------------------------------------------------------------------------


def summary_batches(reader: PurchaseSummaryReader) -> list[list[dict[str, Any]]]:
    return [batch.records for batch in reader.batches(["p1"], Cursor())]


def test_summaries_are_read_by_whole_utc_days_as_the_window_bounds_say(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApi([], window_bounds="inclusive", summary=[{"currency": "SEK", "purchases": 2, "revenue": "10.5"}])
    reader = PurchaseSummaryReader(api, T0 + 2 * HOUR, T0 + 26 * HOUR)
    caplog.set_level(logging.INFO, logger=READER_LOG)

    batches = summary_batches(reader)

    assert api.requests == [
        "pixels/p1/purchase-summary?from=2026-10-01T00%3A00%3A00Z&to=2026-10-01T23%3A59%3A59.999Z",
        "pixels/p1/purchase-summary?from=2026-10-02T00%3A00%3A00Z&to=2026-10-02T23%3A59%3A59.999Z",
    ]
    assert [[(r["day"], r["currency"], r["purchases"], r["revenue"], r["complete"]) for r in b] for b in batches] == [
        [("2026-10-01", "SEK", 2, "10.5", True)],
        [("2026-10-02", "SEK", 2, "10.5", True)],
    ]
    [widened] = [r.getMessage() for r in caplog.records if "whole UTC days" in r.getMessage()]
    assert widened.endswith(
        "the window 2026-10-01T02:00:00Z to 2026-10-02T02:00:00Z "
        "is read as 2026-10-01T00:00:00Z to 2026-10-03T00:00:00Z"
    )


def test_a_day_not_over_yet_is_marked_incomplete() -> None:
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    api = FakeApi([], summary={"currencies": [{"currency": "EUR", "count": 1, "total_amount": 3}]})
    reader = PurchaseSummaryReader(api, today - timedelta(days=1), now)

    assert [[r["complete"] for r in batch] for batch in summary_batches(reader)] == [[True], [False]]


def test_a_summary_that_cannot_be_read_fails_naming_the_members_it_had() -> None:
    api = FakeApi([], summary={"stats": {"n": 3}, "generated": "now"})
    reader = PurchaseSummaryReader(api, T0, T0 + 24 * HOUR)

    with pytest.raises(PrisjaktError, match=r"members generated, stats.*GET pixels/p1/purchase-summary"):
        summary_batches(reader)


def test_a_resource_without_a_reader_is_refused_by_name() -> None:
    orphan = dataclasses.replace(EVENTS, name="orphan")

    with pytest.raises(PrisjaktConfigError, match="'orphan' has no reader: register one in READERS"):
        reader_for(orphan)
