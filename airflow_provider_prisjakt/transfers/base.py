"""
The Prisjakt-side half shared by every export operator (parameters, window, deferral, summary),
and the base of the file operators (format, compression, rows per file).
"""

from __future__ import annotations

import tempfile
from abc import abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, BaseOperator, conf

from airflow_provider_prisjakt.api.resources import get_resource
from airflow_provider_prisjakt.api.windows import WindowError, format_api_time, to_utc
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError
from airflow_provider_prisjakt.export.checkpoint import CheckpointStore, ExportCheckpoint, ExportPaused
from airflow_provider_prisjakt.export.formats import parse_file_options, writer_for
from airflow_provider_prisjakt.export.readers import reader_for
from airflow_provider_prisjakt.export.run import ExportRequest, ExportRun
from airflow_provider_prisjakt.export.sinks.object_store import DEFAULT_ROWS_PER_PART
from airflow_provider_prisjakt.hooks.connection import DEFAULT_CONN_ID
from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
from airflow_provider_prisjakt.transfers.assets import (
    DEFAULT_ASSET_ALIAS,
    asset_uri_of,
    default_outlets,
    record_asset_events,
)
from airflow_provider_prisjakt.transfers.window import describe_window, empty_window_message, parse_lookback

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_prisjakt.api.resources import Resource
    from airflow_provider_prisjakt.export.sinks import Sink

FUTURE_TOLERANCE = timedelta(minutes=5)


def is_template(value: Any) -> bool:
    """Tell whether an argument is still a Jinja template (validated after rendering instead)."""
    return isinstance(value, str) and "{{" in value


