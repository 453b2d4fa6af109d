"""
A new resource is one reader plus its columns.

``event_ids`` is defined here and nowhere in the package: its columns (a :class:`Resource`, as in
``api/resources.py``) and its reader (a :class:`Reader`, as in ``export/readers.py``), which reads the
pixels' event pages and keeps only each event's id and time. Registered in the two registries
(``RESOURCES`` and ``READERS``) and in nothing else, it is exported by the operators as they are:
into PostgreSQL, MariaDB and SQLite tables by ``PrisjaktToSqlOperator``, and into part files by an
object-store operator writing to a local folder, each keyed, scoped to the pixel it was read for,
and replaced by a re-run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import airflow_provider_prisjakt
from airflow_provider_prisjakt.api.columns import Column, ColumnKind
from airflow_provider_prisjakt.api.resources import RESOURCES, Resource
from airflow_provider_prisjakt.export.readers import READERS, Batch, EventPagesReader, cursor_after
from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator
from tests.dags.prisjakt_test_deferral import LocalFolderExportOperator

from .conftest_services import decode_part
from .local_folder import pixel_folder
from .test_prisjakt_to_sql import WAREHOUSE, Warehouse, warehouse  # noqa: F401

if TYPE_CHECKING:
    from airflow_provider_prisjakt.export.checkpoint import Cursor
    from airflow_provider_prisjakt.testing import PrisjaktSandbox

    from .conftest import HookFactory

pytestmark = pytest.mark.integration

SHOP = 4242
START = datetime(2026, 10, 5, tzinfo=UTC)
END = datetime(2026, 10, 8, tzinfo=UTC)
NAME = "event_ids"

# -- the new resource: its columns and its reader ---------------------------------------------------

EVENT_IDS = Resource(
    name=NAME,
    columns=(
        Column("event_id", ColumnKind.STRING, nullable=False, source=("id",)),
        Column("pixel_id", ColumnKind.STRING),
        Column("event_time", ColumnKind.TIMESTAMP),
    ),
    primary_key=("event_id",),
    window_column="event_time",
)


class EventIdsReader(EventPagesReader):
    """The events of the window, page by page, each once, as their id and time only."""

    resource = EVENT_IDS

    def batches(self, targets: Sequence[str], cursor: Cursor) -> Iterator[Batch]:
        """Yield each event page's new events of the window, each cut down to ``id`` and ``event_time``."""
        for target, chunk, request, page in self.pages(targets, cursor):
            events = self.memory.keep_new(self.in_window(page.records, request))
            records = [{"id": event["id"], "event_time": event.get("event_time")} for event in events]
            yield Batch(records, targets[target], cursor_after(target, chunk, page))


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """``event_ids`` in the two registries, for this test only."""
    monkeypatch.setitem(RESOURCES, NAME, EVENT_IDS)
    monkeypatch.setitem(READERS, NAME, EventIdsReader)


@pytest.fixture
def api(sandbox_hook: HookFactory) -> PrisjaktSandbox:
    """A sandbox as ``prisjakt_default``: about 30 events per pixel in ``[START, END)``, over two pages of 25."""
    sandbox, _ = sandbox_hook(events_per_pixel=300, page_size=25)
    return sandbox


def api_events(sandbox: PrisjaktSandbox) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{event id: (pixel, event)}`` of every pixel of the shop in ``[START, END)``: the sandbox's truth."""
    return {
        event["id"]: (pixel, event)
        for pixel in sandbox.pixel_ids(SHOP)
        for event in sandbox.expected_events(pixel, START, END)
    }


def package_modules_naming(name: str) -> list[str]:
    """The package's modules that hold ``name`` as a string literal."""
    package = Path(airflow_provider_prisjakt.__file__).parent
    literal = re.compile(rf"[\"']{re.escape(name)}[\"']")
    return [str(path.relative_to(package)) for path in package.rglob("*.py") if literal.search(path.read_text())]


def test_the_two_registries_are_all_the_package_knows_of_a_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    assert package_modules_naming(NAME) == []
    with pytest.raises(ValueError, match=f"resource must be one of .*, got '{NAME}'"):
        PrisjaktToSqlOperator(task_id="load", conn_id=WAREHOUSE, table="t", resource=NAME)

    monkeypatch.setitem(RESOURCES, NAME, EVENT_IDS)
    monkeypatch.setitem(READERS, NAME, EventIdsReader)

    assert PrisjaktToSqlOperator(task_id="load", conn_id=WAREHOUSE, table="t", resource=NAME).resource == NAME


# -- SQL -------------------------------------------------------------------------------------------------


def load(table: str) -> dict[str, Any]:
    """Load the shop's ``event_ids`` of ``[START, END)`` into ``table`` (merging, the default)."""
    operator = PrisjaktToSqlOperator(
        task_id="load", conn_id=WAREHOUSE, table=table, resource=NAME, shop_id=SHOP, start=START, end=END
    )
    return operator.execute({})


