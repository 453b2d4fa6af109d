"""
Clicks once per destination: daily clicks exports with a look-back fetch each click once in all,
through the click index kept beside the windows' folders (local folder, S3 on moto, GCS emulator).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import traceback
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from airflow_provider_prisjakt.api.resources import CLICKS, EVENTS
from airflow_provider_prisjakt.export.checkpoint import ExportCheckpoint, ExportPaused
from airflow_provider_prisjakt.export.run import ExportRequest, ExportRun
from airflow_provider_prisjakt.export.sinks.layout import index_object_name

from .conftest import HookFactory, connect
from .local_folder import EXTRACTED_AT, make_sink, published_records

if TYPE_CHECKING:
    from airflow_provider_prisjakt.api.resources import Resource
    from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
    from airflow_provider_prisjakt.testing import PrisjaktSandbox
    from tests.integration.conftest_services import ObjectStore

pytestmark = pytest.mark.integration

SHOP = 4242
FIRST_DAY = datetime(2026, 10, 10, tzinfo=UTC)
DAYS = [FIRST_DAY + timedelta(days=n) for n in range(10)]
LOOKBACK = timedelta(days=7)
# About 13 events a day: a window with its look-back spans two or three pages of 50.
SANDBOX = {"events_per_pixel": 400, "page_size": 50}
INDEX = "clicks/_click_index"


def window(day: datetime) -> tuple[datetime, datetime]:
    """The window of the daily run of ``day``, with its look-back."""
    return day - LOOKBACK, day + timedelta(days=1)


def day_prefix(day: datetime) -> str:
    return f"clicks/{day.date().isoformat()}"


def click_ids(sandbox: PrisjaktSandbox, pixel: str, start: datetime, end: datetime) -> set[str]:
    """The clicks behind the pixel's events of ``[start, end)``: the sandbox's truth."""
    return {event["click_id"] for event in sandbox.expected_events(pixel, start, end)}


def click_requests(sandbox: PrisjaktSandbox) -> Counter[str]:
    """How often each click was requested."""
    return Counter(r.path.rsplit("/", 1)[1] for r in sandbox.requests if r.path.split("/")[-2] == "clicks")


def export(
    hook: PrisjaktHook,
    root: Path,
    prefix: str,
    start: datetime,
    end: datetime,
    *,
    pixel: str | None = None,
    resource: Resource = CLICKS,
    checkpoint: ExportCheckpoint | None = None,
    pause_on_rate_limit: bool = False,
) -> dict[str, Any]:
    """Export ``resource`` of ``[start, end)`` (a pixel's, or the shop's) below ``root/prefix``, default index."""
    sink = make_sink(root, root.parent / "spool", rows_per_part=40, resource=resource, prefix=prefix)
    request = ExportRequest(resource=resource, start=start, end=end, pixel_id=pixel, shop_id=SHOP)
    run = ExportRun(hook, request, sink, extracted_at=EXTRACTED_AT, checkpoint=checkpoint)
    return run.execute(pause_on_rate_limit=pause_on_rate_limit)


def published_clicks(root: Path, prefix: str, pixel: str) -> list[str]:
    """The click ids in the published parts of one pixel's folder (as its manifest lists them)."""
    _, records = published_records(root, pixel, prefix)
    return [record["id"] for record in records]


def index_object(root: Path, prefix: str, pixel: str) -> Path:
    return root / INDEX / f"pixel_id={pixel}" / index_object_name(prefix)


class ClicksApi(NamedTuple):
    """The sandbox of these tests (:data:`SANDBOX`), a hook on it, and its shop's first pixel."""

    sandbox: PrisjaktSandbox
    hook: PrisjaktHook
    pixel: str


