"""
Destinations of an export. A sink owns its destination: how parts are staged, when a part is full,
how rows are partitioned, and how a run is published or rolled back. The export loop sees only the
verbs of :class:`Sink`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Container, Mapping, Sequence
from typing import Any

#: The key of a part's manifest entry naming the partition it belongs to (absent for ``None``).
PARTITION_KEY = "partition"


class Sink(ABC):
    """
    Where an export's rows go. The export loop calls, in order:

    :meth:`set_targets` and :meth:`begin` once per run (and once per resume), :meth:`known_keys` if
    the reader skips what the destination holds, then for each part
    :meth:`open_part`, :meth:`write_rows` any number of times and :meth:`close_part`; at the end
    :meth:`commit`, or :meth:`abort` when the run fails.

    A part never spans partitions (see :meth:`partition_of`): the loop closes the open part when
    the partition changes, numbers parts from 0 within each partition, and records each part's
    partition in its manifest entry under :data:`PARTITION_KEY`.
    """

    #: Rows a part holds before the loop closes it and opens the next; ``None``: one part per run.
    rows_per_part: int | None = None

    #: The run's targets, once :meth:`set_targets` has told them.
    targets: list[str] | None = None

    #: Whether a retry after a crash may resume from the last stored checkpoint (Airflow 3.3+): true
    #: when rows written after the last :meth:`close_part` are lost with the process, so the staging
    #: holds no row the checkpoint does not list. Otherwise the loop stores no checkpoint and a
    #: retry starts over.
    resumes_after_crash: bool = True

    def set_targets(self, targets: Sequence[str]) -> None:
        """
        Learn the targets of this run before :meth:`begin`: the pixels, or the shop for shop-scoped resources.

        A sink that keeps each target's output apart stages, publishes and cleans up only in its
        targets' places.
        """
        self.targets = list(targets)

    def partition_of(self, scope: str | None) -> str | None:
        """
        Return the partition that rows read for ``scope`` belong to; ``None`` is the destination's only one.

        The default keeps every row in one partition.

        :param scope: the target the rows were read for (the pixel), or ``None`` for shop-scoped resources.
        """
        return None

    def known_keys(self) -> Container[str]:
        """
        Return the keys of the rows this destination already holds outside the output this run
        replaces, and from now on keep this run's keys too, so later runs know them.

        Called after :meth:`begin`, once per run and per resume, by readers that fetch rows one
        request each (clicks): they skip the rows whose key (the resource's primary key, as text)
        is known, so a row is fetched once per destination. The output this run replaces (its
        window's folders) does not count as held, so a re-run writes its rows again. The default
        knows nothing and keeps nothing.
        """
        return frozenset()

    @abstractmethod
    def begin(self, *, resume: bool) -> None:
        """Prepare the destination; drop leftovers of a failed earlier attempt unless resuming."""

    @abstractmethod
    def open_part(self, number: int) -> None:
        """Start part ``number`` (counted within its partition)."""

    @abstractmethod
    def write_rows(self, records: Sequence[Mapping[str, Any]], scope: str | None) -> None:
        """
        Append records to the open part.

        :param records: records as the reader yields them (API records, kept whole where the
            destination keeps records whole).
        :param scope: the target they were read for (the pixel), or ``None`` for shop-scoped
            resources. Typed rows take the resource's scope column from it (see
            :func:`~airflow_provider_prisjakt.export.formats.typed_rows`); every record of one part
            has the same :meth:`partition_of` its scope.
        """

    @abstractmethod
    def close_part(self) -> dict[str, Any]:
        """Finish the open part, stage it, and return its manifest entry."""

    @abstractmethod
    def commit(self, manifest: dict[str, Any]) -> None:
        """Publish everything staged, remove stale output of earlier runs, and record the manifest."""

    @abstractmethod
    def abort(self) -> None:
        """Remove what this run staged; the published output stays as it was."""

    @abstractmethod
    def describe(self) -> str:
        """Return the destination as a URI, for logs, summaries and lineage."""

    def summary_fields(self) -> dict[str, Any]:
        """
        Return what this destination adds to the operator's summary, after :meth:`commit`: figures
        only it knows, or its own value of a shared one (a table reports ``files`` 0). The default
        adds nothing.
        """
        return {}
