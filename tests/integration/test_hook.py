"""PrisjaktHook against the Prisjakt sandbox over real HTTP."""

from __future__ import annotations

import gc
import pickle
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_prisjakt.exceptions import (
    PrisjaktAuthError,
    PrisjaktConfigError,
    PrisjaktNotFoundError,
    PrisjaktPaginationError,
    PrisjaktRateLimitError,
    PrisjaktValidationError,
)
from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
from airflow_provider_prisjakt.testing import FaultConfig, PrisjaktSandbox
from tests.conftest import register_secret

from .conftest import HookFactory, connect

START = datetime(2026, 10, 5, tzinfo=UTC)
END = datetime(2026, 10, 12, tzinfo=UTC)


def fingerprint(events: list[dict]) -> list[tuple[str, float, str]]:
    """Ids with amounts and currencies, sorted: what must match the seed exactly."""
    return sorted((e["id"], e["data"]["amount"], e["data"]["currency"]) for e in events)


def expected(sandbox: PrisjaktSandbox, pixel: str, start: datetime = START, end: datetime = END) -> list:
    return fingerprint(list(sandbox.expected_events(pixel, start, end)))


def pages_fetched(sandbox: PrisjaktSandbox) -> Counter:
    return Counter(r.page_key for r in sandbox.requests if r.page_key and r.status == 200)


