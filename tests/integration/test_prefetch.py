"""
Fetching one page ahead, against the sandbox: the next page's request reaches the server while a page
is being written; nothing is fetched ahead into a budget wait or a pause; a failure on either side
stops both, with the failure the export raises, nothing published and no fetching thread left.

No test times anything: the sink runs a check in the middle of writing a page, and the sandbox
records each request as it arrives. Its answers wait a little, as a server over a network does:
pages are fetched ahead only when fetching waits for the server.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_provider_prisjakt.api.resources import EVENTS
from airflow_provider_prisjakt.client.prefetch import PREFETCH_THREAD_NAME
from airflow_provider_prisjakt.exceptions import PrisjaktServerError
from airflow_provider_prisjakt.export.checkpoint import ExportCheckpoint, ExportPaused
from airflow_provider_prisjakt.export.formats import FileFormat
from airflow_provider_prisjakt.export.run import ExportRequest, ExportRun
from airflow_provider_prisjakt.export.sinks.object_store import LocalFolderSink

from .conftest import HookFactory, connect

pytest.register_assert_rewrite("tests.integration.conftest_services")

from .conftest_services import fingerprint, pages_fetched  # noqa: E402

if TYPE_CHECKING:
    from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
    from airflow_provider_prisjakt.testing.config import RecordedRequest

pytestmark = pytest.mark.integration

START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
EXTRACTED_AT = datetime(2026, 11, 2, tzinfo=UTC)
PAGE_SIZE = 100
PAGES = 5
WAIT = 10.0  # seconds an awaited request may take to arrive; never reached when the code is right
# The server is the bottleneck, as over a network: each answer waits this long, well over
# MIN_SERVER_WAIT_SECONDS, so the pages after the first two are fetched ahead.
LATENCY_MS = 20


def prefetch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == PREFETCH_THREAD_NAME]


class WatchedSink(LocalFolderSink):
    """A local folder sink that runs ``while_writing[n]()`` in the middle of writing page ``n`` (from 1)."""

    def __init__(self, while_writing: dict[int, Callable[[], None]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.while_writing = while_writing
        self.pages_written = 0

    def write_rows(self, records: Sequence[Any], scope: str | None) -> None:
        page = self.pages_written + 1
        if page in self.while_writing:
            self.while_writing[page]()
        super().write_rows(records, scope)
        self.pages_written = page


def watched_sink(tmp_path: Path, while_writing: dict[int, Callable[[], None]]) -> WatchedSink:
    """A sink into ``tmp_path/out`` whose parts hold the whole export, so each page is one write."""
    (tmp_path / "spool").mkdir(exist_ok=True)
    return WatchedSink(
        while_writing,
        root=str(tmp_path / "out"),
        prefix="events",
        resource=EVENTS,
        file_format=FileFormat.JSONL,
        compression=None,
        extracted_at=EXTRACTED_AT,
        spool_dir=str(tmp_path / "spool"),
        rows_per_part=100_000,
    )


def export(
    hook: PrisjaktHook, pixel: str, sink: LocalFolderSink, *, checkpoint: ExportCheckpoint | None = None
) -> dict[str, Any]:
    """Export the pixel's events of the window into ``sink``; pause (raise ExportPaused) on a far reset."""
    request = ExportRequest(resource=EVENTS, start=START, end=END, pixel_id=pixel)
    run = ExportRun(hook, request, sink, extracted_at=EXTRACTED_AT, checkpoint=checkpoint)
    return run.execute(pause_on_rate_limit=True)


def published(tmp_path: Path, pixel: str) -> list[dict[str, Any]]:
    folder = tmp_path / "out" / "events" / f"pixel_id={pixel}"
    manifest = json.loads((folder / "_manifest.json").read_text())
    return [json.loads(line) for part in manifest["parts"] for line in (folder / part["name"]).read_text().splitlines()]


def nothing_published(tmp_path: Path) -> bool:
    out = tmp_path / "out"
    return not any(path.is_file() for path in out.rglob("*")) if out.exists() else True


