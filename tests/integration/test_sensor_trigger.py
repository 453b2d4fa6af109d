"""PrisjaktRateLimitSensor and PrisjaktRateLimitTrigger against the sandbox, with short rate-limit windows."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)

from airflow_provider_prisjakt.api.ratelimit import RateLimitStatus
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError
from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktAsyncHook, PrisjaktHook
from airflow_provider_prisjakt.sensors.prisjakt import PrisjaktRateLimitSensor
from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig
from airflow_provider_prisjakt.triggers import prisjakt as trigger_module
from airflow_provider_prisjakt.triggers.prisjakt import PrisjaktRateLimitTrigger
from tests.conftest import register_secret

CONN_ID = "prisjakt_budget"
# Time between a header being parsed and the assertion on it, and between the sandbox's clock and ours.
SLACK = 0.5
# Epoch-style resets are rounded up to the next millisecond by the sandbox.
ROUNDING = 0.01

Sandboxes = Callable[..., PrisjaktSandbox]


@pytest.fixture
def sandbox_on_conn(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandboxes]:
    """``factory(extra={...}, **SandboxConfig fields)``: a started sandbox behind connection ``CONN_ID``."""
    started: list[PrisjaktSandbox] = []

    def factory(extra: dict[str, Any] | None = None, **config: Any) -> PrisjaktSandbox:
        sandbox = PrisjaktSandbox(SandboxConfig(**config)).start()
        started.append(sandbox)
        register_secret(sandbox.client_secret)
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", sandbox.connection_json(**(extra or {})))
        return sandbox

    yield factory
    for sandbox in started:
        sandbox.stop()


def spend(n: int) -> datetime | None:
    """Spend ``n`` requests of the client's budget (ignoring 429s); return the reset the last one reported."""
    hook = PrisjaktHook(CONN_ID, max_inline_wait=0, max_retries=1)
    for _ in range(n):
        with contextlib.suppress(AirflowException):
            hook.get_client()
    status = hook.rate_limit
    hook.close()
    return status.reset_at if status else None


def import_string(classpath: str) -> Any:
    """Load a class from its dotted path, as the triggerer does with a serialized trigger."""
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)


def sensor(**kwargs: Any) -> PrisjaktRateLimitSensor:
    kwargs.setdefault("max_inline_wait", 0)  # these tests use windows of seconds and want the deferral
    return PrisjaktRateLimitSensor(task_id="wait_for_budget", prisjakt_conn_id=CONN_ID, **kwargs)


def statuses(sandbox: PrisjaktSandbox) -> list[int]:
    return [r.status for r in sandbox.requests]


