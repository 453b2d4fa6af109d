"""
Transfer Prisjakt click and conversion data into a SQL table (PostgreSQL, MySQL/MariaDB or SQLite).

Rows are first bulk-loaded into a staging table beside the target. The target is touched only at
the end, in one transaction (delete the window and/or insert or upsert from staging), so a run that
fails half-way leaves the target exactly as it was, and a re-run of a window replaces what the last
run wrote.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt.api.resources import EXTRACTED_AT_COLUMN, get_resource
from airflow_provider_prisjakt.api.windows import to_utc
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError, PrisjaktError
from airflow_provider_prisjakt.export.sinks import Sink
from airflow_provider_prisjakt.transfers.base import PrisjaktExportOperator, is_template

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_provider_prisjakt.api.resources import Column, Resource
    from airflow_provider_prisjakt.export.run import ExportRequest

log = logging.getLogger(__name__)

WRITE_DISPOSITIONS = ("merge", "replace_window", "append")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
MAX_IDENTIFIER_LENGTH = 63
STAGING_PREFIX = "_pj_stage_"
DEFAULT_BATCH_SIZE = 5000
ROW_NUMBER_COLUMN = "_pj_rn"


def check_identifier(value: Any, field: str) -> None:
    """
    Refuse a table or schema name that is not a plain SQL identifier.

    Names are quoted in every statement, but only plain names (letters, digits and ``_``, at most
    63 characters, not starting with a digit) are accepted, so a name can never carry SQL.

    :param value: the name.
    :param field: the parameter it came from, for the message.
    :raises PrisjaktConfigError: when the name is not a plain identifier.
    """
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise PrisjaktConfigError(
            f"{field} must be a plain SQL identifier (letters, digits and _, at most 63 characters, "
            f"not starting with a digit), got {value!r}"
        )


def check_write_disposition(write_disposition: Any, resource: Resource | None) -> None:
    """
    Refuse an unknown ``write_disposition``, and ``replace_window`` for resources without a window.

    :raises PrisjaktConfigError: with the allowed values or the disposition to use instead.
    """
    if write_disposition not in WRITE_DISPOSITIONS:
        raise PrisjaktConfigError(
            f"write_disposition must be one of {', '.join(WRITE_DISPOSITIONS)}, got {write_disposition!r}"
        )
    if write_disposition == "replace_window" and resource is not None and resource.window_column is None:
        raise PrisjaktConfigError(
            f"write_disposition='replace_window' needs rows that belong to a time window, and "
            f"resource={resource.name!r} has none; use write_disposition='merge'"
        )


def staging_table_name(table: str, schema: str | None, resource: str, window: tuple[datetime, datetime] | None) -> str:
    """
    Return the staging table of one window's load into ``schema.table``.

    The name is deterministic, so a resumed run finds the rows it staged before a deferral, and
    differs per window, so concurrent runs of different windows into one table never share it.
    """
    key = "|".join(
        [schema or "", table, resource, *(moment.isoformat() for moment in window or ())],
    )
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:8]
    room = MAX_IDENTIFIER_LENGTH - len(STAGING_PREFIX) - len(digest) - 1
    return f"{STAGING_PREFIX}{table[:room]}_{digest}"


# -- dialects -------------------------------------------------------------------------------------


def _naive_utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def _iso_utc(value: datetime | None) -> str | None:
    # Fixed width, so text comparisons order like the instants (the window delete relies on it).
    return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")


def _iso_date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _same(value: Any) -> Any:
    return value


class SqlDialect:
    """
    What differs between the supported databases: quoting, types, values, catalog queries, upserts.

    Subclasses set :attr:`name` (``postgres``, ``mysql`` or ``sqlite``) and the class attributes.
    """

    name = ""
    quote_char = '"'
    placeholder = "%s"
    #: Whether DDL joins the open transaction (PostgreSQL, SQLite) or commits it (MySQL).
    transactional_ddl = True
    #: Column types per kind; ``key`` types apply to primary-key string columns.
    types: Mapping[str, str] = {}
    key_string_type = "TEXT"
    table_options = ""
    #: How a Python value of each kind is passed to the driver.
    adapters: Mapping[str, Callable[[Any], Any]] = {}

    def quote(self, name: str) -> str:
        """Quote an identifier."""
        q = self.quote_char
        return f"{q}{name.replace(q, q + q)}{q}"

    def qualified(self, schema: str | None, table: str) -> str:
        """Return ``schema.table`` (or ``table``), quoted."""
        return f"{self.quote(schema)}.{self.quote(table)}" if schema else self.quote(table)

    def column_type(self, column: Column, is_key: bool) -> str:
        """Return the SQL type of a column."""
        if is_key and column.kind == "string":
            return self.key_string_type
        return self.types[column.kind]

    def adapter(self, kind: str) -> Callable[[Any], Any]:
        """Return the function turning a value of ``kind`` into what the driver takes."""
        return self.adapters.get(kind, _same)

    def prepare(self, hook: DbApiHook, conn: Any) -> None:
        """Switch a new connection to explicit transactions."""
        hook.set_autocommit(conn, False)

    def start_transaction(self, cursor: Any) -> None:
        """Open a transaction explicitly where the driver does not open one by itself."""

    def table_exists(self, cursor: Any, schema: str | None, table: str) -> bool:
        """Return whether the table exists."""
        raise NotImplementedError

    def unique_keys(self, cursor: Any, schema: str | None, table: str) -> list[frozenset[str]]:
        """Return the column sets of the table's primary key and unique indexes."""
        raise NotImplementedError

    def upsert_clause(self, target: str, key: Sequence[str], others: Sequence[str]) -> str:
        """Return the clause turning ``INSERT … SELECT`` into an upsert on ``key``."""
        raise NotImplementedError

    def bulk_insert(self, cursor: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows in one round trip (or a few): ``executemany`` unless the dialect does better."""
        names = ", ".join(self.quote(column) for column in columns)
        values = ", ".join([self.placeholder] * len(columns))
        cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({values})", rows)


class PostgresDialect(SqlDialect):
    """PostgreSQL through psycopg (3) or psycopg2; bulk loads use ``COPY``."""

    name = "postgres"
    types = {
        "string": "TEXT",
        "integer": "BIGINT",
        "decimal": "NUMERIC(38, 9)",
        "timestamp": "TIMESTAMP WITH TIME ZONE",
        "date": "DATE",
        "json": "JSONB",
    }

    def table_exists(self, cursor: Any, schema: str | None, table: str) -> bool:
        """Look the table up as the search path would."""
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (self.qualified(schema, table),))
        return bool(cursor.fetchone()[0])

    def unique_keys(self, cursor: Any, schema: str | None, table: str) -> list[frozenset[str]]:
        """Read unique, non-partial indexes (the primary key is one) from ``pg_index``."""
        cursor.execute(
            "SELECT i.indexrelid::bigint, a.attname FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indpred IS NULL",
            (self.qualified(schema, table),),
        )
        return _group_keys(cursor.fetchall())

    def upsert_clause(self, target: str, key: Sequence[str], others: Sequence[str]) -> str:
        """``ON CONFLICT (key) DO UPDATE SET c = EXCLUDED.c``."""
        updates = ", ".join(f"{self.quote(c)} = EXCLUDED.{self.quote(c)}" for c in others)
        return f" ON CONFLICT ({', '.join(self.quote(c) for c in key)}) DO UPDATE SET {updates}"

    def bulk_insert(self, cursor: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """``COPY … FROM STDIN``: psycopg 3 adapts each value; psycopg2 gets a CSV buffer."""
        statement = f"COPY {table} ({', '.join(self.quote(c) for c in columns)}) FROM STDIN"
        if hasattr(cursor, "copy"):
            with cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
            return
        buffer = io.StringIO()
        for row in rows:
            buffer.write(",".join(_csv_field(value) for value in row))
            buffer.write("\n")
        buffer.seek(0)
        cursor.copy_expert(statement + " WITH (FORMAT csv)", buffer)


def _csv_field(value: Any) -> str:
    # PostgreSQL CSV: an unquoted empty field is NULL, a quoted one is an empty string.
    if value is None:
        return ""
    return '"' + str(value).replace('"', '""') + '"'


class MySqlDialect(SqlDialect):
    """MySQL and MariaDB (mysqlclient or mysql-connector); timestamps are stored as naive UTC."""

    name = "mysql"
    quote_char = "`"
    transactional_ddl = False
    types = {
        "string": "TEXT",
        "integer": "BIGINT",
        "decimal": "DECIMAL(38, 9)",
        "timestamp": "DATETIME(6)",
        "date": "DATE",
        "json": "JSON",
    }
    key_string_type = "VARCHAR(255)"
    # A binary collation, so keys differing only in case stay two rows.
    table_options = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    adapters = {"timestamp": _naive_utc}

    def table_exists(self, cursor: Any, schema: str | None, table: str) -> bool:
        """Look the table up in ``information_schema`` (the connection's database by default)."""
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) "
            "AND TABLE_NAME = %s",
            (schema, table),
        )
        return bool(cursor.fetchone()[0])

    def unique_keys(self, cursor: Any, schema: str | None, table: str) -> list[frozenset[str]]:
        """Read unique indexes from ``information_schema.STATISTICS``."""
        cursor.execute(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s AND NON_UNIQUE = 0",
            (schema, table),
        )
        return _group_keys(cursor.fetchall())

    def upsert_clause(self, target: str, key: Sequence[str], others: Sequence[str]) -> str:
        """``ON DUPLICATE KEY UPDATE c = VALUES(c)`` (understood by MySQL and MariaDB alike)."""
        updates = ", ".join(f"{target}.{self.quote(c)} = VALUES({self.quote(c)})" for c in others)
        return f" ON DUPLICATE KEY UPDATE {updates}"


