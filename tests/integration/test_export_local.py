"""The shared export loop with LocalFolderSink: parts, manifest, re-runs, failures, rate-limit pauses."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from airflow_provider_prisjakt.api.resources import EVENTS, PIXELS
from airflow_provider_prisjakt.exceptions import PrisjaktServerError
from airflow_provider_prisjakt.export.checkpoint import ExportCheckpoint, ExportPaused
from airflow_provider_prisjakt.export.formats import FileFormat
from airflow_provider_prisjakt.export.readers import read_events
from airflow_provider_prisjakt.export.run import ExportRequest, ExportRun
from airflow_provider_prisjakt.export.sinks.object_store import LocalFolderSink
from airflow_provider_prisjakt.testing import SandboxConfig

from .conftest import HookFactory, connect
from .local_folder import EXTRACTED_AT, PREFIX, folder_state, make_sink, pixel_folder, published_records

pytest.register_assert_rewrite("tests.integration.conftest_services")

from .conftest_services import fingerprint, pages_fetched  # noqa: E402

if TYPE_CHECKING:
    from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
    from airflow_provider_prisjakt.testing import PrisjaktSandbox

pytestmark = pytest.mark.integration

START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)


class RecordingSink(LocalFolderSink):
    """A LocalFolderSink that records every storage operation (writes, deletes and listings), in order."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.operations: list[tuple[str, str]] = []

    def list_keys(self, prefix: str) -> list[str]:
        self.operations.append(("list", prefix))
        return super().list_keys(prefix)

    def upload_file(self, local_path: str, key: str) -> None:
        self.operations.append(("write", key))
        super().upload_file(local_path, key)

    def upload_text(self, text: str, key: str) -> None:
        self.operations.append(("write", key))
        super().upload_text(text, key)

    def copy_object(self, source_key: str, dest_key: str) -> None:
        self.operations.append(("write", dest_key))
        super().copy_object(source_key, dest_key)

    def delete_keys(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        self.operations.extend(("delete", key) for key in keys)
        super().delete_keys(keys)


def export(
    hook: PrisjaktHook,
    pixel: str | None,
    root: Path,
    tmp_path: Path,
    *,
    end: datetime = END,
    max_rows_per_file: int = 250,
    sink: LocalFolderSink | None = None,
    checkpoint: ExportCheckpoint | None = None,
    pause_on_rate_limit: bool = False,
    shop_id: int | None = None,
) -> dict[str, Any]:
    """Export ``pixel``'s events (or, without a pixel, every pixel of ``shop_id``) into ``root``."""
    request = ExportRequest(resource=EVENTS, start=START, end=end, pixel_id=pixel, shop_id=shop_id)
    sink = sink or make_sink(root, tmp_path / "spool", rows_per_part=max_rows_per_file)
    run = ExportRun(hook, request, sink, extracted_at=EXTRACTED_AT, checkpoint=checkpoint)
    return run.execute(pause_on_rate_limit=pause_on_rate_limit)


def test_parts_rotate_at_max_rows_per_file_with_deterministic_names(sandbox_hook: HookFactory, tmp_path: Path) -> None:
    sandbox, hook = sandbox_hook()
    pixel = sandbox.pixel_ids(4242)[0]
    root = tmp_path / "out"

    manifest = export(hook, pixel, root, tmp_path, max_rows_per_file=250)

    assert [(p["name"], p["rows"]) for p in manifest["parts"]] == [(f"part-{n:05d}.jsonl", 250) for n in range(8)]
    written, records = published_records(root, pixel)
    assert written == manifest
    assert manifest["rows"] == len(records) == 2000
    assert fingerprint(records) == fingerprint(list(sandbox.expected_events(pixel, START, END)))
    assert not (tmp_path / "spool").exists() or list((tmp_path / "spool").iterdir()) == []


def test_the_same_window_gives_the_same_part_names_and_bytes(sandbox_hook: HookFactory, tmp_path: Path) -> None:
    sandbox, hook = sandbox_hook()
    pixel = sandbox.pixel_ids(4242)[0]

    export(hook, pixel, tmp_path / "one", tmp_path, max_rows_per_file=700)
    export(hook, pixel, tmp_path / "two", tmp_path, max_rows_per_file=700)

    one, two = folder_state(pixel_folder(tmp_path / "one", pixel)), folder_state(pixel_folder(tmp_path / "two", pixel))
    parts = {name: data for name, data in one.items() if name.startswith("part-")}
    assert sorted(parts) == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    assert parts == {name: data for name, data in two.items() if name.startswith("part-")}


def test_the_manifest_is_written_last_after_the_old_one_is_removed(sandbox_hook: HookFactory, tmp_path: Path) -> None:
    sandbox, hook = sandbox_hook()
    pixel = sandbox.pixel_ids(4242)[0]
    root = tmp_path / "out"
    export(hook, pixel, root, tmp_path, max_rows_per_file=500)
    sink = make_sink(root, tmp_path / "spool", RecordingSink, rows_per_part=500)
    assert isinstance(sink, RecordingSink)

    export(hook, pixel, root, tmp_path, end=START + timedelta(days=10), max_rows_per_file=500, sink=sink)

    folder = f"{PREFIX}/pixel_id={pixel}"
    manifest_key = f"{folder}/_manifest.json"
    staging = f"{folder}/_staging/"
    operations = sink.operations
    assert all(key.startswith(f"{folder}/") for _, key in operations)
    published = [i for i, (verb, key) in enumerate(operations) if verb == "write" and not key.startswith(staging)]
    assert operations[published[-1]] == ("write", manifest_key)
    assert operations.index(("delete", manifest_key)) < published[0]
    stale = [i for i, (verb, key) in enumerate(operations) if verb == "delete" and key.startswith(f"{folder}/part-")]
    assert stale and max(stale) < published[-1]
    assert all(key.startswith(staging) for _, key in operations[published[-1] + 1 :])


def test_a_shorter_rerun_removes_stale_parts_and_staging(sandbox_hook: HookFactory, tmp_path: Path) -> None:
    sandbox, hook = sandbox_hook()
    pixel = sandbox.pixel_ids(4242)[0]
    root = tmp_path / "out"
    folder = pixel_folder(root, pixel)
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("not ours")
    export(hook, pixel, root, tmp_path, max_rows_per_file=500)
    assert len(list(folder.glob("part-*"))) == 4

    short_end = START + timedelta(days=3)
    manifest = export(hook, pixel, root, tmp_path, end=short_end, max_rows_per_file=500)

    expected = list(sandbox.expected_events(pixel, START, short_end))
    assert sorted(p.name for p in folder.iterdir()) == ["_manifest.json", "notes.txt", "part-00000.jsonl"]
    assert manifest["rows"] == len(expected)
    assert json.loads((folder / "_manifest.json").read_text()) == manifest
    lines = (folder / "part-00000.jsonl").read_text().splitlines()
    assert fingerprint([json.loads(line) for line in lines]) == fingerprint(expected)


def test_an_empty_window_publishes_an_empty_manifest_and_no_parts(sandbox_hook: HookFactory, tmp_path: Path) -> None:
    sandbox, hook = sandbox_hook()
    pixel = sandbox.pixel_ids(4242)[0]
    root = tmp_path / "out"
    export(hook, pixel, root, tmp_path, max_rows_per_file=500)
    quiet_start = START - timedelta(days=3)  # before the seeded period
    request = ExportRequest(resource=EVENTS, start=quiet_start, end=START - timedelta(days=1), pixel_id=pixel)

    manifest = ExportRun(hook, request, make_sink(root, tmp_path / "spool"), extracted_at=EXTRACTED_AT).execute()

    assert manifest["rows"] == 0 and manifest["parts"] == []
    assert sorted(p.name for p in pixel_folder(root, pixel).iterdir()) == ["_manifest.json"]


def test_a_failed_run_leaves_the_folder_as_it_was(
    sandbox_hook: HookFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, hook = sandbox_hook()
    pixel = sandbox.pixel_ids(4242)[0]
    root = tmp_path / "out"
    export(hook, pixel, root, tmp_path, max_rows_per_file=500)
    before = folder_state(root)
    failing_hook = connect(monkeypatch, sandbox, max_retries=2)

    class BreakAfterFirstPart(LocalFolderSink):
        def close_part(self) -> dict[str, Any]:
            entry = super().close_part()
            assert (pixel_folder(root, pixel) / "_staging" / entry["name"]).exists()
            sandbox.fail_next("500", count=100)
            return entry

    with pytest.raises(PrisjaktServerError):
        export(failing_hook, pixel, root, tmp_path, sink=make_sink(root, tmp_path / "spool", BreakAfterFirstPart))

    assert folder_state(root) == before
    assert list((tmp_path / "spool").iterdir()) == []


def test_a_rate_limit_pause_resumes_from_a_json_checkpoint_without_refetching_pages(
    sandbox_hook: HookFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, hook = sandbox_hook(rate_limit=3, rate_window=600, extra={"max_inline_wait": 1})
    pixel = sandbox.pixel_ids(4242)[0]
    root = tmp_path / "out"
    pauses = 0

    with pytest.raises(ExportPaused) as raised:
        export(hook, pixel, root, tmp_path, pause_on_rate_limit=True)
    pauses += 1
    assert raised.value.resume_at is not None
    assert raised.value.resume_at - datetime.now(UTC) > timedelta(seconds=500)
    assert len(sandbox.requests) == 3
    assert not list((root / PREFIX).rglob("_manifest.json"))
    state = json.loads(json.dumps(raised.value.checkpoint.to_dict()))
    assert state["rows"] == 300 and state["counters"]["requests"] == 3 and state["counters"]["deferrals"] == 1

    manifest = None
    while manifest is None:
        assert pauses < 10, "the export does not make progress"
        sandbox.reset_rate_limit()
        fresh_hook = connect(monkeypatch, sandbox, max_inline_wait=1)  # a new worker after the deferral
        try:
            manifest = export(
                fresh_hook,
                pixel,
                root,
                tmp_path,
                pause_on_rate_limit=True,
                checkpoint=ExportCheckpoint.from_dict(state),
            )
        except ExportPaused as paused:
            pauses += 1
            state = json.loads(json.dumps(paused.checkpoint.to_dict()))

    _, records = published_records(root, pixel)
    assert fingerprint(records) == fingerprint(list(sandbox.expected_events(pixel, START, END)))
    assert manifest["rows"] == len(records) == 2000
    fetched = pages_fetched(sandbox)
    assert len(fetched) == 20 and set(fetched.values()) == {1}
    assert all(r.status == 200 for r in sandbox.requests)
    assert pauses == 6  # 20 pages at 3 requests per window
    assert manifest["counters"]["requests"] == len(sandbox.requests) == 20
    assert manifest["counters"]["deferrals"] == pauses
    assert manifest["counters"]["rate_limited"] == 0
    assert manifest["extracted_at"] == EXTRACTED_AT.isoformat()
    assert [p["name"] for p in manifest["parts"]] == [f"part-{n:05d}.jsonl" for n in range(len(manifest["parts"]))]
    assert not (pixel_folder(root, pixel) / "_staging").exists()


def test_pages_shifting_at_the_largest_page_size_repeat_no_record(sandbox_hook: HookFactory, tmp_path: Path) -> None:
    largest = SandboxConfig().max_page_size
    shift = largest * 9 // 10  # 90% of each page was on the page before, by the time it is served
    sandbox, hook = sandbox_hook(extra={"page_size": largest}, events_per_pixel=3 * largest, new_events_per_page=shift)
    exported_pixel, read_pixel = sandbox.pixel_ids(4242)[:2]
    at_start = {
        pixel: fingerprint(list(sandbox.expected_events(pixel, START, END))) for pixel in sandbox.pixel_ids(4242)
    }

    manifest = export(hook, exported_pixel, tmp_path / "out", tmp_path, max_rows_per_file=largest)
    read = list(read_events(hook, read_pixel, START, END))  # the hook's iter_events path: the same reader

    assert len(list(sandbox.expected_events(exported_pixel, START, END))) > len(at_start[exported_pixel])
    _, records = published_records(tmp_path / "out", exported_pixel)
    assert fingerprint(records) == at_start[exported_pixel]
    assert fingerprint(read) == at_start[read_pixel]
    # A first page of 1,000, then 100 new records per page: 1 + 2,000 / 100 pages.
    assert manifest["counters"]["requests"] == 21


def test_every_row_carries_the_pixel_it_was_read_for_though_events_do_not_name_it(
    sandbox_hook: HookFactory, tmp_path: Path
) -> None:
    sandbox, hook = sandbox_hook(event_fields="documented")
    pixels = sandbox.pixel_ids(4242)
    request = ExportRequest(resource=EVENTS, start=START, end=START + timedelta(days=2), shop_id=4242)
    sink = make_sink(tmp_path / "out", tmp_path / "spool", file_format=FileFormat.CSV)

    manifest = ExportRun(hook, request, sink, extracted_at=EXTRACTED_AT).execute()

    rows = [
        row
        for part in manifest["parts"]
        for row in csv.DictReader(
            io.StringIO((tmp_path / "out" / PREFIX / part["partition"] / part["name"]).read_text(), newline="")
        )
    ]
    assert manifest["targets"] == pixels
    assert all("pixel_id" not in json.loads(row["raw"]) for row in rows)
    expected = {
        event["id"]: pixel
        for pixel in pixels
        for event in sandbox.expected_events(pixel, START, START + timedelta(days=2))
    }
    assert {row["event_id"]: row["pixel_id"] for row in rows} == expected


# -- one folder per pixel ----------------------------------------------------------------------------


class TwoPixels(NamedTuple):
    """A sandbox and a hook on it, after its first two pixels were exported into ``root`` one after the other."""

    sandbox: PrisjaktSandbox
    hook: PrisjaktHook
    root: Path
    first: str
    second: str


@pytest.fixture
def two_pixels_exported(sandbox_hook: HookFactory, tmp_path: Path) -> TwoPixels:
    sandbox, hook = sandbox_hook()
    first, second = sandbox.pixel_ids(4242)[:2]
    root = tmp_path / "out"
    export(hook, first, root, tmp_path, max_rows_per_file=500)
    export(hook, second, root, tmp_path, max_rows_per_file=500)
    return TwoPixels(sandbox, hook, root, first, second)


def test_two_pixels_exported_one_after_the_other_into_one_prefix_both_survive(two_pixels_exported: TwoPixels) -> None:
    sandbox, _, root, first, second = two_pixels_exported

    assert sorted(p.name for p in (root / PREFIX).iterdir()) == sorted([f"pixel_id={first}", f"pixel_id={second}"])
    for pixel in (first, second):
        manifest, records = published_records(root, pixel)
        assert manifest["targets"] == [pixel]
        assert fingerprint(records) == fingerprint(list(sandbox.expected_events(pixel, START, END)))
        assert not (pixel_folder(root, pixel) / "_staging").exists()


def test_a_rerun_of_one_pixels_window_replaces_its_folder_and_leaves_the_others_byte_identical(
    two_pixels_exported: TwoPixels, tmp_path: Path
) -> None:
    sandbox, hook, root, rerun, other = two_pixels_exported
    before = folder_state(pixel_folder(root, other))
    sink = make_sink(root, tmp_path / "spool", RecordingSink, rows_per_part=500)
    assert isinstance(sink, RecordingSink)
    short_end = START + timedelta(days=3)

    manifest = export(hook, rerun, root, tmp_path, end=short_end, sink=sink)

    assert folder_state(pixel_folder(root, other)) == before
    # Every listing, write and delete of the re-run stays inside its own pixel's folder.
    assert sink.operations and all(key.startswith(f"{PREFIX}/pixel_id={rerun}/") for _, key in sink.operations)
    written, records = published_records(root, rerun)  # also: the longer run's stale parts are gone
    assert written == manifest
    assert [p["name"] for p in written["parts"]] == ["part-00000.jsonl"]
    assert fingerprint(records) == fingerprint(list(sandbox.expected_events(rerun, START, short_end)))


def test_a_shop_wide_export_writes_one_folder_per_pixel_with_its_own_manifest(
    sandbox_hook: HookFactory, tmp_path: Path
) -> None:
    sandbox, hook = sandbox_hook()
    pixels = sandbox.pixel_ids(4242)
    root = tmp_path / "out"

    manifest = export(hook, None, root, tmp_path, shop_id=4242, max_rows_per_file=700)

    assert sorted(p.name for p in (root / PREFIX).iterdir()) == sorted(f"pixel_id={pixel}" for pixel in pixels)
    assert manifest["targets"] == pixels
    for pixel in pixels:
        written, records = published_records(root, pixel)
        expected = list(sandbox.expected_events(pixel, START, END))
        assert written["targets"] == [pixel]
        assert written["rows"] == len(records) == len(expected)
        assert fingerprint(records) == fingerprint(expected)
        # Parts rotate and are numbered within each pixel's folder.
        parts = -(-len(expected) // 700)
        assert [p["name"] for p in written["parts"]] == [f"part-{n:05d}.jsonl" for n in range(parts)]
        assert {k: v for k, v in written.items() if k not in {"targets", "rows", "parts"}} == {
            k: v for k, v in manifest.items() if k not in {"targets", "rows", "parts"}
        }
    assert manifest["rows"] == sum(len(list(sandbox.expected_events(p, START, END))) for p in pixels)


def test_a_shop_wide_export_paused_by_the_rate_limit_resumes_per_folder_without_refetching_or_rewriting(
    sandbox_hook: HookFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, hook = sandbox_hook(events_per_pixel=500, rate_limit=4, rate_window=600, extra={"max_inline_wait": 1})
    pixels = sandbox.pixel_ids(4242)
    root = tmp_path / "out"
    writes: list[str] = []
    state: dict[str, Any] | None = None
    manifest = None
    while manifest is None:
        assert len(writes) < 100, "the export does not make progress"
        sink = make_sink(root, tmp_path / "spool", RecordingSink, rows_per_part=200)
        assert isinstance(sink, RecordingSink)
        checkpoint = ExportCheckpoint.from_dict(state) if state else None
        try:
            manifest = export(
                hook, None, root, tmp_path, shop_id=4242, sink=sink, checkpoint=checkpoint, pause_on_rate_limit=True
            )
        except ExportPaused as paused:
            state = json.loads(json.dumps(paused.checkpoint.to_dict()))
            sandbox.reset_rate_limit()
            hook = connect(monkeypatch, sandbox, max_inline_wait=1)  # a new worker after the deferral
        writes += [key for verb, key in sink.operations if verb == "write" and "/_staging/" in key]

    assert manifest["counters"]["deferrals"] >= 3
    assert len(writes) == len(set(writes)), "a finished part was staged twice"
    fetched = pages_fetched(sandbox)
    assert set(fetched.values()) == {1} and len(fetched) == 1 + 15  # the shop's pixels, then 5 pages per pixel
    for pixel in pixels:
        written, records = published_records(root, pixel)
        assert fingerprint(records) == fingerprint(list(sandbox.expected_events(pixel, START, END)))
        assert [p["name"] for p in written["parts"]] == [f"part-{n:05d}.jsonl" for n in range(len(written["parts"]))]
        assert not (pixel_folder(root, pixel) / "_staging").exists()


def test_the_shops_pixels_keep_the_flat_layout_beside_pixel_folders(sandbox_hook: HookFactory, tmp_path: Path) -> None:
    sandbox, hook = sandbox_hook()
    pixel = sandbox.pixel_ids(4242)[0]
    root = tmp_path / "out"
    export(hook, pixel, root, tmp_path, max_rows_per_file=500)
    events_before = folder_state(pixel_folder(root, pixel))
    request = ExportRequest(resource=PIXELS, start=START, end=END, shop_id=4242)
    sink = make_sink(root, tmp_path / "spool", resource=PIXELS)

    manifest = ExportRun(hook, request, sink, extracted_at=EXTRACTED_AT).execute()

    written, records = published_records(root, None)
    assert written == manifest
    assert [record["id"] for record in records] == sandbox.pixel_ids(4242)
    assert sorted(p.name for p in (root / PREFIX).iterdir()) == [
        "_manifest.json",
        "part-00000.jsonl",
        f"pixel_id={pixel}",
    ]
    assert folder_state(pixel_folder(root, pixel)) == events_before


def test_a_pixel_id_that_is_not_a_safe_path_segment_stays_inside_its_own_folder(tmp_path: Path) -> None:
    root = tmp_path / "out"
    sink = make_sink(root, tmp_path / "spool")
    targets = ["../../escape", "a/b"]
    sink.set_targets(targets)
    sink.begin(resume=False)
    parts = []
    for pixel in targets:  # as the export loop drives a sink: one part per folder, numbered within it
        sink.open_part(0)
        sink.write_rows([{"id": f"event of {pixel}"}], pixel)
        parts.append({**sink.close_part(), "partition": sink.partition_of(pixel)})

    sink.commit({"resource": "events", "targets": targets, "rows": 2, "parts": parts})

    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        f"out/{PREFIX}/pixel_id=..%2F..%2Fescape/_manifest.json",
        f"out/{PREFIX}/pixel_id=..%2F..%2Fescape/part-00000.jsonl",
        f"out/{PREFIX}/pixel_id=a%2Fb/_manifest.json",
        f"out/{PREFIX}/pixel_id=a%2Fb/part-00000.jsonl",
    ]