def test_iter_events_streams_every_event_of_the_window_once(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook()
    pixel = sandbox.pixel_ids(4242)[0]

    events = list(hook.iter_events(pixel, START, END))

    assert len(events) > sandbox.config.page_size  # several pages
    assert fingerprint(events) == expected(sandbox, pixel)
    times = [e["event_time"] for e in events]
    assert times == sorted(times, reverse=True)
    assert max(pages_fetched(sandbox).values()) == 1


def test_iter_pages_lets_each_page_go_before_fetching_the_next(
    sandbox_hook: HookFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streaming: while the next page is fetched and decoded, the hook holds nothing of the last one."""
    sandbox, hook = sandbox_hook()
    pixel = sandbox.pixel_ids(4242)[0]
    pages = hook.iter_pages(hook.events_path(pixel), hook.window_params(START, END))
    held_during_fetch: list[bool] = []
    last_page: list[Any] = []
    real_send = hook.transport.send

    def send_noting_what_the_pages_hold(*args: Any, **kwargs: Any) -> Any:
        if last_page:
            held_during_fetch.append(any(referrer is pages for referrer in gc.get_referrers(last_page[-1])))
        return real_send(*args, **kwargs)

    monkeypatch.setattr(hook.transport, "send", send_noting_what_the_pages_hold)
    for page in pages:
        last_page[:] = [page.records]
        del page

    assert len(held_during_fetch) >= 2  # several pages, each fetched after the previous one
    assert not any(held_during_fetch)


@pytest.mark.parametrize(
    "variant",
    [
        {"envelope": "object"},
        {"link_style": "path"},
        {"link_style": "relative"},
        {"combined_rels": True},
        {"rel_case": "upper"},
        {"combined_rels": True, "rel_case": "upper", "link_style": "relative", "envelope": "object"},
        {"problem_content_type": "application/problem+json"},
    ],
    ids=lambda v: ",".join(f"{k}={v[k]}" for k in v),
)
def test_every_api_variant_returns_the_same_events(sandbox_hook: HookFactory, variant: dict) -> None:
    sandbox, hook = sandbox_hook(**variant)
    pixel = sandbox.pixel_ids(4242)[1]

    assert fingerprint(list(hook.iter_events(pixel, START, END))) == expected(sandbox, pixel)


def test_iso_strings_and_naive_datetimes_are_accepted_as_utc(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook()
    pixel = sandbox.pixel_ids(4242)[0]

    from_strings = fingerprint(list(hook.iter_events(pixel, "2026-10-05T00:00:00Z", "2026-10-12T00:00:00+00:00")))
    from_naive = fingerprint(list(hook.iter_events(pixel, START.replace(tzinfo=None), END.replace(tzinfo=None))))

    assert from_strings == from_naive == expected(sandbox, pixel)


def test_page_size_extra_is_sent_on_the_first_page(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook(extra={"page_size": 500, "page_size_param": "limit"})
    pixel = sandbox.pixel_ids(4242)[0]

    events = list(hook.iter_events(pixel, START, END))

    event_requests = [r for r in sandbox.requests if r.path.endswith("/events")]
    assert event_requests[0].query.get("limit") == ["500"]
    assert len(event_requests) == -(-len(events) // 500)


def test_window_over_60_days_is_split_and_complete(sandbox_hook: HookFactory) -> None:
    period_start = datetime(2026, 6, 1, tzinfo=UTC)
    period_end = datetime(2026, 10, 1, tzinfo=UTC)
    sandbox, hook = sandbox_hook(period_start=period_start, period_end=period_end, events_per_pixel=600)
    pixel = sandbox.pixel_ids(4242)[0]

    events = list(hook.iter_events(pixel, period_start, period_end))

    assert fingerprint(events) == expected(sandbox, pixel, period_start, period_end)
    assert len(events) == 600
    windows = {(r.query["from"][0], r.query["to"][0]) for r in sandbox.requests if "from" in r.query}
    assert len(windows) == 3  # 122 days: 60 + 60 + 2


def test_transient_faults_are_retried_and_lose_nothing(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook(
        events_per_pixel=20_000,
        faults=FaultConfig(seed=7, error_rate=0.03, html_error_rate=0.02, drop_rate=0.01),
        extra={"max_retries": 8, "page_size": 200},
    )
    pixel = sandbox.pixel_ids(4242)[0]
    window = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))

    events = list(hook.iter_events(pixel, *window))

    assert len(events) == 20_000
    assert fingerprint(events) == expected(sandbox, pixel, *window)
    faulted = [r for r in sandbox.requests if r.fault]
    assert faulted, "the fault injection should have hit some requests"
    # A page is fetched again only after a fault on that page: 100 pages + one retry per fault at most.
    successful = sum(pages_fetched(sandbox).values())
    assert successful == 100
    assert hook.stats.retries == len(faulted)


@pytest.mark.parametrize("kind", ["500", "503", "html502", "drop", "truncate"])
def test_each_transient_fault_kind_is_retried(sandbox_hook: HookFactory, kind: str) -> None:
    sandbox, hook = sandbox_hook()
    pixel = sandbox.pixel_ids(4242)[0]
    sandbox.fail_next(kind, count=2)

    events = list(hook.iter_events(pixel, START, END))

    assert fingerprint(events) == expected(sandbox, pixel)
    assert [r.fault for r in sandbox.requests[:2]] == [kind, kind]
    assert hook.stats.retries == 2


def test_stalled_response_times_out_and_is_retried(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook(extra={"timeout": 0.5})
    pixel = sandbox.pixel_ids(4242)[0]
    sandbox.fail_next("stall", seconds=2.0)

    assert fingerprint(list(hook.iter_events(pixel, START, END))) == expected(sandbox, pixel)
    assert hook.stats.retries == 1


def test_retries_are_capped_and_the_last_error_is_clear(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook(extra={"max_retries": 3})
    sandbox.fail_next("503", count=10)

    with pytest.raises(Exception) as raised:
        hook.get_pixels(4242)

    assert "503" in str(raised.value)
    assert len(sandbox.requests) == 3


def test_unknown_pixel_gives_one_clear_not_found_error(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook()
    missing = "180cd423-ee56-40ed-b712-2f075ec08d45"

    with pytest.raises(PrisjaktNotFoundError) as raised:
        list(hook.iter_events(missing, START, END))

    error = raised.value
    assert error.status == 404
    assert error.request_id and error.request_id in str(error)
    assert missing in (error.detail or "")
    assert str(error).startswith("Prisjakt API 404 Pixel not found: ")
    assert len(sandbox.requests) == 1  # never retried


def test_malformed_pixel_id_names_the_field(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook()

    with pytest.raises(PrisjaktValidationError) as raised:
        list(hook.iter_events("not-a-uuid", START, END))

    assert "pixel_id" in raised.value.field_errors
    assert "pixel_id" in str(raised.value)
    assert len(sandbox.requests) == 1


def test_start_after_end_is_refused_before_any_request(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook()

    with pytest.raises(PrisjaktConfigError, match="start .* must be before end"):
        list(hook.iter_events(sandbox.pixel_ids()[0], END, START))

    assert sandbox.requests == []


def test_wrong_secret_is_an_auth_error_never_retried_and_never_echoed(
    sandbox_hook: HookFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, _ = sandbox_hook()
    wrong = register_secret("wrong-secret-0123456789abcdef")
    conn = sandbox.connection_json().replace(sandbox.client_secret, wrong)
    monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_WRONG", conn)
    hook = PrisjaktHook("prisjakt_wrong")

    with pytest.raises(PrisjaktAuthError) as raised:
        hook.get_pixels(4242)

    assert raised.value.status == 401
    assert wrong not in str(raised.value)
    assert "client secret" in str(raised.value).lower()
    assert len(sandbox.requests) == 1
    ok, message = hook.test_connection()
    assert ok is False
    assert "401" in message and wrong not in message


def test_client_without_shop_user_role_gets_a_403_auth_error(
    sandbox_hook: HookFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, _ = sandbox_hook()
    conn = sandbox.connection_json().replace(sandbox.client_id, sandbox.publisher_client_id)
    conn = conn.replace(sandbox.client_secret, sandbox.publisher_client_secret)
    monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_PUBLISHER", conn)
    hook = PrisjaktHook("prisjakt_publisher")

    with pytest.raises(PrisjaktAuthError) as raised:
        list(hook.iter_events(sandbox.pixel_ids()[0], START, END))

    assert raised.value.status == 403
    ok, message = hook.test_connection()
    assert ok is False
    assert "shop_user" in message


def test_test_connection_reports_the_roles(sandbox_hook: HookFactory) -> None:
    _, hook = sandbox_hook()

    ok, message = hook.test_connection()

    assert ok is True
    assert "roles: shop_user" in message


def test_unreachable_api_fails_test_connection_without_raising(
    sandbox_hook: HookFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, _ = sandbox_hook()
    conn = sandbox.connection_json(max_retries=1).replace(f":{sandbox.port}/", ":9/")
    monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_DOWN", conn)

    ok, message = PrisjaktHook("prisjakt_down").test_connection()

    assert ok is False
    assert "ConnectionError" in message or "failed" in message


def test_uri_style_connection_works(sandbox_hook: HookFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, _ = sandbox_hook()
    monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_URI", sandbox.connection_uri())
    hook = PrisjaktHook("prisjakt_uri")

    assert hook.base_url == sandbox.base_url
    assert [p["id"] for p in hook.get_pixels(4242)] == sandbox.pixel_ids(4242)


def test_resource_calls_return_what_the_api_holds(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook()
    pixel = sandbox.pixel_ids(4242)[2]
    first = next(sandbox.expected_events(pixel, START, END))

    assert hook.get_client()["roles"] == ["shop_user"]
    assert hook.get_purchase_summary(pixel, START, END) == sandbox.expected_purchase_summary(pixel, START, END)
    assert hook.get_event(first["id"]) == first
    click = hook.get_click(first["click_id"])
    assert click["id"] == first["click_id"]
    assert click["pixel_id"] == pixel


def test_purchase_summary_over_60_days_adds_up_the_chunks(sandbox_hook: HookFactory) -> None:
    start, end = datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)
    sandbox, hook = sandbox_hook(period_start=start, period_end=end, events_per_pixel=500)
    pixel = sandbox.pixel_ids(4242)[0]

    summary = hook.get_purchase_summary(pixel, start, end)

    middle = start + timedelta(days=61)
    parts = [
        sandbox.expected_purchase_summary(pixel, start, middle),
        sandbox.expected_purchase_summary(pixel, middle, end),
    ]
    totals: Counter = Counter()
    for part in parts:
        for entry in part["currencies"]:
            totals[entry["currency"]] += entry["count"]
    assert {e["currency"]: e["count"] for e in summary["currencies"]} == dict(totals)
    assert sum(e["count"] for e in summary["currencies"]) == 500


def test_pages_shifted_by_arriving_events_yield_each_event_once(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook(new_events_per_page=7)
    pixel = sandbox.pixel_ids(4242)[0]
    window = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 20, tzinfo=UTC))
    before = expected(sandbox, pixel, *window)

    events = list(hook.iter_events(pixel, *window))

    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids))
    assert fingerprint(events) == before


@pytest.mark.parametrize("reset_style", ["duration", "epoch"])
def test_pacing_avoids_429_under_a_small_budget(sandbox_hook: HookFactory, reset_style: str) -> None:
    sandbox, hook = sandbox_hook(rate_limit=6, rate_window=1.5, reset_style=reset_style, page_size=50)
    pixel = sandbox.pixel_ids(4242)[0]

    events = list(hook.iter_events(pixel, START, END))

    assert fingerprint(events) == expected(sandbox, pixel)
    assert len(sandbox.requests) > 6  # more than one window's budget
    assert [r for r in sandbox.requests if r.status == 429] == []
    assert hook.stats.waits >= 1
    assert hook.rate_limit is not None and hook.rate_limit.limit == 6


def test_spent_budget_with_a_far_reset_raises_before_sending(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook(rate_limit=3, rate_window=600, page_size=20, extra={"max_inline_wait": 1})
    pixel = sandbox.pixel_ids(4242)[0]

    with pytest.raises(PrisjaktRateLimitError) as raised:
        list(hook.iter_events(pixel, START, END))

    error = raised.value
    assert error.reset_at is not None
    assert timedelta(seconds=590) < error.reset_at - datetime.now(UTC) <= timedelta(seconds=600)
    assert error.reset_at.isoformat() in str(error)
    assert len(sandbox.requests) == 3
    assert all(r.status == 200 for r in sandbox.requests)
    assert pickle.loads(pickle.dumps(error)).reset_at == error.reset_at


@pytest.mark.parametrize("retry_after", [True, False])
def test_429_waits_for_the_reset_and_continues(sandbox_hook: HookFactory, retry_after: bool) -> None:
    sandbox, hook = sandbox_hook(retry_after=retry_after)
    pixel = sandbox.pixel_ids(4242)[0]
    sandbox.fail_next("429", count=2, reset_ms=300)

    events = list(hook.iter_events(pixel, START, END))

    assert fingerprint(events) == expected(sandbox, pixel)
    assert hook.stats.rate_limited == 2
    assert hook.stats.seconds_waited >= 0.6


@pytest.mark.parametrize(
    ("mode", "message"),
    [("foreign", "not on the configured API origin"), ("loop", "already fetched"), ("malformed", "malformed")],
)
def test_abusive_link_headers_stop_pagination(sandbox_hook: HookFactory, mode: str, message: str) -> None:
    sandbox, hook = sandbox_hook(link_mode=mode)

    with pytest.raises(PrisjaktPaginationError, match=message):
        list(hook.iter_events(sandbox.pixel_ids()[0], START, END))

    assert all(r.path.startswith("/click-conversion/") for r in sandbox.requests)
    assert len(sandbox.requests) <= 2


def test_oauth2_token_is_fetched_cached_and_refreshed_once_on_401(
    sandbox_hook: HookFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, _ = sandbox_hook(auth_mode="oauth2")
    hook = connect(monkeypatch, sandbox, "prisjakt_oauth", auth_type="oauth2", token_url=sandbox.token_url)
    pixel = sandbox.pixel_ids(4242)[0]

    first = list(hook.iter_events(pixel, START, END))
    sandbox.expire_tokens()
    second = list(hook.iter_events(pixel, START, END))

    assert fingerprint(first) == fingerprint(second) == expected(sandbox, pixel)
    token_requests = [r for r in sandbox.requests if r.path == "/oauth2/token"]
    assert len(token_requests) == 2
    assert [r.status for r in sandbox.requests if r.status == 401] == [401]


def test_redirect_to_another_origin_drops_the_credentials(sandbox_hook: HookFactory) -> None:
    other, _ = sandbox_hook()
    sandbox, hook = sandbox_hook()
    sandbox.fail_next("redirect", location=f"{other.base_url}/shops/4242/pixels")

    with pytest.raises(PrisjaktAuthError):
        hook.get_pixels(4242)

    arrived = other.requests
    assert len(arrived) == 1
    assert arrived[0].client_id is None


def test_secret_never_reaches_the_request_log_or_urls(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook()
    list(hook.iter_events(sandbox.pixel_ids()[0], START, END))

    for record in sandbox.requests:
        assert sandbox.client_secret not in repr(record)
    assert hook.stats.requests == len(sandbox.requests)
