"""Cost up front against the sandbox: PrisjaktHook.estimate, the export's estimate line and its progress lines."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_prisjakt.api.resources import CLICKS, EVENTS
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError
from airflow_provider_prisjakt.export import run as export_run
from airflow_provider_prisjakt.export.run import ExportRequest, ExportRun
from airflow_provider_prisjakt.export.sinks.object_store import LocalFolderSink
from airflow_provider_prisjakt.testing import api as sandbox_api

if TYPE_CHECKING:
    from airflow_provider_prisjakt.api.resources import Resource
    from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
    from airflow_provider_prisjakt.testing import PrisjaktSandbox
    from tests.integration.conftest import HookFactory

pytestmark = pytest.mark.integration

SHOP = 4242  # three pixels in the default sandbox
START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
EXTRACTED_AT = datetime(2026, 11, 2, tzinfo=UTC)
#: How close an estimate from the time reach comes on evenly spread events (the Link header's is exact).
TIME_REACH_TOLERANCE = 0.10
RUN_LOG = export_run.__name__


def export(
    hook: PrisjaktHook, tmp_path: Path, *, resource: Resource = EVENTS, start: datetime = START, end: datetime = END
) -> int:
    """Export every pixel of the shop into a local folder; return the requests the export sent."""
    (tmp_path / "spool").mkdir(exist_ok=True)
    sink = LocalFolderSink(
        root=str(tmp_path / "out"),
        prefix=resource.name,
        resource=resource,
        file_format="jsonl",
        compression=None,
        extracted_at=EXTRACTED_AT,
        spool_dir=str(tmp_path / "spool"),
        rows_per_part=10_000,
    )
    before = hook.stats.requests
    request = ExportRequest(resource=resource, start=start, end=end, shop_id=SHOP)
    ExportRun(hook, request, sink, extracted_at=EXTRACTED_AT).execute()
    return hook.stats.requests - before


@pytest.fixture
def without_last_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the sandbox send first/prev/next links but no ``rel="last"``, as an API may (it has no knob for it)."""
    real = sandbox_api.link_header

    def link_header(config: Any, *args: Any) -> list[str]:
        values = real(dataclasses.replace(config, link_split=True, combined_rels=False), *args)
        return [", ".join(value for value in values if 'rel="last"' not in value)] if values else []

    monkeypatch.setattr(sandbox_api, "link_header", link_header)


