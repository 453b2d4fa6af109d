"""A SQL database reached through an Airflow connection: its common-sql hook, its dialect, and connections to it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt.exceptions import PrisjaktConfigError
from airflow_provider_prisjakt.export.sinks.sql.dialects import dialect_for

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Connection
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_provider_prisjakt.export.sinks.sql.dialects import SqlDialect


def one_line(err: Exception) -> str:
    """Return a driver's error message on one line (drivers put newlines in them)."""
    return " ".join(str(err).split())


@dataclass(frozen=True)
class SqlDatabase:
    """
    A SQL database: the Airflow connection, its common-sql hook and the dialect spoken.

    :param connection: the Airflow connection.
    :param hook: its common-sql hook.
    :param dialect: the database's dialect.
    """

    connection: Connection
    hook: DbApiHook
    dialect: SqlDialect

    @classmethod
    def of(cls, conn_id: str) -> SqlDatabase:
        """
        Resolve connection ``conn_id`` (this reads the connection, nothing more).

        :raises PrisjaktConfigError: when it is not a PostgreSQL, MySQL/MariaDB or SQLite database.
        """
        from airflow.providers.common.compat.sdk import BaseHook
        from airflow.providers.common.sql.hooks.sql import DbApiHook

        connection = BaseHook.get_connection(conn_id)
        hook = connection.get_hook()
        if not isinstance(hook, DbApiHook):
            raise PrisjaktConfigError(
                f"conn_id {conn_id!r} is a {connection.conn_type!r} connection, not a SQL "
                "database; use a postgres, mysql or sqlite connection"
            )
        return cls(connection, hook, dialect_for(connection.conn_type, getattr(hook, "dialect_name", None)))

    def connect(self, *, autocommit: bool = False) -> Any:
        """
        Open a DB-API connection with explicit transactions (see :meth:`SqlDialect.prepare`).

        :param autocommit: have each statement commit itself instead, so that reads between
            writes hold no transaction, snapshot or lock.
        """
        conn = self.hook.get_conn()
        self.dialect.prepare(self.hook, conn, autocommit=autocommit)
        return conn

    def drop_tables(self, schema: str | None, names: Sequence[str]) -> None:
        """Drop tables of ``schema`` (if they still exist), each in its own short transaction."""
        conn = self.connect()
        try:
            for name in names:
                conn.cursor().execute(f"DROP TABLE IF EXISTS {self.dialect.qualified(schema, name)}")
                conn.commit()
        finally:
            conn.close()

    def table_uri(self, schema: str | None, table: str) -> str:
        """Return a table of this database as a URI (never with credentials)."""
        return self.dialect.table_uri(self.connection, schema, table)
