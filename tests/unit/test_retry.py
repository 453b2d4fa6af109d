"""RetryPolicy: which failures are retried, how long each wait is, and where the cap is; no server."""

from __future__ import annotations

import logging
import random

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_prisjakt.client.budget import RequestStats
from airflow_provider_prisjakt.client.retry import (
    BACKOFF_CAP_SECONDS,
    Call,
    Failure,
    FailureKind,
    RetryAction,
    RetryDecision,
    RetryPolicy,
    Step,
    give_up_error,
    retry_step,
)
from airflow_provider_prisjakt.exceptions import PrisjaktNotFoundError, PrisjaktServerError, api_error_from_response

TRANSIENT_STATUSES = [408, *range(500, 600)]
FINAL_STATUSES = [status for status in range(400, 500) if status not in (408, 429)]


def policy(max_tries: int = 5, seed: int = 0, **kwargs: float | None) -> RetryPolicy:
    return RetryPolicy(max_tries=max_tries, rng=random.Random(seed), **kwargs)  # type: ignore[arg-type]


# -- what is retried -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", TRANSIENT_STATUSES)
def test_5xx_and_408_are_retried(status: int) -> None:
    decision = policy().decide(Failure.from_status(status), tries=1)

    assert decision.action is RetryAction.RETRY
    assert not decision.final
    assert decision.delay > 0


@pytest.mark.parametrize("status", FINAL_STATUSES)
def test_other_4xx_are_final_from_the_first_try(status: int) -> None:
    decision = policy().decide(Failure.from_status(status), tries=1)

    assert decision == RetryDecision(RetryAction.GIVE_UP, final=True, reason=f"HTTP {status} is final")


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_the_documented_final_statuses_are_never_retried_whatever_the_hint(status: int) -> None:
    decision = policy(max_tries=100).decide(Failure.from_status(status, retry_after=1.0), tries=1)

    assert decision.action is RetryAction.GIVE_UP
    assert decision.final


@pytest.mark.parametrize(
    "failure",
    [
        Failure.from_transport("ConnectionError"),
        Failure.from_transport("ReadTimeout"),
        Failure.from_unreadable_body("application/json"),
        Failure.from_unreadable_body("text/html"),
        Failure.from_unreadable_body(""),
    ],
    ids=lambda failure: failure.description,
)
def test_transport_errors_and_unreadable_bodies_are_retried(failure: Failure) -> None:
    assert policy().decide(failure, tries=1).action is RetryAction.RETRY


@pytest.mark.parametrize(("status", "transient"), [(200, False), (301, False), (429, False), (408, True), (599, True)])
def test_is_transient_only_for_5xx_and_408(status: int, transient: bool) -> None:
    assert RetryPolicy.is_transient(status) is transient


# -- how often -------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_tries", [1, 2, 3, 5, 8])
def test_a_transient_failure_is_retried_until_max_tries_in_all(max_tries: int) -> None:
    retry_policy = policy(max_tries)
    failure = Failure.from_status(503)

    actions = [retry_policy.decide(failure, tries).action for tries in range(1, max_tries + 1)]

    assert actions == [RetryAction.RETRY] * (max_tries - 1) + [RetryAction.GIVE_UP]


def test_giving_up_says_what_failed_and_how_often_and_stays_retryable() -> None:
    decision = policy(3).decide(Failure.from_transport("ConnectionError"), tries=3)

    assert decision == RetryDecision(RetryAction.GIVE_UP, reason="ConnectionError on each of 3 tries")
    assert not decision.final


def test_max_tries_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_tries must be at least 1"):
        RetryPolicy(max_tries=0)


# -- how long --------------------------------------------------------------------------------------


@pytest.mark.parametrize("tries", range(1, 12))
def test_backoff_is_jittered_between_half_and_all_of_a_capped_doubling_step(tries: int) -> None:
    step = min(BACKOFF_CAP_SECONDS, 0.5 * 2 ** (tries - 1))
    waits = [policy(seed=seed).backoff(tries) for seed in range(200)]

    assert all(step / 2 <= wait <= step for wait in waits)
    assert max(waits) - min(waits) > step / 4  # jittered, not fixed


def test_backoff_never_exceeds_the_cap() -> None:
    retry_policy = policy(cap_seconds=2.0)

    assert max(retry_policy.backoff(tries) for tries in range(1, 60)) <= 2.0


def test_the_same_seed_gives_the_same_waits() -> None:
    failure = Failure.from_status(500)

    first = [policy(max_tries=9, seed=7).decide(failure, tries).delay for tries in range(1, 9)]
    second = [policy(max_tries=9, seed=7).decide(failure, tries).delay for tries in range(1, 9)]

    assert first == second


def test_a_longer_retry_after_wins_over_the_backoff() -> None:
    decision = policy().decide(Failure.from_status(503, retry_after=20.0), tries=1)

    assert decision.delay == 20.0


