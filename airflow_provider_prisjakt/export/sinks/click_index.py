"""
The index of the click ids a file destination already holds, so no click is fetched twice.

Clicks are read one request each, so a clicks export asks its destination which clicks it holds
and fetches only the others (see :meth:`~airflow_provider_prisjakt.export.sinks.Sink.known_keys`).
A file destination answers from an index kept at a prefix that stays the same across windows: one
object per pixel and output folder, ``<index>/pixel_id=<id>/<output prefix, encoded>.json``,
listing the click ids first exported into that folder (see
:mod:`~airflow_provider_prisjakt.export.sinks.layout`).

- The keys of each part are spooled to a local file as its rows are written and staged beside the
  part (``_staging/<part>.keys.jsonl``), so a resumed run still knows what the parts staged before
  its pause hold.
- At commit the folder's index object is deleted together with its old manifest and rewritten,
  from the staged keys, just before the new manifest: an index object exists only while the parts
  it lists are published. Each task writes only its own pixels' objects, so mapped tasks never race.
- Reading the index skips the object of the output being written, so a re-run fetches and writes
  its own clicks again and stale-part clean-up never drops a click that lives nowhere else.

Memory: the known ids are held as one set, which grows with the distinct clicks of the run's
pixels over every window exported so far (about 100 bytes per click id).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, Protocol

from airflow_provider_prisjakt import __version__
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError
from airflow_provider_prisjakt.export.sinks.layout import INDEX_SUFFIX, index_object_name

if TYPE_CHECKING:
    from airflow_provider_prisjakt.api.resources import Resource

log = logging.getLogger(__name__)

#: The suffix of a part's staged keys, beside the staged part.
KEYS_SUFFIX = ".keys.jsonl"


class IndexStore(Protocol):
    """The storage primitives the index uses, as :class:`~.object_store.ObjectStoreSink` has them."""

    def list_keys(self, prefix: str) -> list[str]:
        """Return every key under ``prefix``."""

    def read_text(self, key: str) -> str:
        """Return the text of ``key``."""

    def upload_text(self, text: str, key: str) -> None:
        """Write ``text`` to ``key``."""

    def upload_file(self, local_path: str, key: str) -> None:
        """Upload a local file to ``key``."""


class ClickIndex:
    """
    One sink's view of the click index: what other output holds, and this run's keys.

    The index is used only once :meth:`known` is called (by a reader that skips known rows);
    until then every method does nothing, so other resources' exports write no index.

    :param store: the sink whose storage primitives read and write the index.
    :param prefix: where the index lies, the same for every window (not the output prefix itself).
    :param resource: the resource indexed; its (single-column) primary key names a row.
    :param output_prefix: the prefix of the sink's output; it names the sink's index objects.
    """

    def __init__(self, store: IndexStore, prefix: str, resource: Resource, output_prefix: str) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self.output_prefix = output_prefix
        if self.prefix == output_prefix:
            # Its objects would land in the pixel folders, among the parts that engines read.
            raise PrisjaktConfigError(
                f"click_index_prefix must differ from the output prefix {output_prefix!r}; "
                "give a folder that stays the same across windows, e.g. one beside the output"
            )
        self.active = False
        names = [column.name for column in resource.columns]
        self._key_position = names.index(resource.primary_key[0])
        self._extract = resource.extract
        self._spool: IO[str] | None = None
        self._spool_path: str | None = None

    def folder(self, partition: str) -> str:
        """Return the index folder of one pixel (``partition`` is ``pixel_id=<id>``), ending in ``/``."""
        return "/".join(name for name in (self.prefix, partition) if name) + "/"

    def object_key(self, partition: str) -> str:
        """Return the key of the index object of this sink's output in ``partition``."""
        return self.folder(partition) + index_object_name(self.output_prefix)

    # -- reading -------------------------------------------------------------------------------------

    def known(self, partitions: Iterable[str]) -> set[str]:
        """
        Return the keys the index lists for ``partitions``, except in this output's own objects,
        and start indexing this run's rows.

        :param partitions: the run's pixel folders (``pixel_id=<id>``).
        """
        self.active = True
        keys: set[str] = set()
        objects = 0
        for partition in partitions:
            folder, own = self.folder(partition), self.object_key(partition)
            for key in self.store.list_keys(folder):
                # Only the folder's own objects: never an in-progress ``.tmp`` nor another folder's.
                if key != own and key.endswith(INDEX_SUFFIX) and "/" not in key[len(folder) :]:
                    keys.update(self._read(key))
                    objects += 1
        log.info("The click index %s lists %s click(s) in %s object(s)", self.prefix or "/", len(keys), objects)
        return keys

    def _read(self, key: str) -> list[str]:
        try:
            listed = json.loads(self.store.read_text(key))["keys"]
            return [str(item) for item in listed]
        except (ValueError, KeyError, TypeError):
            # Unreadable: its clicks are fetched again (a duplicate at worst, never a loss).
            log.warning("The click index object %s is unreadable and is ignored", key)
            return []

    # -- this run's keys -----------------------------------------------------------------------------

    def open_part(self, spool_path: str) -> None:
        """Start spooling the keys of a new part, beside its local spool file."""
        if self.active:
            self._spool_path = spool_path + KEYS_SUFFIX
            self._spool = open(self._spool_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close_part)

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Spool the keys of records written to the open part."""
        if self._spool is not None:
            position = self._key_position
            lines = [json.dumps(key) for key in (self._extract(record)[position] for record in records) if key]
            if lines:
                self._spool.write("\n".join(lines) + "\n")

    def close_part(self, staged_part: str) -> None:
        """Stage the open part's keys beside the part staged at ``staged_part``."""
        if self._spool is not None and self._spool_path is not None:
            self._spool.close()
            self.store.upload_file(self._spool_path, staged_part + KEYS_SUFFIX)
            self.discard()

    def discard(self) -> None:
        """Drop the open part's local keys file, if any."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self._spool_path is not None and os.path.exists(self._spool_path):
            os.remove(self._spool_path)
        self._spool_path = None

    # -- publishing ----------------------------------------------------------------------------------

    def own_objects(self, partition: str | None) -> list[str]:
        """Return the index object to delete with the manifest of ``partition``, before its parts change."""
        return [self.object_key(partition)] if self.active and partition is not None else []

    def publish(self, partition: str | None, staging: str, manifest: Mapping[str, Any]) -> None:
        """
        Write the index object of ``partition`` from the keys staged beside its parts.

        Nothing is written for a folder without keys, nor when a part's keys are missing (staged
        by a run that kept no index): its clicks are then fetched again by the next window.

        :param partition: the pixel folder published.
        :param staging: its staging prefix, ending in ``/``.
        :param manifest: its manifest (parts, window, times).
        """
        if not self.active or partition is None:
            return
        staged = set(self.store.list_keys(staging))
        wanted = [staging + part["name"] + KEYS_SUFFIX for part in manifest["parts"]]
        if not staged.issuperset(wanted):
            log.warning("Parts of %s were staged without their click ids; they are left out of the index", partition)
            return
        keys: list[str] = []
        for key in wanted:
            keys.extend(json.loads(line) for line in self.store.read_text(key).splitlines() if line)
        if keys:
            entry = {
                "resource": manifest["resource"],
                "output": f"{self.output_prefix}/{partition}",
                "window": manifest["window"],
                "extracted_at": manifest["extracted_at"],
                "provider_version": __version__,
                "keys": keys,
            }
            self.store.upload_text(json.dumps(entry, indent=0), self.object_key(partition))
