"""
How a window's staged rows reach the target table: one strategy per :class:`WriteDisposition`.

Each strategy checks what it needs (a window, a key) and returns the statements that move staging
into the target; the sink runs them in one transaction, and each statement says what its result
adds to the load's :class:`LoadCounts`. Pure: statements are text and parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_prisjakt.api.choices import parse_choice
from airflow_provider_prisjakt.api.columns import ColumnKind
from airflow_provider_prisjakt.api.resources import EXTRACTED_AT_COLUMN
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError

if TYPE_CHECKING:
    from airflow_provider_prisjakt.api.resources import Resource
    from airflow_provider_prisjakt.export.sinks.sql.dialects import SqlDialect

ROW_NUMBER_COLUMN = "_pj_rn"


class WriteDisposition(StrEnum):
    """What a load does with the rows already in the table."""

    MERGE = "merge"
    REPLACE_WINDOW = "replace_window"
    APPEND = "append"


def parse_write_disposition(value: Any) -> WriteDisposition:
    """
    Return the :class:`WriteDisposition` named ``value``.

    :raises PrisjaktConfigError: listing the allowed values.
    """
    return parse_choice(WriteDisposition, value, "write_disposition", PrisjaktConfigError)


class Tally(StrEnum):
    """What running a statement tells about the load (see :meth:`LoadCounts.record`)."""

    NOTHING = "nothing"
    #: Its row count is the rows the window delete removed.
    DELETED = "deleted"
    #: Its row count is the rows a plain insert added.
    INSERTED = "inserted"
    #: Its one row is (the distinct staged keys, how many of them the target holds): an upsert's split.
    HELD_KEYS = "held_keys"


@dataclass(frozen=True)
class Statement:
    """
    One statement of a load.

    :param sql: the statement.
    :param parameters: its parameters.
    :param tally: what its result adds to the load's counts.
    """

    sql: str
    parameters: Sequence[Any] = ()
    tally: Tally = Tally.NOTHING


@dataclass
class LoadCounts:
    """
    What a load did to the target's rows.

    :param inserted: rows whose key the target did not hold (every row of a plain insert).
    :param updated: rows whose key the target held when the insert ran, overwritten by an upsert.
    :param deleted: rows the window delete removed (``replace_window``), rows loaded again included.
    """

    inserted: int = 0
    updated: int = 0
    deleted: int = 0

    def record(self, tally: Tally, rowcount: int, row: Sequence[Any] | None) -> None:
        """
        Add what one statement's result says.

        :param tally: what the statement counts.
        :param rowcount: the cursor's row count after it.
        :param row: its first result row, for :attr:`Tally.HELD_KEYS`.
        """
        if tally is Tally.DELETED:
            self.deleted += max(rowcount, 0)
        elif tally is Tally.INSERTED:
            self.inserted += max(rowcount, 0)
        elif tally is Tally.HELD_KEYS:
            staged, held = (int(value or 0) for value in row or (0, 0))
            self.inserted += staged - held
            self.updated += held

    def to_summary(self) -> dict[str, int]:
        """Return the counts as the operator's summary names them."""
        return {"rows_inserted": self.inserted, "rows_updated": self.updated, "rows_deleted": self.deleted}


@dataclass(frozen=True)
class Load:
    """
    One window's move from staging into the target, which every strategy builds its statements from.

    :param dialect: the database's dialect.
    :param resource: the resource exported.
    :param target: the target table, quoted and qualified.
    :param staging: the staging table, quoted and qualified.
    :param has_key: whether the target has a primary key or unique index on the resource's key.
    :param window: the exported window ``[start, end)``.
    :param targets: the pixels (or shop) the rows were read for.
    """

    dialect: SqlDialect
    resource: Resource
    target: str
    staging: str
    has_key: bool
    window: tuple[datetime, datetime]
    targets: tuple[str, ...]

    def insert(self, *, upsert: bool) -> list[Statement]:
        """
        Return ``INSERT INTO target SELECT … FROM staging``, one row per key, upserting if asked;
        an upsert comes after :meth:`held_keys`, which counts its updates.
        """
        q = self.dialect.quote
        columns = self.resource.column_names
        names = ", ".join(q(c) for c in columns)
        key = ", ".join(q(c) for c in self.resource.primary_key)
        # The export de-duplicates on ids, but only within a bounded memory; one row per key here,
        # the last extracted. DISTINCT ON sorts what ROW_NUMBER sorts, but skips the windowing pass.
        newest = f"{q(EXTRACTED_AT_COLUMN)} DESC"
        if self.dialect.distinct_on:
            select = f"SELECT DISTINCT ON ({key}) {names} FROM {self.staging} ORDER BY {key}, {newest}"
        else:
            select = (
                f"SELECT {names} FROM (SELECT {names}, ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {newest}) "
                f"AS {q(ROW_NUMBER_COLUMN)} FROM {self.staging}) {q('_pj_staged')} WHERE {q(ROW_NUMBER_COLUMN)} = 1"
            )
        statement = f"INSERT INTO {self.target} ({names}) {select}"
        if not upsert:
            return [Statement(statement, tally=Tally.INSERTED)]
        others = [c for c in columns if c not in self.resource.primary_key]
        statement += self.dialect.upsert_clause(self.target, self.resource.primary_key, others)
        # Drivers count an upsert's rows differently (MySQL: 2 per update), so its split is counted first.
        return [self.held_keys(), Statement(statement)]

    def held_keys(self) -> Statement:
        """
        Return the count of the distinct staged keys and of those the target holds: one pass over
        staging, one key lookup in the target per key.
        """
        q = self.dialect.quote
        key = self.resource.primary_key
        held = " AND ".join(f"{q('_pj_held')}.{q(c)} = {q('_pj_keys')}.{q(c)}" for c in key)
        return Statement(
            f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM {self.target} {q('_pj_held')} "
            f"WHERE {held}) THEN 1 ELSE 0 END), 0) FROM (SELECT DISTINCT {', '.join(q(c) for c in key)} "
            f"FROM {self.staging}) {q('_pj_keys')}",
            tally=Tally.HELD_KEYS,
        )


