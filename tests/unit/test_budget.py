"""RequestBudget: headers in, pacing decisions out, on a fake clock; nothing sleeps."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_prisjakt.api.ratelimit import (
    MAX_UNREADABLE_RESET_PROBES,
    UNREADABLE_RESET_DEFER_SECONDS,
    Action,
    RateLimitStatus,
)
from airflow_provider_prisjakt.client.budget import MAX_RATE_LIMIT_WAITS, InProcessBackend, RequestBudget
from airflow_provider_prisjakt.client.budget_redis import RedisBudgetBackend
from airflow_provider_prisjakt.client.retry import Call, Received
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError, PrisjaktRateLimitError
from airflow_provider_prisjakt.hooks.connection import settings_from_connection

from .budget_simulation import InMemoryCountingBackend

NOW = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def headers(limit: int = 100, remaining: int = 100, reset_ms: int = 60_000, **extra: str) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(reset_ms),
        **extra,
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


def budget(clock: Clock, **kwargs: object) -> RequestBudget:
    return RequestBudget(reset_header="duration", clock=clock, **kwargs)  # type: ignore[arg-type]


# -- observing -------------------------------------------------------------------------------------


def test_a_response_s_headers_become_the_status_at_the_clock_s_time(clock: Clock) -> None:
    spent = budget(clock)

    spent.observe(headers(limit=10, remaining=3, reset_ms=5_000))

    assert spent.status == RateLimitStatus(10, 3, NOW + timedelta(seconds=5), NOW)


def test_a_response_without_rate_limit_headers_keeps_the_last_status(clock: Clock) -> None:
    known = budget(clock)
    known.observe(headers(remaining=7))

    assert known.observe({"Content-Type": "application/json"}) is None
    assert known.status is not None and known.status.remaining == 7


# -- before a request ------------------------------------------------------------------------------


def test_without_a_status_or_with_budget_to_spare_requests_go_at_once(clock: Clock) -> None:
    fresh = budget(clock)
    assert fresh.before_request().action is Action.GO
    fresh.observe(headers(remaining=90))
    decision = fresh.before_request()
    assert (decision.action, decision.delay) == (Action.GO, 0.0)


def test_a_low_budget_is_spread_over_the_time_to_the_reset(clock: Clock) -> None:
    low = budget(clock)
    low.observe(headers(limit=100, remaining=4, reset_ms=50_000))

    decision = low.before_request()

    assert decision.action is Action.GO
    assert decision.delay == pytest.approx(50 / 5)


def test_a_pacing_delay_never_exceeds_max_inline_wait(clock: Clock) -> None:
    low = budget(clock, max_inline_wait=2.0)
    low.observe(headers(limit=100, remaining=1, reset_ms=600_000))

    assert low.before_request().delay == 2.0


def test_a_spent_budget_with_a_near_reset_waits_for_it_and_then_forgets_the_old_window(clock: Clock) -> None:
    spent = budget(clock, max_inline_wait=10.0)
    spent.observe(headers(remaining=0, reset_ms=3_000))

    decision = spent.before_request()

    assert decision.action is Action.WAIT
    assert 3.0 <= decision.delay <= 3.5
    assert spent.status is None
    assert spent.before_request().action is Action.GO


def test_a_spent_budget_with_a_far_reset_defers_and_keeps_the_status(clock: Clock) -> None:
    spent = budget(clock, max_inline_wait=10.0)
    spent.observe(headers(remaining=0, reset_ms=600_000))

    decision = spent.before_request()

    assert decision.action is Action.DEFER
    assert decision.resume_at == NOW + timedelta(seconds=600)
    assert spent.status is not None


def test_the_reserve_is_left_unused(clock: Clock) -> None:
    reserved = budget(clock, reserve=5, max_inline_wait=0.0)
    reserved.observe(headers(remaining=5, reset_ms=60_000))

    assert reserved.before_request().action is Action.DEFER


def test_once_the_reset_has_passed_the_old_window_no_longer_holds_requests_back(clock: Clock) -> None:
    spent = budget(clock, max_inline_wait=0.0)
    spent.observe(headers(remaining=0, reset_ms=2_000))

    clock.advance(3)

    assert spent.before_request().action is Action.GO


# -- after a 429 -----------------------------------------------------------------------------------


def test_a_429_with_the_budget_spent_waits_for_the_reset_and_forgets_the_window(clock: Clock) -> None:
    limited = budget(clock)
    response = headers(remaining=0, reset_ms=2_000)
    limited.observe(response)

    decision = limited.after_429(response)

    assert decision.action is Action.WAIT
    assert 2.0 <= decision.delay <= 2.5
    assert limited.status is None


def test_a_429_with_budget_left_is_a_short_limit_waiting_only_for_retry_after(clock: Clock) -> None:
    limited = budget(clock)
    response = headers(remaining=4_000, reset_ms=3_000_000, **{"Retry-After": "3"})
    limited.observe(response)

    decision = limited.after_429(response)

    assert (decision.action, decision.delay) == (Action.WAIT, 3.0)


def test_a_429_with_a_far_reset_defers(clock: Clock) -> None:
    limited = budget(clock, max_inline_wait=5.0)
    response = headers(remaining=0, reset_ms=600_000)
    limited.observe(response)

    decision = limited.after_429(response)

    assert decision.action is Action.DEFER
    assert limited.status is not None  # kept, for the error's limit and remaining


def test_too_many_429s_for_one_request_stop_waiting_inline(clock: Clock) -> None:
    limited = budget(clock)
    response = headers(remaining=0, reset_ms=1_000)

    assert limited.after_429(response, waits=MAX_RATE_LIMIT_WAITS).action is Action.WAIT
    assert limited.after_429(response, waits=MAX_RATE_LIMIT_WAITS + 1).action is Action.DEFER


def test_429s_without_a_readable_reset_back_off_and_then_defer(clock: Clock) -> None:
    limited = budget(clock, max_inline_wait=60.0)
    response = {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "soon"}
    probes, waits = 0, []

    for _ in range(MAX_UNREADABLE_RESET_PROBES):
        decision = limited.after_429(response, probes=probes)
        probes = decision.probes
        waits.append(decision.delay)

    assert decision.action is Action.DEFER
    assert decision.hint and "reset_header" in decision.hint
    assert waits[:-1] == sorted(waits[:-1]) and len(set(waits[:-1])) > 1  # growing, bounded


UNREADABLE = {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "soon"}


def test_429s_without_a_readable_reset_wait_one_two_four_eight_seconds_then_defer_a_minute(clock: Clock) -> None:
    limited = budget(clock, max_inline_wait=60.0)
    probes, decisions = 0, []

    for _ in range(MAX_UNREADABLE_RESET_PROBES):
        decisions.append(limited.after_429(UNREADABLE, probes=probes))
        probes = decisions[-1].probes

    assert [d.delay for d in decisions[:-1]] == [1.0, 2.0, 4.0, 8.0]
    assert all(d.action is Action.WAIT for d in decisions[:-1])
    assert decisions[-1].action is Action.DEFER
    assert decisions[-1].resume_at == NOW + timedelta(seconds=UNREADABLE_RESET_DEFER_SECONDS)


@pytest.mark.parametrize("max_inline_wait", [0.0, 0.5])
def test_a_worker_that_may_not_wait_between_probes_defers_at_once_on_an_unreadable_reset(
    clock: Clock, max_inline_wait: float
) -> None:
    # A sensor's hook may not wait inline at all: probing would mean five requests back to back.
    limited = budget(clock, max_inline_wait=max_inline_wait)

    decision = limited.after_429(UNREADABLE)

    assert decision.action is Action.DEFER
    assert decision.resume_at == NOW + timedelta(seconds=UNREADABLE_RESET_DEFER_SECONDS)
    assert decision.probes == MAX_UNREADABLE_RESET_PROBES
    assert decision.hint and "reset_header" in decision.hint


def test_a_short_retry_after_on_an_unreadable_reset_is_waited_by_a_worker_that_may_wait(clock: Clock) -> None:
    limited = budget(clock, max_inline_wait=60.0)
    clock.advance(-0.6)  # an HTTP-date Retry-After names a whole second: here 0.6 s ahead

    decision = limited.after_429({**UNREADABLE, "Retry-After": "Mon, 05 Oct 2026 12:00:00 GMT"})

    assert (decision.action, decision.delay) == (Action.WAIT, pytest.approx(0.6))


def test_a_reset_already_past_with_nothing_left_is_probed_like_an_unreadable_one(clock: Clock) -> None:
    past = str(int((NOW - timedelta(seconds=1)).timestamp() * 1000))
    limited = RequestBudget(reset_header="epoch", clock=clock)

    decision = limited.after_429({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": past})

    assert (decision.action, decision.delay, decision.probes) == (Action.WAIT, 1.0, 1)


# -- the pacing half of a request's cycle -----------------------------------------------------------


def call() -> Call:
    return Call("GET", "https://api.pj.nu/click-conversion/pixels/p1/events")


def test_a_spent_budget_far_from_its_reset_refuses_the_call_naming_its_path(clock: Clock) -> None:
    spent = budget(clock, max_inline_wait=5.0)
    spent.observe(headers(limit=100, remaining=0, reset_ms=600_000))

    with pytest.raises(PrisjaktRateLimitError) as raised:
        spent.check_before_sending(call())

    error = raised.value
    assert (error.limit, error.remaining, error.reset_at) == (100, 0, NOW + timedelta(seconds=600))
    assert error.path == "/click-conversion/pixels/p1/events"


def test_a_near_reset_is_a_wait_before_sending(clock: Clock) -> None:
    spent = budget(clock)
    spent.observe(headers(remaining=0, reset_ms=2_000))

    assert spent.check_before_sending(call()).delay == pytest.approx(2.25)


def test_each_429_of_a_call_is_counted_on_it_and_its_probes_carried_to_the_next(clock: Clock) -> None:
    limited, request = budget(clock), call()
    refused = Received(429, UNREADABLE, b"", "Too Many Requests")

    delays = [limited.recover_from_429(request, refused).delay for _ in range(MAX_UNREADABLE_RESET_PROBES - 1)]
    with pytest.raises(PrisjaktRateLimitError) as raised:
        limited.recover_from_429(request, refused)

    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert (request.rate_limit_waits, request.rate_limit_probes) == (5, MAX_UNREADABLE_RESET_PROBES)
    assert "no readable reset" in str(raised.value) and "reset_header" in str(raised.value)
    assert raised.value.reset_at == NOW + timedelta(seconds=UNREADABLE_RESET_DEFER_SECONDS)


def test_a_429_with_budget_left_is_waited_out_whatever_the_reset(clock: Clock) -> None:
    limited = budget(clock, max_inline_wait=10.0)
    burst = Received(429, headers(remaining=4_000, reset_ms=3_000_000, **{"Retry-After": "2"}), b"")

    assert limited.recover_from_429(call(), burst).delay == 2.0


# -- where the status lives ------------------------------------------------------------------------


class SharedBackend:
    """Stands for a store shared by several processes: here, one object two budgets point at."""

    def __init__(self) -> None:
        self.stored: list[RateLimitStatus | None] = []

    def load(self) -> RateLimitStatus | None:
        return self.stored[-1] if self.stored else None

    def store(self, status: RateLimitStatus | None) -> None:
        self.stored.append(status)


def test_budgets_on_one_backend_pace_on_each_other_s_responses(clock: Clock) -> None:
    shared = SharedBackend()
    first, second = budget(clock, backend=shared, max_inline_wait=0.0), budget(clock, backend=shared)

    first.observe(headers(remaining=0, reset_ms=60_000))

    assert second.status is not None and second.status.remaining == 0
    assert first.before_request().action is Action.DEFER


def test_the_default_backend_is_this_process_s_memory(clock: Clock) -> None:
    assert isinstance(budget(clock).backend, InProcessBackend)


def test_from_settings_takes_the_connection_s_pacing_extras(caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_from_connection(
        host=None,
        schema=None,
        port=None,
        login="id",
        password="secret-for-the-budget-test",
        extra={"rate_limit_reserve": 7, "max_inline_wait": 12, "reset_header": "epoch"},
    )

    built = RequestBudget.from_settings(settings)

    assert (built.reserve, built.max_inline_wait, built.reset_header) == (7, 12.0, "epoch")
    assert not caplog.records


def test_a_budget_backend_url_opens_a_shared_store_without_saying_or_dialling_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend_url = "redis://:backend-password@127.0.0.1:1/0"  # nothing listens there: nothing may dial it yet
    settings = settings_from_connection(
        host=None, schema=None, port=None, login="id", password="pw", extra={"budget_backend": backend_url}
    )

    with caplog.at_level(logging.DEBUG):
        built = RequestBudget.from_settings(settings)

    assert isinstance(built.backend, RedisBudgetBackend) and built.shared
    assert "backend-password" not in caplog.text + repr(built.backend)


def test_a_budget_backend_without_the_redis_extra_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "limits.storage", None)  # what an environment without ``limits`` imports
    settings = settings_from_connection(
        host=None, schema=None, port=None, login="id", password="pw", extra={"budget_backend": "redis://:pw@h:6379"}
    )

    with pytest.raises(PrisjaktConfigError, match=r"airflow-provider-prisjakt\[redis\]") as raised:
        RequestBudget.from_settings(settings)

    assert "pw@h" not in str(raised.value)


# -- other tasks on the same client id --------------------------------------------------------------


def spend_beside(budget: RequestBudget, others: int, *, remaining: int = 100, down_to: int) -> None:
    """Send requests through ``budget`` while ``others`` other tasks send one each per own request."""
    budget.observe(headers(remaining=remaining, reset_ms=10_000))
    while remaining > down_to:
        assert budget.before_request().action is Action.GO
        remaining -= 1 + others
        budget.observe(headers(remaining=remaining, reset_ms=10_000))


def test_a_task_beside_three_others_stops_early_enough_for_their_requests_in_flight(clock: Clock) -> None:
    crowded, alone = budget(clock, max_inline_wait=30), budget(clock, max_inline_wait=30)
    spend_beside(crowded, others=3, down_to=4)
    spend_beside(alone, others=0, down_to=4)

    assert crowded.spend.spenders == pytest.approx(4.0, abs=0.35)
    assert crowded.before_request().action is Action.WAIT  # three requests of the others may be under way
    assert alone.before_request().action is Action.GO


def test_a_task_beside_others_paces_for_all_of_them(clock: Clock) -> None:
    crowded, alone = budget(clock, max_inline_wait=30), budget(clock, max_inline_wait=30)
    spend_beside(crowded, others=1, down_to=8)
    spend_beside(alone, others=0, down_to=8)

    paced, alone_paced = crowded.before_request(), alone.before_request()

    assert crowded.spend.spenders == pytest.approx(2.0)
    assert paced.delay == pytest.approx(2 * 10 / (8 - 2 + 1))  # two tasks share 6 usable requests
    assert alone_paced.delay == pytest.approx(10 / (8 + 1))


def test_the_user_s_reserve_is_kept_besides_the_one_for_requests_in_flight(clock: Clock) -> None:
    crowded = budget(clock, reserve=5, max_inline_wait=30)
    spend_beside(crowded, others=3, down_to=9)

    assert crowded.before_request().action is Action.WAIT  # 9 left: 5 reserved, 4 for the others in flight


# -- a shared store that counts every task's requests -----------------------------------------------


def test_tasks_on_a_counting_store_claim_each_request_and_wait_together_when_the_window_is_claimed(
    clock: Clock,
) -> None:
    shared = InMemoryCountingBackend()
    first, second = budget(clock, backend=shared), budget(clock, backend=shared)
    first.observe(headers(limit=3, remaining=2, reset_ms=10_000))

    assert [b.before_request().action for b in (first, second)] == [Action.GO, Action.GO]
    waited = first.before_request()

    assert shared.claimed[0] == 3
    assert (waited.action, waited.delay) == (Action.WAIT, pytest.approx(10.25))
    assert shared.claimed[shared.window.next_tag if shared.window else -1] == 1  # counted in the next window


def test_a_counting_store_keeps_nothing_back_for_requests_in_flight(clock: Clock) -> None:
    shared = InMemoryCountingBackend()
    task = budget(clock, backend=shared, max_inline_wait=30)
    spend_beside(task, others=3, down_to=4)  # the others' requests show in the server's word

    assert task.spend.spenders > 3
    assert task.before_request().action is Action.GO  # their requests are claimed: none can be in flight unseen


def test_an_unreachable_store_is_said_once_and_the_task_paces_on_its_own_responses(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    shared = InMemoryCountingBackend()
    task = budget(clock, backend=shared, max_inline_wait=30)
    task.observe(headers(remaining=0, reset_ms=5_000))
    shared.down = True

    with caplog.at_level(logging.INFO):
        decisions = [task.before_request() for _ in range(3)]
        shared.down = False
        task.before_request()

    assert [d.action for d in decisions] == [Action.WAIT, Action.GO, Action.GO]  # its own view: spent, then forgotten
    assert caplog.text.count("did not answer (ConnectionError)") == 1
    assert "answers again" in caplog.text
