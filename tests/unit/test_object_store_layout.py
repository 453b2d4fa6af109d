"""The object-store layout as pure functions: pixel folders, each folder's manifest, stale parts."""

from __future__ import annotations

import pytest

from airflow_provider_prisjakt.exceptions import PrisjaktError
from airflow_provider_prisjakt.export.sinks.layout import folder_manifests, partition_folder, stale_parts

PIXEL = "95d6acdb-2a9e-48c1-941d-00edb61bac64"


def test_a_uuid_pixel_names_its_folder_as_it_is() -> None:
    assert partition_folder("pixel_id", PIXEL) == f"pixel_id={PIXEL}"


@pytest.mark.parametrize(
    ("pixel", "folder"),
    [
        ("a/b", "pixel_id=a%2Fb"),
        ("../other", "pixel_id=..%2Fother"),
        ("..", "pixel_id=.."),  # one segment that is not '..' itself
        ("50%", "pixel_id=50%25"),  # '%' is quoted too, so every folder reads back to one id
        ("x=y z", "pixel_id=x%3Dy%20z"),
        ("back\\slash\n", "pixel_id=back%5Cslash%0A"),
    ],
)
def test_a_pixel_id_is_quoted_into_one_path_segment(pixel: str, folder: str) -> None:
    assert partition_folder("pixel_id", pixel) == folder
    assert "/" not in folder


def test_an_empty_pixel_id_names_no_folder() -> None:
    with pytest.raises(PrisjaktError, match="empty pixel_id"):
        partition_folder("pixel_id", "")


def run_manifest(parts: list[dict[str, object]]) -> dict[str, object]:
    return {
        "resource": "events",
        "window": {"start": "2026-10-01T00:00:00Z", "end": "2026-10-02T00:00:00Z"},
        "targets": ["a", "b", "c"],
        "rows": sum(int(str(part["rows"])) for part in parts),
        "parts": parts,
        "counters": {"requests": 7},
    }


def test_each_folder_gets_its_targets_rows_and_parts_and_the_runs_window_and_counters() -> None:
    parts: list[dict[str, object]] = [
        {"name": "part-00000.jsonl", "rows": 5, "partition": "pixel_id=a"},
        {"name": "part-00001.jsonl", "rows": 2, "partition": "pixel_id=a"},
        {"name": "part-00000.jsonl", "rows": 4, "partition": "pixel_id=c"},
    ]
    folders: dict[str | None, list[str]] = {"pixel_id=a": ["a"], "pixel_id=b": ["b"], "pixel_id=c": ["c"]}

    manifests = folder_manifests(run_manifest(parts), folders)

    assert list(manifests) == list(folders)
    assert manifests["pixel_id=a"]["parts"] == parts[:2]
    assert manifests["pixel_id=a"]["rows"] == 7
    assert manifests["pixel_id=b"] == {**run_manifest([]), "targets": ["b"]}  # no rows: a manifest, no parts
    assert manifests["pixel_id=c"]["targets"] == ["c"]
    assert all(
        m["window"] == run_manifest([])["window"] and m["counters"] == {"requests": 7} for m in manifests.values()
    )


def test_an_unpartitioned_run_keeps_its_manifest_whole() -> None:
    manifest = run_manifest([{"name": "part-00000.csv", "rows": 3}])

    assert folder_manifests(manifest, {None: ["a", "b", "c"]}) == {None: manifest}


def test_a_part_of_no_folder_of_the_run_is_refused() -> None:
    with pytest.raises(ValueError, match="belongs to none of the folders"):
        folder_manifests(run_manifest([{"name": "part-00000.jsonl", "rows": 1, "partition": "pixel_id=z"}]), {})


def test_stale_parts_are_this_folders_own_part_files_that_the_run_did_not_write() -> None:
    keys = [
        "lake/events/_manifest.json",
        "lake/events/notes.txt",
        "lake/events/part-00000.jsonl",
        "lake/events/part-00001.jsonl",
        "lake/events/part-00002.csv.gz",
        "lake/events/_staging/part-00003.jsonl",
        "lake/events/pixel_id=b/part-00004.jsonl",
    ]

    assert stale_parts("lake/events/", keys, {"part-00000.jsonl"}) == [
        "lake/events/part-00001.jsonl",
        "lake/events/part-00002.csv.gz",
    ]
