"""
The keys a table already holds, asked one at a time: the rows a clicks export need not fetch again.

:class:`HeldKeys` is a container whose ``in`` is one lookup of the key in the target table, by its
primary key (or unique index), through a connection of its own in autocommit mode: it holds no
transaction, snapshot or lock between lookups, so concurrent exports load into the table as
before. Memory stays flat whatever the table's size. Each lookup is one round trip to the
database; the clicks reader asks once per distinct click of its window that it has not read
already, so a run costs at most as many lookups as it would otherwise send click requests.
"""

from __future__ import annotations

import logging
from collections.abc import Container
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt.exceptions import PrisjaktError
from airflow_provider_prisjakt.export.sinks.sql.database import one_line

if TYPE_CHECKING:
    from airflow_provider_prisjakt.export.sinks.sql.database import SqlDatabase

log = logging.getLogger(__name__)


class HeldKeys(Container[str]):
    """
    The values of a key column the target table holds, looked up when asked.

    :param database: the database of the table.
    :param target: the table, quoted and qualified.
    :param column: the key column (a primary key or unique index, so a lookup reads one index entry).
    :param table_name: the table, unquoted, for messages.
    """

    def __init__(self, database: SqlDatabase, target: str, column: str, table_name: str) -> None:
        dialect = database.dialect
        self.database = database
        self.column = column
        self.table_name = table_name
        self.sql = f"SELECT 1 FROM {target} WHERE {dialect.quote(column)} = {dialect.placeholder}"
        self._conn: Any = None
        self._cursor: Any = None

    def __contains__(self, key: object) -> bool:
        """Tell whether the table holds a row with this key (as text)."""
        if not isinstance(key, str):
            return False
        try:
            if self._cursor is None:
                self._conn = self.database.connect(autocommit=True)
                self._cursor = self._conn.cursor()
            self._cursor.execute(self.sql, (key,))
            # Read to the end: SQLite keeps a read lock while a statement has rows left to step.
            found = bool(self._cursor.fetchall())
        except Exception as err:
            self.close()
            raise PrisjaktError(
                f"Looking up {self.column} {key!r} in {self.table_name} failed ({type(err).__name__}: "
                f"{one_line(err)}), so the table is unchanged; a retry of the task exports the window again"
            ) from err
        return found

    def close(self) -> None:
        """Close the connection, if one is open; a later lookup opens another."""
        conn, self._conn, self._cursor = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # nothing is pending on it: autocommit
                log.warning("Closing the lookup connection to %s failed", self.table_name, exc_info=True)