def page_urls(hook: PrisjaktHook, pixel: str) -> list[str]:
    """The URL of each page of the pixel's window, in order, as the export requests them."""
    chunk = hook.request_chunks(START, END)[0]
    pages = list(hook.iter_pages(hook.events_path(pixel), chunk.params))
    return [pages[0].url, *(str(page.next_url) for page in pages[:-1])]


def same_url(recorded: RecordedRequest, url: str) -> bool:
    split = urlsplit(url)
    return (recorded.path, recorded.query) == (split.path, parse_qs(split.query, keep_blank_values=True))


# -- overlap ---------------------------------------------------------------------------------------------


def test_the_next_page_is_requested_while_a_page_is_being_written(sandbox_hook: HookFactory, tmp_path: Path) -> None:
    sandbox, hook = sandbox_hook(events_per_pixel=PAGES * PAGE_SIZE, latency_ms=LATENCY_MS)
    pixel = sandbox.pixel_ids(4242)[0]
    urls = page_urls(hook, pixel)
    assert len(urls) == PAGES
    sandbox.clear_requests()
    held = threading.Event()
    seen: dict[str, Any] = {}

    def hold_page_2() -> None:
        seen["arrived"] = sandbox.wait_for_requests(3, timeout=WAIT)  # page 3's, while page 2 is written
        seen["requests"] = sandbox.requests
        held.set()

    manifest = export(hook, pixel, watched_sink(tmp_path, {2: hold_page_2}))

    assert held.is_set() and seen["arrived"]
    assert len(seen["requests"]) == 3  # one page ahead, never two
    assert same_url(seen["requests"][2], urls[2])
    assert manifest["rows"] == PAGES * PAGE_SIZE
    assert fingerprint(published(tmp_path, pixel)) == fingerprint(list(sandbox.expected_events(pixel, START, END)))
    assert set(pages_fetched(sandbox).values()) == {1}
    assert prefetch_threads() == []


