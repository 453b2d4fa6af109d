"""Fixed-window rate limiting per client id, as the Prisjakt API gateway does it, and its headers."""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate

#: The rate-limit headers the reference documents on every response.
RATE_LIMIT_HEADERS: tuple[str, ...] = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
#: ``X-RateLimit-Reset`` of ``reset_style="garbage"``: no client can read a time from it.
GARBAGE_RESET = "soon"


def _ms(seconds: float) -> int:
    # Round off float noise first: a window of 3600 s must not read as 3600001 ms.
    return math.ceil(round(seconds * 1000, 3))


def reset_value(style: str, reset_seconds: float, remaining: int, now: float) -> str:
    """
    Render ``X-RateLimit-Reset`` in one of the sandbox's reset styles.

    :param style: A :data:`~airflow_provider_prisjakt.testing.config.ResetStyle`.
    :param reset_seconds: Seconds until the window resets.
    :param remaining: Requests left in the window.
    :param now: Current epoch seconds.
    :return: The header value.
    """
    if style == "duration":
        return str(_ms(reset_seconds))
    if style == "epoch_seconds":
        return str(math.ceil(round(now + reset_seconds, 3)))
    if style == "garbage":
        return GARBAGE_RESET
    if style == "past" and remaining == 0:
        # A server that reports the reset it already had: one second ago.
        return str(math.floor((now - 1) * 1000))
    return str(_ms(now + reset_seconds))


def retry_after_headers(form: str, seconds: float, now: float) -> dict[str, str]:
    """
    Render ``Retry-After`` announcing a wait of ``seconds``.

    :param form: ``"none"``, ``"seconds"`` (delta seconds, rounded up, at least 1) or
        ``"http_date"`` (an IMF-fixdate that far ahead, rounded up to the second).
    :param seconds: The wait.
    :param now: Current epoch seconds.
    :return: ``{}`` or ``{"Retry-After": value}``.
    """
    if form == "seconds":
        return {"Retry-After": str(max(1, math.ceil(seconds)))}
    if form == "http_date":
        return {"Retry-After": formatdate(math.ceil(now + max(seconds, 1)), usegmt=True)}
    return {}


@dataclass(frozen=True)
class RateDecision:
    """
    Outcome of counting one request.

    :param allowed: Whether the request is within the limit.
    :param limit: ``X-RateLimit-Limit``.
    :param remaining: ``X-RateLimit-Remaining``.
    :param reset_seconds: Seconds until the window resets.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float

    def headers(self, reset_style: str, retry_after: str = "none") -> dict[str, str]:
        """
        Render the rate-limit headers.

        :param reset_style: How ``X-RateLimit-Reset`` is written, see :func:`reset_value`.
        :param retry_after: Form of ``Retry-After``, added only when the request was refused.
        :return: Header name to value.
        """
        now = time.time()
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": reset_value(reset_style, self.reset_seconds, self.remaining, now),
        }
        if not self.allowed:
            headers.update(retry_after_headers(retry_after, self.reset_seconds, now))
        return headers


class RateLimiter:
    """Thread-safe fixed windows keyed by client id; a window starts at the first request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}

    def reset(self) -> None:
        """Forget every window."""
        with self._lock:
            self._windows.clear()

    def hit(self, key: str, limit: int, window: float) -> RateDecision:
        """
        Count one request of ``key``.

        :param key: Client id (or a placeholder for anonymous requests).
        :param limit: Requests allowed per window.
        :param window: Window length in seconds.
        :return: The decision with header values.
        """
        now = time.monotonic()
        with self._lock:
            start, used = self._windows.get(key, (now, 0))
            if now - start >= window:
                start, used = now, 0
            used += 1
            self._windows[key] = (start, used)
        reset = max(0.0, start + window - now)
        return RateDecision(used <= limit, limit, max(0, limit - used), reset)


class HeaderDropper:
    """Decides, deterministically by seed, which responses lose their rate-limit headers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[int, float] | None = None
        self._rng = random.Random(0)

    def drop(self, seed: int, rate: float) -> bool:
        """
        Draw for one response.

        :param seed: Seed; a new seed or rate restarts the sequence.
        :param rate: Share of responses to strip, in ``[0, 1]``.
        :return: Whether this response goes without ``X-RateLimit-*`` headers.
        """
        if rate <= 0:
            return False
        with self._lock:
            if self._key != (seed, rate):
                self._key = (seed, rate)
                self._rng = random.Random(f"rate-headers:{seed}")
            return self._rng.random() < rate