class SqliteDialect(SqlDialect):
    """SQLite: timestamps are fixed-width ISO-8601 UTC text, decimals NUMERIC."""

    name = "sqlite"
    placeholder = "?"
    types = {
        "string": "TEXT",
        "integer": "BIGINT",
        "decimal": "NUMERIC(38, 9)",
        "timestamp": "TEXT",
        "date": "DATE",
        "json": "TEXT",
    }
    adapters = {"timestamp": _iso_utc, "date": _iso_date, "decimal": _text}

    def prepare(self, hook: DbApiHook, conn: Any) -> None:
        """Leave transactions to explicit ``BEGIN``/``COMMIT``, whatever the statement."""
        conn.isolation_level = None

    def start_transaction(self, cursor: Any) -> None:
        """``BEGIN IMMEDIATE``: take the write lock now rather than fail on it half-way."""
        cursor.execute("BEGIN IMMEDIATE")

    def table_exists(self, cursor: Any, schema: str | None, table: str) -> bool:
        """Look the table up in ``sqlite_master`` of the (attached) database."""
        master = f"{self.quote(schema)}.sqlite_master" if schema else "sqlite_master"
        cursor.execute(f"SELECT COUNT(*) FROM {master} WHERE type = 'table' AND name = ?", (table,))
        return bool(cursor.fetchone()[0])

    def unique_keys(self, cursor: Any, schema: str | None, table: str) -> list[frozenset[str]]:
        """Read the primary key from ``table_info`` and unique indexes from ``index_list``."""
        prefix = f"{self.quote(schema)}." if schema else ""
        cursor.execute(f"PRAGMA {prefix}table_info({self.quote(table)})")
        keys = []
        primary = [row[1] for row in sorted(cursor.fetchall(), key=lambda row: row[5]) if row[5]]
        if primary:
            keys.append(frozenset(primary))
        cursor.execute(f"PRAGMA {prefix}index_list({self.quote(table)})")
        for index in cursor.fetchall():
            if index[2] and not index[4]:
                cursor.execute(f"PRAGMA {prefix}index_info({self.quote(index[1])})")
                keys.append(frozenset(row[2] for row in cursor.fetchall()))
        return keys

    def upsert_clause(self, target: str, key: Sequence[str], others: Sequence[str]) -> str:
        """``ON CONFLICT (key) DO UPDATE SET c = excluded.c`` (the SELECT carries a WHERE, as SQLite needs)."""
        updates = ", ".join(f"{self.quote(c)} = excluded.{self.quote(c)}" for c in others)
        return f" ON CONFLICT ({', '.join(self.quote(c) for c in key)}) DO UPDATE SET {updates}"


