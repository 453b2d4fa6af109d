"""
Where the file destinations put a run's output, as pure functions (no store, no I/O).

Pixel-scoped output is partitioned Hive-style, one folder per pixel, so lake engines read the
pixel as a partition column::

    <prefix>/pixel_id=<id>/part-00000.<ext>
    <prefix>/pixel_id=<id>/part-00001.<ext>
    <prefix>/pixel_id=<id>/_manifest.json      (written last)
    <prefix>/pixel_id=<id>/_staging/           (only while a run is in progress)

Shop-scoped output (``pixels``) lies in ``<prefix>`` itself. Each folder is published on its own and
holds its own manifest, so an export touches only its own pixels' folders.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from airflow_provider_prisjakt.exceptions import PrisjaktError
from airflow_provider_prisjakt.export.sinks import PARTITION_KEY

MANIFEST_NAME = "_manifest.json"
STAGING_DIR = "_staging"
PART_PATTERN = re.compile(r"^part-\d{5}\.(jsonl|csv)(\.gz)?$|^part-\d{5}\.parquet$")


def partition_folder(column: str, value: str) -> str:
    """
    Return the Hive-style folder of one partition: ``<column>=<value>``, e.g. ``pixel_id=<id>``.

    The value is percent-encoded as a single path segment, as Hive and the engines reading its
    layout expect (``/`` becomes ``%2F``, ``%`` becomes ``%25``), so no id reaches into another
    folder; ids of letters, digits, ``-``, ``_``, ``.`` and ``~`` (UUIDs) stay as they are.

    :param column: the partition column.
    :param value: its value.
    :raises PrisjaktError: for an empty value, which names no folder.
    """
    if not value:
        raise PrisjaktError(f"An empty {column} cannot name an output folder")
    return f"{column}={quote(value, safe='')}"


def folder_manifests(
    manifest: Mapping[str, Any], folders: Mapping[str | None, Sequence[str]]
) -> dict[str | None, dict[str, Any]]:
    """
    Split a run's manifest into the manifests of its folders.

    Each keeps the run's resource, window, counters and times, and lists only its own targets, rows
    and parts; a folder whose targets had no rows gets a manifest with no parts.

    :param manifest: the run's manifest; each part names its folder under ``"partition"`` (no
        name: the prefix itself).
    :param folders: the run's folders (``None``: the prefix itself), each with its targets.
    :raises ValueError: for a part in none of ``folders``.
    """
    parts: dict[str | None, list[dict[str, Any]]] = {folder: [] for folder in folders}
    for part in manifest["parts"]:
        folder = part.get(PARTITION_KEY)
        if folder not in parts:
            raise ValueError(
                f"Part {part['name']} of {folder} belongs to none of the folders {sorted(map(str, parts))}"
            )
        parts[folder].append(part)
    return {
        folder: {
            **manifest,
            "targets": list(targets),
            "rows": sum(part["rows"] for part in parts[folder]),
            "parts": parts[folder],
        }
        for folder, targets in folders.items()
    }


def stale_parts(folder: str, keys: Iterable[str], keep: Collection[str]) -> list[str]:
    """
    Return the keys of the part files directly in ``folder`` that ``keep`` does not name.

    :param folder: the folder's key prefix, ending in ``/`` (or empty for the store's root).
    :param keys: keys under ``folder``, as a recursive listing returns them; sub-folders (other
        pixels' folders, staging) and files that are not parts are never stale.
    :param keep: the names of this run's parts.
    """
    stale = []
    for key in keys:
        name = key[len(folder) :]
        if key.startswith(folder) and "/" not in name and PART_PATTERN.match(name) and name not in keep:
            stale.append(key)
    return stale