class DispositionStrategy:
    """What one write disposition checks and which statements it runs; each subclass is one disposition."""

    disposition: ClassVar[WriteDisposition]

    def check_resource(self, resource: Resource) -> None:
        """Refuse a resource this disposition cannot load (before any request)."""

    def check_target(self, resource: Resource, table_name: str, *, has_key: bool) -> None:
        """Refuse a target table this disposition cannot load into (before any request)."""

    def statements(self, load: Load) -> list[Statement]:
        """Return the statements moving the staged rows into the target."""
        raise NotImplementedError

    def failure_hint(self, *, has_key: bool) -> str:
        """Return what to do when the load failed, to append to the error (or ``""``)."""
        return ""


class Merge(DispositionStrategy):
    """Upsert on the resource's primary key: a re-run updates its rows and adds none twice."""

    disposition = WriteDisposition.MERGE

    def check_target(self, resource: Resource, table_name: str, *, has_key: bool) -> None:
        """Refuse a target without the key to upsert on."""
        if not has_key:
            raise PrisjaktConfigError(
                f"write_disposition='merge' needs a primary key or unique index on "
                f"({', '.join(resource.primary_key)}) in {table_name}; add one, or use "
                f"write_disposition='replace_window' or 'append'"
            )

    def statements(self, load: Load) -> list[Statement]:
        """One upsert from staging."""
        return load.insert(upsert=True)


class ReplaceWindow(DispositionStrategy):
    """Delete the window's rows of the exported targets, then insert the window again."""

    disposition = WriteDisposition.REPLACE_WINDOW

    def check_resource(self, resource: Resource) -> None:
        """Refuse a resource whose rows belong to no window."""
        if resource.window_column is None:
            raise PrisjaktConfigError(
                f"write_disposition='replace_window' needs rows that belong to a time window, and "
                f"resource={resource.name!r} has none; use write_disposition='merge'"
            )

    def statements(self, load: Load) -> list[Statement]:
        """The window delete, then the insert (an upsert where a key exists, for rows of other windows)."""
        return [*self.delete(load), *load.insert(upsert=load.has_key)]

    def delete(self, load: Load) -> list[Statement]:
        """Return the ``DELETE`` of the window's rows of the exported targets (none without targets)."""
        resource, q, ph = load.resource, load.dialect.quote, load.dialect.placeholder
        window = q(resource.window_column or "")
        low, high = self.bounds(load)
        sql = f"DELETE FROM {load.target} WHERE {window} >= {ph} AND {window} < {ph}"
        if resource.scope_column is None:
            return [Statement(sql, (low, high), Tally.DELETED)]
        if not load.targets:
            return []  # nothing was read, so nothing of the table is replaced
        marks = ", ".join([ph] * len(load.targets))
        sql += f" AND {q(resource.scope_column)} IN ({marks})"
        return [Statement(sql, (low, high, *load.targets), Tally.DELETED)]

    @staticmethod
    def bounds(load: Load) -> tuple[Any, Any]:
        """Return the window as driver values of the window column: ``[low, high)``."""
        kind = next(c.kind for c in load.resource.all_columns if c.name == load.resource.window_column)
        start, end = load.window
        low: Any = start
        high: Any = end
        if kind is ColumnKind.DATE:
            # A day belongs to the window when any part of it does (summaries of partial days).
            low = start.date()
            high = end.date() if end.timetz() == time(0, tzinfo=UTC) else end.date() + timedelta(days=1)
        adapt = load.dialect.adapter(kind)
        return adapt(low), adapt(high)


class Append(DispositionStrategy):
    """Insert every row, as a log of runs told apart by ``_extracted_at``."""

    disposition = WriteDisposition.APPEND

    def statements(self, load: Load) -> list[Statement]:
        """One plain insert from staging."""
        return load.insert(upsert=False)

    def failure_hint(self, *, has_key: bool) -> str:
        """A keyed table refuses repeated keys; merge is what updates them."""
        if not has_key:
            return ""
        return (
            "; append inserts every row again and the table has a primary key, so use "
            "write_disposition='merge' to update rows a previous run wrote"
        )


STRATEGIES: dict[WriteDisposition, DispositionStrategy] = {
    strategy.disposition: strategy for strategy in (Merge(), ReplaceWindow(), Append())
}


def strategy_for(disposition: WriteDisposition) -> DispositionStrategy:
    """Return the strategy of a write disposition."""
    return STRATEGIES[disposition]
