"""
What differs between the SQL databases a table can be written to: quoting, types, values, catalog
queries, locks, upserts, the bulk load and the table's URI.

One class per database, registered by the connection types that reach it (:data:`DIALECTS`);
:func:`dialect_for` picks one. No method here opens a connection: each takes the cursor it acts on.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_prisjakt.api.columns import ColumnKind
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError, PrisjaktError
from airflow_provider_prisjakt.export.sinks.sql.identifiers import lock_name, lock_number
from airflow_provider_prisjakt.export.sinks.sql.values import (
    as_text,
    csv_field,
    iso_date,
    iso_utc,
    json_text,
    naive_utc,
    unchanged,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Connection
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_provider_prisjakt.api.columns import Column

#: How long a writer waits for another export's lock on the same table (or SQLite database).
LOCK_WAIT_SECONDS = 600

# -- values ---------------------------------------------------------------------------------------


def _group_keys(rows: Sequence[Sequence[Any]]) -> list[frozenset[str]]:
    grouped: dict[Any, set[str]] = {}
    for index, column in rows:
        grouped.setdefault(index, set()).add(str(column))
    return [frozenset(columns) for columns in grouped.values()]


def _starting_with(rows: Sequence[Sequence[Any]], prefix: str) -> dict[str, str | None]:
    # Catalog comparisons may ignore case (MySQL); staging names are compared exactly here.
    return {str(name): label for name, label in rows if str(name).startswith(prefix)}


# -- dialects -------------------------------------------------------------------------------------


class SqlDialect:
    """
    The base of the dialects: ANSI quoting, ``executemany`` bulk loads, explicit transactions.

    Subclasses set the class attributes and implement the catalog queries, the upsert clause and
    :meth:`table_uri`.
    """

    #: The connection types (and common-sql ``dialect_name`` values) this dialect serves.
    conn_types: ClassVar[tuple[str, ...]] = ()
    quote_char: ClassVar[str] = '"'
    placeholder: ClassVar[str] = "%s"
    #: Whether DDL joins the open transaction (PostgreSQL, SQLite) or commits it (MySQL).
    transactional_ddl: ClassVar[bool] = True
    #: The column type of each kind; :attr:`key_string_type` applies to string primary-key columns.
    types: ClassVar[Mapping[ColumnKind, str]] = {}
    key_string_type: ClassVar[str] = "TEXT"
    table_options: ClassVar[str] = ""
    #: How a Python value of a kind is passed to the driver (unchanged when absent).
    adapters: ClassVar[Mapping[ColumnKind, Callable[[Any], Any]]] = {}
    #: Whether staging commits after each batch rather than once per part: SQLite locks the whole
    #: database while a transaction writes, so other exports get their turn between pages.
    commit_every_batch: ClassVar[bool] = False
    #: Whether ``SELECT DISTINCT ON (key) … ORDER BY key, …`` keeps one row per key (a cheaper sort).
    distinct_on: ClassVar[bool] = False

    def quote(self, name: str) -> str:
        """Quote an identifier."""
        q = self.quote_char
        return f"{q}{name.replace(q, q + q)}{q}"

    def qualified(self, schema: str | None, table: str) -> str:
        """Return ``schema.table`` (or ``table``), quoted."""
        return f"{self.quote(schema)}.{self.quote(table)}" if schema else self.quote(table)

    def column_type(self, column: Column, is_key: bool) -> str:
        """Return the SQL type of a column."""
        if is_key and column.kind is ColumnKind.STRING:
            return self.key_string_type
        return self.types[column.kind]

    def adapter(self, kind: ColumnKind) -> Callable[[Any], Any]:
        """Return the function turning a value of ``kind`` into what the driver takes."""
        return self.adapters.get(kind, unchanged)

    def table_uri(self, conn: Connection, schema: str | None, table: str) -> str:
        """Return the table as a URI (never with credentials), for logs, summaries and lineage."""
        raise NotImplementedError

    def prepare(self, hook: DbApiHook, conn: Any, *, autocommit: bool = False) -> None:
        """Switch a new connection to explicit transactions, or to ``autocommit`` (each statement its own)."""
        hook.set_autocommit(conn, autocommit)

    def start_transaction(self, cursor: Any) -> None:
        """Open a transaction explicitly where the driver does not open one by itself."""

    def lock_target(self, cursor: Any, key: str) -> None:
        """Open a transaction holding the lock of target ``key``: one export at a time creates or loads it."""
        raise NotImplementedError

    def release_target(self, cursor: Any, key: str) -> None:
        """Release what :meth:`lock_target` took that the end of the transaction does not."""

    def labelled(self, create: str, table: str, label: str) -> list[str]:
        """Return the statements running ``create`` and labelling the table (``label`` holds no quotes)."""
        return [create, f"COMMENT ON TABLE {table} IS '{label}'"]

    def staging_labels(self, cursor: Any, schema: str | None, prefix: str) -> dict[str, str | None]:
        """Return the tables whose names start with ``prefix``, with their labels (comments)."""
        raise NotImplementedError

    def table_exists(self, cursor: Any, schema: str | None, table: str) -> bool:
        """Return whether the table exists."""
        raise NotImplementedError

    def unique_keys(self, cursor: Any, schema: str | None, table: str) -> list[frozenset[str]]:
        """Return the column sets of the table's primary key and unique indexes."""
        raise NotImplementedError

    def upsert_clause(self, target: str, key: Sequence[str], others: Sequence[str]) -> str:
        """Return the clause turning ``INSERT … SELECT`` into an upsert on ``key``."""
        raise NotImplementedError

    def bulk_insert(self, cursor: Any, table: str, columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows into a table whose columns have :attr:`types` (staging), in one round trip or a few."""
        names = ", ".join(self.quote(column.name) for column in columns)
        values = ", ".join([self.placeholder] * len(columns))
        cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({values})", rows)


class PostgresDialect(SqlDialect):
    """PostgreSQL through psycopg (3) or psycopg2; bulk loads use ``COPY``."""

    conn_types = ("postgres", "postgresql")
    distinct_on = True
    types = {
        ColumnKind.STRING: "TEXT",
        ColumnKind.INTEGER: "BIGINT",
        ColumnKind.DECIMAL: "NUMERIC(38, 9)",
        ColumnKind.TIMESTAMP: "TIMESTAMP WITH TIME ZONE",
        ColumnKind.DATE: "DATE",
        ColumnKind.JSON: "JSONB",
    }
    #: :attr:`types` as psycopg names them, for binary ``COPY``.
    binary_types: ClassVar[Mapping[ColumnKind, str]] = {
        ColumnKind.STRING: "text",
        ColumnKind.INTEGER: "int8",
        ColumnKind.DECIMAL: "numeric",
        ColumnKind.TIMESTAMP: "timestamptz",
        ColumnKind.DATE: "date",
        ColumnKind.JSON: "jsonb",
    }

    def table_uri(self, conn: Connection, schema: str | None, table: str) -> str:
        """``postgres://host:port/database.schema.table``; libpq's default database is the user's."""
        database = conn.schema or conn.login or "postgres"
        return f"postgres://{conn.host}:{conn.port or 5432}/{database}.{schema or 'public'}.{table}"

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

    def lock_target(self, cursor: Any, key: str) -> None:
        """A transaction-level advisory lock: released by the commit or rollback."""
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (lock_number(key),))

    def staging_labels(self, cursor: Any, schema: str | None, prefix: str) -> dict[str, str | None]:
        """Read names and comments from ``pg_class``."""
        cursor.execute(
            "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
            "AND n.nspname = COALESCE(%s, current_schema()) AND strpos(c.relname::text, %s) = 1",
            (schema, prefix),
        )
        return _starting_with(cursor.fetchall(), prefix)

    def upsert_clause(self, target: str, key: Sequence[str], others: Sequence[str]) -> str:
        """``ON CONFLICT (key) DO UPDATE SET c = EXCLUDED.c``."""
        updates = ", ".join(f"{self.quote(c)} = EXCLUDED.{self.quote(c)}" for c in others)
        return f" ON CONFLICT ({', '.join(self.quote(c) for c in key)}) DO UPDATE SET {updates}"

    def bulk_insert(self, cursor: Any, table: str, columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> None:
        """
        ``COPY … FROM STDIN``; psycopg2 gets a CSV buffer. psycopg 3 sends the rows in PostgreSQL's
        binary form (the columns have :attr:`types`): it formats no value as text, which takes 40%
        less CPU (times cost the most), and JSON columns go as the JSON text they hold.
        """
        statement = f"COPY {table} ({', '.join(self.quote(c.name) for c in columns)}) FROM STDIN"
        if hasattr(cursor, "copy"):
            from psycopg.types.json import set_json_dumps

            set_json_dumps(json_text, context=cursor)
            with cursor.copy(statement + " (FORMAT BINARY)") as copy:
                copy.set_types([self.binary_types[column.kind] for column in columns])
                for row in rows:
                    copy.write_row(row)
            return
        buffer = io.StringIO()
        for row in rows:
            buffer.write(",".join(csv_field(value) for value in row))
            buffer.write("\n")
        buffer.seek(0)
        cursor.copy_expert(statement + " WITH (FORMAT csv)", buffer)


class MySqlDialect(SqlDialect):
    """MySQL and MariaDB (mysqlclient or mysql-connector); timestamps are stored as naive UTC."""

    conn_types = ("mysql", "mariadb")
    quote_char = "`"
    transactional_ddl = False
    types = {
        ColumnKind.STRING: "TEXT",
        ColumnKind.INTEGER: "BIGINT",
        ColumnKind.DECIMAL: "DECIMAL(38, 9)",
        ColumnKind.TIMESTAMP: "DATETIME(6)",
        ColumnKind.DATE: "DATE",
        ColumnKind.JSON: "JSON",
    }
    key_string_type = "VARCHAR(255)"
    # A binary collation, so keys differing only in case stay two rows.
    table_options = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    adapters = {ColumnKind.TIMESTAMP: naive_utc}

    def table_uri(self, conn: Connection, schema: str | None, table: str) -> str:
        """``mysql://host:port/database.table``; a MySQL schema is a database."""
        return f"mysql://{conn.host}:{conn.port or 3306}/{schema or conn.schema or ''}.{table}"

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

    def lock_target(self, cursor: Any, key: str) -> None:
        """Take a named lock (``GET_LOCK``); it outlives DDL's implicit commits, so release it explicitly."""
        cursor.execute("SELECT GET_LOCK(%s, %s)", (lock_name(key), LOCK_WAIT_SECONDS))
        if cursor.fetchone()[0] != 1:
            raise PrisjaktError(f"Another export held the lock on this table for more than {LOCK_WAIT_SECONDS} s")

    def release_target(self, cursor: Any, key: str) -> None:
        """``RELEASE_LOCK`` (closing the connection would too)."""
        cursor.execute("SELECT RELEASE_LOCK(%s)", (lock_name(key),))
        cursor.fetchall()

    def labelled(self, create: str, table: str, label: str) -> list[str]:
        """The label as the ``COMMENT`` table option."""
        return [f"{create} COMMENT='{label}'"]

    def staging_labels(self, cursor: Any, schema: str | None, prefix: str) -> dict[str, str | None]:
        """Read names and comments from ``information_schema.TABLES``."""
        cursor.execute(
            "SELECT TABLE_NAME, TABLE_COMMENT FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND LEFT(TABLE_NAME, %s) = %s",
            (schema, len(prefix), prefix),
        )
        return _starting_with(cursor.fetchall(), prefix)

    def upsert_clause(self, target: str, key: Sequence[str], others: Sequence[str]) -> str:
        """``ON DUPLICATE KEY UPDATE c = VALUES(c)`` (understood by MySQL and MariaDB alike)."""
        updates = ", ".join(f"{target}.{self.quote(c)} = VALUES({self.quote(c)})" for c in others)
        return f" ON DUPLICATE KEY UPDATE {updates}"


class SqliteDialect(SqlDialect):
    """SQLite: timestamps are fixed-width ISO-8601 UTC text, decimals NUMERIC."""

    conn_types = ("sqlite",)
    placeholder = "?"
    types = {
        ColumnKind.STRING: "TEXT",
        ColumnKind.INTEGER: "BIGINT",
        ColumnKind.DECIMAL: "NUMERIC(38, 9)",
        ColumnKind.TIMESTAMP: "TEXT",
        ColumnKind.DATE: "DATE",
        ColumnKind.JSON: "TEXT",
    }
    adapters = {ColumnKind.TIMESTAMP: iso_utc, ColumnKind.DATE: iso_date, ColumnKind.DECIMAL: as_text}
    commit_every_batch = True

    def table_uri(self, conn: Connection, schema: str | None, table: str) -> str:
        """``sqlite:///abs/path/file.db/schema.table``; ``main`` is SQLite's own database."""
        path = os.path.abspath(conn.host) if conn.host else ""
        return f"sqlite://{path}/{schema or 'main'}.{table}"

    def prepare(self, hook: DbApiHook, conn: Any, *, autocommit: bool = False) -> None:
        """Leave transactions to explicit ``BEGIN`` (else autocommit); wait for other writers rather than fail."""
        conn.isolation_level = None
        conn.execute(f"PRAGMA busy_timeout = {LOCK_WAIT_SECONDS * 1000}")

    def start_transaction(self, cursor: Any) -> None:
        """``BEGIN IMMEDIATE``: take the write lock now rather than fail on it half-way."""
        cursor.execute("BEGIN IMMEDIATE")

    def lock_target(self, cursor: Any, key: str) -> None:
        """``BEGIN IMMEDIATE``: the database's write lock serializes every writer already."""
        self.start_transaction(cursor)

    def labelled(self, create: str, table: str, label: str) -> list[str]:
        """The label as a comment inside ``CREATE TABLE``, which SQLite keeps in ``sqlite_master.sql``."""
        return [create.replace("(", f"(/* {label} */ ", 1)]

    def master(self, schema: str | None) -> str:
        """Return the catalog (``sqlite_master``) of the main or an attached database."""
        return f"{self.quote(schema)}.sqlite_master" if schema else "sqlite_master"

    def staging_labels(self, cursor: Any, schema: str | None, prefix: str) -> dict[str, str | None]:
        """Read names and ``CREATE`` statements (holding the label) from ``sqlite_master``."""
        sql = f"SELECT name, sql FROM {self.master(schema)} WHERE type = 'table' AND substr(name, 1, ?) = ?"
        cursor.execute(sql, (len(prefix), prefix))
        return _starting_with(cursor.fetchall(), prefix)

    def table_exists(self, cursor: Any, schema: str | None, table: str) -> bool:
        """Look the table up in ``sqlite_master`` of the (attached) database."""
        cursor.execute(f"SELECT COUNT(*) FROM {self.master(schema)} WHERE type = 'table' AND name = ?", (table,))
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


#: The dialect of each connection type (lower case).
DIALECTS: dict[str, type[SqlDialect]] = {
    conn_type: dialect for dialect in (PostgresDialect, MySqlDialect, SqliteDialect) for conn_type in dialect.conn_types
}


def dialect_for(conn_type: str | None, dialect_name: str | None = None) -> SqlDialect:
    """
    Return the dialect of a connection type, else of a common-sql hook's ``dialect_name``.

    :param conn_type: the Airflow connection's type.
    :param dialect_name: the hook's ``dialect_name``, for connection types named otherwise.
    :raises PrisjaktConfigError: for any database other than PostgreSQL, MySQL/MariaDB and SQLite.
    """
    for name in (conn_type, dialect_name):
        dialect = DIALECTS.get((name or "").lower())
        if dialect is not None:
            return dialect()
    raise PrisjaktConfigError(
        f"PrisjaktToSqlOperator writes to postgres, mysql (MariaDB) and sqlite connections; "
        f"this connection is of type {conn_type!r}"
    )
