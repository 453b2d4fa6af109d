"""Transfer Prisjakt click and conversion data to Google Cloud Storage."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt.exceptions import PrisjaktConfigError
from airflow_provider_prisjakt.transfers.base import PrisjaktExportOperator
from airflow_provider_prisjakt.transfers.sinks import ObjectStoreSink

if TYPE_CHECKING:
    from datetime import datetime

    from airflow.providers.google.cloud.hooks.gcs import GCSHook

    from airflow_provider_prisjakt.resources import Resource
    from airflow_provider_prisjakt.transfers.export import ExportRequest


# The google client retries for 120 s by default; a cleanup after a failure should give up sooner.
GCS_CALL_DEADLINE = 30.0


def _bounded_retry() -> Any:
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_deadline(GCS_CALL_DEADLINE)


class GCSSink(ObjectStoreSink):
    """An :class:`ObjectStoreSink` on a GCS bucket through ``GCSHook``."""

    def __init__(self, *, hook: GCSHook, bucket: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hook = hook
        self.bucket = bucket

    def upload_file(self, local_path: str, key: str) -> None:
        """Upload a part file (resumable upload for large files)."""
        self.hook.upload(self.bucket, key, filename=local_path, num_max_attempts=3)

    def upload_text(self, text: str, key: str) -> None:
        """Write a small text object."""
        self.hook.upload(self.bucket, key, data=text, mime_type="application/json", num_max_attempts=3)

    def copy_object(self, source_key: str, dest_key: str) -> None:
        """Copy within the bucket, server side."""
        self.hook.copy(self.bucket, source_key, self.bucket, dest_key)

    def list_keys(self, prefix: str) -> list[str]:
        """List every object under a prefix, giving up after :data:`GCS_CALL_DEADLINE` seconds of retries."""
        bucket = self.hook.get_bucket(self.bucket)
        return [blob.name for blob in bucket.list_blobs(prefix=prefix, retry=_bounded_retry())]

    def delete_keys(self, keys: Iterable[str]) -> None:
        """Delete objects; missing ones are ignored. Retries stop after :data:`GCS_CALL_DEADLINE` seconds."""
        from google.api_core.exceptions import NotFound

        bucket = self.hook.get_bucket(self.bucket)
        for key in keys:
            with contextlib.suppress(NotFound):
                bucket.delete_blob(key, retry=_bounded_retry())

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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bucket = bucket
        self.object_name = object_name
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain

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
            prefix=self.object_name,
            resource=request.resource,
            file_format=self.file_format,
            compression=self.compression,
            extracted_at=extracted_at,
            spool_dir=spool_dir,
        )
