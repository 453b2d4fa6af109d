"""
Rate-limit variants of the API (issue #12, items 2 and 3) against the sandbox: reset forms, burst 429s, Retry-After.

Waits go through the transport's injectable ``sleep``, so no test sleeps through a backoff; the
one test that needs a window to pass for real uses a window of one second.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred

from airflow_provider_prisjakt.exceptions import PrisjaktNotFoundError, PrisjaktRateLimitError, PrisjaktServerError
from airflow_provider_prisjakt.testing import FaultConfig, PrisjaktSandbox

from .conftest import PERIOD_END, PERIOD_START, HookFactory
from .local_folder import export_operator

if TYPE_CHECKING:
    from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook

START = datetime(2026, 10, 5, tzinfo=UTC)
END = datetime(2026, 10, 12, tzinfo=UTC)


def without_sleeping(hook: PrisjaktHook) -> list[float]:
    """Make the hook's transport record its waits instead of sleeping; return the record."""
    waits: list[float] = []
    hook.transport.sleep = waits.append
    return waits


def statuses(sandbox: PrisjaktSandbox) -> list[int]:
    return [r.status for r in sandbox.requests]


def event_ids(sandbox: PrisjaktSandbox, pixel: str, start: datetime = START, end: datetime = END) -> list[str]:
    return sorted(e["id"] for e in sandbox.expected_events(pixel, start, end))


def seconds_from_now(moment: datetime | str | None) -> float:
    assert moment is not None
    when = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return (when - datetime.now(UTC)).total_seconds()


# -- item 2: the reset in every form, and when it cannot be read -------------------------------------