def column_names(db: Warehouse, table: str) -> list[str]:
    cursor = db.conn.cursor()
    cursor.execute(f"SELECT * FROM {db.quote(table)} WHERE 1 = 0")
    names = [column[0] for column in cursor.description]
    cursor.close()
    return names


def test_a_new_resource_loads_into_sql_keyed_and_scoped_and_a_rerun_merges_on_its_key(
    registered: None,
    api: PrisjaktSandbox,
    warehouse: Warehouse,  # noqa: F811
) -> None:
    table = warehouse.table_name()
    expected = api_events(api)

    summary = load(table)

    assert column_names(warehouse, table) == list(EVENT_IDS.column_names)
    assert warehouse.primary_key(table) == {"event_id"}
    rows = warehouse.query(f"SELECT event_id, pixel_id, event_time, raw FROM {warehouse.quote(table)}")
    assert summary["rows"] == len(rows) == len(expected) > api.config.page_size * len(api.pixel_ids(SHOP))
    for event_id, pixel_id, event_time, raw in rows:
        pixel, event = expected[event_id]
        # The pixel comes from the reader's scope: neither the API's events nor the reader's records name it.
        assert pixel_id == pixel
        assert warehouse.instant(event_time) == datetime.fromisoformat(event["event_time"])
        record = raw if isinstance(raw, dict) else json.loads(raw)
        assert record == {"id": event_id, "event_time": event["event_time"]}  # what the reader made of it
    assert not warehouse.staging_tables(table)

    stale = sorted(expected)[0]
    changed = (warehouse.value(START - timedelta(days=30)), "another-pixel", stale)
    mark = warehouse.placeholder
    warehouse.execute(
        f"UPDATE {warehouse.quote(table)} SET event_time = {mark}, pixel_id = {mark} WHERE event_id = {mark}", changed
    )

    again = load(table)

    assert again["rows"] == summary["rows"]
    assert warehouse.count(table) == len(expected)
    [(pixel_id, event_time)] = warehouse.query(
        f"SELECT pixel_id, event_time FROM {warehouse.quote(table)} WHERE event_id = {mark}", (stale,)
    )
    assert pixel_id == expected[stale][0]
    assert warehouse.instant(event_time) == datetime.fromisoformat(expected[stale][1]["event_time"])


# -- part files, through an object-store operator ---------------------------------------------------


def export_files(root: Path) -> dict[str, Any]:
    """Export the shop's ``event_ids`` of ``[START, END)`` as CSV parts below ``root``."""
    operator = LocalFolderExportOperator(
        task_id="export", resource=NAME, shop_id=SHOP, start=START, end=END, root=str(root), file_format="csv"
    )
    return operator.execute({})


def published_rows(root: Path, pixel: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest and the rows of the parts in a pixel's folder."""
    folder = pixel_folder(root, pixel, "export")
    manifest = json.loads((folder / "_manifest.json").read_text())
    rows = [
        row for part in manifest["parts"] for row in decode_part(part["name"], (folder / part["name"]).read_bytes())
    ]
    return manifest, rows


def test_a_new_resource_exports_to_files_one_folder_per_pixel_and_a_rerun_replaces_them(
    registered: None, api: PrisjaktSandbox, tmp_path: Path
) -> None:
    expected = api_events(api)
    pixels = api.pixel_ids(SHOP)

    summary = export_files(tmp_path)

    assert sorted(path.name for path in (tmp_path / "export").iterdir()) == sorted(f"pixel_id={p}" for p in pixels)
    written: dict[str, list[dict[str, Any]]] = {}
    for pixel in pixels:
        manifest, rows = published_rows(tmp_path, pixel)
        assert manifest["resource"] == NAME and manifest["targets"] == [pixel]
        assert all(list(row) == list(EVENT_IDS.column_names) for row in rows)
        assert {row["event_id"] for row in rows} == {key for key, (owner, _) in expected.items() if owner == pixel}
        assert {row["pixel_id"] for row in rows} == {pixel}
        for row in rows:
            assert json.loads(row["raw"]) == {
                "id": row["event_id"],
                "event_time": expected[row["event_id"]][1]["event_time"],
            }
        written[pixel] = [{k: v for k, v in row.items() if k != "_extracted_at"} for row in rows]
    assert summary["rows"] == sum(map(len, written.values())) == len(expected)
    (pixel_folder(tmp_path, pixels[0], "export") / "part-00000.csv").write_text("left by an older run\n")

    export_files(tmp_path)

    for pixel in pixels:
        _, rows = published_rows(tmp_path, pixel)
        assert [{k: v for k, v in row.items() if k != "_extracted_at"} for row in rows] == written[pixel]
        assert sorted(path.name for path in pixel_folder(tmp_path, pixel, "export").iterdir()) == [
            "_manifest.json",
            "part-00000.csv",
        ]
