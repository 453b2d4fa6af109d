"""
A sink writing one window's rows into a SQL table through a staging table beside it.

Rows are bulk-loaded into staging as pages arrive. The target is touched only at the end, in one
transaction (what the write disposition runs: delete the window and/or insert or upsert from
staging, counting the rows inserted, updated and deleted), so a run that fails half-way leaves the
target exactly as it was, and a re-run of a window replaces what the last run wrote. The staging
table belongs to one task instance (see :mod:`~airflow_provider_prisjakt.export.sinks.sql.staging`),
so exports of other pixels into the same table never touch it; creating and loading the target
take a lock, one export at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt.api.windows import to_utc
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError, PrisjaktError
from airflow_provider_prisjakt.export.formats import typed_rows
from airflow_provider_prisjakt.export.sinks import Sink
from airflow_provider_prisjakt.export.sinks.sql.database import one_line
from airflow_provider_prisjakt.export.sinks.sql.dispositions import Load, LoadCounts, Tally, strategy_for
from airflow_provider_prisjakt.export.sinks.sql.held_keys import HeldKeys
from airflow_provider_prisjakt.export.sinks.sql.staging import StagingLabel, leftovers

if TYPE_CHECKING:
    from airflow_provider_prisjakt.api.resources import Resource
    from airflow_provider_prisjakt.export.sinks.sql.database import SqlDatabase
    from airflow_provider_prisjakt.export.sinks.sql.dispositions import WriteDisposition
    from airflow_provider_prisjakt.export.sinks.sql.staging import StagingKey

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 5000


class SqlSink(Sink):
    """
    A sink writing one window's rows into a SQL table through a staging table of its own.

    :meth:`begin` creates the target (if allowed and missing) and an empty staging table;
    :meth:`write_rows` bulk-loads rows into staging; :meth:`commit` moves them into the target in
    one transaction, drops staging and the leftovers of earlier runs of the same task for the same
    window; :meth:`abort` drops staging, leaving the target untouched. A table takes the whole run
    as one part. :meth:`known_keys` answers from the target itself (clicks are merged, so a table
    holds each once), and :meth:`summary_fields` reports the rows inserted, updated and deleted.

    :param database: the database (its hook and dialect).
    :param table: the target table.
    :param schema: its schema (MySQL: database; SQLite: attached database), or ``None``.
    :param staging_key: whose staging table this run writes (its task instance, or its targets and window).
    :param window: the exported window, recorded on the staging table.
    :param resource: the resource exported.
    :param write_disposition: what the load does with the rows already in the table.
    :param create_table: create the target table when it does not exist.
    :param batch_size: rows per bulk insert into staging.
    :param extracted_at: the ``_extracted_at`` value of this run.
    :param uri: the table as a URI, for :meth:`describe`.
    """

    def __init__(
        self,
        *,
        database: SqlDatabase,
        table: str,
        schema: str | None,
        staging_key: StagingKey,
        window: tuple[datetime, datetime],
        resource: Resource,
        write_disposition: WriteDisposition,
        create_table: bool,
        batch_size: int,
        extracted_at: datetime,
        uri: str,
    ) -> None:
        self.database = database
        self.dialect = dialect = database.dialect
        # Staging that commits each batch keeps rows a crash left after the last checkpoint; a
        # resumed run would load them twice (the row count check refuses it), so it starts over.
        self.resumes_after_crash = not dialect.commit_every_batch
        self.table = table
        self.schema = schema
        self.staging_key = staging_key
        self.window = window
        self.staging_table = staging_key.table_name(table)
        self.resource = resource
        self.write_disposition = write_disposition
        self.strategy = strategy_for(write_disposition)
        self.create_table = create_table
        self.batch_size = batch_size
        self.extracted_at = extracted_at
        self.uri = uri
        self.target = dialect.qualified(schema, table)
        self.staging = dialect.qualified(schema, self.staging_table)
        self.columns = resource.all_columns
        # Only the columns whose values the driver takes otherwise are adapted, value by value.
        kinds = [column.kind for column in resource.all_columns]
        self._adapted = [(index, dialect.adapter(kind)) for index, kind in enumerate(kinds) if kind in dialect.adapters]
        self._conn: Any = None
        self._part_rows = 0
        self._has_key = False
        self._held: HeldKeys | None = None
        #: What the load did, once :meth:`commit` has run.
        self.counts: LoadCounts | None = None

    @property
    def table_name(self) -> str:
        """``schema.table`` or ``table``, unquoted, for messages."""
        return f"{self.schema}.{self.table}" if self.schema else self.table

    # -- connection ------------------------------------------------------------------------------

    def _connection(self) -> Any:
        """The connection staging rows are written through."""
        if self._conn is None:
            self._conn = self.database.connect()
        return self._conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.rollback()
            finally:
                conn.close()

    @contextmanager
    def _locked(self) -> Iterator[Any]:
        """A cursor in a transaction holding the target's lock: committed at the end, rolled back on an error."""
        conn = self.database.connect()
        cursor = conn.cursor()
        try:
            self.dialect.lock_target(cursor, self.target)
            yield cursor
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except Exception:
                log.warning("Rolling back the transaction on %s failed", self.table_name, exc_info=True)
            raise
        finally:
            try:
                self.dialect.release_target(cursor, self.target)
            except Exception:  # closing the connection releases it too
                log.warning("Releasing the lock on %s failed", self.table_name, exc_info=True)
            conn.close()

    def _drop(self, names: Sequence[str]) -> None:
        """Drop staging tables beside the target; best effort, logged."""
        try:
            self.database.drop_tables(self.schema, names)
        except Exception:
            log.warning("Could not drop %s; drop_stale_staging_tables() removes them later", names, exc_info=True)

    # -- DDL -------------------------------------------------------------------------------------

    def create_table_sql(self, table: str, *, with_key: bool) -> str:
        """Return ``CREATE TABLE IF NOT EXISTS`` with typed columns (and the primary key)."""
        key = set(self.resource.primary_key) if with_key else set()
        lines = []
        for column in self.resource.all_columns:
            line = f"{self.dialect.quote(column.name)} {self.dialect.column_type(column, column.name in key)}"
            if with_key and (not column.nullable or column.name in key):
                line += " NOT NULL"
            lines.append(line)
        if with_key:
            lines.append(f"PRIMARY KEY ({', '.join(self.dialect.quote(c) for c in self.resource.primary_key)})")
        return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(lines)}){self.dialect.table_options}"

    def begin(self, *, resume: bool) -> None:
        """
        Create the target if needed, check it suits the write disposition, and prepare staging: a
        fresh run replaces this task instance's staging table, a resumed one adopts it.

        :raises PrisjaktConfigError: when the target is missing and ``create_table`` is off, or
            ``merge`` meets a target without a primary key or unique index on the resource's key.
        :raises PrisjaktError: when a resumed run's staging table is gone.
        """
        with self._locked() as cursor:
            if not self.dialect.table_exists(cursor, self.schema, self.table):
                if not self.create_table:
                    raise PrisjaktConfigError(
                        f"The table {self.table_name} does not exist; create it, or pass create_table=True"
                    )
                log.info("Creating table %s", self.table_name)
                cursor.execute(self.create_table_sql(self.target, with_key=True))
            key = frozenset(self.resource.primary_key)
            self._has_key = key in self.dialect.unique_keys(cursor, self.schema, self.table)
            self.strategy.check_target(self.resource, self.table_name, has_key=self._has_key)
            if resume:
                if not self.dialect.table_exists(cursor, self.schema, self.staging_table):
                    raise PrisjaktError(
                        f"The staging table {self.staging_table} of this export is gone, so the rows it staged "
                        f"before pausing are lost; {self.table_name} is unchanged, and a retry of the task "
                        "exports the window again"
                    )
                return
            log.info("Staging rows for %s in %s", self.table_name, self.staging_table)
            cursor.execute(f"DROP TABLE IF EXISTS {self.staging}")
            label = StagingLabel(window=self.window, created=datetime.now(UTC)).to_text()
            create = self.create_table_sql(self.staging, with_key=False)
            for statement in self.dialect.labelled(create, self.staging, label):
                cursor.execute(statement)

    def known_keys(self) -> Container[str]:
        """
        Return the keys the target holds, each looked up by the table's key when asked (see
        :class:`~airflow_provider_prisjakt.export.sinks.sql.held_keys.HeldKeys`).

        The whole table counts, this run's window too: rows are loaded by key, so a table holds each
        click once, whichever window first brought it. A table without a primary key or unique index
        on the resource's key (one ``append`` keeps as a log of runs) knows nothing, as each run
        appends its rows again, and a lookup there would scan the table.
        """
        key = self.resource.primary_key
        if not self._has_key or len(key) != 1:
            return frozenset()
        self._close_held()
        self._held = HeldKeys(self.database, self.target, key[0], self.table_name)
        return self._held

    def _close_held(self) -> None:
        # Lookups hold no transaction (autocommit), so a pause may leave the connection to the collector.
        held, self._held = self._held, None
        if held is not None:
            held.close()

    # -- staging ---------------------------------------------------------------------------------

    def open_part(self, number: int) -> None:
        """Start counting the rows of this part; the staging table is already there."""
        self._part_rows = 0
        self._connection()

    def write_rows(self, records: Sequence[Mapping[str, Any]], scope: str | None) -> None:
        """
        Flatten records and bulk-insert them into staging, ``batch_size`` rows per statement.

        :param records: API records.
        :param scope: the pixel they were read for (fills the scope column), or ``None``.
        """
        if not records:
            return
        rows = typed_rows(self.resource, records, self.extracted_at, scope)
        if self._adapted:
            rows = [self._adapt(row) for row in rows]
        short = self.dialect.commit_every_batch
        try:
            conn = self._connection()
            cursor = conn.cursor()
            if short:
                self.dialect.start_transaction(cursor)
            for offset in range(0, len(rows), self.batch_size):
                self.dialect.bulk_insert(cursor, self.staging, self.columns, rows[offset : offset + self.batch_size])
            if short:
                conn.commit()
        except Exception as err:
            raise self._staging_failed(err) from err
        self._part_rows += len(rows)

    def _adapt(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        values = list(row)
        for index, adapt in self._adapted:
            values[index] = adapt(values[index])
        return tuple(values)

    def _staging_failed(self, err: Exception) -> PrisjaktError:
        return PrisjaktError(
            f"Staging rows for {self.table_name} failed, so the table is unchanged ({type(err).__name__}: "
            f"{one_line(err)}); a retry of the task starts the load again"
        )

    def close_part(self) -> dict[str, Any]:
        """Commit the staged rows (they survive a deferral) and return the part's manifest entry."""
        try:
            self._connection().commit()
        except Exception as err:
            raise self._staging_failed(err) from err
        self._close()
        return {"name": self.table_name, "rows": self._part_rows}

    # -- publish ---------------------------------------------------------------------------------

    def load_of(self, manifest: Mapping[str, Any]) -> Load:
        """Return what :meth:`commit` moves for ``manifest``: its window and targets."""
        window = manifest["window"]
        return Load(
            dialect=self.dialect,
            resource=self.resource,
            target=self.target,
            staging=self.staging,
            has_key=self._has_key,
            window=(to_utc(window["start"], "start"), to_utc(window["end"], "end")),
            targets=tuple(str(target) for target in manifest["targets"]),
        )

    def commit(self, manifest: dict[str, Any]) -> None:
        """
        Move the staged rows into the target in one transaction, then drop staging, and the staging
        tables that earlier runs of this task left for this window (they can no longer resume).

        :raises PrisjaktError: when the database refuses, or staging does not hold the rows the
            export wrote; the transaction is rolled back, so the target is as it was.
        """
        self._close()
        self._close_held()
        rows = manifest.get("rows", 0)
        counts = LoadCounts()
        try:
            with self._locked() as cursor:
                cursor.execute(f"SELECT COUNT(*) FROM {self.staging}")
                staged = cursor.fetchone()[0]
                if staged != rows:
                    raise PrisjaktError(
                        f"The staging table {self.staging_table} holds {staged} rows but the export wrote {rows}, "
                        f"so nothing was loaded and {self.table_name} is unchanged; a retry of the task exports "
                        "the window again"
                    )
                for statement in self.strategy.statements(self.load_of(manifest)):
                    cursor.execute(statement.sql, statement.parameters)
                    row = cursor.fetchone() if statement.tally is Tally.HELD_KEYS else None
                    counts.record(statement.tally, cursor.rowcount, row)
                if self.dialect.transactional_ddl:
                    cursor.execute(f"DROP TABLE IF EXISTS {self.staging}")
        except PrisjaktError:
            raise
        except Exception as err:
            raise PrisjaktError(
                f"Loading {rows} rows into {self.table_name} ({self.write_disposition}) failed "
                f"and was rolled back, so the table is unchanged: {one_line(err)}"
                f"{self.strategy.failure_hint(has_key=self._has_key)}"
            ) from err
        self.counts = counts
        log.info(
            "Loaded %s rows into %s (%s): %s inserted, %s updated, %s deleted",
            rows,
            self.table_name,
            self.write_disposition,
            counts.inserted,
            counts.updated,
            counts.deleted,
        )
        if not self.dialect.transactional_ddl:
            # MySQL commits implicitly on DDL, so staging goes only once the load is committed.
            self._drop([self.staging_table])
        self._drop_leftovers()

    def _drop_leftovers(self) -> None:
        """Drop the staging tables other runs of this task left for this window; best effort, logged."""
        prefix = self.staging_key.group_prefix(self.table)
        try:
            conn = self.database.connect()
            try:
                labels = self.dialect.staging_labels(conn.cursor(), self.schema, prefix)
                conn.commit()
            finally:
                conn.close()
        except Exception:
            log.warning("Could not look for leftover staging tables of %s", self.table_name, exc_info=True)
            return
        names = leftovers(labels, self.staging_table, prefix, self.window)
        if names:
            log.info("Dropping %s staging table(s) that earlier runs of this task left: %s", len(names), names)
            self._drop(names)

    def abort(self) -> None:
        """Drop the staging table; best effort, so the error that led here stays the one raised."""
        self._close_held()
        try:
            self._close()
        except Exception:
            log.warning("Closing the connection to %s failed", self.table_name, exc_info=True)
        self._drop([self.staging_table])

    def describe(self) -> str:
        """Return the table as a URI, without credentials."""
        return self.uri

    def summary_fields(self) -> dict[str, Any]:
        """
        Return what a table adds to the summary: no files, the table and write disposition, and
        ``rows_inserted``, ``rows_updated`` and ``rows_deleted`` (see
        :class:`~airflow_provider_prisjakt.export.sinks.sql.dispositions.LoadCounts`).
        """
        counts = self.counts or LoadCounts()
        return {
            "files": 0,
            "table": self.table_name,
            "write_disposition": str(self.write_disposition),
            **counts.to_summary(),
        }
