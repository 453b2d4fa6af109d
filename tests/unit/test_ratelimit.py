"""Rate-limit header parsing and pacing decisions (pure, no network, no sleeping)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from airflow_provider_prisjakt.api.ratelimit import (
    MAX_UNREADABLE_RESET_PROBES,
    RESET_HEADER_STYLES,
    RESET_MARGIN_SECONDS,
    UNREADABLE_RESET_DEFER_SECONDS,
    Action,
    PacingDecision,
    RateLimitHeaderError,
    RateLimitStatus,
    ResetHeaderStyle,
    decide_after_429,
    decide_after_429_response,
    decide_before_request,
    parse_rate_limit_headers,
    parse_reset,
    parse_retry_after,
    reset_style,
    usable_budget,
)

NOW = datetime(2026, 10, 1, 12, 0, 0, tzinfo=UTC)


def _status(
    limit: int | None = 10_000, remaining: int | None = 5_000, reset_in: float | None = 1800.0
) -> RateLimitStatus:
    reset_at = NOW + timedelta(seconds=reset_in) if reset_in is not None else None
    return RateLimitStatus(limit=limit, remaining=remaining, reset_at=reset_at, observed_at=NOW)


# -- parse_rate_limit_headers --------------------------------------------------------------------


def test_duration_style_reset_is_milliseconds_from_now() -> None:
    headers = {"X-RateLimit-Limit": "10000", "X-RateLimit-Remaining": "9876", "X-RateLimit-Reset": "1500000"}
    status = parse_rate_limit_headers(headers, NOW, reset_header="duration")
    assert status == RateLimitStatus(10_000, 9_876, NOW + timedelta(seconds=1500), NOW)


def test_epoch_style_reset_is_epoch_milliseconds() -> None:
    reset_at = NOW + timedelta(minutes=20)
    millis = int(reset_at.timestamp() * 1000)
    headers = {"X-RateLimit-Limit": "10000", "X-RateLimit-Remaining": "1", "X-RateLimit-Reset": str(millis)}
    status = parse_rate_limit_headers(headers, NOW, reset_header="epoch")
    assert status is not None
    assert status.reset_at == reset_at


def test_epoch_style_reads_even_a_small_value_as_an_epoch() -> None:
    status = parse_rate_limit_headers({"X-RateLimit-Reset": "60000"}, NOW, reset_header="epoch")
    assert status is not None
    assert status.reset_at == datetime(1970, 1, 1, 0, 1, tzinfo=UTC)


def test_auto_reads_a_value_within_one_window_as_a_duration() -> None:
    status = parse_rate_limit_headers({"X-RateLimit-Reset": "3600000"}, NOW)
    assert status is not None
    assert status.reset_at == NOW + timedelta(hours=1)


def test_auto_reads_a_value_larger_than_one_window_as_an_epoch() -> None:
    millis = int((NOW + timedelta(seconds=90)).timestamp() * 1000)
    status = parse_rate_limit_headers({"X-RateLimit-Reset": str(millis)}, NOW)
    assert status is not None
    assert status.reset_at == NOW + timedelta(seconds=90)
    just_over = parse_rate_limit_headers({"X-RateLimit-Reset": "3600001"}, NOW)
    assert just_over is not None
    assert just_over.reset_at == datetime(1970, 1, 1, 1, 0, 0, 1000, tzinfo=UTC)


def test_auto_uses_the_given_window_length() -> None:
    status = parse_rate_limit_headers({"X-RateLimit-Reset": "120000"}, NOW, window_seconds=60)
    assert status is not None
    assert status.reset_at == datetime(1970, 1, 1, 0, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    "headers",
    [
        {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "7", "x-ratelimit-reset": "5000"},
        {"X-RATELIMIT-LIMIT": "100", "X-RATELIMIT-REMAINING": "7", "X-RATELIMIT-RESET": "5000"},
        {"x-RateLimit-limit": "100", "X-Ratelimit-Remaining": "7", "x-ratelimit-Reset": "5000"},
        CaseInsensitiveDict({"x-ratelimit-limit": "100", "X-RATELIMIT-REMAINING": "7", "X-RateLimit-Reset": "5000"}),
    ],
)
def test_header_names_are_matched_case_insensitively(headers: dict[str, str]) -> None:
    status = parse_rate_limit_headers(headers, NOW)
    assert status == RateLimitStatus(100, 7, NOW + timedelta(seconds=5), NOW)


def test_values_are_read_with_surrounding_whitespace() -> None:
    status = parse_rate_limit_headers({"X-RateLimit-Remaining": "  42 "}, NOW)
    assert status is not None
    assert status.remaining == 42


def test_missing_headers_give_none_fields() -> None:
    status = parse_rate_limit_headers({"X-RateLimit-Remaining": "3", "Content-Type": "application/json"}, NOW)
    assert status == RateLimitStatus(limit=None, remaining=3, reset_at=None, observed_at=NOW)


@pytest.mark.parametrize("garbage", ["", "abc", "-1", "nan", "inf", "-inf", "1e999", "12 34", "0x10"])
def test_garbage_values_give_none_fields(garbage: str) -> None:
    headers = {"X-RateLimit-Limit": garbage, "X-RateLimit-Remaining": garbage, "X-RateLimit-Reset": garbage}
    status = parse_rate_limit_headers(headers, NOW)
    assert status == RateLimitStatus(limit=None, remaining=None, reset_at=None, observed_at=NOW)


@pytest.mark.parametrize("style", ["auto", "duration", "epoch", "epoch_seconds"])
def test_huge_reset_values_give_no_reset_instead_of_overflowing(style: str) -> None:
    status = parse_rate_limit_headers({"X-RateLimit-Reset": "9" * 40}, NOW, reset_header=style)
    assert status is not None
    assert status.reset_at is None


def test_no_rate_limit_header_at_all_gives_none() -> None:
    assert parse_rate_limit_headers({"Content-Type": "application/json"}, NOW) is None
    assert parse_rate_limit_headers({}, NOW) is None


@pytest.mark.parametrize("style", ["", "AUTO", "seconds", "ms"])
def test_unknown_reset_style_is_a_rate_limit_header_error(style: str) -> None:
    with pytest.raises(RateLimitHeaderError, match="reset_header"):
        parse_rate_limit_headers({"X-RateLimit-Reset": "1000"}, NOW, reset_header=style)
    with pytest.raises(ValueError):
        parse_reset("1000", NOW, reset_header=style)


def test_parse_reset_of_nothing_is_none() -> None:
    assert parse_reset(None, NOW) is None


# -- parse_retry_after ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), (" 5 ", 5.0), ("1", 1.0)])
def test_retry_after_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_retry_after_http_date() -> None:
    value = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(value, NOW) == pytest.approx(90.0)
    assert parse_retry_after("Thu, 01 Oct 2026 12:02:00 GMT", NOW) == pytest.approx(120.0)


def test_retry_after_http_date_without_zone_is_utc() -> None:
    assert parse_retry_after("Thu, 01 Oct 2026 12:00:30 -0000", NOW) == pytest.approx(30.0)


@pytest.mark.parametrize("value", [None, "0", "", "-5", "soon", "Thu, 01 Oct 2026 11:59:00 GMT", "nan"])
def test_retry_after_without_a_usable_hint_is_none(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


# -- RateLimitStatus -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [_status(), _status(None, None, None), _status(100, 0, 0.5)])
def test_status_round_trips_through_dict(status: RateLimitStatus) -> None:
    data = status.to_dict()
    assert RateLimitStatus.from_dict(data) == status
    assert all(value is None or isinstance(value, int | str) for value in data.values())


def test_seconds_until_reset_is_never_negative() -> None:
    assert _status(reset_in=30).seconds_until_reset(NOW) == 30.0
    assert _status(reset_in=-30).seconds_until_reset(NOW) == 0.0
    assert _status(reset_in=None).seconds_until_reset(NOW) == 0.0


def test_usable_budget_keeps_the_reserve() -> None:
    assert usable_budget(_status(remaining=100), reserve=30) == 70
    assert usable_budget(_status(remaining=100), reserve=-5) == 100
    assert usable_budget(_status(remaining=None), reserve=30) is None


# -- decide_before_request -----------------------------------------------------------------------


def test_go_before_the_first_response() -> None:
    assert decide_before_request(None, NOW).action is Action.GO


def test_go_at_full_speed_with_a_healthy_budget() -> None:
    decision = decide_before_request(_status(limit=10_000, remaining=5_000, reset_in=1800), NOW)
    assert decision.action is Action.GO
    assert decision.delay == 0.0


def test_go_when_remaining_is_unknown() -> None:
    decision = decide_before_request(_status(remaining=None), NOW)
    assert (decision.action, decision.delay) == (Action.GO, 0.0)


def test_requests_are_paced_when_under_a_tenth_is_left() -> None:
    decision = decide_before_request(_status(limit=10_000, remaining=99, reset_in=1000), NOW)
    assert decision.action is Action.GO
    # The 99 requests left (+1 for this one) are spread over the 1000 s to the reset.
    assert decision.delay == pytest.approx(10.0)


def test_pacing_delay_grows_as_the_budget_shrinks() -> None:
    delays = [decide_before_request(_status(remaining=r, reset_in=600), NOW).delay for r in (900, 100, 10, 1)]
    assert delays == sorted(delays)
    assert delays[-1] == pytest.approx(300.0)
    # Spreading never plans past the reset.
    assert all(delay <= 600 for delay in delays)


def test_no_pacing_just_above_a_tenth() -> None:
    assert decide_before_request(_status(limit=10_000, remaining=1_000, reset_in=1000), NOW).delay == 0.0


def test_wait_inline_when_spent_and_the_reset_is_near() -> None:
    status = _status(remaining=0, reset_in=30)
    decision = decide_before_request(status, NOW, max_inline_wait=60)
    assert decision.action is Action.WAIT
    assert decision.delay == pytest.approx(30 + RESET_MARGIN_SECONDS)
    assert decision.resume_at == status.reset_at


def test_defer_when_spent_and_the_reset_is_far() -> None:
    status = _status(remaining=0, reset_in=1200)
    decision = decide_before_request(status, NOW, max_inline_wait=60)
    assert decision.action is Action.DEFER
    assert decision.resume_at == status.reset_at
    assert decision.delay >= 1200


def test_max_inline_wait_decides_between_wait_and_defer() -> None:
    status = _status(remaining=0, reset_in=120)
    assert decide_before_request(status, NOW, max_inline_wait=60).action is Action.DEFER
    assert decide_before_request(status, NOW, max_inline_wait=300).action is Action.WAIT


def test_reserve_is_never_spent() -> None:
    status = _status(limit=10_000, remaining=50, reset_in=30)
    assert decide_before_request(status, NOW, reserve=50).action is Action.WAIT
    assert decide_before_request(status, NOW, reserve=80, max_inline_wait=10).action is Action.DEFER
    assert decide_before_request(status, NOW, reserve=49).action is Action.GO


def test_reserve_counts_towards_pacing() -> None:
    status = _status(limit=10_000, remaining=2_000, reset_in=1000)
    assert decide_before_request(status, NOW).delay == 0.0
    assert decide_before_request(status, NOW, reserve=1_901).delay == pytest.approx(1000 / 100)


def test_several_spenders_each_wait_their_share_of_the_time_to_the_reset() -> None:
    status = _status(limit=10_000, remaining=99, reset_in=1000)
    alone = decide_before_request(status, NOW).delay
    assert decide_before_request(status, NOW, spenders=4).delay == pytest.approx(4 * alone) == pytest.approx(40.0)
    assert decide_before_request(status, NOW, spenders=0.5).delay == pytest.approx(alone)  # never under one


def test_a_spenders_share_past_the_reset_goes_right_after_it() -> None:
    status = _status(limit=10_000, remaining=3, reset_in=100)
    decision = decide_before_request(status, NOW, spenders=16)
    assert (decision.action, decision.delay) == (Action.GO, pytest.approx(100 + RESET_MARGIN_SECONDS))


def test_go_when_the_reset_already_passed() -> None:
    decision = decide_before_request(_status(remaining=0, reset_in=-1), NOW)
    assert (decision.action, decision.delay) == (Action.GO, 0.0)
    decision = decide_before_request(_status(remaining=0, reset_in=0), NOW)
    assert decision.action is Action.GO


def test_go_when_spent_but_no_reset_is_known() -> None:
    assert decide_before_request(_status(remaining=0, reset_in=None), NOW).action is Action.GO


# -- decide_after_429 ----------------------------------------------------------------------------


def test_after_429_retry_after_wins_when_later_than_the_reset() -> None:
    decision = decide_after_429(_status(remaining=0, reset_in=5), retry_after=20, now=NOW)
    assert decision.action is Action.WAIT
    assert decision.delay == 20
    assert decision.resume_at == NOW + timedelta(seconds=20)


def test_after_429_reset_wins_when_later_than_retry_after() -> None:
    decision = decide_after_429(_status(remaining=0, reset_in=40), retry_after=3, now=NOW)
    assert decision.delay == pytest.approx(40 + RESET_MARGIN_SECONDS)
    assert decision.action is Action.WAIT


def test_after_429_far_reset_defers() -> None:
    decision = decide_after_429(_status(remaining=0, reset_in=900), retry_after=None, now=NOW, max_inline_wait=60)
    assert decision.action is Action.DEFER
    assert decision.resume_at is not None
    assert decision.resume_at >= NOW + timedelta(seconds=900)


def test_after_429_long_retry_after_defers() -> None:
    decision = decide_after_429(None, retry_after=3600, now=NOW)
    assert decision.action is Action.DEFER
    assert decision.resume_at == NOW + timedelta(hours=1)


def test_after_429_without_any_hint_falls_back() -> None:
    decision = decide_after_429(None, retry_after=None, now=NOW, fallback_wait=2.5)
    assert (decision.action, decision.delay) == (Action.WAIT, 2.5)
    decision = decide_after_429(_status(reset_in=None), retry_after=None, now=NOW, fallback_wait=7)
    assert decision.delay == 7


# -- fuzz ----------------------------------------------------------------------------------------

_HEADER_NAMES = st.sampled_from(
    ["X-RateLimit-Limit", "x-ratelimit-remaining", "X-RATELIMIT-RESET", "Retry-After", "Other"]
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(_HEADER_NAMES | st.text(max_size=20), st.text(max_size=40), max_size=6),
    st.sampled_from(RESET_HEADER_STYLES),
)
def test_arbitrary_header_values_never_raise(headers: dict[str, str], style: str) -> None:
    status = parse_rate_limit_headers(headers, NOW, reset_header=style)
    if status is not None:
        assert status.limit is None or status.limit >= 0
        assert status.remaining is None or status.remaining >= 0
        decide_before_request(status, NOW)
        decide_after_429(status, None, NOW)
    decision = decide_after_429_response(headers, NOW, reset_header=style, probes=2)
    assert decision.delay >= 0
    assert decision.action in (Action.WAIT, Action.DEFER)
    for value in headers.values():
        seconds = parse_retry_after(value, NOW)
        assert seconds is None or seconds > 0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20), st.text(max_size=40))
def test_only_an_unknown_style_raises_and_only_rate_limit_header_error(style: str, value: str) -> None:
    try:
        parse_reset(value, NOW, reset_header=style)
    except RateLimitHeaderError:
        assert style not in RESET_HEADER_STYLES


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**7))
def test_parse_reset_duration_matches_the_millis(millis: int) -> None:
    assert parse_reset(str(millis), NOW, reset_header="duration") == NOW + timedelta(milliseconds=millis)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=20_000),
    st.integers(min_value=0, max_value=20_000),
    st.floats(min_value=-100, max_value=7200, allow_nan=False),
    st.integers(min_value=0, max_value=100),
)
def test_decisions_are_consistent(limit: int, remaining: int, reset_in: float, reserve: int) -> None:
    status = _status(limit=limit, remaining=remaining, reset_in=reset_in)
    decision = decide_before_request(status, NOW, reserve=reserve, max_inline_wait=60)
    assert decision.delay >= 0
    if decision.action is Action.GO:
        assert decision.resume_at is None
        assert decision.delay <= max(reset_in, 0)
    else:
        assert remaining <= reserve
        assert decision.resume_at == status.reset_at
        assert (decision.action is Action.WAIT) == (decision.delay <= 60)


# -- reset styles (issue #12, item 2) --------------------------------------------------------------

RESET_AT = NOW + timedelta(minutes=20)


def test_reset_styles_are_an_enum_and_the_tuple_lists_its_values() -> None:
    assert RESET_HEADER_STYLES == ("auto", "duration", "epoch", "epoch_seconds")
    assert tuple(ResetHeaderStyle) == RESET_HEADER_STYLES
    assert reset_style("epoch_seconds") is ResetHeaderStyle.EPOCH_SECONDS
    with pytest.raises(RateLimitHeaderError, match="epoch_seconds"):
        reset_style("EPOCH_SECONDS")


def test_epoch_seconds_style_reads_epoch_seconds() -> None:
    status = parse_rate_limit_headers(
        {"X-RateLimit-Reset": str(int(RESET_AT.timestamp()))}, NOW, reset_header=ResetHeaderStyle.EPOCH_SECONDS
    )
    assert status is not None
    assert status.reset_at == RESET_AT


def test_epoch_seconds_keep_their_fraction() -> None:
    assert parse_reset(f"{int(RESET_AT.timestamp())}.5", NOW, "epoch_seconds") == RESET_AT + timedelta(milliseconds=500)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (str(int(RESET_AT.timestamp())), RESET_AT),  # ten digits: epoch seconds, not January 1970
        (str(int(RESET_AT.timestamp() * 1000)), RESET_AT),  # thirteen digits: epoch milliseconds
        ("1200000", NOW + timedelta(minutes=20)),  # within one window: a duration in milliseconds
        ("0", NOW),
    ],
)
def test_auto_tells_epoch_seconds_from_epoch_milliseconds_and_durations(value: str, expected: datetime) -> None:
    assert parse_reset(value, NOW, "auto") == expected


def test_epoch_seconds_are_never_read_as_1970() -> None:
    reset_at = parse_reset("1790000000", NOW)
    assert reset_at is not None
    assert reset_at.year == 2026


def test_epoch_milliseconds_under_the_epoch_seconds_style_are_unreadable_not_a_far_future() -> None:
    assert parse_reset(str(int(RESET_AT.timestamp() * 1000)), NOW, "epoch_seconds") is None


# -- 429 decisions (issue #12, items 2 and 3) -----------------------------------------------------


def test_a_429_with_budget_left_waits_retry_after_not_the_reset() -> None:
    decision = decide_after_429(_status(remaining=4_000, reset_in=3000), retry_after=3, now=NOW)
    assert (decision.action, decision.delay) == (Action.WAIT, 3)
    assert decision.resume_at == NOW + timedelta(seconds=3)
    assert decision.probes == 0


def test_a_429_with_budget_left_and_no_retry_after_takes_a_short_backoff() -> None:
    decision = decide_after_429(_status(remaining=4_000, reset_in=3000), None, NOW, max_inline_wait=10)
    assert (decision.action, decision.delay) == (Action.WAIT, 1.0)


def test_a_429_with_the_budget_spent_waits_for_the_reset() -> None:
    decision = decide_after_429(_status(remaining=0, reset_in=3000), retry_after=3, now=NOW, max_inline_wait=60)
    assert decision.action is Action.DEFER
    assert decision.delay == pytest.approx(3000 + RESET_MARGIN_SECONDS)
    assert decision.hint is None


@pytest.mark.parametrize(
    "headers",
    [
        {"X-RateLimit-Remaining": "5000", "X-RateLimit-Reset": "3000000", "Retry-After": "2"},
        {"x-ratelimit-remaining": "5000", "retry-after": format_datetime(NOW + timedelta(seconds=2), usegmt=True)},
    ],
)
def test_a_burst_429_is_read_from_its_own_headers_in_either_retry_after_form(headers: dict[str, str]) -> None:
    decision = decide_after_429_response(headers, NOW)
    assert decision.action is Action.WAIT
    assert decision.delay == pytest.approx(2)


def test_the_response_decision_reads_only_the_429s_own_headers() -> None:
    # An earlier response said plenty was left; this 429 says the budget is spent for 50 minutes.
    spent = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3000000", "Retry-After": "2"}
    decision = decide_after_429_response(spent, NOW, reset_header="duration", max_inline_wait=60)
    assert decision.action is Action.DEFER
    assert decision.resume_at == NOW + timedelta(seconds=3000 + RESET_MARGIN_SECONDS)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "nonsense"},
        {"X-RateLimit-Remaining": "0"},
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int((NOW - timedelta(minutes=5)).timestamp() * 1000))},
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1790000000"},  # epoch seconds read as ms: 1970
        {},
    ],
)
def test_an_unreadable_reset_backs_off_boundedly_then_defers_with_a_hint(headers: dict[str, str]) -> None:
    # The loop a transport runs: send, and on each 429 act on the decision, carrying `probes` on.
    sent, waits, probes = 0, [], 0
    while True:
        sent += 1  # every response is a 429 with a spent budget whose reset cannot be read
        decision = decide_after_429_response(headers, NOW, reset_header="epoch", probes=probes)
        probes = decision.probes
        if decision.action is Action.DEFER:
            break
        waits.append(decision.delay)
    assert sent == MAX_UNREADABLE_RESET_PROBES == 5
    assert waits == [1, 2, 4, 8]
    assert decision.delay == UNREADABLE_RESET_DEFER_SECONDS
    assert decision.resume_at == NOW + timedelta(seconds=60)
    assert decision.hint is not None
    assert "reset_header" in decision.hint
    assert "epoch_seconds" in decision.hint
    assert "unreadable" in decision.reason or "no readable reset" in decision.reason


def test_unreadable_reset_waits_never_exceed_max_inline_wait() -> None:
    delays = [
        decide_after_429(_status(remaining=0, reset_in=None), None, NOW, max_inline_wait=3, probes=n).delay
        for n in range(MAX_UNREADABLE_RESET_PROBES - 1)
    ]
    assert delays == [1, 2, 3, 3]


def test_unreadable_reset_honours_a_retry_after_and_still_counts_the_request() -> None:
    decision = decide_after_429(_status(remaining=0, reset_in=-60), retry_after=5, now=NOW, probes=1)
    assert (decision.action, decision.delay, decision.probes) == (Action.WAIT, 5, 2)


def test_unreadable_reset_hint_quotes_the_header_value() -> None:
    decision = decide_after_429_response({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "soon"}, NOW)
    assert decision.hint is not None
    assert "'soon'" in decision.hint


def test_a_readable_reset_resets_the_probe_count() -> None:
    decision = decide_after_429(_status(remaining=0, reset_in=10), None, NOW, probes=3)
    assert (decision.action, decision.probes) == (Action.WAIT, 0)


def test_decisions_keep_their_old_shape() -> None:
    assert PacingDecision(Action.GO) == PacingDecision(Action.GO, 0.0, None, "", None, 0)
    assert decide_before_request(_status(remaining=0, reset_in=30), NOW).reason


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.none(), st.integers(min_value=0, max_value=10_000)),
    st.one_of(st.none(), st.floats(min_value=-3600, max_value=7200, allow_nan=False)),
    st.one_of(st.none(), st.floats(min_value=0.5, max_value=7200, allow_nan=False)),
    st.integers(min_value=0, max_value=MAX_UNREADABLE_RESET_PROBES - 1),
)
def test_429_decisions_are_bounded(
    remaining: int | None, reset_in: float | None, retry_after: float | None, probes: int
) -> None:
    status = _status(remaining=remaining, reset_in=reset_in)
    decision = decide_after_429(status, retry_after, NOW, max_inline_wait=60, probes=probes)
    assert decision.resume_at is not None
    assert decision.resume_at >= NOW
    assert decision.probes <= MAX_UNREADABLE_RESET_PROBES
    if decision.probes == MAX_UNREADABLE_RESET_PROBES:
        assert (decision.action, decision.delay) == (Action.DEFER, max(60, retry_after or 0))
    else:
        assert (decision.action is Action.WAIT) == (decision.delay <= 60)
    if remaining:
        assert decision.probes == 0
        assert decision.delay == (retry_after if retry_after is not None else 1.0)
