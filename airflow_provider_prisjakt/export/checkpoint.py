"""
Export checkpoints: where an export continues, small and JSON-safe for trigger kwargs and task state.

A deferral carries its checkpoint through the trigger. A crash leaves no chance to hand one over, so
on Airflow 3.3+ a running export also keeps its latest checkpoint in the task instance's
``task_state_store`` (:class:`CheckpointStore`), which outlives the task's tries: the retry resumes
from it. Older Airflow has no such store, and a retry starts over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_prisjakt import __version__

if TYPE_CHECKING:
    from datetime import datetime

    from airflow_provider_prisjakt.exceptions import PrisjaktRateLimitError
    from airflow_provider_prisjakt.export.run import ExportRequest

log = logging.getLogger(__name__)

# Repeats caused by shifting pages are the last records of the page before, pushed onto the start of
# the next page, so a checkpoint (stored in the trigger's kwargs, where size matters) keeps only the
# newest ids written; a running export remembers whole pages (see api.recent_keys.RecentKeys).
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
    :param next_part: how many parts are staged, in every partition together.
    :param parts: manifest entries of the parts already staged, in order; an entry names its
        partition (a sink's folder per pixel) under ``"partition"`` unless the sink has only one.
        Part numbers count within a partition, so the next part of a partition is numbered by how
        many of its parts are listed here.
    :param rows: records written so far.
    :param counters: request counters so far (requests, retries, 429s, waits, seconds waited, deferrals).
    :param recent_ids: ids of the last records written, to drop repeats across a resume.
    :param extracted_at: the ``_extracted_at`` of the run, kept across resumes.
    :param destination: the sink's URI (``Sink.describe()``) the parts are staged for; a resume
        into another destination starts over.
    """

    targets: list[str]
    cursor: Cursor = field(default_factory=Cursor)
    next_part: int = 0
    parts: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0
    counters: dict[str, float] = field(default_factory=dict)
    recent_ids: list[str] = field(default_factory=list)
    extracted_at: str | None = None
    destination: str | None = None

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


#: The ``task_state_store`` key holding a running export's checkpoint (the store is per task
#: instance and map index, and shared by its tries).
STATE_KEY = "prisjakt_export"
#: Part entries per sealed key beside :data:`STATE_KEY`. A checkpoint lists every staged part, and
#: a write costs more the larger its value (Airflow warns above 64 KB): full groups of parts are
#: written once each, so every write stays small however many parts an export stages.
PARTS_PER_KEY = 100


def parts_key(index: int) -> str:
    """Return the ``task_state_store`` key of the ``index``-th sealed group of part entries."""
    return f"{STATE_KEY}.parts.{index}"


class StateStore(Protocol):
    """What an export needs of Airflow's ``task_state_store`` (3.3+): JSON values by key, kept across tries."""

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value of ``key``, or ``default``."""

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``."""

    def delete(self, key: str) -> None:
        """Forget ``key``; no error if it is not there."""


class CheckpointStore:
    """
    An export's latest checkpoint in its task instance's ``task_state_store``, for a retry after a crash.

    The value under :data:`STATE_KEY` is the deferral's resume payload (``start``, ``end``,
    ``checkpoint``) plus the resource and the provider version, so a try whose window, resource or
    provider version differs starts over instead of resuming. Its parts list holds only the parts
    after the last full group of :data:`PARTS_PER_KEY`; the full groups lie under
    :func:`parts_key` keys, each written before the checkpoint that counts it (``sealed``).
    Storing is best effort: when a write fails, the checkpoint stored before it still describes
    parts that are staged, so a crash costs more pages, never rows.

    :param state: the task instance's ``task_state_store``.
    :param request: the export it keeps the checkpoint of.
    """

    def __init__(self, state: StateStore, request: ExportRequest) -> None:
        self.state = state
        self.scope = {
            "resource": request.resource.name,
            "start": request.start.isoformat(),
            "end": request.end.isoformat(),
            "version": __version__,
        }
        self.groups: list[list[dict[str, Any]]] = []  # the groups of parts under their keys, as written or read
        self.writes = 0
        self.seconds_writing = 0.0

    @classmethod
    def from_context(cls, context: Mapping[str, Any], request: ExportRequest) -> CheckpointStore | None:
        """Return the store of the running task instance, or ``None`` where Airflow has none (before 3.3, or outside a task)."""
        state = context.get("task_state_store")
        return cls(state, request) if state is not None else None

    def load(self) -> ExportCheckpoint | None:
        """Return the checkpoint an earlier try of this export stored, or ``None`` to start over."""
        try:
            stored = self.state.get(STATE_KEY)
            if not isinstance(stored, Mapping):
                return None
            stored_scope = {name: stored.get(name) for name in self.scope}
            if stored_scope != self.scope:
                log.info("The stored checkpoint is of another export (%s); this one starts over", stored_scope)
                return None
            groups = [list(self.state.get(parts_key(index))) for index in range(int(stored.get("sealed", 0)))]
            parts = [part for group in groups for part in group]
            checkpoint = ExportCheckpoint.from_dict(
                {**stored["checkpoint"], "parts": parts + stored["checkpoint"]["parts"]}
            )
        except Exception:
            log.warning("Could not read the stored checkpoint; the export starts over", exc_info=True)
            return None
        self.groups = groups
        log.info(
            "Resuming from the checkpoint an earlier try stored: %s rows written, %s parts staged",
            checkpoint.rows,
            len(checkpoint.parts),
        )
        return checkpoint

    def save(self, checkpoint: ExportCheckpoint) -> None:
        """Store ``checkpoint``, replacing the one before; a failure is logged, not raised."""
        began = time.perf_counter()
        data = checkpoint.to_dict()
        parts = data["parts"]
        sealed = len(parts) // PARTS_PER_KEY
        try:
            # A run only appends parts, so each group is written once; one that differs from what
            # is stored (a run that started over instead of resuming) is written again.
            for index in range(sealed):
                group = parts[index * PARTS_PER_KEY : (index + 1) * PARTS_PER_KEY]
                if index >= len(self.groups) or self.groups[index] != group:
                    self.state.set(parts_key(index), group)
                    self.groups[index:] = [group]
            data["parts"] = parts[sealed * PARTS_PER_KEY :]
            self.state.set(STATE_KEY, {**self.scope, "sealed": sealed, "checkpoint": data})
        except Exception:
            log.warning("Could not store the checkpoint; a crash would resume from the one before", exc_info=True)
            return
        self.writes += 1
        self.seconds_writing += time.perf_counter() - began

    def clear(self) -> None:
        """Forget the stored checkpoint (before publishing: published staging can no longer be resumed)."""
        self.state.delete(STATE_KEY)
        # Unreferenced now; removed so they do not wait for the store's retention.
        for index in range(len(self.groups)):
            self.state.delete(parts_key(index))
        self.groups = []

    def counters(self) -> dict[str, float]:
        """
        Return ``checkpoints`` (checkpoints stored so far) and ``checkpoint_seconds`` (time spent storing them).

        A checkpoint holds the counts from before its own write, so a crashed try's last write is
        not counted.
        """
        return {"checkpoints": self.writes, "checkpoint_seconds": round(self.seconds_writing, 3)}
