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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt import __version__
from airflow_provider_prisjakt.api.pagination import RecentKeys
from airflow_provider_prisjakt.api.windows import format_api_time
from airflow_provider_prisjakt.exceptions import PrisjaktRateLimitError
from airflow_provider_prisjakt.export.checkpoint import CHECKPOINT_IDS_KEPT, ExportCheckpoint, ExportPaused
from airflow_provider_prisjakt.export.readers import Source, resolve_targets

if TYPE_CHECKING:
    from airflow_provider_prisjakt.api.resources import Resource
    from airflow_provider_prisjakt.export.sinks import Sink
    from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook

log = logging.getLogger(__name__)

DEFAULT_MAX_ROWS_PER_FILE = 1_000_000
PROGRESS_EVERY_SECONDS = 30.0
RECENT_IDS_KEPT = 2_000


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
    source = Source(hook, request, recent)
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
