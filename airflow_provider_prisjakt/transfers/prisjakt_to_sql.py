"""Transfer Prisjakt click and conversion data into a SQL table (PostgreSQL, MySQL/MariaDB or SQLite)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt.api.resources import get_resource
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError
from airflow_provider_prisjakt.export.sinks.sql.database import SqlDatabase
from airflow_provider_prisjakt.export.sinks.sql.dispositions import (
    WriteDisposition,
    parse_write_disposition,
    strategy_for,
)
from airflow_provider_prisjakt.export.sinks.sql.identifiers import check_identifier
from airflow_provider_prisjakt.export.sinks.sql.sink import DEFAULT_BATCH_SIZE, SqlSink
from airflow_provider_prisjakt.export.sinks.sql.staging import StagingKey
from airflow_provider_prisjakt.transfers.base import PrisjaktExportOperator, is_template

if TYPE_CHECKING:
    from datetime import datetime

    from airflow_provider_prisjakt.api.resources import Resource
    from airflow_provider_prisjakt.export.run import ExportRequest


class PrisjaktToSqlOperator(PrisjaktExportOperator):
    """
    Export Prisjakt data for a window into a SQL table of a PostgreSQL, MySQL/MariaDB or SQLite connection.

    One row per record, with typed columns (``event_id``, ``event_time``, ``amount`` …), the whole
    record as JSON in ``raw`` and the run's ``_extracted_at``. Rows are bulk-loaded into a staging
    table beside the target (``_pj_stage_<table>_<task>_<run>``), and moved into the target in one
    transaction at the end, so a run that fails leaves the table exactly as it was.

    The staging table belongs to this task instance (DAG, run, task and map index; outside Airflow,
    the pixel or shop and the window): its retries and resumes adopt it, and mapped or concurrent
    exports of other pixels into the same table never touch it. Creating and loading the target
    take a lock, one export at a time, so they can all write one table. When the task succeeds, it
    drops the staging that earlier runs of it left for the same window; see
    :func:`~airflow_provider_prisjakt.export.sinks.sql.cleanup.drop_stale_staging_tables` for the
    rest.

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

    ``clicks`` are fetched once per table: the export looks each event's click up in the table (by
    its primary key) and requests only the clicks it does not hold, so the table holds every click
    once and ``requests_saved`` counts the requests spared. A table without a key on ``click_id``
    (a log of runs) gets each run's clicks again.

    The summary reports ``files`` 0 (a table has no files), the ``table`` and ``write_disposition``,
    and what the load did: ``rows_inserted`` (keys the table did not hold), ``rows_updated`` (keys
    it held when the insert ran, overwritten by the upsert) and ``rows_deleted`` (rows the
    ``replace_window`` delete removed, rows loaded again included). So a re-run of a window reports
    its rows as updated under ``merge``, and as deleted and inserted under ``replace_window``.

    :param conn_id: the database connection: any common-sql connection of type ``postgres``,
        ``mysql`` or ``sqlite``. (templated)
    :param table: the target table, a plain identifier. (templated)
    :param schema: the target's schema (MySQL: database; SQLite: attached database); ``None``
        uses the connection's default. (templated)
    :param write_disposition: ``merge``, ``replace_window`` or ``append``, see above.
    :param create_table: create the target table, with typed columns and a primary key on the
        resource's key, when it does not exist.
    :param batch_size: rows per bulk insert into the staging table.
    :param resource: which data becomes rows: ``events`` (default), ``purchase_summary``,
        ``clicks`` or ``pixels``. (templated)
    :param pixel_id: the pixel whose rows are loaded. (templated)
    :param shop_id: the shop whose pixels are all loaded when ``pixel_id`` is absent. (templated)
    :param start: first instant of the window (inclusive); by default the data interval's. (templated)
    :param end: instant after the window (exclusive); by default the data interval's. (templated)
    :param lookback: how far before ``start`` late conversions are looked for. (templated)
    :param prisjakt_conn_id: which Prisjakt connection reads the API. (templated)
    :param deferrable: give the worker back while the rate-limit budget refills.
    :param asset_alias: the Airflow 3 asset alias declared when the task has no ``outlets``.

    :class:`~airflow_provider_prisjakt.transfers.base.PrisjaktExportOperator` describes the
    parameters from ``resource`` on in full. Part-file parameters (``file_format``, ``compression``,
    ``max_rows_per_file``) mean nothing to a table and are refused.
    """

    template_fields: Sequence[str] = (*PrisjaktExportOperator.template_fields, "conn_id", "table", "schema")
    ui_color = "#ff6a13"

    def __init__(
        self,
        *,
        conn_id: str,
        table: str,
        schema: str | None = None,
        write_disposition: WriteDisposition | str = WriteDisposition.MERGE,
        create_table: bool = True,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.table = table
        self.schema = schema
        self.write_disposition = parse_write_disposition(write_disposition)
        self.create_table = create_table
        self.batch_size = batch_size
        # Checks that need no I/O fail at parse time; templated values are checked once rendered.
        if not is_template(self.resource):
            strategy_for(self.write_disposition).check_resource(get_resource(self.resource))
        if not is_template(table):
            check_identifier(table, "table")
        if schema is not None and not is_template(schema):
            check_identifier(schema, "schema")
        if batch_size < 1:
            raise PrisjaktConfigError("batch_size must be at least 1")

    @cached_property
    def database(self) -> SqlDatabase:
        """The database: its Airflow connection, common-sql hook and dialect."""
        return SqlDatabase.of(self.conn_id)

    def check_destination(self, resource: Resource) -> None:
        """Check the rendered names and disposition, and that the connection is a supported database."""
        check_identifier(self.table, "table")
        if self.schema not in (None, ""):
            check_identifier(self.schema, "schema")
        strategy_for(self.write_disposition).check_resource(resource)
        # Resolving the URI reads the connection and its dialect now, before any API request.
        self.log.info("Writing to %s (%s)", self.table_uri(), self.write_disposition)

    def table_uri(self) -> str:
        """Return the target as a URI such as ``postgres://host:port/db.schema.table`` (never with credentials)."""
        return self.database.table_uri(self.schema or None, self.table)

    def staging_key(self, request: ExportRequest) -> StagingKey:
        """Return whose staging table this export writes: the running task instance's, else the request's."""
        target = self.database.dialect.qualified(self.schema or None, self.table)
        task_instance = current_task_instance()
        if task_instance is not None:
            return StagingKey.for_task_instance(
                target, task_instance.dag_id, task_instance.task_id, task_instance.map_index, task_instance.run_id
            )
        return StagingKey.for_targets(
            target, request.resource.name, request.pixel_id, request.shop_id, (request.start, request.end)
        )

    def build_sink(self, request: ExportRequest, extracted_at: datetime, spool_dir: str) -> SqlSink:
        """Return the SQL sink of this task."""
        return SqlSink(
            database=self.database,
            table=self.table,
            schema=self.schema or None,
            staging_key=self.staging_key(request),
            window=(request.start, request.end),
            resource=request.resource,
            write_disposition=self.write_disposition,
            create_table=self.create_table,
            batch_size=self.batch_size,
            extracted_at=extracted_at,
            uri=self.table_uri(),
        )


def current_task_instance() -> Any:
    """
    Return the task instance running this code (it has ``dag_id``, ``run_id``, ``task_id`` and
    ``map_index``), or ``None`` outside a task, e.g. in a script or test calling ``execute``.
    """
    from airflow.providers.common.compat.sdk import get_current_context

    try:
        return get_current_context()["ti"]
    except RuntimeError:  # "no context was found": not inside a task
        return None
