"""Prefetch: one item fetched ahead on a thread while the caller works; a fake source, no network, no sleep."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_prisjakt.api.ratelimit import Action
from airflow_provider_prisjakt.client.budget import RequestBudget
from airflow_provider_prisjakt.client.prefetch import (
    MIN_SERVER_WAIT_SECONDS,
    PREFETCH_THREAD_NAME,
    REMEASURE_EVERY,
    Prefetch,
    sends_at_once,
)

from .budget_simulation import InMemoryCountingBackend

WAIT = 10.0  # seconds an event may take to come; never reached when the code is right


class Source:
    """
    Items 0..n-1, fetched as a reader's pages are: each fetch says when it starts, and may be held.

    :param fail_at: raise :class:`ValueError` when fetching this item.
    :param hold: items whose fetch waits for :meth:`release`.
    """

    def __init__(self, n: int, *, fail_at: int | None = None, hold: frozenset[int] = frozenset()) -> None:
        self.n = n
        self.fail_at = fail_at
        self.hold = hold
        self.started: list[int] = []
        self.fetched_by: dict[int, str] = {}
        self.closed = threading.Event()
        self.finished = threading.Event()
        self._changed = threading.Condition()
        self._released = {item: threading.Event() for item in hold}

    def items(self) -> Iterator[int]:
        try:
            for item in range(self.n):
                with self._changed:
                    self.started.append(item)
                    self._changed.notify_all()
                self.fetched_by[item] = threading.current_thread().name
                if item in self.hold:
                    assert self._released[item].wait(WAIT)
                if item == self.fail_at:
                    raise ValueError(f"item {item} could not be fetched")
                yield item
            self.finished.set()
        finally:
            self.closed.set()

    def wait_started(self, item: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: item in self.started, WAIT)

    def release(self, item: int) -> None:
        self._released[item].set()


def prefetch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == PREFETCH_THREAD_NAME]


def always() -> bool:
    return True


def test_every_item_arrives_in_order_and_all_but_the_first_are_fetched_ahead_on_the_thread() -> None:
    source = Source(5)

    with Prefetch(source.items(), always, min_server_wait=0) as items:
        assert list(items) == [0, 1, 2, 3, 4]

    assert source.fetched_by[0] == threading.current_thread().name
    assert {source.fetched_by[item] for item in range(1, 5)} == {PREFETCH_THREAD_NAME}
    assert prefetch_threads() == []


def test_the_next_item_is_fetched_while_the_caller_holds_this_one_and_never_two_ahead() -> None:
    source = Source(4, hold=frozenset({1}))

    with Prefetch(source.items(), always, min_server_wait=0) as items:
        assert next(items) == 0
        assert source.wait_started(1)  # while the caller still works on item 0
        source.release(1)
        assert next(items) == 1
        assert source.wait_started(2)
        assert source.started == [0, 1, 2]  # item 3 waits for the caller to take item 2
        assert list(items) == [2, 3]


def test_without_a_go_the_next_item_is_fetched_when_asked_for_in_the_caller_s_thread() -> None:
    source = Source(4)
    answers = iter([True, False, True, True])

    with Prefetch(source.items(), lambda: next(answers), min_server_wait=0) as items:
        assert next(items) == 0  # go: item 1 is fetched ahead
        assert next(items) == 1  # no go: item 2 is not
        assert source.started == [0, 1]
        assert list(items) == [2, 3]

    assert source.fetched_by[2] == threading.current_thread().name
    assert source.fetched_by[1] == PREFETCH_THREAD_NAME


def test_items_that_keep_no_server_waiting_are_fetched_in_turn() -> None:
    source = Source(3)

    with Prefetch(source.items(), always) as items:  # the default least wait for the server
        assert list(items) == [0, 1, 2]

    assert set(source.fetched_by.values()) == {threading.current_thread().name}


def slow_items(n: int) -> Iterator[str]:
    """``n`` items, each waiting for a server twice the least wait that pays, with no CPU spent; each names its thread."""
    for _ in range(n):
        threading.Event().wait(MIN_SERVER_WAIT_SECONDS * 2)
        yield threading.current_thread().name


def test_once_two_fetches_in_turn_waited_for_a_server_the_next_are_fetched_ahead() -> None:
    here = threading.current_thread().name

    with Prefetch(slow_items(4), always) as items:
        assert list(items) == [here, here, PREFETCH_THREAD_NAME, PREFETCH_THREAD_NAME]


def items_waiting(waits: list[float]) -> Iterator[str]:
    """One item per entry of ``waits``, each after waiting that long with no CPU spent; each names its thread."""
    for wait in waits:
        if wait:
            threading.Event().wait(wait)
        yield threading.current_thread().name


def test_one_fetch_that_waited_alone_such_as_a_retry_s_backoff_turns_no_fetching_ahead_on() -> None:
    slow = MIN_SERVER_WAIT_SECONDS * 4
    here = threading.current_thread().name

    with Prefetch(items_waiting([slow, 0, slow, 0, 0]), always) as items:
        assert list(items) == [here] * 5


def test_while_fetching_ahead_one_item_in_so_many_is_fetched_in_the_caller_s_thread_to_measure_again() -> None:
    here = threading.current_thread().name

    with Prefetch(slow_items(2 * REMEASURE_EVERY + 2), always) as items:
        threads = list(items)

    assert [n for n, thread in enumerate(threads) if thread == here] == [
        0,
        1,
        REMEASURE_EVERY + 1,
        2 * REMEASURE_EVERY + 1,
    ]


def test_without_ahead_when_no_thread_is_started() -> None:
    source = Source(3)

    with Prefetch(source.items()) as items:
        assert list(items) == [0, 1, 2]

    assert set(source.fetched_by.values()) == {threading.current_thread().name}


def test_an_error_fetching_ahead_is_raised_as_it_was_when_its_item_is_asked_for() -> None:
    source = Source(5, fail_at=2)

    with Prefetch(source.items(), always, min_server_wait=0) as items:
        assert next(items) == 0
        assert next(items) == 1  # the fetch of item 2 fails meanwhile; item 1 is the caller's all the same
        assert source.wait_started(2)
        with pytest.raises(ValueError, match="item 2 could not be fetched"):
            next(items)
        assert list(items) == []

    assert source.started == [0, 1, 2]
    assert prefetch_threads() == []


def test_close_waits_for_the_fetch_in_flight_then_closes_the_source() -> None:
    source = Source(4, hold=frozenset({1}))
    items = Prefetch(source.items(), always, min_server_wait=0)
    assert next(items) == 0
    assert source.wait_started(1)

    closer = threading.Thread(target=items.close)
    closer.start()
    closer.join(timeout=0.2)
    assert closer.is_alive()  # item 1 is still being fetched
    source.release(1)
    closer.join(timeout=WAIT)

    assert not closer.is_alive()
    assert source.closed.is_set() and not source.finished.is_set()
    assert source.started == [0, 1]
    assert prefetch_threads() == []
    assert list(items) == []


def test_an_error_of_the_caller_inside_with_stops_the_fetching() -> None:
    source = Source(10)

    def write_until_it_fails() -> None:
        with Prefetch(source.items(), always, min_server_wait=0) as items:
            for item in items:
                if item == 3:
                    raise RuntimeError("the sink failed")

    with pytest.raises(RuntimeError, match="the sink failed"):
        write_until_it_fails()

    assert source.closed.is_set()
    assert source.started == [0, 1, 2, 3, 4]
    assert prefetch_threads() == []


def test_a_generator_over_it_that_is_closed_early_stops_the_fetching() -> None:
    source = Source(10)

    def pages() -> Iterator[int]:
        with Prefetch(source.items(), always, min_server_wait=0) as items:
            yield from items

    for item in pages():
        if item == 2:
            break

    assert source.closed.is_set()
    assert source.started == [0, 1, 2, 3]
    assert prefetch_threads() == []


# -- when the budget says go -------------------------------------------------------------------------


NOW = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)


def headers(limit: int, remaining: int, reset_ms: int) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(reset_ms),
    }


def budget_after(limit: int, remaining: int, reset_ms: int, **kwargs: object) -> RequestBudget:
    budget = RequestBudget(reset_header="duration", clock=lambda: NOW, **kwargs)  # type: ignore[arg-type]
    budget.observe(headers(limit, remaining, reset_ms))
    return budget


def test_a_request_is_sent_at_once_only_with_budget_to_spare() -> None:
    assert sends_at_once(RequestBudget())  # nothing known yet
    assert sends_at_once(budget_after(100, 90, 60_000))
    assert not sends_at_once(budget_after(100, 4, 60_000))  # paced
    assert not sends_at_once(budget_after(100, 0, 3_000, max_inline_wait=10.0))  # waits for the reset
    assert not sends_at_once(budget_after(100, 0, 600_000, max_inline_wait=10.0))  # defers


def test_asking_changes_nothing_the_next_request_decides_on() -> None:
    waiting = budget_after(100, 0, 3_000, max_inline_wait=10.0)
    status = waiting.status

    assert not sends_at_once(waiting)
    assert not sends_at_once(waiting)

    assert waiting.status == status  # a real WAIT decision forgets it
    assert waiting.before_request().action is Action.WAIT
    assert waiting.status is None


def test_asking_a_shared_budget_claims_nothing_in_the_shared_window() -> None:
    backend = InMemoryCountingBackend()
    shared = budget_after(100, 90, 60_000, backend=backend)
    claimed = sum(backend.claimed.values())

    assert sends_at_once(shared)

    assert sum(backend.claimed.values()) == claimed
    shared.before_request()
    assert sum(backend.claimed.values()) == claimed + 1


def test_a_reset_in_the_past_is_no_reason_to_hold_back() -> None:
    passed = budget_after(100, 0, 1_000, max_inline_wait=10.0)
    passed.clock = lambda: NOW + timedelta(seconds=5)

    assert sends_at_once(passed)
