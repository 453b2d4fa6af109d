"""
Readers: how each resource is read from the API.

A reader knows three things about its resource: which targets it reads (the pixels of the request,
every pixel of the shop, or the shop itself), which batches of records it yields for them, and what
its :class:`Cursor` means. Readers are registered by resource name (:data:`READERS`); the export
loop and :func:`read_events` (behind ``PrisjaktHook.iter_events``) ask :func:`reader_for` and never
dispatch on a name. A new resource is one reader plus its columns: a reader here in :data:`READERS`,
its :class:`~airflow_provider_prisjakt.api.resources.Resource` in ``RESOURCES`` of ``api/resources.py``,
and nothing else (``tests/integration/test_new_resource.py`` adds one and exports it).

Each event is kept only by the window ``[start, end)`` holding its ``event_time``, whatever the
server does with ``from``/``to``; summaries, which cannot be filtered, are read by whole UTC days.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from airflow_provider_prisjakt.api.estimate import PagingProgress
from airflow_provider_prisjakt.api.recent_keys import RecentKeys
from airflow_provider_prisjakt.api.resources import (
    CLICKS,
    EVENTS,
    PIXELS,
    PURCHASE_SUMMARY,
    UnreadableSummaryError,
    purchase_summary_records,
)
from airflow_provider_prisjakt.api.windows import WindowError, WindowFilter, format_api_time, summary_requests, to_utc
from airflow_provider_prisjakt.client.prefetch import Prefetch, sends_at_once
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError, PrisjaktError, PrisjaktNotFoundError
from airflow_provider_prisjakt.export.checkpoint import Cursor

if TYPE_CHECKING:
    from airflow_provider_prisjakt.api.resources import Resource
    from airflow_provider_prisjakt.api.windows import RequestChunk, TimeLike
    from airflow_provider_prisjakt.hooks.prisjakt import Page, PrisjaktHook

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def cursor_after(target: int, chunk: int, page: Page) -> Cursor:
    """Return the cursor after ``page`` of a paged list: its next URL, or the next chunk's first page."""
    if page.next_url:
        return Cursor(target, chunk, page.next_url, 0)
    return Cursor(target, chunk + 1, None, 0)


@dataclass(frozen=True)
class Batch:
    """
    Records read for one target, and where the export continues after them.

    :param records: the records, as the API sent them (the reader builds summary records).
    :param scope: the target they were read for (the pixel), or ``None`` for shop-scoped resources;
        the resource's scope column is filled from it whether or not the records name it.
    :param cursor: where to continue once these records are written.
    """

    records: list[dict[str, Any]]
    scope: str | None
    cursor: Cursor


class Reader(ABC):
    """
    How one resource is read: its targets, its batches, and what its cursor means.

    :param hook: the Prisjakt hook.
    :param start: window start (inclusive, UTC).
    :param end: window end (exclusive, UTC).
    :param memory: the de-duplication memory (a fresh one by default; a resume passes the checkpoint's).
    """

    resource: ClassVar[Resource]

    #: Whether the reader skips records whose key (as text) is in ``known_keys``, which the export
    #: loop then sets to what the destination holds (``Sink.known_keys``).
    skips_known_keys: ClassVar[bool] = False
    known_keys: Container[str] = frozenset()
    #: The pages read and left, for the export's estimate and progress lines (paged readers only).
    progress: PagingProgress | None = None
    #: Whether the next page is fetched while the caller writes this one, when the budget sends it at
    #: once (:meth:`fetch_ahead`). Only for a reader that sends no other request while reading a page.
    prefetch: ClassVar[bool] = True

    def __init__(self, hook: PrisjaktHook, start: datetime, end: datetime, memory: RecentKeys | None = None) -> None:
        self.hook = hook
        self.start = start
        self.end = end
        self.memory = RecentKeys() if memory is None else memory

    @classmethod
    @abstractmethod
    def check_scope(cls, pixel_id: str | None, shop_id: int | str | None) -> None:
        """
        Check that the request names what this resource is read for, before any request is sent.

        :raises PrisjaktConfigError: saying which argument to give.
        """

    @abstractmethod
    def targets(self, pixel_id: str | None, shop_id: int | str | None) -> list[str]:
        """Return the targets to read, in order (a cursor's ``target`` indexes this list)."""

    @abstractmethod
    def batches(self, targets: Sequence[str], cursor: Cursor) -> Iterator[Batch]:
        """Yield the batches of ``targets`` from ``cursor`` on; each holds the cursor after it."""

    def counters(self) -> dict[str, int]:
        """Return what this reader counted so far (records it dropped or doubts), for the export's counters."""
        return {}

    def fetch_ahead(self, pages: Iterator[_T]) -> Prefetch[_T]:
        """
        Return ``pages`` (fetching only), each fetched one ahead while the budget sends requests at
        once and fetching waits for the server (:class:`Prefetch`), if :attr:`prefetch`; the caller
        closes it (``with``), which waits for a fetch in flight.
        """
        return Prefetch(pages, (lambda: sends_at_once(self.hook.budget)) if self.prefetch else None)