@pytest.fixture
def api(sandbox_hook: HookFactory) -> ClicksApi:
    sandbox, hook = sandbox_hook(**SANDBOX)
    return ClicksApi(sandbox, hook, sandbox.pixel_ids(SHOP)[0])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The folder the exports write below (their spool is its sibling)."""
    return tmp_path / "out"


def run_ten_days(hook: PrisjaktHook, root: Path, pixel: str) -> list[dict[str, Any]]:
    return [export(hook, root, day_prefix(day), *window(day), pixel=pixel) for day in DAYS]


# -- a local folder --------------------------------------------------------------------------------


def test_ten_daily_exports_with_a_week_of_look_back_request_each_click_once(api: ClicksApi, root: Path) -> None:
    sandbox, hook, pixel = api

    manifests = run_ten_days(hook, root, pixel)

    every_click = click_ids(sandbox, pixel, window(DAYS[0])[0], window(DAYS[-1])[1])
    assert len(every_click) > 150
    requested = click_requests(sandbox)
    assert set(requested) == every_click and set(requested.values()) == {1}
    # Each window's files hold the clicks first exported in it: together every click, each once.
    seen: set[str] = set()
    for day, manifest in zip(DAYS, manifests, strict=True):
        in_window = click_ids(sandbox, pixel, *window(day))
        written = published_clicks(root, day_prefix(day), pixel)
        assert sorted(written) == sorted(in_window - seen)
        assert manifest["counters"]["requests_saved"] == len(in_window & seen)
        index = json.loads(index_object(root, day_prefix(day), pixel).read_text())
        assert sorted(index["keys"]) == sorted(written)
        assert index["window"] == manifests[DAYS.index(day)]["window"]
        seen |= in_window
    assert seen == every_click
    assert sum(m["counters"]["requests_saved"] for m in manifests) > len(every_click)  # the look-back's repeats


def test_a_rerun_of_one_window_fetches_and_rewrites_its_own_clicks_and_no_other(api: ClicksApi, root: Path) -> None:
    sandbox, hook, pixel = api
    run_ten_days(hook, root, pixel)
    before = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}
    own = json.loads(index_object(root, day_prefix(DAYS[5]), pixel).read_text())["keys"]
    sandbox.clear_requests()

    manifest = export(hook, root, day_prefix(DAYS[5]), *window(DAYS[5]), pixel=pixel)

    requested = click_requests(sandbox)
    assert sorted(requested) == sorted(own) and set(requested.values()) == {1}
    assert manifest["counters"]["requests_saved"] == len(click_ids(sandbox, pixel, *window(DAYS[5]))) - len(own)
    after = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}
    assert after == before  # the same parts, manifest and index object, byte for byte


def test_a_window_written_over_another_windows_folder_fetches_every_click_it_replaces(
    api: ClicksApi, root: Path
) -> None:
    # One fixed prefix for every run: each run replaces the folder, so its own index object must not count.
    sandbox, hook, pixel = api
    export(hook, root, "clicks/latest", *window(DAYS[0]), pixel=pixel)
    sandbox.clear_requests()

    manifest = export(hook, root, "clicks/latest", *window(DAYS[1]), pixel=pixel)

    in_window = click_ids(sandbox, pixel, *window(DAYS[1]))
    assert sorted(published_clicks(root, "clicks/latest", pixel)) == sorted(in_window)
    assert set(click_requests(sandbox)) == in_window
    assert manifest["counters"]["requests_saved"] == 0
    index = json.loads(index_object(root, "clicks/latest", pixel).read_text())
    assert sorted(index["keys"]) == sorted(in_window)


def test_an_unreadable_index_object_is_ignored_and_its_clicks_fetched_again(
    api: ClicksApi, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox, hook, pixel = api
    export(hook, root, day_prefix(DAYS[0]), *window(DAYS[0]), pixel=pixel)
    broken = index_object(root, day_prefix(DAYS[0]), pixel)
    broken.write_text("{not json")
    sandbox.clear_requests()

    with caplog.at_level(logging.WARNING):
        export(hook, root, day_prefix(DAYS[1]), *window(DAYS[1]), pixel=pixel)

    assert set(click_requests(sandbox)) == click_ids(sandbox, pixel, *window(DAYS[1]))
    assert any(
        "unreadable" in record.getMessage() and str(broken.name) in record.getMessage() for record in caplog.records
    )


def test_a_clicks_export_paused_by_the_rate_limit_indexes_the_parts_staged_before_the_pause(
    sandbox_hook: HookFactory, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, hook = sandbox_hook(**SANDBOX, rate_limit=30, rate_window=600, extra={"max_inline_wait": 1})
    pixel = sandbox.pixel_ids(SHOP)[0]
    prefix = day_prefix(DAYS[0])
    state: dict[str, Any] | None = None
    manifest = None
    pauses = 0
    while manifest is None:
        assert pauses < 20, "the export does not make progress"
        try:
            checkpoint = ExportCheckpoint.from_dict(state) if state else None
            manifest = export(
                hook, root, prefix, *window(DAYS[0]), pixel=pixel, checkpoint=checkpoint, pause_on_rate_limit=True
            )
        except ExportPaused as paused:
            pauses += 1
            state = json.loads(json.dumps(paused.checkpoint.to_dict()))
            sandbox.reset_rate_limit()
            hook = connect(monkeypatch, sandbox, max_inline_wait=1)  # a new worker after the deferral
    assert pauses >= 2

    in_window = click_ids(sandbox, pixel, *window(DAYS[0]))
    index = json.loads(index_object(root, prefix, pixel).read_text())
    assert sorted(index["keys"]) == sorted(published_clicks(root, prefix, pixel)) == sorted(in_window)
    sandbox.reset_rate_limit()
    sandbox.clear_requests()
    export(connect(monkeypatch, sandbox), root, day_prefix(DAYS[1]), *window(DAYS[1]), pixel=pixel)
    assert not set(click_requests(sandbox)) & in_window


def test_an_events_export_keeps_no_click_index(api: ClicksApi, root: Path) -> None:
    sandbox, hook, pixel = api

    export(hook, root, "events/2026-10-10", *window(DAYS[0]), pixel=pixel, resource=EVENTS)

    assert not [path for path in root.rglob("*") if "_click_index" in path.parts or path.name.endswith(".keys.jsonl")]


def test_a_shop_export_reads_and_writes_one_index_folder_per_pixel(api: ClicksApi, root: Path) -> None:
    sandbox, hook, _ = api
    pixels = sandbox.pixel_ids(SHOP)

    for day in DAYS[:2]:
        export(hook, root, day_prefix(day), *window(day))

    first, second = (window(day) for day in DAYS[:2])
    for pixel in pixels:
        assert sorted(published_clicks(root, day_prefix(DAYS[1]), pixel)) == sorted(
            click_ids(sandbox, pixel, *second) - click_ids(sandbox, pixel, *first)
        )
        assert sorted(path.name for path in (root / INDEX / f"pixel_id={pixel}").iterdir()) == sorted(
            index_object_name(day_prefix(day)) for day in DAYS[:2]
        )
    assert set(click_requests(sandbox).values()) == {1}


# -- S3 and GCS, through the operators ---------------------------------------------------------------


@pytest.fixture(params=["s3_store", "gcs_store"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    return request.getfixturevalue(request.param)


def operator_export(store: ObjectStore, day: datetime, pixel: str, **kwargs: Any) -> dict[str, Any]:
    """The daily run of ``day`` as a DAG would write it: the key templated by ``ds``, the default index."""
    start, end = day, day + timedelta(days=1)
    operator = store.operator(
        "prisjakt/clicks/{{ ds }}/", resource="clicks", pixel_id=pixel, start=start, end=end, lookback="P7D", **kwargs
    )
    assert operator.click_index_prefix == "prisjakt/clicks/_click_index"
    operator.render_template_fields({"ds": day.date().isoformat()})
    return operator.execute({})


def store_clicks(store: ObjectStore, day: datetime, pixel: str) -> list[str]:
    folder = f"prisjakt/clicks/{day.date().isoformat()}/pixel_id={pixel}/"
    manifest = json.loads(store.read(folder + "_manifest.json"))
    return [
        json.loads(line)["id"] for part in manifest["parts"] for line in store.read(folder + part["name"]).splitlines()
    ]


def test_daily_operator_runs_with_a_templated_key_request_each_click_once(store: ObjectStore, api: ClicksApi) -> None:
    sandbox, _, pixel = api

    summaries = [operator_export(store, day, pixel) for day in DAYS]

    every_click = click_ids(sandbox, pixel, window(DAYS[0])[0], window(DAYS[-1])[1])
    requested = click_requests(sandbox)
    assert set(requested) == every_click and set(requested.values()) == {1}
    written = [click for day in DAYS for click in store_clicks(store, day, pixel)]
    assert sorted(written) == sorted(every_click)
    in_windows = sum(len(click_ids(sandbox, pixel, *window(day))) for day in DAYS)
    assert sum(summary["requests_saved"] for summary in summaries) == in_windows - len(every_click)
    index_folder = f"prisjakt/clicks/_click_index/pixel_id={pixel}/"
    assert store.keys(index_folder) == sorted(
        index_folder + index_object_name(f"prisjakt/clicks/{day.date().isoformat()}") for day in DAYS
    )


def run_mapped(store: ObjectStore, day: datetime, pixels: list[str]) -> None:
    """Run the day's export of each pixel in its own process, all released together (as mapped tasks)."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(pixels))
    failures = context.Queue()

    def mapped_task(pixel: str) -> None:
        try:
            barrier.wait()
            operator_export(store, day, pixel, task_id=f"export_{pixel}")
        except BaseException:
            failures.put(traceback.format_exc())
            raise

    tasks = [context.Process(target=mapped_task, args=(pixel,)) for pixel in pixels]
    for task in tasks:
        task.start()
    for task in tasks:
        task.join(timeout=120)
    assert failures.empty(), failures.get()
    assert [task.exitcode for task in tasks] == [0] * len(pixels)


def test_mapped_pixels_share_one_key_and_one_index_without_racing(store: ObjectStore, api: ClicksApi) -> None:
    sandbox, _, _ = api
    pixels = sandbox.pixel_ids(SHOP)
    assert len(pixels) == 3

    for day in DAYS[:2]:
        run_mapped(store, day, pixels)

    requested = click_requests(sandbox)
    assert set(requested.values()) == {1}
    for pixel in pixels:
        first, second = (click_ids(sandbox, pixel, *window(day)) for day in DAYS[:2])
        assert sorted(store_clicks(store, DAYS[1], pixel)) == sorted(second - first)
        assert set(requested) >= first | second
        index_folder = f"prisjakt/clicks/_click_index/pixel_id={pixel}/"
        assert len(store.keys(index_folder)) == 2