def test_a_shorter_retry_after_does_not_shorten_the_backoff() -> None:
    retry_policy = policy(seed=3)
    expected = policy(seed=3).backoff(4)

    assert retry_policy.decide(Failure.from_status(503, retry_after=0.1), tries=4).delay == expected


def test_a_retry_after_beyond_the_limit_gives_up_at_once_but_stays_retryable() -> None:
    decision = policy(retry_after_limit=60.0).decide(Failure.from_status(503, retry_after=3600.0), tries=1)

    assert decision.action is RetryAction.GIVE_UP
    assert not decision.final
    assert "3600 s" in decision.reason and "60 s" in decision.reason


def test_a_retry_after_within_the_limit_is_honoured() -> None:
    assert policy(retry_after_limit=60.0).decide(Failure.from_status(503, retry_after=30.0), tries=1).delay == 30.0


@given(
    status=st.integers(100, 599),
    tries=st.integers(1, 20),
    max_tries=st.integers(1, 10),
    retry_after=st.none() | st.floats(0, 10_000),
)
def test_every_decision_is_one_of_the_three_outcomes(
    status: int, tries: int, max_tries: int, retry_after: float | None
) -> None:
    decision = policy(max_tries).decide(Failure.from_status(status, retry_after), tries)

    if decision.final:
        assert decision.action is RetryAction.GIVE_UP and not RetryPolicy.is_transient(status)
    elif decision.action is RetryAction.GIVE_UP:
        assert tries >= max_tries
    else:
        assert tries < max_tries
        assert decision.delay >= (retry_after or 0.0)
        assert decision.delay <= max(BACKOFF_CAP_SECONDS, retry_after or 0.0)


# -- failures --------------------------------------------------------------------------------------


def test_failures_describe_themselves_without_bodies() -> None:
    assert Failure.from_status(502) == Failure(FailureKind.STATUS, "HTTP 502", status=502)
    assert Failure.from_transport("ChunkedEncodingError").description == "ChunkedEncodingError"
    assert "text/html" in Failure.from_unreadable_body("text/html").description
    assert Failure.from_unreadable_body("application/problem+json").description == "a truncated or invalid JSON body"


# -- the failure half of a request's cycle ---------------------------------------------------------

LOG = logging.getLogger("test_retry")


def pixel_call() -> Call:
    return Call("GET", "https://api.pj.nu/click-conversion/pixels/p1/events")


def test_a_retried_failure_is_counted_on_the_call_and_in_the_stats() -> None:
    request, stats = pixel_call(), RequestStats()

    step = retry_step(policy(seed=1), request, Failure.from_status(503), stats=stats, log=LOG)

    assert step == Step(delay=policy(seed=1).backoff(1))
    assert (request.failed_tries, stats.retries) == (1, 1)


def test_a_retry_after_beyond_the_limit_raises_the_server_error_with_the_hint_and_stays_retryable() -> None:
    request, stats = pixel_call(), RequestStats()
    error = api_error_from_response(503, b"", reason="Service Unavailable", method="GET", path=request.path)

    with pytest.raises(PrisjaktServerError) as raised:
        retry_step(
            policy(retry_after_limit=60.0), request, Failure.from_status(503, 3600.0), error, stats=stats, log=LOG
        )

    assert not isinstance(raised.value, AirflowFailException) and raised.value.retryable
    assert "retry after 3600 s" in str(raised.value) and "max_inline_wait (60 s)" in str(raised.value)
    assert (raised.value.status, raised.value.path) == (503, request.path)
    assert stats.retries == 0


def test_a_final_error_is_raised_as_the_api_sent_it() -> None:
    error = api_error_from_response(404, b"", method="GET", path="/click-conversion/pixels/p1/events")

    with pytest.raises(PrisjaktNotFoundError) as raised:
        retry_step(policy(), pixel_call(), Failure.from_status(404), error, stats=RequestStats(), log=LOG)

    assert raised.value is error
    assert isinstance(raised.value, AirflowFailException)


def test_giving_up_keeps_the_status_s_own_hint_before_the_policy_s() -> None:
    error = api_error_from_response(404, b"", method="GET", path="/click-conversion/pixels/p1/events")
    decision = RetryDecision(RetryAction.GIVE_UP, hint="Wait longer")

    rebuilt = give_up_error(decision, pixel_call(), error)

    assert type(rebuilt) is PrisjaktNotFoundError
    assert str(rebuilt).endswith(f"{error.hint}. Wait longer")


def test_giving_up_without_an_answer_is_a_server_error_naming_the_failure() -> None:
    request = pixel_call()
    with pytest.raises(PrisjaktServerError, match="ConnectionError on each of 1 tries") as raised:
        retry_step(
            policy(max_tries=1), request, Failure.from_transport("ConnectionError"), stats=RequestStats(), log=LOG
        )

    assert raised.value.path == request.path