class PixelReader(Reader):
    """A resource read per pixel: the request's pixel, or every pixel of the shop."""

    @classmethod
    def check_scope(cls, pixel_id: str | None, shop_id: int | str | None) -> None:
        """Require ``pixel_id``, or ``shop_id`` to read every pixel of the shop."""
        if not pixel_id and shop_id in (None, ""):
            raise PrisjaktConfigError("Give pixel_id, or shop_id to export every pixel of the shop")

    def targets(self, pixel_id: str | None, shop_id: int | str | None) -> list[str]:
        """Return ``[pixel_id]``, or the ids of the shop's pixels."""
        self.check_scope(pixel_id, shop_id)
        if pixel_id:
            return [str(pixel_id)]
        assert shop_id is not None  # check_scope
        pixels = [str(pixel["id"]) for pixel in self.hook.get_pixels(shop_id)]
        log.info("Shop %s has %s pixel(s)", shop_id, len(pixels))
        return pixels


class EventPagesReader(PixelReader):
    """
    A resource read from the pixels' event pages. The cursor names the target, the window chunk
    and the page URL to fetch next, so a resume never fetches a written page again.

    Each chunk is requested as the connection's ``window_bounds`` say, a little wider than its share
    of the window; :meth:`in_window` keeps the events of the share. One filter serves the reader, so
    its counts (:meth:`counters`) are the export's. :attr:`progress` counts the pages read and left.
    """

    #: The member of an event whose value costs one request more (the clicks reader's ``click_id``).
    follows: ClassVar[str | None] = None

    def __init__(self, hook: PrisjaktHook, start: datetime, end: datetime, memory: RecentKeys | None = None) -> None:
        super().__init__(hook, start, end, memory)
        self.window_filter = WindowFilter(start, end)
        self.progress: PagingProgress = PagingProgress(self.follows)

    def pages(self, targets: Sequence[str], cursor: Cursor) -> Iterator[tuple[int, int, RequestChunk, Page]]:
        """Yield ``(target, chunk, request, page)`` of every event page from the cursor on, fetched one ahead."""
        chunks = self.hook.request_chunks(self.start, self.end)
        with self.fetch_ahead(self.fetch_pages(targets, cursor, chunks)) as fetched:
            for target, chunk, page in fetched:
                resumed = (target, chunk) == (cursor.target, cursor.chunk) and cursor.page_url is not None
                self.progress.page_read(
                    target, len(targets), chunks, chunk, page, resumed=resumed, known=self.known_keys
                )
                yield target, chunk, chunks[chunk], page
                self.memory.turn_page()
                del page  # released before the page after the next is fetched
        self._log_counts()

    def fetch_pages(
        self, targets: Sequence[str], cursor: Cursor, chunks: Sequence[RequestChunk]
    ) -> Iterator[tuple[int, int, Page]]:
        """Fetch ``(target, chunk, page)`` of every event page from the cursor on; requests only, no reader state."""
        for target in range(cursor.target, len(targets)):
            path = self.hook.events_path(targets[target])
            first_chunk = cursor.chunk if target == cursor.target else 0
            for chunk in range(first_chunk, len(chunks)):
                resume_url = cursor.page_url if (target, chunk) == (cursor.target, cursor.chunk) else None
                for page in self.hook.iter_pages(path, chunks[chunk].params, start_url=resume_url):
                    yield target, chunk, page
                    del page  # see PrisjaktHook.iter_pages

    def in_window(self, records: list[dict[str, Any]], request: RequestChunk) -> list[dict[str, Any]]:
        """Return the records of ``request``'s share of the window; say once which ``window_bounds`` fit."""
        kept = self.window_filter.keep(records, request)
        hint = self.window_filter.take_hint()
        if hint:
            log.warning("%s", hint)
        return kept

    def counters(self) -> dict[str, int]:
        """Return ``rows_outside_window`` and ``rows_without_time`` of this reader's pages."""
        return self.window_filter.counts()

    def _log_counts(self) -> None:
        counts = self.window_filter.counts()
        if any(counts.values()):
            outside, undated = counts["rows_outside_window"], counts["rows_without_time"]
            window = format_api_time(self.start), format_api_time(self.end)
            message = "Dropped %s record(s) outside the window %s to %s; kept %s without a readable event_time"
            log.info(message, outside, *window, undated)


