"""Transfer Prisjakt click and conversion data to Google Cloud Storage."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt.exceptions import PrisjaktConfigError
from airflow_provider_prisjakt.export.sinks.gcs import GCS_REQUEST_TIMEOUT, GCSSink
from airflow_provider_prisjakt.export.sinks.layout import default_click_index_prefix
from airflow_provider_prisjakt.transfers.base import PrisjaktObjectStoreExportOperator

if TYPE_CHECKING:
    from datetime import datetime

    from airflow.providers.google.cloud.hooks.gcs import GCSHook

    from airflow_provider_prisjakt.api.resources import Resource
    from airflow_provider_prisjakt.export.run import ExportRequest


class PrisjaktToGCSOperator(PrisjaktObjectStoreExportOperator):
    """
    Export Prisjakt data for a window to part files in Google Cloud Storage.

    Same layout and guarantees as :class:`~airflow_provider_prisjakt.transfers.prisjakt_to_s3.PrisjaktToS3Operator`:
    one folder per pixel, ``<object_name>/pixel_id=<id>/part-NNNNN.<ext>`` plus its ``_manifest.json``
    written last (``resource="pixels"``: ``<object_name>/part-NNNNN.<ext>``), staged publication,
    re-runs that replace their pixels' output and delete stale parts, and never a touch of another
    pixel's folder, so mapped tasks can share one ``object_name``. ``resource="clicks"`` fetches each
    click once per destination, through a click index at ``click_index_prefix``.

    :param bucket: the GCS bucket. (templated)
    :param object_name: the object name prefix of this window's files. (templated)
    :param gcp_conn_id: the Google Cloud connection. (templated)
    :param click_index_prefix: where ``resource="clicks"`` keeps the index of the click ids already
        exported, an object name prefix in the same bucket that stays the same across windows; by
        default the folder above the first templated segment of ``object_name`` (see
        :class:`~airflow_provider_prisjakt.transfers.prisjakt_to_s3.PrisjaktToS3Operator`). (templated)
    :param impersonation_chain: optional service account to impersonate. (templated)
    :param request_timeout: seconds each GCS request may take (default 60, the client's own). Retries
        of one call stop after 30 s or three timeouts, whichever comes first, so a bucket that stops
        answering fails the task in minutes rather than hanging it.
    :param file_format: how the part files are written: ``jsonl`` (default), ``csv`` or ``parquet``.
    :param compression: ``gzip``, or ``None`` for plain files.
    :param max_rows_per_file: how many rows a part file holds at most.
    :param resource: the data to export, ``events`` by default. (templated)
    :param pixel_id: the pixel whose data is exported. (templated)
    :param shop_id: the shop; all its pixels are exported when ``pixel_id`` is not given. (templated)
    :param start: the window's inclusive start; the data interval's by default. (templated)
    :param end: the window's exclusive end; the data interval's by default. (templated)
    :param lookback: extra time read before ``start`` for late conversions. (templated)
    :param prisjakt_conn_id: the connection to the Prisjakt API. (templated)
    :param deferrable: defer instead of failing when the rate-limit budget is spent.
    :param asset_alias: the Airflow 3 asset alias declared when the task has no ``outlets``.

    See :class:`~airflow_provider_prisjakt.transfers.base.PrisjaktObjectStoreExportOperator` and
    :class:`~airflow_provider_prisjakt.transfers.base.PrisjaktExportOperator` for the parameters
    from ``file_format`` on.
    """

    template_fields: Sequence[str] = (
        *PrisjaktObjectStoreExportOperator.template_fields,
        "bucket",
        "object_name",
        "gcp_conn_id",
        "impersonation_chain",
        "click_index_prefix",
    )

    def __init__(
        self,
        *,
        bucket: str,
        object_name: str,
        gcp_conn_id: str = "google_cloud_default",
        impersonation_chain: str | Sequence[str] | None = None,
        request_timeout: int = GCS_REQUEST_TIMEOUT,
        click_index_prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bucket = bucket
        self.object_name = object_name
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain
        if request_timeout <= 0:
            raise PrisjaktConfigError(f"request_timeout must be a positive number of seconds, got {request_timeout!r}")
        self.request_timeout = request_timeout
        self.click_index_prefix = click_index_prefix
        if click_index_prefix is None and isinstance(object_name, str):
            # Derived before rendering: only the template shows which part of the name changes per window
            # (a object_name known only at run time is left to the sink, which derives it once rendered).
            self.click_index_prefix = default_click_index_prefix(object_name)

    @cached_property
    def gcs_hook(self) -> GCSHook:
        """The GCS hook of this task."""
        from airflow.providers.google.cloud.hooks.gcs import GCSHook

        return GCSHook(gcp_conn_id=self.gcp_conn_id, impersonation_chain=self.impersonation_chain)

    def check_destination(self, resource: Resource) -> None:
        """Refuse an empty bucket, an object name starting with ``/`` and a missing bucket."""
        if not self.bucket:
            raise PrisjaktConfigError("bucket must not be empty")
        if not self.object_name or self.object_name.startswith("/"):
            raise PrisjaktConfigError(
                f"object_name must be a relative prefix such as 'prisjakt/events/2026-10-01/', got {self.object_name!r}"
            )
        if not self.gcs_hook.get_conn().bucket(self.bucket).exists():
            raise PrisjaktConfigError(f"The GCS bucket {self.bucket!r} does not exist or is not accessible")

    def build_sink(self, request: ExportRequest, extracted_at: datetime, spool_dir: str) -> GCSSink:
        """Return the GCS sink of this task."""
        return GCSSink(
            hook=self.gcs_hook,
            bucket=self.bucket,
            request_timeout=self.request_timeout,
            prefix=self.object_name,
            click_index_prefix=self.click_index_prefix,
            **self.sink_options(request, extracted_at, spool_dir),
        )