class PrisjaktExportOperator(BaseOperator):
    """
    Base class of the Prisjakt transfer operators; subclasses only build their destination sink.

    :param resource: what to export: ``events`` (conversion events, default), ``purchase_summary``
        (one row per currency per day), ``clicks`` (the click behind each event of the window,
        de-duplicated) or ``pixels`` (the shop's pixels). (templated)
    :param pixel_id: the pixel to read. (templated)
    :param shop_id: the shop; without ``pixel_id`` every pixel of the shop is exported. (templated)
    :param start: window start, inclusive; a datetime or ISO-8601 string. Defaults to the run's
        data interval start. (templated)
    :param end: window end, exclusive. Defaults to the run's data interval end. (templated)
    :param lookback: re-read this much before ``start`` to pick up late conversions (a timedelta,
        seconds or an ISO-8601 duration such as ``P30D``). (templated)
    :param prisjakt_conn_id: the Prisjakt connection. (templated)
    :param deferrable: when the rate-limit budget runs out with a far reset, free the worker and
        resume from a checkpoint after the reset, instead of failing. Defaults to the
        ``[operators] default_deferrable`` setting.
    :param asset_alias: on Airflow 3, the ``AssetAlias`` this task declares as its outlet when it is
        given no ``outlets``; ``{dag_id}`` and ``{task_id}`` are filled in (default
        ``prisjakt/{dag_id}/{task_id}``), and ``None`` declares none. When the export succeeds, the
        asset it wrote (see :meth:`output_asset_uri`) is attached to every alias among the task's
        outlets, and the run's figures (the summary, with the pixel or shop) are each event's
        ``extra``, also on every asset among them. Airflow 2 records no events.
    """

    template_fields: Sequence[str] = (
        "resource",
        "pixel_id",
        "shop_id",
        "start",
        "end",
        "lookback",
        "prisjakt_conn_id",
    )
    ui_color = "#ff6a13"

    def __init__(
        self,
        *,
        resource: str = "events",
        pixel_id: str | None = None,
        shop_id: int | str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        lookback: timedelta | int | float | str | None = None,
        prisjakt_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        asset_alias: str | None = DEFAULT_ASSET_ALIAS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.asset_alias = asset_alias
        self.outlets = default_outlets(self.outlets, asset_alias, self.dag_id, self.task_id)
        self.resource = resource
        self.pixel_id = pixel_id
        self.shop_id = shop_id
        self.start = start
        self.end = end
        self.lookback = lookback
        self.prisjakt_conn_id = prisjakt_conn_id
        self.deferrable = deferrable
        # Checks that need no I/O fail at parse time, so a typo never reaches a worker.
        if not is_template(resource):
            get_resource(resource)
        if not is_template(lookback) and not isinstance(lookback, str):
            parse_lookback(lookback)
        self._output_uri: str | None = None

    @cached_property
    def hook(self) -> PrisjaktHook:
        """The Prisjakt hook of this task."""
        return PrisjaktHook(prisjakt_conn_id=self.prisjakt_conn_id)

    @abstractmethod
    def build_sink(self, request: ExportRequest, extracted_at: datetime, spool_dir: str) -> Sink:
        """Return the sink that writes this task's output for ``request`` (its resource and window)."""

    def check_destination(self, resource: Resource) -> None:
        """Validate destination arguments before any request is sent; subclasses extend this."""

    # -- window ------------------------------------------------------------------------------------

    def resolve_window(self, context: Context) -> tuple[datetime, datetime]:
        """
        Return the window to export: ``start``/``end`` if given, else the run's data interval.

        :raises PrisjaktConfigError: for an empty, reversed or future window, with how to fix it.
        """
        try:
            start = to_utc(self.start, "start") if self.start not in (None, "") else None
            end = to_utc(self.end, "end") if self.end not in (None, "") else None
            lookback = parse_lookback(self.lookback)
        except (WindowError, ValueError) as err:
            raise PrisjaktConfigError(str(err)) from None
        if start is None:
            start = _context_time(context, "data_interval_start")
        if end is None:
            end = _context_time(context, "data_interval_end")
        if start is None or end is None or start == end:
            raise PrisjaktConfigError(empty_window_message(context))
        start -= lookback
        if start > end:
            raise PrisjaktConfigError(f"start ({format_api_time(start)}) must be before end ({format_api_time(end)})")
        now = datetime.now(UTC)
        if start > now + FUTURE_TOLERANCE:
            raise PrisjaktConfigError(
                f"The window starts in the future ({format_api_time(start)}); no events exist there yet"
            )
        return start, end

    # -- execution ---------------------------------------------------------------------------------

    def export_request(self, start: datetime, end: datetime) -> ExportRequest:
        """Build the :class:`ExportRequest` of this task for a window."""
        resource = get_resource(self.resource)
        reader_for(resource).check_scope(self.pixel_id, self.shop_id)
        return ExportRequest(
            resource=resource,
            start=start,
            end=end,
            pixel_id=str(self.pixel_id) if self.pixel_id else None,
            shop_id=self.shop_id if self.shop_id not in (None, "") else None,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        """Export the window and return a summary (rows, parts, requests, waits); never the data."""
        try:
            resource = get_resource(self.resource)
        except ValueError as err:
            raise PrisjaktConfigError(str(err)) from None
        self.check_destination(resource)
        start, end = self.resolve_window(context)
        request = self.export_request(start, end)
        self.log_window(request)
        return self._export(context, request, None)

    def log_window(self, request: ExportRequest) -> None:
        """Log what is exported, from when to when, and how much of the window is the look-back."""
        subject = f"pixel {request.pixel_id}" if request.pixel_id else f"every pixel of shop {request.shop_id}"
        if request.resource.scope_column is None:
            subject = f"shop {request.shop_id}"
        window = describe_window(request.start, request.end, parse_lookback(self.lookback))
        self.log.info("Exporting Prisjakt %s of %s from %s", request.resource.name, subject, window)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """Resume the export after a rate-limit deferral, from the checkpoint the trigger echoed back."""
        if not event or event.get("status") != "success":
            message = (event or {}).get("message", "no event")
            raise AirflowException(f"Waiting for the Prisjakt rate limit failed: {message}")
        state = event.get("resume") or kwargs.get("resume")
        if not state:
            raise AirflowException("The deferral event carries no export checkpoint to resume from")
        request = self.export_request(to_utc(state["start"], "start"), to_utc(state["end"], "end"))
        checkpoint = ExportCheckpoint.from_dict(state["checkpoint"])
        self.log.info("Resuming the export after %s rows (%s parts staged)", checkpoint.rows, len(checkpoint.parts))
        return self._export(context, request, checkpoint)

    def _export(self, context: Context, request: ExportRequest, checkpoint: ExportCheckpoint | None) -> dict[str, Any]:
        # Airflow 3.3+ keeps the running export's checkpoint for the task's retries; a retry resumes from it.
        store = CheckpointStore.from_context(context, request)
        if checkpoint is None and store is not None:
            checkpoint = store.load()
        extracted_at = (
            datetime.fromisoformat(checkpoint.extracted_at)
            if checkpoint and checkpoint.extracted_at
            else datetime.now(UTC).replace(microsecond=0)
        )
        with tempfile.TemporaryDirectory(prefix="prisjakt-export-") as spool_dir:
            sink = self.build_sink(request, extracted_at, spool_dir)
            self._output_uri = sink.describe()
            try:
                run = ExportRun(self.hook, request, sink, extracted_at=extracted_at, checkpoint=checkpoint, store=store)
                manifest = run.execute(pause_on_rate_limit=self.deferrable)
            except ExportPaused as paused:
                self._defer(request, paused)
            finally:
                # Give the pooled sockets back now rather than whenever the garbage collector runs.
                self.hook.close()
        summary = self.summarize(manifest, sink)
        self.record_assets(context, request, sink, summary)
        return summary

    def _defer(self, request: ExportRequest, paused: ExportPaused) -> None:
        from airflow_provider_prisjakt.triggers.prisjakt import PrisjaktRateLimitTrigger

        resume = {
            "start": request.start.isoformat(),
            "end": request.end.isoformat(),
            "checkpoint": paused.checkpoint.to_dict(),
        }
        resume_at = paused.resume_at or datetime.now(UTC)
        self.log.info("Deferring until the Prisjakt rate limit resets at %s", resume_at.isoformat())
        self.defer(
            trigger=PrisjaktRateLimitTrigger(
                prisjakt_conn_id=self.prisjakt_conn_id,
                reset_at=resume_at.isoformat(),
                # Resume only when the hook may spend at least one request past its reserve.
                min_remaining=self.hook.settings.rate_limit_reserve + 1,
                resume=resume,
            ),
            method_name="execute_complete",
            kwargs={"resume": resume},
        )

    def summarize(self, manifest: dict[str, Any], sink: Sink) -> dict[str, Any]:
        """
        Return the small summary pushed to XCom: counts and locations, never records.

        Besides rows, files and the request counters it says how many records the API sent outside
        the window (``rows_outside_window``, dropped) and how many had no readable time
        (``rows_without_time``, kept), and how many click requests were not sent because the
        destination already holds those clicks (``requests_saved``). The sink adds its own figures
        last (:meth:`Sink.summary_fields <airflow_provider_prisjakt.export.sinks.Sink.summary_fields>`):
        a table, for example, reports no files and the rows inserted, updated and deleted.
        """
        counters = manifest.get("counters", {})
        summary = {
            "resource": manifest["resource"],
            "window": manifest["window"],
            "rows": manifest["rows"],
            "files": len(manifest["parts"]),
            "destination": sink.describe(),
            "requests": int(counters.get("requests", 0)),
            "retries": int(counters.get("retries", 0)),
            "rate_limited": int(counters.get("rate_limited", 0)),
            "waits": int(counters.get("waits", 0)),
            "seconds_waited": counters.get("seconds_waited", 0.0),
            "deferrals": int(counters.get("deferrals", 0)),
            "rows_outside_window": int(counters.get("rows_outside_window", 0)),
            "rows_without_time": int(counters.get("rows_without_time", 0)),
            "requests_saved": int(counters.get("requests_saved", 0)),
        }
        return {**summary, **sink.summary_fields()}

    # -- lineage -----------------------------------------------------------------------------------

    def output_asset_uri(self, sink: Sink) -> str:
        """
        Return the URI of the Airflow asset this export wrote, in the form the official providers use.

        By default it is derived from :meth:`Sink.describe <airflow_provider_prisjakt.export.sinks.Sink.describe>`
        (see :func:`~airflow_provider_prisjakt.transfers.assets.asset_uri_of`); a subclass whose
        destination has another form overrides this.
        """
        return asset_uri_of(sink.describe())

    def record_assets(self, context: Context, request: ExportRequest, sink: Sink, summary: dict[str, Any]) -> None:
        """On Airflow 3, attach the written asset, with the run's figures as ``extra``, to the task's outlets."""
        scope = {"pixel_id": request.pixel_id, "shop_id": request.shop_id}
        extra = {**{key: value for key, value in scope.items() if value is not None}, **summary}
        uri = self.output_asset_uri(sink)
        try:
            recorded = record_asset_events(context, self.outlets, uri, extra)
        except ValueError as err:  # Airflow refused the URI; the export itself is done and stays done
            self.log.warning("No asset event for %s: %s", uri, err)
            return
        if recorded:
            self.log.info("Asset %s written; events for %s", uri, ", ".join(recorded))

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Report the Prisjakt input dataset and the written output dataset to OpenLineage."""
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage

        subject = f"pixels/{self.pixel_id}" if self.pixel_id else f"shops/{self.shop_id}"
        inputs = [Dataset(namespace=self.hook.base_url, name=f"{subject}/{self.resource}")]
        outputs = []
        if self._output_uri:
            namespace, name = _split_uri(self._output_uri)
            outputs.append(Dataset(namespace=namespace, name=name))
        return OperatorLineage(inputs=inputs, outputs=outputs)


class PrisjaktObjectStoreExportOperator(PrisjaktExportOperator):
    """
    Base class of the operators that write part files (S3, GCS): the file parameters.

    :param file_format: ``jsonl`` (default, records whole), ``csv`` or ``parquet`` (typed columns;
        needs the ``parquet`` extra).
    :param compression: ``gzip`` or ``None``.
    :param max_rows_per_file: rows per part file before a new part starts.
    """

    def __init__(
        self,
        *,
        file_format: str = "jsonl",
        compression: str | None = None,
        max_rows_per_file: int = DEFAULT_ROWS_PER_PART,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.file_format, self.compression = parse_file_options(file_format, compression)
        if max_rows_per_file < 1:
            raise ValueError("max_rows_per_file must be at least 1")
        self.max_rows_per_file = max_rows_per_file
        writer_for(self.file_format).check_available()

    def sink_options(self, request: ExportRequest, extracted_at: datetime, spool_dir: str) -> dict[str, Any]:
        """Return the arguments every :class:`ObjectStoreSink` of this task takes, except its prefix."""
        return {
            "resource": request.resource,
            "file_format": self.file_format,
            "compression": self.compression,
            "rows_per_part": self.max_rows_per_file,
            "extracted_at": extracted_at,
            "spool_dir": spool_dir,
        }


def _split_uri(uri: str) -> tuple[str, str]:
    scheme, _, rest = uri.partition("://")
    authority, _, path = rest.partition("/")
    return f"{scheme}://{authority}", path or "/"


def _context_time(context: Context, key: str) -> datetime | None:
    value: Any = context.get(key)  # type: ignore[call-overload]
    if value is None:
        return None
    try:
        return to_utc(value, key)
    except WindowError:
        return None