def test_iter_events_requests_the_next_page_while_the_caller_reads_this_one(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook(events_per_pixel=PAGES * PAGE_SIZE, latency_ms=LATENCY_MS)
    events = hook.iter_events(sandbox.pixel_ids(4242)[0], START, END)
    assert isinstance(events, Generator)

    for _ in range(PAGE_SIZE + 1):  # into page 2: the first two pages are fetched in turn, measuring the wait
        next(events)
    assert sandbox.wait_for_requests(3, timeout=WAIT)
    events.close()

    assert len(sandbox.requests) == 3
    assert prefetch_threads() == []


# -- the budget ------------------------------------------------------------------------------------------


def test_nothing_is_fetched_ahead_into_a_wait_for_the_reset(
    sandbox_hook: HookFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3 requests per 3 s window, waited for inline: page 3 spends the window, and page 4 waits for its reset.
    sandbox, _ = sandbox_hook(events_per_pixel=6 * PAGE_SIZE, rate_limit=3, rate_window=3.0, latency_ms=LATENCY_MS)
    hook = connect(monkeypatch, sandbox, max_inline_wait=30)
    pixel = sandbox.pixel_ids(4242)[0]
    while_page_3: dict[str, Any] = {}

    def look() -> None:
        while_page_3.update(threads=prefetch_threads(), requests=len(sandbox.requests))

    manifest = export(hook, pixel, watched_sink(tmp_path, {3: look}))

    assert while_page_3 == {"threads": [], "requests": 3}  # page 4 waits for the reset, not fetched ahead
    assert manifest["rows"] == 6 * PAGE_SIZE
    assert manifest["counters"]["waits"] >= 1 and manifest["counters"]["rate_limited"] == 0
    assert set(pages_fetched(sandbox).values()) == {1}


def test_a_pause_throws_no_fetched_page_away_and_the_resume_fetches_none_twice(
    sandbox_hook: HookFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, _ = sandbox_hook(events_per_pixel=8 * PAGE_SIZE, rate_limit=3, rate_window=600, latency_ms=LATENCY_MS)
    pixel = sandbox.pixel_ids(4242)[0]
    checkpoint: ExportCheckpoint | None = None
    manifest = None
    pauses = 0
    while manifest is None:
        assert pauses < 5, "the export does not make progress"
        fresh_hook = connect(monkeypatch, sandbox, max_inline_wait=1)  # a new worker after each deferral
        served_before = len(pages_fetched(sandbox))
        try:
            manifest = export(fresh_hook, pixel, watched_sink(tmp_path, {}), checkpoint=checkpoint)
        except ExportPaused as paused:
            pauses += 1
            written = paused.checkpoint.rows // PAGE_SIZE - (checkpoint.rows // PAGE_SIZE if checkpoint else 0)
            # Every page the sandbox served in this try is written and covered by the checkpoint.
            assert len(pages_fetched(sandbox)) - served_before == written == 3
            checkpoint = ExportCheckpoint.from_dict(json.loads(json.dumps(paused.checkpoint.to_dict())))
            sandbox.reset_rate_limit()

    assert pauses == 2  # 8 pages at 3 requests per window
    assert manifest["rows"] == 8 * PAGE_SIZE
    fetched = pages_fetched(sandbox)
    assert len(fetched) == 8 and set(fetched.values()) == {1}
    assert Counter(r.status for r in sandbox.requests) == {200: 8}
    assert fingerprint(published(tmp_path, pixel)) == fingerprint(list(sandbox.expected_events(pixel, START, END)))


# -- failures --------------------------------------------------------------------------------------------


def test_a_page_failing_while_the_one_before_is_written_fails_the_export_after_that_write(
    sandbox_hook: HookFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, _ = sandbox_hook(events_per_pixel=PAGES * PAGE_SIZE, latency_ms=LATENCY_MS)
    hook = connect(monkeypatch, sandbox, max_retries=1)  # a 500 is final
    pixel = sandbox.pixel_ids(4242)[0]
    seen: dict[str, Any] = {}

    def fail_page_4() -> None:  # while page 2 is written, page 3 is requested: the next request is page 4's
        assert sandbox.wait_for_requests(3, timeout=WAIT)
        sandbox.fail_next("500")

    def while_page_3() -> None:
        seen["arrived"] = sandbox.wait_for_requests(4, timeout=WAIT)
        seen["status"] = sandbox.requests[-1].status

    sink = watched_sink(tmp_path, {2: fail_page_4, 3: while_page_3})
    with pytest.raises(PrisjaktServerError):
        export(hook, pixel, sink)

    assert seen == {"arrived": True, "status": 500}
    assert sink.pages_written == 3  # page 3 was written whole before the error was raised
    assert len(sandbox.requests) == 4
    assert nothing_published(tmp_path)
    assert prefetch_threads() == []


def test_a_write_failing_while_the_next_page_is_in_flight_fails_the_export_with_the_sink_s_error(
    sandbox_hook: HookFactory, tmp_path: Path
) -> None:
    # Each answer waits 300 ms after the sandbox records its request: long enough to find it in flight.
    sandbox, hook = sandbox_hook(events_per_pixel=PAGES * PAGE_SIZE, latency_ms=300)
    pixel = sandbox.pixel_ids(4242)[0]
    in_flight: list[list[threading.Thread]] = []

    def fail_page_2() -> None:
        assert sandbox.wait_for_requests(3, timeout=WAIT)  # page 3's request is sent, its answer not yet in
        in_flight.append(prefetch_threads())
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left on device"):
        export(hook, pixel, watched_sink(tmp_path, {2: fail_page_2}))

    assert len(in_flight) == 1 and len(in_flight[0]) == 1
    assert not in_flight[0][0].is_alive()  # joined before the error left the export
    assert prefetch_threads() == []
    assert len(sandbox.requests) == 3  # nothing fetched after the failure
    assert nothing_published(tmp_path)