class SleepSpy:
    """Stands in for the trigger module's ``asyncio``: records each sleep, then really sleeps."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(seconds)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> SleepSpy:
    spy = SleepSpy()
    monkeypatch.setattr(trigger_module, "asyncio", SimpleNamespace(sleep=spy.sleep))
    return spy


async def first_event(trigger: PrisjaktRateLimitTrigger) -> dict[str, Any]:
    event = await trigger.run().asend(None)
    return event.payload


# -- poke ------------------------------------------------------------------------------------------


def test_poke_succeeds_when_the_budget_holds_min_remaining(sandbox_on_conn: Sandboxes) -> None:
    sandbox = sandbox_on_conn(rate_limit=10, rate_window=30)

    assert sensor(min_remaining=5).poke({}) is True
    assert statuses(sandbox) == [200]


def test_poke_fails_below_min_remaining_and_spends_nothing_before_the_reset(sandbox_on_conn: Sandboxes) -> None:
    sandbox = sandbox_on_conn(rate_limit=10, rate_window=30)
    spend(5)
    task = sensor(min_remaining=8)

    assert task.poke({}) is False  # 4 left after the poke's own request
    assert task.poke({}) is False
    assert task.poke({}) is False

    assert statuses(sandbox) == [200] * 6  # 5 spent + the first poke; later pokes waited for the reset
    assert task._not_before is not None
    assert 29 - SLACK < (task._not_before - datetime.now(UTC)).total_seconds() <= 30 + ROUNDING


def test_poke_on_a_spent_budget_reads_the_429_as_zero_left_without_waiting(sandbox_on_conn: Sandboxes) -> None:
    sandbox = sandbox_on_conn(rate_limit=3, rate_window=30)
    spend(3)
    task = sensor(min_remaining=1)

    started = time.monotonic()
    assert task.poke({}) is False

    assert time.monotonic() - started < 2  # no inline sleep until the reset
    assert statuses(sandbox) == [200, 200, 200, 429]  # exactly one request per poke, no retry
    assert task._not_before is not None
    assert (task._not_before - datetime.now(UTC)).total_seconds() > 25


@pytest.mark.parametrize("reset_style", ["garbage", "past"])
def test_poke_on_an_unreadable_reset_spends_one_request_and_comes_back_in_a_minute(
    sandbox_on_conn: Sandboxes, reset_style: str
) -> None:
    sandbox = sandbox_on_conn(rate_limit=3, rate_window=600, reset_style=reset_style)
    spend(3)
    task = sensor(min_remaining=1)

    started = time.monotonic()
    assert task.poke({}) is False

    # A hook that may not wait inline does not probe: five requests back to back would be a storm.
    assert statuses(sandbox) == [200, 200, 200, 429]
    assert time.monotonic() - started < 2
    assert task._not_before is not None
    assert 55 < (task._not_before - datetime.now(UTC)).total_seconds() <= 60


def test_a_poke_meeting_a_503_that_asks_for_an_hour_fails_softly_and_the_next_poke_asks_again(
    sandbox_on_conn: Sandboxes,
) -> None:
    sandbox = sandbox_on_conn(rate_limit=10, rate_window=30)
    sandbox.fail_next("503", retry_after_s=3600)
    task = sensor(min_remaining=1)

    started = time.monotonic()
    assert task.poke({}) is False
    assert time.monotonic() - started < 2  # the worker is not held for the hour
    assert task.poke({}) is True

    assert statuses(sandbox) == [503, 200]


def test_a_deferrable_sensor_meeting_a_503_lets_the_triggerer_ask_again_after_poke_interval(
    sandbox_on_conn: Sandboxes,
) -> None:
    sandbox = sandbox_on_conn(rate_limit=10, rate_window=30)
    sandbox.fail_next("503", retry_after_s=3600)

    with pytest.raises(TaskDeferred) as deferred:
        sensor(min_remaining=1, deferrable=True, poke_interval=30, timeout=600).execute({})

    assert statuses(sandbox) == [503]
    reset_at = deferred.value.trigger.reset_at
    assert reset_at is not None
    assert 29 - SLACK < (datetime.fromisoformat(reset_at) - datetime.now(UTC)).total_seconds() <= 30


def test_poke_succeeds_when_the_api_reports_no_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(PrisjaktHook, "get_client", lambda self: calls.append("client") or {})
    # The sensor reads the connection first: whether a shared budget holds the window.
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "prisjakt", "login": "id", "password": "pw"})
    )

    assert sensor(min_remaining=10_000).poke({}) is True
    assert calls == ["client"]


def test_min_remaining_at_or_above_the_limit_is_refused_with_the_limit(sandbox_on_conn: Sandboxes) -> None:
    sandbox_on_conn(rate_limit=10, rate_window=30)

    with pytest.raises(PrisjaktConfigError, match="limit is 10 requests per window; use at most 9"):
        sensor(min_remaining=10).poke({})


def test_poke_mode_sleeps_until_the_reset_then_succeeds_with_one_request_per_poke(
    sandbox_on_conn: Sandboxes,
) -> None:
    sandbox = sandbox_on_conn(rate_limit=3, rate_window=1.5)
    spend(3)
    task = sensor(min_remaining=1, poke_interval=0.05, timeout=30)

    task.execute({})

    # One poke on the spent window (429), then one after the reset; none in between.
    assert statuses(sandbox) == [200, 200, 200, 429, 200]


def test_poke_mode_times_out_at_the_timeout_not_at_the_far_reset(sandbox_on_conn: Sandboxes) -> None:
    sandbox = sandbox_on_conn(rate_limit=3, rate_window=60)
    spend(3)

    started = time.monotonic()
    with pytest.raises(AirflowSensorTimeout):
        sensor(min_remaining=1, poke_interval=0.05, timeout=1).execute({})
    assert time.monotonic() - started < 5
    assert statuses(sandbox).count(429) == 1


def test_poke_mode_soft_fail_skips_on_timeout(sandbox_on_conn: Sandboxes) -> None:
    sandbox_on_conn(rate_limit=3, rate_window=60)
    spend(3)

    with pytest.raises(AirflowSkipException):
        sensor(min_remaining=1, poke_interval=0.05, timeout=0.5, soft_fail=True).execute({})


def test_reschedule_mode_comes_back_after_the_reset(sandbox_on_conn: Sandboxes, airflow_db: Any) -> None:
    from airflow.exceptions import AirflowRescheduleException

    sandbox_on_conn(rate_limit=3, rate_window=60)
    reset_at = spend(3)
    assert reset_at is not None
    # Airflow 3 asks the task instance for its first reschedule; Airflow 2 looks it up by these ids.
    ti = SimpleNamespace(
        get_first_reschedule_date=lambda context: None,
        max_tries=0,
        dag_id="prisjakt_sensor_test",
        task_id="wait_for_budget",
        run_id="manual",
        map_index=-1,
    )

    with pytest.raises(AirflowRescheduleException) as raised:
        sensor(min_remaining=1, mode="reschedule", poke_interval=5, timeout=600).execute({"ti": ti})

    assert raised.value.reschedule_date >= reset_at


# -- deferral --------------------------------------------------------------------------------------


def test_deferrable_sensor_defers_to_the_trigger_until_the_reported_reset(sandbox_on_conn: Sandboxes) -> None:
    sandbox = sandbox_on_conn(rate_limit=5, rate_window=30)
    spend(2)

    with pytest.raises(TaskDeferred) as deferred:
        sensor(min_remaining=4, deferrable=True, timeout=600).execute({})

    trigger = deferred.value.trigger
    assert isinstance(trigger, PrisjaktRateLimitTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(seconds=600)
    assert trigger.prisjakt_conn_id == CONN_ID
    assert trigger.min_remaining == 4
    assert trigger.reset_at is not None
    assert 29 - SLACK < (datetime.fromisoformat(trigger.reset_at) - datetime.now(UTC)).total_seconds() <= 30 + ROUNDING
    assert statuses(sandbox) == [200, 200, 200]  # the deferral decision cost one request


def test_deferrable_sensor_on_a_spent_budget_defers_instead_of_failing(sandbox_on_conn: Sandboxes) -> None:
    sandbox_on_conn(rate_limit=3, rate_window=30)
    spend(3)

    with pytest.raises(TaskDeferred) as deferred:
        sensor(min_remaining=1, deferrable=True).execute({})

    assert deferred.value.trigger.reset_at is not None


def test_deferrable_sensor_with_enough_budget_succeeds_without_deferring(sandbox_on_conn: Sandboxes) -> None:
    sandbox = sandbox_on_conn(rate_limit=10, rate_window=30)

    assert sensor(min_remaining=5, deferrable=True).execute({}) is None
    assert statuses(sandbox) == [200]


def test_execute_complete_accepts_a_success_event() -> None:
    event = {"status": "success", "rate_limit": {"remaining": 9}, "resume": None}

    assert sensor(min_remaining=5, deferrable=True).execute_complete({}, event=event) is None


@pytest.mark.parametrize("event", [{"status": "error", "message": "boom"}, None], ids=["error", "no-event"])
def test_execute_complete_raises_on_an_error_event(event: dict[str, Any] | None) -> None:
    with pytest.raises(AirflowException, match="Waiting for the Prisjakt rate limit failed"):
        sensor(deferrable=True).resume_execution("execute_complete", {"event": event}, {})


def test_execute_complete_skips_on_an_error_event_with_soft_fail() -> None:
    with pytest.raises(AirflowSkipException):
        sensor(deferrable=True, soft_fail=True).resume_execution(
            "execute_complete", {"event": {"status": "error", "message": "boom"}}, {}
        )


@pytest.mark.airflow3_only
@pytest.mark.parametrize(("soft_fail", "expected"), [(False, AirflowSensorTimeout), (True, AirflowSkipException)])
def test_a_deferral_timeout_fails_or_skips_the_sensor(soft_fail: bool, expected: type[Exception]) -> None:
    from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason

    task = sensor(deferrable=True, soft_fail=soft_fail)

    with pytest.raises(expected):
        task.resume_execution(TRIGGER_FAIL_REPR, {"error": TriggerFailureReason.TRIGGER_TIMEOUT}, {})


# -- trigger ---------------------------------------------------------------------------------------


def test_trigger_serialize_round_trips_through_json() -> None:
    trigger = PrisjaktRateLimitTrigger(
        prisjakt_conn_id=CONN_ID,
        reset_at="2026-10-05T12:00:00+00:00",
        min_remaining=7,
        poll_interval=5.0,
        jitter_seconds=0.5,
        resume={"start": "2026-10-01T00:00:00+00:00", "checkpoint": {"rows": 3, "parts": [{"name": "part-00000"}]}},
    )

    classpath, kwargs = trigger.serialize()
    rebuilt = import_string(classpath)(**json.loads(json.dumps(kwargs)))

    assert classpath == "airflow_provider_prisjakt.triggers.prisjakt.PrisjaktRateLimitTrigger"
    assert rebuilt.serialize() == (classpath, kwargs)


@pytest.mark.parametrize("reset_style", ["duration", "epoch"])
async def test_trigger_sleeps_until_the_reset_it_reads_from_the_header(
    sandbox_on_conn: Sandboxes, sleeps: SleepSpy, reset_style: str
) -> None:
    sandbox = sandbox_on_conn(rate_limit=3, rate_window=1.5, reset_style=reset_style)
    spend(3)
    trigger = PrisjaktRateLimitTrigger(prisjakt_conn_id=CONN_ID, reset_at=None, min_remaining=1, jitter_seconds=0)

    payload = await first_event(trigger)

    assert payload["status"] == "success"
    assert payload["rate_limit"]["remaining"] == 2
    assert payload["rate_limit"]["limit"] == 3
    # A check at once finds the window spent (429); the next sleep lasts until the reset it reported.
    assert sleeps.waits[0] == 0
    assert 1.5 - SLACK < sleeps.waits[1] <= 1.5 + ROUNDING
    assert statuses(sandbox) == [200, 200, 200, 429, 200]


@pytest.mark.parametrize("reset_style", ["duration", "epoch"])
async def test_deferred_sensor_trigger_fires_after_the_reset_with_the_new_budget(
    sandbox_on_conn: Sandboxes, sleeps: SleepSpy, reset_style: str
) -> None:
    sandbox = sandbox_on_conn(rate_limit=5, rate_window=1.5, reset_style=reset_style)
    spend(3)
    with pytest.raises(TaskDeferred) as deferred:
        sensor(min_remaining=3, deferrable=True).execute({})
    classpath, kwargs = deferred.value.trigger.serialize()
    trigger = import_string(classpath)(**{**kwargs, "jitter_seconds": 0})

    started = time.monotonic()
    payload = await first_event(trigger)

    assert payload["status"] == "success"
    assert payload["rate_limit"]["remaining"] == 4
    assert len(sleeps.waits) == 1
    assert 1.5 - SLACK < sleeps.waits[0] <= 1.5 + ROUNDING
    assert time.monotonic() - started < 1.5 + 2 * SLACK
    assert statuses(sandbox) == [200] * 5  # 3 spent, the sensor's check, one check after the reset


async def test_trigger_adds_at_most_the_jitter_to_the_wait(sandbox_on_conn: Sandboxes, sleeps: SleepSpy) -> None:
    sandbox_on_conn(rate_limit=5, rate_window=30)
    reset_at = datetime.now(UTC) + timedelta(seconds=0.3)
    trigger = PrisjaktRateLimitTrigger(
        prisjakt_conn_id=CONN_ID, reset_at=reset_at.isoformat(), min_remaining=1, jitter_seconds=0.4
    )

    payload = await first_event(trigger)

    assert payload["status"] == "success"
    assert 0.3 - SLACK < sleeps.waits[0] <= 0.3 + 0.4


async def test_trigger_never_blocks_the_event_loop(sandbox_on_conn: Sandboxes) -> None:
    import aiohttp  # noqa: F401  # the one-off first import is not what this test measures

    sandbox_on_conn(rate_limit=3, rate_window=1.0)
    spend(3)
    trigger = PrisjaktRateLimitTrigger(prisjakt_conn_id=CONN_ID, min_remaining=1, jitter_seconds=0)
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    try:
        payload = await first_event(trigger)
    finally:
        ticking.cancel()

    assert payload["status"] == "success"
    assert len(gaps) > 20
    assert max(gaps) < 0.5  # a blocking wait would stall the loop for the whole second to the reset


async def test_trigger_echoes_the_resume_state_in_its_event(sandbox_on_conn: Sandboxes) -> None:
    sandbox_on_conn(rate_limit=5, rate_window=30)
    resume = {"checkpoint": {"rows": 300, "cursor": {"page_url": "http://x/next"}}}
    trigger = PrisjaktRateLimitTrigger(prisjakt_conn_id=CONN_ID, min_remaining=1, jitter_seconds=0, resume=resume)

    payload = await first_event(trigger)

    assert payload["status"] == "success"
    assert payload["resume"] == resume


@pytest.mark.parametrize("kind", ["503", "drop", "html502"])
async def test_trigger_retries_a_transient_fault(sandbox_on_conn: Sandboxes, kind: str) -> None:
    sandbox = sandbox_on_conn(rate_limit=5, rate_window=30)
    sandbox.fail_next(kind)
    trigger = PrisjaktRateLimitTrigger(prisjakt_conn_id=CONN_ID, min_remaining=1, jitter_seconds=0)

    payload = await first_event(trigger)

    assert payload["status"] == "success"
    assert [r.fault for r in sandbox.requests] == [kind, None]


async def test_trigger_reports_an_error_event_for_bad_credentials(
    sandbox_on_conn: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = sandbox_on_conn(rate_limit=5, rate_window=30)
    conn = json.loads(sandbox.connection_json())
    conn["password"] = register_secret("not-the-secret-at-all")
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    trigger = PrisjaktRateLimitTrigger(prisjakt_conn_id=CONN_ID, min_remaining=1, jitter_seconds=0, resume={"a": 1})

    payload = await first_event(trigger)

    assert payload["status"] == "error"
    assert "401" in payload["message"]
    assert payload["resume"] == {"a": 1}
    assert len(sandbox.requests) == 1  # an auth failure is never retried


@pytest.mark.parametrize(
    ("reset_in", "expected_wait"),
    [(-5.0, trigger_module.MIN_RECHECK_SECONDS), (None, 7.0)],
    ids=["reset-already-passed", "no-reset-reported"],
)
async def test_trigger_rechecks_soon_after_a_passed_reset_and_polls_without_one(
    monkeypatch: pytest.MonkeyPatch, reset_in: float | None, expected_wait: float
) -> None:
    now = datetime.now(UTC)
    answers = [
        RateLimitStatus(3, 0, None if reset_in is None else now + timedelta(seconds=reset_in), now),
        RateLimitStatus(3, 2, now + timedelta(seconds=30), now),
    ]

    async def budget(self: PrisjaktAsyncHook) -> RateLimitStatus:
        return answers.pop(0)

    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(PrisjaktAsyncHook, "get_rate_limit_status", budget)
    monkeypatch.setattr(trigger_module, "asyncio", SimpleNamespace(sleep=no_sleep))
    trigger = PrisjaktRateLimitTrigger(prisjakt_conn_id=CONN_ID, poll_interval=7.0, jitter_seconds=0)

    payload = await first_event(trigger)

    assert payload["status"] == "success"
    assert waits[0] == 0
    assert sum(waits[1:]) == pytest.approx(expected_wait, abs=0.05)


async def test_trigger_rechecks_a_reset_in_the_past_after_growing_waits_not_every_second(
    sandbox_on_conn: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = sandbox_on_conn(rate_limit=3, rate_window=600, reset_style="past")
    spend(3)
    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 6:
            sandbox.reset_rate_limit()  # the budget comes back, as it would after the real reset

    monkeypatch.setattr(trigger_module, "asyncio", SimpleNamespace(sleep=no_sleep))
    trigger = PrisjaktRateLimitTrigger(prisjakt_conn_id=CONN_ID, min_remaining=1, jitter_seconds=0, poll_interval=60)

    payload = await first_event(trigger)

    assert payload["status"] == "success"
    assert statuses(sandbox) == [200] * 3 + [429] * 5 + [200]
    assert waits == pytest.approx([0, 1, 2, 4, 8, 16], abs=0.05)


def test_deferrable_sensor_waits_inline_for_a_reset_only_seconds_away(sandbox_on_conn: Sandboxes) -> None:
    sandbox = sandbox_on_conn(rate_limit=4, rate_window=1.5)
    spend(4)
    started = time.monotonic()

    # No TaskDeferred: a deferral of a second or two costs more than it saves.
    sensor(min_remaining=1, deferrable=True, max_inline_wait=5).execute({})

    assert time.monotonic() - started < 5
    assert statuses(sandbox)[-1] == 200
