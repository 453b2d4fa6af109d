"""
Rate-limit headers and pacing decisions for the Prisjakt API.

Pure functions only: no I/O, no Airflow, no HTTP client. The hook feeds them header values and the
current time and acts on what they return, so every decision here is testable from strings.

The API sends three headers on every response (10,000 requests an hour per client id in production):

* ``X-RateLimit-Limit``: requests allowed per window;
* ``X-RateLimit-Remaining``: requests left in the current window;
* ``X-RateLimit-Reset``: milliseconds, either the time left until the window resets (a *duration*)
  or the moment it resets (an *epoch* timestamp). The documentation does not say which, so
  ``reset_header="auto"`` treats a value larger than one window as an epoch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

RESET_HEADER_STYLES = ("auto", "duration", "epoch")
DEFAULT_WINDOW_SECONDS = 3600.0
# Once fewer than this share of the window's budget is left, requests are spread over the time to reset.
SMOOTHING_SHARE = 0.1
# A reset this close is treated as already passed when the headers say otherwise: clocks differ.
RESET_MARGIN_SECONDS = 0.25


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


def _parse_int(value: str | None) -> int | None:
    """Return a non-negative integer header value, or ``None`` if absent or not a number."""
    if value is None:
        return None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return int(number)


def parse_reset(
    value: str | None,
    now: datetime,
    reset_header: str = "auto",
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
) -> datetime | None:
    """
    Turn an ``X-RateLimit-Reset`` value (milliseconds) into the moment the window resets.

    :param value: the raw header value.
    :param now: the time the response arrived (timezone-aware).
    :param reset_header: ``duration`` (ms until reset), ``epoch`` (epoch ms) or ``auto``, which reads
        a value larger than one window as an epoch.
    :param window_seconds: the length of one rate-limit window, for ``auto``.
    """
    if reset_header not in RESET_HEADER_STYLES:
        raise RateLimitHeaderError(
            f"reset_header must be one of {', '.join(RESET_HEADER_STYLES)}, not {reset_header!r}"
        )
    millis = _parse_int(value)
    if millis is None:
        return None
    is_epoch = reset_header == "epoch" or (reset_header == "auto" and millis > window_seconds * 1000)
    try:
        if is_epoch:
            return datetime.fromtimestamp(millis / 1000, tz=UTC)
        return now + timedelta(milliseconds=millis)
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
        from email.utils import parsedate_to_datetime

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
    """The budget is spent; sleep inline until the window resets."""
    DEFER = "defer"
    """The budget is spent and the reset is too far away to sleep; give the worker back."""


@dataclass(frozen=True)
class PacingDecision:
    """
    The outcome of :func:`decide_before_request`.

    :param action: go, wait inline, or defer until ``resume_at``.
    :param delay: seconds to sleep before sending (for ``GO`` a pacing delay, for ``WAIT`` the
        time to the reset).
    :param resume_at: when the budget is back, for ``WAIT`` and ``DEFER``.
    """

    action: Action
    delay: float = 0.0
    resume_at: datetime | None = None


def usable_budget(status: RateLimitStatus, reserve: int) -> int | None:
    """Return the requests left after keeping ``reserve`` unused, or ``None`` when unknown."""
    if status.remaining is None:
        return None
    return status.remaining - max(0, reserve)


def decide_before_request(
    status: RateLimitStatus | None,
    now: datetime,
    reserve: int = 0,
    max_inline_wait: float = 60.0,
) -> PacingDecision:
    """
    Decide whether the next request may go now, should be paced, or must wait for the reset.

    Requests go at full speed while the budget is healthy. When less than a tenth of the window's
    limit is left, the rest is spread evenly over the time to the reset, so that a long export keeps
    going at the rate the window allows instead of running into a 429. When nothing usable is left
    (``remaining <= reserve``), the request waits for the reset: inline if it is no more than
    ``max_inline_wait`` seconds away, otherwise the caller should defer.

    :param status: the last known status, or ``None`` before the first response.
    :param now: the current time (timezone-aware UTC).
    :param reserve: requests to leave unused, for other clients of the same id.
    :param max_inline_wait: the longest wait, in seconds, worth holding a worker for.
    """
    if status is None:
        return PacingDecision(Action.GO)
    usable = usable_budget(status, reserve)
    if usable is None:
        return PacingDecision(Action.GO)
    # Headers observed before a reset that has since passed describe an old window.
    if status.reset_at is not None and status.reset_at <= now:
        return PacingDecision(Action.GO)
    if usable <= 0:
        if status.reset_at is None:
            # The budget is spent but nobody says when it returns: let the server decide.
            return PacingDecision(Action.GO)
        wait = status.seconds_until_reset(now) + RESET_MARGIN_SECONDS
        if wait <= max_inline_wait:
            return PacingDecision(Action.WAIT, delay=wait, resume_at=status.reset_at)
        return PacingDecision(Action.DEFER, delay=wait, resume_at=status.reset_at)
    if status.limit and status.reset_at is not None and usable < status.limit * SMOOTHING_SHARE:
        return PacingDecision(Action.GO, delay=status.seconds_until_reset(now) / (usable + 1))
    return PacingDecision(Action.GO)


def decide_after_429(
    status: RateLimitStatus | None,
    retry_after: float | None,
    now: datetime,
    max_inline_wait: float = 60.0,
    fallback_wait: float = 1.0,
) -> PacingDecision:
    """
    Decide how to recover from a 429 response.

    The wait is the later of ``Retry-After`` and the reported reset; with neither, a short
    ``fallback_wait``. It is slept inline when within ``max_inline_wait``, otherwise deferred.
    """
    candidates = []
    if retry_after is not None:
        candidates.append(retry_after)
    if status is not None and status.reset_at is not None:
        candidates.append(status.seconds_until_reset(now) + RESET_MARGIN_SECONDS)
    wait = max(candidates) if candidates else fallback_wait
    resume_at = now + timedelta(seconds=wait)
    if wait <= max_inline_wait:
        return PacingDecision(Action.WAIT, delay=wait, resume_at=resume_at)
    return PacingDecision(Action.DEFER, delay=wait, resume_at=resume_at)
