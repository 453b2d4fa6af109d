"""
Readers: how each resource is read from the API, as batches of records with the cursor after each.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt.api.pagination import RecentKeys
from airflow_provider_prisjakt.api.windows import format_api_time
from airflow_provider_prisjakt.exceptions import PrisjaktError, PrisjaktNotFoundError
from airflow_provider_prisjakt.export.checkpoint import Cursor

if TYPE_CHECKING:
    from airflow_provider_prisjakt.export.run import ExportRequest
    from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook

log = logging.getLogger(__name__)


def day_windows(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Split ``[start, end)`` at UTC midnights: one window per calendar day touched."""
    windows = []
    cursor = start
    while cursor < end:
        midnight = datetime(cursor.year, cursor.month, cursor.day, tzinfo=cursor.tzinfo) + timedelta(days=1)
        windows.append((cursor, min(midnight, end)))
        cursor = midnight
    return windows


Batch = tuple[list[dict[str, Any]], Cursor]


class Source:
    """Reads one resource from the API as batches of records, each with the cursor after it."""

    def __init__(self, hook: PrisjaktHook, request: ExportRequest, recent: RecentKeys) -> None:
        self.hook = hook
        self.request = request
        self.recent = recent

    def _fresh(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop records already written; API records carry their key as ``id``."""
        return self.recent.keep_new(records)

    def batches(self, targets: Sequence[str], cursor: Cursor) -> Iterator[Batch]:
        name = self.request.resource.name
        if name == "events":
            return self._events(targets, cursor)
        if name == "clicks":
            return self._clicks(targets, cursor)
        if name == "purchase_summary":
            return self._purchase_summary(targets, cursor)
        return self._pixels(targets, cursor)

    def _pages(self, targets: Sequence[str], cursor: Cursor) -> Iterator[tuple[int, int, Any]]:
        """Yield ``(target, chunk, page)`` of every event page from the cursor on."""
        chunks = self.hook.window_chunks(self.request.start, self.request.end)
        for target in range(cursor.target, len(targets)):
            path = self.hook.events_path(targets[target])
            first_chunk = cursor.chunk if target == cursor.target else 0
            for chunk in range(first_chunk, len(chunks)):
                resume_url = cursor.page_url if (target, chunk) == (cursor.target, cursor.chunk) else None
                params = self.hook.window_params(*chunks[chunk])
                for page in self.hook.iter_pages(path, params, start_url=resume_url):
                    yield target, chunk, page
                    del page  # released before the next page is fetched; see PrisjaktHook.iter_pages

    @staticmethod
    def _after(target: int, chunk: int, page: Any) -> Cursor:
        if page.next_url:
            return Cursor(target, chunk, page.next_url, 0)
        return Cursor(target, chunk + 1, None, 0)

    def _events(self, targets: Sequence[str], cursor: Cursor) -> Iterator[Batch]:
        for target, chunk, page in self._pages(targets, cursor):
            yield self._fresh(page.records), self._after(target, chunk, page)
            del page

    def _clicks(self, targets: Sequence[str], cursor: Cursor) -> Iterator[Batch]:
        # The cursor of a clicks export points at the events page being worked through: a resume
        # fetches that events page again and skips the events whose clicks are already written.
        for target, chunk, page in self._pages(targets, cursor):
            skip = cursor.page_offset if page.url == cursor.page_url else 0
            for index, event in enumerate(page.records):
                if index < skip:
                    continue
                click_id = event.get("click_id")
                clicks: list[dict[str, Any]] = []
                if click_id and self.recent.first_time(f"click:{click_id}"):
                    try:
                        clicks = [self.hook.get_click(click_id)]
                    except PrisjaktNotFoundError:
                        log.warning("Click %s of event %s is not found; skipped", click_id, event.get("id"))
                yield clicks, Cursor(target, chunk, page.url, index + 1)
            yield [], self._after(target, chunk, page)

    def _purchase_summary(self, targets: Sequence[str], cursor: Cursor) -> Iterator[Batch]:
        days = day_windows(self.request.start, self.request.end)
        for target in range(cursor.target, len(targets)):
            pixel_id = targets[target]
            for day in range(cursor.chunk if target == cursor.target else 0, len(days)):
                summary = self.hook.get_purchase_summary(pixel_id, *days[day])
                records = [
                    {
                        "pixel_id": pixel_id,
                        "day": days[day][0].date().isoformat(),
                        "from": format_api_time(days[day][0]),
                        "to": format_api_time(days[day][1]),
                        **entry,
                    }
                    for entry in summary.get("currencies", [])
                ]
                yield records, Cursor(target, day + 1, None, 0)

    def _pixels(self, targets: Sequence[str], cursor: Cursor) -> Iterator[Batch]:
        path = f"shops/{self.hook._segment(targets[0], 'shop_id')}/pixels"
        for page in self.hook.iter_pages(path, start_url=cursor.page_url):
            yield self._fresh(page.records), self._after(0, 0, page)


def resolve_targets(hook: PrisjaktHook, request: ExportRequest) -> list[str]:
    """Return the pixel ids to read (or the shop id, for ``pixels``)."""
    if not request.resource.needs_pixel:
        if request.shop_id is None:
            raise PrisjaktError("resource='pixels' needs shop_id")
        return [str(request.shop_id)]
    if request.pixel_id:
        return [str(request.pixel_id)]
    if request.shop_id is None:
        raise PrisjaktError("Give pixel_id, or shop_id to export every pixel of the shop")
    pixels = [str(pixel["id"]) for pixel in hook.get_pixels(request.shop_id)]
    log.info("Shop %s has %s pixel(s)", request.shop_id, len(pixels))
    return pixels
