"""
Rate-limit headers and pacing decisions for the Prisjakt API.

Pure functions only: no I/O, no Airflow, no HTTP client. The hook feeds them header values and the
current time and acts on what they return, so every decision here is testable from strings.

The API sends three headers on every response (10,000 requests an hour per client id in production):

* ``X-RateLimit-Limit``: requests allowed per window;
* ``X-RateLimit-Remaining``: requests left in the current window;
* ``X-RateLimit-Reset``: when the window resets, as milliseconds left (a *duration*), an epoch in
  milliseconds or, rarely, an epoch in seconds. The documentation does not say which, so
  ``reset_header="auto"`` tells them apart (see :func:`parse_reset`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from airflow_provider_prisjakt.api.choices import parse_choice


class ResetHeaderStyle(StrEnum):
    """How ``X-RateLimit-Reset`` is read (extra ``reset_header``): ms left, epoch ms, epoch seconds, or ``auto``."""

    AUTO = "auto"
    DURATION = "duration"
    EPOCH = "epoch"
    EPOCH_SECONDS = "epoch_seconds"


RESET_HEADER_STYLES = tuple(style.value for style in ResetHeaderStyle)
DEFAULT_WINDOW_SECONDS = 3600.0
# Once fewer than this share of the window's budget is left, requests are spread over the time to reset.
SMOOTHING_SHARE = 0.1
# A reset this close is treated as already passed when the headers say otherwise: clocks differ.
RESET_MARGIN_SECONDS = 0.25
_EPOCH_SECONDS_RANGE = (1e9, 1e10)  # ten digits: 2001 to 2286; epoch milliseconds have thirteen
#: Requests sent into a spent budget whose reset cannot be read before the caller defers.
MAX_UNREADABLE_RESET_PROBES = 5
#: How long the caller defers once those probes are used up.
UNREADABLE_RESET_DEFER_SECONDS = 60.0
MAX_WAIT_SECONDS = 86_400.0  # no header makes a request wait longer than a day


class RateLimitHeaderError(ValueError):
    """A rate-limit header could not be read; raised only for an unknown ``reset_header`` style."""


@dataclass(frozen=True)
class RateLimitStatus:
    """
    The client's request budget as the last response reported it.

    :param limit: requests allowed per window, or ``None`` when the header was absent or unreadable.
    :param remaining: requests left in the current window, or ``None`` when unknown.
    :param reset_at: when the current window ends (UTC), or ``None`` when unknown.
    :param observed_at: when the response carrying these values arrived (UTC).
    """

    limit: int | None
    remaining: int | None
    reset_at: datetime | None
    observed_at: datetime

    def seconds_until_reset(self, now: datetime) -> float:
        """Return the seconds from ``now`` until the window resets (0 when unknown or passed)."""
        if self.reset_at is None:
            return 0.0
        return max(0.0, (self.reset_at - now).total_seconds())

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe form, for trigger payloads and operator summaries."""
        return {
            "limit": self.limit,
            "remaining": self.remaining,
            "reset_at": self.reset_at.isoformat() if self.reset_at else None,
            "observed_at": self.observed_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RateLimitStatus:
        """Rebuild a status from :meth:`to_dict` output."""
        reset_at = data.get("reset_at")
        return cls(
            limit=data.get("limit"),
            remaining=data.get("remaining"),
            reset_at=datetime.fromisoformat(reset_at) if reset_at else None,
            observed_at=datetime.fromisoformat(data["observed_at"]),
        )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Return a header value by case-insensitive name from any mapping."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def _parse_number(value: str | None) -> float | None:
    """Return a non-negative, finite header value, or ``None`` if absent or not a number."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return number


def _parse_int(value: str | None) -> int | None:
    """Return a non-negative integer header value, or ``None`` if absent or not a number."""
    number = _parse_number(value)
    return None if number is None else int(number)


def reset_style(reset_header: str) -> ResetHeaderStyle:
    """
    Return the :class:`ResetHeaderStyle` named ``reset_header`` (case-sensitive).

    :raises RateLimitHeaderError: for any other name.
    """
    return parse_choice(ResetHeaderStyle, reset_header, "reset_header", RateLimitHeaderError)


def parse_reset(
    value: str | None,
    now: datetime,
    reset_header: str = "auto",
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
) -> datetime | None:
    """
    Turn an ``X-RateLimit-Reset`` value into the moment the window resets.

    ``auto`` reads a value of at most one window's milliseconds as a duration, a ten-digit value as
    epoch seconds (an epoch in seconds read as milliseconds would be January 1970) and anything
    larger as epoch milliseconds.

    :param value: the raw header value.
    :param now: the time the response arrived (timezone-aware).
    :param reset_header: a :class:`ResetHeaderStyle` or its name.
    :param window_seconds: the length of one rate-limit window, for ``auto``.
    :return: the reset moment, or ``None`` when the value is absent or unreadable.
    :raises RateLimitHeaderError: for an unknown ``reset_header``.
    """
    style = reset_style(reset_header)
    number = _parse_number(value)
    if number is None:
        return None
    if style is ResetHeaderStyle.AUTO:
        if number <= window_seconds * 1000:
            style = ResetHeaderStyle.DURATION
        elif _EPOCH_SECONDS_RANGE[0] <= number < _EPOCH_SECONDS_RANGE[1]:
            style = ResetHeaderStyle.EPOCH_SECONDS
        else:
            style = ResetHeaderStyle.EPOCH
    try:
        if style is ResetHeaderStyle.DURATION:
            return now + timedelta(milliseconds=int(number))
        if style is ResetHeaderStyle.EPOCH_SECONDS:
            return datetime.fromtimestamp(number, tz=UTC)
        return datetime.fromtimestamp(int(number) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def parse_rate_limit_headers(
    headers: Mapping[str, str],
    now: datetime,
    reset_header: str = "auto",
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
) -> RateLimitStatus | None:
    """
    Read ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` from response headers.

    :param headers: response headers (any mapping; names are matched case-insensitively).
    :param now: when the response arrived (timezone-aware UTC).
    :param reset_header: how to read the reset value, see :func:`parse_reset`.
    :param window_seconds: the window length used by ``auto``.
    :return: the status, or ``None`` when the response carried none of the three headers.
    """
    raw_limit = _header(headers, "X-RateLimit-Limit")
    raw_remaining = _header(headers, "X-RateLimit-Remaining")
    raw_reset = _header(headers, "X-RateLimit-Reset")
    if raw_limit is None and raw_remaining is None and raw_reset is None:
        return None
    return RateLimitStatus(
        limit=_parse_int(raw_limit),
        remaining=_parse_int(raw_remaining),
        reset_at=parse_reset(raw_reset, now, reset_header, window_seconds),
        observed_at=now,
    )


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """
    Read a ``Retry-After`` header as seconds to wait.

    Both forms of RFC 9110 are accepted: delay-seconds and an HTTP date. A value of 0, a past date
    or an unreadable value means "no hint" and gives ``None``.
    """
    if value is None:
        return None
    text = value.strip()
    seconds = _parse_int(text)
    if seconds is None:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = (when - now).total_seconds()
        return delay if delay > 0 else None
    return float(seconds) if seconds > 0 else None


class Action(StrEnum):
    """What the hook should do before sending its next request."""

    GO = "go"
    """Send now, possibly after a short pacing delay."""
    WAIT = "wait"
    """Sleep inline for ``delay`` seconds, then send."""
    DEFER = "defer"
    """The wait is too long to sleep: give the worker back until ``resume_at`` (or fail, retryably)."""


@dataclass(frozen=True)
class PacingDecision:
    """
    The outcome of :func:`decide_before_request` and :func:`decide_after_429`.

    :param action: go, wait inline, or defer until ``resume_at``.
    :param delay: seconds to wait before sending: a pacing delay (``GO``), or the wait itself.
    :param resume_at: when to send again, for ``WAIT`` and ``DEFER``.
    :param reason: why, in a few words, for the log line of the wait.
    :param hint: what the user should do, for the error when the caller fails instead of deferring;
        ``None`` when the reset time says it all.
    :param probes: requests sent so far into a spent budget whose reset cannot be read; pass it
        back as ``probes`` to the next :func:`decide_after_429` of the same request.
    """

    action: Action
    delay: float = 0.0
    resume_at: datetime | None = None
    reason: str = ""
    hint: str | None = None
    probes: int = 0


def usable_budget(status: RateLimitStatus, reserve: int) -> int | None:
    """Return the requests left after keeping ``reserve`` unused, or ``None`` when unknown."""
    return None if status.remaining is None else status.remaining - max(0, reserve)


def _wait_or_defer(
    wait: float, now: datetime, max_inline_wait: float, reason: str, resume_at: datetime | None = None, **kw: Any
) -> PacingDecision:
    """Sleep ``wait`` inline when within ``max_inline_wait``, otherwise defer (never beyond a day)."""
    wait = min(wait, MAX_WAIT_SECONDS)
    action = Action.WAIT if wait <= max_inline_wait else Action.DEFER
    when = resume_at if resume_at is not None else now + timedelta(seconds=wait)
    return PacingDecision(action, delay=wait, resume_at=when, reason=reason, **kw)


def decide_before_request(
    status: RateLimitStatus | None,
    now: datetime,
    reserve: int = 0,
    max_inline_wait: float = 60.0,
    spenders: float = 1.0,
) -> PacingDecision:
    """
    Decide whether the next request may go now, should be paced, or must wait for the reset.

    Requests go at full speed while the budget is healthy. When less than a tenth of the window's
    limit is left, the rest is spread evenly over the time to the reset among the ``spenders``
    tasks, so that long exports keep going at the rate the window allows instead of running into a
    429. When nothing usable is left (``remaining <= reserve``), the request waits for the reset:
    inline if it is no more than ``max_inline_wait`` seconds away, otherwise the caller should
    defer. A spent budget whose reset is unknown or past goes: :func:`decide_after_429` answers a 429.

    :param status: the last known status, or ``None`` before the first response.
    :param now: the current time (timezone-aware UTC).
    :param reserve: requests to leave unused, for other clients of the same id.
    :param max_inline_wait: the longest wait, in seconds, worth holding a worker for.
    :param spenders: how many tasks pace on this budget, this one included.
    """
    if status is None:
        return PacingDecision(Action.GO)
    usable = usable_budget(status, reserve)
    if usable is None:
        return PacingDecision(Action.GO)
    # Headers observed before a reset that has since passed describe an old window.
    if status.reset_at is None or status.reset_at <= now:
        return PacingDecision(Action.GO)
    if usable <= 0:
        wait = status.seconds_until_reset(now) + RESET_MARGIN_SECONDS
        reason = "rate-limit budget spent until the window resets"
        return _wait_or_defer(wait, now, max_inline_wait, reason, resume_at=status.reset_at)
    if status.limit and usable < status.limit * SMOOTHING_SHARE:
        until_reset = status.seconds_until_reset(now)  # several spenders' shares may reach past it
        delay = min(until_reset * max(1.0, spenders) / (usable + 1), until_reset + RESET_MARGIN_SECONDS)
        return PacingDecision(Action.GO, delay=delay, reason="pacing requests over the rate-limit window")
    return PacingDecision(Action.GO)


def decide_after_429(
    status: RateLimitStatus | None,
    retry_after: float | None,
    now: datetime,
    max_inline_wait: float = 60.0,
    fallback_wait: float = 1.0,
    *,
    probes: int = 0,
    reset_value: str | None = None,
) -> PacingDecision:
    """
    Decide how to recover from a 429 response, from that response's own headers.

    Headers showing budget left (``remaining > 0``) mean a short-term limit: wait ``Retry-After``
    (or ``fallback_wait``) and go on. A budget spent (or unknown) with a reset ahead waits for the
    later of the reset and ``Retry-After``. Otherwise nobody says when the budget returns: the waits
    grow, ``Retry-After`` or ``fallback_wait * 2 ** probes`` (1 s, 2 s, 4 s … at most
    ``max_inline_wait``), and the 429 of the :data:`MAX_UNREADABLE_RESET_PROBES`-th such request
    defers for :data:`UNREADABLE_RESET_DEFER_SECONDS` with a hint naming ``reset_header``. A wait
    longer than ``max_inline_wait`` is a ``DEFER``.

    :param status: the status parsed from *this* 429's headers, ``None`` when it carried none; never
        an earlier response's, whose stale headers would mistake a burst for a spent budget or the
        reverse. :func:`decide_after_429_response` reads them for you.
    :param retry_after: this 429's ``Retry-After`` in seconds (:func:`parse_retry_after`), or ``None``.
    :param now: the current time (timezone-aware UTC).
    :param max_inline_wait: the longest wait, in seconds, worth holding a worker for.
    :param fallback_wait: the wait without any hint, and the first step of the growing backoff.
    :param probes: :attr:`PacingDecision.probes` of the previous 429 of the same request (0 at first).
    :param reset_value: the raw ``X-RateLimit-Reset`` value, quoted in the hint.
    """
    if status is not None and status.remaining is not None and status.remaining > 0:
        wait = retry_after if retry_after is not None else fallback_wait
        return _wait_or_defer(wait, now, max_inline_wait, f"a short-term 429 with {status.remaining} requests left")
    if status is not None and status.reset_at is not None and status.reset_at > now:
        wait = max(status.seconds_until_reset(now) + RESET_MARGIN_SECONDS, retry_after or 0.0)
        return _wait_or_defer(wait, now, max_inline_wait, "rate-limit budget spent until the window resets")
    probes += 1
    hint = (
        f"The API refused requests with the budget spent and no readable reset (X-RateLimit-Reset {reset_value!r}); "
        f"set the connection extra reset_header to the API's form: {', '.join(RESET_HEADER_STYLES)}"
    )
    reason = f"429 with no readable reset ({probes} of {MAX_UNREADABLE_RESET_PROBES} requests into a spent budget)"
    if probes >= MAX_UNREADABLE_RESET_PROBES:  # an inline limit of 0 makes the wait (>= 60 s) a DEFER
        max_inline_wait, retry_after = 0.0, max(UNREADABLE_RESET_DEFER_SECONDS, retry_after or 0.0)
    elif retry_after is None:
        retry_after = min(fallback_wait * 2 ** (probes - 1), max_inline_wait)
    return _wait_or_defer(retry_after, now, max_inline_wait, reason, hint=hint, probes=probes)


def decide_after_429_response(
    headers: Mapping[str, str],
    now: datetime,
    *,
    reset_header: str = ResetHeaderStyle.AUTO,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    max_inline_wait: float = 60.0,
    fallback_wait: float = 1.0,
    probes: int = 0,
) -> PacingDecision:
    """
    Apply :func:`decide_after_429` to a 429's own headers (``X-RateLimit-*``, ``Retry-After``).

    The one call a transport needs; the parameters are :func:`decide_after_429`'s.
    """
    return decide_after_429(
        parse_rate_limit_headers(headers, now, reset_header, window_seconds),
        parse_retry_after(_header(headers, "Retry-After"), now),
        now,
        max_inline_wait,
        fallback_wait,
        probes=probes,
        reset_value=_header(headers, "X-RateLimit-Reset"),
    )
