"""Transfer Prisjakt click and conversion data to Amazon S3."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt.exceptions import PrisjaktConfigError
from airflow_provider_prisjakt.export.sinks.layout import default_click_index_prefix
from airflow_provider_prisjakt.export.sinks.object_store import S3Sink
from airflow_provider_prisjakt.transfers.base import PrisjaktObjectStoreExportOperator

if TYPE_CHECKING:
    from datetime import datetime

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from airflow_provider_prisjakt.api.resources import Resource
    from airflow_provider_prisjakt.export.run import ExportRequest


class PrisjaktToS3Operator(PrisjaktObjectStoreExportOperator):
    """
    Export Prisjakt data for a window to part files in S3.

    Each pixel's rows go to its own folder (Hive-style, so lake engines read ``pixel_id`` as a
    partition column): ``<s3_key>/pixel_id=<id>/part-00000.<ext>``, ``part-00001`` … (deterministic
    per window and part), followed by ``<s3_key>/pixel_id=<id>/_manifest.json`` with that pixel's
    rows, parts and their SHA-256, written last. This holds for one pixel and for every pixel of a
    shop alike; ``resource="pixels"`` writes ``<s3_key>/part-…`` and ``<s3_key>/_manifest.json``.
    Parts are staged under each folder's ``_staging/`` and published only when the whole window is
    exported, so a failed run leaves the previous output as it was; a re-run replaces its pixels'
    parts and deletes stale parts of an earlier, longer run. An export touches only its own pixels'
    folders, so mapped tasks (one per pixel) can share one ``s3_key``.

    ``resource="clicks"`` fetches each click once per destination: a window's files hold the clicks
    first exported in that window. The click ids exported so far are listed in a click index (see
    ``click_index_prefix``), one object per pixel and window written with the manifest; clicks it
    lists are not fetched again (the summary's ``requests_saved``), except those of the window being
    written, so a re-run rewrites its own clicks.

    :param s3_bucket: the bucket. (templated)
    :param s3_key: the key prefix of this window's files, e.g. ``prisjakt/events/{{ ds }}/``. (templated)
    :param aws_conn_id: the AWS connection. (templated)
    :param click_index_prefix: where ``resource="clicks"`` keeps the index of the click ids already
        exported, a key prefix in the same bucket that must stay the same across windows. By default
        the folder above the first templated segment of ``s3_key``: ``prisjakt/clicks/{{ ds }}/``
        keeps it in ``prisjakt/clicks/_click_index/``. A key that starts with a template, or exports
        that must each hold every click, need it set. (templated)
    :param file_format: ``jsonl`` (default), ``csv`` or ``parquet``.
    :param compression: ``gzip`` or ``None``.
    :param max_rows_per_file: rows per part file (default one million).
    :param resource: ``events`` (default), ``purchase_summary``, ``clicks`` or ``pixels``. (templated)
    :param pixel_id: the pixel to read. (templated)
    :param shop_id: the shop, whose every pixel is read when no ``pixel_id`` is given. (templated)
    :param start: window start, inclusive (default: the data interval start). (templated)
    :param end: window end, exclusive (default: the data interval end). (templated)
    :param lookback: how much before ``start`` to re-read, e.g. ``P30D``. (templated)
    :param prisjakt_conn_id: the Prisjakt connection. (templated)
    :param deferrable: free the worker while the rate-limit budget is spent.
    :param asset_alias: the Airflow 3 asset alias declared when the task has no ``outlets``.

    The parameters from ``file_format`` on are described in full on
    :class:`~airflow_provider_prisjakt.transfers.base.PrisjaktObjectStoreExportOperator` and
    :class:`~airflow_provider_prisjakt.transfers.base.PrisjaktExportOperator`.
    """

    template_fields: Sequence[str] = (
        *PrisjaktObjectStoreExportOperator.template_fields,
        "s3_bucket",
        "s3_key",
        "aws_conn_id",
        "click_index_prefix",
    )

    def __init__(
        self,
        *,
        s3_bucket: str,
        s3_key: str,
        aws_conn_id: str | None = "aws_default",
        click_index_prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.aws_conn_id = aws_conn_id
        self.click_index_prefix = click_index_prefix
        if click_index_prefix is None and isinstance(s3_key, str):
            # Derived before rendering: only the template shows which part of the key changes per window
            # (a s3_key known only at run time is left to the sink, which derives it once rendered).
            self.click_index_prefix = default_click_index_prefix(s3_key)

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
            click_index_prefix=self.click_index_prefix,
            **self.sink_options(request, extracted_at, spool_dir),
        )
