"""The transport's RequestCycle: what each answer to a try means, for both loops; answers are built by hand."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from requests.structures import CaseInsensitiveDict

from airflow_provider_prisjakt.client.budget import RequestBudget, RequestStats
from airflow_provider_prisjakt.client.retry import Call, Received, RetryPolicy, Step
from airflow_provider_prisjakt.client.transport import MAX_REDIRECTS, RequestCycle
from airflow_provider_prisjakt.exceptions import (
    PrisjaktAPIError,
    PrisjaktAuthError,
    PrisjaktNotFoundError,
    PrisjaktPaginationError,
    PrisjaktRateLimitError,
    PrisjaktServerError,
)
from airflow_provider_prisjakt.hooks.connection import settings_from_connection

BASE = "https://api.pj.nu/click-conversion"
NOW = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)


class TokenAuth:
    """An OAuth2-like auth that counts how often its token was thrown away."""

    def __init__(self, refreshable: bool = True) -> None:
        self.refreshable = refreshable
        self.invalidated = 0

    def invalidate(self) -> None:
        self.invalidated += 1


def answer(status: int = 200, body: object = None, content: bytes | None = None, **headers: str) -> Received:
    if content is None:
        content = json.dumps(body if body is not None else []).encode()
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return Received(status, CaseInsensitiveDict(named), content, "Reason")


def problem(status: int, title: str, detail: str) -> bytes:
    return json.dumps({"status": status, "title": title, "detail": detail, "context": {"request-id": "r-1"}}).encode()


def make_cycle(max_tries: int = 3, auth: TokenAuth | None = None, max_inline_wait: float = 60.0) -> RequestCycle:
    return RequestCycle(
        base_url=BASE,
        policy=RetryPolicy(max_tries=max_tries, rng=random.Random(0)),
        budget=RequestBudget(reset_header="duration", max_inline_wait=max_inline_wait, clock=lambda: NOW),
        auth=auth,
        stats=RequestStats(),
    )


def get(path: str = "pixels/p/events", **params: str) -> Call:
    return Call("GET", f"{BASE}/{path}", params or None)


# -- where requests go -----------------------------------------------------------------------------


def test_paths_are_joined_to_the_base_url_and_same_origin_urls_kept() -> None:
    cycle = make_cycle()

    assert cycle.url_for("/clients/x") == f"{BASE}/clients/x"
    assert (
        cycle.url_for("https://API.pj.nu:443/click-conversion/next?c=2")
        == "https://API.pj.nu:443/click-conversion/next?c=2"
    )


@pytest.mark.parametrize("url", ["https://evil.example/x", "http://api.pj.nu/x", "https://api.pj.nu:8443/x"])
def test_a_url_on_another_origin_is_refused(url: str) -> None:
    with pytest.raises(PrisjaktPaginationError, match="outside the configured Prisjakt API origin"):
        make_cycle().url_for(url)


def test_a_redirect_is_followed_without_the_query_and_without_counting_as_a_retry() -> None:
    cycle, call = make_cycle(), get(**{"from": "a"})

    step = cycle.after_response(call, answer(302, Location="/click-conversion/elsewhere"))

    assert step == Step()
    assert (call.url, call.params, call.redirects) == (f"{BASE}/elsewhere", None, 1)
    assert cycle.stats.retries == 0


def test_redirects_stop_after_the_maximum() -> None:
    cycle, call = make_cycle(), get()
    call.redirects = MAX_REDIRECTS

    with pytest.raises(PrisjaktAPIError) as raised:
        cycle.after_response(call, answer(302, Location="/click-conversion/again"))

    assert raised.value.status == 302


# -- success and failures --------------------------------------------------------------------------


def test_a_2xx_json_body_is_decoded_once_and_ends_the_request() -> None:
    step = make_cycle().after_response(get(), answer(200, [{"id": "e1"}]))

    assert step.done and step.body == [{"id": "e1"}]


def test_a_2xx_body_is_not_decoded_when_no_json_is_expected() -> None:
    call = get()
    call.expect_json = False

    assert make_cycle().after_response(call, answer(200, content=b"<html>")) == Step(done=True)


def test_a_truncated_body_is_retried_then_fails_naming_what_came() -> None:
    cycle, call = make_cycle(max_tries=2), get()
    truncated = answer(200, content=b'[{"id": "e1"', Content_Type="application/json")
    html = answer(200, content=b"<html>proxy</html>", Content_Type="text/html; charset=utf-8")

    first = cycle.after_response(call, truncated)
    with pytest.raises(PrisjaktServerError) as raised:
        cycle.after_response(call, html)

    assert first.delay > 0 and not first.done
    assert "text/html" in str(raised.value) and "on each of 2 tries" in str(raised.value)
    assert cycle.stats.retries == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_a_transient_status_is_retried_and_the_last_error_raised(status: int) -> None:
    cycle, call = make_cycle(max_tries=3), get()
    failing = answer(status, content=problem(status, "Oops", "try later"))

    steps = [cycle.after_response(call, failing) for _ in range(2)]
    with pytest.raises(PrisjaktAPIError) as raised:
        cycle.after_response(call, failing)

    assert all(step.delay > 0 and not step.rate_limit for step in steps)
    assert raised.value.status == status and raised.value.request_id == "r-1"
    assert cycle.stats.retries == 2


def test_retry_after_on_a_5xx_stretches_the_backoff() -> None:
    step = make_cycle().after_response(get(), answer(503, content=b"", Retry_After="7"))

    assert step.delay == 7.0


@pytest.mark.parametrize(
    ("status", "error"), [(400, PrisjaktAPIError), (403, PrisjaktAuthError), (404, PrisjaktNotFoundError)]
)
def test_a_final_status_raises_at_once(status: int, error: type[Exception]) -> None:
    cycle = make_cycle(max_tries=9)

    with pytest.raises(error):
        cycle.after_response(get(), answer(status, content=problem(status, "No", "never")))

    assert cycle.stats.retries == 0


def test_a_transport_error_is_retried_then_named() -> None:
    cycle, call = make_cycle(max_tries=2), get()

    assert cycle.after_transport_error(call, ConnectionResetError()).delay > 0
    with pytest.raises(PrisjaktServerError, match="ConnectionResetError on each of 2 tries"):
        cycle.after_transport_error(call, ConnectionResetError())


# -- credentials -----------------------------------------------------------------------------------


def test_a_401_refreshes_an_oauth2_token_once_then_fails() -> None:
    auth = TokenAuth()
    cycle, call = make_cycle(auth=auth), get()
    refused = answer(401, content=problem(401, "Unauthorized", "token expired"))

    assert cycle.after_response(call, refused) == Step()
    with pytest.raises(PrisjaktAuthError):
        cycle.after_response(call, refused)

    assert auth.invalidated == 1


@pytest.mark.parametrize("auth", [None, TokenAuth(refreshable=False)], ids=["no-auth", "header-credentials"])
def test_a_401_without_a_token_to_refresh_fails_at_once(auth: TokenAuth | None) -> None:
    with pytest.raises(PrisjaktAuthError):
        make_cycle(auth=auth).after_response(get(), answer(401, content=problem(401, "Unauthorized", "bad secret")))


# -- the rate limit --------------------------------------------------------------------------------


def test_a_429_with_a_near_reset_is_a_counted_wait_not_a_retry() -> None:
    cycle, call = make_cycle(), get()
    limited = answer(429, content=b"", **{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2000"})

    step = cycle.after_response(call, limited)

    assert step.rate_limit and 2.0 <= step.delay <= 2.5
    assert (cycle.stats.rate_limited, cycle.stats.retries) == (1, 0)
    assert cycle.waiting(step) == step.delay
    assert (cycle.stats.waits, cycle.stats.seconds_waited) == (1, step.delay)


def test_a_429_with_a_far_reset_raises_with_the_reset_and_the_budget() -> None:
    cycle, call = make_cycle(max_inline_wait=5.0), get()
    headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "600000"}

    with pytest.raises(PrisjaktRateLimitError) as raised:
        cycle.after_response(call, answer(429, content=problem(429, "Too Many Requests", "slow down"), **headers))

    error = raised.value
    assert error.reset_at is not None
    assert timedelta(seconds=600) <= error.reset_at - NOW <= timedelta(seconds=601)
    assert (error.limit, error.remaining, error.detail, error.request_id) == (100, 0, "slow down", "r-1")


def test_a_spent_budget_raises_before_sending_and_counts_no_request() -> None:
    cycle = make_cycle(max_inline_wait=5.0)
    cycle.budget.observe({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "600000"})

    with pytest.raises(PrisjaktRateLimitError):
        cycle.before_sending(get())

    assert cycle.stats.requests == 0


def test_each_request_sent_is_counted_and_a_retry_wait_is_not_a_rate_limit_wait() -> None:
    cycle, call = make_cycle(), get()

    assert cycle.before_sending(call) == Step(reason="pacing requests", rate_limit=True)
    cycle.waiting(cycle.after_response(call, answer(503, content=b"")))

    assert (cycle.stats.requests, cycle.stats.retries, cycle.stats.waits) == (1, 1, 0)


def test_stats_are_json_safe() -> None:
    stats = RequestStats(requests=3, seconds_waited=1.23456)

    assert json.loads(json.dumps(stats.to_dict())) == {
        "requests": 3,
        "retries": 0,
        "rate_limited": 0,
        "waits": 0,
        "seconds_waited": 1.235,
    }


# -- what the errors name --------------------------------------------------------------------------


def test_a_404_below_pixels_names_the_way_to_list_the_pixels() -> None:
    with pytest.raises(PrisjaktNotFoundError) as raised:
        make_cycle().after_response(get("pixels/p1/events"), answer(404, content=problem(404, "Pixel not found", "p1")))

    assert raised.value.path == "/click-conversion/pixels/p1/events"
    assert "get_pixels(shop_id)" in str(raised.value)


def test_a_429_refused_for_good_names_the_request_s_path() -> None:
    cycle = make_cycle(max_inline_wait=5.0)
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "600000"}

    with pytest.raises(PrisjaktRateLimitError) as raised:
        cycle.after_response(get("pixels/p1/events"), answer(429, content=problem(429, "Too Many", "x"), **headers))

    assert "(GET /click-conversion/pixels/p1/events)" in str(raised.value)


# -- Retry-After on a 5xx, as the connection allows ------------------------------------------------


def connection_cycle(**extra: object) -> RequestCycle:
    settings = settings_from_connection(
        host=BASE, schema=None, port=None, login="id", password="pw-for-the-cycle-test", extra=extra
    )
    budget = RequestBudget(max_inline_wait=settings.max_inline_wait, clock=lambda: NOW)
    return RequestCycle.for_connection(settings, budget)


def test_retry_after_on_a_5xx_is_waited_up_to_max_inline_wait() -> None:
    step = connection_cycle(max_inline_wait=60).after_response(get(), answer(503, content=b"", Retry_After="30"))

    assert (step.delay, step.rate_limit) == (30.0, False)


@pytest.mark.parametrize(("max_inline_wait", "retry_after"), [(60, "3600"), (0, "1")])
def test_retry_after_on_a_5xx_beyond_max_inline_wait_fails_at_once_as_a_retryable_server_error(
    max_inline_wait: int, retry_after: str
) -> None:
    cycle = connection_cycle(max_inline_wait=max_inline_wait)

    with pytest.raises(PrisjaktServerError) as raised:
        cycle.after_response(get(), answer(503, content=problem(503, "Busy", "later"), Retry_After=retry_after))

    assert not isinstance(raised.value, AirflowFailException)
    assert f"retry after {retry_after} s" in str(raised.value) and "max_inline_wait" in str(raised.value)
    assert raised.value.request_id == "r-1"
    assert cycle.stats.retries == 0


# -- 429s judged by their own headers --------------------------------------------------------------


def test_a_429_without_rate_headers_waits_its_retry_after_not_an_earlier_response_s_reset() -> None:
    cycle, call = make_cycle(max_inline_wait=60.0), get()
    # An earlier answer reported a window that resets in an hour, with budget left.
    cycle.budget.observe(
        {"X-RateLimit-Limit": "10000", "X-RateLimit-Remaining": "9000", "X-RateLimit-Reset": "3600000"}
    )

    step = cycle.after_response(call, answer(429, content=b"", Retry_After="2"))

    assert (step.delay, step.rate_limit) == (2.0, True)


def test_a_short_burst_429_with_budget_left_is_waited_out_even_by_a_worker_that_defers_long_waits() -> None:
    cycle = make_cycle(max_inline_wait=5.0)
    burst = {"X-RateLimit-Remaining": "4000", "X-RateLimit-Reset": "3000000", "Retry-After": "3"}

    assert cycle.after_response(get(), answer(429, content=b"", **burst)).delay == 3.0


def test_429s_with_an_unreadable_reset_wait_longer_each_time_then_raise_naming_reset_header() -> None:
    cycle, call = make_cycle(max_inline_wait=60.0), get()
    refused = answer(429, content=b"", **{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "soon"})

    delays = [cycle.after_response(call, refused).delay for _ in range(4)]
    with pytest.raises(PrisjaktRateLimitError, match="reset_header"):
        cycle.after_response(call, refused)

    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert cycle.stats.rate_limited == 5


def test_an_unreadable_reset_defers_at_once_when_the_worker_may_not_wait() -> None:
    cycle = make_cycle(max_inline_wait=0.0)
    refused = answer(429, content=b"", **{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "soon"})

    with pytest.raises(PrisjaktRateLimitError) as raised:
        cycle.after_response(get(), refused)

    assert raised.value.reset_at == NOW + timedelta(seconds=60)