def _group_keys(rows: Sequence[Sequence[Any]]) -> list[frozenset[str]]:
    grouped: dict[Any, set[str]] = {}
    for index, column in rows:
        grouped.setdefault(index, set()).add(str(column))
    return [frozenset(columns) for columns in grouped.values()]


DIALECTS: dict[str, type[SqlDialect]] = {
    "postgres": PostgresDialect,
    "postgresql": PostgresDialect,
    "mysql": MySqlDialect,
    "mariadb": MySqlDialect,
    "sqlite": SqliteDialect,
}


def dialect_for(conn_type: str | None, dialect_name: str | None = None) -> SqlDialect:
    """
    Return the dialect of a connection type (or of a hook's ``dialect_name``).

    :raises PrisjaktConfigError: for any database other than PostgreSQL, MySQL/MariaDB and SQLite.
    """
    for name in (conn_type, dialect_name):
        if name and name.lower() in DIALECTS:
            return DIALECTS[name.lower()]()
    raise PrisjaktConfigError(
        f"PrisjaktToSqlOperator writes to postgres, mysql (MariaDB) and sqlite connections; "
        f"this connection is of type {conn_type!r}"
    )


# -- the sink -------------------------------------------------------------------------------------


class SqlSink(Sink):
    """
    A sink writing one window's rows into a SQL table through a staging table.

    :meth:`begin` creates the target (if allowed and missing) and an empty staging table;
    :meth:`write_rows` bulk-loads rows into staging; :meth:`commit` moves them into the target in
    one transaction and drops staging; :meth:`abort` drops staging, leaving the target untouched.

    :param hook: the common-sql hook of the database.
    :param dialect: the database's :class:`SqlDialect`.
    :param table: the target table.
    :param schema: its schema (MySQL: database; SQLite: attached database), or ``None``.
    :param staging_table: the staging table's name, in the same schema.
    :param resource: the resource exported.
    :param write_disposition: ``merge``, ``replace_window`` or ``append``.
    :param create_table: create the target table when it does not exist.
    :param batch_size: rows per bulk insert into staging.
    :param extracted_at: the ``_extracted_at`` value of this run.
    :param uri: the table as a URI, for :meth:`describe`.
    """

    rotates_parts = False

    def __init__(
        self,
        *,
        hook: DbApiHook,
        dialect: SqlDialect,
        table: str,
        schema: str | None,
        staging_table: str,
        resource: Resource,
        write_disposition: str,
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
        Create the target if needed, check it has the key ``merge`` needs, and prepare staging.

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
            if self.write_disposition == "merge" and not self._has_key:
                raise PrisjaktConfigError(
                    f"write_disposition='merge' needs a primary key or unique index on "
                    f"({', '.join(self.resource.primary_key)}) in {self.table_name}; add one, or use "
                    f"write_disposition='replace_window' or 'append'"
                )
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

    def write_rows(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Flatten records and bulk-insert them into staging, ``batch_size`` rows per statement."""
        if not records:
            return
        adapters = self._adapters
        rows = [
            tuple(
                adapt(value)
                for adapt, value in zip(adapters, self.resource.to_row(record, self.extracted_at), strict=True)
            )
            for record in records
        ]
        try:
            cursor = self._connection().cursor()
            for offset in range(0, len(rows), self.batch_size):
                self.dialect.bulk_insert(cursor, self.staging, self.columns, rows[offset : offset + self.batch_size])
        except Exception as err:
            raise self._staging_failed(err) from err
        self._part_rows += len(rows)

    def _staging_failed(self, err: Exception) -> PrisjaktError:
        reason = " ".join(str(err).split())  # drivers add newlines; one log line reads better
        return PrisjaktError(
            f"Staging rows for {self.table_name} failed, so the table is unchanged ({type(err).__name__}: "
            f"{reason}); a retry of the task starts the load again"
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

    def window_bounds(self, manifest: Mapping[str, Any]) -> tuple[Any, Any]:
        """Return the window of ``manifest`` as driver values of the window column: ``[low, high)``."""
        column = next(c for c in self.resource.all_columns if c.name == self.resource.window_column)
        start = to_utc(manifest["window"]["start"], "start")
        end = to_utc(manifest["window"]["end"], "end")
        if column.kind == "date":
            # A day belongs to the window when any part of it does (summaries of partial days).
            last = end.date() if end.timetz() == time(0, tzinfo=UTC) else end.date() + timedelta(days=1)
            low: Any = start.date()
            high: Any = last
        else:
            low, high = start, end
        adapt = self.dialect.adapter(column.kind)
        return adapt(low), adapt(high)

    def publish_statements(self, manifest: Mapping[str, Any]) -> list[tuple[str, Sequence[Any]]]:
        """Return the statements moving staging into the target, with their parameters."""
        q = self.dialect.quote
        ph = self.dialect.placeholder
        statements: list[tuple[str, Sequence[Any]]] = []
        if self.write_disposition == "replace_window":
            low, high = self.window_bounds(manifest)
            targets = [str(target) for target in manifest["targets"]]
            window = q(self.resource.window_column or "")
            statements.append(
                (
                    f"DELETE FROM {self.target} WHERE {window} >= {ph} AND {window} < {ph} "
                    f"AND {q('pixel_id')} IN ({', '.join([ph] * len(targets))})",
                    (low, high, *targets),
                )
            )
        names = ", ".join(q(c) for c in self.columns)
        key = ", ".join(q(c) for c in self.resource.primary_key)
        # The export de-duplicates on ids, but only within a bounded memory; one row per key here.
        select = (
            f"SELECT {names} FROM (SELECT {names}, ROW_NUMBER() OVER (PARTITION BY {key} "
            f"ORDER BY {q(EXTRACTED_AT_COLUMN)} DESC) AS {q(ROW_NUMBER_COLUMN)} FROM {self.staging}) "
            f"{q('_pj_staged')} WHERE {q(ROW_NUMBER_COLUMN)} = 1"
        )
        insert = f"INSERT INTO {self.target} ({names}) {select}"
        if self.write_disposition == "merge" or (self.write_disposition == "replace_window" and self._has_key):
            others = [c for c in self.columns if c not in self.resource.primary_key]
            insert += self.dialect.upsert_clause(self.target, self.resource.primary_key, others)
        statements.append((insert, ()))
        return statements

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
            for statement, parameters in self.publish_statements(manifest):
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
            reason = " ".join(str(err).split())  # drivers add newlines; one log line reads better
            hint = ""
            if self.write_disposition == "append" and self._has_key:
                hint = (
                    "; append inserts every row again and the table has a primary key, so use "
                    "write_disposition='merge' to update rows a previous run wrote"
                )
            raise PrisjaktError(
                f"Loading {manifest.get('rows', 0)} rows into {self.table_name} ({self.write_disposition}) failed "
                f"and was rolled back, so the table is unchanged: {reason}{hint}"
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


# -- the operator ---------------------------------------------------------------------------------


class PrisjaktToSqlOperator(PrisjaktExportOperator):
    """
    Export Prisjakt data for a window into a SQL table of a PostgreSQL, MySQL/MariaDB or SQLite connection.

    One row per record, with typed columns (``event_id``, ``event_time``, ``amount`` …), the whole
    record as JSON in ``raw`` and the run's ``_extracted_at``. Rows are bulk-loaded into a staging
    table beside the target (``_pj_stage_<table>_<hash>``), and moved into the target in one
    transaction at the end, so a run that fails leaves the table exactly as it was.

    Write dispositions:

    * ``merge`` (default): upsert on the resource's primary key; a re-run of a window updates the
      rows it wrote before and adds none twice. Needs a primary key or unique index on that key.
    * ``replace_window``: delete the rows of the window (by ``event_time`` for events, ``day`` for
      purchase summaries) of the exported pixels, then insert the window again, so rows the API no
      longer returns disappear. Rows of other pixels and other windows stay. Not for ``clicks``
      and ``pixels``, which have no window.
    * ``append``: insert every row, as a log of runs told apart by ``_extracted_at``. Into a table
      without a primary key a re-run adds the window again; into one with a key (as
      ``create_table`` makes) a re-run that repeats a key fails and leaves the table unchanged.

    ``file_format``, ``compression`` and ``max_rows_per_file`` (shared parameters, below) have
    no effect on a table.

    :param conn_id: the database connection: any common-sql connection of type ``postgres``,
        ``mysql`` or ``sqlite``. (templated)
    :param table: the target table, a plain identifier. (templated)
    :param schema: the target's schema (MySQL: database; SQLite: attached database); ``None``
        uses the connection's default. (templated)
    :param write_disposition: ``merge``, ``replace_window`` or ``append``, see above.
    :param create_table: create the target table, with typed columns and a primary key on the
        resource's key, when it does not exist.
    :param batch_size: rows per bulk insert into the staging table.
    """

    template_fields: Sequence[str] = (*PrisjaktExportOperator.template_fields, "conn_id", "table", "schema")
    ui_color = "#ff6a13"

    def __init__(
        self,
        *,
        conn_id: str,
        table: str,
        schema: str | None = None,
        write_disposition: str = "merge",
        create_table: bool = True,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.table = table
        self.schema = schema
        self.write_disposition = write_disposition
        self.create_table = create_table
        self.batch_size = batch_size
        resource = None if is_template(self.resource) else get_resource(self.resource)
        check_write_disposition(write_disposition, resource)
        if not is_template(table):
            check_identifier(table, "table")
        if schema is not None and not is_template(schema):
            check_identifier(schema, "schema")
        if batch_size < 1:
            raise PrisjaktConfigError("batch_size must be at least 1")

    @cached_property
    def sql_connection(self) -> Any:
        """The Airflow connection of the database."""
        from airflow.providers.common.compat.sdk import BaseHook

        return BaseHook.get_connection(self.conn_id)

    @cached_property
    def sql_hook(self) -> DbApiHook:
        """The common-sql hook of the database."""
        from airflow.providers.common.sql.hooks.sql import DbApiHook

        hook = self.sql_connection.get_hook()
        if not isinstance(hook, DbApiHook):
            raise PrisjaktConfigError(
                f"conn_id {self.conn_id!r} is a {self.sql_connection.conn_type!r} connection, not a SQL "
                "database; use a postgres, mysql or sqlite connection"
            )
        return hook

    @cached_property
    def dialect(self) -> SqlDialect:
        """The SQL dialect of the connection."""
        return dialect_for(self.sql_connection.conn_type, getattr(self.sql_hook, "dialect_name", None))

    def check_destination(self, resource: Resource) -> None:
        """Check the rendered names and disposition, and that the connection is a supported database."""
        check_identifier(self.table, "table")
        if self.schema not in (None, ""):
            check_identifier(self.schema, "schema")
        check_write_disposition(self.write_disposition, resource)
        # Resolving the URI reads the connection and its dialect now, before any API request.
        self.log.info("Writing to %s (%s)", self.table_uri(), self.write_disposition)

    def table_uri(self) -> str:
        """Return the target as ``postgres://host:port/db.schema.table`` (never with credentials)."""
        conn = self.sql_connection
        schema = self.schema or None
        if self.dialect.name == "postgres":
            database = conn.schema or conn.login or "postgres"  # libpq's default database is the user's
            return f"postgres://{conn.host}:{conn.port or 5432}/{database}.{schema or 'public'}.{self.table}"
        if self.dialect.name == "mysql":
            return f"mysql://{conn.host}:{conn.port or 3306}/{schema or conn.schema or ''}.{self.table}"
        path = os.path.abspath(conn.host) if conn.host else ""
        return f"sqlite://{path}/{schema or 'main'}.{self.table}"

    def build_sink(self, request: ExportRequest, extracted_at: datetime, spool_dir: str) -> SqlSink:
        """Return the SQL sink of this task."""
        schema = self.schema or None
        return SqlSink(
            hook=self.sql_hook,
            dialect=self.dialect,
            table=self.table,
            schema=schema,
            staging_table=staging_table_name(self.table, schema, request.resource.name, (request.start, request.end)),
            resource=request.resource,
            write_disposition=self.write_disposition,
            create_table=self.create_table,
            batch_size=self.batch_size,
            extracted_at=extracted_at,
            uri=self.table_uri(),
        )
