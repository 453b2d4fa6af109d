"""
Exports into a local folder, for the tests of the export loop: the sink, the test DAG's operator,
and reading the published output back.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt.api.resources import EVENTS
from airflow_provider_prisjakt.export.formats import FileFormat
from airflow_provider_prisjakt.export.sinks.object_store import LocalFolderSink
from tests.dags.prisjakt_test_deferral import LocalFolderExportOperator
from tests.integration.conftest import PERIOD_END, PERIOD_START

if TYPE_CHECKING:
    from airflow_provider_prisjakt.api.resources import Resource
    from airflow_provider_prisjakt.testing import PrisjaktSandbox

EXTRACTED_AT = datetime(2026, 11, 2, tzinfo=UTC)
PREFIX = "prisjakt/events"


def make_sink(
    root: Path,
    spool: Path,
    sink_class: type[LocalFolderSink] = LocalFolderSink,
    rows_per_part: int = 250,
    file_format: FileFormat = FileFormat.JSONL,
    resource: Resource = EVENTS,
    prefix: str = PREFIX,
) -> LocalFolderSink:
    """A sink writing uncompressed ``resource`` parts below ``root/prefix``, spooling in ``spool`` (created)."""
    spool.mkdir(exist_ok=True)
    return sink_class(
        root=str(root),
        prefix=prefix,
        resource=resource,
        file_format=file_format,
        compression=None,
        extracted_at=EXTRACTED_AT,
        spool_dir=str(spool),
        rows_per_part=rows_per_part,
    )


def export_operator(root: Path, sandbox: PrisjaktSandbox, **kwargs: Any) -> LocalFolderExportOperator:
    """The test DAG's deferrable export of shop 4242's first pixel over the whole period, into ``root``."""
    return LocalFolderExportOperator(
        task_id="export_events",
        pixel_id=sandbox.pixel_ids(4242)[0],
        start=PERIOD_START.isoformat(),
        end=PERIOD_END.isoformat(),
        root=str(root),
        **{"deferrable": True, **kwargs},
    )


def folder_state(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder (``None``) below ``root``."""
    return {str(path.relative_to(root)): (path.read_bytes() if path.is_file() else None) for path in root.rglob("*")}


def pixel_folder(root: Path, pixel: str, prefix: str = PREFIX) -> Path:
    """The folder of one pixel's output: ``<prefix>/pixel_id=<id>/``."""
    return root / prefix / f"pixel_id={pixel}"


def published_records(
    root: Path, pixel: str | None, prefix: str = PREFIX
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """
    The manifest and the records of its JSON Lines parts in a pixel's folder (the prefix itself for
    ``None``), checking the parts against the manifest and that nothing else is in the folder.
    """
    folder = root / prefix if pixel is None else pixel_folder(root, pixel, prefix)
    manifest = json.loads((folder / "_manifest.json").read_text())
    records: list[dict[str, Any]] = []
    for part in manifest["parts"]:
        data = (folder / part["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == part["sha256"] and len(data) == part["bytes"]
        lines = data.decode().splitlines()
        assert len(lines) == part["rows"]
        records.extend(json.loads(line) for line in lines)
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == sorted(
        [p["name"] for p in manifest["parts"]] + ["_manifest.json"]
    )
    return manifest, records
