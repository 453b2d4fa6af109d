"""Tasks sharing one client id's window: window identity, the spenders inferred, the shared window's merge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_prisjakt.api.budget_sharing import (
    SharedWindow,
    SpendEstimate,
    epoch_ms,
    in_flight_reserve,
    merge_window,
    starts_new_window,
)
from airflow_provider_prisjakt.api.ratelimit import RateLimitStatus
from airflow_provider_prisjakt.client.budget_redis import budget_key, decode_window, encode_window

NOW = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)


def status(
    remaining: int | None, reset_in: float | None = 10.0, *, limit: int | None = 100, at: float = 0.0
) -> RateLimitStatus:
    observed = NOW + timedelta(seconds=at)
    reset_at = NOW + timedelta(seconds=reset_in) if reset_in is not None else None
    return RateLimitStatus(limit, remaining, reset_at, observed)


# -- which window -----------------------------------------------------------------------------------


def test_resets_within_a_second_name_the_same_window_and_a_later_one_a_new_window() -> None:
    assert starts_new_window(None, status(99))
    assert not starts_new_window(status(99, 10.0), status(90, 10.4))
    assert starts_new_window(status(3, 10.0), status(99, 20.0))


def test_without_resets_a_budget_that_came_back_is_a_new_window() -> None:
    assert starts_new_window(status(5, None), status(99, None))
    assert not starts_new_window(status(50, None), status(40, None))


# -- the spenders one task infers -------------------------------------------------------------------


def run_alongside(others: int, own_requests: int, estimate: SpendEstimate | None = None) -> SpendEstimate:
    """One task's view: each of its requests, the others send ``others`` requests too."""
    estimate = estimate or SpendEstimate()
    remaining = 100
    estimate = estimate.taking(status(remaining), own=1)
    for _ in range(own_requests):
        remaining -= 1 + others
        estimate = estimate.taking(status(remaining), own=1)
    return estimate


def test_a_task_alone_infers_itself_alone() -> None:
    assert run_alongside(others=0, own_requests=20).spenders == 1.0


def test_a_task_beside_three_others_infers_four_spenders() -> None:
    assert run_alongside(others=3, own_requests=20).spenders == pytest.approx(4.0, abs=0.35)


def test_before_any_response_the_estimate_is_one_and_a_new_window_starts_from_the_last_one() -> None:
    assert SpendEstimate().spenders == 1.0
    busy = run_alongside(others=3, own_requests=20)

    next_window = busy.taking(status(99, 20.0), own=1)

    assert next_window.own == 0
    assert next_window.spenders == pytest.approx(busy.steady)


def test_tasks_that_join_late_are_noticed_within_a_few_requests() -> None:
    alone_at_first = run_alongside(others=0, own_requests=40, estimate=SpendEstimate())
    remaining = alone_at_first.last.remaining if alone_at_first.last else 0
    joined = alone_at_first
    for _ in range(4):
        remaining -= 4
        joined = joined.taking(status(remaining), own=1)

    assert alone_at_first.spenders == 1.0
    assert joined.steady < 2  # the window's average still says "alone"
    assert joined.spenders == pytest.approx(4.0)


def test_one_long_stall_does_not_make_a_crowd() -> None:
    estimate = run_alongside(others=1, own_requests=10)
    remaining = estimate.last.remaining if estimate.last else 0
    stalled = estimate.taking(status(remaining - 40), own=1)  # the others went on while this task waited
    assert stalled.spenders < 6


def test_a_response_without_remaining_changes_nothing() -> None:
    estimate = run_alongside(others=3, own_requests=5)
    assert estimate.taking(status(None), own=1) == estimate


# -- the reserve for requests in flight -------------------------------------------------------------


@pytest.mark.parametrize(
    ("spenders", "reserve"), [(1.0, 0), (1.4, 0), (1.5, 1), (2.0, 2), (3.2, 3), (4.0, 4), (16.0, 19)]
)
def test_the_in_flight_reserve_covers_one_request_per_other_task_with_a_margin(spenders: float, reserve: int) -> None:
    assert in_flight_reserve(spenders) == reserve


# -- the shared window ------------------------------------------------------------------------------


def test_the_first_status_starts_the_shared_window_with_tag_zero() -> None:
    assert merge_window(None, status(99)) == SharedWindow(status(99), tag=0)


def test_in_one_window_the_fewest_requests_left_win_whatever_order_answers_arrive_in() -> None:
    stored = SharedWindow(status(50), tag=7)

    lower = merge_window(stored, status(40, 10.2, at=1))

    assert lower is not None and (lower.status.remaining, lower.tag) == (40, 7)
    assert lower.status.reset_at == stored.status.reset_at  # the window keeps the reset it was named by
    assert merge_window(stored, status(60, 10.1, at=2)) is None


def test_a_new_window_is_tagged_by_the_reset_of_the_one_before() -> None:
    stored = SharedWindow(status(2, 10.0), tag=0)

    after = merge_window(stored, status(99, 20.0, at=11))

    assert after == SharedWindow(status(99, 20.0, at=11), tag=epoch_ms(NOW + timedelta(seconds=10)))
    assert after.tag == stored.next_tag


def test_a_late_answer_from_an_earlier_window_changes_nothing() -> None:
    stored = SharedWindow(status(99, 20.0, at=11), tag=1)
    assert merge_window(stored, status(1, 10.0, at=11.5)) is None


def test_requests_sent_after_the_reset_are_counted_in_the_next_window() -> None:
    window = SharedWindow(status(10, 10.0), tag=5)

    assert window.claim_target(NOW + timedelta(seconds=9)) == (5, 100)
    assert window.claim_target(NOW + timedelta(seconds=10)) == (window.next_tag, 100)


def test_a_window_without_a_reset_never_caps_its_claims() -> None:
    window = SharedWindow(status(0, None), tag=5)
    assert window.claim_target(NOW + timedelta(days=1)) == (5, None)


def test_every_task_sees_the_fewer_requests_left_of_the_server_s_word_and_the_count() -> None:
    window = SharedWindow(status(60), tag=0)

    assert window.view(claimed=30).remaining == 60
    assert window.view(claimed=45).remaining == 55
    assert window.view(claimed=120).remaining == 0


def test_requests_the_server_counted_beyond_the_claims_are_found() -> None:
    window = SharedWindow(status(60), tag=0)

    assert window.uncounted(status(50), claimed=45) == 5
    assert window.uncounted(status(50), claimed=52) == 0
    assert window.uncounted(status(None), claimed=0) == 0


# -- the record in the store ------------------------------------------------------------------------


def test_a_window_survives_its_record_to_the_millisecond() -> None:
    window = SharedWindow(status(42, 9.5, at=0.25), tag=123)

    fields = {name.encode(): value.encode() for name, value in encode_window(window).items()}

    assert decode_window(fields) == window


def test_unknown_values_are_left_out_of_the_record_and_come_back_unknown() -> None:
    window = SharedWindow(status(None, None, limit=None), tag=0)
    assert set(encode_window(window)) == {"observed", "tag"}
    assert decode_window(encode_window(window)) == window


def test_no_record_or_an_unreadable_one_is_no_window() -> None:
    assert decode_window({}) is None
    assert decode_window({"observed": "soon"}) is None


def test_the_store_s_key_names_neither_the_client_id_nor_the_api() -> None:
    key = budget_key("https://api.pj.nu/click-conversion", "client-id-1234")

    assert "client-id-1234" not in key and "pj.nu" not in key
    assert key == budget_key("https://api.pj.nu/click-conversion", "client-id-1234")
    assert key != budget_key("http://127.0.0.1:8080/click-conversion", "client-id-1234")
