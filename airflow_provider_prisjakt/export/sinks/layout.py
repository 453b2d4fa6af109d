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

Clicks exports also keep an index of the click ids they wrote, at a prefix that stays the same
across windows (see :func:`default_click_index_prefix`), one object per pixel and output folder::

    <index>/pixel_id=<id>/<output prefix, percent-encoded>.json
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
#: The folder name of the default click index; engines skip names starting with ``_`` as they do ``_staging``.
CLICK_INDEX_DIR = "_click_index"
INDEX_SUFFIX = ".json"
# The start of a Jinja expression, statement or comment.
TEMPLATE_START = re.compile(r"\{[{%#]")
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


def default_click_index_prefix(key: str) -> str:
    """
    Return where a clicks export keeps its click index when no ``click_index_prefix`` is given.

    The index must stay put while the key changes with each window, so it goes into the folder
    above the key's first templated segment: ``prisjakt/clicks/{{ ds }}/`` and
    ``prisjakt/clicks/dt={{ ds }}/`` give ``prisjakt/clicks/_click_index``, and
    ``prisjakt/{{ ds }}/clicks/`` gives ``prisjakt/_click_index``. A key without a template (as
    rendered, or written out) is taken to be the window's folder: ``prisjakt/clicks/2026-10-01/``
    gives ``prisjakt/clicks/_click_index``.

    :param key: the output key prefix, before or after rendering.
    """
    static = TEMPLATE_START.split(key, maxsplit=1)[0]
    # A templated key keeps the folder holding its first template; a plain one drops its last folder.
    folder = static if static != key else key.strip("/")
    parent = folder.rsplit("/", 1)[0] if "/" in folder else ""
    parent = parent.strip("/")
    return f"{parent}/{CLICK_INDEX_DIR}" if parent else CLICK_INDEX_DIR


def index_object_name(output_prefix: str) -> str:
    """
    Return the name of the index object of an output prefix, in its pixel's index folder.

    The whole prefix, percent-encoded as one segment, so each output folder has its own object
    and no two prefixes share one.

    :param output_prefix: the key prefix of the export's output (without ``/`` at either end).
    """
    return quote(output_prefix, safe="") + INDEX_SUFFIX
