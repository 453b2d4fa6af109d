"""
A sink writing one window's rows into a SQL table through a staging table beside it.

Rows are bulk-loaded into staging as pages arrive. The target is touched only at the end, in one
transaction (what the write disposition runs: delete the window and/or insert or upsert from
staging), so a run that fails half-way leaves the target exactly as it was, and a re-run of a
window replaces what the last run wrote.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt.api.windows import to_utc
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError, PrisjaktError
from airflow_provider_prisjakt.export.formats import typed_rows
from airflow_provider_prisjakt.export.sinks import Sink
from airflow_provider_prisjakt.export.sinks.sql.dialects import MAX_IDENTIFIER_LENGTH
from airflow_provider_prisjakt.export.sinks.sql.dispositions import Load, strategy_for

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_provider_prisjakt.api.resources import Resource
    from airflow_provider_prisjakt.export.sinks.sql.dialects import SqlDialect
    from airflow_provider_prisjakt.export.sinks.sql.dispositions import WriteDisposition

log = logging.getLogger(__name__)

STAGING_PREFIX = "_pj_stage_"
DEFAULT_BATCH_SIZE = 5000


def staging_table_name(table: str, schema: str | None, resource: str, window: tuple[datetime, datetime] | None) -> str:
    """
    Return the staging table of one window's load into ``schema.table``.

    The name is deterministic, so a resumed run finds the rows it staged before a deferral, and
    differs per window, so concurrent runs of different windows into one table never share it.

    :param table: the target table.
    :param schema: its schema, or ``None``.
    :param resource: the resource's name.
    :param window: the exported window, or ``None``.
    """
    key = "|".join(
        [schema or "", table, resource, *(moment.isoformat() for moment in window or ())],
    )
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:8]
    room = MAX_IDENTIFIER_LENGTH - len(STAGING_PREFIX) - len(digest) - 1
    return f"{STAGING_PREFIX}{table[:room]}_{digest}"


def _one_line(err: Exception) -> str:
    # Drivers put newlines in their messages; one log line reads better.
    return " ".join(str(err).split())


class SqlSink(Sink):
    """
    A sink writing one window's rows into a SQL table through a staging table.

    :meth:`begin` creates the target (if allowed and missing) and an empty staging table;
    :meth:`write_rows` bulk-loads rows into staging; :meth:`commit` moves them into the target in
    one transaction and drops staging; :meth:`abort` drops staging, leaving the target untouched.
    A table takes the whole run as one part.

    :param hook: the common-sql hook of the database.
    :param dialect: the database's :class:`SqlDialect`.
    :param table: the target table.
    :param schema: its schema (MySQL: database; SQLite: attached database), or ``None``.
    :param staging_table: the staging table's name, in the same schema.
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
        hook: DbApiHook,
        dialect: SqlDialect,
        table: str,
        schema: str | None,
        staging_table: str,
        resource: Resource,
        write_disposition: WriteDisposition,
        create_table: bool,
        batch_size: int,
        extracted_at: datetime,
        uri: str,
    ) -> None:
        self.hook = hook
        self.dialect = dialect
        self.table = table
        self.schema = schema
        self.staging_table = staging_table
        self.resource = resource
        self.write_disposition = write_disposition
        self.strategy = strategy_for(write_disposition)
        self.create_table = create_table
        self.batch_size = batch_size
        self.extracted_at = extracted_at
        self.uri = uri
        self.target = dialect.qualified(schema, table)
        self.staging = dialect.qualified(schema, staging_table)
        self.columns = resource.column_names
        self._adapters = [dialect.adapter(column.kind) for column in resource.all_columns]
        self._conn: Any = None
        self._part_rows = 0
        self._has_key = False

    @property
    def table_name(self) -> str:
        """``schema.table`` or ``table``, unquoted, for messages."""
        return f"{self.schema}.{self.table}" if self.schema else self.table

    # -- connection ------------------------------------------------------------------------------

    def _connect(self) -> Any:
        conn = self.hook.get_conn()
        self.dialect.prepare(self.hook, conn)
        return conn

    def _connection(self) -> Any:
        """The connection staging rows are written through, with a transaction open."""
        if self._conn is None:
            self._conn = self._connect()
            self.dialect.start_transaction(self._conn.cursor())
        return self._conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.rollback()
            finally:
                conn.close()

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
        Create the target if needed, check it suits the write disposition, and prepare staging.

        :raises PrisjaktConfigError: when the target is missing and ``create_table`` is off, or
            ``merge`` meets a target without a primary key or unique index on the resource's key.
        """
        conn = self._connect()
        try:
            cursor = conn.cursor()
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
            if not resume:
                cursor.execute(f"DROP TABLE IF EXISTS {self.staging}")
            cursor.execute(self.create_table_sql(self.staging, with_key=False))
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except Exception:
                log.warning("Rolling back the preparation of %s failed", self.table_name, exc_info=True)
            raise
        finally:
            conn.close()

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
        adapters = self._adapters
        rows = [
            tuple(adapt(value) for adapt, value in zip(adapters, row, strict=True))
            for row in typed_rows(self.resource, records, self.extracted_at, scope)
        ]
        try:
            cursor = self._connection().cursor()
            for offset in range(0, len(rows), self.batch_size):
                self.dialect.bulk_insert(cursor, self.staging, self.columns, rows[offset : offset + self.batch_size])
        except Exception as err:
            raise self._staging_failed(err) from err
        self._part_rows += len(rows)

    def _staging_failed(self, err: Exception) -> PrisjaktError:
        return PrisjaktError(
            f"Staging rows for {self.table_name} failed, so the table is unchanged ({type(err).__name__}: "
            f"{_one_line(err)}); a retry of the task starts the load again"
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
        Move the staged rows into the target in one transaction, then drop staging.

        :raises PrisjaktError: when the database refuses; the transaction is rolled back, so the
            target is as it was.
        """
        self._close()
        conn = self._connect()
        try:
            cursor = conn.cursor()
            self.dialect.start_transaction(cursor)
            for statement, parameters in self.strategy.statements(self.load_of(manifest)):
                cursor.execute(statement, parameters)
            if self.dialect.transactional_ddl:
                cursor.execute(f"DROP TABLE IF EXISTS {self.staging}")
            conn.commit()
        except Exception as err:
            try:
                conn.rollback()
            except Exception:
                log.warning("Rolling back the load into %s failed", self.table_name, exc_info=True)
            conn.close()
            raise PrisjaktError(
                f"Loading {manifest.get('rows', 0)} rows into {self.table_name} ({self.write_disposition}) failed "
                f"and was rolled back, so the table is unchanged: {_one_line(err)}"
                f"{self.strategy.failure_hint(has_key=self._has_key)}"
            ) from err
        try:
            if not self.dialect.transactional_ddl:
                # MySQL commits implicitly on DDL, so staging goes only once the load is committed.
                conn.cursor().execute(f"DROP TABLE IF EXISTS {self.staging}")
        finally:
            conn.close()
        log.info("Loaded %s rows into %s (%s)", manifest.get("rows", 0), self.table_name, self.write_disposition)

    def abort(self) -> None:
        """Drop the staging table; best effort, so the error that led here stays the one raised."""
        try:
            self._close()
        except Exception:
            log.warning("Closing the connection to %s failed", self.table_name, exc_info=True)
        try:
            conn = self._connect()
            try:
                conn.cursor().execute(f"DROP TABLE IF EXISTS {self.staging}")
                conn.commit()
            finally:
                conn.close()
        except Exception:
            log.warning("Could not drop the staging table %s; the next run drops it", self.staging_table, exc_info=True)

    def describe(self) -> str:
        """Return the table as a URI, without credentials."""
        return self.uri
