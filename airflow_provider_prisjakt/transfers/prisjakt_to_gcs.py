"""Transfer Prisjakt click and conversion data to Google Cloud Storage."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt.exceptions import PrisjaktConfigError, PrisjaktError
from airflow_provider_prisjakt.export.sinks.object_store import ObjectStoreSink
from airflow_provider_prisjakt.transfers.base import PrisjaktExportOperator

if TYPE_CHECKING:
    from datetime import datetime

    from airflow.providers.google.cloud.hooks.gcs import GCSHook
    from google.cloud.storage import Blob

    from airflow_provider_prisjakt.api.resources import Resource
    from airflow_provider_prisjakt.export.run import ExportRequest


# The google client retries one call for 120 s by default; an export should give up sooner.
GCS_CALL_DEADLINE = 30.0
# Each request's timeout, as google-cloud-storage's own default.
GCS_REQUEST_TIMEOUT = 60


class GCSSink(ObjectStoreSink):
    """
    An :class:`ObjectStoreSink` on a GCS bucket through ``GCSHook``.

    :param hook: the GCS hook.
    :param bucket: the bucket.
    :param request_timeout: seconds each request may take. Retries of one call stop after
        :data:`GCS_CALL_DEADLINE` seconds or three timeouts, whichever comes first.
    """

    def __init__(
        self, *, hook: GCSHook, bucket: str, request_timeout: int = GCS_REQUEST_TIMEOUT, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.hook = hook
        self.bucket = bucket
        self.request_timeout = request_timeout

    def _retry(self) -> Any:
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_deadline(min(GCS_CALL_DEADLINE, 3.0 * self.request_timeout))

    def _upload(self, key: str, upload: Callable[[Blob], None]) -> None:
        """Run one upload of ``key``; a failure names the object and keeps the client's reason."""
        blob = self.hook.get_bucket(self.bucket).blob(key)
        try:
            upload(blob)
        except Exception as err:
            raise PrisjaktError(f"Uploading gs://{self.bucket}/{key} failed: {err}") from err

    def upload_file(self, local_path: str, key: str) -> None:
        """Upload a part file (resumable upload for large files)."""
        self._upload(
            key,
            lambda blob: blob.upload_from_filename(
                local_path,
                content_type="application/octet-stream",
                timeout=self.request_timeout,
                retry=self._retry(),
            ),
        )

    def upload_text(self, text: str, key: str) -> None:
        """Write a small text object."""
        self._upload(
            key,
            lambda blob: blob.upload_from_string(
                text, content_type="application/json", timeout=self.request_timeout, retry=self._retry()
            ),
        )

    def copy_object(self, source_key: str, dest_key: str) -> None:
        """Copy within the bucket, server side."""
        bucket = self.hook.get_bucket(self.bucket)
        bucket.copy_blob(bucket.blob(source_key), bucket, dest_key, timeout=self.request_timeout, retry=self._retry())

    def list_keys(self, prefix: str) -> list[str]:
        """List every object under a prefix."""
        bucket = self.hook.get_bucket(self.bucket)
        blobs = bucket.list_blobs(prefix=prefix, timeout=self.request_timeout, retry=self._retry())
        return [blob.name for blob in blobs]

    def delete_keys(self, keys: Iterable[str]) -> None:
        """Delete objects; missing ones are ignored."""
        from google.api_core.exceptions import NotFound

        bucket = self.hook.get_bucket(self.bucket)
        for key in keys:
            with contextlib.suppress(NotFound):
                bucket.delete_blob(key, timeout=self.request_timeout, retry=self._retry())

    def describe(self) -> str:
        """Return ``gs://bucket/prefix``."""
        return f"gs://{self.bucket}/{self.prefix}"


class PrisjaktToGCSOperator(PrisjaktExportOperator):
    """
    Export Prisjakt data for a window to part files in Google Cloud Storage.

    Same layout and guarantees as :class:`~airflow_provider_prisjakt.transfers.prisjakt_to_s3.PrisjaktToS3Operator`:
    ``<object_name>/part-NNNNN.<ext>`` plus ``_manifest.json`` written last, staged publication,
    re-runs that replace their output and delete stale parts.

    :param bucket: the GCS bucket. (templated)
    :param object_name: the object name prefix of this window's files. (templated)
    :param gcp_conn_id: the Google Cloud connection. (templated)
    :param impersonation_chain: optional service account to impersonate. (templated)
    :param request_timeout: seconds each GCS request may take (default 60, the client's own). Retries
        of one call stop after 30 s or three timeouts, whichever comes first, so a bucket that stops
        answering fails the task in minutes rather than hanging it.
    """

    template_fields: Sequence[str] = (
        *PrisjaktExportOperator.template_fields,
        "bucket",
        "object_name",
        "gcp_conn_id",
        "impersonation_chain",
    )

    def __init__(
        self,
        *,
        bucket: str,
        object_name: str,
        gcp_conn_id: str = "google_cloud_default",
        impersonation_chain: str | Sequence[str] | None = None,
        request_timeout: int = GCS_REQUEST_TIMEOUT,
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
            resource=request.resource,
            file_format=self.file_format,
            compression=self.compression,
            extracted_at=extracted_at,
            spool_dir=spool_dir,
        )