def test_auto_reads_a_ten_digit_reset_as_epoch_seconds_and_paces_without_a_429(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook(reset_style="epoch_seconds", rate_limit=4, rate_window=1.0, page_size=100)
    pixel = sandbox.pixel_ids(4242)[0]

    events = list(hook.iter_events(pixel, START, END))

    assert sorted(e["id"] for e in events) == event_ids(sandbox, pixel)
    assert len(sandbox.requests) > 4  # more than one window's budget: the hook waited for a reset
    assert 429 not in statuses(sandbox)
    assert hook.rate_limit is not None and -5 < seconds_from_now(hook.rate_limit.reset_at) <= 2


@pytest.mark.parametrize(
    ("reset_style", "extra"),
    [("past", {}), ("garbage", {}), ("epoch_seconds", {"reset_header": "epoch"})],
    ids=["reset-in-the-past", "unreadable-reset", "epoch-seconds-read-as-ms"],
)
def test_an_unusable_reset_backs_off_boundedly_then_fails_naming_reset_header(
    sandbox_hook: HookFactory, reset_style: str, extra: dict[str, Any]
) -> None:
    sandbox, hook = sandbox_hook(extra=extra, reset_style=reset_style, rate_limit=2, rate_window=600)
    waits = without_sleeping(hook)
    hook.get_client()
    hook.get_client()

    with pytest.raises(PrisjaktRateLimitError) as raised:
        hook.get_client()

    assert statuses(sandbox) == [200, 200] + [429] * 5  # a handful into the spent budget, never dozens
    assert waits == [1.0, 2.0, 4.0, 8.0]
    message = str(raised.value)
    assert "no readable reset" in message and "reset_header" in message
    assert 55 < seconds_from_now(raised.value.reset_at) <= 60


def test_a_deferrable_export_meeting_an_unreadable_reset_defers_for_a_minute(
    sandbox_hook: HookFactory, tmp_path: Path
) -> None:
    sandbox, _ = sandbox_hook(reset_style="garbage", rate_limit=3, rate_window=600, page_size=100)
    operator = export_operator(tmp_path, sandbox)
    waits = without_sleeping(operator.hook)

    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({})

    assert statuses(sandbox) == [200] * 3 + [429] * 5
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert 55 < seconds_from_now(deferred.value.trigger.reset_at) <= 60


# -- item 3: a 429 with budget left is a short limit; Retry-After on a 5xx has a cap ----------------


@pytest.mark.parametrize(
    ("retry_after", "headers_missing"),
    [("seconds", 0.0), ("http_date", 0.0), ("none", 0.0), ("seconds", 0.5)],
    ids=["retry-after-seconds", "retry-after-http-date", "no-retry-after", "rate-headers-often-missing"],
)
def test_burst_429s_with_budget_left_wait_a_moment_and_go_on(
    sandbox_hook: HookFactory, retry_after: str, headers_missing: float
) -> None:
    faults = FaultConfig(
        seed=3,
        burst_429_rate=0.2,
        burst_length=1,
        burst_budget="left",
        burst_retry_after=retry_after,
        burst_reset_ms=1500,
    )
    sandbox, hook = sandbox_hook(page_size=50, faults=faults, rate_headers_missing_rate=headers_missing)
    waits = without_sleeping(hook)
    pixel = sandbox.pixel_ids(4242)[0]

    events = list(hook.iter_events(pixel, START, END))

    assert sorted(e["id"] for e in events) == event_ids(sandbox, pixel)
    assert hook.stats.rate_limited == statuses(sandbox).count(429) >= 1
    # Retry-After announces 1.5 s (2 s in whole seconds); without it the backoff's first step is 1 s.
    assert waits and all(0.5 <= wait <= 2.5 for wait in waits)


def test_a_deferrable_export_waits_out_bursts_with_budget_left_instead_of_deferring(
    sandbox_hook: HookFactory, tmp_path: Path
) -> None:
    faults = FaultConfig(seed=5, burst_429_rate=0.3, burst_length=2, burst_budget="left", burst_retry_after="http_date")
    sandbox, _ = sandbox_hook(page_size=100, faults=faults)
    operator = export_operator(tmp_path, sandbox)
    without_sleeping(operator.hook)

    summary = operator.execute({})  # no TaskDeferred

    assert summary["rows"] == len(event_ids(sandbox, sandbox.pixel_ids(4242)[0], PERIOD_START, PERIOD_END))
    assert summary["rate_limited"] == statuses(sandbox).count(429) >= 2
    assert summary["deferrals"] == 0


def test_a_429_without_rate_headers_is_judged_by_its_own_retry_after_not_by_stale_headers(
    sandbox_hook: HookFactory,
) -> None:
    sandbox, hook = sandbox_hook()
    waits = without_sleeping(hook)
    hook.get_client()  # its headers: thousands left, a reset an hour away
    sandbox.configure(rate_headers_missing_rate=1.0)
    sandbox.fail_next("429", retry_after="seconds", reset_ms=2000)

    assert hook.get_client()["id"] == sandbox.client_id

    assert statuses(sandbox) == [200, 429, 200]
    assert waits == [2.0]


def test_a_503_asking_to_retry_after_an_hour_fails_at_once_as_a_retryable_error(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook()
    waits = without_sleeping(hook)
    sandbox.fail_next("503", retry_after_s=3600)

    with pytest.raises(PrisjaktServerError) as raised:
        hook.get_client()

    error = raised.value
    assert not isinstance(error, AirflowFailException) and error.retryable
    assert error.status == 503 and "retry after 3600 s" in str(error) and "max_inline_wait (60 s)" in str(error)
    assert statuses(sandbox) == [503]
    assert waits == []


@pytest.mark.parametrize("form", ["seconds", "http_date"])
def test_a_503_with_a_short_retry_after_is_waited_out(sandbox_hook: HookFactory, form: str) -> None:
    sandbox, hook = sandbox_hook()
    waits = without_sleeping(hook)
    sandbox.fail_next("503", retry_after_s=3, retry_after=form)

    hook.get_client()

    assert statuses(sandbox) == [503, 200]
    assert len(waits) == 1 and 2 <= waits[0] <= 4


def test_an_unknown_pixel_names_the_way_to_list_the_pixels(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook()

    with pytest.raises(PrisjaktNotFoundError) as raised:
        list(hook.iter_events("180cd423-ee56-40ed-b712-2f075ec08d45", START, END))

    assert "get_pixels(shop_id)" in str(raised.value)
    assert statuses(sandbox) == [404]


def test_a_reset_header_extra_for_epoch_seconds_reads_the_reset(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook(extra={"reset_header": "epoch_seconds"}, reset_style="epoch_seconds", rate_window=30)

    hook.get_client()

    assert hook.rate_limit is not None and 28 < seconds_from_now(hook.rate_limit.reset_at) <= 31
    assert timedelta(0) < hook.rate_limit.reset_at - datetime.now(UTC)
