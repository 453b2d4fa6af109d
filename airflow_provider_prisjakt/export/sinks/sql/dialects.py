"""
What differs between the SQL databases a table can be written to: identifiers, types, values,
catalog queries, upserts, the bulk load and the table's URI.

One class per database, registered by the connection types that reach it (:data:`DIALECTS`);
:func:`dialect_for` picks one. No method here opens a connection: each takes the cursor it acts on.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_prisjakt.api.resources import ColumnKind
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Connection
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_provider_prisjakt.api.resources import Column

# -- identifiers ----------------------------------------------------------------------------------

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: The shortest identifier limit of the supported databases (PostgreSQL's; MySQL allows 64).
MAX_IDENTIFIER_LENGTH = 63


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


# -- values ---------------------------------------------------------------------------------------


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


def _group_keys(rows: Sequence[Sequence[Any]]) -> list[frozenset[str]]:
    grouped: dict[Any, set[str]] = {}
    for index, column in rows:
        grouped.setdefault(index, set()).add(str(column))
    return [frozenset(columns) for columns in grouped.values()]


def _csv_field(value: Any) -> str:
    # PostgreSQL CSV: an unquoted empty field is NULL, a quoted one is an empty string.
    if value is None:
        return ""
    return '"' + str(value).replace('"', '""') + '"'


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
        return self.adapters.get(kind, _same)

    def table_uri(self, conn: Connection, schema: str | None, table: str) -> str:
        """Return the table as a URI (never with credentials), for logs, summaries and lineage."""
        raise NotImplementedError

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
        """Insert rows in one round trip (or a few) with ``executemany``."""
        names = ", ".join(self.quote(column) for column in columns)
        values = ", ".join([self.placeholder] * len(columns))
        cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({values})", rows)


class PostgresDialect(SqlDialect):
    """PostgreSQL through psycopg (3) or psycopg2; bulk loads use ``COPY``."""

    conn_types = ("postgres", "postgresql")
    types = {
        ColumnKind.STRING: "TEXT",
        ColumnKind.INTEGER: "BIGINT",
        ColumnKind.DECIMAL: "NUMERIC(38, 9)",
        ColumnKind.TIMESTAMP: "TIMESTAMP WITH TIME ZONE",
        ColumnKind.DATE: "DATE",
        ColumnKind.JSON: "JSONB",
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
    adapters = {ColumnKind.TIMESTAMP: _naive_utc}

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
    adapters = {ColumnKind.TIMESTAMP: _iso_utc, ColumnKind.DATE: _iso_date, ColumnKind.DECIMAL: _text}

    def table_uri(self, conn: Connection, schema: str | None, table: str) -> str:
        """``sqlite:///abs/path/file.db/schema.table``; ``main`` is SQLite's own database."""
        path = os.path.abspath(conn.host) if conn.host else ""
        return f"sqlite://{path}/{schema or 'main'}.{table}"

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
