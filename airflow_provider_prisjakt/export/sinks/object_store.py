"""
File destinations of an export: S3 and a local folder here, GCS in :mod:`.gcs`.

They share :class:`ObjectStoreSink`, which owns the file parameters (format, compression, rows per
part), the staging protocol and the click index (:mod:`.click_index`); each store supplies six
storage primitives. Every sink stages
what a run writes and publishes it only in :meth:`Sink.commit`, so a failed run leaves the
destination as it was and a re-run of the same window replaces the previous output. Output is laid
out one folder per pixel (see :mod:`~airflow_provider_prisjakt.export.sinks.layout`), and a sink
touches only its own targets' folders.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from abc import abstractmethod
from collections.abc import Container, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt.export.formats import PartFile, PartWriter, file_digest, open_part_writer, part_name
from airflow_provider_prisjakt.export.sinks import Sink
from airflow_provider_prisjakt.export.sinks.click_index import ClickIndex
from airflow_provider_prisjakt.export.sinks.layout import (
    MANIFEST_NAME,
    STAGING_DIR,
    default_click_index_prefix,
    folder_manifests,
    partition_folder,
    stale_parts,
)

if TYPE_CHECKING:
    from datetime import datetime

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from airflow_provider_prisjakt.api.resources import Resource
    from airflow_provider_prisjakt.export.formats import Compression, FileFormat

log = logging.getLogger(__name__)

DEFAULT_ROWS_PER_PART = 1_000_000


class ObjectStoreSink(Sink):
    """
    A sink writing part files under a prefix of an object store or folder.

    Rows read for a pixel go to that pixel's folder, ``<prefix>/pixel_id=<id>/``; rows of
    shop-scoped resources to ``<prefix>/``. In each folder, parts are written to a local spool file,
    uploaded to ``_staging/`` when finished, and at commit copied to ``part-NNNNN.<ext>``; parts of
    an earlier, longer run are then deleted and ``_manifest.json`` (the folder's rows, parts and
    their SHA-256) is written last, so a reader can tell a complete window from a half-written one.
    Every target gets its folder and manifest, with no parts if it had no rows.

    :param prefix: the folder-like prefix of the window's output.
    :param resource: the resource exported; its scope column names the pixel folders.
    :param file_format: the format of the part files.
    :param compression: their compression, or ``None``.
    :param extracted_at: the ``_extracted_at`` value of this run.
    :param spool_dir: a local folder for part files in progress.
    :param rows_per_part: rows a part file holds before the next one starts.
    :param click_index_prefix: where a clicks export keeps its click index, the same for every
        window; by default derived from ``prefix`` (:func:`~.layout.default_click_index_prefix`).
    """

    def __init__(
        self,
        *,
        prefix: str,
        resource: Resource,
        file_format: FileFormat,
        compression: Compression | None,
        extracted_at: datetime,
        spool_dir: str,
        rows_per_part: int = DEFAULT_ROWS_PER_PART,
        click_index_prefix: str | None = None,
    ) -> None:
        self.prefix = prefix.strip("/")
        self.resource = resource
        self.file_format = file_format
        self.compression = compression
        self.rows_per_part = rows_per_part
        self.extracted_at = extracted_at
        self.spool_dir = spool_dir
        self._writer: PartWriter | None = None
        self._part_name: str | None = None
        self._part_folder: str | None = None
        index = default_click_index_prefix(self.prefix) if click_index_prefix is None else click_index_prefix
        self.click_index = ClickIndex(self, index, resource, self.prefix)

    # Storage primitives, keyed by full object keys.
    @abstractmethod
    def upload_file(self, local_path: str, key: str) -> None:
        """Upload a local file to ``key``, replacing it."""

    @abstractmethod
    def upload_text(self, text: str, key: str) -> None:
        """Write ``text`` to ``key``, replacing it."""

    @abstractmethod
    def copy_object(self, source_key: str, dest_key: str) -> None:
        """Copy an object within the store, replacing the destination."""

    @abstractmethod
    def read_text(self, key: str) -> str:
        """Return the text of ``key``."""

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """Return every key under ``prefix`` (recursively)."""

    @abstractmethod
    def delete_keys(self, keys: Iterable[str]) -> None:
        """Delete objects; missing ones are ignored."""

    def key(self, *names: str | None) -> str:
        """Return the full key of a name below the prefix; ``None`` (the prefix's own folder) is skipped."""
        return "/".join(part for part in (self.prefix, *names) if part)

    # -- layout ------------------------------------------------------------------------------------

    def partition_of(self, scope: str | None) -> str | None:
        """Return the folder of rows read for ``scope``: ``pixel_id=<id>``, or ``None`` (the prefix) for shop-scoped rows."""
        column = self.resource.scope_column
        if scope is None or column is None:
            return None
        return partition_folder(column, scope)

    def folders(self) -> dict[str | None, list[str]]:
        """Return this run's folders, each with its targets: one per pixel, or the prefix (``None``) for the shop."""
        if self.targets is None:
            raise RuntimeError("set_targets must be called before the sink stages or publishes")
        if self.resource.scope_column is None:
            return {None: self.targets}
        return {self.partition_of(target): [target] for target in self.targets}

    def known_keys(self) -> Container[str]:
        """Return the click ids the index lists outside this run's output, and index this run's clicks."""
        return self.click_index.known(folder for folder in self.folders() if folder is not None)

    def _staged(self, folder: str | None) -> list[str]:
        return self.list_keys(self.key(folder, STAGING_DIR) + "/")

    # -- the run -----------------------------------------------------------------------------------

    def begin(self, *, resume: bool) -> None:
        """Drop what a failed earlier attempt staged in this run's folders, unless resuming this one."""
        if not resume:
            for folder in self.folders():
                self.delete_keys(self._staged(folder))

    def open_part(self, number: int) -> None:
        """Start a local spool file for part ``number`` (of the folder its rows go to)."""
        self._part_name = part_name(number, self.file_format, self.compression)
        self._part_folder = None
        path = os.path.join(self.spool_dir, self._part_name)
        self._writer = open_part_writer(self.file_format, path, self.resource, self.extracted_at, self.compression)
        self.click_index.open_part(path)

    def _open_writer(self) -> PartWriter:
        if self._writer is None:
            raise RuntimeError("open_part must be called before writing")
        return self._writer

    def write_rows(self, records: Sequence[Mapping[str, Any]], scope: str | None) -> None:
        """Append records to the spool file."""
        writer = self._open_writer()
        folder = self.partition_of(scope)
        if writer.rows and folder != self._part_folder:
            raise RuntimeError("A part holds the rows of one folder; the export loop closes it before the next")
        self._part_folder = folder
        writer.write(records, scope)
        self.click_index.write(records)

    def close_part(self) -> dict[str, Any]:
        """Finish the spool file, upload it to its folder's staging area and remove it locally."""
        writer = self._open_writer()
        writer.close()
        size, sha256 = file_digest(writer.path)
        part = PartFile(self._part_name or "", writer.path, writer.rows, size, sha256)
        self.upload_file(part.path, self.key(self._part_folder, STAGING_DIR, part.name))
        self.click_index.close_part(self.key(self._part_folder, STAGING_DIR, part.name))
        os.remove(part.path)
        self._writer = None
        return part.manifest_entry()

    def commit(self, manifest: dict[str, Any]) -> None:
        """Publish each folder of the run in turn (see :meth:`publish`), with its share of ``manifest``."""
        for folder, folder_manifest in folder_manifests(manifest, self.folders()).items():
            self.publish(folder, folder_manifest)

    def publish(self, folder: str | None, manifest: dict[str, Any]) -> None:
        """Publish one folder: copy its staged parts, delete its stale parts, write its click index, its manifest last."""
        names = [part["name"] for part in manifest["parts"]]
        # Readers trust the manifest and the index: drop the old ones first, so neither outlives the old parts.
        self.delete_keys([self.key(folder, MANIFEST_NAME), *self.click_index.own_objects(folder)])
        for name in names:
            self.copy_object(self.key(folder, STAGING_DIR, name), self.key(folder, name))
        listed = self.key(folder) + "/" if self.key(folder) else ""
        self.delete_keys(stale_parts(listed, self.list_keys(listed), set(names)))
        self.click_index.publish(folder, self.key(folder, STAGING_DIR) + "/", manifest)
        self.upload_text(json.dumps(manifest, indent=2, sort_keys=True), self.key(folder, MANIFEST_NAME))
        self.delete_keys(self._staged(folder))

    def abort(self) -> None:
        """
        Delete the local spool file and everything staged in this run's folders.

        Best effort: when the store itself is failing, the error that led here stays the one raised,
        and the next run's :meth:`begin` removes what is left in the staging areas.
        """
        self.click_index.discard()
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                if os.path.exists(self._writer.path):
                    os.remove(self._writer.path)
                self._writer = None
        try:
            for folder in self.folders():
                self.delete_keys(self._staged(folder))
        except Exception:
            log.warning("Could not remove the parts staged under %s; the next run does", self.describe(), exc_info=True)


class LocalFolderSink(ObjectStoreSink):
    """An :class:`ObjectStoreSink` over a local folder: ``key`` is a path below ``root``."""

    def __init__(self, *, root: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root

    def _path(self, key: str) -> str:
        return os.path.join(self.root, key)

    def upload_file(self, local_path: str, key: str) -> None:
        """Copy a spool file into the folder, atomically replacing the target."""
        target = self._path(key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(local_path, target + ".tmp")
        os.replace(target + ".tmp", target)

    def upload_text(self, text: str, key: str) -> None:
        """Write a text file atomically."""
        target = self._path(key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(target + ".tmp", target)

    def read_text(self, key: str) -> str:
        """Read a text file."""
        with open(self._path(key), encoding="utf-8") as handle:
            return handle.read()

    def copy_object(self, source_key: str, dest_key: str) -> None:
        """Copy a file within the folder."""
        self.upload_file(self._path(source_key), dest_key)

    def list_keys(self, prefix: str) -> list[str]:
        """Return the keys of every file below ``prefix``."""
        base = self._path(prefix)
        folder = base if base.endswith(os.sep) or os.path.isdir(base) else os.path.dirname(base)
        if not os.path.isdir(folder):
            return []
        keys = []
        for directory, _, files in os.walk(folder):
            for name in files:
                key = os.path.relpath(os.path.join(directory, name), self.root).replace(os.sep, "/")
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete_keys(self, keys: Iterable[str]) -> None:
        """Delete files; missing ones are ignored, and folders below the prefix left empty go too."""
        top = os.path.normpath(self._path(self.prefix))
        folders = set()
        for key in keys:
            path = os.path.normpath(self._path(key))
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            folders.add(os.path.dirname(path))
        # Object stores have no folders: an emptied _staging/ (or pixel folder) must not outlive its
        # objects here either. The prefix itself stays, and so does any folder still holding something.
        for folder in sorted(folders, key=len, reverse=True):
            while folder.startswith(top + os.sep):
                try:
                    os.rmdir(folder)
                except OSError:
                    break
                folder = os.path.dirname(folder)

    def describe(self) -> str:
        """Return ``file://<root>/<prefix>``."""
        return f"file://{os.path.abspath(self._path(self.prefix))}"


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

    def read_text(self, key: str) -> str:
        """Read a small text object."""
        return self.hook.read_key(key, bucket_name=self.bucket)

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
