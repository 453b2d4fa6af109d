"""
The one export loop shared by every destination.

Data flows one way: the resource's reader yields batches of records, each with the cursor after
it; :class:`ExportRun` writes them to the sink's open part as they arrive, and the sink says when a
part is full and which partition a batch belongs to (a part never spans two). When the rate-limit budget runs out with a far reset, the run closes the open part
and raises :class:`ExportPaused` with a small JSON-safe :class:`ExportCheckpoint`; the operator
defers and later resumes from it. Given a :class:`CheckpointStore` (Airflow 3.3+), the run also
stages what it wrote and stores its checkpoint every :data:`CHECKPOINT_EVERY_PAGES` pages, so that
a retry after a crash resumes there. The loop never asks which resource or destination it serves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt import __version__
from airflow_provider_prisjakt.api.estimate import eta_seconds, format_duration
from airflow_provider_prisjakt.api.recent_keys import RecentKeys
from airflow_provider_prisjakt.api.windows import format_api_time
from airflow_provider_prisjakt.exceptions import PrisjaktRateLimitError
from airflow_provider_prisjakt.export.checkpoint import (
    CHECKPOINT_IDS_KEPT,
    CheckpointStore,
    ExportCheckpoint,
    ExportPaused,
)
from airflow_provider_prisjakt.export.readers import reader_for
from airflow_provider_prisjakt.export.sinks import PARTITION_KEY

if TYPE_CHECKING:
    from airflow_provider_prisjakt.api.resources import Resource
    from airflow_provider_prisjakt.export.readers import Batch
    from airflow_provider_prisjakt.export.sinks import Sink
    from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook

log = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 30.0
#: Pages between two stored checkpoints (with a :class:`CheckpointStore`). A crash then fetches again
#: at most this many pages plus one: the written pages after the last checkpoint, the page being
#: written, and the next one, fetched meanwhile (:mod:`~airflow_provider_prisjakt.client.prefetch`). Each
#: checkpoint stages the open part first, so parts hold at most this many pages' rows; 2 halves the
#: parts and the store writes of checkpointing every page, for at most one more page fetched twice.
#: A page is a step of the reader's cursor to a new page: a list page, a summary's day, or for
#: clicks an events page (with the click requests of its events).
CHECKPOINT_EVERY_PAGES = 2


@dataclass(frozen=True)
class ExportRequest:
    """
    What to export.

    :param resource: the resource.
    :param start: window start (inclusive, UTC).
    :param end: window end (exclusive, UTC).
    :param pixel_id: one pixel, or ``None`` for every pixel of ``shop_id``.
    :param shop_id: the shop, for ``pixels`` and when no pixel is given.
    """

    resource: Resource
    start: datetime
    end: datetime
    pixel_id: str | None = None
    shop_id: int | str | None = None


class ExportRun:
    """
    One export of a window into a sink, in named steps: :meth:`begin`, :meth:`write_batch` for each
    batch the reader yields, then :meth:`finish`, or :meth:`pause` when the rate-limit budget is
    spent. :meth:`execute` drives them.

    :param hook: the Prisjakt hook.
    :param request: what to export.
    :param sink: where to write; its ``rows_per_part`` says when a part is full.
    :param extracted_at: the ``_extracted_at`` value of new rows (kept from the checkpoint on resume).
    :param checkpoint: resume from here instead of the start.
    :param store: where to keep the checkpoint while running, for a retry after a crash; without
        one (Airflow before 3.3, or outside a task), or for a sink that cannot resume after a crash
        (``Sink.resumes_after_crash``), a crash means starting over.
    """

    def __init__(
        self,
        hook: PrisjaktHook,
        request: ExportRequest,
        sink: Sink,
        *,
        extracted_at: datetime,
        checkpoint: ExportCheckpoint | None = None,
        store: CheckpointStore | None = None,
    ) -> None:
        self.hook = hook
        self.request = request
        self.sink = sink
        self.store = store if sink.resumes_after_crash else None
        if checkpoint is not None and checkpoint.destination not in (None, sink.describe()):
            log.warning(
                "The checkpoint is of an export to %s, not %s; the export starts over",
                checkpoint.destination,
                sink.describe(),
            )
            checkpoint = None
        self.resuming = checkpoint is not None
        # A copy: the run moves its own cursor and counts, never the caller's checkpoint.
        self.state = (
            ExportCheckpoint.from_dict(checkpoint.to_dict())
            if checkpoint is not None
            else ExportCheckpoint(targets=[], extracted_at=extracted_at.isoformat())
        )
        self._rows_at_start = self.state.rows
        memory = RecentKeys(initial=self.state.recent_ids, snapshot_size=CHECKPOINT_IDS_KEPT)
        self.reader = reader_for(request.resource)(hook, request.start, request.end, memory)
        self._baseline = hook.stats.to_dict()
        self._part_rows: int | None = None  # rows in the open part; None while no part is open
        self._part_partition: str | None = None  # the open part's partition
        self._pages_unstored = 0  # pages written since the last stored checkpoint
        self._started = self._last_progress = time.monotonic()

    # -- steps -------------------------------------------------------------------------------------

    def begin(self) -> None:
        """Resolve the targets (a fresh run), prepare the sink, and tell the reader what the sink already holds."""
        if not self.resuming:
            self.state.targets = self.reader.targets(self.request.pixel_id, self.request.shop_id)
        self.sink.set_targets(self.state.targets)
        self.sink.begin(resume=self.resuming)
        if self.reader.skips_known_keys:
            self.reader.known_keys = self.sink.known_keys()
        if self.reader.progress is not None:
            self.reader.progress.on_first_page = self._log_estimate

    def write_batch(self, batch: Batch) -> None:
        """
        Write a batch's records and move the cursor. Parts rotate when the sink says a part is full
        and when the batch belongs to another partition than the open part.
        """
        limit = self.sink.rows_per_part
        records = batch.records
        partition = self.sink.partition_of(batch.scope)
        if records and partition != self._part_partition:
            self._close_part()
        while records:
            if self._part_rows is None:
                self._open_part(partition)
                self._part_rows = 0
            room = len(records) if limit is None else limit - self._part_rows
            written = min(room, len(records))
            self.sink.write_rows(records if written == len(records) else records[:written], batch.scope)
            records = records[written:]
            self._part_rows += written
            self.state.rows += written
            if limit is not None and self._part_rows >= limit:
                self._close_part()
        self.state.cursor = batch.cursor
        if batch.cursor.page_offset == 0:  # the cursor moved on to a new page
            self._pages_unstored += 1
            if self.store is not None and self._pages_unstored >= CHECKPOINT_EVERY_PAGES:
                self.store_checkpoint()
        self._log_progress()

    def store_checkpoint(self) -> None:
        """
        Stage the open part, then store the checkpoint: the rows it covers are staged before a retry
        can resume from it. Without a store, do nothing.
        """
        if self.store is None:
            return
        self._close_part()
        self.store.save(self.checkpoint())
        self._pages_unstored = 0

    def pause(self, error: PrisjaktRateLimitError) -> ExportPaused:
        """Stage the open part and return the pause to raise, with the checkpoint to resume from."""
        self._close_part()
        paused = self.checkpoint()
        paused.counters["deferrals"] = paused.counters.get("deferrals", 0) + 1
        if self.store is not None:
            # Should the resumed try die, the task's retry resumes here too, as the trigger would.
            self.store.save(paused)
        log.info("Rate-limit budget spent after %s rows; pausing until %s", self.state.rows, error.reset_at)
        return ExportPaused(paused, error.reset_at, error)

    def finish(self) -> dict[str, Any]:
        """Close the last part, publish everything through the sink, and return the manifest."""
        self._close_part()
        final = self.checkpoint()
        if self.store is not None:
            # Forgotten before publishing, which consumes the staging: a crash while publishing
            # then starts over (publishing again is safe), rather than resuming from staged parts
            # that are gone.
            self.store.clear()
        request = self.request
        manifest = {
            "resource": request.resource.name,
            "window": {"start": format_api_time(request.start), "end": format_api_time(request.end)},
            "targets": final.targets,
            "rows": final.rows,
            "parts": final.parts,
            "extracted_at": final.extracted_at,
            "provider_version": __version__,
            "counters": final.counters,
        }
        self.sink.commit(manifest)
        if self.sink.rows_per_part is None:  # the run is one output (a table): its parts are only staging steps
            log.info("Exported %s rows of %s to %s", final.rows, request.resource.name, self.sink.describe())
        else:
            log.info(
                "Exported %s rows of %s in %s part(s) to %s",
                final.rows,
                request.resource.name,
                len(final.parts),
                self.sink.describe(),
            )
        return manifest

    def checkpoint(self) -> ExportCheckpoint:
        """Return where the export stands: the cursor, staged parts, counters and the latest ids."""
        state = self.state
        return ExportCheckpoint(
            targets=state.targets,
            cursor=state.cursor,
            next_part=state.next_part,
            parts=list(state.parts),
            rows=state.rows,
            counters=self._counters(),
            recent_ids=self.reader.memory.snapshot(),
            extracted_at=state.extracted_at,
            destination=self.sink.describe(),
        )

    # -- driver ------------------------------------------------------------------------------------

    def execute(self, *, pause_on_rate_limit: bool = False) -> dict[str, Any]:
        """
        Run every step and return the manifest (rows, parts, counters), never the data.

        :param pause_on_rate_limit: on a far rate-limit reset, stage what is written and raise
            :class:`ExportPaused` instead of failing with :class:`PrisjaktRateLimitError`.
        :raises ExportPaused: see ``pause_on_rate_limit``.
        """
        try:
            self.begin()
        except BaseException:
            # Staging the sink cannot adopt (gone, or the destination unreachable) would fail every
            # retry that resumed from the same checkpoint; the next try starts over instead.
            self._forget_checkpoint()
            raise
        try:
            # The reader fetches the next page while this one is written; leaving the loop, however,
            # closes its generator, which waits for that fetch (see client/prefetch.py).
            for batch in self.reader.batches(self.state.targets, self.state.cursor):
                self.write_batch(batch)
                del batch  # the page is not held while the one after the next is fetched
            return self.finish()
        except PrisjaktRateLimitError as error:
            if not pause_on_rate_limit:
                self.abort()
                raise
            raise self.pause(error) from None
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """
        Forget the stored checkpoint, then remove what is staged: a failed run leaves nothing to
        resume, and its retry starts over as before. (A crash runs no code; its retry resumes.)
        """
        self._forget_checkpoint()
        self.sink.abort()

    # -- helpers -----------------------------------------------------------------------------------

    def _forget_checkpoint(self) -> None:
        """Forget the stored checkpoint, if any; best effort, so the error that led here stays the one raised."""
        if self.store is not None:
            try:
                self.store.clear()
            except Exception:
                log.warning("Could not forget the stored checkpoint", exc_info=True)

    def _open_part(self, partition: str | None) -> None:
        """Open the next part of ``partition``: parts are numbered from 0 within each partition."""
        number = sum(1 for part in self.state.parts if part.get(PARTITION_KEY) == partition)
        self.sink.open_part(number)
        self._part_partition = partition

    def _close_part(self) -> None:
        if self._part_rows is not None:
            entry = self.sink.close_part()
            if self._part_partition is not None:
                entry[PARTITION_KEY] = self._part_partition
            self.state.parts.append(entry)
            self.state.next_part += 1
            self._part_rows = None

    def _counters(self) -> dict[str, float]:
        """The counters carried over from earlier runs plus this hook's traffic and the reader's counts since."""
        # The reader's counts (rows_outside_window, rows_without_time) start at 0 with each run.
        now = {**self.hook.stats.to_dict(), **self.reader.counters()}
        if self.store is not None:
            now.update(self.store.counters())
        return add_counters(self.state.counters, now, self._baseline)

    def _log_estimate(self) -> None:
        """Log what the export costs, from its first page (which the export reads on, never fetching it twice)."""
        progress, request, status = self.reader.progress, self.request, self.hook.rate_limit
        assert progress is not None  # it calls this
        days = (request.end - request.start) / timedelta(days=1)
        planned = progress.estimate(request.resource.name, self.state.targets, days, status.limit if status else None)
        log.info(
            "Estimate%s: %s, %s of them other than pages; pixel %s reads %s page(s) in its first request, %s",
            " of what is left" if self.resuming else "",
            planned,
            planned.other_requests,
            self.state.targets[progress.target],
            progress.listing_pages,
            'as its rel="last" link says' if progress.exact else "judged by how far back its first page reached",
        )

    def _log_progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_SECONDS:
            return
        self._last_progress = now
        status, sent = self.hook.rate_limit, self.hook.stats.requests - self._baseline["requests"]
        progress, where, eta = self.reader.progress, "", ""
        if progress is not None and progress.pages_read:
            seconds = eta_seconds(
                progress.requests_left(), sent / max(now - self._started, 1e-9), status, datetime.now(UTC)
            )
            where, eta = f"; {progress.describe()}", f"; about {format_duration(seconds)} to go"
        log.info(
            "Exported %s rows of %s with %s requests (%.0f rows/s)%s%s; %s requests left, window resets at %s",
            self.state.rows,
            self.request.resource.name,
            sent,
            (self.state.rows - self._rows_at_start) / max(now - self._started, 1e-9),
            where,
            eta,
            status.remaining if status else "unknown",
            status.reset_at.isoformat() if status and status.reset_at else "unknown",
        )


def add_counters(
    base: Mapping[str, float], now: Mapping[str, float], baseline: Mapping[str, float]
) -> dict[str, float]:
    """Add the traffic between ``baseline`` and ``now`` to the counters carried over from earlier runs."""
    totals = dict(base)
    for name, value in now.items():
        totals[name] = round(totals.get(name, 0) + value - baseline.get(name, 0), 3)
    return totals
