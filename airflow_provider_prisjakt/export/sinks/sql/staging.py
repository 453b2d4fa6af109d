"""
Staging tables: whose each one is, what it is called, the label it carries, and which are stale.

A staging table belongs to one task instance (its DAG, run, task and map index, never its try), or,
outside Airflow, to the targets and window of one export. Its name is ``_pj_stage_<table>_<group>_<owner>``:
``group`` hashes the target table and the task (or the targets and window), ``owner`` hashes the
run, so every run of one task shares the group and no two task instances share a name. Each table
carries a label (a table comment; a comment inside ``CREATE TABLE`` on SQLite) with its window and
when it was made, which is all that cleaning up leftovers needs. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from airflow_provider_prisjakt.export.sinks.sql.identifiers import MAX_IDENTIFIER_LENGTH

STAGING_PREFIX = "_pj_stage_"
GROUP_DIGITS = 12
OWNER_DIGITS = 8
#: How much of the target's name a staging name keeps, so that it fits PostgreSQL's 63 characters.
TABLE_ROOM = MAX_IDENTIFIER_LENGTH - len(STAGING_PREFIX) - GROUP_DIGITS - OWNER_DIGITS - 2
LABEL_MARK = "prisjakt-staging"
_LABEL = re.compile(rf"{LABEL_MARK} window=(?P<start>\S+)/(?P<end>\S+) created=(?P<created>\S+)")
# What a label may hold: it is written into SQL as a literal (or comment), so nothing that quotes.
_LABEL_CHARACTERS = re.compile(r"^[A-Za-z0-9 :=./+_-]*$")


def _digest(text: str, digits: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:digits]


def table_prefix(table: str) -> str:
    """The start of the names of every staging table beside ``table`` (and beside tables sharing its first 31 characters)."""
    return f"{STAGING_PREFIX}{table[:TABLE_ROOM]}_"


@dataclass(frozen=True)
class StagingKey:
    """
    Whose staging table it is: ``group`` (the target and the task, or the targets and window) and
    ``owner`` (the run) within it, as hex digests.

    :param group: the digest shared by every run of one task (or one export outside Airflow).
    :param owner: the digest of the run.
    """

    group: str
    owner: str

    @classmethod
    def for_task_instance(cls, target: str, dag_id: str, task_id: str, map_index: int, run_id: str) -> StagingKey:
        """
        The key of a task instance's staging: the same for each try, resume and retry of it.

        :param target: the target table, qualified (it keeps two tables' staging apart).
        """
        group = _digest(f"task|{target}|{dag_id}|{task_id}|{map_index}", GROUP_DIGITS)
        return cls(group=group, owner=_digest(f"run|{run_id}", OWNER_DIGITS))

    @classmethod
    def for_targets(
        cls, target: str, resource: str, pixel_id: str | None, shop_id: object, window: tuple[datetime, datetime]
    ) -> StagingKey:
        """
        The key of an export run outside Airflow (a script or test calling ``execute``): its targets and window.

        :param target: the target table, qualified.
        :param resource: the resource's name.
        :param pixel_id: the pixel exported, or ``None``.
        :param shop_id: the shop, when no pixel is given.
        :param window: the exported window.
        """
        start, end = (moment.astimezone(UTC).isoformat() for moment in window)
        group = _digest(f"targets|{target}|{resource}|{pixel_id}|{shop_id}|{start}|{end}", GROUP_DIGITS)
        return cls(group=group, owner=_digest("outside-airflow", OWNER_DIGITS))

    def group_prefix(self, table: str) -> str:
        """The start shared by the staging tables of every run of this key's task, beside ``table``."""
        return f"{table_prefix(table)}{self.group}_"

    def table_name(self, table: str) -> str:
        """The staging table of this key beside ``table``: a plain identifier of at most 63 characters."""
        return self.group_prefix(table) + self.owner


@dataclass(frozen=True)
class StagingLabel:
    """
    What a staging table says about itself: the window it stages and when it was made.

    :param window: the exported window ``[start, end)``, UTC.
    :param created: when the export that made it began, UTC.
    """

    window: tuple[datetime, datetime]
    created: datetime

    def to_text(self) -> str:
        """The label as written on the table, e.g. ``prisjakt-staging window=…/… created=…``."""
        start, end = (moment.astimezone(UTC).isoformat() for moment in self.window)
        text = f"{LABEL_MARK} window={start}/{end} created={self.created.astimezone(UTC).isoformat()}"
        if not _LABEL_CHARACTERS.match(text):  # never: ISO instants hold none of what quotes
            raise ValueError(f"A staging label may not hold quotes or comment marks: {text!r}")
        return text

    @classmethod
    def parse(cls, text: str | None) -> StagingLabel | None:
        """Read a label from a table's comment (or its ``CREATE`` statement); ``None`` if there is none."""
        match = _LABEL.search(text or "")
        if match is None:
            return None
        try:
            start, end, created = (datetime.fromisoformat(match[name]) for name in ("start", "end", "created"))
        except ValueError:
            return None
        return cls(window=(start, end), created=created)


def leftovers(labels: Mapping[str, str | None], own: str, prefix: str, window: tuple[datetime, datetime]) -> list[str]:
    """
    Return the staging tables of other runs of one task for the same window: runs that can no longer
    resume, since this one has loaded that window.

    :param labels: staging table names and their labels.
    :param own: this run's staging table, never returned.
    :param prefix: the task's :meth:`StagingKey.group_prefix`.
    :param window: the window this run loaded.
    """
    found = []
    for name, text in labels.items():
        label = StagingLabel.parse(text)
        if name != own and name.startswith(prefix) and label is not None and label.window == window:
            found.append(name)
    return sorted(found)


def stale(labels: Mapping[str, str | None], now: datetime, older_than: timedelta) -> list[str]:
    """
    Return the staging tables made more than ``older_than`` before ``now``; unlabelled ones are kept.

    :param labels: staging table names and their labels.
    """
    cutoff = now - older_than
    found = []
    for name, text in labels.items():
        label = StagingLabel.parse(text)
        if name.startswith(STAGING_PREFIX) and label is not None and label.created < cutoff:
            found.append(name)
    return sorted(found)
