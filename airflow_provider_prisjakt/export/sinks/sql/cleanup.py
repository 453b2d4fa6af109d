"""Dropping the staging tables that no export will come back for."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from airflow_provider_prisjakt.exceptions import PrisjaktConfigError
from airflow_provider_prisjakt.export.sinks.sql.database import SqlDatabase
from airflow_provider_prisjakt.export.sinks.sql.identifiers import check_identifier
from airflow_provider_prisjakt.export.sinks.sql.staging import STAGING_PREFIX, stale, table_prefix

log = logging.getLogger(__name__)


def drop_stale_staging_tables(
    conn_id: str, *, older_than: timedelta, schema: str | None = None, table: str | None = None
) -> list[str]:
    """
    Drop the staging tables (``_pj_stage_*``) of a schema that were made more than ``older_than`` ago.

    An export drops its own staging table when it finishes or fails, and the next success of the
    same task (DAG, task and map index) for the same window drops what earlier runs of it left.
    What remains is the staging of task instances that crashed and never ran again; call this, for
    example from a daily maintenance task, to remove it. Choose ``older_than`` longer than any
    export may take, deferrals included, so that no live export's staging is that old.

    :param conn_id: the SQL connection (``postgres``, ``mysql`` or ``sqlite``).
    :param older_than: how old a staging table must be to be dropped.
    :param schema: the schema to clean (MySQL: database; SQLite: attached database); ``None`` is
        the connection's default.
    :param table: only the staging tables beside this target table (and beside tables whose names
        share its first 31 characters); ``None``: every staging table of the schema.
    :return: the names of the tables dropped.
    """
    if schema is not None:
        check_identifier(schema, "schema")
    if table is not None:
        check_identifier(table, "table")
    if older_than < timedelta(0):
        raise PrisjaktConfigError("older_than must not be negative")
    database = SqlDatabase.of(conn_id)
    conn = database.connect()
    try:
        prefix = STAGING_PREFIX if table is None else table_prefix(table)
        labels = database.dialect.staging_labels(conn.cursor(), schema, prefix)
        conn.commit()
    finally:
        conn.close()
    names = stale(labels, datetime.now(UTC), older_than)
    database.drop_tables(schema, names)
    log.info("Dropped %s staging table(s) older than %s: %s", len(names), older_than, names)
    return names
