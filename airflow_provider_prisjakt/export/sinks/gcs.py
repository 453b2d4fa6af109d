"""
The Google Cloud Storage destination: an :class:`~.object_store.ObjectStoreSink` on a GCS bucket.

Its own module because of its size: the google client's retry and timeout settings come with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt.exceptions import PrisjaktError
from airflow_provider_prisjakt.export.sinks.object_store import ObjectStoreSink

if TYPE_CHECKING:
    from airflow.providers.google.cloud.hooks.gcs import GCSHook
    from google.cloud.storage import Blob

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

    def read_text(self, key: str) -> str:
        """Read a small text object."""
        blob = self.hook.get_bucket(self.bucket).blob(key)
        return blob.download_as_text(timeout=self.request_timeout, retry=self._retry())

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