class EventsReader(EventPagesReader):
    """Conversion events of the window, page by page, each once."""

    resource = EVENTS

    def batches(self, targets: Sequence[str], cursor: Cursor) -> Iterator[Batch]:
        """Yield each event page's new records of the window."""
        for target, chunk, request, page in self.pages(targets, cursor):
            # Filtered before de-duplication: a record another chunk holds must not count as seen here.
            records = self.memory.keep_new(self.in_window(page.records, request))
            yield Batch(records, targets[target], cursor_after(target, chunk, page))
            del page, records  # released before the next page is fetched and decoded


class ClicksReader(EventPagesReader):
    """
    The click behind each event of the window, each click once, unless the destination holds it.

    A click costs a request: one in ``known_keys`` is not fetched (``requests_saved`` counts them),
    nor one fetched earlier in the run (memory grows with the run's distinct clicks).

    The cursor points into the events page being worked through (``page_offset`` events done): a
    resume fetches that events page again and skips the events whose clicks are already written.
    Its click requests go out while an events page is worked through, so the next events page is
    not fetched ahead: the hook sends one request at a time.
    """

    resource = CLICKS
    skips_known_keys = True
    prefetch = False
    follows = "click_id"

    def __init__(self, hook: PrisjaktHook, start: datetime, end: datetime, memory: RecentKeys | None = None) -> None:
        super().__init__(hook, start, end, memory)
        self.fetched: set[str] = set()
        self.requests_saved = 0

    def batches(self, targets: Sequence[str], cursor: Cursor) -> Iterator[Batch]:
        """Yield the click of each event of the window (none for an event without one), then the page's end."""
        for target, chunk, request, page in self.pages(targets, cursor):
            pixel_id = targets[target]
            skip = cursor.page_offset if page.url == cursor.page_url else 0
            for index, event in enumerate(page.records):
                # Placed one by one, so the offset counts the page as sent and a resume counts no drop twice.
                if index < skip or not self.in_window([event], request):
                    continue
                yield Batch(self.click_of(event), pixel_id, Cursor(target, chunk, page.url, index + 1))
            yield Batch([], pixel_id, cursor_after(target, chunk, page))
        if self.requests_saved:
            log.info("Skipped %s click(s) the destination already holds", self.requests_saved)

    def click_of(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Return ``[click]`` of an event, or ``[]``: no click, already read, held by the destination, or not found."""
        click_id = event.get("click_id")
        key = str(click_id)
        if not click_id or key in self.fetched or f"click:{key}" in self.memory:
            return []
        clicks: list[dict[str, Any]] = []
        if key in self.known_keys:
            self.requests_saved += 1
        else:
            try:
                clicks = [self.hook.get_click(click_id)]
            except PrisjaktNotFoundError:
                log.warning("Click %s of event %s is not found; skipped", click_id, event.get("id"))
        # Remembered only once read: a pause during the request leaves the click to the resumed run.
        self.fetched.add(key)
        self.memory.first_time(f"click:{key}")
        return clicks

    def counters(self) -> dict[str, int]:
        """Return the window's counts and ``requests_saved``: clicks not fetched as the destination holds them."""
        return {**super().counters(), "requests_saved": self.requests_saved}


class PurchaseSummaryReader(PixelReader):
    """
    One record per currency per whole UTC day; the cursor's ``chunk`` is the next day to read.

    A summary cannot be filtered after reading, so the window is widened to whole days and each day
    is requested exactly as the connection's ``window_bounds`` say. A day not over yet is written
    with ``complete`` false, for a later run to replace; no schedule writes a partial day otherwise.
    """

    resource = PURCHASE_SUMMARY

    def batches(self, targets: Sequence[str], cursor: Cursor) -> Iterator[Batch]:
        """Yield each pixel's summary of each day."""
        days = summary_requests(self.start, self.end, self.hook.settings.window_bounds)
        widened = (days[0].start, days[-1].end) if days else (self.start, self.end)
        if widened != (self.start, self.end):
            message = "Purchase summaries cover whole UTC days: the window %s to %s is read as %s to %s"
            log.info(message, *map(format_api_time, (self.start, self.end, *widened)))
        now = datetime.now(UTC)
        for target in range(cursor.target, len(targets)):
            pixel_id = targets[target]
            path = self.hook.purchase_summary_path(pixel_id)
            for day in range(cursor.chunk if target == cursor.target else 0, len(days)):
                request = days[day]
                body = self.hook.get_json(path, request.params)
                try:
                    records = purchase_summary_records(body, pixel_id, request.start, request.end, now)
                except UnreadableSummaryError as err:
                    raise PrisjaktError(f"{err} (GET {path})") from None
                yield Batch(records, pixel_id, Cursor(target, day + 1, None, 0))


class PixelsReader(Reader):
    """
    The shop's pixels. One target, the shop; the cursor holds the next page's URL, and ``chunk`` 1
    once the last page is read.
    """

    resource = PIXELS

    @classmethod
    def check_scope(cls, pixel_id: str | None, shop_id: int | str | None) -> None:
        """Require ``shop_id``."""
        if shop_id in (None, ""):
            raise PrisjaktConfigError("resource='pixels' needs shop_id")

    def targets(self, pixel_id: str | None, shop_id: int | str | None) -> list[str]:
        """Return ``[shop_id]``."""
        self.check_scope(pixel_id, shop_id)
        return [str(shop_id)]

    def batches(self, targets: Sequence[str], cursor: Cursor) -> Iterator[Batch]:
        """Yield each page of the shop's pixels, each pixel once."""
        if cursor.chunk > 0:
            return  # the last page is written
        pages = self.hook.iter_pages(self.hook.pixels_path(targets[0]), start_url=cursor.page_url)
        with self.fetch_ahead(pages) as fetched:
            for page in fetched:
                yield Batch(self.memory.keep_new(page.records), None, cursor_after(0, 0, page))
                self.memory.turn_page()
                del page


#: The reader of each resource, by resource name.
READERS: dict[str, type[Reader]] = {
    reader.resource.name: reader for reader in (EventsReader, ClicksReader, PurchaseSummaryReader, PixelsReader)
}


def reader_for(resource: Resource) -> type[Reader]:
    """Return the reader class of ``resource``; a resource without one is refused by name."""
    if resource.name not in READERS:
        raise PrisjaktConfigError(f"The resource {resource.name!r} has no reader: register one in READERS ({__name__})")
    return READERS[resource.name]


def read_events(hook: PrisjaktHook, pixel_id: str, start: TimeLike, end: TimeLike) -> Iterator[dict[str, Any]]:
    """
    Yield every conversion event of a pixel in ``[start, end)``, newest first, each once.

    The operators' reading path (:class:`EventsReader`) as records: windows longer than the API's
    60 days are read in chunks requested as the connection's ``window_bounds`` say, records whose
    ``event_time`` lies outside ``[start, end)`` are dropped (counted and logged once), and records
    repeated by shifting pages are dropped. The next page is fetched while the caller takes this
    one's records (:meth:`Reader.fetch_ahead`); close the generator to stop early.

    :raises PrisjaktConfigError: for an unreadable or reversed window.
    """
    try:
        window = to_utc(start, "start"), to_utc(end, "end")
    except WindowError as err:
        raise PrisjaktConfigError(str(err)) from None
    reader = EventsReader(hook, *window)
    for batch in reader.batches([str(pixel_id)], Cursor()):
        yield from batch.records
        del batch  # released before the page after the next is fetched
