"""
The one export loop shared by every destination, with its checkpoint.

Data flows one way: records come page by page from the hook, go to the sink's open part as they
arrive, and parts rotate at ``max_rows_per_file``. After each page the loop knows a *cursor*: where
to continue without fetching that page again. When the rate-limit budget runs out with a far reset,
the loop closes the open part and raises :class:`ExportPaused` with a small JSON-safe
:class:`ExportCheckpoint`; the operator defers and later resumes from it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt import __version__
from airflow_provider_prisjakt.exceptions import PrisjaktError, PrisjaktNotFoundError, PrisjaktRateLimitError
from airflow_provider_prisjakt.pagination import RecentKeys
from airflow_provider_prisjakt.windows import format_api_time

if TYPE_CHECKING:
    from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
    from airflow_provider_prisjakt.resources import Resource
    from airflow_provider_prisjakt.transfers.sinks import Sink

log = logging.getLogger(__name__)

DEFAULT_MAX_ROWS_PER_FILE = 1_000_000
PROGRESS_EVERY_SECONDS = 30.0
RECENT_IDS_KEPT = 2_000
# Repeats caused by shifting pages sit at the start of the next page, so a checkpoint (stored in the
# trigger's kwargs) keeps only the newest few ids.
CHECKPOINT_IDS_KEPT = 250


@dataclass
class Cursor:
    """
    Where the export continues: target (pixel) ``target``, window chunk or day ``chunk``, the page
    URL to fetch next (``None`` = the chunk's first page), and how many records of that page are
    already written (only the clicks export stops inside a page).
    """

    target: int = 0
    chunk: int = 0
    page_url: str | None = None
    page_offset: int = 0


@dataclass
class ExportCheckpoint:
    """
    Everything needed to resume an export: small and JSON-safe, for trigger kwargs and payloads.

    :param targets: the pixel ids (or the shop id, for ``pixels``) resolved at the start.
    :param cursor: where to continue.
    :param next_part: the number of the next part to open.
    :param parts: manifest entries of the parts already staged.
    :param rows: records written so far.
    :param counters: request counters so far (requests, retries, 429s, waits, seconds waited, deferrals).
    :param recent_ids: ids of the last records written, to drop repeats across a resume.
    :param extracted_at: the ``_extracted_at`` of the run, kept across resumes.
    """

    targets: list[str]
    cursor: Cursor = field(default_factory=Cursor)
    next_part: int = 0
    parts: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0
    counters: dict[str, float] = field(default_factory=dict)
    recent_ids: list[str] = field(default_factory=list)
    extracted_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the checkpoint as plain JSON-safe data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExportCheckpoint:
        """Rebuild a checkpoint from :meth:`to_dict` output."""
        values = dict(data)
        values["cursor"] = Cursor(**values.get("cursor", {}))
        return cls(**values)


class ExportPaused(Exception):
    """
    The rate-limit budget is spent until ``resume_at``; resume from ``checkpoint`` then.

    :param checkpoint: where to resume.
    :param resume_at: when the budget returns.
    :param error: the rate-limit error that stopped the export.
    """

    def __init__(self, checkpoint: ExportCheckpoint, resume_at: datetime | None, error: PrisjaktRateLimitError) -> None:
        super().__init__(str(error))
        self.checkpoint = checkpoint
        self.resume_at = resume_at
        self.error = error


@dataclass(frozen=True)
class ExportRequest:
    """
    What to export.

    :param resource: the resource.
    :param start: window start (inclusive, UTC).
    :param end: window end (exclusive, UTC).
    :param pixel_id: one pixel, or ``None`` for every pixel of ``shop_id``.
    :param shop_id: the shop, for ``pixels`` and when no pixel is given.
    :param max_rows_per_file: rows per part before rotating.
    """

    resource: Resource
    start: datetime
    end: datetime
    pixel_id: str | None = None
    shop_id: int | str | None = None
    max_rows_per_file: int = DEFAULT_MAX_ROWS_PER_FILE


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


class _Source:
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


def _add_counters(base: Mapping[str, float], hook: PrisjaktHook, baseline: Mapping[str, float]) -> dict[str, float]:
    """Add the hook's traffic since ``baseline`` to the counters carried over from earlier runs."""
    totals = dict(base)
    for name, value in hook.stats.to_dict().items():
        totals[name] = round(totals.get(name, 0) + value - baseline.get(name, 0), 3)
    return totals


def run_export(
    hook: PrisjaktHook,
    request: ExportRequest,
    sink: Sink,
    *,
    extracted_at: datetime,
    checkpoint: ExportCheckpoint | None = None,
    pause_on_rate_limit: bool = False,
) -> dict[str, Any]:
    """
    Export one window into ``sink`` and return the manifest (rows, parts, counters), never the data.

    :param hook: the Prisjakt hook.
    :param request: what to export.
    :param sink: where to write.
    :param extracted_at: the ``_extracted_at`` value of new rows (kept from the checkpoint on resume).
    :param checkpoint: resume from here instead of the start.
    :param pause_on_rate_limit: on a far rate-limit reset, stage what is written and raise
        :class:`ExportPaused` instead of failing with :class:`PrisjaktRateLimitError`.
    :raises ExportPaused: see ``pause_on_rate_limit``.
    """
    resume = checkpoint is not None
    if checkpoint is None:
        checkpoint = ExportCheckpoint(targets=resolve_targets(hook, request), extracted_at=extracted_at.isoformat())
    baseline = hook.stats.to_dict()
    recent = RecentKeys(RECENT_IDS_KEPT, checkpoint.recent_ids, snapshot_size=CHECKPOINT_IDS_KEPT)
    source = _Source(hook, request, recent)
    sink.begin(resume=resume)
    part_open = False
    part_rows = 0
    rows = checkpoint.rows
    cursor = checkpoint.cursor
    parts = list(checkpoint.parts)
    next_part = checkpoint.next_part
    started = last_progress = time.monotonic()

    def close_part() -> None:
        nonlocal part_open, next_part
        parts.append(sink.close_part())
        part_open = False
        next_part += 1

    def current_checkpoint() -> ExportCheckpoint:
        return ExportCheckpoint(
            targets=checkpoint.targets,
            cursor=cursor,
            next_part=next_part,
            parts=parts,
            rows=rows,
            counters=_add_counters(checkpoint.counters, hook, baseline),
            recent_ids=recent.snapshot(),
            extracted_at=checkpoint.extracted_at,
        )

    try:
        for records, after in source.batches(checkpoint.targets, cursor):
            while records:
                if not part_open:
                    sink.open_part(next_part)
                    part_open, part_rows = True, 0
                room = request.max_rows_per_file - part_rows if sink.rotates_parts else len(records)
                written = min(room, len(records))
                sink.write_rows(records if written == len(records) else records[:written])
                records = records[written:]  # empty at the end: the page is not held while the next is fetched
                part_rows += written
                rows += written
                if sink.rotates_parts and part_rows >= request.max_rows_per_file:
                    close_part()
            cursor = after
            now = time.monotonic()
            if now - last_progress >= PROGRESS_EVERY_SECONDS:
                last_progress = now
                status = hook.rate_limit
                log.info(
                    "Exported %s rows of %s with %s requests (%.0f rows/s); %s requests left, window resets at %s",
                    rows,
                    request.resource.name,
                    hook.stats.requests - baseline["requests"],
                    (rows - checkpoint.rows) / max(now - started, 1e-9),
                    status.remaining if status else "unknown",
                    status.reset_at.isoformat() if status and status.reset_at else "unknown",
                )
        if part_open:
            close_part()
    except PrisjaktRateLimitError as error:
        if not pause_on_rate_limit:
            sink.abort()
            raise
        if part_open:
            close_part()
        paused = current_checkpoint()
        paused.counters["deferrals"] = paused.counters.get("deferrals", 0) + 1
        log.info("Rate-limit budget spent after %s rows; pausing until %s", rows, error.reset_at)
        raise ExportPaused(paused, error.reset_at, error) from None
    except BaseException:
        sink.abort()
        raise
    final = current_checkpoint()
    manifest = {
        "resource": request.resource.name,
        "window": {"start": format_api_time(request.start), "end": format_api_time(request.end)},
        "targets": final.targets,
        "rows": rows,
        "parts": parts,
        "extracted_at": checkpoint.extracted_at,
        "provider_version": __version__,
        "counters": final.counters,
    }
    try:
        sink.commit(manifest)
    except BaseException:
        sink.abort()
        raise
    log.info("Exported %s rows of %s in %s part(s) to %s", rows, request.resource.name, len(parts), sink.describe())
    return manifest
