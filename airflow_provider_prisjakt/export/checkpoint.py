"""Export checkpoints: where an export continues, small and JSON-safe for trigger kwargs and task state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from airflow_provider_prisjakt.exceptions import PrisjaktRateLimitError

# Repeats caused by shifting pages are the last records of the page before, pushed onto the start of
# the next page, so a checkpoint (stored in the trigger's kwargs, where size matters) keeps only the
# newest ids written; a running export remembers whole pages (see export.readers.PageMemory).
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
