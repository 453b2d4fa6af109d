"""Transfer Prisjakt click and conversion data to Amazon S3."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt.exceptions import PrisjaktConfigError
from airflow_provider_prisjakt.export.sinks.object_store import ObjectStoreSink
from airflow_provider_prisjakt.transfers.base import PrisjaktExportOperator

if TYPE_CHECKING:
    from datetime import datetime

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from airflow_provider_prisjakt.api.resources import Resource
    from airflow_provider_prisjakt.export.run import ExportRequest

S3_DELETE_BATCH = 1000


class S3Sink(ObjectStoreSink):
    """An :class:`ObjectStoreSink` on an S3 bucket through ``S3Hook``."""

    def __init__(self, *, hook: S3Hook, bucket: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hook = hook
        self.bucket = bucket

    def upload_file(self, local_path: str, key: str) -> None:
        """Upload a part file (multipart for large files, by boto3's transfer manager)."""
        self.hook.load_file(local_path, key, bucket_name=self.bucket, replace=True)

    def upload_text(self, text: str, key: str) -> None:
        """Write a small text object."""
        self.hook.load_string(text, key, bucket_name=self.bucket, replace=True)

    def copy_object(self, source_key: str, dest_key: str) -> None:
        """Copy within the bucket, server side."""
        self.hook.copy_object(source_key, dest_key, source_bucket_name=self.bucket, dest_bucket_name=self.bucket)

    def list_keys(self, prefix: str) -> list[str]:
        """List every key under a prefix."""
        return list(self.hook.list_keys(bucket_name=self.bucket, prefix=prefix))

    def delete_keys(self, keys: Iterable[str]) -> None:
        """Delete keys in batches of 1,000."""
        pending = list(keys)
        for offset in range(0, len(pending), S3_DELETE_BATCH):
            self.hook.delete_objects(self.bucket, pending[offset : offset + S3_DELETE_BATCH])

    def describe(self) -> str:
        """Return ``s3://bucket/prefix``."""
        return f"s3://{self.bucket}/{self.prefix}"


class PrisjaktToS3Operator(PrisjaktExportOperator):
    """
    Export Prisjakt data for a window to part files in S3.

    The files are ``<s3_key>/part-00000.<ext>``, ``part-00001`` … (deterministic per window and
    part), followed by ``<s3_key>/_manifest.json`` with the rows, the parts and their SHA-256,
    written last. Parts are staged under ``<s3_key>/_staging/`` and published only when the whole
    window is exported, so a failed run leaves the previous output as it was; a re-run replaces its
    parts and deletes stale parts of an earlier, longer run.

    :param s3_bucket: the bucket. (templated)
    :param s3_key: the key prefix of this window's files, e.g. ``prisjakt/events/{{ ds }}/``. (templated)
    :param aws_conn_id: the AWS connection. (templated)
    """

    template_fields: Sequence[str] = (*PrisjaktExportOperator.template_fields, "s3_bucket", "s3_key", "aws_conn_id")

    def __init__(self, *, s3_bucket: str, s3_key: str, aws_conn_id: str | None = "aws_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.aws_conn_id = aws_conn_id

    @cached_property
    def s3_hook(self) -> S3Hook:
        """The S3 hook of this task."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.aws_conn_id)

    def check_destination(self, resource: Resource) -> None:
        """Refuse an empty bucket, a key starting with ``/`` and a bucket that does not exist."""
        if not self.s3_bucket:
            raise PrisjaktConfigError("s3_bucket must not be empty")
        if not self.s3_key or self.s3_key.startswith("/"):
            raise PrisjaktConfigError(
                f"s3_key must be a relative key prefix such as 'prisjakt/events/2026-10-01/', got {self.s3_key!r}"
            )
        if not self.s3_hook.check_for_bucket(self.s3_bucket):
            raise PrisjaktConfigError(f"The S3 bucket {self.s3_bucket!r} does not exist or is not accessible")

    def build_sink(self, request: ExportRequest, extracted_at: datetime, spool_dir: str) -> S3Sink:
        """Return the S3 sink of this task."""
        return S3Sink(
            hook=self.s3_hook,
            bucket=self.s3_bucket,
            prefix=self.s3_key,
            resource=request.resource,
            file_format=self.file_format,
            compression=self.compression,
            extracted_at=extracted_at,
            spool_dir=spool_dir,
        )