@pytest.fixture
def progress_every_page(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Log a progress line after every batch, and capture the export's log."""
    monkeypatch.setattr(export_run, "PROGRESS_EVERY_SECONDS", 0.0)
    caplog.set_level(logging.INFO, logger=RUN_LOG)


def data_requests(sandbox: PrisjaktSandbox) -> int:
    return sum(1 for r in sandbox.requests if r.status == 200 and "/pixels/" in r.path)


def test_the_estimate_spends_one_request_per_pixel_and_equals_what_the_export_sends(
    sandbox_hook: HookFactory, tmp_path: Path
) -> None:
    sandbox, hook = sandbox_hook(page_size=50)
    pixels = sandbox.pixel_ids(SHOP)

    planned = hook.estimate(None, START, END, shop_id=SHOP)

    assert planned.spent == len(pixels) + 1  # a first page per pixel, and the shop's pixel list
    assert data_requests(sandbox) == len(pixels)
    assert planned.exact and planned.pages == dict.fromkeys(pixels, 40)
    assert str(planned) == f"31 days × 3 pixels ≈ {3 * 40 + 1} requests ≈ 0.01 hours at 10,000/h"
    assert export(hook, tmp_path) == planned.requests


def test_a_backfill_over_several_chunks_is_planned_from_the_newest_one(
    sandbox_hook: HookFactory, tmp_path: Path
) -> None:
    start = datetime(2026, 5, 1, tzinfo=UTC)
    sandbox, hook = sandbox_hook(period_start=start, period_end=END, events_per_pixel=3000, rate_limit=500)
    pixels = sandbox.pixel_ids(SHOP)

    planned = hook.estimate(pixels, start, END)

    assert planned.spent == len(pixels)
    assert planned.limit == 500 and "at 500/h" in str(planned)
    assert not planned.exact  # the older chunks are scaled from the newest
    sent = export(hook, tmp_path, start=start)
    assert abs(planned.requests - sent) <= TIME_REACH_TOLERANCE * sent


def test_without_last_links_the_estimate_comes_from_the_time_reach(
    sandbox_hook: HookFactory, tmp_path: Path, without_last_links: None
) -> None:
    sandbox, hook = sandbox_hook(page_size=40)

    planned = hook.estimate(sandbox.pixel_ids(SHOP), START, END)

    assert not planned.exact
    assert planned.spent == 3
    sent = export(hook, tmp_path) - 1  # less the pixel list
    assert abs(planned.requests - sent) <= TIME_REACH_TOLERANCE * sent


def test_a_clicks_estimate_counts_a_request_per_click(sandbox_hook: HookFactory, tmp_path: Path) -> None:
    sandbox, hook = sandbox_hook(events_per_pixel=300)
    window = datetime(2026, 10, 10, tzinfo=UTC), datetime(2026, 10, 20, tzinfo=UTC)

    planned = hook.estimate(None, *window, shop_id=SHOP, resource="clicks")

    assert planned.spent == 4
    sent = export(hook, tmp_path, resource=CLICKS, start=window[0], end=window[1])
    assert abs(planned.requests - sent) <= TIME_REACH_TOLERANCE * sent


def test_purchase_summaries_are_planned_without_a_request(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook()

    planned = hook.estimate(sandbox.pixel_ids(SHOP), START, END, resource="purchase_summary")

    assert planned.spent == 0 and sandbox.requests == []
    assert planned.pages == dict.fromkeys(sandbox.pixel_ids(SHOP), 31)


class RequestsAtLog(logging.Handler):
    """Records each estimate line with the number of data requests the sandbox had answered by then."""

    def __init__(self, sandbox: PrisjaktSandbox) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.seen: list[tuple[str, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Estimate"):
            self.seen.append((record.getMessage(), data_requests(self.sandbox)))


@pytest.fixture
def estimate_lines(sandbox_hook: HookFactory) -> Iterator[tuple[PrisjaktSandbox, PrisjaktHook, RequestsAtLog]]:
    sandbox, hook = sandbox_hook(page_size=50)
    handler = RequestsAtLog(sandbox)
    logger = logging.getLogger(RUN_LOG)
    logger.addHandler(handler)
    yield sandbox, hook, handler
    logger.removeHandler(handler)


@pytest.mark.parametrize("resource", [EVENTS, CLICKS], ids=lambda r: r.name)
def test_the_export_logs_its_estimate_after_its_first_page_before_any_other_data_request(
    estimate_lines: tuple[PrisjaktSandbox, PrisjaktHook, RequestsAtLog],
    tmp_path: Path,
    progress_every_page: None,
    resource: Resource,
) -> None:
    sandbox, hook, handler = estimate_lines
    window = (datetime(2026, 10, 25, tzinfo=UTC), END) if resource is CLICKS else (START, END)

    export(hook, tmp_path, resource=resource, start=window[0], end=window[1])

    [(line, requests_by_then)] = handler.seen
    assert requests_by_then == 1  # the first events page, which the export then used
    assert "× 3 pixels ≈" in line and 'as its rel="last" link says' in line
    pages_fetched = [r.page_key for r in sandbox.requests if r.page_key and r.status == 200 and "/events" in r.path]
    assert len(pages_fetched) == len(set(pages_fetched))  # no page fetched twice


def test_progress_lines_say_page_n_of_m_and_the_time_to_go(
    sandbox_hook: HookFactory, tmp_path: Path, progress_every_page: None, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox, hook = sandbox_hook(page_size=50)

    export(hook, tmp_path)

    lines = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("Exported ") and "page " in r.getMessage()
    ]
    assert any("pixel 1 of 3, page 1 of 40" in line for line in lines)
    assert any("pixel 3 of 3, page 40 of 40" in line for line in lines)
    assert all(" to go" in line for line in lines)


def test_without_last_links_progress_lines_estimate_m(
    sandbox_hook: HookFactory,
    tmp_path: Path,
    without_last_links: None,
    progress_every_page: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox, hook = sandbox_hook(page_size=50)

    export(hook, tmp_path)

    messages = [r.getMessage() for r in caplog.records]
    assert any("pixel 1 of 3, page 1 of ~" in m for m in messages)
    assert any("judged by how far back its first page reached" in m for m in messages if m.startswith("Estimate"))


@pytest.mark.parametrize(
    ("pixel_ids", "shop_id", "resource", "message"),
    [
        (None, None, "events", "Give pixel_id, or shop_id"),
        ([], None, "clicks", "Give pixel_id, or shop_id"),
        ("p", None, "pixels", "not 'pixels'"),
        ("p", None, "orders", "not 'orders'"),
    ],
)
def test_the_estimate_refuses_what_it_cannot_plan_before_any_request(
    sandbox_hook: HookFactory, pixel_ids: Any, shop_id: int | None, resource: str, message: str
) -> None:
    sandbox, hook = sandbox_hook()

    with pytest.raises(PrisjaktConfigError, match=message):
        hook.estimate(pixel_ids, START, END, shop_id=shop_id, resource=resource)

    assert sandbox.requests == []
